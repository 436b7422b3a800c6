//! The REST API and the WebSocket upgrade: routes, authentication, validation and errors;
//! and serving one accepted connection (TLS, HTTP/1.1, the upgrade) with its deadlines.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::{Json, Router};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use super::access::{Access, Verdict};
use super::actor::{self, RoomCommand, RoomHandle};
use super::addr::AddrKey;
use super::budget::Spend;
use super::listener::{ConnGuard, Tracked};
use super::room::{Refusal, Room};
use super::{SessionEntry, Shared, accounts, cluster, connection, monotonic_ms, unix_ms};
use crate::protocol::text::{self, TextKind};
use crate::protocol::{
    ClusterNode, ClusterStatus, CreateRoom, ErrorBody, ErrorCode, ErrorDetail, PROTOCOL_VERSION,
    RoomDetail, RoomList, RoomSummary, ServerInfo, Share, UserId,
};

/// The most people a private room is shared with by handle (the rest: followers, a link).
pub const MAX_SHARED_HANDLES: usize = 100;

/// `?share=SECRET` on a private room's URLs: the share link's secret.
#[derive(Debug, Default, serde::Deserialize)]
pub struct ShareQuery {
    #[serde(default)]
    share: Option<String>,
}

/// Request bodies are small JSON objects; anything larger is refused with 413.
const MAX_BODY_BYTES: usize = 16 * 1024;

type SharedState = State<Arc<Shared>>;

/// Which routes a listener serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Surface {
    /// The API, and `/metrics` unless it has its own address or the server is invite-only
    /// (its counters are nobody else's business there).
    Public,
    /// `--metrics-listen`: `/metrics` and `/healthz` only.
    Metrics,
}

pub fn router(shared: Arc<Shared>, surface: Surface) -> Router {
    let healthz = get(|| async { "ok\n" });
    if surface == Surface::Metrics {
        return Router::new()
            .route("/healthz", healthz)
            .route("/metrics", get(metrics))
            .with_state(shared);
    }
    let mut router = Router::new().route("/healthz", healthz);
    if shared.config.metrics_listen.is_none() && !shared.config.invite_only {
        router = router.route("/metrics", get(metrics));
    }
    router
        .route("/api/v1", any(upgrade_required))
        .route("/api/v1/{*rest}", any(upgrade_required))
        .route("/api/v2", get(server_info))
        .route("/api/v2/rooms", get(list_rooms).post(create_room))
        .route("/api/v2/cluster", get(cluster_status))
        .route("/api/v2/rooms/{id}", get(get_room))
        .route("/api/v2/rooms/{id}/live", get(live))
        .merge(accounts::routes())
        .merge(super::schedule::routes())
        .merge(super::replay_api::routes())
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                ErrorCode::MethodNotAllowed,
                "this endpoint does not take that HTTP method; see docs/protocol.md",
            )
        })
        .fallback(|| async {
            ApiError::new(
                ErrorCode::NotFound,
                "no such endpoint; see docs/protocol.md",
            )
        })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(shared)
}

/// Serves one accepted connection: the TLS handshake (if any), then HTTP/1.1 requests
/// until the client, a deadline or shutdown ends it; a WebSocket upgrade carries on in
/// its own task (see `live`), holding the connection's place.
pub async fn serve_connection(
    shared: Arc<Shared>,
    router: Router,
    tcp: TcpStream,
    guard: Arc<ConnGuard>,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    let conn = guard.conn.clone();
    let tracked = Tracked::new(tcp, conn.clone());
    match tls {
        None => serve_http(shared, router, tracked, guard).await,
        Some(acceptor) => {
            // The handshake is held to the request deadline by the sweep, like a request.
            let handshake = tokio::select! {
                () = conn.close.cancelled() => return,
                handshake = acceptor.accept(tracked) => handshake,
            };
            match handshake {
                Ok(stream) => serve_http(shared, router, stream, guard).await,
                Err(e) => tracing::debug!(peer = %conn.peer, "TLS handshake failed: {e}"),
            }
        }
    }
}

