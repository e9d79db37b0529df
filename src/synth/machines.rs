//! Per-instance machine parameters and the normal (fault-free) sound of a clip.
//!
//! Every machine is a set of physically motivated components locked to one shaft-angle track
//! (`ClipState::theta`), so that speed drift, load changes and speed faults move all
//! speed-related components together, while mains-locked hum stays put, as on a real machine.

use super::dmath::{
    db_to_amp, exp, exp_interval, gauss, int, log_uni, sin_cycles, slow_noise, stream, uni,
};
use super::dsp::{Biquad, add_ring, brown_noise, normalise_rms, pink_noise, white_noise};
use super::{Machine, MachineKind};
use rand::Rng;
use rand_xoshiro::Xoshiro256PlusPlus;

/// A sinusoidal partial: amplitude and starting phase (cycles).
#[derive(Clone, Debug)]
pub(crate) struct Partial {
    pub amp: f64,
    pub phase: f64,
}

/// Rolling-element bearing geometry expressed as defect-frequency ratios to shaft speed, and
/// the structural modes that defect impacts ring.
#[derive(Clone, Debug)]
pub(crate) struct Bearing {
    pub outer_ratio: f64,
    pub inner_ratio: f64,
    pub modes: [(f64, f64); 2],
}

#[derive(Clone, Debug)]
pub(crate) struct Distant {
    f0: f64,
    partials: Vec<Partial>,
    cutoff: f64,
    level_db: f64,
    am_rate: f64,
}

/// The room or plant around the machine: what the microphone hears besides it.
#[derive(Clone, Debug)]
pub(crate) struct Plant {
    pink_db: f64,
    brown_db: f64,
    distant: Vec<Distant>,
    clank_rate: f64,
    clank_modes: [(f64, f64); 2],
    pub snr_db: f64,
}

#[derive(Clone, Debug)]
pub(crate) struct Common {
    /// Shaft speed at mid load (motor shaft for pumps).
    pub shaft_hz: f64,
    /// Fractional speed drop from no load to full load (induction-motor slip).
    pub slip_span: f64,
    pub mains_hz: f64,
    pub bearing: Bearing,
    pub knock_modes: [(f64, f64); 3],
    pub rub_band: (f64, f64),
    drift_depth: f64,
    drift_rate: f64,
    am_depth: f64,
    am_rate: f64,
    housing: [(f64, f64); 2],
    pub plant: Plant,
}

#[derive(Clone, Debug)]
pub(crate) struct Motor {
    pub harmonics: Vec<Partial>,
    hum: Vec<Partial>,
    pub teeth: u32,
    mesh: Vec<Partial>,
    sidebands: Vec<(f64, Partial)>,
    w_hum_db: f64,
    w_gear_db: f64,
    w_noise_db: f64,
    /// Shaft-mounted cooling fan (totally enclosed fan-cooled motors): blades, aerodynamic
    /// hump (centre, Q), level.
    cool_blades: u32,
    cool_hump: (f64, f64),
    w_cool_db: f64,
}

#[derive(Clone, Debug)]
pub(crate) struct Fan {
    pub blades: u32,
    pub bpf: Vec<Partial>,
    shaft: Partial,
    hum: Vec<Partial>,
    hump: (f64, f64),
    turb_depth: f64,
    turb_rate: f64,
    jitter: f64,
    w_tone_db: f64,
    w_hum_db: f64,
}

#[derive(Clone, Debug)]
pub(crate) struct Pump {
    /// Stroke rate as a fraction of motor shaft speed (gear/belt reduction).
    pub stroke_ratio: f64,
    pub cylinders: u32,
    band: (f64, f64),
    attack: f64,
    decay: f64,
    click_mode: (f64, f64),
    click_db: f64,
    pub harmonics: Vec<Partial>,
    hum: Vec<Partial>,
    w_pulse_db: f64,
    w_flow_db: f64,
    w_hum_db: f64,
}

