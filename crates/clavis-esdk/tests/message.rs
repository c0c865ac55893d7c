//! The message format through the crate's public API: round trips for both suites over sizes
//! around the frame and batch boundaries, every header field, messages written by the AWS
//! Encryption SDK for Python, and bad input (truncation at every byte, a flipped bit in every
//! byte, the wrong data key, trailing data, other versions and suites) failing cleanly.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests: a failure is the test failing")]

use clavis_crypto::SecretBytes;
use clavis_esdk::{
    DEFAULT_FRAME_LENGTH, Decryptor, EncryptMaterials, EncryptedDataKey, EncryptionContext, Error, Limits, PUBLIC_KEY_CONTEXT_KEY,
    StreamOptions, Suite, encrypt, prepare_context,
};

const SUITES: [Suite; 2] = [Suite::Committing, Suite::CommittingSigned];
const NO_LIMITS: Limits = Limits { max_encrypted_data_keys: None };

fn data_key() -> SecretBytes {
    SecretBytes::new((0..32).collect())
}

fn edk(n: u8) -> EncryptedDataKey {
    EncryptedDataKey {
        provider_id: "aws-kms".into(),
        provider_info: format!("arn:aws:kms:us-east-1:111122223333:key/{n}").into_bytes(),
        ciphertext: vec![n; 40 + usize::from(n)],
    }
}

