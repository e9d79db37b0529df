//! Configuration: one TOML file plus `EARSHOT_` environment overrides, loaded with the
//! `config` crate, typed and validated once at the edge so the rest of earshot never sees a
//! bad value. Unknown keys are errors (a typo must not silently become a default), and every
//! error names the key.
//!
//! Environment overrides use `__` between levels: `EARSHOT_MODEL__THREADS=2` sets
//! `model.threads`, `EARSHOT_WINDOW__HOP_SECONDS=0.25` sets `window.hop_seconds`. Variables
//! without `__` (`EARSHOT_LOG`, secrets such as `EARSHOT_AZURE_KEY`) are not config keys.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const ENV_PREFIX: &str = "EARSHOT";
/// The model used when the config names none.
pub const DEFAULT_MODEL: &str = "panns-mobilenetv1-seeded";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path} not found")]
    Missing { path: PathBuf },
    #[error("config {path}: {detail}")]
    Parse { path: PathBuf, detail: String },
    #[error("config {path}: `{key}`: {detail}")]
    Invalid {
        path: PathBuf,
        key: String,
        detail: String,
    },
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    #[serde(default)]
    pub model: ModelSettings,
    #[serde(default)]
    pub window: WindowSettings,
    #[serde(default)]
    pub learn: LearnSettings,
    #[serde(default)]
    pub daemon: DaemonSettings,
    #[serde(default)]
    pub metrics: crate::metrics::MetricsConfig,
    #[serde(default)]
    pub events: crate::alert::events::JsonlOptions,
    /// `[alerts]`: webhook and Alertmanager targets, fed through a durable outbox.
    #[serde(default)]
    pub alerts: crate::alert::config::AlertsConfig,
    /// `[evidence]`: anomaly clips, spectrograms and their retention.
    #[serde(default)]
    pub evidence: crate::evidence::EvidenceConfig,
    /// `[catalog]`: the sound catalog anomalies are compared with ("sounds like"), and which
    /// of its labels are benign.
    #[serde(default)]
    pub catalog: crate::catalog::known::CatalogSettings,
    /// `[[monitor]]` tables: one per listened machine.
    #[serde(default, rename = "monitor")]
    pub monitors: Vec<MonitorSettings>,
    /// Where the settings came from (for messages and relative paths); not a config key.
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ModelSettings {
    /// Model directory (card.json + model.onnx). Default: the bundled seeded MobileNetV1.
    pub dir: Option<PathBuf>,
    /// ONNX Runtime intra-op threads; 0 = all cores.
    #[serde(default)]
    pub threads: usize,
    /// Path of libonnxruntime.so (default: searched, see README).
    pub onnxruntime: Option<PathBuf>,
    #[serde(default)]
    pub skip_checksum: bool,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WindowSettings {
    #[serde(default = "default_window")]
    pub seconds: f64,
    #[serde(default = "default_hop")]
    pub hop_seconds: f64,
    /// Each window is scaled to this RMS level (dBFS) before the model, so microphone gain
    /// and distance do not move the scores. Set to "off" to keep levels as recorded. Used by
    /// `learn` and recorded in the profile; scoring uses the profile's value.
    #[serde(default = "default_level", deserialize_with = "level_or_off")]
    pub level_dbfs: Option<f64>,
    /// "exact" (one network call per window) or "chunk-max" (one per hop; a window is the
    /// max of its hop-long chunks: a different feature, fixed per profile; see
    /// [`crate::embed::chunkmax`]). Used by `learn`; scoring uses the profile's.
    #[serde(default)]
    pub embed: crate::embed::EmbedMode,
}

fn default_level() -> Option<f64> {
    Some(-10.0)
}

fn level_or_off<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Num(f64),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Num(v) => Ok(Some(v)),
        Raw::Text(t) if t.eq_ignore_ascii_case("off") => Ok(None),
        Raw::Text(t) => t.parse::<f64>().map(Some).map_err(|_| {
            serde::de::Error::custom(format!("{t:?} is neither a level in dBFS nor \"off\""))
        }),
    }
}

