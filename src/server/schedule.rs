//! Scheduled rooms over REST (#15): `POST /api/v2/schedule` announces a room, `GET` lists
//! what is coming (rooms of hosts the viewer follows first), the host starts one
//! (`POST /api/v2/schedule/{id}/start`, a live room like any other, costing the same room
//! budgets) or cancels it (`DELETE`). They live in the store, so a restart keeps them.
//!
//! Abuse: a host has at most [`MAX_UPCOMING_PER_HOST`] upcoming at once and scheduling
//! spends the same per-account and per-address room budgets as opening a room; times in
//! the past or more than a year ahead are refused; titles and descriptions are cleaned as
//! room titles are. Only the host starts or cancels.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};

use super::http::{
    ApiError, Authed, Client, MaybeAuthed, clean_text, open_room, spend_room_budget,
};
use super::store::{NewScheduled, Scheduled, StoreError};
use super::{Shared, unix_ms};
use crate::protocol::schedule::{
    LATE_MS, MAX_AHEAD_MS, MAX_DESCRIPTION_CHARS, MAX_UPCOMING_PER_HOST, PAST_SLACK_MS,
    ScheduleList, ScheduleRoom, ScheduledRoom,
};
use crate::protocol::text::{self, TextKind};
use crate::protocol::{ErrorCode, RoomDetail, User, UserId};

type SharedState = State<Arc<Shared>>;

/// Rooms started this long ago still show in the list (with their live room) while live.
const STARTED_SHOWN_MS: u64 = 3_600_000;
/// The most scheduled rooms one listing holds.
const LISTED: usize = 200;
/// Rows read for a listing: more than it holds, since started rooms no longer live and a
/// host's rooms past [`PER_HOST_LISTED`] are left out after reading.
const READ: u32 = 1_000;
/// One host's rooms in a listing at most: a few hosts cannot fill the list.
const PER_HOST_LISTED: usize = 3;

pub fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/api/v2/schedule", get(list).post(schedule))
        .route("/api/v2/schedule/{id}", get(one).delete(cancel))
        .route("/api/v2/schedule/{id}/start", post(start))
}

fn wire(s: Scheduled, followed: bool) -> ScheduledRoom {
    ScheduledRoom {
        id: u64::try_from(s.id).unwrap_or_default(),
        title: s.title,
        description: s.description,
        host: User {
            id: s.host,
            handle: s.host_handle,
            name: s.host_name,
        },
        starts_at_ms: s.starts_at_ms,
        created_at_ms: s.created_ms,
        followed,
        // "" is a start under way: not a room yet.
        room: s.room.filter(|room| !room.is_empty()),
    }
}

fn id_of(id: &str) -> Result<i64, ApiError> {
    id.parse::<i64>().ok().filter(|id| *id > 0).ok_or_else(|| {
        ApiError::new(
            ErrorCode::RoomNotFound,
            "no such scheduled room; ids are numbers (see `hallway schedule list`)",
        )
    })
}

async fn schedule(
    State(shared): SharedState,
    client: Client,
    Authed(session): Authed,
    body: Result<Json<ScheduleRoom>, JsonRejection>,
) -> Result<(StatusCode, Json<ScheduledRoom>), ApiError> {
    let Json(request) = body?;
    let limits = &shared.config.limits;
    let title = clean_text(&request.title, limits.max_title_chars, TextKind::RoomTitle)?;
    let description = if request.description.trim().is_empty() {
        String::new()
    } else {
        clean_text(
            &request.description,
            MAX_DESCRIPTION_CHARS,
            TextKind::Description,
        )?
    };
    let now = unix_ms();
    if request.starts_at_ms.saturating_add(PAST_SLACK_MS) < now {
        return Err(ApiError::new(
            ErrorCode::InvalidTime,
            "that time has passed; pick a time ahead (or start a room now with `hallway play --create`)",
        ));
    }
    if request.starts_at_ms > now + MAX_AHEAD_MS {
        return Err(ApiError::new(
            ErrorCode::InvalidTime,
            "rooms can be scheduled at most a year ahead; pick an earlier time",
        ));
    }
    spend_room_budget(&shared, &client, &session)?;
    let new = NewScheduled {
        host: session.user.id,
        title,
        description,
        starts_at_ms: request.starts_at_ms,
        now_ms: now,
        max_upcoming: MAX_UPCOMING_PER_HOST,
        stale_before_ms: now.saturating_sub(LATE_MS),
    };
    let scheduled = shared.store.call(move |s| s.schedule(&new)).await?;
    tracing::info!(
        id = scheduled.id,
        title = %text::terminal_safe(&scheduled.title),
        host = %text::terminal_safe(&session.user.name),
        "room scheduled"
    );
    Ok((StatusCode::CREATED, Json(wire(scheduled, false))))
}

