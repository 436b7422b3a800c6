//! File backends and resampling: WAV and Ogg Opus round trips, bad files, and the
//! 44.1 kHz stereo device ↔ 48 kHz mono engine conversion.
#![allow(clippy::unwrap_used)]

mod audio_support;

use hallway::audio::files::{AudioSink, AudioSource, WavSink, WavSource, read_all};
use hallway::audio::oggopus::{OggOpusSink, OggOpusSource};
use hallway::audio::resample::{FromEngine, ToEngine};
use hallway::audio::{AudioError, DeviceFormat, create_sink, level, open_source};

const CD_STEREO: DeviceFormat = DeviceFormat {
    sample_rate: 44_100,
    channels: 2,
};

#[test]
fn wav_round_trip_is_exact_at_16_bit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.wav");
    let input = audio_support::speech_clip("dave");
    let mut sink = WavSink::create(&path, DeviceFormat::ENGINE).unwrap();
    sink.write(&input).unwrap();
    sink.finish().unwrap();
    let back = read_all(&mut WavSource::open(&path).unwrap()).unwrap();
    assert_eq!(back, input);
}

#[test]
fn ogg_opus_round_trip_keeps_length_alignment_and_shape() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.ogg");
    let input = audio_support::speech_clip("carol");
    let mut sink = create_sink(&path, DeviceFormat::ENGINE).unwrap();
    // Odd chunk sizes on purpose: the sink buffers into 20 ms frames itself.
    for chunk in input.chunks(777) {
        sink.write(chunk).unwrap();
    }
    sink.finish().unwrap();
    let mut source = open_source(&path).unwrap();
    assert_eq!(source.format(), DeviceFormat::ENGINE);
    let back = read_all(source.as_mut()).unwrap();
    // Pre-skip and end trimming make the decoded file exactly as long as the input,
    // and aligned with it.
    assert_eq!(back.len(), input.len());
    let (lag, corr) = audio_support::best_lag(&input, &back, 20);
    assert!(lag <= 3, "lag {lag}");
    assert!(corr >= 0.9, "correlation {corr:.3}");
}

#[test]
fn ogg_opus_files_are_valid_for_other_tools() {
    // sox with Opus support reads it back (skipped only if sox lacks the format).
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tone.opus");
    let mut sink = OggOpusSink::create(&path, DeviceFormat::ENGINE).unwrap();
    sink.write(&audio_support::sine(440.0, 0.5, 48_000, 48_000))
        .unwrap();
    sink.finish().unwrap();
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(&bytes[..4], b"OggS");
    assert_eq!(&bytes[28..36], b"OpusHead");
    let out = std::process::Command::new("soxi")
        .arg("-s")
        .arg(&path)
        .output();
    if let Ok(out) = out
        && out.status.success()
    {
        let samples: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        assert_eq!(
            samples, 48_000,
            "sox sees the exact length from the granule positions"
        );
    }
}

#[test]
fn bad_files_are_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.ogg");
    std::fs::write(&junk, b"this is not an ogg file at all").unwrap();
    assert!(matches!(
        OggOpusSource::open(&junk),
        Err(AudioError::OggOpus { .. })
    ));
    let junk_wav = dir.path().join("junk.wav");
    std::fs::write(&junk_wav, b"RIFF....WAVEfmt nonsense").unwrap();
    let err = WavSource::open(&junk_wav).err().unwrap();
    assert!(err.to_string().contains("junk.wav"), "{err}");
    assert!(open_source(&dir.path().join("x.mp3")).is_err());
    assert!(open_source(&dir.path().join("missing.wav")).is_err());
    // A truncated Ogg Opus file plays what it has and then ends.
    let good = dir.path().join("good.ogg");
    let mut sink = OggOpusSink::create(&good, DeviceFormat::ENGINE).unwrap();
    sink.write(&audio_support::sine(300.0, 0.3, 48_000, 96_000))
        .unwrap();
    sink.finish().unwrap();
    let bytes = std::fs::read(&good).unwrap();
    let cut = dir.path().join("cut.ogg");
    std::fs::write(&cut, &bytes[..bytes.len() * 4 / 5]).unwrap();
    let mut src = OggOpusSource::open(&cut).unwrap();
    let mut buf = vec![0.0; 4800];
    let mut total = 0;
    while let Ok(n) = src.read(&mut buf) {
        if n == 0 {
            break;
        }
        total += n;
    }
    assert!(total > 0 && total < 96_000, "{total}");
}

#[test]
fn device_44k1_stereo_to_engine_48k_mono() {
    // 1 kHz at 0.5 on both channels, 1 s.
    let mono = audio_support::sine(1000.0, 0.5, 44_100, 44_100);
    let stereo: Vec<f32> = mono.iter().flat_map(|&s| [s, s]).collect();
    let mut conv = ToEngine::new(CD_STEREO).unwrap();
    let mut out = Vec::new();
    for chunk in stereo.chunks(2 * 441) {
        conv.push(chunk, &mut out).unwrap();
    }
    // Length scales by 48000/44100.
    assert!(out.len().abs_diff(48_000) <= 480, "{}", out.len());
    // Same tone at 48 kHz, same level, after the converter's delay.
    let reference = audio_support::sine(1000.0, 0.5, 48_000, 48_000);
    let (_, corr) = audio_support::best_lag(&reference[..40_000], &out[2000..], 60);
    assert!(corr > 0.999, "correlation {corr}");
    let db = level::frame_dbov(&out[4800..9600]);
    assert!(
        (db - level::frame_dbov(&reference[..4800])).abs() < 0.1,
        "{db}"
    );
}

#[test]
fn engine_48k_mono_to_device_44k1_stereo_and_back() {
    let input = audio_support::speech_clip("alice");
    let mut to_dev = FromEngine::new(CD_STEREO).unwrap();
    let mut dev = Vec::new();
    for chunk in input.chunks(960) {
        to_dev.push(chunk, &mut dev).unwrap();
    }
    // Both channels carry the same signal.
    assert!(dev.chunks_exact(2).all(|f| f[0] == f[1]));
    let frames = dev.len() / 2;
    let expected = input.len() * 441 / 480;
    assert!(frames.abs_diff(expected) <= 441, "{frames} vs {expected}");
    // Back to the engine: speech survives the round trip almost perfectly.
    let mut to_eng = ToEngine::new(CD_STEREO).unwrap();
    let mut back = Vec::new();
    to_eng.push(&dev, &mut back).unwrap();
    let delay = to_dev.delay_samples() * 480 / 441 + to_eng.delay_samples();
    let (lag, corr) = audio_support::best_lag(&input, &back, 200);
    assert!(lag.abs_diff(delay) <= 3, "lag {lag}, delay {delay}");
    assert!(corr > 0.99, "correlation {corr}");
}

#[test]
fn engine_rate_passes_through_bit_exact() {
    let input = audio_support::speech_clip("bob");
    let mut conv = ToEngine::new(DeviceFormat::ENGINE).unwrap();
    let mut out = Vec::new();
    conv.push(&input, &mut out).unwrap();
    assert_eq!(out, input);
}
