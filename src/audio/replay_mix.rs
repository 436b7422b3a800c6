//! A replay (#15) mixed into one file: each speaker's Ogg Opus track, as the server kept
//! it, decoded and placed on the room's timeline, then summed.
//!
//! A track starts at `first_ms - started_at_ms` on the timeline; within it, a packet's
//! page granule position is where the packet ends on the speaker's own 48 kHz clock,
//! counted from their first packet. Jumps in the granule positions are silences the
//! speaker did not send (DTX): the decoder is told of them with concealment up to a few
//! frames, as playout does, and silence after that.

use crate::audio::codec::OpusDecoder;
use crate::audio::error::AudioError;
use crate::audio::mixer::Mixer;
use crate::audio::{FRAME_SAMPLES, SAMPLE_RATE};
use crate::protocol::replay::ReplayInfo;

/// Frames of a gap concealed before the rest is silence.
const MAX_CONCEAL: u64 = 5;
/// The longest replay mixed: 12 hours. Longer timelines are refused rather than allocated.
const MAX_SAMPLES: u64 = 12 * 3_600 * SAMPLE_RATE as u64;
/// Packets this far past the room's end (as the index says) are left out: a hostile or
/// broken track cannot make the timeline longer than the room was.
const SLACK_MS: u64 = 60_000;

/// Mixes `tracks` (each speaker's id and Ogg Opus bytes) of `info` into 48 kHz mono
/// samples, the room's start at sample 0.
pub fn mix(info: &ReplayInfo, tracks: &[(u32, Vec<u8>)]) -> Result<Vec<f32>, AudioError> {
    let length_ms = info
        .ended_at_ms
        .or(info.last_ms)
        .unwrap_or(info.started_at_ms)
        .saturating_sub(info.started_at_ms);
    if length_ms * 48 > MAX_SAMPLES {
        return Err(AudioError::Format(
            "the replay is longer than 12 hours; it cannot be mixed into one file".into(),
        ));
    }
    // Nothing is placed past the room's end (and a minute's slack).
    let limit = (length_ms + SLACK_MS) * 48;
    let mut out: Vec<f32> = Vec::new();
    let mut frame = vec![0.0f32; FRAME_SAMPLES];
    for (user, bytes) in tracks {
        let Some(track) = info.track(*user) else {
            continue;
        };
        let start = track
            .first_ms
            .saturating_sub(info.started_at_ms)
            .saturating_mul(48);
        if start > limit {
            continue;
        }
        let mut decoder = OpusDecoder::new()?;
        let mut reader = ogg::PacketReader::new(std::io::Cursor::new(bytes.as_slice()));
        let mut headers = 0;
        // Where the next frame starts on the speaker's clock.
        let mut next: u64 = 0;
        while let Some(packet) = reader
            .read_packet()
            .map_err(|e| AudioError::Format(format!("replay track of {user}: {e}")))?
        {
            if headers < 2 {
                headers += 1;
                continue;
            }
            let end = packet.absgp_page();
            let begin = end.saturating_sub(FRAME_SAMPLES as u64);
            if begin.saturating_add(start) > limit {
                // Past the room's end: a broken or hostile track; the rest is not placed.
                break;
            }
            // A gap: its first frames concealed (the decoder fades out), the rest silent.
            let gap = begin.saturating_sub(next) / FRAME_SAMPLES as u64;
            for k in 0..gap.min(MAX_CONCEAL) {
                decoder.conceal(&mut frame)?;
                add(&mut out, start + next + k * FRAME_SAMPLES as u64, &frame);
            }
            decoder.decode(&packet.data, &mut frame)?;
            add(&mut out, start + begin, &frame);
            next = end;
        }
    }
    Mixer::new().finish(&mut out, 1.0);
    Ok(out)
}

