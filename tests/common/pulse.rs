//! A private, headless PulseAudio server for capture tests (no sound card needed).
//!
//! The server runs as the current user from a temp dir, with a null sink whose monitor is the
//! default source, so cpal's ALSA device `alsa:pulse` records whatever [`PulseServer::play`]
//! plays into the sink. Everything it starts is killed by PID when it is dropped.
//!
//! libpulse finds the server through process-wide environment variables (`PULSE_SERVER`, ...),
//! so only one `PulseServer` can exist per test process at a time: each one holds a global lock
//! for its whole life, which serialises the tests that use it. Take the server (`start` or
//! `prepare`) before opening any audio device in a test.
//!
//! Needs the apt packages `pulseaudio pulseaudio-utils libasound2-plugins sox`; if they are
//! missing the helper panics naming them (a capture test must not silently pass).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

static ONE_SERVER: Mutex<()> = Mutex::new(());

pub const SINK: &str = "earshot_test";
pub const RATE: u32 = 48_000;

/// See the module docs.
pub struct PulseServer {
    dir: tempfile::TempDir,
    server: Option<Child>,
    /// paplay / parec processes we started.
    helpers: Vec<Child>,
    sink_module: Option<String>,
    _lock: MutexGuard<'static, ()>,
}

fn require(bin: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(bin).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "`{bin}` not found: the capture tests need a real PulseAudio server. Install it with \
         `apt-get install -y pulseaudio pulseaudio-utils libasound2-plugins sox` \
         (and `pkg-config libasound2-dev` to build cpal)"
    );
}

impl PulseServer {
    /// Sets up the environment (so clients look for the server in our temp dir) without
    /// starting the server: for tests of a server/device that appears late.
    pub fn prepare() -> Self {
        let lock = ONE_SERVER.lock().unwrap_or_else(|e| e.into_inner());
        for bin in ["pulseaudio", "pactl", "paplay", "parec", "sox"] {
            require(bin);
        }
        assert!(
            Path::new("/usr/share/alsa/alsa.conf.d/50-pulseaudio.conf").exists()
                || Path::new("/usr/share/alsa/alsa.conf.d/pulse.conf").exists(),
            "ALSA's pulse plugin is missing: apt-get install -y libasound2-plugins"
        );
        let dir = tempfile::Builder::new()
            .prefix("earshot-pulse-")
            .tempdir()
            .expect("temp dir");
        let d = dir.path();
        std::fs::create_dir_all(d.join("xdg")).unwrap();
        std::fs::create_dir_all(d.join("home/.config/pulse")).unwrap();
        std::fs::write(d.join("client.conf"), "autospawn = no\nenable-shm = no\n").unwrap();
        std::fs::write(
            d.join("default.pa"),
            format!(
                "load-module module-native-protocol-unix auth-anonymous=1 socket={}\n",
                d.join("native").display()
            ),
        )
        .unwrap();
        // SAFETY: only one PulseServer exists at a time (the lock above), it is created before
        // the test opens any audio device, and the test harness threads do not touch these
        // variables. libpulse (inside ALSA's pulse plugin) reads them when it connects.
        unsafe {
            for (k, v) in Self::env_of(d) {
                std::env::set_var(k, v);
            }
        }
        PulseServer {
            dir,
            server: None,
            helpers: Vec::new(),
            sink_module: None,
            _lock: lock,
        }
    }

    fn env_of(d: &Path) -> Vec<(&'static str, String)> {
        vec![
            ("XDG_RUNTIME_DIR", d.join("xdg").display().to_string()),
            (
                "PULSE_SERVER",
                format!("unix:{}", d.join("native").display()),
            ),
            (
                "PULSE_COOKIE",
                d.join("home/.config/pulse/cookie").display().to_string(),
            ),
            (
                "PULSE_CLIENTCONFIG",
                d.join("client.conf").display().to_string(),
            ),
        ]
    }

