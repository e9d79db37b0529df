//! Synthetic machine sounds, normal and faulty, deterministic by seed.
//!
//! earshot has no real recordings to test and tune on, so this module makes physically
//! plausible ones. Detection quality is later measured on real factory audio, so the sounds
//! aim to be varied (every machine id and every clip differs) and the faults to change the
//! *character* of the sound, not just its loudness: each clip is renormalised to a loudness
//! drawn independently of whether it contains a fault.
//!
//! What each sound models, and why:
//! - **Motor** (rotating machinery driving a gearbox): shaft fundamental from pole count, mains
//!   frequency and load-dependent slip; a harmonic series with irregular amplitudes (real
//!   spectra have a few standout orders from looseness and misalignment); gear mesh at
//!   teeth × shaft speed with sidebands at the input and output shaft rates (mesh force
//!   modulated by each shaft's run-out); magnetostrictive hum at 2× mains, which does not move
//!   with speed; housing-coloured broadband noise; a shaft-mounted cooling fan (turbulent
//!   broadband plus a weak blade-pass tone, as on fan-cooled motors, where it dominates above
//!   1 kHz); slow speed drift and amplitude modulation.
//! - **Fan**: blade-pass tone and harmonics with turbulence-driven phase jitter (fan tones are
//!   narrow bands, not lines) over broadband noise with an aerodynamic hump; the broadband is
//!   modulated by slow turbulence and by blade passing.
//! - **Pump** (reciprocating): a motor with mains hum drives strokes at a fraction of its
//!   speed; each cylinder's stroke is a burst of band-limited flow noise with a valve click at
//!   its start, over continuous flow noise.
//! - **Background** (room/plant): pink and brown noise, one to three distant machines (low
//!   tones, low-passed by distance) and, in most plants, occasional distant clanks, at a
//!   clip-dependent signal-to-background ratio of roughly 7–23 dB.
//!
//! Normal clips vary in load (speed a few %), tonal balance (±1.5 dB per component group),
//! background level and realisation, and overall loudness (±4 dB).
//!
//! Faults (see [`FaultKind`]) are gated at an onset time and scaled so that their energy after
//! the onset is `level_db` relative to the fault-free clip (machine plus background) over the
//! same span; [`FaultKind::SpeedChange`] instead bends the speed track (see its docs).
//!
//! Determinism: all randomness comes from xoshiro256++ streams derived from the seeds, one
//! stream per component, and all maths avoids platform-dependent libm functions (see
//! `dmath`), so the same arguments give bit-identical samples on every platform.

mod dmath;
mod dsp;
mod faults;
mod files;
mod machines;

pub use files::{
    DatasetOptions, DatasetSummary, StreamSummary, write_dataset, write_stream, write_wav,
};

use dmath::{db_to_amp, stream, uni};
use dsp::mean_square;
use std::fmt;
use std::str::FromStr;

/// Errors from writing synthetic audio; messages say what to change.
#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    #[error("invalid synth options: {0}")]
    Invalid(String),
    #[error("cannot create directory {path}: {source} (check permissions and free space)")]
    CreateDir {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write WAV file {path}: {source} (check permissions and free space)")]
    Wav {
        path: std::path::PathBuf,
        source: hound::Error,
    },
    #[error("cannot write manifest {path}: {source} (check permissions and free space)")]
    Manifest {
        path: std::path::PathBuf,
        source: csv::Error,
    },
}

/// Kinds of machine the generator can imitate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MachineKind {
    Motor,
    Fan,
    Pump,
}

impl MachineKind {
    pub const ALL: [MachineKind; 3] = [MachineKind::Motor, MachineKind::Fan, MachineKind::Pump];

    pub fn name(self) -> &'static str {
        match self {
            MachineKind::Motor => "motor",
            MachineKind::Fan => "fan",
            MachineKind::Pump => "pump",
        }
    }

    /// Faults that make physical sense on this kind of machine (cavitation needs liquid).
    pub fn faults(self) -> &'static [FaultKind] {
        use FaultKind::*;
        match self {
            MachineKind::Motor | MachineKind::Fan => {
                &[Bearing, Impact, Rub, SpeedChange, Imbalance]
            }
            MachineKind::Pump => &[Bearing, Impact, Cavitation, SpeedChange, Imbalance, Rub],
        }
    }
}

impl fmt::Display for MachineKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for MachineKind {
    type Err = SynthError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        MachineKind::ALL
            .into_iter()
            .find(|k| k.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                SynthError::Invalid(format!("unknown machine `{s}`: use motor, fan or pump"))
            })
    }
}