impl Default for WindowSettings {
    fn default() -> Self {
        Self {
            seconds: default_window(),
            hop_seconds: default_hop(),
            level_dbfs: default_level(),
            embed: Default::default(),
        }
    }
}
fn default_window() -> f64 {
    1.0
}
fn default_hop() -> f64 {
    0.5
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LearnSettings {
    /// k-means clusters; 0 = chosen from the amount of normal audio.
    #[serde(default)]
    pub kmeans_k: usize,
    #[serde(default = "default_knn_k")]
    pub knn_k: usize,
    #[serde(default = "default_far")]
    pub target_far: f64,
    /// Unused: thresholds are calibrated leave-one-clip-out over all normal audio (accepted
    /// so that older configs still load).
    #[serde(default = "default_holdout")]
    pub holdout_fraction: f64,
    /// False events per day (N-of-M rule, all scorers of a monitor together) the thresholds
    /// are calibrated for.
    #[serde(default = "default_false_alarms_per_day")]
    pub false_alarms_per_day: f64,
    /// The scorers the daemon decides on (each gets a threshold; the false-alarm budget is
    /// shared among them): any of "centroid", "knn", "mel", "fused" (see `score`).
    #[serde(default = "crate::score::learn::default_decide_on")]
    pub decide_on: Vec<String>,
}

impl Default for LearnSettings {
    fn default() -> Self {
        Self {
            kmeans_k: 0,
            knn_k: default_knn_k(),
            target_far: default_far(),
            holdout_fraction: default_holdout(),
            false_alarms_per_day: default_false_alarms_per_day(),
            decide_on: crate::score::learn::default_decide_on(),
        }
    }
}
fn default_false_alarms_per_day() -> f64 {
    1.0
}
fn default_knn_k() -> usize {
    3
}
fn default_far() -> f64 {
    0.01
}
fn default_holdout() -> f64 {
    0.25
}

/// `[daemon]`: the long-running service.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DaemonSettings {
    /// Events file, anomaly clips and other state. Default: `$STATE_DIRECTORY` (systemd's
    /// StateDirectory=) or `/var/lib/earshot`.
    pub state_dir: Option<PathBuf>,
    /// Windows waiting for inference, per monitor. When inference falls behind a live
    /// source and this queue is full, the oldest window is dropped (and counted): detection
    /// stays current instead of drifting ever further behind real time.
    #[serde(default = "default_queue")]
    pub queue_windows: usize,
    /// How long start-up and a reload wait for monitors to start (model load, Azure schema
    /// check with its retries), in seconds. Monitors start in parallel; one still starting
    /// after this is reported down ("still starting") and joins when ready, so the service
    /// tells systemd READY=1 within this bound. Keep it well below the unit's
    /// `TimeoutStartSec=` (120 s in systemd/earshot.service; a test checks the pair).
    #[serde(default = "default_start_timeout")]
    pub start_timeout_seconds: f64,
}

impl Default for DaemonSettings {
    fn default() -> Self {
        Self {
            state_dir: None,
            queue_windows: default_queue(),
            start_timeout_seconds: default_start_timeout(),
        }
    }
}

impl DaemonSettings {
    /// [`DaemonSettings::start_timeout_seconds`] as a duration (validated to be positive).
    pub fn start_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs_f64(self.start_timeout_seconds.clamp(0.1, 3600.0))
    }
}

/// Default of `daemon.start_timeout_seconds`: half the unit's `TimeoutStartSec=120`.
pub const DEFAULT_START_TIMEOUT_SECONDS: f64 = 60.0;
fn default_start_timeout() -> f64 {
    DEFAULT_START_TIMEOUT_SECONDS
}
fn default_true() -> bool {
    true
}
fn default_queue() -> usize {
    8
}

/// One `[[monitor]]`: a source, a profile, and how to decide.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MonitorSettings {
    pub name: String,
    /// Labels carried by every event and metric of this monitor (machine, line, site, ...).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Profile directory written by `earshot learn`.
    pub profile: PathBuf,
    pub source: SourceSettings,
    /// Hop between windows in seconds (default: the profile's). The window length is the
    /// profile's: thresholds are only valid for the window they were calibrated on.
    pub hop_seconds: Option<f64>,
    #[serde(default)]
    pub decide: crate::score::decide::DecideConfig,
    /// Device capture details (format, rate, ring size, loss detection); device sources only.
    #[serde(default)]
    pub capture: Option<crate::capture::DeviceSettings>,
    /// Where the k-NN score searches the normal embeddings: `{ kind = "embedded" }` (the
    /// default: the profile's own, in memory) or `{ kind = "azure", ... }` (Azure AI Search,
    /// filled by `earshot index`).
    #[serde(default)]
    pub index: crate::index::IndexConfig,
}

