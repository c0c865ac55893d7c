//! The root of trust: the master key that seals every piece of key material and every stored
//! secret before it reaches storage.
//!
//! A provider implements [`RootOfTrust`]; the first one is [`LocalKeyFile`], a 32-byte AES-256
//! key in a 0600 file of the data directory. HSM and Shamir providers implement the same trait.
//!
//! Sealed layout (see `docs/formats.md`):
//!
//! ```text
//! 0x01 | master-key version (u32, big endian) | nonce (12) | AES-256-GCM ciphertext | tag (16)
//! ```
//!
//! The additional authenticated data is `"clavis-seal-v1" || 0x00 || header (5 bytes) || context`,
//! where the caller's `context` names what is sealed (for example the key id and version), so a
//! sealed blob copied onto another row of the database does not unseal.

use crate::aead::{AeadKey, KEY_LEN};
use crate::{CryptoError, SecretBytes, random};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

pub(crate) const SEAL_FORMAT_V1: u8 = 1;
pub(crate) const SEAL_HEADER_LEN: usize = 5;
const SEAL_DOMAIN: &[u8] = b"clavis-seal-v1\0";

/// How to make a new master key: for a Shamir key, how many shares and how many to unseal.
#[derive(Debug, Clone, Copy, Default)]
pub struct NewKeyParams {
    /// Shamir: shares to make.
    pub shares: Option<u8>,
    /// Shamir: shares needed to unseal.
    pub threshold: Option<u8>,
}

/// A new master-key version: its provider, and for a Shamir key the shares to hand out (once).
#[derive(Debug)]
pub struct Rotated {
    /// `"file"`, `"pkcs11"` or `"shamir"`.
    pub kind: &'static str,
    /// Shamir: the new key's unseal shares.
    pub shares: Option<Vec<String>>,
}

/// What a provider reports about itself (`clavis operator status`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootStatus {
    /// `"file"`, `"pkcs11"` or `"shamir"`.
    pub kind: &'static str,
    /// Whether a master key exists (a Shamir provider is uninitialised until `operator init`).
    pub initialized: bool,
    /// Whether the master key is out of reach (Shamir: not yet unsealed, or sealed again).
    pub sealed: bool,
    /// The master key's version (the number in every sealed blob's header).
    pub master_key_version: u32,
    /// Shamir: shares made at initialisation, and how many unseal needs.
    pub shares: Option<u8>,
    /// Shamir: how many unseal needs.
    pub threshold: Option<u8>,
    /// Shamir: shares submitted so far towards the next unseal.
    pub progress: usize,
}

/// A provider of the master key. Implementations must keep the master key out of logs and off
/// disk in the clear (a key file is the one deliberate, documented exception).
pub trait RootOfTrust: Send + Sync {
    /// A short name for status output (`"file"`, `"pkcs11"`, `"shamir"`).
    fn kind(&self) -> &'static str;
    /// Seals `plaintext`, binding it to `context`. [`CryptoError::Sealed`] while sealed.
    fn seal(&self, context: &[u8], plaintext: &SecretBytes) -> Result<Vec<u8>, CryptoError>;
    /// Unseals what [`RootOfTrust::seal`] produced with the same `context`.
    fn unseal(&self, context: &[u8], sealed: &[u8]) -> Result<SecretBytes, CryptoError>;
    /// The provider's state. Providers that cannot be sealed are always unsealed.
    fn status(&self) -> RootStatus {
        RootStatus {
            kind: self.kind(),
            initialized: true,
            sealed: false,
            master_key_version: 1,
            shares: None,
            threshold: None,
            progress: 0,
        }
    }
    /// Whether seal/unseal would fail with [`CryptoError::Sealed`].
    fn is_sealed(&self) -> bool {
        false
    }
    /// Shamir: creates the master key and returns its shares in text form (shown once).
    fn init_shares(&self, _shares: u8, _threshold: u8) -> Result<Vec<String>, CryptoError> {
        Err(CryptoError::Unsupported("only the shamir root of trust is initialised with shares"))
    }
    /// Shamir: one unseal share; unseals once enough valid shares have arrived.
    fn submit_share(&self, _share: &str) -> Result<RootStatus, CryptoError> {
        Err(CryptoError::Unsupported("only the shamir root of trust is unsealed with shares"))
    }
    /// Makes master-key version `version` in the provider new keys go to, without sealing with
    /// it yet ([`RootOfTrust::use_version`] switches). Only a [`Keyring`] rotates.
    fn prepare_version(&self, _version: u32, _params: &NewKeyParams) -> Result<Rotated, CryptoError> {
        Err(CryptoError::Unsupported("this root of trust holds one master key"))
    }
    /// Seals with `version` from now on (it must be present and unsealed); older versions keep
    /// unsealing.
    fn use_version(&self, _version: u32) -> Result<(), CryptoError> {
        Err(CryptoError::Unsupported("this root of trust holds one master key"))
    }
    /// While a rotation is unfinished every version may still be needed: a keyring then counts
    /// as sealed while any of its versions is sealed.
    fn set_rotation_unfinished(&self, _unfinished: bool) {}
    /// The master-key versions this root of trust can unseal, oldest first.
    fn versions(&self) -> Vec<u32> {
        vec![self.status().master_key_version]
    }
    /// Shamir: forgets the master key (the provider is sealed until unsealed again).
    fn seal_now(&self) -> Result<(), CryptoError> {
        Err(CryptoError::Unsupported("only the shamir root of trust can be sealed"))
    }
    /// Shamir: forgets the shares submitted so far (an unseal that expired). Roots without
    /// shares have none pending.
    fn reset_unseal(&self) -> Result<(), CryptoError> {
        Ok(())
    }
}

