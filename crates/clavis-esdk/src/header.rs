//! The message header (version 2): its fields, its serialization, a bounded parser, and the
//! key derivation that ties the data key to it (HKDF-SHA512 salted with the message id; the
//! commitment in the header is checked in constant time before anything is decrypted).

use crate::input::Input;
use crate::{Error, Limits, MAX_FRAME_LENGTH, MAX_HEADER_LEN, Suite};
use clavis_crypto::SecretBytes;
use clavis_crypto::gcm::{Aes256GcmKey, TAG_LEN};
use clavis_crypto::kdf::HkdfSha512Prk;
use std::collections::BTreeMap;
use std::io::Read;

/// The encryption context: UTF-8 pairs, kept sorted by key (byte order), which is the order
/// they are serialized in.
pub type EncryptionContext = BTreeMap<String, String>;

/// Where the signed suite keeps its verification key (base64 of the compressed point).
pub const PUBLIC_KEY_CONTEXT_KEY: &str = "aws-crypto-public-key";
/// Context keys with this prefix are the SDK's own; callers may not set them.
pub const RESERVED_CONTEXT_PREFIX: &str = "aws-crypto-";

/// Format version 2.
const VERSION: u8 = 0x02;
/// Content type: framed.
const FRAMED: u8 = 0x02;
/// Content type: non-framed (read only to refuse it clearly).
const NON_FRAMED: u8 = 0x01;
/// Message id length in version 2.
pub(crate) const MESSAGE_ID_LEN: usize = 32;
/// The commitment value (algorithm suite data) length.
const COMMITMENT_LEN: usize = 32;

/// A data key wrapped by one key provider (for KMS: provider `aws-kms`, the key ARN as provider
/// information, and the KMS ciphertext blob).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncryptedDataKey {
    /// The key provider (`aws-kms`).
    pub provider_id: String,
    /// The provider's key identifier (the KMS key ARN).
    pub provider_info: Vec<u8>,
    /// The wrapped data key.
    pub ciphertext: Vec<u8>,
}

/// A parsed or built header. Nothing in it is secret.
#[derive(Debug, Clone)]
pub struct Header {
    /// The algorithm suite.
    pub suite: Suite,
    /// The random message id (the HKDF salt).
    pub message_id: [u8; MESSAGE_ID_LEN],
    /// The encryption context.
    pub context: EncryptionContext,
    /// The wrapped copies of the data key.
    pub data_keys: Vec<EncryptedDataKey>,
    /// Plaintext bytes per regular frame.
    pub frame_length: u32,
    /// The key commitment.
    pub commitment: [u8; COMMITMENT_LEN],
    /// The header authentication tag.
    pub auth_tag: [u8; TAG_LEN],
    /// The serialized header body, exactly as written or read: the AAD of the header tag.
    body: Vec<u8>,
}

fn push_u16_len(out: &mut Vec<u8>, bytes: &[u8], what: &str) -> Result<(), Error> {
    let len = u16::try_from(bytes.len()).map_err(|_| Error::InvalidInput(format!("{what} is longer than 65535 bytes")))?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
    Ok(())
}

/// The serialized encryption context (empty for an empty context).
pub(crate) fn serialize_context(context: &EncryptionContext) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    if context.is_empty() {
        return Ok(out);
    }
    let count = u16::try_from(context.len()).map_err(|_| Error::InvalidInput("more than 65535 encryption context pairs".into()))?;
    out.extend_from_slice(&count.to_be_bytes());
    for (k, v) in context {
        if k.is_empty() {
            return Err(Error::InvalidInput("an encryption context key is empty".into()));
        }
        push_u16_len(&mut out, k.as_bytes(), "an encryption context key")?;
        push_u16_len(&mut out, v.as_bytes(), "an encryption context value")?;
    }
    if out.len() > usize::from(u16::MAX) {
        return Err(Error::InvalidInput("the serialized encryption context is longer than 65535 bytes".into()));
    }
    Ok(out)
}

/// Parses a serialized (non-empty) encryption context.
fn parse_context(bytes: &[u8]) -> Result<EncryptionContext, Error> {
    fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Result<&'a [u8], Error> {
        if bytes.len() < n {
            return Err(Error::Malformed("encryption context shorter than its pairs"));
        }
        let (head, rest) = bytes.split_at(n);
        *bytes = rest;
        Ok(head)
    }
    fn take_str(bytes: &mut &[u8]) -> Result<String, Error> {
        let len_bytes = take(bytes, 2)?;
        let len = usize::from(u16::from_be_bytes([len_bytes[0], len_bytes[1]]));
        let s = take(bytes, len)?;
        String::from_utf8(s.to_vec()).map_err(|_| Error::Malformed("encryption context is not UTF-8"))
    }
    let mut rest = bytes;
    let count_bytes = take(&mut rest, 2)?;
    let count = u16::from_be_bytes([count_bytes[0], count_bytes[1]]);
    let mut context = EncryptionContext::new();
    for _ in 0..count {
        let k = take_str(&mut rest)?;
        let v = take_str(&mut rest)?;
        if context.insert(k, v).is_some() {
            return Err(Error::Malformed("duplicate encryption context key"));
        }
    }
    if !rest.is_empty() {
        return Err(Error::Malformed("encryption context longer than its pairs"));
    }
    Ok(context)
}

