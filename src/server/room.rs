//! The room rules as a pure state machine: roles, the stage, hands, invitations, mutes,
//! removals, host hand-over and the end of a room. It takes events with the time and returns
//! what to tell whom; sockets and timers live in the room actor (`actor.rs`).
//!
//! Invariants kept by every method:
//! - while any moderator is present, exactly one participant is the host;
//! - listeners are muted, have no invitation while on stage, and only listeners have hands up;
//! - the stage (host, moderators, speakers) grows past `stage_limit` only when a moderator
//!   returns within the grace period (so a room is never left without one);
//! - a removed user is never let back in;
//! - a member's own toggles (hand, recording) change what others see at most once every
//!   [`TOGGLE_EVERY_MS`]: faster ones wait and only the net change is announced, so a
//!   toggling flood costs the audience one message a second per member, however fast it is;
//! - no two members' names look alike: `names` maps each member's confusable skeleton
//!   (`protocol::text::skeleton`) to them, so `Ada` cannot join beside Cyrillic `Аda`.

use std::collections::{HashMap, HashSet};

use crate::protocol::control::{
    LeaveReason, MAX_KEY_EPOCH, MAX_KEYS_PER_SHARE, MAX_SEALED_CHARS, RoomEndReason,
};
use crate::protocol::text::skeleton;

use super::room_life::{Life, Who};
use crate::protocol::{
    ClientCommand, ErrorCode, Participant, Role, RoomDetail, RoomSummary, ServerMessage,
    StageMember, User, UserId,
};

/// How long a moderator or speaker whose connection dropped keeps their role for a rejoin,
/// and how long a room with no moderator waits for one to come back before it ends.
pub const REJOIN_GRACE_MS: u64 = 60_000;
/// A speaker counts as speaking while their frames say voice at this level or louder
/// (the wire's -dBov; 50 means -50 dBov).
pub const SPEAKING_LEVEL: u8 = 50;
/// A speaker stops counting as speaking this long after their last loud frame. Long enough to
/// bridge the gaps between words, short enough that indicators follow turn-taking.
pub const SPEAKING_HOLD_MS: u64 = 400;

/// The shortest time between two `audience_changed` messages.
pub const AUDIENCE_EVERY_MS: u64 = 1_000;
/// The shortest time between two visible changes a member makes to their own hand or
/// recording state.
pub const TOGGLE_EVERY_MS: u64 = 1_000;

/// Limits a room enforces.
#[derive(Debug, Clone, Copy)]
pub struct RoomLimits {
    /// Host, moderators and speakers together.
    pub stage_limit: usize,
    /// Everyone in the room.
    pub max_participants: usize,
    /// Listeners everyone sees: the audience's front rows. Members other than the host and
    /// moderators are told only of these, the stage, anyone recording and themselves, so
    /// that a join costs the room O(1) messages, not one to each of thousands, and nobody
    /// is sent (and keeps buffered) a list of thousands of names.
    pub listed_audience: usize,
}

impl Default for RoomLimits {
    fn default() -> Self {
        Self {
            stage_limit: 20,
            max_participants: 5_020,
            listed_audience: 50,
        }
    }
}

/// Who a message goes to.
#[derive(Debug, Clone, PartialEq)]
pub enum Delivery {
    /// Everyone in the room.
    All(ServerMessage),
    /// Everyone but one user.
    AllExcept(UserId, ServerMessage),
    /// One user.
    To(UserId, ServerMessage),
    /// Tell one user why, then close their connection.
    Disconnect(UserId, ErrorCode, String),
    /// Those who see the whole room (host and moderators), and `and` if given, except
    /// `except`: news of someone not everyone is told about.
    Moderators {
        and: Option<UserId>,
        except: Option<UserId>,
        message: ServerMessage,
    },
    /// Those who see part of the room (everyone but host and moderators).
    PartialViews(ServerMessage),
    /// To each member who sees part of the room: how many listeners they do not see
    /// (`unlisted`, less one for those who are themselves unlisted).
    Audience { unlisted: usize },
}

/// Who receives a message, decided by the room's rules ([`Room::address`]): the actor that
/// writes its own members' sockets, an edge that writes another node's members' sockets,
/// and the tests all ask this one question instead of each working it out.
///
/// The lists are sorted and short: the stage, the front rows and one or two others, never
/// the audience, so a message for thousands costs a few dozen ids on the wire.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Recipients {
    Everyone,
    /// Everyone but these.
    AllBut(Vec<UserId>),
    /// Only these.
    Only(Vec<UserId>),
}

impl Recipients {
    fn all_but(mut ids: Vec<UserId>) -> Self {
        ids.sort_unstable();
        ids.dedup();
        Self::AllBut(ids)
    }

    fn only(mut ids: Vec<UserId>) -> Self {
        ids.sort_unstable();
        ids.dedup();
        Self::Only(ids)
    }

    /// Whether `user` receives the message.
    pub fn includes(&self, user: UserId) -> bool {
        match self {
            Self::Everyone => true,
            Self::AllBut(ids) => ids.binary_search(&user).is_err(),
            Self::Only(ids) => ids.binary_search(&user).is_ok(),
        }
    }
}

/// A [`Delivery`] with its recipients worked out.
// Made and used up in one loop, never stored: boxing the message would only add an
// allocation per message.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Addressed {
    Message {
        to: Recipients,
        message: ServerMessage,
    },
    /// Tell one user why, then close their connection.
    Disconnect {
        user: UserId,
        code: ErrorCode,
        message: String,
    },
}

/// A refused command: the code and a message that says what to do.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Refusal {
    pub code: ErrorCode,
    pub message: String,
}

fn refuse<T>(code: ErrorCode, message: impl Into<String>) -> Result<T, Refusal> {
    Err(Refusal {
        code,
        message: message.into(),
    })
}

/// What happens to an audio frame from a participant.
#[derive(Debug, Clone, PartialEq)]
pub enum AudioVerdict {
    /// Forward it to everyone else; the deliveries are speaking-state changes to announce.
    Forward(Vec<Delivery>),
    /// Drop it. `tell` is true the first time since the sender's state last changed, so the
    /// sender hears why once, not fifty times a second.
    Drop { tell: bool, refusal: Refusal },
}

#[derive(Debug, Clone)]
struct Member {
    handle: String,
    name: String,
    role: Role,
    muted: bool,
    /// Order of raise and time; listeners only.
    hand: Option<(u64, u64)>,
    invited: bool,
    /// Unix ms of the last frame at speaking level, while speaking.
    speaking_until_ms: Option<u64>,
    /// Audio was refused and the sender told; reset on any change to their state.
    told_audio_refused: bool,
    /// Order of joining, for stable listing.
    joined_seq: u64,
    /// Order of becoming moderator, for host hand-over.
    moderator_seq: u64,
    /// Announced that they record the room.
    recording: bool,
    /// Everyone is told about them (see [`RoomLimits::listed_audience`]).
    listed: bool,
    /// When they last changed their own hand or recording state visibly.
    toggled_at_ms: Option<u64>,
    /// Their own toggles waiting for [`TOGGLE_EVERY_MS`] to pass: the latest wanted state.
    pending: Pending,
    /// Private rooms: the X25519 key of the device they joined with (base64url).
    device_key: Option<String>,
    /// Private rooms: the newest key epoch their client says it holds.
    key_epoch: Option<u32>,
}

/// The states a member toggles for themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Toggle {
    Hand,
    Recording,
}

impl Toggle {
    /// The toggle `command` from `user` is, and the state it wants; None for anything else
    /// (a moderator lowering someone else's hand acts at once).
    fn of(user: UserId, command: &ClientCommand) -> Option<(Self, bool)> {
        match *command {
            ClientCommand::RaiseHand => Some((Self::Hand, true)),
            ClientCommand::LowerHand { user_id } if user_id.is_none_or(|u| u == user) => {
                Some((Self::Hand, false))
            }
            ClientCommand::StartRecording => Some((Self::Recording, true)),
            ClientCommand::StopRecording => Some((Self::Recording, false)),
            _ => None,
        }
    }
}

/// Whether `command` from `user` toggles their own hand or recording: what the room shows
/// at most once a second, and what a connection may send only a few times a second.
pub fn is_own_toggle(user: UserId, command: &ClientCommand) -> bool {
    Toggle::of(user, command).is_some()
}

/// A member's own toggles not yet applied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Pending {
    hand: Option<bool>,
    recording: Option<bool>,
}

#[derive(Debug, Clone, Copy)]
struct Departed {
    role: Role,
    left_at_ms: u64,
}

/// What a room carried on by another node keeps besides its stage: who was removed (they
/// stay out), and its chat's rules (who may chat, who is silenced, the pin), so a move is
/// no way around a moderator. Kept in the room's directory entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Carried {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub banned: Vec<UserId>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chat_silenced: Vec<UserId>,
    /// Read leniently: a value a newer node knows and this one does not is "everyone".
    #[serde(default, deserialize_with = "lenient_policy")]
    pub chat: crate::protocol::chat::ChatPolicy,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pinned: Option<String>,
}

fn lenient_policy<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<crate::protocol::chat::ChatPolicy, D::Error> {
    let value = <serde_json::Value as serde::Deserialize>::deserialize(deserializer)?;
    Ok(serde_json::from_value(value).unwrap_or_default())
}

/// One room's state.
#[derive(Debug)]
pub struct Room {
    id: String,
    title: String,
    created_at_ms: u64,
    limits: RoomLimits,
    members: HashMap<UserId, Member>,
    /// Each member's name skeleton, to refuse look-alikes.
    names: HashMap<String, UserId>,
    /// When members' waiting toggles are due, earliest first.
    toggles_due: std::collections::BTreeSet<(u64, UserId)>,
    banned: HashSet<UserId>,
    /// Roles of people whose connection dropped, for a rejoin within [`REJOIN_GRACE_MS`].
    departed: HashMap<UserId, Departed>,
    seq: u64,
    ended: bool,
    /// Someone became or stopped being unlisted since partial views were last told; when
    /// they were told, and when to tell them next.
    audience_changed: bool,
    audience_told_at_ms: Option<u64>,
    audience_due_ms: Option<u64>,
    /// Audio end-to-end encrypted; keys handed out by moderators' clients (#13).
    private: bool,
    /// The secret of the room's share link, for its moderators to pass on.
    share_secret: Option<String>,
    /// The newest key epoch a moderator handed out: members may claim to hold no newer.
    key_epoch: u32,
    /// Chat, reactions and the pin (#15).
    life: Life,
    /// The server keeps a replay (#15).
    replay: bool,
    /// Who made the room (its first host).
    created_by: UserId,
}

impl Room {
    /// A new room created by `host`, who is expected to join within [`REJOIN_GRACE_MS`].
    pub fn new(id: String, title: String, host: UserId, now_ms: u64, limits: RoomLimits) -> Self {
        let mut departed = HashMap::new();
        departed.insert(
            host,
            Departed {
                role: Role::Host,
                left_at_ms: now_ms,
            },
        );
        Self {
            id,
            title,
            created_at_ms: now_ms,
            limits,
            members: HashMap::new(),
            names: HashMap::new(),
            toggles_due: std::collections::BTreeSet::new(),
            banned: HashSet::new(),
            departed,
            seq: 0,
            ended: false,
            audience_changed: false,
            audience_told_at_ms: None,
            audience_due_ms: None,
            private: false,
            share_secret: None,
            key_epoch: 0,
            life: Life::default(),
            replay: false,
            created_by: host,
        }
    }

    /// Makes the room private: its members' device keys are listed (for the key leader
    /// to wrap the room key to) and moderators may hand out keys. `share_secret` is the
    /// share link's secret, if it has one.
    pub fn make_private(&mut self, share_secret: Option<String>) {
        self.private = true;
        self.share_secret = share_secret;
    }

    pub fn is_private(&self) -> bool {
        self.private
    }

    /// The server keeps a replay of the room; everyone sees so.
    pub fn keep_replay(&mut self) {
        self.replay = true;
    }

