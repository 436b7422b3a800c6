//! Pitch-preserving time stretching of one speaker's decoded audio, so the playout can
//! catch up after a network stall (play up to 35 % faster) or stretch a thin buffer
//! (down to 25 % slower) without dropping speech or shifting its pitch. This module owns
//! the stretcher's input ring and splice state; it knows nothing of packets or clocks.
//!
//! # Model: WSOLA (waveform-similarity overlap-add)
//!
//! Output is made in steps of `HOP` samples (10 ms). Each step is one 20 ms window taken
//! from the input and overlap-added, half over half, onto the previous one; because the
//! windows are raised-cosine and overlap by 50 %, that is exactly a crossfade of
//! `OVERLAP` samples from the *natural continuation* of the previous window (the input
//! right after where it was read) to the start of the new window. To play at `rate`, each
//! new window should start `rate × HOP` input samples after the previous one, i.e. jump
//! `(rate − 1) × HOP` samples away from the natural continuation. A blind jump would cut
//! a pitch period in two and fuse two mismatched waveforms (a rough, warbling sound), so
//! the start is searched within ±`SEARCH` samples of that ideal for the candidate most
//! similar (normalized cross-correlation over `OVERLAP` samples, mildly favouring the
//! ideal) to the natural continuation. Periods then line up across the crossfade: whole pitch periods are
//! skipped or repeated, and the pitch is kept. The deviation from the ideal is carried
//! over (`lag`) so the rate is right on average, within ±`SEARCH` samples.
//!
//! # Invariant: the read head, and the exact bypass
//!
//! The state between samples is one read head into the input (`read`) plus, while a
//! crossfade is in progress, the fade-out position (`fade`). Whenever no crossfade is in
//! progress, the last output sample was `input[read − 1]` or a crossfade that ended on
//! it, so `input[read]` is its seamless continuation. At rate 1.0 the stretcher copies
//! `input[read..]` and advances `read`: output is input, sample for sample. A crossfade
//! already begun is always finished first (it never waits for input: both its sources are
//! checked to be buffered when it starts), and it ends by handing over to `input[read]`,
//! so going 1.25 → 1.0 neither clicks nor loses nor repeats a sample. Every output sample
//! advances `read` by one (copied, or as the fade-in side of a crossfade); only a splice
//! moves it further (skipping input) or back (repeating it), so input consumed minus
//! output is exactly the sum of the splices' jumps, and [`Stretcher::buffered`] is
//! exactly the input not yet played.
//! Non-finite input samples are stored as 0 (they would poison the similarity search).
//!
//! # Cost
//!
//! The search runs coarse to fine (see `Stretcher::most_similar`): about 50 k
//! multiply-adds per 10 ms step instead of 350 k for brute force. Measured in a release
//! build (x86-64 baseline SSE2, no target-cpu flags, on a shared 2-core machine): 20–55 µs
//! per 960-sample pull at rate 1.25 depending on load, i.e. at most 0.3 % of one core per
//! stretching speaker (brute force measured 110 µs). Rate 1.0 is a memcpy. `push` and
//! `pull` never allocate: all storage is made in `new`.

/// Slowest rate accepted: slower than 0.75 speech starts to sound drawn out.
pub const MIN_RATE: f32 = 0.75;
/// Fastest rate accepted for live audio: 1.35 leaves margin over the playout's ~1.25
/// catch-up rate.
pub const MAX_RATE: f32 = 1.35;
/// Fastest rate a replay plays at ([`Stretcher::with_max_rate`]). At 2× each 10 ms step
/// skips one hop of input; the search (±7.5 ms around it) still spans a pitch period of
/// any voice above 67 Hz, so periods line up as they do at catch-up rates (tested below
/// for pitch and length, as the catch-up rates are).
pub const REPLAY_MAX_RATE: f32 = 2.0;
/// Most unplayed input samples kept (1 s at 48 kHz); pushing more drops the oldest.
pub const CAPACITY: usize = 48_000;

