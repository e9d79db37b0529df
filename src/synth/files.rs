//! Writing synthetic audio to disk: single WAVs, DCASE-style labelled datasets, and long
//! recordings with a fault that starts part-way through.

use super::{
    Fault, Gain, Machine, MachineKind, SynthError, Take, dmath, render_inner, render_take,
};
use std::path::{Path, PathBuf};

/// Sample rates the generator accepts (telephone-band up to studio rates).
const RATES: std::ops::RangeInclusive<u32> = 8_000..=192_000;
/// Longest clip or stream, to stop typos from filling the disk (one hour).
const MAX_SECONDS: f32 = 3600.0;

fn check_audio(seconds: f32, sample_rate: u32) -> Result<(), SynthError> {
    if !RATES.contains(&sample_rate) {
        return Err(SynthError::Invalid(format!(
            "sample rate {sample_rate} Hz is out of range: use 8000 to 192000 (e.g. 16000)"
        )));
    }
    if !(seconds.is_finite() && seconds > 0.0 && seconds <= MAX_SECONDS) {
        return Err(SynthError::Invalid(format!(
            "duration {seconds} s is out of range: use more than 0 and at most {MAX_SECONDS} seconds"
        )));
    }
    Ok(())
}

fn check_fault(fault: &Fault, seconds: f32) -> Result<(), SynthError> {
    if !(fault.level_db.is_finite() && (-60.0..=20.0).contains(&fault.level_db)) {
        return Err(SynthError::Invalid(format!(
            "fault level {} dB is out of range: use -60 to 20 dB (e.g. -6)",
            fault.level_db
        )));
    }
    if !(fault.onset_s.is_finite() && fault.onset_s >= 0.0 && fault.onset_s < seconds) {
        return Err(SynthError::Invalid(format!(
            "fault onset {} s must be at least 0 and before the end of the recording ({seconds} s)",
            fault.onset_s
        )));
    }
    Ok(())
}

