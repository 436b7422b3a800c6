//! The view: draws an [`App`] with ratatui. It reads the model and never changes it, so a
//! frame is a pure function of the state (and of the clock inside it, `app.now_ms`).
//!
//! - [`theme`]: colours, or none for `NO_COLOR`.
//! - `hallway`: the rooms live now.
//! - `room`: a room's stage, audience, your own bar and the keys for your role.
//! - `overlay`: help, new room, confirm removal.
//! - `text`: truncation, durations, meters and line helpers.

mod hallway;
mod overlay;
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

/// Draws the whole screen for `app`. Never panics, whatever the terminal size.
pub fn render(app: &App, theme: &Theme, frame: &mut Frame) {
    let area = frame.area();
    if area.is_empty() {
        return;
    }
    let title = Rect { height: 1, ..area };
    let body = Rect {
        y: area.y.saturating_add(1),
        height: area.height.saturating_sub(1),
        ..area
    };
    title_bar(app, theme, frame.buffer_mut(), title);
    match &app.screen {
        Screen::Hallway => hallway::render(app, theme, frame, body),
        Screen::Room(room) => room::render(app, room, theme, frame, body),
    }
    if let Some(overlay) = &app.overlay {
        overlay::render(overlay, app, theme, frame, area);
    }
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
