//! What a room carries beside its audio (#15): chat lines, reactions and a pinned line.
//!
//! The server batches both kinds of chatter so that a busy room costs each listener a
//! bounded number of messages, whatever the number of people typing or clapping:
//! - chat lines go out at most every [`CHAT_EVERY_MS`], all lines since the last batch in
//!   one `chat` message (the first after a quiet spell goes at once);
//! - reactions go out at most every [`REACTIONS_EVERY_MS`] as one `reactions` message: who
//!   reacted among the people everyone sees (the stage and the front rows) and counts of
//!   all of them.
//!
//! So a 5,000-person room with ten lines and a hundred reactions a second sends each
//! listener at most three messages a second for them (docs/benchmarks.md "Room life").

use serde::{Deserialize, Serialize};

use super::UserId;

/// The longest chat line, in characters after cleaning (`text::clean_chat`).
pub const MAX_CHAT_CHARS: usize = 280;
/// The longest pinned line or link, in characters.
pub const MAX_PIN_CHARS: usize = 300;
/// How many of the newest chat lines a joiner's snapshot carries.
pub const CHAT_HISTORY: usize = 20;
/// The shortest time between two `chat` messages to the room.
pub const CHAT_EVERY_MS: u64 = 500;
/// The shortest time between two `reactions` messages to the room.
pub const REACTIONS_EVERY_MS: u64 = 1_000;
/// The shortest time between two clips one member announces.
pub const CLIP_EVERY_MS: u64 = 10_000;
/// The longest clip announced, in seconds.
pub const MAX_CLIP_SECONDS: u32 = 30;

/// Who may write in a room's chat: the host's (and moderators') choice.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChatPolicy {
    /// Everyone in the room.
    #[default]
    Everyone,
    /// The host, moderators and speakers.
    Stage,
    /// Nobody: the chat is closed (what was said stays readable).
    Nobody,
}

impl ChatPolicy {
    /// The next choice, for a key that cycles through them.
    pub fn next(self) -> Self {
        match self {
            Self::Everyone => Self::Stage,
            Self::Stage => Self::Nobody,
            Self::Nobody => Self::Everyone,
        }
    }

    /// Who may write, in words.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Everyone => "everyone may chat",
            Self::Stage => "only the stage may chat",
            Self::Nobody => "chat is closed",
        }
    }

    fn is_default(&self) -> bool {
        *self == Self::Everyone
    }
}

/// One line of chat. The author's handle and name travel with it: in a big room most
/// members are not told of every listener, but everyone must see who wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatLine {
    /// The room's own counter: lines are numbered in the order the room took them.
    pub id: u64,
    pub user_id: UserId,
    pub handle: String,
    pub name: String,
    pub text: String,
    /// When the room took it, Unix ms.
    pub at_ms: u64,
}

/// A reaction: keys `1` to `5` in the TUI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reaction {
    Clap,
    Laugh,
    Hundred,
    Heart,
    Thanks,
}

impl Reaction {
    /// Every reaction, in key order (`1` is the first).
    pub const ALL: [Reaction; 5] = [
        Reaction::Clap,
        Reaction::Laugh,
        Reaction::Hundred,
        Reaction::Heart,
        Reaction::Thanks,
    ];

    /// How a terminal that draws emoji shows it.
    pub fn emoji(self) -> &'static str {
        match self {
            Self::Clap => "👏",
            Self::Laugh => "😂",
            Self::Hundred => "💯",
            Self::Heart => "❤️",
            Self::Thanks => "🙏",
        }
    }

    /// How a terminal without emoji (or `NO_COLOR`) shows it.
    pub fn ascii(self) -> &'static str {
        match self {
            Self::Clap => "clap",
            Self::Laugh => "haha",
            Self::Hundred => "100",
            Self::Heart => "<3",
            Self::Thanks => "thx",
        }
    }

    /// Its wire name (`clap`, `laugh`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Self::Clap => "clap",
            Self::Laugh => "laugh",
            Self::Hundred => "hundred",
            Self::Heart => "heart",
            Self::Thanks => "thanks",
        }
    }
}