/// Crossfade length and similarity window: 10 ms spans at least one period of any voice
/// above 100 Hz, and is long enough for a smooth fade yet short enough not to smear.
const OVERLAP: usize = 480;
/// Output samples per splice decision. Equal to `OVERLAP`: classic 50 %-overlap WSOLA
/// with 20 ms windows, so every output sample of a stretch sits in a smooth crossfade.
const HOP: usize = 480;
/// Search half-range (±7.5 ms): must cover half the longest pitch period (a 67 Hz voice
/// has a 15 ms period) so an aligned candidate always exists near the ideal position.
const SEARCH: usize = 360;
/// Decimation of the coarse search pass, in both start position and samples compared.
const COARSE: usize = 4;
// The similarity sums work in blocks of 4 × COARSE samples and ignore any remainder.
const _: () = assert!(OVERLAP.is_multiple_of(4 * COARSE));
/// Played input kept behind the read head: slowing down searches back up to
/// `SEARCH` (plus the carried lag, at most `SEARCH`, plus the 25 % hop) before it.
const HISTORY: usize = 1024;
/// Ring storage: unplayed input, history, and slack for a speed-up jump in progress.
const STORAGE: usize = CAPACITY + 2 * HISTORY;
/// How much similarity (normalized correlation, in −1..=1) a candidate at the far edge
/// of the search range gives up: breaks ties between equally good periods in favour of
/// the one that keeps the rate most accurate, without overriding a real difference.
const DISTANCE_PENALTY: f32 = 0.02;
/// Rates this close to 1 are treated as 1: 0.1 % is inaudible and not worth leaving the
/// exact path for.
const RATE_SNAP: f32 = 0.001;

/// Frames below this RMS (−45 dBFS) count as quiet.
const QUIET_RMS: f32 = 0.005_6;
/// Frames whose zero-crossing rate exceeds this (dominant energy above ~2.4 kHz at
/// 48 kHz) count as unvoiced; voiced speech at 48 kHz crosses far less often.
const UNVOICED_ZCR: f32 = 0.1;

/// Stretches or compresses time by a rate chosen per call, keeping pitch.
pub struct Stretcher {
    /// Input storage; `buf[..len]` holds history then unplayed input. Never resized.
    buf: Vec<f32>,
    /// Samples stored in `buf`.
    len: usize,
    /// Read head: the next input sample to play (the fade-in side during a crossfade).
    read: usize,
    /// Crossfade in progress, if any.
    fade: Option<Fade>,
    /// Samples still to copy before the next splice decision (only while stretching).
    copy_left: usize,
    /// Input samples the stretch still owes relative to the ideal rate (+ = should have
    /// skipped more); kept within ±`SEARCH` and forgotten at rate 1.0.
    lag: f32,
    /// Input samples dropped because the ring was full.
    dropped: u64,
    /// Fade-in weights, raised cosine; fade-out is `1 − w`.
    fade_in: Vec<f32>,
    /// The fastest rate `pull` plays at: [`MAX_RATE`], or up to [`REPLAY_MAX_RATE`].
    max_rate: f32,
}

/// A crossfade from the natural continuation at `from` to the read head.
#[derive(Clone, Copy, Debug)]
struct Fade {
    /// Fade-out position: the continuation of what was playing before the jump.
    from: usize,
    /// Crossfade samples already output.
    done: usize,
}

impl Default for Stretcher {
    fn default() -> Self {
        Self::new()
    }
}

impl Stretcher {
    /// Creates an empty stretcher with all its storage allocated.
    pub fn new() -> Self {
        Self::with_max_rate(MAX_RATE)
    }

    /// A stretcher that plays up to `max_rate` (clamped to [`MAX_RATE`]..=
    /// [`REPLAY_MAX_RATE`]): a replay played faster on purpose.
    pub fn with_max_rate(max_rate: f32) -> Self {
        let max_rate = if max_rate.is_finite() {
            max_rate.clamp(MAX_RATE, REPLAY_MAX_RATE)
        } else {
            MAX_RATE
        };
        let fade_in = (0..OVERLAP)
            .map(|k| {
                let phase = std::f32::consts::PI * (k as f32 + 0.5) / OVERLAP as f32;
                0.5 - 0.5 * phase.cos()
            })
            .collect();
        Self {
            buf: vec![0.0; STORAGE],
            len: 0,
            read: 0,
            fade: None,
            copy_left: 0,
            lag: 0.0,
            dropped: 0,
            fade_in,
            max_rate,
        }
    }