/// The derived data key (the frames' and header tag's AES-256-GCM key) and the commitment.
pub(crate) fn derive(
    suite: Suite,
    message_id: &[u8; MESSAGE_ID_LEN],
    data_key: &SecretBytes,
) -> Result<(Aes256GcmKey, [u8; COMMITMENT_LEN]), Error> {
    if data_key.len() != 32 {
        return Err(Error::InvalidInput(format!("the data key is {} bytes, not 32", data_key.len())));
    }
    let prk = HkdfSha512Prk::extract(message_id, data_key);
    let key = Aes256GcmKey::new(&prk.expand(&[&suite.id().to_be_bytes(), b"DERIVEKEY"], 32)?)?;
    let commit = prk.expand(&[b"COMMITKEY"], COMMITMENT_LEN)?;
    let mut commitment = [0u8; COMMITMENT_LEN];
    commitment.copy_from_slice(commit.expose_secret());
    Ok((key, commitment))
}

impl Header {
    /// Builds a header (with a zero tag, set by the writer once the key is derived).
    pub(crate) fn build(
        suite: Suite,
        message_id: [u8; MESSAGE_ID_LEN],
        context: EncryptionContext,
        data_keys: Vec<EncryptedDataKey>,
        frame_length: u32,
        commitment: [u8; COMMITMENT_LEN],
    ) -> Result<Header, Error> {
        let mut body = vec![VERSION];
        body.extend_from_slice(&suite.id().to_be_bytes());
        body.extend_from_slice(&message_id);
        push_u16_len(&mut body, &serialize_context(&context)?, "the encryption context")?;
        if data_keys.is_empty() {
            return Err(Error::InvalidInput("at least one encrypted data key is required".into()));
        }
        let count = u16::try_from(data_keys.len()).map_err(|_| Error::InvalidInput("more than 65535 encrypted data keys".into()))?;
        body.extend_from_slice(&count.to_be_bytes());
        for edk in &data_keys {
            push_u16_len(&mut body, edk.provider_id.as_bytes(), "a key provider id")?;
            push_u16_len(&mut body, &edk.provider_info, "a key provider's information")?;
            push_u16_len(&mut body, &edk.ciphertext, "an encrypted data key")?;
        }
        body.push(FRAMED);
        body.extend_from_slice(&frame_length.to_be_bytes());
        body.extend_from_slice(&commitment);
        if body.len() + TAG_LEN > MAX_HEADER_LEN {
            return Err(Error::HeaderTooLarge);
        }
        Ok(Header { suite, message_id, context, data_keys, frame_length, commitment, auth_tag: [0; TAG_LEN], body })
    }

    /// The serialized header body (what the header tag authenticates).
    pub fn body_bytes(&self) -> &[u8] {
        &self.body
    }

    /// The whole serialized header: body and authentication tag.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.body.len() + TAG_LEN);
        out.extend_from_slice(&self.body);
        out.extend_from_slice(&self.auth_tag);
        out
    }

    /// Reads a header, bounding every length.
    pub(crate) fn read<R: Read>(input: &mut Input<R>, limits: &Limits) -> Result<Header, Error> {
        let mut rec = Recorder { input, body: Vec::new() };
        let version = rec.take::<1>()?[0];
        if version != VERSION {
            return Err(Error::UnsupportedVersion(version));
        }
        let suite_id = u16::from_be_bytes(rec.take()?);
        let suite = Suite::from_id(suite_id).ok_or(Error::UnsupportedSuite(suite_id))?;
        let message_id: [u8; MESSAGE_ID_LEN] = rec.take()?;
        let aad_len = usize::from(u16::from_be_bytes(rec.take()?));
        let context = if aad_len == 0 { EncryptionContext::new() } else { parse_context(&rec.take_vec(aad_len)?)? };
        let count = u16::from_be_bytes(rec.take()?);
        if count == 0 {
            return Err(Error::Malformed("no encrypted data keys"));
        }
        if let Some(max) = limits.max_encrypted_data_keys
            && count > max
        {
            return Err(Error::TooManyDataKeys { count: usize::from(count), max });
        }
        let mut data_keys = Vec::new();
        for _ in 0..count {
            let len = usize::from(u16::from_be_bytes(rec.take()?));
            let provider_id = String::from_utf8(rec.take_vec(len)?).map_err(|_| Error::Malformed("key provider id is not UTF-8"))?;
            let len = usize::from(u16::from_be_bytes(rec.take()?));
            let provider_info = rec.take_vec(len)?;
            let len = usize::from(u16::from_be_bytes(rec.take()?));
            let ciphertext = rec.take_vec(len)?;
            data_keys.push(EncryptedDataKey { provider_id, provider_info, ciphertext });
        }
        match rec.take::<1>()?[0] {
            FRAMED => {}
            NON_FRAMED => return Err(Error::NonFramed),
            _ => return Err(Error::Malformed("unknown content type")),
        }
        let frame_length = u32::from_be_bytes(rec.take()?);
        if frame_length == 0 || frame_length > MAX_FRAME_LENGTH {
            return Err(Error::FrameLength(frame_length));
        }
        let commitment: [u8; COMMITMENT_LEN] = rec.take()?;
        let body = rec.body;
        let auth_tag = input.read_array()?;
        Ok(Header { suite, message_id, context, data_keys, frame_length, commitment, auth_tag, body })
    }
}

