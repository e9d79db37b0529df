//! The synthetic machine-sound generator: determinism, sane output, a manifest that matches
//! the files, and physics checked with an FFT (harmonics where the parameters say, speed
//! faults move them, bearing faults ring the resonance at the defect rate, fault levels and
//! onsets as asked).

use earshot::synth::{
    self, DatasetOptions, Fault, FaultKind, Machine, MachineKind, render, render_detailed,
};
use realfft::RealFftPlanner;
use std::collections::BTreeMap;
use std::path::Path;

const SR: u32 = 16_000;

/// Magnitude spectrum (Hann window) and bin width in Hz.
fn spectrum(x: &[f32], sr: u32) -> (Vec<f64>, f64) {
    let n = x.len();
    let mut buf: Vec<f64> = x
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let w = 0.5 - 0.5 * (std::f64::consts::TAU * i as f64 / n as f64).cos();
            v as f64 * w
        })
        .collect();
    let fft = RealFftPlanner::<f64>::new().plan_fft_forward(n);
    let mut out = fft.make_output_vec();
    fft.process(&mut buf, &mut out).unwrap();
    (out.iter().map(|c| c.norm()).collect(), sr as f64 / n as f64)
}

fn bin(f: f64, df: f64) -> usize {
    (f / df).round() as usize
}

/// (frequency, magnitude) of the largest bin in [lo, hi] Hz.
fn peak_in(spec: &[f64], df: f64, lo: f64, hi: f64) -> (f64, f64) {
    let (a, b) = (bin(lo, df), bin(hi, df).min(spec.len() - 1));
    (a..=b)
        .map(|i| (i as f64 * df, spec[i]))
        .fold((0.0, 0.0), |m, p| if p.1 > m.1 { p } else { m })
}

fn median_in(spec: &[f64], df: f64, lo: f64, hi: f64) -> f64 {
    let (a, b) = (bin(lo, df), bin(hi, df).min(spec.len() - 1));
    let mut v: Vec<f64> = spec[a..=b].to_vec();
    v.sort_by(|x, y| x.partial_cmp(y).unwrap());
    v[v.len() / 2]
}

fn energy(x: &[f32]) -> f64 {
    x.iter().map(|&v| v as f64 * v as f64).sum()
}

fn db(x: f64) -> f64 {
    10.0 * x.log10()
}

fn small_opts(seed: u64) -> DatasetOptions {
    DatasetOptions {
        machines: vec![(MachineKind::Motor, 1), (MachineKind::Pump, 7)],
        train_clips: 2,
        test_clips: 3,
        seconds: 1.5,
        sample_rate: SR,
        seed,
        fault_levels_db: vec![-12.0, -6.0],
    }
}

fn read_tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p
                    .strip_prefix(dir)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/");
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

#[test]
fn same_seed_gives_identical_files_and_another_seed_differs() {
    let (a, b, c) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    synth::write_dataset(a.path(), &small_opts(5)).unwrap();
    synth::write_dataset(b.path(), &small_opts(5)).unwrap();
    synth::write_dataset(c.path(), &small_opts(6)).unwrap();
    let (ta, tb, tc) = (
        read_tree(a.path()),
        read_tree(b.path()),
        read_tree(c.path()),
    );
    assert_eq!(ta.len(), 2 * (2 + 3 + 3) + 1);
    assert_eq!(ta, tb, "same seed must give byte-identical files");
    assert_eq!(ta.keys().collect::<Vec<_>>(), tc.keys().collect::<Vec<_>>());
    let differing = ta
        .iter()
        .filter(|(k, v)| k.ends_with(".wav") && tc[*k] != **v)
        .count();
    assert_eq!(
        differing, 16,
        "every clip must change with the dataset seed"
    );
}

#[test]
fn machine_ids_and_clip_seeds_vary_the_sound() {
    let m1 = Machine::new(MachineKind::Motor, 1);
    let m2 = Machine::new(MachineKind::Motor, 2);
    let (i1, i2) = (m1.info(), m2.info());
    assert!(i1.harmonics != i2.harmonics || i1.shaft_hz != i2.shaft_hz);
    let a = render(&m1, None, 1.0, SR, 1);
    let b = render(&m1, None, 1.0, SR, 2);
    assert_eq!(a, render(&m1, None, 1.0, SR, 1));
    assert_ne!(a, b);
}