    pub fn is_replayed(&self) -> bool {
        self.replay
    }

    /// Who made the room (for a room carried on in a cluster: its host then).
    pub fn created_by(&self) -> UserId {
        self.created_by
    }

    /// Who member `id` is.
    pub fn user(&self, id: UserId) -> Option<User> {
        self.members.get(&id).map(|m| User {
            id,
            handle: m.handle.clone(),
            name: m.name.clone(),
        })
    }

    /// A room carried on from its directory entry after the node it ran on died: the same
    /// id, title and start time, and whoever was on the stage gets their role back on
    /// rejoining within [`REJOIN_GRACE_MS`], as after a dropped connection (the host their
    /// host role). Hands, the audience's order and removals are not in the directory: they
    /// start afresh.
    ///
    /// `banned` are those removed from it, who stay out.
    pub fn resume(
        summary: &RoomSummary,
        carried: &Carried,
        now_ms: u64,
        limits: RoomLimits,
    ) -> Self {
        let host = summary
            .host
            .as_ref()
            .map(|h| h.id)
            .or_else(|| {
                summary
                    .speakers
                    .iter()
                    .find(|s| s.role.is_moderator())
                    .map(|s| s.id)
            })
            .unwrap_or(0);
        let mut room = Self::new(
            summary.id.clone(),
            summary.title.clone(),
            host,
            now_ms,
            limits,
        );
        room.created_at_ms = summary.created_at_ms;
        room.banned.extend(&carried.banned);
        room.life
            .restore(carried.chat, &carried.chat_silenced, carried.pinned.clone());
        room.private = summary.private;
        room.replay = summary.replay;
        for member in &summary.speakers {
            let role = if member.id == host {
                Role::Host
            } else if member.role == Role::Host {
                Role::Moderator
            } else {
                member.role
            };
            room.departed.insert(
                member.id,
                Departed {
                    role,
                    left_at_ms: now_ms,
                },
            );
        }
        room
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// What another node carrying the room on must keep (see [`Carried`]).
    pub fn carried(&self) -> Carried {
        Carried {
            banned: self.banned(),
            chat_silenced: self.life.silenced(),
            chat: self.life.policy(),
            pinned: self.life.pinned().map(str::to_owned),
        }
    }

    /// Those a moderator removed, who cannot come back (sorted).
    pub fn banned(&self) -> Vec<UserId> {
        let mut banned: Vec<UserId> = self.banned.iter().copied().collect();
        banned.sort_unstable();
        banned
    }

    pub fn title(&self) -> &str {
        &self.title
    }

    pub fn is_ended(&self) -> bool {
        self.ended
    }

    pub fn contains(&self, user: UserId) -> bool {
        self.members.contains_key(&user)
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Whether `user` may try to join (checked before a WebSocket upgrade, and again on join).
    pub fn admission(&self, user: &User) -> Result<(), Refusal> {
        self.admission_of(user.id)?;
        match self.names.get(&skeleton(&user.name)) {
            Some(other) if *other != user.id => refuse(
                ErrorCode::NameLookalike,
                format!(
                    "someone in this room has a name that looks like {:?}; change your display name (`hallway account edit --display-name NAME`) to join",
                    user.name
                ),
            ),
            _ => Ok(()),
        }
    }

    fn admission_of(&self, user: UserId) -> Result<(), Refusal> {
        if self.ended {
            return refuse(
                ErrorCode::RoomNotFound,
                "this room has ended; pick another from the room list",
            );
        }
        if self.banned.contains(&user) {
            return refuse(
                ErrorCode::Banned,
                "a moderator removed you from this room; you cannot rejoin it",
            );
        }
        if !self.members.contains_key(&user) && self.members.len() >= self.limits.max_participants {
            return refuse(
                ErrorCode::ServerFull,
                format!(
                    "this room is full ({} people); try again later",
                    self.limits.max_participants
                ),
            );
        }
        Ok(())
    }

    /// `user` joins (or rejoins). The joiner gets a snapshot; everyone else a `participant_joined`.
    /// A user already present (a second connection) just gets a fresh snapshot.
    pub fn join(&mut self, user: &User, now_ms: u64) -> Result<Vec<Delivery>, Refusal> {
        self.join_with_device(user, None, now_ms)
    }

    /// [`Room::join`] from a device whose X25519 key (base64url) the room lists when it
    /// is private.
    pub fn join_with_device(
        &mut self,
        user: &User,
        device_key: Option<String>,
        now_ms: u64,
    ) -> Result<Vec<Delivery>, Refusal> {
        self.admission(user)?;
        let device_key = device_key.filter(|_| self.private);
        if let Some(member) = self.members.get(&user.id) {
            // From another device, in a private room: the room lists the new device's key
            // (the key leader wraps the room key to it) and tells of them as joining anew,
            // last in the order, as every client's copy of the room puts them.
            if device_key.is_some() && member.device_key != device_key {
                self.seq += 1;
                let seq = self.seq;
                let m = self.member_mut(user.id);
                m.device_key = device_key;
                m.key_epoch = None;
                m.joined_seq = seq;
                let mut out = vec![Delivery::To(user.id, self.snapshot(user.id))];
                out.extend(self.announce_join(user.id));
                return Ok(out);
            }
            return Ok(vec![Delivery::To(user.id, self.snapshot(user.id))]);
        }
        let mut out = Vec::new();
        let mut role = Role::Listener;
        if let Some(departed) = self.departed.remove(&user.id)
            && now_ms.saturating_sub(departed.left_at_ms) <= REJOIN_GRACE_MS
        {
            role = departed.role;
        }
        if role == Role::Host && self.host().is_some() {
            role = Role::Moderator;
        }
        // A returning speaker finds their seat taken when the stage filled meanwhile; a
        // returning moderator keeps their role over the limit, or the room could be left
        // with nobody to run it.
        if role == Role::Speaker && self.stage_count() >= self.limits.stage_limit {
            role = Role::Listener;
        }
        if role.is_moderator() && self.host().is_none() {
            role = Role::Host;
        }
        let listed = role.on_stage() || self.listed_listeners() < self.limits.listed_audience;
        self.seq += 1;
        let member = Member {
            handle: user.handle.clone(),
            name: user.name.clone(),
            role,
            muted: true,
            hand: None,
            invited: false,
            speaking_until_ms: None,
            told_audio_refused: false,
            joined_seq: self.seq,
            moderator_seq: self.seq,
            recording: false,
            listed,
            toggled_at_ms: None,
            pending: Pending::default(),
            device_key,
            key_epoch: None,
        };
        self.members.insert(user.id, member);
        self.names.insert(skeleton(&user.name), user.id);
        self.audience_changed |= !listed;
        out.push(Delivery::To(user.id, self.snapshot(user.id)));
        out.extend(self.announce_join(user.id));
        self.count_audience(now_ms);
        Ok(out)
    }

    /// `participant_joined` for `user`: to everyone else if they are listed, else to
    /// those who see the whole room.
    fn announce_join(&self, user: UserId) -> Option<Delivery> {
        let participant = self.participant(user)?;
        let listed = self.members.get(&user).is_some_and(|m| m.listed);
        let message = ServerMessage::ParticipantJoined { participant };
        Some(if listed {
            Delivery::AllExcept(user, message)
        } else {
            Delivery::Moderators {
                and: None,
                except: Some(user),
                message,
            }
        })
    }

    /// The server puts `user` out (a moderator blocked them, an admin suspended them): told
    /// why, and gone as if removed. Not banned: what keeps them out is the block (checked at
    /// every join) or the suspension (no sign-in), and lifting either lets them back.
    pub fn expel(
        &mut self,
        user: UserId,
        code: ErrorCode,
        message: String,
        now_ms: u64,
    ) -> Vec<Delivery> {
        if !self.members.contains_key(&user) {
            return Vec::new();
        }
        let mut out = vec![Delivery::Disconnect(user, code, message)];
        out.extend(self.depart(user, LeaveReason::Removed, now_ms));
        out
    }

    /// `user` is gone: they left, their connection dropped, or they were removed.
    /// Hands the host role over and ends the room when that is what the rules say.
    pub fn depart(&mut self, user: UserId, reason: LeaveReason, now_ms: u64) -> Vec<Delivery> {
        let Some(member) = self.members.remove(&user) else {
            return Vec::new();
        };
        self.names.remove(&skeleton(&member.name));
        self.life.forget(user, reason == LeaveReason::Removed);
        if reason == LeaveReason::Disconnected && member.role != Role::Listener {
            self.departed.insert(
                user,
                Departed {
                    role: member.role,
                    left_at_ms: now_ms,
                },
            );
        }
        self.audience_changed |= !member.listed;
        let message = ServerMessage::ParticipantLeft {
            user_id: user,
            reason,
        };
        // The one who leaves hears it too, as they would if everyone knew them.
        let mut out = vec![if member.listed {
            Delivery::All(message)
        } else {
            Delivery::Moderators {
                and: Some(user),
                except: None,
                message,
            }
        }];
        if member.role == Role::Host {
            out.extend(self.hand_over_host());
        }
        out.extend(self.fill_front_rows());
        out.extend(self.end_if_unmoderated(now_ms));
        self.count_audience(now_ms);
        out
    }

    /// When the room, having no moderator, ends unless one returns: the time to call [`Room::tick`].
    pub fn moderator_deadline_ms(&self) -> Option<u64> {
        if self.ended || self.members.values().any(|m| m.role.is_moderator()) {
            return None;
        }
        self.departed
            .values()
            .filter(|d| d.role.is_moderator())
            .map(|d| d.left_at_ms + REJOIN_GRACE_MS)
            .max()
    }

    /// When a member's waiting toggles are due: the time to call [`Room::tick`].
    pub fn toggle_deadline_ms(&self) -> Option<u64> {
        self.toggles_due.first().map(|(due, _)| *due)
    }

    /// When partial views are next due the unlisted count: the time to call [`Room::tick`].
    pub fn audience_deadline_ms(&self) -> Option<u64> {
        self.audience_due_ms
    }

    /// Whether `user` sees the whole room (host and moderators) rather than part of it.
    pub fn sees_everyone(&self, user: UserId) -> bool {
        self.members
            .get(&user)
            .is_some_and(|m| m.role.is_moderator())
    }

    /// Who receives each of `out`, as the room is now (call it right after the command
    /// that produced them). Works out each message's recipients once, however many members
    /// receive it; the lists it makes hold only the stage and the front rows.
    pub fn address(&self, out: Vec<Delivery>) -> Vec<Addressed> {
        let moderators = || -> Vec<UserId> {
            self.members
                .iter()
                .filter(|(_, m)| m.role.is_moderator())
                .map(|(id, _)| *id)
                .collect()
        };
        let message = |to, message| Addressed::Message { to, message };
        let mut addressed = Vec::with_capacity(out.len());
        for delivery in out {
            match delivery {
                Delivery::All(m) => addressed.push(message(Recipients::Everyone, m)),
                Delivery::AllExcept(except, m) => {
                    addressed.push(message(Recipients::AllBut(vec![except]), m));
                }
                Delivery::To(user, m) => addressed.push(message(Recipients::Only(vec![user]), m)),
                Delivery::Disconnect(user, code, m) => addressed.push(Addressed::Disconnect {
                    user,
                    code,
                    message: m,
                }),
                Delivery::Moderators {
                    and,
                    except,
                    message: m,
                } => {
                    let mut ids = moderators();
                    ids.extend(and);
                    ids.retain(|id| Some(*id) != except);
                    addressed.push(message(Recipients::only(ids), m));
                }
                Delivery::PartialViews(m) => {
                    addressed.push(message(Recipients::all_but(moderators()), m));
                }
                Delivery::Audience { unlisted } => {
                    // Those who are unlisted themselves see themselves: one fewer unseen.
                    let listed: Vec<UserId> = self
                        .members
                        .iter()
                        .filter(|(_, m)| m.listed && !m.role.is_moderator())
                        .map(|(id, _)| *id)
                        .collect();
                    let mut seen_by_all = moderators();
                    seen_by_all.extend(&listed);
                    addressed.push(message(
                        Recipients::only(listed),
                        ServerMessage::AudienceChanged { unlisted },
                    ));
                    addressed.push(message(
                        Recipients::all_but(seen_by_all),
                        ServerMessage::AudienceChanged {
                            unlisted: unlisted.saturating_sub(1),
                        },
                    ));
                }
            }
        }
        addressed
    }

    /// Whether everyone is told about `user`.
    pub fn is_listed(&self, user: UserId) -> bool {
        self.members.get(&user).is_some_and(|m| m.listed)
    }

    /// When the next speaking indicator may turn off: the time to call [`Room::tick`].
    pub fn speaking_deadline_ms(&self) -> Option<u64> {
        self.members
            .values()
            .filter_map(|m| m.speaking_until_ms)
            .min()
    }

    /// Time has passed: turn off stale speaking indicators, forget old departures and end
    /// the room if no moderator came back.
    pub fn tick(&mut self, now_ms: u64) -> Vec<Delivery> {
        let mut out = Vec::new();
        let mut quiet: Vec<UserId> = self
            .members
            .iter()
            .filter(|(_, m)| m.speaking_until_ms.is_some_and(|until| until <= now_ms))
            .map(|(id, _)| *id)
            .collect();
        quiet.sort_unstable();
        for user_id in quiet {
            if let Some(m) = self.members.get_mut(&user_id) {
                m.speaking_until_ms = None;
            }
            out.push(Delivery::All(ServerMessage::Speaking {
                user_id,
                speaking: false,
            }));
        }
        while let Some(&(due, user)) = self.toggles_due.first() {
            if due > now_ms {
                break;
            }
            self.toggles_due.remove(&(due, user));
            out.extend(self.apply_pending(user, now_ms));
        }
        self.departed
            .retain(|_, d| now_ms.saturating_sub(d.left_at_ms) <= REJOIN_GRACE_MS);
        if self.audience_due_ms.is_some_and(|due| due <= now_ms) {
            self.audience_due_ms = None;
            self.audience_changed = false;
            self.audience_told_at_ms = Some(now_ms);
            out.push(Delivery::Audience {
                unlisted: self.unlisted(),
            });
        }
        out.extend(self.life.tick(now_ms));
        out.extend(self.end_if_unmoderated(now_ms));
        out
    }

    /// Ends the room for everyone.
    pub fn end(&mut self, reason: RoomEndReason, by: Option<UserId>) -> Vec<Delivery> {
        if self.ended {
            return Vec::new();
        }
        self.ended = true;
        let (code, message) = match reason {
            RoomEndReason::EndedByModerator => (ErrorCode::RoomEnded, "a moderator ended the room"),
            RoomEndReason::NoModerator => (
                ErrorCode::RoomEnded,
                "the room ended: no moderator was left",
            ),
            RoomEndReason::ServerShutdown => {
                (ErrorCode::ServerShutdown, "the server is shutting down")
            }
        };
        let mut out = vec![Delivery::All(ServerMessage::RoomEnded { reason, by })];
        let mut ids: Vec<UserId> = self.members.keys().copied().collect();
        ids.sort_unstable();
        out.extend(
            ids.into_iter()
                .map(|id| Delivery::Disconnect(id, code, message.into())),
        );
        self.members.clear();
        out
    }

    /// An audio frame from `user` with the level (-dBov) and voice flag of its header.
    pub fn audio(&mut self, user: UserId, level: u8, voice: bool, now_ms: u64) -> AudioVerdict {
        let Some(member) = self.members.get_mut(&user) else {
            return AudioVerdict::Drop {
                tell: false,
                refusal: Refusal {
                    code: ErrorCode::NotAllowedToSpeak,
                    message: "you are not in this room".into(),
                },
            };
        };
        if !member.role.on_stage() || member.muted {
            let message = if member.role.on_stage() {
                "you are muted: unmute to be heard; your audio was dropped"
            } else {
                "listeners cannot send audio: raise your hand and accept an invitation to speak"
            };
            let tell = !member.told_audio_refused;
            member.told_audio_refused = true;
            return AudioVerdict::Drop {
                tell,
                refusal: Refusal {
                    code: ErrorCode::NotAllowedToSpeak,
                    message: message.into(),
                },
            };
        }
        let mut out = Vec::new();
        if voice && level <= SPEAKING_LEVEL {
            if member.speaking_until_ms.is_none() {
                out.push(Delivery::All(ServerMessage::Speaking {
                    user_id: user,
                    speaking: true,
                }));
            }
            member.speaking_until_ms = Some(now_ms + SPEAKING_HOLD_MS);
        }
        AudioVerdict::Forward(out)
    }

    /// A control command from `user`. Ok holds the events to deliver.
    pub fn command(
        &mut self,
        user: UserId,
        command: &ClientCommand,
        now_ms: u64,
    ) -> Result<Vec<Delivery>, Refusal> {
        let Some(me) = self.members.get(&user) else {
            return refuse(
                ErrorCode::UserNotFound,
                "you are not in this room; join it first",
            );
        };
        if let Some((kind, want)) = Toggle::of(user, command) {
            if kind == Toggle::Hand && want && me.role.on_stage() {
                return refuse(
                    ErrorCode::AlreadyOnStage,
                    "you are on the stage already; just unmute to talk",
                );
            }
            if let Some(at) = me.toggled_at_ms
                && now_ms < at + TOGGLE_EVERY_MS
            {
                // Too soon after their last visible change: remember the wish, apply the
                // net result when the time comes (`tick`).
                let due = at + TOGGLE_EVERY_MS;
                let m = self.member_mut(user);
                match kind {
                    Toggle::Hand => m.pending.hand = Some(want),
                    Toggle::Recording => m.pending.recording = Some(want),
                }
                self.toggles_due.insert((due, user));
                return Ok(Vec::new());
            }
            let out = self.apply_command(user, command, now_ms)?;
            let m = self.member_mut(user);
            match kind {
                Toggle::Hand => m.pending.hand = None,
                Toggle::Recording => m.pending.recording = None,
            }
            if !out.is_empty() {
                m.toggled_at_ms = Some(now_ms);
            }
            return Ok(out);
        }
        self.apply_command(user, command, now_ms)
    }

    /// Applies a member's waiting toggles (those still wanted and still possible).
    fn apply_pending(&mut self, user: UserId, now_ms: u64) -> Vec<Delivery> {
        let Some(m) = self.members.get_mut(&user) else {
            return Vec::new();
        };
        let pending = std::mem::take(&mut m.pending);
        let mut out = Vec::new();
        if let Some(raise) = pending.hand {
            let command = if raise {
                ClientCommand::RaiseHand
            } else {
                ClientCommand::LowerHand { user_id: None }
            };
            // Refused (they went on stage meanwhile): the wish no longer applies.
            out.extend(
                self.apply_command(user, &command, now_ms)
                    .unwrap_or_default(),
            );
        }
        if let Some(record) = pending.recording {
            let command = if record {
                ClientCommand::StartRecording
            } else {
                ClientCommand::StopRecording
            };
            out.extend(
                self.apply_command(user, &command, now_ms)
                    .unwrap_or_default(),
            );
        }
        if !out.is_empty()
            && let Some(m) = self.members.get_mut(&user)
        {
            m.toggled_at_ms = Some(now_ms);
        }
        out
    }

    fn apply_command(
        &mut self,
        user: UserId,
        command: &ClientCommand,
        now_ms: u64,
    ) -> Result<Vec<Delivery>, Refusal> {
        let Some(me) = self.members.get(&user) else {
            return refuse(
                ErrorCode::UserNotFound,
                "you are not in this room; join it first",
            );
        };
        let my_role = me.role;
        use ClientCommand::*;
        let out = match *command {
            RaiseHand => {
                if my_role.on_stage() {
                    return refuse(
                        ErrorCode::AlreadyOnStage,
                        "you are on the stage already; just unmute to talk",
                    );
                }
                if me.hand.is_some() {
                    return Ok(Vec::new());
                }
                self.seq += 1;
                let seq = self.seq;
                let m = self.member_mut(user);
                m.hand = Some((seq, now_ms));
                vec![self.about(
                    user,
                    ServerMessage::HandRaised {
                        user_id: user,
                        raised_at_ms: now_ms,
                    },
                )]
            }
            LowerHand { user_id } => {
                let target = user_id.unwrap_or(user);
                if target != user {
                    self.require_moderator(my_role, "lower someone else's hand")?;
                }
                let Some(t) = self.members.get_mut(&target) else {
                    return refuse(
                        ErrorCode::UserNotFound,
                        format!("user {target} is not in this room"),
                    );
                };
                if t.hand.take().is_none() {
                    return Ok(Vec::new());
                }
                t.told_audio_refused = false;
                vec![self.about(
                    target,
                    ServerMessage::HandLowered {
                        user_id: target,
                        by: (target != user).then_some(user),
                    },
                )]
            }
            Mute | Unmute => {
                let muted = matches!(command, Mute);
                if !my_role.on_stage() {
                    return refuse(
                        ErrorCode::NotOnStage,
                        "only people on the stage have a microphone; raise your hand to ask to speak",
                    );
                }
                self.set_muted(user, muted, None)
            }
            AcceptInvite => {
                if !me.invited {
                    return refuse(ErrorCode::NotInvited, "there is no invitation to accept");
                }
                // A refusal changes nothing: it reaches only the caller, so clearing the
                // invitation here would leave everyone else showing it. It stays open until
                // a seat frees up or the invitee declines.
                if self.stage_count() >= self.limits.stage_limit {
                    return refuse(
                        ErrorCode::StageFull,
                        "the stage filled up before you accepted; accept again when a seat frees up, or decline",
                    );
                }
                let m = self.member_mut(user);
                m.invited = false;
                let mut out = Vec::new();
                if m.hand.take().is_some() {
                    out.push(self.about(
                        user,
                        ServerMessage::HandLowered {
                            user_id: user,
                            by: None,
                        },
                    ));
                }
                out.extend(self.set_role(user, Role::Speaker, None));
                out
            }
            DeclineInvite => {
                if !me.invited {
                    return refuse(ErrorCode::NotInvited, "there is no invitation to decline");
                }
                self.member_mut(user).invited = false;
                vec![self.about(user, ServerMessage::InviteDeclined { user_id: user })]
            }
            LeaveStage => {
                if !my_role.on_stage() {
                    return refuse(ErrorCode::NotOnStage, "you are in the audience already");
                }
                if my_role == Role::Host {
                    return refuse(
                        ErrorCode::Forbidden,
                        "the host stays on the stage; make someone else a moderator and leave the room to hand over",
                    );
                }
                self.set_role(user, Role::Listener, None)
            }
            Leave => self.depart(user, LeaveReason::Left, now_ms),
            StartRecording | StopRecording => {
                let recording = matches!(command, StartRecording);
                let m = self.member_mut(user);
                if m.recording == recording {
                    return Ok(Vec::new());
                }
                m.recording = recording;
                // Everyone is told who records the room, so everyone must know them.
                let mut out = self.list(user);
                out.push(Delivery::All(ServerMessage::RecordingChanged {
                    user_id: user,
                    recording,
                }));
                out
            }
            // Answered by the connection itself; harmless here.
            Ping { .. } => Vec::new(),
            InviteToSpeak { user_id } => {
                self.require_moderator(my_role, "invite people to speak")?;
                let t = self.target(user_id)?;
                if t.role.on_stage() {
                    return refuse(
                        ErrorCode::AlreadyOnStage,
                        format!("{} is on the stage already", t.name),
                    );
                }
                if t.invited {
                    return Ok(Vec::new());
                }
                if self.stage_count() >= self.limits.stage_limit {
                    return refuse(
                        ErrorCode::StageFull,
                        format!(
                            "the stage is full ({} people); move someone to the audience first",
                            self.limits.stage_limit
                        ),
                    );
                }
                self.member_mut(user_id).invited = true;
                vec![self.about(user_id, ServerMessage::Invited { user_id, by: user })]
            }
            MoveToAudience { user_id } => {
                self.require_moderator(my_role, "move people to the audience")?;
                let t = self.target(user_id)?;
                if !t.role.on_stage() {
                    return refuse(
                        ErrorCode::NotOnStage,
                        format!("{} is in the audience already", t.name),
                    );
                }
                self.require_outranks(my_role, t.role, user == user_id)?;
                self.set_role(user_id, Role::Listener, Some(user))
            }
            MuteSpeaker { user_id } => {
                self.require_moderator(my_role, "mute other speakers")?;
                let t = self.target(user_id)?;
                if !t.role.on_stage() {
                    return refuse(
                        ErrorCode::NotOnStage,
                        format!("{} is not on the stage", t.name),
                    );
                }
                // The same ranks as moving and removing: otherwise a moderator could keep
                // the host (or another moderator) muted, and they can only unmute themselves.
                self.require_outranks(my_role, t.role, user == user_id)?;
                self.set_muted(user_id, true, Some(user))
            }
            Remove { user_id } => {
                self.require_moderator(my_role, "remove people")?;
                if user_id == user {
                    return refuse(
                        ErrorCode::BadRequest,
                        "to go, leave the room instead of removing yourself",
                    );
                }
                let t = self.target(user_id)?;
                self.require_outranks(my_role, t.role, false)?;
                self.banned.insert(user_id);
                let mut out = vec![Delivery::Disconnect(
                    user_id,
                    ErrorCode::Removed,
                    "a moderator removed you from this room".into(),
                )];
                out.extend(self.depart(user_id, LeaveReason::Removed, now_ms));
                out
            }
            MakeModerator { user_id } => {
                self.require_moderator(my_role, "make moderators")?;
                let t = self.target(user_id)?;
                if t.role.is_moderator() {
                    return Ok(Vec::new());
                }
                if !t.role.on_stage() && self.stage_count() >= self.limits.stage_limit {
                    return refuse(
                        ErrorCode::StageFull,
                        format!(
                            "the stage is full ({} people); move someone to the audience first",
                            self.limits.stage_limit
                        ),
                    );
                }
                let mut out = Vec::new();
                let t = self.member_mut(user_id);
                t.invited = false;
                if t.hand.take().is_some() {
                    out.push(self.about(
                        user_id,
                        ServerMessage::HandLowered {
                            user_id,
                            by: Some(user),
                        },
                    ));
                }
                out.extend(self.set_role(user_id, Role::Moderator, Some(user)));
                out
            }
            EndRoom => {
                self.require_moderator(my_role, "end the room")?;
                self.end(RoomEndReason::EndedByModerator, Some(user))
            }
            ShareKey { epoch, ref keys } => {
                // The host's client is the key leader; nobody else hands out keys (a
                // moderator's would let any one device key the room).
                if my_role != Role::Host {
                    return refuse(
                        ErrorCode::Forbidden,
                        "only the host's client hands out the room's key",
                    );
                }
                self.require_private()?;
                if epoch >= MAX_KEY_EPOCH {
                    return refuse(
                        ErrorCode::BadRequest,
                        format!("key epochs stay below {MAX_KEY_EPOCH}"),
                    );
                }
                if keys.len() > MAX_KEYS_PER_SHARE {
                    return refuse(
                        ErrorCode::PayloadTooLarge,
                        format!("at most {MAX_KEYS_PER_SHARE} keys in one share_key; send several"),
                    );
                }
                if keys.iter().any(|k| k.sealed.len() > MAX_SEALED_CHARS) {
                    return refuse(
                        ErrorCode::BadRequest,
                        format!("a wrapped key is at most {MAX_SEALED_CHARS} characters"),
                    );
                }
                self.key_epoch = self.key_epoch.max(epoch);
                // Each member gets their own copy only; one who left meanwhile gets none.
                keys.iter()
                    .filter(|k| k.to != user && self.members.contains_key(&k.to))
                    .map(|k| {
                        Delivery::To(
                            k.to,
                            ServerMessage::Key {
                                from: user,
                                epoch,
                                sealed: k.sealed.clone(),
                            },
                        )
                    })
                    .collect()
            }
            KeyHeld { epoch } => {
                self.require_private()?;
                if epoch > self.key_epoch {
                    return refuse(
                        ErrorCode::BadRequest,
                        format!("no key of epoch {epoch} was handed out in this room"),
                    );
                }
                // Only ever forward: each epoch is announced once per member, so a client
                // repeating itself costs the room nothing.
                if me.key_epoch.is_some_and(|held| held >= epoch) {
                    return Ok(Vec::new());
                }
                self.member_mut(user).key_epoch = Some(epoch);
                vec![self.about(
                    user,
                    ServerMessage::KeyHeld {
                        user_id: user,
                        epoch,
                    },
                )]
            }
            Chat { ref text } => {
                if self.private {
                    // The server would read it: chat is not end-to-end encrypted yet.
                    return refuse(
                        ErrorCode::Forbidden,
                        "chat is off in private rooms: it is not end-to-end encrypted yet, so the server could read it",
                    );
                }
                let who = Self::who(me);
                self.life
                    .chat(user, who, (&me.handle, &me.name), text, now_ms)?
            }
            DeleteChat { message_id } => {
                // Moderators delete others' lines by the ranks of removing: not the host's,
                // and another moderator's only as the host.
                if let Some(author) = self.life.author_of(message_id)
                    && author != user
                    && let Some(theirs) = self.members.get(&author).map(|m| m.role)
                    && my_role.is_moderator()
                {
                    self.require_outranks(my_role, theirs, false)?;
                }
                self.life.delete(user, my_role.is_moderator(), message_id)?
            }
            SilenceChat { user_id, silenced } => {
                self.require_moderator(my_role, "silence someone's chat")?;
                let target = self.target(user_id)?;
                self.require_outranks(my_role, target.role, false)?;
                if !self.life.silence(user_id, silenced) {
                    return Ok(Vec::new());
                }
                vec![self.about(
                    user_id,
                    ServerMessage::ChatSilenced {
                        user_id,
                        silenced,
                        by: user,
                    },
                )]
            }
            SetChat { who } => {
                self.require_moderator(my_role, "choose who may chat")?;
                self.life.set_policy(user, who)
            }
            React { reaction } => {
                let who = Self::who(me);
                self.life.react(user, who, reaction, now_ms)
            }
            Pin { ref text } => {
                self.require_moderator(my_role, "pin a link or a line")?;
                self.life.pin(user, text, now_ms)?
            }
            Unpin => {
                self.require_moderator(my_role, "take the pin down")?;
                self.life.unpin(user, now_ms)?
            }
            Clip { seconds } => {
                // Told as a recording is: by name to everyone when they are listed, else to
                // those who see the whole room (an unlisted listener is not named to all).
                let name = me.name.clone();
                self.life.clip(user, seconds, now_ms)?;
                vec![self.about(
                    user,
                    ServerMessage::Clipped {
                        user_id: user,
                        name,
                        seconds,
                    },
                )]
            }
        };
        self.count_audience(now_ms);
        Ok(out)
    }

    /// The room as the directory lists it.
    pub fn summary(&self) -> RoomSummary {
        let stage = self.ordered(|m| m.role.on_stage());
        let host = self.host().and_then(|id| {
            self.members.get(&id).map(|m| User {
                id,
                handle: m.handle.clone(),
                name: m.name.clone(),
            })
        });
        RoomSummary {
            id: self.id.clone(),
            title: self.title.clone(),
            host,
            followed: false,
            speakers: stage
                .iter()
                .filter_map(|&id| {
                    let m = self.members.get(&id)?;
                    Some(StageMember {
                        id,
                        handle: m.handle.clone(),
                        name: m.name.clone(),
                        role: m.role,
                        muted: m.muted,
                        speaking: m.speaking_until_ms.is_some(),
                    })
                })
                .collect(),
            listener_count: self.members.len() - stage.len(),
            created_at_ms: self.created_at_ms,
            recording: self.members.values().any(|m| m.recording),
            private: self.private,
            replay: self.replay,
        }
    }

    /// The whole room.
    pub fn detail(&self) -> RoomDetail {
        self.view(|_, _| true)
    }

    /// The room as `you` see it: all of it for the host and moderators, else the listed
    /// part and yourself.
    pub fn view_for(&self, you: UserId) -> RoomDetail {
        if self.sees_everyone(you) {
            let mut detail = self.detail();
            detail.share_secret = self.share_secret.clone();
            detail
        } else {
            self.view(|id, m| m.listed || id == you)
        }
    }

    fn view(&self, shown: impl Fn(UserId, &Member) -> bool) -> RoomDetail {
        let mut ids = self.ordered(|m| m.role.on_stage());
        ids.extend(self.ordered(|m| !m.role.on_stage()));
        ids.retain(|id| self.members.get(id).is_some_and(|m| shown(*id, m)));
        let unlisted = self
            .members
            .iter()
            .filter(|(id, m)| !shown(**id, m))
            .count();
        let mut hands: Vec<(u64, UserId)> = self
            .members
            .iter()
            .filter(|(id, m)| shown(**id, m))
            .filter_map(|(id, m)| m.hand.map(|(seq, _)| (seq, *id)))
            .collect();
        hands.sort_unstable();
        RoomDetail {
            summary: self.summary(),
            participants: ids
                .into_iter()
                .filter_map(|id| self.participant(id))
                .collect(),
            hands: hands.into_iter().map(|(_, id)| id).collect(),
            stage_limit: self.limits.stage_limit,
            unlisted,
            share_secret: None,
            life: self.life.view(),
        }
    }

    fn snapshot(&self, you: UserId) -> ServerMessage {
        ServerMessage::RoomSnapshot {
            protocol_version: crate::protocol::PROTOCOL_VERSION,
            you,
            room: self.view_for(you),
        }
    }

    fn participant(&self, id: UserId) -> Option<Participant> {
        let m = self.members.get(&id)?;
        Some(Participant {
            id,
            handle: m.handle.clone(),
            name: m.name.clone(),
            role: m.role,
            muted: m.muted,
            hand_raised_at_ms: m.hand.map(|(_, at)| at),
            invited: m.invited,
            speaking: m.speaking_until_ms.is_some(),
            recording: m.recording,
            device_key: m.device_key.clone(),
            key_epoch: m.key_epoch,
            chat_silenced: self.life.is_silenced(id),
        })
    }

    fn ordered(&self, keep: impl Fn(&Member) -> bool) -> Vec<UserId> {
        let mut ids: Vec<(u64, UserId)> = self
            .members
            .iter()
            .filter(|(_, m)| keep(m))
            .map(|(id, m)| (m.joined_seq, *id))
            .collect();
        ids.sort_unstable();
        ids.into_iter().map(|(_, id)| id).collect()
    }

    fn host(&self) -> Option<UserId> {
        self.members
            .iter()
            .find(|(_, m)| m.role == Role::Host)
            .map(|(id, _)| *id)
    }

    fn stage_count(&self) -> usize {
        self.members.values().filter(|m| m.role.on_stage()).count()
    }

    fn member_mut(&mut self, id: UserId) -> &mut Member {
        // Callers look the member up first; a missing one is a bug in this file, and a
        // placeholder keeps the server up instead of panicking.
        self.members.entry(id).or_insert_with(|| Member {
            handle: String::new(),
            name: String::new(),
            role: Role::Listener,
            muted: true,
            hand: None,
            invited: false,
            speaking_until_ms: None,
            told_audio_refused: false,
            joined_seq: u64::MAX,
            moderator_seq: u64::MAX,
            recording: false,
            listed: true,
            toggled_at_ms: None,
            pending: Pending::default(),
            device_key: None,
            key_epoch: None,
        })
    }

    /// Someone who runs the room is never silenced (nobody could lift it from a host):
    /// becoming a moderator or the host lifts it.
    fn lift_silence(&mut self, user_id: UserId, by: UserId) -> Option<Delivery> {
        self.life.silence(user_id, false).then(|| {
            self.about(
                user_id,
                ServerMessage::ChatSilenced {
                    user_id,
                    silenced: false,
                    by,
                },
            )
        })
    }

    /// What room life needs to know of a member.
    fn who(m: &Member) -> Who {
        Who {
            on_stage: m.role.on_stage(),
            moderator: m.role.is_moderator(),
            listed: m.listed || m.role.on_stage(),
        }
    }

    /// When waiting chat lines or reactions are due: the time to call [`Room::tick`].
    pub fn life_deadline_ms(&self) -> Option<u64> {
        self.life.deadline_ms()
    }

    fn target(&self, id: UserId) -> Result<&Member, Refusal> {
        match self.members.get(&id) {
            Some(m) => Ok(m),
            None => refuse(
                ErrorCode::UserNotFound,
                format!("user {id} is not in this room"),
            ),
        }
    }

    fn require_private(&self) -> Result<(), Refusal> {
        if self.private {
            Ok(())
        } else {
            refuse(
                ErrorCode::BadRequest,
                "this room is not private: its audio is not encrypted and has no keys",
            )
        }
    }

    fn require_moderator(&self, role: Role, what: &str) -> Result<(), Refusal> {
        if role.is_moderator() {
            Ok(())
        } else {
            refuse(ErrorCode::Forbidden, format!("only moderators can {what}"))
        }
    }

    /// Moderators act on speakers and listeners; only the host acts on other moderators;
    /// nobody acts on the host. Acting on yourself is always allowed.
    /// Whether `by` runs the stage and may act on `target` (both here), by the ranks of
    /// removing: the host over everyone, a moderator over the rest.
    pub fn outranks(&self, by: UserId, target: UserId) -> bool {
        match (self.members.get(&by), self.members.get(&target)) {
            (Some(b), Some(t)) if by != target => {
                b.role.is_moderator() && self.require_outranks(b.role, t.role, false).is_ok()
            }
            _ => false,
        }
    }

    fn require_outranks(&self, mine: Role, theirs: Role, on_self: bool) -> Result<(), Refusal> {
        if on_self && theirs != Role::Host {
            return Ok(());
        }
        match (mine, theirs) {
            (_, Role::Host) => refuse(ErrorCode::Forbidden, "nobody can do that to the host"),
            (Role::Host, _) => Ok(()),
            (_, Role::Moderator) => refuse(
                ErrorCode::Forbidden,
                "only the host can do that to a moderator",
            ),
            _ => Ok(()),
        }
    }

    fn set_role(&mut self, user_id: UserId, role: Role, by: Option<UserId>) -> Vec<Delivery> {
        // Everyone sees the stage: whoever steps onto it is listed first.
        let was_front_row = self
            .members
            .get(&user_id)
            .is_some_and(|m| m.listed && m.role == Role::Listener);
        let mut listing = if role.on_stage() {
            self.list(user_id)
        } else {
            Vec::new()
        };
        self.seq += 1;
        let seq = self.seq;
        let m = self.member_mut(user_id);
        let was = m.role;
        m.role = role;
        m.told_audio_refused = false;
        if role.is_moderator() && !was.is_moderator() {
            m.moderator_seq = seq;
        }
        listing.push(Delivery::All(ServerMessage::RoleChanged {
            user_id,
            role,
            by,
        }));
        let mut out = listing;
        // Everyone arrives on the stage muted, and listeners have no microphone.
        if !m.muted && (!role.on_stage() || !was.on_stage()) {
            m.muted = true;
            out.push(Delivery::All(ServerMessage::MuteChanged {
                user_id,
                muted: true,
                by,
            }));
        }
        if !role.on_stage() && m.speaking_until_ms.take().is_some() {
            out.push(Delivery::All(ServerMessage::Speaking {
                user_id,
                speaking: false,
            }));
        }
        if was == Role::Host && role != Role::Host {
            out.extend(self.hand_over_host());
        }
        // A seat in the front rows freed up.
        if was_front_row && role.on_stage() {
            out.extend(self.fill_front_rows());
        }
        if role.is_moderator() {
            out.extend(self.lift_silence(user_id, by.unwrap_or(user_id)));
        }
        // Moderators see the whole room, others part of it: a new view, a new snapshot.
        if was.is_moderator() != role.is_moderator() {
            out.push(Delivery::To(user_id, self.snapshot(user_id)));
        }
        out
    }

    /// Lists `user` for everyone, if they are not yet: those who see part of the room are
    /// introduced to them (host and moderators know them already).
    fn list(&mut self, user: UserId) -> Vec<Delivery> {
        match self.members.get_mut(&user) {
            Some(m) if !m.listed => m.listed = true,
            _ => return Vec::new(),
        }
        self.audience_changed = true;
        self.participant(user)
            .map(|participant| {
                Delivery::PartialViews(ServerMessage::ParticipantJoined { participant })
            })
            .into_iter()
            .collect()
    }

    /// Lists the longest-waiting unlisted listeners while the front rows have room.
    fn fill_front_rows(&mut self) -> Vec<Delivery> {
        let free = self
            .limits
            .listed_audience
            .saturating_sub(self.listed_listeners());
        if free == 0 {
            return Vec::new();
        }
        let next = self.ordered(|m| !m.listed && m.role == Role::Listener);
        next.into_iter()
            .take(free)
            .flat_map(|id| self.list(id))
            .collect()
    }

    /// Listeners in the front rows.
    fn listed_listeners(&self) -> usize {
        self.members
            .values()
            .filter(|m| m.listed && m.role == Role::Listener)
            .count()
    }

    /// Members not everyone is told about.
    fn unlisted(&self) -> usize {
        self.members.values().filter(|m| !m.listed).count()
    }

    /// News about `subject`: to everyone if they are listed, else to those who see the
    /// whole room and to the subject.
    fn about(&self, subject: UserId, message: ServerMessage) -> Delivery {
        if self.members.get(&subject).is_none_or(|m| m.listed) {
            Delivery::All(message)
        } else {
            Delivery::Moderators {
                and: Some(subject),
                except: None,
                message,
            }
        }
    }

    /// Notes a change in the unlisted count: partial views hear of it at most once every
    /// [`AUDIENCE_EVERY_MS`], from [`Room::tick`].
    fn count_audience(&mut self, now_ms: u64) {
        if self.audience_due_ms.is_none() && self.audience_changed {
            let next = self
                .audience_told_at_ms
                .map_or(0, |told| told + AUDIENCE_EVERY_MS);
            self.audience_due_ms = Some(now_ms.max(next));
        }
    }

    fn set_muted(&mut self, user_id: UserId, muted: bool, by: Option<UserId>) -> Vec<Delivery> {
        let m = self.member_mut(user_id);
        if m.muted == muted {
            return Vec::new();
        }
        m.muted = muted;
        m.told_audio_refused = false;
        let mut out = vec![Delivery::All(ServerMessage::MuteChanged {
            user_id,
            muted,
            by,
        })];
        if muted && m.speaking_until_ms.take().is_some() {
            out.push(Delivery::All(ServerMessage::Speaking {
                user_id,
                speaking: false,
            }));
        }
        out
    }

    /// Gives the host role to the longest-serving moderator present, if there is one.
    fn hand_over_host(&mut self) -> Vec<Delivery> {
        if self.host().is_some() {
            return Vec::new();
        }
        let next = self
            .members
            .iter()
            .filter(|(_, m)| m.role == Role::Moderator)
            .min_by_key(|(_, m)| m.moderator_seq)
            .map(|(id, _)| *id);
        match next {
            Some(id) => {
                self.member_mut(id).role = Role::Host;
                let mut out = vec![Delivery::All(ServerMessage::RoleChanged {
                    user_id: id,
                    role: Role::Host,
                    by: None,
                })];
                out.extend(self.lift_silence(id, id));
                out
            }
            None => Vec::new(),
        }
    }

    fn end_if_unmoderated(&mut self, now_ms: u64) -> Vec<Delivery> {
        match self.moderator_deadline_ms() {
            _ if self.ended || self.members.values().any(|m| m.role.is_moderator()) => Vec::new(),
            Some(deadline) if now_ms < deadline => Vec::new(),
            _ => self.end(RoomEndReason::NoModerator, None),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const HOST: UserId = 1;
    const ADA: UserId = 2;
    const BOB: UserId = 3;
    const CY: UserId = 4;

    fn user(id: UserId) -> User {
        let name = ["", "host", "ada", "bob", "cy", "dee", "eve"][id as usize].to_string();
        User {
            id,
            handle: name.clone(),
            name,
        }
    }

    /// A room with the host and Ada and Bob in the audience.
    fn room() -> Room {
        let mut room = Room::new("r1".into(), "Rust".into(), HOST, 0, RoomLimits::default());
        for id in [HOST, ADA, BOB] {
            room.join(&user(id), 10).unwrap();
        }
        room
    }

    #[test]
    fn only_who_runs_the_stage_outranks_and_never_the_host() {
        let mut room = room();
        assert!(room.outranks(HOST, ADA));
        assert!(!room.outranks(ADA, BOB), "a listener runs nothing");
        room.command(HOST, &ClientCommand::MakeModerator { user_id: ADA }, 10)
            .expect("made a moderator");
        assert!(room.outranks(ADA, BOB));
        assert!(!room.outranks(ADA, HOST), "nobody over the host");
        room.command(HOST, &ClientCommand::MakeModerator { user_id: BOB }, 11)
            .expect("made a moderator");
        assert!(!room.outranks(ADA, BOB), "a moderator is not over another");
        assert!(room.outranks(HOST, BOB));
        assert!(!room.outranks(HOST, 99), "nobody who is not here");
        assert!(!room.outranks(HOST, HOST));
    }

    fn role(room: &Room, id: UserId) -> Role {
        room.participant(id).unwrap().role
    }

    fn code<T: std::fmt::Debug>(r: Result<T, Refusal>) -> ErrorCode {
        r.unwrap_err().code
    }

    #[test]
    fn the_creator_joins_as_host_and_others_as_listeners() {
        let room = room();
        assert_eq!(role(&room, HOST), Role::Host);
        assert_eq!(role(&room, ADA), Role::Listener);
        assert_eq!(room.summary().listener_count, 2);
        assert_eq!(room.summary().host.unwrap().name, "host");
    }

    #[test]
    fn joining_tells_the_joiner_everything_and_the_others_who_came() {
        let mut room = room();
        let out = room.join(&user(CY), 20).unwrap();
        assert!(
            matches!(&out[0], Delivery::To(CY, ServerMessage::RoomSnapshot { you: CY, room, .. }) if room.participants.len() == 4)
        );
        assert!(
            matches!(&out[1], Delivery::AllExcept(CY, ServerMessage::ParticipantJoined { participant }) if participant.id == CY)
        );
    }

    #[test]
    fn full_stage_flow_hand_invite_accept_speak_and_back() {
        let mut room = room();
        let out = room.command(ADA, &ClientCommand::RaiseHand, 100).unwrap();
        assert_eq!(
            out,
            vec![Delivery::All(ServerMessage::HandRaised {
                user_id: ADA,
                raised_at_ms: 100
            })]
        );
        room.command(HOST, &ClientCommand::InviteToSpeak { user_id: ADA }, 110)
            .unwrap();
        assert!(room.participant(ADA).unwrap().invited);
        let out = room
            .command(ADA, &ClientCommand::AcceptInvite, 120)
            .unwrap();
        assert!(out.contains(&Delivery::All(ServerMessage::HandLowered {
            user_id: ADA,
            by: None
        })));
        assert!(out.contains(&Delivery::All(ServerMessage::RoleChanged {
            user_id: ADA,
            role: Role::Speaker,
            by: None
        })));
        let ada = room.participant(ADA).unwrap();
        assert_eq!(
            (ada.role, ada.muted, ada.invited, ada.hand_raised_at_ms),
            (Role::Speaker, true, false, None)
        );
        // A new speaker arrives muted: audio is refused until they unmute.
        assert!(matches!(
            room.audio(ADA, 20, true, 130),
            AudioVerdict::Drop { tell: true, .. }
        ));
        room.command(ADA, &ClientCommand::Unmute, 140).unwrap();
        assert!(matches!(
            room.audio(ADA, 20, true, 150),
            AudioVerdict::Forward(_)
        ));
        let out = room
            .command(HOST, &ClientCommand::MoveToAudience { user_id: ADA }, 160)
            .unwrap();
        assert!(out.contains(&Delivery::All(ServerMessage::RoleChanged {
            user_id: ADA,
            role: Role::Listener,
            by: Some(HOST)
        })));
        assert!(out.contains(&Delivery::All(ServerMessage::MuteChanged {
            user_id: ADA,
            muted: true,
            by: Some(HOST)
        })));
        assert!(out.contains(&Delivery::All(ServerMessage::Speaking {
            user_id: ADA,
            speaking: false
        })));
        assert!(matches!(
            room.audio(ADA, 20, true, 170),
            AudioVerdict::Drop { .. }
        ));
    }

    #[test]
    fn hands_are_listed_in_the_order_raised() {
        let mut room = room();
        room.join(&user(CY), 10).unwrap();
        room.command(BOB, &ClientCommand::RaiseHand, 100).unwrap();
        room.command(CY, &ClientCommand::RaiseHand, 100).unwrap();
        room.command(ADA, &ClientCommand::RaiseHand, 90).unwrap();
        assert_eq!(room.detail().hands, vec![BOB, CY, ADA]);
        room.command(CY, &ClientCommand::LowerHand { user_id: None }, 1_120)
            .unwrap();
        assert_eq!(room.detail().hands, vec![BOB, ADA]);
        assert_eq!(
            code(room.command(ADA, &ClientCommand::LowerHand { user_id: Some(BOB) }, 1_130)),
            ErrorCode::Forbidden
        );
        // A moderator's act on someone else is never held back.
        room.command(
            HOST,
            &ClientCommand::LowerHand { user_id: Some(BOB) },
            1_130,
        )
        .unwrap();
        assert_eq!(room.detail().hands, vec![ADA]);
    }

    #[test]
    fn listeners_cannot_moderate_or_use_a_microphone() {
        let mut room = room();
        for cmd in [
            ClientCommand::InviteToSpeak { user_id: BOB },
            ClientCommand::MoveToAudience { user_id: HOST },
            ClientCommand::MuteSpeaker { user_id: HOST },
            ClientCommand::Remove { user_id: BOB },
            ClientCommand::MakeModerator { user_id: ADA },
            ClientCommand::EndRoom,
        ] {
            assert_eq!(
                code(room.command(ADA, &cmd, 50)),
                ErrorCode::Forbidden,
                "{cmd:?}"
            );
        }
        assert_eq!(
            code(room.command(ADA, &ClientCommand::Unmute, 50)),
            ErrorCode::NotOnStage
        );
        assert_eq!(
            code(room.command(ADA, &ClientCommand::AcceptInvite, 50)),
            ErrorCode::NotInvited
        );
        assert_eq!(
            code(room.command(ADA, &ClientCommand::DeclineInvite, 50)),
            ErrorCode::NotInvited
        );
        assert_eq!(
            code(room.command(HOST, &ClientCommand::RaiseHand, 50)),
            ErrorCode::AlreadyOnStage
        );
        assert_eq!(
            code(room.command(99, &ClientCommand::RaiseHand, 50)),
            ErrorCode::UserNotFound
        );
        assert_eq!(
            code(room.command(HOST, &ClientCommand::InviteToSpeak { user_id: 99 }, 50)),
            ErrorCode::UserNotFound
        );
    }

    #[test]
    fn only_the_speaker_can_unmute_after_a_moderator_mutes_them() {
        let mut room = room();
        room.command(HOST, &ClientCommand::InviteToSpeak { user_id: ADA }, 10)
            .unwrap();
        room.command(ADA, &ClientCommand::AcceptInvite, 10).unwrap();
        room.command(ADA, &ClientCommand::Unmute, 10).unwrap();
        let out = room
            .command(HOST, &ClientCommand::MuteSpeaker { user_id: ADA }, 20)
            .unwrap();
        assert_eq!(
            out,
            vec![Delivery::All(ServerMessage::MuteChanged {
                user_id: ADA,
                muted: true,
                by: Some(HOST)
            })]
        );
        // There is no command to unmute someone else; the speaker can.
        room.command(ADA, &ClientCommand::Unmute, 30).unwrap();
        assert!(!room.participant(ADA).unwrap().muted);
    }

    #[test]
    fn declining_clears_the_invitation() {
        let mut room = room();
        room.command(HOST, &ClientCommand::InviteToSpeak { user_id: BOB }, 10)
            .unwrap();
        let out = room
            .command(BOB, &ClientCommand::DeclineInvite, 20)
            .unwrap();
        assert_eq!(
            out,
            vec![Delivery::All(ServerMessage::InviteDeclined {
                user_id: BOB
            })]
        );
        assert_eq!(
            code(room.command(BOB, &ClientCommand::AcceptInvite, 30)),
            ErrorCode::NotInvited
        );
        assert_eq!(role(&room, BOB), Role::Listener);
    }

    #[test]
    fn the_stage_has_a_limit() {
        let limits = RoomLimits {
            stage_limit: 2,
            max_participants: 4,
            listed_audience: 50,
        };
        let mut room = Room::new("r".into(), "t".into(), HOST, 0, limits);
        for id in [HOST, ADA, BOB, CY] {
            room.join(&user(id), 1).unwrap();
        }
        assert_eq!(code(room.join(&user(5), 1)), ErrorCode::ServerFull);
        room.command(HOST, &ClientCommand::InviteToSpeak { user_id: ADA }, 2)
            .unwrap();
        room.command(HOST, &ClientCommand::InviteToSpeak { user_id: BOB }, 2)
            .unwrap();
        room.command(ADA, &ClientCommand::AcceptInvite, 3).unwrap();
        assert_eq!(
            code(room.command(BOB, &ClientCommand::AcceptInvite, 3)),
            ErrorCode::StageFull
        );
        assert!(
            room.participant(BOB).unwrap().invited,
            "a refused accept changes nothing"
        );
        assert_eq!(
            code(room.command(HOST, &ClientCommand::InviteToSpeak { user_id: CY }, 3)),
            ErrorCode::StageFull
        );
        assert_eq!(
            code(room.command(HOST, &ClientCommand::MakeModerator { user_id: CY }, 3)),
            ErrorCode::StageFull
        );
    }

    #[test]
    fn removed_people_cannot_rejoin_and_the_host_cannot_be_removed() {
        let mut room = room();
        let out = room
            .command(HOST, &ClientCommand::Remove { user_id: BOB }, 10)
            .unwrap();
        assert!(matches!(
            &out[0],
            Delivery::Disconnect(BOB, ErrorCode::Removed, _)
        ));
        assert!(out.contains(&Delivery::All(ServerMessage::ParticipantLeft {
            user_id: BOB,
            reason: LeaveReason::Removed
        })));
        assert!(!room.contains(BOB));
        assert_eq!(code(room.join(&user(BOB), 20)), ErrorCode::Banned);
        room.command(HOST, &ClientCommand::MakeModerator { user_id: ADA }, 30)
            .unwrap();
        assert_eq!(
            code(room.command(ADA, &ClientCommand::Remove { user_id: HOST }, 40)),
            ErrorCode::Forbidden
        );
        assert_eq!(
            code(room.command(ADA, &ClientCommand::MoveToAudience { user_id: HOST }, 40)),
            ErrorCode::Forbidden
        );
    }

    #[test]
    fn only_the_host_acts_on_moderators() {
        let mut room = room();
        room.join(&user(CY), 1).unwrap();
        room.command(HOST, &ClientCommand::MakeModerator { user_id: ADA }, 10)
            .unwrap();
        room.command(HOST, &ClientCommand::MakeModerator { user_id: BOB }, 10)
            .unwrap();
        assert_eq!(
            code(room.command(ADA, &ClientCommand::Remove { user_id: BOB }, 20)),
            ErrorCode::Forbidden
        );
        assert_eq!(
            code(room.command(ADA, &ClientCommand::MoveToAudience { user_id: BOB }, 20)),
            ErrorCode::Forbidden
        );
        assert_eq!(
            code(room.command(ADA, &ClientCommand::MuteSpeaker { user_id: BOB }, 20)),
            ErrorCode::Forbidden
        );
        assert_eq!(
            code(room.command(ADA, &ClientCommand::MuteSpeaker { user_id: HOST }, 20)),
            ErrorCode::Forbidden
        );
        room.command(HOST, &ClientCommand::MuteSpeaker { user_id: BOB }, 20)
            .unwrap();
        room.command(ADA, &ClientCommand::Remove { user_id: CY }, 20)
            .unwrap();
        room.command(HOST, &ClientCommand::MoveToAudience { user_id: BOB }, 30)
            .unwrap();
        assert_eq!(role(&room, BOB), Role::Listener);
    }

    #[test]
    fn the_host_role_passes_to_the_longest_serving_moderator() {
        let mut room = room();
        room.command(HOST, &ClientCommand::MakeModerator { user_id: BOB }, 10)
            .unwrap();
        room.command(HOST, &ClientCommand::MakeModerator { user_id: ADA }, 11)
            .unwrap();
        let out = room.command(HOST, &ClientCommand::Leave, 20).unwrap();
        assert!(out.contains(&Delivery::All(ServerMessage::RoleChanged {
            user_id: BOB,
            role: Role::Host,
            by: None
        })));
        assert_eq!(role(&room, BOB), Role::Host);
        assert_eq!(role(&room, ADA), Role::Moderator);
        assert!(!room.is_ended());
    }

    #[test]
    fn the_room_ends_when_the_last_moderator_leaves() {
        let mut room = room();
        let out = room.command(HOST, &ClientCommand::Leave, 20).unwrap();
        assert!(out.contains(&Delivery::All(ServerMessage::RoomEnded {
            reason: RoomEndReason::NoModerator,
            by: None
        })));
        assert!(out.contains(&Delivery::Disconnect(
            ADA,
            ErrorCode::RoomEnded,
            "the room ended: no moderator was left".into()
        )));
        assert!(room.is_ended());
        assert_eq!(code(room.join(&user(CY), 30)), ErrorCode::RoomNotFound);
    }

    #[test]
    fn a_dropped_host_gets_a_grace_period_and_their_role_back() {
        let mut room = room();
        let out = room.depart(HOST, LeaveReason::Disconnected, 1_000);
        assert!(!room.is_ended(), "{out:?}");
        assert_eq!(room.moderator_deadline_ms(), Some(1_000 + REJOIN_GRACE_MS));
        room.join(&user(HOST), 5_000).unwrap();
        assert_eq!(role(&room, HOST), Role::Host);
        assert_eq!(room.moderator_deadline_ms(), None);
        room.depart(HOST, LeaveReason::Disconnected, 10_000);
        assert!(room.tick(10_000 + REJOIN_GRACE_MS - 1).is_empty());
        let out = room.tick(10_000 + REJOIN_GRACE_MS);
        assert!(out.contains(&Delivery::All(ServerMessage::RoomEnded {
            reason: RoomEndReason::NoModerator,
            by: None
        })));
    }

    #[test]
    fn a_returning_moderator_keeps_the_role_on_a_full_stage_but_a_speaker_does_not() {
        let limits = RoomLimits {
            stage_limit: 2,
            max_participants: 10,
            listed_audience: 50,
        };
        let mut room = Room::new("r".into(), "t".into(), HOST, 0, limits);
        for id in [HOST, ADA, BOB, CY] {
            room.join(&user(id), 1).unwrap();
        }
        room.command(HOST, &ClientCommand::MakeModerator { user_id: ADA }, 2)
            .unwrap();
        room.depart(ADA, LeaveReason::Disconnected, 3);
        room.command(HOST, &ClientCommand::InviteToSpeak { user_id: BOB }, 4)
            .unwrap();
        room.command(BOB, &ClientCommand::AcceptInvite, 4).unwrap();
        room.join(&user(ADA), 5).unwrap();
        assert_eq!(
            role(&room, ADA),
            Role::Moderator,
            "a returning moderator keeps the role"
        );
        room.depart(BOB, LeaveReason::Disconnected, 6);
        room.command(HOST, &ClientCommand::InviteToSpeak { user_id: CY }, 7)
            .unwrap_err();
        room.command(HOST, &ClientCommand::MoveToAudience { user_id: ADA }, 7)
            .unwrap();
        room.command(HOST, &ClientCommand::InviteToSpeak { user_id: CY }, 7)
            .unwrap();
        room.command(CY, &ClientCommand::AcceptInvite, 7).unwrap();
        room.join(&user(BOB), 8).unwrap();
        assert_eq!(
            role(&room, BOB),
            Role::Listener,
            "the speaker's seat was taken"
        );
    }

    #[test]
    fn a_created_room_waits_for_its_host() {
        let mut room = Room::new("r".into(), "t".into(), HOST, 0, RoomLimits::default());
        assert_eq!(room.moderator_deadline_ms(), Some(REJOIN_GRACE_MS));
        room.join(&user(ADA), 1).unwrap();
        assert_eq!(role(&room, ADA), Role::Listener);
        room.join(&user(HOST), 2).unwrap();
        assert_eq!(role(&room, HOST), Role::Host);
    }

    #[test]
    fn speaking_follows_the_levels_in_the_frames() {
        let mut room = room();
        room.command(HOST, &ClientCommand::Unmute, 0).unwrap();
        let AudioVerdict::Forward(out) = room.audio(HOST, 20, true, 1_000) else {
            panic!("host may speak")
        };
        assert_eq!(
            out,
            vec![Delivery::All(ServerMessage::Speaking {
                user_id: HOST,
                speaking: true
            })]
        );
        let AudioVerdict::Forward(out) = room.audio(HOST, 20, true, 1_020) else {
            panic!("host may speak")
        };
        assert!(out.is_empty(), "no repeat while speaking");
        // Quiet frames keep flowing but do not extend the indicator.
        room.audio(HOST, 90, false, 1_300);
        assert_eq!(room.speaking_deadline_ms(), Some(1_020 + SPEAKING_HOLD_MS));
        assert_eq!(
            room.tick(1_020 + SPEAKING_HOLD_MS),
            vec![Delivery::All(ServerMessage::Speaking {
                user_id: HOST,
                speaking: false
            })]
        );
        assert_eq!(room.speaking_deadline_ms(), None);
    }

    #[test]
    fn refused_audio_is_explained_once_per_state() {
        let mut room = room();
        assert!(matches!(
            room.audio(ADA, 20, true, 1),
            AudioVerdict::Drop { tell: true, .. }
        ));
        assert!(matches!(
            room.audio(ADA, 20, true, 2),
            AudioVerdict::Drop { tell: false, .. }
        ));
        room.command(HOST, &ClientCommand::InviteToSpeak { user_id: ADA }, 3)
            .unwrap();
        room.command(ADA, &ClientCommand::AcceptInvite, 4).unwrap();
        assert!(matches!(
            room.audio(ADA, 20, true, 5),
            AudioVerdict::Drop { tell: true, .. }
        ));
    }

    #[test]
    fn the_host_cannot_leave_the_stage_but_a_speaker_can() {
        let mut room = room();
        assert_eq!(
            code(room.command(HOST, &ClientCommand::LeaveStage, 1)),
            ErrorCode::Forbidden
        );
        room.command(HOST, &ClientCommand::InviteToSpeak { user_id: ADA }, 2)
            .unwrap();
        room.command(ADA, &ClientCommand::AcceptInvite, 3).unwrap();
        room.command(ADA, &ClientCommand::LeaveStage, 4).unwrap();
        assert_eq!(role(&room, ADA), Role::Listener);
    }

    #[test]
    fn recording_is_announced_to_everyone_and_shown_in_the_listing() {
        let mut room = room();
        let out = room
            .command(BOB, &ClientCommand::StartRecording, 5)
            .unwrap();
        assert_eq!(
            out,
            vec![Delivery::All(ServerMessage::RecordingChanged {
                user_id: BOB,
                recording: true
            })]
        );
        assert!(room.summary().recording && room.participant(BOB).unwrap().recording);
        assert!(
            room.command(BOB, &ClientCommand::StartRecording, 6)
                .unwrap()
                .is_empty()
        );
        room.command(BOB, &ClientCommand::StopRecording, 1_005)
            .unwrap();
        assert!(!room.summary().recording);
        room.command(BOB, &ClientCommand::StartRecording, 2_005)
            .unwrap();
        room.depart(BOB, LeaveReason::Left, 2_006);
        assert!(!room.summary().recording, "leaving stops the recording");
    }

    /// Every visible change about `who`'s hand or recording in `out`.
    fn toggles_of(out: &[Delivery], who: UserId) -> Vec<String> {
        out.iter()
            .filter_map(|d| match d {
                Delivery::All(m) | Delivery::Moderators { message: m, .. } => Some(m),
                _ => None,
            })
            .filter_map(|m| match m {
                ServerMessage::RecordingChanged { user_id, recording } if *user_id == who => {
                    Some(format!("recording {recording}"))
                }
                ServerMessage::HandRaised { user_id, .. } if *user_id == who => {
                    Some("hand up".into())
                }
                ServerMessage::HandLowered { user_id, .. } if *user_id == who => {
                    Some("hand down".into())
                }
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_toggling_flood_reaches_the_room_once_a_second_with_the_net_change() {
        let mut room = room();
        let mut seen = Vec::new();
        // Recording toggled 19 times a second for 3 seconds, ending on "recording".
        let mut now = 1_000;
        for i in 0..57 {
            let command = if i % 2 == 0 {
                ClientCommand::StartRecording
            } else {
                ClientCommand::StopRecording
            };
            seen.extend(toggles_of(&room.command(BOB, &command, now).unwrap(), BOB));
            while room.toggle_deadline_ms().is_some_and(|due| due <= now) {
                seen.extend(toggles_of(&room.tick(now), BOB));
            }
            now += 1_000 / 19;
        }
        seen.extend(toggles_of(&room.tick(now + 1_000), BOB));
        assert!(
            seen.len() <= 4,
            "{} visible changes in 3 s: {seen:?}",
            seen.len()
        );
        assert_eq!(seen.first().map(String::as_str), Some("recording true"));
        assert!(
            room.participant(BOB).unwrap().recording,
            "the last wish wins"
        );
        assert_eq!(room.toggle_deadline_ms(), None);
    }

    #[test]
    fn a_hand_raised_and_lowered_at_once_shows_nothing_more_and_the_last_wish_wins() {
        let mut room = room();
        assert_eq!(
            toggles_of(
                &room.command(ADA, &ClientCommand::RaiseHand, 100).unwrap(),
                ADA
            ),
            ["hand up"]
        );
        // Down and up again within the second: nothing to tell, now or later.
        let lower = ClientCommand::LowerHand { user_id: None };
        assert!(room.command(ADA, &lower, 200).unwrap().is_empty());
        assert!(
            room.command(ADA, &ClientCommand::RaiseHand, 300)
                .unwrap()
                .is_empty()
        );
        assert_eq!(room.toggle_deadline_ms(), Some(1_100));
        assert!(toggles_of(&room.tick(1_100), ADA).is_empty());
        assert_eq!(room.detail().hands, vec![ADA]);
        // Down within the second: told when the second is up.
        assert_eq!(
            toggles_of(&room.command(ADA, &lower, 1_500).unwrap(), ADA),
            ["hand down"]
        );
        assert!(
            room.command(ADA, &ClientCommand::RaiseHand, 1_600)
                .unwrap()
                .is_empty()
        );
        assert_eq!(room.detail().hands, Vec::<UserId>::new(), "not yet");
        assert_eq!(toggles_of(&room.tick(2_500), ADA), ["hand up"]);
        assert_eq!(room.detail().hands, vec![ADA]);
        // A wish that no longer applies is dropped: invited and on stage meanwhile.
        assert!(room.command(ADA, &lower, 2_600).unwrap().is_empty());
        room.command(HOST, &ClientCommand::InviteToSpeak { user_id: ADA }, 2_700)
            .unwrap();
        room.command(ADA, &ClientCommand::AcceptInvite, 2_800)
            .unwrap();
        assert!(toggles_of(&room.tick(3_500), ADA).is_empty());
        assert_eq!(
            code(room.command(ADA, &ClientCommand::RaiseHand, 3_600)),
            ErrorCode::AlreadyOnStage
        );
    }

    #[test]
    fn ending_disconnects_everyone() {
        let mut room = room();
        let out = room.command(HOST, &ClientCommand::EndRoom, 5).unwrap();
        assert_eq!(
            out[0],
            Delivery::All(ServerMessage::RoomEnded {
                reason: RoomEndReason::EndedByModerator,
                by: Some(HOST)
            })
        );
        assert_eq!(
            out.iter()
                .filter(|d| matches!(d, Delivery::Disconnect(..)))
                .count(),
            3
        );
        assert!(room.is_ended() && room.is_empty());
    }

    // ---- Big rooms: front rows ----

    fn listener(id: UserId) -> User {
        User {
            id,
            handle: format!("listener_{id}"),
            name: format!("listener {id}"),
        }
    }

    /// A room whose front rows hold two listeners, with Ada and Bob in them and 10 and 11
    /// behind them, unlisted.
    fn big_room() -> Room {
        let limits = RoomLimits {
            listed_audience: 2,
            ..RoomLimits::default()
        };
        let mut room = Room::new("r1".into(), "Rust".into(), HOST, 0, limits);
        for id in [HOST, ADA, BOB] {
            room.join(&user(id), 10).unwrap();
        }
        for id in [10, 11] {
            room.join(&listener(id), 20).unwrap();
        }
        room
    }

    /// The recipients the room works out name the stage and the front rows, never the
    /// audience: a thousand listeners cost no more ids than two.
    #[test]
    fn recipients_name_the_stage_and_front_rows_not_the_audience() {
        let mut room = big_room();
        for id in 100..1_100 {
            room.join(&listener(id), 30).unwrap();
        }
        room.command(HOST, &ClientCommand::MakeModerator { user_id: ADA }, 40)
            .unwrap();
        let everyone: Vec<UserId> = room.members.keys().copied().collect();
        let who = |to: &Recipients| -> Vec<UserId> {
            let mut ids: Vec<UserId> = everyone
                .iter()
                .copied()
                .filter(|&id| to.includes(id))
                .collect();
            ids.sort_unstable();
            ids
        };
        let size = |to: &Recipients| match to {
            Recipients::Everyone => 0,
            Recipients::AllBut(ids) | Recipients::Only(ids) => ids.len(),
        };
        let message = ServerMessage::AudienceChanged { unlisted: 0 };
        let out = room.address(vec![
            Delivery::Moderators {
                and: Some(500),
                except: Some(HOST),
                message: message.clone(),
            },
            Delivery::PartialViews(message.clone()),
            Delivery::Audience { unlisted: 1_000 },
            Delivery::AllExcept(BOB, message),
        ]);
        let to: Vec<&Recipients> = out
            .iter()
            .map(|a| match a {
                Addressed::Message { to, .. } => to,
                Addressed::Disconnect { .. } => panic!("{a:?}"),
            })
            .collect();
        assert_eq!(who(to[0]), vec![ADA, 500]);
        assert_eq!(who(to[1]).len(), everyone.len() - 2, "all but host and Ada");
        assert!(!who(to[1]).contains(&HOST) && !who(to[1]).contains(&ADA));
        // The front rows (Bob, 10) hear the count of those they do not see; the rest
        // see themselves, one fewer.
        assert_eq!(who(to[2]), vec![BOB, 10]);
        let Addressed::Message { message, .. } = &out[3] else {
            unreachable!()
        };
        assert_eq!(*message, ServerMessage::AudienceChanged { unlisted: 999 });
        assert_eq!(who(to[3]).len(), everyone.len() - 4);
        assert!(!who(to[3]).contains(&BOB) && who(to[3]).contains(&500));
        assert_eq!(who(to[4]).len(), everyone.len() - 1);
        assert!(to.iter().all(|to| size(to) <= 4), "{to:?}");
    }

    /// A room carried on elsewhere gives the stage their roles back as they return, keeps
    /// its id, title, age and removals; newcomers are listeners.
    #[test]
    fn a_resumed_room_gives_the_stage_back_to_those_who_return() {
        let mut room = room();
        room.command(HOST, &ClientCommand::MakeModerator { user_id: ADA }, 20)
            .unwrap();
        // The chat's rules, which a move must not undo: stage only, Bob silenced, a pin.
        room.command(
            HOST,
            &ClientCommand::SetChat {
                who: crate::protocol::chat::ChatPolicy::Stage,
            },
            21,
        )
        .unwrap();
        room.command(
            HOST,
            &ClientCommand::SilenceChat {
                user_id: BOB,
                silenced: true,
            },
            22,
        )
        .unwrap();
        room.command(
            HOST,
            &ClientCommand::Pin {
                text: "agenda".into(),
            },
            23,
        )
        .unwrap();
        let summary = room.summary();
        let carried = Carried {
            banned: vec![CY],
            ..room.carried()
        };
        assert_eq!(carried.chat_silenced, vec![BOB]);
        // Through the directory entry's JSON, as another node reads it.
        let carried: Carried =
            serde_json::from_str(&serde_json::to_string(&carried).unwrap()).unwrap();
        let mut resumed = Room::resume(&summary, &carried, 1_000, RoomLimits::default());
        let life = resumed.life.view();
        assert_eq!(
            (life.chat, life.pinned.as_deref()),
            (crate::protocol::chat::ChatPolicy::Stage, Some("agenda"))
        );
        assert!(resumed.life.is_silenced(BOB), "a silence outlives the move");
        // An older node's entry (removals only) and a newer node's (a rule this one does
        // not know) both read.
        let old: Carried = serde_json::from_str(r#"{"banned":[4]}"#).unwrap();
        assert_eq!((old.banned, old.chat), (vec![4], Default::default()));
        let newer: Carried =
            serde_json::from_str(r#"{"chat":"friends_of_friends","pinned":"x"}"#).unwrap();
        assert_eq!(
            (newer.chat, newer.pinned.as_deref()),
            (Default::default(), Some("x"))
        );
        assert_eq!(resumed.summary().id, summary.id);
        assert_eq!(resumed.summary().created_at_ms, summary.created_at_ms);
        assert_eq!(
            resumed.admission(&user(CY)).unwrap_err().code,
            ErrorCode::Banned,
            "a removal outlives the move"
        );
        // (As after any dropped connection, the host is host again if back before another
        // moderator, who would otherwise take the role.)
        for id in [HOST, BOB, ADA] {
            resumed.join(&user(id), 2_000).unwrap();
        }
        let role = |room: &Room, id| room.members[&id].role;
        assert_eq!(role(&resumed, HOST), Role::Host);
        assert_eq!(role(&resumed, ADA), Role::Moderator);
        assert_eq!(role(&resumed, BOB), Role::Listener);
        // Past the grace, a stage member who comes back is a listener.
        let mut late = Room::resume(&summary, &Carried::default(), 1_000, RoomLimits::default());
        late.join(&user(HOST), 1_500).unwrap();
        late.join(&user(ADA), 1_000 + REJOIN_GRACE_MS + 1).unwrap();
        assert_eq!(role(&late, ADA), Role::Listener);
    }

    fn ids(detail: &RoomDetail) -> Vec<UserId> {
        detail.participants.iter().map(|p| p.id).collect()
    }

    #[test]
    fn past_the_front_rows_a_joiner_is_announced_only_to_moderators() {
        let mut room = big_room();
        let out = room.join(&listener(12), 30).unwrap();
        let Delivery::To(12, ServerMessage::RoomSnapshot { room: seen, .. }) = &out[0] else {
            panic!("{out:?}");
        };
        // The stage, the front rows and themselves; the others counted.
        assert_eq!(ids(seen), vec![HOST, ADA, BOB, 12]);
        assert_eq!(seen.unlisted, 2);
        assert!(matches!(
            &out[1],
            Delivery::Moderators { and: None, except: Some(12), message: ServerMessage::ParticipantJoined { participant } } if participant.id == 12
        ));
        // The host sees everyone.
        assert_eq!(room.view_for(HOST).participants.len(), 6);
        assert_eq!(room.view_for(HOST).unlisted, 0);
        assert_eq!(room.detail().participants.len(), 6, "REST lists everyone");
    }

    #[test]
    fn a_freed_front_row_seat_goes_to_the_longest_waiting_listener() {
        let mut room = big_room();
        let out = room.depart(ADA, LeaveReason::Left, 40);
        assert_eq!(
            out[0],
            Delivery::All(ServerMessage::ParticipantLeft {
                user_id: ADA,
                reason: LeaveReason::Left
            })
        );
        assert!(matches!(
            &out[1],
            Delivery::PartialViews(ServerMessage::ParticipantJoined { participant }) if participant.id == 10
        ));
        assert_eq!(out.len(), 2);
        assert_eq!(ids(&room.view_for(BOB)), vec![HOST, BOB, 10]);
        // An unlisted listener's departure is the moderators' business (and the leaver's).
        let out = room.depart(11, LeaveReason::Left, 50);
        assert!(matches!(
            &out[0],
            Delivery::Moderators {
                and: Some(11),
                message: ServerMessage::ParticipantLeft { .. },
                ..
            }
        ));
    }

    #[test]
    fn an_unlisted_listener_is_introduced_before_stepping_on_stage_or_recording() {
        let mut room = big_room();
        let out = room.command(11, &ClientCommand::RaiseHand, 30).unwrap();
        assert!(matches!(
            &out[0],
            Delivery::Moderators {
                and: Some(11),
                message: ServerMessage::HandRaised { .. },
                ..
            }
        ));
        let out = room
            .command(HOST, &ClientCommand::InviteToSpeak { user_id: 11 }, 40)
            .unwrap();
        assert!(matches!(
            &out[0],
            Delivery::Moderators { and: Some(11), .. }
        ));
        let out = room.command(11, &ClientCommand::AcceptInvite, 50).unwrap();
        let introduced = out
            .iter()
            .position(|d| matches!(d, Delivery::PartialViews(ServerMessage::ParticipantJoined { participant }) if participant.id == 11))
            .unwrap();
        let on_stage = out
            .iter()
            .position(|d| {
                matches!(
                    d,
                    Delivery::All(ServerMessage::RoleChanged {
                        user_id: 11,
                        role: Role::Speaker,
                        ..
                    })
                )
            })
            .unwrap();
        assert!(introduced < on_stage, "{out:?}");
        assert!(ids(&room.view_for(ADA)).contains(&11));

        let out = room
            .command(10, &ClientCommand::StartRecording, 60)
            .unwrap();
        assert!(matches!(
            &out[..],
            [
                Delivery::PartialViews(ServerMessage::ParticipantJoined { participant }),
                Delivery::All(ServerMessage::RecordingChanged { user_id: 10, recording: true }),
            ] if participant.id == 10
        ));
    }

    #[test]
    fn partial_views_hear_the_unlisted_count_at_most_once_a_second() {
        let mut room = big_room();
        assert_eq!(
            room.audience_deadline_ms(),
            Some(20),
            "the first change is told at once"
        );
        assert_eq!(room.tick(20), vec![Delivery::Audience { unlisted: 2 }]);
        assert_eq!(room.audience_deadline_ms(), None, "nothing more to tell");
        room.join(&listener(12), 300).unwrap();
        room.join(&listener(13), 400).unwrap();
        assert_eq!(room.audience_deadline_ms(), Some(20 + AUDIENCE_EVERY_MS));
        assert_eq!(room.tick(500), Vec::new(), "not yet");
        assert_eq!(
            room.tick(20 + AUDIENCE_EVERY_MS),
            vec![Delivery::Audience { unlisted: 4 }]
        );
    }

    #[test]
    fn becoming_a_moderator_or_ceasing_to_be_one_brings_a_new_snapshot() {
        let mut room = big_room();
        let out = room
            .command(HOST, &ClientCommand::MakeModerator { user_id: ADA }, 30)
            .unwrap();
        let Some(Delivery::To(ADA, ServerMessage::RoomSnapshot { room: seen, .. })) = out.last()
        else {
            panic!("{out:?}");
        };
        assert_eq!(seen.participants.len(), 5, "a moderator sees everyone");
        let out = room
            .command(HOST, &ClientCommand::MoveToAudience { user_id: ADA }, 40)
            .unwrap();
        let Some(Delivery::To(ADA, ServerMessage::RoomSnapshot { room: seen, .. })) = out.last()
        else {
            panic!("{out:?}");
        };
        assert_eq!(
            seen.unlisted, 1,
            "back in the audience, Ada sees part of it again"
        );
    }

    fn chat(text: &str) -> ClientCommand {
        ClientCommand::Chat { text: text.into() }
    }

    use crate::server::room_life::tests::lines as sent_lines;

    #[test]
    fn chat_moderation_follows_the_ranks_and_never_leaves_a_host_silenced() {
        let mut room = room();
        room.command(HOST, &ClientCommand::MakeModerator { user_id: ADA }, 10)
            .unwrap();
        // The host's line cannot be deleted by a moderator; a listener's can.
        room.command(HOST, &chat("welcome"), 20).unwrap();
        assert_eq!(
            code(room.command(ADA, &ClientCommand::DeleteChat { message_id: 1 }, 30)),
            ErrorCode::Forbidden
        );
        // The host silences Ada (a moderator), then leaves: Ada is the host now, and her
        // silence is lifted for everyone to see.
        room.command(
            HOST,
            &ClientCommand::SilenceChat {
                user_id: ADA,
                silenced: true,
            },
            40,
        )
        .unwrap();
        let out = room.depart(HOST, LeaveReason::Left, 50);
        assert_eq!(role(&room, ADA), Role::Host);
        assert!(out.contains(&Delivery::All(ServerMessage::ChatSilenced {
            user_id: ADA,
            silenced: false,
            by: ADA
        })));
        room.command(ADA, &chat("I run it now"), 2_000).unwrap();
        // Bob writes twice; the second waits for the next batch. Removed meanwhile, his
        // waiting line is never sent, and his sent one goes by Ada's hand.
        room.command(BOB, &chat("buy now"), 3_000).unwrap();
        room.command(BOB, &chat("buy more"), 3_010).unwrap();
        room.command(ADA, &ClientCommand::DeleteChat { message_id: 3 }, 3_020)
            .unwrap();
        room.command(ADA, &ClientCommand::Remove { user_id: BOB }, 3_030)
            .unwrap();
        assert!(sent_lines(&room.tick(3_600)).is_empty());
        let texts: Vec<String> = room
            .detail()
            .life
            .chat_log
            .into_iter()
            .map(|l| l.text)
            .collect();
        assert_eq!(texts, ["welcome", "I run it now"]);
    }

    #[test]
    fn chat_is_refused_in_a_private_room_but_reactions_and_pins_work() {
        let mut room = room();
        room.make_private(None);
        let refused = room.command(ADA, &chat("hello"), 20).unwrap_err();
        assert_eq!(refused.code, ErrorCode::Forbidden);
        assert!(
            refused.message.contains("not end-to-end encrypted"),
            "{}",
            refused.message
        );
        assert!(
            room.command(
                ADA,
                &ClientCommand::React {
                    reaction: crate::protocol::chat::Reaction::Clap
                },
                30
            )
            .is_ok()
        );
        room.command(
            HOST,
            &ClientCommand::Pin {
                text: "agenda".into(),
            },
            40,
        )
        .unwrap();
        assert_eq!(room.detail().life.pinned.as_deref(), Some("agenda"));
    }
}