/// `source = { device = "alsa:pulse", channel = 0 }` or
/// `source = { file = "x.wav", realtime = true, loop = false }`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SourceSettings {
    /// Capture device id (`earshot devices` lists them) or description substring;
    /// "default" = the system's default input.
    pub device: Option<String>,
    /// WAV file to replay instead of a device.
    pub file: Option<PathBuf>,
    /// Replay paced like a device (true) or as fast as possible (false).
    #[serde(default = "default_true")]
    pub realtime: bool,
    /// Replay again from the start at the end.
    #[serde(default, rename = "loop")]
    pub looping: bool,
    /// Listen to this channel only (0-based); default: mix all channels.
    pub channel: Option<u16>,
}

/// The shortest hop between windows, in seconds. Every hop costs one network run, so a
/// tiny hop (a typo such as 0.0001) makes scoring fall ever further behind and an offline
/// `score` never finish; 10 ms is finer than any decision earshot makes.
pub const MIN_HOP_SECONDS: f64 = 0.01;
/// At most this many windows may overlap one instant (hop >= window / this).
pub const MAX_OVERLAP: f64 = 100.0;

/// Checks a hop against [`MIN_HOP_SECONDS`] and, when the window is known, [`MAX_OVERLAP`];
/// the error text is for the key that holds the hop.
pub fn check_hop(hop: f64, window: Option<f64>) -> Result<(), String> {
    if !hop.is_finite() || hop < MIN_HOP_SECONDS {
        return Err(format!(
            "{hop} s is below the minimum hop of {MIN_HOP_SECONDS} s (each hop costs one run of the network: so small a hop can never keep up)"
        ));
    }
    if let Some(w) = window
        && hop * MAX_OVERLAP < w
    {
        return Err(format!(
            "{hop} s is below the window ({w} s) / {MAX_OVERLAP}: more than {MAX_OVERLAP} overlapping windows per instant can never keep up; use a hop of at least {} s",
            w / MAX_OVERLAP
        ));
    }
    Ok(())
}

impl WindowSettings {
    /// Checks window/hop; `min_seconds` is the model's shortest window, if known.
    pub fn check(&self, prefix: &str, min_seconds: Option<f64>) -> Result<(), (String, String)> {
        let key = |k: &str| format!("{prefix}{k}");
        if !(self.seconds.is_finite() && self.seconds > 0.0 && self.seconds <= 60.0) {
            return Err((
                key("seconds"),
                format!("{} must be in (0, 60]", self.seconds),
            ));
        }
        if !(self.hop_seconds.is_finite() && self.hop_seconds > 0.0) {
            return Err((
                key("hop_seconds"),
                format!("{} must be > 0", self.hop_seconds),
            ));
        }
        check_hop(self.hop_seconds, Some(self.seconds)).map_err(|d| (key("hop_seconds"), d))?;
        if let Some(l) = self.level_dbfs
            && !(l.is_finite() && (-60.0..=0.0).contains(&l))
        {
            return Err((
                key("level_dbfs"),
                format!("{l} must be in -60..=0 dBFS (or \"off\")"),
            ));
        }
        if self.hop_seconds > self.seconds {
            return Err((
                key("hop_seconds"),
                format!(
                    "{} is longer than the window ({} s): audio between windows would never be heard",
                    self.hop_seconds, self.seconds
                ),
            ));
        }
        if let Some(min) = min_seconds
            && self.seconds < min
        {
            return Err((
                key("seconds"),
                format!(
                    "{} s is shorter than the model accepts ({min:.2} s)",
                    self.seconds
                ),
            ));
        }
        Ok(())
    }
}

impl Settings {
    /// Loads `path` (TOML) with environment overrides; `None` = defaults + environment.
    pub fn load(path: Option<&Path>) -> Result<Settings, ConfigError> {
        let shown = path.map_or_else(|| PathBuf::from("(defaults)"), Path::to_owned);
        let mut b = config::Config::builder();
        if let Some(p) = path {
            if !p.exists() {
                return Err(ConfigError::Missing { path: p.to_owned() });
            }
            crate::files::ensure_regular(p).map_err(|e| ConfigError::Parse {
                path: p.to_owned(),
                detail: e.to_string(),
            })?;
            b = b.add_source(config::File::from(p).format(config::FileFormat::Toml));
        }
        b = b.add_source(
            config::Environment::with_prefix(ENV_PREFIX)
                .prefix_separator("_")
                .separator("__")
                .try_parsing(true)
                .source(Some(env_overrides()?)),
        );
        let parse = |e: config::ConfigError| ConfigError::Parse {
            path: shown.clone(),
            detail: e.to_string(),
        };
        let built = b.build().map_err(parse)?;
        let names = monitor_names(&built);
        let mut s: Settings = built.try_deserialize().map_err(|e| ConfigError::Parse {
            path: shown.clone(),
            detail: name_monitors(&e.to_string(), &names),
        })?;
        s.source = path.map(Path::to_owned);
        s.resolve_paths();
        s.validate()?;
        Ok(s)
    }

