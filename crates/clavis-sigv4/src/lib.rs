//! AWS Signature Version 4, header form (`Authorization: AWS4-HMAC-SHA256 ...`), for a server
//! that verifies what clients sign.
//!
//! It owns: parsing the `Authorization` header and `X-Amz-Date`, building the canonical request
//! and string to sign exactly as the AWS specification (and botocore) do, deriving the signing
//! key and comparing signatures in constant time. It is tested against the published AWS SigV4
//! test suite (`tests/aws4_testsuite`).
//!
//! It must not know where secrets come from, which regions are allowed, or how errors look on
//! the wire: the HTTP layer decides those and maps [`SigV4Error`] to AWS error codes.

mod canonical;
mod time;

pub use canonical::{canonical_request, string_to_sign};
pub use time::{civil_from_days, days_from_civil, format_amz_date, parse_amz_date};

use clavis_crypto::digest::{constant_time_eq, hmac_sha256};

/// The only algorithm SigV4 (as opposed to SigV4a) defines.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// Why a request's signature could not be verified. Each variant maps to one AWS error.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum SigV4Error {
    /// The `Authorization` header is malformed or lacks a required part (AWS:
    /// `IncompleteSignatureException`).
    #[error("{0}")]
    Incomplete(String),
    /// The recomputed signature differs from the one supplied (AWS: `InvalidSignatureException`).
    #[error(
        "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details."
    )]
    SignatureMismatch,
}

/// A request as the verifier sees it: the bytes on the wire, framework-free.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// HTTP method, e.g. `POST`.
    pub method: &'a str,
    /// The path exactly as it appeared in the request line, before any decoding.
    pub path: &'a str,
    /// The raw query string without `?` (empty when absent).
    pub query: &'a str,
    /// Every header as (name, value), in arrival order; repeated names appear repeatedly.
    pub headers: &'a [(&'a str, &'a [u8])],
    /// The request body.
    pub body: &'a [u8],
}

/// The parsed `Authorization` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    /// The access key id from the credential.
    pub access_key_id: String,
    /// Credential scope date, `YYYYMMDD`.
    pub date: String,
    /// Credential scope region.
    pub region: String,
    /// Credential scope service.
    pub service: String,
    /// Lower-case signed header names, in the order given.
    pub signed_headers: Vec<String>,
    /// The signature, lower-case hex as sent.
    pub signature: String,
}

impl Authorization {
    /// The credential scope `date/region/service/aws4_request`.
    pub fn scope(&self) -> String {
        format!("{}/{}/{}/aws4_request", self.date, self.region, self.service)
    }

    /// Parses `AWS4-HMAC-SHA256 Credential=AKID/DATE/REGION/SERVICE/aws4_request,
    /// SignedHeaders=a;b, Signature=hex`, with the error messages AWS gives.
    pub fn parse(header: &str) -> Result<Self, SigV4Error> {
        let header = header.trim();
        let (alg, rest) = header.split_once(' ').unwrap_or((header, ""));
        if alg != ALGORITHM {
            return Err(SigV4Error::Incomplete(format!("Unsupported AWS 'algorithm': '{alg}'")));
        }
        let (mut credential, mut signed, mut signature) = (None, None, None);
        for part in rest.split(',') {
            let part = part.trim();
            let Some((k, v)) = part.split_once('=') else {
                return Err(SigV4Error::Incomplete(format!(
                    "Authorization header requires each component to be of the form key=value. Authorization={header}"
                )));
            };
            match k {
                "Credential" => credential = Some(v),
                "SignedHeaders" => signed = Some(v),
                "Signature" => signature = Some(v),
                _ => {}
            }
        }
        let mut missing = Vec::new();
        if credential.is_none() {
            missing.push("Authorization header requires 'Credential' parameter.");
        }
        if signature.is_none() {
            missing.push("Authorization header requires 'Signature' parameter.");
        }
        if signed.is_none() {
            missing.push("Authorization header requires 'SignedHeaders' parameter.");
        }
        let (Some(credential), Some(signed), Some(signature)) = (credential, signed, signature) else {
            return Err(SigV4Error::Incomplete(format!("{} Authorization={header}", missing.join(" "))));
        };
        let parts: Vec<&str> = credential.split('/').collect();
        let [akid, date, region, service, terminator] = parts[..] else {
            return Err(SigV4Error::Incomplete(format!(
                "Credential should have at least 5 slash-separated parts, not {}. Authorization={header}",
                parts.len()
            )));
        };
        if terminator != "aws4_request" {
            return Err(SigV4Error::Incomplete(format!(
                "Credential should be scoped with a valid terminator: 'aws4_request', not '{terminator}'. Authorization={header}"
            )));
        }
        if akid.is_empty() || date.len() != 8 || !date.bytes().all(|b| b.is_ascii_digit()) {
            return Err(SigV4Error::Incomplete(format!("Credential is malformed. Authorization={header}")));
        }
        let signed_headers: Vec<String> = signed.split(';').map(str::to_ascii_lowercase).collect();
        if signed_headers.iter().any(String::is_empty) {
            return Err(SigV4Error::Incomplete(format!("SignedHeaders is malformed. Authorization={header}")));
        }
        Ok(Authorization {
            access_key_id: akid.to_owned(),
            date: date.to_owned(),
            region: region.to_owned(),
            service: service.to_owned(),
            signed_headers,
            signature: signature.to_owned(),
        })
    }
}

