//! The one keymap: every key the client acts on, the [`Action`] it means, and the words
//! the help and the footers show for it. The key handler in `App::update`, the footers and
//! the help overlay all read these tables, so a key cannot do one thing and be described
//! as another, and a key that is not here does nothing (no catch-all arm stands in for
//! one). Typing (the room filter, a new room's title) and the answers to a question box
//! are text, not actions, and stay with their boxes.
//!
//! Invariant (tested): every entry's label names each of its keys.
//!
//! **Rebinding.** The tables are the defaults. A [`Keymap`] is them with the config's
//! `[keys]` table on top (`mute = "v"`, `hand = ["h", "H"]`): an action given keys there has
//! those keys instead of its defaults, wherever it applies, and the help and the footers
//! name them. A rebinding that would give one key two meanings in one place, names an action
//! that does not exist or a key that cannot be typed is refused at start, with the reason.

use std::collections::HashMap;

use crossterm::event::KeyCode;

use crate::protocol::chat::Reaction;

/// What a key asks for. Whether it can be done now (on stage, a moderator, someone
/// selected) is the handler's business; the keymap only names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Quit,
    Help,
    /// Select the next room or person.
    Down,
    /// Select the previous one.
    Up,
    Join,
    Filter,
    NewRoom,
    Refresh,
    Hand,
    Accept,
    Decline,
    TheirVolumeDown,
    TheirVolumeUp,
    VolumeDown,
    VolumeUp,
    Leave,
    Mute,
    Talk,
    Invite,
    ToAudience,
    MuteSpeaker,
    Remove,
    MakeModerator,
    /// Open the profile card of the chosen person (in the hallway: the room's host).
    Card,
    /// On a card: follow or unfollow.
    Follow,
    /// On a card: block or unblock.
    Block,
    /// On a card: report to the server's admins.
    Report,
    /// On a card: mark their device keys as compared (verified), or not any more.
    Verify,
    /// Close the card.
    Close,
    /// In the hallway: schedule a room for later.
    Schedule,
    /// In a room: keep the last 30 s of what I heard as a file.
    Clip,
    /// Open the chat pane and write, or hide it.
    Chat,
    /// Write in the open chat.
    Write,
    /// Send a reaction.
    React(Reaction),
    /// Moderators: stop the chosen person writing in the chat, or let them again.
    SilenceChat,
    /// Moderators: delete the chosen person's newest chat line.
    DeleteChat,
    /// Moderators: who may chat (everyone, the stage, nobody), in turn.
    WhoMayChat,
    /// Moderators: pin a link or a line at the top of the room.
    Pin,
    /// In a replay: back 15 s.
    SeekBack,
    /// In a replay: ahead 15 s.
    SeekAhead,
    /// In a replay: pause, or play on (from the start once it has ended).
    PlayPause,
    /// In a replay: the next slower speed.
    Slower,
    /// In a replay: the next faster speed.
    Faster,
    /// In a replay: its host deletes it (asks first).
    DeleteReplay,
}

impl Action {
    /// Every action, for the config's names.
    pub const ALL: [Action; 48] = [
        Action::Quit,
        Action::Help,
        Action::Down,
        Action::Up,
        Action::Join,
        Action::Filter,
        Action::NewRoom,
        Action::Refresh,
        Action::Hand,
        Action::Accept,
        Action::Decline,
        Action::TheirVolumeDown,
        Action::TheirVolumeUp,
        Action::VolumeDown,
        Action::VolumeUp,
        Action::Leave,
        Action::Mute,
        Action::Talk,
        Action::Invite,
        Action::ToAudience,
        Action::MuteSpeaker,
        Action::Remove,
        Action::MakeModerator,
        Action::Card,
        Action::Follow,
        Action::Block,
        Action::Report,
        Action::Verify,
        Action::Close,
        Action::Schedule,
        Action::Clip,
        Action::Chat,
        Action::Write,
        Action::React(Reaction::Clap),
        Action::React(Reaction::Laugh),
        Action::React(Reaction::Hundred),
        Action::React(Reaction::Heart),
        Action::React(Reaction::Thanks),
        Action::SilenceChat,
        Action::DeleteChat,
        Action::WhoMayChat,
        Action::Pin,
        Action::SeekBack,
        Action::SeekAhead,
        Action::PlayPause,
        Action::Slower,
        Action::Faster,
        Action::DeleteReplay,
    ];

