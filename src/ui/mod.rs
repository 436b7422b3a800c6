//! The view: draws an [`App`] with ratatui. It reads the model and never changes it, so a
//! frame is a pure function of the state (and of the clock inside it, `app.now_ms`).
//!
//! - [`theme`]: colours, or none for `NO_COLOR`.
//! - `hallway`: the rooms live now.
//! - `room`: a room's stage, audience, your own bar and the keys for your role.
//! - `replay`: a replay playing, its play head, speed and speakers.
//! - `overlay`: help, new room, confirm removal.
//! - `text`: truncation, durations, meters and line helpers.

mod hallway;
mod overlay;
mod replay;
mod room;
pub mod text;
pub mod theme;

#[cfg(test)]
mod tests;

use ratatui::Frame;
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::text::Span;

pub use theme::Theme;

use crate::app::{App, Screen};

/// Text on screen to be made a hyperlink (OSC 8) once the frame is drawn: ratatui's
/// cells hold one character each and cannot carry the escape sequence, so the shell writes
/// the same text again over them, wrapped in the link ([`hyperlink_sequence`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hyperlink {
    pub x: u16,
    pub y: u16,
    /// What the screen shows there (already escaped).
    pub text: String,
    /// An http(s) URL as the `url` crate serializes it: ASCII, no controls.
    pub url: String,
}

/// What the shell writes at a [`Hyperlink`]'s place: the text, underlined, inside an
/// OSC 8 link. Characters that could end the sequence early never reach it: the URL is a
/// serialized http(s) URL and anything else is dropped from it.
pub fn hyperlink_sequence(link: &Hyperlink) -> String {
    let url: String = link.url.chars().filter(|c| c.is_ascii_graphic()).collect();
    let text = text::terminal_safe(&link.text);
    format!("\x1b]8;;{url}\x1b\\\x1b[4m{text}\x1b[24m\x1b]8;;\x1b\\")
}

/// Draws the whole screen for `app`. Never panics, whatever the terminal size. Returns the
/// hyperlinks to write over the frame (none while a box covers the screen).
pub fn render(app: &App, theme: &Theme, frame: &mut Frame) -> Vec<Hyperlink> {
    let area = frame.area();
    if area.is_empty() {
        return Vec::new();
    }
    let title = Rect { height: 1, ..area };
    let body = Rect {
        y: area.y.saturating_add(1),
        height: area.height.saturating_sub(1),
        ..area
    };
    title_bar(app, theme, frame.buffer_mut(), title);
    let links = match &app.screen {
        Screen::Hallway => {
            hallway::render(app, theme, frame, body);
            Vec::new()
        }
        Screen::Room(room) => room::render(app, room, theme, frame, body),
        Screen::Replay(replay) => {
            replay::render(app, replay, theme, frame.buffer_mut(), body);
            Vec::new()
        }
    };
    if let Some(overlay) = &app.overlay {
        overlay::render(overlay, app, theme, frame, area);
        return Vec::new();
    }
    links
}

/// " Hallway │ server │ name @handle" on the left, "? help" (the help's key) on the right.
fn title_bar(app: &App, theme: &Theme, buf: &mut Buffer, area: Rect) {
    buf.set_style(area, theme.title_bar);
    let cols = usize::from(area.width);
    let brand = " Hallway ";
    let help = format!(
        "{} help ",
        app.keys.key_label(crate::app::keymap::Action::Help)
    );
    let help = help.as_str();
    let me = match &app.my_handle {
        Some(handle) => format!("{} @{handle}", app.my_name),
        None => app.my_name.clone(),
    };
    let rest = format!("│ {} │ {me}", app.server);
    let show_help = text::width(brand) + text::width(help) + 8 <= cols;
    let rest_cols = cols
        .saturating_sub(text::width(brand))
        .saturating_sub(if show_help { text::width(help) + 1 } else { 0 });
    let left = vec![
        Span::styled(brand, theme.brand),
        Span::styled(text::fit(&rest, rest_cols), theme.title_bar),
    ];
    let right = if show_help {
        vec![Span::styled(help, theme.title_bar)]
    } else {
        Vec::new()
    };
    text::put(buf, area, 0, text::spread(left, right, cols));
}
