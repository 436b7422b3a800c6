//! Replays over REST (#15): `GET /api/v2/replays` lists the replays of rooms that ended,
//! `GET /api/v2/replays/{id}` describes one, `GET /api/v2/replays/{id}/tracks/{user}`
//! hands out one speaker's Ogg Opus track as it was kept, and the host deletes one with
//! `DELETE /api/v2/replays/{id}`. Replays are public, as the rooms were; a server without
//! `--replays` answers that it keeps none.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use super::Shared;
use super::http::{ApiError, MaybeAuthed, unauthorized};
use super::replay::Replays;
use crate::protocol::replay::{ReplayInfo, ReplayList};
use crate::protocol::{ErrorCode, UserId};

type SharedState = State<Arc<Shared>>;

pub fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/api/v2/replays", get(list))
        .route("/api/v2/replays/{id}", get(one).delete(delete))
        .route("/api/v2/replays/{id}/tracks/{user}", get(track))
}

fn replays(shared: &Shared, auth: &MaybeAuthed) -> Result<Arc<Replays>, ApiError> {
    if shared.config.invite_only && auth.user_id().is_none() {
        return Err(unauthorized(
            "this server is invite-only: sign in first (an invitation makes an account)",
        ));
    }
    shared.replays.clone().ok_or_else(|| {
        ApiError::new(
            ErrorCode::NotFound,
            "this server keeps no replays (its operator can start it with --replays DIR)",
        )
    })
}

fn not_found(id: &str) -> ApiError {
    ApiError::new(
        ErrorCode::RoomNotFound,
        format!("no replay {id:?}: it was deleted, or its room kept none; see `hallway replays`"),
    )
}

/// `?limit=N`: the newest N only (the TUI's hallway asks for 20).
#[derive(Debug, serde::Deserialize)]
struct ListQuery {
    limit: Option<usize>,
}

async fn list(
    State(shared): SharedState,
    auth: MaybeAuthed,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<ReplayList>, ApiError> {
    let Ok(Query(query)) = query else {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            "limit is how many of the newest replays to list: a whole number, such as ?limit=20",
        ));
    };
    let replays = replays(&shared, &auth)?;
    let mut list = tokio::task::spawn_blocking(move || replays.list())
        .await
        .unwrap_or_default();
    if let Some(limit) = query.limit {
        list.truncate(limit);
    }
    Ok(Json(ReplayList { replays: list }))
}

async fn one(
    State(shared): SharedState,
    auth: MaybeAuthed,
    Path(id): Path<String>,
) -> Result<Json<ReplayInfo>, ApiError> {
    let replays = replays(&shared, &auth)?;
    let lookup = id.clone();
    tokio::task::spawn_blocking(move || replays.get(&lookup))
        .await
        .ok()
        .flatten()
        .filter(|info| info.ended_at_ms.is_some())
        .map(Json)
        .ok_or_else(|| not_found(&id))
}

async fn track(
    State(shared): SharedState,
    auth: MaybeAuthed,
    Path((id, user)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let replays = replays(&shared, &auth)?;
    let user: UserId = user.parse().map_err(|_| not_found(&id))?;
    let lookup = id.clone();
    let path = tokio::task::spawn_blocking(move || {
        let info = replays.get(&lookup).filter(|i| i.ended_at_ms.is_some())?;
        info.track(user)?;
        replays.track_path(&lookup, user)
    })
    .await
    .ok()
    .flatten()
    .ok_or_else(|| not_found(&id))?;
    // Streamed from the file: an hour of a speaker is 16 MB, and several downloads at once
    // must not each hold one in memory.
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|_| not_found(&id))?;
    let body = axum::body::Body::from_stream(tokio_util::io::ReaderStream::new(file));
    Ok(([(header::CONTENT_TYPE, "audio/ogg")], body).into_response())
}

async fn delete(
    State(shared): SharedState,
    auth: MaybeAuthed,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let replays = replays(&shared, &auth)?;
    let Some(user) = auth.user_id() else {
        return Err(unauthorized(
            "sign in as the room's host to delete its replay",
        ));
    };
    let lookup = id.clone();
    let found = {
        let replays = replays.clone();
        tokio::task::spawn_blocking(move || replays.get(&lookup))
            .await
            .ok()
            .flatten()
            .filter(|info| info.ended_at_ms.is_some())
    };
    let Some(info) = found else {
        return Err(not_found(&id));
    };
    if info.host.id != user {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "only the room's host can delete its replay",
        ));
    }
    tokio::task::spawn_blocking(move || replays.delete(&id))
        .await
        .map_err(|_| ApiError::new(ErrorCode::Internal, "deleting failed; try again"))?
        .map_err(|e| ApiError::new(ErrorCode::Internal, format!("deleting failed: {e}")))?;
    Ok(StatusCode::NO_CONTENT)
}