    /// Its name in the config's `[keys]` table.
    pub fn name(self) -> &'static str {
        match self {
            Action::Quit => "quit",
            Action::Help => "help",
            Action::Down => "down",
            Action::Up => "up",
            Action::Join => "join",
            Action::Filter => "filter",
            Action::NewRoom => "new_room",
            Action::Refresh => "refresh",
            Action::Hand => "hand",
            Action::Accept => "accept",
            Action::Decline => "decline",
            Action::TheirVolumeDown => "their_volume_down",
            Action::TheirVolumeUp => "their_volume_up",
            Action::VolumeDown => "volume_down",
            Action::VolumeUp => "volume_up",
            Action::Leave => "leave",
            Action::Mute => "mute",
            Action::Talk => "talk",
            Action::Invite => "invite",
            Action::ToAudience => "to_audience",
            Action::MuteSpeaker => "mute_speaker",
            Action::Remove => "remove",
            Action::MakeModerator => "make_moderator",
            Action::Card => "card",
            Action::Follow => "follow",
            Action::Block => "block",
            Action::Report => "report",
            Action::Verify => "verify",
            Action::Close => "close",
            Action::Schedule => "schedule",
            Action::Clip => "clip",
            Action::Chat => "chat",
            Action::Write => "write",
            Action::React(Reaction::Clap) => "react_clap",
            Action::React(Reaction::Laugh) => "react_laugh",
            Action::React(Reaction::Hundred) => "react_hundred",
            Action::React(Reaction::Heart) => "react_heart",
            Action::React(Reaction::Thanks) => "react_thanks",
            Action::SilenceChat => "silence_chat",
            Action::DeleteChat => "delete_chat",
            Action::WhoMayChat => "who_may_chat",
            Action::Pin => "pin",
            Action::SeekBack => "seek_back",
            Action::SeekAhead => "seek_ahead",
            Action::PlayPause => "play_pause",
            Action::Slower => "slower",
            Action::Faster => "faster",
            Action::DeleteReplay => "delete_replay",
        }
    }

    fn named(name: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.name() == name)
    }
}

/// One line of the help: the keys as shown, what they do, and each key's action.
#[derive(Debug)]
pub struct Entry {
    pub label: &'static str,
    pub help: &'static str,
    pub keys: &'static [(KeyCode, Action)],
}

/// A heading of the help and its lines.
#[derive(Debug)]
pub struct Group {
    pub heading: &'static str,
    pub entries: &'static [Entry],
}

const fn c(ch: char) -> KeyCode {
    KeyCode::Char(ch)
}

/// Moving the selection, in the hallway and in a room alike.
const MOVE_KEYS: &[(KeyCode, Action)] = &[
    (KeyCode::Down, Action::Down),
    (c('j'), Action::Down),
    (KeyCode::Tab, Action::Down),
    (KeyCode::Up, Action::Up),
    (c('k'), Action::Up),
    (KeyCode::BackTab, Action::Up),
];

pub const HALLWAY: Group = Group {
    heading: "In the hallway",
    entries: &[
        Entry {
            label: "↑↓ j k",
            help: "choose a room",
            keys: MOVE_KEYS,
        },
        Entry {
            label: "Enter",
            help: "join it (or play a replay)",
            keys: &[(KeyCode::Enter, Action::Join)],
        },
        Entry {
            label: "/",
            help: "filter (Esc clears)",
            keys: &[(c('/'), Action::Filter)],
        },
        Entry {
            label: "n",
            help: "start a new room",
            keys: &[(c('n'), Action::NewRoom)],
        },
        Entry {
            label: "S",
            help: "schedule a room for later",
            keys: &[(c('S'), Action::Schedule)],
        },
        Entry {
            label: "r",
            help: "refresh the list",
            keys: &[(c('r'), Action::Refresh)],
        },
        Entry {
            label: "p",
            help: "the host's profile card",
            keys: &[(c('p'), Action::Card)],
        },
        Entry {
            label: "?",
            help: "this help",
            keys: &[(c('?'), Action::Help)],
        },
        Entry {
            label: "q",
            help: "quit (also Ctrl-C)",
            keys: &[(c('q'), Action::Quit)],
        },
    ],
};