    fn base_dir(&self) -> PathBuf {
        self.source
            .as_ref()
            .and_then(|p| p.parent())
            .map(Path::to_owned)
            .unwrap_or_default()
    }

    /// Relative paths in a config file are relative to that file, not to the working
    /// directory (systemd starts services in /).
    fn resolve_paths(&mut self) {
        let base = self.base_dir();
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        if let Some(d) = self.model.dir.as_mut() {
            fix(d);
        }
        if let Some(d) = self.model.onnxruntime.as_mut() {
            fix(d);
        }
        if let Some(d) = self.daemon.state_dir.as_mut() {
            fix(d);
        }
        if let Some(a) = self.metrics.basic_auth.as_mut() {
            fix(&mut a.password_hash_file);
        }
        if let Some(t) = self.metrics.tls.as_mut() {
            fix(&mut t.cert_file);
            fix(&mut t.key_file);
        }
        for t in self
            .alerts
            .webhook
            .iter_mut()
            .chain(&mut self.alerts.alertmanager)
        {
            for p in [t.url_file.as_mut(), t.hmac_secret_file.as_mut()]
                .into_iter()
                .flatten()
            {
                fix(p);
            }
        }
        if let Some(d) = self.catalog.dir.as_mut() {
            fix(d);
        }
        for m in &mut self.monitors {
            fix(&mut m.profile);
            if let Some(f) = m.source.file.as_mut() {
                fix(f);
            }
        }
    }

    /// The state directory: configured, systemd's `$STATE_DIRECTORY`, or /var/lib/earshot.
    pub fn state_dir(&self) -> PathBuf {
        if let Some(d) = &self.daemon.state_dir {
            return d.clone();
        }
        if let Some(d) = std::env::var_os("STATE_DIRECTORY") {
            // systemd may pass several, colon-separated: the first is ours.
            let d = d
                .to_string_lossy()
                .split(':')
                .next()
                .unwrap_or("")
                .to_owned();
            if !d.is_empty() {
                return PathBuf::from(d);
            }
        }
        PathBuf::from("/var/lib/earshot")
    }

