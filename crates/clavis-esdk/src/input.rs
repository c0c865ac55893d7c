//! A buffered reader that can feed what it consumes to a SHA-384 (the signed suite hashes the
//! whole message before the footer) in large chunks rather than field by field, and that turns
//! an early end of input into [`Error::Truncated`].

use crate::Error;
use clavis_crypto::ecdsa::Sha384;
use std::io::Read;

/// The read buffer's size.
const CAPACITY: usize = 1 << 20;

/// The message source.
pub(crate) struct Input<R> {
    inner: R,
    buf: Vec<u8>,
    pos: usize,
    end: usize,
    /// While hashing: the hash, and where in `buf` the bytes not yet hashed start.
    hasher: Option<Sha384>,
    hash_from: usize,
}

impl<R: Read> Input<R> {
    pub(crate) fn new(inner: R) -> Input<R> {
        Input { inner, buf: vec![0; CAPACITY], pos: 0, end: 0, hasher: None, hash_from: 0 }
    }

    /// Hashes the consumed bytes not yet hashed.
    fn hash_consumed(&mut self) {
        if let Some(h) = self.hasher.as_mut() {
            h.update(&self.buf[self.hash_from..self.pos]);
        }
        self.hash_from = self.pos;
    }

    /// Moves the unconsumed bytes to the front and reads more; false at the end of the input.
    fn refill(&mut self) -> Result<bool, Error> {
        self.hash_consumed();
        self.buf.copy_within(self.pos..self.end, 0);
        self.end -= self.pos;
        self.pos = 0;
        self.hash_from = 0;
        loop {
            match self.inner.read(&mut self.buf[self.end..]) {
                Ok(0) => return Ok(false),
                Ok(n) => {
                    self.end += n;
                    return Ok(true);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::Io(e)),
            }
        }
    }

    /// Fills `out` from the input, or fails with [`Error::Truncated`].
    pub(crate) fn read_exact(&mut self, out: &mut [u8]) -> Result<(), Error> {
        let mut done = 0;
        while done < out.len() {
            if self.pos == self.end && !self.refill()? {
                return Err(Error::Truncated);
            }
            let n = (self.end - self.pos).min(out.len() - done);
            out[done..done + n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
            self.pos += n;
            done += n;
        }
        Ok(())
    }

    pub(crate) fn read_array<const N: usize>(&mut self) -> Result<[u8; N], Error> {
        let mut out = [0u8; N];
        self.read_exact(&mut out)?;
        Ok(out)
    }

    pub(crate) fn read_u16(&mut self) -> Result<u16, Error> {
        Ok(u16::from_be_bytes(self.read_array()?))
    }

    pub(crate) fn read_u32(&mut self) -> Result<u32, Error> {
        Ok(u32::from_be_bytes(self.read_array()?))
    }

    /// From here on, every consumed byte goes into `hasher`.
    pub(crate) fn start_hash(&mut self, hasher: Sha384) {
        self.hash_from = self.pos;
        self.hasher = Some(hasher);
    }

    /// Stops hashing and returns the hash of everything consumed since [`Input::start_hash`].
    pub(crate) fn take_hash(&mut self) -> Option<Sha384> {
        self.hash_consumed();
        self.hasher.take()
    }

    /// True when no byte is left.
    pub(crate) fn at_end(&mut self) -> Result<bool, Error> {
        Ok(self.pos == self.end && !self.refill()?)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests: a failure is the test failing")]
    use super::*;

    /// A reader that returns one byte per call, to exercise refills at every boundary.
    struct Trickle<'a>(&'a [u8]);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            match (self.0.split_first(), buf.first_mut()) {
                (Some((b, rest)), Some(slot)) => {
                    *slot = *b;
                    self.0 = rest;
                    Ok(1)
                }
                _ => Ok(0),
            }
        }
    }

    #[test]
    fn hashes_exactly_the_bytes_between_start_and_take() {
        let data: Vec<u8> = (0..=255u8).cycle().take(3 * CAPACITY + 17).collect();
        let mut input = Input::new(Trickle(&data));
        let mut head = [0u8; 5];
        input.read_exact(&mut head).unwrap();
        input.start_hash(Sha384::new());
        let mut middle = vec![0u8; 2 * CAPACITY + 3];
        input.read_exact(&mut middle).unwrap();
        let hashed = input.take_hash().unwrap().finish();
        let mut expected = Sha384::new();
        expected.update(&data[5..5 + middle.len()]);
        assert_eq!(hashed.as_bytes(), expected.finish().as_bytes());
        assert_eq!(&middle[..], &data[5..5 + middle.len()]);
        let mut rest = vec![0u8; data.len() - 5 - middle.len()];
        input.read_exact(&mut rest).unwrap();
        assert!(input.at_end().unwrap());
        assert!(matches!(input.read_u16(), Err(Error::Truncated)));
    }
}
