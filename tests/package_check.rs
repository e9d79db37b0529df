//! `earshot check --config F` on real files: a good config passes (exit 0) without starting
//! anything; a bad key, a missing model, a profile learned with another model, a missing replay
//! file fail (exit 1) with a line that names what to fix; a capture device that is not present
//! is a warning (the service waits for it) unless `--require-devices`.

#[path = "common/daemon.rs"]
mod daemon;

use daemon::{
    EARSHOT, daemon_header, fixture, replay_monitor, run_bounded, test_dir, write_config,
};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn check(config: &Path, extra: &[&str]) -> (bool, String) {
    let (st, out) = run_bounded(
        Command::new(EARSHOT)
            .arg("check")
            .arg("--config")
            .arg(config)
            .args(extra),
        Duration::from_secs(180),
    );
    (st.success(), out)
}

/// The line of a passing `check` that contains `what`.
fn check_line(config: &Path, what: &str) -> String {
    let (ok, out) = check(config, &[]);
    assert!(ok, "{out}");
    out.lines()
        .find(|l| l.contains(what))
        .unwrap_or_else(|| panic!("no line with {what:?}:\n{out}"))
        .to_string()
}

/// One run of the service on the config's replay, to its end; its output.
fn run_once(config: &Path) -> String {
    let (st, run) = run_bounded(
        Command::new(EARSHOT)
            .args(["run", "--config"])
            .arg(config)
            .arg("--exit-when-done"),
        Duration::from_secs(180),
    );
    assert!(st.success(), "{run}");
    run
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A config in `dir` with one monitor replaying the fixture's stream: everything it names
/// exists and fits.
fn good_config(dir: &Path) -> PathBuf {
    let fx = fixture();
    let text = format!(
        "{}{}",
        daemon_header(dir),
        replay_monitor("press", &fx.profile, &fx.stream, false, false)
    );
    write_config(dir, &text)
}

#[test]
fn a_good_config_passes_and_starts_nothing() {
    let dir = test_dir();
    let cfg = good_config(dir.path());
    let (ok, out) = check(&cfg, &[]);
    assert!(ok, "a good config must pass:\n{out}");
    assert!(out.contains("0 error(s)"), "{out}");
    assert!(
        out.contains("ONNX Runtime session OK"),
        "the model is really loaded:\n{out}"
    );
    assert!(out.contains("monitor press: profile"), "{out}");
    // Nothing started: the state directory the service would create is still absent, and no
    // events were written.
    assert!(
        !dir.path().join("state").exists(),
        "check must not create the state directory:\n{out}"
    );
    assert!(out.contains("does not exist yet"), "{out}");
}

/// The service's saved optimised model: `check` says the first start will make it, and
/// after one run of the service that it is there.
#[test]
fn check_says_whether_the_optimised_model_is_saved() {
    let dir = test_dir();
    let cfg = good_config(dir.path());
    let (ok, out) = check(&cfg, &[]);
    assert!(ok, "{out}");
    assert!(out.contains("no optimised model saved yet"), "{out}");
    run_once(&cfg);
    let line = check_line(&cfg, "optimised model saved in");
    assert!(line.starts_with("ok:"), "{line}");
    assert!(line.contains("model-cache"), "{line}");
}

/// The service runs one model and only it reads the model cache: a start removes the saved
/// copies of other models (one tried before) and keeps its own model's entry, directories
/// that are not entries, and an entry another process holds locked (being saved).
#[test]
fn a_start_removes_the_saved_copies_of_models_no_longer_used() {
    let dir = test_dir();
    let cfg = good_config(dir.path());
    let cache = dir.path().join("state").join("model-cache");
    let made = |name: &str| {
        let d = cache.join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("model.onnx"), b"a model tried before").unwrap();
        d
    };
    let tried = made("panns-cnn14-0123456789abcdef");
    let busy = made("panns-cnn14_16k-fedcba9876543210");
    let notes = made("notes-by-hand");
    let _saving = earshot::files::lock_file(&busy.join("lock"), false)
        .unwrap()
        .expect("the lock is free");
    // `check` says what the start will remove (and removes nothing itself).
    let line = check_line(&cfg, "optimised copies of other models");
    assert!(line.contains("2 optimised copies"), "{line}");
    assert!(line.contains("panns-cnn14-0123456789abcdef"), "{line}");
    assert!(!line.contains("notes-by-hand"), "{line}");
    assert!(tried.exists());
    let run = run_once(&cfg);
    assert!(
        !tried.exists(),
        "the other model's copy is still there:\n{run}"
    );
    assert!(run.contains("removed an optimised model copy"), "{run}");
    for kept in [&busy, &notes] {
        assert!(kept.join("model.onnx").is_file(), "{kept:?} was removed");
    }
    // The configured model's own entry was made (and not removed).
    let line = check_line(&cfg, "optimised model saved in");
    assert!(line.starts_with("ok:"), "{line}");
    let entries = std::fs::read_dir(&cache).unwrap().count();
    assert_eq!(entries, 3, "the model's entry and the two kept");
}

