//! TLS for `hallway serve --tls-cert FILE --tls-key FILE`: `https://` and `wss://` with
//! rustls. The certificate and key are read from PEM files at start and again on SIGHUP
//! (certificates are renewed while the server runs); a reload that fails keeps the old
//! ones and says why in the log.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use thiserror::Error;
use tokio_rustls::TlsAcceptor;

/// Where the certificate chain and its private key are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM: the server's certificate first, then any intermediates.
    pub cert: PathBuf,
    /// PEM: the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// Why the certificate could not be used.
#[derive(Debug, Error)]
pub enum TlsError {
    /// A file could not be read or holds no PEM of the kind needed.
    #[error("cannot read the TLS {what} from {path}: {detail}; pass a PEM file with --tls-{what}")]
    File {
        what: &'static str,
        path: PathBuf,
        detail: String,
    },
    /// rustls refused the pair (the key does not match the certificate, an unsupported key).
    #[error("the TLS certificate and key cannot be used together: {0}")]
    Config(#[from] rustls::Error),
}

/// The server's TLS settings, swapped whole on reload.
pub struct Tls {
    files: TlsFiles,
    current: RwLock<Arc<rustls::ServerConfig>>,
}

impl Tls {
    pub fn load(files: TlsFiles) -> Result<Self, TlsError> {
        let config = server_config(&files)?;
        Ok(Self {
            files,
            current: RwLock::new(Arc::new(config)),
        })
    }

    /// Reads the files again; on failure the running configuration stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = Arc::new(server_config(&self.files)?);
        match self.current.write() {
            Ok(mut current) => *current = config,
            Err(poisoned) => *poisoned.into_inner() = config,
        }
        Ok(())
    }

    /// An acceptor with the configuration in force now.
    pub fn acceptor(&self) -> TlsAcceptor {
        let config = match self.current.read() {
            Ok(current) => current.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        TlsAcceptor::from(config)
    }
}

fn server_config(files: &TlsFiles) -> Result<rustls::ServerConfig, TlsError> {
    let certs = read_certs(&files.cert)?;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| TlsError::File {
        what: "key",
        path: files.key.clone(),
        detail: e.to_string(),
    })?;
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    // The WebSocket upgrade is an HTTP/1.1 affair.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Every certificate in a PEM file, or what is wrong with it (the client's `--ca` files are
/// read with this too).
pub fn read_pem_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| e.to_string())?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    if certs.is_empty() {
        return Err("no certificate in it".into());
    }
    Ok(certs)
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    read_pem_certs(path).map_err(|detail| TlsError::File {
        what: "cert",
        path: path.to_path_buf(),
        detail,
    })
}
