//! The log-mel statistics scorer (`mel`): how far a window's log-mel frames lie from the
//! Gaussian of the normal audio's frames (Mahalanobis distance, averaged over the window).
//!
//! Why a second view beside the network's: the embedding is pooled (mean over frequency, max
//! over time) and was trained to tell sound-effect classes apart, so it is nearly blind to a
//! change of spectral balance that keeps the sound's character (a burner running lean, a
//! bearing adding a band of noise). The frames' joint statistics see exactly that, cost
//! microseconds per window and need nothing from the model. On the dev set the two views
//! fail on different clips, which is why the fused score (`fused`, [`Fusion`]) beats both.
//!
//! The model is `d + d*d` numbers whatever the amount of normal audio (d = mel bands): the
//! mean and the whitening matrix (inverse Cholesky factor of the shrunk covariance). Fitting
//! accumulates sums in f64, so it streams.

use serde::{Deserialize, Serialize};

pub const MEL: &str = "mel";
pub const FUSED: &str = "fused";

/// Most mel bands a profile's statistics may have (a bound on the profile file's size).
pub const MAX_DIM: usize = 512;

/// Covariance shrinkage toward its mean variance: keeps the inverse well conditioned when
/// some bands hardly vary (an empty top octave) without changing the well-measured ones.
pub const SHRINK: f64 = 1e-3;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum MelStatsError {
    #[error("log-mel statistics need at least {need} frames, got {got}")]
    TooFew { got: u64, need: u64 },
    #[error("log-mel statistics of {0} bands: must be 1..={MAX_DIM}")]
    Dim(usize),
    #[error("log-mel covariance is not positive definite (non-finite or constant input)")]
    NotPositive,
    #[error("log-mel statistics file has {got} values, expected {expected} for {dim} bands")]
    Size {
        got: usize,
        expected: usize,
        dim: usize,
    },
    #[error("log-mel statistics hold NaN or infinite values")]
    NonFinite,
}

/// Running sums of log-mel frames (f64): what a fit needs, in `d + d*d` numbers.
#[derive(Debug, Clone)]
pub struct Accum {
    dim: usize,
    n: u64,
    sum: Vec<f64>,
    /// Upper triangle used; `scatter[i*d + j]`, `j >= i`.
    scatter: Vec<f64>,
    /// The lowest [`frame_level`] added (+inf before any frame).
    min_level: f64,
}

/// A log-mel frame's level: the mean of its bands (monotone in the frame's power whatever the
/// front end's log).
pub fn frame_level(frame: &[f32]) -> f32 {
    if frame.is_empty() {
        return 0.0;
    }
    frame.iter().sum::<f32>() / frame.len() as f32
}

impl Accum {
    pub fn new(dim: usize) -> Self {
        Self {
            dim,
            n: 0,
            sum: vec![0.0; dim],
            scatter: vec![0.0; dim * dim],
            min_level: f64::INFINITY,
        }
    }

    /// The level of the quietest frame added ([`frame_level`]), if any.
    pub fn quietest(&self) -> Option<f32> {
        self.min_level.is_finite().then_some(self.min_level as f32)
    }

