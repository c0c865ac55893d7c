//! A minimal AWS JSON 1.1 client over one keep-alive HTTP/1.1 connection, signing every request
//! with SigV4 (via `clavis-sigv4`). Used by `clavis bench`, `clavis admin`, `clavis key` and
//! `clavis operator`; `http://` and `https://` endpoints (TLS trusting `AWS_CA_BUNDLE` or the
//! system's CA bundle, as the AWS CLI does).

use anyhow::{Context, bail};
use clavis_sigv4::{Authorization, Request, compute_signature, format_amz_date};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;

/// Where a server is: `host:port`, and the TLS settings for an `https://` endpoint.
#[derive(Clone)]
pub struct Target {
    /// `host:port`.
    pub authority: String,
    /// For `https://`: the client configuration and the name the certificate must carry.
    tls: Option<(std::sync::Arc<rustls::ClientConfig>, rustls_pki_types::ServerName<'static>)>,
}

impl Target {
    /// Parses `http://host:port` or `https://host[:port]`.
    pub fn parse(endpoint_url: &str) -> anyhow::Result<Target> {
        let (rest, https) = match (endpoint_url.strip_prefix("http://"), endpoint_url.strip_prefix("https://")) {
            (Some(r), _) => (r, false),
            (_, Some(r)) => (r, true),
            _ => bail!("the endpoint URL must start with http:// or https://, not {endpoint_url:?}"),
        };
        let hostport = rest.trim_end_matches('/');
        let host = match hostport.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or_default(),
            None => hostport.rsplit_once(':').map_or(hostport, |(h, _)| h),
        };
        let has_port = hostport.rsplit_once(':').is_some_and(|(_, p)| p.bytes().all(|b| b.is_ascii_digit()) && !p.is_empty());
        let authority = if has_port { hostport.to_owned() } else { format!("{hostport}:{}", if https { 443 } else { 80 }) };
        let tls = if https {
            let name =
                rustls_pki_types::ServerName::try_from(host.to_owned()).with_context(|| format!("{host:?} is not a valid server name"))?;
            Some((crate::tls::client_config()?, name))
        } else {
            None
        };
        Ok(Target { authority, tls })
    }

    /// Opens a connection (and the TLS session over it for `https://`).
    pub async fn connect(&self) -> anyhow::Result<Box<dyn clavis_server::listener::Io>> {
        let stream = tokio::net::TcpStream::connect(&self.authority).await.with_context(|| format!("connecting to {}", self.authority))?;
        stream.set_nodelay(true)?;
        match &self.tls {
            None => Ok(Box::new(stream)),
            Some((config, name)) => {
                let connector = tokio_rustls::TlsConnector::from(config.clone());
                let tls = connector.connect(name.clone(), stream).await.with_context(|| format!("TLS with {}", self.authority))?;
                Ok(Box::new(tls))
            }
        }
    }
}

/// Where and as whom to send requests.
#[derive(Clone)]
pub struct Endpoint {
    /// The server.
    pub target: Target,
    /// `host:port`.
    pub authority: String,
    /// Signing region.
    pub region: String,
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret: String,
}

impl Endpoint {
    /// Reads the endpoint URL, region and credentials the way AWS tools do.
    pub fn from_env(endpoint_url: &str, region: Option<String>) -> anyhow::Result<Endpoint> {
        let target = Target::parse(endpoint_url)?;
        let region = region
            .or_else(|| std::env::var("AWS_REGION").ok())
            .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
            .unwrap_or_else(|| "us-east-1".to_owned());
        let access_key_id = std::env::var("AWS_ACCESS_KEY_ID").context("AWS_ACCESS_KEY_ID is not set")?;
        let secret = std::env::var("AWS_SECRET_ACCESS_KEY").context("AWS_SECRET_ACCESS_KEY is not set")?;
        Ok(Endpoint { authority: target.authority.clone(), target, region, access_key_id, secret })
    }
}

/// One connection.
pub struct Client {
    endpoint: Endpoint,
    sender: SendRequest<Full<Bytes>>,
}

/// A response: status and body.
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// Body bytes.
    pub body: Bytes,
}

impl Client {
    /// Opens a connection.
    pub async fn connect(endpoint: &Endpoint) -> anyhow::Result<Client> {
        Ok(Client { endpoint: endpoint.clone(), sender: Self::open(endpoint).await? })
    }

