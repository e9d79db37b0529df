//! Fault sounds. Additive faults return a raw fault signal that the caller gates at the onset
//! and scales to the requested fault-to-normal energy ratio; a speed change instead bends the
//! shaft speed track, so every speed-locked component moves with it.

use super::FaultKind;
use super::Machine;
use super::dmath::{cos_cycles, db_to_amp, exp_interval, gauss, log_uni, sin_cycles, stream, uni};
use super::dsp::{Biquad, add_ring, normalise_rms, white_noise};
use super::machines::{ClipState, Model};
use rand::Rng;

/// Fractional sample times at which `ratio * theta + offset` crosses an integer: the instants
/// of events locked to shaft angle (one per revolution for ratio 1, bearing defect hits, ...).
fn crossings(theta: &[f64], ratio: f64, offset: f64) -> Vec<f64> {
    let mut out = Vec::new();
    let Some(first) = theta.first() else {
        return out;
    };
    let mut prev = ratio * first + offset;
    for (i, th) in theta.iter().enumerate().skip(1) {
        let cur = ratio * th + offset;
        let k = cur.floor();
        if k > prev.floor() {
            out.push((i - 1) as f64 + (k - prev) / (cur - prev));
        }
        prev = cur;
    }
    out
}

fn mean(x: &[f64]) -> f64 {
    x.iter().sum::<f64>() / x.len().max(1) as f64
}

/// Speed multiplier for a speed-change fault: after the onset the speed moves smoothly (0.5 s,
/// inertia) by ±d and surges around the new speed at a slow rate. `d = 0.15·10^(level/20)`, so
/// -6 dB is a 7.5 % departure, well outside the few % of normal load variation; -18 dB (1.9 %)
/// stays inside it and is meant to be hard.
///
/// `onset` is in samples from the first one and may be negative (a fault that began before
/// this take is past its ramp).
pub(crate) fn speed_factor(level_db: f64, onset: i64, n: usize, sr: f64, seed: u64) -> Vec<f64> {
    let mut r = stream(seed, 0x5001);
    let d = 0.15 * db_to_amp(level_db);
    let dir = if r.random::<f64>() < 0.5 { -1.0 } else { 1.0 };
    let surge_hz = uni(&mut r, 0.2, 1.0);
    (0..n)
        .map(|i| {
            let from_onset = i as i64 - onset;
            if from_onset < 0 {
                return 1.0;
            }
            let t = from_onset as f64 / sr;
            let u = (t / 0.5).min(1.0);
            let ramp = u * u * (3.0 - 2.0 * u);
            1.0 + ramp * (dir * d + d / 3.0 * sin_cycles(surge_hz * t))
        })
        .collect()
}

