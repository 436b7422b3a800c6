//! Hallway servers as a cluster: real `nats-server` processes (three, clustered), a real
//! PostgreSQL for the shared accounts, and real `hallway serve` processes, on loopback.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::nats::NatsCluster;
use common::postgres::TestPostgres;
use common::{Live, PATIENCE, TestServer, eventually, next_event};
use hallway::app::RoomView;
use hallway::identity::DeviceKey;
use hallway::net::live::Backoff;
use hallway::net::{Api, LiveSession, NetEvent};
use hallway::protocol::{AudioFrame, ClientCommand, RoomDetail, ServerMessage, Session, UserId};
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// NATS (`servers` of them) and a throwaway PostgreSQL, started off the test's runtime
/// (both harnesses block while their servers start).
async fn backbone(servers: usize) -> (NatsCluster, TestPostgres) {
    let nats = tokio::task::spawn_blocking(move || NatsCluster::start(servers))
        .await
        .unwrap();
    let pg = tokio::task::spawn_blocking(TestPostgres::start)
        .await
        .unwrap();
    (nats, pg)
}

/// A node of the cluster on the shared database.
fn node(pg: &TestPostgres, nats: &NatsCluster, name: &str) -> TestServer {
    TestServer::start_raw(&[
        "--data",
        &pg.url,
        "--cluster",
        &nats.url_list(),
        "--node-name",
        name,
    ])
}

/// The rooms a node lists, as it lists them.
async fn listing(node: &TestServer) -> Value {
    let (status, body) = node.get("/api/v2/rooms", None).await;
    assert_eq!(status, 200, "{body}");
    body
}