async fn serve_http<S>(shared: Arc<Shared>, router: Router, io: S, guard: Arc<ConnGuard>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let conn = guard.conn.clone();
    let service = {
        let shared = shared.clone();
        let guard = guard.clone();
        hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
            let addr = shared
                .config
                .trusted_proxies
                .client_addr(guard.conn.peer, request.headers());
            request.extensions_mut().insert(Client {
                addr,
                guard: guard.clone(),
            });
            let router = router.clone();
            let guard = guard.clone();
            async move {
                let response = router.oneshot(request.map(axum::body::Body::new)).await;
                // The request was read whole and answered: the deadline is off until the
                // next one begins.
                guard.conn.finished_one();
                response
            }
        })
    };
    let timeouts = shared.config.limits.timeouts;
    let http = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(timeouts.request)
        .max_buf_size(64 * 1024)
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(http);
    tokio::select! {
        result = http.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(peer = %conn.peer, "HTTP connection ended: {e}");
            }
        }
        () = conn.close.cancelled() => {}
        () = shared.shutdown.cancelled() => {
            http.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(std::time::Duration::from_secs(1), http).await;
        }
    }
}

/// Who sent a request: the client's address (see [`super::addr`]) and the connection's
/// place among all connections.
#[derive(Clone)]
pub struct Client {
    pub addr: IpAddr,
    pub guard: Arc<ConnGuard>,
}

impl Client {
    pub(crate) fn key(&self) -> AddrKey {
        AddrKey::of(self.addr)
    }
}

impl<S: Sync> FromRequestParts<S> for Client {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        // Every request comes through `serve_http`, which sets it.
        parts
            .extensions
            .get::<Client>()
            .cloned()
            .ok_or_else(internal)
    }
}

/// An error response: `{"error": {"code", "message"}}` with the code's HTTP status.
#[derive(Debug)]
pub struct ApiError {
    code: ErrorCode,
    message: String,
}

impl ApiError {
    pub(crate) fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> Self {
        Self::new(r.code, r.message)
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Self::new(
                ErrorCode::PayloadTooLarge,
                format!("request bodies are at most {MAX_BODY_BYTES} bytes"),
            )
        } else {
            Self::new(ErrorCode::BadRequest, rejection.body_text())
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.code.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message,
            },
        };
        (status, Json(body)).into_response()
    }
}

/// The signed-in user of a request (`Authorization: Bearer TOKEN`).
pub struct Authed(pub Arc<SessionEntry>);

impl FromRequestParts<Arc<Shared>> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, shared: &Arc<Shared>) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let Some(token) = header.and_then(bearer_token) else {
            return Err(unauthorized(
                "send `Authorization: Bearer TOKEN`; sign in with POST /api/v2/sessions",
            ));
        };
        let hash = crate::identity::sha256(token.as_bytes());
        let cached = shared
            .sessions
            .read()
            .map_err(|_| internal())?
            .get(&hash)
            .cloned();
        match cached {
            Some(entry) if entry.expires_ms > unix_ms() => {
                entry.last_used_ms.store(monotonic_ms(), Ordering::Relaxed);
                Ok(Self(entry))
            }
            _ => {
                // A token not in memory costs a look-up in the store: a sign-in's worth of
                // the address's budget, so made-up tokens cannot keep the store busy. A real
                // one misses once per restart or idle day.
                let client = parts
                    .extensions
                    .get::<Client>()
                    .cloned()
                    .ok_or_else(internal)?;
                if !shared.budgets.try_spend(client.key(), Spend::Session) {
                    return Err(ApiError::new(
                        ErrorCode::RateLimited,
                        "too many sign-ins from your address; wait a minute",
                    ));
                }
                accounts::session_from_store(shared, token).await.map(Self)
            }
        }
    }
}

