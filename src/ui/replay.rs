//! A replay playing: its title, host, date and length, the play head over a bar with the
//! time heard and left and the speed, the speakers (who is talking now), why it cannot be
//! heard when it cannot, the event line and the keys.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};

use super::Theme;
use super::text::{self, put};
use crate::app::keymap::Action;
use crate::app::{App, ReplayScreen, ReplayState};

pub fn render(app: &App, replay: &ReplayScreen, theme: &Theme, buf: &mut Buffer, area: Rect) {
    if area.is_empty() {
        return;
    }
    let cols = usize::from(area.width);
    let h = area.height;
    let info = &replay.info;
    let when = format!("{} ", text::local_time(info.started_at_ms));
    let title_cols = cols.saturating_sub(10 + text::width(&when));
    put(
        buf,
        area,
        0,
        text::spread(
            vec![
                Span::raw(" "),
                Span::styled("REPLAY", theme.heading),
                Span::raw("  "),
                Span::styled(text::fit(&info.title, title_cols), theme.room_title),
            ],
            vec![Span::styled(when, theme.dim)],
            cols,
        ),
    );
    let speakers = info.tracks.len();
    let mut about = format!(
        " hosted by {} (@{}) · {} · {speakers} {}",
        info.host.name,
        info.host.handle,
        text::duration(replay.length_ms),
        if speakers == 1 { "speaker" } else { "speakers" }
    );
    if replay.left_out > 0 {
        about.push_str(&format!(" ({} not played: too many)", replay.left_out));
    }
    put(
        buf,
        area,
        1,
        Line::styled(text::fit(&about, cols), theme.dim),
    );
    let mut row = 2;
    if let Some(why) = info.why_incomplete.as_deref().filter(|_| info.incomplete) {
        let line = format!(" Incomplete: {why}");
        put(
            buf,
            area,
            row,
            Line::styled(text::fit(&line, cols), theme.warn),
        );
        row += 1;
    }
    row += 1;
    put(buf, area, row, play_line(replay, theme, cols));
    row += 1;
    // Why nothing is heard, when nothing can be.
    let problem = match (&replay.state, &app.audio.unavailable) {
        (ReplayState::Failed(e), _) => Some((format!(" Cannot play it: {e}"), theme.error)),
        (_, Some(why)) => Some((
            format!(
                " No sound: {why}. `hallway replay get {} out.wav` saves it to a file.",
                info.id
            ),
            theme.warn,
        )),
        (ReplayState::Loading | ReplayState::Playing, None) => None,
    };
    if let Some((line, style)) = problem {
        put(buf, area, row, Line::styled(text::fit(&line, cols), style));
    }
    row += 2;
    let footer_rows = u16::from(h >= 3);
    let notice_rows = u16::from(h >= 4);
    let speakers_end = h.saturating_sub(footer_rows + notice_rows);
    if row < speakers_end {
        put(
            buf,
            area,
            row,
            text::rule(
                vec![Span::styled("SPEAKERS", theme.heading)],
                cols,
                theme.dim,
            ),
        );
        row += 1;
    }
    for (i, track) in info.tracks.iter().enumerate() {
        if row >= speakers_end {
            break;
        }
        let left = info.tracks.len() - i;
        if row + 1 == speakers_end && left > 1 {
            let line = format!("   +{left} more");
            put(buf, area, row, Line::styled(line, theme.dim));
            break;
        }
        let speaking = replay.speaking.contains(&track.user.id);
        let (mark, style) = if speaking {
            ("◉ ", theme.speaking)
        } else {
            ("○ ", theme.dim)
        };
        let name_style = if speaking {
            theme.speaking
        } else {
            ratatui::style::Style::new()
        };
        let mut spans = vec![
            Span::raw("  "),
            Span::styled(mark, style),
            Span::styled(text::fit(&track.user.name, 24), name_style),
            Span::styled(format!("  @{}", track.user.handle), theme.dim),
        ];
        if track.user.id == info.host.id {
            spans.push(Span::styled("  host", theme.badge));
        }
        put(buf, area, row, Line::from(spans));
        row += 1;
    }
    if notice_rows > 0
        && let Some(notice) = app.current_notice()
    {
        let line = format!(" {}", text::fit(notice, cols.saturating_sub(1)));
        put(
            buf,
            area,
            h - footer_rows - 1,
            Line::styled(line, theme.notice),
        );
    }
    if footer_rows > 0 {
        let pause = if replay.ended {
            "play again"
        } else if replay.paused {
            "play"
        } else {
            "pause"
        };
        let mine = app.is_my_handle(&info.host.handle);
        let keys: Vec<(String, &str)> = [
            (Action::PlayPause, pause),
            (Action::SeekBack, "15 s back"),
            (Action::SeekAhead, "15 s on"),
            (Action::Slower, "slower"),
            (Action::Faster, "faster"),
            (Action::Leave, "back"),
            (Action::Quit, "quit"),
        ]
        .into_iter()
        // Its host can delete it (last: the help has it where the line is too short).
        .chain(mine.then_some((Action::DeleteReplay, "delete")))
        .map(|(action, what)| (app.keys.key_label(action), what))
        .collect();
        let hints: Vec<(&str, &str)> = keys.iter().map(|(k, w)| (k.as_str(), *w)).collect();
        let line = text::hint_line(theme, vec![Span::raw(" ")], &hints, cols);
        put(buf, area, h - 1, line);
    }
}

