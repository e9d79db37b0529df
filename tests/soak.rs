//! An accelerated soak: the real `earshot run` listens to several machines for hours of audio
//! in minutes of wall time while the things that go wrong on a plant's edge PC are done to it,
//! and at the end nothing was lost, nothing was invented and nothing grew.
//!
//! Set-up (all on 127.0.0.1, all started and killed by this test):
//! - three replay monitors (`realtime = false`, `loop = true`) on synthetic motor audio made
//!   with `earshot synth`: each file is normal operation, then a bearing fault up to its end,
//!   so every pass of the loop injects exactly one anomaly at a known stream time; the files
//!   have different lengths so the monitors drift apart. One scores its k-NN against the Azure
//!   AI Search emulator (tests/common/azure_emulator.rs), the others in memory;
//! - one live monitor on a private PulseAudio server's null sink (tests/common/pulse.rs);
//! - two webhook receivers (tests/common/receiver.rs) taking every alert;
//! - the state directory on a small tmpfs (when mounting is permitted: we are root in CI).
//!
//! Faults, scheduled by progress (audio played, or wall time if that runs out first): each
//! webhook receiver down for a while, the Azure emulator answering 503, then 429, then too
//! slowly (client timeouts), the daemon SIGKILLed and restarted twice (once while alerts wait
//! in the outbox), the state filesystem full, the PulseAudio sink unloaded and loaded back,
//! and the PulseAudio server killed and restarted.
//!
//! Checks: every pass of a loop that fully played produced exactly one anomaly event (counted
//! over the events file and the alerts, by event id, since the full filesystem loses event
//! lines but not alerts), no event outside a fault, each event's alerts reached both receivers,
//! firing and resolved (an event open at a SIGKILL is resolved by the next start; duplicates
//! from at-least-once redelivery across the SIGKILL are removed by fingerprint and counted), the outbox drained, no panic in any log, the events file is valid JSON lines, the
//! live monitor reported losing and recovering its device, and over the last daemon's life
//! after warm-up RSS stayed within 10 % and neither file descriptors nor threads grew.
//!
//! Length: `SOAK_HOURS` audio-hours in total over the replay monitors (default 1.5: about a
//! minute of faults after half a minute of set-up on a 2-core machine), bounded by `SOAK_MAX_WALL_S` seconds of wall time
//! (default 240; the schedule then runs on wall time so the test always ends). The long run:
//! `SOAK_HOURS=24 SOAK_MAX_WALL_S=7200 cargo test --release --test soak -- --nocapture`.

#[path = "common/azure_emulator.rs"]
#[allow(dead_code)]
mod azure_emulator;
#[path = "common/daemon.rs"]
mod daemon;
#[path = "common/pulse.rs"]
mod pulse;
#[path = "common/receiver.rs"]
mod receiver;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use azure_emulator::{ADMIN_KEY, Emulator, Fault, Op, QUERY_KEY};
use daemon::{Daemon, FAULT_DB, fixture, metric_value, motor_stream, read_events, test_dir};
use pulse::PulseServer;
use receiver::{Receiver, free_port};

/// Sample rate of the replayed files (the fixture profile's).
const RATE: u32 = 48_000;
/// Hop of the replay monitors: one window per second of audio (the profile's window).
const HOP: f64 = 1.0;
const WINDOW: f64 = 1.0;

/// A replay monitor: a file of `seconds`, normal until `onset`, faulty from there to its end.
struct Loop {
    monitor: &'static str,
    seconds: f64,
    onset: f64,
    azure: bool,
}

const LOOPS: [Loop; 3] = [
    Loop {
        monitor: "motor-a",
        seconds: 60.0,
        onset: 40.0,
        azure: false,
    },
    Loop {
        monitor: "motor-b",
        seconds: 75.0,
        onset: 50.0,
        azure: false,
    },
    Loop {
        monitor: "motor-azure",
        seconds: 90.0,
        onset: 62.0,
        azure: true,
    },
];
const LIVE: &str = "live";
const TARGETS: [&str; 2] = ["hook-a", "hook-b"];
const INDEX: &str = "soak-normals";

/// Faults and other steps of the schedule.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Step {
    ReceiverDown(usize),
    ReceiverUp(usize),
    Azure503,
    Azure429,
    AzureSlow,
    AzureClear,
    Kill,
    DiskFull,
    DiskFree,
    PulseUnload,
    PulseLoad,
    PulseKill,
    PulseRestart,
}

impl Step {
    /// The fault this step injects (None for the steps that end one).
    fn fault(self) -> Option<&'static str> {
        Some(match self {
            Step::ReceiverDown(_) => "webhook receiver down",
            Step::Azure503 => "azure 503",
            Step::Azure429 => "azure 429",
            Step::AzureSlow => "azure timeouts",
            Step::Kill => "daemon SIGKILL",
            Step::DiskFull => "state fs full",
            Step::PulseUnload => "pulse sink unloaded",
            Step::PulseKill => "pulse server killed",
            _ => return None,
        })
    }
}