fn user_context() -> EncryptionContext {
    [("purpose", "test"), ("department", "x")].iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

fn seal(suite: Suite, plaintext: &[u8], frame_length: u32, workers: usize, keys: usize) -> Vec<u8> {
    let (context, signing_key) = prepare_context(suite, user_context()).unwrap();
    let m = EncryptMaterials {
        suite,
        context,
        data_keys: (1..=keys).map(|n| edk(n as u8)).collect(),
        data_key: data_key(),
        signing_key,
        frame_length,
    };
    let mut out = Vec::new();
    let n = encrypt(plaintext, &mut out, m, &StreamOptions { workers, ..StreamOptions::default() }).unwrap();
    assert_eq!(n, plaintext.len() as u64);
    out
}

fn open(message: &[u8], key: &SecretBytes) -> Result<Vec<u8>, Error> {
    let d = Decryptor::new(message, &NO_LIMITS)?;
    let mut out = Vec::new();
    d.decrypt(key, &mut out, &StreamOptions::default())?;
    Ok(out)
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

#[test]
fn round_trips_across_frame_and_batch_boundaries() {
    for suite in SUITES {
        for (frame, sizes) in [
            (1u32, vec![0usize, 1, 2, 5]),
            (64, vec![0, 1, 63, 64, 65, 128, 1000]),
            (DEFAULT_FRAME_LENGTH, vec![0, 4095, 4096, 4097, (1 << 20) + 1, 3 * (1 << 20) + 4096]),
            (1 << 20, vec![(1 << 20) - 1, 1 << 20, 3 << 20]),
        ] {
            for size in sizes {
                for workers in [1, 3] {
                    let plaintext = pattern(size);
                    let message = seal(suite, &plaintext, frame, workers, 1);
                    assert_eq!(open(&message, &data_key()).unwrap(), plaintext, "{suite} frame {frame} size {size}");
                }
            }
        }
    }
}

#[test]
fn progress_reports_the_plaintext_length() {
    let seen = std::sync::Mutex::new(Vec::new());
    let record = |n: u64| seen.lock().unwrap().push(n);
    let (context, signing_key) = prepare_context(Suite::Committing, EncryptionContext::new()).unwrap();
    let m = EncryptMaterials {
        suite: Suite::Committing,
        context,
        data_keys: vec![edk(1)],
        data_key: data_key(),
        signing_key,
        frame_length: 4096,
    };
    let plaintext = pattern(3 << 20);
    let mut out = Vec::new();
    encrypt(&plaintext[..], &mut out, m, &StreamOptions { workers: 2, progress: &record }).unwrap();
    let seen = seen.into_inner().unwrap();
    assert_eq!(seen.last(), Some(&(3 << 20)));
    // Non-decreasing: the last batch may hold only the empty final frame.
    assert!(seen.windows(2).all(|w| w[0] <= w[1]) && seen.len() >= 3);
}

/// The header's bytes, field by field, as the specification lays them out.
#[test]
fn every_header_field() {
    for suite in SUITES {
        let message = seal(suite, b"hello", 1000, 1, 2);
        assert_eq!(message[0], 0x02, "version");
        assert_eq!(u16::from_be_bytes([message[1], message[2]]), suite.id());
        let d = Decryptor::new(&message[..], &NO_LIMITS).unwrap();
        let h = d.header();
        assert_eq!(h.suite, suite);
        assert_eq!(&message[3..35], &h.message_id);
        let mut expected = user_context();
        if suite.is_signed() {
            let public = h.context.get(PUBLIC_KEY_CONTEXT_KEY).unwrap();
            assert_eq!(public.len(), 68, "base64 of a 49-byte compressed point");
            expected.insert(PUBLIC_KEY_CONTEXT_KEY.into(), public.clone());
        }
        assert_eq!(h.context, expected);
        // The context, sorted by key: "department" before "purpose".
        let aad_len = usize::from(u16::from_be_bytes([message[35], message[36]]));
        let aad = &message[37..37 + aad_len];
        assert_eq!(u16::from_be_bytes([aad[0], aad[1]]), if suite.is_signed() { 3 } else { 2 });
        let first_key_len = usize::from(u16::from_be_bytes([aad[2], aad[3]]));
        let first_key = &aad[4..4 + first_key_len];
        assert_eq!(first_key, if suite.is_signed() { b"aws-crypto-public-key".as_slice() } else { b"department".as_slice() });
        assert_eq!(h.data_keys, vec![edk(1), edk(2)]);
        let mut at = 37 + aad_len;
        assert_eq!(u16::from_be_bytes([message[at], message[at + 1]]), 2, "data key count");
        at += 2;
        for k in [edk(1), edk(2)] {
            at += 2 + k.provider_id.len() + 2 + k.provider_info.len() + 2 + k.ciphertext.len();
        }
        assert_eq!(message[at], 0x02, "framed");
        assert_eq!(u32::from_be_bytes(message[at + 1..at + 5].try_into().unwrap()), 1000);
        assert_eq!(h.frame_length, 1000);
        assert_eq!(&message[at + 5..at + 37], &h.commitment);
        assert_eq!(&message[at + 37..at + 53], &h.auth_tag);
        assert_eq!(h.body_bytes(), &message[..at + 37]);
        // One final frame: marker, sequence number 1, IV = the sequence number, length 5.
        let body = &message[at + 53..];
        assert_eq!(&body[..4], &[0xff; 4]);
        assert_eq!(&body[4..8], &[0, 0, 0, 1]);
        assert_eq!(&body[8..20], &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(&body[20..24], &[0, 0, 0, 5]);
        let footer = &body[24 + 5 + 16..];
        if suite.is_signed() {
            let sig_len = usize::from(u16::from_be_bytes([footer[0], footer[1]]));
            assert_eq!(footer.len(), 2 + sig_len);
            assert_eq!(footer[2], 0x30, "DER sequence");
        } else {
            assert!(footer.is_empty());
        }
    }
}

/// A plaintext of exactly two frames: two regular frames, then an empty final frame (the AWS
/// Encryption SDK for Python refuses a final frame as long as the frame length).
#[test]
fn exact_multiple_ends_with_an_empty_final_frame() {
    let message = seal(Suite::Committing, &pattern(128), 64, 1, 1);
    let header_len = Decryptor::new(&message[..], &NO_LIMITS).unwrap().header().to_bytes().len();
    let body = &message[header_len..];
    assert_eq!(&body[..4], &[0, 0, 0, 1]);
    let second = &body[4 + 12 + 64 + 16..];
    assert_eq!(&second[..4], &[0, 0, 0, 2]);
    let final_frame = &second[4 + 12 + 64 + 16..];
    assert_eq!(&final_frame[..8], &[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 3]);
    assert_eq!(&final_frame[20..24], &[0, 0, 0, 0]);
    assert_eq!(final_frame.len(), 24 + 16);
}

#[test]
fn messages_from_the_python_sdk_decrypt() {
    let vectors: serde_json::Value = serde_json::from_str(include_str!("data/python_sdk_vectors.json")).unwrap();
    for (id, suite) in [("0478", Suite::Committing), ("0578", Suite::CommittingSigned)] {
        let v = &vectors[id];
        let message = hex::decode(v["message"].as_str().unwrap()).unwrap();
        let key = SecretBytes::new(hex::decode(v["data_key"].as_str().unwrap()).unwrap());
        let d = Decryptor::new(&message[..], &NO_LIMITS).unwrap();
        assert_eq!(d.header().suite, suite);
        assert_eq!(d.header().frame_length, 128);
        assert_eq!(d.header().context.get("purpose").map(String::as_str), Some("test"));
        assert_eq!(d.header().data_keys[0].provider_id, "clavis-test");
        let mut out = Vec::new();
        d.decrypt(&key, &mut out, &StreamOptions::default()).unwrap();
        assert_eq!(hex::encode(out), v["plaintext"].as_str().unwrap());
        let mut flipped = message.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert!(open(&flipped, &key).is_err());
    }
}

#[test]
fn truncation_at_every_byte_fails() {
    for suite in SUITES {
        let message = seal(suite, &pattern(150), 64, 2, 1);
        for cut in 0..message.len() {
            let err = open(&message[..cut], &data_key()).expect_err("a truncated message must not decrypt");
            assert!(matches!(err, Error::Truncated | Error::Signature), "{suite} cut at {cut}: {err}");
        }
    }
}

#[test]
fn a_flipped_bit_in_any_byte_fails() {
    for suite in SUITES {
        let message = seal(suite, &pattern(150), 64, 2, 1);
        for i in 0..message.len() {
            for bit in [0x01u8, 0x80] {
                let mut t = message.clone();
                t[i] ^= bit;
                assert!(open(&t, &data_key()).is_err(), "{suite}: flip {bit:#x} at {i} must fail");
            }
        }
    }
}

#[test]
fn wrong_data_key_fails_on_the_commitment() {
    let message = seal(Suite::CommittingSigned, b"secret", 64, 1, 1);
    let err = open(&message, &SecretBytes::new(vec![9; 32])).unwrap_err();
    assert!(matches!(err, Error::Commitment), "{err}");
    assert!(matches!(open(&message, &SecretBytes::new(vec![9; 16])).unwrap_err(), Error::InvalidInput(_)));
}

#[test]
fn trailing_data_fails() {
    for suite in SUITES {
        let mut message = seal(suite, b"secret", 64, 1, 1);
        message.push(0);
        assert!(matches!(open(&message, &data_key()).unwrap_err(), Error::TrailingData));
    }
}

#[test]
fn other_versions_suites_and_content_types_are_refused() {
    let message = seal(Suite::Committing, b"secret", 64, 1, 1);
    let mut v1 = message.clone();
    v1[0] = 0x01;
    assert!(matches!(open(&v1, &data_key()).unwrap_err(), Error::UnsupportedVersion(1)));
    let mut other_suite = message.clone();
    other_suite[1..3].copy_from_slice(&[0x03, 0x78]);
    assert!(matches!(open(&other_suite, &data_key()).unwrap_err(), Error::UnsupportedSuite(0x0378)));
    // The unsigned suite's id in a signed message: the header no longer authenticates, and the
    // context holds a public key an unsigned message may not have.
    let signed = seal(Suite::CommittingSigned, b"secret", 64, 1, 1);
    let mut relabelled = signed.clone();
    relabelled[1..3].copy_from_slice(&[0x04, 0x78]);
    assert!(open(&relabelled, &data_key()).is_err());
    assert!(matches!(open(b"plain text, not a message", &data_key()).unwrap_err(), Error::UnsupportedVersion(b'p')));
    assert!(matches!(open(b"", &data_key()).unwrap_err(), Error::Truncated));
}

#[test]
fn data_key_limit_is_enforced_before_reading_the_keys() {
    let message = seal(Suite::Committing, b"secret", 64, 1, 3);
    let limited = Limits { max_encrypted_data_keys: Some(2) };
    assert!(matches!(Decryptor::new(&message[..], &limited).err().unwrap(), Error::TooManyDataKeys { count: 3, max: 2 }));
    assert!(Decryptor::new(&message[..], &Limits { max_encrypted_data_keys: Some(3) }).is_ok());
}

#[test]
fn reserved_context_keys_and_bad_frame_lengths_are_refused() {
    let mut ctx = EncryptionContext::new();
    ctx.insert("aws-crypto-anything".into(), "x".into());
    assert!(matches!(prepare_context(Suite::Committing, ctx).unwrap_err(), Error::InvalidInput(_)));
    for frame_length in [0, clavis_esdk::MAX_FRAME_LENGTH + 1] {
        let (context, signing_key) = prepare_context(Suite::Committing, EncryptionContext::new()).unwrap();
        let m = EncryptMaterials {
            suite: Suite::Committing,
            context,
            data_keys: vec![edk(1)],
            data_key: data_key(),
            signing_key,
            frame_length,
        };
        assert!(matches!(encrypt(&b"x"[..], &mut Vec::new(), m, &StreamOptions::default()).unwrap_err(), Error::FrameLength(_)));
    }
    // A signed suite without its signing key.
    let m = EncryptMaterials {
        suite: Suite::CommittingSigned,
        context: EncryptionContext::new(),
        data_keys: vec![edk(1)],
        data_key: data_key(),
        signing_key: None,
        frame_length: 64,
    };
    assert!(encrypt(&b"x"[..], &mut Vec::new(), m, &StreamOptions::default()).is_err());
}

/// Header length fields that claim more than there is, and a header larger than the cap.
#[test]
fn oversized_and_inconsistent_headers_fail_without_panicking() {
    let message = seal(Suite::Committing, b"secret", 64, 1, 1);
    // The context length field claims 65535 bytes.
    let mut t = message.clone();
    t[35..37].copy_from_slice(&[0xff, 0xff]);
    assert!(open(&t, &data_key()).is_err());
    // A header of many data keys past the 1 MiB cap.
    let mut big = vec![0x02, 0x04, 0x78];
    big.extend_from_slice(&[0; 32]);
    big.extend_from_slice(&[0, 0, 0xff, 0xff]);
    for _ in 0..40 {
        big.extend_from_slice(&[0, 7]);
        big.extend_from_slice(b"aws-kms");
        big.extend_from_slice(&[0xff, 0xff]);
        big.extend_from_slice(&[b'a'; 0xffff]);
        big.extend_from_slice(&[0, 0]);
    }
    assert!(matches!(open(&big, &data_key()).unwrap_err(), Error::HeaderTooLarge));
}
