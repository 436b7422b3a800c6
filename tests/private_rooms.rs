//! Private rooms (#13) against a real server: who sees and joins them, audio sealed end to
//! end between real clients (the client library, `LiveSession`), what a member without the
//! key gets, what someone removed can still open, and the key leader leaving mid-speech.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{Live, PATIENCE, TestServer, assert_api_error, eventually, next_event};
use futures_util::{SinkExt, StreamExt};
use hallway::e2e::agent::{Dropped, KeyAgent};
use hallway::net::live::Backoff;
use hallway::net::{Api, LiveSession, NetEvent};
use hallway::protocol::{
    AudioFrame, ClientCommand, ClientMessage, CreateRoom, RoomDetail, ServerMessage, Share, UserId,
};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

async fn client(server: &TestServer, name: &str) -> Api {
    common::signed_in_client(server, name).await
}

/// Hera's private room shared by link: her client, the room and the link's secret.
async fn linked_room(server: &TestServer, title: &str) -> (Api, String, String) {
    let hera_api = client(server, "Hera").await;
    let detail: RoomDetail = hera_api
        .create(&CreateRoom {
            title: title.into(),
            private: Some(Share {
                link: true,
                ..Share::default()
            }),
            replay: false,
        })
        .await
        .unwrap();
    let secret = detail.share_secret.unwrap();
    (hera_api, detail.summary.id, secret)
}

/// Hera's private room shared by link, with Hera in it unmuted, Lu listening (both on the
/// client library), and a spy: a member on a raw WebSocket without a key agent, as any
/// other program could be.
struct Scene {
    hera: LiveSession,
    lu: LiveSession,
    lu_heard: Heard,
    spy: Live,
    room: String,
    secret: String,
    /// Kept so the sessions' event queues stay open.
    _events: Vec<mpsc::Receiver<NetEvent>>,
}

async fn scene(server: &TestServer, title: &str) -> Scene {
    let (hera_api, room, secret) = linked_room(server, title).await;
    let (hera, hera_events, _, _) = join(&hera_api, &room, None).await;
    hera.send(ClientCommand::Unmute);
    let lu_api = client(server, "Lu").await;
    let (lu, lu_events, lu_heard, _) = join(&lu_api, &room, Some(&secret)).await;
    let spy_session = server.session("Spy").await;
    let spy = connect_shared(server, &room, &spy_session.token, &secret)
        .await
        .unwrap();
    Scene {
        hera,
        lu,
        lu_heard,
        spy,
        room,
        secret,
        _events: vec![hera_events, lu_events],
    }
}

fn fast() -> Backoff {
    Backoff {
        first: Duration::from_millis(50),
        max: Duration::from_millis(200),
        max_attempts: Some(20),
    }
}

use common::Heard;

/// Joins with the client library; returns the session, its events and what it hears.
async fn join(
    api: &Api,
    room: &str,
    share: Option<&str>,
) -> (LiveSession, mpsc::Receiver<NetEvent>, Heard, UserId) {
    let (heard, on_audio) = common::hearing();
    let (tx, mut events) = mpsc::channel(4096);
    let live =
        LiveSession::start_shared(api, room, share.map(str::to_string), tx, on_audio, fast());
    let you = match next_event(&mut events, |e| {
        matches!(e, NetEvent::Server(ServerMessage::RoomSnapshot { .. }))
    })
    .await
    {
        NetEvent::Server(ServerMessage::RoomSnapshot { you, .. }) => you,
        _ => unreachable!(),
    };
    (live, events, heard, you)
}

/// Waits until a client holds a room key of at least `epoch`.
async fn holds_key(live: &LiveSession, epoch: u32) {
    eventually(&format!("the client holds key epoch {epoch}"), || async {
        live.stats
            .key_epoch
            .load(std::sync::atomic::Ordering::Relaxed)
            >= epoch
    })
    .await;
}