/// (progress 0..1 at which it happens, step). The last daemon starts at 0.30; its warm-up
/// ends at 0.40, the RSS baseline is taken over 0.40-0.45 and compared with 0.93-1.0, after
/// every fault has ended.
const SCHEDULE: &[(f64, Step)] = &[
    (0.04, Step::ReceiverDown(0)),
    (0.06, Step::Azure503),
    (0.10, Step::Azure429),
    (0.12, Step::ReceiverUp(0)),
    (0.14, Step::AzureSlow),
    (0.17, Step::Kill),
    (0.18, Step::AzureClear),
    (0.22, Step::ReceiverDown(1)),
    (0.30, Step::Kill), // alerts wait in the outbox for receiver b: redelivered after restart
    (0.34, Step::ReceiverUp(1)),
    (0.46, Step::DiskFull),
    (0.54, Step::DiskFree),
    (0.58, Step::PulseUnload),
    (0.63, Step::PulseLoad),
    (0.68, Step::PulseKill),
    (0.72, Step::PulseRestart),
    (0.76, Step::ReceiverDown(0)),
    (0.78, Step::Azure503),
    (0.84, Step::AzureClear),
    (0.86, Step::ReceiverUp(0)),
];

fn env_f64(name: &str, default: f64) -> f64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// GET /metrics that tolerates a daemon that is gone or busy (None).
/// Descriptors open only for a moment (a clip being written, a delivery, a scrape) that a
/// peak sample at the end may catch beyond the earlier peak (one more seen in a CI run).
const FD_SLACK: usize = 2;

fn try_scrape(addr: SocketAddr) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).ok()?;
    let (head, body) = resp.split_once("\r\n\r\n")?;
    if !head.starts_with("HTTP/1.1 200") {
        return None;
    }
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        // Prometheus text has no CRLFs of its own: drop chunk-size lines.
        let mut out = String::new();
        let mut rest = body;
        while let Some((size, tail)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).ok()?;
            if n == 0 || tail.len() < n {
                break;
            }
            out.push_str(&tail[..n]);
            rest = tail[n..].trim_start_matches("\r\n");
        }
        return Some(out);
    }
    Some(body.to_string())
}

/// Sum of every sample of `name` whose label text contains `needle`.
fn metric_sum(text: &str, name: &str, needle: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|r| r.starts_with('{') || r.starts_with(' '))
        })
        .filter(|l| l.contains(needle))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum()
}

/// One sample of the daemon's resources from /proc.
#[derive(Debug, Clone, Copy)]
struct Usage {
    progress: f64,
    rss_kb: u64,
    fds: usize,
    threads: usize,
}

fn usage(pid: u32, progress: f64) -> Option<Usage> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |k: &str| -> Option<u64> {
        status
            .lines()
            .find(|l| l.starts_with(k))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    };
    Some(Usage {
        progress,
        rss_kb: field("VmRSS:")?,
        threads: field("Threads:")? as usize,
        fds: std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count(),
    })
}

/// A tmpfs mounted over a directory, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Fills the filesystem of `dir` until the kernel says it is full.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).expect("create filler");
    for chunk in [65536usize, 4096, 1] {
        let buf = vec![0u8; chunk];
        while f.write_all(&buf).is_ok() {}
    }
    path
}

/// What one daemon process got through (from its last scrape before it stopped).
#[derive(Debug, Default, Clone)]
struct Run {
    /// Stream seconds scored, per replay monitor (a lower bound of where it stopped).
    scored_s: BTreeMap<&'static str, f64>,
    /// Stream seconds captured, per replay monitor (ahead of scoring by the queue).
    captured_s: BTreeMap<&'static str, f64>,
    live_frames: f64,
    retries: f64,
    deliveries_ok: f64,
    deliveries_failed: f64,
    index_failures: f64,
    killed: bool,
    /// Wall time from this process's start to its last scrape, and from that scrape to its
    /// SIGKILL: how far past its last scrape a killed run may have gone.
    to_last_scrape: Duration,
    scrape_to_kill: Duration,
}

impl Run {
    /// Stream seconds `monitor` may have captured beyond its last scrape: the capture counter
    /// is published once a second, and a killed run went on until the kill, at its speed.
    fn unseen_s(&self, monitor: &str) -> f64 {
        let run_s = self.to_last_scrape.as_secs_f64();
        if !self.killed || run_s <= 0.0 {
            return 0.0;
        }
        let speed = self.captured_s.get(monitor).copied().unwrap_or(0.0) / run_s;
        speed * (self.scrape_to_kill.as_secs_f64() + 1.0)
    }

