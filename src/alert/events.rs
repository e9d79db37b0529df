//! Where events go: a JSON-lines file in the state directory and the log, behind one trait.
//!
//! Each line of the event file is an [`EventRecord`], shaped like an Alertmanager alert
//! (`labels`, `annotations`, `startsAt`, `endsAt`, `status`, `fingerprint`) with earshot's
//! full event under `event`. A later webhook or Alertmanager sink can therefore post the same
//! record (minus `event`, plus `generatorURL`) without a translation layer, and anyone with
//! `jq` can read the file today. `fingerprint` is stable across the started/ongoing/ended
//! messages of one event, which is what Alertmanager uses to pair firing with resolved.
//!
//! Durability: each event is one `write` of a whole line to a file opened in append mode, so a
//! concurrent reader (`tail -f`, a shipper) never sees half a line from us and sees each event
//! as soon as it is emitted; the file is fsynced on close and before rotation. Rotation by
//! size is optional (`events.jsonl` -> `events.jsonl.1` -> ...).
//!
//! A full disk can still make a write stop part-way. The sink then cuts the file back to its
//! last whole line, so the next event is not glued onto a torn one; if even that fails (or the
//! file already ended in a torn line when opened, after a crash), the next event starts with
//! a newline. Either way every later line is valid JSON, and the failure is returned (the
//! fan-out logs it and counts it in `earshot_event_write_failures_total{sink="jsonl"}`).

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::metrics::SinkHandle;
use crate::score::decide::{DecisionEvent, DecisionKind, EndReason, Rule, TimeBase};

/// Something that happened to a monitor, other than an anomaly decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OperationalKind {
    DeviceLost,
    DeviceRecovered,
    /// Input below the profile's level floor: device or machine off (never an anomaly).
    NoSignal,
    /// A signal again after `no_signal`.
    SignalBack,
}

/// An operational event (device lost/recovered, no signal/signal back) of one monitor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OperationalEvent {
    pub kind: OperationalKind,
    pub labels: BTreeMap<String, String>,
    /// When it happened, RFC 3339 UTC.
    pub at: String,
    /// For `device_recovered`: when the device was lost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// Human-readable detail (error text, attempts).
    pub detail: String,
    /// `info` when the state is normal for the monitor (a stopped machine that may stop),
    /// `warning` otherwise; copied into the record's labels. Absent: not classified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
}

impl OperationalEvent {
    /// An event stamped now.
    pub fn now(
        kind: OperationalKind,
        labels: BTreeMap<String, String>,
        since: Option<SystemTime>,
        detail: impl Into<String>,
    ) -> Self {
        let fmt = |t| humantime::format_rfc3339_millis(t).to_string();
        Self {
            kind,
            labels,
            at: fmt(SystemTime::now()),
            since: since.map(fmt),
            detail: detail.into(),
            severity: None,
        }
    }

    /// Restamps the event with times from the monitor's clock (stream time for fast replays).
    pub fn at_time(mut self, at: SystemTime, since: Option<SystemTime>) -> Self {
        self.at = humantime::format_rfc3339_millis(at).to_string();
        self.since = since.map(|t| humantime::format_rfc3339_millis(t).to_string());
        self
    }

    pub fn with_severity(mut self, severity: &str) -> Self {
        self.severity = Some(severity.to_string());
        self
    }
}

/// Every event earshot emits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    Anomaly(DecisionEvent),
    Operational(OperationalEvent),
}

/// Alertmanager's notion of an alert's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertStatus {
    Firing,
    Resolved,
}

/// One line of the event file: an Alertmanager-shaped alert plus the full event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    /// e.g. `anomaly_started`, `anomaly_ended`, `device_lost`.
    pub kind: String,
    pub status: AlertStatus,
    /// Identifying labels: `alertname` plus the monitor's labels.
    pub labels: BTreeMap<String, String>,
    /// Descriptive strings: `summary`, per-scorer peaks and means, `fired`, `reason`.
    pub annotations: BTreeMap<String, String>,
    #[serde(rename = "startsAt")]
    pub starts_at: String,
    #[serde(rename = "endsAt", default, skip_serializing_if = "Option::is_none")]
    pub ends_at: Option<String>,
    /// When earshot detected the anomaly (anomaly records only; `startsAt` is the estimated
    /// onset, earlier than this by the time the decision rule needed).
    #[serde(
        rename = "detectedAt",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub detected_at: Option<String>,
    /// Same for every message of one event.
    pub fingerprint: String,
    pub event: Event,
}

