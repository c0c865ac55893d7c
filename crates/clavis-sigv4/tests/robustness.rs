//! Hostile input to the parsers a stranger reaches first: random and mutated `Authorization`
//! headers, dates and requests must produce errors, never panics. (A deterministic stand-in for
//! fuzzing: cargo-fuzz needs a nightly toolchain this project does not use.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Test code.

use clavis_sigv4::{Authorization, Request, canonical_request, parse_amz_date, verify};

#[path = "../../../tests/support/rng.rs"]
mod rng;
use rng::Rng;

const SEED: &str = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/kms/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31";

#[test]
fn random_and_mutated_authorization_headers_never_panic() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for _ in 0..20_000 {
        let raw = rng.bytes(200);
        let _ = Authorization::parse(&String::from_utf8_lossy(&raw));
        // Mutations of a valid header: byte flips, truncations, insertions.
        let mut h = SEED.as_bytes().to_vec();
        for _ in 0..(rng.next() % 4 + 1) {
            let at = (rng.next() as usize) % h.len().max(1);
            match rng.next() % 3 {
                0 => h[at] = rng.next() as u8,
                1 => h.truncate(at),
                _ => h.insert(at, b"/,=; "[(rng.next() % 5) as usize]),
            }
            if h.is_empty() {
                break;
            }
        }
        if let Ok(auth) = Authorization::parse(&String::from_utf8_lossy(&h)) {
            let headers: [(&str, &[u8]); 2] = [("host", b"example.com"), ("x-amz-date", b"20150830T123600Z")];
            let req = Request { method: "POST", path: "/", query: "", headers: &headers, body: b"{}" };
            let _ = verify(&req, &auth, "20150830T123600Z", b"secret");
        }
    }
}

#[test]
fn random_dates_paths_and_queries_never_panic() {
    let mut rng = Rng(42);
    for _ in 0..20_000 {
        let s = String::from_utf8_lossy(&rng.bytes(24)).into_owned();
        let _ = parse_amz_date(&s);
        let path = String::from_utf8_lossy(&rng.bytes(40)).into_owned();
        let query = String::from_utf8_lossy(&rng.bytes(40)).into_owned();
        let value = rng.bytes(30);
        let headers: [(&str, &[u8]); 2] = [("host", b"h"), ("x-odd", &value)];
        let req = Request { method: "POST", path: &path, query: &query, headers: &headers, body: &value };
        let _ = canonical_request(&req, &["host".to_owned(), "x-odd".to_owned(), "missing".to_owned()]);
    }
}
