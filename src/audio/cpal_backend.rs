//! The sound-card backend (cpal, i.e. ALSA on Linux) and device listing.
//!
//! The callbacks here obey the real-time rules: they only move samples between the device
//! buffer and an rtrb ring and bump atomics. No allocation, no locks, no logging, no drops
//! of heap data (the closures own only the ring end and an `Arc` that outlives them).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use cpal::{FromSample, SampleFormat, SizedSample};

use crate::audio::error::DeviceError;
use crate::audio::stream::{
    CaptureStream, DeviceFormat, Keepalive, PlaybackStream, StreamCounters, ring_capacity,
};

/// What to ask a cpal device for. `None` fields take the device's default.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CpalOptions {
    /// Rate and channel count (the engine resamples whatever this is).
    pub format: Option<DeviceFormat>,
    /// Sample format (f32, i16, ...).
    pub sample_format: Option<SampleFormat>,
    /// Device period in frames; smaller is lower latency but more wake-ups.
    pub buffer_frames: Option<u32>,
}

fn backend(context: &'static str) -> impl Fn(cpal::Error) -> DeviceError {
    move |e| DeviceError::Backend {
        context,
        message: e.to_string(),
    }
}

fn find_device(input: bool, name: Option<&str>) -> Result<cpal::Device, DeviceError> {
    let host = cpal::default_host();
    let direction = if input { "input" } else { "output" };
    match name {
        None => {
            let dev = if input {
                host.default_input_device()
            } else {
                host.default_output_device()
            };
            dev.ok_or(DeviceError::NoDevice { direction })
        }
        Some(wanted) => {
            let devices = if input {
                host.input_devices().map_err(backend("listing devices"))?
            } else {
                host.output_devices().map_err(backend("listing devices"))?
            };
            for d in devices {
                if device_name(&d) == wanted || d.id().is_ok_and(|id| id.to_string() == wanted) {
                    return Ok(d);
                }
            }
            Err(DeviceError::NotFound {
                direction,
                name: wanted.to_string(),
            })
        }
    }
}

fn device_name(d: &cpal::Device) -> String {
    d.description()
        .map(|desc| desc.name().to_string())
        .unwrap_or_else(|_| d.to_string())
}

/// Picks a stream config: the requested one if the device offers it, else the default.
fn choose_config(
    device: &cpal::Device,
    input: bool,
    opts: &CpalOptions,
) -> Result<(cpal::StreamConfig, SampleFormat), DeviceError> {
    let direction = if input { "input" } else { "output" };
    let default = if input {
        device.default_input_config()
    } else {
        device.default_output_config()
    }
    .map_err(|_| DeviceError::NoDevice { direction })?;
    let mut chosen = (default.config(), default.sample_format());
    if opts.format.is_some() || opts.sample_format.is_some() {
        let want = opts.format.unwrap_or(DeviceFormat {
            sample_rate: chosen.0.sample_rate,
            channels: chosen.0.channels,
        });
        let want_sf = opts.sample_format.unwrap_or(chosen.1);
        let ranges: Vec<cpal::SupportedStreamConfigRange> = if input {
            device
                .supported_input_configs()
                .map_err(backend("reading device configs"))?
                .collect()
        } else {
            device
                .supported_output_configs()
                .map_err(backend("reading device configs"))?
                .collect()
        };
        let found = ranges.into_iter().find(|r| {
            r.channels() == want.channels
                && r.sample_format() == want_sf
                && (r.min_sample_rate()..=r.max_sample_rate()).contains(&want.sample_rate)
        });
        match found {
            Some(r) => {
                let c = r.with_sample_rate(want.sample_rate);
                chosen = (c.config(), c.sample_format());
            }
            None => {
                return Err(DeviceError::Backend {
                    context: "choosing a format",
                    message: format!(
                        "device does not offer {} Hz, {} channel(s), {want_sf}",
                        want.sample_rate, want.channels
                    ),
                });
            }
        }
    }
    if let Some(frames) = opts.buffer_frames {
        chosen.0.buffer_size = cpal::BufferSize::Fixed(frames);
    }
    Ok(chosen)
}

/// A device and the stream configuration picked for it.
struct Chosen {
    device: cpal::Device,
    config: cpal::StreamConfig,
    sf: SampleFormat,
    format: DeviceFormat,
    description: String,
}

/// Finds the device (by name, or the default) and picks its stream configuration: the part
/// of opening that input and output share.
fn choose(
    input: bool,
    name: Option<&str>,
    opts: Option<CpalOptions>,
) -> Result<Chosen, DeviceError> {
    let opts = opts.unwrap_or_default();
    let device = find_device(input, name)?;
    let (config, sf) = choose_config(&device, input, &opts)?;
    let format = DeviceFormat {
        sample_rate: config.sample_rate,
        channels: config.channels,
    };
    let description = format!(
        "{} ({} Hz, {} ch, {sf})",
        device_name(&device),
        format.sample_rate,
        format.channels
    );
    Ok(Chosen {
        device,
        config,
        sf,
        format,
        description,
    })
}

