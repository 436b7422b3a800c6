//! The terminal client's link to the audio engine: capture frames go up the current room's
//! live session, received frames go to playout, and the engine's numbers come back for the
//! screen. With no sound card this still works: it says why there is no sound and carries on.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::app::AudioStatus;
use crate::audio::{
    AudioError, Capture, CaptureConfig, DeviceError, FrameSink, Handoff, InputDevice, OutputDevice,
    Pacing, Playout, PlayoutConfig, PlayoutSender, open_input, open_output,
};
use crate::net::live::AudioHandler;
use crate::protocol::AudioFrame;

/// A live-session audio handler that feeds every received frame to playout. It never
/// blocks: a full playout queue drops the frame (the jitter buffer conceals it).
pub fn playout_handler(sender: PlayoutSender, blocked: Blocked) -> AudioHandler {
    Box::new(move |frame: AudioFrame| {
        // Someone I block is not played at all (not decoded, not mixed).
        let from_blocked = blocked
            .read()
            .is_ok_and(|b| b.contains(&frame.header.speaker_id));
        if !from_blocked {
            sender.push(frame);
        }
    })
}

/// The people whose audio is not played: set from the model, read once per frame (an
/// uncontended read lock, tens of nanoseconds).
pub type Blocked = Arc<std::sync::RwLock<std::collections::HashSet<u32>>>;

/// Where captured frames go: the current room's live session, if any. The capture worker
/// hands each frame over on its own thread; a full socket queue or no room to send to
/// drops the frame, and the worker counts it (late speech is useless).
fn uplink_sink(uplink: Uplink) -> FrameSink {
    Box::new(move |frame: AudioFrame| {
        let Ok(slot) = uplink.lock() else {
            return Handoff::Dropped;
        };
        match slot.as_ref().map(|tx| tx.try_send(frame.bytes().clone())) {
            Some(Ok(())) => Handoff::Sent,
            // Full: the socket is behind. Closed: the session ended; the next room's
            // attach replaces it.
            Some(Err(_)) | None => Handoff::Dropped,
        }
    })
}

/// A device problem in few words for the status line; the full text goes to the log.
fn short_problem(what: &str, error: &AudioError) -> String {
    match error {
        AudioError::Device(DeviceError::NoDevice { .. }) => format!("no {what} (no sound card)"),
        AudioError::Device(DeviceError::NotFound { name, .. }) => {
            format!("no {what} named {name:?} (see `hallway devices`)")
        }
        other => format!("{what}: {other}"),
    }
}

/// Where captured frames go: the current room's session, if any.
type Uplink = Arc<Mutex<Option<mpsc::Sender<Bytes>>>>;

/// Capture and playout for the client, each present only if its device opened.
pub struct AudioLink {
    capture: Option<Capture>,
    playout: Option<Playout>,
    uplink: Uplink,
    /// Why some or all audio is missing, for the screen.
    problem: Option<String>,
    blocked: Blocked,
    replaying: Mutex<Option<Arc<crate::audio::replay::Timeline>>>,
}

impl AudioLink {
    /// Opens the devices. Never fails: a device that will not open is reported in `status`.
    pub fn start(input: &InputDevice, output: &OutputDevice, noise_suppression: bool) -> Self {
        let uplink: Uplink = Arc::new(Mutex::new(None));
        let mut problems = Vec::new();
        let capture = match open_input(input, Pacing::RealTime).and_then(|stream| {
            let config = CaptureConfig {
                noise_suppression,
                ..CaptureConfig::default()
            };
            Capture::start(stream, config, uplink_sink(uplink.clone()))
        }) {
            Ok(capture) => {
                capture.set_muted(true);
                // Not on stage yet: the microphone stays closed until the app opens it.
                capture.set_open(false);
                Some(capture)
            }
            Err(e) => {
                tracing::warn!("no audio input: {e}");
                problems.push(short_problem("microphone", &e));
                None
            }
        };
        let playout = match open_output(output, Pacing::RealTime)
            .and_then(|stream| Playout::start(stream, PlayoutConfig::default()))
        {
            Ok(playout) => Some(playout),
            Err(e) => {
                tracing::warn!("no audio output: {e}");
                problems.push(short_problem("speakers", &e));
                None
            }
        };
        Self {
            capture,
            playout,
            uplink,
            problem: (!problems.is_empty()).then(|| problems.join("; ")),
            blocked: Blocked::default(),
            replaying: Mutex::new(None),
        }
    }

