//! The log-mel front ends of earshot's models, computed in Rust so that they can stream and so
//! that the ONNX model only has to hold the network.
//!
//! By default it reproduces torchlibrosa's `Spectrogram` + `LogmelFilterBank` as PANNs
//! configures them: periodic Hann window, centred frames with reflect padding, power spectrum,
//! Slaney-style mel filterbank (librosa's default: Slaney mel scale and area normalisation), then
//! `10 * log10(max(x, amin)) - 10 * log10(max(amin, ref))` with no top-dB clipping.
//! The card can instead ask for what the aisfx model (Ma and Lerch 2022) was fed through
//! librosa 0.9.2: zero padding (`pad_mode = "constant"`), the HTK mel scale, filters scaled to
//! unit sum (`mel_norm = "l1"`, librosa's `norm=1.0`) and `log10(1 + log_scale * x)`.
//! Arithmetic is done in f64 and rounded once, which keeps us within ~1e-5 dB of the float32
//! reference (tests/parity.rs holds the proof against the original code's output).

use realfft::{RealFftPlanner, RealToComplex};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Front-end parameters as written in a model card.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FrontEnd {
    pub window_size: usize,
    pub hop_size: usize,
    pub mel_bins: usize,
    pub fmin: f64,
    pub fmax: f64,
    #[serde(default = "default_window")]
    pub window: String,
    #[serde(default = "default_true")]
    pub center: bool,
    #[serde(default = "default_pad")]
    pub pad_mode: String,
    #[serde(default = "default_power")]
    pub power: f64,
    /// "slaney" (area normalisation, 2 / bandwidth) or "l1" (each filter's weights sum to 1).
    #[serde(default = "default_norm")]
    pub mel_norm: String,
    /// "slaney" (Auditory Toolbox, librosa's default) or "htk" (2595 log10(1 + f / 700)).
    #[serde(default = "default_scale")]
    pub mel_scale: String,
    /// "db": `10 log10(max(x, amin)) - 10 log10(max(amin, ref))`; "log10_1p":
    /// `log10(1 + log_scale * x)`.
    #[serde(default = "default_log")]
    pub log: String,
    #[serde(default = "default_log_scale")]
    pub log_scale: f64,
    #[serde(default = "default_amin")]
    pub amin: f64,
    #[serde(rename = "ref", default = "default_ref")]
    pub reference: f64,
}

fn default_window() -> String {
    "hann".into()
}
fn default_true() -> bool {
    true
}
fn default_pad() -> String {
    "reflect".into()
}
fn default_power() -> f64 {
    2.0
}
fn default_norm() -> String {
    "slaney".into()
}
fn default_scale() -> String {
    "slaney".into()
}
fn default_log() -> String {
    "db".into()
}
fn default_log_scale() -> f64 {
    1.0
}
fn default_amin() -> f64 {
    1e-10
}
fn default_ref() -> f64 {
    1.0
}

impl FrontEnd {
    /// The 32 kHz PANNs front end (Cnn14, MobileNetV1, ...).
    pub fn panns_32k() -> Self {
        Self::new(1024, 320, 64, 50.0, 14000.0)
    }
    /// The 16 kHz PANNs front end (Cnn14_16k).
    pub fn panns_16k() -> Self {
        Self::new(512, 160, 64, 50.0, 8000.0)
    }
    fn new(window_size: usize, hop_size: usize, mel_bins: usize, fmin: f64, fmax: f64) -> Self {
        Self {
            window_size,
            hop_size,
            mel_bins,
            fmin,
            fmax,
            window: default_window(),
            center: true,
            pad_mode: default_pad(),
            power: 2.0,
            mel_norm: default_norm(),
            mel_scale: default_scale(),
            log: default_log(),
            log_scale: default_log_scale(),
            amin: 1e-10,
            reference: 1.0,
        }
    }

    /// The front end of the aisfx Cnn_9layers model (Ma and Lerch 2022) as its package computes
    /// it with librosa 0.9.2: 44.1 kHz, n_fft 2048, hop 1024, 96 HTK bands 0-22050 Hz with unit
    /// sum, zero-padded centred frames, log10(1 + 1e4 x).
    pub fn aisfx() -> Self {
        Self {
            pad_mode: "constant".into(),
            mel_scale: "htk".into(),
            mel_norm: "l1".into(),
            log: "log10_1p".into(),
            log_scale: 1e4,
            ..Self::new(2048, 1024, 96, 0.0, 22050.0)
        }
    }

