//! Room life (#15) against a real server process over real sockets: chat in order and by
//! the host's rules, a chat flood from one address while someone else is served,
//! reactions aggregated in a big room (counting the messages a listener receives), and the
//! pin.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::Ipv4Addr;
use std::time::Instant;

use common::{Live, TestServer, room_with};
use hallway::protocol::chat::{ChatLine, Reaction};
use hallway::protocol::{ServerMessage, UserId};
use serde_json::json;

/// Reads chat until `n` lines came; returns them and how many `chat` messages carried them.
async fn read_lines(live: &mut Live, n: usize) -> (Vec<ChatLine>, usize) {
    let mut lines = Vec::new();
    let mut messages = 0;
    while lines.len() < n {
        if let ServerMessage::Chat { lines: got } = live.next().await {
            messages += 1;
            lines.extend(got);
        }
    }
    (lines, messages)
}

fn texts(lines: &[ChatLine]) -> Vec<&str> {
    lines.iter().map(|l| l.text.as_str()).collect()
}

async fn say(live: &mut Live, text: &str) {
    live.command(json!({"type": "chat", "text": text})).await;
}

#[tokio::test]
async fn chat_reaches_everyone_in_order_and_only_whom_the_host_lets_write() {
    let server = TestServer::start();
    let (room, mut host, mut others) = room_with(&server, &["Ada", "Bob", "Cy"]).await;
    let (mut ada, mut bob, mut cy) = (others.remove(0), others.remove(0), others.remove(0));
    // Ada and Bob's own commands skip what arrives before their answers: Cy and the host
    // only read, so they see every line.

    say(&mut ada, "one").await;
    say(&mut bob, "two").await;
    // Cleaned, not refused: a right-to-left override and a line break.
    say(&mut ada, "thr\u{202E}ee\nfour").await;
    for live in [&mut host, &mut cy] {
        let (lines, _) = read_lines(live, 3).await;
        assert_eq!(
            texts(&lines),
            ["one", "two", "three four"],
            "seen by {}",
            live.me
        );
        let ids: Vec<u64> = lines.iter().map(|l| l.id).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
        assert_eq!(lines[1].user_id, bob.me);
        assert_eq!(lines[1].name, "Bob");
    }

    // Bad lines: a clear refusal each.
    assert_eq!(
        ada.refused(json!({"type": "chat", "text": " \u{200B} "}))
            .await,
        "invalid_text"
    );
    assert_eq!(
        ada.refused(json!({"type": "chat", "text": "x".repeat(281)}))
            .await,
        "invalid_text"
    );

    // Listeners do not choose who writes, pin or silence.
    assert_eq!(
        ada.refused(json!({"type": "set_chat", "who": "nobody"}))
            .await,
        "forbidden"
    );
    assert_eq!(
        ada.refused(json!({"type": "pin", "text": "hi"})).await,
        "forbidden"
    );
    assert_eq!(
        ada.refused(json!({"type": "silence_chat", "user_id": bob.me, "silenced": true}))
            .await,
        "forbidden"
    );

    // The stage only: a listener is refused, the host writes.
    host.command(json!({"type": "set_chat", "who": "stage"}))
        .await;
    for live in [&mut ada, &mut bob] {
        live.wait_for(|m| matches!(m, ServerMessage::ChatPolicy { .. }))
            .await;
    }
    assert_eq!(
        ada.refused(json!({"type": "chat", "text": "me?"})).await,
        "forbidden"
    );
    say(&mut host, "stage only for a bit").await;
    host.command(json!({"type": "set_chat", "who": "nobody"}))
        .await;
    assert_eq!(
        host.refused(json!({"type": "chat", "text": "x"})).await,
        "forbidden"
    );
    host.command(json!({"type": "set_chat", "who": "everyone"}))
        .await;

    // Silenced: Bob is told and refused; Ada is not.
    host.command(json!({"type": "silence_chat", "user_id": bob.me, "silenced": true}))
        .await;
    bob.wait_for(|m| matches!(m, ServerMessage::ChatSilenced { silenced: true, .. }))
        .await;
    assert_eq!(
        bob.refused(json!({"type": "chat", "text": "hey"})).await,
        "forbidden"
    );
    say(&mut ada, "still here").await;

    // Deleting: only your own, or anyone's as a moderator; everyone hears.
    let (lines, _) = read_lines(&mut cy, 2).await;
    assert_eq!(texts(&lines), ["stage only for a bit", "still here"]);
    let two = 2;
    assert_eq!(
        ada.refused(json!({"type": "delete_chat", "message_id": two}))
            .await,
        "forbidden"
    );
    host.command(json!({"type": "delete_chat", "message_id": two}))
        .await;
    let deleted = bob
        .wait_for(|m| matches!(m, ServerMessage::ChatDeleted { .. }))
        .await;
    assert_eq!(
        deleted,
        ServerMessage::ChatDeleted {
            message_id: two,
            by: Some(host.me)
        }
    );
    assert_eq!(
        host.refused(json!({"type": "delete_chat", "message_id": two}))
            .await,
        "message_not_found"
    );

    // A late joiner sees what was said (less the deleted line) and who is silenced.
    let dee = server.session("Dee").await;
    let dee_live = Live::join(&server, &room, &dee).await;
    assert_eq!(
        texts(&dee_live.snapshot.life.chat_log),
        ["one", "three four", "stage only for a bit", "still here"]
    );
    let bob_seen = dee_live
        .snapshot
        .participants
        .iter()
        .find(|p| p.id == bob.me)
        .unwrap();
    assert!(bob_seen.chat_silenced);
}

