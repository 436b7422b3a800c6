//! The one keymap: every key the client acts on, the [`Action`] it means, and the words
//! the help and the footers show for it. The key handler in `App::update`, the footers and
//! the help overlay all read these tables, so a key cannot do one thing and be described
//! as another, and a key that is not here does nothing (no catch-all arm stands in for
//! one). Typing (the room filter, a new room's title) and the answers to a question box
//! are text, not actions, and stay with their boxes.
//!
//! Invariant (tested): every entry's label names each of its keys.

use crossterm::event::KeyCode;

/// What a key asks for. Whether it can be done now (on stage, a moderator, someone
/// selected) is the handler's business; the keymap only names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    /// Close the card.
    Close,
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
            help: "join it",
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
            label: "Esc p",
            help: "close the card",
            keys: &[(KeyCode::Esc, Action::Close), (c('p'), Action::Close)],
        },
    ],
};

/// The groups that apply in a room.
pub const IN_A_ROOM: [&Group; 3] = [&ROOM, &STAGE, &MODERATORS];

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
        let (width, height) = if two_columns { (78, 23) } else { (44, 40) };
        // Borders, then the footer line and the blank above it.
        let visible = height.min(rows).saturating_sub(4);
        let rows_of = |g: &Group| g.entries.len() + 1;
        let total = if two_columns {
            let left = rows_of(&HALLWAY) + 1 + rows_of(&ROOM);
            // A blank and "Esc closes a box" under the card.
            let right = rows_of(&STAGE) + 1 + rows_of(&MODERATORS) + 1 + rows_of(&CARD) + 2;
            left.max(right)
        } else {
            [&HALLWAY, &ROOM, &STAGE, &MODERATORS, &CARD]
                .into_iter()
                .map(rows_of)
                .sum::<usize>()
                + 4
        };
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

fn find(groups: &[&Group], code: KeyCode) -> Option<Action> {
    groups
        .iter()
        .flat_map(|g| g.entries)
        .flat_map(|e| e.keys)
        .find(|(key, _)| *key == code)
        .map(|(_, action)| *action)
}

/// What `code` means in the hallway.
pub fn in_hallway(code: KeyCode) -> Option<Action> {
    find(&[&HALLWAY], code)
}

/// What `code` means in a room.
pub fn in_room(code: KeyCode) -> Option<Action> {
    find(&IN_A_ROOM, code)
}

/// What `code` means on a profile card.
pub fn on_card(code: KeyCode) -> Option<Action> {
    find(&[&CARD], code)
}

/// How a footer names the key for `action`: the entry's label when the entry is that
/// action alone ("Enter", "space"), else the action's first key ("a" of "a / d").
pub fn key_label(action: Action) -> String {
    let entries = [&HALLWAY, &ROOM, &STAGE, &MODERATORS, &CARD]
        .into_iter()
        .flat_map(|g| g.entries);
    for entry in entries {
        let Some((code, _)) = entry.keys.iter().find(|(_, a)| *a == action) else {
            continue;
        };
        if entry.keys.iter().all(|(_, a)| *a == action) {
            return entry.label.to_string();
        }
        return match code {
            KeyCode::Char(' ') => "space".to_string(),
            KeyCode::Char(ch) => ch.to_string(),
            KeyCode::Down => "↓".to_string(),
            KeyCode::Up => "↑".to_string(),
            KeyCode::Esc => "Esc".to_string(),
            _ => entry.label.to_string(),
        };
    }
    String::new()
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
            KeyCode::Esc => Some("Esc".into()),
            // Aliases not worth a word: Tab moves like ↓, `=` is `+` without shift.
            _ => None,
        }
    }

    #[test]
    fn every_label_names_its_keys() {
        for group in [&HALLWAY, &ROOM, &STAGE, &MODERATORS, &CARD] {
            for entry in group.entries {
                for (code, action) in entry.keys {
                    if *code == c('=') {
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
        for groups in [&[&HALLWAY][..], &IN_A_ROOM[..], &[&CARD][..]] {
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
        assert_eq!(key_label(Action::Join), "Enter");
        assert_eq!(key_label(Action::Accept), "a");
        assert_eq!(key_label(Action::Decline), "d");
        assert_eq!(key_label(Action::Talk), "space");
        assert_eq!(key_label(Action::Remove), "K");
    }
}
