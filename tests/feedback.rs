//! "That was normal" end to end with the real binary and ONNX Runtime: a replayed variation
//! that raised an event raises none once `earshot feedback --normal` has added it to the
//! profile, `--undo` brings the event back, and an unknown fingerprint is a clear error. With
//! the monitor's normal memory in Azure AI Search (the emulator on 127.0.0.1), `--normal`
//! uploads the windows and `--undo` deletes them, and an outage is finished by a re-run.

#[path = "common/azure_emulator.rs"]
mod azure_emulator;
#[path = "common/daemon.rs"]
mod daemon;

use daemon::{
    Daemon, EARSHOT, daemon_header, fixture, replay_monitor, run_bounded, test_dir, write_config,
};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const RUN_LIMIT: Duration = Duration::from_secs(300);

/// Copies the fixture's profile (feedback changes it) into `dir/profile`.
fn own_profile(dir: &Path) -> PathBuf {
    let to = dir.join("profile");
    std::fs::create_dir_all(&to).unwrap();
    for e in std::fs::read_dir(&fixture().profile).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
    to
}

/// One fast replay of the fixture's stream (a bearing fault from 15 s: here the "normal
/// variation" an operator vouches for) against `profile`, in its own state directory under
/// `dir/<run>`; returns (config, state dir, anomaly_started events).
fn replay(dir: &Path, run: &str, profile: &Path) -> (PathBuf, PathBuf, Vec<serde_json::Value>) {
    replay_file(dir, run, profile, &fixture().stream)
}

/// [`replay`] of another recording.
fn replay_file(
    dir: &Path,
    run: &str,
    profile: &Path,
    wav: &Path,
) -> (PathBuf, PathBuf, Vec<serde_json::Value>) {
    let d = dir.join(run);
    std::fs::create_dir_all(&d).unwrap();
    let cfg = format!(
        "{}[evidence]\nmin_free_megabytes = 0\n{}",
        daemon_header(&d),
        replay_monitor("press-1", profile, wav, false, false)
    );
    let cfg = write_config(&d, &cfg);
    let mut daemon = Daemon::start(&cfg, &["--exit-when-done"], &[]);
    let st = daemon.expect_exit(RUN_LIMIT);
    assert!(st.success(), "{}", daemon.log());
    let started = daemon
        .events()
        .into_iter()
        .filter(|e| e["kind"] == "anomaly_started")
        .collect();
    (cfg, daemon.state_dir.clone(), started)
}

fn feedback(args: &[&str], extra: &[&Path]) -> (bool, String) {
    let mut c = Command::new(EARSHOT);
    c.arg("feedback").args(args).args(extra);
    let (st, out) = run_bounded(&mut c, RUN_LIMIT);
    (st.success(), out)
}

#[test]
fn feedback_normal_silences_the_event_and_undo_brings_it_back() {
    let dir = test_dir();
    let profile = own_profile(dir.path());
    let rows_before = std::fs::read_to_string(profile.join("ids.txt"))
        .unwrap()
        .lines()
        .count();

    let (cfg, state, events) = replay(dir.path(), "first", &profile);
    assert_eq!(
        events.len(),
        1,
        "the variation raises one event: {events:?}"
    );
    let fp = events[0]["fingerprint"].as_str().unwrap().to_owned();
    // `earshot events` (and the events page) give the command to paste.
    let listed = Command::new(EARSHOT)
        .args(["events", "--format", "json", "--state-dir"])
        .arg(&state)
        .output()
        .unwrap();
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(
        listed[0]["feedback_command"],
        format!("earshot feedback {fp} --normal")
    );

    // The fingerprint as events.jsonl shows it, with the config naming the monitor's profile.
    let (ok, out) = feedback(
        &[
            &fp,
            "--normal",
            "--note",
            "new belt, runs louder",
            "--config",
        ],
        &[&cfg],
    );
    assert!(ok, "{out}");
    assert!(out.contains("added") && out.contains("below"), "{out}");
    let ids = std::fs::read_to_string(profile.join("ids.txt")).unwrap();
    let added: Vec<&str> = ids.lines().filter(|l| l.starts_with("feedback:")).collect();
    assert!(!added.is_empty(), "feedback rows in ids.txt");
    assert!(
        added
            .iter()
            .all(|l| l.starts_with(&format!("feedback:{fp}@")))
    );
    // Twice is refused, and the record is listed with its note.
    let (ok, out) = feedback(
        &[&fp, "--normal", "--state-dir"],
        &[&state, Path::new("--config"), &cfg],
    );
    assert!(!ok && out.contains("already marked normal"), "{out}");
    let (ok, out) = feedback(&["--list", "--config"], &[&cfg]);
    assert!(ok && out.contains(&fp) && out.contains("new belt"), "{out}");

    let (_, _, events) = replay(dir.path(), "second", &profile);
    assert!(
        events.is_empty(),
        "no event after feedback --normal: {events:?}"
    );

    // Undo by the hex part alone: exactly the added rows go, and the event comes back.
    let hex = fp.rsplit_once('/').unwrap().1;
    let (ok, out) = feedback(&[hex, "--undo", "--config"], &[&cfg]);
    assert!(ok, "{out}");
    let ids = std::fs::read_to_string(profile.join("ids.txt")).unwrap();
    assert_eq!(ids.lines().count(), rows_before);
    assert!(!ids.contains("feedback:"));
    let (_, _, events) = replay(dir.path(), "third", &profile);
    assert_eq!(
        events.len(),
        1,
        "undo restores the former behaviour: {events:?}"
    );
}

