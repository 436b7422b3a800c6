//! The REST API as typed calls.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use reqwest::{RequestBuilder, Response};
use serde::de::DeserializeOwned;
use url::Url;

use super::NetError;
use crate::protocol::{
    CreateRoom, CreateSession, ErrorBody, RoomDetail, RoomList, RoomSummary, ServerInfo, Session,
    User,
};

/// A server's REST API, with the session token once there is one. Clones share the session:
/// when the server has forgotten it (it restarted), the first call that finds out signs in
/// again under the same name and every clone uses the new token.
#[derive(Debug, Clone)]
pub struct Api {
    http: reqwest::Client,
    base: Url,
    session: Arc<RwLock<SessionState>>,
}

#[derive(Debug, Default)]
struct SessionState {
    token: Option<String>,
    /// Name and access code to sign in again with; set by `create_session`/`with_identity`.
    identity: Option<(String, Option<String>)>,
}

impl Api {
    pub fn new(base: Url) -> Self {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(15))
            .user_agent(concat!("hallway/", env!("CARGO_PKG_VERSION")));
        if let Some(tls) = super::tls::client_config() {
            builder = builder.tls_backend_preconfigured(rustls::ClientConfig::clone(&tls));
        }
        let http = builder.build().unwrap_or_else(|e| {
            // Only a TLS set-up reqwest does not take can fail here: say so, and go on with
            // the system's trust alone.
            tracing::warn!("cannot use the TLS settings ({e}); trusting the system store only");
            reqwest::Client::default()
        });
        Self {
            http,
            base,
            session: Arc::default(),
        }
    }

    /// Uses this token, here and in every clone (they share the session).
    pub fn with_token(self, token: impl Into<String>) -> Self {
        if let Ok(mut session) = self.session.write() {
            session.token = Some(token.into());
        }
        self
    }

    /// Who to sign in as again if the server forgets the token.
    pub fn with_identity(self, name: &str, access_code: Option<&str>) -> Self {
        if let Ok(mut session) = self.session.write() {
            session.identity = Some((name.to_string(), access_code.map(str::to_string)));
        }
        self
    }

    pub fn base(&self) -> &Url {
        &self.base
    }

    /// The current session token.
    pub fn token(&self) -> Option<String> {
        self.session.read().ok().and_then(|s| s.token.clone())
    }

    /// Signs in again with the kept identity; false when there is none or it failed.
    pub async fn renew(&self) -> bool {
        let identity = self.session.read().ok().and_then(|s| s.identity.clone());
        let Some((name, access_code)) = identity else {
            return false;
        };
        let body = CreateSession { name, access_code };
        match self
            .call::<Session>(self.http.post(self.url("/api/v1/sessions")).json(&body))
            .await
        {
            Ok(session) => {
                tracing::info!("the server forgot our session; signed in again");
                if let Ok(mut state) = self.session.write() {
                    state.token = Some(session.token);
                }
                true
            }
            Err(e) => {
                tracing::warn!("could not sign in again: {e}");
                false
            }
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base.as_str().trim_end_matches('/'), path)
    }

    /// What the server is (also a reachability check).
    pub async fn info(&self) -> Result<ServerInfo, NetError> {
        self.call(self.http.get(self.url("/api/v1"))).await
    }

    /// Signs in as `name`; keeps the token for later calls.
    pub async fn create_session(
        &mut self,
        name: &str,
        access_code: Option<&str>,
    ) -> Result<Session, NetError> {
        let body = CreateSession {
            name: name.to_string(),
            access_code: access_code.map(str::to_string),
        };
        let session: Session = self
            .call(self.http.post(self.url("/api/v1/sessions")).json(&body))
            .await?;
        if let Ok(mut state) = self.session.write() {
            state.token = Some(session.token.clone());
            state.identity = Some((body.name, body.access_code));
        }
        Ok(session)
    }

    /// Who the kept token belongs to; `unauthorized` when the server no longer knows it
    /// (no renewal here: this is how a client checks a kept token).
    pub async fn whoami(&self) -> Result<User, NetError> {
        self.call(self.authed(self.http.get(self.url("/api/v1/sessions/me"))))
            .await
    }

    /// The rooms live now, newest first.
    pub async fn rooms(&self) -> Result<Vec<RoomSummary>, NetError> {
        let list: RoomList = self
            .call_renewing(|| self.http.get(self.url("/api/v1/rooms")))
            .await?;
        Ok(list.rooms)
    }

    /// Creates a room; the caller becomes its host on joining.
    pub async fn create_room(&self, title: &str) -> Result<RoomDetail, NetError> {
        let body = CreateRoom {
            title: title.to_string(),
        };
        self.call_renewing(|| self.http.post(self.url("/api/v1/rooms")).json(&body))
            .await
    }

    /// One room in full.
    pub async fn room(&self, id: &str) -> Result<RoomDetail, NetError> {
        self.call_renewing(|| self.http.get(self.url(&format!("/api/v1/rooms/{id}"))))
            .await
    }

    /// The WebSocket URL of a room's live session.
    pub fn live_url(&self, room: &str) -> String {
        let http = self.url(&format!("/api/v1/rooms/{room}/live"));
        match http.strip_prefix("https://") {
            Some(rest) => format!("wss://{rest}"),
            None => format!("ws://{}", http.trim_start_matches("http://")),
        }
    }

    fn authed(&self, request: RequestBuilder) -> RequestBuilder {
        match self.token() {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// An authenticated call that signs in again once if the server forgot the token.
    async fn call_renewing<T: DeserializeOwned>(
        &self,
        make: impl Fn() -> RequestBuilder,
    ) -> Result<T, NetError> {
        match self.call(self.authed(make())).await {
            Err(NetError::Api {
                code: crate::protocol::ErrorCode::Unauthorized,
                ..
            }) if self.renew().await => self.call(self.authed(make())).await,
            other => other,
        }
    }

    async fn call<T: DeserializeOwned>(&self, request: RequestBuilder) -> Result<T, NetError> {
        let response = request
            .send()
            .await
            .map_err(|e| NetError::unreachable(&self.base, &e))?;
        decode(&self.base, response).await
    }
}

async fn decode<T: DeserializeOwned>(base: &Url, response: Response) -> Result<T, NetError> {
    let status = response.status().as_u16();
    let bytes = response
        .bytes()
        .await
        .map_err(|e| NetError::unreachable(base, &e))?;
    if (200..300).contains(&status) {
        return serde_json::from_slice(&bytes).map_err(|_| NetError::NotHallway {
            url: base.to_string(),
            status,
        });
    }
    match serde_json::from_slice::<ErrorBody>(&bytes) {
        Ok(body) => Err(NetError::Api {
            status,
            code: body.error.code,
            message: body.error.message,
        }),
        Err(_) => Err(NetError::NotHallway {
            url: base.to_string(),
            status,
        }),
    }
}
