//! A room's chat, reactions and pin (#15) as a pure state machine beside the room rules
//! (`room.rs`), which checks roles and calls in here.
//!
//! The model: every chat line and reaction is *taken* at once (checked, numbered, counted)
//! but *sent* on a pace. A [`Pacer`] lets the first item after a quiet spell go at once and
//! holds the rest until its period has passed since the last send, then all that waited go
//! in one message. So a listener receives at most one `chat` per [`CHAT_EVERY_MS`] and one
//! `reactions` per [`REACTIONS_EVERY_MS`], however many people type or clap.
//!
//! Invariants:
//! - lines are sent in the order taken, each exactly once, unless deleted before sending;
//! - a batch holds at most [`CHAT_BATCH_MAX`] lines: past that the chat is busy and lines
//!   are refused, so one message stays small and the room-wide rate bounded;
//! - a member writes at most [`CHAT_BURST`] lines in a row, then one per
//!   [`CHAT_REFILL_MS`], and each reaction of theirs counts once a window, so one person
//!   cannot inflate the counts or fill the chat;
//! - `shown` names only people everyone is told of (the stage and the front rows), so one
//!   `reactions` message is the same for everyone and at most the size of the stage and
//!   front rows.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use crate::protocol::chat::{
    CHAT_EVERY_MS, CHAT_HISTORY, CLIP_EVERY_MS, ChatLine, ChatPolicy, MAX_CHAT_CHARS,
    MAX_CLIP_SECONDS, MAX_PIN_CHARS, REACTIONS_EVERY_MS, Reacted, Reaction, ReactionCount,
    RoomLife, pin_scheme_refused,
};
use crate::protocol::text::{TextKind, clean_chat, clean_name};
use crate::protocol::{ErrorCode, ServerMessage, UserId};

use super::room::{Delivery, Refusal};

/// The most lines one `chat` batch carries: 50 lines a second room-wide at most.
pub const CHAT_BATCH_MAX: usize = 25;
/// Lines a member may write in a row.
pub const CHAT_BURST: u32 = 5;
/// After the burst, one more line each this long.
pub const CHAT_REFILL_MS: u64 = 2_000;
/// Lines the room keeps (sent ones), for deletions; joiners get the newest
/// [`CHAT_HISTORY`].
const CHAT_KEPT: usize = 200;
/// The server's shortest time between one member's clips: a little under the client's
/// [`CLIP_EVERY_MS`], which counts from the key press while the server counts from the
/// announcement, made once the file is written.
pub const CLIP_SERVER_EVERY_MS: u64 = CLIP_EVERY_MS * 4 / 5;

/// The most lines of one person in one batch: a few people cannot fill a batch alone.
pub const CHAT_BATCH_PER_PERSON: usize = 2;
/// Pin changes (pins and unpins) a room takes in a row, whoever makes them; then one more
/// each [`PIN_REFILL_MS`]. A pin goes to every member (up to 300 characters): without this a
/// moderator at the control rate would send 20 a second to each of thousands.
pub const PIN_BURST: u32 = 5;
pub const PIN_REFILL_MS: u64 = 2_000;

/// Allowances kept for people who left (so leaving and rejoining gives no new burst); past
/// this many, full ones (which a newcomer would get anyway) are dropped.
const ALLOWANCES_KEPT: usize = 10_000;

/// Lets the first of a run go at once and the rest at most once per period.
#[derive(Debug, Clone)]
struct Pacer {
    every_ms: u64,
    told_at_ms: Option<u64>,
    due_ms: Option<u64>,
}

impl Pacer {
    fn new(every_ms: u64) -> Self {
        Self {
            every_ms,
            told_at_ms: None,
            due_ms: None,
        }
    }

