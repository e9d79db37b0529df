//! The config file of the offline commands: an annotated config loads, a typo or an
//! out-of-range value is refused naming the key (through the real binary), and `EARSHOT_*__*`
//! environment overrides reach the learned profile.

use earshot::config::Settings;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const EARSHOT: &str = env!("CARGO_BIN_EXE_earshot");

fn earshot(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut c = Command::new(EARSHOT);
    c.args(args).env("EARSHOT_LOG", "warn");
    for (k, v) in envs {
        c.env(k, v);
    }
    c.output().expect("run earshot")
}

/// A 3 s, 16 kHz hum with some noise; differs per seed.
fn write_clip(path: &Path, seed: u64) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 16_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    let mut s = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    for i in 0..48_000 {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let noise = ((s >> 33) as f64 / (1u64 << 31) as f64) - 0.5;
        let t = i as f64 / 16_000.0;
        let x = 0.3 * (std::f64::consts::TAU * 150.0 * t).sin() + 0.05 * noise;
        w.write_sample((x * 32767.0) as i16).unwrap();
    }
    w.finalize().unwrap();
}

fn normals(dir: &Path) -> PathBuf {
    let n = dir.join("normal");
    std::fs::create_dir_all(&n).unwrap();
    for i in 0..3 {
        write_clip(&n.join(format!("n{i}.wav")), i);
    }
    n
}

/// An annotated config for the offline commands, every key set away from its default.
const ANNOTATED: &str = r#"
# earshot offline settings (learn / score / eval)
[model]
# ONNX Runtime intra-op threads; 0 = all cores
threads = 1

[window]
# analysis window and hop, in seconds
seconds = 1.0
hop_seconds = 0.25
# every window is levelled to this RMS (dBFS) before the model
level_dbfs = -20.0

[learn]
kmeans_k = 2   # clusters of normal sound (0 = automatic)
knn_k = 2      # neighbours averaged by the k-NN scorer
target_far = 0.05
holdout_fraction = 0.34
false_alarms_per_day = 5.0  # false events a day the thresholds aim at
"#;

#[test]
fn annotated_config_loads_and_its_values_are_used() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("earshot.toml");
    std::fs::write(&cfg, ANNOTATED).unwrap();
    let s = Settings::load(Some(&cfg)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.model.threads, 1);
    assert_eq!(s.window.seconds, 1.0);
    assert_eq!(s.window.hop_seconds, 0.25);
    assert_eq!(s.window.level_dbfs, Some(-20.0));

    // And the binary uses them: the profile records them.
    let n = normals(dir.path());
    let p = dir.path().join("profile");
    let o = earshot(
        &[
            "learn",
            "--config",
            cfg.to_str().unwrap(),
            "--normal",
            n.to_str().unwrap(),
            "--out",
            p.to_str().unwrap(),
        ],
        &[],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let m = manifest(&p);
    assert_eq!(m["window"]["hop_seconds"], 0.25, "{m}");
    assert_eq!(m["window"]["level_dbfs"], -20.0, "{m}");
    assert_eq!(m["knn_k"], 2, "{m}");
    assert_eq!(m["kmeans_k"], 2, "{m}");
    assert_eq!(m["thresholds"]["fused"]["target_far"], 0.05, "{m}");
    assert_eq!(m["false_alarms"]["target_per_day"], 5.0, "{m}");
}

/// The annotated config shipped in the repository, once it is there.
#[test]
fn shipped_config_loads() {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/earshot.toml");
    let s = Settings::load(Some(&p)).unwrap_or_else(|e| panic!("{e}"));
    assert!(s.window.hop_seconds <= s.window.seconds);
    // The reference config documents one monitor with every section, as users copy it.
    assert_eq!(s.monitors.len(), 1);
    assert!(s.monitors[0].capture.is_some());
    assert_eq!(s.metrics.listen.port(), 9847);
}

fn manifest(profile: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(profile.join("manifest.json")).unwrap()).unwrap()
}

/// Runs `learn` with a config holding `body` and returns its stderr; it must fail.
fn learn_refused(body: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, body).unwrap();
    let n = normals(dir.path());
    let p = dir.path().join("profile");
    let o = earshot(
        &[
            "learn",
            "--config",
            cfg.to_str().unwrap(),
            "--normal",
            n.to_str().unwrap(),
            "--out",
            p.to_str().unwrap(),
        ],
        &[],
    );
    let e = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!o.status.success(), "config accepted:\n{body}\n{e}");
    assert!(e.contains("bad.toml"), "config file not named: {e}");
    assert!(
        !p.join("manifest.json").exists(),
        "a profile was written anyway"
    );
    e
}

#[test]
fn unknown_keys_are_refused_by_name() {
    let e = learn_refused("[learn]\nknn_kk = 3\n");
    assert!(e.contains("knn_kk") && e.contains("knn_k"), "{e}");
    let e = learn_refused("[wndow]\nseconds = 1.0\n");
    assert!(e.contains("wndow") && e.contains("window"), "{e}");
}

#[test]
fn out_of_range_values_are_refused_by_key() {
    for (body, key) in [
        ("[learn]\ntarget_far = 2.0\n", "learn.target_far"),
        (
            "[window]\nseconds = 1.0\nhop_seconds = 2.0\n",
            "window.hop_seconds",
        ),
        ("[learn]\nknn_k = 0\n", "learn.knn_k"),
        ("[window]\nlevel_dbfs = 5.0\n", "window.level_dbfs"),
    ] {
        let e = learn_refused(body);
        assert!(e.contains(&format!("`{key}`")), "{key} not named: {e}");
    }
}

#[test]
fn environment_override_reaches_the_profile() {
    let dir = tempfile::tempdir().unwrap();
    let n = normals(dir.path());
    let p = dir.path().join("profile");
    let o = earshot(
        &[
            "learn",
            "--normal",
            n.to_str().unwrap(),
            "--out",
            p.to_str().unwrap(),
        ],
        &[("EARSHOT_LEARN__KNN_K", "5")],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(manifest(&p)["knn_k"], 5);

    // A bad value given the same way is refused naming the key.
    let o = earshot(
        &[
            "learn",
            "--normal",
            n.to_str().unwrap(),
            "--out",
            dir.path().join("p2").to_str().unwrap(),
        ],
        &[("EARSHOT_LEARN__KNN_K", "0")],
    );
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{e}");
    assert!(e.contains("learn.knn_k"), "{e}");
}