    /// Checks that this is a front end this implementation computes exactly.
    pub fn validate(&self, sample_rate: u32) -> Result<(), String> {
        let nyquist = f64::from(sample_rate) / 2.0;
        if self.window != "hann"
            || !self.center
            || !matches!(self.pad_mode.as_str(), "reflect" | "constant")
        {
            return Err(format!(
                "front end {{window: {}, center: {}, pad_mode: {}}} is not supported (only hann, centred, reflect or constant padding)",
                self.window, self.center, self.pad_mode
            ));
        }
        if self.power != 2.0 {
            return Err("only power = 2 is supported".into());
        }
        if !matches!(self.mel_norm.as_str(), "slaney" | "l1") {
            return Err(format!(
                "mel_norm {:?} is not supported (\"slaney\" or \"l1\")",
                self.mel_norm
            ));
        }
        if !matches!(self.mel_scale.as_str(), "slaney" | "htk") {
            return Err(format!(
                "mel_scale {:?} is not supported (\"slaney\" or \"htk\")",
                self.mel_scale
            ));
        }
        match self.log.as_str() {
            "db" => {}
            "log10_1p" if self.log_scale > 0.0 && self.log_scale.is_finite() => {}
            "log10_1p" => return Err("log_scale must be a finite number > 0".into()),
            other => {
                return Err(format!(
                    "log {other:?} is not supported (\"db\" or \"log10_1p\")"
                ));
            }
        }
        if self.window_size < 16 || self.hop_size == 0 || self.mel_bins == 0 {
            return Err("window_size >= 16, hop_size > 0 and mel_bins > 0 are required".into());
        }
        if !(0.0 <= self.fmin && self.fmin < self.fmax && self.fmax <= nyquist) {
            return Err(format!(
                "fmin {} / fmax {} must satisfy 0 <= fmin < fmax <= {nyquist} (half of {sample_rate} Hz)",
                self.fmin, self.fmax
            ));
        }
        if !(self.amin > 0.0 && self.reference > 0.0) {
            return Err("amin and ref must be > 0".into());
        }
        Ok(())
    }

    /// Frames produced for `samples` input samples (centred framing).
    pub fn frames_for(&self, samples: usize) -> usize {
        samples / self.hop_size + 1
    }

    /// Shortest input (samples) that reflect padding accepts (zero padding takes any, but
    /// the same floor keeps every frame at least half real signal).
    pub fn min_samples(&self) -> usize {
        self.window_size / 2 + 1
    }
}

/// Reusable log-mel computer: window, filterbank and FFT plan are made once.
pub struct LogMel {
    fe: FrontEnd,
    window: Vec<f64>,
    /// Per mel band: first FFT bin and its weights.
    filters: Vec<(usize, Vec<f64>)>,
    fft: Arc<dyn RealToComplex<f64>>,
    frame: Vec<f64>,
    spectrum: Vec<realfft::num_complex::Complex<f64>>,
    scratch: Vec<realfft::num_complex::Complex<f64>>,
    power: Vec<f64>,
    energies: Vec<f64>,
    /// `log = "log10_1p"` (else dB), decided once rather than per value.
    log1p: bool,
    db_offset: f64,
}

