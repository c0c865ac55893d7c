//! SigV4 authentication of a request: from headers and body to an authenticated
//! [`Caller`], or the AWS error a client expects. The signature arithmetic is in
//! `clavis-sigv4`; this module applies the service's rules (service name, regions, clock skew,
//! which access keys exist).

use crate::ServerConfig;
use axum::http::request::Parts;
use clavis_core::types::Region;
use clavis_core::{Caller, Kms, KmsError};
use clavis_sigv4::{Authorization, Request, SigV4Error, format_amz_date, parse_amz_date};

/// Derived signing keys, by access key and scope (an entry is only used with the secret it
/// was derived from). A scope lives one day, so a few thousand entries cover every active key.
static SIGNING_KEYS: std::sync::LazyLock<clavis_sigv4::SigningKeyCache> =
    std::sync::LazyLock::new(|| clavis_sigv4::SigningKeyCache::new(4096));

/// Headers every signature must cover besides `host` (lower-case).
const REQUIRED_SIGNED_HEADERS: [&str; 2] = ["x-amz-date", "x-amz-target"];

fn sigv4_error(e: SigV4Error) -> KmsError {
    match e {
        SigV4Error::Incomplete(m) => KmsError::IncompleteSignature(m),
        SigV4Error::SignatureMismatch => KmsError::InvalidSignature(e.to_string()),
        other => KmsError::InvalidSignature(other.to_string()),
    }
}

fn header<'a>(parts: &'a Parts, name: &str) -> Option<&'a str> {
    parts.headers.get(name).and_then(|v| v.to_str().ok())
}

/// The request's `Authorization` header, parsed once (the audit record and authentication
/// both use it): `None` when there is no header.
pub type ParsedAuthorization = Option<Result<Authorization, SigV4Error>>;

/// Parses `parts`'s `Authorization` header, if it has one.
pub fn parse_authorization(parts: &Parts) -> ParsedAuthorization {
    let header = parts.headers.get("authorization")?;
    Some(
        header
            .to_str()
            .map_err(|_| SigV4Error::Incomplete("Authorization header is not valid ASCII.".into()))
            .and_then(Authorization::parse),
    )
}

/// Which API a request is for: an AWS API signed for a service name (`kms`,
/// `secretsmanager`), whose credentials are users' access keys; or the XKS proxy API (service
/// `kms-xks-proxy`), whose credentials are XKS credentials only. Neither kind of credential
/// works on the other API.
#[derive(Debug, Clone, Copy)]
pub enum Api<'a> {
    /// The KMS or Secrets Manager JSON API, signed for this service name.
    Aws(&'a str),
    /// The XKS proxy API.
    Xks,
}

/// The XKS proxy API's SigV4 service name.
pub const XKS_SERVICE: &str = "kms-xks-proxy";
/// The XKS specification's bound on request age ("more than 5 minutes in the past (or future)").
const XKS_MAX_CLOCK_SKEW_SECS: i64 = 5 * 60;

