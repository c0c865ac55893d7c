//! Shamir's secret sharing over GF(2^8) (the AES field, reduction polynomial
//! x^8 + x^4 + x^3 + x + 1), byte by byte, as Vault/OpenBao do: each byte of the secret is the
//! constant term of its own random polynomial of degree `threshold - 1`; share `i` holds the
//! polynomials' values at x = i (1..=255). Any `threshold` shares give the secret back by
//! Lagrange interpolation at x = 0; fewer reveal nothing about it.
//!
//! Field arithmetic is done without tables or secret-dependent branches (multiplication by
//! shift-and-add over all 8 bits, inversion as a^254), so timing does not depend on share bytes.
//! It is tested against the multiplication examples of FIPS-197 (section 4.2).

use crate::{CryptoError, SecretBytes, random};

/// Multiplication in GF(2^8) modulo x^8 + x^4 + x^3 + x + 1, constant time.
fn mul(mut a: u8, mut b: u8) -> u8 {
    let mut p = 0u8;
    for _ in 0..8 {
        // Add a when b's low bit is set, without branching on it.
        p ^= a & 0u8.wrapping_sub(b & 1);
        // a *= x, reducing when the high bit falls off.
        let high = 0u8.wrapping_sub(a >> 7);
        a = (a << 1) ^ (0x1b & high);
        b >>= 1;
    }
    p
}

/// The multiplicative inverse (a^254); `inv(0)` is 0, never used as a divisor here.
fn inv(a: u8) -> u8 {
    // a^254 = a^(2+4+8+16+32+64+128).
    let mut result = 1u8;
    let mut power = a;
    for _ in 0..7 {
        power = mul(power, power); // a^2, a^4, ..., a^128
        result = mul(result, power);
    }
    result
}

/// One share: its x coordinate (1..=255) and one y byte per secret byte.
#[derive(Clone, PartialEq, Eq)]
pub struct Share {
    /// The x coordinate.
    pub x: u8,
    /// The polynomials' values at `x`.
    pub y: SecretBytes,
}

impl std::fmt::Debug for Share {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Share").field("x", &self.x).finish_non_exhaustive()
    }
}

impl Share {
    /// The text form handed to people: `x` (two hex digits), `-`, then the y bytes in hex.
    pub fn to_text(&self) -> String {
        let mut s = format!("{:02x}-", self.x);
        for b in self.y.expose_secret() {
            s.push_str(&format!("{b:02x}"));
        }
        s
    }

    /// Parses [`Share::to_text`]'s form (surrounding white space ignored).
    pub fn from_text(text: &str) -> Result<Share, CryptoError> {
        let bad = || CryptoError::Malformed("a share is two hex digits, '-', and hex bytes");
        let (x_text, y) = text.trim().split_once('-').ok_or_else(bad)?;
        if x_text.len() != 2 {
            return Err(bad());
        }
        let x = u8::from_str_radix(x_text, 16).map_err(|_| bad())?;
        if x == 0 {
            return Err(bad());
        }
        if y.is_empty() || !y.len().is_multiple_of(2) || !y.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        let mut bytes = SecretBytes::new(Vec::with_capacity(y.len() / 2));
        for i in (0..y.len()).step_by(2) {
            bytes.expose_secret_mut().push(u8::from_str_radix(&y[i..i + 2], 16).map_err(|_| bad())?);
        }
        Ok(Share { x, y: bytes })
    }
}

/// Splits `secret` into `shares` shares, any `threshold` of which recover it
/// (2 <= threshold <= shares <= 255).
pub fn split(secret: &SecretBytes, shares: u8, threshold: u8) -> Result<Vec<Share>, CryptoError> {
    if threshold < 2 || shares < threshold || secret.is_empty() {
        return Err(CryptoError::Malformed("Shamir parameters: need 2 <= threshold <= shares <= 255 and a non-empty secret"));
    }
    let degree = usize::from(threshold - 1);
    // coefficients[byte][k] for k = 1..=degree; the constant term is the secret byte.
    let random_coefficients = random::secret(secret.len() * degree)?;
    let coefficients = random_coefficients.expose_secret();
    let mut out: Vec<Share> = (1..=shares).map(|x| Share { x, y: SecretBytes::new(Vec::with_capacity(secret.len())) }).collect();
    for (i, s) in secret.expose_secret().iter().enumerate() {
        let coeffs = &coefficients[i * degree..(i + 1) * degree];
        for share in &mut out {
            // Horner's rule: ((c_d x + c_{d-1}) x + ...) x + secret.
            let mut y = 0u8;
            for c in coeffs.iter().rev() {
                y = mul(y, share.x) ^ c;
            }
            y = mul(y, share.x) ^ s;
            share.y.expose_secret_mut().push(y);
        }
    }
    Ok(out)
}

/// Recovers the secret from at least `threshold` distinct shares (more are fine; all are used).
/// With fewer, or shares of another secret, the result is simply a different value: callers
/// check it (Clavis checks it against a sealed canary).
pub fn combine(shares: &[Share]) -> Result<SecretBytes, CryptoError> {
    interpolate(shares, 0)
}