    /// Appends decoded input; past [`CAPACITY`] unplayed samples the oldest are dropped.
    pub fn push(&mut self, input: &[f32]) {
        // Only the newest CAPACITY samples of a huge slice can ever be kept.
        let input = match input.len().checked_sub(CAPACITY) {
            Some(skip) if skip > 0 => {
                self.dropped += skip as u64;
                &input[skip..]
            }
            _ => input,
        };
        let over = (self.buffered() + input.len()).saturating_sub(CAPACITY);
        if over > 0 {
            // Dropping unplayed input is already a glitch; abandon any splice with it.
            self.read += over;
            self.dropped += over as u64;
            self.fade = None;
            self.copy_left = 0;
            self.lag = 0.0;
        }
        if self.len + input.len() > self.buf.len() {
            self.compact();
        }
        if self.buf.len() - self.len < input.len() {
            // Unreachable by the sizing of STORAGE; kept so no input can cause a panic.
            self.dropped += self.buffered() as u64;
            self.reset_state();
        }
        for (slot, &x) in self.buf[self.len..self.len + input.len()]
            .iter_mut()
            .zip(input)
        {
            *slot = if x.is_finite() { x } else { 0.0 };
        }
        self.len += input.len();
    }

    /// Fills `out` playing input at `rate` (1.25 = consume 1.25× the output; clamped to
    /// [`MIN_RATE`]..=[`MAX_RATE`], or the replay's maximum; within 0.1 % of 1.0, or non-finite, plays input exactly
    /// as is). Returns samples filled, fewer only when input runs out. The last < 10 ms of
    /// buffered input is too short to compare windows and plays unstretched.
    pub fn pull(&mut self, out: &mut [f32], rate: f32) -> usize {
        let rate = clamp_rate(rate, self.max_rate);
        let mut n = 0;
        while n < out.len() {
            let want = out.len() - n;
            if let Some(fade) = self.fade {
                n += self.crossfade(fade, &mut out[n..]);
                continue;
            }
            let avail = self.len - self.read;
            if avail == 0 {
                break;
            }
            if rate == 1.0 {
                // Bypass: the read head is the seamless continuation (see module docs).
                self.lag = 0.0;
                self.copy_left = 0;
                n += self.copy(&mut out[n..], want.min(avail));
            } else if self.copy_left > 0 {
                let k = want.min(avail).min(self.copy_left);
                self.copy_left -= k;
                n += self.copy(&mut out[n..], k);
            } else if avail < OVERLAP {
                // Too little lookahead to compare a window: play what there is as is.
                n += self.copy(&mut out[n..], want.min(avail));
            } else {
                self.splice(rate);
            }
        }
        n
    }

    /// Input samples pushed and not yet played (or skipped).
    pub fn buffered(&self) -> usize {
        self.len - self.read
    }

    /// Input samples dropped because more than [`CAPACITY`] were waiting.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Forgets all input, state and the drop count (the speaker left).
    pub fn reset(&mut self) {
        self.reset_state();
        self.dropped = 0;
    }

    /// Forgets all input and splice state.
    fn reset_state(&mut self) {
        self.len = 0;
        self.read = 0;
        self.fade = None;
        self.copy_left = 0;
        self.lag = 0.0;
    }

    /// Copies `k` samples from the read head into `out`.
    fn copy(&mut self, out: &mut [f32], k: usize) -> usize {
        out[..k].copy_from_slice(&self.buf[self.read..self.read + k]);
        self.read += k;
        k
    }

    /// Outputs as much of the crossfade as fits in `out`.
    fn crossfade(&mut self, fade: Fade, out: &mut [f32]) -> usize {
        let k = out.len().min(OVERLAP - fade.done);
        let old = &self.buf[fade.from..fade.from + k];
        let new = &self.buf[self.read..self.read + k];
        let w = &self.fade_in[fade.done..fade.done + k];
        for (((o, &a), &b), &w) in out.iter_mut().zip(old).zip(new).zip(w) {
            // a·(1−w) + b·w, written so that equal sources pass through exactly.
            *o = a + (b - a) * w;
        }
        self.read += k;
        let done = fade.done + k;
        self.fade = (done < OVERLAP).then_some(Fade {
            from: fade.from + k,
            done,
        });
        k
    }

