//! The stage flow and audio forwarding, against a real server process over real sockets.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Live, TestServer, room_with};
use hallway::protocol::{Role, ServerMessage};
use serde_json::json;

#[tokio::test]
async fn full_stage_flow_from_hand_to_speaking_and_back() {
    let server = TestServer::start();
    let (room, mut host, mut others) = room_with(&server, &["ada", "bob"]).await;
    let (mut ada, mut bob) = (others.remove(0), others.remove(0));

    ada.command(json!({"type": "raise_hand"})).await;
    for who in [&mut host, &mut bob] {
        let msg = who
            .wait_for(|m| matches!(m, ServerMessage::HandRaised { .. }))
            .await;
        assert!(matches!(msg, ServerMessage::HandRaised { user_id, .. } if user_id == ada.me));
    }
    assert_eq!(server.room(&room).await.hands, vec![ada.me]);

    host.command(json!({"type": "invite_to_speak", "user_id": ada.me}))
        .await;
    let msg = ada
        .wait_for(|m| matches!(m, ServerMessage::Invited { .. }))
        .await;
    assert_eq!(
        msg,
        ServerMessage::Invited {
            user_id: ada.me,
            by: host.me
        }
    );

    ada.command(json!({"type": "accept_invite"})).await;
    let msg = bob
        .wait_for(|m| matches!(m, ServerMessage::RoleChanged { .. }))
        .await;
    assert_eq!(
        msg,
        ServerMessage::RoleChanged {
            user_id: ada.me,
            role: Role::Speaker,
            by: None
        }
    );
    let detail = server.room(&room).await;
    let ada_now = detail.participants.iter().find(|p| p.id == ada.me).unwrap();
    assert_eq!(
        (ada_now.role, ada_now.muted),
        (Role::Speaker, true),
        "new speakers arrive muted"
    );
    assert!(detail.hands.is_empty());

    ada.command(json!({"type": "unmute"})).await;
    bob.wait_for(|m| matches!(m, ServerMessage::MuteChanged { muted: false, .. }))
        .await;
    ada.send_audio(1, b"opus-bytes").await;
    for who in [&mut host, &mut bob] {
        let frame = who.next_audio().await;
        assert_eq!(frame.header.speaker_id, ada.me);
        assert_eq!(frame.opus(), b"opus-bytes");
    }

    host.command(json!({"type": "move_to_audience", "user_id": ada.me}))
        .await;
    let msg = bob
        .wait_for(|m| matches!(m, ServerMessage::RoleChanged { .. }))
        .await;
    assert_eq!(
        msg,
        ServerMessage::RoleChanged {
            user_id: ada.me,
            role: Role::Listener,
            by: Some(host.me)
        }
    );
    let listing = server.get("/api/v2/rooms", None).await.1;
    assert_eq!(listing["rooms"][0]["listener_count"], 2);
    assert_eq!(listing["rooms"][0]["speakers"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn audio_reaches_every_listener_in_order_and_byte_exact() {
    let server = TestServer::start();
    let (_room, mut host, mut listeners) = room_with(&server, &["l1", "l2", "l3"]).await;
    host.command(json!({"type": "unmute"})).await;
    // Two seconds of audio, paced like a real speaker (50 frames a second).
    let payloads: Vec<Vec<u8>> = (0..100u32)
        .map(|i| {
            (0..(1 + i as usize * 7 % 1275))
                .map(|j| (i as usize * 31 + j) as u8)
                .collect()
        })
        .collect();
    let mut pace = tokio::time::interval(std::time::Duration::from_millis(20));
    for (seq, payload) in payloads.iter().enumerate() {
        pace.tick().await;
        host.send_audio(seq as u32, payload).await;
    }
    for listener in &mut listeners {
        for (seq, payload) in payloads.iter().enumerate() {
            let frame = listener.next_audio().await;
            assert_eq!(frame.header.sequence, seq as u32);
            assert_eq!(frame.header.speaker_id, host.me);
            assert_eq!(frame.opus(), &payload[..]);
        }
    }
    assert!(server.metric("hallway_audio_frames_out_total").await >= 300.0);
}

#[tokio::test]
async fn muted_speakers_and_listeners_cannot_send_audio_and_are_told_once() {
    let server = TestServer::start();
    let (_room, mut host, mut listeners) = room_with(&server, &["ada"]).await;
    let mut ada = listeners.remove(0);
    // The host is on stage but muted on arrival.
    host.send_audio(1, b"x").await;
    host.send_audio(2, b"x").await;
    let msg = host
        .wait_for(|m| matches!(m, ServerMessage::Error { .. }))
        .await;
    assert!(
        matches!(msg, ServerMessage::Error { code, .. } if code.as_str() == "not_allowed_to_speak")
    );
    ada.send_audio(1, b"y").await;
    let msg = ada.next().await;
    assert!(
        matches!(msg, ServerMessage::Error { code, .. } if code.as_str() == "not_allowed_to_speak")
    );
    // Told once: the next message either of them gets is the pong, not a second error.
    for who in [&mut host, &mut ada] {
        who.send_audio(3, b"z").await;
        who.send(json!({"type": "ping", "nonce": 9})).await;
        assert_eq!(who.next().await, ServerMessage::Pong { nonce: 9 });
    }
    // Nothing was forwarded: once the host unmutes, the first frame Ada gets is the new one.
    host.command(json!({"type": "unmute"})).await;
    host.send_audio(10, b"heard").await;
    let frame = ada.next_audio().await;
    assert_eq!((frame.header.sequence, frame.opus()), (10, &b"heard"[..]));
}

#[tokio::test]
async fn everyone_sees_the_same_room() {
    let server = TestServer::start();
    let (room, mut host, mut others) = room_with(&server, &["ada", "bob"]).await;
    others[0].command(json!({"type": "raise_hand"})).await;
    host.command(json!({"type": "make_moderator", "user_id": others[1].me}))
        .await;
    // A newcomer's snapshot equals what REST says.
    let late = server.session("late").await;
    let late = Live::join(&server, &room, &late).await;
    let rest = server.room(&room).await;
    assert_eq!(late.snapshot.participants, rest.participants);
    assert_eq!(late.snapshot.hands, vec![others[0].me]);
    let bob = rest
        .participants
        .iter()
        .find(|p| p.id == others[1].me)
        .unwrap();
    assert_eq!(bob.role, Role::Moderator);
}
