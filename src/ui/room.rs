//! The room: its title and link, the stage as a grid (badges, muted marks, who is
//! speaking and how loud), the audience (raised hands first with how long they have
//! waited, then everyone else, "+N more" when it does not fit), your own bar (role,
//! microphone, hand, level, connection and audio health), the event line and the keys
//! for your role.

use ratatui::Frame;
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Widget, Wrap};

use super::Hyperlink;
use super::Theme;
use super::text::{self, put};
use crate::app::keymap::{Action, Keymap};
use crate::app::life::PinShown;
use crate::app::{App, Connection, RoomScreen, RoomView};
use crate::protocol::{Participant, Role};

/// Narrowest stage cell: mark, a short name, a badge and a meter.
const STAGE_CELL_COLS: usize = 24;
/// Narrowest audience cell.
const AUDIENCE_CELL_COLS: usize = 18;
/// Name column of a raised-hand row.
const HAND_NAME_COLS: usize = 18;

/// Draws the room; returns where a pinned link sits, for the shell to make a hyperlink.
pub fn render(
    app: &App,
    room: &RoomScreen,
    theme: &Theme,
    frame: &mut Frame,
    area: Rect,
) -> Vec<Hyperlink> {
    if area.is_empty() {
        return Vec::new();
    }
    let buf = frame.buffer_mut();
    match &room.view {
        None => {
            joining(app, room, theme, buf, area);
            Vec::new()
        }
        Some(view) => in_room(app, room, view, theme, buf, area),
    }
}

/// Before the snapshot arrives: "Joining abc…" or the reconnecting state.
fn joining(app: &App, room: &RoomScreen, theme: &Theme, buf: &mut Buffer, area: Rect) {
    let h = area.height;
    let status = match &room.connection {
        Connection::Reconnecting { attempt, reason } => Line::styled(
            text::terminal_safe(&format!(
                "Reconnecting to {}… (attempt {attempt}: {reason})",
                room.id
            ))
            .into_owned(),
            theme.warn,
        ),
        Connection::Connecting | Connection::Live { .. } => {
            Line::styled(format!("Joining {}…", room.id), theme.heading)
        }
    };
    let footer_rows = u16::from(h >= 2);
    let notice_rows = u16::from(h >= 4);
    let middle = Rect {
        x: area.x.saturating_add(1),
        y: area.y + h.saturating_sub(footer_rows + notice_rows) / 3,
        width: area.width.saturating_sub(2),
        height: h.saturating_sub(footer_rows + notice_rows)
            - h.saturating_sub(footer_rows + notice_rows) / 3,
    };
    let mut lines = vec![status];
    if let Some(reason) = &app.audio.unavailable {
        lines.push(Line::raw(""));
        lines.push(Line::styled(format!("no audio: {reason}"), theme.warn));
    }
    Paragraph::new(lines)
        .wrap(Wrap { trim: true })
        .centered()
        .render(middle, buf);
    if notice_rows > 0 {
        notice(app, theme, buf, area, h - footer_rows - 1);
    }
    if footer_rows > 0 {
        let keys = [
            (app.keys.key_label(Action::Leave), "leave"),
            (app.keys.key_label(Action::Help), "help"),
            (app.keys.key_label(Action::Quit), "quit"),
        ];
        let hints: Vec<(&str, &str)> = keys.iter().map(|(k, w)| (k.as_str(), *w)).collect();
        let line = text::hint_line(theme, vec![Span::raw(" ")], &hints, usize::from(area.width));
        put(buf, area, h - 1, line);
    }
}

/// Rows of the screen, in the order they are given space when the terminal is short.
struct Plan {
    header: u16,
    middle: u16,
    you: u16,
    connection: u16,
    event: u16,
    keys: u16,
    moderation: u16,
}

impl Plan {
    fn new(height: u16, moderator: bool) -> Self {
        let mut left = height;
        let mut take = |rows: u16| {
            let got = rows.min(left);
            left -= got;
            got
        };
        let you = take(1);
        let keys = take(1);
        let header = take(1);
        let event = take(1);
        let connection = take(1);
        let moderation = take(u16::from(moderator));
        Self {
            header,
            middle: left,
            you,
            connection,
            event,
            keys,
            moderation,
        }
    }
}