/// Derives the SigV4 signing key for a credential scope.
pub fn signing_key(secret: &[u8], date: &str, region: &str, service: &str) -> [u8; 32] {
    let mut k_secret = Vec::with_capacity(4 + secret.len());
    k_secret.extend_from_slice(b"AWS4");
    k_secret.extend_from_slice(secret);
    let k_date = hmac_sha256(&k_secret, date.as_bytes());
    // The derived secret is as sensitive as the secret itself; wipe the buffer.
    k_secret.iter_mut().for_each(|b| *b = 0);
    let k_region = hmac_sha256(&k_date, region.as_bytes());
    let k_service = hmac_sha256(&k_region, service.as_bytes());
    hmac_sha256(&k_service, b"aws4_request")
}

/// Computes the hex signature of `request` under `secret` for the given authorization's scope
/// and signed headers, with `amz_date` as the request time.
pub fn compute_signature(request: &Request<'_>, auth: &Authorization, amz_date: &str, secret: &[u8]) -> Result<String, SigV4Error> {
    let key = signing_key(secret, &auth.date, &auth.region, &auth.service);
    signature_with_key(request, auth, amz_date, &key)
}

/// [`compute_signature`] with the scope's signing key already derived.
fn signature_with_key(request: &Request<'_>, auth: &Authorization, amz_date: &str, key: &[u8; 32]) -> Result<String, SigV4Error> {
    let creq = canonical_request(request, &auth.signed_headers)?;
    let sts = string_to_sign(amz_date, &auth.scope(), &creq);
    Ok(hex::encode(hmac_sha256(key, sts.as_bytes())))
}

/// Verifies the signature in `auth` over `request`. Time and scope checks are the caller's, so
/// that it can report them with the errors AWS uses.
pub fn verify(request: &Request<'_>, auth: &Authorization, amz_date: &str, secret: &[u8]) -> Result<(), SigV4Error> {
    let key = signing_key(secret, &auth.date, &auth.region, &auth.service);
    verify_with_key(request, auth, amz_date, &key)
}

/// [`verify`] with the scope's signing key already derived (see [`SigningKeyCache`]).
pub fn verify_with_key(request: &Request<'_>, auth: &Authorization, amz_date: &str, key: &[u8; 32]) -> Result<(), SigV4Error> {
    let expected = signature_with_key(request, auth, amz_date, key)?;
    if constant_time_eq(expected.as_bytes(), auth.signature.as_bytes()) { Ok(()) } else { Err(SigV4Error::SignatureMismatch) }
}

/// Signing keys derived recently, by access key id and credential scope, so that a client's
/// requests on one day cost one key derivation rather than four HMACs each.
///
/// An entry is used only while the secret it was derived from is still the access key's
/// secret (compared in constant time), so a changed or rotated secret is never verified with
/// a stale key. Bounded: when full, it is emptied (entries are cheap to derive again).
pub struct SigningKeyCache {
    entries: std::sync::Mutex<std::collections::HashMap<(String, String, String, String), CachedKey>>,
    capacity: usize,
}