/// Seals with an in-memory AES-256-GCM master key in the sealed layout.
fn seal_with(key: &AeadKey, version: u32, context: &[u8], plaintext: &SecretBytes) -> Result<Vec<u8>, CryptoError> {
    let mut out = Vec::with_capacity(SEAL_HEADER_LEN + 12 + plaintext.len() + 16);
    out.push(SEAL_FORMAT_V1);
    out.extend_from_slice(&version.to_be_bytes());
    let aad = seal_aad(&out, context);
    key.seal_append(&aad, plaintext.expose_secret(), &mut out)?;
    Ok(out)
}

/// Splits a sealed blob into its header and body after checking the format byte.
fn split_sealed(sealed: &[u8]) -> Result<(&[u8], &[u8]), CryptoError> {
    if sealed.len() < SEAL_HEADER_LEN || sealed[0] != SEAL_FORMAT_V1 {
        return Err(CryptoError::Malformed("unknown sealed-data format"));
    }
    Ok(sealed.split_at(SEAL_HEADER_LEN))
}

/// The master-key version in a sealed blob's header.
pub fn sealed_version(sealed: &[u8]) -> Result<u32, CryptoError> {
    let (header, _) = split_sealed(sealed)?;
    Ok(u32::from_be_bytes([header[1], header[2], header[3], header[4]]))
}

fn unseal_with(key: &AeadKey, context: &[u8], sealed: &[u8]) -> Result<SecretBytes, CryptoError> {
    let (header, body) = split_sealed(sealed)?;
    key.open(&seal_aad(header, context), body)
}

/// The additional authenticated data of a sealed blob (every provider uses the same).
pub(crate) fn seal_aad(header: &[u8], context: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(SEAL_DOMAIN.len() + header.len() + context.len());
    aad.extend_from_slice(SEAL_DOMAIN);
    aad.extend_from_slice(header);
    aad.extend_from_slice(context);
    aad
}

/// The development-default root of trust: a master key in a local file.
pub struct LocalKeyFile {
    key: AeadKey,
    path: PathBuf,
    version: u32,
}

impl std::fmt::Debug for LocalKeyFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalKeyFile").field("path", &self.path).finish_non_exhaustive()
    }
}

/// The master key's version. Master-key rotation (a later issue) bumps it; version 1 is the key
/// created at initialisation.
const LOCAL_KEY_VERSION: u32 = 1;

impl LocalKeyFile {
    /// Creates a new random master key at `path` (mode 0600, refusing to overwrite).
    pub fn create(path: &Path) -> Result<Self, CryptoError> {
        let key = random::secret(KEY_LEN)?;
        let io_err = |source| CryptoError::KeyFile { path: path.display().to_string(), source };
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(path).map_err(io_err)?;
        f.write_all(key.expose_secret()).map_err(io_err)?;
        f.sync_all().map_err(io_err)?;
        // The directory entry too: a key the database depends on must survive a power loss.
        if let Some(dir) = path.parent() {
            std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io_err)?;
        }
        Ok(LocalKeyFile { key: AeadKey::new(&key)?, path: path.to_owned(), version: LOCAL_KEY_VERSION })
    }

    /// Opens an existing master key file. Refuses a file that group or others can read.
    pub fn open(path: &Path) -> Result<Self, CryptoError> {
        let io_err = |source| CryptoError::KeyFile { path: path.display().to_string(), source };
        let mut f = std::fs::File::open(path).map_err(io_err)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = f.metadata().map_err(io_err)?.permissions().mode();
            if mode & 0o077 != 0 {
                return Err(io_err(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    format!("master key file has mode {:o}; it must not be readable by group or others (chmod 600)", mode & 0o777),
                )));
            }
        }
        let mut buf = SecretBytes::new(Vec::with_capacity(KEY_LEN + 1));
        f.read_to_end(buf.expose_secret_mut()).map_err(io_err)?;
        if buf.len() != KEY_LEN {
            return Err(CryptoError::InvalidKeyLength { expected: KEY_LEN, actual: buf.len() });
        }
        Ok(LocalKeyFile { key: AeadKey::new(&buf)?, path: path.to_owned(), version: LOCAL_KEY_VERSION })
    }

    /// The same key file, as master-key version `version` (the number written into every blob
    /// it seals). Version 1 is the key made at initialisation; rotation makes the others.
    pub fn with_version(mut self, version: u32) -> Self {
        self.version = version;
        self
    }
}

