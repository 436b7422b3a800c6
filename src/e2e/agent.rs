//! The key agent: one per member of a private room, fed the room's events and every audio
//! frame in and out. Pure: it returns the commands to send; the live session sends them.
//!
//! # The model
//!
//! - **Epochs.** The room's audio is keyed by a 32-byte room secret per *epoch*. Each
//!   sender's frames are sealed (`sframe`) with a key of its own, derived from the secret
//!   and its user id, so no two senders ever share a (key, counter) pair.
//! - **The key leader** is the room's host (exactly one while any moderator is present, so
//!   every member's client agrees on who it is from the same events). The leader makes a
//!   new secret and wraps it (`wrap`, HPKE to each member's device key) to everyone in the
//!   room. Moderators see the whole room, so the leader knows every member and their key.
//!   Any client can be the leader: when the host leaves, the server hands the role to
//!   another moderator, whose client then starts a new epoch. Until that key arrives
//!   everyone goes on with the old one, so audio has no gap.
//! - **Joins cost one wrap.** The leader wraps the current secret to a newcomer within
//!   [`FLUSH_MS`]. A wrap to someone who already had this epoch (a reconnect, a new device)
//!   carries a new *generation*, part of the frame key's id, so a sender who starts over
//!   never reuses a counter under the same key.
//! - **Leaves rotate.** When anyone leaves, is removed or moves out, the leader starts a
//!   new epoch for everyone who stays: at most one rotation every [`ROTATE_MIN_MS`] (leaves
//!   in between are batched into it), and one every [`ROTATE_EVERY_MS`] anyway. Someone
//!   who left cannot open frames sealed after the rotation reached the senders.
//! - **Sending** uses the newest epoch held; **receiving** keeps the last [`EPOCHS_KEPT`]
//!   epochs, so frames sealed just before a rotation still open.
//! - **Frame key ids**: `kid = epoch << 4 | generation` ([`GEN_LIMIT`] generations per
//!   epoch; the leader rotates before running out). With epochs below 2^20 the SFrame
//!   header stays within 8 bytes: 24 bytes of overhead per frame, tag included.
//! - **Authenticated data**: the sender's user id and the Hallway header's sequence,
//!   timestamp, level and voice flag. The server stamps the speaker id, and cannot change
//!   who a frame is from, or when, without the frame failing to open.
//!
//! What the server can still do (docs/security.md): see who is in the room and when each
//! speaks; drop, delay or withhold frames and keys (members see "waiting for the key");
//! list a device key that is not the person's (the safety code and fingerprints show it).

use std::collections::{BTreeMap, HashMap};

use hkdf::Hkdf;
use sha2::Sha256;

use super::sframe::{self, Header, ReplayWindow, Sealer, SenderKey, SframeError};
use super::wrap::{self, KeyContext, KeyPayload, RoomSecret, WrapError};
use crate::identity::{self, DeviceKey};
use crate::protocol::control::MAX_KEYS_PER_SHARE;
use crate::protocol::{
    AudioFrame, ClientCommand, Participant, Role, ServerMessage, UserId, WrappedKey,
};

/// The shortest time between two rotations: leaves within it share one.
pub const ROTATE_MIN_MS: u64 = 2_000;
/// Keys rotate this often even when nobody leaves.
pub const ROTATE_EVERY_MS: u64 = 5 * 60_000;
/// Newcomers' wraps wait at most this long, so a join storm costs a few messages.
pub const FLUSH_MS: u64 = 50;
/// A member without the current key this long is wrapped it again.
pub const REWRAP_MS: u64 = 3_000;
/// Re-wraps of one epoch to a member who never says it holds it: then it is left alone
/// until it joins again. A client that never answers (an old one, a raw WebSocket) must
/// not run the room out of generations and into a rotation every minute.
pub const REWRAPS: u8 = 2;
/// A member still without any key this long is told why.
pub const KEY_WAIT_MS: u64 = 5_000;
/// Epochs stay below this (the wire's limit): a key or a claim of a larger one is refused.
pub const MAX_EPOCH: u32 = crate::protocol::control::MAX_KEY_EPOCH;
/// Epochs kept for receiving.
pub const EPOCHS_KEPT: usize = 3;
/// Generations per epoch.
pub const GEN_LIMIT: u8 = 16;

/// What the person sees of the room's keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyStatus {
    /// The newest key epoch held.
    pub epoch: Option<u32>,
    /// The code people read aloud to check they hold the same key (for `epoch`).
    pub safety_code: Option<String>,
    /// The client handing out keys (the host).
    pub leader: Option<UserId>,
    /// This client is the key leader.
    pub leading: bool,
    /// Why audio is silent for now, when it is.
    pub waiting: Option<String>,
    /// The last key message that was refused, and why.
    pub problem: Option<String>,
}

/// Why an incoming frame was dropped (and counted) rather than played.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Dropped {
    /// Sealed with an epoch this client does not hold (yet, or any more).
    #[error("no key for epoch {0}")]
    NoKey(u32),
    /// From someone who is not on the stage here.
    #[error("audio from user {0}, who is not on the stage")]
    NotOnStage(UserId),
    /// Not SFrame, altered, replayed, or sealed with another key.
    #[error(transparent)]
    Frame(#[from] SframeError),
}

/// Why an outgoing frame was not sent.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Unsent {
    /// No key yet: a private room never carries audio in the clear.
    #[error("no room key yet")]
    NoKey,
    #[error(transparent)]
    Frame(#[from] SframeError),
}

#[derive(Debug, Clone)]
struct Person {
    role: Role,
    device_key: Option<[u8; 32]>,
    /// Joining order, for nothing but stable iteration.
    seq: u64,
}

struct Epoch {
    secret: RoomSecret,
    /// Secrets this epoch number had before (a new leader reused the number): never taken
    /// again, or a replay of one would restart a sealer under a key already used.
    retired: Vec<RoomSecret>,
}

/// Secrets remembered as replaced under one epoch number; a further new one is refused.
const RETIRED_KEPT: usize = 8;

