//! The styles the views draw with: a colour palette, or a plain one for `NO_COLOR`
//! (<https://no-color.org>) that carries every meaning with bold, reverse and symbols.

use std::ffi::OsStr;

use ratatui::style::{Color, Modifier, Style};

/// Every style the screens use, by the job it does.
///
/// Invariant: in [`Theme::plain`] no style sets a colour, only modifiers, so that the
/// screens stay readable on any terminal and `NO_COLOR` is honoured to the cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Theme {
    /// The title bar across the top.
    pub title_bar: Style,
    /// "Hallway" in the title bar.
    pub brand: Style,
    /// Section headings and rules ("STAGE", "AUDIENCE", "LIVE NOW").
    pub heading: Style,
    /// Room titles.
    pub room_title: Style,
    /// Secondary text: ages, counts, hints.
    pub dim: Style,
    /// The highlighted row or person.
    pub selected: Style,
    /// Someone speaking right now, and level meters.
    pub speaking: Style,
    /// A muted speaker.
    pub muted: Style,
    /// Your microphone is open.
    pub mic_live: Style,
    /// Host and moderator badges.
    pub badge: Style,
    /// Raised hands and invitations.
    pub hand: Style,
    /// Something wants attention: reconnecting, no audio, talking while muted.
    pub warn: Style,
    /// Something failed.
    pub error: Style,
    /// Keys in the footer and the help.
    pub key: Style,
    /// The event line.
    pub notice: Style,
    /// Overlay borders.
    pub border: Style,
}

impl Theme {
    /// Colour, unless the `NO_COLOR` environment variable is set to something.
    pub fn from_env() -> Self {
        Self::for_no_color(std::env::var_os("NO_COLOR").as_deref())
    }

    /// The theme for a given value of `NO_COLOR`: present and not empty means plain.
    pub fn for_no_color(no_color: Option<&OsStr>) -> Self {
        match no_color {
            Some(value) if !value.is_empty() => Self::plain(),
            _ => Self::color(),
        }
    }

    /// No colours at all: bold, reverse, dim and symbols only.
    pub fn plain() -> Self {
        let none = Style::new();
        let bold = Style::new().add_modifier(Modifier::BOLD);
        let reversed = Style::new().add_modifier(Modifier::REVERSED);
        Self {
            title_bar: reversed,
            brand: reversed.add_modifier(Modifier::BOLD),
            heading: bold,
            room_title: bold,
            dim: Style::new().add_modifier(Modifier::DIM),
            selected: reversed,
            speaking: bold,
            muted: none,
            mic_live: reversed.add_modifier(Modifier::BOLD),
            badge: bold,
            hand: bold,
            warn: bold,
            error: bold,
            key: bold,
            notice: Style::new().add_modifier(Modifier::ITALIC),
            border: none,
        }
    }

    /// The 16 ANSI colours, so that it follows the terminal's own palette (light or dark).
    pub fn color() -> Self {
        let bold = Modifier::BOLD;
        Self {
            title_bar: Style::new().fg(Color::Black).bg(Color::Cyan),
            brand: Style::new()
                .fg(Color::Black)
                .bg(Color::Cyan)
                .add_modifier(bold),
            heading: Style::new().fg(Color::Cyan).add_modifier(bold),
            room_title: Style::new().add_modifier(bold),
            dim: Style::new().fg(Color::DarkGray),
            selected: Style::new().add_modifier(Modifier::REVERSED),
            speaking: Style::new().fg(Color::Green).add_modifier(bold),
            muted: Style::new().fg(Color::Red),
            mic_live: Style::new()
                .fg(Color::Black)
                .bg(Color::Green)
                .add_modifier(bold),
            badge: Style::new().fg(Color::Magenta).add_modifier(bold),
            hand: Style::new().fg(Color::Yellow).add_modifier(bold),
            warn: Style::new().fg(Color::Yellow).add_modifier(bold),
            error: Style::new().fg(Color::LightRed).add_modifier(bold),
            key: Style::new().fg(Color::Cyan).add_modifier(bold),
            notice: Style::new().fg(Color::LightBlue),
            border: Style::new().fg(Color::Cyan),
        }
    }
}

impl Default for Theme {
    fn default() -> Self {
        Self::color()
    }
}