/// "▶ 12:04 ━━━━━━━━●──────── 42:10  1.5×", or what loading says.
fn play_line(replay: &ReplayScreen, theme: &Theme, cols: usize) -> Line<'static> {
    match &replay.state {
        ReplayState::Loading => {
            let bytes: u64 = replay.info.tracks.iter().map(|t| t.bytes).sum();
            let line = format!(
                " Loading the replay\u{2026} ({} of audio)",
                megabytes(bytes)
            );
            Line::styled(text::fit(&line, cols), theme.dim)
        }
        ReplayState::Failed(_) => Line::styled(" \u{25a0} stopped", theme.dim),
        ReplayState::Playing => {
            let (mark, mark_style) = if replay.ended {
                ("\u{25a0} ended ", theme.dim)
            } else if replay.paused {
                ("\u{2016} paused ", theme.warn)
            } else {
                ("\u{25b6} ", theme.speaking)
            };
            let heard = clock(replay.position_ms);
            let length = clock(replay.length_ms);
            let speed = format!("{}\u{d7}", replay.speed());
            let fixed = 1
                + text::width(mark)
                + text::width(&heard)
                + 1
                + 1
                + text::width(&length)
                + 2
                + text::width(&speed)
                + 1;
            let bar_cols = cols.saturating_sub(fixed);
            let done = if replay.length_ms == 0 {
                0
            } else {
                let fraction =
                    replay.position_ms.min(replay.length_ms) as f64 / replay.length_ms as f64;
                ((fraction * bar_cols as f64).round() as usize).min(bar_cols)
            };
            let mut spans = vec![
                Span::raw(" "),
                Span::styled(mark, mark_style),
                Span::raw(heard),
                Span::raw(" "),
            ];
            if bar_cols > 0 {
                let head = usize::from(done < bar_cols);
                spans.push(Span::styled("━".repeat(done), theme.speaking));
                spans.push(Span::styled("●".repeat(head), theme.heading));
                spans.push(Span::styled("─".repeat(bar_cols - done - head), theme.dim));
            }
            spans.push(Span::raw(" "));
            spans.push(Span::raw(length));
            spans.push(Span::raw("  "));
            let speed_style = if replay.speed() == 1.0 {
                theme.dim
            } else {
                theme.heading
            };
            spans.push(Span::styled(speed, speed_style));
            Line::from(spans)
        }
    }
}

/// "4:05" or "1:02:03": a player's clock.
fn clock(ms: u64) -> String {
    let s = ms / 1000;
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, (s % 3600) / 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

/// "4.2 MB", "310 kB".
fn megabytes(bytes: u64) -> String {
    if bytes >= 1_000_000 {
        format!("{:.1} MB", bytes as f64 / 1e6)
    } else {
        format!("{} kB", bytes.div_ceil(1000))
    }
}