#[test]
fn an_unknown_key_fails_naming_it() {
    let fx = fixture();
    let dir = test_dir();
    let text = format!(
        "{}{}profil = \"typo\"\n",
        daemon_header(dir.path()),
        replay_monitor("press", &fx.profile, &fx.stream, false, false)
    );
    let (ok, out) = check(&write_config(dir.path(), &text), &[]);
    assert!(!ok, "{out}");
    let line = out
        .lines()
        .find(|l| l.starts_with("error:") && l.contains("`profil`"))
        .unwrap_or_else(|| panic!("no error line naming `profil`:\n{out}"));
    assert!(line.contains("press"), "names the monitor: {line}");
}

#[test]
fn a_missing_model_fails_naming_the_directory() {
    let fx = fixture();
    let dir = test_dir();
    let text = format!(
        "[model]\ndir = \"no-such-model\"\n{}{}",
        daemon_header(dir.path()),
        replay_monitor("press", &fx.profile, &fx.stream, false, false)
    );
    let (ok, out) = check(&write_config(dir.path(), &text), &[]);
    assert!(!ok, "{out}");
    assert!(
        out.lines().any(|l| l.starts_with("error:")
            && l.contains("model.dir")
            && l.contains("no-such-model")),
        "{out}"
    );
}

#[test]
fn a_profile_learned_with_another_model_fails() {
    let fx = fixture();
    let dir = test_dir();
    // The fixture profile was learned with the bundled seeded MobileNetV1.
    let text = format!(
        "[model]\ndir = \"{}\"\n{}{}",
        repo().join("models/aisfx-cnn9").display(),
        daemon_header(dir.path()),
        replay_monitor("press", &fx.profile, &fx.stream, false, false)
    );
    let (ok, out) = check(&write_config(dir.path(), &text), &[]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("ONNX Runtime session OK"),
        "the other model itself is fine:\n{out}"
    );
    let line = out
        .lines()
        .find(|l| l.starts_with("error:") && l.contains("monitor press"))
        .unwrap_or_else(|| panic!("no error for the monitor:\n{out}"));
    assert!(
        line.contains("learned with another model"),
        "says why and what to do: {line}"
    );
}

#[test]
fn a_missing_replay_file_fails() {
    let fx = fixture();
    let dir = test_dir();
    let text = format!(
        "{}{}",
        daemon_header(dir.path()),
        replay_monitor(
            "press",
            &fx.profile,
            &dir.path().join("gone.wav"),
            false,
            false
        )
    );
    let (ok, out) = check(&write_config(dir.path(), &text), &[]);
    assert!(!ok, "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("error:") && l.contains("gone.wav")),
        "{out}"
    );
}