#[derive(Clone, Debug)]
pub(crate) enum Model {
    Motor(Motor),
    Fan(Fan),
    Pump(Pump),
}

impl Model {
    /// Phases (cycles) of the machine's own 1x and 2x components, so that an imbalance adds
    /// to them in phase (the 1x grows) rather than at a random angle.
    pub fn shaft_phases(&self) -> (f64, f64) {
        match self {
            Model::Motor(Motor { harmonics: h, .. }) | Model::Pump(Pump { harmonics: h, .. }) => {
                (h[0].phase, h.get(1).map_or(0.0, |p| p.phase))
            }
            Model::Fan(f) => (f.shaft.phase, f.shaft.phase),
        }
    }
}

fn partials(rng: &mut Xoshiro256PlusPlus, n: usize, decay: f64, spread_db: f64) -> Vec<Partial> {
    (1..=n)
        .map(|k| Partial {
            amp: exp(-decay * super::dmath::ln(k as f64))
                * db_to_amp(uni(rng, -spread_db, spread_db)),
            phase: rng.random::<f64>(),
        })
        .collect()
}

fn mode(rng: &mut Xoshiro256PlusPlus, f: (f64, f64), decay: (f64, f64)) -> (f64, f64) {
    (log_uni(rng, f.0, f.1), log_uni(rng, decay.0, decay.1))
}