    /// Sends captured audio to this room's session from now on.
    pub fn attach(&self, audio_tx: mpsc::Sender<Bytes>) {
        if let Ok(mut slot) = self.uplink.lock() {
            *slot = Some(audio_tx);
        }
    }

    /// Stops sending captured audio (left the room) and mutes it; the app model closes the
    /// device itself (`Effect::SetMicOpen`).
    pub fn detach(&self) {
        if let Ok(mut slot) = self.uplink.lock() {
            *slot = None;
        }
        self.set_mic_live(false);
    }

    /// Runs the microphone device (on stage, muted or not: the level meter and "talking
    /// while muted" need it) or closes it (in the audience: nothing records a listener).
    pub fn set_mic_open(&self, open: bool) {
        if let Some(capture) = &self.capture {
            capture.set_open(open);
        }
    }

    /// What the live session does with each received frame: hand it to playout.
    pub fn audio_handler(&self) -> AudioHandler {
        match &self.playout {
            Some(playout) => playout_handler(playout.sender(), self.blocked.clone()),
            None => Box::new(|_frame: AudioFrame| {}),
        }
    }

    /// Open the microphone (on stage and unmuted) or close it.
    pub fn set_mic_live(&self, live: bool) {
        if let Some(capture) = &self.capture {
            capture.set_muted(!live);
        }
    }

    /// Where the last 30 s of what was played can be copied from (off the async
    /// threads: a few milliseconds); None without speakers.
    pub fn clip_source(&self) -> Option<crate::audio::playout::PlayoutSender> {
        self.playout.as_ref().map(Playout::sender)
    }

    /// Forgets what was played: a clip holds the current room's audio only.
    pub fn clear_clip(&self) {
        if let Some(playout) = &self.playout {
            playout.sender().clear_clip();
        }
    }

    /// Plays, seeks, speeds up, pauses or stops a replay (nothing without speakers: the
    /// status says why). The replay played is kept here until the next one, so the
    /// playout's thread never frees its hundreds of megabytes.
    pub fn replay(&self, command: crate::audio::replay::ReplayCommand) {
        if let crate::audio::replay::ReplayCommand::Play(timeline) = &command
            && let Ok(mut kept) = self.replaying.lock()
        {
            *kept = Some(timeline.clone());
        }
        if let Some(playout) = &self.playout {
            playout.sender().replay(command);
        }
    }

    pub fn set_output_volume(&self, volume: f32) {
        if let Some(playout) = &self.playout {
            playout.sender().set_master_volume(volume);
        }
    }

    pub fn set_speaker_volume(&self, speaker_id: u32, volume: f32) {
        if let Some(playout) = &self.playout {
            playout.sender().set_speaker_volume(speaker_id, volume);
        }
    }

    /// Low delay (on stage) or smoothness (in the audience).
    pub fn set_latency(&self, profile: crate::audio::LatencyProfile) {
        if let Some(playout) = &self.playout {
            playout.sender().set_latency(profile);
        }
    }

    /// Plays nothing from these people from now on.
    pub fn set_blocked(&self, ids: Vec<u32>) {
        if let Ok(mut blocked) = self.blocked.write() {
            *blocked = ids.into_iter().collect();
        }
        for id in self.blocked.read().map(|b| b.clone()).unwrap_or_default() {
            self.speaker_left(id);
        }
    }

    /// A speaker left: free their jitter buffer and decoder.
    pub fn speaker_left(&self, speaker_id: u32) {
        if let Some(playout) = &self.playout {
            playout.sender().speaker_left(speaker_id);
        }
    }

    /// Writes what the audio engine did to the log (at exit): per speaker, frames played,
    /// concealed, late, skipped and stretched; frames the microphone sent and dropped.
    pub fn log_summary(&self) {
        if let Some(capture) = &self.capture {
            let s = capture.stats();
            tracing::info!(
                sent = s.frames_sent.load(Ordering::Relaxed),
                dropped = s.frames_dropped.load(Ordering::Relaxed),
                silent = s.frames_dtx.load(Ordering::Relaxed),
                "microphone summary"
            );
        }
        if let Some(playout) = &self.playout {
            let stats = playout.stats();
            for s in &stats.speakers {
                let c = s.counters;
                tracing::info!(
                    speaker = s.speaker_id,
                    played = c.played,
                    concealed = c.concealed,
                    late = c.late,
                    skipped = c.skipped,
                    faster = s.frames_faster,
                    slower = s.frames_slower,
                    delay_ms = s.jitter_delay_ms.round(),
                    "playout summary"
                );
            }
        }
    }

