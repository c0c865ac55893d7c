//! TLS for `clavis serve` (rustls on the aws-lc-rs provider, TLS 1.2 and 1.3) and for the
//! command-line clients. The server's certificate is reloaded from its files on SIGHUP without
//! a restart (and so without a re-unseal); a client certificate is required when a client CA
//! is configured (mutual TLS). Clients trust the system's usual CA file, or `AWS_CA_BUNDLE`
//! as the AWS CLI does.
//!
//! It must not log key material or certificate private keys.

use anyhow::{Context, bail};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn load_certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("reading certificates from {}", path.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("parsing certificates in {}", path.display()))?;
    if certs.is_empty() {
        bail!("{} holds no PEM certificate", path.display());
    }
    Ok(certs)
}

fn load_certified_key(cert: &Path, key: &Path) -> anyhow::Result<Arc<CertifiedKey>> {
    let chain = load_certs(cert)?;
    let key = PrivateKeyDer::from_pem_file(key).with_context(|| format!("reading the private key in {}", key.display()))?;
    let certified = CertifiedKey::from_der(chain, key, &provider()).context("the certificate and private key do not match")?;
    Ok(Arc::new(certified))
}

/// The server certificate, swapped in place on reload.
#[derive(Debug)]
struct Reloadable {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for Reloadable {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.read().ok().map(|c| c.clone())
    }
}

/// The server side: the acceptor and a way to reload its certificate.
pub struct ServerTls {
    acceptor: tokio_rustls::TlsAcceptor,
    certs: Arc<Reloadable>,
}

impl ServerTls {
    /// Loads the certificate chain and key (PEM); with `client_ca`, requires and verifies
    /// client certificates issued by it.
    pub fn new(cert: &Path, key: &Path, client_ca: Option<&Path>) -> anyhow::Result<ServerTls> {
        let certs = Arc::new(Reloadable { cert: cert.into(), key: key.into(), current: RwLock::new(load_certified_key(cert, key)?) });
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .context("TLS versions")?;
        let builder = match client_ca {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                for c in load_certs(ca)? {
                    roots.add(c).context("adding a client CA certificate")?;
                }
                let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                    .build()
                    .context("building the client certificate verifier")?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder.with_cert_resolver(certs.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(ServerTls { acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)), certs })
    }

    /// Reads the certificate and key files again; on any error the current pair stays.
    pub fn reload(&self) -> anyhow::Result<()> {
        let fresh = load_certified_key(&self.certs.cert, &self.certs.key)?;
        if let Ok(mut current) = self.certs.current.write() {
            *current = fresh;
        }
        Ok(())
    }

    /// The handshake the listener runs on each accepted connection.
    pub fn handshake(&self) -> clavis_server::listener::Handshake {
        let acceptor = self.acceptor.clone();
        Arc::new(move |tcp| {
            let acceptor = acceptor.clone();
            Box::pin(async move {
                let stream = acceptor.accept(tcp).await?;
                Ok(Box::new(stream) as Box<dyn clavis_server::listener::Io>)
            })
        })
    }
}

/// The CA certificates a client trusts: `AWS_CA_BUNDLE` if set (as the AWS CLI reads it),
/// else the system's bundle.
pub fn client_config() -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let bundle = match std::env::var_os("AWS_CA_BUNDLE").filter(|v| !v.is_empty()) {
        Some(path) => PathBuf::from(path),
        None => ["/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/cert.pem"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .context("no CA bundle found: set AWS_CA_BUNDLE to the CA certificate(s) of the server")?,
    };
    let mut roots = rustls::RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(load_certs(&bundle)?);
    if added == 0 {
        bail!("{} holds no usable CA certificate", bundle.display());
    }
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .context("TLS versions")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}