    fn update(&mut self, text: &str, since_start: Duration) {
        self.to_last_scrape = since_start;
        for l in &LOOPS {
            let w = metric_value(text, "earshot_pipeline_windows_processed_total", l.monitor)
                .unwrap_or(0.0);
            let s = if w > 0.0 {
                (w - 1.0) * HOP + WINDOW
            } else {
                0.0
            };
            self.scored_s.insert(l.monitor, s);
            let f = metric_value(text, "earshot_capture_frames_received_total", l.monitor)
                .unwrap_or(0.0);
            self.captured_s.insert(l.monitor, f / f64::from(RATE));
        }
        self.live_frames =
            metric_value(text, "earshot_capture_frames_received_total", LIVE).unwrap_or(0.0);
        self.retries = metric_sum(text, "earshot_alert_retries_total", "");
        self.deliveries_ok = metric_sum(text, "earshot_alert_deliveries_total", "outcome=\"ok\"")
            + metric_sum(
                text,
                "earshot_alert_deliveries_total",
                "outcome=\"delivered\"",
            );
        self.deliveries_failed =
            metric_sum(text, "earshot_alert_deliveries_total", "outcome=\"failed\"");
        self.index_failures = metric_sum(text, "earshot_index_query_failures_total", "");
    }

    fn audio_s(&self) -> f64 {
        self.scored_s.values().sum()
    }
}

/// One anomaly event as seen in the events file and/or the alerts.
#[derive(Debug, Default, Clone)]
struct Seen {
    monitor: String,
    start_s: f64,
    /// Index of the daemon run that wrote it to the events file (None: known from alerts only).
    run: Option<usize>,
    /// Onset, end, rule and end reason as the events file has them, for failure messages.
    detail: String,
    in_file: bool,
    /// Ended by the start after a SIGKILL (reason `interrupted`).
    interrupted: bool,
    /// target -> statuses received (with duplicates).
    got: BTreeMap<String, Vec<String>>,
    fingerprints: BTreeSet<String>,
}

/// Stream seconds of a fast replay's time stamp (seconds after the Unix epoch).
fn stream_s_of(stamp: &str) -> Option<f64> {
    let t = humantime::parse_rfc3339_weak(stamp.trim_end_matches('Z')).ok()?;
    Some(t.duration_since(SystemTime::UNIX_EPOCH).ok()?.as_secs_f64())
}

fn config_text(
    dir: &Path,
    files: &[PathBuf],
    profile: &Path,
    azure: &str,
    ports: [u16; 2],
) -> String {
    let mut s = format!(
        "[daemon]\nstate_dir = \"{}\"\n[metrics]\nlisten = \"127.0.0.1:0\"\n\
         [alerts]\nexternal_url = \"http://soak:9847\"\nshutdown_grace = \"10s\"\n",
        dir.join("state").display()
    );
    for (t, port) in TARGETS.iter().zip(ports) {
        s += &format!(
            "[[alerts.webhook]]\nname = \"{t}\"\nurl = \"http://127.0.0.1:{port}/{t}\"\n\
             timeout = \"2s\"\nretry_initial = \"200ms\"\nretry_max = \"2s\"\n"
        );
    }
    for (l, f) in LOOPS.iter().zip(files) {
        s += &format!(
            "[[monitor]]\nname = \"{}\"\nlabels = {{ machine = \"motor_id01\", line = \"soak\" }}\n\
             profile = \"{}\"\nhop_seconds = {HOP}\n\
             source = {{ file = \"{}\", realtime = false, loop = true }}\n",
            l.monitor,
            profile.display(),
            f.display()
        );
        if l.azure {
            s += &format!(
                "index = {{ kind = \"azure\", endpoint = \"{azure}\", index_name = \"{INDEX}\", \
                 api_key_env = \"EARSHOT_TEST_AZURE_KEY\", exhaustive = true, timeout_ms = 500 }}\n"
            );
        }
    }
    // The live monitor last: `[monitor.capture]` belongs to the last `[[monitor]]`.
    s += &format!(
        "[[monitor]]\nname = \"{LIVE}\"\nlabels = {{ machine = \"motor_id01\", line = \"pulse\" }}\n\
         profile = \"{}\"\nsource = {{ device = \"alsa:pulse\" }}\n\
         [monitor.capture]\nstall_timeout = \"1500ms\"\nretry = {{ initial = \"200ms\", max = \"1s\" }}\n",
        profile.display()
    );
    s
}

fn start_daemon(config: &Path) -> (Daemon, SocketAddr) {
    let mut d = Daemon::start(
        config,
        &[],
        &[
            ("EARSHOT_LOG", "earshot=info"),
            ("EARSHOT_TEST_AZURE_KEY", QUERY_KEY),
        ],
    );
    let addr = d.metrics_addr();
    (d, addr)
}