/// The token of an `Authorization: Bearer TOKEN` header; the scheme is case-insensitive
/// (RFC 9110, 11.1).
fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim_start().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// A bearer token where one is optional.
pub struct MaybeAuthed(Option<Authed>);

impl MaybeAuthed {
    /// The signed-in user, if any.
    pub fn user_id(&self) -> Option<UserId> {
        self.0.as_ref().map(|Authed(session)| session.user.id)
    }
}

impl FromRequestParts<Arc<Shared>> for MaybeAuthed {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, shared: &Arc<Shared>) -> Result<Self, ApiError> {
        if parts
            .headers
            .contains_key(axum::http::header::AUTHORIZATION)
        {
            Authed::from_request_parts(parts, shared)
                .await
                .map(|a| Self(Some(a)))
        } else {
            Ok(Self(None))
        }
    }
}

pub(crate) fn unauthorized(message: &str) -> ApiError {
    ApiError::new(ErrorCode::Unauthorized, message)
}

pub(crate) fn internal() -> ApiError {
    ApiError::new(ErrorCode::Internal, "internal error; try again")
}

async fn metrics(State(shared): SharedState) -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        shared.metrics.render(),
    )
}

async fn server_info(State(shared): SharedState) -> Json<ServerInfo> {
    Json(ServerInfo {
        server: "hallway".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        protocol_version: PROTOCOL_VERSION,
        invite_only: shared.config.invite_only,
        nodes: shared
            .cluster
            .as_ref()
            .map(|c| c.live_nodes().into_iter().map(|n| n.url).collect())
            .unwrap_or_default(),
    })
}

async fn cluster_status(State(shared): SharedState) -> Result<Json<ClusterStatus>, ApiError> {
    let cluster = shared.cluster.as_ref().ok_or_else(|| {
        ApiError::new(
            ErrorCode::NotFound,
            "this server is not in a cluster (`hallway serve --cluster`)",
        )
    })?;
    Ok(Json(ClusterStatus {
        node: cluster.node.clone(),
        nodes: cluster
            .live_nodes()
            .into_iter()
            .map(|n| ClusterNode {
                name: n.name,
                url: n.url,
                rooms: n.rooms,
                members: n.members,
                started_ms: n.started_ms,
            })
            .collect(),
        nats_rtt_ms: cluster.rtt_ms(),
    }))
}

/// Every version-1 path: guest sessions are gone, and the client must be upgraded.
async fn upgrade_required() -> Response {
    let mut response = ApiError::new(
        ErrorCode::UpgradeRequired,
        format!(
            "this server speaks Hallway protocol version {PROTOCOL_VERSION} (accounts on device keys); please upgrade your client"
        ),
    )
    .into_response();
    // RFC 9110, 15.5.22: a 426 names the protocol to upgrade to.
    response
        .headers_mut()
        .insert(header::UPGRADE, HeaderValue::from_static("hallway/2"));
    response
}

/// A name or title as the server keeps it (see [`crate::protocol::text::clean_name`]).
pub(crate) fn clean_text(text: &str, max: usize, what: TextKind) -> Result<String, ApiError> {
    text::clean_name(text, max, what).map_err(|e| {
        let code = match what {
            TextKind::DisplayName => ErrorCode::InvalidName,
            TextKind::RoomTitle => ErrorCode::InvalidTitle,
            TextKind::ChatLine | TextKind::Pin => ErrorCode::InvalidText,
            TextKind::Bio | TextKind::Reason | TextKind::DeviceLabel | TextKind::Description => {
                ErrorCode::BadRequest
            }
        };
        ApiError::new(code, e.to_string())
    })
}