fn in_room(
    app: &App,
    room: &RoomScreen,
    view: &RoomView,
    theme: &Theme,
    buf: &mut Buffer,
    area: Rect,
) -> Vec<Hyperlink> {
    let me = view.myself();
    let moderator = view.my_role().is_moderator();
    let plan = Plan::new(area.height, moderator);
    let mut y = 0;
    let mut next = |rows: u16| {
        let rect = Rect {
            y: area.y + y,
            height: rows,
            ..area
        };
        y += rows;
        rect
    };
    let header = next(plan.header);
    let middle = next(plan.middle);
    let you = next(plan.you);
    let connection = next(plan.connection);
    let event = next(plan.event);
    let keys = next(plan.keys);
    let moderation = next(plan.moderation);

    room_header(room, view, theme, buf, header);
    let ctx = Ctx {
        app,
        room,
        view,
        theme,
    };
    // The pin takes the first row of the middle, when the middle can spare it.
    let mut links = Vec::new();
    let middle = match &room.life.pin {
        Some(pin) if middle.height >= 4 => {
            links.extend(pin_line(
                pin,
                theme,
                buf,
                Rect {
                    height: 1,
                    ..middle
                },
            ));
            Rect {
                y: middle.y + 1,
                height: middle.height - 1,
                ..middle
            }
        }
        _ => middle,
    };
    if room.life.chat_open {
        // Wide: the chat beside the room. Narrow (80 columns): the stage stays, the chat
        // takes the audience's place.
        if middle.width >= WIDE_COLS {
            let chat_cols =
                u16::try_from((u32::from(middle.width) * 2 / 5).clamp(36, 60)).unwrap_or(36);
            let people_area = Rect {
                width: middle.width - chat_cols,
                ..middle
            };
            let chat_area = Rect {
                x: middle.x + middle.width - chat_cols,
                width: chat_cols,
                ..middle
            };
            people(&ctx, buf, people_area);
            chat_pane(&ctx, buf, chat_area);
        } else {
            let stage_rows = stage_only(&ctx, buf, middle);
            chat_pane(
                &ctx,
                buf,
                Rect {
                    y: middle.y + stage_rows,
                    height: middle.height - stage_rows,
                    ..middle
                },
            );
        }
    } else {
        people(&ctx, buf, middle);
    }
    you_line(app, room, me, theme, buf, you);
    connection_line(app, room, theme, buf, connection);
    notice(app, theme, buf, event, 0);
    key_line(app, room, me, theme, buf, keys);
    if moderator {
        moderation_line(&app.keys, room, view, theme, buf, moderation);
    }
    links
}

/// Columns from which the chat opens beside the room rather than in the audience's place.
const WIDE_COLS: u16 = 100;

/// "📌 https://example.org/agenda": the pin, and where its link is.
fn pin_line(pin: &PinShown, theme: &Theme, buf: &mut Buffer, area: Rect) -> Option<Hyperlink> {
    let mark = if theme.emoji { " 📌 " } else { " PIN " };
    let cols = usize::from(area.width).saturating_sub(text::width(mark) + 1);
    let shown = text::fit(&pin.text, cols);
    put(
        buf,
        area,
        0,
        Line::from(vec![
            Span::styled(mark, theme.hand),
            Span::styled(shown.clone(), theme.notice),
        ]),
    );
    let url = pin.link.clone()?;
    Some(Hyperlink {
        x: area.x + u16::try_from(text::width(mark)).unwrap_or(u16::MAX),
        y: area.y,
        text: shown,
        url,
    })
}

/// The stage alone, for a narrow screen with the chat open: its heading and rows, at most
/// half the area. Returns the rows used.
fn stage_only(ctx: &Ctx, buf: &mut Buffer, area: Rect) -> u16 {
    let cols = usize::from(area.width);
    let (stage, title) = stage_section(ctx, cols.saturating_sub(1));
    let rows = stage
        .rows
        .len()
        .max(1)
        .min(usize::from(area.height / 2).saturating_sub(1));
    put(buf, area, 0, text::rule(title, cols, ctx.theme.dim));
    let listed = ctx.view.listed();
    if ctx.view.stage().is_empty() {
        put(
            buf,
            band(area, 1, rows),
            0,
            Line::styled("  Nobody is on the stage.", ctx.theme.dim),
        );
    } else {
        draw_section(ctx, &listed, &stage, buf, band(area, 1, rows));
    }
    u16::try_from(rows + 1)
        .unwrap_or(area.height)
        .min(area.height)
}

/// The stage as a grid for `inner_cols`, and its heading.
fn stage_section(ctx: &Ctx, inner_cols: usize) -> (Section, Vec<Span<'static>>) {
    let stage_count = ctx.view.stage().len();
    let per_row = (inner_cols / STAGE_CELL_COLS).clamp(1, 6);
    let stage_indices: Vec<usize> = (0..stage_count).collect();
    let title = vec![Span::styled(
        format!("STAGE {stage_count}/{}", ctx.view.detail.stage_limit),
        ctx.theme.heading,
    )];
    (
        Section::grid(&stage_indices, per_row, inner_cols / per_row),
        title,
    )
}