/// The leader's own bookkeeping for the epoch it made or carries.
struct Leading {
    epoch: u32,
    secret: RoomSecret,
    roster: [u8; 32],
    /// Generations handed out in this epoch, per member.
    gens: HashMap<UserId, u8>,
    /// When each member was last wrapped the current epoch.
    wrapped_ms: HashMap<UserId, u64>,
    /// Members still to wrap the epoch to, at most [`MAX_KEYS_PER_SHARE`] a tick: the
    /// audience first and the stage last, so that a speaker (who seals with a new key as
    /// soon as theirs arrives) is sent it only once every listener has been.
    queue: std::collections::VecDeque<UserId>,
    /// Who is in `queue`, to ask in O(1).
    queued: std::collections::HashSet<UserId>,
    /// The room has been told of the epoch (a `share_key`, even an empty one).
    announced: bool,
    /// The leader seals with the epoch once the queue of its rotation is through.
    switched: bool,
    /// Newcomers wait in the queue until then, to go in one batch.
    flush_due_ms: Option<u64>,
    /// When the room was last looked over for members still without the key: once a
    /// second, not at every message (a storm of thousands would make that quadratic).
    scanned_ms: Option<u64>,
    /// When wraps last went out: at most one share every [`FLUSH_MS`], however many
    /// messages come in meanwhile, so a rotation for thousands never holds the live
    /// session for long.
    flushed_ms: Option<u64>,
    rotated_ms: u64,
    /// A rotation is owed (someone left) and due then.
    rotate_due_ms: Option<u64>,
}

impl Leading {
    fn queued(&self, id: UserId) -> bool {
        self.queued.contains(&id)
    }

    fn push(&mut self, id: UserId) {
        if self.queued.insert(id) {
            self.queue.push_back(id);
        }
    }
}

/// One member's key agent.
pub struct KeyAgent {
    room: String,
    me: UserId,
    agree_secret: [u8; 32],
    agree_public: [u8; 32],
    people: HashMap<UserId, Person>,
    /// Members whose listed device key cannot be wrapped to (not a real X25519 key): left
    /// out, rather than retried at every rotation.
    unwrappable: std::collections::HashSet<UserId>,
    /// Key epochs who holds what (from `key_held`), for re-wraps.
    held: HashMap<UserId, u32>,
    seq: u64,
    epochs: BTreeMap<u32, Epoch>,
    /// My generation in each epoch held.
    my_gen: HashMap<u32, u8>,
    sealer: Option<(u32, Sealer)>,
    openers: HashMap<(UserId, u64), (SenderKey, ReplayWindow)>,
    leading: Option<Leading>,
    /// This device's key made ready for wrapping, once it leads.
    wrapper: Option<wrap::Wrapper>,
    joined_ms: u64,
    status: KeyStatus,
    buf: Vec<u8>,
}

impl KeyAgent {
    /// The agent for `room`, on this device.
    pub fn new(room: &str, device: &DeviceKey, now_ms: u64) -> Self {
        Self {
            room: room.to_string(),
            me: 0,
            agree_secret: device.agree_secret(),
            agree_public: device.public().agree,
            unwrappable: std::collections::HashSet::new(),
            people: HashMap::new(),
            held: HashMap::new(),
            seq: 0,
            epochs: BTreeMap::new(),
            my_gen: HashMap::new(),
            sealer: None,
            openers: HashMap::new(),
            leading: None,
            wrapper: None,
            joined_ms: now_ms,
            status: KeyStatus::default(),
            buf: Vec::with_capacity(1_400),
        }
    }

    pub fn status(&self) -> &KeyStatus {
        &self.status
    }

    /// Takes in one server message; returns the commands to send.
    pub fn on_message(&mut self, message: &ServerMessage, now_ms: u64) -> Vec<ClientCommand> {
        let mut out = Vec::new();
        match message {
            ServerMessage::RoomSnapshot { you, room, .. } => {
                self.me = *you;
                self.people.clear();
                self.held.clear();
                for p in &room.participants {
                    self.add(p);
                }
                if self.status.epoch.is_none() {
                    self.joined_ms = now_ms;
                }
                // A (re)connected leader starts afresh: what it handed out before may not
                // have reached everyone.
                if self.is_leader() {
                    self.leading = None;
                }
            }
            ServerMessage::ParticipantJoined { participant } => {
                self.add(participant);
                if let Some(lead) = &mut self.leading
                    && participant.id != self.me
                {
                    lead.push(participant.id);
                    lead.flush_due_ms.get_or_insert(now_ms + FLUSH_MS);
                }
            }
            ServerMessage::ParticipantLeft { user_id, .. } => {
                self.people.remove(user_id);
                self.held.remove(user_id);
                // Their replay windows stay until their epochs go: a leave and a rejoin
                // (which a server can fake) must not open the way to replaying old frames.
                if let Some(lead) = &mut self.leading {
                    if lead.queued.remove(user_id) {
                        lead.queue.retain(|id| id != user_id);
                    }
                    let due = now_ms.max(lead.rotated_ms + ROTATE_MIN_MS);
                    lead.rotate_due_ms = Some(lead.rotate_due_ms.map_or(due, |d| d.min(due)));
                }
            }
            ServerMessage::RoleChanged { user_id, role, .. } => {
                if let Some(p) = self.people.get_mut(user_id) {
                    p.role = *role;
                }
            }
            ServerMessage::KeyHeld { user_id, epoch } => {
                self.held.insert(*user_id, *epoch);
            }
            ServerMessage::Key {
                from,
                epoch,
                sealed,
            } => {
                if let Some(command) = self.take_key(*from, *epoch, sealed) {
                    out.push(command);
                }
            }
            _ => {}
        }
        out.extend(self.tick(now_ms));
        out
    }

    /// Timers: leadership, rotations, newcomers' wraps, re-wraps. Call every
    /// [`FLUSH_MS`] or so while in a private room.
    pub fn tick(&mut self, now_ms: u64) -> Vec<ClientCommand> {
        let mut out = Vec::new();
        let leader = self.leader();
        self.status.leader = leader;
        let leading_now = leader.is_some() && leader == Some(self.me) && self.me != 0;
        if !leading_now {
            self.leading = None;
        } else if self.leading.is_none() {
            // Taking over (or starting the room): a new epoch for everyone.
            out.extend(self.rotate(now_ms));
        } else if let Some(lead) = &self.leading {
            // Not while the last rotation's wraps are still going out (a big room on a
            // slow leader): cutting it short would leave the stage, wrapped last, behind.
            let rotate = lead.switched
                && (lead.rotate_due_ms.is_some_and(|due| now_ms >= due)
                    || now_ms >= lead.rotated_ms + ROTATE_EVERY_MS);
            if rotate {
                out.extend(self.rotate(now_ms));
            } else {
                out.extend(self.flush(now_ms));
            }
        }
        self.status.leading = self.leading.is_some();
        self.status.waiting = if self.status.epoch.is_some() {
            None
        } else if now_ms.saturating_sub(self.joined_ms) < KEY_WAIT_MS {
            Some("waiting for the room key".into())
        } else if leader.is_none() {
            Some(
                "no key yet: no host is here to hand out the room key; audio stays silent until one is"
                    .into(),
            )
        } else {
            Some(format!(
                "no key yet after {} s: the host's client has not sent one (it may not support private rooms); audio stays silent until it does",
                now_ms.saturating_sub(self.joined_ms) / 1_000
            ))
        };
        out
    }