async fn list_rooms(
    State(shared): SharedState,
    auth: MaybeAuthed,
) -> Result<Json<RoomList>, ApiError> {
    if shared.config.invite_only && auth.0.is_none() {
        return Err(unauthorized(
            "this server is invite-only: sign in first (an invitation makes an account)",
        ));
    }
    let following: HashSet<UserId> = match &auth.0 {
        Some(Authed(session)) => {
            let id = session.user.id;
            shared
                .store
                .call(move |s| s.following(id))
                .await?
                .into_iter()
                .collect()
        }
        None => HashSet::new(),
    };
    let mut listed: Vec<(RoomSummary, Option<Arc<Access>>)> = {
        let rooms = shared.rooms.read().map_err(|_| internal())?;
        rooms
            .values()
            .map(|handle| (handle.summary.borrow().clone(), handle.access.clone()))
            .collect()
    };
    // In a cluster, every node lists every live room.
    if let Some(cluster) = &shared.cluster {
        listed.extend(
            cluster
                .remote_entries()
                .into_iter()
                .map(|entry| (entry.summary, entry.access.map(Arc::new))),
        );
    }
    // Private rooms only to those they are shared with; whether an owner follows the
    // viewer is asked of the store once per owner, not once per room.
    let viewer = auth.0.as_ref().map(|Authed(session)| session.user.id);
    let mut owner_follows: HashMap<UserId, bool> = HashMap::new();
    let mut rooms = Vec::with_capacity(listed.len());
    for (summary, access) in listed {
        let shown = match (access, viewer) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(access), Some(viewer)) => match access.check(viewer, None) {
                Verdict::Yes => true,
                Verdict::No => false,
                Verdict::IfFollowed => match owner_follows.get(&access.owner) {
                    Some(follows) => *follows,
                    None => {
                        let owner = access.owner;
                        let follows = shared
                            .store
                            .call(move |s| s.following(owner))
                            .await?
                            .contains(&viewer);
                        owner_follows.insert(owner, follows);
                        follows
                    }
                },
            },
        };
        if shown {
            rooms.push(summary);
        }
    }
    order_rooms(&mut rooms, &following);
    Ok(Json(RoomList { rooms }))
}

/// Rooms with someone `following` lists on the stage first (marked `followed`), then the
/// rest; newest first within each, as a hallway lists what just went live at the top.
pub fn order_rooms(rooms: &mut [RoomSummary], following: &HashSet<UserId>) {
    for room in rooms.iter_mut() {
        room.followed = room.speakers.iter().any(|s| following.contains(&s.id));
    }
    rooms.sort_by(|a, b| {
        b.followed
            .cmp(&a.followed)
            .then_with(|| b.created_at_ms.cmp(&a.created_at_ms))
            .then_with(|| a.id.cmp(&b.id))
    });
}

async fn create_room(
    State(shared): SharedState,
    client: Client,
    Authed(session): Authed,
    body: Result<Json<CreateRoom>, JsonRejection>,
) -> Result<(StatusCode, Json<RoomDetail>), ApiError> {
    let Json(request) = body?;
    let limits = &shared.config.limits;
    let title = clean_text(&request.title, limits.max_title_chars, TextKind::RoomTitle)?;
    if request.replay && request.private.is_some() {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            "private rooms are never replayed: their audio is end-to-end encrypted; choose one",
        ));
    }
    if request.replay && shared.replays.is_none() {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            "this server keeps no replays (its operator can start it with --replays DIR); create the room without one",
        ));
    }
    spend_room_budget(&shared, &client, &session)?;
    // After the budgets: the handles cost store calls.
    let access = match &request.private {
        Some(share) => Some(Arc::new(private_access(&shared, &session, share).await?)),
        None => None,
    };
    let detail = open_room(&shared, &session, title, access, request.replay)?;
    Ok((StatusCode::CREATED, Json(detail)))
}

/// A new room costs its maker's and their address's room budgets.
pub(crate) fn spend_room_budget(
    shared: &Shared,
    client: &Client,
    session: &SessionEntry,
) -> Result<(), ApiError> {
    let limits = &shared.config.limits;
    if !session.take_room() {
        return Err(ApiError::new(
            ErrorCode::RateLimited,
            format!(
                "at most {} new rooms a minute; wait a little",
                limits.rooms_per_minute
            ),
        ));
    }
    if !shared.budgets.try_spend(client.key(), Spend::Room) {
        return Err(ApiError::new(
            ErrorCode::RateLimited,
            format!(
                "too many new rooms from your address (at most {} an hour); wait, or join a live one",
                limits.address.rooms_per_hour
            ),
        ));
    }
    Ok(())
}

