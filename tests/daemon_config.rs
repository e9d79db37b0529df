//! `earshot run` with bad configurations: every error names the key (and the monitor) to
//! fix, and one broken monitor does not stop the others where running them is safe.

#[path = "common/daemon.rs"]
mod daemon;

use daemon::{
    Daemon, EARSHOT, daemon_header, fixture, replay_monitor, run_bounded, test_dir, write_config,
};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Runs `earshot run --config CONFIG` expecting it to refuse to start; returns its output.
fn refused(config: &Path) -> String {
    let (st, out) = run_bounded(
        Command::new(EARSHOT)
            .arg("run")
            .arg("--config")
            .arg(config)
            .arg("--exit-when-done"),
        Duration::from_secs(120),
    );
    assert!(!st.success(), "earshot run should have refused:\n{out}");
    assert!(
        !out.contains("earshot running"),
        "the daemon must not report itself running:\n{out}"
    );
    out
}

/// The line of the output that says `error:` (what the user sees last).
fn error_line(out: &str) -> &str {
    out.lines()
        .rev()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_else(|| panic!("no error: line in\n{out}"))
}

/// A good monitor replaying normal audio in a loop (runs until stopped).
fn good_monitor() -> String {
    let fx = fixture();
    replay_monitor("good", &fx.profile, &fx.short_normal, true, true)
}

#[test]
fn an_unknown_key_is_named() {
    let fx = fixture();
    let dir = test_dir();
    let top = format!(
        "{}verbose = true\n{}",
        daemon_header(dir.path()),
        replay_monitor("m1", &fx.profile, &fx.stream, false, false)
    );
    let out = refused(&write_config(dir.path(), &top));
    assert!(error_line(&out).contains("`verbose`"), "{out}");

    let in_monitor = format!(
        "{}{}profil = \"typo\"\n",
        daemon_header(dir.path()),
        replay_monitor("m1", &fx.profile, &fx.stream, false, false)
    );
    let out = refused(&write_config(dir.path(), &in_monitor));
    let line = error_line(&out);
    assert!(
        line.contains("`profil`") && line.contains("monitor"),
        "{out}"
    );

    let in_daemon = format!(
        "{}{}",
        daemon_header(dir.path()).replace("[daemon]\n", "[daemon]\nqueue = 3\n"),
        replay_monitor("m1", &fx.profile, &fx.stream, false, false)
    );
    let out = refused(&write_config(dir.path(), &in_daemon));
    assert!(error_line(&out).contains("daemon"), "{out}");
}

#[test]
fn no_monitor_is_a_clear_error() {
    let dir = test_dir();
    let out = refused(&write_config(dir.path(), &daemon_header(dir.path())));
    let line = error_line(&out);
    assert!(line.contains("no `[[monitor]]`"), "{out}");
    assert!(line.contains("earshot.toml"), "names the file: {out}");
}

#[test]
fn hop_longer_than_the_window_is_named() {
    let fx = fixture();
    let dir = test_dir();
    let cfg = format!(
        "{}{}hop_seconds = 2.0\n",
        daemon_header(dir.path()),
        replay_monitor("long-hop", &fx.profile, &fx.stream, false, false)
    );
    let out = refused(&write_config(dir.path(), &cfg));
    assert!(
        out.lines()
            .any(|l| l.contains("long-hop") && l.contains("`hop_seconds`")),
        "the monitor and the key are named:\n{out}"
    );
    assert!(error_line(&out).contains("no monitor could start"), "{out}");
}

#[test]
fn invalid_decide_values_are_named() {
    let fx = fixture();
    let dir = test_dir();
    let base = format!(
        "{}{}",
        daemon_header(dir.path()),
        replay_monitor("m1", &fx.profile, &fx.stream, false, false)
    );
    for (decide, key) in [
        ("{ trigger_n = 0 }", "decide.trigger_n"),
        ("{ trigger_n = 4, trigger_m = 2 }", "decide.trigger_m"),
        ("{ release_ratio = 1.5 }", "decide.release_ratio"),
        ("{ release_ratio = \"high\" }", "release_ratio"),
        ("{ triger_n = 2 }", "triger_n"),
    ] {
        let out = refused(&write_config(
            dir.path(),
            &format!("{base}decide = {decide}\n"),
        ));
        let line = error_line(&out);
        assert!(
            line.contains(key),
            "decide = {decide}: expected {key:?} in\n{out}"
        );
        assert!(
            line.contains("m1"),
            "decide = {decide}: the monitor is named in\n{out}"
        );
    }
}

#[test]
fn a_missing_profile_stops_only_its_monitor() {
    let fx = fixture();
    let dir = test_dir();
    let cfg = format!(
        "{}{}{}",
        daemon_header(dir.path()),
        replay_monitor(
            "ghost",
            &dir.path().join("no-profile"),
            &fx.stream,
            true,
            true
        ),
        good_monitor()
    );
    let mut d = Daemon::start(&write_config(dir.path(), &cfg), &[], &[]);
    d.wait_log("earshot running", Duration::from_secs(60));
    let log = d.log();
    assert!(
        log.lines()
            .any(|l| l.contains("ghost") && l.contains("`profile`") && l.contains("earshot learn")),
        "the failed monitor, the key and the fix are named:\n{log}"
    );
    let first = d.wait_windows_above("good", 0.0, Duration::from_secs(30));
    d.wait_windows_above("good", first + 2.0, Duration::from_secs(30));
    assert_eq!(d.metric("earshot_monitor_up", "ghost"), Some(0.0));
    let (code, health) = daemon::http_request(d.metrics_addr(), "/healthz");
    assert_eq!(code, 503, "a monitor is down: {health}");
    assert!(
        health.contains("ghost"),
        "health lists the failed monitor: {health}"
    );
    d.signal(libc::SIGTERM);
    let st = d.expect_exit(Duration::from_secs(10));
    assert!(st.success(), "{st}; log:\n{}", d.log());
}

#[test]
fn an_unknown_device_is_retried_while_the_others_run() {
    let dir = test_dir();
    let cfg = format!(
        "{}[[monitor]]\nname = \"mic\"\nprofile = \"{}\"\nsource = {{ device = \"alsa:no_such_pcm\" }}\n\
         capture = {{ retry = {{ initial = \"100ms\", max = \"400ms\" }} }}\n{}",
        daemon_header(dir.path()),
        fixture().profile.display(),
        good_monitor()
    );
    let mut d = Daemon::start(&write_config(dir.path(), &cfg), &[], &[]);
    d.wait_log("earshot running", Duration::from_secs(60));
    // Retried, and each attempt logged with the device.
    d.wait_for(
        "a second attempt at the missing device",
        Duration::from_secs(30),
        |d| {
            d.log()
                .lines()
                .any(|l| l.contains("alsa:no_such_pcm") && l.contains("attempt=2"))
        },
    );
    let first = d.wait_windows_above("good", 0.0, Duration::from_secs(30));
    d.wait_windows_above("good", first + 2.0, Duration::from_secs(30));
    assert!(d.try_status().is_none(), "still running");
    assert_eq!(
        d.windows("mic"),
        0.0,
        "nothing scored from a device that is not there"
    );
    d.signal(libc::SIGTERM);
    let st = d.expect_exit(Duration::from_secs(10));
    assert!(st.success(), "{st}; log:\n{}", d.log());
}
