//! Accounts on the wire: sign-in by device key, invitations, devices, profiles, follows,
//! blocks, reports and suspensions (`/api/v2/...`).
//!
//! **Signing in** is a challenge: `POST /api/v2/challenges` gives a random nonce, good once
//! for [`CHALLENGE_TTL_MS`]; the device signs `"hallway-signin-v2\n" ‖ Host ‖ "\n" ‖ nonce`
//! ([`crate::identity::signin_message`]) and sends it to create an account, sign in or link a
//! device. The server takes only answers signed for one of its own names ([`Origins`]), so
//! a hostile server cannot pass another server's challenge to a client and use the answer. The answer is a bearer token, valid for
//! [`TOKEN_TTL_MS`]; the server keeps its hash (in the store) and a cache of the live ones
//! ([`super::Sessions`]), so a restart signs nobody out.
//!
//! **Abuse.** Challenges are what every sign-in starts with, so they are the per-address
//! budget (`sessions_per_minute`); their table is bounded. Wrong invitation and link codes
//! go through the same per-address back-off as wrong passwords would. Every refusal has a
//! stable code and says what to do next.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};

use super::actor::RoomCommand;
use super::budget::Spend;
use super::http::{ApiError, Authed, Client, internal, unauthorized};
use super::store::{self, AccountId, NewAccount, NewDevice, SecretHash, StoreError};
use super::{Revocation, SessionEntry, Shared, monotonic_ms, unix_ms};
use crate::identity::{self, DevicePublic};
use crate::protocol::handle::Handle;
use crate::protocol::text::{self, TextKind};
use crate::protocol::{
    Challenge, CreateAccount, DeviceInfo, DeviceKeys, ErrorCode, Invitation, LinkCode, LinkDevice,
    Me, Profile, PublicDevice, Reason, ReportInfo, ReportList, Session, SignIn, Signed,
    UpdateProfile, User,
};

/// How long a challenge may be answered.
pub const CHALLENGE_TTL_MS: u64 = 60_000;
/// How long a token is good for; the client signs in again with its key when it expires.
pub const TOKEN_TTL_MS: u64 = 30 * 24 * 3600 * 1000;
/// How long an invitation is good for.
pub const INVITATION_TTL_MS: u64 = 7 * 24 * 3600 * 1000;
/// How long a device-link code is good for.
pub const LINK_CODE_TTL_MS: u64 = 10 * 60 * 1000;
/// Challenges outstanding at once, server-wide (each is ~60 bytes).
const MAX_CHALLENGES: usize = 100_000;
/// Characters in a bio.
pub const MAX_BIO_CHARS: usize = 160;
/// Characters in a report or suspension reason.
pub const MAX_REASON_CHARS: usize = 500;
/// Characters in a device label.
const MAX_LABEL_CHARS: usize = 40;

/// Nonces handed out and not yet answered, with when they stop being good (monotonic ms),
/// and the order they were handed out in. At [`MAX_CHALLENGES`] the oldest gives way: a
/// real client answers within milliseconds, so whoever fills the table only pushes out
/// challenges nobody is answering (a full table never refuses a sign-in).
#[derive(Default)]
pub(crate) struct Challenges {
    open: HashMap<String, u64>,
    order: std::collections::VecDeque<String>,
}

impl Challenges {
    /// A new nonce.
    fn issue(&mut self, now_ms: u64) -> String {
        // Answered (or dropped) nonces leave `order` here too, oldest first.
        while self.open.len() >= MAX_CHALLENGES || self.order.len() > 2 * MAX_CHALLENGES {
            match self.order.pop_front() {
                Some(old) => {
                    self.open.remove(&old);
                }
                None => break,
            }
        }
        let nonce = identity::random_code(16);
        self.open.insert(nonce.clone(), now_ms + CHALLENGE_TTL_MS);
        self.order.push_back(nonce.clone());
        nonce
    }

    /// Uses a nonce up: true when it was handed out and is still good.
    fn take(&mut self, nonce: &str, now_ms: u64) -> bool {
        self.open
            .remove(nonce)
            .is_some_and(|expires| expires > now_ms)
    }
}

