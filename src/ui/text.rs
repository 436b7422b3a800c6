//! Small text helpers shared by the screens: display widths, truncation with "…",
//! durations ("live 12m", "1m20s"), level meters, key hints, and writing one line
//! into a rectangle without ever drawing outside it.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::Widget;
use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

use super::Theme;
pub use crate::protocol::text::terminal_safe;

/// Columns a string takes on the terminal.
pub fn width(text: &str) -> usize {
    text.width()
}

/// Columns a list of spans takes.
pub fn spans_width(spans: &[Span<'_>]) -> usize {
    spans.iter().map(|s| s.content.width()).sum()
}

/// `text` cut to at most `max` columns, ending in "…" when cut. Anything a peer could use
/// to move the cursor, rewrite the screen or reorder text (controls, escapes, bidi and
/// invisible characters) is shown escaped first ([`terminal_safe`]): a name can hold anything.
pub fn fit(text: &str, max: usize) -> String {
    let text = terminal_safe(text);
    if text.width() <= max {
        return text.into_owned();
    }
    if max == 0 {
        return String::new();
    }
    let mut out = String::new();
    let mut used = 0;
    for c in text.chars() {
        let w = c.width().unwrap_or(0);
        if used + w > max - 1 {
            break;
        }
        out.push(c);
        used += w;
    }
    out.push('…');
    out
}

/// The end of `text` in at most `max` columns, starting with "…" when cut: for input
/// fields, where the end (and the cursor after it) must stay in view.
pub fn fit_tail(text: &str, max: usize) -> String {
    let text = terminal_safe(text);
    if text.width() <= max {
        return text.into_owned();
    }
    if max == 0 {
        return String::new();
    }
    let mut tail: Vec<char> = Vec::new();
    let mut used = 0;
    for c in text.chars().rev() {
        let w = c.width().unwrap_or(0);
        if used + w > max - 1 {
            break;
        }
        tail.push(c);
        used += w;
    }
    std::iter::once('…').chain(tail.into_iter().rev()).collect()
}

/// "Thu 3 Dec 2026 18:00 CET": a moment in this machine's time zone.
pub fn local_time(ms: u64) -> String {
    use chrono::TimeZone;
    let at = i64::try_from(ms)
        .ok()
        .and_then(|ms| chrono::Local.timestamp_millis_opt(ms).single());
    match at {
        Some(at) => at.format("%a %-d %b %Y %H:%M %Z").to_string(),
        None => format!("{ms} ms"),
    }
}

/// `text` padded with spaces (or cut) to exactly `cols` columns.
pub fn pad(text: &str, cols: usize) -> String {
    let mut out = fit(text, cols);
    let w = out.width();
    out.extend(std::iter::repeat_n(' ', cols.saturating_sub(w)));
    out
}

/// A Unix time in ms as its calendar date in UTC, `2026-11-30`.
pub fn date(ms: u64) -> String {
    let (y, m, d) = civil_from_days((ms / 86_400_000) as i64);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Days since 1970-01-01 as (year, month, day): Howard Hinnant's `civil_from_days`.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// A count with thousands separators: "1,312".
pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A short duration: "45s", "1m20s", "1h05m", "2d3h".
pub fn duration(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86_400 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{}h", s / 86_400, (s % 86_400) / 3600),
    }
}

/// How long a room has been live, coarser than [`duration`]: "live now", "live 12m".
pub fn live_for(ms: u64) -> String {
    let m = ms / 60_000;
    match m {
        0 => "live now".to_string(),
        1..60 => format!("live {m}m"),
        60..1440 => format!("live {}h{:02}m", m / 60, m % 60),
        _ => format!("live {}d{}h", m / 1440, (m % 1440) / 60),
    }
}

/// A level in dBov as 0.0..=1.0 for meters: speech sits around -30..-10 dBov.
pub fn level_fraction(level_dbov: f32) -> f32 {
    const FLOOR_DBOV: f32 = -60.0;
    const CEILING_DBOV: f32 = -6.0;
    if level_dbov.is_nan() {
        return 0.0;
    }
    ((level_dbov - FLOOR_DBOV) / (CEILING_DBOV - FLOOR_DBOV)).clamp(0.0, 1.0)
}

/// A horizontal meter `cells` wide: "▮▮▮▯▯▯".
pub fn bar_meter(level_dbov: f32, cells: usize) -> (String, String) {
    let lit = (level_fraction(level_dbov) * cells as f32).round() as usize;
    let lit = lit.min(cells);
    ("▮".repeat(lit), "▯".repeat(cells - lit))
}

const BLOCKS: [char; 9] = [' ', '▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// A rising three-column meter for one speaker: "▃▆█" loud, "▂  " quiet.
pub fn mini_meter(level_dbov: f32) -> String {
    let eighths = (level_fraction(level_dbov) * 24.0).round() as usize;
    (0..3)
        .map(|i| BLOCKS[eighths.saturating_sub(i * 8).min(8)])
        .collect()
}

/// A meter that moves with the clock, for someone the server says is speaking when we
/// have no level for them (no audio here): it reads as talking without pretending to be
/// a measurement. `seed` keeps neighbours out of step.
pub fn talking_meter(now_ms: u64, seed: u32) -> String {
    const FRAMES: [&str; 6] = ["▂▅▃", "▃▇▅", "▅▃▆", "▇▅▂", "▄▂▅", "▂▆▄"];
    let frame = (now_ms / 150).wrapping_add(u64::from(seed)) % FRAMES.len() as u64;
    FRAMES[frame as usize].to_string()
}

/// `prefix`, then as many "key description" hints as fit in `cols`, two spaces apart,
/// so that a footer never ends mid-word. Put the hints that matter most first.
pub fn hint_line<'a>(
    theme: &Theme,
    prefix: Vec<Span<'a>>,
    hints: &[(&'a str, &'a str)],
    cols: usize,
) -> Line<'a> {
    let mut spans = prefix;
    let mut used = spans_width(&spans);
    for (i, (key, what)) in hints.iter().enumerate() {
        let gap = if i == 0 { "" } else { "  " };
        let needed = gap.len() + key.width() + 1 + what.width();
        if used + needed > cols {
            break;
        }
        used += needed;
        spans.push(Span::raw(gap));
        spans.push(Span::styled(*key, theme.key));
        spans.push(Span::raw(" "));
        spans.push(Span::styled(*what, theme.dim));
    }
    Line::from(spans)
}