pub const ROOM: Group = Group {
    heading: "In a room",
    entries: &[
        Entry {
            label: "↑↓ j k",
            help: "choose a person",
            keys: MOVE_KEYS,
        },
        Entry {
            label: "p",
            help: "their profile card",
            keys: &[(c('p'), Action::Card)],
        },
        Entry {
            label: "h",
            help: "raise or lower your hand",
            keys: &[(c('h'), Action::Hand)],
        },
        Entry {
            label: "a / d",
            help: "accept / decline an invite",
            keys: &[(c('a'), Action::Accept), (c('d'), Action::Decline)],
        },
        Entry {
            label: "[ / ]",
            help: "their volume down / up",
            keys: &[
                (c('['), Action::TheirVolumeDown),
                (c(']'), Action::TheirVolumeUp),
            ],
        },
        Entry {
            label: "- / +",
            help: "your volume down / up",
            keys: &[
                (c('-'), Action::VolumeDown),
                (c('+'), Action::VolumeUp),
                // `+` without shift on most layouts.
                (c('='), Action::VolumeUp),
            ],
        },
        Entry {
            label: "C",
            help: "keep the last 30 s heard",
            keys: &[(c('C'), Action::Clip)],
        },
        Entry {
            label: "L",
            help: "leave the room",
            keys: &[(c('L'), Action::Leave)],
        },
        Entry {
            label: "? / q",
            help: "this help / quit",
            keys: &[(c('?'), Action::Help), (c('q'), Action::Quit)],
        },
    ],
};

pub const STAGE: Group = Group {
    heading: "On the stage",
    entries: &[
        Entry {
            label: "m",
            help: "mute or unmute",
            keys: &[(c('m'), Action::Mute)],
        },
        Entry {
            label: "space",
            help: "hold to talk",
            keys: &[(c(' '), Action::Talk)],
        },
    ],
};

pub const MODERATORS: Group = Group {
    heading: "Moderators, on the chosen person",
    entries: &[
        Entry {
            label: "i",
            help: "invite to speak",
            keys: &[(c('i'), Action::Invite)],
        },
        Entry {
            label: "x",
            help: "move to the audience",
            keys: &[(c('x'), Action::ToAudience)],
        },
        Entry {
            label: "M",
            help: "mute a speaker",
            keys: &[(c('M'), Action::MuteSpeaker)],
        },
        Entry {
            label: "K",
            help: "remove from the room",
            keys: &[(c('K'), Action::Remove)],
        },
        Entry {
            label: "o",
            help: "make a moderator",
            keys: &[(c('o'), Action::MakeModerator)],
        },
    ],
};

pub const ROOM_LIFE: Group = Group {
    heading: "Chat and reactions",
    entries: &[
        Entry {
            label: "c / Enter",
            help: "chat: show, hide / write",
            keys: &[(c('c'), Action::Chat), (KeyCode::Enter, Action::Write)],
        },
        Entry {
            label: "1 2 3 4 5",
            help: "react: clap … thanks",
            keys: &[
                (c('1'), Action::React(Reaction::Clap)),
                (c('2'), Action::React(Reaction::Laugh)),
                (c('3'), Action::React(Reaction::Hundred)),
                (c('4'), Action::React(Reaction::Heart)),
                (c('5'), Action::React(Reaction::Thanks)),
            ],
        },
        Entry {
            label: "s / D",
            help: "mods: silence / delete",
            keys: &[(c('s'), Action::SilenceChat), (c('D'), Action::DeleteChat)],
        },
        Entry {
            label: "W / P",
            help: "mods: who may chat / pin",
            keys: &[(c('W'), Action::WhoMayChat), (c('P'), Action::Pin)],
        },
    ],
};

