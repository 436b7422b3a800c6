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
    /// Reactions drawn as emoji (👏); else as words ("clap"): under `NO_COLOR`, on the Linux
    /// console and where the locale is not UTF-8.
    pub emoji: bool,
    /// A pinned link is made a hyperlink (OSC 8) after each frame is drawn. Terminals that do
    /// not know OSC 8 ignore it; off on the Linux console, `TERM=dumb` and with
    /// `HALLWAY_HYPERLINKS=0`.
    pub hyperlinks: bool,
}

impl Theme {
    /// Colour, unless the `NO_COLOR` environment variable is set to something.
    pub fn from_env() -> Self {
        let mut theme = Self::for_no_color(std::env::var_os("NO_COLOR").as_deref());
        let var = |name| std::env::var(name).unwrap_or_default();
        let term = var("TERM");
        let console = term == "linux" || term == "dumb";
        // The first of LC_ALL, LC_CTYPE and LANG that is set names the encoding.
        let locale = ["LC_ALL", "LC_CTYPE", "LANG"]
            .into_iter()
            .map(var)
            .find(|v| !v.is_empty())
            .unwrap_or_default()
            .to_ascii_lowercase();
        let utf8 = locale.contains("utf-8") || locale.contains("utf8");
        theme.emoji &= utf8 && !console;
        theme.hyperlinks = !console && var("HALLWAY_HYPERLINKS") != "0";
        theme
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
            emoji: false,
            hyperlinks: false,
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
            emoji: true,
            hyperlinks: false,
        }
    }
}

impl Theme {
    /// How a reaction is drawn.
    pub fn reaction(&self, reaction: crate::protocol::chat::Reaction) -> &'static str {
        if self.emoji {
            reaction.emoji()
        } else {
            reaction.ascii()
        }
    }
}

impl Default for Theme {
    fn default() -> Self {
        Self::color()
    }
}