    /// Seals an outgoing frame; a private room sends nothing in the clear.
    pub fn seal(&mut self, frame: &AudioFrame) -> Result<AudioFrame, Unsent> {
        let Some((_, sealer)) = &mut self.sealer else {
            return Err(Unsent::NoKey);
        };
        let metadata = metadata(self.me, frame);
        self.buf.clear();
        sealer.seal(&metadata, frame.opus(), &mut self.buf)?;
        AudioFrame::new(frame.header, &self.buf).map_err(|_| Unsent::Frame(SframeError::TooLong))
    }

    /// Opens an incoming frame: the same frame with the Opus packet in the clear.
    pub fn open(&mut self, frame: &AudioFrame) -> Result<AudioFrame, Dropped> {
        let sender = frame.header.speaker_id;
        if !self.people.get(&sender).is_some_and(|p| p.role.on_stage()) {
            return Err(Dropped::NotOnStage(sender));
        }
        let payload = frame.opus();
        let (header, header_len) = Header::parse(payload)?;
        let epoch = (header.kid >> 4) as u32;
        let key_id = (sender, header.kid);
        let fresh = !self.openers.contains_key(&key_id);
        if fresh {
            let Some(keys) = self.epochs.get(&epoch) else {
                return Err(Dropped::NoKey(epoch));
            };
            let key = SenderKey::derive(header.kid, &sender_base(&keys.secret, sender));
            self.openers.insert(key_id, (key, ReplayWindow::new()));
        }
        let Some((key, window)) = self.openers.get_mut(&key_id) else {
            return Err(Dropped::NoKey(epoch));
        };
        window.ensure_fresh(header.ctr)?;
        self.buf.clear();
        let opened = sframe::open(
            key,
            &header,
            header_len,
            &metadata(sender, frame),
            payload,
            &mut self.buf,
        );
        match opened {
            Ok(()) => window.mark(header.ctr),
            Err(e) => {
                // A key made for a frame that did not open is not kept: a hostile sender
                // cannot fill the table with made-up key ids.
                if fresh {
                    self.openers.remove(&key_id);
                }
                return Err(e.into());
            }
        }
        AudioFrame::new(frame.header, &self.buf).map_err(|_| Dropped::Frame(SframeError::TooLong))
    }

    fn add(&mut self, p: &Participant) {
        self.seq += 1;
        let device_key = p
            .device_key
            .as_deref()
            .and_then(identity::unb64)
            .and_then(|b| <[u8; 32]>::try_from(b).ok());
        // A new device (or the same one again) gets a fresh try.
        self.unwrappable.remove(&p.id);
        self.people.insert(
            p.id,
            Person {
                role: p.role,
                device_key,
                seq: self.seq,
            },
        );
        // As the room says now: a new device holds nothing yet.
        match p.key_epoch {
            Some(epoch) => self.held.insert(p.id, epoch),
            None => self.held.remove(&p.id),
        };
    }

    /// The host: the one client that hands out keys.
    fn leader(&self) -> Option<UserId> {
        self.people
            .iter()
            .find(|(_, p)| p.role == Role::Host)
            .map(|(id, _)| *id)
    }

    fn is_leader(&self) -> bool {
        self.me != 0 && self.leader() == Some(self.me)
    }

    /// A new epoch, for everyone in the room: the wraps go out from this tick on (see
    /// [`Leading::queue`]); the leader seals with it once they all have.
    fn rotate(&mut self, now_ms: u64) -> Vec<ClientCommand> {
        // Past the newest this client holds and the newest anyone says they hold (a new
        // host may not have had the last one), so that members take it as new; claims
        // past the largest epoch are ignored (they are the server's word), and so the
        // numbers never run out.
        // A leader taking over skips a number: the old leader may have started one it
        // never finished handing out, and members' claims of it may still be on the way.
        let own = self.epochs.keys().next_back().copied().unwrap_or(0);
        // Claims past half the numbers are the server's word (2^19 rotations, one every
        // 2 s at most, are twelve days) and ignored.
        let newest_claimed = self
            .held
            .values()
            .copied()
            .filter(|e| *e < MAX_EPOCH / 2)
            .max()
            .unwrap_or(0);
        let base = own.max(newest_claimed);
        let step = if self.leading.is_none() && base > 0 {
            2
        } else {
            1
        };
        // Claims that would run the numbers out are the server's word and ignored.
        let epoch = match base.saturating_add(step) {
            next if next < MAX_EPOCH => next,
            _ => own.saturating_add(1).min(MAX_EPOCH - 1),
        };
        let secret = wrap::new_secret();
        // (on stage, joining order, id, key): the audience first.
        let mut members: Vec<(bool, u64, UserId, [u8; 32])> = self
            .people
            .iter()
            .filter_map(|(id, p)| Some((p.role.on_stage(), p.seq, *id, p.device_key?)))
            .collect();
        members.sort_unstable();
        let holders: Vec<(u32, [u8; 32])> = members.iter().map(|(_, _, id, k)| (*id, *k)).collect();
        let roster = wrap::roster_digest(&self.room, epoch, &holders);
        let mut gens = HashMap::new();
        gens.insert(self.me, 0);
        self.leading = Some(Leading {
            epoch,
            secret,
            roster,
            gens,
            wrapped_ms: HashMap::new(),
            queue: members
                .iter()
                .map(|(_, _, id, _)| *id)
                .filter(|id| *id != self.me && !self.unwrappable.contains(id))
                .collect(),
            queued: members
                .iter()
                .map(|(_, _, id, _)| *id)
                .filter(|id| *id != self.me && !self.unwrappable.contains(id))
                .collect(),
            announced: false,
            switched: false,
            flush_due_ms: Some(now_ms),
            flushed_ms: None,
            scanned_ms: Some(now_ms),
            rotated_ms: now_ms,
            rotate_due_ms: None,
        });
        // Kept for opening at once (a speaker may switch before the leader does).
        self.keep(epoch, secret);
        self.flush(now_ms)
    }