impl LogMel {
    /// `fe` must have passed [`FrontEnd::validate`] for `sample_rate`.
    pub fn new(fe: &FrontEnd, sample_rate: u32) -> Self {
        let n = fe.window_size;
        // Periodic Hann (scipy/librosa `fftbins=True`), as torchlibrosa uses.
        let window = (0..n)
            .map(|i| 0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / n as f64).cos())
            .collect();
        let fft = RealFftPlanner::<f64>::new().plan_fft_forward(n);
        let spectrum = fft.make_output_vec();
        let scratch = fft.make_scratch_vec();
        let filters = filterbank(sample_rate, fe);
        Self {
            db_offset: 10.0 * fe.amin.max(fe.reference).log10(),
            fe: fe.clone(),
            window,
            filters,
            frame: vec![0.0; n],
            power: vec![0.0; n / 2 + 1],
            spectrum,
            scratch,
            fft,
            energies: Vec::new(),
            log1p: fe.log == "log10_1p",
        }
    }

    pub fn front_end(&self) -> &FrontEnd {
        &self.fe
    }

    /// Computes the log-mel of `samples` into `out` (row-major `frames x mel_bins`, cleared
    /// first) and returns the number of frames. Inputs shorter than
    /// [`FrontEnd::min_samples`] are zero-extended to it (reflect padding needs that much).
    pub fn compute(&mut self, samples: &[f32], out: &mut Vec<f32>) -> usize {
        let frames = self.frames(samples);
        let bins = self.fe.mel_bins;
        out.clear();
        out.reserve(frames * bins);
        let mut e = std::mem::take(&mut self.energies);
        e.resize(bins, 0.0);
        for t in 0..frames {
            self.frame_energies(samples, t, &mut e);
            out.extend(e.iter().map(|&v| self.log(v, 1.0)));
        }
        self.energies = e;
        frames
    }

    /// Frames of a window of `samples` (centred framing, after the zero-extension to
    /// [`FrontEnd::min_samples`]).
    pub(crate) fn frames(&self, samples: &[f32]) -> usize {
        self.fe.frames_for(samples.len().max(self.fe.min_samples()))
    }

    /// True when frame `t` of a window of `len` samples reads only the window's own samples
    /// (no centre padding): such a frame is the same in every window that contains its samples.
    pub(crate) fn is_interior(&self, t: usize, len: usize) -> bool {
        let (half, c) = (self.fe.window_size / 2, t * self.fe.hop_size);
        len >= self.fe.min_samples() && c >= half && c + half <= len
    }

    /// Mel energies (before the log) of frame `t` of the window `samples`, centred at sample
    /// `t * hop_size` with the card's padding beyond the window's ends. Every frame, whether
    /// of a whole window or of a stream, goes through here, so a frame computed from the
    /// same samples is bit-for-bit the same wherever it is computed.
    pub(crate) fn frame_energies(&mut self, samples: &[f32], t: usize, out: &mut [f64]) {
        let n = self.fe.window_size;
        let half = n / 2;
        let len = samples.len().max(self.fe.min_samples());
        let centre = t * self.fe.hop_size;
        let at = |i: usize| -> f64 { samples.get(i).copied().map_or(0.0, f64::from) };
        if centre >= half && centre + half <= len {
            let first = centre - half;
            for (k, f) in self.frame.iter_mut().enumerate() {
                *f = at(first + k) * self.window[k];
            }
        } else {
            // Centred with reflect padding (x[-i] = x[i], x[len-1+i] = x[len-1-i]) or zeros.
            let reflect = self.fe.pad_mode == "reflect";
            for (k, f) in self.frame.iter_mut().enumerate() {
                let i = (centre + k) as isize - half as isize;
                let len = len as isize;
                let v = if i < 0 {
                    if reflect { at((-i) as usize) } else { 0.0 }
                } else if i >= len {
                    if reflect {
                        at((2 * (len - 1) - i) as usize)
                    } else {
                        0.0
                    }
                } else {
                    at(i as usize)
                };
                *f = v * self.window[k];
            }
        }
        // Lengths are fixed by construction, so the FFT cannot fail.
        let _ =
            self.fft
                .process_with_scratch(&mut self.frame, &mut self.spectrum, &mut self.scratch);
        for (p, c) in self.power.iter_mut().zip(&self.spectrum) {
            *p = c.re * c.re + c.im * c.im;
        }
        for (o, (first, w)) in out.iter_mut().zip(&self.filters) {
            *o = w
                .iter()
                .zip(&self.power[*first..])
                .map(|(a, b)| a * b)
                .sum();
        }
    }

    /// The log of one mel energy `e` of a window scaled by `gain2` (the square of a sample
    /// gain: energies are quadratic in the samples), rounded to f32.
    pub(crate) fn log(&self, e: f64, gain2: f64) -> f32 {
        let e = e * gain2;
        let v = if self.log1p {
            (1.0 + self.fe.log_scale * e).log10()
        } else {
            10.0 * e.max(self.fe.amin).log10() - self.db_offset
        };
        v as f32
    }
}

