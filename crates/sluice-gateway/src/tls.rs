//! TLS for the gateway (rustls, ring): certificate files per host chosen by SNI
//! (exact names, then `*.domain` wildcards, then the first certificate), and ALPN
//! offering `h2` and `http/1.1` on the same port.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// One certificate and the host names it serves.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateConfig {
    /// Host names (`api.example.com`, `*.example.com`); empty: the default certificate.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// PEM file with the certificate chain.
    pub cert: PathBuf,
    /// PEM file with the private key.
    pub key: PathBuf,
}

/// Picks a certificate by SNI.
struct ByServerName {
    exact: Vec<(String, Arc<CertifiedKey>)>,
    wildcard: Vec<(String, Arc<CertifiedKey>)>,
    default: Arc<CertifiedKey>,
}

impl fmt::Debug for ByServerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ByServerName")
            .field("exact", &self.exact.len())
            .field("wildcard", &self.wildcard.len())
            .finish()
    }
}

impl ResolvesServerCert for ByServerName {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let Some(name) = hello.server_name().map(str::to_ascii_lowercase) else {
            return Some(Arc::clone(&self.default));
        };
        if let Some((_, key)) = self.exact.iter().find(|(host, _)| *host == name) {
            return Some(Arc::clone(key));
        }
        if let Some((_, key)) = self
            .wildcard
            .iter()
            .find(|(suffix, _)| name.len() > suffix.len() && name.ends_with(suffix.as_str()))
        {
            return Some(Arc::clone(key));
        }
        Some(Arc::clone(&self.default))
    }
}

/// Why the TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A certificate or key file could not be read or used.
    #[error("{message}")]
    File {
        /// The file at fault.
        path: PathBuf,
        /// What went wrong, naming the file.
        message: String,
    },
    /// No certificate was configured.
    #[error("TLS needs at least one certificate")]
    NoCertificate,
    /// rustls refused the configuration.
    #[error("{0}")]
    Rustls(String),
}

fn file_error(path: &std::path::Path, message: String) -> TlsError {
    TlsError::File {
        path: path.to_owned(),
        message,
    }
}

fn load(config: &CertificateConfig) -> Result<Arc<CertifiedKey>, TlsError> {
    let cert_error = |message: String| file_error(&config.cert, message);
    let key_error = |message: String| file_error(&config.key, message);
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&config.cert)
        .map_err(|e| {
            cert_error(format!(
                "cannot read certificate file {}: {e}",
                config.cert.display()
            ))
        })?
        .collect::<Result<_, _>>()
        .map_err(|e| cert_error(format!("certificate file {}: {e}", config.cert.display())))?;
    if certs.is_empty() {
        return Err(cert_error(format!(
            "certificate file {} holds no certificate",
            config.cert.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(&config.key).map_err(|e| {
        key_error(format!(
            "cannot read key file {}: {e}",
            config.key.display()
        ))
    })?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| key_error(format!("key file {}: {e}", config.key.display())))?;
    Ok(Arc::new(CertifiedKey::new(certs, signing)))
}

/// Builds the TLS server configuration; errors name the file at fault.
pub fn server_config(
    certificates: &[CertificateConfig],
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let mut exact = Vec::new();
    let mut wildcard = Vec::new();
    let mut default = None;
    for certificate in certificates {
        let key = load(certificate)?;
        if certificate.hosts.is_empty() || default.is_none() {
            default.get_or_insert_with(|| Arc::clone(&key));
        }
        for host in &certificate.hosts {
            let host = host.to_ascii_lowercase();
            match host.strip_prefix('*') {
                Some(suffix) => wildcard.push((suffix.to_owned(), Arc::clone(&key))),
                None => exact.push((host, Arc::clone(&key))),
            }
        }
    }
    let default = default.ok_or(TlsError::NoCertificate)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Rustls(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(ByServerName {
            exact,
            wildcard,
            default,
        }));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