pub fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/api/v2/challenges", post(challenge))
        .route("/api/v2/accounts", post(create_account))
        .route("/api/v2/sessions", post(sign_in))
        .route("/api/v2/me", get(me).patch(update_me))
        .route("/api/v2/invitations", post(invite))
        .route("/api/v2/devices", post(link_device))
        .route("/api/v2/devices/link-codes", post(link_code))
        .route("/api/v2/devices/{id}", delete(revoke_device))
        .route("/api/v2/users/{handle}", get(profile))
        .route(
            "/api/v2/users/{handle}/follow",
            put(follow).delete(unfollow),
        )
        .route("/api/v2/users/{handle}/block", put(block).delete(unblock))
        .route("/api/v2/users/{handle}/reports", post(report))
        .route("/api/v2/admin/reports", get(reports))
        .route(
            "/api/v2/admin/users/{handle}/suspension",
            put(suspend).delete(unsuspend),
        )
        .route("/invite/{code}", get(invitation_page))
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        use StoreError::*;
        match e {
            HandleTaken { existing } => ApiError::new(
                ErrorCode::HandleTaken,
                format!("that handle is taken or looks too much like @{existing}; pick another"),
            ),
            DeviceTaken => ApiError::new(
                ErrorCode::DeviceTaken,
                "this device already has an account here; sign in instead (`hallway account`)",
            ),
            InvitationRequired => ApiError::new(
                ErrorCode::InvitationRequired,
                "this server is invite-only: ask a member for an invitation link (`hallway invite`)",
            ),
            InvitationUnknown => ApiError::new(
                ErrorCode::InvitationUnknown,
                "no such invitation or link code; check it was copied whole",
            ),
            InvitationUsed => ApiError::new(
                ErrorCode::InvitationUsed,
                "that code was already used; ask for a new one",
            ),
            InvitationExpired => ApiError::new(
                ErrorCode::InvitationExpired,
                "that code has expired; ask for a new one",
            ),
            NoInvitationsLeft => ApiError::new(
                ErrorCode::NoInvitationsLeft,
                "you have no invitations left; an admin can invite people without limit",
            ),
            NoSuchAccount => ApiError::new(ErrorCode::UnknownHandle, "no account with that handle"),
            NoSuchDevice => ApiError::new(
                ErrorCode::UnknownDevice,
                "this device has no account here (or it was revoked): create an account, or link the device from one that has (`hallway account link`)",
            ),
            Suspended(reason) => suspended(&reason),
            Yourself => ApiError::new(ErrorCode::Yourself, "that is you"),
            NoSuchScheduled => ApiError::new(
                ErrorCode::RoomNotFound,
                "no such scheduled room: it was cancelled or started already; see `hallway schedule list`",
            ),
            TooManyScheduled(max) => ApiError::new(
                ErrorCode::RateLimited,
                format!(
                    "you have {max} upcoming rooms already; start or cancel one (`hallway schedule cancel ID`) first"
                ),
            ),
            Database(detail) => {
                tracing::error!("store: {detail}");
                internal()
            }
            Closed => {
                tracing::error!("the store is not answering");
                internal()
            }
        }
    }
}

fn suspended(reason: &str) -> ApiError {
    ApiError::new(
        ErrorCode::Suspended,
        format!(
            "an admin suspended this account ({}); ask the server's admins",
            text::terminal_safe(reason)
        ),
    )
}

async fn challenge(
    State(shared): State<Arc<Shared>>,
    client: Client,
) -> Result<Json<Challenge>, ApiError> {
    if !shared.budgets.try_spend(client.key(), Spend::Session) {
        return Err(ApiError::new(
            ErrorCode::RateLimited,
            format!(
                "too many sign-ins from your address (at most {} a minute); wait a minute",
                shared.config.limits.address.sessions_per_minute
            ),
        ));
    }
    let nonce = shared
        .challenges
        .lock()
        .map_err(|_| internal())?
        .issue(monotonic_ms());
    Ok(Json(Challenge {
        nonce,
        expires_in_ms: CHALLENGE_TTL_MS,
    }))
}

/// The request's `Host`, as the device signed it.
pub(crate) struct Host(String);

impl<S: Sync> axum::extract::FromRequestParts<S> for Host {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        host_of(&parts.headers)
            .map(Self)
            .ok_or_else(|| ApiError::new(ErrorCode::BadRequest, "the request has no Host header"))
    }
}

fn host_of(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_ascii_lowercase)
}

fn key32(text: &str, what: &str) -> Result<[u8; 32], ApiError> {
    identity::unb64(text)
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::BadRequest,
                format!("{what} must be 32 bytes, base64url without padding"),
            )
        })
}