#[test]
fn soak_with_faults_loses_nothing_and_grows_nothing() {
    let hours = env_f64("SOAK_HOURS", 1.5);
    let max_wall = Duration::from_secs_f64(env_f64("SOAK_MAX_WALL_S", 240.0));
    let target_audio_s = hours * 3600.0;
    let fx = fixture();
    let dir = test_dir();
    let t_setup = Instant::now();

    // Replay files: normal, then the fault to the end of the file.
    let files: Vec<PathBuf> = LOOPS
        .iter()
        .map(|l| {
            motor_stream(
                dir.path(),
                &format!("{}.wav", l.monitor),
                FAULT_DB,
                l.seconds,
                l.onset,
                RATE,
            )
        })
        .collect();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("emulator runtime");
    let emu = rt.block_on(Emulator::start());
    let ports = [free_port(), free_port()];
    let mut receivers: Vec<Option<Receiver>> =
        ports.iter().map(|p| Some(Receiver::start(*p))).collect();
    // Alerts taken by receivers that were stopped (a stopped receiver's log goes with it).
    let mut received: Vec<Vec<receiver::Received>> = vec![Vec::new(), Vec::new()];

    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let tmpfs = Tmpfs::mount(&state, "32m");
    if tmpfs.is_none() {
        eprintln!("NOTE: cannot mount a tmpfs (needs root): the full-filesystem fault is skipped");
    }
    let config = dir.path().join("earshot.toml");
    std::fs::write(
        &config,
        config_text(dir.path(), &files, &fx.profile, &emu.endpoint(), ports),
    )
    .unwrap();
    // The Azure monitor's normals go to the emulator as a site would upload them.
    let up = std::process::Command::new(daemon::EARSHOT)
        .args(["index", "--profile"])
        .arg(&fx.profile)
        .arg("--config")
        .arg(&config)
        .args(["--monitor", "motor-azure"])
        .env("EARSHOT_TEST_AZURE_KEY", ADMIN_KEY)
        .env("EARSHOT_LOG", "warn")
        .output()
        .expect("run earshot index");
    assert!(
        up.status.success(),
        "earshot index failed: {}",
        String::from_utf8_lossy(&up.stderr)
    );
    assert!(!emu.docs(INDEX).is_empty(), "the upload stored nothing");

    let mut pa = PulseServer::start();
    let setup_s = t_setup.elapsed().as_secs_f64();

    let t0 = Instant::now();
    let (mut d, mut addr) = start_daemon(&config);
    let mut runs: Vec<Run> = vec![Run::default()];
    let mut run_t0 = Instant::now();
    // Index of the first events-file line of each run after the first.
    let mut run_starts: Vec<usize> = Vec::new();
    let mut logs: Vec<String> = Vec::new();
    let mut faults: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut usages: Vec<Usage> = Vec::new();
    let mut last_start_progress = 0.0;
    let mut filler: Option<PathBuf> = None;
    let mut next = 0;
    let mut progress = 0.0f64;
    let mut last_usage = Instant::now() - Duration::from_secs(10);
    let mut last_step = Instant::now();
    let mut hold = Duration::ZERO;
    while progress < 1.0 || next < SCHEDULE.len() {
        std::thread::sleep(Duration::from_millis(200));
        if let Some(text) = try_scrape(addr) {
            runs.last_mut().unwrap().update(&text, run_t0.elapsed());
        }
        assert!(
            d.try_status().is_none(),
            "the daemon exited on its own: {:?}\n{}",
            d.try_status(),
            d.log()
        );
        let audio: f64 = runs.iter().map(Run::audio_s).sum();
        progress =
            (audio / target_audio_s).max(t0.elapsed().as_secs_f64() / max_wall.as_secs_f64());
        if last_usage.elapsed() >= Duration::from_millis(250)
            && let Some(u) = usage(d.pid(), progress)
        {
            usages.push(u);
            last_usage = Instant::now();
        }
        while next < SCHEDULE.len() && SCHEDULE[next].0 <= progress && last_step.elapsed() >= hold {
            let step = SCHEDULE[next].1;
            next += 1;
            if let Some(f) = step.fault() {
                if step == Step::DiskFull && tmpfs.is_none() {
                    continue;
                }
                *faults.entry(f).or_default() += 1;
            }
            eprintln!(
                "soak: {:>6.1} s wall, {:>6.2} audio-h, progress {:.2}: {step:?}",
                t0.elapsed().as_secs_f64(),
                audio / 3600.0,
                progress
            );
            last_step = Instant::now();
            // However fast the audio goes, each state lasts long enough in wall time to be
            // noticed: the live monitor must see its device go before it comes back.
            hold = match step {
                Step::PulseUnload | Step::PulseKill => Duration::from_secs(4),
                _ => Duration::from_secs(2),
            };
            match step {
                Step::ReceiverDown(i) => {
                    if let Some(mut r) = receivers[i].take() {
                        // Stop first: a request it takes while stopping is then in the log
                        // (the handler logs before it answers 200).
                        r.stop();
                        received[i].extend(r.received());
                    }
                }
                Step::ReceiverUp(i) => receivers[i] = Some(Receiver::start(ports[i])),
                Step::Azure503 => emu.set_outage(Op::Search, Some(503)),
                Step::Azure429 => {
                    emu.set_outage(Op::Search, None);
                    emu.set_outage(Op::Search, Some(429));
                }
                Step::AzureSlow => {
                    emu.clear_faults();
                    emu.push_fault(Fault::Delay {
                        op: Op::Search,
                        delay: Duration::from_secs(2),
                        times: 200,
                    });
                }
                Step::AzureClear => emu.clear_faults(),
                Step::Kill => {
                    // A fresh look just before the kill: the one before can be a second old
                    // under load, hundreds of audio seconds behind where the daemon is.
                    if let Some(text) = try_scrape(addr) {
                        runs.last_mut().unwrap().update(&text, run_t0.elapsed());
                    }
                    d.signal(libc::SIGKILL);
                    let run = runs.last_mut().unwrap();
                    run.scrape_to_kill = run_t0.elapsed().saturating_sub(run.to_last_scrape);
                    d.expect_exit(Duration::from_secs(20));
                    run.killed = true;
                    // Lines written so far belong to the runs before the next one.
                    run_starts.push(read_events(&state.join("events.jsonl")).len());
                    logs.push(d.log());
                    drop(d);
                    run_t0 = Instant::now();
                    (d, addr) = start_daemon(&config);
                    runs.push(Run::default());
                    usages.clear();
                    last_start_progress = progress;
                }
                Step::DiskFull => filler = Some(fill(&state)),
                Step::DiskFree => {
                    if let Some(f) = filler.take() {
                        std::fs::remove_file(f).expect("remove filler");
                    }
                }
                Step::PulseUnload => pa.unload_sink(),
                Step::PulseLoad => pa.load_sink(),
                Step::PulseKill => pa.kill_server(),
                Step::PulseRestart => {
                    pa.start_server();
                    pa.load_sink();
                }
            }
        }
    }
    let wall_s = t0.elapsed().as_secs_f64();
    // Every fault has ended: the outbox drains to both receivers.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let text = try_scrape(addr).unwrap_or_default();
        let depth = metric_sum(&text, "earshot_alert_outbox_depth", "");
        if !text.is_empty() && depth == 0.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the outbox did not drain (depth {depth}):\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    // The last look at the last daemon before it stops.
    if let Some(text) = try_scrape(addr) {
        runs.last_mut().unwrap().update(&text, run_t0.elapsed());
    }
    if let Some(u) = usage(d.pid(), 1.0) {
        usages.push(u);
    }
    d.signal(libc::SIGTERM);
    let st = d.expect_exit(Duration::from_secs(60));
    logs.push(d.log());
    assert!(st.success(), "{st}\n{}", d.log());
    drop(d);
    // The shutdown's resolved alerts are delivered before exit.
    std::thread::sleep(Duration::from_millis(500));
    for (i, r) in receivers.iter_mut().enumerate() {
        if let Some(mut r) = r.take() {
            r.stop();
            received[i].extend(r.received());
        }
    }
    drop(pa);

    // ---- what happened
    // Every line must parse (read_events panics otherwise): the full filesystem left no torn
    // line. The tmpfs stays mounted until the end of the test.
    let events = read_events(&state.join("events.jsonl"));
    let mut seen: BTreeMap<String, Seen> = BTreeMap::new();
    let mut live_kinds: BTreeMap<String, usize> = BTreeMap::new();
    for (line, e) in events.iter().enumerate() {
        let kind = e["kind"].as_str().unwrap_or("");
        let monitor = e["labels"]["monitor"].as_str().unwrap_or("").to_string();
        if monitor == LIVE {
            *live_kinds.entry(kind.to_string()).or_default() += 1;
        }
        if !kind.starts_with("anomaly") {
            continue;
        }
        let id = e["fingerprint"].as_str().expect("fingerprint").to_string();
        let s = seen.entry(id).or_default();
        s.monitor = monitor;
        s.start_s = e["event"]["start"]["stream_s"].as_f64().expect("stream_s");
        // The run that started it: an event a SIGKILL left open is ended by a line of the
        // next run.
        s.run = s
            .run
            .or(Some(run_starts.iter().filter(|b| line >= **b).count()));
        let ev = &e["event"];
        s.detail = format!(
            "run {:?}, {:.1}..{} s, rule {}, ended {}",
            s.run,
            s.start_s,
            ev["end"]["stream_s"]
                .as_f64()
                .map_or("open".to_string(), |x| format!("{x:.1}")),
            ev["rule"],
            ev["reason"]
        );
        s.in_file = true;
        s.interrupted |= ev["reason"] == "interrupted";
    }
    let mut posts = [0usize; 2];
    let mut alerts_total = [0usize; 2];
    let mut duplicates = [0usize; 2];
    for (i, got) in received.iter().enumerate() {
        posts[i] = got.len();
        let mut keys = BTreeSet::new();
        for r in got {
            assert_eq!(r.path, format!("/{}", TARGETS[i]));
            for a in r.json["alerts"].as_array().cloned().unwrap_or_default() {
                alerts_total[i] += 1;
                if a["labels"]["alertname"] != "EarshotAnomaly" {
                    continue;
                }
                let id = a["labels"]["event_id"]
                    .as_str()
                    .expect("event_id")
                    .to_string();
                let status = a["status"].as_str().unwrap_or("").to_string();
                let fp = a["fingerprint"].as_str().unwrap_or("").to_string();
                if !keys.insert((fp.clone(), status.clone())) {
                    duplicates[i] += 1;
                }
                let s = seen.entry(id).or_default();
                s.monitor = a["labels"]["monitor"].as_str().unwrap_or("").to_string();
                if !s.in_file {
                    s.start_s = stream_s_of(a["startsAt"].as_str().unwrap_or(""))
                        .expect("startsAt of a fast replay");
                }
                s.got
                    .entry(TARGETS[i].to_string())
                    .or_default()
                    .push(status);
                s.fingerprints.insert(fp);
            }
        }
    }

    // ---- checks
    let mut problems: Vec<String> = Vec::new();
    // Each event: inside a fault, alerted to both targets under one fingerprint.
    let mut count: BTreeMap<(&str, i64), usize> = BTreeMap::new();
    // The same per daemon run, for the events the events file attributes to one.
    let mut count_in_run: BTreeMap<(&str, usize, i64), usize> = BTreeMap::new();
    let mut details: BTreeMap<(&str, i64), Vec<String>> = BTreeMap::new();
    let mut interrupted = 0;
    for (id, s) in &seen {
        let Some(l) = LOOPS.iter().find(|l| l.monitor == s.monitor) else {
            problems.push(format!(
                "anomaly {id} on {} (not a replay monitor): {s:?}",
                s.monitor
            ));
            continue;
        };
        // The estimated onset is the middle of the first window of the triggering run.
        let k = ((s.start_s - l.onset + WINDOW) / l.seconds).floor();
        let offset = s.start_s - (k * l.seconds + l.onset);
        if !(-WINDOW..l.seconds - l.onset).contains(&offset) {
            problems.push(format!(
                "anomaly {id} of {} at {:.1} s is outside every fault ({offset:.1} s from the onset of pass {k})",
                s.monitor, s.start_s
            ));
        }
        *count.entry((l.monitor, k as i64)).or_default() += 1;
        if let Some(r) = s.run {
            *count_in_run.entry((l.monitor, r, k as i64)).or_default() += 1;
        }
        details
            .entry((l.monitor, k as i64))
            .or_default()
            .push(if s.detail.is_empty() {
                format!("alerts only, onset {:.1} s", s.start_s)
            } else {
                s.detail.clone()
            });
        if s.fingerprints.len() > 1 {
            problems.push(format!("anomaly {id} has several fingerprints: {s:?}"));
        }
        for t in TARGETS {
            let st = s.got.get(t).cloned().unwrap_or_default();
            if !st.iter().any(|x| x == "firing") {
                problems.push(format!("anomaly {id} never reached {t} as firing: {s:?}"));
            }
        }
        let resolved = TARGETS
            .iter()
            .filter(|t| {
                s.got
                    .get(**t)
                    .is_some_and(|v| v.iter().any(|x| x == "resolved"))
            })
            .count();
        // Every event ends at every target: by release, by the final SIGTERM, or, for one
        // open at a SIGKILL, by the next start (reason `interrupted`).
        if resolved < TARGETS.len() {
            problems.push(format!(
                "anomaly {id} was not resolved at every target: {s:?}"
            ));
        }
        if s.interrupted {
            interrupted += 1;
        }
    }
    // Only a SIGKILL leaves an event for the next start to end (one per monitor at most).
    let kills = runs.iter().filter(|r| r.killed).count();
    if interrupted > kills * LOOPS.len() {
        problems.push(format!(
            "{interrupted} anomalies ended as interrupted, more than the {} the SIGKILLs can explain",
            kills * LOOPS.len()
        ));
    }
    // Every pass that fully played in some run was detected once per run that played it.
    let mut injected = 0usize;
    let mut may = 0usize;
    for l in &LOOPS {
        let mut must: BTreeMap<i64, usize> = BTreeMap::new();
        let mut can: BTreeMap<i64, usize> = BTreeMap::new();
        let mut bad: BTreeSet<i64> = BTreeSet::new();
        for (ri, r) in runs.iter().enumerate() {
            let scored = r.scored_s.get(l.monitor).copied().unwrap_or(0.0);
            // Where it may have got to: a killed run went on past its last scrape.
            let captured =
                r.captured_s.get(l.monitor).copied().unwrap_or(0.0) + r.unseen_s(l.monitor);
            // Fully played and decided: the fault ran for 5 s of windows before the stop.
            let mut k = 0i64;
            while k as f64 * l.seconds + l.onset + 5.0 * HOP + WINDOW <= scored {
                *must.entry(k).or_default() += 1;
                k += 1;
            }
            let mut k = 0i64;
            // Upper bound: the daemon goes on between the last scrape and its SIGKILL (a
            // fresh scrape is taken just before it, but under load even that is old by
            // tens of audio seconds at this speed, counted in `captured` above): allow two
            // more passes.
            while k as f64 * l.seconds + l.onset < captured + 3.0 * l.seconds {
                *can.entry(k).or_default() += 1;
                k += 1;
            }
            // One run never raises two events for one pass (an event split in two), nor one
            // for a pass it cannot have played.
            for (&(_, _, k), &n) in
                count_in_run.range((l.monitor, ri, i64::MIN)..=(l.monitor, ri, i64::MAX))
            {
                let played = (k as f64 * l.seconds + l.onset) < captured + 3.0 * l.seconds;
                if n > usize::from(played) {
                    problems.push(format!(
                        "{} pass {k}: {n} anomaly events in daemon run {ri}, expected {}",
                        l.monitor,
                        usize::from(played)
                    ));
                    bad.insert(k);
                }
            }
        }
        injected += must.values().sum::<usize>();
        may += can.values().sum::<usize>();
        let keys: BTreeSet<i64> = must
            .keys()
            .chain(can.keys())
            .chain(
                count
                    .keys()
                    .filter(|(m, _)| *m == l.monitor)
                    .map(|(_, k)| k),
            )
            .copied()
            .collect();
        for k in keys {
            let n = count.get(&(l.monitor, k)).copied().unwrap_or(0);
            let lo = must.get(&k).copied().unwrap_or(0);
            let hi = can.get(&k).copied().unwrap_or(0);
            if n < lo || n > hi {
                problems.push(format!(
                    "{} pass {k}: {n} anomaly events, expected {lo}{}",
                    l.monitor,
                    if hi > lo {
                        format!("..={hi}")
                    } else {
                        String::new()
                    }
                ));
                bad.insert(k);
            }
        }
        for k in bad {
            for d in details.get(&(l.monitor, k)).into_iter().flatten() {
                problems.push(format!("  {} pass {k}: {d}", l.monitor));
            }
        }
    }
    // No panic, ever.
    for (i, log) in logs.iter().enumerate() {
        if log.contains("panicked") {
            problems.push(format!("daemon run {i} panicked:\n{log}"));
        }
    }
    // The live monitor lost and found its device at each PulseAudio fault.
    let pulse_faults = faults.get("pulse sink unloaded").copied().unwrap_or(0)
        + faults.get("pulse server killed").copied().unwrap_or(0);
    let recovered = live_kinds.get("device_recovered").copied().unwrap_or(0);
    if recovered < pulse_faults {
        problems.push(format!(
            "the live monitor recovered {recovered} times from {pulse_faults} PulseAudio faults: {live_kinds:?}"
        ));
    }
    // Resources of the last daemon: after warm-up vs the end of its life. The holds can carry
    // the schedule past progress 1, so its life is measured up to where it really ended.
    let final_progress = usages.iter().map(|u| u.progress).fold(1.0, f64::max);
    let span = final_progress - last_start_progress;
    let at = |a: f64, b: f64| -> Vec<Usage> {
        usages
            .iter()
            .filter(|u| {
                u.progress >= last_start_progress + a * span
                    && u.progress <= last_start_progress + b * span
            })
            .copied()
            .collect()
    };
    let median = |mut v: Vec<u64>| -> u64 {
        v.sort_unstable();
        v.get(v.len() / 2).copied().unwrap_or(0)
    };
    // RSS: median over 10-25 % of the life (model sessions, buffers and pools are allocated by
    // then) against the median of the last 10 %. File descriptors and threads come and go with
    // deliveries and queries, so their peak over 10-50 % is the ceiling the last 10 % must
    // stay under: a leak grows with every event and fault and would break it.
    let base = at(0.10, 0.25);
    let mid = at(0.10, 0.50);
    let end = at(0.90, 1.0);
    let peak_rss = usages.iter().map(|u| u.rss_kb).max().unwrap_or(0);
    let (base_rss, end_rss) = (
        median(base.iter().map(|u| u.rss_kb).collect()),
        median(end.iter().map(|u| u.rss_kb).collect()),
    );
    let max_of = |v: &[Usage], f: fn(&Usage) -> usize| v.iter().map(f).max().unwrap_or(0);
    let (base_fds, end_fds) = (max_of(&mid, |u| u.fds), max_of(&end, |u| u.fds));
    let (base_thr, end_thr) = (max_of(&mid, |u| u.threads), max_of(&end, |u| u.threads));
    if base.is_empty() || end.is_empty() {
        problems.push(format!("too few resource samples: {usages:?}"));
    } else {
        if end_rss as f64 > base_rss as f64 * 1.10 {
            problems.push(format!(
                "RSS grew from {base_rss} kB after warm-up to {end_rss} kB at the end (> 10 %)"
            ));
        }
        // A leak grows with every event and fault; the capture's PulseAudio connection
        // (about 8 descriptors, gone while the server is down), replay files between loops and
        // a clip or delivery in flight make the count swing by a few (20-27 measured in one
        // run), so the end's peak may pass the earlier peak by that much and no more.
        if end_fds > base_fds + FD_SLACK {
            problems.push(format!(
                "file descriptors grew from a peak of {base_fds} to {end_fds}"
            ));
        }
        if end_thr > base_thr {
            problems.push(format!("threads grew from {base_thr} to {end_thr}"));
        }
    }

    // ---- summary
    let audio_h: f64 = runs.iter().map(Run::audio_s).sum::<f64>() / 3600.0;
    let detected = count.values().sum::<usize>();
    let retries: f64 = runs.iter().map(|r| r.retries).sum();
    let failed: f64 = runs.iter().map(|r| r.deliveries_failed).sum();
    let index_failures: f64 = runs.iter().map(|r| r.index_failures).sum();
    let azure_errors = emu
        .statuses(Op::Search)
        .iter()
        .filter(|s| **s >= 400)
        .count();
    let fault_list: Vec<String> = faults.iter().map(|(k, v)| format!("{k} x{v}")).collect();
    println!(
        "\n== soak summary (SOAK_HOURS={hours}, SOAK_MAX_WALL_S={})",
        max_wall.as_secs()
    );
    let rows: Vec<(&str, String)> = vec![
        (
            "audio (replay monitors)",
            format!(
                "{audio_h:.2} h in {wall_s:.0} s wall ({:.0}x real time), setup {setup_s:.0} s",
                audio_h * 3600.0 / wall_s
            ),
        ),
        (
            "live monitor (PulseAudio)",
            format!(
                "{:.1} min captured (at the null sink's 48 kHz), in real time",
                runs.iter().map(|r| r.live_frames).sum::<f64>() / 48_000.0 / 60.0
            ),
        ),
        (
            "daemon runs",
            format!("{} ({kills} SIGKILLed, last one SIGTERMed)", runs.len()),
        ),
        (
            "faults injected",
            format!(
                "{} ({})",
                faults.values().sum::<usize>(),
                fault_list.join(", ")
            ),
        ),
        (
            "anomalies injected",
            format!("{injected} fully played (up to {may} counting passes cut by a stop)"),
        ),
        (
            "anomaly events",
            format!(
                "{detected} ({} in events.jsonl, {interrupted} left open by a SIGKILL and ended at the next start)",
                seen.values().filter(|s| s.in_file).count()
            ),
        ),
        ("live monitor events", format!("{live_kinds:?}")),
        (
            "webhook deliveries",
            format!(
                "{} POSTs ({} alerts) to {}, {} POSTs ({} alerts) to {}",
                posts[0], alerts_total[0], TARGETS[0], posts[1], alerts_total[1], TARGETS[1]
            ),
        ),
        (
            "duplicates (dedup by fingerprint)",
            format!("{} / {}", duplicates[0], duplicates[1]),
        ),
        (
            "delivery retries",
            format!("{retries:.0} ({failed:.0} failed attempts, as scraped before each stop)"),
        ),
        (
            "azure",
            format!(
                "{} searches, {azure_errors} answered 4xx/5xx, {index_failures:.0} query failures seen by earshot",
                emu.requests(Op::Search)
            ),
        ),
        (
            "RSS (last daemon)",
            format!(
                "peak {:.1} MB, after warm-up {:.1} MB, end {:.1} MB",
                peak_rss as f64 / 1024.0,
                base_rss as f64 / 1024.0,
                end_rss as f64 / 1024.0
            ),
        ),
        (
            "fds / threads (last daemon)",
            format!(
                "peak after warm-up {base_fds} / {base_thr}, peak at the end {end_fds} / {end_thr}"
            ),
        ),
    ];
    println!("| {:<34} | {:<100} |", "what", "value");
    println!("|{}|{}|", "-".repeat(36), "-".repeat(102));
    for (k, v) in rows {
        println!("| {k:<34} | {v:<100} |");
    }
    assert!(
        injected >= LOOPS.len(),
        "too short a soak to inject one anomaly per monitor ({audio_h:.2} audio-h)"
    );
    assert!(
        problems.is_empty(),
        "soak found problems:\n{}",
        problems.join("\n")
    );
}
