//! Log-mel of the overlapping windows of one stream, each STFT frame computed once.
//!
//! A window of `L` samples starting at stream sample `s` has its frame `t` centred at `s + t h`
//! (`h` the front end's hop). Most frames read only the window's own samples ("interior"
//! frames); the first and last few reach past its ends and read the centre padding (reflect or
//! zeros), which belongs to that window alone. When the next window starts `d` samples later
//! with `d` a multiple of `h`, its interior frame `t` is the previous window's interior frame
//! `t + d / h`, computed from the very same samples: it is copied, not recomputed. Edge frames
//! are always computed for their own window, so the result is bit-for-bit what
//! [`LogMel::compute`] gives for the window alone (the tests check it over long signals).
//!
//! Reuse is checked, not assumed: the overlapping samples of the two windows must be equal bit
//! for bit, so a gap, a shed window, a replay that loops or a caller's wrong positions cost
//! only a recomputation, never a wrong frame. A hop that is not a multiple of `h` (for
//! instance 0.5 s at 44.1 kHz with `h` = 1024) reuses nothing and costs what it did before.
//!
//! Energies are kept before the log, so a per-window gain (level normalisation) is applied as
//! `gain^2` on the energies: exact in real arithmetic; against scaling the f32 samples first
//! (the per-window path) it differs only by that f32 rounding (about 1e-7 relative, 1e-6 dB).

use super::mel::{FrontEnd, LogMel};

/// The previous window: where it started, its samples and its frames' mel energies.
#[derive(Default)]
struct Previous {
    start: u64,
    samples: Vec<f32>,
    energies: Vec<f64>,
    frames: usize,
}

/// Streaming log-mel: [`StreamLogMel::compute_at`] for successive windows of a stream.
pub struct StreamLogMel {
    mel: LogMel,
    prev: Option<Previous>,
    current: Vec<f64>,
    computed: u64,
    reused: u64,
}

impl StreamLogMel {
    /// `fe` must have passed [`FrontEnd::validate`] for `sample_rate`.
    pub fn new(fe: &FrontEnd, sample_rate: u32) -> Self {
        Self {
            mel: LogMel::new(fe, sample_rate),
            prev: None,
            current: Vec::new(),
            computed: 0,
            reused: 0,
        }
    }

    pub fn front_end(&self) -> &FrontEnd {
        self.mel.front_end()
    }

    /// The per-window log-mel, computed whole with no reuse (the reference path).
    pub fn compute_window(&mut self, samples: &[f32], out: &mut Vec<f32>) -> usize {
        self.mel.compute(samples, out)
    }

    /// Frames computed and frames reused so far (what the reuse saves, for benchmarks).
    pub fn frame_counts(&self) -> (u64, u64) {
        (self.computed, self.reused)
    }

    /// The log-mel of the window `samples` starting at stream sample `start`, with its samples
    /// scaled by `gain`, into `out` (row-major `frames x mel_bins`, cleared first); returns
    /// the number of frames. Frames shared with the previous window are reused.
    pub fn compute_at(
        &mut self,
        start: u64,
        samples: &[f32],
        gain: f32,
        out: &mut Vec<f32>,
    ) -> usize {
        let frames = self.mel.frames(samples);
        let bins = self.mel.front_end().mel_bins;
        let hop = self.mel.front_end().hop_size;
        let mut cur = std::mem::take(&mut self.current);
        cur.clear();
        cur.resize(frames * bins, 0.0);
        let prev = self.prev.take().unwrap_or_default();
        let shift = frame_shift(&prev, start, samples, hop);
        for (t, row) in cur.chunks_exact_mut(bins).enumerate() {
            let from_prev = shift.map(|k| t + k).filter(|&tp| {
                tp < prev.frames
                    && self.mel.is_interior(t, samples.len())
                    && self.mel.is_interior(tp, prev.samples.len())
            });
            match from_prev {
                Some(tp) => {
                    row.copy_from_slice(&prev.energies[tp * bins..(tp + 1) * bins]);
                    self.reused += 1;
                }
                None => {
                    self.mel.frame_energies(samples, t, row);
                    self.computed += 1;
                }
            }
        }
        let gain2 = f64::from(gain) * f64::from(gain);
        out.clear();
        out.reserve(cur.len());
        out.extend(cur.iter().map(|&e| self.mel.log(e, gain2)));
        // Keep this window for the next one (buffers are recycled, not reallocated).
        let mut keep = prev;
        keep.start = start;
        keep.samples.clear();
        keep.samples.extend_from_slice(samples);
        self.current = std::mem::replace(&mut keep.energies, cur);
        keep.frames = frames;
        self.prev = Some(keep);
        frames
    }