    /// Something is ready to send: true when it goes now, else it waits for [`Pacer::due_ms`].
    fn ready(&mut self, now_ms: u64) -> bool {
        if self.due_ms.is_some() {
            return false;
        }
        match self.told_at_ms {
            Some(at) if now_ms < at + self.every_ms => {
                self.due_ms = Some(at + self.every_ms);
                false
            }
            _ => {
                self.told_at_ms = Some(now_ms);
                true
            }
        }
    }

    /// Whether what waited is due now (and, if so, counts it as sent).
    fn take_due(&mut self, now_ms: u64) -> bool {
        if self.due_ms.is_some_and(|due| due <= now_ms) {
            self.due_ms = None;
            self.told_at_ms = Some(now_ms);
            return true;
        }
        false
    }
}

/// A member's chat allowance: a token bucket on the room's clock.
#[derive(Debug, Clone, Copy)]
struct Allowance {
    tokens: u32,
    /// When the next token comes.
    refill_at_ms: u64,
}

impl Allowance {
    fn full(burst: u32, now_ms: u64) -> Self {
        Self {
            tokens: burst,
            refill_at_ms: now_ms,
        }
    }

    /// Takes one of `burst` tokens that come back one per `refill_ms`; when there is
    /// none, how long until the next, in whole seconds.
    fn take(&mut self, burst: u32, refill_ms: u64, now_ms: u64) -> Result<(), u64> {
        if self.tokens < burst && now_ms >= self.refill_at_ms {
            let gained = 1 + (now_ms - self.refill_at_ms) / refill_ms;
            self.tokens = burst.min(self.tokens.saturating_add(gained as u32));
            self.refill_at_ms += gained * refill_ms;
        }
        if self.tokens == 0 {
            return Err(self.refill_at_ms.saturating_sub(now_ms).div_ceil(1_000));
        }
        // The clock starts with the first taken from a full allowance.
        if self.tokens == burst {
            self.refill_at_ms = now_ms + refill_ms;
        }
        self.tokens -= 1;
        Ok(())
    }
}

/// A sent line, kept for deletions and joiners.
#[derive(Debug, Clone)]
struct Kept {
    line: ChatLine,
    deleted: bool,
}

/// What a member is, as far as room life cares.
#[derive(Debug, Clone, Copy)]
pub struct Who {
    pub on_stage: bool,
    pub moderator: bool,
    /// Everyone is told of them (stage or front rows).
    pub listed: bool,
}

/// Chat, reactions and the pin of one room.
#[derive(Debug)]
pub struct Life {
    policy: ChatPolicy,
    kept: VecDeque<Kept>,
    waiting: Vec<ChatLine>,
    next_id: u64,
    chat_pace: Pacer,
    allowance: HashMap<UserId, Allowance>,
    silenced: HashSet<UserId>,
    pinned: Option<String>,
    shown: BTreeMap<UserId, Reaction>,
    counts: BTreeMap<Reaction, u32>,
    counted: HashSet<(UserId, Reaction)>,
    reaction_pace: Pacer,
    /// When each member last announced a clip.
    clipped_at: HashMap<UserId, u64>,
    /// The room's pin changes.
    pin_allowance: Option<Allowance>,
}

impl Default for Life {
    fn default() -> Self {
        Self {
            policy: ChatPolicy::default(),
            kept: VecDeque::new(),
            waiting: Vec::new(),
            next_id: 1,
            chat_pace: Pacer::new(CHAT_EVERY_MS),
            allowance: HashMap::new(),
            silenced: HashSet::new(),
            pinned: None,
            shown: BTreeMap::new(),
            counts: BTreeMap::new(),
            counted: HashSet::new(),
            reaction_pace: Pacer::new(REACTIONS_EVERY_MS),
            clipped_at: HashMap::new(),
            pin_allowance: None,
        }
    }
}

fn refuse<T>(code: ErrorCode, message: impl Into<String>) -> Result<T, Refusal> {
    Err(Refusal {
        code,
        message: message.into(),
    })
}