/// The names a server answers to, as a `Host` header spells them (lowercase, the port left
/// out when it is the scheme's default): each `--public-url`, the bound address itself, and,
/// bound to every address, `localhost`, `127.0.0.1` and `[::1]` on its port. A sign-in
/// signed for any other name was meant for another server, whatever `Host` the request
/// claims: a hostile server can write any `Host`, but it cannot make this list.
///
/// A server bound to loopback also answers to those loopback names on any port: only this
/// machine reaches it, through whatever port forward or test relay it likes, and a hostile
/// server elsewhere cannot be reached by a loopback name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origins {
    names: Vec<String>,
    loopback_any_port: bool,
}

const LOOPBACK_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "[::1]"];

impl Origins {
    pub fn new(public_urls: &[String], bound: std::net::SocketAddr) -> Self {
        let mut names: Vec<String> = public_urls
            .iter()
            .filter_map(|u| url::Url::parse(u).ok())
            .filter_map(|u| identity::origin_of(&u))
            .map(|o| o.to_ascii_lowercase())
            .collect();
        let port = bound.port();
        let ip = bound.ip();
        if !ip.is_unspecified() {
            names.push(match ip {
                std::net::IpAddr::V4(v4) => format!("{v4}:{port}"),
                std::net::IpAddr::V6(v6) => format!("[{v6}]:{port}"),
            });
        }
        if ip.is_loopback() || ip.is_unspecified() {
            names.extend(LOOPBACK_NAMES.iter().map(|host| format!("{host}:{port}")));
        }
        names.sort();
        names.dedup();
        Self {
            names,
            loopback_any_port: ip.is_loopback(),
        }
    }

    /// Whether `host` (a `Host` header, lowercased) is one of this server's names.
    pub fn accepts(&self, host: &str) -> bool {
        if self.names.iter().any(|n| n == host) {
            return true;
        }
        self.loopback_any_port
            && host.rsplit_once(':').is_some_and(|(name, port)| {
                LOOPBACK_NAMES.contains(&name) && port.parse::<u16>().is_ok()
            })
    }

    /// The names, for messages.
    pub fn describe(&self) -> String {
        let mut text = self.names.join(", ");
        if self.loopback_any_port {
            text.push_str(" (and loopback on any port)");
        }
        text
    }

    /// No name a client elsewhere could use: bound to every address without `--public-url`.
    pub fn only_loopback(&self) -> bool {
        self.names.iter().all(|n| {
            n.rsplit_once(':')
                .is_some_and(|(name, _)| LOOPBACK_NAMES.contains(&name))
        })
    }
}

/// Checks an answered challenge for `public`'s signing key.
fn check_signed(
    shared: &Shared,
    host: &Host,
    sign_key: &[u8; 32],
    signed: &Signed,
) -> Result<(), ApiError> {
    let taken = shared
        .challenges
        .lock()
        .map_err(|_| internal())?
        .take(&signed.nonce, monotonic_ms());
    if !taken {
        return Err(ApiError::new(
            ErrorCode::ChallengeExpired,
            "that challenge is unknown, used or expired; ask for a new one (POST /api/v2/challenges)",
        ));
    }
    let public = DevicePublic {
        sign: *sign_key,
        agree: [0; 32],
    };
    let signature = identity::unb64(&signed.signature).unwrap_or_default();
    // The client signed the name it reached; it must be one of ours (not merely the
    // request's `Host`, which whoever relays a challenge writes).
    if !shared.origins.accepts(&host.0) {
        shared.metrics.auth_failures.inc();
        return Err(ApiError::new(
            ErrorCode::BadSignature,
            format!(
                "this server does not answer to {:?}: sign-ins are signed for the name the client reached, and it knows itself as {}; its admin names it with --public-url",
                text::terminal_safe(&host.0),
                shared.origins.describe()
            ),
        ));
    }
    if !public.verify_sign_in(&host.0, signed.nonce.as_bytes(), &signature) {
        shared.metrics.auth_failures.inc();
        return Err(ApiError::new(
            ErrorCode::BadSignature,
            "the signature does not match this device's key and this server's challenge",
        ));
    }
    Ok(())
}

fn new_device(keys: &DeviceKeys) -> Result<NewDevice, ApiError> {
    let label = if keys.label.trim().is_empty() {
        "device".to_string()
    } else {
        super::http::clean_text(&keys.label, MAX_LABEL_CHARS, TextKind::DeviceLabel)?
    };
    Ok(NewDevice {
        sign_key: key32(&keys.sign_key, "sign_key")?,
        agree_key: key32(&keys.agree_key, "agree_key")?,
        label,
    })
}