    pub fn frames(&self) -> u64 {
        self.n
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Adds row-major `frames x dim` log-mel values (a trailing partial frame is ignored).
    pub fn add(&mut self, logmel: &[f32]) {
        let d = self.dim;
        let mut x = vec![0f64; d];
        for f in logmel.chunks_exact(d) {
            self.min_level = self.min_level.min(f64::from(frame_level(f)));
            for (xi, v) in x.iter_mut().zip(f) {
                *xi = f64::from(*v);
            }
            for i in 0..d {
                self.sum[i] += x[i];
                let row = &mut self.scatter[i * d..(i + 1) * d];
                let xi = x[i];
                for j in i..d {
                    row[j] += xi * x[j];
                }
            }
            self.n += 1;
        }
    }

    /// `self - other` (the sums without another set of frames: leave-one-out models). The
    /// quietest level stays `self`'s (a minimum cannot be taken back out; a leave-out model
    /// gates silence at the whole audio's floor, as the final one does).
    pub fn minus(&self, other: &Accum) -> Accum {
        Accum {
            min_level: self.min_level,
            dim: self.dim,
            n: self.n.saturating_sub(other.n),
            sum: self
                .sum
                .iter()
                .zip(&other.sum)
                .map(|(a, b)| a - b)
                .collect(),
            scatter: self
                .scatter
                .iter()
                .zip(&other.scatter)
                .map(|(a, b)| a - b)
                .collect(),
        }
    }

    pub fn plus(&mut self, other: &Accum) {
        self.min_level = self.min_level.min(other.min_level);
        self.n += other.n;
        self.sum
            .iter_mut()
            .zip(&other.sum)
            .for_each(|(a, b)| *a += b);
        self.scatter
            .iter_mut()
            .zip(&other.scatter)
            .for_each(|(a, b)| *a += b);
    }

    /// The Gaussian of the frames added (shrunk covariance, [`SHRINK`]).
    pub fn fit(&self) -> Result<MelGauss, MelStatsError> {
        let d = self.dim;
        if d == 0 || d > MAX_DIM {
            return Err(MelStatsError::Dim(d));
        }
        let need = (2 * d) as u64;
        if self.n < need {
            return Err(MelStatsError::TooFew { got: self.n, need });
        }
        let n = self.n as f64;
        let mean: Vec<f64> = self.sum.iter().map(|s| s / n).collect();
        let mut cov = vec![0f64; d * d];
        for i in 0..d {
            for j in i..d {
                let c = self.scatter[i * d + j] / n - mean[i] * mean[j];
                cov[i * d + j] = c;
                cov[j * d + i] = c;
            }
        }
        let tr: f64 = (0..d).map(|i| cov[i * d + i]).sum::<f64>() / d as f64;
        if !(tr.is_finite() && tr > 0.0) {
            return Err(MelStatsError::NotPositive);
        }
        for i in 0..d {
            cov[i * d + i] += SHRINK * tr;
        }
        let l = cholesky(&cov, d).ok_or(MelStatsError::NotPositive)?;
        let w = lower_inverse(&l, d);
        Ok(MelGauss {
            dim: d,
            mean: mean.iter().map(|&v| v as f32).collect(),
            whiten: w.iter().map(|&v| v as f32).collect(),
            floor: self.quietest(),
        })
    }
}

/// Lower Cholesky factor `L` of a symmetric positive definite `a` (`a = L L^T`).
fn cholesky(a: &[f64], d: usize) -> Option<Vec<f64>> {
    let mut l = vec![0f64; d * d];
    for i in 0..d {
        for j in 0..=i {
            let s: f64 = (0..j).map(|k| l[i * d + k] * l[j * d + k]).sum();
            let v = a[i * d + j] - s;
            if i == j {
                if !(v > 0.0 && v.is_finite()) {
                    return None;
                }
                l[i * d + i] = v.sqrt();
            } else {
                l[i * d + j] = v / l[j * d + j];
            }
        }
    }
    Some(l)
}

/// Inverse of a lower-triangular matrix (forward substitution, column by column).
fn lower_inverse(l: &[f64], d: usize) -> Vec<f64> {
    let mut w = vec![0f64; d * d];
    for c in 0..d {
        for i in c..d {
            let s: f64 = (c..i).map(|k| l[i * d + k] * w[k * d + c]).sum();
            let rhs = if i == c { 1.0 } else { 0.0 };
            w[i * d + c] = (rhs - s) / l[i * d + i];
        }
    }
    w
}

/// A fitted frame Gaussian: `z = W (x - mean)` has identity covariance on normal frames.
#[derive(Debug, Clone, PartialEq)]
pub struct MelGauss {
    pub dim: usize,
    pub mean: Vec<f32>,
    /// Lower triangular, row-major `dim x dim`.
    pub whiten: Vec<f32>,
    /// Frames quieter than this ([`frame_level`]) are left out of a window's score: the
    /// quietest normal frame. "Silence is not a fault" per frame: a window straddling a
    /// machine stop holds frames of silence, each far from every normal frame, and would
    /// otherwise score as a fault. `None` (profiles learned before it was kept): every frame.
    pub floor: Option<f32>,
}

impl MelGauss {
    /// The window score: mean over its frames of the Mahalanobis distance. A mean, not a max:
    /// single frames of normal audio stray (a click, a gear change), a changed machine moves
    /// most frames; the clip score's top-k and the N-of-M rule then look for the worst windows.
    /// Frames below [`MelGauss::floor`] do not count; none left: no score.
    pub fn score(&self, logmel: &[f32]) -> Option<f32> {
        let d = self.dim;
        let mut x = vec![0f32; d];
        let (mut total, mut n) = (0f64, 0usize);
        for f in logmel.chunks_exact(d) {
            if self.floor.is_some_and(|fl| frame_level(f) < fl) {
                continue;
            }
            for ((xi, v), m) in x.iter_mut().zip(f).zip(&self.mean) {
                *xi = v - m;
            }
            let mut q = 0f64;
            for i in 0..d {
                let row = &self.whiten[i * d..i * d + i + 1];
                let z: f32 = row.iter().zip(&x[..=i]).map(|(a, b)| a * b).sum();
                q += f64::from(z) * f64::from(z);
            }
            total += q.sqrt();
            n += 1;
        }
        (n > 0).then(|| (total / n as f64) as f32)
    }