pub(crate) fn draw(kind: MachineKind, id_seed: u64) -> (Common, Model) {
    let mut r = stream(id_seed, 0x1000 + kind as u64);
    let mains_hz = if r.random::<f64>() < 0.5 { 50.0 } else { 60.0 };
    let shaft_hz = match kind {
        // Induction motors: 2, 4 or 6 poles, a few % slip.
        MachineKind::Motor | MachineKind::Pump => {
            let poles = [2.0, 4.0, 6.0][int(&mut r, 0, 2) as usize];
            2.0 * mains_hz / poles * uni(&mut r, 0.96, 0.985)
        }
        // Fans run slower (belt drive or VFD).
        MachineKind::Fan => log_uni(&mut r, 8.0, 24.0),
    };
    let balls = int(&mut r, 7, 13) as f64;
    let d_ratio = uni(&mut r, 0.15, 0.3) * (1.0 - uni(&mut r, 0.0, 0.04));
    let bearing = Bearing {
        outer_ratio: balls / 2.0 * (1.0 - d_ratio),
        inner_ratio: balls / 2.0 * (1.0 + d_ratio),
        modes: [
            mode(&mut r, (2500.0, 6000.0), (0.0006, 0.002)),
            mode(&mut r, (1200.0, 2500.0), (0.001, 0.003)),
        ],
    };
    let knock_modes = [
        mode(&mut r, (150.0, 500.0), (0.02, 0.08)),
        mode(&mut r, (500.0, 1500.0), (0.01, 0.04)),
        mode(&mut r, (1500.0, 4000.0), (0.003, 0.012)),
    ];
    let rub_band = (log_uni(&mut r, 1500.0, 5000.0), uni(&mut r, 1.0, 3.0));
    let housing = [
        mode(&mut r, (300.0, 1500.0), (1.5, 5.0)),
        mode(&mut r, (1500.0, 5000.0), (1.5, 5.0)),
    ];
    let n_distant = int(&mut r, 1, 3) as usize;
    let distant = (0..n_distant)
        .map(|_| Distant {
            f0: log_uni(&mut r, 12.0, 60.0),
            partials: {
                let k = int(&mut r, 3, 8) as usize;
                partials(&mut r, k, 0.8, 5.0)
            },
            cutoff: log_uni(&mut r, 200.0, 900.0),
            level_db: uni(&mut r, -14.0, -4.0),
            am_rate: uni(&mut r, 0.1, 0.6),
        })
        .collect();
    let plant = Plant {
        pink_db: uni(&mut r, -6.0, 0.0),
        brown_db: uni(&mut r, -10.0, -2.0),
        distant,
        // Most plants have occasional distant transients, so that in normal clips a transient
        // does not by itself mean a fault.
        clank_rate: if r.random::<f64>() < 0.3 {
            0.0
        } else {
            uni(&mut r, 0.05, 0.4)
        },
        clank_modes: [
            mode(&mut r, (150.0, 600.0), (0.03, 0.1)),
            mode(&mut r, (600.0, 1500.0), (0.02, 0.05)),
        ],
        snr_db: uni(&mut r, 10.0, 20.0),
    };
    let common = Common {
        shaft_hz,
        slip_span: uni(&mut r, 0.02, 0.05),
        mains_hz,
        bearing,
        knock_modes,
        rub_band,
        drift_depth: uni(&mut r, 0.001, 0.004),
        drift_rate: uni(&mut r, 0.2, 0.8),
        am_depth: uni(&mut r, 0.03, 0.12),
        am_rate: uni(&mut r, 0.3, 2.0),
        housing,
        plant,
    };
    let hum = |r: &mut Xoshiro256PlusPlus| partials(r, 3, 1.2, 4.0);
    let model = match kind {
        MachineKind::Motor => {
            let top = (2500.0 / shaft_hz).floor().clamp(6.0, 40.0) as usize;
            let n = int(&mut r, 6, top.min(24) as u32) as usize;
            let decay = uni(&mut r, 0.5, 1.3);
            let mut harmonics = partials(&mut r, n, decay, 6.0);
            // Irregular: one or two harmonics stand out (looseness, misalignment, vane passing).
            for _ in 0..int(&mut r, 1, 2) {
                let k = int(&mut r, 1, n as u32 - 1) as usize;
                harmonics[k].amp *= db_to_amp(uni(&mut r, 3.0, 9.0));
            }
            let teeth = int(&mut r, 13, 41);
            let mesh = partials(&mut r, 2, 1.0, 3.0);
            let mut sidebands = Vec::new();
            let out_ratio = teeth as f64 / int(&mut r, 37, 97) as f64;
            for n in 1..=3 {
                let a = uni(&mut r, 0.15, 0.45);
                let base = exp(n as f64 * super::dmath::ln(a));
                for (mult, sign) in [(1.0, 1.0), (1.0, -1.0), (out_ratio, 1.0), (out_ratio, -1.0)] {
                    sidebands.push((
                        sign * n as f64 * mult,
                        Partial {
                            amp: base * uni(&mut r, 0.5, 1.0),
                            phase: r.random::<f64>(),
                        },
                    ));
                }
            }
            Model::Motor(Motor {
                harmonics,
                hum: hum(&mut r),
                teeth,
                mesh,
                sidebands,
                w_hum_db: uni(&mut r, -16.0, -6.0),
                w_gear_db: uni(&mut r, -18.0, -8.0),
                w_noise_db: uni(&mut r, -14.0, -6.0),
                cool_blades: int(&mut r, 6, 12),
                cool_hump: (log_uni(&mut r, 800.0, 3000.0), uni(&mut r, 0.5, 1.0)),
                w_cool_db: uni(&mut r, -12.0, -3.0),
            })
        }
        MachineKind::Fan => Model::Fan(Fan {
            blades: int(&mut r, 4, 12),
            bpf: {
                let decay = uni(&mut r, 0.8, 1.6);
                partials(&mut r, 6, decay, 4.0)
            },
            shaft: Partial {
                amp: uni(&mut r, 0.05, 0.2),
                phase: r.random::<f64>(),
            },
            hum: hum(&mut r),
            hump: (log_uni(&mut r, 250.0, 1500.0), uni(&mut r, 0.5, 1.2)),
            turb_depth: uni(&mut r, 0.1, 0.3),
            turb_rate: uni(&mut r, 2.0, 8.0),
            jitter: uni(&mut r, 0.01, 0.05),
            w_tone_db: uni(&mut r, -10.0, -3.0),
            w_hum_db: uni(&mut r, -24.0, -14.0),
        }),
        MachineKind::Pump => Model::Pump(Pump {
            stroke_ratio: 1.0 / uni(&mut r, 8.0, 20.0),
            cylinders: int(&mut r, 1, 3),
            band: (log_uni(&mut r, 300.0, 1500.0), uni(&mut r, 0.7, 1.5)),
            attack: uni(&mut r, 0.02, 0.06),
            decay: uni(&mut r, 0.06, 0.15),
            click_mode: mode(&mut r, (1000.0, 3000.0), (0.003, 0.008)),
            click_db: uni(&mut r, -12.0, -4.0),
            harmonics: partials(&mut r, 6, 1.0, 5.0),
            hum: hum(&mut r),
            w_pulse_db: 0.0,
            w_flow_db: uni(&mut r, -12.0, -6.0),
            w_hum_db: uni(&mut r, -10.0, -3.0),
        }),
    };
    (common, model)
}