/// A wrong code counts against the address, as a wrong password would.
fn check_code_allowed(shared: &Shared, client: &Client) -> Result<(), ApiError> {
    if let Err(locked) = shared.budgets.code_allowed(client.key()) {
        shared.metrics.auth_failures.inc();
        return Err(ApiError::new(
            ErrorCode::RateLimited,
            format!(
                "too many wrong codes from your address; try again in {} s",
                locked.retry_after.as_secs().max(1)
            ),
        ));
    }
    Ok(())
}

/// Counts a code's outcome in the address's back-off.
fn note_code_result<T>(shared: &Shared, client: &Client, result: &Result<T, StoreError>) {
    let wrong = matches!(
        result,
        Err(StoreError::InvitationUnknown
            | StoreError::InvitationUsed
            | StoreError::InvitationExpired)
    );
    // Only a code that worked clears the count: a refusal for another reason (a taken
    // handle) says nothing of the code, and must not reset the back-off.
    if !wrong && result.is_err() {
        return;
    }
    if shared.budgets.code_attempt(client.key(), !wrong) {
        tracing::warn!(addr = %client.key(), "wrong invitation or link code (more from this address are counted, and logged when they stop)");
    }
    if wrong {
        shared.metrics.auth_failures.inc();
    }
}

fn code_hash(code: &str) -> SecretHash {
    identity::sha256(code.trim().as_bytes())
}

fn user_of(account: &store::Account) -> User {
    User {
        id: account.id,
        handle: account.handle.clone(),
        name: account.name.clone(),
    }
}

/// Issues a token for a device and caches its session.
async fn open_session(
    shared: &Arc<Shared>,
    account: store::Account,
    device: store::Device,
) -> Result<Json<Session>, ApiError> {
    if let Some(reason) = &account.suspended {
        return Err(suspended(reason));
    }
    let token = identity::random_code(32);
    let hash = identity::sha256(token.as_bytes());
    let now = unix_ms();
    let expires_at_ms = now + TOKEN_TTL_MS;
    let device_id = device.id;
    let mark = shared.revocation_mark();
    shared
        .store
        .call(move |s| s.add_token(&hash, device_id, now, expires_at_ms))
        .await?;
    let entry = shared.cache_session(hash, &account, &device, expires_at_ms, mark)?;
    shared.metrics.sessions.inc();
    Ok(Json(Session {
        token,
        expires_at_ms,
        user: entry.user.clone(),
    }))
}

async fn create_account(
    State(shared): State<Arc<Shared>>,
    client: Client,
    host: Host,
    body: Result<Json<CreateAccount>, JsonRejection>,
) -> Result<Json<Session>, ApiError> {
    let Json(request) = body?;
    let handle = Handle::parse(&request.handle)
        .map_err(|e| ApiError::new(ErrorCode::InvalidHandle, format!("{e}; pick another")))?;
    let name = match &request.name {
        Some(name) => super::http::clean_text(
            name,
            shared.config.limits.max_name_chars,
            TextKind::DisplayName,
        )?,
        // The handle stands in for a name, and must pass as one (`host` would not).
        None => super::http::clean_text(
            handle.as_str(),
            shared.config.limits.max_name_chars,
            TextKind::DisplayName,
        )?,
    };
    let device = new_device(&request.device)?;
    check_signed(&shared, &host, &device.sign_key, &request.signed)?;
    if request.invitation.is_some() {
        check_code_allowed(&shared, &client)?;
    }
    let new = NewAccount {
        handle: handle.as_str().to_string(),
        handle_key: handle.key(),
        name,
        device,
        invitation: request.invitation.as_deref().map(code_hash),
        invite_only: shared.config.invite_only,
        invitation_quota: shared.config.invitation_quota,
        now_ms: unix_ms(),
    };
    let result = shared.store.call(move |s| s.create_account(&new)).await;
    if request.invitation.is_some() {
        note_code_result(&shared, &client, &result);
    }
    let (account, device) = result?;
    shared.metrics.accounts.inc();
    tracing::info!(handle = %account.handle, invited_by = ?account.invited_by, admin = account.admin, "account created");
    open_session(&shared, account, device).await
}

