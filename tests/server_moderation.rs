//! Who may do what in a room, removal and bans, and the stage limit, against a real server.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Live, TestServer, assert_api_error, connect_from, connect_refusal, room_with};
use hallway::protocol::control::LeaveReason;
use hallway::protocol::{ErrorCode, Role, ServerMessage, UserId};
use serde_json::{Value, json};

/// Every command only moderators may send, aimed at `target` (a listener with a raised hand)
/// and `speaker` (someone on the stage), so that the role is the only thing wrong with it.
fn moderator_commands(target: UserId, speaker: UserId) -> Vec<Value> {
    vec![
        json!({"type": "invite_to_speak", "user_id": target}),
        json!({"type": "move_to_audience", "user_id": speaker}),
        json!({"type": "mute_speaker", "user_id": speaker}),
        json!({"type": "remove", "user_id": target}),
        json!({"type": "make_moderator", "user_id": target}),
        json!({"type": "lower_hand", "user_id": target}),
        json!({"type": "end_room"}),
    ]
}

/// Sends `command` with a fresh request id and expects `error` `code` echoing that id.
async fn expect_refusal(who: &mut Live, command: Value, id: Value, code: ErrorCode) {
    match who.answer(command.clone(), id.clone()).await {
        ServerMessage::Error {
            id: Some(got),
            code: got_code,
            message,
        } => {
            assert_eq!(got, id, "{command}");
            assert_eq!(got_code, code, "{command}: {message}");
            assert!(!message.is_empty());
        }
        other => panic!("{command} was accepted: {other:?}"),
    }
}

/// Host invites `who` to the stage and `who` accepts.
async fn bring_on_stage(host: &mut Live, who: &mut Live) {
    host.command(json!({"type": "invite_to_speak", "user_id": who.me}))
        .await;
    who.command(json!({"type": "accept_invite"})).await;
}

#[tokio::test]
async fn listeners_and_speakers_are_forbidden_every_moderator_command() {
    let server = TestServer::start();
    let (room, mut host, mut others) = room_with(&server, &["ada", "bob", "cy"]).await;
    let (mut ada, mut bob, mut cy) = (others.remove(0), others.remove(0), others.remove(0));
    bring_on_stage(&mut host, &mut bob).await;
    bob.command(json!({"type": "unmute"})).await;
    cy.command(json!({"type": "raise_hand"})).await;
    let before = server.room(&room).await;

    let mut n = 0;
    let (cy_id, bob_id) = (cy.me, bob.me);
    for who in [&mut ada, &mut bob] {
        for command in moderator_commands(cy_id, bob_id) {
            n += 1;
            // Ids of both kinds a client may use, to see each echoed as sent.
            let id = if n % 2 == 0 {
                json!(format!("req-{n}"))
            } else {
                json!(n)
            };
            expect_refusal(who, command, id, ErrorCode::Forbidden).await;
        }
    }
    // Nothing changed: same roles, mutes, hands, and the room is still live.
    let after = server.room(&room).await;
    assert_eq!(after.participants, before.participants);
    assert_eq!(after.hands, vec![cy.me]);
    assert!(server.metric("hallway_errors_total").await >= 14.0);
    // The refused commands were not silently applied elsewhere either: a moderator's
    // command still works, and is the first change anyone sees.
    host.command(json!({"type": "lower_hand", "user_id": cy.me}))
        .await;
    let msg = ada.next().await;
    assert_eq!(
        msg,
        ServerMessage::HandLowered {
            user_id: cy.me,
            by: Some(host.me)
        }
    );
}