fn ids(listing: &Value) -> BTreeSet<String> {
    listing["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect()
}

/// Waits until every node lists exactly `rooms`, and lists them alike.
async fn listed_alike(nodes: &[&TestServer], rooms: &[&str]) {
    let want: BTreeSet<String> = rooms.iter().map(|r| r.to_string()).collect();
    eventually("every node lists the same rooms", || async {
        let first = listing(nodes[0]).await;
        if ids(&first) != want {
            return false;
        }
        for node in &nodes[1..] {
            if listing(node).await != first {
                return false;
            }
        }
        true
    })
    .await;
}

/// Speaker frames `from..to` reach `listener` whole and in order (other messages may come
/// between them).
async fn hears(listener: &mut Live, speaker: &Session, from: u32, to: u32) {
    for sequence in from..to {
        let frame = listener.next_audio().await;
        assert_eq!(frame.header.speaker_id, speaker.user.id);
        assert_eq!(
            frame.header.sequence, sequence,
            "frames in order, none lost"
        );
        assert_eq!(frame.opus(), payload(sequence).as_slice(), "byte-exact");
    }
}

fn payload(sequence: u32) -> Vec<u8> {
    (0..40)
        .map(|i| (sequence as u8).wrapping_mul(31) ^ i)
        .collect()
}

async fn speak(speaker: &mut Live, from: u32, to: u32) {
    for sequence in from..to {
        speaker.send_audio(sequence, &payload(sequence)).await;
        // Real time is 20 ms a frame; a little faster keeps the test short and within the
        // server's per-connection burst.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits out a NATS server's death: its clients (nodes) move to another server in
/// milliseconds, and a subscription's move reaches the other servers a moment later; a
/// message published in between is lost (NATS delivers at most once; an edge that finds a
/// gap gives its members a fresh snapshot). Settled when Ada's command is answered and Bob,
/// on another node, sees what it did. Ada ends unmuted, and nobody was disconnected.
async fn settled(ada: &mut Live, bob: &mut Live, ada_session: &Session) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    for n in 0u64.. {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the cluster never settled"
        );
        let muted = n % 2 == 0;
        let kind = if muted { "mute" } else { "unmute" };
        ada.send(json!({"type": kind, "id": n})).await;
        let quick = Duration::from_millis(1_000);
        let answered = tokio::time::timeout(
            quick,
            ada.wait_for(|m| matches!(m, ServerMessage::Ok { id } if *id == json!(n))),
        )
        .await
        .is_ok();
        let seen = tokio::time::timeout(
            quick,
            bob.wait_for(|m| matches!(m, ServerMessage::MuteChanged { user_id, muted: now, .. } if *user_id == ada_session.user.id && *now == muted)),
        )
        .await
        .is_ok();
        if answered && seen && !muted {
            return;
        }
    }
}

/// The walk-through: the host on node A, a listener on node B raises a hand, is
/// invited, accepts and speaks; a listener on node C hears it byte-exact and in order; every
/// node lists the room alike; one NATS server of three dies and nothing changes; node C
/// dies and its listener is back in the room through node B.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_room_across_three_nodes_and_their_failures() {
    let (nats, pg) = backbone(3).await;
    let a = node(&pg, &nats, "a");
    let b = node(&pg, &nats, "b");
    let mut c = node(&pg, &nats, "c");

    // Accounts are shared: made on one node, good on every node.
    let hera = a.session("Hera").await;
    let ada = b.session("Ada").await;
    let bob = c.session("Bob").await;
    let (status, me) = c.get("/api/v2/me", Some(&ada.token)).await;
    assert_eq!(status, 200, "a token from node B signs in on node C: {me}");

    let room = a.create_room(&hera, "across the cluster").await;
    listed_alike(&[&a, &b, &c], &[&room]).await;
    eventually("node B knows every node", || async {
        let (status, body) = b.get("/api/v2/cluster", None).await;
        assert_eq!(status, 200);
        let names: BTreeSet<&str> = body["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["name"].as_str().unwrap())
            .collect();
        names == BTreeSet::from(["a", "b", "c"])
    })
    .await;

    let mut host = Live::join(&a, &room, &hera).await;
    let mut ada_live = Live::join(&b, &room, &ada).await;
    let mut bob_live = Live::join(&c, &room, &bob).await;
    // The room's view reached through an edge is the home's.
    assert!(
        bob_live
            .snapshot
            .participants
            .iter()
            .any(|p| p.id == ada.user.id),
        "Bob, on C, sees Ada, on B"
    );

    // A hand on B reaches the host on A; the invitation and its acceptance go back.
    ada_live.command(json!({"type": "raise_hand"})).await;
    host.wait_for(
        |m| matches!(m, ServerMessage::HandRaised { user_id, .. } if *user_id == ada.user.id),
    )
    .await;
    host.command(json!({"type": "invite_to_speak", "user_id": ada.user.id}))
        .await;
    ada_live
        .wait_for(|m| matches!(m, ServerMessage::Invited { .. }))
        .await;
    ada_live.command(json!({"type": "accept_invite"})).await;
    ada_live.command(json!({"type": "unmute"})).await;
    bob_live
        .wait_for(|m| matches!(m, ServerMessage::MuteChanged { user_id, muted: false, .. } if *user_id == ada.user.id))
        .await;

    // Ada on B speaks; Bob on C and the host on A hear every frame, as sent, in order.
    speak(&mut ada_live, 1, 51).await;
    hears(&mut bob_live, &ada, 1, 51).await;
    hears(&mut host, &ada, 1, 51).await;
    listed_alike(&[&a, &b, &c], &[&room]).await;

    // One NATS server of three dies: nothing visible happens. (A command's answer is the
    // proof the link works again; frames sent after it all arrive.)
    let nats = tokio::task::spawn_blocking(move || {
        let mut nats = nats;
        nats.kill(0);
        nats
    })
    .await
    .unwrap();
    settled(&mut ada_live, &mut bob_live, &ada).await;
    speak(&mut ada_live, 51, 101).await;
    hears(&mut bob_live, &ada, 51, 101).await;
    hears(&mut host, &ada, 51, 101).await;

    // Node C dies: Bob's connection drops, and he is back in the room through node B.
    c.child.kill().unwrap();
    c.child.wait().unwrap();
    let _ = bob_live.closed().await;
    let mut bob_live = Live::join(&b, &room, &bob).await;
    assert!(
        bob_live
            .snapshot
            .participants
            .iter()
            .any(|p| p.id == ada.user.id && p.role.on_stage()),
        "Bob is back in the same room, Ada still on stage"
    );
    speak(&mut ada_live, 101, 121).await;
    hears(&mut bob_live, &ada, 101, 121).await;
    // C leaves the listings of those left.
    eventually("node C leaves the cluster's status", || async {
        let (_, body) = a.get("/api/v2/cluster", None).await;
        body["nodes"].as_array().is_some_and(|n| n.len() == 2)
    })
    .await;
    drop((pg, nats));
}

/// One server spreads a big room's fan-out over shards: every listener, whichever shard
/// serves them, hears every frame as sent and in order, and hears of a hand raised in
/// another shard.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rooms_fan_out_spread_over_shards_reaches_everyone_in_order() {
    let server = TestServer::start_with(&["--fanout-shards", "2", "--shard-from", "2"]);
    let hera = server.session("Hera").await;
    let room = server.create_room(&hera, "sharded").await;
    let mut host = Live::join(&server, &room, &hera).await;
    let mut listeners = Vec::new();
    let mut sessions = Vec::new();
    for i in 0..6 {
        let session = server.session(&format!("L{i}")).await;
        listeners.push(Live::join(&server, &room, &session).await);
        sessions.push(session);
    }
    assert_eq!(
        server.metric("hallway_edges").await,
        2.0,
        "both shards are open"
    );
    // A hand raised in one shard reaches the host (in the actor) and a listener in the
    // other shard.
    let raiser = sessions[1].user.id;
    listeners[1].command(json!({"type": "raise_hand"})).await;
    host.wait_for(|m| matches!(m, ServerMessage::HandRaised { user_id, .. } if *user_id == raiser))
        .await;
    listeners[2]
        .wait_for(|m| matches!(m, ServerMessage::HandRaised { user_id, .. } if *user_id == raiser))
        .await;
    host.command(json!({"type": "unmute"})).await;
    speak(&mut host, 1, 51).await;
    for listener in &mut listeners {
        hears(listener, &hera, 1, 51).await;
    }
}