/// Kinds of fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FaultKind {
    /// Rolling-element bearing defect: impulses at the outer- or inner-race defect frequency
    /// ringing a 1.2–6 kHz structural resonance, amplitude-modulated by shaft rotation.
    Bearing,
    /// Loose parts knocking: sparse random transients ringing low structural modes.
    Impact,
    /// Rotor rubbing: friction-noise bursts once per revolution.
    Rub,
    /// Speed departs from normal: shifts by ±0.15·10^(level_db/20) of the speed (7.5 % at
    /// -6 dB) and surges around it; `level_db` sets the size of the departure, not an energy.
    SpeedChange,
    /// Mass imbalance: the 1x (and 2x) component grows and modulates the machine's sound.
    Imbalance,
    /// Pump cavitation: crackling broadband micro-impulses bunched in the suction phase.
    Cavitation,
}

impl FaultKind {
    pub const ALL: [FaultKind; 6] = [
        FaultKind::Bearing,
        FaultKind::Impact,
        FaultKind::Rub,
        FaultKind::SpeedChange,
        FaultKind::Imbalance,
        FaultKind::Cavitation,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Bearing => "bearing",
            FaultKind::Impact => "impact",
            FaultKind::Rub => "rub",
            FaultKind::SpeedChange => "speed_change",
            FaultKind::Imbalance => "imbalance",
            FaultKind::Cavitation => "cavitation",
        }
    }

    /// True when the fault is a sound added to the normal one (its level is an energy ratio);
    /// false for [`FaultKind::SpeedChange`], which changes the machine itself.
    pub fn is_additive(self) -> bool {
        self != FaultKind::SpeedChange
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for FaultKind {
    type Err = SynthError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let norm = s.replace('-', "_");
        FaultKind::ALL
            .into_iter()
            .find(|k| k.name().eq_ignore_ascii_case(&norm) || (norm.eq_ignore_ascii_case("speed") && *k == FaultKind::SpeedChange))
            .ok_or_else(|| {
                SynthError::Invalid(format!(
                    "unknown fault `{s}`: use bearing, impact, rub, speed-change, imbalance or cavitation"
                ))
            })
    }
}

/// A fault to mix into a clip.
#[derive(Clone, Debug, PartialEq)]
pub struct Fault {
    pub kind: FaultKind,
    /// Fault-to-normal energy ratio after the onset, in dB (see [`FaultKind::SpeedChange`]
    /// for its different meaning there).
    pub level_db: f32,
    /// Seconds from the start of the clip at which the fault begins.
    pub onset_s: f32,
}

/// One machine instance: its kind and every per-instance parameter, drawn from `id_seed`.
#[derive(Clone, Debug)]
pub struct Machine {
    kind: MachineKind,
    id_seed: u64,
    common: machines::Common,
    model: machines::Model,
}

/// Nominal parameters of a machine instance (at mid load), e.g. for tests that check the
/// spectrum and for demo captions. Frequencies in Hz; harmonic amplitudes are relative.
#[derive(Clone, Debug)]
pub struct MachineInfo {
    pub kind: MachineKind,
    pub id_seed: u64,
    pub shaft_hz: f32,
    pub mains_hz: f32,
    /// (order as a multiple of shaft speed, relative amplitude) of the speed-locked series.
    pub harmonics: Vec<(f32, f32)>,
    pub bearing_outer_ratio: f32,
    pub bearing_inner_ratio: f32,
    /// Main structural resonance that bearing defects ring.
    pub bearing_resonance_hz: f32,
    pub gear_mesh_hz: Option<f32>,
    pub blade_pass_hz: Option<f32>,
    pub stroke_hz: Option<f32>,
}

impl Machine {
    pub fn new(kind: MachineKind, id_seed: u64) -> Machine {
        let (common, model) = machines::draw(kind, id_seed);
        Machine {
            kind,
            id_seed,
            common,
            model,
        }
    }

    pub fn kind(&self) -> MachineKind {
        self.kind
    }

    pub fn id_seed(&self) -> u64 {
        self.id_seed
    }

    /// Name used in datasets, e.g. `motor_id03`.
    pub fn name(&self) -> String {
        format!("{}_id{:02}", self.kind.name(), self.id_seed)
    }