/// Opens a room made by `session`'s user (who is expected to join it), titled `title`
/// (already cleaned), private when `access` says who it is shared with.
pub(crate) fn open_room(
    shared: &Arc<Shared>,
    session: &SessionEntry,
    title: String,
    access: Option<Arc<Access>>,
    replay: bool,
) -> Result<RoomDetail, ApiError> {
    let limits = &shared.config.limits;
    let detail = {
        let mut rooms = shared.rooms.write().map_err(|_| internal())?;
        if rooms.len() >= limits.max_rooms {
            return Err(ApiError::new(
                ErrorCode::ServerFull,
                "this server has too many live rooms; try again later",
            ));
        }
        let id = loop {
            let id = new_room_id();
            let elsewhere = shared
                .cluster
                .as_ref()
                .is_some_and(|c| c.home_of(&id).is_some());
            if !rooms.contains_key(&id) && !elsewhere {
                break id;
            }
        };
        let mut room = Room::new(id.clone(), title, session.user.id, unix_ms(), limits.room);
        if let Some(access) = &access {
            room.make_private(access.link_secret.clone());
        }
        if replay {
            room.keep_replay();
        }
        // The maker's own copy tells them the share link's secret.
        let mut detail = room.detail();
        detail.share_secret = access.as_ref().and_then(|a| a.link_secret.clone());
        rooms.insert(id, actor::spawn_claimed(shared.clone(), room, None, access));
        detail
    };
    shared.metrics.rooms.inc();
    // Names and titles are clean already (`clean_text`); escaped anyway, as every log line
    // with a peer's words is, so a rule changed later cannot open the log to injection.
    tracing::info!(
        room = %detail.summary.id,
        title = %text::terminal_safe(&detail.summary.title),
        host = %text::terminal_safe(&session.user.name),
        "room created"
    );
    Ok(detail)
}

/// The room homed here, or in a cluster this node's edge for a room homed on another; a
/// room whose home died is taken over here (see [`Room::resume`]).
async fn room_handle(shared: &Arc<Shared>, id: &str) -> Result<RoomHandle, ApiError> {
    let not_found = || {
        ApiError::new(
            ErrorCode::RoomNotFound,
            format!("no live room {id:?}; it may have ended"),
        )
    };
    let here = |shared: &Shared| -> Result<Option<RoomHandle>, ApiError> {
        Ok(shared
            .rooms
            .read()
            .map_err(|_| internal())?
            .get(id)
            .cloned())
    };
    if let Some(handle) = here(shared)? {
        return Ok(handle);
    }
    let Some(cluster) = &shared.cluster else {
        return Err(not_found());
    };
    // Never a NATS subject's wildcard or separator from a URL.
    if !cluster::wire::valid_room_id(id) {
        return Err(not_found());
    }
    if let Some(entry) = cluster.remote_room(id) {
        return Ok(cluster::edge::handle(shared, cluster, entry));
    }
    // Just taken over here, and its actor not in the map yet: a moment.
    if cluster.homed_here(id) {
        return Err(ApiError::new(
            ErrorCode::Reconnect,
            "the room is moving to this server; connect again",
        ));
    }
    let Some((entry, revision)) = cluster.orphan(id) else {
        return Err(not_found());
    };
    // Claimed with the stage it had, so that a second failure soon after still knows who
    // gets their role back.
    let Some(claimed) = cluster.claim_room(&entry, revision).await else {
        return Err(ApiError::new(
            ErrorCode::Reconnect,
            "the room is moving to another server; connect again",
        ));
    };
    let room = Room::resume(
        &entry.summary,
        &entry.carried,
        unix_ms(),
        shared.config.limits.room,
    );
    let mut rooms = shared.rooms.write().map_err(|_| internal())?;
    let handle = rooms
        .entry(id.to_string())
        .or_insert_with(|| {
            tracing::info!(room = %id, from = %entry.home, "carrying on a room whose server is gone");
            shared.metrics.rooms.inc();
            actor::spawn_claimed(
                shared.clone(),
                room,
                Some(claimed),
                entry.access.clone().map(Arc::new),
            )
        })
        .clone();
    Ok(handle)
}

