//! SHA-256 (FIPS 180-4), HMAC-SHA256 (RFC 2104) and constant-time comparison, as SigV4, the audit
//! log and the backup archive (its members' hashes, computed while they stream) need.

use aws_lc_rs::{digest, hmac};

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let d = digest::digest(&digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// SHA-256 of data given in parts, for data too large to hold at once (the members of a
/// backup archive, hashed while they are streamed). Deliberately not `Debug`.
pub struct Sha256(digest::Context);

impl Default for Sha256 {
    fn default() -> Sha256 {
        Sha256(digest::Context::new(&digest::SHA256))
    }
}

impl Sha256 {
    /// A hash of nothing yet.
    pub fn new() -> Sha256 {
        Sha256::default()
    }

    /// Appends `data` to the hashed message.
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    /// The SHA-256 of everything given to [`Sha256::update`].
    pub fn finish(self) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(self.0.finish().as_ref());
        out
    }
}

/// HMAC-SHA256 of `data` under `key`.
pub fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let k = hmac::Key::new(hmac::HMAC_SHA256, key);
    let tag = hmac::sign(&k, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(tag.as_ref());
    out
}

/// An HMAC-SHA256 key prepared once (its padded inner and outer states computed up front) for
/// signing many messages; the message may be given in parts, so callers need not concatenate.
/// Deliberately not `Debug`.
#[derive(Clone)]
pub struct HmacSha256Key(hmac::Key);

impl HmacSha256Key {
    /// Prepares `key`.
    pub fn new(key: &[u8]) -> HmacSha256Key {
        HmacSha256Key(hmac::Key::new(hmac::HMAC_SHA256, key))
    }

    /// HMAC-SHA256 of the concatenation of `parts`.
    pub fn sign(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut ctx = hmac::Context::with_key(&self.0);
        for p in parts {
            ctx.update(p);
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.sign().as_ref());
        out
    }
}

/// Compares two byte strings in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    // Accumulate differences without early exit.
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b) {
        diff |= x ^ y;
    }
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_fips_180_2_vector_abc() {
        assert_eq!(hex::encode(sha256(b"abc")), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn sha256_in_parts_fips_180_2_vector_two_blocks() {
        let message = b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
        let expected = "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1";
        assert_eq!(hex::encode(sha256(message)), expected);
        let mut h = Sha256::new();
        for part in message.chunks(7) {
            h.update(part);
        }
        h.update(b"");
        assert_eq!(hex::encode(h.finish()), expected);
    }

    #[test]
    fn hmac_sha256_rfc4231_case_2() {
        assert_eq!(
            hex::encode(hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn prepared_key_signs_parts_as_one_message_rfc4231_case_2() {
        let key = HmacSha256Key::new(b"Jefe");
        let expected = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
        assert_eq!(hex::encode(key.sign(&[b"what do ya want for nothing?"])), expected);
        assert_eq!(hex::encode(key.sign(&[b"what do ya ", b"", b"want for nothing?"])), expected);
        // The prepared key is reusable: a second message gives the same tag as a fresh key.
        assert_eq!(key.sign(&[b"abc"]), hmac_sha256(b"Jefe", b"abc"));
    }

    #[test]
    fn constant_time_eq_compares() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