#[test]
fn output_is_finite_unclipped_and_loudness_does_not_reveal_faults() {
    for kind in MachineKind::ALL {
        for id in [1, 2] {
            let m = Machine::new(kind, id);
            let normal = render_detailed(&m, None, 2.0, SR, 11);
            for &fk in kind.faults() {
                for level in [-12.0, 0.0] {
                    let f = Fault {
                        kind: fk,
                        level_db: level,
                        onset_s: 0.0,
                    };
                    let r = render_detailed(&m, Some(&f), 2.0, SR, 11);
                    assert_eq!(r.samples.len(), 32_000);
                    assert!(
                        r.samples.iter().all(|v| v.is_finite()),
                        "{kind} {fk}: NaN/inf"
                    );
                    assert!(
                        r.peak < 0.9 && r.headroom_db() > 0.9,
                        "{kind} {fk} {level}: peak {}",
                        r.peak
                    );
                    let (rn, rf) = (energy(&normal.samples), energy(&r.samples));
                    // Same clip seed, fault present from the start: same loudness unless the
                    // peak ceiling had to lower it.
                    let limited = r.peak > 0.89 || normal.peak > 0.89;
                    if !limited {
                        assert!(
                            (db(rf / rn)).abs() < 0.01,
                            "{kind} {fk} {level}: {} dB",
                            db(rf / rn)
                        );
                    }
                    assert!(rf > 0.0 && (db(rf / rn)).abs() < 3.0);
                }
            }
        }
    }
}

#[test]
fn manifest_matches_the_files() {
    let dir = tempfile::tempdir().unwrap();
    let opts = small_opts(9);
    let sum = synth::write_dataset(dir.path(), &opts).unwrap();
    assert_eq!(
        (sum.normal_clips, sum.anomalous_clips, sum.machines),
        (10, 6, 2)
    );
    assert!(sum.min_headroom_db > 0.9);
    let text = std::fs::read_to_string(dir.path().join("manifest.csv")).unwrap();
    assert_eq!(
        text.lines().next().unwrap(),
        "path,machine,split,label,anomaly_type,level_db"
    );
    let mut rdr = csv::Reader::from_path(dir.path().join("manifest.csv")).unwrap();
    let mut seen = Vec::new();
    let mut counts: BTreeMap<(String, String, String), usize> = BTreeMap::new();
    for row in rdr.records() {
        let row = row.unwrap();
        let (path, machine, split, label, fault, level) =
            (&row[0], &row[1], &row[2], &row[3], &row[4], &row[5]);
        assert!(path.starts_with(&format!("{machine}/{split}/")), "{path}");
        let wav = hound::WavReader::open(dir.path().join(path)).unwrap();
        let spec = wav.spec();
        assert_eq!(
            (spec.channels, spec.sample_rate, spec.bits_per_sample),
            (1, SR, 16)
        );
        assert_eq!(wav.duration(), 24_000);
        let samples: Vec<i16> = wav.into_samples().map(|s| s.unwrap()).collect();
        assert!(
            samples.iter().all(|&s| s.unsigned_abs() < 32_000),
            "{path} clips"
        );
        assert!(samples.iter().any(|&s| s != 0));
        match label {
            "normal" => assert!(fault.is_empty() && level.is_empty(), "{path}"),
            "anomaly" => {
                assert_eq!(split, "test");
                let kind: FaultKind = fault.parse().unwrap();
                let mk: MachineKind = machine.split('_').next().unwrap().parse().unwrap();
                assert!(mk.faults().contains(&kind), "{kind} on {mk}");
                let l: f32 = level.parse().unwrap();
                assert!(opts.fault_levels_db.contains(&l));
                assert!(path.contains(kind.name()));
            }
            other => panic!("bad label {other}"),
        }
        *counts
            .entry((machine.to_string(), split.to_string(), label.to_string()))
            .or_default() += 1;
        seen.push(path.to_string());
    }
    for m in ["motor_id01", "pump_id07"] {
        assert_eq!(counts[&(m.into(), "train".into(), "normal".into())], 2);
        assert_eq!(counts[&(m.into(), "test".into(), "normal".into())], 3);
        assert_eq!(counts[&(m.into(), "test".into(), "anomaly".into())], 3);
    }
    let mut on_disk: Vec<String> = read_tree(dir.path())
        .into_keys()
        .filter(|k| k.ends_with(".wav"))
        .collect();
    on_disk.sort();
    seen.sort();
    assert_eq!(on_disk, seen, "every WAV is in the manifest and vice versa");
}