async fn get_room(
    State(shared): SharedState,
    auth: MaybeAuthed,
    Path(id): Path<String>,
    Query(query): Query<ShareQuery>,
) -> Result<Json<RoomDetail>, ApiError> {
    if shared.config.invite_only && auth.0.is_none() {
        return Err(unauthorized(
            "this server is invite-only: sign in first (an invitation makes an account)",
        ));
    }
    let gone = || ApiError::new(ErrorCode::RoomNotFound, format!("room {id:?} has ended"));
    let not_found = || {
        ApiError::new(
            ErrorCode::RoomNotFound,
            format!("no live room {id:?}; it may have ended"),
        )
    };
    let viewer = auth.0.as_ref().map(|Authed(session)| session.user.id);
    let share = query.share.as_deref();
    let here = shared
        .rooms
        .read()
        .map_err(|_| internal())?
        .get(&id)
        .cloned();
    // A private room is described only to those it is shared with; to anyone else it is
    // not there.
    let access = match (&here, &shared.cluster) {
        (Some(handle), _) => handle.access.clone(),
        (None, Some(cluster)) if cluster::wire::valid_room_id(&id) => cluster
            .remote_room(&id)
            .and_then(|entry| entry.access)
            .map(Arc::new),
        (None, _) => None,
    };
    if !admitted(&shared, access.as_deref(), viewer, share).await? {
        return Err(not_found());
    }
    let handle = match (here, &shared.cluster) {
        (Some(handle), _) => handle,
        // Homed elsewhere: asked of its home directly. A look at a room opens no edge here
        // (that is for joining: a crawler of the room list must not subscribe a node to
        // every room's audio) and carries on no orphan.
        (None, Some(cluster))
            if cluster::wire::valid_room_id(&id) && cluster.remote_room(&id).is_some() =>
        {
            return cluster.describe(&id).await.map(Json).ok_or_else(gone);
        }
        (None, _) => return Err(not_found()),
    };
    let (reply, answer) = oneshot::channel();
    handle
        .tx
        .send(RoomCommand::Describe { reply })
        .await
        .map_err(|_| gone())?;
    Ok(Json(answer.await.map_err(|_| gone())?))
}

