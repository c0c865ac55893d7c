//! The deterministic random source of the Rust robustness tests (the stand-in for fuzzing in
//! `clavis-sigv4` and `clavis-core`): xorshift64*, seeded, dependency-free, so that a failure
//! replays exactly. Never a source of key material: that is `clavis_crypto::random`.
//!
//! Included by each test with `#[path = ".../tests/support/rng.rs"] mod rng;` rather than put in
//! a crate: a crate exists where it enforces a dependency boundary, and this enforces none.

/// xorshift64* (Vigna, "An experimental exploration of Marsaglia's xorshift generators").
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Between 0 and `max` random bytes.
    pub fn bytes(&mut self, max: usize) -> Vec<u8> {
        let n = (self.next() as usize) % (max + 1);
        (0..n).map(|_| self.next() as u8).collect()
    }
}