#[test]
fn motor_spectrum_has_its_harmonics_where_its_parameters_say() {
    for id in [1, 2, 3, 4] {
        let m = Machine::new(MachineKind::Motor, id);
        let info = m.info();
        let r = render_detailed(&m, None, 4.0, SR, 3);
        let f0 = r.shaft_hz as f64;
        assert!(
            (f0 / info.shaft_hz as f64 - 1.0).abs() < 0.03,
            "load moves speed only a few %"
        );
        let (spec, df) = spectrum(&r.samples, SR);
        let hum = 2.0 * info.mains_hz as f64;
        let mut strongest: Vec<(f32, f32)> = info.harmonics.clone();
        strongest.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap());
        let mut checked = 0;
        for &(order, _) in strongest.iter().take(3) {
            let f = order as f64 * f0;
            // Skip orders that coincide with mains hum (a real diagnostic ambiguity).
            if (1..6).any(|j| (f - j as f64 * hum).abs() < 0.03 * f) {
                continue;
            }
            let tol = (0.006 * f).max(2.0 * df);
            let (pf, pm) = peak_in(&spec, df, f - tol, f + tol);
            let floor = median_in(&spec, df, f * 0.85, f * 1.15);
            assert!(
                db(pm * pm / (floor * floor)) > 15.0,
                "id {id}: order {order} at {f:.1} Hz: {pf:.1} Hz only {:.1} dB",
                db(pm * pm / (floor * floor))
            );
            // Halfway between harmonics there is no line.
            let mid = (order as f64 + 0.5) * f0;
            let (_, mm) = peak_in(&spec, df, mid - tol, mid + tol);
            assert!(pm > 5.0 * mm, "id {id}: order {order}");
            checked += 1;
        }
        assert!(checked >= 1, "id {id}: no harmonic checked");
    }
}

#[test]
fn speed_change_moves_the_fundamental() {
    for (kind, id) in [
        (MachineKind::Motor, 1),
        (MachineKind::Motor, 5),
        (MachineKind::Fan, 2),
    ] {
        let m = Machine::new(kind, id);
        let info = m.info();
        let (order, _) = info
            .harmonics
            .iter()
            .copied()
            .fold((0.0, 0.0), |a, h| if h.1 > a.1 { h } else { a });
        let normal = render_detailed(&m, None, 4.0, SR, 21);
        let f = Fault {
            kind: FaultKind::SpeedChange,
            level_db: -6.0,
            onset_s: 0.0,
        };
        let faulty = render_detailed(&m, Some(&f), 4.0, SR, 21);
        let shift = faulty.fault_shaft_hz.unwrap() as f64 / faulty.shaft_hz as f64 - 1.0;
        assert!(
            (shift.abs() - 0.075).abs() < 0.015,
            "{kind}: reported shift {shift}"
        );
        let f_normal = order as f64 * normal.shaft_hz as f64;
        // Analyse the last 3 s, after the 0.5 s speed ramp.
        let (sn, df) = spectrum(&normal.samples[16_000..], SR);
        let (sf, _) = spectrum(&faulty.samples[16_000..], SR);
        let (pn, _) = peak_in(&sn, df, f_normal * 0.97, f_normal * 1.03);
        let (pf, _) = peak_in(&sf, df, f_normal * 0.88, f_normal * 1.12);
        assert!(
            (pn / f_normal - 1.0).abs() < 0.01,
            "{kind}: normal peak {pn} vs {f_normal}"
        );
        assert!(
            (pf / pn - 1.0).abs() > 0.04,
            "{kind}: faulty peak {pf} Hz vs normal {pn} Hz"
        );
        assert_eq!((pf > pn), (shift > 0.0), "{kind}: moved the wrong way");
    }
}