struct CachedKey {
    /// The secret the key was derived from (wiped on drop).
    secret: clavis_crypto::SecretBytes,
    key: clavis_crypto::SecretBytes,
}

impl SigningKeyCache {
    /// A cache of at most `capacity` scopes.
    pub fn new(capacity: usize) -> SigningKeyCache {
        SigningKeyCache { entries: std::sync::Mutex::default(), capacity }
    }

    /// The signing key for `auth`'s access key and scope under `secret`.
    pub fn signing_key(&self, auth: &Authorization, secret: &[u8]) -> [u8; 32] {
        let id = (auth.access_key_id.clone(), auth.date.clone(), auth.region.clone(), auth.service.clone());
        let mut entries = self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(hit) = entries.get(&id)
            && constant_time_eq(hit.secret.expose_secret(), secret)
            && let Ok(key) = <[u8; 32]>::try_from(hit.key.expose_secret())
        {
            return key;
        }
        let key = signing_key(secret, &auth.date, &auth.region, &auth.service);
        if entries.len() >= self.capacity {
            entries.clear();
        }
        entries.insert(
            id,
            CachedKey { secret: clavis_crypto::SecretBytes::from_slice(secret), key: clavis_crypto::SecretBytes::from_slice(&key) },
        );
        key
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_botocore_header() {
        let a = Authorization::parse(
            "AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/kms/aws4_request, SignedHeaders=host;x-amz-date, Signature=abc",
        )
        .expect("parse");
        assert_eq!(a.access_key_id, "AKID");
        assert_eq!(a.scope(), "20150830/us-east-1/kms/aws4_request");
        assert_eq!(a.signed_headers, vec!["host", "x-amz-date"]);
    }

    #[test]
    fn rejects_malformed_headers() {
        for h in [
            "",
            "AWS4-HMAC-SHA256",
            "AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/kms/aws4_request",
            "AWS4-HMAC-SHA256 Credential=AKID/2015/us-east-1/kms/aws4_request, SignedHeaders=host, Signature=a",
            "AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/kms, SignedHeaders=host, Signature=a",
            "AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/kms/aws5, SignedHeaders=host, Signature=a",
            "AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/kms/aws4_request, SignedHeaders=, Signature=a",
            "AWS4-HMAC-SHA256 garbage",
            "Basic dXNlcjpwYXNz",
        ] {
            assert!(matches!(Authorization::parse(h), Err(SigV4Error::Incomplete(_))), "{h:?}");
        }
    }

    #[test]
    fn cached_keys_follow_the_secret() {
        let auth = Authorization::parse(
            "AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/kms/aws4_request, SignedHeaders=host;x-amz-date, Signature=abc",
        )
        .expect("parse");
        let cache = SigningKeyCache::new(2);
        let a = cache.signing_key(&auth, b"secret-a");
        assert_eq!(a, signing_key(b"secret-a", "20150830", "us-east-1", "kms"));
        assert_eq!(cache.signing_key(&auth, b"secret-a"), a);
        // A changed secret is never answered from the entry derived from the old one.
        let b = cache.signing_key(&auth, b"secret-b");
        assert_eq!(b, signing_key(b"secret-b", "20150830", "us-east-1", "kms"));
        assert_ne!(a, b);
        // Full: emptied and refilled, still right.
        for day in ["20150831", "20150901", "20150902"] {
            let mut other = auth.clone();
            other.date = day.into();
            assert_eq!(cache.signing_key(&other, b"secret-b"), signing_key(b"secret-b", day, "us-east-1", "kms"));
        }
        assert!(cache.entries.lock().unwrap().len() <= 2);
    }

    /// The example from the AWS General Reference ("Examples of how to derive a signing key").
    #[test]
    fn signing_key_matches_aws_documentation() {
        let k = signing_key(b"wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "20120215", "us-east-1", "iam");
        assert_eq!(hex::encode(k), "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d");
    }
}
