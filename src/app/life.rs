//! A room's chat pane, reactions and pin as this client shows them (#15). The lines
//! themselves live in the [`RoomView`](super::RoomView) (`chat`), kept with the room;
//! this is what the screen adds: whether the pane is open, what is being typed, how many
//! lines came while it was closed, who reacted lately and the pin's link, parsed once.

use std::collections::{HashMap, HashSet};

use crate::protocol::chat::{Reaction, ReactionCount, pin_link};
use crate::protocol::{ServerMessage, UserId};

/// A reaction shows next to its person this long.
pub const REACTION_SHOW_MS: u64 = 3_000;
/// The room's reaction counts show this long after they came.
pub const COUNTS_SHOW_MS: u64 = 3_000;

/// The pin as shown: its text, and its link when it is one http(s) URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinShown {
    pub text: String,
    pub link: Option<String>,
}

impl PinShown {
    fn of(text: Option<&String>) -> Option<Self> {
        text.map(|text| match pin_link(text) {
            // A link is shown as it is serialized: a look-alike host in punycode.
            Some(url) => Self {
                text: url.to_string(),
                link: Some(url.into()),
            },
            None => Self {
                text: text.clone(),
                link: None,
            },
        })
    }
}

/// What the room screen shows besides its people.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LifeScreen {
    /// The chat pane is open.
    pub chat_open: bool,
    /// Writing a line (keys go to it): what is typed so far.
    pub draft: Option<String>,
    /// Lines from others that came while the pane was closed.
    pub unread: usize,
    /// Recent reactions by person, and until when each shows (Unix ms).
    pub reactions: HashMap<UserId, (Reaction, u64)>,
    /// The room's latest reaction counts, and until when they show.
    pub counts: Vec<ReactionCount>,
    pub counts_until_ms: u64,
    pub pin: Option<PinShown>,
    /// The last line sent and the request id its answer names: a refused line comes back
    /// to the box rather than being lost.
    pub sent: Option<(u64, String)>,
    /// A line refused (or maybe lost in a reconnect) while no empty box was open: the
    /// next line started begins with it.
    pub kept: Option<String>,
    /// The last pin sent and its request id; a refused one is kept for the next `P`.
    pub pin_sent: Option<(u64, String)>,
    pub pin_kept: Option<String>,
}

impl LifeScreen {
    /// Takes in what the server said (after the room view applied it).
    pub fn on_server(
        &mut self,
        message: &ServerMessage,
        me: UserId,
        blocking: &HashSet<UserId>,
        now_ms: u64,
    ) {
        match message {
            ServerMessage::RoomSnapshot { room, .. } => {
                self.pin = PinShown::of(room.life.pinned.as_ref());
                self.reactions.clear();
                self.counts.clear();
            }
            ServerMessage::Pinned { text, .. } => self.pin = PinShown::of(text.as_ref()),
            ServerMessage::Chat { lines } if !self.chat_open => {
                self.unread += lines
                    .iter()
                    .filter(|l| l.user_id != me && !blocking.contains(&l.user_id))
                    .count();
            }
            ServerMessage::Reactions { shown, counts } => {
                self.reactions.retain(|_, (_, until)| *until > now_ms);
                for r in shown.iter().filter(|r| !blocking.contains(&r.user_id)) {
                    self.reactions
                        .insert(r.user_id, (r.reaction, now_ms + REACTION_SHOW_MS));
                }
                self.counts.clone_from(counts);
                self.counts_until_ms = now_ms + COUNTS_SHOW_MS;
            }
            _ => {}
        }
    }

    /// My own reaction shows at once, before the room's count comes back.
    pub fn reacted(&mut self, me: UserId, reaction: Reaction, now_ms: u64) {
        self.reactions
            .insert(me, (reaction, now_ms + REACTION_SHOW_MS));
    }

    /// The reaction to show next to `user` now.
    pub fn reaction_of(&self, user: UserId, now_ms: u64) -> Option<Reaction> {
        self.reactions
            .get(&user)
            .filter(|(_, until)| *until > now_ms)
            .map(|(r, _)| *r)
    }

    /// The counts to show now (empty once they are old).
    pub fn counts_now(&self, now_ms: u64) -> &[ReactionCount] {
        if now_ms < self.counts_until_ms {
            &self.counts
        } else {
            &[]
        }
    }

    /// Opens the pane to read.
    pub fn show(&mut self) {
        self.chat_open = true;
        self.unread = 0;
    }

    /// Opens the pane and starts writing (with a line kept from a refusal, if any).
    pub fn write(&mut self) {
        self.show();
        if self.draft.is_none() {
            self.draft = Some(self.kept.take().unwrap_or_default());
        }
    }

    /// My line `id` was refused: back in the box if an empty one is open (still writing),
    /// else kept for the next line. Says which, for the event line.
    pub fn refused(&mut self, id: Option<u64>) -> Option<&'static str> {
        let (_, line) = self.sent.take_if(|(sent, _)| id == Some(*sent))?;
        Some(self.give_back(line))
    }

    /// The line sent has had no answer when the connection dropped: it may be lost.
    pub fn maybe_lost(&mut self) -> Option<&'static str> {
        let (_, line) = self.sent.take()?;
        Some(self.give_back(line))
    }

    fn give_back(&mut self, line: String) -> &'static str {
        if self.draft.as_deref() == Some("") {
            self.draft = Some(line);
            "your line is back in the box"
        } else {
            // Keys must stay keys: a box is not opened under someone who left it.
            self.kept = Some(line);
            "the next line you start begins with it"
        }
    }

    /// Hides the pane (a draft is dropped).
    pub fn hide(&mut self) {
        self.chat_open = false;
        self.draft = None;
    }
}