/// One line: `left`, then `right` flush with the right edge when both fit with a space
/// between; otherwise `left` alone (the line is clipped at the edge).
pub fn spread<'a>(mut left: Vec<Span<'a>>, right: Vec<Span<'a>>, cols: usize) -> Line<'a> {
    let used = spans_width(&left) + spans_width(&right);
    if !right.is_empty() && used < cols {
        left.push(Span::raw(" ".repeat(cols - used)));
        left.extend(right);
    }
    Line::from(left)
}

/// A heading with a rule after it: "── STAGE 4 ─────────".
pub fn rule<'a>(title: Vec<Span<'a>>, cols: usize, style: Style) -> Line<'a> {
    let mut spans = vec![Span::styled("── ", style)];
    spans.extend(title);
    let used = spans_width(&spans) + 1;
    spans.push(Span::raw(" "));
    spans.push(Span::styled("─".repeat(cols.saturating_sub(used)), style));
    Line::from(spans)
}

/// Draws `line` on row `row` of `area`, clipped to it; rows outside `area` are skipped.
pub fn put(buf: &mut Buffer, area: Rect, row: u16, mut line: Line<'_>) {
    if row >= area.height {
        return;
    }
    // Whatever a span holds (a name, a title, a server's message), nothing reaches the
    // terminal that could move the cursor or reorder the text.
    for span in &mut line.spans {
        if let std::borrow::Cow::Owned(safe) = terminal_safe(&span.content) {
            span.content = safe.into();
        }
    }
    let rect = Rect::new(area.x, area.y.saturating_add(row), area.width, 1).intersection(buf.area);
    if rect.is_empty() {
        return;
    }
    line.render(rect, buf);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_calendar_dates() {
        assert_eq!(date(0), "1970-01-01");
        assert_eq!(date(1_795_996_800_000), "2026-11-30");
        assert_eq!(date(951_782_400_000), "2000-02-29");
    }

    #[test]
    fn fit_cuts_with_an_ellipsis_and_respects_wide_characters() {
        assert_eq!(fit("ada", 5), "ada");
        assert_eq!(fit("ada lovelace", 5), "ada …");
        assert_eq!(fit("ada", 0), "");
        assert_eq!(fit("日本語のタイトル", 7), "日本語…");
        assert_eq!(fit("a\nb", 5), "a\\nb");
        assert_eq!(fit("\u{202e}evil", 20), "\\u{202e}evil");
        assert_eq!(fit("\u{1b}[2J", 20), "\\u{1b}[2J");
        assert_eq!(width(&pad("ab", 4)), 4);
        assert_eq!(fit_tail("hello world", 6), "…world");
        assert_eq!(fit_tail("hi", 6), "hi");
    }

    #[test]
    fn counts_get_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_312), "1,312");
        assert_eq!(thousands(1_000_000), "1,000,000");
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration(12_000), "12s");
        assert_eq!(duration(80_000), "1m20s");
        assert_eq!(duration(3_900_000), "1h05m");
        assert_eq!(live_for(30_000), "live now");
        assert_eq!(live_for(12 * 60_000), "live 12m");
        assert_eq!(live_for(65 * 60_000), "live 1h05m");
    }

    #[test]
    fn meters_stay_in_range() {
        for level in [
            f32::NAN,
            f32::NEG_INFINITY,
            -127.0,
            -30.0,
            0.0,
            20.0,
            f32::INFINITY,
        ] {
            assert_eq!(mini_meter(level).chars().count(), 3);
            let (lit, dark) = bar_meter(level, 8);
            assert_eq!(lit.chars().count() + dark.chars().count(), 8);
        }
        assert_eq!(mini_meter(-127.0), "   ");
        assert_eq!(mini_meter(0.0), "███");
    }
}