impl Event {
    /// The Alertmanager-shaped record of this event.
    pub fn to_record(&self) -> EventRecord {
        match self {
            Event::Anomaly(d) => anomaly_record(self, d),
            Event::Operational(o) => operational_record(self, o),
        }
    }
}

fn anomaly_record(ev: &Event, d: &DecisionEvent) -> EventRecord {
    let kind = match d.kind {
        DecisionKind::Started => "anomaly_started",
        DecisionKind::Ongoing => "anomaly_ongoing",
        DecisionKind::Ended => "anomaly_ended",
    };
    let mut labels = d.labels.clone();
    labels.insert("alertname".into(), "EarshotAnomaly".into());
    let mut annotations = BTreeMap::new();
    for (scorer, s) in &d.scores {
        annotations.insert(format!("peak_{scorer}"), format!("{:.4}", s.peak));
        annotations.insert(format!("mean_{scorer}"), format!("{:.4}", s.mean));
        annotations.insert(format!("threshold_{scorer}"), format!("{:.4}", s.threshold));
    }
    annotations.insert("fired".into(), d.fired.join(","));
    if let Some(rule) = d.rule {
        let rule = match rule {
            Rule::NOfM => "n_of_m",
            Rule::Transient => "transient",
        };
        annotations.insert("rule".into(), rule.into());
    }
    if d.time_base == TimeBase::Stream {
        // A fast replay: the times are seconds into the file, not wall-clock times.
        annotations.insert("time_base".into(), "stream".into());
    }
    if let Some(r) = d.reason {
        let r = match r {
            EndReason::Released => "released",
            EndReason::Shutdown => "shutdown",
            EndReason::Interrupted => "interrupted",
        };
        annotations.insert("reason".into(), r.into());
    }
    let what = labels
        .get("machine")
        .or_else(|| labels.get("monitor"))
        .cloned()
        .unwrap_or_else(|| "machine".into());
    let peaks: Vec<String> = d
        .scores
        .iter()
        .filter(|(k, _)| d.fired.contains(k))
        .map(|(k, s)| format!("{k} peak {:.3} vs threshold {:.3}", s.peak, s.threshold))
        .collect();
    let verb = match (d.kind, d.reason) {
        (DecisionKind::Ended, Some(EndReason::Interrupted)) => {
            "event closed at earshot's start (earshot stopped without seeing its end: crash, kill or power loss)"
        }
        (DecisionKind::Ended, _) => "ended",
        _ => "sounds abnormal",
    };
    let mut summary = format!("{what} {verb} ({})", peaks.join("; "));
    if let Some(s) = &d.sounds_like {
        sounds_like_fields(s, &mut labels, &mut annotations, &mut summary);
    }
    annotations.insert("summary".into(), summary);
    EventRecord {
        kind: kind.into(),
        status: if d.kind == DecisionKind::Ended {
            AlertStatus::Resolved
        } else {
            AlertStatus::Firing
        },
        labels,
        annotations,
        starts_at: d.start.wall.clone(),
        ends_at: d.end.as_ref().map(|e| e.wall.clone()),
        detected_at: d.detected.as_ref().map(|e| e.wall.clone()),
        fingerprint: d.event_id.clone(),
        event: ev.clone(),
    }
}

/// What the event sounds like, in the record: the annotation `sounds_like` ("bearing squeal
/// (0.93), belt slip (0.71)") and the summary's tail when a label matched (nothing when none
/// did: an empty catalog answer is not news); for a benign match the annotation `benign`
/// (the action) and, for `low_severity`, the label `severity = "info"`. The label is the same
/// on every message of the event (decided at firing), so firing and resolved still pair.
fn sounds_like_fields(
    s: &crate::catalog::known::SoundsLike,
    labels: &mut BTreeMap<String, String>,
    annotations: &mut BTreeMap<String, String>,
    summary: &mut String,
) {
    use crate::catalog::known::BenignAction;
    if s.labels.is_empty() {
        return;
    }
    let text = s.text();
    summary.push_str(&format!("; sounds like: {text}"));
    annotations.insert("sounds_like".into(), text);
    if let Some(action) = s.benign {
        annotations.insert("benign".into(), action.as_str().into());
        summary.push_str(" [benign]");
        if action == BenignAction::LowSeverity {
            labels.insert("severity".into(), "info".into());
        }
    }
}