    pub fn invalid(&self, key: &str, detail: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            path: self
                .source
                .clone()
                .unwrap_or_else(|| PathBuf::from("(defaults)")),
            key: key.into(),
            detail: detail.into(),
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        self.window
            .check("window.", None)
            .map_err(|(k, d)| self.invalid(&k, d))?;
        let l = &self.learn;
        if !(l.target_far > 0.0 && l.target_far < 0.5) {
            return Err(self.invalid(
                "learn.target_far",
                format!("{} must be in (0, 0.5)", l.target_far),
            ));
        }
        if !(l.false_alarms_per_day.is_finite() && l.false_alarms_per_day > 0.0) {
            return Err(self.invalid(
                "learn.false_alarms_per_day",
                format!(
                    "{} must be a positive number of false events per day",
                    l.false_alarms_per_day
                ),
            ));
        }
        if !(l.holdout_fraction > 0.0 && l.holdout_fraction < 1.0) {
            return Err(self.invalid(
                "learn.holdout_fraction",
                format!("{} must be in (0, 1)", l.holdout_fraction),
            ));
        }
        let known = [
            crate::score::CENTROID,
            crate::score::KNN,
            crate::score::MEL,
            crate::score::FUSED,
        ];
        if l.decide_on.is_empty() || l.decide_on.iter().any(|n| !known.contains(&n.as_str())) {
            return Err(self.invalid(
                "learn.decide_on",
                format!("{:?} must name one or more of {known:?}", l.decide_on),
            ));
        }
        if l.knn_k == 0 || l.knn_k > 100 {
            return Err(self.invalid("learn.knn_k", format!("{} must be in 1..=100", l.knn_k)));
        }
        if self.daemon.queue_windows == 0 || self.daemon.queue_windows > 10_000 {
            return Err(self.invalid("daemon.queue_windows", "must be in 1..=10000"));
        }
        let st = self.daemon.start_timeout_seconds;
        if !(st.is_finite() && (0.5..=3600.0).contains(&st)) {
            return Err(self.invalid(
                "daemon.start_timeout_seconds",
                format!(
                    "{st} must be in 0.5..=3600 (seconds; keep it below the unit's TimeoutStartSec)"
                ),
            ));
        }
        let m = &self.metrics;
        if m.enabled
            && !m.listen.ip().is_loopback()
            && m.basic_auth.is_none()
            && !m.allow_unauthenticated
        {
            return Err(self.invalid(
                "metrics.listen",
                crate::metrics::security::SecurityError::Exposed(m.listen).to_string(),
            ));
        }
        self.events
            .validate()
            .map_err(|d| self.invalid("events", d))?;
        self.evidence
            .validate()
            .map_err(|(k, d)| self.invalid(&format!("evidence.{k}"), d))?;
        self.alerts
            .validate()
            .map_err(|e| self.invalid(&format!("alerts.{}", e.key), e.detail))?;
        self.catalog
            .validate()
            .map_err(|(k, d)| self.invalid(&format!("catalog.{k}"), d))?;
        let mut names = std::collections::BTreeSet::new();
        for (i, m) in self.monitors.iter().enumerate() {
            let key = |k: &str| format!("monitor[{i}] ({}).{k}", m.name);
            if m.name.trim().is_empty() {
                return Err(self.invalid(&format!("monitor[{i}].name"), "must not be empty"));
            }
            if !names.insert(m.name.clone()) {
                return Err(self.invalid(&key("name"), "two monitors have this name"));
            }
            match (&m.source.device, &m.source.file) {
                (Some(_), Some(_)) => {
                    return Err(
                        self.invalid(&key("source"), "give either `device` or `file`, not both")
                    );
                }
                (None, None) => {
                    return Err(self.invalid(
                        &key("source"),
                        "give `device = \"...\"` (see `earshot devices`) or `file = \"...wav\"`",
                    ));
                }
                (None, Some(_)) if m.capture.is_some() => {
                    return Err(self.invalid(&key("capture"), "only applies to device sources"));
                }
                _ => {}
            }
            if let Some(h) = m.hop_seconds {
                if !(h.is_finite() && h > 0.0) {
                    return Err(self.invalid(&key("hop_seconds"), format!("{h} must be > 0")));
                }
                // The window is the profile's, checked against it when the profile is loaded.
                check_hop(h, None).map_err(|d| self.invalid(&key("hop_seconds"), d))?;
            }
            m.index
                .validate()
                .map_err(|e| self.invalid(&key("index"), e.to_string()))?;
            m.decide
                .validate()
                .map_err(|e| self.invalid(&key(&format!("decide.{}", e.key)), e.to_string()))?;
        }
        if self.model.threads > 256 {
            return Err(self.invalid("model.threads", "must be <= 256 (0 = all cores)"));
        }
        Ok(())
    }

    /// The model directory: configured, else the default model found where an installed
    /// earshot keeps it (see [`default_model_dirs`]). When none has it, the error lists
    /// every place looked at.
    pub fn find_model_dir(&self) -> Result<PathBuf, ConfigError> {
        if let Some(d) = &self.model.dir {
            return Ok(d.clone());
        }
        let dirs = default_model_dirs();
        if let Some(d) = dirs.iter().find(|d| d.join("card.json").is_file()) {
            return Ok(d.clone());
        }
        let looked: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
        Err(self.invalid(
            "model.dir",
            format!(
                "not set, and the default model {DEFAULT_MODEL} is in none of: {}; install it there (README, Install) or set `model.dir` (or pass --model)",
                looked.join(", ")
            ),
        ))
    }

    /// Where the service keeps the model as ONNX Runtime optimised it
    /// ([`crate::embed::optimized`]).
    pub fn model_cache_dir(&self) -> PathBuf {
        self.state_dir().join("model-cache")
    }

    pub fn embed_options(&self) -> crate::embed::EmbedOptions {
        crate::embed::EmbedOptions {
            threads: self.model.threads,
            onnxruntime: self.model.onnxruntime.clone(),
            skip_checksum: self.model.skip_checksum,
            optimized_cache: None,
        }
    }
}

/// Where the default model is looked for, in order: beside the binary (`<bin>/models`, an
/// unpacked bundle), the binary's install prefix (`<prefix>/bin/earshot` ->
/// `<prefix>/share/earshot/models`), /usr/local/share and /usr/share, and last the source
/// tree the binary was built in, found from the binary's own path (`<repo>/target/<profile>`
/// holds the binary and `<repo>/Cargo.toml` exists), so `cargo run` and the tests work. No
/// path of the build machine is compiled in: a binary copied elsewhere finds nothing there.
pub fn default_model_dirs() -> Vec<PathBuf> {
    default_model_dirs_for(std::env::current_exe().ok().as_deref())
}

