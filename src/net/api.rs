//! The REST API as typed calls.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use reqwest::{RequestBuilder, Response};
use serde::de::DeserializeOwned;
use url::Url;

use super::NetError;
use crate::identity::{self, DeviceKey};
use crate::protocol::handle::{Handle, handle_from_name};
use crate::protocol::replay::{ReplayInfo, ReplayList};
use crate::protocol::schedule::{ScheduleList, ScheduleRoom, ScheduledRoom};
use crate::protocol::{
    Challenge, CreateAccount, CreateRoom, DeviceKeys, ErrorBody, ErrorCode, Invitation, LinkCode,
    LinkDevice, Me, Profile, Reason, ReportList, RoomDetail, RoomList, RoomSummary, ServerInfo,
    Session, SignIn, Signed, UpdateProfile,
};

/// A server's REST API, with the session token once there is one. Clones share the session:
/// when the token is refused (expired, or the device was signed out), the first call that
/// finds out signs in again with the device key and every clone uses the new token.
#[derive(Debug, Clone)]
pub struct Api {
    http: reqwest::Client,
    base: Url,
    session: Arc<RwLock<SessionState>>,
}

#[derive(Debug, Default)]
struct SessionState {
    token: Option<String>,
    credentials: Option<Credentials>,
}

/// Who this client is to a server: its device key, and how to make an account when the
/// device has none there yet.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub key: Arc<DeviceKey>,
    pub enroll: Option<Enroll>,
}

/// An account to create when the device has none on the server.
#[derive(Debug, Clone, Default)]
pub struct Enroll {
    /// The handle to ask for; `None` makes one from `name` (with digits added if taken).
    pub handle: Option<String>,
    pub name: String,
    pub invitation: Option<String>,
    /// What the device is called in the account's device list.
    pub label: String,
}