fn operational_record(ev: &Event, o: &OperationalEvent) -> EventRecord {
    let mut labels = o.labels.clone();
    let monitor = labels.get("monitor").cloned().unwrap_or_default();
    let (alertname, tag) = match o.kind {
        OperationalKind::DeviceLost | OperationalKind::DeviceRecovered => {
            ("EarshotDeviceLost", "device")
        }
        OperationalKind::NoSignal | OperationalKind::SignalBack => ("EarshotNoSignal", "no_signal"),
    };
    labels.insert("alertname".into(), alertname.into());
    if let Some(sev) = &o.severity {
        labels.insert("severity".into(), sev.clone());
    }
    let resolved = |what: &str| {
        (
            AlertStatus::Resolved,
            o.since.clone().unwrap_or_else(|| o.at.clone()),
            Some(o.at.clone()),
            format!("{what} on monitor {monitor}: {}", o.detail),
        )
    };
    let firing = |what: &str| {
        (
            AlertStatus::Firing,
            o.at.clone(),
            None,
            format!("{what} on monitor {monitor}: {}", o.detail),
        )
    };
    let (kind, (status, starts_at, ends_at, summary)) = match o.kind {
        OperationalKind::DeviceLost => ("device_lost", firing("capture device lost")),
        OperationalKind::DeviceRecovered => {
            ("device_recovered", resolved("capture device recovered"))
        }
        OperationalKind::NoSignal => ("no_signal", firing("no signal")),
        OperationalKind::SignalBack => ("signal_back", resolved("signal back")),
    };
    EventRecord {
        kind: kind.into(),
        status,
        labels,
        annotations: BTreeMap::from([("summary".to_string(), summary)]),
        starts_at,
        ends_at,
        detected_at: None,
        fingerprint: format!("{monitor}/{tag}"),
        event: ev.clone(),
    }
}

/// Failures of an event sink; they say which file and what to check.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error(
        "cannot open event file {path}: {source}; check that the state directory exists and is writable by the user earshot runs as (StateDirectory= in the systemd unit)"
    )]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write event to {path}: {source} (disk full or read-only?)")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot rotate event file {path}: {source}")]
    Rotate {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Config(String),
    #[error("cannot encode event as JSON: {0}")]
    Encode(#[from] serde_json::Error),
}

/// What a sink did with an event it did not fail on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Emitted {
    /// Written or queued for delivery.
    Written,
    /// Deliberately not sent: no alert target wants this kind, or a benign "sounds like"
    /// match with `catalog.benign_action = "record"`. Counted apart from written events so
    /// that `earshot_events_written_total{sink="alerts"}` means alerts queued.
    Skipped,
}

/// A destination for events.
pub trait EventSink: Send {
    /// Short name, used as the `sink` metric label.
    fn name(&self) -> &'static str;
    /// Delivers one event; returns once it is as durable as this sink makes it.
    fn emit(&mut self, event: &Event) -> Result<Emitted, SinkError>;
    /// Flushes and releases resources; called once at shutdown.
    fn close(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}

/// Options of [`JsonlSink`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonlOptions {
    /// File name inside the state directory.
    #[serde(default = "default_file_name")]
    pub file_name: String,
    /// Rotate when the file would grow beyond this many bytes (unset: never).
    #[serde(default)]
    pub rotate_bytes: Option<u64>,
    /// Rotated files kept (`events.jsonl.1` is the newest).
    #[serde(default = "default_keep")]
    pub keep: u32,
}

fn default_file_name() -> String {
    "events.jsonl".into()
}
fn default_keep() -> u32 {
    5
}

impl JsonlOptions {
    /// Checks the settings; the error names the bad key.
    pub fn validate(&self) -> Result<(), String> {
        let name = Path::new(&self.file_name);
        if self.file_name.is_empty() || name.components().count() != 1 || name.file_name().is_none()
        {
            return Err(format!(
                "event file setting `file_name` = {:?}: must be a plain file name; the file always lives in the state directory",
                self.file_name
            ));
        }
        if self.rotate_bytes == Some(0) {
            return Err(
                "event file setting `rotate_bytes` = 0: must be a positive size in bytes, or left out to never rotate".into(),
            );
        }
        if self.keep > 1000 {
            return Err(format!(
                "event file setting `keep` = {}: at most 1000 rotated files",
                self.keep
            ));
        }
        Ok(())
    }
}