#[test]
fn a_missing_device_is_a_warning_unless_required() {
    let fx = fixture();
    let dir = test_dir();
    let text = format!(
        "{}[[monitor]]\nname = \"line\"\nprofile = \"{}\"\nsource = {{ device = \"earshot-no-such-device-7f3\" }}\n",
        daemon_header(dir.path()),
        fx.profile.display()
    );
    let cfg = write_config(dir.path(), &text);
    let (ok, out) = check(&cfg, &[]);
    assert!(
        ok,
        "a device plugged in later must not fail the check:\n{out}"
    );
    assert!(
        out.lines().any(|l| l.starts_with("warning:")
            && l.contains("earshot-no-such-device-7f3")
            && l.contains("waits for it")),
        "{out}"
    );
    let (ok, out) = check(&cfg, &["--require-devices"]);
    assert!(!ok, "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("error:") && l.contains("earshot-no-such-device-7f3")),
        "{out}"
    );
}

#[test]
fn endpoint_security_files_are_checked() {
    let fx = fixture();
    let dir = test_dir();
    let monitor = replay_monitor("press", &fx.profile, &fx.stream, false, false);
    // Exposed without authentication.
    let text = format!("[metrics]\nlisten = \"0.0.0.0:9847\"\n{monitor}");
    let (ok, out) = check(&write_config(dir.path(), &text), &[]);
    assert!(!ok, "{out}");
    assert!(
        out.lines().any(|l| l.starts_with("error:")
            && l.contains("metrics.listen")
            && l.contains("basic_auth")),
        "{out}"
    );
    // Basic auth with a hash file that is not there, TLS with a key that is not there.
    let text = format!(
        "[metrics]\nlisten = \"127.0.0.1:0\"\n[metrics.basic_auth]\nuser = \"p\"\npassword_hash_file = \"missing.hash\"\n{monitor}"
    );
    let (ok, out) = check(&write_config(dir.path(), &text), &[]);
    assert!(!ok, "{out}");
    assert!(
        out.lines().any(|l| l.starts_with("error:")
            && l.contains("basic_auth.password_hash_file")
            && l.contains("missing.hash")),
        "{out}"
    );
    // A valid bcrypt hash but readable by everyone: passes, with a warning.
    let hash = dir.path().join("metrics.hash");
    std::fs::write(&hash, bcrypt::hash("pw", 4).unwrap()).unwrap();
    std::fs::set_permissions(&hash, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let text = format!(
        "{}[metrics.basic_auth]\nuser = \"p\"\npassword_hash_file = \"metrics.hash\"\n{monitor}",
        daemon_header(dir.path())
    );
    let (ok, out) = check(&write_config(dir.path(), &text), &[]);
    assert!(ok, "{out}");
    assert!(out.contains("with basic auth"), "{out}");
    assert!(
        out.lines().any(|l| l.starts_with("warning:")
            && l.contains("metrics.hash")
            && l.contains("readable by every user")),
        "{out}"
    );
}

/// The events on record as open (what the next start resolves) are listed; a damaged record
/// is a warning that says what to do. The record is made by earshot's own event sinks.
#[test]
fn check_lists_the_events_on_record_as_open_and_warns_of_a_damaged_record() {
    use earshot::alert::events::{Event, JsonlOptions, OperationalEvent, OperationalKind, Sinks};
    let dir = test_dir();
    let cfg = good_config(dir.path());
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let (ok, out) = check(&cfg, &[]);
    assert!(ok, "{out}");
    assert!(
        !out.contains("not resolved"),
        "nothing on record yet:\n{out}"
    );

    let labels = [("monitor".to_string(), "press".to_string())].into();
    let mut sinks = Sinks::standard(&state, JsonlOptions::default(), None).unwrap();
    sinks.emit(&Event::Operational(OperationalEvent::now(
        OperationalKind::NoSignal,
        labels,
        None,
        "input below -60 dBFS",
    )));
    drop(sinks);
    let line = check_line(&cfg, "not resolved");
    assert!(line.starts_with("ok: 1 event(s)"), "{line}");
    assert!(line.contains("press/no_signal"), "{line}");

    std::fs::write(state.join("open-events.json"), b"{\"open\": ").unwrap();
    // A warning, not an error: `check` still passes.
    let line = check_line(&cfg, "open-events.json");
    assert!(line.starts_with("warning:"), "{line}");
    assert!(line.contains("remove the file if it is damaged"), "{line}");
}
