//! Modals drawn over the screen: every key binding (help), the new room's title box,
//! and the confirmation before removing someone.

use ratatui::Frame;
use ratatui::layout::{Position, Rect};
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph, Widget, Wrap};

use super::Theme;
use super::text::{self, put};
use crate::app::Overlay;
use crate::app::keymap::{Group, HALLWAY, HelpLayout, MODERATORS, ROOM, STAGE};

/// Longest title the model accepts (it stops taking characters there).
const TITLE_MAX_CHARS: usize = 100;

pub fn render(overlay: &Overlay, theme: &Theme, frame: &mut Frame, area: Rect) {
    match overlay {
        Overlay::Help { scroll } => help(*scroll, theme, frame, area),
        Overlay::NewRoom { title } => new_room(title, theme, frame, area),
        Overlay::ConfirmRemove { name, .. } => confirm_remove(name, theme, frame, area),
    }
}

/// A `width`×`height` box centred in `area`, shrunk to fit it, cleared and bordered;
/// returns the inside.
fn modal(
    frame: &mut Frame,
    area: Rect,
    width: u16,
    height: u16,
    title: &str,
    border: ratatui::style::Style,
) -> Rect {
    let width = width.min(area.width);
    let height = height.min(area.height);
    let outer = Rect {
        x: area.x + (area.width - width) / 2,
        y: area.y + (area.height - height) / 2,
        width,
        height,
    };
    let block = Block::bordered().border_style(border).title(Span::styled(
        format!(" {title} "),
        border.add_modifier(Modifier::BOLD),
    ));
    let inner = block.inner(outer);
    let buf = frame.buffer_mut();
    Clear.render(outer, buf);
    block.render(outer, buf);
    Rect {
        x: inner.x.saturating_add(1),
        width: inner.width.saturating_sub(2),
        ..inner
    }
}

/// A help group from the keymap: its heading, then one line per entry.
fn group_lines(group: &Group, theme: &Theme, cols: usize) -> Vec<Line<'static>> {
    const KEY_COLS: usize = 8;
    let mut lines = vec![Line::styled(text::fit(group.heading, cols), theme.heading)];
    for entry in group.entries {
        lines.push(Line::from(vec![
            Span::styled(text::pad(entry.label, KEY_COLS), theme.key),
            Span::raw(text::fit(entry.help, cols.saturating_sub(KEY_COLS))),
        ]));
    }
    lines
}

/// Every binding, grouped; two columns when there is room; scrolled `scroll` rows down
/// where the screen is too small for all of it.
fn help(scroll: u16, theme: &Theme, frame: &mut Frame, area: Rect) {
    let layout = HelpLayout::new(area.width, area.height);
    let two_columns = layout.two_columns;
    let scroll = scroll.min(layout.max_scroll());
    let inner = modal(
        frame,
        area,
        layout.width,
        layout.height,
        "Help",
        theme.border,
    );
    if inner.is_empty() {
        return;
    }
    let content = Rect {
        height: inner.height.saturating_sub(2),
        ..inner
    };
    let buf = frame.buffer_mut();
    if two_columns {
        let half = content.width / 2;
        let left_area = Rect {
            width: half,
            ..content
        };
        let right_area = Rect {
            x: content.x + half + 1,
            width: content.width.saturating_sub(half + 1),
            ..content
        };
        let cols = usize::from(half.saturating_sub(1));
        let mut left = group_lines(&HALLWAY, theme, cols);
        left.push(Line::raw(""));
        left.extend(group_lines(&ROOM, theme, cols));
        let cols = usize::from(right_area.width);
        let mut right = group_lines(&STAGE, theme, cols);
        right.push(Line::raw(""));
        right.extend(group_lines(&MODERATORS, theme, cols));
        right.push(Line::raw(""));
        right.push(Line::styled("Esc closes a box; Ctrl-C quits.", theme.dim));
        Paragraph::new(left)
            .scroll((scroll, 0))
            .render(left_area, buf);
        Paragraph::new(right)
            .scroll((scroll, 0))
            .render(right_area, buf);
    } else {
        let cols = usize::from(content.width);
        let mut lines = Vec::new();
        for group in [&HALLWAY, &ROOM, &STAGE, &MODERATORS] {
            if !lines.is_empty() {
                lines.push(Line::raw(""));
            }
            lines.extend(group_lines(group, theme, cols));
        }
        Paragraph::new(lines)
            .scroll((scroll, 0))
            .render(content, buf);
    }
    let footer = if layout.max_scroll() == 0 {
        "any key closes this help".to_string()
    } else {
        let shown_to = (scroll + layout.visible).min(layout.total);
        format!("↑↓ scroll {shown_to}/{} · other keys close", layout.total)
    };
    if inner.height >= 2 {
        put(
            buf,
            inner,
            inner.height - 1,
            Line::styled(text::fit(&footer, usize::from(inner.width)), theme.dim),
        );
    }
}

