//! The PKCS#11 root of trust: the master key is a non-extractable AES-256 key inside an HSM
//! (SoftHSM2 in tests), and every seal and unseal is an AES-GCM operation the HSM performs
//! (`CKM_AES_GCM`, 96-bit IV chosen by Clavis, 128-bit tag). The key never leaves the token.
//!
//! The HSM is off the hot path: the core keeps unsealed material in memory (zeroized on
//! eviction), so only a cache miss (a key's first use since start, a rotation, an import) calls
//! the HSM. One logged-in session serves every call, behind a mutex.
//!
//! Sealed layout: the same as the local key file's (`0x01 | version | IV (12) | ciphertext |
//! tag (16)`, AAD `"clavis-seal-v1" 0x00 || header || context`), so tools that read sealed data
//! need no second format.

use crate::seal::{RootOfTrust, RootStatus, SEAL_FORMAT_V1, SEAL_HEADER_LEN, seal_aad};
use crate::{CryptoError, SecretBytes, random};
use cryptoki::context::{CInitializeArgs, Pkcs11};
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::object::{Attribute, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

const IV_LEN: usize = 12;

/// Where the HSM key is.
#[derive(Debug, Clone)]
pub struct Pkcs11Config {
    /// The PKCS#11 module (for SoftHSM2: `/usr/lib/softhsm/libsofthsm2.so`).
    pub module: PathBuf,
    /// The token, by label (or `slot`).
    pub token_label: Option<String>,
    /// The token, by slot id.
    pub slot: Option<u64>,
    /// The user PIN (from a file or the environment, never the command line).
    pub pin: SecretBytes,
    /// The AES key's label; created non-extractable if the token has none.
    pub key_label: String,
}

/// A logged-in session to the token, shared by every master-key version it holds.
struct Token {
    // Dropped in order: the session before the context that owns the module.
    session: Mutex<Session>,
    _context: Pkcs11,
}

/// A master key in an HSM.
pub struct Pkcs11Root {
    token: Arc<Token>,
    key: ObjectHandle,
    label: String,
    version: u32,
}

impl std::fmt::Debug for Pkcs11Root {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11Root").field("key_label", &self.label).finish_non_exhaustive()
    }
}

fn hsm(what: &str) -> impl Fn(cryptoki::error::Error) -> CryptoError + '_ {
    move |e| CryptoError::Hsm(format!("{what}: {e}"))
}

/// A logged-in token: the master-key versions it holds are found in it by label.
#[derive(Clone)]
pub struct Pkcs11Token(Arc<Token>);

impl std::fmt::Debug for Pkcs11Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11Token").finish_non_exhaustive()
    }
}

impl Pkcs11Token {
    /// Loads the module, finds the token and logs in with the PIN. Every failure says what was
    /// wrong: a missing module, no such token, a wrong PIN.
    pub fn open(config: &Pkcs11Config) -> Result<Self, CryptoError> {
        let context = Pkcs11::new(&config.module).map_err(hsm(&format!("loading the PKCS#11 module {}", config.module.display())))?;
        context.initialize(CInitializeArgs::OsThreads).map_err(hsm("initialising the PKCS#11 module"))?;
        let slots = context.get_slots_with_token().map_err(hsm("listing the slots"))?;
        let slot = match (&config.token_label, config.slot) {
            (Some(label), _) => slots
                .into_iter()
                .find(|s| context.get_token_info(*s).is_ok_and(|t| t.label().trim_end() == label))
                .ok_or_else(|| CryptoError::Hsm(format!("no token labelled {label:?} (is it initialised? softhsm2-util --show-slots)")))?,
            (None, Some(id)) => {
                slots.into_iter().find(|s| s.id() == id).ok_or_else(|| CryptoError::Hsm(format!("no token in slot {id}")))?
            }
            (None, None) => return Err(CryptoError::Hsm("name the token: a token label or a slot".into())),
        };
        let session = context.open_rw_session(slot).map_err(hsm("opening a session"))?;
        let pin = AuthPin::new(String::from_utf8_lossy(config.pin.expose_secret()).trim_end_matches(['\n', '\r']).to_owned());
        session.login(UserType::User, Some(&pin)).map_err(|e| match e {
            cryptoki::error::Error::Pkcs11(cryptoki::error::RvError::PinIncorrect, _) => CryptoError::Hsm("the PIN is incorrect".into()),
            other => CryptoError::Hsm(format!("logging in to the token: {other}")),
        })?;
        Ok(Pkcs11Token(Arc::new(Token { session: Mutex::new(session), _context: context })))
    }

    /// The master key labelled `label`, sealing as master-key version `version`. A token
    /// without that key is an error naming it, unless `create` (a new deployment's first key,
    /// or a rotation's new version): then it is created (AES-256, `CKA_SENSITIVE`, not
    /// `CKA_EXTRACTABLE`, a token object). A self-test checks the token's `CKM_AES_GCM`.
    pub fn key(&self, label: &str, version: u32, create: bool) -> Result<Pkcs11Root, CryptoError> {
        Pkcs11Root::with_key(self.0.clone(), label, version, create)
    }
}

