//! Opus round trips of the speech clips and of tones, through the engine's codec wrapper.
#![allow(clippy::unwrap_used)]

mod audio_support;

use hallway::audio::{FRAME_SAMPLES, OpusDecoder, OpusEncoder, OpusEncoderConfig, level};

fn round_trip(input: &[f32]) -> (Vec<f32>, usize, usize) {
    let mut enc = OpusEncoder::new(OpusEncoderConfig::default()).unwrap();
    let mut dec = OpusDecoder::new().unwrap();
    let mut out = Vec::new();
    let mut frame = vec![0.0f32; FRAME_SAMPLES];
    let mut bytes = 0;
    for chunk in input.chunks(FRAME_SAMPLES) {
        let mut padded = [0.0f32; FRAME_SAMPLES];
        padded[..chunk.len()].copy_from_slice(chunk);
        let packet = enc.encode_vec(&padded).unwrap();
        bytes += packet.len();
        if packet.len() <= 2 {
            // DTX: the receiver plays silence for this slot.
            frame.fill(0.0);
        } else {
            dec.decode(&packet, &mut frame).unwrap();
        }
        out.extend_from_slice(&frame);
    }
    (out, enc.lookahead(), bytes)
}

#[test]
fn speech_survives_opus_with_high_correlation_at_the_codec_delay() {
    for name in audio_support::CLIPS {
        let input = audio_support::speech_clip(name);
        let (output, lookahead, bytes) = round_trip(&input);
        // The best alignment is the codec's own lookahead...
        let (lag, best) = audio_support::best_lag(&input, &output, 2000);
        assert!(
            // SILK's filters shift the phase by a few samples on top of the lookahead.
            lag.abs_diff(lookahead) <= 5,
            "{name}: best lag {lag}, lookahead {lookahead}"
        );
        // ...and there the waveform matches.
        assert!(best >= 0.9, "{name}: correlation {best:.3}");
        // About 24 kb/s (VBR, DTX): well under 32 kb/s.
        let seconds = input.len() as f64 / 48_000.0;
        let kbps = bytes as f64 * 8.0 / seconds / 1000.0;
        assert!(kbps < 32.0 && kbps > 8.0, "{name}: {kbps:.1} kb/s");
    }
}

#[test]
fn tones_keep_their_level_and_shape() {
    for freq in [200.0f32, 440.0, 1000.0, 3000.0] {
        let input = audio_support::sine(freq, 0.5, 48_000, 48_000);
        let (output, lookahead, _) = round_trip(&input);
        let corr = (lookahead - 8..lookahead + 8)
            .map(|lag| audio_support::correlation_at(&input[4800..40_000], &output[4800..], lag))
            .fold(f64::MIN, f64::max);
        assert!(corr >= 0.9, "{freq} Hz: correlation {corr:.3}");
        let in_db = level::frame_dbov(&input[9600..10_560]);
        let out_db = level::frame_dbov(&output[9600 + lookahead..10_560 + lookahead]);
        assert!(
            (in_db - out_db).abs() < 1.5,
            "{freq} Hz: {in_db} vs {out_db}"
        );
    }
}
