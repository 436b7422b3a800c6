//! Binary audio frames: a fixed 16-byte header and one Opus packet.
//!
//! ```text
//! offset size field
//!      0    1 kind          1 = audio (other values are reserved and rejected)
//!      1    1 flags         bit 0: voice activity; other bits reserved, sent as 0
//!      2    4 speaker_id    u32 big-endian; clients send 0, the server stamps the sender
//!      6    4 sequence      u32 big-endian, +1 per frame sent, wrapping
//!     10    4 timestamp     u32 big-endian, on the 48 kHz sample clock, wrapping
//!     14    1 level         audio level as -dBov, 0 (loudest) ..= 127 (silence), as RFC 6464
//!     15    1 reserved      sent as 0
//!     16  1..=1275 opus     one Opus packet, opaque to the server
//! ```
//!
//! The server never looks past the header: the payload stays opaque so that rooms can be
//! end-to-end encrypted later without touching the server's hot path.

use bytes::{BufMut, Bytes, BytesMut};
use thiserror::Error;

use super::UserId;

/// Length of the fixed header in bytes.
pub const HEADER_LEN: usize = 16;
/// The largest Opus packet (RFC 6716, section 3.2.1).
pub const MAX_OPUS_LEN: usize = 1275;
/// The largest valid audio frame on the wire.
pub const MAX_FRAME_LEN: usize = HEADER_LEN + MAX_OPUS_LEN;
/// `kind` of an audio frame.
pub const KIND_AUDIO: u8 = 1;
/// Quietest level value: silence.
pub const LEVEL_SILENCE: u8 = 127;

const FLAG_VOICE: u8 = 0b0000_0001;

/// The decoded header of an audio frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioHeader {
    /// Who spoke it; 0 from clients, stamped by the server.
    pub speaker_id: UserId,
    /// Frame counter, +1 per frame sent (wrapping).
    pub sequence: u32,
    /// Position on the 48 kHz sample clock of the first sample (wrapping).
    pub timestamp_48k: u32,
    /// Audio level as -dBov, 0..=127.
    pub level: u8,
    /// The sender's voice-activity decision for this frame.
    pub voice: bool,
}

/// An audio frame: its header and the bytes of the whole frame (header included), so that
/// forwarding never copies the payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioFrame {
    pub header: AudioHeader,
    bytes: Bytes,
}

/// Why bytes are not a valid audio frame.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum AudioFrameError {
    /// Shorter than a header plus a one-byte Opus packet.
    #[error("audio frame of {0} bytes is shorter than the {min} bytes minimum", min = HEADER_LEN + 1)]
    TooShort(usize),
    /// Longer than a header plus the largest Opus packet.
    #[error("audio frame of {0} bytes is longer than the {MAX_FRAME_LEN} bytes maximum")]
    TooLong(usize),
    /// The first byte is not a known frame kind.
    #[error("unknown binary frame kind {0} (only 1, audio, is defined)")]
    UnknownKind(u8),
    /// The level byte is outside 0..=127.
    #[error("audio level {0} is outside 0..=127")]
    BadLevel(u8),
}

impl AudioFrame {
    /// Builds a frame from a header and an Opus packet (one allocation).
    pub fn new(header: AudioHeader, opus: &[u8]) -> Result<Self, AudioFrameError> {
        let len = HEADER_LEN + opus.len();
        if opus.is_empty() {
            return Err(AudioFrameError::TooShort(len));
        }
        if len > MAX_FRAME_LEN {
            return Err(AudioFrameError::TooLong(len));
        }
        if header.level > LEVEL_SILENCE {
            return Err(AudioFrameError::BadLevel(header.level));
        }
        let mut buf = BytesMut::with_capacity(len);
        put_header(&mut buf, &header);
        buf.put_slice(opus);
        Ok(Self {
            header,
            bytes: buf.freeze(),
        })
    }

    /// Parses a frame received from the wire without copying it.
    pub fn parse(bytes: Bytes) -> Result<Self, AudioFrameError> {
        let len = bytes.len();
        if len < HEADER_LEN + 1 {
            return Err(AudioFrameError::TooShort(len));
        }
        if len > MAX_FRAME_LEN {
            return Err(AudioFrameError::TooLong(len));
        }
        if bytes[0] != KIND_AUDIO {
            return Err(AudioFrameError::UnknownKind(bytes[0]));
        }
        let level = bytes[14];
        if level > LEVEL_SILENCE {
            return Err(AudioFrameError::BadLevel(level));
        }
        let u32_at = |at: usize| {
            u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
        };
        let header = AudioHeader {
            speaker_id: u32_at(2),
            sequence: u32_at(6),
            timestamp_48k: u32_at(10),
            level,
            voice: bytes[1] & FLAG_VOICE != 0,
        };
        Ok(Self { header, bytes })
    }

