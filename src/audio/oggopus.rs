//! Ogg Opus files (RFC 7845): a sink that records, a source that plays back.
//!
//! The sink writes a valid stream (OpusHead with the encoder's pre-skip, OpusTags, granule
//! positions on every page, end-of-stream flag with the exact end trimming) so `sox`,
//! `opusinfo` and browsers read it. The source reads mono or stereo, single-stream files
//! (mapping family 0), honours pre-skip and end trimming, and decodes at 48 kHz.

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};

use ogg::{PacketReader, PacketWriteEndInfo, PacketWriter};

use crate::audio::codec::{OpusEncoder, OpusEncoderConfig};
use crate::audio::error::AudioError;
use crate::audio::files::{AudioSink, AudioSource};
use crate::audio::resample::ToEngine;
use crate::audio::stream::DeviceFormat;
use crate::audio::{FRAME_SAMPLES, SAMPLE_RATE};

/// Serial number of the single logical stream we write.
const SERIAL: u32 = 0x4841_4c4c; // "HALL"
/// Close a page about once a second so players can seek and stream.
const PACKETS_PER_PAGE: u64 = 50;

/// Records audio of any format to an Ogg Opus file (mono, 48 kb/s, full band).
pub struct OggOpusSink {
    path: PathBuf,
    format: DeviceFormat,
    writer: Option<PacketWriter<'static, BufWriter<File>>>,
    to_engine: ToEngine,
    encoder: OpusEncoder,
    pre_skip: u64,
    pending_pcm: Vec<f32>,
    /// Encoded but not yet written: we only know a packet is the last one at `finish`.
    held_packet: Option<Vec<u8>>,
    packets_written: u64,
    input_samples_48k: u64,
    encoded_samples_48k: u64,
}

impl OggOpusSink {
    /// Creates `path` and writes the two header packets.
    pub fn create(path: &Path, format: DeviceFormat) -> Result<Self, AudioError> {
        format.validate()?;
        let err = |message: String| AudioError::OggOpus {
            path: path.to_path_buf(),
            message,
        };
        let file = File::create(path)
            .map_err(|e| AudioError::io(format!("creating {}", path.display()), e))?;
        let mut writer = PacketWriter::new(BufWriter::new(file));
        // Recordings are for listening later: generic audio mode, higher rate, no DTX so the
        // timeline has no holes.
        let encoder = OpusEncoder::new(OpusEncoderConfig {
            bitrate_bps: 48_000,
            dtx: false,
            fec: false,
            voip: false,
        })?;
        let pre_skip = encoder.lookahead() as u64;

        let mut head = Vec::with_capacity(19);
        head.extend_from_slice(b"OpusHead");
        head.push(1); // version
        head.push(1); // channels
        head.extend_from_slice(&u16::try_from(pre_skip).unwrap_or(312).to_le_bytes());
        head.extend_from_slice(&format.sample_rate.to_le_bytes());
        head.extend_from_slice(&0i16.to_le_bytes()); // output gain
        head.push(0); // mapping family 0: mono/stereo, one stream
        writer
            .write_packet(head, SERIAL, PacketWriteEndInfo::EndPage, 0)
            .map_err(|e| err(e.to_string()))?;

        let vendor = format!("hallway {}", env!("CARGO_PKG_VERSION"));
        let mut tags = Vec::new();
        tags.extend_from_slice(b"OpusTags");
        tags.extend_from_slice(&u32::try_from(vendor.len()).unwrap_or(0).to_le_bytes());
        tags.extend_from_slice(vendor.as_bytes());
        tags.extend_from_slice(&0u32.to_le_bytes()); // no user comments
        writer
            .write_packet(tags, SERIAL, PacketWriteEndInfo::EndPage, 0)
            .map_err(|e| err(e.to_string()))?;

        Ok(OggOpusSink {
            path: path.to_path_buf(),
            format,
            writer: Some(writer),
            to_engine: ToEngine::new(format)?,
            encoder,
            pre_skip,
            pending_pcm: Vec::with_capacity(FRAME_SAMPLES * 4),
            held_packet: None,
            packets_written: 0,
            input_samples_48k: 0,
            encoded_samples_48k: 0,
        })
    }

