//! The shipped systemd unit, checked offline by systemd's own tools (`systemd-analyze`,
//! Debian package `systemd`): it must verify cleanly and keep its hardening score.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Highest exposure accepted; the unit scores 1.5 ("OK") on systemd 252. Some headroom so a
/// newer systemd that adds checks does not fail CI, but any real loosening does.
const MAX_EXPOSURE: f64 = 2.0;

fn shipped() -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/earshot.service");
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// A copy with ExecStart pointing to the built binary (verify checks that it exists).
fn installable_copy(dir: &Path, unit: &str) -> PathBuf {
    let exe = env!("CARGO_BIN_EXE_earshot");
    assert!(
        unit.contains("ExecStart=/usr/local/bin/earshot run --config /etc/earshot/earshot.toml")
    );
    let text = unit.replace(
        "ExecStart=/usr/local/bin/earshot",
        &format!("ExecStart={exe}"),
    );
    let path = dir.join("earshot.service");
    std::fs::write(&path, text).unwrap();
    path
}

fn analyze(args: &[&str]) -> Output {
    Command::new("systemd-analyze")
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run systemd-analyze ({e}): install the Debian package `systemd`")
        })
}

fn keys(unit: &str) -> Vec<(String, String)> {
    unit.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn value(unit: &str, key: &str) -> Option<String> {
    keys(unit)
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
}

#[test]
fn unit_verifies_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let path = installable_copy(dir.path(), &shipped());
    let out = analyze(&["verify", path.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "systemd-analyze verify failed:\n{stderr}"
    );
    let complaints: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("earshot.service"))
        .collect();
    assert!(
        complaints.is_empty(),
        "verify warnings:\n{}",
        complaints.join("\n")
    );
}

#[test]
fn verify_catches_a_broken_unit() {
    // Proves the check above can fail: an unknown key and a missing binary are reported.
    let dir = tempfile::tempdir().unwrap();
    let broken = shipped().replace("WatchdogSec=30", "WatchdogSecs=30");
    let path = installable_copy(dir.path(), &broken);
    let out = analyze(&["verify", path.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("WatchdogSecs"), "{stderr}");

    let missing = shipped();
    let path = dir.path().join("earshot.service");
    std::fs::write(
        &path,
        missing.replace("/usr/local/bin/earshot", "/nonexistent/earshot"),
    )
    .unwrap();
    let out = analyze(&["verify", path.to_str().unwrap()]);
    assert!(
        !out.status.success(),
        "verify accepted a missing ExecStart binary"
    );
}

#[test]
fn exposure_stays_ok() {
    let dir = tempfile::tempdir().unwrap();
    let path = installable_copy(dir.path(), &shipped());
    let out = analyze(&["security", "--offline=true", path.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("no exposure line in:\n{stdout}"));
    let figure: f64 = line
        .rsplit_once(':')
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("cannot parse exposure from {line:?}"));
    println!("systemd-analyze security exposure of earshot.service: {figure} ({line})");
    assert!(
        figure <= MAX_EXPOSURE,
        "exposure {figure} > {MAX_EXPOSURE}; hardening regressed:\n{stdout}"
    );
}

#[test]
fn unit_has_the_service_contract() {
    let u = shipped();
    let expect = [
        ("Type", "notify"),
        ("NotifyAccess", "main"),
        ("ExecReload", "/bin/kill -HUP $MAINPID"),
        ("WatchdogSec", "30"),
        ("Restart", "on-failure"),
        ("DynamicUser", "yes"),
        ("SupplementaryGroups", "audio"),
        ("StateDirectory", "earshot"),
        ("ConfigurationDirectory", "earshot"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("NoNewPrivileges", "yes"),
        ("PrivateDevices", "no"),
        ("DevicePolicy", "closed"),
        ("DeviceAllow", "char-alsa rw"),
        ("MemoryDenyWriteExecute", "yes"),
        ("CapabilityBoundingSet", ""),
    ];
    for (k, v) in expect {
        assert_eq!(value(&u, k).as_deref(), Some(v), "{k}");
    }
    assert!(value(&u, "StartLimitBurst").is_some() && value(&u, "StartLimitIntervalSec").is_some());
    assert!(
        value(&u, "RestrictAddressFamilies")
            .unwrap()
            .contains("AF_UNIX")
    );
    // Secrets are never inlined: the key variable appears only in comments.
    assert!(
        keys(&u)
            .iter()
            .all(|(_, v)| !v.contains("EARSHOT_AZURE_KEY"))
    );
    assert!(u.contains("EARSHOT_AZURE_KEY") && u.contains("LoadCredential="));
}

/// Seconds of a systemd time span as the unit writes it ("120", "90s", "2min").
fn seconds(v: &str) -> f64 {
    let v = v.trim();
    if let Some(m) = v.strip_suffix("min") {
        return m.trim().parse::<f64>().expect("minutes") * 60.0;
    }
    v.trim_end_matches('s').parse().expect("seconds")
}

/// Start-up and reload are bounded by `daemon.start_timeout_seconds` (default and the value in
/// the shipped config): that bound plus the stop of replaced monitors and the rest of start-up
/// must fit well inside `TimeoutStartSec=`, and the watchdog must be fed meanwhile (it is, by
/// the daemon; see tests/lifecycle.rs), so `WatchdogSec=` only needs to exceed one ping period.
#[test]
fn start_timeout_fits_the_units_limits() {
    let u = shipped();
    let start = seconds(&value(&u, "TimeoutStartSec").expect("TimeoutStartSec"));
    let watchdog = seconds(&value(&u, "WatchdogSec").expect("WatchdogSec"));
    let default = earshot::config::DEFAULT_START_TIMEOUT_SECONDS;
    // Margin for loading the config, binding /metrics, opening the outbox and stopping
    // replaced monitors (1.5 s each, in parallel).
    let margin = 15.0;
    assert!(
        default + margin <= start,
        "daemon.start_timeout_seconds default {default} s + {margin} s does not fit TimeoutStartSec={start}"
    );
    let cfg =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("config/earshot.toml"))
            .unwrap();
    let shipped_value = cfg
        .lines()
        .map(str::trim)
        .find_map(|l| {
            l.trim_start_matches('#')
                .trim()
                .strip_prefix("start_timeout_seconds")
        })
        .and_then(|r| {
            r.trim()
                .trim_start_matches('=')
                .split('#')
                .next()?
                .trim()
                .parse::<f64>()
                .ok()
        })
        .expect("config/earshot.toml documents daemon.start_timeout_seconds");
    assert!(
        shipped_value + margin <= start,
        "config/earshot.toml: {shipped_value}"
    );
    assert!(
        watchdog >= 2.0,
        "WatchdogSec={watchdog} leaves no room between pings"
    );
}