async fn sign_in(
    State(shared): State<Arc<Shared>>,
    host: Host,
    body: Result<Json<SignIn>, JsonRejection>,
) -> Result<Json<Session>, ApiError> {
    let Json(request) = body?;
    let key = key32(&request.sign_key, "sign_key")?;
    check_signed(&shared, &host, &key, &request.signed)?;
    let (account, device) = shared.store.call(move |s| s.device_by_key(&key)).await?;
    open_session(&shared, account, device).await
}

async fn link_device(
    State(shared): State<Arc<Shared>>,
    client: Client,
    host: Host,
    body: Result<Json<LinkDevice>, JsonRejection>,
) -> Result<Json<Session>, ApiError> {
    let Json(request) = body?;
    let device = new_device(&request.device)?;
    check_signed(&shared, &host, &device.sign_key, &request.signed)?;
    check_code_allowed(&shared, &client)?;
    let hash = code_hash(&request.code);
    let now = unix_ms();
    let result = shared
        .store
        .call(move |s| s.link_device(&hash, &device, now))
        .await;
    note_code_result(&shared, &client, &result);
    let (account, device) = result?;
    tracing::info!(handle = %account.handle, device = device.id, "device linked");
    open_session(&shared, account, device).await
}

async fn link_code(
    State(shared): State<Arc<Shared>>,
    Authed(session): Authed,
) -> Result<(StatusCode, Json<LinkCode>), ApiError> {
    store_call(&session)?;
    let code = identity::random_code(16);
    let hash = identity::sha256(code.as_bytes());
    let now = unix_ms();
    let expires_at_ms = now + LINK_CODE_TTL_MS;
    let account = session.user.id;
    shared
        .store
        .call(move |s| s.create_link_code(account, &hash, now, expires_at_ms))
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(LinkCode {
            code,
            expires_at_ms,
        }),
    ))
}

async fn revoke_device(
    State(shared): State<Arc<Shared>>,
    Authed(session): Authed,
    Path(id): Path<i64>,
) -> Result<StatusCode, ApiError> {
    store_call(&session)?;
    let account = session.user.id;
    let revoked = shared
        .store
        .call(move |s| {
            let devices = s.devices(account)?;
            if !devices.iter().any(|d| d.id == id) {
                return Ok(Err(ApiError::new(
                    ErrorCode::NotFound,
                    format!("your account has no device {id}; `hallway account` lists them"),
                )));
            }
            if devices.len() == 1 {
                return Ok(Err(ApiError::new(
                    ErrorCode::BadRequest,
                    "that is your only device: revoking it would lose the account; link another first (`hallway account link`)",
                )));
            }
            s.revoke_device(account, id).map(Ok)
        })
        .await?;
    revoked?;
    shared.revoke(Revocation::Device(id));
    Ok(StatusCode::NO_CONTENT)
}

fn public_of(device: &store::Device) -> DevicePublic {
    DevicePublic {
        sign: device.sign_key,
        agree: device.agree_key,
    }
}

fn device_info(device: &store::Device, current: store::DeviceId) -> DeviceInfo {
    DeviceInfo {
        id: device.id,
        label: device.label.clone(),
        sign_key: identity::b64(&device.sign_key),
        agree_key: identity::b64(&device.agree_key),
        fingerprint: public_of(device).fingerprint(),
        created_at_ms: device.created_ms,
        last_seen_ms: device.last_seen_ms,
        current: device.id == current,
    }
}

async fn me(
    State(shared): State<Arc<Shared>>,
    Authed(session): Authed,
) -> Result<Json<Me>, ApiError> {
    store_call(&session)?;
    let id = session.user.id;
    let (account, devices, following, blocking) = shared
        .store
        .call(move |s| {
            Ok((
                s.account(id)?,
                s.devices(id)?,
                s.following(id)?,
                s.blocking(id)?,
            ))
        })
        .await?;
    Ok(Json(Me {
        user: user_of(&account),
        bio: account.bio,
        admin: account.admin,
        invitations_left: account.invitations_left,
        devices: devices
            .iter()
            .map(|d| device_info(d, session.device))
            .collect(),
        following,
        blocking,
    }))
}

