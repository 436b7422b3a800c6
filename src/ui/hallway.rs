//! The hallway: the rooms live now, as two-line cards (title and age; who is on stage,
//! who is speaking, how many listen), with the filter, the empty, loading and error
//! states, the event line and the keys.

use ratatui::Frame;
use ratatui::buffer::Buffer;
use ratatui::layout::{Position, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Widget, Wrap};

use super::Theme;
use super::text::{self, put};
use crate::app::keymap::Action;
use crate::app::{App, HallwayItem};
use crate::protocol::replay::ReplayInfo;
use crate::protocol::schedule::ScheduledRoom;
use crate::protocol::{Role, RoomSummary};

/// Rows per room card, not counting the blank row between cards.
const CARD_ROWS: u16 = 2;

pub fn render(app: &App, theme: &Theme, frame: &mut Frame, area: Rect) {
    if area.is_empty() {
        return;
    }
    let h = area.height;
    let footer_rows = u16::from(h >= 3);
    let notice_rows = u16::from(h >= 4);
    let list = Rect {
        y: area.y + 1,
        height: h.saturating_sub(1 + footer_rows + notice_rows),
        ..area
    };
    header(app, theme, frame, area);
    let buf = frame.buffer_mut();
    room_list(app, theme, buf, list);
    if notice_rows > 0
        && let Some(notice) = app.current_notice()
    {
        let line = Line::from(Span::styled(
            format!(
                " {}",
                text::fit(notice, usize::from(area.width).saturating_sub(1))
            ),
            theme.notice,
        ));
        put(buf, area, h - footer_rows - 1, line);
    }
    if footer_rows > 0 {
        // Typing a filter is text, not the keymap's actions.
        let typing = [("type", "to filter"), ("Enter", "done"), ("Esc", "clear")];
        let actions: Vec<(String, &str)> = [
            (Action::Filter, "filter"),
            (Action::NewRoom, "new room"),
            (Action::Join, "join"),
            (Action::Schedule, "schedule"),
            (Action::Refresh, "refresh"),
            (Action::Quit, "quit"),
        ]
        .into_iter()
        .map(|(action, what)| (app.keys.key_label(action), what))
        .collect();
        let keyed: Vec<(&str, &str)> = actions.iter().map(|(k, w)| (k.as_str(), *w)).collect();
        let hints: &[(&str, &str)] = if app.filtering { &typing } else { &keyed };
        let line = text::hint_line(theme, vec![Span::raw(" ")], hints, usize::from(area.width));
        put(buf, area, h - 1, line);
    }
}

/// "LIVE NOW" and the count, or the filter being typed.
fn header(app: &App, theme: &Theme, frame: &mut Frame, area: Rect) {
    let cols = usize::from(area.width);
    let total = app.rooms.len();
    let visible = app.visible_rooms().len();
    let plural = |n: usize| if n == 1 { "room" } else { "rooms" };
    let line = if app.filtering || !app.filter.is_empty() {
        let prefix = " / filter: ";
        let count = format!("{visible} of {total} {} ", plural(total));
        let room_for_text = cols
            .saturating_sub(text::width(prefix) + text::width(&count) + 2)
            .max(cols.saturating_sub(text::width(prefix) + 1).min(8));
        let shown = text::fit(&app.filter, room_for_text);
        if app.filtering && app.overlay.is_none() {
            let x = text::width(prefix) + text::width(&shown);
            if x < cols {
                let x = area.x.saturating_add(u16::try_from(x).unwrap_or(u16::MAX));
                frame.set_cursor_position(Position::new(x, area.y));
            }
        }
        text::spread(
            vec![
                Span::raw(" "),
                Span::styled("/", theme.key),
                Span::styled(" filter: ", theme.dim),
                Span::styled(shown, theme.room_title),
            ],
            vec![Span::styled(count, theme.dim)],
            cols,
        )
    } else {
        let count = if app.rooms_loaded && app.rooms_error.is_none() {
            format!("{total} {} ", plural(total))
        } else {
            String::new()
        };
        text::spread(
            vec![Span::raw(" "), Span::styled("LIVE NOW", theme.heading)],
            vec![Span::styled(count, theme.dim)],
            cols,
        )
    };
    put(frame.buffer_mut(), area, 0, line);
}