/// The operating state of one clip: instantaneous shaft speed and accumulated shaft angle.
pub(crate) struct ClipState {
    pub sr: f64,
    /// Nominal speed, for band-limit decisions: they must not depend on the clip's actual
    /// speed, or a speed fault would change which partials exist before its onset.
    pub ref_hz: f64,
    pub speed: Vec<f64>,
    pub theta: Vec<f64>,
}

impl ClipState {
    pub fn n(&self) -> usize {
        self.speed.len()
    }
}

/// Speed track for a clip: load sets the slip (a few %), plus a slow random drift.
/// Shaft speed per sample. The mean load comes from `load_seed` (the recording's), the slow
/// drift from `clip_seed` (the take's); for a plain clip they are the same seed.
pub(crate) fn speed_track(
    c: &Common,
    n: usize,
    sr: f64,
    clip_seed: u64,
    load_seed: u64,
) -> Vec<f64> {
    let mut r = stream(clip_seed, 0x2001);
    let own_load = r.random::<f64>();
    let load = if load_seed == clip_seed {
        own_load
    } else {
        stream(load_seed, 0x2001).random::<f64>()
    };
    let base = c.shaft_hz * (1.0 + c.slip_span * (0.5 - load));
    let drift = slow_noise(&mut r, n, sr, c.drift_rate);
    drift
        .iter()
        .map(|d| base * (1.0 + c.drift_depth * d))
        .collect()
}

pub(crate) fn integrate(speed: &[f64], sr: f64) -> Vec<f64> {
    let mut acc = 0.0;
    speed
        .iter()
        .map(|s| {
            let t = acc;
            acc += s / sr;
            t
        })
        .collect()
}

/// Adds `w * Σ a_k sin(k·mult·θ + φ_k)` normalised to unit RMS (analytically, so the level
/// does not depend on the speed track), skipping partials above `fmax` at nominal speed.
fn add_series(out: &mut [f64], st: &ClipState, parts: &[Partial], mult: f64, w: f64, fmax: f64) {
    let norm = (parts.iter().map(|p| p.amp * p.amp).sum::<f64>() / 2.0).sqrt();
    if norm == 0.0 {
        return;
    }
    for (k, p) in parts.iter().enumerate() {
        let m = (k + 1) as f64 * mult;
        if m * st.ref_hz > fmax {
            continue;
        }
        let a = w * p.amp / norm;
        for (o, th) in out.iter_mut().zip(&st.theta) {
            *o += a * sin_cycles(m * th + p.phase);
        }
    }
}