impl Pkcs11Root {
    /// Opens the token and finds the key labelled `config.key_label` (master-key version 1),
    /// creating it if the token has none.
    pub fn open(config: &Pkcs11Config) -> Result<Self, CryptoError> {
        Pkcs11Token::open(config)?.key(&config.key_label, 1, true)
    }

    fn with_key(token: Arc<Token>, key_label: &str, version: u32, create: bool) -> Result<Self, CryptoError> {
        let label = key_label.as_bytes().to_vec();
        let session = token.session.lock().map_err(|_| CryptoError::Hsm("session lock poisoned".into()))?;
        let found = session
            .find_objects(&[Attribute::Class(ObjectClass::SECRET_KEY), Attribute::Label(label.clone())])
            .map_err(hsm("looking for the master key"))?;
        let key = match found.as_slice() {
            [key] => *key,
            [] if !create => {
                return Err(CryptoError::Hsm(format!(
                    "the token has no key labelled {key_label:?} (master-key version {version}); it was created there, so it was deleted or this is another token"
                )));
            }
            [] => session
                .generate_key(
                    &Mechanism::AesKeyGen,
                    &[
                        Attribute::Class(ObjectClass::SECRET_KEY),
                        Attribute::ValueLen(32.into()),
                        Attribute::Token(true),
                        Attribute::Private(true),
                        Attribute::Sensitive(true),
                        Attribute::Extractable(false),
                        Attribute::Encrypt(true),
                        Attribute::Decrypt(true),
                        Attribute::Label(label),
                    ],
                )
                .map_err(hsm("creating the master key in the token"))?,
            _ => return Err(CryptoError::Hsm(format!("several keys are labelled {key_label:?}; Clavis needs exactly one"))),
        };
        drop(session);
        let root = Pkcs11Root { token, key, label: key_label.to_owned(), version };
        // A self-test: the token must seal and unseal with CKM_AES_GCM under this key.
        let probe = SecretBytes::from_slice(b"clavis pkcs11 self-test");
        let sealed = root
            .seal(b"clavis/pkcs11-self-test\0", &probe)
            .map_err(|e| CryptoError::Hsm(format!("the token cannot seal with CKM_AES_GCM under {key_label:?}: {e}")))?;
        match root.unseal(b"clavis/pkcs11-self-test\0", &sealed) {
            Ok(back) if back == probe => Ok(root),
            _ => Err(CryptoError::Hsm("the token's CKM_AES_GCM did not round-trip".into())),
        }
    }
}

impl RootOfTrust for Pkcs11Root {
    fn kind(&self) -> &'static str {
        "pkcs11"
    }

    fn seal(&self, context: &[u8], plaintext: &SecretBytes) -> Result<Vec<u8>, CryptoError> {
        let mut header = vec![SEAL_FORMAT_V1];
        header.extend_from_slice(&self.version.to_be_bytes());
        let mut iv = random::bytes(IV_LEN)?;
        let aad = seal_aad(&header, context);
        let ciphertext = {
            let params = GcmParams::new(&mut iv, &aad, 128.into()).map_err(hsm("GCM parameters"))?;
            let session = self.token.session.lock().map_err(|_| CryptoError::Hsm("session lock poisoned".into()))?;
            session.encrypt(&Mechanism::AesGcm(params), self.key, plaintext.expose_secret()).map_err(hsm("sealing"))?
        };
        let mut out = header;
        out.extend_from_slice(&iv);
        out.extend_from_slice(&ciphertext);
        Ok(out)
    }

    fn unseal(&self, context: &[u8], sealed: &[u8]) -> Result<SecretBytes, CryptoError> {
        if sealed.len() < SEAL_HEADER_LEN + IV_LEN + 16 || sealed[0] != SEAL_FORMAT_V1 {
            return Err(CryptoError::Malformed("unknown sealed-data format"));
        }
        let (header, rest) = sealed.split_at(SEAL_HEADER_LEN);
        let (iv, body) = rest.split_at(IV_LEN);
        let mut iv = iv.to_vec();
        let aad = seal_aad(header, context);
        let params = GcmParams::new(&mut iv, &aad, 128.into()).map_err(hsm("GCM parameters"))?;
        let session = self.token.session.lock().map_err(|_| CryptoError::Hsm("session lock poisoned".into()))?;
        match session.decrypt(&Mechanism::AesGcm(params), self.key, body) {
            Ok(plain) => Ok(SecretBytes::new(plain)),
            // A tag that does not verify is an authentication failure, not an HSM fault.
            Err(cryptoki::error::Error::Pkcs11(cryptoki::error::RvError::EncryptedDataInvalid, _))
            | Err(cryptoki::error::Error::Pkcs11(cryptoki::error::RvError::EncryptedDataLenRange, _)) => {
                Err(CryptoError::AuthenticationFailed)
            }
            Err(e) => Err(CryptoError::Hsm(format!("unsealing: {e}"))),
        }
    }

    fn status(&self) -> RootStatus {
        RootStatus {
            kind: "pkcs11",
            initialized: true,
            sealed: false,
            master_key_version: self.version,
            shares: None,
            threshold: None,
            progress: 0,
        }
    }
}