/// A room id is never a NATS subject's wildcard or separator: a URL naming one finds no room
/// (it would otherwise subscribe an edge to other rooms' traffic).
#[tokio::test]
async fn a_room_id_with_subject_syntax_is_no_room() {
    let (nats, pg) = backbone(1).await;
    let a = node(&pg, &nats, "a");
    let hera = a.session("Hera").await;
    let _room = a.create_room(&hera, "a real room").await;
    for id in ["*", ">", "a.b", "x.%3E"] {
        let (status, body) = a
            .get(&format!("/api/v2/rooms/{id}"), Some(&hera.token))
            .await;
        assert_eq!(status, 404, "{id}: {body}");
    }
}

/// A client on the real client library, signed in with a new device on `node`.
async fn client(node: &TestServer, name: &str) -> Api {
    common::signed_in_client(node, name).await
}

/// The snapshot after the client's next (re)connection: who it is in the room.
async fn rejoined(events: &mut mpsc::Receiver<NetEvent>) -> (UserId, RoomDetail) {
    next_event(events, |e| matches!(e, NetEvent::Connected)).await;
    match next_event(events, |e| {
        matches!(e, NetEvent::Server(ServerMessage::RoomSnapshot { .. }))
    })
    .await
    {
        NetEvent::Server(ServerMessage::RoomSnapshot { you, room, .. }) => (you, room),
        _ => unreachable!(),
    }
}

fn frame(sequence: u32) -> AudioFrame {
    common::audio_frame(sequence, &payload(sequence))
}