/// The chat: who may write, the newest lines at the bottom (people I block left out),
/// and the line being written or how to start one.
fn chat_pane(ctx: &Ctx, buf: &mut Buffer, area: Rect) {
    if area.height < 2 || area.width < 8 {
        return;
    }
    let theme = ctx.theme;
    // A column of space between the room and the chat when it is beside it.
    let area = if area.x > 0 {
        Rect {
            x: area.x + 1,
            width: area.width - 1,
            ..area
        }
    } else {
        area
    };
    let cols = usize::from(area.width);
    let life = &ctx.view.detail.life;
    let title = vec![
        Span::styled("CHAT", theme.heading),
        Span::styled(format!(" · {}", life.chat.describe()), theme.dim),
    ];
    put(buf, area, 0, text::rule(title, cols, theme.dim));
    let bottom = area.height - 1;
    let keys = &ctx.app.keys;
    let (write, hide) = (keys.key_label(Action::Write), keys.key_label(Action::Chat));
    let input = match &ctx.room.life.draft {
        Some(draft) => Line::from(vec![
            Span::styled("> ", theme.key),
            Span::raw(text::fit_tail(draft, cols.saturating_sub(3))),
            Span::styled("_", theme.key),
        ]),
        None => {
            let why_not = ctx.view.chat_closed();
            match why_not {
                Some(why) => Line::styled(format!(" {}", text::fit(why, cols - 1)), theme.dim),
                None => text::hint_line(
                    theme,
                    vec![Span::raw(" ")],
                    &[(write.as_str(), "write"), (hide.as_str(), "hide")],
                    cols,
                ),
            }
        }
    };
    put(buf, area, bottom, input);
    let rows = usize::from(bottom.saturating_sub(1));
    let mut wrapped: Vec<Line<'static>> = Vec::new();
    for line in ctx
        .view
        .chat
        .iter()
        .filter(|l| !ctx.app.blocking.contains(&l.user_id))
    {
        let style = if line.user_id == ctx.view.me {
            theme.badge
        } else {
            theme.room_title
        };
        wrapped.extend(wrap_chat(&line.name, &line.text, cols, style));
    }
    if wrapped.is_empty() {
        put(buf, area, 1, Line::styled(" Nothing said yet.", theme.dim));
        return;
    }
    let first = wrapped.len().saturating_sub(rows);
    for (i, line) in wrapped.into_iter().skip(first).enumerate() {
        put(buf, area, u16::try_from(i + 1).unwrap_or(u16::MAX), line);
    }
}

/// "name: text" wrapped at spaces to `cols` (words longer than a row are cut), later rows
/// indented two columns. Both parts are escaped first: a server can send anything.
fn wrap_chat(name: &str, text_: &str, cols: usize, name_style: Style) -> Vec<Line<'static>> {
    let name = text::fit(name, (cols / 3).max(4));
    let body = text::terminal_safe(text_).into_owned();
    let mut rows = Vec::new();
    let mut spans = vec![Span::styled(format!("{name}: "), name_style)];
    let mut used = text::width(&name) + 2;
    let mut current = String::new();
    for word in body.split(' ') {
        let w = text::width(word);
        let gap = usize::from(!current.is_empty());
        if used + gap + w > cols && (used > 2 || !current.is_empty()) {
            spans.push(Span::raw(std::mem::take(&mut current)));
            rows.push(Line::from(std::mem::take(&mut spans)));
            spans.push(Span::raw("  "));
            used = 2;
        } else if gap == 1 {
            current.push(' ');
            used += 1;
        }
        // A word wider than a row is cut across rows.
        for c in word.chars() {
            let cw = unicode_width::UnicodeWidthChar::width(c).unwrap_or(0);
            if used + cw > cols {
                spans.push(Span::raw(std::mem::take(&mut current)));
                rows.push(Line::from(std::mem::take(&mut spans)));
                spans.push(Span::raw("  "));
                used = 2;
            }
            current.push(c);
            used += cw;
        }
    }
    spans.push(Span::raw(current));
    rows.push(Line::from(spans));
    rows
}

/// The title on the left, the link to share on the right when there is room for both.
fn room_header(room: &RoomScreen, view: &RoomView, theme: &Theme, buf: &mut Buffer, area: Rect) {
    let cols = usize::from(area.width);
    let link = &room.link;
    // Everyone sees that the room is being recorded, and by whom.
    let recorders: Vec<&str> = view
        .detail
        .participants
        .iter()
        .filter(|p| p.recording)
        .map(|p| p.name.as_str())
        .collect();
    let private = view.detail.summary.private;
    // A private room's link without its secret opens nothing: only those who run the
    // room (who were given the secret) show it; others see whose room it is.
    let shareable = !private || view.detail.share_secret.is_some();
    // A replay is said the whole time, as a recording is.
    let replay = view.detail.summary.replay;
    let link = if replay && recorders.is_empty() {
        "\u{25cf} REC replay on ".to_string()
    } else if replay {
        format!("\u{25cf} REC replay on, and by {} ", recorders.join(", "))
    } else if !recorders.is_empty() {
        format!("\u{25cf} REC by {} ", recorders.join(", "))
    } else if shareable {
        format!("link {link} ")
    } else {
        "private: shared by its host ".to_string()
    };
    let lock = if private { "\u{1f512} " } else { "" };
    let title = &view.detail.summary.title;
    // The title wins: the link is shown only when the title still gets 20 columns.
    let with_link = cols > text::width(&link) + 1 + text::width(lock) + text::width(title).min(20);
    let title_cols = if with_link {
        cols - text::width(&link) - 2 - text::width(lock)
    } else {
        cols.saturating_sub(1 + text::width(lock))
    };
    let left = vec![
        Span::raw(" "),
        Span::styled(lock, theme.badge),
        Span::styled(text::fit(title, title_cols), theme.room_title),
    ];
    let right = if with_link {
        let style = if recorders.is_empty() && !replay {
            theme.dim
        } else {
            theme.warn
        };
        vec![Span::styled(link, style)]
    } else {
        Vec::new()
    };
    put(buf, area, 0, text::spread(left, right, cols));
}