/// Raw (unscaled) additive fault signal over the whole clip and, when it repeats at a
/// defined rate, that rate in Hz. Only samples from `onset` on are used by the caller.
pub(crate) fn render_additive(
    m: &Machine,
    kind: FaultKind,
    st: &ClipState,
    machine_sig: &[f64],
    onset: usize,
    seed: u64,
) -> (Vec<f64>, Option<f64>) {
    let n = st.n();
    let sr = st.sr;
    let c = &m.common;
    let fmax = 0.42 * sr;
    let mut r = stream(seed, 0x6000 + kind as u64);
    let mut out = vec![0.0; n];
    let mean_speed = mean(&st.speed[onset.min(n.saturating_sub(1))..]);
    match kind {
        FaultKind::Bearing => {
            // Each rolling element hitting a spall is an impulse ringing the bearing housing's
            // high-frequency modes; an inner-race defect turns with the shaft through the load
            // zone, so its hits are strongly modulated once per revolution.
            let inner = r.random::<f64>() < 0.5;
            let b = &c.bearing;
            let (ratio, depth) = if inner {
                (b.inner_ratio, 0.85)
            } else {
                (b.outer_ratio, 0.3)
            };
            let zone = r.random::<f64>();
            let period = sr / (ratio * mean_speed);
            for t0 in crossings(&st.theta, ratio, r.random::<f64>()) {
                let th = st.theta[t0 as usize];
                let am = 1.0 - depth + depth * (0.5 + 0.5 * cos_cycles(th - zone));
                let a = am * (1.0 + 0.2 * gauss(&mut r)).max(0.2);
                // Rolling elements slip a little: ~1 % timing jitter.
                let t = t0 + 0.01 * period * gauss(&mut r);
                add_ring(&mut out, t, a, b.modes[0].0.min(fmax), b.modes[0].1, sr);
                add_ring(
                    &mut out,
                    t,
                    0.4 * a,
                    b.modes[1].0.min(fmax),
                    b.modes[1].1,
                    sr,
                );
            }
            (out, Some(ratio * mean_speed))
        }
        FaultKind::Impact => {
            // Loose parts knocking: sparse, irregular, each ringing the machine's low structural
            // modes with a short bright attack.
            let rate = log_uni(&mut r, 0.5, 3.0);
            let mut t = onset as f64 / sr + uni(&mut r, 0.02, 1.0 / rate);
            while t * sr < n as f64 {
                let a = db_to_amp(uni(&mut r, -9.0, 0.0));
                for (j, &(f, dec)) in c.knock_modes.iter().enumerate() {
                    let w = [1.0, 0.7, 0.4][j] * uni(&mut r, 0.5, 1.0);
                    add_ring(&mut out, t * sr, a * w, f.min(fmax), dec, sr);
                }
                t += exp_interval(&mut r, rate).max(0.05);
            }
            (out, None)
        }
        FaultKind::Rub => {
            // A rotor touching a seal or guard once per revolution: a burst of high-frequency
            // friction noise over a fraction of the turn, with varying contact pressure.
            let contact = r.random::<f64>();
            let width = uni(&mut r, 0.1, 0.3);
            let revs = st.theta.last().copied().unwrap_or(0.0).ceil() as usize + 2;
            let press: Vec<f64> = (0..revs)
                .map(|_| {
                    if r.random::<f64>() < 0.2 {
                        0.0
                    } else {
                        uni(&mut r, 0.4, 1.0)
                    }
                })
                .collect();
            let mut hiss = white_noise(&mut r, n);
            let mut bp = Biquad::bandpass(c.rub_band.0.min(fmax), c.rub_band.1, sr);
            let mut hp = Biquad::highpass(1000.0_f64.min(fmax), 0.7, sr);
            for v in hiss.iter_mut() {
                let x = *v;
                *v = bp.tick(x) * 2.0 + hp.tick(x) * 0.5;
            }
            for i in 0..n {
                let rel = st.theta[i] - contact;
                let rev = rel.floor();
                let u = (rel - rev) / width;
                if u < 1.0 {
                    let s = sin_cycles(0.5 * u);
                    let p = press[(rev.max(-1.0) + 1.0) as usize % revs];
                    out[i] = hiss[i] * s * s * p;
                }
            }
            (out, Some(mean_speed))
        }
        FaultKind::Imbalance => {
            // Mass imbalance: the once-per-revolution force grows (1x, some 2x), and the
            // vibrating structure modulates the machine's own sound at shaft rate.
            let (p1, p2) = m.model.shaft_phases();
            let p3 = r.random::<f64>();
            let mut am: Vec<f64> = machine_sig
                .iter()
                .zip(&st.theta)
                .map(|(v, th)| v * sin_cycles(th + p3))
                .collect();
            normalise_rms(&mut am);
            for i in 0..n {
                let th = st.theta[i];
                out[i] = 0.8 * 1.414 * sin_cycles(th + p1)
                    + 0.35 * 1.414 * sin_cycles(2.0 * th + p2)
                    + 0.5 * am[i];
            }
            (out, Some(mean_speed))
        }
        FaultKind::Cavitation => {
            // Vapour bubbles collapsing: dense random micro-impulses, heavy-tailed in amplitude,
            // bright, and bunched in the low-pressure (suction) part of each cycle.
            let rate = log_uni(&mut r, 300.0, 1500.0);
            let (cycle_ratio, narrow) = match &m.model {
                Model::Pump(p) => (p.stroke_ratio * p.cylinders as f64, 0.8),
                _ => (1.0, 0.4),
            };
            let phase0 = r.random::<f64>();
            let mut imp = vec![0.0; n];
            for (v, th) in imp.iter_mut().zip(&st.theta) {
                let cyc = 0.5 + 0.5 * cos_cycles(cycle_ratio * th + phase0);
                let p = rate / sr * (1.0 - narrow + narrow * 2.0 * cyc * cyc);
                if r.random::<f64>() < p {
                    // Log-normal amplitudes: most collapses are faint, a few are loud cracks.
                    let a = super::dmath::exp(0.95 * gauss(&mut r));
                    *v = if r.random::<f64>() < 0.5 { -a } else { a };
                }
            }
            let mut hp = Biquad::highpass(1500.0_f64.min(fmax), 0.7, sr);
            let f_ring = log_uni(&mut r, 3000.0, 7000.0).min(fmax);
            let mut ring = Biquad::bandpass(f_ring, 4.0, sr);
            for i in 0..n {
                let h = hp.tick(imp[i]);
                out[i] = h + 1.5 * ring.tick(imp[i]);
            }
            (out, None)
        }
        FaultKind::SpeedChange => (out, None),
    }
}