fn room_list(app: &App, theme: &Theme, buf: &mut Buffer, area: Rect) {
    if area.is_empty() {
        return;
    }
    let message = |lines: Vec<Line<'static>>, buf: &mut Buffer| {
        let inner = Rect {
            x: area.x.saturating_add(1),
            y: area.y.saturating_add(u16::from(area.height > 2)),
            width: area.width.saturating_sub(2),
            height: area.height.saturating_sub(u16::from(area.height > 2)),
        };
        Paragraph::new(lines)
            .wrap(Wrap { trim: true })
            .render(inner, buf);
    };
    if let (Some(error), true) = (&app.rooms_error, app.rooms.is_empty()) {
        return message(
            vec![
                Line::styled(
                    text::terminal_safe(&format!("Could not load the rooms: {error}")).into_owned(),
                    theme.error,
                ),
                Line::raw(""),
                Line::from(vec![
                    Span::raw("Press "),
                    Span::styled(app.keys.key_label(Action::Refresh), theme.key),
                    Span::raw(" to retry."),
                ]),
            ],
            buf,
        );
    }
    if !app.rooms_loaded {
        return message(
            vec![Line::styled("Looking for live rooms…", theme.dim)],
            buf,
        );
    }
    if app.rooms.is_empty() && app.upcoming.is_empty() && app.replays.is_empty() {
        return message(
            vec![Line::from(vec![
                Span::raw("No rooms are live. Press "),
                Span::styled(app.keys.key_label(Action::NewRoom), theme.key),
                Span::raw(" to start one."),
            ])],
            buf,
        );
    }
    let items = app.hallway_items();
    if items.is_empty() {
        return message(
            vec![Line::from(vec![
                Span::raw(format!("No rooms match \u{201c}{}\u{201d}. ", app.filter)),
                Span::styled("Esc", theme.key),
                Span::raw(" clears the filter."),
            ])],
            buf,
        );
    }
    let mut area = area;
    if let Some(error) = &app.rooms_error {
        // A stale list is still worth showing; say that it is stale.
        let cols = usize::from(area.width);
        let line = format!(
            " Could not refresh: {error} — {} to retry",
            app.keys.key_label(Action::Refresh)
        );
        put(
            buf,
            area,
            0,
            Line::styled(text::fit(&line, cols), theme.error),
        );
        area.y += 1;
        area.height -= 1;
    } else if app.rooms.is_empty() && area.height > 3 {
        let line = Line::from(vec![
            Span::styled(" No rooms are live now. Press ", theme.dim),
            Span::styled(app.keys.key_label(Action::NewRoom), theme.key),
            Span::styled(" to start one.", theme.dim),
        ]);
        put(buf, area, 0, line);
        area.y += 2;
        area.height -= 2;
    }
    cards(app, &items, theme, buf, area);
}