/// The impulse level of the profile's manifest.
fn impulse(profile: &Path) -> serde_json::Value {
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(profile.join("manifest.json")).unwrap()).unwrap();
    m["impulse"].clone()
}

/// 12 s of the fixture's motor with 2 s of the generator's impact fault (knocks at 0 dB)
/// from 8 s, spliced into the normal sound at its level (the generator levels a whole stream,
/// so its faulty stream's machine is quieter: that alone would be an anomaly).
fn knocks(dir: &Path) -> PathBuf {
    const RATE: u32 = 48_000;
    let at = |t: f64| (t * f64::from(RATE)) as usize;
    let normal = daemon::read_i16(&daemon::motor_stream(dir, "n.wav", "-60", 12.0, 11.0, RATE));
    let faulty = daemon::read_i16(&daemon::motor_fault_stream(
        dir, "f.wav", "impact", "0", 12.0, 8.0, RATE,
    ));
    let ms = |x: &[i16]| x.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / x.len() as f64;
    let g = (ms(&normal[..at(8.0)]) / ms(&faulty[..at(8.0)])).sqrt();
    let mut out = normal;
    for i in at(8.0)..at(10.0) {
        out[i] = (f64::from(faulty[i]) * g).round().clamp(-32768.0, 32767.0) as i16;
    }
    let wav = dir.join("knocks.wav");
    daemon::write_i16(&wav, RATE, &out);
    wav
}

/// Knocks (the generator's impact fault) vouched for as normal: the impulse scorer that
/// reported them stops doing so, because feedback keeps its level above the added windows as
/// `learn` keeps it above every normal window; undo restores the learned level exactly.
#[test]
fn feedback_on_knocks_raises_the_impulse_level_and_undo_restores_it() {
    let dir = test_dir();
    let profile = own_profile(dir.path());
    let learned = impulse(&profile);
    let level = learned["level_db"]
        .as_f64()
        .expect("the profile has an impulse level");
    let wav = knocks(dir.path());

    let (cfg, _, events) = replay_file(dir.path(), "first", &profile, &wav);
    assert_eq!(events.len(), 1, "the knocks raise one event: {events:?}");
    // The knocks exceed the learned impulse level: without raising it they fire again.
    let peak = events[0]["event"]["scores"]["impulse"]["peak"].as_f64();
    assert!(
        peak.is_some_and(|p| p > level),
        "knocks above the impulse level {level}: {:#}",
        events[0]
    );
    let fp = events[0]["fingerprint"].as_str().unwrap().to_owned();
    let (ok, out) = feedback(&[&fp, "--normal", "--config"], &[&cfg]);
    assert!(ok, "{out}");
    let line = out
        .lines()
        .find(|l| l.trim_start().starts_with("impulse:"))
        .unwrap_or_else(|| panic!("no impulse line: {out}"));
    assert!(line.ends_with("below"), "{out}");
    let raised = impulse(&profile)["level_db"].as_f64().unwrap();
    assert!(raised > level, "level {level} -> {raised}");

    let (_, _, events) = replay_file(dir.path(), "second", &profile, &wav);
    assert!(
        events.is_empty(),
        "no event after feedback --normal: {events:?}"
    );

    let (ok, out) = feedback(&[&fp, "--undo", "--config"], &[&cfg]);
    assert!(ok, "{out}");
    assert_eq!(
        impulse(&profile),
        learned,
        "undo restores the learned level"
    );
    let (_, _, events) = replay_file(dir.path(), "third", &profile, &wav);
    assert_eq!(
        events.len(),
        1,
        "undo restores the former behaviour: {events:?}"
    );
}

