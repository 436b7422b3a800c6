//! Modals drawn over the screen: every key binding (help), the new room's title box, the
//! confirmation before removing someone, a profile card and the report box.

use ratatui::Frame;
use ratatui::layout::{Position, Rect};
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph, Widget, Wrap};

use super::Theme;
use super::text::{self, put};
use crate::app::keymap::{
    ALL_GROUPS, Action, Group, HelpLayout, Keymap, LEFT_COLUMN, RIGHT_COLUMN,
};
use crate::app::{App, Card, Overlay, REPORT_MAX_CHARS};
use crate::protocol::chat::MAX_PIN_CHARS;

/// Longest title the model accepts (it stops taking characters there).
const TITLE_MAX_CHARS: usize = 100;

pub fn render(overlay: &Overlay, app: &App, theme: &Theme, frame: &mut Frame, area: Rect) {
    let keys = &app.keys;
    match overlay {
        Overlay::Help { scroll } => help(*scroll, keys, theme, frame, area),
        Overlay::NewRoom {
            title,
            private,
            replay,
        } => new_room(title, (*private, *replay), theme, frame, area),
        Overlay::ConfirmRemove { name, .. } => confirm_remove(name, theme, frame, area),
        Overlay::ConfirmDeleteReplay { title, .. } => {
            confirm_delete_replay(title, theme, frame, area)
        }
        Overlay::Card(c) => card(c, app, keys, theme, frame, area),
        Overlay::Report { handle, reason } => report(handle, reason, theme, frame, area),
        Overlay::Pin { text } => pin(text, theme, frame, area),
        Overlay::Schedule {
            title,
            when,
            on_when,
        } => schedule(title, when, *on_when, theme, frame, area),
    }
}

/// Scheduling a room: its title and when, the field being typed underlined.
fn schedule(title: &str, when: &str, on_when: bool, theme: &Theme, frame: &mut Frame, area: Rect) {
    let inner = modal(frame, area, 60, 10, "Schedule a room", theme.border);
    if inner.is_empty() {
        return;
    }
    let cols = usize::from(inner.width);
    let buf = frame.buffer_mut();
    let fields = [
        ("Title", title, "e.g. Rust office hours", !on_when),
        (
            "When",
            when,
            "e.g. 2026-12-03 18:00 (your time zone)",
            on_when,
        ),
    ];
    for (i, (label, value, placeholder, active)) in fields.into_iter().enumerate() {
        let row = u16::try_from(i * 2).unwrap_or(u16::MAX);
        put(buf, inner, row, Line::styled(label, theme.heading));
        let field =
            Rect::new(inner.x, inner.y.saturating_add(row + 1), inner.width, 1).intersection(inner);
        if field.is_empty() {
            continue;
        }
        let line = if value.is_empty() {
            Line::styled(placeholder.to_string(), theme.dim)
        } else {
            Line::raw(text::fit_tail(value, cols.saturating_sub(1)))
        };
        line.render(field, buf);
        if active {
            buf.set_style(
                field,
                ratatui::style::Style::new().add_modifier(Modifier::UNDERLINED),
            );
        }
    }
    let hints = [
        ("Tab", "next field"),
        ("Enter", "schedule"),
        ("Esc", "cancel"),
    ];
    let line = text::hint_line(theme, Vec::new(), &hints, cols);
    put(buf, inner, inner.height.saturating_sub(1), line);
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
fn group_lines(group: &Group, keys: &Keymap, theme: &Theme, cols: usize) -> Vec<Line<'static>> {
    // The group's widest label and a space, at least 8 columns.
    let key_cols = group
        .entries
        .iter()
        .map(|e| text::width(&keys.label(e)) + 1)
        .max()
        .unwrap_or(0)
        .max(8);
    let mut lines = vec![Line::styled(text::fit(group.heading, cols), theme.heading)];
    for entry in group.entries {
        lines.push(Line::from(vec![
            Span::styled(text::pad(&keys.label(entry), key_cols), theme.key),
            Span::raw(text::fit(entry.help, cols.saturating_sub(key_cols))),
        ]));
    }
    lines
}