/// A mel scale: Hz to mel and back.
#[derive(Clone, Copy)]
enum MelScale {
    Slaney,
    Htk,
}

impl MelScale {
    fn to_mel(self, f: f64) -> f64 {
        match self {
            MelScale::Slaney => hz_to_mel(f),
            MelScale::Htk => 2595.0 * (1.0 + f / 700.0).log10(),
        }
    }
    fn to_hz(self, m: f64) -> f64 {
        match self {
            MelScale::Slaney => mel_to_hz(m),
            MelScale::Htk => 700.0 * (10f64.powf(m / 2595.0) - 1.0),
        }
    }
}

fn hz_to_mel(f: f64) -> f64 {
    // Slaney's auditory toolbox scale: linear below 1 kHz, logarithmic above.
    const F_SP: f64 = 200.0 / 3.0;
    const MIN_LOG_HZ: f64 = 1000.0;
    let logstep = 6.4f64.ln() / 27.0;
    if f >= MIN_LOG_HZ {
        MIN_LOG_HZ / F_SP + (f / MIN_LOG_HZ).ln() / logstep
    } else {
        f / F_SP
    }
}

fn mel_to_hz(m: f64) -> f64 {
    const F_SP: f64 = 200.0 / 3.0;
    const MIN_LOG_HZ: f64 = 1000.0;
    let min_log_mel = MIN_LOG_HZ / F_SP;
    let logstep = 6.4f64.ln() / 27.0;
    if m >= min_log_mel {
        MIN_LOG_HZ * (logstep * (m - min_log_mel)).exp()
    } else {
        F_SP * m
    }
}