impl Life {
    /// What a joiner's snapshot shows: the policy, the newest sent lines and the pin.
    pub fn view(&self) -> RoomLife {
        let mut chat_log: Vec<ChatLine> = self
            .kept
            .iter()
            .rev()
            .filter(|k| !k.deleted)
            .take(CHAT_HISTORY)
            .map(|k| k.line.clone())
            .collect();
        chat_log.reverse();
        RoomLife {
            chat: self.policy,
            chat_log,
            pinned: self.pinned.clone(),
        }
    }

    pub fn is_silenced(&self, user: UserId) -> bool {
        self.silenced.contains(&user)
    }

    /// Who may chat.
    pub fn policy(&self) -> ChatPolicy {
        self.policy
    }

    /// What is pinned.
    pub fn pinned(&self) -> Option<&str> {
        self.pinned.as_deref()
    }

    /// Who is silenced (sorted): carried with the room to another node.
    pub fn silenced(&self) -> Vec<UserId> {
        let mut silenced: Vec<UserId> = self.silenced.iter().copied().collect();
        silenced.sort_unstable();
        silenced
    }

    /// A room carried on from another node takes up its chat's rules where they were:
    /// who may chat, who is silenced, the pin. (Lines and reactions are not carried.)
    pub fn restore(&mut self, chat: ChatPolicy, silenced: &[UserId], pinned: Option<String>) {
        self.policy = chat;
        self.silenced.extend(silenced);
        self.pinned = pinned;
    }

    /// When waiting lines or reactions are due: the time to call [`Life::tick`].
    pub fn deadline_ms(&self) -> Option<u64> {
        [self.chat_pace.due_ms, self.reaction_pace.due_ms]
            .into_iter()
            .flatten()
            .min()
    }

    /// A member left. Their allowance and silence stay, for a rejoin; their reaction is
    /// no longer shown; a removed member's lines not yet sent never are.
    pub fn forget(&mut self, user: UserId, removed: bool) {
        self.shown.remove(&user);
        if removed {
            self.waiting.retain(|l| l.user_id != user);
        }
    }

    /// Who wrote line `id`, while the room keeps it.
    pub fn author_of(&self, id: u64) -> Option<UserId> {
        self.waiting
            .iter()
            .find(|l| l.id == id)
            .or_else(|| {
                self.kept
                    .iter()
                    .find(|k| k.line.id == id && !k.deleted)
                    .map(|k| &k.line)
            })
            .map(|l| l.user_id)
    }

    /// Drops the allowances that are full again (a newcomer's), when too many are kept.
    fn prune_allowances(&mut self, now_ms: u64) {
        if self.allowance.len() <= ALLOWANCES_KEPT {
            return;
        }
        self.allowance.retain(|_, a| {
            let gained = if now_ms >= a.refill_at_ms {
                1 + (now_ms - a.refill_at_ms) / CHAT_REFILL_MS
            } else {
                0
            };
            u64::from(a.tokens) + gained < u64::from(CHAT_BURST)
        });
    }

