//! `hallway replays` and `hallway replay get|delete` (#15): the replays of rooms that ended,
//! one downloaded as a single mixed file (WAV or Ogg Opus, by extension), and the host's
//! delete.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;

use crate::audio::files::create_sink;
use crate::audio::stream::DeviceFormat;
use crate::cli::ClientArgs;
use crate::protocol::replay::ReplayInfo;
use crate::protocol::text::terminal_safe;
use crate::ui::text::{duration, local_time};

#[derive(Debug, Subcommand)]
pub enum ReplayCommand {
    /// Download a replay mixed into one file: OUT.wav or OUT.ogg (by extension).
    Get { id: String, out: PathBuf },
    /// Delete a replay of a room you hosted.
    Delete { id: String },
}

fn line(info: &ReplayInfo) -> String {
    let length = info
        .ended_at_ms
        .map(|end| duration(end.saturating_sub(info.started_at_ms)))
        .unwrap_or_default();
    let speakers: Vec<String> = info
        .tracks
        .iter()
        .map(|t| terminal_safe(&t.user.name).into_owned())
        .collect();
    let incomplete = if info.incomplete {
        "  (incomplete)"
    } else {
        ""
    };
    format!(
        "{}  {}  {}  {length}  by @{}  speakers: {}{incomplete}",
        terminal_safe(&info.id),
        local_time(info.started_at_ms),
        terminal_safe(&info.title),
        terminal_safe(&info.host.handle),
        speakers.join(", ")
    )
}

pub async fn list(client: &ClientArgs, json: bool) -> anyhow::Result<()> {
    let (api, _) = crate::cli::signed_in_or_anonymous(client).await?;
    let replays = api.replays().await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&replays)?);
        return Ok(());
    }
    if replays.is_empty() {
        println!("No replays.");
    }
    for info in &replays {
        println!("{}", line(info));
    }
    Ok(())
}

pub async fn run(client: &ClientArgs, command: ReplayCommand) -> anyhow::Result<()> {
    match command {
        ReplayCommand::Get { id, out } => {
            let (api, _) = crate::cli::signed_in_or_anonymous(client).await?;
            let info = api.replay(&id).await?;
            let mut tracks = Vec::new();
            for track in &info.tracks {
                // The index's size, the OpusHead and OpusTags pages, and slack.
                let most = track.bytes + 4_096 + (1 << 20);
                tracks.push((
                    track.user.id,
                    api.replay_track(&id, track.user.id, most).await?,
                ));
            }
            let written = out.clone();
            let seconds = tokio::task::spawn_blocking(move || -> anyhow::Result<f64> {
                let mixed = crate::audio::replay_mix::mix(&info, &tracks)?;
                let mut sink = create_sink(&out, DeviceFormat::ENGINE)
                    .with_context(|| format!("cannot write {}", out.display()))?;
                sink.write(&mixed)?;
                sink.finish()?;
                Ok(mixed.len() as f64 / f64::from(crate::audio::SAMPLE_RATE))
            })
            .await??;
            let info = api.replay(&id).await?;
            let note = match &info.why_incomplete {
                Some(why) => format!(" (incomplete: {why})"),
                None => String::new(),
            };
            println!(
                "Wrote {} ({seconds:.1} s of {}){note}.",
                written.display(),
                terminal_safe(&info.title)
            );
            Ok(())
        }
        ReplayCommand::Delete { id } => {
            let api = crate::account_cli::signed_in(client, false).await?;
            api.delete_replay(&id).await?;
            println!("Deleted the replay of {}.", terminal_safe(&id));
            Ok(())
        }
    }
}