pub const REPLAY: Group = Group {
    heading: "Playing a replay",
    entries: &[
        Entry {
            label: "← / →",
            help: "back / ahead 15 s",
            keys: &[
                (KeyCode::Left, Action::SeekBack),
                (KeyCode::Right, Action::SeekAhead),
            ],
        },
        Entry {
            label: "space",
            help: "pause / play",
            keys: &[(c(' '), Action::PlayPause)],
        },
        Entry {
            label: "< / >",
            help: "slower / faster",
            keys: &[
                (c('<'), Action::Slower),
                (c('>'), Action::Faster),
                // `<` and `>` without shift on most layouts.
                (c(','), Action::Slower),
                (c('.'), Action::Faster),
            ],
        },
        Entry {
            label: "- / +",
            help: "volume down / up",
            keys: &[
                (c('-'), Action::VolumeDown),
                (c('+'), Action::VolumeUp),
                (c('='), Action::VolumeUp),
            ],
        },
        Entry {
            label: "L / Esc",
            help: "back to the hallway",
            keys: &[(c('L'), Action::Leave), (KeyCode::Esc, Action::Leave)],
        },
        Entry {
            label: "D",
            help: "its host: delete it",
            keys: &[(c('D'), Action::DeleteReplay)],
        },
        Entry {
            label: "? / q",
            help: "this help / quit",
            keys: &[(c('?'), Action::Help), (c('q'), Action::Quit)],
        },
    ],
};

pub const CARD: Group = Group {
    heading: "On a profile card",
    entries: &[
        Entry {
            label: "f",
            help: "follow / unfollow",
            keys: &[(c('f'), Action::Follow)],
        },
        Entry {
            label: "b",
            help: "block / unblock",
            keys: &[(c('b'), Action::Block)],
        },
        Entry {
            label: "r",
            help: "report to the admins",
            keys: &[(c('r'), Action::Report)],
        },
        Entry {
            label: "v",
            help: "mark verified (compared)",
            keys: &[(c('v'), Action::Verify)],
        },
        Entry {
            label: "Esc p",
            help: "close the card",
            keys: &[(KeyCode::Esc, Action::Close), (c('p'), Action::Close)],
        },
    ],
};

/// The groups that apply in a room.
pub const IN_A_ROOM: [&Group; 4] = [&ROOM, &STAGE, &MODERATORS, &ROOM_LIFE];

/// Every group, in the order the one-column help lists them.
pub const ALL_GROUPS: [&Group; 7] = [
    &HALLWAY,
    &ROOM,
    &STAGE,
    &ROOM_LIFE,
    &MODERATORS,
    &REPLAY,
    &CARD,
];
/// The two-column help: the left column's groups and the right's.
pub const LEFT_COLUMN: [&Group; 3] = [&HALLWAY, &ROOM, &STAGE];
pub const RIGHT_COLUMN: [&Group; 4] = [&ROOM_LIFE, &MODERATORS, &REPLAY, &CARD];

/// How the help box sits on a `cols`×`rows` screen: shared by the view, which draws it,
/// and the model, which scrolls it, so the two agree on how far it can scroll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HelpLayout {
    /// Two columns side by side (a wide screen), or one.
    pub two_columns: bool,
    /// The box's size, before it is shrunk to fit the screen.
    pub width: u16,
    pub height: u16,
    /// Rows of bindings shown at once.
    pub visible: u16,
    /// Rows of bindings in all (the taller column).
    pub total: u16,
}

impl HelpLayout {
    pub fn new(cols: u16, rows: u16) -> Self {
        let two_columns = cols >= 72;
        let rows_of = |g: &Group| g.entries.len() + 1;
        // Groups with a blank between them.
        let column = |groups: &[&Group]| {
            groups.iter().map(|g| rows_of(g)).sum::<usize>() + groups.len().saturating_sub(1)
        };
        let total = if two_columns {
            // A blank and "Esc closes a box" under the card.
            column(&LEFT_COLUMN).max(column(&RIGHT_COLUMN) + 2)
        } else {
            column(&ALL_GROUPS)
        };
        let width = if two_columns { 78 } else { 44 };
        // Borders, then the footer line and the blank above it.
        let height = u16::try_from(total + 4).unwrap_or(u16::MAX);
        let visible = height.min(rows).saturating_sub(4);
        HelpLayout {
            two_columns,
            width,
            height,
            visible,
            total: u16::try_from(total).unwrap_or(u16::MAX),
        }
    }

    /// How far down the help can scroll (0: it all fits).
    pub fn max_scroll(&self) -> u16 {
        self.total.saturating_sub(self.visible)
    }
}

/// The places keys are looked up in; a key means at most one thing in each.
const PLACES: [(&str, &[&Group]); 4] = [
    ("the hallway", &[&HALLWAY]),
    ("a room", &IN_A_ROOM),
    ("a replay", &[&REPLAY]),
    ("a profile card", &[&CARD]),
];