    /// The same frame with `speaker_id` stamped into its header: one copy of the frame,
    /// made once per received frame and then shared by every receiver.
    pub fn stamped(&self, speaker_id: UserId) -> Self {
        self.with_header(AudioHeader {
            speaker_id,
            ..self.header
        })
    }

    /// The same Opus packet under another header (one copy): a clip replayed with the
    /// sender's current sequence number and clock. The level is clamped to 0..=127.
    pub fn with_header(&self, header: AudioHeader) -> Self {
        let header = AudioHeader {
            level: header.level.min(LEVEL_SILENCE),
            ..header
        };
        let mut buf = BytesMut::with_capacity(self.bytes.len());
        put_header(&mut buf, &header);
        buf.put_slice(self.opus());
        Self {
            header,
            bytes: buf.freeze(),
        }
    }

    /// The Opus packet.
    pub fn opus(&self) -> &[u8] {
        &self.bytes[HEADER_LEN..]
    }

    /// The whole frame as sent on the wire; cloning it shares the buffer.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }
}

fn put_header(buf: &mut BytesMut, header: &AudioHeader) {
    buf.put_u8(KIND_AUDIO);
    buf.put_u8(if header.voice { FLAG_VOICE } else { 0 });
    buf.put_u32(header.speaker_id);
    buf.put_u32(header.sequence);
    buf.put_u32(header.timestamp_48k);
    buf.put_u8(header.level);
    buf.put_u8(0);
}

/// Converts a level in dBov (0 = full scale, negative below) to the wire's 0..=127 byte.
pub fn level_from_dbov(level_dbov: f32) -> u8 {
    if level_dbov.is_nan() {
        return LEVEL_SILENCE;
    }
    (-level_dbov).round().clamp(0.0, f32::from(LEVEL_SILENCE)) as u8
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn header() -> AudioHeader {
        AudioHeader {
            speaker_id: 0,
            sequence: 7,
            timestamp_48k: 960 * 7,
            level: 30,
            voice: true,
        }
    }

    #[test]
    fn round_trip_keeps_every_field_and_the_payload() {
        let frame = AudioFrame::new(header(), &[1, 2, 3]).unwrap();
        let parsed = AudioFrame::parse(frame.bytes().clone()).unwrap();
        assert_eq!(parsed.header, header());
        assert_eq!(parsed.opus(), &[1, 2, 3]);
    }

    #[test]
    fn stamping_changes_only_the_speaker() {
        let frame = AudioFrame::new(header(), &[9; 40]).unwrap();
        let stamped = AudioFrame::parse(frame.stamped(42).bytes().clone()).unwrap();
        assert_eq!(stamped.header.speaker_id, 42);
        assert_eq!(stamped.header.sequence, 7);
        assert_eq!(stamped.opus(), frame.opus());
    }

    #[test]
    fn rejects_bad_frames_with_the_reason() {
        assert_eq!(
            AudioFrame::parse(Bytes::from_static(&[1; 16])),
            Err(AudioFrameError::TooShort(16))
        );
        assert_eq!(
            AudioFrame::parse(Bytes::from(vec![1; MAX_FRAME_LEN + 1])),
            Err(AudioFrameError::TooLong(MAX_FRAME_LEN + 1))
        );
        let mut bytes = AudioFrame::new(header(), &[0]).unwrap().bytes().to_vec();
        bytes[0] = 9;
        assert_eq!(
            AudioFrame::parse(Bytes::from(bytes.clone())),
            Err(AudioFrameError::UnknownKind(9))
        );
        bytes[0] = KIND_AUDIO;
        bytes[14] = 200;
        assert_eq!(
            AudioFrame::parse(Bytes::from(bytes)),
            Err(AudioFrameError::BadLevel(200))
        );
    }

    #[test]
    fn dbov_maps_onto_the_wire_range() {
        assert_eq!(level_from_dbov(0.0), 0);
        assert_eq!(level_from_dbov(-30.4), 30);
        assert_eq!(level_from_dbov(-500.0), 127);
        assert_eq!(level_from_dbov(3.0), 0);
        assert_eq!(level_from_dbov(f32::NAN), 127);
    }

    proptest! {
        #[test]
        fn parse_never_panics(data in proptest::collection::vec(any::<u8>(), 0..1400)) {
            let _ = AudioFrame::parse(Bytes::from(data));
        }

        #[test]
        fn encode_then_parse_is_identity(
            speaker_id: u32, sequence: u32, timestamp_48k: u32, level in 0u8..=127, voice: bool,
            opus in proptest::collection::vec(any::<u8>(), 1..=MAX_OPUS_LEN),
        ) {
            let header = AudioHeader { speaker_id, sequence, timestamp_48k, level, voice };
            let frame = AudioFrame::new(header, &opus).unwrap();
            let parsed = AudioFrame::parse(frame.bytes().clone()).unwrap();
            prop_assert_eq!(parsed.header, header);
            prop_assert_eq!(parsed.opus(), &opus[..]);
        }
    }
}