#[tokio::test]
async fn a_chat_flood_from_one_address_is_held_back_while_others_are_served() {
    let server = TestServer::start();
    let (room, mut host, mut others) = room_with(&server, &["Ada"]).await;
    let mut ada = others.remove(0);
    let mallory = server.session("Mallory").await;
    let mut mallory = Live::join_from(&server, &room, &mallory, Ipv4Addr::new(127, 0, 0, 2)).await;
    let mallory_id: UserId = mallory.me;

    // Thirty lines as fast as the socket takes them, answers unread.
    for i in 0..30 {
        mallory
            .send(json!({"type": "chat", "text": format!("spam {i}"), "id": i}))
            .await;
    }
    let started = Instant::now();
    say(&mut ada, "hello everyone").await;
    // The host reads until Ada's line: it came through, and of Mallory's only the burst.
    let mut from_mallory = 0;
    let mut messages = 0;
    loop {
        if let ServerMessage::Chat { lines } = host.next().await {
            messages += 1;
            from_mallory += lines.iter().filter(|l| l.user_id == mallory_id).count();
            if lines.iter().any(|l| l.text == "hello everyone") {
                break;
            }
        }
    }
    let elapsed_batches = started.elapsed().as_millis() as usize / 500 + 2;
    assert!(
        from_mallory <= 5 + 1,
        "{from_mallory} of Mallory's lines got through"
    );
    assert!(
        messages <= elapsed_batches,
        "{messages} chat messages in {:?}: not batched",
        started.elapsed()
    );
    // Mallory was told why.
    let refusal = mallory
        .wait_for(|m| matches!(m, ServerMessage::Error { .. }))
        .await;
    let ServerMessage::Error { code, message, .. } = refusal else {
        unreachable!()
    };
    assert_eq!(code.as_str(), "rate_limited");
    assert!(message.contains("slow down"), "{message}");
}

