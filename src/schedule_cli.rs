//! `hallway schedule`: announce a room ahead (`--title T --at "2026-12-03 18:00"`), list
//! what is coming, start or cancel your own, and export one as an iCalendar (`.ics`) file
//! for a calendar app (#15). Times are read and shown in this machine's time zone.

use std::path::Path;

use anyhow::{Context, bail};
use chrono::{DateTime, Local, LocalResult, NaiveDateTime, TimeZone, Utc};
use clap::{Args, Subcommand};
use icalendar::{Calendar, Component, Event, EventLike};

use crate::cli::ClientArgs;
use crate::protocol::schedule::{ScheduleRoom, ScheduledRoom};
use crate::protocol::text::terminal_safe;
use crate::ui::text::local_time;

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ScheduleArgs {
    #[command(subcommand)]
    pub command: Option<ScheduleCommand>,
    /// The room's title.
    #[arg(long)]
    pub title: Option<String>,
    /// When it starts, in this machine's time zone: "2026-12-03 18:00" (or with a UTC
    /// offset: "2026-12-03T18:00+01:00").
    #[arg(long, value_name = "WHEN")]
    pub at: Option<String>,
    /// What it is about (at most 500 characters).
    #[arg(long)]
    pub description: Option<String>,
    /// JSON for scripts.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum ScheduleCommand {
    /// Upcoming rooms: of people you follow first, then by time.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Start a room you scheduled: it goes live, listed to everyone; prints how to join.
    Start { id: u64 },
    /// Cancel a room you scheduled.
    Cancel { id: u64 },
    /// Write a scheduled room as an iCalendar file (.ics) for a calendar app.
    Export { id: u64, file: std::path::PathBuf },
}

/// A time as typed: local "YYYY-MM-DD HH:MM" (seconds and a `T` allowed), or RFC 3339
/// with an offset.
pub fn parse_when(text: &str) -> anyhow::Result<DateTime<Utc>> {
    let text = text.trim();
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(at.with_timezone(&Utc));
    }
    let naive = ["%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"]
        .iter()
        .find_map(|format| NaiveDateTime::parse_from_str(text, format).ok())
        .with_context(|| {
            format!(
                "cannot read the time {text:?}; write it as \"2026-12-03 18:00\" (your time zone) or \"2026-12-03T18:00+01:00\""
            )
        })?;
    match Local.from_local_datetime(&naive) {
        LocalResult::Single(at) => Ok(at.with_timezone(&Utc)),
        // The hour repeated when clocks go back: the first of the two.
        LocalResult::Ambiguous(first, _) => Ok(first.with_timezone(&Utc)),
        LocalResult::None => {
            bail!("{text} does not exist in your time zone (the clocks skip it); pick another time")
        }
    }
}

fn ms_of(at: DateTime<Utc>) -> anyhow::Result<u64> {
    u64::try_from(at.timestamp_millis()).context("times before 1970 cannot be scheduled")
}

fn line(room: &ScheduledRoom) -> String {
    let state = match &room.room {
        Some(live) => format!("  live now: {}", terminal_safe(live)),
        None => String::new(),
    };
    format!(
        "{:>6}  {}  {}  by {} (@{}){}",
        room.id,
        local_time(room.starts_at_ms),
        terminal_safe(&room.title),
        terminal_safe(&room.host.name),
        terminal_safe(&room.host.handle),
        state
    )
}

/// The calendar file for `room` on `server`.
pub fn ics(room: &ScheduledRoom, server: &str) -> anyhow::Result<String> {
    let start = Utc
        .timestamp_millis_opt(i64::try_from(room.starts_at_ms)?)
        .single()
        .context("the room's time is out of range")?;
    let host = url::Url::parse(server)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_else(|| "hallway".into());
    let mut about = format!(
        "Hosted by {} (@{}) on Hallway.\nJoin: hallway --server {server}",
        room.host.name, room.host.handle
    );
    if !room.description.is_empty() {
        about = format!("{}\n\n{about}", room.description);
    }
    let event = Event::new()
        .uid(&format!("hallway-schedule-{}@{host}", room.id))
        .summary(&room.title)
        .description(&about)
        .starts(start)
        .ends(
            start
                .checked_add_signed(chrono::Duration::hours(1))
                .context("the room's time is out of range")?,
        )
        .url(server)
        .done();
    Ok(Calendar::new().push(event).done().to_string())
}

