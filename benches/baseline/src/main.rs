//! `clavis-baseline`: a deliberately minimal AWS-KMS-compatible server that does only what the
//! protocol cannot avoid — HTTP/1.1 keep-alive, SigV4 verification (with a fixed, in-memory
//! credential), JSON and base64, and one AES-256-GCM operation per request under a single
//! in-memory key — so `scripts/bench.sh` can compare Clavis with the floor cost of its own
//! protocol. It has no storage, no audit, no key state, no validation beyond what decoding
//! needs. Never use it for anything but that comparison.
//!
//! Usage: `clavis-baseline 127.0.0.1:PORT` with `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`
//! naming the one accepted credential.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use clavis_crypto::aead::AeadKey;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use serde_json::{Value, json};
use std::sync::Arc;

const KEY_ID: &str = "00000000-0000-4000-8000-000000000000";
const ARN: &str = "arn:aws:kms:us-east-1:111122223333:key/00000000-0000-4000-8000-000000000000";

struct State {
    akid: String,
    secret: Vec<u8>,
    key: AeadKey,
}

fn reply(status: u16, body: Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::BAD_REQUEST);
    r.headers_mut().insert("content-type", hyper::header::HeaderValue::from_static("application/x-amz-json-1.1"));
    r
}

fn error(code: &str) -> Response<Full<Bytes>> {
    reply(400, json!({"__type": code, "message": code}))
}

async fn handle(state: Arc<State>, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await?.to_bytes();
    // SigV4, as Clavis verifies it.
    let Some(auth) = parts.headers.get("authorization").and_then(|v| v.to_str().ok()) else {
        return Ok(error("MissingAuthenticationTokenException"));
    };
    let Ok(auth) = clavis_sigv4::Authorization::parse(auth) else { return Ok(error("IncompleteSignatureException")) };
    let amz_date = parts.headers.get("x-amz-date").and_then(|v| v.to_str().ok()).unwrap_or_default();
    if auth.access_key_id != state.akid {
        return Ok(error("UnrecognizedClientException"));
    }
    let headers: Vec<(&str, &[u8])> = parts.headers.iter().map(|(n, v)| (n.as_str(), v.as_bytes())).collect();
    let r = clavis_sigv4::Request {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: parts.uri.query().unwrap_or(""),
        headers: &headers,
        body: &body,
    };
    if clavis_sigv4::verify(&r, &auth, amz_date, &state.secret).is_err() {
        return Ok(error("InvalidSignatureException"));
    }
    let target = parts.headers.get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or_default();
    let Ok(input) = serde_json::from_slice::<Value>(&body) else { return Ok(error("SerializationException")) };
    let b64 = |name: &str| input[name].as_str().and_then(|s| STANDARD.decode(s).ok());
    let seal = |plain: &[u8]| {
        let mut out = Vec::with_capacity(plain.len() + 28);
        state.key.seal_append(b"", plain, &mut out).map(|_| STANDARD.encode(out))
    };
    Ok(match target {
        "TrentService.Encrypt" => match b64("Plaintext").map(|p| seal(&p)) {
            Some(Ok(c)) => reply(200, json!({"CiphertextBlob": c, "KeyId": ARN, "EncryptionAlgorithm": "SYMMETRIC_DEFAULT"})),
            _ => error("ValidationException"),
        },
        "TrentService.Decrypt" => match b64("CiphertextBlob").map(|c| state.key.open(b"", &c)) {
            Some(Ok(p)) => reply(
                200,
                json!({"Plaintext": STANDARD.encode(p.expose_secret()), "KeyId": ARN, "EncryptionAlgorithm": "SYMMETRIC_DEFAULT"}),
            ),
            _ => error("InvalidCiphertextException"),
        },
        "TrentService.GenerateDataKey" => {
            let Ok(dk) = clavis_crypto::random::secret(32) else { return Ok(error("KMSInternalException")) };
            match seal(dk.expose_secret()) {
                Ok(c) => reply(200, json!({"CiphertextBlob": c, "Plaintext": STANDARD.encode(dk.expose_secret()), "KeyId": ARN})),
                Err(_) => error("KMSInternalException"),
            }
        }
        "TrentService.ReEncrypt" => match b64("CiphertextBlob").map(|c| state.key.open(b"", &c)) {
            Some(Ok(p)) => match seal(p.expose_secret()) {
                Ok(c) => reply(200, json!({"CiphertextBlob": c, "SourceKeyId": ARN, "KeyId": ARN})),
                Err(_) => error("KMSInternalException"),
            },
            _ => error("InvalidCiphertextException"),
        },
        // Enough for `clavis bench` to set up and clean up; the baseline has one key.
        "TrentService.CreateKey" => reply(200, json!({"KeyMetadata": {"KeyId": KEY_ID, "Arn": ARN}})),
        "TrentService.ScheduleKeyDeletion" | "TrentService.DisableKey" => reply(200, json!({"KeyId": ARN})),
        _ => error("UnknownOperationException"),
    })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let listen = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:8485".to_owned());
    let akid = std::env::var("AWS_ACCESS_KEY_ID")?;
    let secret = std::env::var("AWS_SECRET_ACCESS_KEY")?.into_bytes();
    let key = AeadKey::new(&clavis_crypto::random::secret(32)?)?;
    let state = Arc::new(State { akid, secret, key });
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    eprintln!("clavis-baseline listening on {listen}");
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| handle(state.clone(), req));
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(hyper_util::rt::TokioIo::new(stream), service).await;
        });
    }
}