/// What every part of the room screen reads.
struct Ctx<'a> {
    app: &'a App,
    room: &'a RoomScreen,
    view: &'a RoomView,
    theme: &'a Theme,
}

impl Ctx<'_> {
    fn is_me(&self, p: &Participant) -> bool {
        p.id == self.view.me
    }

    /// In a private room, someone in it from a device whose keys I compared with them.
    fn verified(&self, p: &Participant) -> bool {
        self.view.detail.summary.private
            && p.device_key.as_ref().is_some_and(|key| {
                self.app
                    .verified
                    .get(&p.handle.to_lowercase())
                    .is_some_and(|keys| keys.contains(key))
            })
    }

    /// In a private room, someone whose client does not hold the room's key yet.
    fn waits_for_key(&self, p: &Participant) -> bool {
        self.view.detail.summary.private && p.key_epoch.is_none()
    }

    /// Someone I block: their hand is not shown (and they are not heard).
    fn blocked(&self, p: &Participant) -> bool {
        self.app.blocking.contains(&p.id)
    }

    /// Their display name, and on the selected row their handle too: two people with one
    /// name are told apart there.
    fn name(&self, p: &Participant, selected: bool) -> String {
        let mark = if self.verified(p) { " ✓" } else { "" };
        // A reaction shows before the name for a moment, so a cut name never hides it.
        let reaction = self
            .room
            .life
            .reaction_of(p.id, self.app.now_ms)
            .map(|r| format!("{} ", self.theme.reaction(r)))
            .unwrap_or_default();
        if selected {
            format!("{reaction}{}{mark} @{}", p.name, p.handle)
        } else {
            format!("{reaction}{}{mark}", p.name)
        }
    }
}

/// A block of people drawn as rows; each row holds indices into `view.listed()`.
struct Section {
    rows: Vec<Vec<usize>>,
    /// Per-person cell width for grid rows.
    cell_cols: usize,
}

impl Section {
    fn grid(indices: &[usize], per_row: usize, cell_cols: usize) -> Self {
        Self {
            rows: indices
                .chunks(per_row.max(1))
                .map(<[usize]>::to_vec)
                .collect(),
            cell_cols,
        }
    }

    fn people(&self) -> usize {
        self.rows.iter().map(Vec::len).sum()
    }

    fn row_of(&self, listed_index: usize) -> Option<usize> {
        self.rows.iter().position(|row| row.contains(&listed_index))
    }

    /// The rows to show in `height` rows, keeping `selected` in view: (first, count,
    /// people not shown). When some are hidden the last row says "+N more".
    fn window(&self, height: usize, selected: usize) -> (usize, usize, usize) {
        let total_rows = self.rows.len();
        if total_rows <= height {
            return (0, total_rows, 0);
        }
        let people = self.people();
        if height <= 1 {
            // One row: the selected person's, or else just how many there are.
            return match self.row_of(selected) {
                Some(row) if height == 1 => (row, 1, people - self.rows[row].len()),
                _ => (0, 0, people),
            };
        }
        let count = height - 1;
        let sel_row = self.row_of(selected).unwrap_or(0);
        let first = sel_row
            .saturating_sub(count.saturating_sub(1))
            .min(total_rows - count);
        let shown: usize = self.rows[first..first + count].iter().map(Vec::len).sum();
        (first, count, people - shown)
    }
}

/// `rows` rows of `area` from row `top`, clipped to it.
fn band(area: Rect, top: usize, rows: usize) -> Rect {
    let top = u16::try_from(top).unwrap_or(u16::MAX);
    let rows = u16::try_from(rows).unwrap_or(u16::MAX);
    Rect {
        y: area.y.saturating_add(top),
        height: rows,
        ..area
    }
    .intersection(area)
}

