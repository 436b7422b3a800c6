//! The speech the fan-out benches replay: one clip, encoded once.

use std::path::Path;

/// One pre-encoded Opus packet and its level.
pub struct Packet {
    pub opus: Vec<u8>,
    pub level: u8,
}

/// Encodes a speech clip once; only packets with sound are kept, so every speaker sends 50
/// a second without pauses.
pub fn load_packets() -> Vec<Packet> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/speech/alice.wav");
    let clip = hallway::clip::Clip::from_file(&path).expect("encode the speech clip");
    let packets: Vec<Packet> = clip
        .frames
        .into_iter()
        .flatten()
        .map(|f| Packet {
            opus: f.opus().to_vec(),
            level: f.header.level,
        })
        .collect();
    assert!(!packets.is_empty(), "the clip has no sound");
    packets
}

/// `hallway serve` flags that lift the per-address limits: they are for strangers on the
/// internet, not for a load generator opening every connection from 127.0.0.1, whose
/// listeners neither send nor answer pings.
pub const LIFTED_LIMITS: &[&str] = &[
    "--max-connections-per-address",
    "1000000",
    "--sessions-per-minute",
    "100000000",
    "--joins-per-second",
    "100000000",
    "--rooms-per-hour",
    "100000000",
    "--ping-after",
    "3600",
];