#[test]
fn bearing_fault_rings_the_resonance_at_the_defect_rate() {
    for (kind, id, seed) in [
        (MachineKind::Motor, 1, 1),
        (MachineKind::Motor, 3, 2),
        (MachineKind::Fan, 2, 3),
        (MachineKind::Pump, 4, 4),
    ] {
        let m = Machine::new(kind, id);
        let res = m.info().bearing_resonance_hz as f64;
        let f = Fault {
            kind: FaultKind::Bearing,
            level_db: -6.0,
            onset_s: 0.0,
        };
        let normal = render_detailed(&m, None, 4.0, SR, seed);
        let faulty = render_detailed(&m, Some(&f), 4.0, SR, seed);
        let fd = faulty.fault_rate_hz.unwrap() as f64;
        let ratio = fd / faulty.shaft_hz as f64;
        let info = m.info();
        assert!(
            (ratio - info.bearing_outer_ratio as f64).abs() < 0.02
                || (ratio - info.bearing_inner_ratio as f64).abs() < 0.02,
            "defect rate {fd} is not a bearing frequency"
        );
        let (lo, hi) = (res * 0.8, (res * 1.25).min(7900.0));
        let band = |x: &[f32], lo: f64, hi: f64| {
            let (s, df) = spectrum(x, SR);
            s[bin(lo, df)..bin(hi, df)]
                .iter()
                .map(|v| v * v)
                .sum::<f64>()
        };
        // The fault's energy goes to the resonance band, not everywhere: that band gains
        // clearly more than the low band, where the machine's tones live.
        let gain_db = db(band(&faulty.samples, lo, hi) / band(&normal.samples, lo, hi));
        let low_db = db(band(&faulty.samples, 20.0, 1000.0) / band(&normal.samples, 20.0, 1000.0));
        eprintln!("{kind} {id}: resonance band {gain_db:+.1} dB, low band {low_db:+.1} dB");
        assert!(
            gain_db > 2.0 && gain_db > low_db + 2.5,
            "{kind} {id}: resonance band only {gain_db:+.1} dB (low band {low_db:+.1} dB)"
        );
        // Envelope: band-pass the resonance by FFT masking, square, and look at its spectrum.
        let n = faulty.samples.len();
        let mut planner = RealFftPlanner::<f64>::new();
        let fwd = planner.plan_fft_forward(n);
        let inv = planner.plan_fft_inverse(n);
        let mut buf: Vec<f64> = faulty.samples.iter().map(|&v| v as f64).collect();
        let mut spec = fwd.make_output_vec();
        fwd.process(&mut buf, &mut spec).unwrap();
        let df = SR as f64 / n as f64;
        for (i, c) in spec.iter_mut().enumerate() {
            let f = i as f64 * df;
            if f < lo || f > hi {
                *c = realfft::num_complex::Complex::new(0.0, 0.0);
            }
        }
        inv.process(&mut spec, &mut buf).unwrap();
        let env: Vec<f32> = buf.iter().map(|v| (v * v) as f32).collect();
        let mean = env.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
        let env: Vec<f32> = env.iter().map(|&v| (v as f64 - mean) as f32).collect();
        let (es, edf) = spectrum(&env, SR);
        let (pf, pm) = peak_in(&es, edf, fd * 0.97, fd * 1.03);
        let floor = median_in(&es, edf, 2.0, fd * 4.0);
        eprintln!(
            "{kind} {id}: envelope line at {pf:.1} Hz is {:.1}x the floor",
            pm / floor
        );
        assert!(
            pm > 6.0 * floor,
            "{kind} {id}: envelope at {pf:.1} Hz only {:.1}x floor",
            pm / floor
        );
        // And the defect line is the strongest envelope line near it (not a shaft harmonic).
        let (_, wide) = peak_in(&es, edf, fd * 0.6, fd * 1.4);
        assert!(pm >= 0.5 * wide, "{kind} {id}");
    }
}