fn add(out: &mut Vec<f32>, at: u64, frame: &[f32]) {
    let at = at as usize;
    if out.len() < at + frame.len() {
        out.resize(at + frame.len(), 0.0);
    }
    for (o, s) in out[at..at + frame.len()].iter_mut().zip(frame) {
        *o += s;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::audio::codec::{OpusEncoder, OpusEncoderConfig};
    use crate::protocol::User;
    use crate::protocol::replay::ReplayTrack;
    use ogg::{PacketWriteEndInfo, PacketWriter};

    /// A track as the server writes it: a tone in the frames listed (by frame number on
    /// the speaker's clock).
    fn track(frames: &[u64]) -> Vec<u8> {
        let mut encoder = OpusEncoder::new(OpusEncoderConfig::default()).unwrap();
        let mut writer = PacketWriter::new(Vec::new());
        writer
            .write_packet(b"OpusHead".to_vec(), 1, PacketWriteEndInfo::EndPage, 0)
            .unwrap();
        writer
            .write_packet(b"OpusTags".to_vec(), 1, PacketWriteEndInfo::EndPage, 0)
            .unwrap();
        for &n in frames {
            let tone: Vec<f32> = (0..FRAME_SAMPLES)
                .map(|i| {
                    let t = (n as usize * FRAME_SAMPLES + i) as f32 / SAMPLE_RATE as f32;
                    0.3 * (2.0 * std::f32::consts::PI * 440.0 * t).sin()
                })
                .collect();
            let packet = encoder.encode_vec(&tone).unwrap();
            let end = (n + 1) * FRAME_SAMPLES as u64;
            writer
                .write_packet(packet, 1, PacketWriteEndInfo::EndPage, end)
                .unwrap();
        }
        writer.into_inner()
    }

    fn energy(samples: &[f32]) -> f32 {
        samples.iter().map(|s| s * s).sum::<f32>() / samples.len().max(1) as f32
    }

    #[test]
    fn tracks_land_at_their_speakers_times_with_their_silences() {
        let user = |id| User {
            id,
            handle: format!("u{id}"),
            name: format!("U{id}"),
        };
        let info = ReplayInfo {
            id: "r".into(),
            title: "t".into(),
            host: user(1),
            started_at_ms: 10_000,
            last_ms: None,
            ended_at_ms: Some(20_000),
            incomplete: false,
            why_incomplete: None,
            tracks: vec![
                ReplayTrack {
                    user: user(1),
                    first_ms: 10_000,
                    packets: 25,
                    bytes: 0,
                },
                ReplayTrack {
                    user: user(2),
                    first_ms: 13_000,
                    packets: 25,
                    bytes: 0,
                },
            ],
        };
        // Speaker 1: half a second, 2 s of silence (not sent), half a second.
        let one: Vec<u64> = (0..25).chain(125..150).collect();
        // Speaker 2 starts 3 s in: half a second.
        let two: Vec<u64> = (0..25).collect();
        let mixed = mix(&info, &[(1, track(&one)), (2, track(&two))]).unwrap();
        let at = |s: f32| (s * SAMPLE_RATE as f32) as usize;
        let window = |from: f32, to: f32| energy(&mixed[at(from)..at(to)]);
        assert!(window(0.1, 0.4) > 0.01, "speaker 1 at 0 s");
        assert!(
            window(1.0, 2.4) < 1e-4,
            "the silence speaker 1 did not send"
        );
        assert!(window(2.6, 2.9) > 0.01, "speaker 1 again at 2.5 s");
        assert!(window(3.1, 3.4) > 0.01, "speaker 2 at 3 s");
        assert!(mixed.len() >= at(3.5));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let info = ReplayInfo {
            id: "r".into(),
            title: "t".into(),
            host: User {
                id: 1,
                handle: "a".into(),
                name: "A".into(),
            },
            started_at_ms: 0,
            last_ms: None,
            ended_at_ms: Some(1),
            incomplete: false,
            why_incomplete: None,
            tracks: vec![ReplayTrack {
                user: User {
                    id: 1,
                    handle: "a".into(),
                    name: "A".into(),
                },
                first_ms: 0,
                packets: 1,
                bytes: 1,
            }],
        };
        assert!(mix(&info, &[(1, b"not ogg at all".to_vec())]).is_err());
    }

    #[test]
    fn a_track_claiming_hours_past_the_rooms_end_is_cut_there() {
        let user = User {
            id: 1,
            handle: "a".into(),
            name: "A".into(),
        };
        let info = ReplayInfo {
            id: "r".into(),
            title: "t".into(),
            host: user.clone(),
            started_at_ms: 0,
            last_ms: None,
            ended_at_ms: Some(2_000),
            incomplete: false,
            why_incomplete: None,
            tracks: vec![ReplayTrack {
                user,
                first_ms: 0,
                packets: 2,
                bytes: 0,
            }],
        };
        // Frame 0, then one "11 hours" later.
        let mixed = mix(&info, &[(1, track(&[0, 11 * 3_600 * 50]))]).unwrap();
        assert!(
            mixed.len() <= (2 + 60) * SAMPLE_RATE as usize,
            "{} samples",
            mixed.len()
        );
    }
}