fn create_dir(path: &Path) -> Result<(), SynthError> {
    std::fs::create_dir_all(path).map_err(|source| SynthError::CreateDir {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes 16-bit PCM mono. Samples are clamped to [-1, 1] (NaN becomes silence) so a bad
/// caller cannot produce a wrapped-around click.
pub fn write_wav(path: &Path, samples: &[f32], sample_rate: u32) -> Result<(), SynthError> {
    let mut out = WavOut::create(path, sample_rate)?;
    out.write(samples)?;
    out.finish()
}

/// A 16-bit mono WAV written block by block (see [`write_wav`] for the sample conversion).
struct WavOut {
    path: PathBuf,
    w: hound::WavWriter<std::io::BufWriter<std::fs::File>>,
}

impl WavOut {
    fn create(path: &Path, sample_rate: u32) -> Result<WavOut, SynthError> {
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let w = hound::WavWriter::create(path, spec).map_err(|source| SynthError::Wav {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(WavOut {
            path: path.to_path_buf(),
            w,
        })
    }

    fn err(&self, source: hound::Error) -> SynthError {
        SynthError::Wav {
            path: self.path.clone(),
            source,
        }
    }

    fn write(&mut self, samples: &[f32]) -> Result<(), SynthError> {
        let mut w16 = self.w.get_i16_writer(samples.len() as u32);
        for &s in samples {
            let v = if s.is_nan() { 0.0 } else { s.clamp(-1.0, 1.0) };
            w16.write_sample((v * 32767.0).round() as i16);
        }
        w16.flush().map_err(|e| self.err(e))
    }

    fn finish(self) -> Result<(), SynthError> {
        let path = self.path;
        self.w
            .finalize()
            .map_err(|source| SynthError::Wav { path, source })
    }
}

/// A labelled dataset in DCASE style.
#[derive(Clone, Debug)]
pub struct DatasetOptions {
    /// (kind, id seed) per machine; the id seed fixes the machine's character.
    pub machines: Vec<(MachineKind, u64)>,
    /// Normal training clips per machine.
    pub train_clips: usize,
    /// Test clips per machine *and label*: this many normal and this many anomalous.
    pub test_clips: usize,
    pub seconds: f32,
    pub sample_rate: u32,
    /// Varies every clip; machines stay the same for the same id seeds.
    pub seed: u64,
    /// Fault levels cycled through the anomalous clips (fault kinds cycle independently).
    pub fault_levels_db: Vec<f32>,
}

impl Default for DatasetOptions {
    /// Small enough for tests: 3 machines × (10 train + 6 normal + 6 anomalous) × 5 s at
    /// 16 kHz. Levels from subtle to clear: with a plain log-band-energy detector (mean and
    /// spread per band, z-scored against train; 3 s clips) AUCs at -15 dB ranged from ~0.45
    /// (imbalance, mostly below 50 Hz) and ~0.6–0.8 (bearing, speed change) to ~1.0 (impact,
    /// rub, cavitation); at -5 dB nearly everything was clear except speed changes on pumps.
    fn default() -> Self {
        DatasetOptions {
            machines: vec![
                (MachineKind::Motor, 1),
                (MachineKind::Fan, 2),
                (MachineKind::Pump, 3),
            ],
            train_clips: 10,
            test_clips: 6,
            seconds: 5.0,
            sample_rate: 16_000,
            seed: 0,
            fault_levels_db: vec![-15.0, -10.0, -5.0],
        }
    }
}

/// What [`write_dataset`] wrote.
#[derive(Clone, Debug)]
pub struct DatasetSummary {
    pub manifest: PathBuf,
    pub machines: usize,
    pub normal_clips: usize,
    pub anomalous_clips: usize,
    pub seconds_of_audio: f64,
    /// Smallest distance from any clip's peak to full scale.
    pub min_headroom_db: f32,
}

/// One manifest row; column order is the manifest header.
#[derive(serde::Serialize)]
struct Row<'a> {
    path: String,
    machine: &'a str,
    split: &'static str,
    label: &'static str,
    /// The fault's name on anomalous rows: DCASE's column name, which `eval --catalog` reads.
    anomaly_type: &'static str,
    level_db: Option<f32>,
}

fn level_tag(db: f32) -> String {
    let sign = if db < 0.0 { "m" } else { "p" };
    format!("{sign}{:02}db", db.abs().round() as i64)
}

/// Writes `<dir>/<machine>/{train,test}/*.wav` and `<dir>/manifest.csv` with header
/// `path,machine,split,label,anomaly_type,level_db` (paths relative to the manifest, `/`-separated).
/// Anomalous clips have the fault from the start (onset 0) and are renormalised to the same
/// loudness distribution as normal ones.
pub fn write_dataset(dir: &Path, opts: &DatasetOptions) -> Result<DatasetSummary, SynthError> {
    check_audio(opts.seconds, opts.sample_rate)?;
    if opts.machines.is_empty() {
        return Err(SynthError::Invalid(
            "no machines given: list at least one".into(),
        ));
    }
    if opts.test_clips > 0 && opts.fault_levels_db.is_empty() {
        return Err(SynthError::Invalid(
            "no fault levels given: list at least one (e.g. -6)".into(),
        ));
    }
    for &l in &opts.fault_levels_db {
        check_fault(
            &Fault {
                kind: super::FaultKind::Impact,
                level_db: l,
                onset_s: 0.0,
            },
            opts.seconds,
        )?;
    }
    let machines: Vec<Machine> = opts
        .machines
        .iter()
        .map(|&(k, id)| Machine::new(k, id))
        .collect();
    let mut names: Vec<String> = machines.iter().map(Machine::name).collect();
    names.sort();
    names.dedup();
    if names.len() != machines.len() {
        return Err(SynthError::Invalid(
            "the same machine (kind and id) is listed twice".into(),
        ));
    }
    create_dir(dir)?;
    let manifest = dir.join("manifest.csv");
    let csv_err = |source| SynthError::Manifest {
        path: manifest.clone(),
        source,
    };
    let mut out = csv::Writer::from_path(&manifest).map_err(csv_err)?;
    let mut sum = DatasetSummary {
        manifest: manifest.clone(),
        machines: machines.len(),
        normal_clips: 0,
        anomalous_clips: 0,
        seconds_of_audio: 0.0,
        min_headroom_db: f32::INFINITY,
    };
    for (mi, m) in machines.iter().enumerate() {
        let name = m.name();
        for split in ["train", "test"] {
            create_dir(&dir.join(&name).join(split))?;
        }
        let mut jobs: Vec<(&'static str, Option<Fault>, String, u64)> = Vec::new();
        for i in 0..opts.train_clips {
            jobs.push(("train", None, format!("normal_{i:04}.wav"), 0));
        }
        for i in 0..opts.test_clips {
            jobs.push(("test", None, format!("normal_{i:04}.wav"), 1));
        }
        let kinds = m.kind().faults();
        for i in 0..opts.test_clips {
            let kind = kinds[i % kinds.len()];
            let level_db = opts.fault_levels_db[i % opts.fault_levels_db.len()];
            let file = format!("anomaly_{}_{}_{i:04}.wav", kind.name(), level_tag(level_db));
            jobs.push((
                "test",
                Some(Fault {
                    kind,
                    level_db,
                    onset_s: 0.0,
                }),
                file,
                2,
            ));
        }
        for (idx, (split, fault, file, group)) in jobs.into_iter().enumerate() {
            let clip_seed = dmath::mix(
                dmath::mix(opts.seed, mi as u64 + 1),
                (group << 32) | idx as u64,
            );
            let rendered = render_inner(
                m,
                fault.as_ref(),
                opts.seconds,
                opts.sample_rate,
                clip_seed,
                Gain::Clip,
            );
            let rel = format!("{name}/{split}/{file}");
            write_wav(&dir.join(&rel), &rendered.samples, opts.sample_rate)?;
            sum.min_headroom_db = sum.min_headroom_db.min(rendered.headroom_db());
            sum.seconds_of_audio += rendered.samples.len() as f64 / opts.sample_rate as f64;
            if fault.is_some() {
                sum.anomalous_clips += 1;
            } else {
                sum.normal_clips += 1;
            }
            out.serialize(Row {
                path: rel,
                machine: &name,
                split,
                label: if fault.is_some() { "anomaly" } else { "normal" },
                anomaly_type: fault.as_ref().map_or("", |f| f.kind.name()),
                level_db: fault.as_ref().map(|f| f.level_db),
            })
            .map_err(csv_err)?;
        }
    }
    out.flush().map_err(|e| csv_err(e.into()))?;
    Ok(sum)
}

/// What [`write_stream`] wrote.
#[derive(Clone, Debug)]
pub struct StreamSummary {
    pub path: PathBuf,
    pub seconds: f64,
    pub onset_s: f32,
    pub shaft_hz: f32,
    pub fault_shaft_hz: Option<f32>,
    pub fault_rate_hz: Option<f32>,
    pub headroom_db: f32,
}

/// Streams up to this long are rendered as one take (their samples are what they always were);
/// longer ones in takes, so that an hour costs the memory of a take, not of the hour.
const WHOLE_STREAM_MAX_S: f32 = 120.0;
/// Length of one take of a long stream.
const TAKE_S: f64 = 30.0;
/// Overlap between consecutive takes, blended with an equal-power crossfade (the takes are
/// different noise of the same machine, so power, not amplitude, must stay constant).
const SEAM_S: f64 = 1.0;

/// One continuous recording: normal operation, then the fault from `fault.onset_s` on. The
/// gain is fixed from the fault-free sound, as with a real microphone, so a fault that adds
/// energy makes the recording louder from the onset.
///
/// Up to two minutes it is one take; longer recordings are rendered take by take
/// ([`TAKE_S`] each, crossfaded over [`SEAM_S`]) and written as they are made, so memory does
/// not grow with the duration. All takes share the recording's seed for what a microphone
/// would hear as constant (the machine's load, loudness, SNR, the fault's character) and the
/// first take's gain.
pub fn write_stream(
    path: &Path,
    machine: &Machine,
    fault: &Fault,
    seconds: f32,
    sample_rate: u32,
    seed: u64,
) -> Result<StreamSummary, SynthError> {
    check_audio(seconds, sample_rate)?;
    check_fault(fault, seconds)?;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_dir(parent)?;
    }
    if seconds > WHOLE_STREAM_MAX_S {
        return write_stream_in_takes(path, machine, fault, seconds, sample_rate, seed);
    }
    let r = render_inner(
        machine,
        Some(fault),
        seconds,
        sample_rate,
        seed,
        Gain::Fixed,
    );
    write_wav(path, &r.samples, sample_rate)?;
    Ok(StreamSummary {
        path: path.to_path_buf(),
        seconds: r.samples.len() as f64 / sample_rate as f64,
        onset_s: fault.onset_s,
        shaft_hz: r.shaft_hz,
        fault_shaft_hz: r.fault_shaft_hz,
        fault_rate_hz: r.fault_rate_hz,
        headroom_db: r.headroom_db(),
    })
}

fn write_stream_in_takes(
    path: &Path,
    machine: &Machine,
    fault: &Fault,
    seconds: f32,
    sample_rate: u32,
    seed: u64,
) -> Result<StreamSummary, SynthError> {
    let sr = sample_rate as f64;
    let total = (seconds as f64 * sr).round() as usize;
    let onset = (fault.onset_s as f64 * sr).round() as usize;
    let take_len = (TAKE_S * sr).round() as usize;
    let seam = (SEAM_S * sr).round() as usize;
    let mut out = WavOut::create(path, sample_rate)?;
    let mut gain = Gain::Fixed;
    let mut tail: Vec<f32> = Vec::new();
    let mut shaft_hz = None;
    let (mut fault_shaft_hz, mut fault_rate_hz) = (None, None);
    let mut peak = 0.0f32;
    let mut start = 0usize;
    for k in 0u64.. {
        let left = total - start;
        // A remainder shorter than half a take joins the last take instead of becoming a
        // tiny one of its own.
        let last = left <= take_len + take_len / 2;
        let n = if last { left } else { take_len + seam };
        let take = Take {
            base_seed: seed,
            onset: onset as i64 - start as i64,
            gain,
        };
        let clip_seed = if k == 0 { seed } else { dmath::mix(seed, k) };
        let mut r = render_take(machine, Some(fault), n, sample_rate, clip_seed, &take);
        gain = Gain::Given(r.gain as f64);
        shaft_hz.get_or_insert(r.shaft_hz);
        if fault_shaft_hz.is_none() && onset < start + n {
            fault_shaft_hz = r.fault_shaft_hz;
            fault_rate_hz = r.fault_rate_hz;
        }
        let x = &mut r.samples;
        for (i, (v, t)) in x.iter_mut().zip(&tail).enumerate() {
            let u = (i as f64 + 0.5) / tail.len() as f64;
            let a = std::f64::consts::FRAC_PI_2 * u;
            *v = (*t as f64 * a.cos() + *v as f64 * a.sin()) as f32;
        }
        let keep = if last { n } else { take_len };
        peak = x[..keep].iter().fold(peak, |p, v| p.max(v.abs()));
        out.write(&x[..keep])?;
        if last {
            break;
        }
        tail = x[take_len..].to_vec();
        start += take_len;
    }
    out.finish()?;
    Ok(StreamSummary {
        path: path.to_path_buf(),
        seconds: total as f64 / sr,
        onset_s: fault.onset_s,
        shaft_hz: shaft_hz.unwrap_or(0.0),
        fault_shaft_hz,
        fault_rate_hz,
        headroom_db: if peak > 0.0 {
            -20.0 * peak.log10()
        } else {
            f32::INFINITY
        },
    })
}