/// Every binding, grouped; two columns when there is room; scrolled `scroll` rows down
/// where the screen is too small for all of it.
fn help(scroll: u16, keys: &Keymap, theme: &Theme, frame: &mut Frame, area: Rect) {
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
        let column = |groups: &[&Group], cols: usize| {
            let mut lines = Vec::new();
            for group in groups {
                if !lines.is_empty() {
                    lines.push(Line::raw(""));
                }
                lines.extend(group_lines(group, keys, theme, cols));
            }
            lines
        };
        let left = column(&LEFT_COLUMN, cols);
        let mut right = column(&RIGHT_COLUMN, usize::from(right_area.width));
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
        for group in ALL_GROUPS {
            if !lines.is_empty() {
                lines.push(Line::raw(""));
            }
            lines.extend(group_lines(group, keys, theme, cols));
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

/// A one-line text box: what to type, a count, the field with the cursor at the end of
/// what has been typed, and what Enter and Esc do.
struct TextBox<'a> {
    title: &'a str,
    prompt: &'a str,
    placeholder: &'a str,
    value: &'a str,
    max_chars: usize,
    enter: &'a str,
}

fn text_box(text_box: &TextBox<'_>, theme: &Theme, frame: &mut Frame, area: Rect) {
    let TextBox {
        title,
        prompt,
        placeholder,
        value,
        max_chars,
        enter,
    } = *text_box;
    let inner = modal(frame, area, 60, 8, title, theme.border);
    if inner.is_empty() {
        return;
    }
    let cols = usize::from(inner.width);
    let count = format!("{}/{max_chars}", value.chars().count());
    let buf = frame.buffer_mut();
    put(
        buf,
        inner,
        0,
        text::spread(
            vec![Span::styled(prompt.to_string(), theme.heading)],
            vec![Span::styled(count, theme.dim)],
            cols,
        ),
    );
    // The field keeps its end (and the cursor) in view as the text grows.
    let field_row = u16::from(inner.height >= 3) * 2;
    let field_cols = cols.saturating_sub(1);
    let shown = text::fit_tail(value, field_cols);
    let field = Rect::new(inner.x, inner.y + field_row, inner.width, 1).intersection(inner);
    if !field.is_empty() {
        let line = if value.is_empty() {
            Line::styled(placeholder.to_string(), theme.dim)
        } else {
            Line::raw(shown.clone())
        };
        line.render(field, buf);
        buf.set_style(
            field,
            ratatui::style::Style::new().add_modifier(Modifier::UNDERLINED),
        );
        let x = inner.x
            + u16::try_from(text::width(if value.is_empty() { "" } else { &shown })).unwrap_or(0);
        if x < inner.x + inner.width {
            frame.set_cursor_position(Position::new(x, field.y));
        }
    }
    let hints = [("Enter", enter), ("Esc", "cancel")];
    let buf = frame.buffer_mut();
    put(
        buf,
        inner,
        inner.height.saturating_sub(1).max(field_row + 1),
        text::hint_line(theme, Vec::new(), &hints, cols),
    );
}

/// The title box for a new room.
fn new_room(
    title: &str,
    (private, replay): (bool, bool),
    theme: &Theme,
    frame: &mut Frame,
    area: Rect,
) {
    let new_room = TextBox {
        title: match (private, replay) {
            (true, _) => "Start a private room",
            (false, true) => "Start a room, replay on",
            (false, false) => "Start a room",
        },
        prompt: match (private, replay) {
            (true, _) => "Private (follows + link). Tab: public",
            (false, true) => "Replay on: the server keeps it. Tab: private",
            (false, false) => "What is the room about? Tab: replay on",
        },
        placeholder: "a title people will see in the hallway",
        value: title,
        max_chars: TITLE_MAX_CHARS,
        enter: "start",
    };
    text_box(&new_room, theme, frame, area);
}

/// Why someone is reported.
fn report(handle: &str, reason: &str, theme: &Theme, frame: &mut Frame, area: Rect) {
    let title = format!("Report @{}", text::fit(handle, 20));
    let report = TextBox {
        title: &title,
        prompt: "What happened? (the server's admins read it)",
        placeholder: "e.g. slurs on stage, spam in every room",
        value: reason,
        max_chars: REPORT_MAX_CHARS,
        enter: "send",
    };
    text_box(&report, theme, frame, area);
}

/// A moderator typing the room's pin.
fn pin(value: &str, theme: &Theme, frame: &mut Frame, area: Rect) {
    let pin = TextBox {
        title: "Pin at the top of the room",
        prompt: "A link (http or https) or one line; empty takes the pin down",
        placeholder: "e.g. https://example.org/agenda",
        value,
        max_chars: MAX_PIN_CHARS,
        enter: "pin",
    };
    text_box(&pin, theme, frame, area);
}

/// Someone's profile card: name and handle, bio, joined and invited by, followers, what
/// I have done (follow, block), their device keys, and the card's keys.
fn card(card: &Card, app: &App, keys: &Keymap, theme: &Theme, frame: &mut Frame, area: Rect) {
    let title = format!("@{}", text::fit(&card.handle, 24));
    let inner = modal(frame, area, 60, 13, &title, theme.border);
    if inner.is_empty() {
        return;
    }
    let cols = usize::from(inner.width);
    let mut lines: Vec<Line<'static>> = Vec::new();
    match (&card.profile, &card.error) {
        (Some(p), _) => {
            lines.push(Line::from(vec![
                Span::styled(text::fit(&p.user.name, cols / 2), theme.room_title),
                Span::styled(format!("  @{}", text::fit(&p.user.handle, 20)), theme.dim),
                Span::styled(if p.suspended { "  suspended" } else { "" }, theme.error),
            ]));
            if !p.bio.is_empty() {
                lines.push(Line::raw(text::fit(&p.bio, cols * 2)));
            }
            let mut joined = format!("joined {}", text::date(p.joined_at_ms));
            if let Some(by) = &p.invited_by {
                joined.push_str(&format!(" · invited by @{}", text::fit(by, 20)));
            }
            lines.push(Line::styled(joined, theme.dim));
            lines.push(Line::raw(format!(
                "{} followers · {} following",
                text::thousands(p.followers as usize),
                text::thousands(p.following as usize)
            )));
            let mut yours = Vec::new();
            if p.followed {
                yours.push(Span::styled("✓ you follow them  ", theme.speaking));
            }
            if p.blocked {
                yours.push(Span::styled("⊘ you block them", theme.error));
            }
            if !yours.is_empty() {
                lines.push(Line::from(yours));
            }
            let verified = app.verified.get(&card.handle.to_lowercase());
            for device in p.devices.iter().take(crate::app::CARD_DEVICES) {
                // Computed here from the keys: a server's own fingerprint could lie.
                let fingerprint =
                    crate::identity::fingerprint_of(&device.sign_key, &device.agree_key);
                let mut line = vec![Span::styled(format!("key {fingerprint}"), theme.dim)];
                if verified.is_some_and(|v| v.contains(&device.agree_key)) {
                    line.push(Span::styled("  ✓ verified", theme.speaking));
                }
                lines.push(Line::from(line));
            }
            if p.devices.len() > crate::app::CARD_DEVICES {
                lines.push(Line::styled(
                    format!(
                        "+{} more devices (not shown, not verified)",
                        p.devices.len() - crate::app::CARD_DEVICES
                    ),
                    theme.warn,
                ));
            }
        }
        (None, Some(error)) => lines.push(Line::styled(
            text::fit(&format!("Could not load the card: {error}"), cols * 2),
            theme.error,
        )),
        (None, None) => lines.push(Line::styled(
            format!(
                "{} — loading…",
                text::fit(&card.name, cols.saturating_sub(12))
            ),
            theme.dim,
        )),
    }
    let body = Rect {
        height: inner.height.saturating_sub(2),
        ..inner
    };
    let buf = frame.buffer_mut();
    Paragraph::new(lines)
        .wrap(Wrap { trim: true })
        .render(body, buf);
    let follow = if card.profile.as_ref().is_some_and(|p| p.followed) {
        "unfollow"
    } else {
        "follow"
    };
    let block = if card.profile.as_ref().is_some_and(|p| p.blocked) {
        "unblock"
    } else {
        "block"
    };
    let labels: Vec<(String, &str)> = [
        (Action::Follow, follow),
        (Action::Block, block),
        (Action::Report, "report"),
        (Action::Verify, "verified"),
        (Action::Close, "close"),
    ]
    .into_iter()
    .map(|(action, what)| (keys.key_label(action), what))
    .collect();
    let hints: Vec<(&str, &str)> = labels.iter().map(|(k, w)| (k.as_str(), *w)).collect();
    put(
        buf,
        inner,
        inner.height.saturating_sub(1),
        text::hint_line(theme, Vec::new(), &hints, cols),
    );
}

/// "Remove ada from the room? They cannot rejoin." and y/n.
fn confirm_delete_replay(title: &str, theme: &Theme, frame: &mut Frame, area: Rect) {
    let question = Line::from(vec![
        Span::raw("Delete the replay of "),
        Span::styled(text::fit(title, 24), theme.room_title),
        Span::raw("?"),
    ]);
    let answer = ("Delete", "Nobody can play it again.", "delete");
    confirm(question, answer, theme, frame, area);
}

fn confirm_remove(name: &str, theme: &Theme, frame: &mut Frame, area: Rect) {
    let question = Line::from(vec![
        Span::raw("Remove "),
        Span::styled(text::fit(name, 24), theme.room_title),
        Span::raw(" from the room?"),
    ]);
    confirm(
        question,
        ("Remove", "They cannot rejoin.", "remove"),
        theme,
        frame,
        area,
    );
}

/// A yes/no box: `question`, then what follows from yes; `y` answers with `yes`.
fn confirm(
    question: Line<'_>,
    (heading, consequence, yes): (&str, &str, &'static str),
    theme: &Theme,
    frame: &mut Frame,
    area: Rect,
) {
    let inner = modal(frame, area, 52, 7, heading, theme.error);
    if inner.is_empty() {
        return;
    }
    let body = Rect {
        height: inner.height.saturating_sub(1),
        ..inner
    };
    let buf = frame.buffer_mut();
    Paragraph::new(vec![question, Line::raw(consequence)])
        .wrap(Wrap { trim: true })
        .render(body, buf);
    let hints = [("y", yes), ("n", "keep")];
    put(
        buf,
        inner,
        inner.height.saturating_sub(1),
        text::hint_line(theme, Vec::new(), &hints, usize::from(inner.width)),
    );
}