/// The title box, with the cursor at the end of what has been typed.
fn new_room(title: &str, theme: &Theme, frame: &mut Frame, area: Rect) {
    let inner = modal(frame, area, 60, 8, "Start a room", theme.border);
    if inner.is_empty() {
        return;
    }
    let cols = usize::from(inner.width);
    let count = format!("{}/{TITLE_MAX_CHARS}", title.chars().count());
    let buf = frame.buffer_mut();
    put(
        buf,
        inner,
        0,
        text::spread(
            vec![Span::styled("What is the room about?", theme.heading)],
            vec![Span::styled(count, theme.dim)],
            cols,
        ),
    );
    // The field keeps its end (and the cursor) in view as the title grows.
    let field_row = u16::from(inner.height >= 3) * 2;
    let field_cols = cols.saturating_sub(1);
    let shown = text::fit_tail(title, field_cols);
    let field = Rect::new(inner.x, inner.y + field_row, inner.width, 1).intersection(inner);
    if !field.is_empty() {
        let line = if title.is_empty() {
            Line::styled("a title people will see in the hallway", theme.dim)
        } else {
            Line::raw(shown.clone())
        };
        line.render(field, buf);
        buf.set_style(
            field,
            ratatui::style::Style::new().add_modifier(Modifier::UNDERLINED),
        );
        let x = inner.x
            + u16::try_from(text::width(if title.is_empty() { "" } else { &shown })).unwrap_or(0);
        if x < inner.x + inner.width {
            frame.set_cursor_position(Position::new(x, field.y));
        }
    }
    let hints = [("Enter", "start"), ("Esc", "cancel")];
    let buf = frame.buffer_mut();
    put(
        buf,
        inner,
        inner.height.saturating_sub(1).max(field_row + 1),
        text::hint_line(theme, Vec::new(), &hints, cols),
    );
}

/// "Remove ada from the room? They cannot rejoin." and y/n.
fn confirm_remove(name: &str, theme: &Theme, frame: &mut Frame, area: Rect) {
    let inner = modal(frame, area, 52, 7, "Remove", theme.error);
    if inner.is_empty() {
        return;
    }
    let name = text::fit(name, 24);
    let question = vec![
        Line::from(vec![
            Span::raw("Remove "),
            Span::styled(name, theme.room_title),
            Span::raw(" from the room?"),
        ]),
        Line::raw("They cannot rejoin."),
    ];
    let body = Rect {
        height: inner.height.saturating_sub(1),
        ..inner
    };
    let buf = frame.buffer_mut();
    Paragraph::new(question)
        .wrap(Wrap { trim: true })
        .render(body, buf);
    let hints = [("y", "remove"), ("n", "keep")];
    put(
        buf,
        inner,
        inner.height.saturating_sub(1),
        text::hint_line(theme, Vec::new(), &hints, usize::from(inner.width)),
    );
}
