//! The real cpal/ALSA path without a sound card: an asoundrc (loaded through
//! XDG_CONFIG_HOME) routes the `default` PCM to the ALSA `file` plugin over `null`, so
//! playback lands in a raw file and capture reads one. It is bit-exact but unpaced, so the
//! child stops after N samples and the input file is longer than what is captured.
//!
//! Environment variables cannot be set in-process without `unsafe`, so each test re-runs
//! this test binary as a child with the environment it needs; the child half is
//! `#[ignore]`d so it only runs when asked for by name.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use hallway::audio::cpal_backend::{self, CpalOptions};
use hallway::audio::{DeviceFormat, list_devices};

const DIR_VAR: &str = "HALLWAY_ALSA_TEST_DIR";
/// Samples compared in each direction: 150 ms, below the 200 ms ring so the unpaced
/// device cannot overrun before we read.
const N: usize = 7200;

fn known_signal(n: usize) -> Vec<i16> {
    // A chirp plus a ramp: every sample differs from its neighbours, so any slip shows.
    (0..n)
        .map(|i| {
            let t = i as f32 / 48_000.0;
            let s = 0.4 * (std::f32::consts::TAU * (200.0 + 2000.0 * t) * t).sin();
            (s * 32767.0) as i16 ^ ((i % 7) as i16)
        })
        .collect()
}

fn write_raw(path: &Path, samples: &[i16]) {
    let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    std::fs::write(path, bytes).unwrap();
}

fn read_raw(path: &Path) -> Vec<i16> {
    std::fs::read(path)
        .unwrap()
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect()
}

fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("alsa")).unwrap();
    let d = dir.path().display();
    let asoundrc = format!(
        r#"pcm.!default {{
  type asym
  playback.pcm "hallway_out"
  capture.pcm "hallway_in"
}}
pcm.hallway_out {{
  type file
  slave.pcm "null"
  file "{d}/out.raw"
  format "raw"
}}
pcm.hallway_in {{
  type file
  slave.pcm "null"
  file "/dev/null"
  infile "{d}/in.raw"
  format "raw"
}}
"#
    );
    std::fs::write(dir.path().join("alsa/asoundrc"), asoundrc).unwrap();
    // Four times longer than what is captured.
    write_raw(&dir.path().join("in.raw"), &known_signal(4 * N));
    dir
}

fn run_child(test_name: &str, dir: &Path) {
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(exe)
        .args([
            "--exact",
            test_name,
            "--nocapture",
            "--include-ignored",
            "--test-threads=1",
        ])
        .env("XDG_CONFIG_HOME", dir)
        .env(DIR_VAR, dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "child failed:\n{stdout}\n{stderr}");
    // The child must really have run (not been filtered out).
    assert!(stdout.contains("1 passed"), "child did not run:\n{stdout}");
}

fn child_dir() -> Option<PathBuf> {
    std::env::var_os(DIR_VAR).map(PathBuf::from)
}

const MONO_I16: CpalOptions = CpalOptions {
    format: Some(DeviceFormat {
        sample_rate: 48_000,
        channels: 1,
    }),
    sample_format: Some(cpal::SampleFormat::I16),
    buffer_frames: None,
};

#[test]
fn cpal_capture_reads_a_known_file_bit_exact() {
    let dir = setup();
    run_child("child_capture", dir.path());
}

#[test]
#[ignore = "child half of cpal_capture_reads_a_known_file_bit_exact"]
fn child_capture() {
    let Some(dir) = child_dir() else { return };
    let mut stream = cpal_backend::open_input(None, Some(MONO_I16)).unwrap();
    assert_eq!(
        stream.format,
        DeviceFormat {
            sample_rate: 48_000,
            channels: 1
        }
    );
    let mut got = Vec::with_capacity(N);
    let deadline = Instant::now() + Duration::from_secs(10);
    while got.len() < N && Instant::now() < deadline {
        while got.len() < N
            && let Ok(s) = stream.ring.pop()
        {
            got.push(s);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(got.len(), N, "capture stalled");
    let expected: Vec<f32> = read_raw(&dir.join("in.raw"))[..N]
        .iter()
        .map(|&s| f32::from(s) / 32768.0)
        .collect();
    assert_eq!(got, expected);
    assert_eq!(stream.counters.errors.load(Ordering::Relaxed), 0);
}

#[test]
fn cpal_playback_writes_a_known_signal_bit_exact() {
    let dir = setup();
    run_child("child_playback", dir.path());
    let out = read_raw(&dir.path().join("out.raw"));
    let signal = known_signal(N);
    // The unpaced device may play underrun silence before our samples reach the ring;
    // after that the signal must appear exactly and in one piece.
    let start = out
        .windows(32)
        .position(|w| w == &signal[..32])
        .expect("the signal's start never reached the file");
    assert!(
        out[..start].iter().all(|&s| s == 0),
        "something else played first"
    );
    assert!(out.len() >= start + N, "only {} samples written", out.len());
    let mismatches = (0..N).filter(|&i| out[start + i] != signal[i]).count();
    assert_eq!(mismatches, 0, "{mismatches} of {N} samples differ");
}

#[test]
#[ignore = "child half of cpal_playback_writes_a_known_signal_bit_exact"]
fn child_playback() {
    if child_dir().is_none() {
        return;
    }
    let mut stream = cpal_backend::open_output(None, Some(MONO_I16)).unwrap();
    let signal: Vec<f32> = known_signal(N)
        .iter()
        .map(|&s| f32::from(s) / 32768.0)
        .collect();
    // One commit, so the callback sees all of it or none of it.
    let chunk = stream.ring.write_chunk_uninit(N).unwrap();
    chunk.fill_from_iter(signal.iter().copied());
    let deadline = Instant::now() + Duration::from_secs(10);
    while stream.ring.slots() < stream.ring.buffer().capacity() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(
        stream.ring.slots(),
        stream.ring.buffer().capacity(),
        "device did not consume the ring"
    );
    // The callback that emptied the ring handed its last period to ALSA only once it
    // returned. The count is bumped at the end of a callback, so it may still lag that one:
    // two more completed callbacks mean the device has taken the last period and asked for
    // the next.
    let emptied_at = stream.counters.callbacks.load(Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(10);
    while stream.counters.callbacks.load(Ordering::Relaxed) < emptied_at + 2
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(
        stream.counters.callbacks.load(Ordering::Relaxed) >= emptied_at + 2,
        "the device stopped calling back after the ring emptied"
    );
    assert!(
        stream.counters.underruns.load(Ordering::Relaxed) > 0,
        "unpaced device should underrun"
    );
    drop(stream);
}

#[test]
fn device_listing_works_without_a_sound_card() {
    let dir = setup();
    run_child("child_list", dir.path());
}

#[test]
#[ignore = "child half of device_listing_works_without_a_sound_card"]
fn child_list() {
    if child_dir().is_none() {
        return;
    }
    let list = list_devices();
    let text = list.to_string();
    assert!(text.contains("Input devices"), "{text}");
    assert!(
        list.inputs
            .iter()
            .any(|d| d.name.contains("default") || d.is_default),
        "{text}"
    );
    // A named device that does not exist is a clear error, not a panic.
    let err = cpal_backend::open_input(Some("no-such-device"), None)
        .err()
        .unwrap();
    assert!(err.to_string().contains("hallway devices"), "{err}");
}