    /// `mean` then `whiten`, little-endian f32: the profile's `melstats.f32`.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.mean
            .iter()
            .chain(&self.whiten)
            .flat_map(|v| v.to_le_bytes())
            .collect()
    }

    /// Reads [`MelGauss::to_bytes`] for `dim` bands, refusing a wrong size or non-finite values
    /// (the floor is kept in the manifest: set it afterwards).
    pub fn from_bytes(bytes: &[u8], dim: usize) -> Result<Self, MelStatsError> {
        if dim == 0 || dim > MAX_DIM {
            return Err(MelStatsError::Dim(dim));
        }
        let expected = dim + dim * dim;
        if bytes.len() != expected * 4 {
            return Err(MelStatsError::Size {
                got: bytes.len() / 4,
                expected,
                dim,
            });
        }
        let v: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        if v.iter().any(|x| !x.is_finite()) {
            return Err(MelStatsError::NonFinite);
        }
        Ok(Self {
            dim,
            mean: v[..dim].to_vec(),
            whiten: v[dim..].to_vec(),
            floor: None,
        })
    }
}

/// Mean and spread of one scorer's leave-one-clip-out scores on the normal audio.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Norm {
    pub mean: f32,
    pub std: f32,
}

impl Norm {
    /// From held-out scores; `None` without at least two distinct ones.
    pub fn of(scores: &[f32]) -> Option<Self> {
        if scores.len() < 2 {
            return None;
        }
        let n = scores.len() as f64;
        let mean = scores.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
        let var = scores
            .iter()
            .map(|&v| (f64::from(v) - mean).powi(2))
            .sum::<f64>()
            / (n - 1.0);
        let std = var.sqrt();
        (std > 0.0 && std.is_finite()).then_some(Norm {
            mean: mean as f32,
            std: std as f32,
        })
    }

    pub fn z(&self, v: f32) -> f32 {
        (v - self.mean) / self.std
    }
}

/// The fused score: the mean of the k-NN and mel scores, each in units of its own spread on
/// held-out normal audio. Normalising by the *held-out* (leave-one-clip-out) scores, not the
/// scores of the memory against itself, puts both on the scale a new normal clip has, so
/// neither dominates by its units.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Fusion {
    pub knn: Norm,
    pub mel: Norm,
}

impl Fusion {
    pub fn score(&self, knn: Option<f32>, mel: Option<f32>) -> Option<f32> {
        Some(0.5 * (self.knn.z(knn?) + self.mel.z(mel?)))
    }

    /// The fused score of a window whose log-mel counts as normal (a sound marked normal by
    /// feedback, see [`mel_ceiling`]): its `mel` half at the held-out mean (z = 0).
    pub fn score_normal_mel(&self, knn: Option<f32>) -> Option<f32> {
        Some(0.5 * self.knn.z(knn?))
    }
}

/// How far above an event's peak `mel` score a window near that event's feedback rows may
/// score and still count as the sound marked normal (relative).
pub const FEEDBACK_MEL_MARGIN: f32 = 0.1;