/// The room cards, scrolled so the selected one is in view, with "more" counts.
fn cards(app: &App, items: &[HallwayItem<'_>], theme: &Theme, buf: &mut Buffer, area: Rect) {
    let total = items.len();
    let fits_all = usize::from(area.height + 1) / usize::from(CARD_ROWS + 1) >= total;
    let shown = if fits_all {
        total
    } else {
        // Cards take CARD_ROWS + 1 rows each; the gap after the last holds the "more" line.
        (usize::from(area.height) / usize::from(CARD_ROWS + 1)).max(1)
    };
    let selected = app.selected_room.min(total.saturating_sub(1));
    let first = selected.saturating_sub(shown - 1).min(total - shown);
    let first_upcoming = items
        .iter()
        .position(|i| matches!(i, HallwayItem::Upcoming(_)));
    let first_replay = items
        .iter()
        .position(|i| matches!(i, HallwayItem::Replay(_)));
    for (slot, item) in items.iter().enumerate().skip(first).take(shown) {
        let row = u16::try_from(slot - first)
            .unwrap_or(u16::MAX)
            .saturating_mul(CARD_ROWS + 1);
        // A section's heading sits in the gap above its first card.
        let heading = if Some(slot) == first_upcoming {
            Some("UPCOMING")
        } else if Some(slot) == first_replay {
            Some("REPLAYS")
        } else {
            None
        };
        if let Some(heading) = heading
            && row > 0
        {
            let title = vec![Span::styled(heading, theme.heading)];
            put(
                buf,
                area,
                row - 1,
                text::rule(title, usize::from(area.width), theme.dim),
            );
        }
        let chosen = slot == selected;
        match item {
            HallwayItem::Live(room) => card(app, room, chosen, theme, buf, area, row),
            HallwayItem::Upcoming(scheduled) => {
                upcoming_card(app, scheduled, chosen, theme, buf, area, row);
            }
            HallwayItem::Replay(info) => replay_card(info, chosen, theme, buf, area, row),
        }
    }
    if !fits_all {
        let below = total - first - shown;
        let mut parts = Vec::new();
        if first > 0 {
            parts.push(format!("↑ {first} more above"));
        }
        if below > 0 {
            parts.push(format!("↓ {below} more below"));
        }
        let line = format!("  {}", parts.join("   "));
        let row = u16::try_from(shown)
            .unwrap_or(u16::MAX)
            .saturating_mul(CARD_ROWS + 1)
            .saturating_sub(1);
        put(buf, area, row, Line::styled(line, theme.dim));
    }
}

fn card(
    app: &App,
    room: &RoomSummary,
    selected: bool,
    theme: &Theme,
    buf: &mut Buffer,
    area: Rect,
    row: u16,
) {
    let cols = usize::from(area.width);
    let marker = marker(selected, theme);
    // Before joining, everyone sees that the room is kept (a replay) or recorded.
    let rec = if room.replay {
        "\u{25cf} REC replay  "
    } else if room.recording {
        "\u{25cf} REC  "
    } else {
        ""
    };
    let age = format!(
        "{rec}{} ",
        text::live_for(app.now_ms.saturating_sub(room.created_at_ms))
    );
    // Rooms with someone I follow on the stage come first, marked.
    let followed = if room.followed { "★ " } else { "" };
    let lock = if room.private { "\u{1f512} " } else { "" };
    let title_cols =
        cols.saturating_sub(2 + text::width(followed) + text::width(lock) + text::width(&age) + 1);
    let title_line = text::spread(
        vec![
            marker.clone(),
            Span::styled(followed, theme.hand),
            Span::styled(lock, theme.badge),
            Span::styled(text::fit(&room.title, title_cols), theme.room_title),
        ],
        vec![Span::styled(age, theme.dim)],
        cols,
    );
    let listening = format!("{} listening ", text::thousands(room.listener_count));
    let stage_cols = cols.saturating_sub(4 + text::width(&listening) + 1);
    let mut stage = vec![marker, Span::raw("  ")];
    stage.extend(stage_spans(room, theme, stage_cols));
    let stage_line = text::spread(stage, vec![Span::styled(listening, theme.dim)], cols);
    draw_card(buf, area, row, [title_line, stage_line], selected, theme);
}

/// A scheduled room: "◷ title        Thu 3 Dec 18:00 CET", then who hosts it and when
/// it starts ("in 2h") or what Enter does.
fn upcoming_card(
    app: &App,
    room: &ScheduledRoom,
    selected: bool,
    theme: &Theme,
    buf: &mut Buffer,
    area: Rect,
    row: u16,
) {
    let cols = usize::from(area.width);
    let marker = marker(selected, theme);
    let when = format!("{} ", text::local_time(room.starts_at_ms));
    let followed = if room.followed { "★ " } else { "" };
    let title_cols = cols.saturating_sub(2 + 2 + text::width(followed) + text::width(&when) + 1);
    let title_line = text::spread(
        vec![
            marker.clone(),
            Span::styled("◷ ", theme.dim),
            Span::styled(followed, theme.hand),
            Span::styled(text::fit(&room.title, title_cols), theme.room_title),
        ],
        vec![Span::styled(when, theme.dim)],
        cols,
    );
    let mine = app.is_my_handle(&room.host.handle);
    let state = if room.room.is_some() {
        "live now: Enter to join".to_string()
    } else if room.starts_at_ms > app.now_ms {
        format!(
            "in {}",
            text::duration(room.starts_at_ms.saturating_sub(app.now_ms))
        )
    } else if mine {
        "due: Enter to start it".to_string()
    } else {
        "due: waiting for the host".to_string()
    };
    let host = if mine {
        "you host it".to_string()
    } else {
        format!("{} hosts", room.host.name)
    };
    let about = if room.description.is_empty() {
        format!("{host} · {state}")
    } else {
        format!("{host} · {state} · {}", room.description)
    };
    let detail_line = Line::from(vec![
        marker,
        Span::raw("  "),
        Span::styled(text::fit(&about, cols.saturating_sub(4)), theme.dim),
    ]);
    draw_card(buf, area, row, [title_line, detail_line], selected, theme);
}

/// The replay of a room that ended: "▶ title      Tue 1 Dec 18:00 · 42m", then who
/// hosted and who spoke.
fn replay_card(
    info: &ReplayInfo,
    selected: bool,
    theme: &Theme,
    buf: &mut Buffer,
    area: Rect,
    row: u16,
) {
    let cols = usize::from(area.width);
    let marker = marker(selected, theme);
    let length = info.length_ms();
    let when = format!(
        "{} · {} ",
        text::local_time(info.started_at_ms),
        text::duration(length)
    );
    let title_cols = cols.saturating_sub(2 + 2 + text::width(&when) + 1);
    let title_line = text::spread(
        vec![
            marker.clone(),
            Span::styled("▶ ", theme.dim),
            Span::styled(text::fit(&info.title, title_cols), theme.room_title),
        ],
        vec![Span::styled(when, theme.dim)],
        cols,
    );
    let spoke: Vec<&str> = info.tracks.iter().map(|t| t.user.name.as_str()).collect();
    let mut about = format!("replay · {} hosted", info.host.name);
    if !spoke.is_empty() {
        about.push_str(&format!(" · {} spoke", spoke.join(", ")));
    }
    if info.incomplete {
        about.push_str(" · incomplete");
    }
    let detail_line = Line::from(vec![
        marker,
        Span::raw("  "),
        Span::styled(text::fit(&about, cols.saturating_sub(4)), theme.dim),
    ]);
    draw_card(buf, area, row, [title_line, detail_line], selected, theme);
}

/// The "▌" that marks the selected card's rows.
fn marker(selected: bool, theme: &Theme) -> Span<'static> {
    if selected {
        Span::styled("▌ ", theme.heading)
    } else {
        Span::raw("  ")
    }
}