/// Whether live room `id` is still open (here, or anywhere in a cluster).
fn is_live(shared: &Shared, id: &str) -> bool {
    let here = shared
        .rooms
        .read()
        .map(|rooms| rooms.contains_key(id))
        .unwrap_or(false);
    here || shared
        .cluster
        .as_ref()
        .is_some_and(|c| c.remote_room(id).is_some())
}

async fn list(
    State(shared): SharedState,
    auth: MaybeAuthed,
) -> Result<Json<ScheduleList>, ApiError> {
    let viewer = auth.user_id();
    if shared.config.invite_only && viewer.is_none() {
        return Err(super::http::unauthorized(
            "this server is invite-only: sign in first (an invitation makes an account)",
        ));
    }
    let now = unix_ms();
    let (since, started_since) = (
        now.saturating_sub(LATE_MS),
        now.saturating_sub(STARTED_SHOWN_MS),
    );
    let following: HashSet<UserId> = match viewer {
        Some(id) => shared
            .store
            .call(move |s| s.following(id))
            .await?
            .into_iter()
            .collect(),
        None => HashSet::new(),
    };
    let mut per_host: HashMap<UserId, usize> = HashMap::new();
    let mut rooms: Vec<ScheduledRoom> = shared
        .store
        .call(move |s| s.upcoming(since, started_since, READ))
        .await?
        .into_iter()
        // A started room shows while it is live: "started, join it".
        .filter(|s| s.room.as_deref().is_none_or(|room| is_live(&shared, room)))
        .filter(|s| {
            let listed = per_host.entry(s.host).or_default();
            *listed += 1;
            *listed <= PER_HOST_LISTED
        })
        .map(|s| {
            let followed = following.contains(&s.host);
            wire(s, followed)
        })
        .collect();
    // Followed hosts first, then by time (the store's order, kept by a stable sort).
    rooms.sort_by_key(|r| !r.followed);
    rooms.truncate(LISTED);
    Ok(Json(ScheduleList { rooms }))
}

async fn one(
    State(shared): SharedState,
    auth: MaybeAuthed,
    Path(id): Path<String>,
) -> Result<Json<ScheduledRoom>, ApiError> {
    if shared.config.invite_only && auth.user_id().is_none() {
        return Err(super::http::unauthorized(
            "this server is invite-only: sign in first (an invitation makes an account)",
        ));
    }
    let id = id_of(&id)?;
    let scheduled = shared.store.call(move |s| s.scheduled(id)).await?;
    Ok(Json(wire(scheduled, false)))
}

/// The scheduled room `id` if `session`'s user hosts it.
async fn hosted(shared: &Shared, id: i64, user: UserId) -> Result<Scheduled, ApiError> {
    let scheduled = shared.store.call(move |s| s.scheduled(id)).await?;
    if scheduled.host != user {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "only its host can start or cancel a scheduled room",
        ));
    }
    Ok(scheduled)
}

async fn start(
    State(shared): SharedState,
    client: Client,
    Authed(session): Authed,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<RoomDetail>), ApiError> {
    let id = id_of(&id)?;
    let scheduled = hosted(&shared, id, session.user.id).await?;
    let started = |room: &str| {
        let message = if room.is_empty() {
            "it is being started right now".to_string()
        } else if is_live(&shared, room) {
            format!("it started already: join live room {room}")
        } else {
            "it took place already; schedule it again for another time".to_string()
        };
        ApiError::new(ErrorCode::AlreadyStarted, message)
    };
    if let Some(room) = &scheduled.room {
        return Err(started(room));
    }
    spend_room_budget(&shared, &client, &session)?;
    // Claimed before the room opens, so two starts at once open one room: the other is
    // told it is being started.
    let now = unix_ms();
    match shared
        .store
        .call(move |s| s.start_scheduled(id, "", now))
        .await
    {
        Ok(()) => {}
        Err(StoreError::NoSuchScheduled) => return Err(started("")),
        Err(e) => return Err(e.into()),
    }
    let detail = match open_room(&shared, &session, scheduled.title, None, false) {
        Ok(detail) => detail,
        Err(e) => {
            // Given back, so it can be started once the server has room.
            let _ = shared.store.call(move |s| s.finish_start(id, None)).await;
            return Err(e);
        }
    };
    let room = detail.summary.id.clone();
    shared
        .store
        .call(move |s| s.finish_start(id, Some(&room)))
        .await?;
    Ok((StatusCode::CREATED, Json(detail)))
}

async fn cancel(
    State(shared): SharedState,
    Authed(session): Authed,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = id_of(&id)?;
    hosted(&shared, id, session.user.id).await?;
    shared.store.call(move |s| s.cancel_scheduled(id)).await?;
    Ok(StatusCode::NO_CONTENT)
}