/// A monitor deciding on centroid and `fused` (k-NN and log-mel statistics): marking the
/// variation normal silences it too, although feedback leaves the log-mel Gaussian as it
/// was: windows nearest to the event's rows and no stranger than it was count as normal on
/// the log-mel side. Undo brings the event back.
#[test]
fn feedback_silences_a_fused_monitor_too() {
    let dir = test_dir();
    let fx = fixture();
    let learn_cfg = dir.path().join("learn.toml");
    std::fs::write(
        &learn_cfg,
        "[learn]\nfalse_alarms_per_day = 300\ndecide_on = [\"centroid\", \"fused\"]\n",
    )
    .unwrap();
    let profile = dir.path().join("profile");
    daemon::earshot_ok(
        &[
            "learn",
            "--config",
            learn_cfg.to_str().unwrap(),
            "--normal",
            fx.dir.join("data/motor_id01/train").to_str().unwrap(),
            "--out",
            profile.to_str().unwrap(),
        ],
        dir.path(),
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(profile.join("manifest.json")).unwrap()).unwrap();
    assert!(manifest["thresholds"]["fused"].is_object(), "{manifest:#}");

    let (cfg, _, events) = replay(dir.path(), "first", &profile);
    assert_eq!(events.len(), 1, "{events:?}");
    let fp = events[0]["fingerprint"].as_str().unwrap().to_owned();
    let (ok, out) = feedback(&[&fp, "--normal", "--config"], &[&cfg]);
    assert!(ok, "{out}");
    let line = out
        .lines()
        .find(|l| l.trim_start().starts_with("fused:"))
        .unwrap_or_else(|| panic!("no fused line: {out}"));
    assert!(line.ends_with("below"), "{out}");
    let records: serde_json::Value =
        serde_json::from_slice(&std::fs::read(profile.join("feedback.json")).unwrap()).unwrap();
    assert!(
        records["entries"][0]["mel_peak"].as_f64().is_some(),
        "{records:#}"
    );

    let (_, _, events) = replay(dir.path(), "second", &profile);
    assert!(
        events.is_empty(),
        "no event after feedback --normal: {events:?}"
    );
    let (ok, out) = feedback(&[&fp, "--undo", "--config"], &[&cfg]);
    assert!(ok, "{out}");
    let (_, _, events) = replay(dir.path(), "third", &profile);
    assert_eq!(
        events.len(),
        1,
        "undo restores the former behaviour: {events:?}"
    );
}

#[test]
fn an_unknown_fingerprint_says_what_to_do() {
    let dir = test_dir();
    let profile = own_profile(dir.path());
    let (ok, out) = feedback(
        &["press-1/00000000deadbeef", "--normal", "--profile"],
        &[&profile, Path::new("--state-dir"), dir.path()],
    );
    assert!(!ok);
    assert!(
        out.contains("no event \"press-1/00000000deadbeef\"") && out.contains("earshot events"),
        "{out}"
    );
    let (ok, out) = feedback(
        &["press-1/00ff", "--undo", "--profile"],
        &[&profile, Path::new("--state-dir"), dir.path()],
    );
    assert!(!ok && out.contains("--list"), "{out}");
}

/// A running service on a looping replay (each pass ends in the "variation") picks the
/// feedback up without a restart: it logs and counts the swap, and the passes after it raise
/// no event.
#[test]
fn the_running_service_picks_feedback_up_live() {
    let dir = test_dir();
    let profile = own_profile(dir.path());
    let cfg = format!(
        "{}[evidence]\nmin_free_megabytes = 0\n{}",
        daemon_header(dir.path()),
        replay_monitor("press-1", &profile, &fixture().stream, false, true)
    );
    let cfg = write_config(dir.path(), &cfg);
    let mut d = Daemon::start(&cfg, &[], &[]);
    // The first event's whole clip is written once it ended (in the next pass's normal part);
    // the clip so far, written at detection, is refused by `feedback` while the event is open.
    let state = d.state_dir.clone();
    let mut fp = String::new();
    d.wait_for("an event with evidence", RUN_LIMIT, |d| {
        let started: Vec<_> = d
            .events()
            .into_iter()
            .filter(|e| e["kind"] == "anomaly_started")
            .collect();
        match started.first() {
            Some(e) => {
                fp = e["fingerprint"].as_str().unwrap().to_owned();
                let (m, h) = fp.rsplit_once('/').unwrap();
                let meta = state.join("evidence").join(m).join(h).join("event.json");
                std::fs::read_to_string(meta)
                    .ok()
                    .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
                    .is_some_and(|v| v["partial"] == false)
            }
            None => false,
        }
    });
    let pid = d.pid();
    let (ok, out) = feedback(&[&fp, "--normal", "--config"], &[&cfg]);
    assert!(ok, "{out}");
    d.wait_log("normal memory reloaded", RUN_LIMIT);
    assert_eq!(
        d.metric("earshot_profile_memory_reloads_total", "press-1"),
        Some(1.0)
    );
    // Events started so far (one may be in flight), then four more passes of 60 windows.
    let count = |d: &Daemon| {
        d.events()
            .iter()
            .filter(|e| e["kind"] == "anomaly_started")
            .count()
    };
    let before = count(&d);
    let w = d.windows("press-1");
    d.wait_windows_above("press-1", w + 240.0, RUN_LIMIT);
    let after = count(&d);
    assert!(
        after <= before + 1,
        "events went on after the live reload: {before} -> {after}"
    );
    assert_eq!(d.pid(), pid, "same process: no restart");
    assert_eq!(
        d.log().matches("monitor starting").count(),
        1,
        "the monitor was not restarted"
    );
}

