//! Hallway servers as a cluster: real `nats-server` processes (three, clustered), a real
//! PostgreSQL for the shared accounts, and real `hallway serve` processes, on loopback.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::nats::NatsCluster;
use common::postgres::TestPostgres;
use common::{Live, TestServer, eventually};
use hallway::protocol::{ServerMessage, Session};
use serde_json::{Value, json};

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

/// The walk-through: the host on node A, a listener on node B raises a hand, is
/// invited, accepts and speaks; a listener on node C hears it byte-exact and in order; every
/// node lists the room alike; one NATS server of three dies and nothing changes; node C
/// dies and its listener is back in the room through node B.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_room_across_three_nodes_and_their_failures() {
    let mut nats = tokio::task::spawn_blocking(|| NatsCluster::start(3))
        .await
        .unwrap();
    let pg = tokio::task::spawn_blocking(TestPostgres::start)
        .await
        .unwrap();
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
    let (status, status_body) = b.get("/api/v2/cluster", None).await;
    assert_eq!(status, 200);
    let names: BTreeSet<&str> = status_body["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, BTreeSet::from(["a", "b", "c"]), "{status_body}");

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
        nats.kill(0);
        nats
    })
    .await
    .unwrap();
    ada_live.command(json!({"type": "mute"})).await;
    ada_live.command(json!({"type": "unmute"})).await;
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

/// A room id is never a NATS subject's wildcard or separator: a URL naming one finds no room
/// (it would otherwise subscribe an edge to other rooms' traffic).
#[tokio::test]
async fn a_room_id_with_subject_syntax_is_no_room() {
    let nats = tokio::task::spawn_blocking(|| NatsCluster::start(1))
        .await
        .unwrap();
    let pg = tokio::task::spawn_blocking(TestPostgres::start)
        .await
        .unwrap();
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