    /// Decides the next step: where the next window starts, and starts its crossfade.
    /// Needs `OVERLAP` samples buffered at the read head.
    fn splice(&mut self, rate: f32) {
        let c = self.read;
        let wanted = (rate - 1.0) * HOP as f32 + self.lag;
        let ideal = c as i64 + wanted.round() as i64;
        // Candidates must have a whole window buffered, and history to stand on.
        let lo = (ideal - SEARCH as i64).max(0);
        let hi = (ideal + SEARCH as i64).min((self.len - OVERLAP) as i64);
        let start = if lo > hi {
            c
        } else {
            self.most_similar(c, lo as usize, hi as usize, ideal)
        };
        let jump = start as f32 - c as f32;
        self.lag = (wanted - jump).clamp(-(SEARCH as f32), SEARCH as f32);
        if start == c {
            // The natural continuation itself won: nothing to splice, copy exactly.
            self.copy_left = HOP;
        } else {
            self.fade = Some(Fade { from: c, done: 0 });
            self.read = start;
            self.copy_left = HOP - OVERLAP;
        }
    }

    /// The window start in `lo..=hi` whose first `OVERLAP` samples best match those at
    /// `c`, found coarse to fine: every `COARSE`-th start compared on every `COARSE`-th
    /// sample (1/16 of the work; that still resolves content up to 6 kHz, which is where
    /// voiced speech has its energy, so it finds the right pitch period), then the
    /// starts around the coarse winner at full resolution, to align to the sample.
    fn most_similar(&self, c: usize, lo: usize, hi: usize, ideal: i64) -> usize {
        let coarse = self.best_of::<COARSE>((lo..=hi).step_by(COARSE), c, ideal);
        let fine_lo = coarse.saturating_sub(COARSE - 1).max(lo);
        let fine_hi = (coarse + COARSE - 1).min(hi);
        self.best_of::<1>(fine_lo..=fine_hi, c, ideal)
    }

    /// Of `starts`, the one most similar to the window at `c` (normalized cross-
    /// correlation over every `STRIDE`-th sample), slightly favouring starts near `ideal`.
    fn best_of<const STRIDE: usize>(
        &self,
        starts: impl Iterator<Item = usize>,
        c: usize,
        ideal: i64,
    ) -> usize {
        let target = &self.buf[c..c + OVERLAP];
        let (_, target_energy) = similarity_terms::<STRIDE>(target, target);
        let mut best = None;
        let mut best_score = f32::NEG_INFINITY;
        for p in starts {
            let (corr, energy) = similarity_terms::<STRIDE>(target, &self.buf[p..p + OVERLAP]);
            let denom = (energy * target_energy).sqrt();
            let similarity = if denom > 1e-20 { corr / denom } else { 0.0 };
            let distance = (p as i64 - ideal).unsigned_abs() as f32 / SEARCH as f32;
            let score = similarity - DISTANCE_PENALTY * distance;
            // NaN scores (from absurdly large input) never win.
            if score > best_score || best.is_none() {
                best_score = score;
                best = Some(p);
            }
        }
        best.unwrap_or(c)
    }

    /// Moves the still-needed tail of `buf` (history included) to the front.
    fn compact(&mut self) {
        let oldest = self.fade.map_or(self.read, |f| f.from.min(self.read));
        let keep = oldest.saturating_sub(HISTORY);
        if keep == 0 {
            return;
        }
        self.buf.copy_within(keep..self.len, 0);
        self.len -= keep;
        self.read -= keep;
        if let Some(f) = &mut self.fade {
            f.from -= keep;
        }
    }
}

/// Clamps a requested rate to the supported range; non-finite means "as is".
fn clamp_rate(rate: f32, max_rate: f32) -> f32 {
    if !rate.is_finite() || (rate - 1.0).abs() < RATE_SNAP {
        1.0
    } else {
        rate.clamp(MIN_RATE, max_rate)
    }
}

/// Cross-correlation of `a` with `b`, and the energy of `b`, over every `STRIDE`-th
/// sample (the slices' lengths are multiples of `4 × STRIDE`). Four partial sums with
/// compile-time offsets, so the loop pipelines, and vectorizes at stride 1.
fn similarity_terms<const STRIDE: usize>(a: &[f32], b: &[f32]) -> (f32, f32) {
    let mut corr = [0.0f32; 4];
    let mut energy = [0.0f32; 4];
    for (x, y) in a.chunks_exact(4 * STRIDE).zip(b.chunks_exact(4 * STRIDE)) {
        for (lane, (c, e)) in corr.iter_mut().zip(&mut energy).enumerate() {
            let (x, y) = (x[lane * STRIDE], y[lane * STRIDE]);
            *c += x * y;
            *e += y * y;
        }
    }
    (corr.iter().sum(), energy.iter().sum())
}