/// Speaks frames `from..to` through the client until `heard` has frame `to - 1`: whatever
/// the reconnection cost, audio flows again.
async fn flows(speaker: &LiveSession, heard: &Arc<Mutex<Vec<u32>>>, from: u32, to: u32) {
    for sequence in from..to {
        speaker.send_audio(&frame(sequence));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let last = to - 1;
    eventually("the listener hears the speaker again", || {
        let heard = heard.clone();
        async move { heard.lock().unwrap().contains(&last) }
    })
    .await;
}

/// The room's home dies, then the node that took it over shuts down: each time the real
/// client moves (to another node it learnt of), the room carries on elsewhere with its id,
/// its host keeps the host's role, and audio flows again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_outlives_its_home_and_a_draining_node() {
    let (nats, pg) = backbone(1).await;
    let mut a = node(&pg, &nats, "a");
    let b = node(&pg, &nats, "b");
    let c = node(&pg, &nats, "c");
    eventually("every node knows the others", || async {
        let (_, body) = a.get("/api/v2/cluster", None).await;
        body["nodes"].as_array().is_some_and(|n| n.len() == 3)
    })
    .await;

    let hera_api = client(&a, "Hera").await;
    let room = hera_api
        .create_room("moves around")
        .await
        .unwrap()
        .summary
        .id;
    let (hera_tx, mut hera_events) = mpsc::channel(1024);
    let hera = LiveSession::start(&hera_api, &room, hera_tx, Box::new(|_| {}), fast());
    let (hera_id, _) = rejoined(&mut hera_events).await;
    hera.send(ClientCommand::Unmute);

    let ada_api = client(&b, "Ada").await;
    let heard: Arc<Mutex<Vec<u32>>> = Arc::default();
    let sink = heard.clone();
    let on_audio =
        Box::new(move |frame: AudioFrame| sink.lock().unwrap().push(frame.header.sequence));
    let (ada_tx, mut ada_events) = mpsc::channel(1024);
    let _ada = LiveSession::start(&ada_api, &room, ada_tx, on_audio, fast());
    rejoined(&mut ada_events).await;
    flows(&hera, &heard, 1, 20).await;

    // The home dies without a word.
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    let (you, detail) = rejoined(&mut hera_events).await;
    assert_eq!((you, detail.summary.id.as_str()), (hera_id, room.as_str()));
    let (_, detail) = rejoined(&mut ada_events).await;
    assert_eq!(detail.summary.id, room, "Ada is back in the same room");
    eventually("Hera is the host again, in the room carried on", || async {
        let (_, body) = b
            .get(
                &format!("/api/v2/rooms/{room}"),
                Some(&ada_api.token().unwrap()),
            )
            .await;
        body["host"]["id"].as_u64() == Some(u64::from(hera_id))
    })
    .await;
    hera.send(ClientCommand::Unmute);
    flows(&hera, &heard, 100, 120).await;

    // The node that carries it now shuts down: everyone is told to move, and does.
    b.interrupt();
    let reason = next_event(&mut ada_events, |e| {
        matches!(e, NetEvent::Reconnecting { .. })
    })
    .await;
    assert!(
        matches!(&reason, NetEvent::Reconnecting { reason, .. } if reason.contains("shutting down")),
        "{reason:?}"
    );
    rejoined(&mut ada_events).await;
    let (_, detail) = rejoined(&mut hera_events).await;
    assert!(
        detail
            .participants
            .iter()
            .any(|p| p.id == hera_id && p.role == hallway::protocol::Role::Host),
        "Hera is the host on the third node: {:?}",
        detail.participants
    );
    hera.send(ClientCommand::Unmute);
    flows(&hera, &heard, 200, 220).await;
    let listed = listing(&c).await;
    assert!(ids(&listed).contains(&room), "{listed}");
}

fn fast() -> Backoff {
    Backoff {
        first: Duration::from_millis(100),
        max: Duration::from_millis(500),
        max_attempts: None,
    }
}