async fn update_me(
    State(shared): State<Arc<Shared>>,
    Authed(session): Authed,
    body: Result<Json<UpdateProfile>, JsonRejection>,
) -> Result<Json<Me>, ApiError> {
    store_call(&session)?;
    let Json(request) = body?;
    let name = match &request.name {
        Some(name) => Some(super::http::clean_text(
            name,
            shared.config.limits.max_name_chars,
            TextKind::DisplayName,
        )?),
        None => None,
    };
    let bio = match &request.bio {
        Some(bio) if bio.trim().is_empty() => Some(String::new()),
        Some(bio) => Some(super::http::clean_text(bio, MAX_BIO_CHARS, TextKind::Bio)?),
        None => None,
    };
    let id = session.user.id;
    let account = shared
        .store
        .call(move |s| {
            let account = s.account(id)?;
            let name = name.unwrap_or(account.name);
            let bio = bio.unwrap_or(account.bio);
            s.set_profile(id, &name, &bio)?;
            s.account(id)
        })
        .await?;
    shared.update_cached_user(&user_of(&account));
    me(State(shared), Authed(session)).await
}

async fn invite(
    State(shared): State<Arc<Shared>>,
    Authed(session): Authed,
    headers: HeaderMap,
) -> Result<(StatusCode, Json<Invitation>), ApiError> {
    store_call(&session)?;
    let code = identity::random_code(16);
    let hash = identity::sha256(code.as_bytes());
    let now = unix_ms();
    let expires_at_ms = now + INVITATION_TTL_MS;
    let account = session.user.id;
    let invitations_left = shared
        .store
        .call(move |s| s.create_invitation(account, &hash, now, expires_at_ms))
        .await?;
    tracing::info!(inviter = %session.user.handle, "invitation made");
    Ok((
        StatusCode::CREATED,
        Json(Invitation {
            url: format!("{}/invite/{code}", shared.public_base(&headers)),
            code,
            expires_at_ms,
            invitations_left,
        }),
    ))
}

/// What a browser shows for an invitation link: how to use it.
async fn invitation_page(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(code): Path<String>,
) -> impl IntoResponse {
    let code: String = code
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .take(64)
        .collect();
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!(
            "You are invited to a Hallway server: live audio rooms in the terminal.\n\nRun:\n\n    hallway --server {}/invite/{code}\n\nand pick a handle (add --handle NAME to choose it). An invitation works once.\n",
            shared.public_base(&headers)
        ),
    )
}

fn parse_handle(text: &str) -> Result<Handle, ApiError> {
    Handle::parse(text).map_err(|e| {
        ApiError::new(
            ErrorCode::UnknownHandle,
            format!("@{}: {e}", text::terminal_safe(text)),
        )
    })
}

async fn profile(
    State(shared): State<Arc<Shared>>,
    Authed(session): Authed,
    Path(handle): Path<String>,
) -> Result<Json<Profile>, ApiError> {
    store_call(&session)?;
    let key = parse_handle(&handle)?.key();
    let viewer = session.user.id;
    let profile = shared.store.call(move |s| s.profile(viewer, &key)).await?;
    Ok(Json(Profile {
        user: user_of(&profile.account),
        bio: profile.account.bio.clone(),
        joined_at_ms: profile.account.created_ms,
        invited_by: profile.account.invited_by.clone(),
        followers: profile.followers,
        following: profile.following,
        followed: profile.followed,
        blocked: profile.blocked,
        devices: profile
            .devices
            .iter()
            .map(|d| PublicDevice {
                sign_key: identity::b64(&d.sign_key),
                agree_key: identity::b64(&d.agree_key),
                fingerprint: public_of(d).fingerprint(),
            })
            .collect(),
        suspended: profile.account.suspended.is_some(),
    }))
}

/// The account a handle names.
pub(crate) async fn target(shared: &Shared, handle: &str) -> Result<store::Account, ApiError> {
    let key = parse_handle(handle)?.key();
    Ok(shared
        .store
        .call(move |s| s.account_by_handle(&key))
        .await?)
}