/// The stage and the audience between the header and your bar. Raised hands stay in
/// view above the rest of the audience, which scrolls with the selection.
fn people(ctx: &Ctx, buf: &mut Buffer, area: Rect) {
    if area.is_empty() {
        return;
    }
    let theme = ctx.theme;
    let cols = usize::from(area.width);
    let inner_cols = cols.saturating_sub(1);
    let listed = ctx.view.listed();
    let stage_count = ctx.view.stage().len();
    let audience = &listed[stage_count..];

    let (stage, stage_title) = stage_section(ctx, inner_cols);
    let (hand_indices, rest_indices): (Vec<usize>, Vec<usize>) = (stage_count..listed.len())
        // In the model's order, so the selection moves as it does; someone I block is
        // drawn there without a hand (see `draw_section`) and not counted.
        .partition(|&i| listed[i].hand_raised_at_ms.is_some());
    let hands = Section::grid(&hand_indices, 1, inner_cols);
    let per_row = (inner_cols / AUDIENCE_CELL_COLS).clamp(1, 10);
    let rest = Section::grid(&rest_indices, per_row, inner_cols / per_row);

    // Headings take a row each; the stage gets what it needs but leaves the audience a
    // few rows; within the audience the others get at least half when they need it.
    let inner = usize::from(area.height).saturating_sub(2);
    let audience_need = (hands.rows.len() + rest.rows.len()).max(1);
    let stage_rows = stage
        .rows
        .len()
        .max(1)
        .min(inner.saturating_sub(audience_need.min(3)))
        .max(usize::from(inner > 0));
    let audience_rows = inner - stage_rows;
    let rest_min = rest.rows.len().min(audience_rows / 2);
    let hand_rows = hands.rows.len().min(audience_rows - rest_min);

    // A big room lists only its front rows to most members; the count is everyone.
    let unlisted = ctx.view.detail.unlisted;
    let mut audience_title = vec![Span::styled(
        format!("AUDIENCE {}", text::thousands(audience.len() + unlisted)),
        theme.heading,
    )];
    if unlisted > 0 {
        audience_title.push(Span::styled(
            format!(" · front {} shown", text::thousands(audience.len())),
            theme.dim,
        ));
    }
    let hand_count = hand_indices
        .iter()
        .filter(|&&i| !ctx.blocked(listed[i]))
        .count();
    if hand_count > 0 {
        let noun = if hand_count == 1 { "hand" } else { "hands" };
        audience_title.push(Span::styled(
            format!(" · ✋ {hand_count} {noun}"),
            theme.hand,
        ));
    }
    // The room's reactions of the last second, counted.
    let counts = ctx.room.life.counts_now(ctx.app.now_ms);
    if !counts.is_empty() {
        let counted: Vec<String> = counts
            .iter()
            .map(|c| {
                format!(
                    "{} {}",
                    theme.reaction(c.reaction),
                    text::thousands(c.count as usize)
                )
            })
            .collect();
        audience_title.push(Span::styled(
            format!(" · {}", counted.join(" ")),
            theme.hand,
        ));
    }

    put(buf, area, 0, text::rule(stage_title, cols, theme.dim));
    let stage_area = band(area, 1, stage_rows);
    if stage_count == 0 {
        put(
            buf,
            stage_area,
            0,
            Line::styled("  Nobody is on the stage.", theme.dim),
        );
    } else {
        draw_section(ctx, &listed, &stage, buf, stage_area);
    }
    let heading_row = 1 + stage_rows;
    put(
        buf,
        area,
        u16::try_from(heading_row).unwrap_or(u16::MAX),
        text::rule(audience_title, cols, theme.dim),
    );
    if audience.is_empty() {
        let empty = band(area, heading_row + 1, audience_rows);
        put(
            buf,
            empty,
            0,
            Line::styled("  Nobody in the audience yet.", theme.dim),
        );
        return;
    }
    draw_section(
        ctx,
        &listed,
        &hands,
        buf,
        band(area, heading_row + 1, hand_rows),
    );
    let rest_area = band(area, heading_row + 1 + hand_rows, audience_rows - hand_rows);
    draw_section(ctx, &listed, &rest, buf, rest_area);
}

fn draw_section(
    ctx: &Ctx,
    listed: &[&Participant],
    section: &Section,
    buf: &mut Buffer,
    area: Rect,
) {
    if area.is_empty() {
        return;
    }
    let (first, count, hidden) = section.window(usize::from(area.height), ctx.room.selected);
    for (slot, row) in section.rows.iter().skip(first).take(count).enumerate() {
        let y = area
            .y
            .saturating_add(u16::try_from(slot).unwrap_or(u16::MAX));
        for (col, &index) in row.iter().enumerate() {
            let Some(p) = listed.get(index) else { continue };
            let offset = u16::try_from(col * section.cell_cols).unwrap_or(u16::MAX);
            let x = area.x.saturating_add(1).saturating_add(offset);
            // A column of space between cells.
            let cell_width = u16::try_from(section.cell_cols.saturating_sub(1)).unwrap_or(0);
            let cell = Rect::new(x, y, cell_width, 1).intersection(area);
            if cell.is_empty() {
                continue;
            }
            let cols = usize::from(cell.width);
            let selected = index == ctx.room.selected;
            let spans = if p.role.on_stage() {
                stage_cell(ctx, p, selected, cols)
            } else if p.hand_raised_at_ms.is_some() && !ctx.blocked(p) {
                hand_row(ctx, p, selected, cols)
            } else {
                audience_cell(ctx, p, selected, cols)
            };
            Line::from(spans).render(cell, buf);
            if index == ctx.room.selected {
                buf.set_style(cell, ctx.theme.selected);
            }
        }
    }
    if hidden > 0 {
        let line = Line::styled(
            format!("  +{} more", text::thousands(hidden)),
            ctx.theme.dim,
        );
        put(buf, area, u16::try_from(count).unwrap_or(u16::MAX), line);
    }
}

