//! Choosing and opening the root of trust from the command line (shared by `clavis serve` and
//! the offline `clavis audit` commands).
//!
//! PKCS#11 is the `pkcs11` cargo feature (on by default). A binary built without it still
//! accepts `--root-of-trust pkcs11` and its options, and refuses them when an HSM would be
//! opened, with an error naming the missing feature.

use anyhow::{Context, bail};
#[cfg(feature = "pkcs11")]
use clavis_crypto::SecretBytes;
#[cfg(feature = "pkcs11")]
use clavis_crypto::pkcs11::{Pkcs11Config, Pkcs11Token};
use clavis_crypto::seal::{LocalKeyFile, RootOfTrust};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// An open, logged-in HSM session: the master keys of the `pkcs11` root of trust are found in it
/// by label ([`RootArgs::hsm_key`]).
#[cfg(feature = "pkcs11")]
pub type Hsm = Pkcs11Token;

/// Without the `pkcs11` feature no HSM can be opened, so none exists: the type has no values.
#[cfg(not(feature = "pkcs11"))]
#[derive(Debug, Clone)]
pub enum Hsm {}

/// The master key file inside a data directory (the `file` root of trust).
pub const MASTER_KEY_FILE: &str = "master.key";

/// The key file of master-key version `version`: `master.key` for 1, `master-vN.key` after.
pub fn key_file_path(data_dir: &Path, version: u32) -> PathBuf {
    if version == 1 { data_dir.join(MASTER_KEY_FILE) } else { data_dir.join(format!("master-v{version}.key")) }
}

/// Where the master key comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RootKind {
    /// `DATA_DIR/master.key` (the development default).
    File,
    /// Split into unseal shares (`clavis operator init`); the server starts sealed.
    Shamir,
    /// A non-extractable AES key in a PKCS#11 HSM.
    Pkcs11,
}

/// The root-of-trust options.
#[derive(Debug, Clone, clap::Args)]
pub struct RootArgs {
    /// The root of trust: `file` (DATA_DIR/master.key), `shamir` (unseal shares) or `pkcs11`
    /// (an HSM key).
    #[arg(long, env = "CLAVIS_ROOT_OF_TRUST", value_enum, default_value = "file")]
    pub root_of_trust: RootKind,
    /// PKCS#11: the module (SoftHSM2: /usr/lib/softhsm/libsofthsm2.so).
    #[arg(long, env = "CLAVIS_PKCS11_MODULE")]
    pub pkcs11_module: Option<PathBuf>,
    /// PKCS#11: the token's label.
    #[arg(long, env = "CLAVIS_PKCS11_TOKEN_LABEL")]
    pub pkcs11_token_label: Option<String>,
    /// PKCS#11: the token's slot id (instead of the label).
    #[arg(long, env = "CLAVIS_PKCS11_SLOT")]
    pub pkcs11_slot: Option<u64>,
    /// PKCS#11: the master key's label (created, non-extractable, if the token has none).
    #[arg(long, env = "CLAVIS_PKCS11_KEY_LABEL", default_value = "clavis-master-key")]
    pub pkcs11_key_label: String,
    /// PKCS#11: a file holding the user PIN. Otherwise the PIN is read from the environment
    /// variable CLAVIS_PKCS11_PIN; never from the command line.
    #[arg(long, env = "CLAVIS_PKCS11_PIN_FILE")]
    pub pkcs11_pin_file: Option<PathBuf>,
}

impl RootArgs {
    #[cfg(feature = "pkcs11")]
    fn pin(&self) -> anyhow::Result<SecretBytes> {
        if let Some(path) = &self.pkcs11_pin_file {
            let bytes = std::fs::read(path).with_context(|| format!("reading the PIN file {}", path.display()))?;
            return Ok(SecretBytes::new(bytes));
        }
        match std::env::var("CLAVIS_PKCS11_PIN") {
            Ok(pin) if !pin.is_empty() => Ok(SecretBytes::new(pin.into_bytes())),
            _ => bail!("the PKCS#11 PIN is needed: set CLAVIS_PKCS11_PIN or --pkcs11-pin-file"),
        }
    }