#[tokio::test]
async fn reactions_in_a_big_room_reach_a_listener_counted_once_a_second() {
    // More listeners than the front rows (50): some reactors are not listed to others.
    const LISTENERS: usize = 56;
    let server = TestServer::start();
    let names: Vec<String> = (0..LISTENERS).map(|i| format!("fan{i}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let (_room, mut host, mut fans) = room_with(&server, &names).await;
    // The last to join: the stage and the front rows are listed to them, the rest counted.
    let mut watcher = fans.pop().unwrap();
    assert!(watcher.snapshot.unlisted > 0);
    let listed: Vec<UserId> = watcher.snapshot.participants.iter().map(|p| p.id).collect();

    let started = Instant::now();
    for fan in &mut fans {
        fan.send(json!({"type": "react", "reaction": "clap"})).await;
        fan.send(json!({"type": "react", "reaction": "heart"}))
            .await;
        // Clapping again within the second counts once.
        fan.send(json!({"type": "react", "reaction": "clap"})).await;
    }
    host.send(json!({"type": "react", "reaction": "hundred"}))
        .await;
    let reactors = fans.len() as u32;
    let (mut claps, mut hearts, mut hundreds, mut messages) = (0, 0, 0, 0);
    let mut shown = Vec::new();
    while claps < reactors || hearts < reactors || hundreds < 1 {
        if let ServerMessage::Reactions { shown: s, counts } = watcher.next().await {
            messages += 1;
            shown.extend(s);
            for c in counts {
                match c.reaction {
                    Reaction::Clap => claps += c.count,
                    Reaction::Heart => hearts += c.count,
                    Reaction::Hundred => hundreds += c.count,
                    _ => {}
                }
            }
        }
    }
    let elapsed = started.elapsed();
    // 3 × 55 + 1 reactions sent; the watcher got a handful of messages, at most one a
    // second (plus the first, which goes at once).
    assert!(
        messages as f64 <= elapsed.as_secs_f64().ceil() + 1.0,
        "{messages} reactions messages in {elapsed:?}"
    );
    assert!(messages < 10, "{messages}");
    // Clapping twice in one second counted once per person (or twice across a window).
    assert!(claps >= reactors && claps <= 2 * reactors);
    assert_eq!(hearts, reactors);
    // Only people the watcher knows are named beside their reaction.
    assert!(
        shown
            .iter()
            .any(|r| r.user_id == host.me && r.reaction == Reaction::Hundred)
    );
    for r in &shown {
        assert!(
            listed.contains(&r.user_id),
            "{} is named but the watcher does not know them",
            r.user_id
        );
    }
}

#[tokio::test]
async fn a_moderator_pins_a_link_or_a_line_and_bad_pins_are_refused() {
    let server = TestServer::start();
    let (room, mut host, mut others) = room_with(&server, &["Ada"]).await;
    let ada = &mut others[0];
    for bad in [
        "javascript:alert(1)",
        "file:///etc/passwd",
        "line\u{1b}]8;;http://evil\u{7}",
        "",
        &"x".repeat(301),
    ] {
        assert_eq!(
            host.refused(json!({"type": "pin", "text": bad})).await,
            "invalid_text",
            "{bad:?}"
        );
    }
    host.command(json!({"type": "pin", "text": "https://example.org/agenda"}))
        .await;
    let pinned = ada
        .wait_for(|m| matches!(m, ServerMessage::Pinned { .. }))
        .await;
    assert_eq!(
        pinned,
        ServerMessage::Pinned {
            text: Some("https://example.org/agenda".into()),
            by: host.me
        }
    );
    // REST shows it to anyone looking at the room.
    assert_eq!(
        server.room(&room).await.life.pinned.as_deref(),
        Some("https://example.org/agenda")
    );
    host.command(json!({"type": "unpin"})).await;
    ada.wait_for(|m| matches!(m, ServerMessage::Pinned { text: None, .. }))
        .await;
    assert_eq!(server.room(&room).await.life.pinned, None);

    // A moderator changing the pin as fast as commands go: a few go out, the rest are
    // refused, so the members are not sent a pin 20 times a second. Ada's own line still
    // goes meanwhile.
    let mut taken = 0;
    for k in 0..20 {
        let answer = host
            .answer(
                json!({"type": "pin", "text": format!("pin number {k}")}),
                json!(k),
            )
            .await;
        match answer {
            ServerMessage::Ok { .. } => taken += 1,
            ServerMessage::Error { code, .. } => assert_eq!(code.as_str(), "rate_limited"),
            other => panic!("{other:?}"),
        }
    }
    // Two of the five were used above; one more comes back each 2 s this takes.
    assert!(
        (3..=5).contains(&taken),
        "{taken} of 20 pin changes taken in a row"
    );
    ada.send(json!({"type": "chat", "text": "still chatting", "id": "c"}))
        .await;
    let mut pins_heard = 0;
    loop {
        match ada.next().await {
            ServerMessage::Pinned { .. } => pins_heard += 1,
            ServerMessage::Chat { lines } if lines.iter().any(|l| l.text == "still chatting") => {
                break;
            }
            _ => {}
        }
    }
    assert_eq!(pins_heard, taken, "Ada heard each change taken, once");
}