/// "◉ ada host ▃▅▇": speaking mark, name, badge, and muted or a level meter.
fn stage_cell(ctx: &Ctx, p: &Participant, selected: bool, cols: usize) -> Vec<Span<'static>> {
    let (app, theme) = (ctx.app, ctx.theme);
    let me = ctx.is_me(p);
    // Our own level comes from the microphone; others' from what we play.
    let level = if me {
        (app.audio.unavailable.is_none() && !p.muted).then_some(app.audio.input_level_dbov)
    } else {
        app.audio.speaker_levels.get(&p.id).copied()
    };
    let (mark, mark_style) = if p.speaking {
        ("◉ ", theme.speaking)
    } else if p.muted {
        ("○ ", theme.muted)
    } else {
        ("○ ", Style::new())
    };
    let state = if p.muted {
        Span::styled(" muted", theme.muted)
    } else if let Some(level) = level {
        Span::styled(format!(" {}", text::mini_meter(level)), theme.speaking)
    } else if p.speaking {
        Span::styled(
            format!(" {}", text::talking_meter(app.now_ms, p.id)),
            theme.speaking,
        )
    } else {
        Span::raw("")
    };
    let badge = match p.role {
        Role::Host => " host",
        Role::Moderator => " mod",
        Role::Speaker | Role::Listener => "",
    };
    let you = if me { " (you)" } else { "" };
    let name_cols = cols
        .saturating_sub(2 + text::width(badge) + text::width(you) + text::width(&state.content))
        .max(1);
    let name_style = if p.speaking {
        theme.speaking
    } else {
        Style::new()
    };
    vec![
        Span::styled(mark, mark_style),
        Span::styled(text::fit(&ctx.name(p, selected), name_cols), name_style),
        Span::styled(you, theme.dim),
        Span::styled(badge, theme.badge),
        state,
    ]
}

/// "✋ ada               waited 1m20s  invited".
fn hand_row(ctx: &Ctx, p: &Participant, selected: bool, cols: usize) -> Vec<Span<'static>> {
    let theme = ctx.theme;
    let waited = p
        .hand_raised_at_ms
        .map(|at| {
            format!(
                "waited {}",
                text::duration(ctx.app.now_ms.saturating_sub(at))
            )
        })
        .unwrap_or_default();
    let name = if ctx.is_me(p) {
        format!("{} (you)", ctx.name(p, selected))
    } else {
        ctx.name(p, selected)
    };
    let mut spans = vec![
        Span::styled("✋ ", theme.hand),
        Span::raw(text::pad(&name, HAND_NAME_COLS.min(cols.saturating_sub(3)))),
        Span::raw(" "),
        Span::styled(waited, theme.dim),
    ];
    if p.invited {
        spans.push(Span::styled("  invited", theme.hand));
    }
    spans
}

/// "  grace" or "  grace invited" (or "blocked", for someone I block).
fn audience_cell(ctx: &Ctx, p: &Participant, selected: bool, cols: usize) -> Vec<Span<'static>> {
    let tag = if ctx.blocked(p) {
        " blocked"
    } else if ctx.waits_for_key(p) {
        " no key yet"
    } else if p.invited {
        " invited"
    } else {
        ""
    };
    let you = if ctx.is_me(p) { " (you)" } else { "" };
    let name_cols = cols
        .saturating_sub(2 + text::width(tag) + text::width(you))
        .max(1);
    vec![
        Span::raw("  "),
        Span::raw(text::fit(&ctx.name(p, selected), name_cols)),
        Span::styled(you, ctx.theme.dim),
        Span::styled(tag, ctx.theme.hand),
    ]
}

