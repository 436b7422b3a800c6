//! Opus: the encoder and decoder wrappers with Hallway's settings, and packet-loss concealment.

use crate::audio::error::AudioError;
use crate::audio::{FRAME_SAMPLES, MAX_OPUS_PACKET, SAMPLE_RATE};

/// How the voice encoder is set up.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OpusEncoderConfig {
    /// Target bit rate (VBR), bits per second.
    pub bitrate_bps: i32,
    /// Discontinuous transmission: packets of ≤ 2 bytes during silence need not be sent.
    pub dtx: bool,
    /// In-band forward error correction. Off: over TCP nothing is lost for it to repair.
    pub fec: bool,
    /// VOIP (speech tuned) or generic audio (recordings).
    pub voip: bool,
}

impl Default for OpusEncoderConfig {
    /// VOIP, 24 kb/s VBR, DTX on, FEC off.
    fn default() -> Self {
        OpusEncoderConfig {
            bitrate_bps: 24_000,
            dtx: true,
            fec: false,
            voip: true,
        }
    }
}

/// A 48 kHz mono Opus encoder for 20 ms frames.
pub struct OpusEncoder {
    inner: opus::Encoder,
    lookahead: usize,
}

impl std::fmt::Debug for OpusEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpusEncoder")
            .field("lookahead", &self.lookahead)
            .finish()
    }
}

impl OpusEncoder {
    /// Creates an encoder with `config`.
    pub fn new(config: OpusEncoderConfig) -> Result<Self, AudioError> {
        let app = if config.voip {
            opus::Application::Voip
        } else {
            opus::Application::Audio
        };
        let e = |err| AudioError::opus("encoder setup", err);
        let mut inner = opus::Encoder::new(SAMPLE_RATE, opus::Channels::Mono, app).map_err(e)?;
        inner
            .set_bitrate(opus::Bitrate::Bits(config.bitrate_bps))
            .map_err(e)?;
        inner.set_vbr(true).map_err(e)?;
        inner.set_dtx(config.dtx).map_err(e)?;
        inner.set_inband_fec(config.fec).map_err(e)?;
        let lookahead = usize::try_from(inner.get_lookahead().map_err(e)?).unwrap_or(0);
        Ok(OpusEncoder { inner, lookahead })
    }

    /// Samples of algorithmic delay: decoded audio lags the input by this much.
    pub fn lookahead(&self) -> usize {
        self.lookahead
    }

    /// Encodes one 20 ms frame into `out` (which should hold [`MAX_OPUS_PACKET`] bytes) and
    /// returns the packet length. A packet of ≤ 2 bytes is a DTX packet: nothing to send.
    pub fn encode(&mut self, frame: &[f32], out: &mut [u8]) -> Result<usize, AudioError> {
        if frame.len() != FRAME_SAMPLES {
            return Err(AudioError::Format(format!(
                "Opus frame must be {FRAME_SAMPLES} samples, got {}",
                frame.len()
            )));
        }
        self.inner
            .encode_float(frame, out)
            .map_err(|err| AudioError::opus("encode", err))
    }

    /// Encodes one frame into a new Vec (convenience for tools and tests).
    pub fn encode_vec(&mut self, frame: &[f32]) -> Result<Vec<u8>, AudioError> {
        let mut out = vec![0u8; MAX_OPUS_PACKET];
        let n = self.encode(frame, &mut out)?;
        out.truncate(n);
        Ok(out)
    }
}

/// A 48 kHz mono Opus decoder for 20 ms frames.
pub struct OpusDecoder {
    inner: opus::Decoder,
}

impl std::fmt::Debug for OpusDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpusDecoder").finish_non_exhaustive()
    }
}

impl OpusDecoder {
    /// A fresh decoder.
    pub fn new() -> Result<Self, AudioError> {
        let inner = opus::Decoder::new(SAMPLE_RATE, opus::Channels::Mono)
            .map_err(|err| AudioError::opus("decoder setup", err))?;
        Ok(OpusDecoder { inner })
    }

    /// Decodes one packet into `out` (exactly one frame, [`FRAME_SAMPLES`]).
    ///
    /// A packet that is corrupt or not 20 ms long is concealed instead, so a bad sender
    /// costs a gap, never a panic or a timeline slip.
    pub fn decode(&mut self, packet: &[u8], out: &mut [f32]) -> Result<(), AudioError> {
        let ok = packet.len() <= MAX_OPUS_PACKET
            && opus::packet::get_nb_samples(packet, SAMPLE_RATE).ok() == Some(FRAME_SAMPLES);
        if !ok {
            return self.conceal(out);
        }
        match self
            .inner
            .decode_float(packet, &mut out[..FRAME_SAMPLES], false)
        {
            Ok(n) if n == FRAME_SAMPLES => Ok(()),
            Ok(_) | Err(_) => self.conceal(out),
        }
    }

    /// Packet-loss concealment: synthesises one frame continuing the last decoded audio.
    /// Opus fades concealment out by itself over a few frames.
    pub fn conceal(&mut self, out: &mut [f32]) -> Result<(), AudioError> {
        let frame = &mut out[..FRAME_SAMPLES];
        match self.inner.decode_float(&[], frame, false) {
            Ok(_) => Ok(()),
            Err(err) => {
                frame.fill(0.0);
                Err(AudioError::opus("conceal", err))
            }
        }
    }

    /// Forgets all history (a speaker's stream restarted).
    pub fn reset(&mut self) -> Result<(), AudioError> {
        self.inner
            .reset_state()
            .map_err(|err| AudioError::opus("decoder reset", err))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn dtx_packets_are_tiny_on_silence() {
        let mut enc = OpusEncoder::new(OpusEncoderConfig::default()).unwrap();
        let silence = [0.0f32; FRAME_SAMPLES];
        let mut small = 0;
        for _ in 0..50 {
            if enc.encode_vec(&silence).unwrap().len() <= 2 {
                small += 1;
            }
        }
        assert!(
            small > 30,
            "DTX should kick in on silence, got {small} tiny packets"
        );
    }

    #[test]
    fn garbage_packets_are_concealed_not_fatal() {
        let mut dec = OpusDecoder::new().unwrap();
        let mut out = [1.0f32; FRAME_SAMPLES];
        dec.decode(&[0xff; 40], &mut out).unwrap();
        dec.decode(&[], &mut out).unwrap();
        dec.decode(&[0u8; 2000], &mut out).unwrap();
        assert!(out.iter().all(|s| s.is_finite()));
    }

    #[test]
    fn wrong_frame_length_is_an_error() {
        let mut enc = OpusEncoder::new(OpusEncoderConfig::default()).unwrap();
        assert!(enc.encode_vec(&[0.0; 100]).is_err());
    }
}
