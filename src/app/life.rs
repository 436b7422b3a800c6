//! A room's chat pane, reactions and pin as this client shows them (#15). The lines
//! themselves live in the [`RoomView`](super::RoomView) (`chat`), kept with the room;
//! this is what the screen adds: whether the pane is open, what is being typed, how many
//! lines came while it was closed, who reacted lately and the pin's link, parsed once.

use std::collections::{HashMap, HashSet};

use crate::protocol::chat::{Reaction, ReactionCount, pin_link};
use crate::protocol::{ClientCommand, ServerMessage, UserId};

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
    /// Text sent with a request id and not answered yet: a refused one is given back
    /// rather than lost. The newest [`AWAITED_KEPT`].
    pub awaiting: Vec<(u64, Sent)>,
    /// A line refused (or maybe lost in a reconnect) while no empty box was open: the
    /// next line started begins with it.
    pub kept: Option<String>,
    /// A pin refused: the next pin box opens with it.
    pub pin_kept: Option<String>,
}

/// Unanswered sends remembered; answers come within a round trip, so more is a connection
/// that stopped answering (a reconnect gives back the newest line).
pub const AWAITED_KEPT: usize = 8;

/// Text the person typed and sent, which must not be lost if it is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sent {
    Line(String),
    Pin(String),
}

impl Sent {
    pub fn command(&self) -> ClientCommand {
        match self {
            Sent::Line(text) => ClientCommand::Chat { text: text.clone() },
            Sent::Pin(text) => ClientCommand::Pin { text: text.clone() },
        }
    }
}

/// Where a refused text went, for the event line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GivenBack {
    /// A line: into the open box, or kept for the next line (the words say which).
    Line(&'static str),
    /// A pin: kept for the next pin box.
    Pin,
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

    /// `sent` went with request `id`; its answer is awaited.
    pub fn awaiting(&mut self, id: u64, sent: Sent) {
        if self.awaiting.len() == AWAITED_KEPT {
            self.awaiting.remove(0);
        }
        self.awaiting.push((id, sent));
    }

    /// Request `id` was answered `ok`: nothing to give back.
    pub fn answered(&mut self, id: Option<u64>) {
        self.awaiting.retain(|(sent, _)| Some(*sent) != id);
    }

    /// Request `id` was refused: a line goes back in the box if an empty one is open
    /// (still writing), else is kept for the next line; a pin is kept for the next pin box.
    pub fn refused(&mut self, id: Option<u64>) -> Option<GivenBack> {
        let at = self
            .awaiting
            .iter()
            .position(|(sent, _)| Some(*sent) == id)?;
        Some(match self.awaiting.remove(at).1 {
            Sent::Line(line) => GivenBack::Line(self.give_back(line)),
            Sent::Pin(pin) => {
                self.pin_kept = Some(pin);
                GivenBack::Pin
            }
        })
    }

    /// The connection dropped: the newest line not answered may be lost, and is given back.
    pub fn maybe_lost(&mut self) -> Option<&'static str> {
        let line = self
            .awaiting
            .drain(..)
            .rev()
            .find_map(|(_, sent)| match sent {
                Sent::Line(line) => Some(line),
                Sent::Pin(_) => None,
            })?;
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