    /// `user` writes `text`.
    pub fn chat(
        &mut self,
        user: UserId,
        who: Who,
        (handle, name): (&str, &str),
        text: &str,
        now_ms: u64,
    ) -> Result<Vec<Delivery>, Refusal> {
        if self.silenced.contains(&user) {
            return refuse(
                ErrorCode::Forbidden,
                "a moderator silenced your chat in this room; you can still listen and react",
            );
        }
        match self.policy {
            ChatPolicy::Everyone => {}
            ChatPolicy::Stage if who.on_stage => {}
            ChatPolicy::Stage => {
                return refuse(
                    ErrorCode::Forbidden,
                    "only the stage may chat in this room (the host's choice); raise your hand to ask to speak",
                );
            }
            ChatPolicy::Nobody => {
                return refuse(
                    ErrorCode::Forbidden,
                    "the chat is closed in this room (the host's choice); what was said stays readable",
                );
            }
        }
        let text = clean_chat(text, MAX_CHAT_CHARS).map_err(|e| Refusal {
            code: ErrorCode::InvalidText,
            message: e.to_string(),
        })?;
        if self.waiting.len() >= CHAT_BATCH_MAX {
            return refuse(
                ErrorCode::RateLimited,
                "the chat is busy right now; send your line again in a moment",
            );
        }
        if self.waiting.iter().filter(|l| l.user_id == user).count() >= CHAT_BATCH_PER_PERSON {
            return refuse(
                ErrorCode::RateLimited,
                "slow down: your last lines have not gone out yet; send this one again in a moment",
            );
        }
        self.prune_allowances(now_ms);
        let allowance = self
            .allowance
            .entry(user)
            .or_insert(Allowance::full(CHAT_BURST, now_ms));
        if let Err(wait_s) = allowance.take(CHAT_BURST, CHAT_REFILL_MS, now_ms) {
            return refuse(
                ErrorCode::RateLimited,
                format!(
                    "slow down: {CHAT_BURST} lines in a row, then one every {} seconds; try again in {wait_s} s",
                    CHAT_REFILL_MS / 1_000
                ),
            );
        }
        let line = ChatLine {
            id: self.next_id,
            user_id: user,
            handle: handle.to_owned(),
            name: name.to_owned(),
            text,
            at_ms: now_ms,
        };
        self.next_id += 1;
        self.waiting.push(line);
        Ok(if self.chat_pace.ready(now_ms) {
            self.send_chat()
        } else {
            Vec::new()
        })
    }

    fn send_chat(&mut self) -> Vec<Delivery> {
        if self.waiting.is_empty() {
            return Vec::new();
        }
        let lines = std::mem::take(&mut self.waiting);
        for line in &lines {
            if self.kept.len() == CHAT_KEPT {
                self.kept.pop_front();
            }
            self.kept.push_back(Kept {
                line: line.clone(),
                deleted: false,
            });
        }
        vec![Delivery::All(ServerMessage::Chat { lines })]
    }

    /// `user` deletes line `id`: their own, or anyone's when `moderator`.
    pub fn delete(
        &mut self,
        user: UserId,
        moderator: bool,
        id: u64,
    ) -> Result<Vec<Delivery>, Refusal> {
        let not_others = || Refusal {
            code: ErrorCode::Forbidden,
            message: "only moderators can delete other people's lines".into(),
        };
        if let Some(pos) = self.waiting.iter().position(|l| l.id == id) {
            if self.waiting[pos].user_id != user && !moderator {
                return Err(not_others());
            }
            // Nobody has seen it: it is simply never sent.
            self.waiting.remove(pos);
            return Ok(Vec::new());
        }
        let Some(kept) = self.kept.iter_mut().find(|k| k.line.id == id && !k.deleted) else {
            return refuse(
                ErrorCode::MessageNotFound,
                format!("there is no chat line {id} in this room (deleted, or too old)"),
            );
        };
        let author = kept.line.user_id;
        if author != user && !moderator {
            return Err(not_others());
        }
        kept.deleted = true;
        Ok(vec![Delivery::All(ServerMessage::ChatDeleted {
            message_id: id,
            by: (author != user).then_some(user),
        })])
    }

    /// A moderator silences `target` (or lets them write again). The room checks ranks and
    /// says who hears of it.
    pub fn silence(&mut self, target: UserId, silenced: bool) -> bool {
        if silenced {
            // What they wrote and is not out yet never goes.
            self.waiting.retain(|l| l.user_id != target);
            self.silenced.insert(target)
        } else {
            self.silenced.remove(&target)
        }
    }

    /// A moderator sets who may write. Lines already taken still go out: they were
    /// accepted (and answered `ok`) under the rule before; a silence or a removal, which
    /// are about the person, drop theirs.
    pub fn set_policy(&mut self, by: UserId, who: ChatPolicy) -> Vec<Delivery> {
        if self.policy == who {
            return Vec::new();
        }
        self.policy = who;
        vec![Delivery::All(ServerMessage::ChatPolicy { who, by })]
    }

