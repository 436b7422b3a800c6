//! The client's live session survives a dropped connection: it reconnects with backoff,
//! rejoins the same room, and audio flows again without a restart. The drop is real: a TCP
//! proxy between client and server cuts every connection.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Live, TestServer, next_event};
use hallway::identity::DeviceKey;
use hallway::net::live::Backoff;
use hallway::net::{Api, Credentials, Enroll, LiveSession, NetEvent, Target};
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

#[tokio::test]
async fn a_dropped_connection_rejoins_the_room_and_audio_resumes() {
    let server = TestServer::start();
    let host_session = server.session("Hera").await;
    let room = server.create_room(&host_session, "reconnect").await;
    let mut host = Live::join(&server, &room, &host_session).await;
    host.command(json!({"type": "unmute"})).await;

    let proxy = Proxy::start(server.base.trim_start_matches("http://").to_string()).await;
    let target = Target::parse(&format!("http://{}", proxy.addr)).unwrap();
    let api = device_api(target.server, "ada");
    let me = api.sign_in().await.unwrap().user;
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
    let api = device_api(Target::parse(&server.base).unwrap().server, "ada");
    api.sign_in().await.unwrap();
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

/// An API client with a device key of its own that makes an account named `name` when
/// the device has none.
fn device_api(server: url::Url, name: &str) -> Api {
    Api::new(server).with_credentials(Credentials {
        key: Arc::new(DeviceKey::generate()),
        enroll: Some(Enroll {
            name: name.into(),
            ..Enroll::default()
        }),
    })
}

#[tokio::test]
async fn a_restarted_server_keeps_everyone_signed_in() {
    let first = TestServer::start();
    let listen = first.base.trim_start_matches("http://").to_string();
    let data = first.data.clone();
    let server_url = Target::parse(&first.base).unwrap().server;
    let api = device_api(server_url.clone(), "ada");
    let ada = api.sign_in().await.unwrap();
    drop(first);

    // Same address and database, new process: the token still works, as the same person.
    let second = TestServer::start_on_data(data, &listen, &[]);
    let (status, me) = second.get("/api/v2/me", Some(&ada.token)).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["user"]["id"], ada.user.id);
    assert_eq!(me["user"]["handle"], ada.user.handle.as_str());
}

#[tokio::test]
async fn a_server_that_lost_its_accounts_is_not_rejoined_as_someone_new_behind_your_back() {
    let first = TestServer::start();
    let listen = first.base.trim_start_matches("http://").to_string();
    let server_url = Target::parse(&first.base).unwrap().server;
    let key = Arc::new(DeviceKey::generate());
    let starting = |key: &Arc<DeviceKey>| {
        Api::new(server_url.clone()).with_credentials(Credentials {
            key: key.clone(),
            enroll: Some(Enroll {
                name: "ada".into(),
                ..Enroll::default()
            }),
        })
    };
    let api = starting(&key);
    api.sign_in().await.unwrap();
    let old_token = api.token().unwrap();
    drop(first);

    // Same address, a new database: every account and token is gone. (A device revoked
    // from another one looks the same from here: `unknown_device`.)
    let second = TestServer::start_listening(&listen, &[]);
    let (status, _) = second.get("/api/v2/me", Some(&old_token)).await;
    assert_eq!(status, 401, "the new server does not know the old token");
    // A running client signs in again with its key, finds no account, and says so: it does
    // not quietly become a new person.
    match api.create_room("after the restart").await {
        Err(hallway::net::NetError::Api { code, .. }) => {
            assert_eq!(code.as_str(), "unknown_device")
        }
        other => panic!("{other:?}"),
    }
    let (events_tx, mut events) = mpsc::channel(64);
    let _live = LiveSession::start(
        &api,
        "someroom",
        events_tx,
        Box::new(|_| {}),
        Backoff::default(),
    );
    let closed = next_event(&mut events, |e| matches!(e, NetEvent::Closed { .. })).await;
    assert!(
        matches!(&closed, NetEvent::Closed { code: Some(code), .. } if code.as_str() == "unauthorized"),
        "{closed:?}"
    );
    // Started again, the client makes the account anew, as on a first run.
    let again = starting(&key);
    let session = again.sign_in().await.unwrap();
    assert_eq!(session.user.name, "ada");
    let (status, _) = second.get("/api/v2/me", Some(&session.token)).await;
    assert_eq!(status, 200);
}