/// Reads fields and keeps their bytes (the header body is the header tag's AAD).
struct Recorder<'a, R> {
    input: &'a mut Input<R>,
    body: Vec<u8>,
}

impl<R: Read> Recorder<'_, R> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], Error> {
        let out = self.take_vec(N)?;
        let mut arr = [0u8; N];
        arr.copy_from_slice(&out);
        Ok(arr)
    }

    fn take_vec(&mut self, n: usize) -> Result<Vec<u8>, Error> {
        if self.body.len() + n + TAG_LEN > MAX_HEADER_LEN {
            return Err(Error::HeaderTooLarge);
        }
        let mut out = vec![0u8; n];
        self.input.read_exact(&mut out)?;
        self.body.extend_from_slice(&out);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests: a failure is the test failing")]
    use super::*;

    fn context(pairs: &[(&str, &str)]) -> EncryptionContext {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    /// The encryption context example of the specification's message-header.md ("Example
    /// Bytes": four pairs, 142 bytes, sorted by key).
    #[test]
    fn context_serialization_matches_the_specification_example() {
        let ctx = context(&[("0This", "is"), ("1an", "encryption"), ("2context", "example"), ("3for", "the AAD")]);
        let bytes = serialize_context(&ctx).unwrap();
        assert_eq!(&bytes[..2], &[0x00, 0x04]);
        assert_eq!(&bytes[2..11], &[0x00, 0x05, b'0', b'T', b'h', b'i', b's', 0x00, 0x02]);
        assert_eq!(parse_context(&bytes).unwrap(), ctx);
        assert!(serialize_context(&EncryptionContext::new()).unwrap().is_empty());
    }

    #[test]
    fn context_parser_refuses_bad_input() {
        let bytes = serialize_context(&context(&[("a", "b"), ("c", "d")])).unwrap();
        for cut in 0..bytes.len() {
            assert!(parse_context(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(parse_context(&longer).is_err());
        // Two pairs with the same key.
        let dup = [0, 2, 0, 1, b'a', 0, 1, b'b', 0, 1, b'a', 0, 1, b'c'];
        assert!(matches!(parse_context(&dup), Err(Error::Malformed("duplicate encryption context key"))));
        let bad_utf8 = [0, 1, 0, 1, 0xff, 0, 0];
        assert!(parse_context(&bad_utf8).is_err());
        assert!(serialize_context(&context(&[("", "x")])).is_err());
        let big = "x".repeat(70_000);
        assert!(serialize_context(&context(&[("k", &big)])).is_err());
    }

    #[test]
    fn derived_keys_depend_on_suite_message_id_and_data_key() {
        let dk = SecretBytes::new(vec![1; 32]);
        let (_, c1) = derive(Suite::Committing, &[0; 32], &dk).unwrap();
        let (_, c2) = derive(Suite::CommittingSigned, &[0; 32], &dk).unwrap();
        let (_, c3) = derive(Suite::Committing, &[1; 32], &dk).unwrap();
        let (_, c4) = derive(Suite::Committing, &[0; 32], &SecretBytes::new(vec![2; 32])).unwrap();
        // The commitment does not depend on the suite (its info is "COMMITKEY" alone).
        assert_eq!(c1, c2);
        assert_ne!(c1, c3);
        assert_ne!(c1, c4);
        assert!(derive(Suite::Committing, &[0; 32], &SecretBytes::new(vec![1; 16])).is_err());
    }
}