    pub fn info(&self) -> MachineInfo {
        let c = &self.common;
        let series = |parts: &[machines::Partial], mult: f64| {
            parts
                .iter()
                .enumerate()
                .map(|(k, p)| (((k + 1) as f64 * mult) as f32, p.amp as f32))
                .collect::<Vec<_>>()
        };
        let (harmonics, gear, bpf, stroke) = match &self.model {
            machines::Model::Motor(p) => (
                series(&p.harmonics, 1.0),
                Some(p.teeth as f64 * c.shaft_hz),
                None,
                None,
            ),
            machines::Model::Fan(p) => (
                series(&p.bpf, p.blades as f64),
                None,
                Some(p.blades as f64 * c.shaft_hz),
                None,
            ),
            machines::Model::Pump(p) => (
                series(&p.harmonics, 1.0),
                None,
                None,
                Some(p.stroke_ratio * c.shaft_hz),
            ),
        };
        MachineInfo {
            kind: self.kind,
            id_seed: self.id_seed,
            shaft_hz: c.shaft_hz as f32,
            mains_hz: c.mains_hz as f32,
            harmonics,
            bearing_outer_ratio: c.bearing.outer_ratio as f32,
            bearing_inner_ratio: c.bearing.inner_ratio as f32,
            bearing_resonance_hz: c.bearing.modes[0].0 as f32,
            gear_mesh_hz: gear.map(|v| v as f32),
            blade_pass_hz: bpf.map(|v| v as f32),
            stroke_hz: stroke.map(|v| v as f32),
        }
    }
}

/// A rendered clip with what a test or caption needs to know about it.
#[derive(Clone, Debug)]
pub struct Rendered {
    pub samples: Vec<f32>,
    /// Mean shaft speed of the clip's normal operation (before any speed fault).
    pub shaft_hz: f32,
    /// Mean shaft speed from the onset on (differs from `shaft_hz` for a speed change).
    pub fault_shaft_hz: Option<f32>,
    /// Repetition rate of a periodic fault (bearing defect frequency, once per rev for rub and
    /// imbalance).
    pub fault_rate_hz: Option<f32>,
    /// Output gain applied to the internal signal (for diagnostics).
    pub gain: f32,
    /// Peak absolute sample value (below 1, no clipping, except for a take rendered at a
    /// [`Gain::Given`] gain).
    pub peak: f32,
}

impl Rendered {
    /// Distance from the peak to full scale, in dB.
    pub fn headroom_db(&self) -> f32 {
        if self.peak > 0.0 {
            -20.0 * self.peak.log10()
        } else {
            f32::INFINITY
        }
    }
}

/// Peak ceiling: -1 dBFS, so 16-bit conversion and resampling never clip.
const PEAK_CEILING: f64 = 0.891;

/// How the output gain is chosen.
#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Gain {
    /// Clip loudness normalised on the whole clip (fault included): loudness gives no hint.
    Clip,
    /// Fixed microphone gain set from the fault-free signal: a fault makes it louder, as in
    /// a continuous recording.
    Fixed,
    /// A gain chosen earlier (by the first take of a long recording): every take of one
    /// recording is heard through the same microphone. No peak ceiling is applied: the WAV
    /// writer clamps, as a real converter would.
    Given(f64),
}

/// Where a rendering sits in a longer recording. A plain clip is one take whose base seed is
/// its own seed; a long stream is rendered as several takes (bounded memory) that share the
/// recording's base seed, so that they sound like the same machine in the same plant.
pub(crate) struct Take {
    /// Seed of the whole recording: the machine's load (mean speed), the loudness, the SNR
    /// and the fault's character come from it, so they do not jump from take to take.
    pub base_seed: u64,
    /// Fault onset relative to the take's first sample, in samples; negative when the fault
    /// began in an earlier take (it is then fully developed from the first sample), at or
    /// beyond the take's length when it has not begun yet.
    pub onset: i64,
    pub gain: Gain,
}

/// Deterministic: same arguments, same samples (bit-identical across runs and platforms).
pub fn render(
    machine: &Machine,
    fault: Option<&Fault>,
    seconds: f32,
    sample_rate: u32,
    clip_seed: u64,
) -> Vec<f32> {
    render_detailed(machine, fault, seconds, sample_rate, clip_seed).samples
}

/// [`render`] plus facts about the clip (speeds, fault rate, gain, peak).
pub fn render_detailed(
    machine: &Machine,
    fault: Option<&Fault>,
    seconds: f32,
    sample_rate: u32,
    clip_seed: u64,
) -> Rendered {
    render_inner(machine, fault, seconds, sample_rate, clip_seed, Gain::Clip)
}

/// One whole clip: a single take of `seconds`.
pub(crate) fn render_inner(
    machine: &Machine,
    fault: Option<&Fault>,
    seconds: f32,
    sample_rate: u32,
    clip_seed: u64,
    gain_mode: Gain,
) -> Rendered {
    let sr = sample_rate.max(1) as f64;
    let secs = if seconds.is_finite() {
        seconds.max(0.0) as f64
    } else {
        0.0
    };
    let n = (secs * sr).round() as usize;
    let onset = fault.map_or(n, |f| {
        let o = if f.onset_s.is_finite() {
            f.onset_s.max(0.0) as f64
        } else {
            secs
        };
        ((o * sr).round() as usize).min(n)
    });
    let take = Take {
        base_seed: clip_seed,
        onset: onset as i64,
        gain: gain_mode,
    };
    render_take(machine, fault, n, sample_rate, clip_seed, &take)
}

