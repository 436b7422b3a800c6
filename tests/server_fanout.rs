//! Audio fan-out under a receiver that stops reading, and the server's metrics and health.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{TestServer, connect_small_buffer, room_with};
use futures_util::StreamExt;
use hallway::protocol::control::LeaveReason;
use hallway::protocol::{AudioFrame, ServerMessage};
use serde_json::json;
use tokio::time::MissedTickBehavior;
use tokio_tungstenite::tungstenite::Message;

/// 20 ms of "speech": a payload of about 1,000 bytes, different for every frame.
fn payload(seq: u32) -> Vec<u8> {
    (0..1_000 + (seq % 200) as usize)
        .map(|i| (seq as usize * 7 + i) as u8)
        .collect()
}

#[tokio::test]
async fn a_stalled_listener_is_dropped_without_delaying_anyone_else() {
    let server = TestServer::start();
    let (room, mut host, mut others) = room_with(&server, &["healthy"]).await;
    let mut healthy = others.remove(0);
    let stalled_session = server.session("stalled").await;
    // Joins, then never reads again: not even its snapshot.
    let stalled = connect_small_buffer(&server, &room, &stalled_session.token).await;
    healthy
        .wait_for(|m| matches!(m, ServerMessage::ParticipantJoined { .. }))
        .await;
    host.command(json!({"type": "unmute"})).await;

    // The speaker talks at the real pace until the healthy listener sees the stalled one go,
    // recording when each frame went out.
    let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
    let speaker = tokio::spawn(async move {
        let mut sent_at = Vec::new();
        let mut pace = tokio::time::interval(Duration::from_millis(20));
        // After a stall (a busy machine), carry on at the real pace rather than send the
        // missed ticks at once: a burst of them would trip the server's audio rate limit,
        // which no real speaker does.
        pace.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // The server gives up on a stuck receiver after 5 s; 15 s means it never did.
        for seq in 0..750u32 {
            tokio::select! {
                _ = &mut stop_rx => break,
                _ = pace.tick() => {}
            }
            sent_at.push(Instant::now());
            host.send_audio(seq, &payload(seq)).await;
        }
        (host, sent_at)
    });

    let mut received_at = Vec::new();
    let mut stop_tx = Some(stop_tx);
    let mut speaker = Some(speaker);
    let mut sent_at = Vec::new();
    let mut left_at = None;
    let mut host = None;
    loop {
        // Once the speaker has stopped, every frame it sent must arrive.
        if speaker.is_none() && received_at.len() == sent_at.len() {
            break;
        }
        let msg = tokio::time::timeout(Duration::from_secs(5), healthy.ws.next())
            .await
            .expect("no message for 5 s: the healthy listener was held up, or the speaker ran out of frames before the stalled one was dropped")
            .unwrap()
            .unwrap();
        match msg {
            Message::Binary(bytes) => {
                let frame = AudioFrame::parse(bytes).unwrap();
                let seq = received_at.len() as u32;
                assert_eq!(frame.header.sequence, seq, "in order, none missing");
                assert_eq!(frame.opus(), &payload(seq)[..]);
                received_at.push(Instant::now());
            }
            Message::Text(text) => {
                if let ServerMessage::ParticipantLeft { user_id, reason } =
                    ServerMessage::decode(&text).unwrap()
                {
                    assert_eq!(
                        (user_id, reason),
                        (stalled_session.user.id, LeaveReason::Disconnected)
                    );
                    left_at = Some(Instant::now());
                    let _ = stop_tx.take().unwrap().send(());
                    let (speaker_live, sent) = speaker.take().unwrap().await.unwrap();
                    (host, sent_at) = (Some(speaker_live), sent);
                }
            }
            _ => {}
        }
    }
    let left_at = left_at.expect("the stalled listener was disconnected");
    let started = sent_at[0];
    assert!(
        left_at - started < Duration::from_secs(12),
        "disconnected {:?} after the audio started",
        left_at - started
    );
    // Every frame reached the healthy listener promptly, all the while. A healthy listener
    // held up behind the stalled one would wait until it is dropped (5 s stuck): seconds
    // for a large share of the frames, and for the worst one. A busy test machine only
    // delays the odd frame, so the bounds are on the 95th percentile and, loosely, the worst.
    let mut delays: Vec<Duration> = sent_at
        .iter()
        .zip(&received_at)
        .map(|(sent, got)| got.saturating_duration_since(*sent))
        .collect();
    delays.sort();
    let p95 = delays[(delays.len() * 95).div_ceil(100) - 1];
    let worst = *delays.last().unwrap();
    assert!(
        p95 < Duration::from_millis(250),
        "95% of the frames took up to {p95:?} to arrive (worst {worst:?})"
    );
    assert!(
        worst < Duration::from_millis(2_500),
        "a frame took {worst:?} to arrive (95th percentile {p95:?})"
    );

    assert!(server.metric("hallway_audio_frames_dropped_total").await > 0.0);
    assert_eq!(server.metric("hallway_slow_disconnects_total").await, 1.0);
    // The stalled client finds its socket closed once it reads what was buffered.
    let mut stalled = stalled;
    let drained = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(Ok(_)) = stalled.next().await {}
    })
    .await;
    assert!(drained.is_ok(), "the stalled socket was closed");
    // The server counts the connection gone only after it has closed the socket.
    common::eventually("the stalled connection is no longer counted", || async {
        server.metric("hallway_connections").await == 2.0
    })
    .await;
    host.unwrap().ping(1).await;
}

