//! Big rooms, against a real server process over real sockets: past the audience's 50
//! front rows, listeners are counted for most members rather than listed, while the host
//! and moderators still see everyone.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Live, TestServer, room_with};
use hallway::protocol::control::LeaveReason;
use hallway::protocol::{ServerMessage, UserId};
use serde_json::json;

/// The server's front rows (`RoomLimits::listed_audience`).
const FRONT_ROWS: usize = 50;

/// Reads `who`'s messages until the unlisted count is `want`; fails if someone in `never`
/// is introduced on the way.
async fn count_reaches(who: &mut Live, want: usize, never: &[UserId]) {
    loop {
        match who.next().await {
            ServerMessage::AudienceChanged { unlisted } if unlisted == want => return,
            ServerMessage::ParticipantJoined { participant } => assert!(
                !never.contains(&participant.id),
                "{} was told of {} joining past the front rows",
                who.me,
                participant.name
            ),
            _ => {}
        }
    }
}

#[tokio::test]
async fn past_the_front_rows_listeners_are_counted_for_the_audience_and_listed_for_moderators() {
    let server = TestServer::start();
    let names: Vec<String> = (0..FRONT_ROWS).map(|i| format!("front{i}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let (room, mut host, mut front) = room_with(&server, &names).await;

    let late1 = server.session("late1").await;
    let late1_live = Live::join(&server, &room, &late1).await;
    let late2 = server.session("late2").await;
    let late2_live = Live::join(&server, &room, &late2).await;
    // The stage, the front rows and themselves, and a count of the rest.
    assert_eq!(late2_live.snapshot.participants.len(), 1 + FRONT_ROWS + 1);
    assert_eq!(late2_live.snapshot.unlisted, 1);
    assert!(
        late2_live
            .snapshot
            .participants
            .iter()
            .all(|p| p.id != late1.user.id),
        "late1 is not listed to late2"
    );

    // The host hears of both, by name; a listener in the front rows only of the count.
    for late in [&late1, &late2] {
        let joined = host
            .wait_for(|m| matches!(m, ServerMessage::ParticipantJoined { participant } if participant.id == late.user.id))
            .await;
        assert!(
            matches!(joined, ServerMessage::ParticipantJoined { participant } if participant.name == late.user.name)
        );
    }
    let late_ids = [late1.user.id, late2.user.id];
    count_reaches(&mut front[0], 2, &late_ids).await;
    // REST lists everyone.
    assert_eq!(
        server.room(&room).await.participants.len(),
        1 + FRONT_ROWS + 2
    );

    // A front-row seat frees up: the longest waiting is introduced to everyone who did
    // not know them, the count drops.
    let leaver = front.remove(1);
    drop(leaver);
    let introduced = front[0]
        .wait_for(|m| {
            matches!(m, ServerMessage::ParticipantJoined { participant } if late_ids.contains(&participant.id))
        })
        .await;
    assert!(
        matches!(&introduced, ServerMessage::ParticipantJoined { participant } if participant.id == late1.user.id),
        "the longest waiting goes first: {introduced:?}"
    );
    count_reaches(&mut front[0], 1, &[late2.user.id]).await;

    // An unlisted listener who raises a hand is seen by the host, not by the audience.
    let mut late2_live = late2_live;
    late2_live.command(json!({"type": "raise_hand"})).await;
    let raised = host
        .wait_for(|m| matches!(m, ServerMessage::HandRaised { .. }))
        .await;
    assert!(
        matches!(raised, ServerMessage::HandRaised { user_id, .. } if user_id == late2.user.id)
    );
    // Invited and accepted, they are introduced to everyone before stepping on stage.
    host.command(json!({"type": "invite_to_speak", "user_id": late2.user.id}))
        .await;
    late2_live
        .wait_for(|m| matches!(m, ServerMessage::Invited { .. }))
        .await;
    late2_live.command(json!({"type": "accept_invite"})).await;
    let mut seen = Vec::new();
    loop {
        let msg = front[0].next().await;
        let done =
            matches!(&msg, ServerMessage::RoleChanged { user_id, .. } if *user_id == late2.user.id);
        seen.push(msg);
        if done {
            break;
        }
    }
    assert!(
        seen.iter().any(|m| matches!(m, ServerMessage::ParticipantJoined { participant } if participant.id == late2.user.id)),
        "introduced before the role change: {seen:?}"
    );
    assert!(
        !seen
            .iter()
            .any(|m| matches!(m, ServerMessage::HandRaised { .. })),
        "the audience did not see the unlisted hand: {seen:?}"
    );
    // The one who left was listed: everyone heard.
    drop(late1_live);
    let left = front[2]
        .wait_for(|m| matches!(m, ServerMessage::ParticipantLeft { .. }))
        .await;
    assert!(matches!(
        left,
        ServerMessage::ParticipantLeft {
            reason: LeaveReason::Disconnected,
            ..
        }
    ));
}
