//! The client's live session survives a dropped connection: it reconnects with backoff,
//! rejoins the same room, and audio flows again without a restart. The drop is real: a TCP
//! proxy between client and server cuts every connection.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Live, PATIENCE, TestServer};
use hallway::net::live::Backoff;
use hallway::net::{Api, LiveSession, NetEvent, Target};
use hallway::protocol::{AudioFrame, ServerMessage};
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

/// Forwards 127.0.0.1:PORT to the server; bumping the generation cuts every connection.
struct Proxy {
    addr: std::net::SocketAddr,
    cut_tx: watch::Sender<u32>,
}

impl Proxy {
    async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (cut_tx, cut_rx) = watch::channel(0u32);
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let upstream = upstream.clone();
                let mut cut = cut_rx.clone();
                cut.mark_unchanged();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Self { addr, cut_tx }
    }

    fn cut(&self) {
        self.cut_tx.send_modify(|generation| *generation += 1);
    }
}

async fn next_event(
    events: &mut mpsc::Receiver<NetEvent>,
    wanted: impl Fn(&NetEvent) -> bool,
) -> NetEvent {
    loop {
        let event = tokio::time::timeout(PATIENCE, events.recv())
            .await
            .expect("timed out waiting for a net event")
            .expect("the session ended");
        if wanted(&event) {
            return event;
        }
    }
}

#[tokio::test]
async fn a_dropped_connection_rejoins_the_room_and_audio_resumes() {
    let server = TestServer::start();
    let host_session = server.session("Hera").await;
    let room = server.create_room(&host_session, "reconnect").await;
    let mut host = Live::join(&server, &room, &host_session).await;
    host.command(json!({"type": "unmute"})).await;

    let proxy = Proxy::start(server.base.trim_start_matches("http://").to_string()).await;
    let target = Target::parse(&format!("http://{}", proxy.addr)).unwrap();
    let mut api = Api::new(target.server);
    let me = api.create_session("ada", None).await.unwrap().user;
    let heard: Arc<Mutex<Vec<u32>>> = Arc::default();
    let sink = heard.clone();
    let on_audio =
        Box::new(move |frame: AudioFrame| sink.lock().unwrap().push(frame.header.sequence));
    let (events_tx, mut events) = mpsc::channel(256);
    let fast = Backoff {
        first: Duration::from_millis(50),
        max: Duration::from_millis(400),
        max_attempts: None,
    };
    let live = LiveSession::start(&api, &room, events_tx, on_audio, fast);
    next_event(&mut events, |e| {
        matches!(e, NetEvent::Server(ServerMessage::RoomSnapshot { .. }))
    })
    .await;

    host.send_audio(1, b"before").await;
    common::eventually("ada hears the host before the drop", || {
        let heard = heard.clone();
        async move { heard.lock().unwrap().contains(&1) }
    })
    .await;

    proxy.cut();
    let reconnecting =
        next_event(&mut events, |e| matches!(e, NetEvent::Reconnecting { .. })).await;
    assert!(
        matches!(reconnecting, NetEvent::Reconnecting { attempt: 1, .. }),
        "{reconnecting:?}"
    );
    next_event(&mut events, |e| matches!(e, NetEvent::Connected)).await;
    let snapshot = next_event(&mut events, |e| {
        matches!(e, NetEvent::Server(ServerMessage::RoomSnapshot { .. }))
    })
    .await;
    let NetEvent::Server(ServerMessage::RoomSnapshot {
        you, room: detail, ..
    }) = snapshot
    else {
        unreachable!()
    };
    assert_eq!(you, me.id);
    assert!(
        detail.participants.iter().any(|p| p.id == me.id),
        "rejoined the same room"
    );

    // Audio resumes on the new connection, with nothing restarted.
    for seq in 2..=4 {
        host.send_audio(seq, b"after").await;
    }
    common::eventually("ada hears the host after the reconnect", || {
        let heard = heard.clone();
        async move { heard.lock().unwrap().contains(&4) }
    })
    .await;
    // And commands work again.
    assert!(live.send(hallway::protocol::ClientCommand::RaiseHand));
    host.wait_for(|m| matches!(m, ServerMessage::HandRaised { user_id, .. } if *user_id == me.id))
        .await;
    assert_eq!(
        live.stats
            .reconnects
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    live.leave().await;
}

#[tokio::test]
async fn a_room_that_ended_is_not_rejoined_forever() {
    let server = TestServer::start();
    let host_session = server.session("Hera").await;
    let room = server.create_room(&host_session, "short").await;
    let mut host = Live::join(&server, &room, &host_session).await;
    let mut api = Api::new(Target::parse(&server.base).unwrap().server);
    api.create_session("ada", None).await.unwrap();
    let (events_tx, mut events) = mpsc::channel(256);
    let _live = LiveSession::start(&api, &room, events_tx, Box::new(|_| {}), Backoff::default());
    next_event(&mut events, |e| {
        matches!(e, NetEvent::Server(ServerMessage::RoomSnapshot { .. }))
    })
    .await;
    host.command(json!({"type": "end_room"})).await;
    let closed = next_event(&mut events, |e| matches!(e, NetEvent::Closed { .. })).await;
    assert!(
        matches!(closed, NetEvent::Closed { code: Some(code), .. } if code.as_str() == "room_ended"),
        "{closed:?}"
    );
}

#[tokio::test]
async fn a_restarted_server_that_forgot_the_session_is_signed_into_again() {
    let first = TestServer::start();
    let listen = first.base.trim_start_matches("http://").to_string();
    let server_url = Target::parse(&first.base).unwrap().server;
    let mut api = Api::new(server_url.clone());
    api.create_session("ada", None).await.unwrap();
    let old_token = api.token().unwrap();
    let bob_token = Api::new(server_url.clone())
        .create_session("bob", None)
        .await
        .unwrap()
        .token;
    drop(first);

    // Same address, new process: every session is gone.
    let second = TestServer::start_listening(&listen, &[]);
    let (status, _) = second.get("/api/v1/sessions/me", Some(&old_token)).await;
    assert_eq!(status, 401, "the new server does not know the old token");
    let room = api.create_room("after the restart").await.unwrap();
    let new_token = api.token().unwrap();
    assert_ne!(new_token, old_token);
    let (status, me) = second.get("/api/v1/sessions/me", Some(&new_token)).await;
    assert_eq!((status, me["name"].as_str()), (200, Some("ada")));

    // A live session started with a forgotten token signs in again and joins.
    let bob = Api::new(server_url)
        .with_token(bob_token)
        .with_identity("bob", None);
    let (events_tx, mut events) = mpsc::channel(64);
    let _live = LiveSession::start(
        &bob,
        &room.summary.id,
        events_tx,
        Box::new(|_| {}),
        Backoff::default(),
    );
    let snapshot = next_event(&mut events, |e| {
        matches!(e, NetEvent::Server(ServerMessage::RoomSnapshot { .. }))
    })
    .await;
    let NetEvent::Server(ServerMessage::RoomSnapshot {
        you, room: detail, ..
    }) = snapshot
    else {
        unreachable!()
    };
    let me = detail.participants.iter().find(|p| p.id == you).unwrap();
    assert_eq!(me.name, "bob");
}