/// The monitor's k-NN memory in Azure AI Search: `--normal` uploads the added windows under
/// the keys `earshot index` gives them, `--undo` deletes them; with the service down each says
/// what holds and how to finish, and a re-run does.
#[test]
fn feedback_on_an_azure_monitor_uploads_and_undo_deletes() {
    use azure_emulator::{ADMIN_KEY, Emulator, Op};
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let emu = rt.block_on(Emulator::start());
    let dir = test_dir();
    let profile = own_profile(dir.path());
    let (_, _, events) = replay(dir.path(), "first", &profile);
    assert_eq!(events.len(), 1, "{events:?}");
    let fp = events[0]["fingerprint"].as_str().unwrap().to_owned();

    // The same monitor, its k-NN memory in the emulator's index `normal`.
    let cfg = dir.path().join("azure.toml");
    std::fs::write(
        &cfg,
        format!(
            "{}{}index = {{ kind = \"azure\", endpoint = \"{}\", index_name = \"normal\", api_key_env = \"EARSHOT_TEST_AZURE_KEY\", upload_max_attempts = 2 }}\n",
            daemon_header(&dir.path().join("first")),
            replay_monitor("press-1", &profile, &fixture().stream, false, false),
            emu.endpoint()
        ),
    )
    .unwrap();
    let run = |args: &[&str]| {
        let mut c = Command::new(EARSHOT);
        c.args(args)
            .arg("--config")
            .arg(&cfg)
            .env("EARSHOT_TEST_AZURE_KEY", ADMIN_KEY);
        let (st, out) = run_bounded(&mut c, RUN_LIMIT);
        (st.success(), out)
    };
    let (ok, out) = run(&[
        "index",
        "--profile",
        profile.to_str().unwrap(),
        "--monitor",
        "press-1",
    ]);
    assert!(ok, "{out}");
    let rows = std::fs::read_to_string(profile.join("ids.txt"))
        .unwrap()
        .lines()
        .count();
    let docs = || emu.docs("normal");
    assert_eq!(docs().len(), rows);
    let feedback_docs = || {
        docs()
            .values()
            .filter(|d| {
                d.fields["window_id"]
                    .as_str()
                    .is_some_and(|w| w.starts_with("feedback:"))
            })
            .count()
    };

    // Azure down: the feedback holds locally (centroids apply), the error says to re-run.
    emu.set_outage(Op::IndexDocs, Some(503));
    let (ok, out) = run(&["feedback", &fp, "--normal"]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("is marked normal")
            && out.contains(&format!("earshot feedback {fp} --normal` again")),
        "{out}"
    );
    let ids = std::fs::read_to_string(profile.join("ids.txt")).unwrap();
    let added = ids.lines().filter(|l| l.starts_with("feedback:")).count();
    assert!(added > 0, "the local record is kept");
    assert_eq!(docs().len(), rows, "nothing reached the index");

    // Back up: the re-run uploads exactly the recorded windows.
    emu.set_outage(Op::IndexDocs, None);
    let (ok, out) = run(&["feedback", &fp, "--normal"]);
    assert!(ok && out.contains("already marked normal"), "{out}");
    assert_eq!(docs().len(), rows + added);
    assert_eq!(feedback_docs(), added);
    let (ok, _) = run(&["feedback", &fp, "--normal"]);
    assert!(ok);
    assert_eq!(docs().len(), rows + added, "a third run duplicates nothing");

    // Undo with Azure down changes nothing; once it answers, the windows go from both.
    emu.set_outage(Op::IndexDocs, Some(503));
    let (ok, out) = run(&["feedback", &fp, "--undo"]);
    assert!(
        !ok && out.contains("nothing was undone") && out.contains("--undo` again"),
        "{out}"
    );
    assert_eq!(
        std::fs::read_to_string(profile.join("ids.txt")).unwrap(),
        ids,
        "the record stays while the index holds the windows"
    );
    assert_eq!(docs().len(), rows + added);
    emu.set_outage(Op::IndexDocs, None);
    let (ok, out) = run(&["feedback", &fp, "--undo"]);
    assert!(ok && out.contains("removed"), "{out}");
    assert_eq!(docs().len(), rows);
    assert_eq!(feedback_docs(), 0);
    let ids = std::fs::read_to_string(profile.join("ids.txt")).unwrap();
    assert_eq!(ids.lines().count(), rows);
    drop(rt);
}