impl Default for JsonlOptions {
    fn default() -> Self {
        Self {
            file_name: default_file_name(),
            rotate_bytes: None,
            keep: default_keep(),
        }
    }
}

/// Appends one [`EventRecord`] per line to a file in the state directory.
pub struct JsonlSink {
    path: PathBuf,
    file: Option<File>,
    size: u64,
    opts: JsonlOptions,
    /// The file may end in a partial line: start the next record with a newline.
    needs_newline: bool,
}

impl JsonlSink {
    /// Opens (creating if needed) `dir/opts.file_name` for appending.
    pub fn open(dir: &Path, opts: JsonlOptions) -> Result<Self, SinkError> {
        opts.validate().map_err(SinkError::Config)?;
        let path = dir.join(&opts.file_name);
        if !dir.is_dir() {
            return Err(SinkError::Open {
                path,
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("{} is not a directory", dir.display()),
                ),
            });
        }
        let file = open_append(&path)?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        let needs_newline = size > 0 && !ends_with_newline(&path, size);
        Ok(Self {
            path,
            file: Some(file),
            size,
            opts,
            needs_newline,
        })
    }

    /// Path of the live file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn rotate(&mut self) -> Result<(), SinkError> {
        let err = |path: &Path, source| SinkError::Rotate {
            path: path.to_path_buf(),
            source,
        };
        if let Some(f) = self.file.take() {
            f.sync_all().map_err(|e| err(&self.path, e))?;
        }
        let numbered = |i: u32| PathBuf::from(format!("{}.{i}", self.path.display()));
        if self.opts.keep == 0 {
            std::fs::remove_file(&self.path).map_err(|e| err(&self.path, e))?;
        } else {
            for i in (1..self.opts.keep).rev() {
                let from = numbered(i);
                if from.exists() {
                    std::fs::rename(&from, numbered(i + 1)).map_err(|e| err(&from, e))?;
                }
            }
            std::fs::rename(&self.path, numbered(1)).map_err(|e| err(&self.path, e))?;
        }
        self.file = Some(open_append(&self.path)?);
        self.size = 0;
        self.needs_newline = false;
        Ok(())
    }
}

/// Whether the last byte of the `size`-byte file at `path` is a newline (a file that cannot be
/// read counts as torn: one spare newline is harmless, a glued line is not).
fn ends_with_newline(path: &Path, size: u64) -> bool {
    use std::io::{Read, Seek, SeekFrom};
    let mut b = [0u8; 1];
    File::open(path)
        .and_then(|mut f| {
            f.seek(SeekFrom::Start(size - 1))?;
            f.read_exact(&mut b)
        })
        .is_ok_and(|()| b[0] == b'\n')
}

fn open_append(path: &Path) -> Result<File, SinkError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|source| SinkError::Open {
            path: path.to_path_buf(),
            source,
        })
}

impl EventSink for JsonlSink {
    fn name(&self) -> &'static str {
        "jsonl"
    }

    fn emit(&mut self, event: &Event) -> Result<Emitted, SinkError> {
        let mut line = Vec::new();
        if self.needs_newline {
            line.push(b'\n');
        }
        serde_json::to_writer(&mut line, &event.to_record())?;
        line.push(b'\n');
        if let Some(max) = self.opts.rotate_bytes
            && self.size > 0
            && self.size + line.len() as u64 > max
        {
            self.rotate()?;
        }
        if self.file.is_none() {
            // A previous rotation failed half-way; try to reopen rather than lose events.
            self.file = Some(open_append(&self.path)?);
        }
        let file = self.file.as_mut().ok_or_else(|| SinkError::Write {
            path: self.path.clone(),
            source: std::io::Error::other("event file is closed"),
        })?;
        // One write of the whole line: with O_APPEND, readers never see a partial event.
        if let Err(source) = file.write_all(&line) {
            // A full disk can stop the write part-way: remove the torn part, or make sure the
            // next record starts on its own line.
            if file.set_len(self.size).is_err() {
                self.needs_newline = true;
            }
            return Err(SinkError::Write {
                path: self.path.clone(),
                source,
            });
        }
        self.size += line.len() as u64;
        self.needs_newline = false;
        Ok(Emitted::Written)
    }

    fn close(&mut self) -> Result<(), SinkError> {
        if let Some(f) = self.file.take() {
            f.sync_all().map_err(|source| SinkError::Write {
                path: self.path.clone(),
                source,
            })?;
        }
        Ok(())
    }
}