fn default_model_dirs_for(exe: Option<&Path>) -> Vec<PathBuf> {
    let mut v = Vec::new();
    let exe_dir = exe.and_then(Path::parent);
    if let Some(dir) = exe_dir {
        v.push(dir.join("models"));
        if let Some(prefix) = dir.parent() {
            v.push(prefix.join("share/earshot/models"));
        }
    }
    v.push(PathBuf::from("/usr/local/share/earshot/models"));
    v.push(PathBuf::from("/usr/share/earshot/models"));
    if let Some(dir) = exe_dir {
        // target/debug/earshot, target/debug/deps/<test>: the repository is 2-3 levels up.
        if let Some(repo) = dir
            .ancestors()
            .skip(1)
            .take(3)
            .find(|up| up.join("Cargo.toml").is_file() && up.join("models").is_dir())
        {
            v.push(repo.join("models"));
        }
    }
    let mut out: Vec<PathBuf> = Vec::new();
    for d in v {
        let d = d.join(DEFAULT_MODEL);
        if !out.contains(&d) {
            out.push(d);
        }
    }
    out
}

/// The `name` of each `[[monitor]]` table, in order (None where it has none), read before
/// typed deserialisation so that its errors can say which monitor is wrong.
fn monitor_names(c: &config::Config) -> Vec<Option<String>> {
    c.get_array("monitor")
        .unwrap_or_default()
        .into_iter()
        .map(|v| {
            v.into_table()
                .ok()
                .and_then(|t| t.get("name").cloned())
                .and_then(|n| n.into_string().ok())
        })
        .collect()
}

/// Rewrites the `config` crate's key paths `monitor[0]decide.x` / `monitor[0]` into
/// `monitor[0] (NAME).decide.x` / `monitor[0] (NAME)`, the form validation errors use: users
/// know their monitors by name, not by position.
fn name_monitors(detail: &str, names: &[Option<String>]) -> String {
    let mut out = detail.to_string();
    for (i, name) in names.iter().enumerate().rev() {
        let Some(name) = name else { continue };
        let pat = format!("monitor[{i}]");
        let mut fixed = String::with_capacity(out.len());
        let mut rest = out.as_str();
        while let Some(at) = rest.find(&pat) {
            let after = &rest[at + pat.len()..];
            fixed.push_str(&rest[..at]);
            fixed.push_str(&format!("{pat} ({name})"));
            if after.starts_with(|c: char| c.is_alphanumeric() || c == '_') {
                fixed.push('.');
            }
            rest = after;
        }
        fixed.push_str(rest);
        out = fixed;
    }
    out
}

/// `EARSHOT_*` variables that are config keys: those with a `__` level separator.
///
/// Read with `vars_os`: the environment of a service belongs to the whole machine, and one
/// variable that is not UTF-8 (a file name in Latin-1, say) must not stop earshot when it
/// is not ours. One of ours that is not UTF-8 is an error naming it.
fn env_overrides() -> Result<config::Map<String, String>, ConfigError> {
    env_overrides_from(std::env::vars_os())
}

fn env_overrides_from(
    vars: impl Iterator<Item = (std::ffi::OsString, std::ffi::OsString)>,
) -> Result<config::Map<String, String>, ConfigError> {
    let prefix = format!("{ENV_PREFIX}_");
    let not_utf8 = |key: String, what: &str| ConfigError::Invalid {
        path: PathBuf::from("(environment)"),
        key,
        detail: format!(
            "the variable's {what} is not valid UTF-8; set it to UTF-8 text or unset it"
        ),
    };
    let mut out = BTreeMap::new();
    for (k, v) in vars {
        let Some(k) = k.to_str() else {
            let lossy = k.to_string_lossy().into_owned();
            if lossy.starts_with(&prefix) {
                return Err(not_utf8(lossy, "name"));
            }
            continue;
        };
        if !(k.starts_with(&prefix) && k[prefix.len()..].contains("__")) {
            continue;
        }
        let v = v
            .into_string()
            .map_err(|_| not_utf8(k.to_owned(), "value"))?;
        out.insert(k.to_owned(), v);
    }
    Ok(out.into_iter().collect())
}
