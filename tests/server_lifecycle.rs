//! A room's life and a connection's: host hand-over, the end of a room, a dropped host's
//! grace period, a second connection replacing the first, and graceful server shutdown.
#![allow(clippy::unwrap_used)]

mod common;

use common::{
    Live, PATIENCE, TestServer, assert_api_error, connect_refusal, eventually, room_with,
};
use hallway::protocol::control::{LeaveReason, RoomEndReason};
use hallway::protocol::{Role, ServerMessage, UserId};
use serde_json::json;

fn is_role(user: UserId, role: Role) -> impl Fn(&ServerMessage) -> bool {
    move |m| matches!(m, ServerMessage::RoleChanged { user_id, role: r, .. } if *user_id == user && *r == role)
}

/// Expects the room to end for `who` with `reason`, then a goodbye `room_ended` and the close.
async fn expect_room_ended(who: &mut Live, reason: RoomEndReason, by: Option<UserId>) {
    let msg = who
        .wait_for(|m| matches!(m, ServerMessage::RoomEnded { .. }))
        .await;
    assert_eq!(msg, ServerMessage::RoomEnded { reason, by });
    assert_eq!(who.closed().await.as_deref(), Some("room_ended"));
}

/// The room is gone from the directory and from `GET /api/v2/rooms/{id}`.
async fn expect_room_gone(server: &TestServer, room: &str) {
    // The actor leaves the directory right after telling everyone; nothing tells a client
    // when, so ask until it has.
    eventually("the room leaves the directory", || async {
        let (status, list) = server.get("/api/v2/rooms", None).await;
        status == 200
            && list["rooms"]
                .as_array()
                .unwrap()
                .iter()
                .all(|r| r["id"] != room)
    })
    .await;
    let got = server.get(&format!("/api/v2/rooms/{room}"), None).await;
    assert_api_error(&got, 404, "room_not_found");
    let session = server.session("late").await;
    let refusal = connect_refusal(server, room, Some(&session.token)).await;
    assert_api_error(&refusal, 404, "room_not_found");
}

#[tokio::test]
async fn the_host_role_passes_to_the_longest_serving_moderator_then_the_room_ends() {
    let server = TestServer::start();
    let (room, mut host, mut others) = room_with(&server, &["ada", "bob", "cy"]).await;
    let (mut ada, mut bob, mut cy) = (others.remove(0), others.remove(0), others.remove(0));
    // Bob becomes a moderator before Ada, though Ada joined first: serving time counts.
    host.command(json!({"type": "make_moderator", "user_id": bob.me}))
        .await;
    host.command(json!({"type": "make_moderator", "user_id": ada.me}))
        .await;

    host.command(json!({"type": "leave"})).await;
    assert_eq!(host.closed().await, None, "a normal close, no goodbye");
    for who in [&mut ada, &mut cy] {
        let msg = who
            .wait_for(|m| matches!(m, ServerMessage::ParticipantLeft { .. }))
            .await;
        assert_eq!(
            msg,
            ServerMessage::ParticipantLeft {
                user_id: host.me,
                reason: LeaveReason::Left
            }
        );
        let msg = who.next().await;
        assert_eq!(
            msg,
            ServerMessage::RoleChanged {
                user_id: bob.me,
                role: Role::Host,
                by: None
            }
        );
    }
    let detail = server.room(&room).await;
    assert_eq!(detail.summary.host.unwrap().id, bob.me);

    bob.command(json!({"type": "leave"})).await;
    cy.wait_for(is_role(ada.me, Role::Host)).await;
    assert_eq!(server.room(&room).await.summary.host.unwrap().id, ada.me);

    // The last moderator leaves: nobody can run the room, so it ends for everyone.
    ada.send(json!({"type": "leave"})).await;
    expect_room_ended(&mut cy, RoomEndReason::NoModerator, None).await;
    expect_room_gone(&server, &room).await;
}

#[tokio::test]
async fn a_moderator_ends_the_room_for_everyone() {
    let server = TestServer::start();
    let (room, mut host, mut others) = room_with(&server, &["ada", "bob"]).await;
    let (mut ada, mut bob) = (others.remove(0), others.remove(0));
    host.command(json!({"type": "make_moderator", "user_id": ada.me}))
        .await;
    ada.send(json!({"type": "end_room"})).await;
    let by = Some(ada.me);
    for who in [&mut host, &mut ada, &mut bob] {
        expect_room_ended(who, RoomEndReason::EndedByModerator, by).await;
    }
    expect_room_gone(&server, &room).await;
    assert_eq!(server.metric("hallway_rooms").await, 0.0);
}