async fn set_follow(
    shared: Arc<Shared>,
    session: Arc<SessionEntry>,
    handle: String,
    on: bool,
) -> Result<StatusCode, ApiError> {
    store_call(&session)?;
    let to = target(&shared, &handle).await?.id;
    let from = session.user.id;
    let now = unix_ms();
    shared
        .store
        .call(move |s| s.set_follow(from, to, on, now))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn follow(
    State(shared): State<Arc<Shared>>,
    Authed(session): Authed,
    Path(handle): Path<String>,
) -> Result<StatusCode, ApiError> {
    set_follow(shared, session, handle, true).await
}

async fn unfollow(
    State(shared): State<Arc<Shared>>,
    Authed(session): Authed,
    Path(handle): Path<String>,
) -> Result<StatusCode, ApiError> {
    set_follow(shared, session, handle, false).await
}

async fn set_block(
    shared: Arc<Shared>,
    session: Arc<SessionEntry>,
    handle: String,
    on: bool,
) -> Result<StatusCode, ApiError> {
    store_call(&session)?;
    let to = target(&shared, &handle).await?.id;
    let from = session.user.id;
    let now = unix_ms();
    shared
        .store
        .call(move |s| s.set_block(from, to, on, now))
        .await?;
    if on {
        // A person blocked by a room's host or a moderator is out of that room.
        expel_where_moderated(&shared, from, to).await;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Removes `blocked` from every room where `blocker` runs the stage and outranks them (the
/// room checks the ranks, as in removing: a moderator cannot put the host or another
/// moderator out).
async fn expel_where_moderated(shared: &Shared, blocker: AccountId, blocked: AccountId) {
    let rooms: Vec<_> = match shared.rooms.read() {
        Ok(rooms) => rooms.values().cloned().collect(),
        Err(_) => return,
    };
    for room in rooms {
        let moderates = room
            .summary
            .borrow()
            .speakers
            .iter()
            .any(|s| s.id == blocker && s.role.is_moderator());
        if moderates {
            let _ = room
                .tx
                .send(RoomCommand::Expel {
                    user: blocked,
                    code: ErrorCode::Blocked,
                    message: "the room's host or a moderator blocks you".into(),
                    by: Some(blocker),
                })
                .await;
        }
    }
    // Rooms homed on other nodes of a cluster: their homes check the ranks the same way.
    if let Some(cluster) = &shared.cluster {
        for room in cluster.remote_rooms() {
            if room
                .speakers
                .iter()
                .any(|s| s.id == blocker && s.role.is_moderator())
            {
                let expel = crate::server::cluster::wire::ToHome::Expel {
                    user: blocked,
                    code: ErrorCode::Blocked,
                    message: "the room's host or a moderator blocks you".into(),
                    by: Some(blocker),
                };
                cluster.send_to_home(&room.id, &expel).await;
            }
        }
    }
}

async fn block(
    State(shared): State<Arc<Shared>>,
    Authed(session): Authed,
    Path(handle): Path<String>,
) -> Result<StatusCode, ApiError> {
    set_block(shared, session, handle, true).await
}

async fn unblock(
    State(shared): State<Arc<Shared>>,
    Authed(session): Authed,
    Path(handle): Path<String>,
) -> Result<StatusCode, ApiError> {
    set_block(shared, session, handle, false).await
}

fn clean_reason(reason: &str) -> Result<String, ApiError> {
    super::http::clean_text(reason, MAX_REASON_CHARS, TextKind::Reason)
}

async fn report(
    State(shared): State<Arc<Shared>>,
    Authed(session): Authed,
    Path(handle): Path<String>,
    body: Result<Json<Reason>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let Json(request) = body?;
    let reason = clean_reason(&request.reason)?;
    if !session.take_report() {
        return Err(ApiError::new(
            ErrorCode::RateLimited,
            "you have sent many reports lately; wait a few minutes",
        ));
    }
    let about = target(&shared, &handle).await?.id;
    let from = session.user.id;
    let now = unix_ms();
    shared
        .store
        .call(move |s| s.report(from, about, &reason, now))
        .await?;
    tracing::info!(reporter = %session.user.handle, reported = %text::terminal_safe(&handle), "report filed");
    Ok(StatusCode::CREATED)
}

/// Spends one of the account's store calls, or says to slow down.
fn store_call(session: &SessionEntry) -> Result<(), ApiError> {
    if session.take_store_call() {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorCode::RateLimited,
            "too many account requests at once; wait a moment",
        ))
    }
}

fn require_admin(session: &SessionEntry) -> Result<(), ApiError> {
    if session.admin {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorCode::Forbidden,
            "only the server's admins may do this",
        ))
    }
}

async fn reports(
    State(shared): State<Arc<Shared>>,
    Authed(session): Authed,
) -> Result<Json<ReportList>, ApiError> {
    require_admin(&session)?;
    let reports = shared.store.call(|s| s.reports(500)).await?;
    Ok(Json(ReportList {
        reports: reports
            .into_iter()
            .map(|r| ReportInfo {
                id: r.id,
                reporter: r.reporter,
                reported: r.reported,
                reason: r.reason,
                created_at_ms: r.created_ms,
            })
            .collect(),
    }))
}