#[tokio::test]
async fn health_and_metrics_count_what_happened() {
    let server = TestServer::start();
    let health = server
        .http
        .get(server.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let text = server.metrics_text().await;
    for name in [
        "hallway_rooms",
        "hallway_connections",
        "hallway_audio_frames_in_total",
        "hallway_audio_frames_out_total",
        "hallway_audio_frames_dropped_total",
        "hallway_control_messages_in_total",
        "hallway_errors_total",
    ] {
        assert_eq!(server.metric(name).await, 0.0, "{name} at start:\n{text}");
    }

    let (room, mut host, mut listeners) = room_with(&server, &["ada", "bob"]).await;
    host.command(json!({"type": "unmute"})).await;
    for seq in 0..10 {
        host.send_audio(seq, b"frame").await;
    }
    for listener in &mut listeners {
        for seq in 0..10 {
            assert_eq!(listener.next_audio().await.header.sequence, seq);
        }
    }
    // A listener's audio is dropped, a forbidden command and a malformed message are errors.
    listeners[0].send_audio(0, b"not allowed").await;
    let refused = listeners[0].refused(json!({"type": "end_room"})).await;
    assert_eq!(refused, "forbidden");
    listeners[0].send_text("{oops").await;
    listeners[0]
        .wait_for(|m| matches!(m, ServerMessage::Error { .. }))
        .await;
    // A command through the room after the audio, answered: the room has counted all of
    // the audio by now.
    assert_eq!(
        host.refused(json!({"type": "raise_hand"})).await,
        "already_on_stage"
    );

    assert_eq!(server.metric("hallway_rooms").await, 1.0);
    assert_eq!(server.metric("hallway_connections").await, 3.0);
    assert_eq!(server.metric("hallway_audio_frames_in_total").await, 10.0);
    assert_eq!(server.metric("hallway_audio_frames_out_total").await, 20.0);
    assert_eq!(
        server.metric("hallway_audio_frames_dropped_total").await,
        1.0
    );
    // unmute, end_room, the malformed message and raise_hand.
    assert_eq!(
        server.metric("hallway_control_messages_in_total").await,
        4.0
    );
    // The listener's refused audio, end_room, the malformed message, and the host's hand
    // (the host is on stage already).
    assert_eq!(server.metric("hallway_errors_total").await, 4.0);
    assert_eq!(server.metric("hallway_sessions_total").await, 3.0);

    // Leaving and ending bring the gauges back down.
    let mut ada = listeners.remove(0);
    ada.send(json!({"type": "leave"})).await;
    ada.closed().await;
    // The server lowers the gauge just after it closes the socket.
    common::eventually("ada's connection is no longer counted", || async {
        server.metric("hallway_connections").await == 2.0
    })
    .await;
    host.send(json!({"type": "end_room"})).await;
    host.closed().await;
    listeners[0].closed().await;
    common::eventually("no connection is counted", || async {
        server.metric("hallway_connections").await == 0.0
    })
    .await;
    common::eventually("the room is gone from the metrics", || async {
        server.metric("hallway_rooms").await == 0.0
    })
    .await;
    assert_eq!(
        server.get(&format!("/api/v2/rooms/{room}"), None).await.0,
        404
    );
}