/// " YOU  speaker  MUTED  mic ▮▮▯▯▯▯▯▯  you are talking while muted — press m".
fn you_line(
    app: &App,
    room: &RoomScreen,
    me: Option<&Participant>,
    theme: &Theme,
    buf: &mut Buffer,
    area: Rect,
) {
    if area.is_empty() {
        return;
    }
    let cols = usize::from(area.width);
    let role = me.map_or(Role::Listener, |p| p.role);
    let role_name = match role {
        Role::Host => "host",
        Role::Moderator => "moderator",
        Role::Speaker => "speaker",
        Role::Listener => "listener",
    };
    let mut left = vec![
        Span::styled(" YOU ", theme.brand),
        Span::raw(" "),
        Span::styled(role_name, theme.badge),
        Span::raw("  "),
    ];
    if role.on_stage() {
        let muted = me.is_none_or(|p| p.muted);
        if muted {
            left.push(Span::styled("MUTED", theme.muted));
        } else {
            left.push(Span::styled(" ● LIVE ", theme.mic_live));
        }
        if room.talking_by_space {
            left.push(Span::styled(" (space held)", theme.dim));
        }
        if app.audio.unavailable.is_none() {
            let (lit, dark) = text::bar_meter(app.audio.input_level_dbov, 8);
            let lit_style = if app.audio.input_voice {
                theme.speaking
            } else {
                Style::new()
            };
            left.push(Span::styled("  mic ", theme.dim));
            left.push(Span::styled(lit, lit_style));
            left.push(Span::styled(dark, theme.dim));
        }
        if app.talking_while_muted() {
            left.push(Span::raw("  "));
            left.push(Span::styled(
                format!(
                    "you are talking while muted — press {}",
                    app.keys.key_label(Action::Mute)
                ),
                theme.warn,
            ));
        }
    } else if me.is_some_and(|p| p.invited) {
        left.push(Span::styled(
            "invited to speak: a accept, d decline",
            theme.hand,
        ));
    } else if let Some(at) = me.and_then(|p| p.hand_raised_at_ms) {
        left.push(Span::styled(
            format!(
                "✋ hand raised, waiting {}",
                text::duration(app.now_ms.saturating_sub(at))
            ),
            theme.hand,
        ));
    } else {
        left.push(Span::styled("listening", theme.dim));
    }
    let right = if (app.output_volume - 1.0).abs() > f32::EPSILON {
        vec![Span::styled(
            format!("volume {:.0}% ", app.output_volume * 100.0),
            theme.dim,
        )]
    } else {
        Vec::new()
    };
    put(buf, area, 0, text::spread(left, right, cols));
}

/// Connection state and round trip, then the audio's health or why there is none,
/// each part shown only when it fits whole (the reason for no audio is cut to fit).
fn connection_line(app: &App, room: &RoomScreen, theme: &Theme, buf: &mut Buffer, area: Rect) {
    if area.is_empty() {
        return;
    }
    let cols = usize::from(area.width);
    let mut spans = vec![Span::raw(" ")];
    match &room.connection {
        Connection::Connecting => spans.push(Span::styled("connecting…", theme.warn)),
        Connection::Live { rtt_ms } => {
            spans.push(Span::styled("●", theme.speaking));
            spans.push(Span::raw(" connected"));
            let rtt = rtt_ms.map_or("rtt –".to_string(), |ms| format!("rtt {ms}ms"));
            spans.push(Span::styled(format!("  {rtt}"), theme.dim));
        }
        Connection::Reconnecting { attempt, reason } => {
            let text = format!("reconnecting… (attempt {attempt}: {reason})");
            spans.push(Span::styled(
                text::fit(&text, cols.saturating_sub(1)),
                theme.warn,
            ));
        }
    }
    let separator = "  ·  ";
    // A private room: who holds the key and the code to compare, or why audio is silent.
    if let Some(keys) = key_status(room, theme) {
        let room_left = cols.saturating_sub(text::spans_width(&spans) + separator.len());
        if room_left >= 12 {
            spans.push(Span::styled(separator, theme.dim));
            let style = keys.style;
            spans.push(Span::styled(text::fit(&keys.text, room_left), style));
        }
    }
    let room_left = cols.saturating_sub(text::spans_width(&spans) + separator.len());
    let audio = match &app.audio.unavailable {
        Some(reason) if room_left >= 16 => Some(Span::styled(
            text::fit(&format!("no audio: {reason}"), room_left),
            theme.warn,
        )),
        Some(_) => None,
        None => {
            let a = &app.audio;
            let quality = app.audio_quality.word();
            let long = format!(
                "delay {}ms {quality}  concealed {}  underruns {}",
                a.jitter_ms, a.concealed, a.underruns
            );
            let short = format!("delay {}ms {quality}", a.jitter_ms);
            let shortest = format!("{}ms {quality}", a.jitter_ms);
            [long, short, shortest]
                .into_iter()
                .find(|t| text::width(t) <= room_left)
                .map(|t| Span::styled(t, theme.dim))
        }
    };
    if let Some(audio) = audio {
        spans.push(Span::styled(separator, theme.dim));
        spans.push(audio);
    }
    put(buf, area, 0, Line::from(spans));
}

struct KeyLine {
    text: String,
    style: Style,
}

/// "🔒 4/5 hold the key  code 04128 83319 07551 29384", or why there is no key yet.
fn key_status(room: &RoomScreen, theme: &Theme) -> Option<KeyLine> {
    let view = room.view.as_ref()?;
    if !view.detail.summary.private {
        return None;
    }
    let keys = room.keys.clone().unwrap_or_default();
    let Some(epoch) = keys.epoch else {
        // A key that came and was refused says more than "waiting".
        let why = keys
            .problem
            .or(keys.waiting)
            .unwrap_or_else(|| "waiting for the room key".into());
        return Some(KeyLine {
            text: format!("\u{1f512} {why}"),
            style: theme.warn,
        });
    };
    let listed = &view.detail.participants;
    let holding = listed
        .iter()
        .filter(|p| p.key_epoch.is_some_and(|e| e >= epoch))
        .count();
    let code = keys.safety_code.unwrap_or_default();
    // Frames that did not open are worth a warning: a key missing, or someone tampering.
    let (trouble, style) = match (room.not_opened, room.not_sent) {
        (0, 0) => (String::new(), theme.dim),
        (opened, 0) => (format!("  {opened} frames did not open"), theme.warn),
        (0, sent) => (format!("  {sent} not sent (no key)"), theme.warn),
        (opened, sent) => (
            format!("  {opened} frames did not open, {sent} not sent"),
            theme.warn,
        ),
    };
    Some(KeyLine {
        text: format!(
            "\u{1f512} {holding}/{} hold the key  code {code}{trouble}",
            listed.len()
        ),
        style,
    })
}