/// Handles tried when one is made from a name and the first is taken.
const HANDLE_TRIES: usize = 5;

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

    /// The same client and session (token, device key) on another node of the server's
    /// cluster.
    pub fn at(&self, base: Url) -> Self {
        Self {
            http: self.http.clone(),
            base,
            session: self.session.clone(),
        }
    }

    /// The other nodes of this server's cluster that this client will move to when its
    /// node goes away: those the server names ([`ServerInfo::nodes`]) that are its
    /// siblings (see [`is_sibling`]). Empty for a server that is not in a cluster.
    pub async fn sibling_nodes(&self) -> Vec<Url> {
        let Ok(info) = self.info().await else {
            return Vec::new();
        };
        info.nodes
            .iter()
            .filter_map(|n| Url::parse(n).ok())
            .filter(|n| n != &self.base && is_sibling(&self.base, n))
            .collect()
    }

    /// Uses this token, here and in every clone (they share the session).
    pub fn with_token(self, token: impl Into<String>) -> Self {
        if let Ok(mut session) = self.session.write() {
            session.token = Some(token.into());
        }
        self
    }

    /// The device key to sign in with (and the account to make if it has none here).
    pub fn with_credentials(self, credentials: Credentials) -> Self {
        if let Ok(mut session) = self.session.write() {
            session.credentials = Some(credentials);
        }
        self
    }

    fn credentials(&self) -> Option<Credentials> {
        self.session.read().ok().and_then(|s| s.credentials.clone())
    }

    /// Keeps the token; once signed in, the credentials make no account again: a device
    /// revoked later must not come back as a new person on the next renewal.
    fn keep(&self, session: &Session) {
        if let Ok(mut state) = self.session.write() {
            state.token = Some(session.token.clone());
            if let Some(credentials) = &mut state.credentials {
                credentials.enroll = None;
            }
        }
    }

    /// What the device signs for this server: `Host` as this client sends it.
    fn origin(&self) -> String {
        identity::origin_of(&self.base).unwrap_or_default()
    }

    async fn challenge(&self, key: &DeviceKey) -> Result<Signed, NetError> {
        let challenge: Challenge = self
            .call(self.http.post(self.url("/api/v2/challenges")))
            .await?;
        let signature = key.sign_in(&self.origin(), challenge.nonce.as_bytes());
        Ok(Signed {
            nonce: challenge.nonce,
            signature: identity::b64(&signature),
        })
    }

    fn device_keys(key: &DeviceKey, label: &str) -> DeviceKeys {
        let public = key.public();
        DeviceKeys {
            sign_key: identity::b64(&public.sign),
            agree_key: identity::b64(&public.agree),
            label: label.to_string(),
        }
    }

    /// Signs in with the device key; when the device has no account here and the
    /// credentials say how, creates one. Keeps the token.
    pub async fn sign_in(&self) -> Result<Session, NetError> {
        let credentials = self.credentials().ok_or_else(|| NetError::Api {
            status: 401,
            code: ErrorCode::Unauthorized,
            message: "no device key to sign in with".into(),
        })?;
        match self.sign_in_device(&credentials.key).await {
            Ok(session) => Ok(session),
            Err(NetError::Api {
                code: ErrorCode::UnknownDevice,
                ..
            }) if credentials.enroll.is_some() => {
                let enroll = credentials.enroll.unwrap_or_default();
                self.enroll(&credentials.key, &enroll).await
            }
            Err(e) => Err(e),
        }
    }

    /// Signs in a device that has an account here; keeps the token.
    async fn sign_in_device(&self, key: &DeviceKey) -> Result<Session, NetError> {
        let signed = self.challenge(key).await?;
        let body = SignIn {
            sign_key: identity::b64(&key.public().sign),
            signed,
        };
        let session: Session = self
            .call(self.http.post(self.url("/api/v2/sessions")).json(&body))
            .await?;
        self.keep(&session);
        Ok(session)
    }

    /// Creates an account for the device, making a handle from the name when none is
    /// given (and trying a few with digits added when it is taken). A device that turns out
    /// to have an account after all (made by an earlier try whose answer was lost) signs in.
    async fn enroll(&self, key: &DeviceKey, enroll: &Enroll) -> Result<Session, NetError> {
        let mut tries: Vec<String> = match &enroll.handle {
            Some(handle) => vec![handle.clone()],
            None => (0..HANDLE_TRIES)
                .map(|n| {
                    let suffix = match n {
                        0 => String::new(),
                        n => (rand::random::<u32>() % 10u32.pow(n as u32 + 1)).to_string(),
                    };
                    handle_from_name(&enroll.name, &suffix).as_str().to_string()
                })
                .collect(),
        };
        tries.dedup();
        let mut last = None;
        for handle in tries {
            match self
                .create_account(
                    key,
                    &handle,
                    Some(&enroll.name),
                    enroll.invitation.as_deref(),
                    &enroll.label,
                )
                .await
            {
                Err(NetError::Api {
                    code: ErrorCode::DeviceTaken,
                    ..
                }) => return self.sign_in_device(key).await,
                Err(NetError::Api {
                    code: ErrorCode::HandleTaken,
                    status,
                    message,
                }) if enroll.handle.is_none() => {
                    last = Some(NetError::Api {
                        code: ErrorCode::HandleTaken,
                        status,
                        message,
                    });
                }
                other => return other,
            }
        }
        Err(last.unwrap_or(NetError::Api {
            status: 409,
            code: ErrorCode::HandleTaken,
            message: "every handle tried is taken; pick one with `hallway account create --handle`"
                .into(),
        }))
    }

    /// Creates an account for this device; keeps the token.
    pub async fn create_account(
        &self,
        key: &DeviceKey,
        handle: &str,
        name: Option<&str>,
        invitation: Option<&str>,
        label: &str,
    ) -> Result<Session, NetError> {
        let signed = self.challenge(key).await?;
        let body = CreateAccount {
            handle: handle.to_string(),
            name: name.map(str::to_string),
            device: Self::device_keys(key, label),
            invitation: invitation.map(str::to_string),
            signed,
        };
        let session: Session = self
            .call(self.http.post(self.url("/api/v2/accounts")).json(&body))
            .await?;
        self.keep(&session);
        Ok(session)
    }

    /// Adds this device to the account a link code (from `link_code` on another device)
    /// was made for; keeps the token.
    pub async fn link_device(
        &self,
        key: &DeviceKey,
        code: &str,
        label: &str,
    ) -> Result<Session, NetError> {
        let signed = self.challenge(key).await?;
        let body = LinkDevice {
            code: code.to_string(),
            device: Self::device_keys(key, label),
            signed,
        };
        let session: Session = self
            .call(self.http.post(self.url("/api/v2/devices")).json(&body))
            .await?;
        self.keep(&session);
        Ok(session)
    }

    /// The device key this client signs in with, if it has one.
    pub fn device_key(&self) -> Option<Arc<DeviceKey>> {
        self.session
            .read()
            .ok()
            .and_then(|s| s.credentials.as_ref().map(|c| c.key.clone()))
    }

    pub fn base(&self) -> &Url {
        &self.base
    }

    /// The current session token.
    pub fn token(&self) -> Option<String> {
        self.session.read().ok().and_then(|s| s.token.clone())
    }

    /// Signs in again with the device key; false when there is none or it failed.
    pub async fn renew(&self) -> bool {
        match self.sign_in().await {
            Ok(_) => {
                tracing::info!("the token was refused; signed in again with the device key");
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
        self.call(self.http.get(self.url("/api/v2"))).await
    }

    /// The cluster the server is in: its nodes, their load, its round trip to NATS.
    pub async fn cluster_status(&self) -> Result<crate::protocol::ClusterStatus, NetError> {
        self.call(self.http.get(self.url("/api/v2/cluster"))).await
    }

    /// Your account; `unauthorized` when the server no longer takes the kept token (no
    /// renewal here: this is how a client checks a kept token).
    pub async fn me_once(&self) -> Result<Me, NetError> {
        self.call(self.authed(self.http.get(self.url("/api/v2/me"))))
            .await
    }

    /// Your account: handle, devices, invitations left, who you follow and block.
    pub async fn me(&self) -> Result<Me, NetError> {
        self.call_renewing(|| self.http.get(self.url("/api/v2/me")))
            .await
    }

    /// Changes your display name or bio.
    pub async fn update_me(&self, change: &UpdateProfile) -> Result<Me, NetError> {
        self.call_renewing(|| self.http.patch(self.url("/api/v2/me")).json(change))
            .await
    }

    /// A single-use invitation link.
    pub async fn invite(&self) -> Result<Invitation, NetError> {
        self.call_renewing(|| self.http.post(self.url("/api/v2/invitations")))
            .await
    }

    /// A one-time code that adds another device to your account.
    pub async fn link_code(&self) -> Result<LinkCode, NetError> {
        self.call_renewing(|| self.http.post(self.url("/api/v2/devices/link-codes")))
            .await
    }

    /// Signs a device out of your account for good.
    pub async fn revoke_device(&self, id: i64) -> Result<(), NetError> {
        self.call_empty(|| self.http.delete(self.url(&format!("/api/v2/devices/{id}"))))
            .await
    }

    /// Someone's profile card.
    pub async fn profile(&self, handle: &Handle) -> Result<Profile, NetError> {
        self.call_renewing(|| self.http.get(self.user_url(handle, "")))
            .await
    }

    fn user_url(&self, handle: &Handle, rest: &str) -> String {
        self.url(&format!("/api/v2/users/{}{rest}", handle.as_str()))
    }

    /// Follows (`on`) or unfollows someone.
    pub async fn set_follow(&self, handle: &Handle, on: bool) -> Result<(), NetError> {
        self.set_relation(handle, "/follow", on).await
    }

    /// Blocks (`on`) or unblocks someone.
    pub async fn set_block(&self, handle: &Handle, on: bool) -> Result<(), NetError> {
        self.set_relation(handle, "/block", on).await
    }

    /// `PUT` (on) or `DELETE` (off) `/api/v2/users/{handle}{relation}`.
    async fn set_relation(
        &self,
        handle: &Handle,
        relation: &str,
        on: bool,
    ) -> Result<(), NetError> {
        let url = self.user_url(handle, relation);
        self.call_empty(|| {
            if on {
                self.http.put(&url)
            } else {
                self.http.delete(&url)
            }
        })
        .await
    }

    /// Reports someone to the server's admins.
    pub async fn report(&self, handle: &Handle, reason: &str) -> Result<(), NetError> {
        let body = Reason {
            reason: reason.to_string(),
        };
        let url = self.user_url(handle, "/reports");
        self.call_empty(|| self.http.post(&url).json(&body)).await
    }

    /// Reports, newest first (admins).
    pub async fn reports(&self) -> Result<ReportList, NetError> {
        self.call_renewing(|| self.http.get(self.url("/api/v2/admin/reports")))
            .await
    }

    /// Suspends an account (`Some(reason)`) or lifts its suspension (admins).
    pub async fn suspend(&self, handle: &Handle, reason: Option<&str>) -> Result<(), NetError> {
        let url = self.url(&format!(
            "/api/v2/admin/users/{}/suspension",
            handle.as_str()
        ));
        match reason {
            Some(reason) => {
                let body = Reason {
                    reason: reason.to_string(),
                };
                self.call_empty(|| self.http.put(&url).json(&body)).await
            }
            None => self.call_empty(|| self.http.delete(&url)).await,
        }
    }

    /// The rooms live now: with people you follow on the stage first, then newest first.
    pub async fn rooms(&self) -> Result<Vec<RoomSummary>, NetError> {
        let list: RoomList = self
            .call_renewing(|| self.http.get(self.url("/api/v2/rooms")))
            .await?;
        Ok(list.rooms)
    }

    /// Creates a room; the caller becomes its host on joining.
    pub async fn create_room(&self, title: &str) -> Result<RoomDetail, NetError> {
        self.create(&CreateRoom {
            title: title.to_string(),
            private: None,
            replay: false,
        })
        .await
    }

    /// Creates a room as described (a private one with `private`).
    pub async fn create(&self, body: &CreateRoom) -> Result<RoomDetail, NetError> {
        self.call_renewing(|| self.http.post(self.url("/api/v2/rooms")).json(body))
            .await
    }

    /// The replays of rooms that ended, newest first (#15); the newest `limit` only.
    pub async fn replays(&self, limit: Option<usize>) -> Result<Vec<ReplayInfo>, NetError> {
        let path = match limit {
            Some(n) => format!("/api/v2/replays?limit={n}"),
            None => "/api/v2/replays".to_string(),
        };
        let list: ReplayList = self
            .call_renewing(|| self.http.get(self.url(&path)))
            .await?;
        Ok(list.replays)
    }

    /// One replay.
    pub async fn replay(&self, id: &str) -> Result<ReplayInfo, NetError> {
        let id = url::form_urlencoded::byte_serialize(id.as_bytes()).collect::<String>();
        self.call_renewing(|| self.http.get(self.url(&format!("/api/v2/replays/{id}"))))
            .await
    }

    /// One speaker's track of a replay: Ogg Opus, as the server kept it; refused past
    /// `max_bytes` (what the replay's index says the track is, with some slack), so a
    /// hostile server cannot fill this machine's memory.
    pub async fn replay_track(
        &self,
        id: &str,
        user: u32,
        max_bytes: u64,
    ) -> Result<Vec<u8>, NetError> {
        let id = url::form_urlencoded::byte_serialize(id.as_bytes()).collect::<String>();
        let url = self.url(&format!("/api/v2/replays/{id}/tracks/{user}"));
        let response = self
            .authed(self.http.get(&url))
            .send()
            .await
            .map_err(|e| NetError::unreachable(&self.base, &e))?;
        if response.status().is_success() {
            let mut response = response;
            let mut body = Vec::new();
            while let Some(chunk) = response
                .chunk()
                .await
                .map_err(|e| NetError::unreachable(&self.base, &e))?
            {
                body.extend_from_slice(&chunk);
                if body.len() as u64 > max_bytes {
                    return Err(NetError::NotHallway {
                        url: url.clone(),
                        status: 200,
                    });
                }
            }
            return Ok(body);
        }
        decode::<serde_json::Value>(&self.base, response)
            .await
            .map(|_| Vec::new())
    }

    /// Deletes the replay of a room you hosted.
    pub async fn delete_replay(&self, id: &str) -> Result<(), NetError> {
        let id = url::form_urlencoded::byte_serialize(id.as_bytes()).collect::<String>();
        let url = self.url(&format!("/api/v2/replays/{id}"));
        self.call_empty(|| self.http.delete(&url)).await
    }

    /// Schedules a room (#15).
    pub async fn schedule(&self, body: &ScheduleRoom) -> Result<ScheduledRoom, NetError> {
        self.call_renewing(|| self.http.post(self.url("/api/v2/schedule")).json(body))
            .await
    }

    /// Upcoming rooms: of hosts you follow first, then by time.
    pub async fn upcoming(&self) -> Result<Vec<ScheduledRoom>, NetError> {
        let list: ScheduleList = self
            .call_renewing(|| self.http.get(self.url("/api/v2/schedule")))
            .await?;
        Ok(list.rooms)
    }

    /// One scheduled room.
    pub async fn scheduled(&self, id: u64) -> Result<ScheduledRoom, NetError> {
        self.call_renewing(|| self.http.get(self.url(&format!("/api/v2/schedule/{id}"))))
            .await
    }

    /// Starts a room you scheduled: it is live now, and you its host on joining.
    pub async fn start_scheduled(&self, id: u64) -> Result<RoomDetail, NetError> {
        self.call_renewing(|| {
            self.http
                .post(self.url(&format!("/api/v2/schedule/{id}/start")))
        })
        .await
    }

    /// Cancels a room you scheduled.
    pub async fn cancel_scheduled(&self, id: u64) -> Result<(), NetError> {
        let url = self.url(&format!("/api/v2/schedule/{id}"));
        self.call_empty(|| self.http.delete(&url)).await
    }

    /// One room in full.
    pub async fn room(&self, id: &str) -> Result<RoomDetail, NetError> {
        self.call_renewing(|| self.http.get(self.url(&format!("/api/v2/rooms/{id}"))))
            .await
    }

    /// The WebSocket URL of a room's live session.
    pub fn live_url(&self, room: &str) -> String {
        self.live_url_shared(room, None)
    }

    /// [`Api::live_url`] with a private room's share secret, from its share link.
    pub fn live_url_shared(&self, room: &str, share: Option<&str>) -> String {
        let mut http = self.url(&format!("/api/v2/rooms/{room}/live"));
        if let Some(share) = share {
            http = format!(
                "{http}?share={}",
                url::form_urlencoded::byte_serialize(share.as_bytes()).collect::<String>()
            );
        }
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
                code: ErrorCode::Unauthorized,
                ..
            }) if self.credentials().is_some() => {
                // Why signing in again failed (a device no longer known, a suspension)
                // says more than the refused token.
                self.sign_in().await?;
                self.call(self.authed(make())).await
            }
            other => other,
        }
    }

    /// Like `call_renewing`, for answers without a body (204).
    async fn call_empty(&self, make: impl Fn() -> RequestBuilder) -> Result<(), NetError> {
        let send = || async {
            let response = self
                .authed(make())
                .send()
                .await
                .map_err(|e| NetError::unreachable(&self.base, &e))?;
            if response.status().is_success() {
                Ok(())
            } else {
                decode::<serde_json::Value>(&self.base, response)
                    .await
                    .map(|_| ())
            }
        };
        match send().await {
            Err(NetError::Api {
                code: ErrorCode::Unauthorized,
                ..
            }) if self.credentials().is_some() => {
                self.sign_in().await?;
                send().await
            }
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

/// Whether a node a server names is one the client may take its token to: the same scheme
/// and the same host, on any port. A hostile server could otherwise send the client, and its
/// bearer token, anywhere. (A wider rule, a shared parent domain, would need the public
/// suffix list to keep `mallory.github.io` from passing beside `alice.github.io`; nodes
/// behind one name with several addresses, or one host on several ports, pass.)
pub fn is_sibling(base: &Url, other: &Url) -> bool {
    base.scheme() == other.scheme()
        && match (base.host(), other.host()) {
            (Some(url::Host::Domain(a)), Some(url::Host::Domain(b))) => a.eq_ignore_ascii_case(b),
            (Some(a), Some(b)) => a == b,
            _ => false,
        }
}

#[cfg(test)]
mod sibling_tests {
    use super::*;

    fn url(text: &str) -> Url {
        Url::parse(text).expect("url")
    }

    #[test]
    fn a_token_goes_only_to_siblings() {
        let base = url("https://rooms.example.org");
        assert!(is_sibling(&base, &url("https://rooms.example.org:8443")));
        assert!(is_sibling(&base, &url("https://ROOMS.example.org:444")));
        let downgrade = url("http://rooms.example.org:8080");
        assert!(!is_sibling(&base, &downgrade), "no downgrade");
        for other in [
            "https://b.rooms.example.org",
            "https://evil.example.com",
            "https://rooms.example.org.evil.com",
        ] {
            assert!(!is_sibling(&base, &url(other)), "{other}");
        }
        let hosted = url("https://alice.github.io");
        assert!(!is_sibling(&hosted, &url("https://mallory.github.io")));
        let local = url("http://127.0.0.1:7600");
        assert!(is_sibling(&local, &url("http://127.0.0.1:7601")));
        assert!(!is_sibling(&local, &url("http://10.0.0.1:7600")));
    }
}