/// A card's two rows from `row`, reversed when it is the selected one.
fn draw_card(
    buf: &mut Buffer,
    area: Rect,
    row: u16,
    [first, second]: [Line<'_>; 2],
    selected: bool,
    theme: &Theme,
) {
    put(buf, area, row, first);
    if row + 1 < area.height {
        put(buf, area, row + 1, second);
    }
    if selected {
        let rows = CARD_ROWS.min(area.height.saturating_sub(row));
        let rect =
            Rect::new(area.x, area.y.saturating_add(row), area.width, rows).intersection(buf.area);
        buf.set_style(rect, theme.selected);
    }
}

/// "◉ ada host  ○ grace  ◉ linus  +2", as many as fit in `cols`.
fn stage_spans(room: &RoomSummary, theme: &Theme, cols: usize) -> Vec<Span<'static>> {
    if room.speakers.is_empty() {
        let waiting = match &room.host {
            Some(host) => format!("{} is hosting", host.name),
            None => "waiting for a host".to_string(),
        };
        return vec![Span::styled(text::fit(&waiting, cols), theme.dim)];
    }
    let mut spans: Vec<Span<'static>> = Vec::new();
    let mut used = 0;
    for (i, member) in room.speakers.iter().enumerate() {
        let (mark, mark_style) = if member.speaking {
            ("◉ ", theme.speaking)
        } else {
            ("○ ", theme.dim)
        };
        let name = text::fit(&member.name, 16);
        let badge = match member.role {
            Role::Host => " host",
            _ => "",
        };
        let gap = if i == 0 { "" } else { "  " };
        let left_after = room.speakers.len() - i - 1;
        let more = if left_after > 0 {
            text::width(&format!("  +{left_after}"))
        } else {
            0
        };
        let needed = text::width(gap) + 2 + text::width(&name) + text::width(badge);
        if used + needed + more > cols {
            let rest = room.speakers.len() - i;
            let tail = format!("{}+{rest}", if i == 0 { "" } else { "  " });
            if used + text::width(&tail) <= cols {
                spans.push(Span::styled(tail, theme.dim));
            }
            break;
        }
        spans.push(Span::raw(gap));
        spans.push(Span::styled(mark, mark_style));
        let name_style = if member.speaking {
            theme.speaking
        } else {
            ratatui::style::Style::new()
        };
        spans.push(Span::styled(name, name_style));
        if !badge.is_empty() {
            spans.push(Span::styled(badge, theme.badge));
        }
        used += needed;
    }
    spans
}