/// A device signed out on one node is signed out on every node: its session cached on
/// another node is forgotten, and its room connection there closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_signed_out_on_one_node_is_out_on_every_node() {
    let (nats, pg) = backbone(1).await;
    let a = node(&pg, &nats, "a");
    let b = node(&pg, &nats, "b");
    // Ada has a phone (made on A) and a laptop (linked on A).
    let (ada, _) = a.account("Ada", None).await;
    let (status, code) = a
        .post_json("/api/v2/devices/link-codes", Some(&ada.token), json!({}))
        .await;
    assert_eq!(status, 201, "{code}");
    let laptop = DeviceKey::generate();
    let mut body = a.signed(&laptop).await;
    body["code"] = code["code"].clone();
    body["device"] = json!({
        "sign_key": hallway::identity::b64(&laptop.public().sign),
        "agree_key": hallway::identity::b64(&laptop.public().agree),
        "label": "laptop",
    });
    let (status, linked) = a.post_json("/api/v2/devices", None, body).await;
    assert_eq!(status, 200, "{linked}");
    let laptop_session: Session = serde_json::from_value(linked).unwrap();

    // The laptop is in a room on B (homed on A), so B has its session cached.
    let host = a.session("Hosta").await;
    let room = a.create_room(&host, "devices").await;
    let _host_live = Live::join(&a, &room, &host).await;
    listed_alike(&[&a, &b], &[&room]).await;
    let mut laptop_live = Live::join(&b, &room, &laptop_session).await;
    assert_eq!(
        b.get("/api/v2/me", Some(&laptop_session.token)).await.0,
        200
    );

    // Signed out on A.
    let (_, me) = a.get("/api/v2/me", Some(&ada.token)).await;
    let laptop_id = me["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["label"] == "laptop")
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    let (status, _) = a
        .request(
            reqwest::Method::DELETE,
            &format!("/api/v2/devices/{laptop_id}"),
            Some(&ada.token),
            None,
        )
        .await;
    assert_eq!(status, 204);
    // On B: its connection closes, and its token is refused.
    assert_eq!(laptop_live.closed().await.as_deref(), Some("unauthorized"));
    assert_eq!(
        b.get("/api/v2/me", Some(&laptop_session.token)).await.0,
        401
    );
}