async fn live(
    State(shared): SharedState,
    Authed(session): Authed,
    Path(id): Path<String>,
    Query(query): Query<ShareQuery>,
    upgrade: Result<Upgrade, ApiError>,
    client: Client,
) -> Result<Response, ApiError> {
    let upgrade = upgrade?;
    if shared.shutdown.is_cancelled() {
        return Err(ApiError::new(
            ErrorCode::ServerShutdown,
            "the server is shutting down",
        ));
    }
    if !shared.budgets.try_spend(client.key(), Spend::Join) {
        return Err(ApiError::new(
            ErrorCode::RateLimited,
            format!(
                "too many joins from your address (at most {} a second); wait a moment",
                shared.config.limits.address.joins_per_second
            ),
        ));
    }
    let peer = client.addr;
    // The door first, refused as if there were no such room: a stranger learns nothing of
    // a private one, and starts nothing (in a cluster, no edge, no carrying on).
    if !admitted(
        &shared,
        access_of(&shared, &id)?.as_deref(),
        Some(session.user.id),
        query.share.as_deref(),
    )
    .await?
    {
        return Err(ApiError::new(
            ErrorCode::RoomNotFound,
            format!("no live room {id:?}; it may have ended"),
        ));
    }
    let handle = room_handle(&shared, &id).await?;
    let device = Some(crate::identity::b64(&session.agree_key));
    // A big room homed here serves its newcomers from its fan-out shards, in turn.
    let handle = match &handle.shards {
        Some(shards) => {
            let members = {
                let summary = handle.summary.borrow();
                summary.listener_count + summary.speakers.len()
            };
            if members >= shards.from {
                shards.pick(&shared).unwrap_or(handle)
            } else {
                handle
            }
        }
        None => handle,
    };
    // A person blocked by the room's host or a moderator stays out; the host and the
    // moderators themselves are not held to one another's blocks (ranks decide between them,
    // as in removing).
    let moderators: Vec<UserId> = {
        let summary = handle.summary.borrow();
        let runs_it = summary
            .speakers
            .iter()
            .any(|s| s.id == session.user.id && s.role.is_moderator());
        if runs_it {
            Vec::new()
        } else {
            summary
                .speakers
                .iter()
                .filter(|s| s.role.is_moderator())
                .map(|s| s.id)
                .collect()
        }
    };
    if !moderators.is_empty() {
        let me = session.user.id;
        let blockers = shared
            .store
            .call(move |s| s.blocked_by(me, &moderators))
            .await?;
        if !blockers.is_empty() {
            return Err(ApiError::new(
                ErrorCode::Blocked,
                "the host or a moderator of this room blocks you; pick another room",
            ));
        }
    }
    let (reply, answer) = oneshot::channel();
    let gone = || ApiError::new(ErrorCode::RoomNotFound, format!("room {id:?} has ended"));
    handle
        .tx
        .send(RoomCommand::Admit {
            user: session.user.clone(),
            addr: peer,
            reply,
        })
        .await
        .map_err(|_| gone())?;
    answer.await.map_err(|_| gone())??;
    tracing::debug!(room = %id, user = session.user.id, %peer, "joining");
    let user = session.user.clone();
    let Upgrade { on_upgrade, accept } = upgrade;
    shared.tasks.clone().spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let io = TokioIo::new(upgraded);
                session.live.fetch_add(1, Ordering::Relaxed);
                // A device signed out while in the room is put out of it (a suspension
                // expels the account everywhere already).
                let served = CancellationToken::new();
                let watch = (session.clone(), served.clone(), handle.tx.clone(), user.id);
                tokio::spawn(async move {
                    let (session, served, room, user) = watch;
                    tokio::select! {
                        () = session.revoked.cancelled() => {
                            let _ = room
                                .send(RoomCommand::Expel {
                                    user,
                                    code: ErrorCode::Unauthorized,
                                    message: "this device was signed out of the account".into(),
                                    by: None,
                                })
                                .await;
                        }
                        () = served.cancelled() => {}
                    }
                });
                connection::serve(io, shared, user, device, handle, peer, client.guard).await;
                served.cancel();
                session.live.fetch_sub(1, Ordering::Relaxed);
                session
                    .last_used_ms
                    .store(monotonic_ms(), Ordering::Relaxed);
            }
            Err(e) => tracing::debug!(%peer, "WebSocket upgrade failed: {e}"),
        }
    });
    let mut response = Response::new(axum::body::Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    Ok(response)
}

/// A WebSocket upgrade request (RFC 6455, 4.2.1), taken apart. The server runs the
/// connection on the upgraded socket itself (see `connection`), so it answers the
/// handshake itself too.
pub struct Upgrade {
    on_upgrade: hyper::upgrade::OnUpgrade,
    accept: HeaderValue,
}

