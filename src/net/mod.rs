//! The client side of the wire: the REST API (reqwest), the live room session
//! (tokio-tungstenite, with reconnect) and parsing of server URLs and room links.

pub mod api;
pub mod live;
pub mod target;
pub mod tls;

pub use api::{Api, Credentials, Enroll};
pub use live::{LiveSession, NetEvent};
pub use target::Target;

use thiserror::Error;

use crate::protocol::ErrorCode;

/// What went wrong talking to a server, worded for the person at the keyboard.
#[derive(Debug, Error)]
pub enum NetError {
    /// The server address is not a URL we can use.
    #[error(
        "{0:?} is not a server address: use http://HOST:PORT, https://HOST or a room link like http://HOST:PORT/rooms/ID"
    )]
    InvalidUrl(String),
    /// Nothing answered at the address. `why` is a few plain words, not an OS error code.
    #[error(
        "cannot reach the Hallway server at {url} ({why}): is it running? (start one with `hallway serve`)"
    )]
    Unreachable { url: String, why: String },
    /// The server refused the request; its message says what to do.
    #[error("{message} ({code})")]
    Api {
        status: u16,
        code: ErrorCode,
        message: String,
    },
    /// Something answered, but not with Hallway's API.
    #[error("the server at {url} answered {status}, which is not Hallway's API: check the address")]
    NotHallway { url: String, status: u16 },
    /// The live connection failed.
    #[error("live connection failed: {0}")]
    WebSocket(String),
    /// The server's TLS certificate is not one this client trusts.
    #[error(
        "the server at {url} has a TLS certificate this computer does not trust ({why}): if it uses a private CA, pass --ca CA.pem"
    )]
    UntrustedCertificate { url: String, why: String },
}

impl NetError {
    /// Unreachable, with the cause in words a person can act on.
    pub fn unreachable(url: &url::Url, error: &reqwest::Error) -> Self {
        let certificate = std::iter::successors(std::error::Error::source(error), |e| e.source())
            .find_map(|e| {
                // tokio-rustls wraps rustls's error in an io::Error, whose `source` skips it.
                let tls = e.downcast_ref::<rustls::Error>().or_else(|| {
                    e.downcast_ref::<std::io::Error>()?
                        .get_ref()?
                        .downcast_ref::<rustls::Error>()
                });
                match tls {
                    Some(rustls::Error::InvalidCertificate(why)) => Some(format!("{why:?}")),
                    // Some layers keep only the words: rustls's own for this error.
                    _ => e
                        .to_string()
                        .split_once("invalid peer certificate: ")
                        .map(|(_, why)| why.to_string()),
                }
            });
        if let Some(why) = certificate {
            return Self::UntrustedCertificate {
                url: url.to_string(),
                why,
            };
        }
        let refused =
            std::iter::successors(std::error::Error::source(error), |e| e.source()).any(|e| {
                e.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused)
            });
        let why = if refused {
            "nothing is listening there".to_string()
        } else if error.is_timeout() {
            "it did not answer in time".to_string()
        } else if error.is_connect() {
            "could not connect".to_string()
        } else {
            "the connection failed".to_string()
        };
        Self::Unreachable {
            url: url.to_string(),
            why,
        }
    }

    /// The server's error code, when the server refused the request.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Self::Api { code, .. } => Some(*code),
            _ => None,
        }
    }
}