/// A node restarted under the same name (as a service manager does within a second) is a
/// new run: the rooms the old run held are carried on, not stranded on a live name with no
/// room behind it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_restarted_under_its_name_leaves_no_room_stranded() {
    let (nats, pg) = backbone(1).await;
    let mut a = node(&pg, &nats, "a");
    let b = node(&pg, &nats, "b");
    let hera = a.session("Hera").await;
    let ada = b.session("Ada").await;
    let troll = b.session("Troll").await;
    let room = a.create_room(&hera, "restarts").await;
    let mut host = Live::join(&a, &room, &hera).await;
    listed_alike(&[&a, &b], &[&room]).await;
    let mut ada_live = Live::join(&b, &room, &ada).await;
    // The host removes a troll (on the other node) before the restart.
    let mut troll_live = Live::join(&b, &room, &troll).await;
    host.command(json!({"type": "remove", "user_id": troll.user.id}))
        .await;
    assert_eq!(troll_live.closed().await.as_deref(), Some("removed"));
    // And sets the chat's rules: stage only, Ada silenced, a pin.
    host.command(json!({"type": "set_chat", "who": "stage"}))
        .await;
    host.command(json!({"type": "silence_chat", "user_id": ada.user.id, "silenced": true}))
        .await;
    host.command(json!({"type": "pin", "text": "https://example.org/agenda"}))
        .await;
    // The removal is in the directory before the node goes.
    eventually("the removal reaches the directory", || async {
        let (_, body) = b.get("/api/v2/rooms", None).await;
        body["rooms"].as_array().is_some_and(|r| !r.is_empty())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    a.child.kill().unwrap();
    a.child.wait().unwrap();
    let a = node(&pg, &nats, "a");
    // Ada's node hears a new run of "a": the room's home is gone, and she moves.
    assert_eq!(ada_live.closed().await.as_deref(), Some("reconnect"));
    let ada_live = Live::join(&b, &room, &ada).await;
    assert_eq!(ada_live.snapshot.summary.id, room);
    // The room carried on keeps the chat's rules: a move is no way around a moderator.
    let life = &ada_live.snapshot.life;
    assert_eq!(
        (life.chat, life.pinned.as_deref()),
        (
            hallway::protocol::chat::ChatPolicy::Stage,
            Some("https://example.org/agenda")
        )
    );
    assert!(
        ada_live
            .snapshot
            .participants
            .iter()
            .any(|p| p.id == ada.user.id && p.chat_silenced),
        "Ada is still silenced: {:?}",
        ada_live.snapshot.participants
    );
    // The room carried on keeps its removals.
    let refused = common::connect_refusal(&b, &room, Some(&troll.token)).await;
    assert_eq!(refused.0, 403, "{refused:?}");
    assert_eq!(refused.1["error"]["code"], "banned", "{refused:?}");
    // The host comes back through the restarted node and is the host again.
    let host = Live::join(&a, &room, &hera).await;
    assert!(
        host.snapshot
            .participants
            .iter()
            .any(|p| p.id == hera.user.id && p.role == hallway::protocol::Role::Host),
        "{:?}",
        host.snapshot.participants
    );
}

/// What a member's client shows of a room, with people named by their place in the test
/// (their ids differ from one run to the other): who is there, in which role, muted, with a
/// hand up, invited; the hands in order; the unlisted count.
type Seen = (Vec<(usize, String, bool, bool, bool)>, Vec<usize>, usize);

fn seen(view: &RoomView, ids: &[UserId]) -> Seen {
    let at = |id: UserId| ids.iter().position(|&i| i == id).unwrap();
    let mut people: Vec<(usize, String, bool, bool, bool)> = view
        .detail
        .participants
        .iter()
        .map(|p| {
            (
                at(p.id),
                format!("{:?}", p.role),
                p.muted,
                p.hand_raised_at_ms.is_some(),
                p.invited,
            )
        })
        .collect();
    people.sort();
    let hands = view.detail.hands.iter().map(|&id| at(id)).collect();
    (people, hands, view.detail.unlisted)
}

/// The next control message on `live`, or `None` after `quiet` without one.
async fn next_within(live: &mut Live, quiet: Duration) -> Option<ServerMessage> {
    tokio::time::timeout(quiet, live.next()).await.ok()
}

/// Runs `steps` (who does what) in a new room whose member `i` joins through
/// `nodes[i % nodes.len()]`, and returns what each member's own client shows at the end,
/// built from the messages it received, as the terminal client builds it.
async fn run_steps(
    nodes: &[&TestServer],
    tag: &str,
    members: usize,
    steps: &[(usize, Value)],
) -> Vec<Seen> {
    let mut sessions = Vec::new();
    for i in 0..members {
        sessions.push(nodes[0].session(&format!("P{tag}x{i}")).await);
    }
    let ids: Vec<UserId> = sessions.iter().map(|s| s.user.id).collect();
    let room = nodes[0].create_room(&sessions[0], "same everywhere").await;
    let all: Vec<&TestServer> = nodes.to_vec();
    eventually("every node lists the room", || async {
        for node in &all {
            if !ids_of(&listing(node).await).contains(&room) {
                return false;
            }
        }
        true
    })
    .await;
    let mut lives = Vec::new();
    let mut views = Vec::new();
    for (i, session) in sessions.iter().enumerate() {
        let live = Live::join(nodes[i % nodes.len()], &room, session).await;
        views.push(RoomView::new(live.snapshot.clone(), session.user.id));
        lives.push(live);
    }
    // Those already in the room hear of each newcomer.
    for (n, step) in steps.iter().enumerate() {
        let (who, command) = step;
        let (who, id) = (*who % members, json!(n));
        let mut command = command.clone();
        // Targets are places in the test: made ids here.
        if let Some(target) = command.get("user_id").and_then(Value::as_u64) {
            command["user_id"] = json!(ids[target as usize % members]);
        }
        command["id"] = id.clone();
        lives[who].send(command).await;
        // Apply what the actor receives until its answer.
        loop {
            let message = lives[who].next().await;
            views[who].apply(&message);
            match &message {
                ServerMessage::Ok { id: got } if *got == id => break,
                ServerMessage::Error { id: Some(got), .. } if *got == id => break,
                _ => {}
            }
        }
    }
    // Everyone reads what is left, until the room has been quiet for a while (own hands and
    // recordings are shown at most once a second: longer than that), all at once.
    // (Each keeps its connection until all are done: one that closed would leave the room
    // in the views of those still reading.)
    let drained = futures_util::future::join_all(lives.into_iter().zip(views).map(
        |(mut live, mut view)| async move {
            while let Some(message) = next_within(&mut live, Duration::from_millis(1_500)).await {
                view.apply(&message);
            }
            (live, view)
        },
    ))
    .await;
    drained.iter().map(|(_, v)| seen(v, &ids)).collect()
}

fn ids_of(listing: &Value) -> BTreeSet<String> {
    ids(listing)
}

/// The property: the same commands give every member the same view whether the
/// room's members are on one node or spread over three. A seeded sequence of stage work
/// (hands, invitations, answers, mutes, moves, moderators; some of it refused) is run twice,
/// and each member's client, built from what it received, must show the same room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_spread_over_three_nodes_shows_everyone_what_one_node_shows() {
    let (nats, pg) = backbone(1).await;
    let a = node(&pg, &nats, "a");
    let b = node(&pg, &nats, "b");
    let c = node(&pg, &nats, "c");
    const MEMBERS: usize = 6;
    // A small linear congruential generator: the same steps on every run of the test.
    let mut state: u64 = 0x5eed_1234;
    let mut next = |n: u64| {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) % n
    };
    let mut steps = Vec::new();
    for _ in 0..40 {
        let who = next(MEMBERS as u64) as usize;
        let target = next(MEMBERS as u64);
        let command = match next(11) {
            0 => json!({"type": "raise_hand"}),
            1 => json!({"type": "invite_to_speak", "user_id": target}),
            2 => json!({"type": "accept_invite"}),
            3 => json!({"type": "decline_invite"}),
            4 => json!({"type": "unmute"}),
            5 => json!({"type": "mute"}),
            6 => json!({"type": "move_to_audience", "user_id": target}),
            7 => json!({"type": "mute_speaker", "user_id": target}),
            8 => json!({"type": "make_moderator", "user_id": target}),
            9 => json!({"type": "leave_stage"}),
            _ => json!({"type": "lower_hand", "user_id": target}),
        };
        // The host works the stage more than anyone: half the steps are theirs.
        let who = if next(2) == 0 { 0 } else { who };
        steps.push((who, command));
    }
    let one = run_steps(&[&a], "one", MEMBERS, &steps).await;
    let three = run_steps(&[&a, &b, &c], "three", MEMBERS, &steps).await;
    for (member, (one, three)) in one.iter().zip(&three).enumerate() {
        assert_eq!(
            one, three,
            "member {member} sees another room across three nodes"
        );
    }
    // And on one server whose room's fan-out is spread over shards (all but the host in
    // shards): a shard is an edge inside the process.
    let sharded = TestServer::start_with(&["--fanout-shards", "3", "--shard-from", "1"]);
    let shards = run_steps(&[&sharded], "shards", MEMBERS, &steps).await;
    for (member, (one, shards)) in one.iter().zip(&shards).enumerate() {
        assert_eq!(
            one, shards,
            "member {member} sees another room through a shard"
        );
    }
    assert_eq!(
        sharded.metric("hallway_edges").await,
        3.0,
        "three shards served the room"
    );
    // The steps did something: someone besides the host ended on the stage or with a hand.
    let busy = one[0]
        .0
        .iter()
        .any(|(i, role, _, hand, _)| *i != 0 && (role != "Listener" || *hand));
    assert!(busy, "the steps changed nothing: {:?}", one[0]);
}