    fn write_held(&mut self, last: bool) -> Result<(), AudioError> {
        let Some(packet) = self.held_packet.take() else {
            return Ok(());
        };
        let Some(writer) = self.writer.as_mut() else {
            return Ok(());
        };
        self.packets_written += 1;
        let decoded_end = self.packets_written * FRAME_SAMPLES as u64;
        let (info, granule) = if last {
            // The final granule marks where real audio ends: decoders trim the rest.
            let end = (self.pre_skip + self.input_samples_48k).min(decoded_end);
            (PacketWriteEndInfo::EndStream, end)
        } else if self.packets_written.is_multiple_of(PACKETS_PER_PAGE) {
            (PacketWriteEndInfo::EndPage, decoded_end)
        } else {
            (PacketWriteEndInfo::NormalPacket, decoded_end)
        };
        writer
            .write_packet(packet, SERIAL, info, granule)
            .map_err(|e| AudioError::OggOpus {
                path: self.path.clone(),
                message: e.to_string(),
            })
    }

    fn encode_pending(&mut self) -> Result<(), AudioError> {
        while self.pending_pcm.len() >= FRAME_SAMPLES {
            let packet = self
                .encoder
                .encode_vec(&self.pending_pcm[..FRAME_SAMPLES])?;
            self.pending_pcm.drain(..FRAME_SAMPLES);
            self.encoded_samples_48k += FRAME_SAMPLES as u64;
            self.write_held(false)?;
            self.held_packet = Some(packet);
        }
        Ok(())
    }
}

impl AudioSink for OggOpusSink {
    fn format(&self) -> DeviceFormat {
        self.format
    }

    fn write(&mut self, samples: &[f32]) -> Result<(), AudioError> {
        let before = self.pending_pcm.len();
        self.to_engine.push(samples, &mut self.pending_pcm)?;
        self.input_samples_48k += (self.pending_pcm.len() - before) as u64;
        self.encode_pending()
    }

    fn finish(&mut self) -> Result<(), AudioError> {
        if self.writer.is_none() {
            return Ok(());
        }
        // Pad with silence until the encoder has been fed past its lookahead, so the tail
        // of the real audio is inside some packet.
        let needed = self.pre_skip + self.input_samples_48k;
        while self.encoded_samples_48k < needed || !self.pending_pcm.is_empty() {
            let pad = FRAME_SAMPLES - self.pending_pcm.len() % FRAME_SAMPLES;
            self.pending_pcm.extend(std::iter::repeat_n(0.0, pad));
            self.encode_pending()?;
        }
        self.write_held(true)?;
        if let Some(writer) = self.writer.take() {
            let mut inner = writer.into_inner();
            std::io::Write::flush(&mut inner)
                .map_err(|e| AudioError::io(format!("writing {}", self.path.display()), e))?;
        }
        Ok(())
    }
}