/// One key's config spelling: `"v"`, `"Enter"`, `"space"`, `"F5"`...
pub fn parse_key(text: &str) -> Option<KeyCode> {
    let mut chars = text.chars();
    if let (Some(c), None) = (chars.next(), chars.next()) {
        return (!c.is_control()).then_some(KeyCode::Char(c));
    }
    let lower = text.to_ascii_lowercase();
    Some(match lower.as_str() {
        "space" => KeyCode::Char(' '),
        "enter" | "return" => KeyCode::Enter,
        "esc" | "escape" => KeyCode::Esc,
        "tab" => KeyCode::Tab,
        "backtab" | "shift-tab" => KeyCode::BackTab,
        "up" => KeyCode::Up,
        "down" => KeyCode::Down,
        "left" => KeyCode::Left,
        "right" => KeyCode::Right,
        "pageup" => KeyCode::PageUp,
        "pagedown" => KeyCode::PageDown,
        "home" => KeyCode::Home,
        "end" => KeyCode::End,
        "backspace" => KeyCode::Backspace,
        "delete" => KeyCode::Delete,
        "insert" => KeyCode::Insert,
        f if f.starts_with('f') => {
            KeyCode::F(f[1..].parse().ok().filter(|n| (1..=12).contains(n))?)
        }
        _ => return None,
    })
}

/// How a key is written in the help and the footers.
pub fn key_name(code: KeyCode) -> String {
    match code {
        KeyCode::Char(' ') => "space".to_string(),
        KeyCode::Char(ch) => ch.to_string(),
        KeyCode::Down => "↓".to_string(),
        KeyCode::Up => "↑".to_string(),
        KeyCode::Left => "←".to_string(),
        KeyCode::Right => "→".to_string(),
        KeyCode::Esc => "Esc".to_string(),
        KeyCode::Enter => "Enter".to_string(),
        KeyCode::F(n) => format!("F{n}"),
        other => format!("{other:?}"),
    }
}

/// Why the config's `[keys]` cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeymapError {
    #[error("[keys] names no action {0:?}; the actions are: {1}")]
    UnknownAction(String, String),
    #[error(
        "[keys] {action} = {key:?}: not a key (a character, space, Enter, Esc, Tab, an arrow such as Up, PageUp, Home, F1-F12...)"
    )]
    UnknownKey { action: String, key: String },
    #[error("[keys] {action} has no keys: give it one, or leave it out for its default")]
    NoKeys { action: String },
    #[error(
        "[keys] would make {key} mean both {first} and {second} in {place}; give one of them another key"
    )]
    Conflict {
        key: String,
        first: &'static str,
        second: &'static str,
        place: &'static str,
    },
}

/// The tables with the config's rebindings on top: what the key handler, the footers and
/// the help read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Keymap {
    rebound: HashMap<Action, Vec<KeyCode>>,
}

