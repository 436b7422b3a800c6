//! Bad input of every kind, on the WebSocket and on REST: each gets a clear error with a
//! stable code, and none of it hurts the connection (unless abusive), the room or the server.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{Live, TestServer, assert_api_error, connect_refusal, room_with};
use futures_util::SinkExt;
use hallway::identity::DeviceKey;
use hallway::protocol::audio::{HEADER_LEN, KIND_AUDIO, MAX_FRAME_LEN};
use hallway::protocol::control::LeaveReason;
use hallway::protocol::{ErrorCode, ServerMessage};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// Expects the next control message to be an `error` with this code and request id.
async fn expect_error(who: &mut Live, code: ErrorCode, id: Option<Value>, what: &str) {
    match who.next().await {
        ServerMessage::Error {
            id: got_id,
            code: got,
            message,
        } => {
            assert_eq!(got, code, "{what}: {message}");
            assert_eq!(got_id, id, "{what}");
            assert!(!message.is_empty(), "{what}");
        }
        other => panic!("{what}: expected error {code}, got {other:?}"),
    }
}

async fn send_binary(who: &mut Live, bytes: Vec<u8>) {
    who.ws.send(Message::Binary(bytes.into())).await.unwrap();
}

/// A well-formed audio frame of `len` bytes, to be spoiled by the caller.
fn frame_bytes(len: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; len];
    bytes[0] = KIND_AUDIO;
    bytes[14] = 30;
    bytes
}

