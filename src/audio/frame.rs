//! The unit the capture side hands to the network: one encoded 20 ms frame.

/// One Opus packet with the metadata the wire carries next to it.
///
/// `seq` grows by one for every frame actually sent (DTX gaps skip no sequence numbers),
/// while `timestamp_48k` advances by 960 for every 20 ms of capture, sent or not, so a
/// receiver can tell silence (timestamp jump) from loss (sequence gap).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedFrame {
    /// +1 per frame sent, wrapping.
    pub seq: u32,
    /// First sample of this frame on the sender's 48 kHz clock, wrapping.
    pub timestamp_48k: u32,
    /// RFC 6464 style level: -dBov clamped to 0..=127 (0 loudest, 127 silence).
    pub level: u8,
    /// The voice activity detector thinks someone is talking.
    pub voice: bool,
    /// One Opus packet (≤ 1275 bytes).
    pub opus: Vec<u8>,
}