/// Someone everyone sees reacted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reacted {
    pub user_id: UserId,
    pub reaction: Reaction,
}

/// How many people sent one reaction in the last second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReactionCount {
    pub reaction: Reaction,
    pub count: u32,
}

/// What a room shows besides its people: in the snapshot and `GET /api/v2/rooms/{id}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomLife {
    /// Who may write in the chat.
    #[serde(default, skip_serializing_if = "ChatPolicy::is_default")]
    pub chat: ChatPolicy,
    /// The newest chat lines (at most [`CHAT_HISTORY`]), oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chat_log: Vec<ChatLine>,
    /// The pinned link or line, if a moderator pinned one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pinned: Option<String>,
}

/// The link a pinned text is, when it is one http(s) URL and nothing else: the TUI makes
/// it a hyperlink (OSC 8). Parsed once when the pin changes, never per frame.
pub fn pin_link(text: &str) -> Option<url::Url> {
    let text = text.trim();
    if text.contains(char::is_whitespace) {
        return None;
    }
    let url = url::Url::parse(text).ok()?;
    matches!(url.scheme(), "http" | "https").then_some(url)
}

/// Why a pin is refused when it names a scheme other than http(s) (`javascript:`,
/// `file://`, `ssh://`): a pinned link is something people click.
pub fn pin_scheme_refused(text: &str) -> Option<String> {
    let first = text.split_whitespace().next()?;
    let url = url::Url::parse(first).ok()?;
    // "note: bring snacks" parses as a URL with scheme "note"; only refuse what looks like
    // a link: a scheme followed by "//", or a scheme browsers act on.
    let scheme = url.scheme();
    let linky = first[scheme.len()..].starts_with("://")
        || matches!(
            scheme,
            "javascript" | "data" | "vbscript" | "file" | "mailto" | "tel"
        );
    if linky && !matches!(scheme, "http" | "https") {
        return Some(format!(
            "only http and https links can be pinned (this one is {scheme}); pin a web address or a line of text"
        ));
    }
    // https://bank.example@evil.example/ leads to evil.example.
    (!url.username().is_empty() || url.password().is_some()).then(|| {
        "links with a user name before an @ can hide where they lead; pin the plain address"
            .to_string()
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_pin_is_a_link_only_when_it_is_one_http_url() {
        assert_eq!(
            pin_link(" https://example.org/talk?x=1 ").unwrap().as_str(),
            "https://example.org/talk?x=1"
        );
        assert!(pin_link("see https://example.org").is_none());
        assert!(pin_link("ftp://example.org").is_none());
        assert!(pin_link("just a line").is_none());
    }

    #[test]
    fn other_schemes_are_refused_but_a_colon_in_a_line_is_not() {
        for bad in [
            "https://bank.example@evil.example/x",
            "http://user:pw@example.org",
            "javascript:alert(1)",
            "file:///etc/passwd",
            "ssh://host",
            "data:text/html,hi",
        ] {
            assert!(pin_scheme_refused(bad).is_some(), "{bad}");
        }
        for fine in [
            "note: bring snacks",
            "https://example.org",
            "Agenda: 1. intro",
            "",
        ] {
            assert_eq!(pin_scheme_refused(fine), None, "{fine}");
        }
    }

    #[test]
    fn reactions_have_distinct_names_and_fallbacks() {
        let mut names: Vec<&str> = Reaction::ALL.iter().map(|r| r.name()).collect();
        names.dedup();
        assert_eq!(names.len(), 5);
        for r in Reaction::ALL {
            assert!(r.ascii().is_ascii());
            assert_eq!(
                serde_json::to_string(&r).unwrap(),
                format!("\"{}\"", r.name())
            );
        }
    }
}