/// Opens a cpal input (by name, or the default) feeding a ring.
pub fn open_input(
    name: Option<&str>,
    opts: Option<CpalOptions>,
) -> Result<CaptureStream, DeviceError> {
    let Chosen {
        device,
        config,
        sf,
        format,
        description,
    } = choose(true, name, opts)?;
    // Policy when full: the callback drops the newest samples and counts them (it must
    // never wait); 200 ms means the capture worker is badly stuck.
    let (tx, rx) = rtrb::RingBuffer::new(ring_capacity(format));
    let counters = Arc::new(StreamCounters::default());
    let stream = match sf {
        SampleFormat::F32 => build_input::<f32>(&device, &config, tx, counters.clone()),
        SampleFormat::I16 => build_input::<i16>(&device, &config, tx, counters.clone()),
        SampleFormat::I32 => build_input::<i32>(&device, &config, tx, counters.clone()),
        SampleFormat::U16 => build_input::<u16>(&device, &config, tx, counters.clone()),
        SampleFormat::U8 => build_input::<u8>(&device, &config, tx, counters.clone()),
        SampleFormat::F64 => build_input::<f64>(&device, &config, tx, counters.clone()),
        other => return Err(DeviceError::UnsupportedFormat(other.to_string())),
    }?;
    stream.play().map_err(backend("starting input stream"))?;
    Ok(CaptureStream {
        format,
        ring: rx,
        counters,
        description,
        keepalive: Keepalive::Cpal(stream),
    })
}

fn build_input<T>(
    device: &cpal::Device,
    config: &cpal::StreamConfig,
    mut tx: rtrb::Producer<f32>,
    counters: Arc<StreamCounters>,
) -> Result<cpal::Stream, DeviceError>
where
    T: SizedSample,
    f32: FromSample<T>,
{
    let err_counters = counters.clone();
    device
        .build_input_stream::<T, _, _>(
            *config,
            move |data: &[T], _| {
                // Real-time: ring and atomics only (and, once a frame, the worker's
                // unpark: see `Wake`).
                let room = tx.slots().min(data.len());
                if let Ok(chunk) = tx.write_chunk_uninit(room) {
                    chunk.fill_from_iter(data[..room].iter().map(|s| s.to_sample::<f32>()));
                }
                if room < data.len() {
                    counters
                        .overrun_samples
                        .fetch_add((data.len() - room) as u64, Ordering::Relaxed);
                }
                counters.callbacks.fetch_add(1, Ordering::Relaxed);
                let written =
                    counters.samples.fetch_add(room as u64, Ordering::Relaxed) + room as u64;
                counters.wake.written(written);
            },
            move |_err| {
                err_counters.errors.fetch_add(1, Ordering::Relaxed);
            },
            None,
        )
        .map_err(backend("opening input stream"))
}

/// Opens a cpal output (by name, or the default) fed from a ring.
pub fn open_output(
    name: Option<&str>,
    opts: Option<CpalOptions>,
) -> Result<PlaybackStream, DeviceError> {
    let Chosen {
        device,
        config,
        sf,
        format,
        description,
    } = choose(false, name, opts)?;
    // Policy when full: the playout worker writes only what fits and keeps the ring at a
    // small target fill, so a full ring only means the device stopped pulling.
    let (tx, rx) = rtrb::RingBuffer::new(ring_capacity(format));
    let counters = Arc::new(StreamCounters::default());
    let stream = match sf {
        SampleFormat::F32 => build_output::<f32>(&device, &config, rx, counters.clone()),
        SampleFormat::I16 => build_output::<i16>(&device, &config, rx, counters.clone()),
        SampleFormat::I32 => build_output::<i32>(&device, &config, rx, counters.clone()),
        SampleFormat::U16 => build_output::<u16>(&device, &config, rx, counters.clone()),
        SampleFormat::U8 => build_output::<u8>(&device, &config, rx, counters.clone()),
        SampleFormat::F64 => build_output::<f64>(&device, &config, rx, counters.clone()),
        other => return Err(DeviceError::UnsupportedFormat(other.to_string())),
    }?;
    stream.play().map_err(backend("starting output stream"))?;
    Ok(PlaybackStream {
        format,
        ring: tx,
        counters,
        description,
        keepalive: Keepalive::Cpal(stream),
    })
}