impl RootOfTrust for LocalKeyFile {
    fn kind(&self) -> &'static str {
        "file"
    }

    fn seal(&self, context: &[u8], plaintext: &SecretBytes) -> Result<Vec<u8>, CryptoError> {
        seal_with(&self.key, self.version, context, plaintext)
    }

    fn status(&self) -> RootStatus {
        RootStatus {
            kind: "file",
            initialized: true,
            sealed: false,
            master_key_version: self.version,
            shares: None,
            threshold: None,
            progress: 0,
        }
    }

    fn unseal(&self, context: &[u8], sealed: &[u8]) -> Result<SecretBytes, CryptoError> {
        unseal_with(&self.key, context, sealed)
    }
}

/// The file a Shamir root of trust keeps in the data directory: its parameters and a canary
/// sealed under the master key, never the key or a share.
pub const SHAMIR_CONFIG_FILE: &str = "shamir.conf";
const SHAMIR_CHECK_CONTEXT: &[u8] = b"clavis/shamir-check/v1\0";
const SHAMIR_CHECK_TEXT: &[u8] = b"clavis shamir master key";
const SHAMIR_SHARE_CHECK_CONTEXT: &[u8] = b"clavis/shamir-share/v1\0";
struct ShamirConfig {
    shares: u8,
    threshold: u8,
    check: Vec<u8>,
    /// SHA-256 of each share (domain-separated, x and y), so that a share is checked alone,
    /// as it is submitted: a junk share from a stranger never enters an unseal. Empty in a
    /// configuration written before these existed; the first unseal then fills them in.
    share_checks: std::collections::BTreeMap<u8, [u8; 32]>,
    /// The master-key version (1 when initialised on a fresh deployment; N when a rotation
    /// migrated into Shamir).
    version: u32,
}

#[derive(Default)]
struct ShamirState {
    config: Option<ShamirConfig>,
    key: Option<AeadKey>,
    pending: Vec<crate::shamir::Share>,
}

/// A master key split into shares (Vault/OpenBao's unseal model). It exists in memory only
/// between an unseal (`threshold` shares submitted, one at a time, possibly by different
/// people) and a seal or the end of the process; the data directory holds only the parameters
/// and a canary sealed under the key, which tells a right reconstruction from a wrong one.
pub struct ShamirRoot {
    path: PathBuf,
    state: std::sync::RwLock<ShamirState>,
    /// The version an uninitialised root will take at `init_shares`.
    init_version: u32,
    /// Whether an unseal may rewrite a configuration from before share digests (the server's;
    /// not an offline tool's, which must leave the data directory as it found it).
    upgrade: bool,
}

impl std::fmt::Debug for ShamirRoot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShamirRoot").field("path", &self.path).finish_non_exhaustive()
    }
}

/// The digest `shamir.conf` keeps of a share: SHA-256 over a context, x and the y bytes. A
/// share is 32 uniformly random bytes (threshold >= 2), so its digest reveals nothing usable.
fn share_check(x: u8, y: &[u8]) -> [u8; 32] {
    let mut h = crate::digest::Sha256::new();
    h.update(SHAMIR_SHARE_CHECK_CONTEXT);
    h.update(&[x]);
    h.update(y);
    h.finish()
}

/// The digests of every share (x = 1..=shares) of the split `some` belongs to (`some` being
/// exactly `threshold` shares that reconstructed the master key).
fn share_checks_of(some: &[crate::shamir::Share], shares: u8) -> Result<std::collections::BTreeMap<u8, [u8; 32]>, CryptoError> {
    (1..=shares).map(|x| Ok((x, share_check(x, crate::shamir::interpolate(some, x)?.expose_secret())))).collect()
}

fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