/// `GET /api/v2/cluster` (anyone may ask, without signing in) answers from memory: a flood
/// of it from one address costs no NATS round trip, and someone on another address is
/// served meanwhile, the room list and the cluster's nodes both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_cluster_status_from_one_address_leaves_another_served() {
    let (nats, pg) = backbone(1).await;
    let a = node(&pg, &nats, "a");
    let flood = {
        let (http, url) = (a.http.clone(), a.url("/api/v2/cluster"));
        tokio::spawn(async move {
            let mut answered = 0u32;
            let until = tokio::time::Instant::now() + Duration::from_secs(3);
            while tokio::time::Instant::now() < until {
                let batch = (0..32).map(|_| http.get(&url).send());
                for sent in futures_util::future::join_all(batch).await {
                    answered += u32::from(sent.is_ok());
                }
            }
            answered
        })
    };
    let other = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .build()
        .unwrap();
    for _ in 0..20 {
        for path in ["/api/v2/cluster", "/api/v2/rooms"] {
            let answer = tokio::time::timeout(PATIENCE, other.get(a.url(path)).send())
                .await
                .expect("another address is answered during the flood")
                .unwrap();
            assert_eq!(answer.status(), 200, "{path}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(flood.await.unwrap() > 0, "the flood was answered too");
}

/// A private room homed on one node, reached through another: the other node keeps the
/// same door (its listing and its 404 for strangers), lets in the link's holder, and the
/// room key and the sealed audio cross NATS to a listener there, who opens every frame.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_room_keeps_its_door_and_its_keys_across_nodes() {
    let (nats, pg) = backbone(1).await;
    let a = node(&pg, &nats, "a");
    let b = node(&pg, &nats, "b");
    let hera_api = client(&a, "Hera").await;
    let detail = hera_api
        .create(&hallway::protocol::CreateRoom {
            title: "Behind two doors".into(),
            private: Some(hallway::protocol::Share {
                link: true,
                ..Default::default()
            }),
            replay: false,
        })
        .await
        .unwrap();
    let room = detail.summary.id.clone();
    let secret = detail.share_secret.clone().unwrap();
    let (hera_tx, mut hera_events) = mpsc::channel(1024);
    let hera = LiveSession::start(&hera_api, &room, hera_tx, Box::new(|_| {}), fast());
    rejoined(&mut hera_events).await;
    hera.send(ClientCommand::Unmute);

    // Node b knows the room is there, and shows it to nobody who is not let in.
    let stranger = b.session("Stranger").await;
    let hera_token = hera_api.token().unwrap();
    eventually("node b describes the room to its host", || async {
        let (status, _) = b
            .get(&format!("/api/v2/rooms/{room}"), Some(&hera_token))
            .await;
        status == 200
    })
    .await;
    let (_, list) = b.get("/api/v2/rooms", Some(&stranger.token)).await;
    assert!(!ids(&list).contains(&room), "{list}");
    let refused = common::connect_refusal(&b, &room, Some(&b.session("Eve").await.token)).await;
    common::assert_api_error(&refused, 404, "room_not_found");

    // Lu joins on node b with the link and hears Hera, on node a, through the seal.
    let lu_api = client(&b, "Lu").await;
    let (heard, on_audio) = common::hearing();
    let (lu_tx, mut lu_events) = mpsc::channel(1024);
    let lu = LiveSession::start_shared(&lu_api, &room, Some(secret), lu_tx, on_audio, fast());
    rejoined(&mut lu_events).await;
    eventually("Lu holds the room key", || async {
        lu.stats
            .key_epoch
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0
    })
    .await;
    for sequence in 1..=40u32 {
        hera.send_audio(&frame(sequence));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eventually("Lu hears frame 40", || {
        let heard = heard.clone();
        async move { heard.lock().unwrap().iter().any(|(s, _)| *s == 40) }
    })
    .await;
    let got = heard.lock().unwrap().clone();
    let want: Vec<(u32, Vec<u8>)> = (1..=40).map(|s| (s, payload(s))).collect();
    assert_eq!(got, want, "every frame, opened, in order, across nodes");
    assert_eq!(
        lu.stats
            .undecryptable
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
}