    /// A running server with the null sink loaded and a tone-free steady state.
    pub fn start() -> Self {
        let mut s = Self::prepare();
        s.start_server();
        s.load_sink();
        s
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn command(&self, bin: &str) -> Command {
        let mut c = Command::new(bin);
        c.envs(Self::env_of(self.dir.path()))
            .env("HOME", self.dir.path().join("home"))
            .env_remove("DBUS_SESSION_BUS_ADDRESS")
            .stdin(Stdio::null());
        c
    }

    /// Starts the server (no sink yet) and waits until it answers.
    pub fn start_server(&mut self) {
        assert!(self.server.is_none(), "server already running");
        let log = std::fs::File::create(self.dir().join("pulse.log")).unwrap();
        let child = self
            .command("pulseaudio")
            .args(["-n", "-F"])
            .arg(self.dir().join("default.pa"))
            .args([
                "--daemonize=no",
                "--exit-idle-time=-1",
                "--use-pid-file=no",
                "--disable-shm=yes",
                "--log-level=info",
            ])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start pulseaudio");
        self.server = Some(child);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let ok = self
                .command("pactl")
                .arg("info")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ok {
                return;
            }
            if let Some(Ok(Some(st))) = self.server.as_mut().map(|c| c.try_wait()) {
                panic!(
                    "pulseaudio exited ({st}): {}",
                    std::fs::read_to_string(self.dir().join("pulse.log")).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "pulseaudio did not answer within 15 s: {}",
                std::fs::read_to_string(self.dir().join("pulse.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs pactl and returns its stdout; panics with its stderr on failure.
    pub fn pactl(&self, args: &[&str]) -> String {
        let out = self
            .command("pactl")
            .args(args)
            .output()
            .expect("run pactl");
        assert!(
            out.status.success(),
            "pactl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Loads the null sink, makes its monitor the default source, and starts a low-latency
    /// reader on it: the null sink otherwise renders in blocks of up to 2 s.
    pub fn load_sink(&mut self) {
        let idx = self.pactl(&[
            "load-module",
            "module-null-sink",
            &format!("sink_name={SINK}"),
            &format!("rate={RATE}"),
            "channels=2",
        ]);
        self.sink_module = Some(idx.trim().to_string());
        self.pactl(&["set-default-sink", SINK]);
        self.pactl(&["set-default-source", &format!("{SINK}.monitor")]);
        let keeper = self
            .command("parec")
            .args(["--latency-msec=10", "-d", &format!("{SINK}.monitor")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start parec");
        self.helpers.push(keeper);
    }

    /// Removes the null sink (like unplugging the microphone).
    pub fn unload_sink(&mut self) {
        let idx = self.sink_module.take().expect("sink is loaded");
        self.pactl(&["unload-module", &idx]);
    }

    /// Plays a WAV into the sink in the background (until it ends or the server goes away).
    pub fn play(&mut self, wav: &Path) {
        let child = self
            .command("paplay")
            .arg(format!("--device={SINK}"))
            .arg(wav)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start paplay");
        self.helpers.push(child);
    }

    /// Writes a 16-bit stereo WAV with a sine of `left_hz` on the left and `right_hz` on the
    /// right, at amplitude `amplitude` (0-1), with sox.
    pub fn tone(
        &self,
        name: &str,
        left_hz: f64,
        right_hz: f64,
        seconds: f64,
        amplitude: f64,
    ) -> PathBuf {
        let path = self.dir().join(name);
        let st = Command::new("sox")
            .args(["-n", "-r", &RATE.to_string(), "-c", "2", "-b", "16"])
            .arg(&path)
            .args([
                "synth",
                &seconds.to_string(),
                "sine",
                &left_hz.to_string(),
                "sine",
                &right_hz.to_string(),
                "vol",
                &amplitude.to_string(),
            ])
            .status()
            .expect("run sox");
        assert!(st.success(), "sox failed to make {name}");
        path
    }

    /// Stops (SIGSTOP) or resumes (SIGCONT) the server: a wedged audio server that neither
    /// delivers audio nor reports errors.
    pub fn freeze_server(&self, frozen: bool) {
        let pid = self
            .server
            .as_ref()
            .expect("server running")
            .id()
            .to_string();
        let sig = if frozen { "-STOP" } else { "-CONT" };
        let st = Command::new("kill")
            .args([sig, &pid])
            .status()
            .expect("run kill");
        assert!(st.success(), "kill {sig} {pid} failed");
    }

    /// Kills the server (SIGKILL, by PID), like a crash of the audio server.
    pub fn kill_server(&mut self) {
        if let Some(mut c) = self.server.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for PulseServer {
    fn drop(&mut self) {
        if self.server.is_some() {
            // A frozen server would not die from a pending SIGKILL on every kernel; thaw first.
            let pid = self
                .server
                .as_ref()
                .map(|c| c.id().to_string())
                .unwrap_or_default();
            let _ = Command::new("kill").args(["-CONT", &pid]).status();
        }
        for c in self.helpers.iter_mut() {
            let _ = c.kill();
        }
        for c in self.helpers.iter_mut() {
            let _ = c.wait();
        }
        self.kill_server();
    }
}