#[tokio::test]
async fn nobody_acts_on_the_host_and_only_the_host_acts_on_moderators() {
    let server = TestServer::start();
    let (room, mut host, mut others) = room_with(&server, &["ada", "bob", "cy"]).await;
    let (mut ada, mut bob, mut cy) = (others.remove(0), others.remove(0), others.remove(0));
    host.command(json!({"type": "make_moderator", "user_id": ada.me}))
        .await;
    host.command(json!({"type": "make_moderator", "user_id": bob.me}))
        .await;
    host.command(json!({"type": "unmute"})).await;
    bob.command(json!({"type": "unmute"})).await;

    for (n, command) in [
        json!({"type": "move_to_audience", "user_id": host.me}),
        json!({"type": "mute_speaker", "user_id": host.me}),
        json!({"type": "remove", "user_id": host.me}),
        json!({"type": "move_to_audience", "user_id": bob.me}),
        json!({"type": "mute_speaker", "user_id": bob.me}),
        json!({"type": "remove", "user_id": bob.me}),
    ]
    .into_iter()
    .enumerate()
    {
        expect_refusal(&mut ada, command, json!(n), ErrorCode::Forbidden).await;
    }
    let detail = server.room(&room).await;
    let find = |id| detail.participants.iter().find(|p| p.id == id).unwrap();
    assert_eq!(
        (find(host.me).role, find(host.me).muted),
        (Role::Host, false)
    );
    assert_eq!(
        (find(bob.me).role, find(bob.me).muted),
        (Role::Moderator, false)
    );

    // A moderator still acts on speakers and listeners.
    bring_on_stage(&mut host, &mut cy).await;
    ada.command(json!({"type": "move_to_audience", "user_id": cy.me}))
        .await;
    let cy_id = cy.me;
    cy.wait_for(|m| {
        matches!(m, ServerMessage::RoleChanged { user_id, role: Role::Listener, .. } if *user_id == cy_id)
    })
    .await;

    // The host acts on moderators.
    host.command(json!({"type": "mute_speaker", "user_id": bob.me}))
        .await;
    host.command(json!({"type": "move_to_audience", "user_id": bob.me}))
        .await;
    let bob_id = bob.me;
    let msg = bob
        .wait_for(|m| matches!(m, ServerMessage::RoleChanged { user_id, .. } if *user_id == bob_id))
        .await;
    assert_eq!(
        msg,
        ServerMessage::RoleChanged {
            user_id: bob.me,
            role: Role::Listener,
            by: Some(host.me)
        }
    );
}

#[tokio::test]
async fn a_moderator_mutes_a_speaker_and_only_the_speaker_unmutes() {
    let server = TestServer::start();
    let (room, mut host, mut others) = room_with(&server, &["ada", "cy"]).await;
    let (mut ada, mut cy) = (others.remove(0), others.remove(0));
    host.command(json!({"type": "make_moderator", "user_id": ada.me}))
        .await;
    bring_on_stage(&mut host, &mut cy).await;
    cy.command(json!({"type": "unmute"})).await;

    ada.command(json!({"type": "mute_speaker", "user_id": cy.me}))
        .await;
    let msg = cy
        .wait_for(|m| matches!(m, ServerMessage::MuteChanged { .. }))
        .await;
    assert_eq!(
        msg,
        ServerMessage::MuteChanged {
            user_id: cy.me,
            muted: true,
            by: Some(ada.me)
        }
    );
    // A muted speaker's audio goes nowhere.
    cy.send_audio(1, b"muted").await;
    let msg = cy
        .wait_for(|m| matches!(m, ServerMessage::Error { .. }))
        .await;
    assert!(matches!(
        msg,
        ServerMessage::Error {
            code: ErrorCode::NotAllowedToSpeak,
            ..
        }
    ));

    // There is no way to unmute someone else: `unmute` naming another user is refused
    // rather than silently unmuting the moderator herself.
    let code = ada
        .refused(json!({"type": "unmute", "user_id": cy.me}))
        .await;
    assert_eq!(code, "bad_request");
    let detail = server.room(&room).await;
    let find = |id| detail.participants.iter().find(|p| p.id == id).unwrap();
    assert!(find(cy.me).muted, "the speaker stays muted");
    assert!(find(ada.me).muted, "and so does the moderator");

    cy.command(json!({"type": "unmute"})).await;
    let msg = host
        .wait_for(|m| matches!(m, ServerMessage::MuteChanged { user_id, .. } if *user_id == cy.me))
        .await;
    assert_eq!(
        msg,
        ServerMessage::MuteChanged {
            user_id: cy.me,
            muted: false,
            by: None
        }
    );
    cy.send_audio(2, b"heard").await;
    let frame = host.next_audio().await;
    assert_eq!(
        (frame.header.speaker_id, frame.opus()),
        (cy.me, &b"heard"[..])
    );
}

#[tokio::test]
async fn a_removed_participant_is_told_disconnected_and_cannot_rejoin() {
    let server = TestServer::start();
    let (room, mut host, mut others) = room_with(&server, &["bob"]).await;
    let mut bob = others.remove(0);
    let ada_session = server.session("ada").await;
    let mut ada = Live::join(&server, &room, &ada_session).await;

    host.command(json!({"type": "remove", "user_id": ada.me}))
        .await;
    assert_eq!(ada.closed().await.as_deref(), Some("removed"));
    // (The host saw the same before the `ok` to its command.)
    let msg = bob
        .wait_for(|m| matches!(m, ServerMessage::ParticipantLeft { .. }))
        .await;
    assert_eq!(
        msg,
        ServerMessage::ParticipantLeft {
            user_id: ada.me,
            reason: LeaveReason::Removed
        }
    );
    assert!(
        server
            .room(&room)
            .await
            .participants
            .iter()
            .all(|p| p.id != ada.me)
    );

    let refusal = connect_refusal(&server, &room, Some(&ada_session.token)).await;
    assert_api_error(&refusal, 403, "banned");
    // Still banned after the first refusal, and the room is unharmed.
    let refusal = connect_refusal(&server, &room, Some(&ada_session.token)).await;
    assert_api_error(&refusal, 403, "banned");
    bob.ping(1).await;
    assert_eq!(server.room(&room).await.participants.len(), 2);
}