    /// The next wraps from the queue, re-wraps to those still without the current key,
    /// and the leader's own switch once a rotation's wraps are all out.
    fn flush(&mut self, now_ms: u64) -> Vec<ClientCommand> {
        let Some(mut lead) = self.leading.take() else {
            return Vec::new();
        };
        let epoch = lead.epoch;
        let scan = lead.scanned_ms.is_none_or(|at| now_ms >= at + 1_000);
        if scan {
            lead.scanned_ms = Some(now_ms);
        }
        for (id, p) in self.people.iter().filter(|_| scan) {
            let behind = self.held.get(id).is_none_or(|held| *held < epoch);
            let last = lead.wrapped_ms.get(id).copied();
            if *id != self.me
                && p.device_key.is_some()
                && !self.unwrappable.contains(id)
                && behind
                && last.is_some_and(|at| now_ms >= at + REWRAP_MS)
                && lead.gens.get(id).is_none_or(|g| *g < REWRAPS)
                && !lead.queued(*id)
            {
                lead.push(*id);
                lead.flush_due_ms.get_or_insert(now_ms);
            }
        }
        let mut keys = Vec::new();
        let mut exhausted = false;
        let paced = lead.flushed_ms.is_none_or(|at| now_ms >= at + FLUSH_MS);
        if paced && lead.flush_due_ms.is_some_and(|at| now_ms >= at) {
            lead.flushed_ms = Some(now_ms);
            while keys.len() < MAX_KEYS_PER_SHARE {
                let Some(id) = lead.queue.pop_front() else {
                    break;
                };
                lead.queued.remove(&id);
                let Some(key) = self.people.get(&id).and_then(|p| p.device_key) else {
                    continue;
                };
                match self.wrap_for(&mut lead, id, &key) {
                    Ok(wrapped) => {
                        lead.wrapped_ms.insert(id, now_ms);
                        keys.push(wrapped);
                    }
                    Err(Unwrapped::Exhausted) => exhausted = true,
                    // Left out, not retried: a rotation would not mend their key.
                    Err(Unwrapped::BadKey) => {
                        self.unwrappable.insert(id);
                    }
                }
            }
            if lead.queue.is_empty() {
                lead.flush_due_ms = None;
            }
        }
        if exhausted {
            lead.rotate_due_ms = Some(now_ms.max(lead.rotated_ms + ROTATE_MIN_MS));
        }
        let mut out = Vec::new();
        if !keys.is_empty() || !lead.announced {
            lead.announced = true;
            out.extend(share_commands(epoch, keys));
        }
        if !lead.switched && lead.queue.is_empty() {
            lead.switched = true;
            let (secret, roster, mine) = (lead.secret, lead.roster, self.agree_public);
            self.install(epoch, secret, roster, 0, &mine);
            // The leader holds it too (after the share, which tells the room it exists).
            out.push(ClientCommand::KeyHeld { epoch });
        }
        self.leading = Some(lead);
        out
    }

    /// One member's wrap, with their next generation.
    fn wrap_for(
        &mut self,
        lead: &mut Leading,
        to: UserId,
        key: &[u8; 32],
    ) -> Result<WrappedKey, Unwrapped> {
        let next = lead.gens.get(&to).map_or(0, |g| g + 1);
        if next >= GEN_LIMIT {
            return Err(Unwrapped::Exhausted);
        }
        let payload = KeyPayload {
            secret: lead.secret,
            roster: lead.roster,
            r#gen: next,
        };
        let context = KeyContext {
            room: &self.room,
            epoch: lead.epoch,
            sender: self.me,
            recipient: to,
        };
        let wrapper = match &self.wrapper {
            Some(wrapper) => wrapper,
            None => self
                .wrapper
                .insert(wrap::Wrapper::new(&self.agree_secret).map_err(|_| Unwrapped::BadKey)?),
        };
        match wrapper.wrap(key, &context, &payload) {
            Ok(sealed) => {
                lead.gens.insert(to, next);
                Ok(WrappedKey {
                    to,
                    sealed: identity::b64(&sealed),
                })
            }
            Err(e) => {
                tracing::warn!(user = to, "cannot wrap the room key to their device: {e}");
                Err(Unwrapped::BadKey)
            }
        }
    }