impl Drop for JsonlSink {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

/// Writes each event as one structured `tracing` line (target `earshot::events`).
#[derive(Debug, Default)]
pub struct LogSink;

impl EventSink for LogSink {
    fn name(&self) -> &'static str {
        "log"
    }

    fn emit(&mut self, event: &Event) -> Result<Emitted, SinkError> {
        let r = event.to_record();
        let labels = serde_json::to_string(&r.labels)?;
        let monitor = r.labels.get("monitor").map(String::as_str).unwrap_or("");
        let summary = r
            .annotations
            .get("summary")
            .map(String::as_str)
            .unwrap_or("");
        let ends_at = r.ends_at.as_deref().unwrap_or("");
        let firing = r.status == AlertStatus::Firing;
        if firing {
            tracing::warn!(target: "earshot::events", kind = %r.kind, monitor, fingerprint = %r.fingerprint, starts_at = %r.starts_at, labels = %labels, "{summary}");
        } else {
            tracing::info!(target: "earshot::events", kind = %r.kind, monitor, fingerprint = %r.fingerprint, starts_at = %r.starts_at, ends_at, labels = %labels, "{summary}");
        }
        Ok(Emitted::Written)
    }
}

/// Fans events out to several sinks; one failing sink does not stop the others.
///
/// With a state directory ([`Sinks::standard`]) it also keeps the open events on disk
/// ([`super::open`]): an event is recorded before its firing message reaches any sink and
/// forgotten after its resolving message reached them all, so that the next start resolves
/// whatever a crash (or a stop, for device and signal states) left open.
#[derive(Default)]
pub struct Sinks {
    sinks: Vec<(Box<dyn EventSink>, Option<SinkHandle>)>,
    open: Option<(super::open::OpenEvents, Option<SinkHandle>)>,
    /// What the last run left open, as resolving messages: sent by
    /// [`Sinks::resolve_left_open`] once every sink is added.
    left_open: Vec<Event>,
}

impl Sinks {
    pub fn new() -> Self {
        Self::default()
    }

    /// The default set: the JSON-lines file in `state_dir` and the log, counted in `metrics`.
    pub fn standard(
        state_dir: &Path,
        opts: JsonlOptions,
        metrics: Option<&crate::metrics::Metrics>,
    ) -> Result<Self, SinkError> {
        let mut s = Self::new();
        let file = JsonlSink::open(state_dir, opts)?;
        s.add(Box::new(file), metrics.map(|m| m.sink("jsonl")));
        s.add(Box::new(LogSink), metrics.map(|m| m.sink("log")));
        let (open, left_open, err) = super::open::OpenEvents::open(state_dir, SystemTime::now());
        let m = metrics.map(|m| m.sink("open_events"));
        if let Some(e) = err {
            journal_failed(&m, &e);
        }
        s.keep_open_events(open, m);
        s.left_open = left_open;
        Ok(s)
    }

    /// Keeps the open events in `open` from now on (see [`super::open`]).
    pub fn keep_open_events(&mut self, open: super::open::OpenEvents, metrics: Option<SinkHandle>) {
        self.open = Some((open, metrics));
    }

    /// Sends the resolving message of every event the last run left open (see
    /// [`super::open`]) to every sink; call it once all sinks are added and before any
    /// monitor starts. Returns how many it sent.
    pub fn resolve_left_open(&mut self) -> usize {
        let left = std::mem::take(&mut self.left_open);
        if !left.is_empty() {
            tracing::info!(
                count = left.len(),
                "resolving the events the last run left open (it stopped without resolving them)"
            );
        }
        for e in &left {
            self.emit(e);
        }
        left.len()
    }

    /// Adds a sink, with its metrics handle (`Metrics::sink(sink.name())`) if metrics are on.
    pub fn add(&mut self, sink: Box<dyn EventSink>, metrics: Option<SinkHandle>) {
        self.sinks.push((sink, metrics));
    }

    /// Delivers to every sink; returns how many failed (each failure is logged and counted).
    pub fn emit(&mut self, event: &Event) -> usize {
        if let Some((open, m)) = &mut self.open
            && let Err(e) = open.before(event)
        {
            journal_failed(m, &e);
        }
        let failed = self.fan_out(event);
        if let Some((open, m)) = &mut self.open
            && let Err(e) = open.after(event)
        {
            journal_failed(m, &e);
        }
        failed
    }