/// Fixed-frequency partials (mains hum), unit RMS times `w`.
fn add_fixed(out: &mut [f64], sr: f64, parts: &[Partial], f0: f64, w: f64) {
    let norm = (parts.iter().map(|p| p.amp * p.amp).sum::<f64>() / 2.0).sqrt();
    for (k, p) in parts.iter().enumerate() {
        let f = (k + 1) as f64 * f0;
        if f > 0.45 * sr {
            continue;
        }
        let a = w * p.amp / norm;
        for (i, o) in out.iter_mut().enumerate() {
            *o += a * sin_cycles(f * i as f64 / sr + p.phase);
        }
    }
}

/// Broadband machine noise coloured by two housing resonances and a gentle low-pass tilt.
fn housing_noise(c: &Common, r: &mut Xoshiro256PlusPlus, n: usize, sr: f64) -> Vec<f64> {
    let w = white_noise(r, n);
    let mut out = pink_noise(r, n, sr);
    for &(f, q) in &c.housing {
        let mut b = w.clone();
        Biquad::bandpass(f, q, sr).run(&mut b);
        normalise_rms(&mut b);
        out.iter_mut().zip(&b).for_each(|(o, v)| *o += 0.8 * v);
    }
    normalise_rms(&mut out);
    out
}

/// The machine's own sound for a clip (no background), at nominal unit level scale.
/// Returns the samples and the reference RMS the component weights add up to.
pub(crate) fn render_machine(m: &Machine, st: &ClipState, clip_seed: u64) -> (Vec<f64>, f64) {
    let n = st.n();
    let sr = st.sr;
    let c = &m.common;
    let fmax = 0.45 * sr;
    let mut r = stream(clip_seed, 0x3001);
    let mut tonal = vec![0.0; n];
    let mut noise = vec![0.0; n];
    // Clip-to-clip variation of the tonal balance (load-dependent), ±1.5 dB per partial group.
    let mut rv = stream(clip_seed, 0x3002);
    let mut var = || db_to_amp(uni(&mut rv, -1.5, 1.5));
    let mut weights_sq = 0.0;
    match &m.model {
        Model::Motor(p) => {
            add_series(&mut tonal, st, &p.harmonics, 1.0, var(), fmax.min(3000.0));
            let wg = db_to_amp(p.w_gear_db) * var();
            let mesh_mult = p.teeth as f64;
            add_series(&mut tonal, st, &p.mesh, mesh_mult, wg, fmax);
            // Sidebands: mesh ± n·(input or output shaft), amplitude relative to the mesh tone.
            let mesh_norm = (p.mesh.iter().map(|q| q.amp * q.amp).sum::<f64>() / 2.0).sqrt();
            for (off, q) in &p.sidebands {
                let mult = mesh_mult + off;
                let a = wg * q.amp * p.mesh[0].amp / mesh_norm;
                for (o, th) in tonal.iter_mut().zip(&st.theta) {
                    *o += a * sin_cycles(mult * th + q.phase);
                }
            }
            add_fixed(
                &mut tonal,
                sr,
                &p.hum,
                2.0 * c.mains_hz,
                db_to_amp(p.w_hum_db) * var(),
            );
            weights_sq += 1.0 + db_to_amp(2.0 * p.w_gear_db) + db_to_amp(2.0 * p.w_hum_db);
            let hn = housing_noise(c, &mut r, n, sr);
            let wn = db_to_amp(p.w_noise_db) * var();
            noise.iter_mut().zip(&hn).for_each(|(o, v)| *o += wn * v);
            weights_sq += db_to_amp(2.0 * p.w_noise_db);
            // Cooling fan: turbulent broadband that fluctuates, plus a weak blade-pass tone.
            // It dominates many real motors above 1 kHz and keeps that band from being quiet.
            let mut rf = stream(clip_seed, 0x3004);
            let mut cool = white_noise(&mut rf, n);
            Biquad::bandpass(p.cool_hump.0.min(fmax), p.cool_hump.1, sr).run(&mut cool);
            normalise_rms(&mut cool);
            let turb_rate = uni(&mut rf, 3.0, 8.0);
            let turb = slow_noise(&mut rf, n, sr, turb_rate);
            let wc = db_to_amp(p.w_cool_db) * var();
            let blades = p.cool_blades as f64;
            for i in 0..n {
                let bpm = 1.0 + 0.2 * sin_cycles(blades * st.theta[i]);
                noise[i] += wc * cool[i] * (1.0 + 0.3 * turb[i]) * bpm;
            }
            let bpf = [Partial {
                amp: 1.0,
                phase: rf.random::<f64>(),
            }];
            add_series(&mut tonal, st, &bpf, blades, wc * 0.3, fmax);
            weights_sq += db_to_amp(2.0 * p.w_cool_db) * 1.09;
        }
        Model::Fan(p) => {
            // Blade-pass tones jitter in phase with the turbulence: narrowband, not pure lines.
            let jit = slow_noise(&mut r, n, sr, 6.0);
            let bp = p.blades as f64;
            let norm = (p.bpf.iter().map(|q| q.amp * q.amp).sum::<f64>() / 2.0).sqrt();
            let wt = db_to_amp(p.w_tone_db) * var();
            for (k, q) in p.bpf.iter().enumerate() {
                let m = (k + 1) as f64 * bp;
                if m * c.shaft_hz > fmax {
                    continue;
                }
                let a = wt * q.amp / norm;
                for i in 0..n {
                    tonal[i] += a * sin_cycles(m * (st.theta[i] + p.jitter * jit[i]) + q.phase);
                }
            }
            add_series(
                &mut tonal,
                st,
                std::slice::from_ref(&p.shaft),
                1.0,
                wt * 0.3,
                fmax,
            );
            add_fixed(
                &mut tonal,
                sr,
                &p.hum,
                2.0 * c.mains_hz,
                db_to_amp(p.w_hum_db),
            );
            weights_sq += db_to_amp(2.0 * p.w_tone_db) * 1.09 + db_to_amp(2.0 * p.w_hum_db);
            // Broadband: pink plus an aerodynamic hump, modulated by turbulence and blade passing.
            let mut bb = housing_noise(c, &mut r, n, sr);
            let mut hump = white_noise(&mut r, n);
            Biquad::bandpass(p.hump.0, p.hump.1, sr).run(&mut hump);
            normalise_rms(&mut hump);
            bb.iter_mut().zip(&hump).for_each(|(o, h)| *o += 1.5 * h);
            normalise_rms(&mut bb);
            let turb = slow_noise(&mut r, n, sr, p.turb_rate);
            for i in 0..n {
                let bpm = 1.0 + 0.15 * sin_cycles(bp * st.theta[i]);
                noise[i] = bb[i] * (1.0 + p.turb_depth * turb[i]) * bpm;
            }
            weights_sq += 1.0;
        }
        Model::Pump(p) => {
            add_series(
                &mut tonal,
                st,
                &p.harmonics,
                1.0,
                db_to_amp(-8.0) * var(),
                fmax,
            );
            add_fixed(
                &mut tonal,
                sr,
                &p.hum,
                2.0 * c.mains_hz,
                db_to_amp(p.w_hum_db) * var(),
            );
            weights_sq += db_to_amp(-16.0) + db_to_amp(2.0 * p.w_hum_db);
            // Pulsating flow: band-limited noise bursts, one per cylinder per stroke.
            let mut burst = white_noise(&mut r, n);
            Biquad::bandpass(p.band.0, p.band.1, sr).run(&mut burst);
            normalise_rms(&mut burst);
            let cyl = p.cylinders as f64;
            let wp = db_to_amp(p.w_pulse_db) * var();
            let mut prev = 0.0f64;
            // Own stream: the number of clicks depends on speed, and must not shift the
            // random numbers of later components (a speed fault would leak before its onset).
            let mut rc = stream(clip_seed, 0x3003);
            let click_amp = db_to_amp(p.click_db) * wp * 3.0;
            for i in 0..n {
                let sp = st.theta[i] * p.stroke_ratio * cyl; // pulses so far
                let ph = sp - sp.floor();
                let env = if ph < p.attack {
                    ph / p.attack
                } else {
                    exp(-(ph - p.attack) / p.decay)
                };
                noise[i] += wp * 1.6 * env * burst[i];
                // Valve click when a new pulse starts, at the exact crossing time.
                if i > 0 && sp.floor() > prev.floor() {
                    let t0 = (i - 1) as f64 + (sp.floor() - prev) / (sp - prev);
                    let a = click_amp * db_to_amp(uni(&mut rc, -3.0, 0.0));
                    add_ring(&mut noise, t0, a, p.click_mode.0, p.click_mode.1, sr);
                }
                prev = sp;
            }
            weights_sq += db_to_amp(2.0 * p.w_pulse_db);
            let hn = housing_noise(c, &mut r, n, sr);
            let wf = db_to_amp(p.w_flow_db);
            noise.iter_mut().zip(&hn).for_each(|(o, v)| *o += wf * v);
            weights_sq += db_to_amp(2.0 * p.w_flow_db);
        }
    }
    // Slow amplitude modulation of the tonal part (load fluctuation, beating with structure).
    let am = slow_noise(&mut r, n, sr, c.am_rate);
    let out = tonal
        .iter()
        .zip(&noise)
        .zip(&am)
        .map(|((t, nz), a)| t * (1.0 + c.am_depth * a) + nz)
        .collect();
    (out, weights_sq.sqrt())
}