impl Keymap {
    /// The defaults with `keys` (action name → its keys) on top.
    pub fn with(keys: &[(String, Vec<String>)]) -> Result<Self, KeymapError> {
        let mut rebound = HashMap::new();
        for (name, spelled) in keys {
            let action = Action::named(name).ok_or_else(|| {
                let names: Vec<&str> = Action::ALL.iter().map(|a| a.name()).collect();
                KeymapError::UnknownAction(name.clone(), names.join(", "))
            })?;
            if spelled.is_empty() {
                return Err(KeymapError::NoKeys {
                    action: name.clone(),
                });
            }
            let codes = spelled
                .iter()
                .map(|k| {
                    parse_key(k).ok_or_else(|| KeymapError::UnknownKey {
                        action: name.clone(),
                        key: k.clone(),
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            rebound.insert(action, codes);
        }
        let keymap = Self { rebound };
        keymap.check()?;
        Ok(keymap)
    }

    /// No key means two things in one place.
    fn check(&self) -> Result<(), KeymapError> {
        for (place, groups) in PLACES {
            let mut seen: HashMap<KeyCode, Action> = HashMap::new();
            for (code, action) in self.bindings(groups) {
                match seen.insert(code, action) {
                    Some(other) if other != action => {
                        return Err(KeymapError::Conflict {
                            key: key_name(code),
                            first: other.name(),
                            second: action.name(),
                            place,
                        });
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }

    /// Every (key, action) in `groups`, rebindings applied.
    fn bindings(&self, groups: &[&Group]) -> Vec<(KeyCode, Action)> {
        let mut out = Vec::new();
        for entry in groups.iter().flat_map(|g| g.entries) {
            out.extend(self.entry_keys(entry));
        }
        out
    }

    /// An entry's keys, rebindings applied (each rebound action once, with its new keys).
    pub fn entry_keys(&self, entry: &Entry) -> Vec<(KeyCode, Action)> {
        let mut out: Vec<(KeyCode, Action)> = Vec::new();
        for &(code, action) in entry.keys {
            match self.rebound.get(&action) {
                None => out.push((code, action)),
                Some(codes) if !out.iter().any(|(_, a)| *a == action) => {
                    out.extend(codes.iter().map(|&c| (c, action)));
                }
                Some(_) => {}
            }
        }
        out
    }

    fn find(&self, groups: &[&Group], code: KeyCode) -> Option<Action> {
        self.bindings(groups)
            .into_iter()
            .find(|(key, _)| *key == code)
            .map(|(_, action)| action)
    }

    /// What `code` means in the hallway.
    pub fn in_hallway(&self, code: KeyCode) -> Option<Action> {
        self.find(&[&HALLWAY], code)
    }

    /// What `code` means in a room.
    pub fn in_room(&self, code: KeyCode) -> Option<Action> {
        self.find(&IN_A_ROOM, code)
    }

    /// What `code` means while a replay plays.
    pub fn in_replay(&self, code: KeyCode) -> Option<Action> {
        self.find(&[&REPLAY], code)
    }

    /// What `code` means on a profile card.
    pub fn on_card(&self, code: KeyCode) -> Option<Action> {
        self.find(&[&CARD], code)
    }

    /// The help's label for an entry: the table's, unless one of its actions is rebound.
    pub fn label(&self, entry: &Entry) -> String {
        if !entry.keys.iter().any(|(_, a)| self.rebound.contains_key(a)) {
            return entry.label.to_string();
        }
        let mut actions: Vec<Action> = Vec::new();
        for (_, action) in entry.keys {
            if !actions.contains(action) {
                actions.push(*action);
            }
        }
        actions
            .iter()
            .map(|action| {
                self.entry_keys(entry)
                    .iter()
                    .filter(|(_, a)| a == action)
                    .map(|(code, _)| key_name(*code))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect::<Vec<_>>()
            .join(" / ")
    }

    /// How a footer names the key for `action`: the entry's label when the entry is that
    /// action alone ("Enter", "space"), else the action's first key ("a" of "a / d").
    pub fn key_label(&self, action: Action) -> String {
        if let Some(codes) = self.rebound.get(&action) {
            return codes.first().map(|c| key_name(*c)).unwrap_or_default();
        }
        let entries = ALL_GROUPS.into_iter().flat_map(|g| g.entries);
        for entry in entries {
            let Some((code, _)) = entry.keys.iter().find(|(_, a)| *a == action) else {
                continue;
            };
            if entry.keys.iter().all(|(_, a)| *a == action) {
                return entry.label.to_string();
            }
            return match code {
                KeyCode::Char(_)
                | KeyCode::Down
                | KeyCode::Up
                | KeyCode::Left
                | KeyCode::Right
                | KeyCode::Esc
                | KeyCode::Enter => key_name(*code),
                _ => entry.label.to_string(),
            };
        }
        String::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(code: KeyCode) -> Option<String> {
        match code {
            KeyCode::Char(' ') => Some("space".into()),
            KeyCode::Char(ch) => Some(ch.to_string()),
            KeyCode::Enter => Some("Enter".into()),
            KeyCode::Down => Some("↓".into()),
            KeyCode::Up => Some("↑".into()),
            KeyCode::Left => Some("←".into()),
            KeyCode::Right => Some("→".into()),
            KeyCode::Esc => Some("Esc".into()),
            // Aliases not worth a word: Tab moves like ↓, `=` is `+` without shift.
            _ => None,
        }
    }

    #[test]
    fn every_label_names_its_keys() {
        for group in ALL_GROUPS {
            for entry in group.entries {
                for (code, action) in entry.keys {
                    // `+`, `<` and `>` typed without shift.
                    if [c('='), c(','), c('.')].contains(code) {
                        continue;
                    }
                    if let Some(text) = shown(*code) {
                        assert!(
                            entry.label.contains(&text),
                            "{:?} ({action:?}) is not in the label {:?}",
                            code,
                            entry.label
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn no_key_means_two_things_in_one_place() {
        for groups in [
            &[&HALLWAY][..],
            &IN_A_ROOM[..],
            &[&REPLAY][..],
            &[&CARD][..],
        ] {
            let keys: Vec<(KeyCode, Action)> = groups
                .iter()
                .flat_map(|g| g.entries)
                .flat_map(|e| e.keys.iter().copied())
                .collect();
            for (i, (code, action)) in keys.iter().enumerate() {
                for (other, other_action) in &keys[i + 1..] {
                    assert!(
                        code != other || action == other_action,
                        "{code:?} means {action:?} and {other_action:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn footers_name_keys_as_the_help_does() {
        let keys = Keymap::default();
        assert_eq!(keys.key_label(Action::Join), "Enter");
        assert_eq!(keys.key_label(Action::Accept), "a");
        assert_eq!(keys.key_label(Action::Decline), "d");
        assert_eq!(keys.key_label(Action::Talk), "space");
        assert_eq!(keys.key_label(Action::Remove), "K");
    }

    fn rebind(pairs: &[(&str, &[&str])]) -> Result<Keymap, KeymapError> {
        let keys: Vec<(String, Vec<String>)> = pairs
            .iter()
            .map(|(a, ks)| (a.to_string(), ks.iter().map(|k| k.to_string()).collect()))
            .collect();
        Keymap::with(&keys)
    }

    #[test]
    fn a_rebound_action_has_its_new_keys_everywhere_and_not_its_old_ones() {
        let keys = rebind(&[("mute", &["v"]), ("hand", &["H", "F2"])]).expect("valid");
        assert_eq!(keys.in_room(c('v')), Some(Action::Mute));
        assert_eq!(keys.in_room(c('m')), None, "the old key is free");
        assert_eq!(keys.in_room(c('H')), Some(Action::Hand));
        assert_eq!(keys.in_room(KeyCode::F(2)), Some(Action::Hand));
        assert_eq!(keys.key_label(Action::Mute), "v");
        let mute = STAGE
            .entries
            .iter()
            .find(|e| e.help == "mute or unmute")
            .expect("entry");
        assert_eq!(keys.label(mute), "v");
        // An entry of two actions keeps the other's default.
        let answer = ROOM
            .entries
            .iter()
            .find(|e| e.label == "a / d")
            .expect("entry");
        let keys = rebind(&[("accept", &["y"])]).expect("valid");
        assert_eq!(keys.label(answer), "y / d");
        assert_eq!(
            keys.in_hallway(c('n')),
            Some(Action::NewRoom),
            "others unchanged"
        );
    }

    #[test]
    fn a_rebinding_that_would_clash_or_cannot_be_read_is_refused_with_the_reason() {
        assert!(matches!(
            rebind(&[("mute", &["h"])]),
            Err(KeymapError::Conflict {
                place: "a room",
                ..
            })
        ));
        // `h` is free in the hallway, where mute does not apply: still a clash in a room.
        assert!(matches!(
            rebind(&[("mute", &["q"])]),
            Err(KeymapError::Conflict { .. })
        ));
        assert!(matches!(
            rebind(&[("shout", &["s"])]),
            Err(KeymapError::UnknownAction(..))
        ));
        assert!(matches!(
            rebind(&[("mute", &["Ctrl-Alt-Banana"])]),
            Err(KeymapError::UnknownKey { .. })
        ));
        assert!(matches!(
            rebind(&[("mute", &[])]),
            Err(KeymapError::NoKeys { .. })
        ));
        // Swapping two keys is fine.
        let keys = rebind(&[("mute", &["h"]), ("hand", &["m"])]).expect("a swap");
        assert_eq!(keys.in_room(c('h')), Some(Action::Mute));
        assert_eq!(keys.in_room(c('m')), Some(Action::Hand));
    }

    #[test]
    fn every_action_has_a_name_that_reads_back() {
        for action in Action::ALL {
            assert_eq!(Action::named(action.name()), Some(action));
        }
        assert_eq!(parse_key("space"), Some(c(' ')));
        assert_eq!(parse_key("Enter"), Some(KeyCode::Enter));
        assert_eq!(parse_key("F12"), Some(KeyCode::F(12)));
        assert_eq!(parse_key("F13"), None);
    }
}