    /// A pin change that goes out to everyone: paced by [`PIN_BURST`] and [`PIN_REFILL_MS`].
    fn take_pin_change(&mut self, now_ms: u64) -> Result<(), Refusal> {
        let allowance = self
            .pin_allowance
            .get_or_insert_with(|| Allowance::full(PIN_BURST, now_ms));
        allowance
            .take(PIN_BURST, PIN_REFILL_MS, now_ms)
            .or_else(|wait_s| {
                refuse(
                    ErrorCode::RateLimited,
                    format!(
                        "the pin changed {PIN_BURST} times in a row; it can change again in {wait_s} s"
                    ),
                )
            })
    }

    /// A moderator pins `text`: one line, or an http(s) link.
    pub fn pin(&mut self, by: UserId, text: &str, now_ms: u64) -> Result<Vec<Delivery>, Refusal> {
        let text = clean_name(text, MAX_PIN_CHARS, TextKind::Pin).map_err(|e| Refusal {
            code: ErrorCode::InvalidText,
            message: e.to_string(),
        })?;
        if let Some(why) = pin_scheme_refused(&text) {
            return refuse(ErrorCode::InvalidText, why);
        }
        if self.pinned.as_deref() == Some(text.as_str()) {
            return Ok(Vec::new());
        }
        self.take_pin_change(now_ms)?;
        self.pinned = Some(text.clone());
        Ok(vec![Delivery::All(ServerMessage::Pinned {
            text: Some(text),
            by,
        })])
    }

    /// A moderator takes the pin down.
    pub fn unpin(&mut self, by: UserId, now_ms: u64) -> Result<Vec<Delivery>, Refusal> {
        if self.pinned.is_none() {
            return Ok(Vec::new());
        }
        self.take_pin_change(now_ms)?;
        self.pinned = None;
        Ok(vec![Delivery::All(ServerMessage::Pinned {
            text: None,
            by,
        })])
    }

    /// `user` kept a clip of the last `seconds`: whether they may announce it now (1 to
    /// 30 s, and not within [`CLIP_SERVER_EVERY_MS`] of their last); the room says who
    /// hears of it.
    pub fn clip(&mut self, user: UserId, seconds: u32, now_ms: u64) -> Result<(), Refusal> {
        if seconds == 0 || seconds > MAX_CLIP_SECONDS {
            return refuse(
                ErrorCode::BadRequest,
                format!("a clip is 1 to {MAX_CLIP_SECONDS} seconds"),
            );
        }
        if let Some(at) = self.clipped_at.get(&user)
            && now_ms < at + CLIP_SERVER_EVERY_MS
        {
            return refuse(
                ErrorCode::RateLimited,
                format!(
                    "one clip every {} seconds; wait a moment",
                    CLIP_SERVER_EVERY_MS / 1_000
                ),
            );
        }
        if self.clipped_at.len() > ALLOWANCES_KEPT {
            self.clipped_at
                .retain(|_, at| now_ms < *at + CLIP_SERVER_EVERY_MS);
        }
        self.clipped_at.insert(user, now_ms);
        Ok(())
    }

    /// `user` reacts.
    pub fn react(
        &mut self,
        user: UserId,
        who: Who,
        reaction: Reaction,
        now_ms: u64,
    ) -> Vec<Delivery> {
        if self.counted.insert((user, reaction)) {
            *self.counts.entry(reaction).or_default() += 1;
        }
        if who.listed {
            self.shown.insert(user, reaction);
        }
        if self.reaction_pace.ready(now_ms) {
            self.send_reactions()
        } else {
            Vec::new()
        }
    }