impl Drop for OggOpusSink {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

/// Plays an Ogg Opus file: 48 kHz, the file's channel count (1 or 2).
pub struct OggOpusSource {
    path: PathBuf,
    reader: PacketReader<BufReader<File>>,
    decoder: opus::Decoder,
    channels: u16,
    skip_left: usize,
    /// Decoded interleaved samples of the current packet.
    decoded: Vec<f32>,
    decoded_pos: usize,
    produced_per_channel: u64,
    pre_skip: u64,
    end_granule: Option<u64>,
    done: bool,
}

impl OggOpusSource {
    /// Opens `path` and reads its headers.
    pub fn open(path: &Path) -> Result<Self, AudioError> {
        let bad = |message: &str| AudioError::OggOpus {
            path: path.to_path_buf(),
            message: format!("{message}; is it an Ogg Opus file (e.g. from opusenc or Hallway)?"),
        };
        let file = File::open(path)
            .map_err(|e| AudioError::io(format!("opening {}", path.display()), e))?;
        let mut reader = PacketReader::new(BufReader::new(file));
        let head = reader
            .read_packet()
            .map_err(|e| bad(&e.to_string()))?
            .ok_or_else(|| bad("empty file"))?;
        let h = &head.data;
        if h.len() < 19 || &h[..8] != b"OpusHead" {
            return Err(bad("no OpusHead header"));
        }
        if h[8] >> 4 != 0 {
            return Err(bad("unsupported OpusHead version"));
        }
        let channels = h[9];
        let mapping = h[18];
        if mapping != 0 || !(1..=2).contains(&channels) {
            return Err(bad("only mono or stereo single-stream files are supported"));
        }
        let pre_skip = u64::from(u16::from_le_bytes([h[10], h[11]]));
        let tags = reader
            .read_packet()
            .map_err(|e| bad(&e.to_string()))?
            .ok_or_else(|| bad("missing OpusTags header"))?;
        if tags.data.len() < 8 || &tags.data[..8] != b"OpusTags" {
            return Err(bad("no OpusTags header"));
        }
        let ch = if channels == 1 {
            opus::Channels::Mono
        } else {
            opus::Channels::Stereo
        };
        let decoder = opus::Decoder::new(SAMPLE_RATE, ch)
            .map_err(|e| AudioError::opus("decoder setup", e))?;
        Ok(OggOpusSource {
            path: path.to_path_buf(),
            reader,
            decoder,
            channels: u16::from(channels),
            skip_left: usize::try_from(pre_skip).unwrap_or(0),
            decoded: Vec::with_capacity(5760 * usize::from(channels)),
            decoded_pos: 0,
            produced_per_channel: 0,
            pre_skip,
            end_granule: None,
            done: false,
        })
    }

    /// Decodes the next packet into `self.decoded`; false at the end.
    fn refill(&mut self) -> Result<bool, AudioError> {
        let ch = usize::from(self.channels);
        loop {
            if self.done {
                return Ok(false);
            }
            let packet = match self.reader.read_packet() {
                Ok(Some(p)) => p,
                Ok(None) => {
                    self.done = true;
                    return Ok(false);
                }
                Err(e) => {
                    return Err(AudioError::OggOpus {
                        path: self.path.clone(),
                        message: format!("corrupt stream: {e}"),
                    });
                }
            };
            if packet.last_in_stream() {
                self.end_granule = Some(packet.absgp_page());
                self.done = true;
            }
            self.decoded.resize(5760 * ch, 0.0);
            let n = match self
                .decoder
                .decode_float(&packet.data, &mut self.decoded, false)
            {
                Ok(n) => n,
                // A corrupt packet in the middle: conceal it rather than stop the file.
                Err(_) => self
                    .decoder
                    .decode_float(&[], &mut self.decoded[..960 * ch], false)
                    .unwrap_or(0),
            };
            self.decoded.truncate(n * ch);
            let skip = self.skip_left.min(n);
            self.skip_left -= skip;
            self.decoded_pos = skip * ch;
            if let Some(end) = self.end_granule {
                let allowed = end.saturating_sub(self.pre_skip);
                let remaining = allowed.saturating_sub(self.produced_per_channel);
                let available = (self.decoded.len() - self.decoded_pos) / ch;
                let keep = usize::try_from(remaining)
                    .unwrap_or(usize::MAX)
                    .min(available);
                self.decoded.truncate(self.decoded_pos + keep * ch);
            }
            if self.decoded_pos < self.decoded.len() {
                return Ok(true);
            }
        }
    }
}

impl AudioSource for OggOpusSource {
    fn format(&self) -> DeviceFormat {
        DeviceFormat {
            sample_rate: SAMPLE_RATE,
            channels: self.channels,
        }
    }

    fn read(&mut self, out: &mut [f32]) -> Result<usize, AudioError> {
        let ch = usize::from(self.channels);
        let whole = out.len() - out.len() % ch;
        let mut n = 0;
        while n < whole {
            if self.decoded_pos >= self.decoded.len() && !self.refill()? {
                break;
            }
            let take = (whole - n).min(self.decoded.len() - self.decoded_pos);
            out[n..n + take]
                .copy_from_slice(&self.decoded[self.decoded_pos..self.decoded_pos + take]);
            self.decoded_pos += take;
            n += take;
            self.produced_per_channel += (take / ch) as u64;
        }
        Ok(n)
    }
}