/// The share at `x` of the polynomials through `shares` (exactly `threshold` of them, as
/// [`combine`]); `x` = 0 is the secret. With the shares an unseal reconstructed the secret
/// from, this gives every other share of the same split.
pub fn interpolate(shares: &[Share], x: u8) -> Result<SecretBytes, CryptoError> {
    let first = shares.first().ok_or(CryptoError::Malformed("no shares"))?;
    let len = first.y.len();
    for (i, s) in shares.iter().enumerate() {
        if s.x == 0 || s.y.len() != len || shares[..i].iter().any(|t| t.x == s.x) {
            return Err(CryptoError::Malformed("shares must be distinct, non-zero and of one length"));
        }
    }
    let mut secret = SecretBytes::new(vec![0u8; len]);
    for (j, sj) in shares.iter().enumerate() {
        // Lagrange basis at x: prod_{m != j} (x - x_m) / (x_j - x_m); subtraction is XOR.
        let mut basis = 1u8;
        for (m, sm) in shares.iter().enumerate() {
            if m != j {
                basis = mul(basis, mul(x ^ sm.x, inv(sm.x ^ sj.x)));
            }
        }
        for (out, y) in secret.expose_secret_mut().iter_mut().zip(sj.y.expose_secret()) {
            *out ^= mul(basis, *y);
        }
    }
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_matches_fips_197() {
        // FIPS-197 section 4.2: {57} • {83} = {c1}; section 4.2.1: {57} • {13} = {fe}, with
        // {57}•{02} = {ae}, {57}•{04} = {47}, {57}•{08} = {8e}, {57}•{10} = {07}.
        assert_eq!(mul(0x57, 0x83), 0xc1);
        assert_eq!(mul(0x57, 0x13), 0xfe);
        assert_eq!([mul(0x57, 0x02), mul(0x57, 0x04), mul(0x57, 0x08), mul(0x57, 0x10)], [0xae, 0x47, 0x8e, 0x07]);
        for a in 1..=255u8 {
            assert_eq!(mul(a, inv(a)), 1, "inverse of {a}");
            assert_eq!(mul(a, 1), a);
            assert_eq!(mul(a, 0), 0);
        }
        for (a, b) in [(3u8, 7u8), (0x53, 0xca), (0xff, 0xfe)] {
            assert_eq!(mul(a, b), mul(b, a));
        }
        // {53} and {ca} are inverses (FIPS-197 section 4.4's example).
        assert_eq!(inv(0x53), 0xca);
    }

    #[test]
    fn interpolation_gives_the_other_shares() {
        let secret = SecretBytes::new((0..32).collect());
        let shares = split(&secret, 5, 3).expect("split");
        for x in 1..=5u8 {
            let y = interpolate(&shares[2..5], x).expect("interpolate");
            assert_eq!(y.expose_secret(), shares[usize::from(x - 1)].y.expose_secret(), "share {x}");
        }
        assert_eq!(interpolate(&shares[..3], 0).expect("secret").expose_secret(), secret.expose_secret());
    }

    #[test]
    fn a_hand_computed_vector() {
        // Secret byte 0x42, threshold 2, polynomial f(x) = 0x42 + 0x07 x: f(1) = 0x45,
        // f(2) = 0x42 ^ 0x0e = 0x4c, f(3) = 0x42 ^ mul(7,3) = 0x42 ^ 0x09 = 0x4b.
        let s = |x: u8, y: u8| Share { x, y: SecretBytes::new(vec![y]) };
        for pair in [[s(1, 0x45), s(2, 0x4c)], [s(1, 0x45), s(3, 0x4b)], [s(3, 0x4b), s(2, 0x4c)]] {
            assert_eq!(combine(&pair).expect("combine").expose_secret(), &[0x42]);
        }
    }

    #[test]
    fn any_threshold_subset_recovers_and_fewer_do_not() {
        let secret = random::secret(32).expect("rng");
        let shares = split(&secret, 5, 3).expect("split");
        assert_eq!(shares.len(), 5);
        for a in 0..5 {
            for b in a + 1..5 {
                for c in b + 1..5 {
                    let subset = [shares[a].clone(), shares[b].clone(), shares[c].clone()];
                    assert_eq!(combine(&subset).expect("combine"), secret);
                }
                // Two shares interpolate a line, not the secret.
                assert_ne!(combine(&[shares[a].clone(), shares[b].clone()]).expect("combine"), secret);
            }
        }
        assert_eq!(combine(&shares).expect("all five"), secret);
        // A corrupted share gives another value (which Clavis's canary check rejects).
        let mut bad = shares[..3].to_vec();
        bad[1].y.expose_secret_mut()[0] ^= 1;
        assert_ne!(combine(&bad).expect("combine"), secret);
    }

    #[test]
    fn text_form_round_trips_and_rejects_garbage() {
        let secret = random::secret(32).expect("rng");
        for share in split(&secret, 3, 2).expect("split") {
            let t = share.to_text();
            assert_eq!(Share::from_text(&format!("  {t}\n")).expect("parse"), share);
        }
        for bad in ["", "zz-00", "00-abcd", "01-abc", "01-", "01-xyz0", "0100"] {
            assert!(Share::from_text(bad).is_err(), "{bad}");
        }
        assert!(split(&secret, 2, 3).is_err() && split(&secret, 3, 1).is_err());
        let dup = split(&secret, 3, 2).expect("split");
        assert!(combine(&[dup[0].clone(), dup[0].clone()]).is_err());
    }
}