    fn send_reactions(&mut self) -> Vec<Delivery> {
        if self.counts.is_empty() {
            return Vec::new();
        }
        self.counted.clear();
        let shown = std::mem::take(&mut self.shown)
            .into_iter()
            .map(|(user_id, reaction)| Reacted { user_id, reaction })
            .collect();
        let counts = std::mem::take(&mut self.counts)
            .into_iter()
            .map(|(reaction, count)| ReactionCount { reaction, count })
            .collect();
        vec![Delivery::All(ServerMessage::Reactions { shown, counts })]
    }

    /// Time has passed: send what waited.
    pub fn tick(&mut self, now_ms: u64) -> Vec<Delivery> {
        let mut out = Vec::new();
        if self.chat_pace.take_due(now_ms) {
            out.extend(self.send_chat());
        }
        if self.reaction_pace.take_due(now_ms) {
            out.extend(self.send_reactions());
        }
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
    use super::*;

    const LISTENER: Who = Who {
        on_stage: false,
        moderator: false,
        listed: false,
    };
    const SPEAKER: Who = Who {
        on_stage: true,
        moderator: false,
        listed: true,
    };

    /// The chat lines sent to everyone in `out` (the room's tests use it too).
    pub(crate) fn lines(out: &[Delivery]) -> Vec<String> {
        out.iter()
            .flat_map(|d| match d {
                Delivery::All(ServerMessage::Chat { lines }) => {
                    lines.iter().map(|l| l.text.clone()).collect()
                }
                _ => Vec::new(),
            })
            .collect()
    }

    fn say(life: &mut Life, user: UserId, text: &str, now: u64) -> Result<Vec<Delivery>, Refusal> {
        life.chat(user, LISTENER, ("h", "n"), text, now)
    }

    #[test]
    fn the_first_line_goes_at_once_and_the_rest_wait_for_one_batch() {
        let mut life = Life::default();
        assert_eq!(
            lines(&say(&mut life, 1, "hello", 1_000).unwrap()),
            ["hello"]
        );
        assert!(say(&mut life, 2, "two", 1_100).unwrap().is_empty());
        assert!(say(&mut life, 3, "three", 1_200).unwrap().is_empty());
        assert_eq!(life.deadline_ms(), Some(1_000 + CHAT_EVERY_MS));
        assert!(life.tick(1_400).is_empty());
        let out = life.tick(1_500);
        assert_eq!(out.len(), 1, "one message for the batch");
        assert_eq!(lines(&out), ["two", "three"]);
        assert_eq!(life.deadline_ms(), None);
        // Ids follow the order taken; the snapshot shows sent lines only.
        say(&mut life, 4, "four", 1_600).unwrap();
        let ids: Vec<u64> = life.view().chat_log.iter().map(|l| l.id).collect();
        assert_eq!(ids, [1, 2, 3]);
    }

    #[test]
    fn one_member_is_held_to_a_burst_and_the_room_to_a_batch() {
        let mut life = Life::default();
        // Two of one person's lines wait in a batch at most.
        say(&mut life, 1, "one", 1_000).unwrap();
        say(&mut life, 1, "two", 1_001).unwrap();
        say(&mut life, 1, "three", 1_002).unwrap();
        let held = say(&mut life, 1, "four", 1_003).unwrap_err();
        assert_eq!(held.code, ErrorCode::RateLimited);
        assert!(
            held.message.contains("not gone out yet"),
            "{}",
            held.message
        );
        // Then the burst: five lines in all, each batch sent, and the sixth is refused
        // with when to try again.
        let mut now = 1_000;
        for text in ["four", "five"] {
            now += CHAT_EVERY_MS;
            life.tick(now);
            say(&mut life, 1, text, now).unwrap();
        }
        now += CHAT_EVERY_MS;
        life.tick(now);
        let refused = say(&mut life, 1, "six", now).unwrap_err();
        assert_eq!(refused.code, ErrorCode::RateLimited);
        assert!(
            refused.message.contains("try again in 1 s"),
            "{}",
            refused.message
        );
        // Someone else is still served.
        say(&mut life, 2, "hi", now).unwrap();
        // One more line after the refill, and leaving does not give a new burst.
        life.forget(1, false);
        say(&mut life, 1, "later", 1_000 + CHAT_REFILL_MS).unwrap();
        assert_eq!(
            say(
                &mut life,
                1,
                "again",
                1_000 + CHAT_REFILL_MS + CHAT_EVERY_MS
            )
            .unwrap_err()
            .code,
            ErrorCode::RateLimited
        );
        // Many people at once: a batch is bounded, and the busy chat says so.
        let mut life = Life::default();
        say(&mut life, 1, "first", 0).unwrap();
        for user in 0..CHAT_BATCH_MAX as UserId {
            say(&mut life, 100 + user, "x", 10).unwrap();
        }
        let busy = say(&mut life, 999, "x", 10).unwrap_err();
        assert_eq!(busy.code, ErrorCode::RateLimited);
        assert_eq!(lines(&life.tick(CHAT_EVERY_MS)).len(), CHAT_BATCH_MAX);
        say(&mut life, 999, "x", CHAT_EVERY_MS + 1).unwrap();
    }

    #[test]
    fn policy_silence_and_bad_text_are_refused_with_reasons() {
        let mut life = Life::default();
        assert_eq!(
            say(&mut life, 1, " \u{202E} ", 0).unwrap_err().code,
            ErrorCode::InvalidText
        );
        assert_eq!(
            say(&mut life, 1, &"x".repeat(MAX_CHAT_CHARS + 1), 0)
                .unwrap_err()
                .code,
            ErrorCode::InvalidText
        );
        life.set_policy(9, ChatPolicy::Stage);
        assert_eq!(
            say(&mut life, 1, "hi", 0).unwrap_err().code,
            ErrorCode::Forbidden
        );
        life.chat(2, SPEAKER, ("s", "S"), "from the stage", 0)
            .unwrap();
        life.set_policy(9, ChatPolicy::Nobody);
        assert!(life.chat(2, SPEAKER, ("s", "S"), "x", 0).is_err());
        life.set_policy(9, ChatPolicy::Everyone);
        assert!(life.silence(1, true));
        let refused = say(&mut life, 1, "hi", 0).unwrap_err();
        assert!(refused.message.contains("silenced"), "{}", refused.message);
        life.silence(1, false);
        say(&mut life, 1, "hi", 0).unwrap();
    }

    #[test]
    fn deleting_a_sent_line_tells_everyone_and_a_waiting_one_is_never_sent() {
        let mut life = Life::default();
        say(&mut life, 1, "sent", 0).unwrap();
        say(&mut life, 2, "waiting", 10).unwrap();
        assert_eq!(
            life.delete(3, false, 1).unwrap_err().code,
            ErrorCode::Forbidden,
            "not theirs"
        );
        let out = life.delete(1, false, 1).unwrap();
        assert_eq!(
            out,
            [Delivery::All(ServerMessage::ChatDeleted {
                message_id: 1,
                by: None
            })]
        );
        assert!(life.delete(9, true, 2).unwrap().is_empty());
        assert!(life.tick(CHAT_EVERY_MS).is_empty(), "nothing left to send");
        assert_eq!(
            life.delete(1, true, 1).unwrap_err().code,
            ErrorCode::MessageNotFound
        );
        assert!(life.view().chat_log.is_empty());
    }

    #[test]
    fn reactions_are_counted_once_per_person_and_kind_and_sent_once_a_second() {
        let mut life = Life::default();
        let first = life.react(1, SPEAKER, Reaction::Clap, 0);
        assert_eq!(first.len(), 1);
        for i in 0..1_000u32 {
            let who = if i < 3 { SPEAKER } else { LISTENER };
            assert!(
                life.react(10 + i % 500, who, Reaction::Heart, 10)
                    .is_empty()
            );
        }
        // The same person clapping 50 times counts once.
        for _ in 0..50 {
            life.react(1, SPEAKER, Reaction::Laugh, 20);
        }
        let out = life.tick(REACTIONS_EVERY_MS);
        let [Delivery::All(ServerMessage::Reactions { shown, counts })] = out.as_slice() else {
            panic!("one reactions message: {out:?}");
        };
        assert_eq!(
            counts,
            &[
                ReactionCount {
                    reaction: Reaction::Laugh,
                    count: 1
                },
                ReactionCount {
                    reaction: Reaction::Heart,
                    count: 500
                }
            ]
        );
        // Only people everyone sees are named: the three listed ones and the speaker.
        assert_eq!(shown.len(), 4);
        assert!(life.tick(2 * REACTIONS_EVERY_MS).is_empty());
    }

    #[test]
    fn pins_take_one_line_or_an_http_link() {
        let mut life = Life::default();
        assert_eq!(
            life.pin(1, "javascript:alert(1)", 0).unwrap_err().code,
            ErrorCode::InvalidText
        );
        assert_eq!(
            life.pin(1, "line\u{1b}]52;c;x\u{7}", 0).unwrap_err().code,
            ErrorCode::InvalidText
        );
        assert_eq!(
            life.pin(1, "  ", 0).unwrap_err().code,
            ErrorCode::InvalidText
        );
        assert_eq!(
            life.pin(1, "https://example.org/agenda", 0).unwrap().len(),
            1
        );
        assert!(
            life.pin(1, "https://example.org/agenda", 0)
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            life.view().pinned.as_deref(),
            Some("https://example.org/agenda")
        );
        assert_eq!(life.unpin(1, 0).unwrap().len(), 1);
        assert!(life.unpin(1, 0).unwrap().is_empty());
    }

    #[test]
    fn the_pin_changes_a_few_times_in_a_row_then_once_in_a_while() {
        let mut life = Life::default();
        // Refused and unchanged pins cost nothing.
        for _ in 0..10 {
            life.pin(1, "javascript:x", 0).unwrap_err();
        }
        life.pin(1, "one", 0).unwrap();
        assert!(life.pin(1, "one", 0).unwrap().is_empty());
        // Changes, by any moderator: five in a row (the first was "one").
        for (k, by) in [(2, 1), (3, 2), (4, 3)] {
            life.pin(by, &format!("line {k}"), 10).unwrap();
        }
        assert_eq!(life.unpin(2, 20).unwrap().len(), 1);
        let refused = life.pin(3, "sixth", 30).unwrap_err();
        assert_eq!(refused.code, ErrorCode::RateLimited);
        assert!(
            refused.message.contains("again in 2 s"),
            "{}",
            refused.message
        );
        assert_eq!(life.view().pinned, None, "nothing changed");
        // One more each PIN_REFILL_MS.
        life.pin(3, "sixth", PIN_REFILL_MS).unwrap();
        assert_eq!(
            life.pin(1, "seventh", PIN_REFILL_MS + 1).unwrap_err().code,
            ErrorCode::RateLimited
        );
        life.pin(1, "seventh", 2 * PIN_REFILL_MS).unwrap();
    }

    #[test]
    fn clips_are_announced_at_most_once_a_while_per_member_and_within_bounds() {
        let mut life = Life::default();
        assert_eq!(life.clip(1, 0, 0).unwrap_err().code, ErrorCode::BadRequest);
        assert_eq!(
            life.clip(1, MAX_CLIP_SECONDS + 1, 0).unwrap_err().code,
            ErrorCode::BadRequest
        );
        life.clip(1, 30, 1_000).unwrap();
        let again = life
            .clip(1, 30, 1_000 + CLIP_SERVER_EVERY_MS - 1)
            .unwrap_err();
        assert_eq!(again.code, ErrorCode::RateLimited);
        // Someone else is not held back; the first member may again after the interval.
        life.clip(2, 30, 1_001).unwrap();
        life.clip(1, 30, 1_000 + CLIP_SERVER_EVERY_MS).unwrap();
    }
}