/// Recovers the fault component from renders with and without the fault (same clip seed):
/// before the onset both are the same signal up to the output gain, which gives the gain
/// ratio; what remains after removing the scaled normal render is the fault.
fn fault_residual(m: &Machine, f: &Fault, seconds: f32, sr: u32, seed: u64) -> (f64, f64, f64) {
    let y0 = render(m, None, seconds, sr, seed);
    let y1 = render(m, Some(f), seconds, sr, seed);
    let on = (f.onset_s * sr as f32) as usize;
    let dot: f64 = y1[..on]
        .iter()
        .zip(&y0[..on])
        .map(|(a, b)| *a as f64 * *b as f64)
        .sum();
    let alpha = dot / energy(&y0[..on]);
    let resid: Vec<f32> = y1
        .iter()
        .zip(&y0)
        .map(|(a, b)| (*a as f64 - alpha * *b as f64) as f32)
        .collect();
    let scaled: Vec<f32> = y0.iter().map(|&b| (alpha * b as f64) as f32).collect();
    let pre = energy(&resid[..on]) / energy(&y1[..on]);
    let post = energy(&resid[on..]) / energy(&scaled[on..]);
    (pre, post, alpha)
}

#[test]
fn fault_level_and_onset_are_as_asked() {
    let cases = [
        (MachineKind::Motor, FaultKind::Bearing),
        (MachineKind::Motor, FaultKind::Impact),
        (MachineKind::Fan, FaultKind::Rub),
        (MachineKind::Motor, FaultKind::Imbalance),
        (MachineKind::Pump, FaultKind::Cavitation),
        (MachineKind::Pump, FaultKind::Impact),
    ];
    for (i, (kind, fk)) in cases.into_iter().enumerate() {
        for level in [-18.0f32, -6.0] {
            let m = Machine::new(kind, i as u64);
            let f = Fault {
                kind: fk,
                level_db: level,
                onset_s: 1.0,
            };
            let (pre, post, _) = fault_residual(&m, &f, 3.0, SR, 40 + i as u64);
            assert!(
                pre < 1e-9,
                "{kind} {fk}: fault energy before onset ({} dB)",
                db(pre)
            );
            assert!(
                (db(post) - level as f64).abs() < 0.2,
                "{kind} {fk}: asked {level} dB, got {:.2} dB",
                db(post)
            );
        }
    }
    // A speed change also leaves everything before the onset untouched, and changes it after.
    let f = Fault {
        kind: FaultKind::SpeedChange,
        level_db: -6.0,
        onset_s: 1.0,
    };
    for sr in [8_000, 16_000, 44_100] {
        for id in 1..=4 {
            for kind in MachineKind::ALL {
                let m = Machine::new(kind, id);
                let (pre, post, _) = fault_residual(&m, &f, 2.0, sr, 8);
                assert!(
                    pre < 1e-9 && post > 0.01,
                    "{kind} {id} at {sr} Hz: pre {pre} post {post}"
                );
            }
        }
    }
}

#[test]
fn stream_is_normal_then_faulty() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s/stream.wav");
    let m = Machine::new(MachineKind::Fan, 3);
    let f = Fault {
        kind: FaultKind::Rub,
        level_db: -6.0,
        onset_s: 2.0,
    };
    let s = synth::write_stream(&path, &m, &f, 4.0, SR, 1).unwrap();
    assert!(s.headroom_db > 0.9);
    let wav = hound::WavReader::open(&path).unwrap();
    assert_eq!(wav.duration(), 64_000);
    let x: Vec<f32> = wav
        .into_samples::<i16>()
        .map(|v| v.unwrap() as f32 / 32767.0)
        .collect();
    // Fixed gain: the rub adds ~1 dB after the onset (-6 dB of extra energy).
    let rise = db(energy(&x[32_000..]) / energy(&x[..32_000]));
    assert!((rise - 0.97).abs() < 0.6, "{rise}");
    // Bad requests are refused with a message, not a panic.
    let late = Fault {
        onset_s: 9.0,
        ..f.clone()
    };
    let err = synth::write_stream(&path, &m, &late, 4.0, SR, 1)
        .unwrap_err()
        .to_string();
    assert!(err.contains("onset"), "{err}");
    assert!(synth::write_stream(&path, &m, &f, 4.0, 100, 1).is_err());
}