/// A removed person's account is banned; a second account made from the same address stays
/// out too (the second line), but never the moderator's own address.
#[tokio::test]
async fn a_removed_participant_cannot_come_back_under_a_new_session_from_the_same_address() {
    use std::net::Ipv4Addr;
    let (troll_addr, other_addr) = (Ipv4Addr::new(127, 0, 0, 2), Ipv4Addr::new(127, 0, 0, 3));
    let server = TestServer::start();
    // The host on 127.0.0.1; the troll from elsewhere.
    let (room, mut host, _) = room_with(&server, &[]).await;
    let troll = server.session("troll").await;
    let mut troll_live = Live::join_from(&server, &room, &troll, troll_addr).await;
    // Someone else in the room from the same address, who did nothing wrong.
    let sibling = server.session("sibling").await;
    let sibling_live = Live::join_from(&server, &room, &sibling, troll_addr).await;
    host.command(json!({"type": "remove", "user_id": troll_live.me}))
        .await;
    assert_eq!(troll_live.closed().await.as_deref(), Some("removed"));
    // Their connection drops; they come back, from the banned address, and get in.
    drop(sibling_live);
    common::eventually("the sibling's connection is gone", || async {
        server
            .room(&room)
            .await
            .participants
            .iter()
            .all(|p| p.id != sibling.user.id)
    })
    .await;
    Live::join_from(&server, &room, &sibling, troll_addr).await;

    let again = server.session("not a troll").await;
    let refusal = connect_from(&server, &room, &again.token, troll_addr)
        .await
        .map(|_| ())
        .unwrap_err();
    assert_api_error(&refusal, 403, "banned");
    // Other rooms are not this room's business.
    let elsewhere = server.create_room(&again, "somewhere else").await;
    Live::join_from(&server, &elsewhere, &again, troll_addr).await;
    // Someone else, and someone at the host's own address, still get in.
    let other = server.session("other").await;
    Live::join_from(&server, &room, &other, other_addr).await;
    let neighbour = server.session("neighbour").await;
    Live::join(&server, &room, &neighbour).await;

    // Removing someone who shares the moderator's address bans only their id.
    let mut neighbour_live = Live::join(&server, &room, &server.session("housemate").await).await;
    host.command(json!({"type": "remove", "user_id": neighbour_live.me}))
        .await;
    assert_eq!(neighbour_live.closed().await.as_deref(), Some("removed"));
    Live::join(&server, &room, &server.session("another housemate").await).await;
}

#[tokio::test]
async fn the_stage_limit_refuses_invitations_and_acceptances_beyond_it() {
    let server = TestServer::start_with(&["--stage-limit", "2"]);
    let (room, mut host, mut others) = room_with(&server, &["ada", "bob", "cy"]).await;
    let (mut ada, mut bob, cy) = (others.remove(0), others.remove(0), others.remove(0));
    assert_eq!(host.snapshot.stage_limit, 2);

    // Two invitations while one seat is free; the first to accept takes it.
    host.command(json!({"type": "invite_to_speak", "user_id": ada.me}))
        .await;
    host.command(json!({"type": "invite_to_speak", "user_id": bob.me}))
        .await;
    ada.command(json!({"type": "accept_invite"})).await;
    expect_refusal(
        &mut bob,
        json!({"type": "accept_invite"}),
        json!("late"),
        ErrorCode::StageFull,
    )
    .await;
    expect_refusal(
        &mut host,
        json!({"type": "invite_to_speak", "user_id": cy.me}),
        json!("full"),
        ErrorCode::StageFull,
    )
    .await;
    expect_refusal(
        &mut host,
        json!({"type": "make_moderator", "user_id": cy.me}),
        json!("full-mod"),
        ErrorCode::StageFull,
    )
    .await;
    let detail = server.room(&room).await;
    assert_eq!(detail.summary.speakers.len(), 2);
    // The refusal changed nothing (so every client's view of the invitation still holds):
    // Bob is still invited, and takes the seat once one frees up.
    let bob_now = detail.participants.iter().find(|p| p.id == bob.me).unwrap();
    assert_eq!((bob_now.role, bob_now.invited), (Role::Listener, true));
    ada.command(json!({"type": "leave_stage"})).await;
    bob.command(json!({"type": "accept_invite"})).await;
    let detail = server.room(&room).await;
    assert_eq!(detail.summary.speakers.len(), 2);
    assert!(detail.summary.speakers.iter().any(|s| s.id == bob.me));
}
