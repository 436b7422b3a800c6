//! `hallway replays` and `hallway replay get|delete` (#15): the replays of rooms that ended,
//! one downloaded as a single mixed file (WAV or Ogg Opus, by extension), and the host's
//! delete.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;

use crate::audio::files::create_sink;
use crate::audio::replay::{Timeline, mix_into};
use crate::audio::stream::DeviceFormat;
use crate::cli::ClientArgs;
use crate::net::Api;
use crate::protocol::UserId;
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

/// The most a replay's tracks may take together when downloaded: 1 GiB, about 64
/// speaker-hours (16 MB each). The index's own sizes are the server's word; this is ours.
pub const MAX_DOWNLOAD: u64 = 1 << 30;

/// Downloads every track of `info`, each refused past the size its index says (with the
/// Ogg headers and some slack) and all of them past [`MAX_DOWNLOAD`], so a hostile server
/// cannot fill this machine's memory.
pub async fn download_tracks(
    api: &Api,
    info: &ReplayInfo,
) -> anyhow::Result<Vec<(UserId, Vec<u8>)>> {
    let claimed = info
        .tracks
        .iter()
        .fold(0u64, |sum, t| sum.saturating_add(t.bytes));
    if claimed > MAX_DOWNLOAD {
        anyhow::bail!(
            "the replay is {} MB, more than the {} MB this client downloads",
            claimed / 1_000_000,
            MAX_DOWNLOAD / 1_000_000
        );
    }
    let mut tracks = Vec::new();
    let mut left = MAX_DOWNLOAD;
    for track in &info.tracks {
        let most = track.bytes.saturating_add(4_096 + (1 << 20)).min(left);
        let bytes = api.replay_track(&info.id, track.user.id, most).await?;
        left = left.saturating_sub(bytes.len() as u64);
        tracks.push((track.user.id, bytes));
    }
    Ok(tracks)
}

/// The longest replay written as WAV: 16-bit mono at 48 kHz fills WAV's 4 GiB in 12.4 h.
const MAX_WAV_MS: u64 = 12 * 3_600_000;

pub async fn list(client: &ClientArgs, json: bool) -> anyhow::Result<()> {
    let (api, _) = crate::cli::signed_in_or_anonymous(client).await?;
    let replays = api.replays(None).await?;
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
            let is_wav = out
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("wav"));
            if is_wav && info.length_ms() > MAX_WAV_MS {
                anyhow::bail!(
                    "the replay is {} long, more than a WAV file holds (12 hours): write OUT.ogg instead",
                    duration(info.length_ms())
                );
            }
            let tracks = download_tracks(&api, &info).await?;
            let written = out.clone();
            let seconds = tokio::task::spawn_blocking(move || -> anyhow::Result<f64> {
                let timeline = std::sync::Arc::new(Timeline::parse(&info, tracks)?);
                let mut sink = create_sink(&out, DeviceFormat::ENGINE)
                    .with_context(|| format!("cannot write {}", out.display()))?;
                // A second at a time: an hour-long replay is never held decoded.
                let samples = mix_into(timeline, |block| sink.write(block))?;
                sink.finish()?;
                Ok(samples as f64 / f64::from(crate::audio::SAMPLE_RATE))
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