/// Speech-like payload: unique per frame, with a marker that must never show on the wire.
fn payload(sequence: u32) -> Vec<u8> {
    let mut p = vec![0xfc];
    p.extend_from_slice(b"PLAINTEXT-SPEECH-");
    p.extend_from_slice(&sequence.to_be_bytes());
    p
}

fn frame(sequence: u32) -> AudioFrame {
    common::audio_frame(sequence, &payload(sequence))
}

/// Speaks frames `from..=to`, one every 20 ms.
async fn speak(speaker: &LiveSession, from: u32, to: u32) {
    for sequence in from..=to {
        speaker.send_audio(&frame(sequence));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until `heard` has frame `last`; returns the sequence numbers heard in `range`.
async fn heard_through(heard: &Heard, last: u32) -> Vec<(u32, Vec<u8>)> {
    eventually(&format!("frame {last} is heard"), || {
        let heard = heard.clone();
        async move { heard.lock().unwrap().iter().any(|(s, _)| *s == last) }
    })
    .await;
    heard.lock().unwrap().clone()
}

use common::connect_shared;

fn listed(body: &Value, room: &str) -> bool {
    body["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["id"] == room)
}

#[tokio::test]
async fn a_private_room_is_seen_and_joined_only_by_those_it_is_shared_with() {
    let server = TestServer::start();
    let hera = server.session("Hera").await;
    let bob = server.session("Bob").await;
    let dan = server.session("Dan").await;
    let eve = server.session("Eve").await;
    let lin = server.session("Lin").await;
    // Hera follows Dan: "followers" shares with him.
    let (status, body) = server
        .request(
            reqwest::Method::PUT,
            &format!("/api/v2/users/{}/follow", dan.user.handle),
            Some(&hera.token),
            None,
        )
        .await;
    assert!(status < 300, "{status} {body}");

    let (status, created) = server
        .post_json(
            "/api/v2/rooms",
            Some(&hera.token),
            json!({"title": "Board meeting", "private": {
                "handles": [format!("@{}", bob.user.handle)], "followers": true, "link": true}}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["private"], json!(true));
    let room = created["id"].as_str().unwrap().to_string();
    let secret = created["share_secret"].as_str().unwrap().to_string();
    assert!(secret.len() >= 20, "a secret worth the name: {secret}");

    // The listing, the room's page and the door: the same answer everywhere.
    for (who, token, admitted) in [
        ("the host", Some(&hera.token), true),
        ("someone named", Some(&bob.token), true),
        ("someone the host follows", Some(&dan.token), true),
        ("a stranger", Some(&eve.token), false),
        ("the link's holder before using it", Some(&lin.token), false),
        ("nobody signed in", None, false),
    ] {
        let (_, list) = server.get("/api/v2/rooms", token.map(|t| t.as_str())).await;
        assert_eq!(listed(&list, &room), admitted, "{who}: {list}");
        let got = server
            .get(&format!("/api/v2/rooms/{room}"), token.map(|t| t.as_str()))
            .await;
        if admitted {
            assert_eq!(got.0, 200, "{who}: {}", got.1);
            assert!(
                got.1["share_secret"].is_null(),
                "the page never shows the secret"
            );
        } else {
            assert_api_error(&got, 404, "room_not_found");
        }
    }
    let refused = common::connect_refusal(&server, &room, Some(&eve.token)).await;
    assert_api_error(&refused, 404, "room_not_found");
    // A stranger guessing the secret is refused like any stranger.
    let guessed = connect_shared(&server, &room, &eve.token, "guess")
        .await
        .err()
        .unwrap();
    assert_api_error(&guessed, 404, "room_not_found");

    // Named people, and holders of the link, get in; the link is remembered.
    let mut bob_live = Live::join(&server, &room, &bob).await;
    assert!(bob_live.snapshot.summary.private);
    let bob_key = bob_live
        .snapshot
        .participants
        .iter()
        .find(|p| p.id == bob.user.id)
        .and_then(|p| p.device_key.clone());
    assert!(
        bob_key.is_some(),
        "a private room lists members' device keys"
    );
    let _lin_live = connect_shared(&server, &room, &lin.token, &secret)
        .await
        .unwrap();
    let (_, list) = server.get("/api/v2/rooms", Some(&lin.token)).await;
    assert!(listed(&list, &room), "{list}");

    // Keys: only moderators hand them out; nobody claims an epoch never handed out.
    let code = bob_live
        .refused(json!({"type": "share_key", "epoch": 1, "keys": []}))
        .await;
    assert_eq!(code, "forbidden");
    let code = bob_live
        .refused(json!({"type": "key_held", "epoch": 999}))
        .await;
    assert_eq!(code, "bad_request");

    // Bad shares are refused with the reason.
    for (share, status, code) in [
        (json!({}), 400, "bad_request"),
        (json!({"handles": ["@nobody_here"]}), 404, ""),
        (
            json!({"handles": (0..101).map(|i| format!("u{i}")).collect::<Vec<_>>()}),
            413,
            "payload_too_large",
        ),
    ] {
        let got = server
            .post_json(
                "/api/v2/rooms",
                Some(&hera.token),
                json!({"title": "x", "private": share}),
            )
            .await;
        assert_eq!(got.0, status, "{share}: {}", got.1);
        if !code.is_empty() {
            assert_api_error(&got, status, code);
        }
        let message = got.1["error"]["message"].as_str().unwrap();
        assert!(!message.is_empty(), "{message}");
    }

    // The host's client hands out keys for hundreds at once: a full share (256 wraps,
    // about 45 KB, over the 4 KiB control limit) is taken; more wraps, or more bytes, are
    // refused with the reason; a flood of shares runs out of its budget while Bob is
    // still answered.
    let mut hera_live = Live::join(&server, &room, &hera).await;
    let wraps = |n: u32| -> Vec<Value> {
        (0..n)
            .map(|i| json!({"to": 1_000_000 + i, "sealed": "A".repeat(152)}))
            .collect()
    };
    hera_live
        .command(json!({"type": "share_key", "epoch": 1, "keys": wraps(256)}))
        .await;
    let code = hera_live
        .refused(json!({"type": "share_key", "epoch": 1, "keys": wraps(257)}))
        .await;
    assert_eq!(code, "payload_too_large");
    let huge = json!({"type": "share_key", "epoch": 1,
        "keys": [{"to": 1, "sealed": "A".repeat(60_000)}]});
    hera_live.send(huge).await;
    match hera_live
        .wait_for(|m| matches!(m, ServerMessage::Error { .. }))
        .await
    {
        ServerMessage::Error { code, .. } => assert_eq!(code.as_str(), "payload_too_large"),
        _ => unreachable!(),
    }
    let other = json!({"type": "raise_hand", "padding": "x".repeat(5_000)});
    hera_live.send(other).await;
    match hera_live
        .wait_for(|m| matches!(m, ServerMessage::Error { .. }))
        .await
    {
        ServerMessage::Error { code, message, .. } => {
            assert_eq!(code.as_str(), "payload_too_large", "{message}");
            assert!(message.contains("4096"), "{message}");
        }
        _ => unreachable!(),
    }
    let mut limited = false;
    for _ in 0..100 {
        hera_live
            .send(json!({"type": "share_key", "epoch": 1, "keys": wraps(1)}))
            .await;
    }
    for _ in 0..100 {
        if let ServerMessage::Error { code, .. } = hera_live
            .wait_for(|m| matches!(m, ServerMessage::Error { .. } | ServerMessage::Pong { .. }))
            .await
            && code.as_str() == "rate_limited"
        {
            limited = true;
            break;
        }
    }
    assert!(limited, "a flood of key shares runs out of its budget");
    bob_live.ping(7).await;

    // A public room has no keys to hand out.
    let public = server.create_room(&hera, "open to all").await;
    let mut host = Live::join(&server, &public, &hera).await;
    let code = host
        .refused(json!({"type": "share_key", "epoch": 1, "keys": []}))
        .await;
    assert_eq!(code, "bad_request");
}

#[tokio::test]
async fn audio_is_sealed_end_to_end_and_only_members_clients_open_it() {
    let server = TestServer::start();
    let Scene {
        hera,
        lu,
        lu_heard,
        mut spy,
        room,
        secret: _,
        _events,
    } = scene(&server, "Secret talk").await;
    holds_key(&hera, 1).await;
    holds_key(&lu, 1).await;

    speak(&hera, 1, 50).await;
    let heard = heard_through(&lu_heard, 50).await;
    let expected: Vec<(u32, Vec<u8>)> = (1..=50).map(|s| (s, payload(s))).collect();
    assert_eq!(
        heard, expected,
        "Lu hears every frame, byte for byte, in order"
    );
    assert_eq!(
        lu.stats
            .undecryptable
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );

    // The spy got the same frames, sealed: never the payload, at most 24 bytes more.
    let mut sealed = Vec::new();
    while sealed.len() < 50 {
        if let Message::Binary(bytes) = spy.next_any().await {
            sealed.push(AudioFrame::parse(bytes).unwrap());
        }
    }
    for frame in &sealed {
        let plain = payload(frame.header.sequence);
        let opus = frame.opus();
        assert!(opus.len() > plain.len() && opus.len() <= plain.len() + 24);
        assert!(
            !opus.windows(8).any(|w| w == b"PLAINTEX"),
            "plaintext on the wire: {opus:?}"
        );
    }
    // The room's page, to someone not signed in: there is no such room.
    let status = server.get(&format!("/api/v2/rooms/{room}"), None).await;
    assert_eq!(
        status.0, 404,
        "a private room is described to nobody outside it"
    );
}

/// Someone removed from the room keeps every key they were given, and still cannot open
/// what is said after the rotation (here: a member whose client is the test itself, so
/// that its keys outlive its connection).
#[tokio::test]
async fn someone_removed_cannot_open_what_is_said_after_the_rotation() {
    let server = TestServer::start();
    // The spy keeps every frame the room sends it, to hand to Mallory's keys afterwards.
    let Scene {
        hera,
        lu,
        lu_heard,
        mut spy,
        room,
        secret,
        _events,
    } = scene(&server, "No eavesdroppers").await;

    // Mallory: a raw connection driven by a key agent of the test's own.
    let (mallory_session, mallory_key) = server.account("Mallory", None).await;
    let mut mallory = connect_shared(&server, &room, &mallory_session.token, &secret)
        .await
        .unwrap();
    let started = tokio::time::Instant::now();
    let now = || started.elapsed().as_millis() as u64;
    let mut agent = KeyAgent::new(&room, &mallory_key, now());
    let snapshot = ServerMessage::RoomSnapshot {
        protocol_version: hallway::protocol::PROTOCOL_VERSION,
        you: mallory.me,
        room: mallory.snapshot.clone(),
    };
    for command in agent.on_message(&snapshot, now()) {
        send(&mut mallory, command).await;
    }
    holds_key(&lu, 1).await;
    // Mallory's key comes a moment after joining (the leader batches newcomers' wraps).
    while agent.status().epoch.is_none() {
        let message = mallory.next().await;
        for command in agent.on_message(&message, now()) {
            send(&mut mallory, command).await;
        }
    }
    speak(&hera, 1, 20).await;
    let mut opened_before = 0;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while opened_before < 20 && tokio::time::Instant::now() < deadline {
        let Ok(Some(Ok(message))) =
            tokio::time::timeout(Duration::from_millis(200), mallory.ws.next()).await
        else {
            continue;
        };
        match message {
            Message::Text(text) => {
                let message = ServerMessage::decode(&text).unwrap();
                for command in agent.on_message(&message, now()) {
                    send(&mut mallory, command).await;
                }
            }
            Message::Binary(bytes) => {
                let frame = AudioFrame::parse(bytes).unwrap();
                let opened = agent
                    .open(&frame)
                    .unwrap_or_else(|e| panic!("{e}: {:?}", agent.status()));
                assert_eq!(opened.opus(), payload(frame.header.sequence));
                opened_before += 1;
            }
            _ => {}
        }
    }
    assert_eq!(opened_before, 20, "Mallory heard the room while in it");
    let held = agent.status().epoch.unwrap();

    // Removed. The key leader (Hera's client) rotates for everyone who stays.
    hera.send(ClientCommand::Remove {
        user_id: mallory.me,
    });
    assert_eq!(mallory.closed().await.as_deref(), Some("removed"));
    holds_key(&lu, held + 1).await;
    holds_key(&hera, held + 1).await;
    speak(&hera, 21, 60).await;
    let heard = heard_through(&lu_heard, 60).await;
    assert!(heard.iter().any(|(s, p)| *s == 60 && *p == payload(60)));

    // Everything the room sent after the rotation, as a server that kept feeding Mallory
    // (or a recording of the wire) would have it: none of it opens with Mallory's keys.
    let mut after = 0;
    while after < 40 {
        let Message::Binary(bytes) = spy.next_any().await else {
            continue;
        };
        let frame = AudioFrame::parse(bytes).unwrap();
        if frame.header.sequence <= 20 {
            continue;
        }
        after += 1;
        let sealed_epoch = (hallway::e2e::sframe::Header::parse(frame.opus())
            .unwrap()
            .0
            .kid
            >> 4) as u32;
        // Frames sealed before the rotation reached Hera's sealer still use the old key.
        if sealed_epoch > held {
            assert!(
                matches!(agent.open(&frame), Err(Dropped::NoKey(e)) if e > held),
                "frame {} opened with a removed member's keys",
                frame.header.sequence
            );
        }
    }
    let last_epoch = hera
        .stats
        .key_epoch
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(last_epoch > held, "Hera seals with a newer key now");
}

async fn send(live: &mut Live, command: ClientCommand) {
    let text = ClientMessage { id: None, command }.encode();
    live.ws.send(Message::Text(text.into())).await.unwrap();
}

/// The key leader (the host's client) leaves while a speaker talks: the next host's client
/// takes over, keys rotate, and the audience hears every frame.
#[tokio::test]
async fn the_key_leader_leaves_mid_speech_and_no_frame_is_lost() {
    let server = TestServer::start();
    let (hera_api, room, secret) = linked_room(&server, "Relay").await;
    let (hera, _hera_events, _, _) = join(&hera_api, &room, None).await;
    let mo_api = client(&server, "Mo").await;
    let (mo, _mo_events, _, mo_id) = join(&mo_api, &room, Some(&secret)).await;
    let sam_api = client(&server, "Sam").await;
    let (sam, mut sam_events, _, sam_id) = join(&sam_api, &room, Some(&secret)).await;
    let lu_api = client(&server, "Lu").await;
    let (lu, _lu_events, lu_heard, _) = join(&lu_api, &room, Some(&secret)).await;
    holds_key(&lu, 1).await;

    hera.send(ClientCommand::MakeModerator { user_id: mo_id });
    hera.send(ClientCommand::InviteToSpeak { user_id: sam_id });
    next_event(&mut sam_events, |e| {
        matches!(e, NetEvent::Server(ServerMessage::Invited { user_id, .. }) if *user_id == sam_id)
    })
    .await;
    sam.send(ClientCommand::AcceptInvite);
    sam.send(ClientCommand::Unmute);
    next_event(&mut sam_events, |e| {
        matches!(e, NetEvent::Server(ServerMessage::MuteChanged { user_id, muted: false, .. }) if *user_id == sam_id)
    })
    .await;

    let talk = tokio::spawn(async move {
        speak(&sam, 1, 150).await;
        sam
    });
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    hera.leave().await;
    let sam = talk.await.unwrap();
    let heard = heard_through(&lu_heard, 150).await;
    let expected: Vec<(u32, Vec<u8>)> = (1..=150).map(|s| (s, payload(s))).collect();
    assert_eq!(
        heard, expected,
        "every frame, in order, across the hand-over"
    );
    holds_key(&lu, 2).await;
    holds_key(&mo, 2).await;
    assert_eq!(
        lu.stats
            .undecryptable
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    drop(sam);
}