    /// The numbers the screen shows.
    pub fn status(&self) -> AudioStatus {
        let mut status = AudioStatus {
            unavailable: self.problem.clone(),
            input_level_dbov: -127.0,
            ..AudioStatus::default()
        };
        if let Some(capture) = &self.capture {
            let stats = capture.stats();
            status.input_level_dbov = stats.level_dbov();
            status.input_voice = stats.voice();
        }
        if let Some(playout) = &self.playout {
            let stats = playout.stats();
            status.underruns = stats.device_underruns;
            status.replay = stats.replay.clone();
            for speaker in &stats.speakers {
                status.jitter_ms = status.jitter_ms.max(speaker.jitter_delay_ms.round() as u32);
                status.concealed += speaker.counters.concealed;
                status
                    .speaker_levels
                    .insert(speaker.speaker_id, speaker.level_dbov);
            }
        }
        status
    }
}

/// Where clips are kept: `clips` in Hallway's data directory
/// (`$XDG_DATA_HOME/hallway/clips`, usually `~/.local/share/hallway/clips`).
pub fn clips_dir() -> Option<std::path::PathBuf> {
    directories::ProjectDirs::from("", "", "hallway").map(|d| d.data_dir().join("clips"))
}

/// Writes a clip (48 kHz mono) as a WAV file in `dir`, named after the room and the time;
/// returns its path and length in whole seconds.
pub fn save_clip(
    samples: &[i16],
    dir: &std::path::Path,
    room: &str,
) -> Result<(std::path::PathBuf, u32), String> {
    if samples.is_empty() {
        return Err("nothing has been played yet".into());
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot make {}: {e}", dir.display()))?;
    // Room ids are the server's: only their letters and digits go into a file name.
    let room: String = room
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(32)
        .collect();
    let stamp = chrono::Local::now().format("%Y%m%d-%H%M%S");
    let path = dir.join(format!("hallway-clip-{room}-{stamp}.wav"));
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: crate::audio::SAMPLE_RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let write = || -> Result<(), hound::Error> {
        let mut writer = hound::WavWriter::create(&path, spec)?;
        for &s in samples {
            writer.write_sample(s)?;
        }
        writer.finalize()
    };
    write().map_err(|e| format!("cannot write {}: {e} (is the disk full?)", path.display()))?;
    let seconds = u32::try_from(samples.len() / crate::audio::SAMPLE_RATE as usize)
        .unwrap_or(u32::MAX)
        .max(1);
    Ok((path, seconds))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::protocol::AudioHeader;

    fn frame(sequence: u32) -> AudioFrame {
        let header = AudioHeader {
            speaker_id: 0,
            sequence,
            timestamp_48k: sequence * 960,
            level: 20,
            voice: true,
        };
        AudioFrame::new(header, &[1, 2, 3]).unwrap()
    }

    #[test]
    fn captured_frames_go_to_the_room_attached_and_are_dropped_without_one() {
        let uplink: Uplink = Arc::new(Mutex::new(None));
        let mut sink = uplink_sink(uplink.clone());
        assert_eq!(sink(frame(0)), Handoff::Dropped, "no room to send to");
        let (tx, mut rx) = mpsc::channel(1);
        *uplink.lock().unwrap() = Some(tx);
        assert_eq!(sink(frame(1)), Handoff::Sent);
        // The socket is behind: the queue is full, the frame is dropped (and counted).
        assert_eq!(sink(frame(2)), Handoff::Dropped);
        assert_eq!(rx.try_recv().unwrap(), frame(1).bytes().clone());
        // The session ended: dropped, never a stop (the next room attaches anew).
        drop(rx);
        assert_eq!(sink(frame(3)), Handoff::Dropped);
    }

    #[test]
    fn a_clip_is_a_mono_48_khz_wav_named_after_the_room() {
        let dir = tempfile::tempdir().unwrap();
        let samples: Vec<i16> = (0..96_000).map(|i| (i % 100) as i16).collect();
        let (path, seconds) = super::save_clip(&samples, dir.path(), "k3/../x9").unwrap();
        assert_eq!(seconds, 2);
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            name.starts_with("hallway-clip-k3x9-") && name.ends_with(".wav"),
            "{name}"
        );
        let mut wav = hound::WavReader::open(&path).unwrap();
        assert_eq!((wav.spec().sample_rate, wav.spec().channels), (48_000, 1));
        let back: Vec<i16> = wav.samples::<i16>().map(Result::unwrap).collect();
        assert_eq!(back, samples);
        assert!(
            super::save_clip(&[], dir.path(), "r")
                .unwrap_err()
                .contains("nothing")
        );
    }
}
