//! Whom the client trusts for `https://` and `wss://`: the system's certificate store
//! (through rustls-platform-verifier), plus the private CAs named with `--ca FILE`. One
//! rustls configuration serves the REST client and the live WebSocket, so they can never
//! disagree about a server.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls::ClientConfig;
use rustls::pki_types::CertificateDer;
use rustls_platform_verifier::Verifier;
use thiserror::Error;

/// Why the client's TLS trust could not be set up.
#[derive(Debug, Error)]
pub enum TlsSetupError {
    /// A `--ca` file could not be read or holds no certificate.
    #[error("cannot read the CA certificate {path}: {detail}; pass a PEM file with --ca")]
    CaFile { path: PathBuf, detail: String },
    /// The platform's verifier could not be built.
    #[error("cannot set up TLS certificate checks: {0}")]
    Verifier(#[from] rustls::Error),
}

static CONFIG: OnceLock<Arc<ClientConfig>> = OnceLock::new();

/// Sets the process's trust once, at start, from the `--ca` files. Later calls (and calls
/// after [`client_config`] has built the default) keep the first configuration.
pub fn trust(ca_files: &[PathBuf]) -> Result<(), TlsSetupError> {
    let config = build(ca_files)?;
    let _ = CONFIG.set(config);
    Ok(())
}

/// The rustls configuration every client connection uses.
pub fn client_config() -> Option<Arc<ClientConfig>> {
    if let Some(config) = CONFIG.get() {
        return Some(config.clone());
    }
    match build(&[]) {
        Ok(config) => Some(CONFIG.get_or_init(|| config).clone()),
        Err(e) => {
            tracing::warn!("{e}");
            None
        }
    }
}

fn build(ca_files: &[PathBuf]) -> Result<Arc<ClientConfig>, TlsSetupError> {
    let mut extra = Vec::new();
    for path in ca_files {
        extra.extend(read_pem_certs(path)?);
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = Verifier::new_with_extra_roots(extra, provider.clone())?;
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        // Not dangerous: the platform verifier does full WebPKI checks, with our extra roots.
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Ok(Arc::new(config))
}

fn read_pem_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    crate::server::tls::read_pem_certs(path).map_err(|detail| TlsSetupError::CaFile {
        path: path.to_path_buf(),
        detail,
    })
}