impl ShamirRoot {
    /// Loads the provider from `path` (the data directory's `shamir.conf`); uninitialised if the
    /// file does not exist. Always starts sealed.
    pub fn load(path: &Path) -> Result<Self, CryptoError> {
        let io_err = |source| CryptoError::KeyFile { path: path.display().to_string(), source };
        let config = match std::fs::read_to_string(path) {
            Ok(text) => Some(Self::parse(&text).ok_or(CryptoError::Malformed("shamir.conf is not a Clavis Shamir configuration"))?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_err(e)),
        };
        Ok(ShamirRoot {
            path: path.to_owned(),
            state: std::sync::RwLock::new(ShamirState { config, key: None, pending: Vec::new() }),
            init_version: 1,
            upgrade: true,
        })
    }

    /// This root, never writing `shamir.conf` (for offline tools: `clavis audit verify` run by
    /// another user must not replace the server's file).
    pub fn read_only(mut self) -> Self {
        self.upgrade = false;
        self
    }

    /// A new Shamir master key as version `version` (a rotation into Shamir): writes
    /// `shamir.conf` and returns the root, unsealed, with the shares to hand out once.
    pub fn create(path: &Path, version: u32, shares: u8, threshold: u8) -> Result<(Self, Vec<String>), CryptoError> {
        if path.exists() {
            return Err(CryptoError::Unseal(format!("{} exists: this data directory already has a Shamir master key", path.display())));
        }
        let root = ShamirRoot {
            path: path.to_owned(),
            state: std::sync::RwLock::new(ShamirState::default()),
            init_version: version,
            upgrade: true,
        };
        let parts = root.init_shares(shares, threshold)?;
        Ok((root, parts))
    }

    fn version(&self) -> u32 {
        self.state.read().ok().and_then(|s| s.config.as_ref().map(|c| c.version)).unwrap_or(self.init_version)
    }

    fn parse(text: &str) -> Option<ShamirConfig> {
        let mut lines = text.lines();
        if lines.next()? != "clavis-shamir-v1" {
            return None;
        }
        let (mut shares, mut threshold, mut check, mut version) = (None, None, None, 1);
        let mut share_checks = std::collections::BTreeMap::new();
        for line in lines {
            match line.split_once('=')? {
                ("shares", v) => shares = v.parse().ok(),
                ("threshold", v) => threshold = v.parse().ok(),
                ("check", v) => check = hex_decode(v),
                ("version", v) => version = v.parse().ok()?,
                (k, v) if k.starts_with("share.") => {
                    let x = u8::from_str_radix(k.strip_prefix("share.")?, 16).ok().filter(|x| *x != 0)?;
                    share_checks.insert(x, hex_decode(v)?.try_into().ok()?);
                }
                _ => return None,
            }
        }
        let shares: u8 = shares?;
        // All of them or none (a configuration from before share checks).
        if !share_checks.is_empty() && (share_checks.len() != usize::from(shares) || share_checks.keys().any(|x| *x > shares)) {
            return None;
        }
        Some(ShamirConfig { shares, threshold: threshold?, check: check?, share_checks, version })
    }

    fn write_config(&self, c: &ShamirConfig) -> Result<(), CryptoError> {
        let io_err = |source| CryptoError::KeyFile { path: self.path.display().to_string(), source };
        let mut text = format!(
            "clavis-shamir-v1\nshares={}\nthreshold={}\ncheck={}\nversion={}\n",
            c.shares,
            c.threshold,
            hex_encode(&c.check),
            c.version
        );
        for (x, digest) in &c.share_checks {
            text.push_str(&format!("share.{x:02x}={}\n", hex_encode(digest)));
        }
        let tmp = self.path.with_extension("conf.tmp");
        let mut f = {
            use std::os::unix::fs::OpenOptionsExt;
            let f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp).map_err(io_err)?;
            // A leftover temporary file keeps its mode through `open`: make it private too.
            f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600)).map_err(io_err)?;
            f
        };
        f.write_all(text.as_bytes()).map_err(io_err)?;
        f.sync_all().map_err(io_err)?;
        std::fs::rename(&tmp, &self.path).map_err(io_err)?;
        if let Some(dir) = self.path.parent() {
            std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io_err)?;
        }
        Ok(())
    }

    fn poisoned() -> CryptoError {
        CryptoError::Unseal("internal lock poisoned".into())
    }
}