impl<S: Sync> FromRequestParts<S> for Upgrade {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let refuse = |what: &str| {
            ApiError::new(
                ErrorCode::BadRequest,
                format!("this endpoint takes a WebSocket upgrade ({what})"),
            )
        };
        if parts.method != axum::http::Method::GET {
            return Err(refuse("use GET"));
        }
        let headers = &parts.headers;
        if !header_has_token(headers, header::CONNECTION, "upgrade") {
            return Err(refuse("`Connection: upgrade` is missing"));
        }
        if !header_has_token(headers, header::UPGRADE, "websocket") {
            return Err(refuse("`Upgrade: websocket` is missing"));
        }
        if headers
            .get(header::SEC_WEBSOCKET_VERSION)
            .is_none_or(|v| v.as_bytes() != b"13")
        {
            return Err(refuse("`Sec-WebSocket-Version: 13` is missing"));
        }
        let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY) else {
            return Err(refuse("`Sec-WebSocket-Key` is missing"));
        };
        let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
        let accept = HeaderValue::from_str(&accept).map_err(|_| internal())?;
        let on_upgrade = parts
            .extensions
            .remove::<hyper::upgrade::OnUpgrade>()
            .ok_or_else(|| refuse("this connection cannot be upgraded; use HTTP/1.1"))?;
        Ok(Self { on_upgrade, accept })
    }
}

/// Whether a comma-separated header (`Connection`, `Upgrade`) lists `token`, in any case.
fn header_has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// A private room's sharing, from the maker's request: the handles must all exist.
async fn private_access(
    shared: &Shared,
    session: &SessionEntry,
    share: &Share,
) -> Result<Access, ApiError> {
    if share.handles.is_empty() && !share.followers && !share.link {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            "a private room must be shared with someone: handles, the people you follow, or a link",
        ));
    }
    if share.handles.len() > MAX_SHARED_HANDLES {
        return Err(ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!(
                "a private room is shared with at most {MAX_SHARED_HANDLES} handles; share it with the people you follow or by link"
            ),
        ));
    }
    let mut shared_with = Vec::with_capacity(share.handles.len());
    for handle in &share.handles {
        let account = accounts::target(shared, handle).await.map_err(|e| {
            ApiError::new(
                e.code,
                format!(
                    "cannot share with @{}: {}",
                    text::terminal_safe(handle.trim_start_matches('@')),
                    e.message
                ),
            )
        })?;
        shared_with.push(account.id);
    }
    Ok(Access::new(
        session.user.id,
        shared_with,
        share.followers,
        share.link.then(|| crate::identity::random_code(16)),
    ))
}

/// A room's sharing, if it is private: homed here, on another node, or orphaned.
fn access_of(shared: &Shared, id: &str) -> Result<Option<Arc<Access>>, ApiError> {
    if let Some(handle) = shared.rooms.read().map_err(|_| internal())?.get(id) {
        return Ok(handle.access.clone());
    }
    let Some(cluster) = &shared.cluster else {
        return Ok(None);
    };
    if !cluster::wire::valid_room_id(id) {
        return Ok(None);
    }
    let entry = cluster
        .remote_room(id)
        .or_else(|| cluster.orphan(id).map(|(entry, _)| entry));
    Ok(entry.and_then(|entry| entry.access).map(Arc::new))
}

/// Whether `viewer` may see and join a room: everyone a public one, a private one only
/// those it is shared with (`secret`: the share link's, if they came by it).
async fn admitted(
    shared: &Shared,
    access: Option<&Access>,
    viewer: Option<UserId>,
    secret: Option<&str>,
) -> Result<bool, ApiError> {
    let Some(access) = access else {
        return Ok(true);
    };
    let Some(viewer) = viewer else {
        return Ok(false);
    };
    Ok(match access.check(viewer, secret) {
        Verdict::Yes => true,
        Verdict::No => false,
        Verdict::IfFollowed => {
            let owner = access.owner;
            shared
                .store
                .call(move |s| s.following(owner))
                .await?
                .contains(&viewer)
        }
    })
}

/// A short room id for links: 8 characters from an alphabet without look-alikes (about 40 bits).
fn new_room_id() -> String {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
    (0..8)
        .map(|_| ALPHABET[rand::random::<u32>() as usize % ALPHABET.len()] as char)
        .collect()
}