#[tokio::test]
async fn a_dropped_host_keeps_the_room_alive_and_gets_the_role_back() {
    let server = TestServer::start();
    let host_session = server.session("Hera").await;
    let room = server.create_room(&host_session, "grace").await;
    let host = Live::join(&server, &room, &host_session).await;
    let ada_session = server.session("ada").await;
    let mut ada = Live::join(&server, &room, &ada_session).await;

    // The host's network goes away: no `leave`, no close frame.
    drop(host);
    let msg = ada
        .wait_for(|m| matches!(m, ServerMessage::ParticipantLeft { .. }))
        .await;
    assert_eq!(
        msg,
        ServerMessage::ParticipantLeft {
            user_id: host_session.user.id,
            reason: LeaveReason::Disconnected
        }
    );
    // Still live and listed, waiting for a moderator to come back.
    ada.ping(1).await;
    let listing = server.get("/api/v2/rooms", None).await.1;
    assert_eq!(listing["rooms"][0]["id"], room);
    assert!(listing["rooms"][0]["host"].is_null());

    let host = Live::join(&server, &room, &host_session).await;
    let me = host
        .snapshot
        .participants
        .iter()
        .find(|p| p.id == host.me)
        .unwrap();
    assert_eq!(me.role, Role::Host);
    let msg = ada
        .wait_for(|m| matches!(m, ServerMessage::ParticipantJoined { .. }))
        .await;
    assert!(
        matches!(msg, ServerMessage::ParticipantJoined { participant } if participant.id == host.me && participant.role == Role::Host)
    );
    assert_eq!(
        server.room(&room).await.summary.host.unwrap().id,
        host_session.user.id
    );
}

#[tokio::test]
async fn a_second_connection_replaces_the_first_and_the_user_stays_once() {
    let server = TestServer::start();
    let (room, mut host, _) = room_with(&server, &[]).await;
    let ada_session = server.session("ada").await;
    let mut first = Live::join(&server, &room, &ada_session).await;
    host.wait_for(|m| matches!(m, ServerMessage::ParticipantJoined { .. }))
        .await;
    first.command(json!({"type": "raise_hand"})).await;

    let mut second = Live::join(&server, &room, &ada_session).await;
    // The new connection sees the room as it is, with Ada in it once, hand still up.
    let ada_in_snapshot: Vec<_> = second
        .snapshot
        .participants
        .iter()
        .filter(|p| p.id == ada_session.user.id)
        .collect();
    assert_eq!(ada_in_snapshot.len(), 1);
    assert_eq!(second.snapshot.hands, vec![ada_session.user.id]);
    assert_eq!(first.closed().await.as_deref(), Some("replaced"));

    // The old connection has fully closed (so the server has handled its departure); Ada
    // is still in the room once and the new connection works.
    second.command(json!({"type": "lower_hand"})).await;
    host.send(json!({"type": "ping", "nonce": 5})).await;
    // Everything the host saw since Ada's join: her hand going up and down, no leave or join.
    let mut seen = Vec::new();
    loop {
        match host.next().await {
            ServerMessage::Pong { nonce: 5 } => break,
            msg => seen.push(msg),
        }
    }
    assert!(
        seen.iter().all(|m| matches!(
            m,
            ServerMessage::HandRaised { .. } | ServerMessage::HandLowered { .. }
        )),
        "{seen:?}"
    );
    let detail = server.room(&room).await;
    assert_eq!(
        detail
            .participants
            .iter()
            .filter(|p| p.id == ada_session.user.id)
            .count(),
        1
    );
    // Raised and lowered within a second: the room shows the net change when the second
    // is up (docs/protocol.md 9.3).
    eventually("the hand is down", || async {
        server.room(&room).await.hands.is_empty()
    })
    .await;
    // The host and the new connection; the server lowers the gauge just after it has
    // closed the old connection's socket.
    eventually("the old connection is no longer counted", || async {
        server.metric("hallway_connections").await == 2.0
    })
    .await;
}

#[tokio::test]
async fn shutdown_tells_every_client_why_and_exits_cleanly() {
    let mut server = TestServer::start();
    let (_room, mut host, mut others) = room_with(&server, &["ada", "bob"]).await;
    // A second room, so shutdown has more than one actor to stop.
    let (_other_room, mut other_host, _) = room_with(&server, &[]).await;
    others[0].command(json!({"type": "raise_hand"})).await;

    server.interrupt();
    for who in std::iter::once(&mut host)
        .chain(others.iter_mut())
        .chain(std::iter::once(&mut other_host))
    {
        let msg = who
            .wait_for(|m| matches!(m, ServerMessage::RoomEnded { .. }))
            .await;
        assert_eq!(
            msg,
            ServerMessage::RoomEnded {
                reason: RoomEndReason::ServerShutdown,
                by: None
            }
        );
        assert_eq!(who.closed().await.as_deref(), Some("server_shutdown"));
    }
    // The server waits up to 5 s for its connections to close before it exits.
    let status = server.wait_exit(PATIENCE);
    assert!(status.success(), "exit status {status}");
}