/// The `mel` score up to which a window whose nearest normal neighbour is a feedback row
/// counts as that sound: the event's peak when it was marked normal, plus
/// [`FEEDBACK_MEL_MARGIN`].
///
/// Why: feedback adds the event's windows to the k-NN memory, but the `mel` Gaussian is a
/// model of all normal frames that a few seconds more barely move, so without this a sound
/// marked normal would keep its `mel` distance and `fused` would fire on it again. The
/// nearest neighbour says "this is that sound"; the ceiling says "and no stranger than it was".
pub fn mel_ceiling(peak: f32) -> f32 {
    peak * (1.0 + FEEDBACK_MEL_MARGIN)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn frames(rng: &mut impl Rng, n: usize, d: usize, tilt: f32) -> Vec<f32> {
        // Correlated bands: a shared level plus per-band noise, and an optional spectral tilt.
        let mut v = Vec::with_capacity(n * d);
        for _ in 0..n {
            let common: f32 = rng.random_range(-1.0..1.0);
            for j in 0..d {
                v.push(common + 0.1 * rng.random_range(-1.0f32..1.0) + tilt * j as f32 / d as f32);
            }
        }
        v
    }

    #[test]
    fn normal_frames_score_near_sqrt_d_and_a_tilted_spectrum_far_above() {
        let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(1);
        let d = 16;
        let mut acc = Accum::new(d);
        acc.add(&frames(&mut rng, 4000, d, 0.0));
        let g = acc.fit().expect("fit");
        let normal = g.score(&frames(&mut rng, 200, d, 0.0)).expect("score");
        // E|z| for a d-dim standard normal is about sqrt(d - 0.5); uniform noise is close.
        assert!((normal - (d as f32 - 0.5).sqrt()).abs() < 1.0, "{normal}");
        // A tilt of 0.5 across the bands is small beside the shared level (+-1) but, less its
        // mean (which looks like a level change), some 10 standard deviations of the per-band
        // noise the covariance knows.
        let tilted = g.score(&frames(&mut rng, 200, d, 0.5)).expect("score");
        assert!(tilted > 2.0 * normal, "{tilted} vs {normal}");
    }

    #[test]
    fn frames_quieter_than_any_normal_one_do_not_count() {
        let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(3);
        let d = 16;
        let train = frames(&mut rng, 4000, d, 0.0);
        let mut acc = Accum::new(d);
        acc.add(&train);
        // The floor is the quietest training frame's mean band value, computed here apart.
        let min = train
            .chunks_exact(d)
            .map(|f| f.iter().map(|&v| f64::from(v)).sum::<f64>() / d as f64)
            .fold(f64::INFINITY, f64::min);
        let g = acc.fit().expect("fit");
        assert!((f64::from(g.floor.expect("floor")) - min).abs() < 1e-5);
        // A window whose last quarter is silence (a machine stopping) scores as its sound.
        let sound = frames(&mut rng, 30, d, 0.0);
        let mut stopping = sound.clone();
        // Silence sits far below any sound in a log domain (log10(1 + 0) = 0 against ~2-3 for
        // aisfx's front end; a dB floor of -100 against -40 for the PANNs ones).
        stopping.extend(std::iter::repeat_n(-50.0f32, 10 * d));
        let (a, b) = (
            g.score(&sound).expect("score"),
            g.score(&stopping).expect("score"),
        );
        assert_eq!(a, b);
        // Without the floor (profiles learned before it was kept) the silence dominates.
        let old = MelGauss {
            floor: None,
            ..g.clone()
        };
        assert!(old.score(&stopping).expect("score") > 3.0 * a);
        // Nothing but silence: no score.
        assert_eq!(g.score(&vec![-50.0; 10 * d]), None);
    }

    #[test]
    fn leave_one_out_sums_equal_a_fresh_fit_and_bytes_round_trip() {
        let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(2);
        let d = 8;
        let (a, b) = (frames(&mut rng, 300, d, 0.0), frames(&mut rng, 200, d, 0.1));
        let (mut all, mut only_b, mut only_a) = (Accum::new(d), Accum::new(d), Accum::new(d));
        all.add(&a);
        all.add(&b);
        only_b.add(&b);
        only_a.add(&a);
        let loo = all.minus(&only_b).fit().expect("fit");
        let fresh = only_a.fit().expect("fit");
        for (x, y) in loo.whiten.iter().zip(&fresh.whiten) {
            assert!((x - y).abs() < 1e-3 * (1.0 + y.abs()), "{x} vs {y}");
        }
        // The floor lives in the manifest, not in the bytes.
        let back = MelGauss::from_bytes(&fresh.to_bytes(), d).expect("read");
        assert_eq!(
            back,
            MelGauss {
                floor: None,
                ..fresh.clone()
            }
        );
        assert!(matches!(
            MelGauss::from_bytes(&fresh.to_bytes()[4..], d),
            Err(MelStatsError::Size { .. })
        ));
        assert!(matches!(
            Accum::new(d).fit(),
            Err(MelStatsError::TooFew { .. })
        ));
    }
}