    fn fan_out(&mut self, event: &Event) -> usize {
        let mut failed = 0;
        for (sink, m) in &mut self.sinks {
            match sink.emit(event) {
                Ok(Emitted::Written) => {
                    if let Some(m) = m {
                        m.written.inc();
                    }
                }
                Ok(Emitted::Skipped) => {
                    if let Some(m) = m {
                        m.skipped.inc();
                    }
                }
                Err(e) => {
                    failed += 1;
                    if let Some(m) = m {
                        m.failures.inc();
                    }
                    tracing::error!(sink = sink.name(), error = %e, "event not delivered");
                }
            }
        }
        failed
    }

    /// Resolves the open events of a monitor a reload stopped (removed, or restarted with new
    /// settings), with `why` in the detail of a device or signal state; returns how many.
    pub fn resolve_open_of(&mut self, monitor: &str, why: &str) -> usize {
        let Some((open, _)) = &self.open else {
            return 0;
        };
        let endings = open.endings_of(monitor, SystemTime::now(), why);
        for e in &endings {
            self.emit(e);
        }
        endings.len()
    }

    /// Fingerprints of the events open now (fired, not resolved), when they are kept.
    pub fn open_fingerprints(&self) -> Vec<String> {
        self.open
            .iter()
            .flat_map(|(o, _)| o.fingerprints().map(str::to_string))
            .collect()
    }

    /// Closes every sink (fsync for files); returns the errors.
    pub fn close(&mut self) -> Vec<SinkError> {
        self.sinks
            .iter_mut()
            .filter_map(|(s, _)| s.close().err())
            .collect()
    }
}