fn build_output<T>(
    device: &cpal::Device,
    config: &cpal::StreamConfig,
    mut rx: rtrb::Consumer<f32>,
    counters: Arc<StreamCounters>,
) -> Result<cpal::Stream, DeviceError>
where
    T: SizedSample + FromSample<f32>,
{
    let err_counters = counters.clone();
    device
        .build_output_stream::<T, _, _>(
            *config,
            move |data: &mut [T], _| {
                // Real-time: ring and atomics only (and, once a frame, the playout
                // worker's unpark: see `Wake`); silence on underrun.
                let have = rx.slots().min(data.len());
                if let Ok(chunk) = rx.read_chunk(have) {
                    let (a, b) = chunk.as_slices();
                    for (d, s) in data.iter_mut().zip(a.iter().chain(b.iter())) {
                        *d = T::from_sample(*s);
                    }
                    chunk.commit_all();
                }
                if have < data.len() {
                    for d in &mut data[have..] {
                        *d = T::EQUILIBRIUM;
                    }
                    counters.underruns.fetch_add(1, Ordering::Relaxed);
                }
                counters.callbacks.fetch_add(1, Ordering::Relaxed);
                let played =
                    counters.samples.fetch_add(have as u64, Ordering::Relaxed) + have as u64;
                counters.wake.written(played);
            },
            move |_err| {
                err_counters.errors.fetch_add(1, Ordering::Relaxed);
            },
            None,
        )
        .map_err(backend("opening output stream"))
}

/// One device as `hallway devices` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// Name to pass back as `cpal:NAME`.
    pub name: String,
    /// The system default for its direction.
    pub is_default: bool,
    /// Default format, when the device would tell.
    pub default_format: Option<DeviceFormat>,
    /// Default sample format, e.g. "f32".
    pub sample_format: Option<String>,
}

/// Every input and output device the audio host knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceList {
    /// The cpal host (ALSA on Linux).
    pub host: String,
    /// Capture devices.
    pub inputs: Vec<DeviceInfo>,
    /// Playback devices.
    pub outputs: Vec<DeviceInfo>,
    /// Set when listing failed (no sound system): the lists are then empty.
    pub problem: Option<String>,
}

/// Lists devices. Never fails: with no sound card the lists are empty and `problem` says
/// why, so `hallway devices` can print that and exit normally.
pub fn list_devices() -> DeviceList {
    let host = cpal::default_host();
    let mut list = DeviceList {
        host: host.id().name().to_string(),
        inputs: Vec::new(),
        outputs: Vec::new(),
        problem: None,
    };
    let default_in = host.default_input_device().map(|d| device_name(&d));
    let default_out = host.default_output_device().map(|d| device_name(&d));
    match host.input_devices() {
        Ok(devs) => {
            for d in devs {
                let name = device_name(&d);
                let cfg = d.default_input_config().ok();
                list.inputs.push(DeviceInfo {
                    is_default: default_in.as_deref() == Some(name.as_str()),
                    name,
                    default_format: cfg.as_ref().map(|c| DeviceFormat {
                        sample_rate: c.sample_rate(),
                        channels: c.channels(),
                    }),
                    sample_format: cfg.map(|c| c.sample_format().to_string()),
                });
            }
        }
        Err(e) => list.problem = Some(e.to_string()),
    }
    match host.output_devices() {
        Ok(devs) => {
            for d in devs {
                let name = device_name(&d);
                let cfg = d.default_output_config().ok();
                list.outputs.push(DeviceInfo {
                    is_default: default_out.as_deref() == Some(name.as_str()),
                    name,
                    default_format: cfg.as_ref().map(|c| DeviceFormat {
                        sample_rate: c.sample_rate(),
                        channels: c.channels(),
                    }),
                    sample_format: cfg.map(|c| c.sample_format().to_string()),
                });
            }
        }
        Err(e) => list.problem = Some(e.to_string()),
    }
    if list.problem.is_none() && list.inputs.is_empty() && list.outputs.is_empty() {
        list.problem = Some("no audio devices found (no sound card?)".into());
    }
    list
}

impl fmt::Display for DeviceInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mark = if self.is_default { "*" } else { " " };
        write!(f, "{mark} {}", self.name)?;
        if let Some(fmt) = self.default_format {
            write!(f, "  ({} Hz, {} ch", fmt.sample_rate, fmt.channels)?;
            if let Some(sf) = &self.sample_format {
                write!(f, ", {sf}")?;
            }
            write!(f, ")")?;
        }
        Ok(())
    }
}

impl fmt::Display for DeviceList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "Audio host: {}", self.host)?;
        if let Some(problem) = &self.problem {
            writeln!(
                f,
                "Note: {problem}; file, tone and null devices still work."
            )?;
        }
        for (title, devs) in [
            ("Input devices", &self.inputs),
            ("Output devices", &self.outputs),
        ] {
            writeln!(f, "{title} (* = default):")?;
            if devs.is_empty() {
                writeln!(f, "  (none)")?;
            }
            for d in devs.iter() {
                writeln!(f, "  {d}")?;
            }
        }
        writeln!(
            f,
            "Other devices: null, tone[:HZ], wav:PATH, ogg:PATH (use cpal:NAME for a device above)"
        )
    }
}