    async fn open(endpoint: &Endpoint) -> anyhow::Result<SendRequest<Full<Bytes>>> {
        let stream = endpoint.target.connect().await?;
        let (sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(sender)
    }

    /// Sends `body` to `target` (e.g. `TrentService.Encrypt`), signed.
    pub async fn call(&mut self, target: &str, body: Vec<u8>) -> anyhow::Result<Reply> {
        self.call_with(target, body, None).await
    }

    /// As [`Client::call`], with one extra (signed) header, lower-case name.
    pub async fn call_with(&mut self, target: &str, body: Vec<u8>, extra: Option<(&str, &str)>) -> anyhow::Result<Reply> {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
        let amz_date = format_amz_date(i64::try_from(now)?);
        let content_type = "application/x-amz-json-1.1";
        let mut headers: Vec<(&str, &[u8])> = vec![
            ("content-type", content_type.as_bytes()),
            ("host", self.endpoint.authority.as_bytes()),
            ("x-amz-date", amz_date.as_bytes()),
            ("x-amz-target", target.as_bytes()),
        ];
        if let Some((name, value)) = extra {
            headers.push((name, value.as_bytes()));
            headers.sort_by_key(|(n, _)| *n);
        }
        let mut auth = Authorization {
            access_key_id: self.endpoint.access_key_id.clone(),
            date: amz_date[..8].to_owned(),
            region: self.endpoint.region.clone(),
            // The Secrets Manager API is signed for its own service.
            service: if target.starts_with("secretsmanager.") { "secretsmanager" } else { "kms" }.to_owned(),
            signed_headers: headers.iter().map(|(n, _)| (*n).to_owned()).collect(),
            signature: String::new(),
        };
        let req = Request { method: "POST", path: "/", query: "", headers: &headers, body: &body };
        auth.signature = compute_signature(&req, &auth, &amz_date, self.endpoint.secret.as_bytes())?;
        let authorization = format!(
            "AWS4-HMAC-SHA256 Credential={}/{}, SignedHeaders={}, Signature={}",
            auth.access_key_id,
            auth.scope(),
            auth.signed_headers.join(";"),
            auth.signature
        );
        let mut builder = hyper::Request::post("/")
            .header("content-type", content_type)
            .header("host", &self.endpoint.authority)
            .header("x-amz-date", &amz_date)
            .header("x-amz-target", target)
            .header("authorization", authorization);
        if let Some((name, value)) = extra {
            builder = builder.header(name, value);
        }
        let request = builder.body(Full::new(Bytes::from(body)))?;
        // Servers that close every connection (moto's development server) get a new one.
        if self.sender.is_closed() || self.sender.ready().await.is_err() {
            self.sender = Self::open(&self.endpoint).await?;
            self.sender.ready().await?;
        }
        let resp = self.sender.send_request(request).await?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok(Reply { status, body })
    }

    /// Calls and parses a successful JSON reply, or fails with the AWS error.
    pub async fn call_json(&mut self, target: &str, body: serde_json::Value) -> anyhow::Result<serde_json::Value> {
        self.call_json_with(target, body, None).await
    }

    /// As [`Client::call_json`], with one extra signed header.
    pub async fn call_json_with(
        &mut self,
        target: &str,
        body: serde_json::Value,
        extra: Option<(&str, &str)>,
    ) -> anyhow::Result<serde_json::Value> {
        let reply = self.call_with(target, serde_json::to_vec(&body)?, extra).await?;
        let value: serde_json::Value = serde_json::from_slice(&reply.body).unwrap_or(serde_json::Value::Null);
        if reply.status != 200 {
            bail!("{target} failed ({}): {} {}", reply.status, value["__type"], value["message"]);
        }
        Ok(value)
    }
}

/// An unsigned request to one of the operator paths (`/operator/...`), which a sealed server
/// answers without credentials. Returns the status and the parsed JSON body.
pub async fn plain_request(
    endpoint_url: &str,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> anyhow::Result<(u16, serde_json::Value)> {
    let target = Target::parse(endpoint_url)?;
    let authority = target.authority.clone();
    let stream = target.connect().await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let bytes = match &body {
        Some(b) => serde_json::to_vec(b)?,
        None => Vec::new(),
    };
    let request = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", &authority)
        .header("content-type", "application/json")
        // A server started with CLAVIS_INIT_TOKEN initialises only for whoever knows it.
        .header("x-clavis-init-token", std::env::var("CLAVIS_INIT_TOKEN").ok().filter(|_| path == "/operator/init").unwrap_or_default())
        .body(Full::new(Bytes::from(bytes)))?;
    let resp = sender.send_request(request).await?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((status, serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null)))
}