    /// A key from a moderator's client: opened, kept, and announced.
    fn take_key(&mut self, from: UserId, epoch: u32, sealed: &str) -> Option<ClientCommand> {
        let refused = |why: String| Some(why);
        let problem = match self.people.get(&from) {
            None => refused(format!("a key from user {from}, who is not in the room")),
            // Only the key leader (the host) hands out keys: any moderator's would let one
            // device the server lists (a moderator "on another device") key the room.
            Some(p) if p.role != Role::Host => {
                refused(format!("a key from user {from}, who is not the host"))
            }
            Some(_) if epoch >= MAX_EPOCH => refused(format!(
                "a key of epoch {epoch}, past the largest ({MAX_EPOCH})"
            )),
            Some(Person {
                device_key: None, ..
            }) => refused(format!(
                "a key from user {from}, whose device key is unknown"
            )),
            Some(Person {
                device_key: Some(sender_key),
                ..
            }) => {
                let context = KeyContext {
                    room: &self.room,
                    epoch,
                    sender: from,
                    recipient: self.me,
                };
                match identity::unb64(sealed)
                    .ok_or(WrapError::Truncated { len: 0 })
                    .and_then(|bytes| {
                        wrap::unwrap(&self.agree_secret, sender_key, &context, &bytes)
                    }) {
                    Ok(payload) => {
                        // Only ever forward: a generation of this epoch's secret already had
                        // (or gone past) is a replay, and taking it would start a sealer
                        // over under a key id already used, reusing AES-GCM nonces. (Another
                        // secret under the same epoch number, from a new leader, is new.)
                        if self.epochs.get(&epoch).is_some_and(|e| {
                            e.retired.contains(&payload.secret)
                                || (e.secret != payload.secret && e.retired.len() >= RETIRED_KEPT)
                        }) {
                            self.status.problem = Some(format!(
                                "a key of epoch {epoch} that was replaced before came again"
                            ));
                            return None;
                        }
                        let same_secret = self
                            .epochs
                            .get(&epoch)
                            .is_some_and(|e| e.secret == payload.secret);
                        if same_secret
                            && self
                                .my_gen
                                .get(&epoch)
                                .is_some_and(|had| payload.r#gen <= *had)
                        {
                            return None;
                        }
                        let leader_key = *sender_key;
                        self.install(
                            epoch,
                            payload.secret,
                            payload.roster,
                            payload.r#gen,
                            &leader_key,
                        );
                        self.status.problem = None;
                        return Some(ClientCommand::KeyHeld {
                            epoch: self.status.epoch.unwrap_or(epoch),
                        });
                    }
                    Err(e) => refused(format!("a key from user {from} did not open: {e}")),
                }
            }
        };
        if let Some(problem) = &problem {
            tracing::warn!("room key refused: {problem}");
        }
        self.status.problem = problem;
        None
    }

    /// Keeps an epoch's secret for opening only (the leader's, until its wraps are out).
    fn keep(&mut self, epoch: u32, secret: RoomSecret) {
        self.store(epoch, secret);
        self.prune();
    }

    /// Keeps `secret` as epoch `epoch`'s, retiring a different one it had.
    fn store(&mut self, epoch: u32, secret: RoomSecret) {
        let mut retired = Vec::new();
        if let Some(old) = self.epochs.remove(&epoch) {
            retired = old.retired;
            if old.secret != secret {
                retired.push(old.secret);
            }
        }
        self.epochs.insert(epoch, Epoch { secret, retired });
    }

    fn prune(&mut self) {
        while self.epochs.len() > EPOCHS_KEPT {
            if let Some((&old, _)) = self.epochs.iter().next() {
                self.epochs.remove(&old);
                self.my_gen.remove(&old);
                self.openers.retain(|(_, kid), _| (kid >> 4) as u32 != old);
            }
        }
    }

    /// Keeps an epoch's secret; the newest is the one to send with.
    ///
    /// `leader_key` is the device key of the leader who wrapped it, as this client was told:
    /// it is part of the safety code, so that a server which gave this member a key of its
    /// own for the leader (as it must, to read and re-wrap the room key to them) shows them
    /// a code nobody else has.
    fn install(
        &mut self,
        epoch: u32,
        secret: RoomSecret,
        roster: [u8; 32],
        generation: u8,
        leader_key: &[u8; 32],
    ) {
        // A re-sent key for an epoch held (a reconnect) replaces it: the new generation
        // is what this client must seal with now. Another secret under the same number
        // (a new leader) replaces the openers, and the sealer below.
        let changed = self
            .epochs
            .get(&epoch)
            .is_some_and(|old| old.secret != secret);
        if changed {
            self.openers
                .retain(|(_, kid), _| (kid >> 4) as u32 != epoch);
        }
        self.store(epoch, secret);
        self.my_gen.insert(epoch, generation);
        self.prune();
        let newest = self.epochs.keys().next_back().copied();
        if newest == Some(epoch) {
            let kid = key_id(epoch, generation);
            let restart = changed
                || self
                    .sealer
                    .as_ref()
                    .is_none_or(|(_, sealer)| sealer.kid() != kid);
            if restart {
                let base = sender_base(&secret, self.me);
                // From a random point below 2^31: another run of this client handed the same
                // key again (by a server replaying an old wrap) counts elsewhere.
                let first = u64::from(rand::random::<u32>() >> 1);
                let key = SenderKey::derive(kid, &base);
                self.sealer = Some((epoch, Sealer::starting_at(key, first)));
            }
            let mut bound = roster.to_vec();
            bound.extend_from_slice(leader_key);
            let bound = identity::sha256(&bound);
            self.status.epoch = Some(epoch);
            self.status.safety_code = Some(wrap::safety_code(&self.room, epoch, &secret, &bound));
            self.status.waiting = None;
        }
    }
}

/// Why a member got no wrap.
enum Unwrapped {
    /// They have had every generation of this epoch: a rotation is owed.
    Exhausted,
    /// Their listed device key is not one a key can be wrapped to.
    BadKey,
}

/// The SFrame key id of an epoch and generation.
pub fn key_id(epoch: u32, generation: u8) -> u64 {
    (u64::from(epoch) << 4) | u64::from(generation & 0x0f)
}

/// The base key of one sender's frames in one epoch.
fn sender_base(secret: &RoomSecret, sender: UserId) -> [u8; 32] {
    let hkdf = Hkdf::<Sha256>::new(Some(b"hallway sender key v1"), secret);
    let mut base = [0u8; 32];
    // 32 bytes is well within HKDF-SHA256's limit (8,160), so this cannot fail.
    let _ = hkdf.expand(&sender.to_be_bytes(), &mut base);
    base
}

/// What a frame's seal covers besides its payload: who sent it (the server stamps the id
/// on the way, so the sender's own id stands in for it) and the rest of its header.
fn metadata(sender: UserId, frame: &AudioFrame) -> [u8; 14] {
    let h = &frame.header;
    let mut m = [0u8; 14];
    m[..4].copy_from_slice(&sender.to_be_bytes());
    m[4..8].copy_from_slice(&h.sequence.to_be_bytes());
    m[8..12].copy_from_slice(&h.timestamp_48k.to_be_bytes());
    m[12] = h.level;
    m[13] = u8::from(h.voice);
    m
}

/// `share_key` commands of at most [`MAX_KEYS_PER_SHARE`] wraps each; one even with none,
/// for a new epoch: it tells the room the epoch exists.
fn share_commands(epoch: u32, keys: Vec<WrappedKey>) -> Vec<ClientCommand> {
    if keys.is_empty() {
        return vec![ClientCommand::ShareKey {
            epoch,
            keys: Vec::new(),
        }];
    }
    keys.chunks(MAX_KEYS_PER_SHARE)
        .map(|chunk| ClientCommand::ShareKey {
            epoch,
            keys: chunk.to_vec(),
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    //! Agents of a whole room, wired through the real room rules (`server::room`): each
    //! command an agent returns goes to the room, and what the room says goes to the
    //! agents it addresses, as the server and the live session do.
    use std::collections::VecDeque;

    use super::*;
    use crate::protocol::control::LeaveReason;
    use crate::protocol::{AudioHeader, User};
    use crate::server::room::{Addressed, Delivery, Room, RoomLimits};

    const HOST: UserId = 1;

    struct Net {
        room: Room,
        agents: HashMap<UserId, KeyAgent>,
        now: u64,
        /// Every command each member sent, in order, with when.
        sent: Vec<(u64, UserId, ClientCommand)>,
        /// Each member's device.
        devices: HashMap<UserId, DeviceKey>,
    }

    impl Net {
        fn new() -> Self {
            let mut room = Room::new("r1".into(), "t".into(), HOST, 0, RoomLimits::default());
            room.make_private(None);
            let mut net = Self {
                room,
                agents: HashMap::new(),
                now: 0,
                sent: Vec::new(),
                devices: HashMap::new(),
            };
            net.join(HOST);
            net
        }

        fn join(&mut self, id: UserId) {
            let device = DeviceKey::generate();
            let user = User {
                id,
                handle: format!("u{id}"),
                name: format!("User {id}"),
            };
            let key = identity::b64(&device.public().agree);
            let out = self
                .room
                .join_with_device(&user, Some(key), self.now)
                .unwrap();
            self.agents
                .insert(id, KeyAgent::new("r1", &device, self.now));
            self.devices.insert(id, device);
            self.deliver(out);
        }

        fn leave(&mut self, id: UserId) {
            let out = self.room.depart(id, LeaveReason::Left, self.now);
            self.deliver(out);
        }

        fn command(&mut self, id: UserId, command: ClientCommand) {
            let out = self.room.command(id, &command, self.now).unwrap();
            self.deliver(out);
        }

        /// Delivers the room's messages, and the commands they prompt, until all is quiet.
        fn deliver(&mut self, out: Vec<Delivery>) {
            let mut queue: VecDeque<Vec<Delivery>> = VecDeque::from([out]);
            while let Some(out) = queue.pop_front() {
                for addressed in self.room.address(out) {
                    let Addressed::Message { to, message } = addressed else {
                        continue;
                    };
                    let mut ids: Vec<UserId> = self.agents.keys().copied().collect();
                    ids.sort_unstable();
                    for id in ids {
                        if !to.includes(id) || !self.room.contains(id) {
                            continue;
                        }
                        let Some(agent) = self.agents.get_mut(&id) else {
                            continue;
                        };
                        for command in agent.on_message(&message, self.now) {
                            self.sent.push((self.now, id, command.clone()));
                            queue.push_back(self.room.command(id, &command, self.now).unwrap());
                        }
                    }
                }
            }
        }

        /// Moves the clock on, running every agent's timers on the way (every 50 ms).
        fn run_for(&mut self, ms: u64) {
            let end = self.now + ms;
            while self.now < end {
                self.now = (self.now + FLUSH_MS).min(end);
                let mut ids: Vec<UserId> = self.agents.keys().copied().collect();
                ids.sort_unstable();
                for id in ids {
                    if !self.room.contains(id) {
                        continue;
                    }
                    let commands = self.agents.get_mut(&id).unwrap().tick(self.now);
                    for command in commands {
                        self.sent.push((self.now, id, command.clone()));
                        let out = self.room.command(id, &command, self.now).unwrap();
                        self.deliver(out);
                    }
                }
            }
        }

        fn agent(&mut self, id: UserId) -> &mut KeyAgent {
            self.agents.get_mut(&id).unwrap()
        }

        /// A frame from `speaker` as the server forwards it: sealed by its agent, then
        /// stamped with its id.
        fn speak(&mut self, speaker: UserId, sequence: u32) -> Option<AudioFrame> {
            let plain = plain(sequence);
            let sealed = self.agent(speaker).seal(&plain).ok()?;
            Some(sealed.stamped(speaker))
        }

        /// Each epoch handed out, with when it first was.
        fn rotations(&self) -> Vec<(u32, u64)> {
            let mut epochs: Vec<(u32, u64)> = self
                .sent
                .iter()
                .filter_map(|(at, _, c)| match c {
                    ClientCommand::ShareKey { epoch, .. } => Some((*epoch, *at)),
                    _ => None,
                })
                .collect();
            epochs.dedup_by_key(|(epoch, _)| *epoch);
            epochs
        }

        fn epochs(&self) -> Vec<u32> {
            self.rotations().into_iter().map(|(e, _)| e).collect()
        }
    }

    fn payload(sequence: u32) -> Vec<u8> {
        let mut p = vec![0xfc];
        p.extend_from_slice(&sequence.to_be_bytes());
        p.extend_from_slice(b"opus payload");
        p
    }

    fn plain(sequence: u32) -> AudioFrame {
        let header = AudioHeader {
            speaker_id: 0,
            sequence,
            timestamp_48k: sequence * 960,
            level: 30,
            voice: true,
        };
        AudioFrame::new(header, &payload(sequence)).unwrap()
    }

    fn opens(net: &mut Net, listener: UserId, frame: &AudioFrame) -> Result<Vec<u8>, Dropped> {
        net.agent(listener).open(frame).map(|f| f.opus().to_vec())
    }

    #[test]
    fn everyone_gets_the_key_and_hears_the_host_with_one_safety_code() {
        let mut net = Net::new();
        net.join(2);
        net.join(3);
        net.run_for(200);
        let codes: Vec<_> = [HOST, 2, 3]
            .iter()
            .map(|id| net.agent(*id).status().safety_code.clone())
            .collect();
        assert!(codes[0].is_some(), "{:?}", net.agent(HOST).status());
        assert!(codes.iter().all(|c| *c == codes[0]), "{codes:?}");
        assert_eq!(net.agent(2).status().leader, Some(HOST));
        assert!(net.agent(HOST).status().leading);
        let frame = net.speak(HOST, 7).unwrap();
        assert_ne!(frame.opus(), &payload(7)[..], "sealed on the wire");
        assert!(frame.opus().len() <= payload(7).len() + sframe::MAX_OVERHEAD);
        for listener in [2, 3] {
            assert_eq!(opens(&mut net, listener, &frame).unwrap(), payload(7));
        }
        // Everyone said they hold it, and the room shows it.
        let detail = net.room.detail();
        assert!(
            detail.participants.iter().all(|p| p.key_epoch == Some(1)),
            "{:?}",
            detail.participants
        );
    }

    #[test]
    fn a_leave_rotates_and_who_left_cannot_open_what_follows() {
        let mut net = Net::new();
        net.join(2);
        net.join(3);
        net.run_for(200);
        let before = net.speak(HOST, 1).unwrap();
        assert!(opens(&mut net, 3, &before).is_ok());
        net.leave(3);
        net.run_for(ROTATE_MIN_MS + 100);
        assert_eq!(net.agent(HOST).status().epoch, Some(2));
        assert_eq!(net.agent(2).status().epoch, Some(2));
        let after = net.speak(HOST, 2).unwrap();
        assert_eq!(opens(&mut net, 2, &after).unwrap(), payload(2));
        // Number 3 kept its agent (and so every key it was given): still nothing.
        assert_eq!(opens(&mut net, 3, &after), Err(Dropped::NoKey(2)));
        let gone = net.agent(3).status().safety_code.clone();
        assert_ne!(gone, net.agent(2).status().safety_code);
    }

    #[test]
    fn leaves_close_together_share_one_rotation_and_keys_rotate_anyway() {
        let mut net = Net::new();
        for id in 2..=6 {
            net.join(id);
        }
        net.run_for(ROTATE_MIN_MS + 100);
        assert_eq!(net.epochs(), vec![1]);
        // The first leave rotates at once; the two soon after wait for the bound, and
        // share one rotation.
        net.leave(4);
        net.run_for(100);
        net.leave(5);
        net.run_for(100);
        net.leave(6);
        net.run_for(ROTATE_MIN_MS + 100);
        let rotations = net.rotations();
        assert_eq!(net.epochs(), vec![1, 2, 3], "{rotations:?}");
        assert!(
            rotations[2].1 - rotations[1].1 >= ROTATE_MIN_MS,
            "{rotations:?}"
        );
        net.run_for(ROTATE_EVERY_MS);
        assert_eq!(net.epochs(), vec![1, 2, 3, 4], "and one every five minutes");
        assert_eq!(net.agent(2).status().epoch, Some(4));
    }

    #[test]
    fn a_join_costs_the_leader_one_wrap() {
        let mut net = Net::new();
        net.join(2);
        net.run_for(200);
        let shares = |net: &Net| {
            net.sent
                .iter()
                .filter_map(|(_, _, c)| match c {
                    ClientCommand::ShareKey { keys, .. } => Some(keys.len()),
                    _ => None,
                })
                .sum::<usize>()
        };
        let before = shares(&net);
        net.join(3);
        net.run_for(200);
        assert_eq!(shares(&net) - before, 1);
        assert_eq!(net.agent(3).status().epoch, Some(1));
        assert_eq!(net.epochs(), vec![1], "no rotation for a join");
    }

    #[test]
    fn a_big_rotation_goes_out_in_shares_audience_first_and_the_leader_switches_last() {
        let mut net = Net::new();
        for id in 2..=600 {
            net.join(id);
        }
        net.command(HOST, ClientCommand::InviteToSpeak { user_id: 5 });
        net.command(5, ClientCommand::AcceptInvite);
        net.run_for(ROTATE_MIN_MS + 500);
        let before = net.sent.len();
        net.leave(600);
        let kid_epoch = |f: &AudioFrame| (Header::parse(f.opus()).unwrap().0.kid >> 4) as u32;
        let mut leader_epochs = Vec::new();
        for _ in 0..10 {
            net.run_for(FLUSH_MS);
            let frame = net.speak(HOST, 1).unwrap();
            leader_epochs.push(kid_epoch(&frame));
        }
        let shares: Vec<Vec<UserId>> = net.sent[before..]
            .iter()
            .filter_map(|(_, _, c)| match c {
                ClientCommand::ShareKey { epoch: 2, keys } => {
                    Some(keys.iter().map(|k| k.to).collect())
                }
                _ => None,
            })
            .collect();
        assert!(shares.len() >= 3, "{} shares", shares.len());
        assert!(shares.iter().all(|s| s.len() <= MAX_KEYS_PER_SHARE));
        let order: Vec<UserId> = shares.concat();
        assert_eq!(order.len(), 598, "everyone but the leader and who left");
        assert_eq!(order.last(), Some(&5), "the speaker is sent the key last");
        // The leader goes on with the old key until every wrap is out, then switches.
        assert_eq!(leader_epochs[0], 1, "{leader_epochs:?}");
        assert_eq!(leader_epochs.last(), Some(&2), "{leader_epochs:?}");
        let frame = net.speak(5, 1).unwrap();
        assert_eq!(kid_epoch(&frame), 2);
        assert_eq!(opens(&mut net, 77, &frame).unwrap(), payload(1));
    }

    #[test]
    fn the_next_host_takes_over_and_no_frame_is_lost() {
        let mut net = Net::new();
        net.join(2);
        net.join(3);
        net.join(4);
        net.run_for(200);
        net.command(HOST, ClientCommand::MakeModerator { user_id: 2 });
        net.command(HOST, ClientCommand::InviteToSpeak { user_id: 4 });
        net.command(4, ClientCommand::AcceptInvite);
        net.run_for(100);
        let mut heard = Vec::new();
        for sequence in 0..200u32 {
            if sequence == 50 {
                net.leave(HOST);
            }
            let frame = net.speak(4, sequence).unwrap();
            heard.push(opens(&mut net, 3, &frame).unwrap());
            net.run_for(20);
        }
        assert_eq!(heard, (0..200).map(payload).collect::<Vec<_>>());
        assert_eq!(net.agent(3).status().leader, Some(2));
        assert!(net.agent(2).status().leading);
        assert!(
            net.agent(3).status().epoch >= Some(2),
            "the new leader rotated: {:?}",
            net.agent(3).status()
        );
    }

    /// The wraps the leader sent to `to`, as the messages `to` received.
    fn keys_sent_to(net: &Net, to: UserId) -> Vec<ServerMessage> {
        net.sent
            .iter()
            .flat_map(|(_, from, c)| match c {
                ClientCommand::ShareKey { epoch, keys } => keys
                    .iter()
                    .filter(|k| k.to == to)
                    .map(|k| ServerMessage::Key {
                        from: *from,
                        epoch: *epoch,
                        sealed: k.sealed.clone(),
                    })
                    .collect(),
                _ => Vec::new(),
            })
            .collect()
    }

    #[test]
    fn a_second_device_gets_the_key_under_a_new_generation_and_replays_change_nothing() {
        let mut net = Net::new();
        net.join(2);
        net.run_for(200);
        net.command(HOST, ClientCommand::InviteToSpeak { user_id: 2 });
        net.command(2, ClientCommand::AcceptInvite);
        let first = net.speak(2, 1).unwrap();
        // The same person from another device, without leaving: the room lists the new
        // device's key and the leader wraps to it.
        let device = DeviceKey::generate();
        net.agents.insert(2, KeyAgent::new("r1", &device, net.now));
        let user = User {
            id: 2,
            handle: "u2".into(),
            name: "User 2".into(),
        };
        let key = identity::b64(&device.public().agree);
        let out = net
            .room
            .join_with_device(&user, Some(key.clone()), net.now)
            .unwrap();
        net.deliver(out);
        net.run_for(200);
        let listed = net.room.detail();
        let me = listed.participants.iter().find(|p| p.id == 2).unwrap();
        assert_eq!(me.device_key.as_deref(), Some(key.as_str()));
        let second = net.speak(2, 1).expect("the new device holds the key");
        let kid = |f: &AudioFrame| Header::parse(f.opus()).unwrap().0.kid;
        assert_ne!(
            kid(&first),
            kid(&second),
            "a new key id, so no counter is reused"
        );
        assert_eq!(opens(&mut net, HOST, &second).unwrap(), payload(1));
        // An older wrap replayed (the server kept it): taken as nothing, the sealer goes on.
        let wraps = keys_sent_to(&net, 2);
        assert!(wraps.len() >= 2, "{wraps:?}");
        let now = net.now;
        for old in &wraps {
            let agent = net.agent(2);
            assert!(agent.on_message(old, now).is_empty());
        }
        let third = net.speak(2, 2).unwrap();
        assert_eq!(kid(&third), kid(&second));
        assert_eq!(opens(&mut net, HOST, &third).unwrap(), payload(2));
    }

    #[test]
    fn a_forged_claim_of_a_huge_epoch_does_not_stop_rotations() {
        let mut net = Net::new();
        net.join(2);
        net.join(3);
        net.run_for(200);
        // The server says someone who stays holds an epoch near the end of the numbers.
        let now = net.now;
        for epoch in [u32::MAX, MAX_EPOCH - 1, MAX_EPOCH - 3] {
            let claim = ServerMessage::KeyHeld { user_id: 2, epoch };
            net.agent(HOST).on_message(&claim, now);
        }
        net.leave(3);
        net.run_for(ROTATE_MIN_MS + 200);
        assert_eq!(net.agent(HOST).status().epoch, Some(2));
        assert_eq!(net.agent(2).status().epoch, Some(2));
    }

    #[test]
    fn a_member_that_never_says_it_holds_the_key_is_wrapped_it_three_times_and_no_rotation() {
        let mut net = Net::new();
        net.join(2);
        // Number 9 is a raw connection: listed with a real key, but no agent answers.
        let device = DeviceKey::generate();
        let user = User {
            id: 9,
            handle: "u9".into(),
            name: "User 9".into(),
        };
        let key = identity::b64(&device.public().agree);
        let out = net
            .room
            .join_with_device(&user, Some(key), net.now)
            .unwrap();
        net.deliver(out);
        net.run_for(60_000);
        assert_eq!(keys_sent_to(&net, 9).len(), 3, "the wrap and two more");
        assert_eq!(net.epochs(), vec![1], "and no rotation");
    }

    #[test]
    fn a_secret_replaced_under_one_epoch_number_is_never_taken_again() {
        let mut net = Net::new();
        net.join(2);
        net.run_for(200);
        let first = keys_sent_to(&net, 2)[0].clone();
        // A key of epoch 1 with another secret, from the host's device (as a new host
        // reusing the number would send it), replaces the first.
        let context = wrap::KeyContext {
            room: "r1",
            epoch: 1,
            sender: HOST,
            recipient: 2,
        };
        let payload = wrap::KeyPayload {
            secret: wrap::new_secret(),
            roster: [0; 32],
            r#gen: 0,
        };
        let sealed = wrap::wrap(
            &net.devices[&HOST].agree_secret(),
            &net.devices[&2].public().agree,
            &context,
            &payload,
        )
        .unwrap();
        let second = ServerMessage::Key {
            from: HOST,
            epoch: 1,
            sealed: identity::b64(&sealed),
        };
        let now = net.now;
        assert_eq!(
            net.agent(2).on_message(&second, now),
            vec![ClientCommand::KeyHeld { epoch: 1 }]
        );
        // The first, replayed: refused, and said.
        assert!(net.agent(2).on_message(&first, now).is_empty());
        let problem = net.agent(2).status().problem.clone().unwrap();
        assert!(problem.contains("replaced before"), "{problem}");
    }

    #[test]
    fn a_member_with_a_key_nothing_can_be_wrapped_to_does_not_make_the_leader_rotate() {
        let mut net = Net::new();
        net.join(2);
        // Number 9 lists an all-zero key (the server accepts any 32 bytes).
        let user = User {
            id: 9,
            handle: "u9".into(),
            name: "User 9".into(),
        };
        let out = net
            .room
            .join_with_device(&user, Some(identity::b64(&[0u8; 32])), net.now)
            .unwrap();
        net.deliver(out);
        net.run_for(ROTATE_MIN_MS * 3);
        assert_eq!(
            net.epochs(),
            vec![1],
            "no rotation for a key that cannot be used"
        );
        assert_eq!(net.agent(2).status().epoch, Some(1));
    }

    #[test]
    fn altered_replayed_and_misattributed_frames_are_dropped() {
        let mut net = Net::new();
        net.join(2);
        net.join(3);
        net.run_for(200);
        net.command(HOST, ClientCommand::InviteToSpeak { user_id: 3 });
        net.command(3, ClientCommand::AcceptInvite);
        let frame = net.speak(HOST, 9).unwrap();
        assert!(opens(&mut net, 2, &frame).is_ok());
        assert!(matches!(
            opens(&mut net, 2, &frame),
            Err(Dropped::Frame(SframeError::Replayed(_)))
        ));
        let mut bytes = frame.opus().to_vec();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let altered = AudioFrame::new(frame.header, &bytes).unwrap();
        assert!(matches!(
            opens(&mut net, 3, &altered),
            Err(Dropped::Frame(SframeError::Decrypt))
        ));
        // The server says it came from another speaker: it does not open.
        let fresh = net.speak(HOST, 10).unwrap();
        let moved = fresh.stamped(3);
        assert!(opens(&mut net, 2, &moved).is_err());
        // A later sequence number stamped on it: the seal covers the header too.
        let fresh = net.speak(HOST, 11).unwrap();
        let mut header = fresh.header;
        header.sequence += 1;
        assert!(opens(&mut net, 2, &fresh.with_header(header)).is_err());
        // Not SFrame at all, from a listener, or from nobody here: dropped, never a panic.
        let junk = AudioFrame::new(frame.header, &[0xff]).unwrap();
        assert!(opens(&mut net, 2, &junk).is_err());
        let as_listener = net.speak(HOST, 12).unwrap().stamped(2);
        assert_eq!(
            opens(&mut net, 3, &as_listener),
            Err(Dropped::NotOnStage(2))
        );
        assert!(opens(&mut net, 2, &frame.stamped(99)).is_err());
    }

    #[test]
    fn a_bad_key_message_is_refused_and_said() {
        let mut net = Net::new();
        net.join(2);
        let agent = net.agent(2);
        let bad = ServerMessage::Key {
            from: HOST,
            epoch: 1,
            sealed: "not a wrapped key".into(),
        };
        assert!(agent.on_message(&bad, 10).is_empty(), "no key_held for it");
        let problem = agent.status().problem.clone().unwrap();
        assert!(problem.contains("did not open"), "{problem}");
        let from_listener = ServerMessage::Key {
            from: 2,
            epoch: 1,
            sealed: identity::b64(&[0u8; wrap::WRAPPED_LEN]),
        };
        agent.on_message(&from_listener, 20);
        let problem = agent.status().problem.clone().unwrap();
        assert!(problem.contains("not the host"), "{problem}");
        assert_eq!(agent.status().epoch, None);
    }

    #[test]
    fn a_member_without_a_key_is_told_why_and_sends_nothing() {
        let device = DeviceKey::generate();
        let mut agent = KeyAgent::new("r1", &device, 0);
        agent.tick(100);
        assert_eq!(
            agent.status().waiting.as_deref(),
            Some("waiting for the room key")
        );
        agent.tick(KEY_WAIT_MS + 1);
        let why = agent.status().waiting.clone().unwrap();
        assert!(why.contains("no host is here"), "{why}");
        assert_eq!(agent.seal(&plain(1)), Err(Unsent::NoKey));
    }
}