/// The event line: the latest notice until it fades.
fn notice(app: &App, theme: &Theme, buf: &mut Buffer, area: Rect, row: u16) {
    if let Some(notice) = app.current_notice() {
        let cols = usize::from(area.width).saturating_sub(1);
        put(
            buf,
            area,
            row,
            Line::styled(format!(" {}", text::fit(notice, cols)), theme.notice),
        );
    }
}

/// The keys for your role, then the ones everyone has.
fn key_line(
    app: &App,
    room: &RoomScreen,
    me: Option<&Participant>,
    theme: &Theme,
    buf: &mut Buffer,
    area: Rect,
) {
    if area.is_empty() {
        return;
    }
    let role = me.map_or(Role::Listener, |p| p.role);
    let mut hints: Vec<(String, &str)> = Vec::new();
    let mut hint = |action: Action, what| hints.push((app.keys.key_label(action), what));
    if role.on_stage() {
        let muted = me.is_none_or(|p| p.muted);
        hint(Action::Mute, if muted { "unmute" } else { "mute" });
        hint(
            Action::Talk,
            if app.key_release {
                "hold to talk"
            } else {
                "talk"
            },
        );
    } else {
        if me.is_some_and(|p| p.invited) {
            hint(Action::Accept, "accept");
            hint(Action::Decline, "decline");
        }
        let hand_up = me.is_some_and(|p| p.hand_raised_at_ms.is_some());
        hint(
            Action::Hand,
            if hand_up { "lower hand" } else { "raise hand" },
        );
    }
    let unread = room.life.unread;
    let chat = if room.life.chat_open {
        "hide chat".to_string()
    } else if unread > 0 {
        format!("chat ({} new)", text::thousands(unread))
    } else {
        "chat".to_string()
    };
    hint(Action::Chat, &chat);
    hint(Action::Leave, "leave");
    hint(Action::Help, "help");
    hint(Action::Quit, "quit");
    let volume = format!(
        "{} {}",
        app.keys.key_label(Action::TheirVolumeDown),
        app.keys.key_label(Action::TheirVolumeUp)
    );
    hints.push((volume, "volume"));
    let hints: Vec<(&str, &str)> = hints.iter().map(|(k, w)| (k.as_str(), *w)).collect();
    let line = text::hint_line(theme, vec![Span::raw(" ")], &hints, usize::from(area.width));
    put(buf, area, 0, line);
}

/// For moderators: what they can do to the selected person, named.
fn moderation_line(
    keys: &Keymap,
    room: &RoomScreen,
    view: &RoomView,
    theme: &Theme,
    buf: &mut Buffer,
    area: Rect,
) {
    if area.is_empty() {
        return;
    }
    let listed = view.listed();
    let Some(target) = listed.get(room.selected) else {
        return;
    };
    let mut spans = vec![Span::raw(" ")];
    let mut hints: Vec<(String, &str)> = Vec::new();
    let mut hint = |action: Action, what| hints.push((keys.key_label(action), what));
    if target.id == view.me {
        spans.push(Span::styled("moderate: select someone with ↑↓", theme.dim));
    } else {
        match target.role {
            Role::Listener if target.invited => {}
            Role::Listener => hint(Action::Invite, "invite to speak"),
            Role::Speaker | Role::Moderator => hint(Action::ToAudience, "to audience"),
            Role::Host => {}
        }
        if target.role.on_stage() && !target.muted {
            hint(Action::MuteSpeaker, "mute");
        }
        if target.role != Role::Host {
            hint(Action::Remove, "remove");
        }
        if !target.role.is_moderator() {
            hint(Action::MakeModerator, "make mod");
        }
        if target.role != Role::Host {
            hint(
                Action::SilenceChat,
                if target.chat_silenced {
                    "let chat"
                } else {
                    "silence chat"
                },
            );
        }
        let name = text::fit(&target.name, 16);
        spans.push(Span::styled(format!("{name} ▸ "), theme.badge));
        if target.invited {
            spans.push(Span::styled("invited  ", theme.hand));
        }
    }
    let hints: Vec<(&str, &str)> = hints.iter().map(|(k, w)| (k.as_str(), *w)).collect();
    let line = text::hint_line(theme, spans, &hints, usize::from(area.width));
    put(buf, area, 0, line);
}
