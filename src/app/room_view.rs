//! A client's copy of one room, kept equal to the server's by applying its events in order.

use std::collections::VecDeque;

use crate::protocol::chat::{ChatLine, ChatPolicy};
use crate::protocol::control::LeaveReason;
use crate::protocol::{Participant, Role, RoomDetail, ServerMessage, UserId};

/// The room as this client sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct RoomView {
    /// The room as the server last described it, kept up by its events; its `chat_log`
    /// stays empty (the lines move to `chat`).
    pub detail: RoomDetail,
    pub me: UserId,
    /// The chat since joining (the snapshot's lines first), oldest first, at most
    /// [`CHAT_KEPT`] lines; deleted lines are gone.
    pub chat: VecDeque<ChatLine>,
}

/// How many chat lines a client keeps for scrolling back.
pub const CHAT_KEPT: usize = 500;

/// What an applied event means for the person at the keyboard, for the event line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    InvitedYou {
        by: String,
    },
    YouSpeak,
    MovedYouToAudience {
        by: String,
    },
    MutedYou {
        by: String,
    },
    MadeYouModerator {
        by: String,
    },
    YouAreHost,
    HandRaised {
        name: String,
    },
    Joined {
        name: String,
    },
    Left {
        name: String,
        reason: LeaveReason,
    },
    Declined {
        name: String,
    },
    Recording {
        name: String,
        recording: bool,
    },
    /// A moderator silenced my chat, or let me write again.
    ChatSilenced {
        by: String,
        silenced: bool,
    },
    ChatPolicy {
        by: String,
        who: ChatPolicy,
    },
    /// A moderator pinned something (or took the pin down).
    Pinned {
        by: String,
        pinned: bool,
    },
    /// Someone kept a clip of what they heard.
    Clipped {
        name: String,
        seconds: u32,
    },
}

impl RoomView {
    pub fn new(mut detail: RoomDetail, me: UserId) -> Self {
        let chat = std::mem::take(&mut detail.life.chat_log).into();
        Self { detail, me, chat }
    }

    pub fn participant(&self, id: UserId) -> Option<&Participant> {
        self.detail.participants.iter().find(|p| p.id == id)
    }

    fn participant_mut(&mut self, id: UserId) -> Option<&mut Participant> {
        self.detail.participants.iter_mut().find(|p| p.id == id)
    }

    fn name(&self, id: UserId) -> String {
        self.participant(id)
            .map(|p| p.name.clone())
            .unwrap_or_else(|| format!("user {id}"))
    }