#[test]
fn cli_writes_a_dataset_and_a_stream() {
    let dir = tempfile::tempdir().unwrap();
    let exe = env!("CARGO_BIN_EXE_earshot");
    let out = std::process::Command::new(exe)
        .args(["synth", "dataset", "--out"])
        .arg(dir.path().join("ds"))
        .args([
            "--seed",
            "3",
            "--train-clips",
            "1",
            "--test-clips",
            "2",
            "--seconds",
            "1",
            "--machine",
            "fan:4",
            "--levels-db",
            "-9,-3",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = String::from_utf8_lossy(&out.stdout);
    assert!(line.contains("3 normal + 2 anomalous"), "{line}");
    let manifest = std::fs::read_to_string(dir.path().join("ds/manifest.csv")).unwrap();
    assert_eq!(manifest.lines().count(), 1 + 5);
    assert!(manifest.contains("fan_id04/test/anomaly_"));
    let wav = dir.path().join("st.wav");
    let out = std::process::Command::new(exe)
        .args(["synth", "stream", "--out"])
        .arg(&wav)
        .args([
            "--machine",
            "motor",
            "--fault",
            "speed-change",
            "--level-db",
            "-6",
            "--seconds",
            "3",
            "--onset",
            "1",
            "--seed",
            "2",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("->"));
    assert_eq!(hound::WavReader::open(&wav).unwrap().duration(), 48_000);
    let out = std::process::Command::new(exe)
        .args(["synth", "stream", "--out"])
        .arg(&wav)
        .args(["--machine", "lathe"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("motor, fan or pump"));
}

/// Peak resident set of the children this process has waited for, in MiB (the other children
/// of this binary write a few seconds of audio: far below the bound checked here).
fn children_peak_rss_mib() -> i64 {
    // SAFETY: getrusage fills the struct we own.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
    ru.ru_maxrss / 1024
}

/// A long `synth stream` is rendered and written take by take: ten minutes at 16 kHz (9.6 M
/// samples; rendered whole, its f64 work buffers alone took ~0.7 GB, an hour 4.4 GB) stay in
/// bounded memory, the takes join without a step in level, and the fault is there from its
/// onset to the end at the level asked for.
#[test]
fn long_stream_is_written_in_bounded_memory_without_seams() {
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("long.wav");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_earshot"))
        .args(["synth", "stream", "--out"])
        .arg(&wav)
        .args([
            "--machine",
            "fan",
            "--id",
            "3",
            "--fault",
            "rub",
            "--level-db",
            "-6",
            "--seconds",
            "600",
            "--onset",
            "450",
            "--seed",
            "5",
        ])
        .env("EARSHOT_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let peak = children_peak_rss_mib();
    assert!(
        peak < 150,
        "synth stream of 10 minutes peaked at {peak} MiB"
    );

    let r = hound::WavReader::open(&wav).unwrap();
    assert_eq!(r.duration(), 600 * SR);
    let x: Vec<f32> = r
        .into_samples::<i16>()
        .map(|v| v.unwrap() as f32 / 32767.0)
        .collect();
    // Level per 0.5 s frame over the normal part: frames around the joins between takes
    // (every 30 s) must lie inside the spread of all the other frames.
    let frame = SR as usize / 2;
    let level = |i: usize| db(energy(&x[i * frame..(i + 1) * frame]) / frame as f64);
    let normal_frames = 450 * 2;
    let near_join = |i: usize| (i % 60 == 59 || i % 60 <= 2) && i >= 59;
    let mut others: Vec<f64> = (0..normal_frames)
        .filter(|&i| !near_join(i))
        .map(level)
        .collect();
    others.sort_by(f64::total_cmp);
    let (lo, hi) = (others[0] - 1.0, others[others.len() - 1] + 1.0);
    for i in (0..normal_frames).filter(|&i| near_join(i)) {
        let l = level(i);
        assert!(
            (lo..=hi).contains(&l),
            "frame at {} s: {l:.2} dB outside {lo:.2}..{hi:.2}",
            i / 2
        );
    }
    // Fixed gain: the rub adds ~1 dB (-6 dB of extra energy) in every take after the onset.
    let before = energy(&x[..450 * SR as usize]) / 450.0;
    for t in [450usize, 480, 510, 540, 570] {
        let after = energy(&x[t * SR as usize..(t + 30) * SR as usize]) / 30.0;
        let rise = db(after / before);
        assert!(
            (rise - 0.97).abs() < 0.6,
            "take from {t} s: rise {rise:.2} dB"
        );
    }
}