    /// Opens (and logs in to) the PKCS#11 token; its keys are found by label
    /// ([`RootArgs::hsm_label`]).
    #[cfg(feature = "pkcs11")]
    pub fn open_pkcs11(&self) -> anyhow::Result<Hsm> {
        let module = self.pkcs11_module.clone().context("--pkcs11-module (or CLAVIS_PKCS11_MODULE) is needed")?;
        if self.pkcs11_token_label.is_none() && self.pkcs11_slot.is_none() {
            bail!("name the token: --pkcs11-token-label or --pkcs11-slot");
        }
        let config = Pkcs11Config {
            module,
            token_label: self.pkcs11_token_label.clone(),
            slot: self.pkcs11_slot,
            pin: self.pin()?,
            key_label: self.pkcs11_key_label.clone(),
        };
        Pkcs11Token::open(&config).context("opening the PKCS#11 root of trust")
    }

    /// Refuses, before anything is created, a root of trust this binary was built without.
    pub fn check_available(&self) -> anyhow::Result<()> {
        if self.root_of_trust == RootKind::Pkcs11 && !cfg!(feature = "pkcs11") {
            self.open_pkcs11()?;
        }
        Ok(())
    }

    /// Without the `pkcs11` feature: the error that says so.
    #[cfg(not(feature = "pkcs11"))]
    pub fn open_pkcs11(&self) -> anyhow::Result<Hsm> {
        bail!(
            "this clavis was built without PKCS#11 support (the `pkcs11` cargo feature), so --root-of-trust pkcs11 is unavailable: build it with its default features"
        )
    }

    /// Master-key version `version` in the HSM (created, non-extractable, if `create` and the
    /// token has none).
    pub fn hsm_key(&self, hsm: &Hsm, version: u32, create: bool) -> Result<Arc<dyn RootOfTrust>, clavis_crypto::CryptoError> {
        #[cfg(feature = "pkcs11")]
        return Ok(Arc::new(hsm.key(&self.hsm_label(version), version, create)?));
        #[cfg(not(feature = "pkcs11"))]
        {
            let _ = (version, create);
            match *hsm {}
        }
    }

    /// The HSM key label of master-key version `version`.
    #[cfg(feature = "pkcs11")]
    pub fn hsm_label(&self, version: u32) -> String {
        if version == 1 { self.pkcs11_key_label.clone() } else { format!("{}-v{version}", self.pkcs11_key_label) }
    }

    /// The provider name new master keys go to.
    pub fn kind_name(&self) -> &'static str {
        match self.root_of_trust {
            RootKind::File => "file",
            RootKind::Shamir => "shamir",
            RootKind::Pkcs11 => "pkcs11",
        }
    }

    /// Offline (the audit commands): the root that unseals `sealed`, by the master-key version
    /// in its header: that version's key file if the data directory has it, else that version's
    /// HSM key when PKCS#11 options are given.
    pub fn open_for_blob(&self, data_dir: &Path, sealed: &[u8]) -> anyhow::Result<Arc<dyn RootOfTrust>> {
        let version = clavis_crypto::seal::sealed_version(sealed)?;
        let file = key_file_path(data_dir, version);
        if file.exists() && self.root_of_trust != RootKind::Pkcs11 {
            return Ok(Arc::new(LocalKeyFile::open(&file).context("opening the master key file")?.with_version(version)));
        }
        match self.root_of_trust {
            RootKind::Pkcs11 => {
                let token = self.open_pkcs11()?;
                Ok(self.hsm_key(&token, version, false)?)
            }
            _ => bail!(
                "master-key version {version} is neither in {} nor reachable (for an HSM, give the --root-of-trust pkcs11 options)",
                file.display()
            ),
        }
    }
}
