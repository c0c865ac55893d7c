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

const SEAL_FORMAT_V1: u8 = 1;
const SEAL_HEADER_LEN: usize = 5;
const SEAL_DOMAIN: &[u8] = b"clavis-seal-v1\0";

/// A provider of the master key. Implementations must keep the master key out of logs and off
/// disk in the clear (a key file is the one deliberate, documented exception).
pub trait RootOfTrust: Send + Sync {
    /// A short name for status output (`"file"`, `"pkcs11"`, `"shamir"`).
    fn kind(&self) -> &'static str;
    /// Seals `plaintext`, binding it to `context`.
    fn seal(&self, context: &[u8], plaintext: &SecretBytes) -> Result<Vec<u8>, CryptoError>;
    /// Unseals what [`RootOfTrust::seal`] produced with the same `context`.
    fn unseal(&self, context: &[u8], sealed: &[u8]) -> Result<SecretBytes, CryptoError>;
}

fn seal_aad(header: &[u8], context: &[u8]) -> Vec<u8> {
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
        Ok(LocalKeyFile { key: AeadKey::new(&key)?, path: path.to_owned() })
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
        Ok(LocalKeyFile { key: AeadKey::new(&buf)?, path: path.to_owned() })
    }
}

impl RootOfTrust for LocalKeyFile {
    fn kind(&self) -> &'static str {
        "file"
    }

    fn seal(&self, context: &[u8], plaintext: &SecretBytes) -> Result<Vec<u8>, CryptoError> {
        let mut out = Vec::with_capacity(SEAL_HEADER_LEN + 12 + plaintext.len() + 16);
        out.push(SEAL_FORMAT_V1);
        out.extend_from_slice(&LOCAL_KEY_VERSION.to_be_bytes());
        let aad = seal_aad(&out, context);
        self.key.seal_append(&aad, plaintext.expose_secret(), &mut out)?;
        Ok(out)
    }

    fn unseal(&self, context: &[u8], sealed: &[u8]) -> Result<SecretBytes, CryptoError> {
        if sealed.len() < SEAL_HEADER_LEN || sealed[0] != SEAL_FORMAT_V1 {
            return Err(CryptoError::Malformed("unknown sealed-data format"));
        }
        let (header, body) = sealed.split_at(SEAL_HEADER_LEN);
        self.key.open(&seal_aad(header, context), body)
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