/// `n` samples of one take. `clip_seed` drives everything that varies within a recording
/// (noise, drift, events); `take.base_seed` what stays (see [`Take`]).
pub(crate) fn render_take(
    machine: &Machine,
    fault: Option<&Fault>,
    n: usize,
    sample_rate: u32,
    clip_seed: u64,
    take: &Take,
) -> Rendered {
    let sr = sample_rate.max(1) as f64;
    // Where the fault starts in this take (0 when it began earlier, n when not yet).
    let onset = take.onset.clamp(0, n as i64) as usize;
    let fault_seed = dmath::mix(take.base_seed, 0xFA17);

    let mut speed = machines::speed_track(&machine.common, n, sr, clip_seed, take.base_seed);
    let normal_shaft = speed.iter().sum::<f64>() / n.max(1) as f64;
    if let Some(f) = fault.filter(|f| f.kind == FaultKind::SpeedChange) {
        let factor = faults::speed_factor(f.level_db as f64, take.onset, n, sr, fault_seed);
        speed.iter_mut().zip(&factor).for_each(|(s, k)| *s *= k);
    }
    let st = machines::ClipState {
        sr,
        ref_hz: machine.common.shaft_hz,
        theta: machines::integrate(&speed, sr),
        speed,
    };
    let (mach, ref_rms) = machines::render_machine(machine, &st, clip_seed);
    let bg = machines::render_background(machine, n, sr, clip_seed);

    let mut r = stream(take.base_seed, 0x7001);
    let snr_db = machine.common.plant.snr_db + uni(&mut r, -3.0, 3.0);
    let loudness_db = uni(&mut r, -30.0, -22.0);
    let wb = ref_rms * db_to_amp(-snr_db);
    let mut signal: Vec<f64> = mach.iter().zip(&bg).map(|(m, b)| m + wb * b).collect();
    let normal_ms = mean_square(&signal);

    let mut fault_rate = None;
    if let Some(f) = fault.filter(|f| f.kind.is_additive() && onset < n) {
        let (mut fs, rate) =
            faults::render_additive(machine, f.kind, &st, &mach, onset, fault_seed);
        fault_rate = rate;
        // 10 ms raised-cosine fade-in from the onset; exactly zero before it. A fault that
        // began in an earlier take is fully on from the first sample.
        let ramp = if take.onset >= 0 {
            (0.01 * sr).max(1.0)
        } else {
            0.0
        };
        for (i, v) in fs.iter_mut().enumerate() {
            if i < onset {
                *v = 0.0;
            } else if ((i - onset) as f64) < ramp {
                let u = (i - onset) as f64 / ramp;
                *v *= 0.5 - 0.5 * dmath::cos_cycles(0.5 * u);
            }
        }
        let fault_ms = mean_square(&fs[onset..]);
        let target_ms = mean_square(&signal[onset..]) * db_to_amp(2.0 * f.level_db as f64);
        if fault_ms > 0.0 {
            let g = (target_ms / fault_ms).sqrt();
            signal.iter_mut().zip(&fs).for_each(|(s, v)| *s += g * v);
        }
    }
    let reference_ms = match take.gain {
        Gain::Clip => mean_square(&signal),
        Gain::Fixed => normal_ms,
        Gain::Given(_) => 0.0,
    };
    let mut gain = if let Gain::Given(g) = take.gain {
        g
    } else if reference_ms > 0.0 {
        db_to_amp(loudness_db) / reference_ms.sqrt()
    } else {
        1.0
    };
    let peak_in = signal.iter().fold(0.0f64, |a, v| a.max(v.abs()));
    if peak_in * gain > PEAK_CEILING && !matches!(take.gain, Gain::Given(_)) {
        gain = PEAK_CEILING / peak_in;
    }
    let samples: Vec<f32> = signal.iter().map(|v| (v * gain) as f32).collect();
    let peak = samples.iter().fold(0.0f32, |a, v| a.max(v.abs()));
    let mean_of = |s: &[f64]| {
        if s.is_empty() {
            0.0
        } else {
            s.iter().sum::<f64>() / s.len() as f64
        }
    };
    Rendered {
        samples,
        shaft_hz: normal_shaft as f32,
        fault_shaft_hz: fault
            .filter(|_| onset < n)
            .map(|_| mean_of(&st.speed[onset..]) as f32),
        fault_rate_hz: fault_rate.map(|v| v as f32),
        gain: gain as f32,
        peak,
    }
}