impl RootOfTrust for ShamirRoot {
    fn kind(&self) -> &'static str {
        "shamir"
    }

    fn seal(&self, context: &[u8], plaintext: &SecretBytes) -> Result<Vec<u8>, CryptoError> {
        let state = self.state.read().map_err(|_| Self::poisoned())?;
        let key = state.key.as_ref().ok_or(CryptoError::Sealed)?;
        let version = state.config.as_ref().map_or(self.init_version, |c| c.version);
        seal_with(key, version, context, plaintext)
    }

    fn unseal(&self, context: &[u8], sealed: &[u8]) -> Result<SecretBytes, CryptoError> {
        let state = self.state.read().map_err(|_| Self::poisoned())?;
        let key = state.key.as_ref().ok_or(CryptoError::Sealed)?;
        unseal_with(key, context, sealed)
    }

    fn status(&self) -> RootStatus {
        let state = self.state.read();
        let (config, sealed, progress) = match &state {
            Ok(s) => (s.config.as_ref().map(|c| (c.shares, c.threshold)), s.key.is_none(), s.pending.len()),
            Err(_) => (None, true, 0),
        };
        drop(state);
        RootStatus {
            kind: "shamir",
            initialized: config.is_some(),
            sealed,
            master_key_version: self.version(),
            shares: config.map(|c| c.0),
            threshold: config.map(|c| c.1),
            progress,
        }
    }

    fn is_sealed(&self) -> bool {
        self.state.read().map(|s| s.key.is_none()).unwrap_or(true)
    }

    fn init_shares(&self, shares: u8, threshold: u8) -> Result<Vec<String>, CryptoError> {
        let mut state = self.state.write().map_err(|_| Self::poisoned())?;
        if state.config.is_some() {
            return Err(CryptoError::Unseal("already initialised".into()));
        }
        let master = random::secret(KEY_LEN)?;
        let parts = crate::shamir::split(&master, shares, threshold)?;
        let key = AeadKey::new(&master)?;
        let version = self.init_version;
        let check = seal_with(&key, version, SHAMIR_CHECK_CONTEXT, &SecretBytes::from_slice(SHAMIR_CHECK_TEXT))?;
        let share_checks = parts.iter().map(|p| (p.x, share_check(p.x, p.y.expose_secret()))).collect();
        let config = ShamirConfig { shares, threshold, check, share_checks, version };
        self.write_config(&config)?;
        state.config = Some(config);
        state.key = Some(key);
        state.pending.clear();
        Ok(parts.iter().map(crate::shamir::Share::to_text).collect())
    }

    fn submit_share(&self, share: &str) -> Result<RootStatus, CryptoError> {
        let share = crate::shamir::Share::from_text(share).map_err(|_| CryptoError::Unseal("that is not an unseal share".into()))?;
        {
            let mut state = self.state.write().map_err(|_| Self::poisoned())?;
            let Some(config) = state.config.as_ref() else {
                return Err(CryptoError::Unseal("not initialised: run `clavis operator init` first".into()));
            };
            let (threshold, check) = (usize::from(config.threshold), config.check.clone());
            if state.key.is_some() {
                return Err(CryptoError::Unseal("already unsealed".into()));
            }
            let not_ours = || CryptoError::Unseal("that is not an unseal share of this server".into());
            if share.y.len() != KEY_LEN {
                return Err(not_ours());
            }
            // Checked alone, before it joins the unseal: a junk share cannot spoil one.
            if !config.share_checks.is_empty() {
                let expected = config.share_checks.get(&share.x).ok_or_else(not_ours)?;
                if !crate::digest::constant_time_eq(expected, &share_check(share.x, share.y.expose_secret())) {
                    return Err(not_ours());
                }
            }
            if state.pending.iter().any(|s| s.x == share.x) {
                return Err(CryptoError::Unseal("this share was already submitted".into()));
            }
            state.pending.push(share);
            if state.pending.len() >= threshold {
                let pending = std::mem::take(&mut state.pending);
                let master = crate::shamir::combine(&pending)?;
                let key = AeadKey::new(&master)?;
                // A wrong or corrupted share reconstructs another key, which cannot open the
                // canary. Which share was wrong is not knowable, and not said.
                if unseal_with(&key, SHAMIR_CHECK_CONTEXT, &check).is_err() {
                    return Err(CryptoError::Unseal(
                        "the submitted shares do not reconstruct the master key; the unseal was reset, submit shares again".into(),
                    ));
                }
                // A configuration from before share checks gets them now, from the shares that
                // just proved right (they determine every other share). Best effort: the unseal
                // stands if the file cannot be rewritten; the next unseal tries again.
                if let Some(config) = state.config.as_ref().filter(|c| self.upgrade && c.share_checks.is_empty()) {
                    let upgraded =
                        ShamirConfig { share_checks: share_checks_of(&pending, config.shares)?, check: config.check.clone(), ..*config };
                    if self.write_config(&upgraded).is_ok() {
                        state.config = Some(upgraded);
                    }
                }
                state.key = Some(key);
            }
        }
        Ok(self.status())
    }

    fn seal_now(&self) -> Result<(), CryptoError> {
        let mut state = self.state.write().map_err(|_| Self::poisoned())?;
        // Dropping the key wipes it (the AEAD key zeroizes its schedule on drop).
        state.key = None;
        state.pending.clear();
        Ok(())
    }

    fn reset_unseal(&self) -> Result<(), CryptoError> {
        self.state.write().map_err(|_| Self::poisoned())?.pending.clear();
        Ok(())
    }
}