/// Authenticates `parts` + `body` (whose `Authorization` header is `parsed`) for `api`: an AWS
/// API signed for its service name (`kms`, or `secretsmanager`), or the XKS proxy API, at most
/// `config.max_clock_skew_secs` (XKS: 5 minutes) from `now_secs`.
pub async fn authenticate_as(
    kms: &Kms,
    config: &ServerConfig,
    parts: &Parts,
    parsed: &ParsedAuthorization,
    body: &[u8],
    api: Api<'_>,
    now_secs: i64,
) -> Result<Caller, KmsError> {
    let (service, required, skew) = match api {
        Api::Aws(service) => (service, &REQUIRED_SIGNED_HEADERS[..], config.max_clock_skew_secs),
        // AWS KMS signs XKS requests over `host;x-amz-date` (spec, appendix A).
        Api::Xks => (XKS_SERVICE, &REQUIRED_SIGNED_HEADERS[..1], config.max_clock_skew_secs.min(XKS_MAX_CLOCK_SKEW_SECS)),
    };
    // A sealed server (or one finishing its unseal) serves nothing.
    if kms.is_sealed() {
        return Err(KmsError::Sealed);
    }
    let Some(parsed) = parsed else {
        return Err(KmsError::MissingAuthenticationToken);
    };
    let auth = parsed.as_ref().map_err(|e| sigv4_error(e.clone()))?;
    // A signature must cover what selects and dates the operation, as AWS requires: a
    // signature over `host` alone could be replayed with another X-Amz-Target.
    if !auth.signed_headers.iter().any(|h| h == "host") {
        return Err(KmsError::IncompleteSignature("'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.".into()));
    }
    for &required in required {
        if !auth.signed_headers.iter().any(|h| h == required) {
            return Err(KmsError::IncompleteSignature(format!("'{required}' must be a 'SignedHeader' in the AWS Authorization.")));
        }
    }
    let amz_date = header(parts, "x-amz-date").ok_or_else(|| {
        KmsError::IncompleteSignature("Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.".into())
    })?;
    let request_secs = parse_amz_date(amz_date).ok_or_else(|| {
        KmsError::IncompleteSignature(format!("X-Amz-Date must be in the ISO 8601 basic format YYYYMMDD'T'HHMMSS'Z', not '{amz_date}'."))
    })?;
    if auth.date != amz_date[..8] {
        return Err(KmsError::InvalidSignature(format!(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '{}' != '{}', from '{amz_date}'.",
            auth.date,
            &amz_date[..8]
        )));
    }
    if auth.service != service {
        return Err(KmsError::InvalidSignature(format!("Credential should be scoped to correct service: '{service}'. ")));
    }
    let region = Region::parse(&auth.region)
        .filter(|r| config.allowed_regions.as_ref().is_none_or(|allowed| allowed.iter().any(|a| a == r.as_str())))
        .ok_or_else(|| KmsError::InvalidSignature("Credential should be scoped to a valid region. ".into()))?;
    if request_secs < now_secs - skew {
        return Err(KmsError::InvalidSignature(format!(
            "Signature expired: {amz_date} is now earlier than {} ({} - {} min.)",
            format_amz_date(now_secs - skew),
            format_amz_date(now_secs),
            skew / 60
        )));
    }
    if request_secs > now_secs + skew {
        return Err(KmsError::InvalidSignature(format!(
            "Signature not yet current: {amz_date} is still later than {} ({} + {} min.)",
            format_amz_date(now_secs + skew),
            format_amz_date(now_secs),
            skew / 60
        )));
    }
    // Clavis issues no temporary credentials, so a session token can never be valid.
    if parts.headers.contains_key("x-amz-security-token") {
        return Err(KmsError::UnrecognizedClient);
    }
    let cred = match kms.credential(&auth.access_key_id).await? {
        Some(c) if c.active => c,
        _ => return Err(KmsError::UnrecognizedClient),
    };
    // An XKS credential signs XKS requests only, and only XKS credentials do.
    if clavis_core::xks::is_xks_principal(&cred.principal_arn) != matches!(api, Api::Xks) {
        return Err(KmsError::UnrecognizedClient);
    }
    let headers: Vec<(&str, &[u8])> = parts.headers.iter().map(|(n, v)| (n.as_str(), v.as_bytes())).collect();
    let request =
        Request { method: parts.method.as_str(), path: parts.uri.path(), query: parts.uri.query().unwrap_or(""), headers: &headers, body };
    let key = SIGNING_KEYS.signing_key(auth, cred.secret.expose_secret());
    clavis_sigv4::verify_with_key(&request, auth, amz_date, &key).map_err(sigv4_error)?;
    Ok(Caller {
        account: cred.account.clone(),
        region,
        principal_arn: cred.principal_arn.clone(),
        access_key_id: cred.access_key_id.clone(),
        role: cred.role,
        source_ip: parts.extensions.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip()),
        secure_transport: false,
        resources: Default::default(),
    })
}