/// Triangular filters between mel-spaced edges, as librosa's `filters.mel`: with
/// `mel_norm = "slaney"` each is scaled to unit area (2 / bandwidth), with `"l1"` its weights
/// are divided by their sum (librosa `norm=1.0`, Essentia's `unit_sum`). The weights are
/// rounded to f32 where librosa stores them, so the reference and we multiply by the same
/// numbers.
fn filterbank(sample_rate: u32, fe: &FrontEnd) -> Vec<(usize, Vec<f64>)> {
    let (n_fft, n_mels) = (fe.window_size, fe.mel_bins);
    let scale = if fe.mel_scale == "htk" {
        MelScale::Htk
    } else {
        MelScale::Slaney
    };
    let l1 = fe.mel_norm == "l1";
    let n_bins = n_fft / 2 + 1;
    let fft_freqs: Vec<f64> = (0..n_bins)
        .map(|i| i as f64 * f64::from(sample_rate) / n_fft as f64)
        .collect();
    let (mmin, mmax) = (scale.to_mel(fe.fmin), scale.to_mel(fe.fmax));
    let edges: Vec<f64> = (0..n_mels + 2)
        .map(|i| scale.to_hz(mmin + (mmax - mmin) * i as f64 / (n_mels + 1) as f64))
        .collect();
    (0..n_mels)
        .map(|m| {
            let (lo, mid, hi) = (edges[m], edges[m + 1], edges[m + 2]);
            let enorm = if l1 { 1.0 } else { 2.0 / (hi - lo) };
            let mut weights: Vec<f64> = fft_freqs
                .iter()
                .map(|&f| {
                    let lower = (f - lo) / (mid - lo);
                    let upper = (hi - f) / (hi - mid);
                    (lower.min(upper).max(0.0) * enorm) as f32 as f64
                })
                .collect();
            if l1 {
                // librosa sums and divides in f32; an empty filter stays empty.
                let sum = weights.iter().sum::<f64>() as f32;
                if sum > 0.0 {
                    for w in &mut weights {
                        *w = (*w as f32 / sum) as f64;
                    }
                }
            }
            let first = weights.iter().position(|&w| w > 0.0).unwrap_or(0);
            let last = weights.iter().rposition(|&w| w > 0.0).unwrap_or(first);
            (first, weights[first..=last].to_vec())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slaney_scale_round_trips_and_matches_known_points() {
        for f in [0.0, 50.0, 999.0, 1000.0, 4000.0, 14000.0] {
            assert!((mel_to_hz(hz_to_mel(f)) - f).abs() < 1e-9);
        }
        // Known values of the Slaney scale: 1 kHz = 15 mel, linear below.
        assert!((hz_to_mel(1000.0) - 15.0).abs() < 1e-12);
        assert!((hz_to_mel(200.0) - 3.0).abs() < 1e-12);
    }

    #[test]
    fn sine_lands_in_the_right_mel_band_and_silence_hits_the_floor() {
        let sr = 32000;
        let fe = FrontEnd::panns_32k();
        let mut lm = LogMel::new(&fe, sr);
        let x: Vec<f32> = (0..sr)
            .map(|i| (2.0 * std::f64::consts::PI * 1000.0 * i as f64 / sr as f64).sin() as f32)
            .collect();
        let mut out = Vec::new();
        let frames = lm.compute(&x, &mut out);
        assert_eq!(frames, 101);
        let row = &out[50 * 64..51 * 64];
        let peak = row
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(i, _)| i)
            .unwrap();
        let (lo, hi) = (hz_to_mel(50.0), hz_to_mel(14000.0));
        let centre = mel_to_hz(lo + (hi - lo) * (peak + 1) as f64 / 65.0);
        assert!(
            (centre - 1000.0).abs() < 120.0,
            "peak band centre {centre} Hz"
        );
        let silence = vec![0.0f32; 16000];
        lm.compute(&silence, &mut out);
        assert!(out.iter().all(|&v| v == -100.0));
    }

    #[test]
    fn htk_scale_matches_known_points() {
        // HTK: 2595 log10(1 + f / 700); 700 Hz is 2595 log10(2) mel, 1 kHz about 1000 mel.
        let htk = MelScale::Htk;
        assert!((htk.to_mel(700.0) - 2595.0 * 2f64.log10()).abs() < 1e-9);
        assert!((htk.to_mel(1000.0) - 999.9855).abs() < 1e-3);
        for f in [0.0, 20.0, 1000.0, 22050.0] {
            assert!((htk.to_hz(htk.to_mel(f)) - f).abs() < 1e-8);
        }
    }

    #[test]
    fn aisfx_front_end_has_unit_sum_filters_zero_padding_and_log1p() {
        let fe = FrontEnd::aisfx();
        fe.validate(44100).expect("aisfx front end is supported");
        let bank = filterbank(44100, &fe);
        assert_eq!(bank.len(), 96);
        for (m, (_, w)) in bank.iter().enumerate() {
            let s: f64 = w.iter().sum();
            assert!((s - 1.0).abs() < 1e-6, "filter {m} sums to {s}");
        }
        let mut lm = LogMel::new(&fe, 44100);
        let mut out = Vec::new();
        // Silence: log10(1 + 0) = 0 exactly.
        assert_eq!(lm.compute(&vec![0.0; 44100], &mut out), 44);
        assert!(out.iter().all(|&v| v == 0.0));
        // A steady 1 kHz cosine: zero padding leaves half of the first frame's window empty, so
        // the tone's band is clearly weaker there than mid-signal; reflect padding continues an
        // even signal exactly and keeps the first frame like the others.
        let x: Vec<f32> = (0..44100)
            .map(|i| {
                (0.5 * (2.0 * std::f64::consts::PI * 1000.0 * i as f64 / 44100.0).cos()) as f32
            })
            .collect();
        let drop_at_start = |fe: &FrontEnd| {
            let mut out = Vec::new();
            LogMel::new(fe, 44100).compute(&x, &mut out);
            let mid = &out[20 * 96..21 * 96];
            let band = (0..96).max_by(|&a, &b| mid[a].total_cmp(&mid[b])).unwrap();
            mid[band] - out[band]
        };
        let zero = drop_at_start(&fe);
        let reflect = drop_at_start(&FrontEnd {
            pad_mode: "reflect".into(),
            ..fe.clone()
        });
        assert!(
            zero > 0.25,
            "zero padding: first frame only {zero} below the middle"
        );
        assert!(
            reflect.abs() < 0.05,
            "reflect padding: first frame {reflect} off"
        );
    }
}