    /// Frames `first .. first + count` of the window `samples` (centred framing, as
    /// [`LogMel::compute`] frames the whole window), scaled by `gain`, appended to `out`
    /// (row-major, `count x mel_bins`). For chunk-max embeddings
    /// ([`crate::embed::chunkmax`]): a chunk is a run of a window's frames, computed once
    /// and kept by the embedder, so nothing here is reused.
    pub fn frames_of(
        &mut self,
        samples: &[f32],
        first: usize,
        count: usize,
        gain: f32,
        out: &mut Vec<f32>,
    ) {
        let bins = self.mel.front_end().mel_bins;
        let gain2 = f64::from(gain) * f64::from(gain);
        let mut e = std::mem::take(&mut self.current);
        e.clear();
        e.resize(bins, 0.0);
        out.reserve(count * bins);
        for t in first..first + count {
            self.mel.frame_energies(samples, t, &mut e);
            out.extend(e.iter().map(|&v| self.mel.log(v, gain2)));
            self.computed += 1;
        }
        self.current = e;
    }
}

/// By how many frames the previous window's frames lead this one's, when frames can be
/// shared: the start moved forward by a whole number of STFT hops, within the previous window,
/// and the samples both windows hold are the same.
fn frame_shift(prev: &Previous, start: u64, samples: &[f32], hop: usize) -> Option<usize> {
    let d = usize::try_from(start.checked_sub(prev.start)?).ok()?;
    if d % hop != 0 || d >= prev.samples.len() {
        return None;
    }
    let overlap = (prev.samples.len() - d).min(samples.len());
    let same = prev.samples[d..d + overlap]
        .iter()
        .zip(&samples[..overlap])
        .all(|(a, b)| a.to_bits() == b.to_bits());
    same.then_some(d / hop)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A long test signal that changes all the time (so a wrongly reused frame shows): a
    /// chirp, an amplitude-modulated tone, decaying clicks and deterministic noise.
    fn signal(rate: u32, seconds: f64) -> Vec<f32> {
        let n = (seconds * f64::from(rate)) as usize;
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        (0..n)
            .map(|i| {
                let t = i as f64 / f64::from(rate);
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let noise = (seed >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
                let chirp = (2.0 * std::f64::consts::PI * (200.0 * t + 300.0 * t * t)).sin();
                let am = (1.0 + (2.0 * std::f64::consts::PI * 0.7 * t).sin())
                    * (2.0 * std::f64::consts::PI * 3000.0 * t).sin();
                let click = (-((t % 0.37) * 200.0)).exp();
                (0.2 * chirp + 0.1 * am + 0.3 * click + 0.05 * noise) as f32
            })
            .collect()
    }

    /// Streams `x` in windows of `win` every `hop` samples and compares each window's log-mel
    /// with the window computed alone; returns (max |diff|, frames computed, frames reused).
    fn stream_vs_windows(
        fe: &FrontEnd,
        rate: u32,
        x: &[f32],
        win: usize,
        hop: usize,
        gain: f32,
    ) -> (f32, u64, u64) {
        let mut stream = StreamLogMel::new(fe, rate);
        let mut alone = LogMel::new(fe, rate);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let mut scaled = Vec::new();
        let mut worst = 0f32;
        let mut windows = 0;
        for s in (0..).map(|k| k * hop).take_while(|s| s + win <= x.len()) {
            let w = &x[s..s + win];
            let fa = stream.compute_at(s as u64, w, gain, &mut a);
            // The per-window reference scales the f32 samples first, as the embedder does.
            scaled.clear();
            scaled.extend(w.iter().map(|v| v * gain));
            let fb = alone.compute(&scaled, &mut b);
            assert_eq!(fa, fb);
            assert_eq!(a.len(), b.len());
            for (p, q) in a.iter().zip(&b) {
                worst = worst.max((p - q).abs());
            }
            windows += 1;
        }
        assert!(windows >= 8, "only {windows} windows");
        let (c, r) = stream.frame_counts();
        (worst, c, r)
    }

    #[test]
    fn streamed_log_mel_equals_per_window_log_mel_for_panns_and_aisfx() {
        // PANNs 32 kHz (Slaney, dB, reflect): 1 s windows, hop = window / 2 and / 4 (both
        // multiples of the 320-sample STFT hop).
        let fe = FrontEnd::panns_32k();
        let x = signal(32000, 20.0);
        for hop in [16000, 8000] {
            let (worst, computed, reused) = stream_vs_windows(&fe, 32000, &x, 32000, hop, 1.0);
            assert_eq!(worst, 0.0, "PANNs hop {hop}: streamed differs by {worst}");
            // Each window after the first computes its new frames plus the 4 edge frames.
            let windows = ((x.len() - 32000) / hop + 1) as u64;
            let new_per_window = (hop / 320 + 4) as u64;
            assert!(
                computed <= 101 + (windows - 1) * new_per_window,
                "PANNs hop {hop}: {computed} frames computed, {reused} reused"
            );
            assert_eq!(computed + reused, windows * 101);
        }
        // aisfx Cnn9 (44.1 kHz, HTK, unit-sum filters, log10(1 + 1e4 x), zero padding):
        // windows of 44 STFT hops (1.02 s) so that window / 2 and / 4 are multiples of 1024.
        let fe = FrontEnd::aisfx();
        let x = signal(44100, 20.0);
        let win = 44 * 1024;
        for hop in [win / 2, win / 4] {
            let (worst, computed, reused) = stream_vs_windows(&fe, 44100, &x, win, hop, 1.0);
            assert_eq!(worst, 0.0, "aisfx hop {hop}: streamed differs by {worst}");
            // 45 frames a window, 2 of them edge frames.
            let windows = ((x.len() - win) / hop + 1) as u64;
            let new_per_window = (hop / 1024 + 2) as u64;
            assert!(
                computed <= 45 + (windows - 1) * new_per_window,
                "aisfx hop {hop}: {computed} frames computed, {reused} reused"
            );
            assert_eq!(computed + reused, windows * 45);
        }
        // A 1 s window with hop 0.5 s at 44.1 kHz is not on the 1024-sample grid: nothing can
        // be shared, and the result is still the per-window one.
        let (worst, _, reused) = stream_vs_windows(&fe, 44100, &x, 44100, 22050, 1.0);
        assert_eq!((worst, reused), (0.0, 0));
    }

    #[test]
    fn level_gain_on_energies_matches_scaling_the_samples_within_f32_rounding() {
        for (fe, rate) in [(FrontEnd::panns_32k(), 32000), (FrontEnd::aisfx(), 44100)] {
            let x = signal(rate, 12.0);
            let win = if rate == 32000 { 32000 } else { 44 * 1024 };
            for gain in [3.7f32, 0.05] {
                let (worst, _, reused) = stream_vs_windows(&fe, rate, &x, win, win / 4, gain);
                assert!(reused > 0);
                // dB values span about -100..+30; log10(1 + 1e4 x) about 0..6.
                assert!(worst < 1e-4, "gain {gain} at {rate} Hz: max |diff| {worst}");
            }
        }
    }

    #[test]
    fn a_gap_or_changed_samples_are_recomputed_not_reused() {
        let fe = FrontEnd::panns_32k();
        let x = signal(32000, 4.0);
        let mut stream = StreamLogMel::new(&fe, 32000);
        let mut alone = LogMel::new(&fe, 32000);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        stream.compute_at(0, &x[..32000], 1.0, &mut a);
        // Same claimed position as a half-window hop, but the samples are from elsewhere (a
        // loop restarted, a caller's wrong position): nothing may be reused.
        let other = &x[64000..96000];
        let (_, reused_before) = stream.frame_counts();
        stream.compute_at(16000, other, 1.0, &mut a);
        alone.compute(other, &mut b);
        assert_eq!(a, b);
        assert_eq!(stream.frame_counts().1, reused_before);
        // A position that is not on the STFT grid shares nothing either.
        stream.compute_at(16000 + 100, &x[16100..48100], 1.0, &mut a);
        alone.compute(&x[16100..48100], &mut b);
        assert_eq!(a, b);
        assert_eq!(stream.frame_counts().1, reused_before);
    }
}