/// Makes a new master key of one provider as a given version (the provider new master keys go
/// to: a key file, an HSM key).
pub type KeyMaker =
    Box<dyn Fn(u32, &NewKeyParams) -> Result<(std::sync::Arc<dyn RootOfTrust>, Option<Vec<String>>), CryptoError> + Send + Sync>;

/// Several master keys by version: seals with the current one, unseals each blob with the
/// version its header names. This is what makes master-key rotation and migration between
/// providers possible without downtime: during a rotation both versions unseal, and once every
/// stored blob is resealed the old one is no longer needed.
pub struct Keyring {
    members: std::sync::RwLock<Vec<(u32, std::sync::Arc<dyn RootOfTrust>)>>,
    current: std::sync::atomic::AtomicU32,
    maker: Option<KeyMaker>,
    rotation_unfinished: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring").field("versions", &self.versions()).field("current", &self.current_version()).finish_non_exhaustive()
    }
}

impl Keyring {
    /// A keyring of `members` (version, root) sealing with `current`; `maker` makes the next
    /// version on rotation (`None`: this keyring cannot rotate).
    pub fn new(members: Vec<(u32, std::sync::Arc<dyn RootOfTrust>)>, current: u32, maker: Option<KeyMaker>) -> Result<Self, CryptoError> {
        if !members.iter().any(|(v, _)| *v == current) {
            return Err(CryptoError::Unsupported("the current master-key version is not in the keyring"));
        }
        Ok(Keyring {
            members: std::sync::RwLock::new(members),
            current: std::sync::atomic::AtomicU32::new(current),
            maker,
            rotation_unfinished: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// The version new seals use.
    pub fn current_version(&self) -> u32 {
        self.current.load(std::sync::atomic::Ordering::Acquire)
    }

    fn member(&self, version: u32) -> Result<std::sync::Arc<dyn RootOfTrust>, CryptoError> {
        let members = self.members.read().map_err(|_| CryptoError::Unseal("keyring lock poisoned".into()))?;
        members.iter().find(|(v, _)| *v == version).map(|(_, r)| r.clone()).ok_or(CryptoError::Malformed(
            "sealed under a master-key version this node does not have (start it with every provider the database's keys use)",
        ))
    }

    fn current_member(&self) -> Result<std::sync::Arc<dyn RootOfTrust>, CryptoError> {
        self.member(self.current_version())
    }

    fn all_members(&self) -> Vec<std::sync::Arc<dyn RootOfTrust>> {
        self.members.read().map(|m| m.iter().map(|(_, r)| r.clone()).collect()).unwrap_or_default()
    }

    /// The member unseal shares go to: a sealed Shamir member (the current one, or one a
    /// rotation still needs or is about to switch to), else the current member.
    fn share_member(&self) -> Result<std::sync::Arc<dyn RootOfTrust>, CryptoError> {
        let current = self.current_member()?;
        if current.kind() == "shamir" && current.is_sealed() {
            return Ok(current);
        }
        Ok(self.all_members().into_iter().find(|m| m.kind() == "shamir" && m.status().initialized && m.is_sealed()).unwrap_or(current))
    }
}

impl RootOfTrust for Keyring {
    fn kind(&self) -> &'static str {
        self.current_member().map(|m| m.kind()).unwrap_or("keyring")
    }

    fn seal(&self, context: &[u8], plaintext: &SecretBytes) -> Result<Vec<u8>, CryptoError> {
        self.current_member()?.seal(context, plaintext)
    }

    fn unseal(&self, context: &[u8], sealed: &[u8]) -> Result<SecretBytes, CryptoError> {
        self.member(sealed_version(sealed)?)?.unseal(context, sealed)
    }

    fn status(&self) -> RootStatus {
        match self.current_member() {
            Ok(m) => {
                let progress = self.share_member().map(|s| s.status().progress).unwrap_or(0);
                RootStatus { master_key_version: self.current_version(), sealed: self.is_sealed(), progress, ..m.status() }
            }
            Err(_) => RootStatus {
                kind: "keyring",
                initialized: false,
                sealed: true,
                master_key_version: 0,
                shares: None,
                threshold: None,
                progress: 0,
            },
        }
    }

    fn is_sealed(&self) -> bool {
        if self.current_member().map(|m| m.is_sealed()).unwrap_or(true) {
            return true;
        }
        self.rotation_unfinished.load(std::sync::atomic::Ordering::Acquire) && self.all_members().iter().any(|m| m.is_sealed())
    }

    fn init_shares(&self, shares: u8, threshold: u8) -> Result<Vec<String>, CryptoError> {
        self.current_member()?.init_shares(shares, threshold)
    }

    fn submit_share(&self, share: &str) -> Result<RootStatus, CryptoError> {
        self.share_member()?.submit_share(share)?;
        Ok(self.status())
    }

    fn set_rotation_unfinished(&self, unfinished: bool) {
        self.rotation_unfinished.store(unfinished, std::sync::atomic::Ordering::Release);
    }

    fn seal_now(&self) -> Result<(), CryptoError> {
        self.current_member()?.seal_now()
    }

    fn reset_unseal(&self) -> Result<(), CryptoError> {
        match self.share_member() {
            Ok(m) => m.reset_unseal(),
            Err(_) => Ok(()),
        }
    }

    fn prepare_version(&self, version: u32, params: &NewKeyParams) -> Result<Rotated, CryptoError> {
        let maker = self.maker.as_ref().ok_or(CryptoError::Unsupported("this root of trust cannot make new master keys"))?;
        if version <= self.versions().into_iter().max().unwrap_or(0) {
            return Err(CryptoError::Unsupported("a new master-key version must be newer than every existing one"));
        }
        if self.is_sealed() {
            return Err(CryptoError::Sealed);
        }
        let (root, shares) = maker(version, params)?;
        let kind = root.kind();
        let mut members = self.members.write().map_err(|_| CryptoError::Unseal("keyring lock poisoned".into()))?;
        members.push((version, root));
        Ok(Rotated { kind, shares })
    }

    fn use_version(&self, version: u32) -> Result<(), CryptoError> {
        if self.member(version)?.is_sealed() {
            return Err(CryptoError::Sealed);
        }
        self.current.store(version, std::sync::atomic::Ordering::Release);
        Ok(())
    }

    fn versions(&self) -> Vec<u32> {
        let mut v: Vec<u32> = self.members.read().map(|m| m.iter().map(|(v, _)| *v).collect()).unwrap_or_default();
        v.sort_unstable();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_path(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("clavis-seal-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_file(&dir);
        dir
    }

    #[test]
    fn create_open_seal_unseal() {
        let p = temp_path("roundtrip");
        let a = LocalKeyFile::create(&p).expect("create");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&p).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(LocalKeyFile::create(&p).is_err(), "must not overwrite an existing key file");
        let b = LocalKeyFile::open(&p).expect("open");
        let secret = SecretBytes::from_slice(b"key material");
        let sealed = a.seal(b"ctx", &secret).expect("seal");
        assert_eq!(sealed[0], 1);
        assert!(!sealed.windows(12).any(|w| w == b"key material"));
        assert_eq!(b.unseal(b"ctx", &sealed).expect("unseal"), secret);
        assert!(b.unseal(b"other", &sealed).is_err(), "context is bound");
        let mut t = sealed.clone();
        t[2] ^= 1;
        assert!(b.unseal(b"ctx", &t).is_err(), "header is bound");
        std::fs::remove_file(&p).expect("cleanup");
    }

    #[test]
    fn shamir_root_init_unseal_seal() {
        let p = temp_path("shamir.conf");
        let root = ShamirRoot::load(&p).expect("load");
        assert!(!root.status().initialized && root.is_sealed());
        assert!(matches!(root.seal(b"c", &SecretBytes::from_slice(b"x")), Err(CryptoError::Sealed)));
        let shares = root.init_shares(5, 3).expect("init");
        assert_eq!(shares.len(), 5);
        assert!(root.init_shares(5, 3).is_err(), "initialised once");
        let sealed = root.seal(b"ctx", &SecretBytes::from_slice(b"material")).expect("seal");
        let conf = std::fs::read_to_string(&p).expect("conf");
        for s in &shares {
            assert!(!conf.contains(&s[3..]), "no share in the configuration");
        }
        // A fresh process: sealed until three shares arrive.
        let restarted = ShamirRoot::load(&p).expect("load");
        assert!(restarted.is_sealed() && restarted.status().initialized);
        assert_eq!(restarted.submit_share(&shares[4]).expect("1").progress, 1);
        assert!(restarted.submit_share(&shares[4]).is_err(), "duplicate share");
        assert!(restarted.submit_share("nonsense").is_err());
        assert!(restarted.submit_share(&shares[1]).expect("2").sealed);
        let st = restarted.submit_share(&shares[2]).expect("3");
        assert!(!st.sealed && st.progress == 0);
        assert_eq!(restarted.unseal(b"ctx", &sealed).expect("unseal").expose_secret(), b"material");
        // Sealing forgets the key.
        restarted.seal_now().expect("seal");
        assert!(matches!(restarted.unseal(b"ctx", &sealed), Err(CryptoError::Sealed)));
        // A corrupted share, or one with an x beyond the split, is refused alone, as it is
        // submitted, and never joins the unseal.
        let corrupt = |share: &str| {
            let mut bad = share.to_owned().into_bytes();
            let last = bad.len() - 1;
            bad[last] = if bad[last] == b'0' { b'1' } else { b'0' };
            String::from_utf8(bad).expect("utf8")
        };
        restarted.submit_share(&shares[1]).expect("good share");
        for junk in [corrupt(&shares[0]), format!("06-{}", "00".repeat(32))] {
            let e = restarted.submit_share(&junk).expect_err("junk share");
            assert!(e.to_string().contains("not an unseal share"), "{e}");
        }
        assert_eq!(restarted.status().progress, 1);
        for s in [&shares[3], &shares[0]] {
            restarted.submit_share(s).expect("good shares");
        }
        assert!(!restarted.is_sealed());

        // A configuration from before share checks: a corrupted share is only found out at the
        // reconstruction, which resets; the first unseal that succeeds writes the checks of
        // every share, computed from the ones submitted.
        let old: String = conf.lines().filter(|l| !l.starts_with("share.")).map(|l| format!("{l}\n")).collect();
        assert_ne!(old, conf, "the configuration has share checks");
        std::fs::write(&p, &old).expect("old configuration");
        let legacy = ShamirRoot::load(&p).expect("load");
        legacy.submit_share(&corrupt(&shares[0])).expect("accepted for now");
        legacy.submit_share(&shares[1]).expect("accepted for now");
        let e = legacy.submit_share(&shares[2]).expect_err("wrong reconstruction");
        assert!(e.to_string().contains("do not reconstruct"), "{e}");
        assert_eq!(legacy.status().progress, 0);
        for s in [&shares[4], &shares[1], &shares[2]] {
            legacy.submit_share(s).expect("good shares");
        }
        assert!(!legacy.is_sealed());
        assert_eq!(std::fs::read_to_string(&p).expect("conf"), conf, "the checks of all five shares, as at init");
        // An offline tool's root never rewrites the file.
        std::fs::write(&p, &old).expect("old configuration");
        let offline = ShamirRoot::load(&p).expect("load").read_only();
        for s in [&shares[4], &shares[1], &shares[2]] {
            offline.submit_share(s).expect("good shares");
        }
        assert!(!offline.is_sealed());
        assert_eq!(std::fs::read_to_string(&p).expect("conf"), old, "left as it was");
        std::fs::remove_file(&p).expect("cleanup");
    }

    #[test]
    fn keyring_rotates_and_unseals_every_version() {
        let p1 = temp_path("ring-v1");
        let p2 = temp_path("ring-v2");
        let v1: std::sync::Arc<dyn RootOfTrust> = std::sync::Arc::new(LocalKeyFile::create(&p1).expect("v1"));
        let p2c = p2.clone();
        let maker: KeyMaker = Box::new(move |v, _| {
            Ok((std::sync::Arc::new(LocalKeyFile::create(&p2c)?.with_version(v)) as std::sync::Arc<dyn RootOfTrust>, None))
        });
        let ring = Keyring::new(vec![(1, v1)], 1, Some(maker)).expect("ring");
        let secret = SecretBytes::from_slice(b"material");
        let old = ring.seal(b"c", &secret).expect("seal v1");
        assert_eq!(sealed_version(&old).expect("v"), 1);
        assert!(ring.prepare_version(1, &NewKeyParams::default()).is_err(), "versions only grow");
        assert_eq!(ring.prepare_version(2, &NewKeyParams::default()).expect("prepare").kind, "file");
        assert_eq!(sealed_version(&ring.seal(b"c", &secret).expect("seal")).expect("v"), 1, "prepared, not yet in use");
        ring.use_version(2).expect("switch");
        let new = ring.seal(b"c", &secret).expect("seal v2");
        assert_eq!((sealed_version(&new).expect("v"), ring.status().master_key_version, ring.versions()), (2, 2, vec![1, 2]));
        assert_eq!(ring.unseal(b"c", &old).expect("old"), secret);
        assert_eq!(ring.unseal(b"c", &new).expect("new"), secret);
        let mut unknown = new.clone();
        unknown[4] = 9;
        assert!(ring.unseal(b"c", &unknown).is_err());
        std::fs::remove_file(&p1).expect("cleanup");
        std::fs::remove_file(&p2).expect("cleanup");
    }

    #[cfg(unix)]
    #[test]
    fn refuses_world_readable_key_file() {
        use std::os::unix::fs::PermissionsExt;
        let p = temp_path("perm");
        LocalKeyFile::create(&p).expect("create");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        assert!(LocalKeyFile::open(&p).is_err());
        std::fs::remove_file(&p).expect("cleanup");
    }
}