/// A failure of the open-events file: logged and counted, never fatal (events still flow).
fn journal_failed(m: &Option<SinkHandle>, e: &super::open::OpenEventsError) {
    if let Some(m) = m {
        m.failures.inc();
    }
    tracing::error!(error = %e, "open events not recorded");
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::score::decide::{DecideConfig, Decider, ScoreSample, ScoredWindow};
    use std::io::{BufRead, BufReader, Read};
    use std::time::Duration;

    fn labels() -> BTreeMap<String, String> {
        BTreeMap::from([
            ("monitor".to_string(), "press-1".to_string()),
            ("machine".to_string(), "press".to_string()),
        ])
    }

    /// Real decision events from a decider: a start and an end.
    pub(crate) fn decision_events() -> Vec<Event> {
        let cfg = DecideConfig {
            trigger_n: 1,
            trigger_m: 1,
            release_after: 0.0,
            ..DecideConfig::default()
        };
        let mut d = Decider::new(cfg, labels()).unwrap();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut out = Vec::new();
        for (i, score) in [0.5, 2.0, 1.5, 0.1].into_iter().enumerate() {
            let s = [ScoreSample {
                scorer: "centroid",
                score,
                threshold: 1.0,
                release: 0.8,
                transient: None,
                sustained: true,
            }];
            let start = i as f64 * 0.5;
            let wall_end = t0 + Duration::from_secs_f64(start + 1.0);
            let w = ScoredWindow {
                start,
                end: start + 1.0,
                wall_start: t0 + Duration::from_secs_f64(start),
                wall_end,
                decided_at: wall_end,
                scores: &s,
            };
            out.extend(d.push(&w).map(Event::Anomaly));
        }
        assert_eq!(out.len(), 2);
        out
    }

    #[test]
    fn records_are_alertmanager_shaped() {
        let evs = decision_events();
        let started = serde_json::to_value(evs[0].to_record()).unwrap();
        assert_eq!(started["status"], "firing");
        assert_eq!(started["labels"]["alertname"], "EarshotAnomaly");
        assert_eq!(started["labels"]["machine"], "press");
        assert_eq!(started["startsAt"], "2023-11-14T22:13:21.000Z");
        assert_eq!(started["detectedAt"], "2023-11-14T22:13:21.500Z");
        assert_eq!(started["annotations"]["rule"], "n_of_m");
        assert!(started.get("endsAt").is_none());
        assert_eq!(started["annotations"]["peak_centroid"], "2.0000");
        assert!(
            started["annotations"]["summary"]
                .as_str()
                .unwrap()
                .contains("press sounds abnormal")
        );
        let ended = serde_json::to_value(evs[1].to_record()).unwrap();
        assert_eq!(ended["status"], "resolved");
        assert_eq!(ended["fingerprint"], started["fingerprint"]);
        assert_eq!(ended["endsAt"], "2023-11-14T22:13:22.000Z");
        assert_eq!(ended["annotations"]["reason"], "released");
        assert_eq!(ended["event"]["type"], "anomaly");
    }

    #[test]
    fn jsonl_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let mut evs = decision_events();
        evs.push(Event::Operational(OperationalEvent::now(
            OperationalKind::DeviceLost,
            labels(),
            None,
            "no callbacks for 5 s",
        )));
        evs.push(Event::Operational(OperationalEvent::now(
            OperationalKind::DeviceRecovered,
            labels(),
            Some(SystemTime::now()),
            "reopened after 3 attempts",
        )));
        let mut sink = JsonlSink::open(dir.path(), JsonlOptions::default()).unwrap();
        for e in &evs {
            sink.emit(e).unwrap();
        }
        sink.close().unwrap();
        // Reopening appends instead of truncating.
        let mut sink = JsonlSink::open(dir.path(), JsonlOptions::default()).unwrap();
        sink.emit(&evs[0]).unwrap();
        drop(sink);

        let f = File::open(dir.path().join("events.jsonl")).unwrap();
        let back: Vec<EventRecord> = BufReader::new(f)
            .lines()
            .map(|l| serde_json::from_str(&l.unwrap()).unwrap())
            .collect();
        assert_eq!(back.len(), evs.len() + 1);
        for (r, e) in back.iter().zip(&evs) {
            assert_eq!(r, &e.to_record());
            assert_eq!(&r.event, e);
        }
        assert_eq!(back[2].kind, "device_lost");
        assert_eq!(back[3].status, AlertStatus::Resolved);
        assert_eq!(back[4], evs[0].to_record());
    }

    #[test]
    fn each_event_is_visible_to_a_concurrent_reader_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let evs = decision_events();
        let mut sink = JsonlSink::open(dir.path(), JsonlOptions::default()).unwrap();
        let path = sink.path().to_path_buf();
        let reader = std::thread::spawn(move || {
            let mut f = File::open(&path).unwrap();
            let mut s = String::new();
            f.read_to_string(&mut s).unwrap();
            s
        });
        let before = reader.join().unwrap();
        assert_eq!(before, "");
        for (i, e) in evs.iter().enumerate() {
            sink.emit(e).unwrap();
            // The sink is still open: a separate reader already sees complete lines.
            let path = sink.path().to_path_buf();
            let seen = std::thread::spawn(move || std::fs::read_to_string(path).unwrap())
                .join()
                .unwrap();
            assert_eq!(seen.lines().count(), i + 1);
            assert!(seen.ends_with('\n'));
            let last: EventRecord = serde_json::from_str(seen.lines().last().unwrap()).unwrap();
            assert_eq!(&last.event, e);
        }
    }

    #[test]
    fn a_torn_last_line_does_not_swallow_the_next_event() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        // What a crash (or a full disk before this fix) left behind: half a record.
        std::fs::write(&path, "{\"kind\":\"anomaly_star").unwrap();
        let evs = decision_events();
        let mut sink = JsonlSink::open(dir.path(), JsonlOptions::default()).unwrap();
        for e in &evs {
            sink.emit(e).unwrap();
        }
        drop(sink);
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(serde_json::from_str::<EventRecord>(lines[0]).is_err());
        for (l, e) in lines[1..].iter().zip(&evs) {
            let r: EventRecord = serde_json::from_str(l).unwrap();
            assert_eq!(&r.event, e);
        }
    }

    #[test]
    fn bad_directory_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no/such/dir");
        let msg = JsonlSink::open(&missing, JsonlOptions::default())
            .err()
            .unwrap()
            .to_string();
        assert!(msg.contains("no/such/dir"), "{msg}");
        assert!(msg.contains("StateDirectory"), "{msg}");
        // A file where the directory should be.
        let file = dir.path().join("plain");
        std::fs::write(&file, "x").unwrap();
        let msg = JsonlSink::open(&file, JsonlOptions::default())
            .err()
            .unwrap()
            .to_string();
        assert!(msg.contains("not a directory"), "{msg}");
    }

    #[test]
    fn options_validate_names_keys() {
        assert!(JsonlOptions::default().validate().is_ok());
        for (o, key) in [
            (
                JsonlOptions {
                    file_name: "../x.jsonl".into(),
                    ..JsonlOptions::default()
                },
                "file_name",
            ),
            (
                JsonlOptions {
                    rotate_bytes: Some(0),
                    ..JsonlOptions::default()
                },
                "rotate_bytes",
            ),
            (
                JsonlOptions {
                    keep: 5000,
                    ..JsonlOptions::default()
                },
                "keep",
            ),
        ] {
            let e = o.validate().unwrap_err();
            assert!(e.contains(key), "{e}");
        }
        let dir = tempfile::tempdir().unwrap();
        let bad = JsonlOptions {
            file_name: "sub/events.jsonl".into(),
            ..JsonlOptions::default()
        };
        let e = JsonlSink::open(dir.path(), bad).err().unwrap().to_string();
        assert!(e.contains("file_name"), "{e}");
        let e = toml::from_str::<JsonlOptions>("rotate = 5").unwrap_err();
        assert!(e.to_string().contains("rotate"), "{e}");
    }

    #[test]
    fn rotates_by_size_and_keeps_n_files() {
        let dir = tempfile::tempdir().unwrap();
        let ev = &decision_events()[0];
        let line = serde_json::to_vec(&ev.to_record()).unwrap().len() as u64 + 1;
        let opts = JsonlOptions {
            rotate_bytes: Some(line * 2),
            keep: 2,
            ..JsonlOptions::default()
        };
        let mut sink = JsonlSink::open(dir.path(), opts).unwrap();
        for _ in 0..7 {
            sink.emit(ev).unwrap();
        }
        sink.close().unwrap();
        let count = |name: &str| {
            std::fs::read_to_string(dir.path().join(name))
                .map(|s| s.lines().count())
                .unwrap_or(0)
        };
        assert_eq!(count("events.jsonl"), 1);
        assert_eq!(count("events.jsonl.1"), 2);
        assert_eq!(count("events.jsonl.2"), 2);
        assert!(!dir.path().join("events.jsonl.3").exists());
    }

    #[test]
    fn standard_sinks_write_the_file_and_update_metrics() {
        let m = crate::metrics::Metrics::new().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut sinks = Sinks::standard(dir.path(), JsonlOptions::default(), Some(&m)).unwrap();
        let score = m.score("press-1");
        for e in decision_events() {
            assert_eq!(sinks.emit(&e), 0);
            if let Event::Anomaly(d) = &e {
                score.decision(d);
                assert_eq!(score.active.get(), (d.kind == DecisionKind::Started) as i64);
            }
        }
        assert_eq!(score.events.get(), 1);
        assert!(sinks.close().is_empty());
        assert_eq!(m.sink("jsonl").written.get(), 2);
        let text = std::fs::read_to_string(dir.path().join("events.jsonl")).unwrap();
        assert_eq!(text.lines().count(), 2);
        assert!(
            Sinks::standard(&dir.path().join("missing"), JsonlOptions::default(), None).is_err()
        );
    }

    #[test]
    fn fanout_counts_and_survives_a_failing_sink() {
        struct Broken;
        impl EventSink for Broken {
            fn name(&self) -> &'static str {
                "broken"
            }
            fn emit(&mut self, _: &Event) -> Result<Emitted, SinkError> {
                Err(SinkError::Write {
                    path: "/dev/full".into(),
                    source: std::io::Error::other("disk full"),
                })
            }
        }
        let m = crate::metrics::Metrics::new().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut sinks = Sinks::new();
        sinks.add(Box::new(Broken), Some(m.sink("broken")));
        sinks.add(
            Box::new(JsonlSink::open(dir.path(), JsonlOptions::default()).unwrap()),
            Some(m.sink("jsonl")),
        );
        sinks.add(Box::new(LogSink), Some(m.sink("log")));
        for e in decision_events() {
            assert_eq!(sinks.emit(&e), 1);
        }
        assert!(sinks.close().is_empty());
        assert_eq!(m.sink("broken").failures.get(), 2);
        assert_eq!(m.sink("jsonl").written.get(), 2);
        assert_eq!(m.sink("log").written.get(), 2);
        let text = std::fs::read_to_string(dir.path().join("events.jsonl")).unwrap();
        assert_eq!(text.lines().count(), 2);
    }
}