async fn suspend(
    State(shared): State<Arc<Shared>>,
    Authed(session): Authed,
    Path(handle): Path<String>,
    body: Result<Json<Reason>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    require_admin(&session)?;
    let Json(request) = body?;
    let reason = clean_reason(&request.reason)?;
    let account = target(&shared, &handle).await?;
    if account.id == session.user.id {
        return Err(ApiError::new(
            ErrorCode::Yourself,
            "you cannot suspend yourself",
        ));
    }
    let id = account.id;
    let now = unix_ms();
    let stored = reason.clone();
    shared
        .store
        .call(move |s| s.set_suspended(id, Some(&stored), now))
        .await?;
    shared.revoke(Revocation::Account {
        id,
        suspended: Some(reason),
    });
    tracing::warn!(handle = %account.handle, by = %session.user.handle, "account suspended");
    Ok(StatusCode::NO_CONTENT)
}

async fn unsuspend(
    State(shared): State<Arc<Shared>>,
    Authed(session): Authed,
    Path(handle): Path<String>,
) -> Result<StatusCode, ApiError> {
    require_admin(&session)?;
    let id = target(&shared, &handle).await?.id;
    let now = unix_ms();
    shared
        .store
        .call(move |s| s.set_suspended(id, None, now))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A token from the store, when the cache does not have it.
pub(crate) async fn session_from_store(
    shared: &Arc<Shared>,
    token: &str,
) -> Result<Arc<SessionEntry>, ApiError> {
    let hash = identity::sha256(token.as_bytes());
    let now = unix_ms();
    let mark = shared.revocation_mark();
    let found = shared.store.call(move |s| s.token(&hash, now)).await?;
    let Some((account, device, expires_ms)) = found else {
        return Err(unauthorized(
            "unknown or expired token; sign in again (the client does this with its device key)",
        ));
    };
    if let Some(reason) = &account.suspended {
        return Err(suspended(reason));
    }
    let entry = shared.cache_session(hash, &account, &device, expires_ms, mark)?;
    entry.last_used_ms.store(monotonic_ms(), Ordering::Relaxed);
    Ok(entry)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_challenge_table_gives_way_oldest_first() {
        let mut table = Challenges::default();
        let first = table.issue(0);
        let second = table.issue(0);
        for _ in 2..MAX_CHALLENGES {
            table.issue(0);
        }
        let newest = table.issue(0);
        assert!(!table.take(&first, 1), "the oldest gave way");
        assert!(table.take(&second, 1), "the rest are good");
        assert!(table.take(&newest, 1));
        assert!(!table.take(&newest, 1), "once");
        assert!(table.open.len() <= MAX_CHALLENGES);
    }

    #[test]
    fn a_server_answers_to_its_own_names_only() {
        let public = vec!["https://Rooms.Example.org".to_string()];
        let everywhere = Origins::new(&public, "0.0.0.0:7600".parse().expect("addr"));
        for ok in [
            "rooms.example.org",
            "localhost:7600",
            "127.0.0.1:7600",
            "[::1]:7600",
        ] {
            assert!(everywhere.accepts(ok), "{ok}");
        }
        for no in [
            "evil.example",
            "localhost:9000",
            "10.0.0.5:7600",
            "rooms.example.org:443",
        ] {
            assert!(!everywhere.accepts(no), "{no}");
        }
        assert!(!everywhere.only_loopback());
        assert!(Origins::new(&[], "0.0.0.0:7600".parse().expect("addr")).only_loopback());

        let one_address = Origins::new(&[], "192.0.2.7:7600".parse().expect("addr"));
        assert!(one_address.accepts("192.0.2.7:7600"));
        assert!(!one_address.accepts("localhost:7600"), "not on loopback");

        // Bound to loopback, any local port forward is this machine.
        let local = Origins::new(&[], "127.0.0.1:7600".parse().expect("addr"));
        for ok in [
            "127.0.0.1:7600",
            "127.0.0.1:41234",
            "localhost:9000",
            "[::1]:1",
        ] {
            assert!(local.accepts(ok), "{ok}");
        }
        for no in [
            "evil.example:7600",
            "localhost",
            "localhost:x",
            "127.0.0.2:7600",
        ] {
            assert!(!local.accepts(no), "{no}");
        }
    }
}