/// Whether a frame is a good place to stretch: quiet, or unvoiced (noise-like, with a
/// high zero-crossing rate), where a splice cannot disturb a pitch period.
pub fn stretchable(frame: &[f32]) -> bool {
    let finite = || frame.iter().copied().filter(|x| x.is_finite());
    let count = finite().count();
    if count < 2 {
        return true;
    }
    let mean = finite().map(f64::from).sum::<f64>() / count as f64;
    let var = finite().map(|x| (f64::from(x) - mean).powi(2)).sum::<f64>() / count as f64;
    if var.sqrt() < f64::from(QUIET_RMS) {
        return true;
    }
    // Crossings of the mean, so a DC offset doesn't hide them.
    let mut crossings = 0usize;
    let mut prev = None;
    for x in finite() {
        let above = f64::from(x) >= mean;
        if prev.is_some_and(|p| p != above) {
            crossings += 1;
        }
        prev = Some(above);
    }
    crossings as f32 / (count - 1) as f32 > UNVOICED_ZCR
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::f32::consts::TAU;

    const FS: f32 = 48_000.0;

    fn dot(a: &[f32], b: &[f32]) -> f32 {
        // Test signals aren't multiples of 4 long; pad the sum by hand.
        let n = a.len().min(b.len());
        let m = n - n % 4;
        let tail: f32 = a[m..n].iter().zip(&b[m..n]).map(|(x, y)| x * y).sum();
        similarity_terms::<1>(&b[..m], &a[..m]).0 + tail
    }
    const FRAME: usize = 960;

    fn tone(freq: f32, secs: f32, amp: f32) -> Vec<f32> {
        let n = (secs * FS) as usize;
        (0..n)
            .map(|i| amp * (TAU * freq * i as f32 / FS).sin())
            .collect()
    }

    /// A synthetic vowel: gliding f0 (110–150 Hz), formant-shaped harmonics, and a
    /// syllable-rate envelope that goes down to silence.
    fn vowel(secs: f32) -> Vec<f32> {
        let n = (secs * FS) as usize;
        let formants = [(700.0f32, 130.0f32), (1220.0, 170.0), (2600.0, 250.0)];
        let mut phase = 0.0f32;
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let t = i as f32 / FS;
            let f0 = 130.0 + 20.0 * (TAU * 1.3 * t).sin();
            phase = (phase + TAU * f0 / FS) % TAU;
            let mut s = 0.0;
            let mut k = 1;
            while k as f32 * f0 < 5000.0 {
                let f = k as f32 * f0;
                let gain: f32 = formants
                    .iter()
                    .map(|&(fc, bw)| 1.0 / (1.0 + ((f - fc) / bw).powi(2)))
                    .sum();
                s += gain * (k as f32 * phase).sin();
                k += 1;
            }
            let env = 0.5 - 0.5 * (TAU * 2.5 * t).cos();
            out.push(0.25 * env * s);
        }
        out
    }

    /// Streams `input` through a stretcher in frames, pulling while ≥ 3 frames wait,
    /// then drains it.
    fn stretch_all(input: &[f32], rate: f32) -> Vec<f32> {
        let mut s = Stretcher::with_max_rate(REPLAY_MAX_RATE);
        let mut out = Vec::new();
        let mut frame = [0.0f32; FRAME];
        for chunk in input.chunks(FRAME) {
            s.push(chunk);
            while s.buffered() >= 3 * FRAME {
                let n = s.pull(&mut frame, rate);
                out.extend_from_slice(&frame[..n]);
            }
        }
        loop {
            let n = s.pull(&mut frame, rate);
            if n == 0 {
                break;
            }
            out.extend_from_slice(&frame[..n]);
        }
        assert_eq!(s.dropped(), 0);
        out
    }

    fn max_step(x: &[f32]) -> f32 {
        x.windows(2)
            .map(|w| (w[1] - w[0]).abs())
            .fold(0.0, f32::max)
    }

    /// Period in samples by normalized autocorrelation: the first local peak reaching
    /// 90 % of the best one in `min..=max`, refined by a parabola.
    fn period(x: &[f32], min: usize, max: usize) -> f32 {
        let n = x.len() - max - 1;
        let a = &x[..n];
        let aa = dot(a, a);
        let ac = |lag: usize| {
            let b = &x[lag..lag + n];
            dot(a, b) / (aa * dot(b, b)).sqrt()
        };
        let vals: Vec<f32> = (min - 1..=max + 1).map(ac).collect();
        let best = vals.iter().copied().fold(f32::MIN, f32::max);
        let i = (1..vals.len() - 1)
            .find(|&i| vals[i] >= 0.9 * best && vals[i] >= vals[i - 1] && vals[i] >= vals[i + 1])
            .unwrap();
        let (l, c, r) = (vals[i - 1], vals[i], vals[i + 1]);
        let shift = 0.5 * (l - r) / (l - 2.0 * c + r);
        (min - 1 + i) as f32 + if shift.is_finite() { shift } else { 0.0 }
    }

    #[test]
    fn tones_keep_pitch_and_length() {
        for freq in [200.0f32, 120.0, 173.0] {
            let input = tone(freq, 3.0, 0.5);
            // Catch-up and slowing rates, and a replay's 1.5× and 2×.
            for rate in [1.25f32, 0.8, 1.5, 2.0] {
                let out = stretch_all(&input, rate);
                let expected_len = input.len() as f32 / rate;
                let len_err = (out.len() as f32 - expected_len).abs() / expected_len;
                assert!(
                    len_err < 0.02,
                    "{freq} Hz at {rate}: length off by {len_err}"
                );
                let true_period = FS / freq;
                // Every 400 ms, measure 25 ms: catches local glitches, not just the
                // average pitch. Lags from half to twice the period catch octave errors.
                let (min_lag, max_lag) =
                    ((true_period / 2.0) as usize, (2.0 * true_period) as usize);
                let mut worst = 0.0f32;
                let mut start = 4800;
                while start + 1200 + max_lag + 1 < out.len() - 4800 {
                    let p = period(&out[start..start + 1200 + max_lag + 1], min_lag, max_lag);
                    worst = worst.max((p - true_period).abs() / true_period);
                    start += 19_200;
                }
                assert!(worst < 0.02, "{freq} Hz at {rate}: period off by {worst}");
                assert!(
                    max_step(&out) <= 1.5 * max_step(&input),
                    "{freq} Hz at {rate}: step {} vs {}",
                    max_step(&out),
                    max_step(&input)
                );
            }
        }
    }

    /// Smallest and largest RMS over 10 ms blocks of `x`, relative to the RMS of `reference`.
    fn block_rms_range(x: &[f32], reference: &[f32]) -> (f32, f32) {
        let rms = |b: &[f32]| (dot(b, b) / b.len() as f32).sqrt();
        let r = rms(reference);
        let blocks = x[FRAME..x.len() - FRAME]
            .chunks_exact(480)
            .map(|b| rms(b) / r);
        blocks.fold((f32::MAX, f32::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)))
    }

    /// A steady voiced sound (f0 137 Hz, a period of 350.4 samples, so splices can't
    /// land on whole samples by luck). Misaligned splices would show as loudness dips.
    fn steady_vowel(secs: f32) -> Vec<f32> {
        let n = (secs * FS) as usize;
        (0..n)
            .map(|i| {
                let ph = TAU * 137.0 * i as f32 / FS;
                0.3 * ph.sin() + 0.2 * (5.0 * ph).sin() + 0.15 * (9.0 * ph + 1.0).sin()
            })
            .collect()
    }

    #[test]
    fn splices_are_phase_aligned() {
        for input in [steady_vowel(3.0), tone(173.0, 3.0, 0.5)] {
            for rate in [1.35f32, 1.25, 0.8, 0.75] {
                // Blocks aren't whole periods, so compare with the input's own spread.
                let (in_lo, in_hi) = block_rms_range(&input, &input);
                let (lo, hi) = block_rms_range(&stretch_all(&input, rate), &input);
                assert!(
                    lo > in_lo - 0.02 && hi < in_hi + 0.02,
                    "rate {rate}: block RMS {lo}..{hi}"
                );
            }
        }
    }

    #[test]
    fn speech_like_stretches_without_discontinuities() {
        let input = vowel(4.0);
        let in_step = max_step(&input);
        for rate in [1.25f32, 1.35, 0.8, 0.75] {
            let out = stretch_all(&input, rate);
            let out_step = max_step(&out);
            assert!(
                out_step <= 1.5 * in_step,
                "rate {rate}: step {out_step} vs {in_step}"
            );
            let expected_len = input.len() as f32 / rate;
            assert!((out.len() as f32 - expected_len).abs() / expected_len < 0.02);
        }
    }

    /// Alternates 5 frames at 1.0 with 10 at 1.25, checking that the 1.0 stretches are
    /// the input exactly (after any crossfade still in flight), that nothing clicks, and
    /// that each cycle skipped 25 % of its fast output, within one window.
    #[test]
    fn switching_rates_hands_back_exactly() {
        let input = vowel(8.0);
        let mut s = Stretcher::new();
        let mut out = Vec::new();
        let mut frame = [0.0f32; FRAME];
        let mut pushed = 0;
        let mut cycles = 0;
        let mut exact_samples = 0;
        'outer: loop {
            let cycle_start_consumed = pushed - s.buffered();
            let cycle_start_out = out.len();
            let mut fast_out = 0;
            for i in 0..15 {
                let rate = if i < 5 { 1.0 } else { 1.25 };
                while s.buffered() < 3 * FRAME && pushed < input.len() {
                    let end = (pushed + FRAME).min(input.len());
                    s.push(&input[pushed..end]);
                    pushed = end;
                }
                if s.buffered() < 2 * FRAME {
                    break 'outer;
                }
                let consumed = pushed - s.buffered();
                let in_flight = s.fade.map_or(0, |f| OVERLAP - f.done);
                let n = s.pull(&mut frame, rate);
                assert_eq!(n, FRAME);
                if rate == 1.0 {
                    assert_eq!(
                        frame[in_flight..],
                        input[consumed + in_flight..consumed + n]
                    );
                    exact_samples += n - in_flight;
                } else {
                    fast_out += n;
                }
                out.extend_from_slice(&frame[..n]);
            }
            let consumed = pushed - s.buffered() - cycle_start_consumed;
            let produced = out.len() - cycle_start_out;
            let skipped = consumed as f32 - produced as f32;
            let expected = 0.25 * fast_out as f32;
            assert!(
                (skipped - expected).abs() <= (2 * OVERLAP) as f32,
                "cycle {cycles}: skipped {skipped}, expected {expected}"
            );
            cycles += 1;
        }
        assert!(cycles >= 10 && exact_samples > 40 * FRAME);
        assert!(max_step(&out) <= 1.5 * max_step(&input));
        assert_eq!(s.dropped(), 0);
    }

    #[test]
    fn overflow_drops_oldest_and_counts() {
        let input: Vec<f32> = (0..2 * CAPACITY + 7)
            .map(|i| (i % 1000) as f32 / 1000.0)
            .collect();
        let mut s = Stretcher::new();
        for chunk in input.chunks(FRAME) {
            s.push(chunk);
        }
        assert_eq!(s.buffered(), CAPACITY);
        assert_eq!(s.dropped(), (CAPACITY + 7) as u64);
        let mut out = vec![0.0; CAPACITY + 10];
        assert_eq!(s.pull(&mut out, 1.0), CAPACITY);
        assert_eq!(out[..CAPACITY], input[CAPACITY + 7..]);
        // One huge slice as well.
        s.reset();
        s.push(&input);
        assert_eq!(s.buffered(), CAPACITY);
        assert_eq!(s.dropped(), (CAPACITY + 7) as u64);
    }

    #[test]
    fn odd_input_does_not_panic() {
        let mut s = Stretcher::new();
        let mut out = [0.0f32; 2000];
        assert_eq!(s.pull(&mut out, 1.25), 0);
        assert_eq!(s.pull(&mut [], 0.8), 0);
        s.push(&[]);
        s.push(&[f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 1.0]);
        assert_eq!(s.pull(&mut out, f32::NAN), 4);
        assert_eq!(out[..4], [0.0, 0.0, 0.0, 1.0]);
        s.push(&vec![f32::MAX; 5000]);
        s.push(&vec![f32::MIN_POSITIVE; 5000]);
        for rate in [f32::NAN, f32::INFINITY, -3.0, 0.0, 100.0, 1.25, 0.8] {
            s.pull(&mut out, rate);
        }
        s.reset();
        assert_eq!((s.buffered(), s.dropped()), (0, 0));
        assert!(stretchable(&[]));
        assert!(stretchable(&[f32::NAN; 10]));
    }

    #[test]
    fn stretchable_classifies() {
        assert!(stretchable(&[0.0; FRAME]));
        // Low-level white-ish noise (xorshift), with a DC offset for good measure.
        let mut state = 0x2545_f491u32;
        let noise: Vec<f32> = (0..FRAME)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                0.003 + 0.003 * (state as f32 / u32::MAX as f32 - 0.5)
            })
            .collect();
        assert!(stretchable(&noise));
        // Loud noise is unvoiced: still stretchable.
        let loud: Vec<f32> = noise.iter().map(|x| 50.0 * (x - 0.003)).collect();
        assert!(stretchable(&loud));
        // A loud 150 Hz vowel is not.
        let mut v = tone(150.0, 0.02, 0.4);
        for (i, x) in v.iter_mut().enumerate() {
            let t = i as f32 / FS;
            *x += 0.2 * (TAU * 450.0 * t).sin() + 0.1 * (TAU * 750.0 * t).sin();
        }
        assert!(!stretchable(&v));
        let vowel = vowel(0.3);
        assert!(!stretchable(&vowel[6000..6000 + FRAME]));
    }

    /// Not a test: prints the cost of a 960-sample pull at 1.25 (run with --ignored).
    #[test]
    #[ignore]
    fn cost_per_pull() {
        let input = vowel(10.0);
        let mut s = Stretcher::new();
        let mut frame = [0.0f32; FRAME];
        let mut pulls = 0u32;
        let mut spent = std::time::Duration::ZERO;
        for chunk in input.chunks(FRAME) {
            s.push(chunk);
            while s.buffered() >= 3 * FRAME {
                let t = std::time::Instant::now();
                s.pull(&mut frame, 1.25);
                spent += t.elapsed();
                pulls += 1;
            }
        }
        println!(
            "{pulls} pulls at 1.25: {:?} per 960-sample pull",
            spent / pulls
        );
    }

    proptest! {
        // Few cases: the suite also runs unoptimized, where each costs ~0.1 s.
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn rate_one_is_exact(
            data in proptest::collection::vec(-1.0f32..1.0, 0..20_000),
            ops in proptest::collection::vec((any::<bool>(), 0usize..3000), 1..60),
        ) {
            let mut s = Stretcher::new();
            let mut out = Vec::new();
            let mut frame = vec![0.0f32; 3000];
            let mut pushed = 0;
            for (is_push, len) in ops {
                if is_push {
                    let end = (pushed + len).min(data.len());
                    s.push(&data[pushed..end]);
                    pushed = end;
                } else {
                    let n = s.pull(&mut frame[..len], 1.0);
                    prop_assert_eq!(n, len.min(n + s.buffered()));
                    out.extend_from_slice(&frame[..n]);
                }
            }
            s.push(&data[pushed..]);
            let n = s.pull(&mut vec![0.0; data.len()], 1.0);
            prop_assert_eq!(out.len() + n, data.len());
            prop_assert_eq!(&out[..], &data[..out.len()]);
        }

        #[test]
        fn any_rates_stay_sane(
            data in proptest::collection::vec(-1.0f32..1.0, 1..5_000),
            ops in proptest::collection::vec(
                (0usize..2000, any::<bool>(), 0usize..2000, 0.5f32..1.5),
                1..40,
            ),
        ) {
            let mut s = Stretcher::new();
            let mut pushed = 0;
            let mut produced = 0;
            let mut frame = vec![0.0f32; 2000];
            let mut input = Vec::new();
            for (push, huge, pull, rate) in ops {
                // Sometimes far more than fits, to overflow during splices.
                let push = if huge { 15 * push } else { push };
                input.clear();
                input.extend((pushed..pushed + push).map(|i| data[i % data.len()]));
                s.push(&input);
                pushed += push;
                let before = s.buffered();
                prop_assert!(before <= CAPACITY);
                let n = s.pull(&mut frame[..pull], rate);
                produced += n;
                prop_assert!(frame[..n].iter().all(|x| x.is_finite() && x.abs() <= 1.0 + 1e-6));
                // Output stops only when input is exhausted.
                prop_assert!(n == pull || s.buffered() == 0);
                prop_assert!(n == 0 || before > 0);
            }
            // Consumption per output sample stays within the clamp plus one splice.
            let consumed = (pushed - s.buffered()) as f32 - s.dropped() as f32;
            prop_assert!(consumed >= 0.0);
            prop_assert!(consumed <= MAX_RATE * produced as f32 + (2 * SEARCH + HOP) as f32);
        }
    }
}