/// Room/plant background for a clip at unit RMS.
pub(crate) fn render_background(m: &Machine, n: usize, sr: f64, clip_seed: u64) -> Vec<f64> {
    let p = &m.common.plant;
    let mut r = stream(clip_seed, 0x4001);
    let mut out = pink_noise(&mut r, n, sr);
    let wp = db_to_amp(p.pink_db);
    out.iter_mut().for_each(|v| *v *= wp);
    let brown = brown_noise(&mut r, n, sr);
    let wb = db_to_amp(p.brown_db);
    out.iter_mut().zip(&brown).for_each(|(o, b)| *o += wb * b);
    for d in &p.distant {
        let f0 = d.f0 * (1.0 + 0.02 * uni(&mut r, -1.0, 1.0));
        let drift = slow_noise(&mut r, n, sr, 0.3);
        let speed: Vec<f64> = drift.iter().map(|x| f0 * (1.0 + 0.003 * x)).collect();
        let st = ClipState {
            sr,
            ref_hz: d.f0,
            theta: integrate(&speed, sr),
            speed,
        };
        let mut s = vec![0.0; n];
        add_series(&mut s, &st, &d.partials, 1.0, 1.0, d.cutoff * 2.0);
        let mut lp = Biquad::lowpass(d.cutoff, 0.707, sr);
        let am = slow_noise(&mut r, n, sr, d.am_rate);
        let w = db_to_amp(d.level_db + uni(&mut r, -3.0, 3.0));
        for ((o, v), a) in out.iter_mut().zip(&s).zip(&am) {
            *o += w * lp.tick(*v) * (1.0 + 0.3 * a);
        }
    }
    if p.clank_rate > 0.0 {
        let mut t = exp_interval(&mut r, p.clank_rate);
        while t * sr < n as f64 {
            let a = db_to_amp(uni(&mut r, -12.0, 0.0)) * 2.0;
            for &(f, dec) in &p.clank_modes {
                add_ring(
                    &mut out,
                    t * sr,
                    a * (0.5 + 0.5 * gauss(&mut r).abs()),
                    f,
                    dec,
                    sr,
                );
            }
            t += exp_interval(&mut r, p.clank_rate);
        }
    }
    normalise_rms(&mut out);
    out
}