    /// Why I cannot write in the chat now, if I cannot.
    pub fn chat_closed(&self) -> Option<&'static str> {
        let me = self.myself();
        if self.detail.summary.private {
            Some("chat is off in private rooms (not end-to-end encrypted yet)")
        } else if me.is_some_and(|p| p.chat_silenced) {
            Some("a moderator silenced your chat in this room")
        } else {
            match self.detail.life.chat {
                ChatPolicy::Everyone => None,
                ChatPolicy::Stage if me.is_some_and(|p| p.role.on_stage()) => None,
                ChatPolicy::Stage => Some("only the stage may chat in this room"),
                ChatPolicy::Nobody => Some("the chat is closed in this room"),
            }
        }
    }

    /// The person at the keyboard.
    pub fn myself(&self) -> Option<&Participant> {
        self.participant(self.me)
    }

    pub fn my_role(&self) -> Role {
        self.myself().map_or(Role::Listener, |p| p.role)
    }

    /// On stage and unmuted: the microphone is live.
    pub fn mic_live(&self) -> bool {
        self.myself().is_some_and(|p| p.role.on_stage() && !p.muted)
    }

    /// The stage (host first, then moderators, then speakers, each in joining order).
    pub fn stage(&self) -> Vec<&Participant> {
        let mut stage: Vec<&Participant> = self
            .detail
            .participants
            .iter()
            .filter(|p| p.role.on_stage())
            .collect();
        stage.sort_by_key(|p| match p.role {
            Role::Host => 0,
            Role::Moderator => 1,
            _ => 2,
        });
        stage
    }

    /// The audience: raised hands first in the order raised, then everyone else.
    pub fn audience(&self) -> Vec<&Participant> {
        let mut hands: Vec<&Participant> = self
            .detail
            .hands
            .iter()
            .filter_map(|id| self.participant(*id))
            .filter(|p| !p.role.on_stage())
            .collect();
        hands.extend(
            self.detail
                .participants
                .iter()
                .filter(|p| !p.role.on_stage() && p.hand_raised_at_ms.is_none()),
        );
        hands
    }

    /// Everyone in the order the room screen lists them: stage, then audience.
    pub fn listed(&self) -> Vec<&Participant> {
        let mut all = self.stage();
        all.extend(self.audience());
        all
    }

    /// Applies one server event; returns what it means for the user, if anything.
    pub fn apply(&mut self, message: &ServerMessage) -> Option<Notice> {
        let me = self.me;
        match message {
            ServerMessage::RoomSnapshot { room, you, .. } => {
                // A later snapshot of the same room (a reconnect, becoming a moderator)
                // keeps the scrollback older than its own lines.
                let same_room = room.summary.id == self.detail.summary.id;
                let old = std::mem::take(&mut self.chat);
                *self = Self::new(room.clone(), *you);
                if same_room {
                    let first = self.chat.front().map(|l| l.id);
                    let mut chat: VecDeque<ChatLine> = old
                        .into_iter()
                        .filter(|l| first.is_none_or(|first| l.id < first))
                        .collect();
                    chat.append(&mut self.chat);
                    let extra = chat.len().saturating_sub(CHAT_KEPT);
                    chat.drain(..extra);
                    self.chat = chat;
                }
                None
            }
            ServerMessage::ParticipantJoined { participant } => {
                let was_here = self.participant(participant.id).is_some();
                self.detail.participants.retain(|p| p.id != participant.id);
                self.detail.participants.push(participant.clone());
                // Someone already here (joining again from another device) keeps their
                // place among the hands.
                let kept_hand = was_here
                    && participant.hand_raised_at_ms.is_some()
                    && self.detail.hands.contains(&participant.id);
                // Someone newly listed in a big room may have had a hand up for a while:
                // it takes its place among the hands by when it went up.
                if !kept_hand {
                    self.detail.hands.retain(|id| *id != participant.id);
                }
                if let Some(raised) = participant.hand_raised_at_ms.filter(|_| !kept_hand) {
                    let at = self
                        .detail
                        .hands
                        .iter()
                        .position(|id| {
                            self.detail
                                .participants
                                .iter()
                                .find(|p| p.id == *id)
                                .and_then(|p| p.hand_raised_at_ms)
                                .is_some_and(|other| other > raised)
                        })
                        .unwrap_or(self.detail.hands.len());
                    self.detail.hands.insert(at, participant.id);
                }
                (participant.id != me).then(|| Notice::Joined {
                    name: participant.name.clone(),
                })
            }
            ServerMessage::ParticipantLeft { user_id, reason } => {
                let name = self.name(*user_id);
                self.detail.participants.retain(|p| p.id != *user_id);
                self.detail.hands.retain(|id| id != user_id);
                Some(Notice::Left {
                    name,
                    reason: *reason,
                })
            }
            ServerMessage::RoleChanged { user_id, role, by } => {
                let by_name = by.map(|id| self.name(id)).unwrap_or_default();
                let p = self.participant_mut(*user_id)?;
                let was = p.role;
                p.role = *role;
                if role.on_stage() {
                    p.invited = false;
                    p.hand_raised_at_ms = None;
                } else {
                    p.speaking = false;
                }
                if role.on_stage() {
                    self.detail.hands.retain(|id| id != user_id);
                }
                if *user_id != me {
                    return None;
                }
                match role {
                    Role::Host => Some(Notice::YouAreHost),
                    Role::Moderator if by.is_some() => {
                        Some(Notice::MadeYouModerator { by: by_name })
                    }
                    Role::Speaker if !was.on_stage() => Some(Notice::YouSpeak),
                    Role::Listener if by.is_some() => {
                        Some(Notice::MovedYouToAudience { by: by_name })
                    }
                    _ => None,
                }
            }
            ServerMessage::MuteChanged { user_id, muted, by } => {
                let by_name = by.map(|id| self.name(id));
                let p = self.participant_mut(*user_id)?;
                p.muted = *muted;
                if *muted {
                    p.speaking = false;
                }
                match (by_name, *user_id == me && *muted, p.role.on_stage()) {
                    (Some(by), true, true) => Some(Notice::MutedYou { by }),
                    _ => None,
                }
            }
            ServerMessage::KeyHeld { user_id, epoch } => {
                let p = self.participant_mut(*user_id)?;
                p.key_epoch = Some(p.key_epoch.map_or(*epoch, |held| held.max(*epoch)));
                None
            }
            ServerMessage::HandRaised {
                user_id,
                raised_at_ms,
            } => {
                let p = self.participant_mut(*user_id)?;
                p.hand_raised_at_ms = Some(*raised_at_ms);
                let name = p.name.clone();
                if !self.detail.hands.contains(user_id) {
                    self.detail.hands.push(*user_id);
                }
                (*user_id != me).then_some(Notice::HandRaised { name })
            }
            ServerMessage::HandLowered { user_id, .. } => {
                if let Some(p) = self.participant_mut(*user_id) {
                    p.hand_raised_at_ms = None;
                }
                self.detail.hands.retain(|id| id != user_id);
                None
            }
            ServerMessage::Invited { user_id, by } => {
                let by = self.name(*by);
                self.participant_mut(*user_id)?.invited = true;
                (*user_id == me).then_some(Notice::InvitedYou { by })
            }
            ServerMessage::InviteDeclined { user_id } => {
                let p = self.participant_mut(*user_id)?;
                p.invited = false;
                let name = p.name.clone();
                (*user_id != me).then_some(Notice::Declined { name })
            }
            ServerMessage::Speaking { user_id, speaking } => {
                self.participant_mut(*user_id)?.speaking = *speaking;
                None
            }
            ServerMessage::RecordingChanged { user_id, recording } => {
                let p = self.participant_mut(*user_id)?;
                p.recording = *recording;
                let name = p.name.clone();
                Some(Notice::Recording {
                    name,
                    recording: *recording,
                })
            }
            ServerMessage::AudienceChanged { unlisted } => {
                self.detail.unlisted = *unlisted;
                None
            }
            ServerMessage::Chat { lines } => {
                self.chat.extend(lines.iter().cloned());
                let extra = self.chat.len().saturating_sub(CHAT_KEPT);
                self.chat.drain(..extra);
                None
            }
            ServerMessage::ChatDeleted { message_id, .. } => {
                self.chat.retain(|l| l.id != *message_id);
                None
            }
            ServerMessage::ChatSilenced {
                user_id,
                silenced,
                by,
            } => {
                let by = self.name(*by);
                self.participant_mut(*user_id)?.chat_silenced = *silenced;
                (*user_id == me).then_some(Notice::ChatSilenced {
                    by,
                    silenced: *silenced,
                })
            }
            ServerMessage::ChatPolicy { who, by } => {
                self.detail.life.chat = *who;
                Some(Notice::ChatPolicy {
                    by: self.name(*by),
                    who: *who,
                })
            }
            ServerMessage::Pinned { text, by } => {
                self.detail.life.pinned.clone_from(text);
                Some(Notice::Pinned {
                    by: self.name(*by),
                    pinned: text.is_some(),
                })
            }
            ServerMessage::Clipped {
                user_id,
                name,
                seconds,
            } => (*user_id != me).then(|| Notice::Clipped {
                // My own was said with where it was kept.
                name: name.clone(),
                seconds: *seconds,
            }),
            ServerMessage::Reactions { .. }
            | ServerMessage::RoomEnded { .. }
            | ServerMessage::Ok { .. }
            | ServerMessage::Error { .. }
            | ServerMessage::Pong { .. }
            | ServerMessage::Key { .. }
            | ServerMessage::Goodbye { .. } => None,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;
    use crate::protocol::chat::Reaction;
    use crate::protocol::control::RoomEndReason;
    use crate::protocol::{ClientCommand, ErrorCode, RoomSummary, User};
    use crate::server::room::{Addressed, AudioVerdict, Delivery, Room, RoomLimits};

    const HOST: UserId = 1;
    const ADA: UserId = 2;
    const BOB: UserId = 3;
    const CY: UserId = 4;
    const DEE: UserId = 5;
    const NAMES: [&str; 7] = ["", "Host", "Ada", "Bob", "Cy", "Dee", "Eve"];

    fn person(id: UserId, role: Role) -> Participant {
        Participant {
            id,
            handle: NAMES[id as usize].to_lowercase(),
            name: NAMES[id as usize].into(),
            role,
            muted: true,
            hand_raised_at_ms: None,
            invited: false,
            speaking: false,
            recording: false,
            device_key: None,
            key_epoch: None,
            chat_silenced: false,
        }
    }

    fn view(me: UserId, participants: Vec<Participant>) -> RoomView {
        let summary = RoomSummary {
            followed: false,
            id: "r1".into(),
            title: "Rust".into(),
            host: None,
            speakers: Vec::new(),
            listener_count: 0,
            created_at_ms: 0,
            recording: false,
            private: false,
            replay: false,
        };
        let detail = RoomDetail {
            summary,
            participants,
            hands: Vec::new(),
            stage_limit: 20,
            unlisted: 0,
            share_secret: None,
            life: Default::default(),
        };
        RoomView::new(detail, me)
    }

    /// Host on stage; Ada, Bob and Cy in the audience; seen by `me`.
    fn hallway_room(me: UserId) -> RoomView {
        view(
            me,
            vec![
                person(HOST, Role::Host),
                person(ADA, Role::Listener),
                person(BOB, Role::Listener),
                person(CY, Role::Listener),
            ],
        )
    }

    fn ids(people: &[&Participant]) -> Vec<UserId> {
        people.iter().map(|p| p.id).collect()
    }

    fn raised(user_id: UserId, at: u64) -> ServerMessage {
        ServerMessage::HandRaised {
            user_id,
            raised_at_ms: at,
        }
    }

    fn role(user_id: UserId, role: Role, by: Option<UserId>) -> ServerMessage {
        ServerMessage::RoleChanged { user_id, role, by }
    }

    fn mute(user_id: UserId, muted: bool, by: Option<UserId>) -> ServerMessage {
        ServerMessage::MuteChanged { user_id, muted, by }
    }

    #[test]
    fn the_stage_lists_host_then_moderators_then_speakers_in_joining_order() {
        let v = view(
            ADA,
            vec![
                person(BOB, Role::Speaker),
                person(CY, Role::Moderator),
                person(ADA, Role::Listener),
                person(DEE, Role::Speaker),
                person(HOST, Role::Host),
            ],
        );
        assert_eq!(ids(&v.stage()), vec![HOST, CY, BOB, DEE]);
        assert_eq!(ids(&v.audience()), vec![ADA]);
        assert_eq!(ids(&v.listed()), vec![HOST, CY, BOB, DEE, ADA]);
    }

    #[test]
    fn raised_hands_lead_the_audience_in_the_order_raised_and_leave_it_when_lowered() {
        let mut v = hallway_room(ADA);
        assert_eq!(
            v.apply(&raised(CY, 100)),
            Some(Notice::HandRaised { name: "Cy".into() })
        );
        assert_eq!(
            v.apply(&raised(ADA, 200)),
            None,
            "no notice for my own hand"
        );
        assert_eq!(v.detail.hands, vec![CY, ADA]);
        assert_eq!(ids(&v.audience()), vec![CY, ADA, BOB]);
        assert_eq!(v.myself().unwrap().hand_raised_at_ms, Some(200));
        // A repeated announcement does not list the hand twice.
        v.apply(&raised(CY, 100));
        assert_eq!(v.detail.hands, vec![CY, ADA]);
        let lowered = ServerMessage::HandLowered {
            user_id: CY,
            by: Some(HOST),
        };
        assert_eq!(v.apply(&lowered), None);
        assert_eq!(v.detail.hands, vec![ADA]);
        assert_eq!(v.participant(CY).unwrap().hand_raised_at_ms, None);
        assert_eq!(ids(&v.audience()), vec![ADA, BOB, CY]);
    }

    #[test]
    fn joins_and_departures_keep_the_list_and_say_who() {
        let mut v = hallway_room(ADA);
        let dee = person(DEE, Role::Listener);
        let joined = ServerMessage::ParticipantJoined {
            participant: dee.clone(),
        };
        assert_eq!(
            v.apply(&joined),
            Some(Notice::Joined { name: "Dee".into() })
        );
        // A rejoin announced again replaces the entry rather than doubling it.
        v.apply(&joined);
        assert_eq!(
            v.detail.participants.iter().filter(|p| p.id == DEE).count(),
            1
        );
        v.apply(&raised(BOB, 5));
        for (who, reason) in [
            (BOB, LeaveReason::Left),
            (CY, LeaveReason::Disconnected),
            (DEE, LeaveReason::Removed),
        ] {
            let left = ServerMessage::ParticipantLeft {
                user_id: who,
                reason,
            };
            let name = NAMES[who as usize].to_string();
            assert_eq!(v.apply(&left), Some(Notice::Left { name, reason }));
            assert!(v.participant(who).is_none());
        }
        assert!(v.detail.hands.is_empty(), "a departed hand is gone");
        assert_eq!(ids(&v.listed()), vec![HOST, ADA]);
        let me = ServerMessage::ParticipantJoined {
            participant: person(ADA, Role::Listener),
        };
        assert_eq!(v.apply(&me), None, "no notice about myself joining");
    }

    #[test]
    fn an_invited_listener_who_accepts_is_on_stage_muted_without_hand_or_invitation() {
        let mut v = hallway_room(ADA);
        v.apply(&raised(ADA, 10));
        let invited = ServerMessage::Invited {
            user_id: ADA,
            by: HOST,
        };
        assert_eq!(
            v.apply(&invited),
            Some(Notice::InvitedYou { by: "Host".into() })
        );
        assert!(v.myself().unwrap().invited);
        v.apply(&ServerMessage::HandLowered {
            user_id: ADA,
            by: None,
        });
        assert_eq!(
            v.apply(&role(ADA, Role::Speaker, None)),
            Some(Notice::YouSpeak)
        );
        let ada = v.myself().unwrap();
        assert_eq!(
            (ada.role, ada.muted, ada.invited, ada.hand_raised_at_ms),
            (Role::Speaker, true, false, None)
        );
        assert!(!v.mic_live(), "a new speaker arrives muted");
        assert_eq!(v.apply(&mute(ADA, false, None)), None);
        assert!(v.mic_live());
        assert_eq!(ids(&v.stage()), vec![HOST, ADA]);
    }

    #[test]
    fn others_see_invitations_and_declines() {
        let mut v = hallway_room(HOST);
        let invited = ServerMessage::Invited {
            user_id: BOB,
            by: HOST,
        };
        assert_eq!(v.apply(&invited), None);
        assert!(v.participant(BOB).unwrap().invited);
        let declined = ServerMessage::InviteDeclined { user_id: BOB };
        assert_eq!(
            v.apply(&declined),
            Some(Notice::Declined { name: "Bob".into() })
        );
        assert!(!v.participant(BOB).unwrap().invited);
        let mut bob = hallway_room(BOB);
        bob.apply(&invited);
        assert_eq!(bob.apply(&declined), None, "no notice for my own decline");
    }

    #[test]
    fn promotion_hand_over_and_demotion_tell_the_person_concerned() {
        let mut v = hallway_room(ADA);
        v.apply(&raised(ADA, 1));
        let promoted = role(ADA, Role::Moderator, Some(HOST));
        assert_eq!(
            v.apply(&promoted),
            Some(Notice::MadeYouModerator { by: "Host".into() })
        );
        assert!(v.detail.hands.is_empty(), "the stage has no hands up");
        assert!(v.my_role().is_moderator());
        let left = ServerMessage::ParticipantLeft {
            user_id: HOST,
            reason: LeaveReason::Left,
        };
        v.apply(&left);
        assert_eq!(
            v.apply(&role(ADA, Role::Host, None)),
            Some(Notice::YouAreHost)
        );
        assert_eq!(v.my_role(), Role::Host);
        // Other people's role changes are shown in the list, not on the event line.
        assert_eq!(v.apply(&role(BOB, Role::Moderator, Some(ADA))), None);
        assert_eq!(v.participant(BOB).unwrap().role, Role::Moderator);

        let mut bob = hallway_room(BOB);
        bob.apply(&role(BOB, Role::Speaker, None));
        bob.apply(&mute(BOB, false, None));
        bob.apply(&ServerMessage::Speaking {
            user_id: BOB,
            speaking: true,
        });
        let moved = role(BOB, Role::Listener, Some(HOST));
        assert_eq!(
            bob.apply(&moved),
            Some(Notice::MovedYouToAudience { by: "Host".into() })
        );
        assert!(
            !bob.myself().unwrap().speaking,
            "listeners are not speaking"
        );
        assert!(!bob.mic_live());
        // The server follows with a mute; moved, not muted, is the news.
        assert_eq!(bob.apply(&mute(BOB, true, Some(HOST))), None);
        // Leaving the stage yourself needs no notice.
        bob.apply(&role(BOB, Role::Speaker, None));
        assert_eq!(bob.apply(&role(BOB, Role::Listener, None)), None);
    }

    #[test]
    fn a_moderator_muting_me_says_so_and_stops_my_speaking_light() {
        let mut v = hallway_room(ADA);
        v.apply(&role(ADA, Role::Speaker, None));
        assert_eq!(v.apply(&mute(ADA, false, None)), None);
        v.apply(&ServerMessage::Speaking {
            user_id: ADA,
            speaking: true,
        });
        assert!(v.myself().unwrap().speaking);
        assert_eq!(
            v.apply(&mute(ADA, true, Some(HOST))),
            Some(Notice::MutedYou { by: "Host".into() })
        );
        assert!(!v.myself().unwrap().speaking && !v.mic_live());
        v.apply(&mute(ADA, false, None));
        assert_eq!(
            v.apply(&mute(ADA, true, None)),
            None,
            "muting myself is no news"
        );
        assert_eq!(
            v.apply(&mute(HOST, true, Some(HOST))),
            None,
            "someone else's mute is no news"
        );
    }

    #[test]
    fn speaking_lights_follow_the_server() {
        let mut v = hallway_room(ADA);
        let on = ServerMessage::Speaking {
            user_id: HOST,
            speaking: true,
        };
        assert_eq!(v.apply(&on), None);
        assert!(v.participant(HOST).unwrap().speaking);
        v.apply(&ServerMessage::Speaking {
            user_id: HOST,
            speaking: false,
        });
        assert!(!v.participant(HOST).unwrap().speaking);
    }

    #[test]
    fn events_about_strangers_and_non_room_messages_change_nothing() {
        let mut v = hallway_room(ADA);
        let before = v.clone();
        for message in [
            raised(99, 1),
            role(99, Role::Speaker, None),
            mute(99, false, None),
            ServerMessage::Invited {
                user_id: 99,
                by: HOST,
            },
            ServerMessage::InviteDeclined { user_id: 99 },
            ServerMessage::Speaking {
                user_id: 99,
                speaking: true,
            },
            ServerMessage::HandLowered {
                user_id: 99,
                by: None,
            },
            ServerMessage::Ok { id: 1.into() },
            ServerMessage::Pong { nonce: 3 },
            ServerMessage::error(None, ErrorCode::Forbidden, "no"),
            ServerMessage::Goodbye {
                code: ErrorCode::Removed,
                message: "bye".into(),
            },
            ServerMessage::RoomEnded {
                reason: RoomEndReason::EndedByModerator,
                by: Some(HOST),
            },
        ] {
            assert_eq!(v.apply(&message), None, "{message:?}");
        }
        assert_eq!(v, before);
    }

    #[test]
    fn a_snapshot_replaces_everything() {
        let mut v = hallway_room(ADA);
        v.apply(&raised(ADA, 1));
        let fresh = view(
            BOB,
            vec![person(HOST, Role::Host), person(BOB, Role::Speaker)],
        );
        let snapshot = ServerMessage::RoomSnapshot {
            protocol_version: 1,
            you: BOB,
            room: fresh.detail.clone(),
        };
        assert_eq!(v.apply(&snapshot), None);
        assert_eq!(v, fresh);
    }

    // ---- The view against the real room core ----

    fn user(id: UserId) -> User {
        User {
            id,
            handle: NAMES[id as usize].to_lowercase(),
            name: NAMES[id as usize].into(),
        }
    }

    /// Everyone's copy of the room, fed exactly what the server addresses to them.
    #[derive(Default)]
    struct Audience {
        views: HashMap<UserId, RoomView>,
    }

    impl Audience {
        fn receive(&mut self, to: UserId, message: &ServerMessage) {
            if let ServerMessage::RoomSnapshot { room, you, .. } = message {
                self.views.insert(to, RoomView::new(room.clone(), *you));
                return;
            }
            if let Some(view) = self.views.get_mut(&to) {
                view.apply(message);
            }
            // Whoever leaves stops hearing the room; so does everyone when it ends.
            match message {
                ServerMessage::ParticipantLeft { user_id, .. } if *user_id == to => {
                    self.views.remove(&to);
                }
                ServerMessage::RoomEnded { .. } => {
                    self.views.remove(&to);
                }
                _ => {}
            }
        }

        /// Routes as the room actor does: by the recipients the room works out.
        fn deliver(&mut self, out: &[Delivery], room: &Room) {
            for addressed in room.address(out.to_vec()) {
                match addressed {
                    Addressed::Message { to, message } => {
                        let receivers: Vec<UserId> = self
                            .views
                            .keys()
                            .copied()
                            .filter(|&id| to.includes(id))
                            .collect();
                        for id in receivers {
                            self.receive(id, &message);
                        }
                    }
                    Addressed::Disconnect { user, .. } => {
                        self.views.remove(&user);
                    }
                }
            }
        }

        /// Every copy holds what the server shows its owner (the whole room to the host
        /// and moderators, the listed part and themselves to others). Legitimate
        /// differences: the order of `participants` (the view appends joiners and keeps
        /// places on role changes; the screen orders with `stage()`/`audience()`), the
        /// `summary`, which is the directory's view and is not kept up by events, and the
        /// unlisted count while an update to it is due.
        fn assert_in_sync(&self, room: &Room, step: &str) {
            for (me, view) in &self.views {
                let detail = room.view_for(*me);
                let mut expected = detail.participants.clone();
                expected.sort_by_key(|p| p.id);
                let mut seen = view.detail.participants.clone();
                seen.sort_by_key(|p| p.id);
                assert_eq!(seen, expected, "participants seen by {me} after {step}");
                assert_eq!(
                    view.detail.hands, detail.hands,
                    "hands seen by {me} after {step}"
                );
                assert_eq!(view.detail.stage_limit, detail.stage_limit);
                assert_eq!(view.detail.life.chat, detail.life.chat, "chat policy");
                assert_eq!(view.detail.life.pinned, detail.life.pinned, "pin");
                assert!(view.detail.life.chat_log.is_empty());
                // The snapshot's lines are the newest of what the client was sent, less
                // deletions: the client's chat ends with them.
                if room.life_deadline_ms().is_none() {
                    let log = &detail.life.chat_log;
                    let tail: Vec<ChatLine> = view
                        .chat
                        .iter()
                        .skip(view.chat.len().saturating_sub(log.len()))
                        .cloned()
                        .collect();
                    assert_eq!(&tail, log, "chat seen by {me} after {step}");
                }
                assert_eq!(view.detail.summary.id, detail.summary.id);
                assert_eq!(view.detail.summary.title, detail.summary.title);
                assert_eq!(view.me, *me);
                // The screen's list holds everyone exactly once.
                let mut listed = ids(&view.listed());
                listed.sort_unstable();
                let everyone: Vec<UserId> = expected.iter().map(|p| p.id).collect();
                assert_eq!(listed, everyone, "listed by {me} after {step}");
                if room.audience_deadline_ms().is_none() {
                    assert_eq!(
                        view.detail.unlisted, detail.unlisted,
                        "unlisted count seen by {me} after {step}"
                    );
                }
            }
        }
    }

    /// A room and everyone's copy of it.
    struct World {
        room: Room,
        audience: Audience,
        now_ms: u64,
    }

    impl World {
        fn new(limits: RoomLimits) -> Self {
            Self {
                room: Room::new("r1".into(), "Rust".into(), HOST, 0, limits),
                audience: Audience::default(),
                now_ms: 0,
            }
        }

        fn step(&mut self, out: Vec<Delivery>, what: &str) {
            self.audience.deliver(&out, &self.room);
            self.audience.assert_in_sync(&self.room, what);
        }

        fn join(&mut self, id: UserId) {
            self.now_ms += 10;
            let out = self.room.join(&user(id), self.now_ms).unwrap();
            self.step(out, &format!("{id} joins"));
        }

        fn command(&mut self, id: UserId, command: ClientCommand) {
            self.now_ms += 10;
            let what = format!("{id}: {command:?}");
            let out = self.room.command(id, &command, self.now_ms).expect(&what);
            self.step(out, &what);
        }

        fn depart(&mut self, id: UserId, reason: LeaveReason) {
            self.now_ms += 10;
            let out = self.room.depart(id, reason, self.now_ms);
            self.step(out, &format!("{id} departs ({reason:?})"));
        }

        fn speak(&mut self, id: UserId) {
            self.now_ms += 10;
            let AudioVerdict::Forward(out) = self.room.audio(id, 20, true, self.now_ms) else {
                panic!("{id} may not speak");
            };
            self.step(out, &format!("{id} speaks"));
        }

        fn tick(&mut self, ms: u64) {
            self.now_ms += ms;
            let out = self.room.tick(self.now_ms);
            self.step(out, &format!("tick {}", self.now_ms));
        }
    }

    #[test]
    fn replaying_the_servers_events_gives_every_client_the_servers_room() {
        for listed_audience in [50, 1] {
            replay_a_whole_room(RoomLimits {
                listed_audience,
                ..RoomLimits::default()
            });
        }
    }

    /// A room's life from first join to its end, with every client checked at each step.
    fn replay_a_whole_room(limits: RoomLimits) {
        use ClientCommand::*;
        let mut w = World::new(limits);
        for id in [HOST, ADA, BOB, CY] {
            w.join(id);
        }
        w.command(ADA, RaiseHand);
        w.command(BOB, RaiseHand);
        w.command(CY, RaiseHand);
        w.command(HOST, LowerHand { user_id: Some(BOB) });
        w.command(HOST, InviteToSpeak { user_id: ADA });
        w.command(ADA, AcceptInvite);
        w.command(ADA, Unmute);
        w.speak(ADA);
        w.command(HOST, InviteToSpeak { user_id: BOB });
        w.command(BOB, DeclineInvite);
        w.command(HOST, MakeModerator { user_id: CY });
        w.command(
            ADA,
            Chat {
                text: "hello".into(),
            },
        );
        w.command(
            BOB,
            Chat {
                text: "hi\u{202E} all".into(),
            },
        );
        w.command(
            CY,
            Pin {
                text: "https://example.org/agenda".into(),
            },
        );
        w.command(
            BOB,
            React {
                reaction: Reaction::Clap,
            },
        );
        w.command(
            ADA,
            React {
                reaction: Reaction::Heart,
            },
        );
        w.tick(500);
        w.command(CY, DeleteChat { message_id: 2 });
        w.command(
            HOST,
            SilenceChat {
                user_id: BOB,
                silenced: true,
            },
        );
        w.command(
            HOST,
            SetChat {
                who: ChatPolicy::Stage,
            },
        );
        w.command(
            ADA,
            Chat {
                text: "from the stage".into(),
            },
        );
        w.tick(1_000);
        w.command(HOST, MuteSpeaker { user_id: ADA });
        w.command(ADA, Unmute);
        w.speak(ADA);
        w.command(HOST, Unmute);
        w.speak(HOST);
        w.tick(1_000);
        w.speak(ADA);
        w.command(CY, MoveToAudience { user_id: ADA });
        w.command(ADA, RaiseHand);
        w.command(ADA, LowerHand { user_id: None });
        w.join(DEE);
        w.command(DEE, RaiseHand);
        w.command(CY, Remove { user_id: DEE });
        w.depart(BOB, LeaveReason::Disconnected);
        w.join(BOB);
        w.command(HOST, InviteToSpeak { user_id: BOB });
        w.command(BOB, AcceptInvite);
        w.command(BOB, Unmute);
        w.command(BOB, LeaveStage);
        w.command(HOST, Leave);
        assert_eq!(w.room.detail().participants[0].id, CY, "Cy is the host now");
        w.command(CY, MakeModerator { user_id: ADA });
        w.depart(CY, LeaveReason::Disconnected);
        w.join(CY);
        w.command(CY, EndRoom);
        assert!(
            w.audience.views.is_empty(),
            "everyone is out when the room ends"
        );
    }

    /// The server clears an invitation without telling anyone when the stage fills up
    /// before the invitee accepts, so every client keeps showing it. Kept as a repro for
    /// the server (`AcceptInvite` in server/room.rs); unignore once that sends an event.
    #[test]
    fn a_refused_accept_on_a_full_stage_is_seen_by_everyone() {
        use ClientCommand::*;
        let mut w = World::new(RoomLimits {
            stage_limit: 2,
            max_participants: 10,
            listed_audience: 50,
        });
        for id in [HOST, ADA, BOB] {
            w.join(id);
        }
        w.command(HOST, InviteToSpeak { user_id: ADA });
        w.command(HOST, InviteToSpeak { user_id: BOB });
        w.command(ADA, AcceptInvite);
        w.now_ms += 10;
        let refused = w.room.command(BOB, &AcceptInvite, w.now_ms);
        assert_eq!(refused.unwrap_err().code, ErrorCode::StageFull);
        w.audience.assert_in_sync(&w.room, "a refused accept");
    }

    #[derive(Debug, Clone)]
    enum Op {
        Command {
            by: UserId,
            kind: u8,
            target: UserId,
        },
        Speak(UserId),
        Tick(u64),
        Join(UserId),
        /// Joins (or joins again) from a device: in a private room a new device's key is
        /// listed and the member announced anew.
        JoinFrom(UserId, u8),
        Depart(UserId, LeaveReason),
    }

    fn op() -> impl Strategy<Value = Op> {
        let who = 1..=6u32;
        prop_oneof![
            6 => (who.clone(), 0..15u8, who.clone()).prop_map(|(by, kind, target)| Op::Command { by, kind, target }),
            2 => who.clone().prop_map(Op::Speak),
            1 => (0..2_000u64).prop_map(Op::Tick),
            2 => who.clone().prop_map(Op::Join),
            2 => (who.clone(), 1..4u8).prop_map(|(id, device)| Op::JoinFrom(id, device)),
            1 => (who, prop_oneof![Just(LeaveReason::Left), Just(LeaveReason::Disconnected)])
                .prop_map(|(id, reason)| Op::Depart(id, reason)),
        ]
    }

    fn command(kind: u8, target: UserId) -> ClientCommand {
        use ClientCommand::*;
        match kind {
            0 => RaiseHand,
            1 => LowerHand { user_id: None },
            2 => LowerHand {
                user_id: Some(target),
            },
            3 => Mute,
            4 => Unmute,
            5 => AcceptInvite,
            6 => DeclineInvite,
            7 => LeaveStage,
            8 => InviteToSpeak { user_id: target },
            9 => MoveToAudience { user_id: target },
            10 => MuteSpeaker { user_id: target },
            11 => Remove { user_id: target },
            12 => MakeModerator { user_id: target },
            13 => Leave,
            _ => InviteToSpeak { user_id: target },
        }
    }

    /// Two hands raised in the same millisecond, then the first of them joins again from
    /// another device in a private room: every client keeps the hands in the server's order.
    #[test]
    fn a_member_joining_again_from_another_device_keeps_their_hand_in_line() {
        let mut room = Room::new("r1".into(), "t".into(), HOST, 0, RoomLimits::default());
        room.make_private(None);
        let device = |n: u8| Some(crate::identity::b64(&[n; 32]));
        room.join_with_device(&user(HOST), device(1), 0).unwrap();
        room.join_with_device(&user(2), device(2), 0).unwrap();
        room.join_with_device(&user(3), device(3), 0).unwrap();
        let mut host = RoomView::new(room.view_for(HOST), HOST);
        let mut out = room.command(2, &ClientCommand::RaiseHand, 5).unwrap();
        out.extend(room.command(3, &ClientCommand::RaiseHand, 5).unwrap());
        out.extend(room.join_with_device(&user(2), device(9), 6).unwrap());
        for addressed in room.address(out) {
            if let Addressed::Message { to, message } = addressed
                && to.includes(HOST)
            {
                host.apply(&message);
            }
        }
        assert_eq!(host.detail.hands, vec![2, 3]);
        assert_eq!(host.detail, room.view_for(HOST));
    }

    proptest! {
        // The default stage limit is never reached by six people, which keeps clear of the
        // silent `invited` reset above.
        #[test]
        fn any_sequence_of_room_events_keeps_every_client_in_sync(
            ops in prop::collection::vec(op(), 1..80),
            // Front rows of one or two listeners: most of the audience is unlisted.
            listed_audience in prop_oneof![Just(1usize), Just(2), Just(50)],
            private in any::<bool>(),
        ) {
            let mut w = World::new(RoomLimits { listed_audience, ..RoomLimits::default() });
            if private {
                w.room.make_private(None);
            }
            w.join(HOST);
            for (n, op) in ops.into_iter().enumerate() {
                if w.room.is_ended() {
                    break;
                }
                w.now_ms += 10;
                let now = w.now_ms;
                let out = match &op {
                    Op::Command { by, kind, target } => w.room.command(*by, &command(*kind, *target), now).unwrap_or_default(),
                    Op::Speak(id) => match w.room.audio(*id, 20, true, now) {
                        AudioVerdict::Forward(out) => out,
                        AudioVerdict::Drop { .. } => Vec::new(),
                    },
                    Op::Tick(ms) => {
                        w.now_ms += ms;
                        w.room.tick(w.now_ms)
                    }
                    Op::Join(id) => w.room.join(&user(*id), now).unwrap_or_default(),
                    Op::JoinFrom(id, device) => {
                        let key = crate::identity::b64(&[*device; 32]);
                        w.room.join_with_device(&user(*id), Some(key), now).unwrap_or_default()
                    }
                    Op::Depart(id, reason) => w.room.depart(*id, *reason, now),
                };
                w.step(out, &format!("step {n}: {op:?}"));
            }
        }
    }
}