#[tokio::test]
async fn every_kind_of_bad_message_is_answered_and_the_connection_stays_up() {
    let server = TestServer::start();
    let (_room, mut host, mut others) = room_with(&server, &["ada", "bob"]).await;
    let (mut ada, mut bob) = (others.remove(0), others.remove(0));
    // Past the join announcements, so that the next message each gets is the one tested.
    for who in [&mut host, &mut ada, &mut bob] {
        who.ping(0).await;
    }

    let bad_text: Vec<(&str, String, ErrorCode, Option<Value>)> = vec![
        (
            "malformed JSON",
            "{nope".into(),
            ErrorCode::MalformedJson,
            None,
        ),
        ("an array", "[1,2]".into(), ErrorCode::MalformedJson, None),
        (
            "a string",
            "\"raise_hand\"".into(),
            ErrorCode::MalformedJson,
            None,
        ),
        ("a number", "42".into(), ErrorCode::MalformedJson, None),
        ("empty text", "".into(), ErrorCode::MalformedJson, None),
        (
            "no type",
            r#"{"id":5,"user_id":1}"#.into(),
            ErrorCode::BadRequest,
            Some(json!(5)),
        ),
        (
            "a type that is not a string",
            r#"{"type":7,"id":"t"}"#.into(),
            ErrorCode::BadRequest,
            Some(json!("t")),
        ),
        (
            "an unknown type",
            r#"{"type":"dance","id":"u"}"#.into(),
            ErrorCode::UnknownType,
            Some(json!("u")),
        ),
        (
            "a missing field",
            r#"{"type":"remove","id":[1]}"#.into(),
            ErrorCode::BadRequest,
            Some(json!([1])),
        ),
        (
            "a mistyped field",
            r#"{"type":"invite_to_speak","user_id":"bob","id":{"n":1}}"#.into(),
            ErrorCode::BadRequest,
            Some(json!({"n": 1})),
        ),
        (
            "a negative user id",
            r#"{"type":"remove","user_id":-1,"id":"neg"}"#.into(),
            ErrorCode::BadRequest,
            Some(json!("neg")),
        ),
        (
            "text over 4096 bytes",
            format!(r#"{{"type":"ping","pad":"{}"}}"#, "x".repeat(5_000)),
            ErrorCode::PayloadTooLarge,
            None,
        ),
    ];
    let mut nonce = 0;
    for (what, text, code, id) in bad_text {
        ada.send_text(&text).await;
        expect_error(&mut ada, code, id, what).await;
        nonce += 1;
        ada.ping(nonce).await;
    }

    let mut bad_kind = frame_bytes(40);
    bad_kind[0] = 2;
    let mut bad_level = frame_bytes(40);
    bad_level[14] = 128;
    let bad_binary: Vec<(&str, Vec<u8>, ErrorCode)> = vec![
        ("an unknown frame kind", bad_kind, ErrorCode::BadFrame),
        ("a kind of zero", vec![0u8; 40], ErrorCode::BadFrame),
        (
            "a header only",
            frame_bytes(HEADER_LEN),
            ErrorCode::BadFrame,
        ),
        ("one byte", vec![KIND_AUDIO], ErrorCode::BadFrame),
        ("an empty frame", vec![], ErrorCode::BadFrame),
        ("a level over 127", bad_level, ErrorCode::BadFrame),
        (
            "a frame one byte too long",
            frame_bytes(MAX_FRAME_LEN + 1),
            ErrorCode::PayloadTooLarge,
        ),
        (
            "a 20 KB frame",
            frame_bytes(20_000),
            ErrorCode::PayloadTooLarge,
        ),
    ];
    for (what, bytes, code) in bad_binary {
        send_binary(&mut ada, bytes).await;
        expect_error(&mut ada, code, None, what).await;
        nonce += 1;
        ada.ping(nonce).await;
    }

    // Nothing reached the room: the others saw no audio and no events from any of it, and
    // the room still serves everyone, Ada included.
    ada.command(json!({"type": "raise_hand"})).await;
    for who in [&mut host, &mut bob] {
        let msg = who.next().await;
        assert!(
            matches!(msg, ServerMessage::HandRaised { user_id, .. } if user_id == ada.me),
            "{msg:?}"
        );
    }
    host.command(json!({"type": "unmute"})).await;
    host.send_audio(1, b"still here").await;
    for who in [&mut ada, &mut bob] {
        assert_eq!(who.next_audio().await.opus(), b"still here");
    }
}

/// The server's control rate limit (`Limits::default()` in src/server/mod.rs): a burst of
/// 40 messages, then 20 a second.
const CONTROL_BURST: i64 = 40;
const CONTROL_PER_SEC: f64 = 20.0;
/// Invalid messages (rate-limited ones included) refill at 2 a second, from a burst of 30.
const STRIKES_PER_SEC: f64 = 2.0;
/// Pings in one flood: half again the burst.
const FLOOD: i64 = 60;

#[tokio::test]
async fn a_control_flood_is_rate_limited_without_disconnecting() {
    let server = TestServer::start();
    let (_room, mut host, mut others) = room_with(&server, &["ada"]).await;
    let mut ada = others.remove(0);
    host.ping(0).await;
    // Half again the burst the server allows, all at once. (Each refusal is also a strike
    // towards `abusive`, whose burst is 30 and refill 2 a second: one flood stays below it.)
    // The bucket refills at 20 a second while the server works through the flood, so on a
    // slow machine more get through: at most the burst plus what the time it took refilled.
    let mut attempt = 1;
    loop {
        let started = Instant::now();
        for nonce in 0..FLOOD {
            ada.ws
                .feed(Message::Text(
                    json!({"type": "ping", "nonce": nonce}).to_string().into(),
                ))
                .await
                .unwrap();
        }
        ada.ws.flush().await.unwrap();
        let (mut pongs, mut limited) = (0, 0);
        while pongs + limited < FLOOD {
            match ada.next().await {
                ServerMessage::Pong { .. } => pongs += 1,
                ServerMessage::Error {
                    code: ErrorCode::RateLimited,
                    ..
                } => limited += 1,
                other => panic!("unexpected {other:?}"),
            }
        }
        let elapsed = started.elapsed();
        assert!(
            pongs >= CONTROL_BURST,
            "the burst is allowed: {pongs} pongs"
        );
        let refilled = (CONTROL_PER_SEC * elapsed.as_secs_f64()).ceil() as i64;
        let at_least = FLOOD - CONTROL_BURST - refilled;
        if at_least > 0 {
            assert!(
                limited >= at_least,
                "the rest is refused: {limited} refusals, {pongs} pongs in {elapsed:?}"
            );
            break;
        }
        // So slow that the refill alone could have let the whole flood through: proof of
        // nothing. Let both buckets refill (the control bucket in 2 s, the strikes this flood
        // took at 2 a second) and flood again.
        assert!(
            attempt < 3,
            "{attempt} floods of {FLOOD} each took so long ({elapsed:?} the last) that the rate \
             limit could not be seen"
        );
        attempt += 1;
        let refill = Duration::from_secs_f64(
            (CONTROL_BURST as f64 / CONTROL_PER_SEC).max(limited as f64 / STRIKES_PER_SEC),
        );
        tokio::time::sleep(refill + Duration::from_millis(250)).await;
    }
    // The refill is time-based: after a quarter second there are tokens again.
    tokio::time::sleep(Duration::from_millis(250)).await;
    ada.ping(1_000).await;
    ada.command(json!({"type": "raise_hand"})).await;
    let msg = host.next().await;
    assert!(matches!(msg, ServerMessage::HandRaised { user_id, .. } if user_id == ada.me));
}

#[tokio::test]
async fn a_sustained_garbage_flood_is_disconnected_as_abusive_and_nobody_else_notices() {
    let server = TestServer::start();
    let (room, mut host, mut others) = room_with(&server, &["bob"]).await;
    let mut bob = others.remove(0);
    let ada_session = server.session("ada").await;
    let mut ada = Live::join(&server, &room, &ada_session).await;
    host.command(json!({"type": "unmute"})).await;

    for i in 0..200u32 {
        let garbage = if i % 2 == 0 {
            Message::Binary(vec![0xff; 32].into())
        } else {
            Message::Text("{{{not json".into())
        };
        // The server may close the socket part-way; the goodbye is what this test checks.
        if ada.ws.feed(garbage).await.is_err() {
            break;
        }
    }
    let _ = ada.ws.flush().await;
    assert_eq!(ada.closed().await.as_deref(), Some("abusive"));

    for who in [&mut host, &mut bob] {
        let msg = who
            .wait_for(|m| matches!(m, ServerMessage::ParticipantLeft { .. }))
            .await;
        assert_eq!(
            msg,
            ServerMessage::ParticipantLeft {
                user_id: ada.me,
                reason: LeaveReason::Disconnected
            }
        );
    }
    host.send_audio(1, b"unaffected").await;
    assert_eq!(bob.next_audio().await.opus(), b"unaffected");
    bob.ping(1).await;
    let health = server
        .http
        .get(server.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(server.room(&room).await.participants.len(), 2);
    // Being disconnected is not a ban: a fixed client may come back.
    let mut ada = Live::join(&server, &room, &ada_session).await;
    ada.ping(2).await;
}

#[tokio::test]
async fn rest_errors_have_the_right_status_code_and_shape() {
    let server = TestServer::start();
    let host = server.session("Hera").await;
    let room = server.create_room(&host, "errors").await;
    let title = json!({"title": "t"});

    // Tokens.
    assert_api_error(
        &server.post_json("/api/v2/rooms", None, title.clone()).await,
        401,
        "unauthorized",
    );
    assert_api_error(
        &server
            .post_json("/api/v2/rooms", Some("not-a-token"), title.clone())
            .await,
        401,
        "unauthorized",
    );
    assert_api_error(
        &server.get("/api/v2/rooms", Some("not-a-token")).await,
        401,
        "unauthorized",
    );
    assert_api_error(
        &connect_refusal(&server, &room, None).await,
        401,
        "unauthorized",
    );
    assert_api_error(
        &connect_refusal(&server, &room, Some("not-a-token")).await,
        401,
        "unauthorized",
    );

    // Rooms that do not exist.
    assert_api_error(
        &server.get("/api/v2/rooms/nosuchrm", None).await,
        404,
        "room_not_found",
    );
    assert_api_error(
        &connect_refusal(&server, "nosuchrm", Some(&host.token)).await,
        404,
        "room_not_found",
    );

    // Bodies that are not what the endpoint takes.
    for body in ["{nope", "[]", "{}", r#"{"name": 5}"#, ""] {
        assert_api_error(
            &server.post_raw("/api/v2/sessions", None, body).await,
            400,
            "bad_request",
        );
    }
    assert_api_error(
        &server
            .post_raw("/api/v2/rooms", Some(&host.token), r#"{"name":"x"}"#)
            .await,
        400,
        "bad_request",
    );

    // The live endpoint over plain HTTP, without the WebSocket upgrade.
    assert_api_error(
        &server
            .get(&format!("/api/v2/rooms/{room}/live"), Some(&host.token))
            .await,
        400,
        "bad_request",
    );

    // Names and titles.
    for name in ["", "   ", &"n".repeat(33), "tab\there"] {
        assert_api_error(
            &server
                .try_account(&DeviceKey::generate(), "named", name, None)
                .await,
            400,
            "invalid_name",
        );
    }
    let longest = server
        .try_account(&DeviceKey::generate(), "longest", &"é".repeat(32), None)
        .await;
    assert_eq!(longest.0, 200, "32 characters is allowed: {}", longest.1);
    for title in ["", &"t".repeat(101), "line\nbreak"] {
        assert_api_error(
            &server
                .post_json("/api/v2/rooms", Some(&host.token), json!({"title": title}))
                .await,
            400,
            "invalid_title",
        );
    }

    // Bodies over 16 KiB.
    let big = json!({"name": "a", "pad": "x".repeat(17 * 1024)}).to_string();
    assert_api_error(
        &server.post_raw("/api/v2/accounts", None, big.clone()).await,
        413,
        "payload_too_large",
    );
    assert_api_error(
        &server
            .post_raw("/api/v2/rooms", Some(&host.token), big)
            .await,
        413,
        "payload_too_large",
    );

    // Paths that do not exist.
    for path in ["/nope", "/api/v3/rooms", "/api/v2/rooms/a/b/c"] {
        assert_api_error(&server.get(path, None).await, 404, "not_found");
    }
    // Version 1's paths say to upgrade.
    for path in ["/api/v1", "/api/v1/rooms"] {
        assert_api_error(&server.get(path, None).await, 426, "upgrade_required");
    }

    // Too many rooms a minute from one user (the first room above counts).
    let mut created = 1;
    let refused = loop {
        let got = server
            .post_json("/api/v2/rooms", Some(&host.token), title.clone())
            .await;
        if got.0 != 201 {
            break got;
        }
        created += 1;
        assert!(created <= 6, "more than 6 rooms a minute were allowed");
    };
    assert_eq!(created, 6);
    assert_api_error(&refused, 429, "rate_limited");
    // The limit is per user: someone else still may.
    let other = server.session("other").await;
    server.create_room(&other, "mine").await;

    let health = server
        .http
        .get(server.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
}

#[tokio::test]
async fn an_invite_only_server_needs_an_invitation() {
    let mut server = TestServer::start_with(&["--invite-only"]);
    let owner_code = server.owner_invitation();
    let (status, info) = server.get("/api/v2", None).await;
    assert_eq!(status, 200);
    assert_eq!(info["invite_only"], true);

    assert_api_error(
        &server
            .try_account(&DeviceKey::generate(), "ada", "ada", None)
            .await,
        403,
        "invitation_required",
    );
    for code in ["open", "", "AAAAAAAAAAAAAAAAAAAAAA"] {
        assert_api_error(
            &server
                .try_account(&DeviceKey::generate(), "ada", "ada", Some(code))
                .await,
            403,
            "invitation_unknown",
        );
    }
    let (status, session) = server
        .try_account(&DeviceKey::generate(), "ada", "ada", Some(&owner_code))
        .await;
    assert_eq!(status, 200, "{session}");
    let token = session["token"].as_str().unwrap();

    // The directory is for members only.
    assert_api_error(
        &server.get("/api/v2/rooms", None).await,
        401,
        "unauthorized",
    );
    let (status, list) = server.get("/api/v2/rooms", Some(token)).await;
    assert_eq!((status, list), (200, json!({"rooms": []})));
    let (status, room) = server
        .post_json("/api/v2/rooms", Some(token), json!({"title": "members"}))
        .await;
    assert_eq!(status, 201);
    let id = room["id"].as_str().unwrap();
    assert_api_error(
        &server.get(&format!("/api/v2/rooms/{id}"), None).await,
        401,
        "unauthorized",
    );
    assert_eq!(
        server
            .get(&format!("/api/v2/rooms/{id}"), Some(token))
            .await
            .0,
        200
    );

    // An open server says so.
    let open = TestServer::start();
    assert_eq!(open.get("/api/v2", None).await.1["invite_only"], false);
}

#[tokio::test]
async fn a_message_over_64_kib_drops_the_connection_without_a_goodbye() {
    let server = TestServer::start();
    let (_room, mut host, mut others) = room_with(&server, &["ada"]).await;
    let mut ada = others.remove(0);
    let ada_id = ada.me;
    ada.ws
        .send(Message::Text("x".repeat(70 * 1024).into()))
        .await
        .unwrap();
    // A protocol error: no goodbye (the room must not say it ended), the socket just closes.
    assert_eq!(ada.closed().await, None);
    match host
        .wait_for(|m| matches!(m, ServerMessage::ParticipantLeft { .. }))
        .await
    {
        ServerMessage::ParticipantLeft { user_id, reason } => {
            assert_eq!((user_id, reason), (ada_id, LeaveReason::Disconnected));
        }
        other => panic!("expected participant_left, got {other:?}"),
    }
}