pub async fn run(client: &ClientArgs, args: ScheduleArgs) -> anyhow::Result<()> {
    let api = crate::account_cli::signed_in(client, false).await?;
    match args.command {
        None => {
            let (Some(title), Some(at)) = (args.title, args.at) else {
                bail!(
                    "give --title and --at to schedule a room (hallway schedule --title \"Rust office hours\" --at \"2026-12-03 18:00\"), or a subcommand: list, start, cancel, export"
                );
            };
            let starts_at_ms = ms_of(parse_when(&at)?)?;
            let room = api
                .schedule(&ScheduleRoom {
                    title,
                    starts_at_ms,
                    description: args.description.unwrap_or_default(),
                })
                .await?;
            if args.json {
                return print_json(&room);
            }
            println!(
                "Scheduled {} for {} (id {}). Your followers see it under Upcoming; start it with `hallway schedule start {}`.",
                terminal_safe(&room.title),
                local_time(room.starts_at_ms),
                room.id,
                room.id
            );
            Ok(())
        }
        Some(ScheduleCommand::List { json }) => {
            let rooms = api.upcoming().await?;
            if json || args.json {
                return print_json(&rooms);
            }
            if rooms.is_empty() {
                println!("Nothing scheduled.");
            }
            for room in &rooms {
                println!("{}", line(room));
            }
            Ok(())
        }
        Some(ScheduleCommand::Start { id }) => {
            let detail = api.start_scheduled(id).await?;
            let link = api.base().join(&format!("rooms/{}", detail.summary.id))?;
            println!(
                "{} is live: {link}\nJoin it as its host: hallway --server {link}",
                terminal_safe(&detail.summary.title)
            );
            Ok(())
        }
        Some(ScheduleCommand::Cancel { id }) => {
            api.cancel_scheduled(id).await?;
            println!("Cancelled scheduled room {id}.");
            Ok(())
        }
        Some(ScheduleCommand::Export { id, file }) => {
            let room = api.scheduled(id).await?;
            export(&room, api.base().as_str(), &file)
        }
    }
}

fn export(room: &ScheduledRoom, server: &str, file: &Path) -> anyhow::Result<()> {
    let text = ics(room, server.trim_end_matches('/'))?;
    std::fs::write(file, text)
        .with_context(|| format!("cannot write {}; check the path", file.display()))?;
    println!(
        "Wrote {} ({}, {}).",
        file.display(),
        terminal_safe(&room.title),
        local_time(room.starts_at_ms)
    );
    Ok(())
}

fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::protocol::User;

    #[test]
    fn times_are_read_with_an_offset_or_in_the_local_zone() {
        let at = parse_when("2026-12-03T18:00:00+01:00").unwrap();
        assert_eq!(at.to_rfc3339(), "2026-12-03T17:00:00+00:00");
        let local = parse_when("2026-12-03 18:00").unwrap();
        assert_eq!(
            local
                .with_timezone(&Local)
                .format("%Y-%m-%d %H:%M")
                .to_string(),
            "2026-12-03 18:00"
        );
        assert_eq!(parse_when("2026-12-03T18:00").unwrap(), local);
        let err = parse_when("next tuesday").unwrap_err().to_string();
        assert!(err.contains("2026-12-03 18:00"), "{err}");
    }

    #[test]
    fn an_export_is_a_calendar_event_at_the_rooms_time() {
        let room = ScheduledRoom {
            id: 7,
            title: "Rust office hours".into(),
            description: "Bring questions".into(),
            host: User {
                id: 1,
                handle: "grace".into(),
                name: "Grace".into(),
            },
            starts_at_ms: 1_796_317_200_000, // 2026-12-03T17:00:00Z
            created_at_ms: 0,
            followed: false,
            room: None,
        };
        let text = ics(&room, "https://hallway.example").unwrap();
        assert!(text.starts_with("BEGIN:VCALENDAR"), "{text}");
        for want in [
            "BEGIN:VEVENT",
            "UID:hallway-schedule-7@hallway.example",
            "SUMMARY:Rust office hours",
            "DTSTART:20261203T170000Z",
            "DTEND:20261203T180000Z",
            "END:VCALENDAR",
        ] {
            assert!(text.contains(want), "{want} missing from\n{text}");
        }
    }
}
