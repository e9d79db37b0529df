//! The events that have fired and not yet resolved, kept on disk so that the next start can
//! resolve what the last run left open.
//!
//! Why: a receiver pairs a `firing` alert with its `resolved` one by fingerprint. An anomaly
//! open when earshot is SIGKILLed or loses power never gets its `resolved` from that run, and
//! a `no_signal` or `device_lost` state open at any stop is not re-detected by the next run
//! (its level gate and device watch start afresh): without this file a webhook receiver would
//! keep such alerts open forever. Alertmanager would time them out (`endsAt`), webhooks
//! never would.
//!
//! The file, `open-events.json` in the state directory, holds the firing message of each open
//! event. [`super::events::Sinks`] records an event here *before* its firing message reaches
//! any sink and forgets it *after* its resolving message reached every sink, so a stop at any
//! instant leaves either nothing to do or an event the next start resolves (at worst a
//! receiver gets a second `resolved`, which at-least-once delivery allows anyway). Events
//! start and end a few times a day, so each change rewrites the whole small file (write, fsync,
//! rename): the file is always one whole state, never a torn one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::events::{Event, OperationalEvent, OperationalKind};
use crate::score::decide::{DecisionKind, EndReason, Stamp, TimeBase};

/// The file's name in the state directory.
pub const FILE_NAME: &str = "open-events.json";

#[derive(Debug, thiserror::Error)]
pub enum OpenEventsError {
    #[error(
        "cannot read {path}: {reason}; events the last run left open are not resolved (their receivers may keep them firing): remove the file if it is damaged"
    )]
    Read { path: PathBuf, reason: String },
    #[error(
        "cannot record open events in {path}: {source} (disk full or read-only?); if earshot stops before this is written, the next start cannot resolve them"
    )]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct FileBody {
    /// Firing message of each open event, by fingerprint.
    open: BTreeMap<String, Event>,
}

/// The open events, in memory and on disk.
pub struct OpenEvents {
    path: PathBuf,
    open: BTreeMap<String, Event>,
    /// The last write failed: the file is behind memory (retried at the next change).
    stale: bool,
}

/// What an event does to the set of open events.
enum Change {
    Opens,
    Closes,
    Neither,
}

fn change(event: &Event) -> Change {
    match event {
        Event::Anomaly(d) => match d.kind {
            DecisionKind::Started => Change::Opens,
            DecisionKind::Ongoing => Change::Neither,
            DecisionKind::Ended => Change::Closes,
        },
        Event::Operational(o) => match o.kind {
            OperationalKind::NoSignal | OperationalKind::DeviceLost => Change::Opens,
            OperationalKind::SignalBack | OperationalKind::DeviceRecovered => Change::Closes,
        },
    }
}

impl OpenEvents {
    /// Opens `dir/open-events.json`. Returns the journal (still holding what the last run
    /// left open) and those events' resolving messages ([`Event::left_open`]) stamped `now`;
    /// emitting them through [`super::events::Sinks`] forgets them here. Reads only: nothing
    /// is written until an event changes. A missing file is an empty one; a damaged one is
    /// reported and then overwritten by the next change.
    pub fn open(dir: &Path, now: SystemTime) -> (Self, Vec<Event>, Option<OpenEventsError>) {
        let path = dir.join(FILE_NAME);
        let (open, err) = match crate::files::read_regular(&path) {
            Ok(bytes) => match serde_json::from_slice::<FileBody>(&bytes) {
                Ok(body) => (body.open, None),
                Err(e) => (
                    BTreeMap::new(),
                    Some(OpenEventsError::Read {
                        path: path.clone(),
                        reason: e.to_string(),
                    }),
                ),
            },
            Err(crate::files::PathError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                (BTreeMap::new(), None)
            }
            Err(e) => (
                BTreeMap::new(),
                Some(OpenEventsError::Read {
                    path: path.clone(),
                    reason: e.to_string(),
                }),
            ),
        };
        let endings = open
            .values()
            .filter_map(|e| e.left_open(now, LEFT_OPEN))
            .collect();
        let journal = Self {
            path,
            open,
            stale: false,
        };
        (journal, endings, err)
    }

    /// Before `event` reaches the sinks: records it if it opens an event.
    pub fn before(&mut self, event: &Event) -> Result<(), OpenEventsError> {
        match change(event) {
            Change::Opens => {
                self.open
                    .insert(event.to_record().fingerprint, event.clone());
                self.write()
            }
            Change::Closes | Change::Neither => self.retry(),
        }
    }

    /// After `event` reached the sinks: forgets the event it resolves.
    pub fn after(&mut self, event: &Event) -> Result<(), OpenEventsError> {
        match change(event) {
            Change::Closes => {
                if self.open.remove(&event.to_record().fingerprint).is_some() || self.stale {
                    self.write()
                } else {
                    Ok(())
                }
            }
            Change::Opens | Change::Neither => Ok(()),
        }
    }

    /// The resolving messages of the events of `monitor` open now, stamped `now`, with
    /// `detail` saying why for a device or signal state; emitting them forgets the events.
    pub fn endings_of(&self, monitor: &str, now: SystemTime, detail: &str) -> Vec<Event> {
        self.open
            .values()
            .filter(|e| e.labels().get("monitor").is_some_and(|m| m == monitor))
            .filter_map(|e| e.left_open(now, detail))
            .collect()
    }

    /// Fingerprints of the events open now.
    pub fn fingerprints(&self) -> impl Iterator<Item = &str> {
        self.open.keys().map(String::as_str)
    }

    fn retry(&mut self) -> Result<(), OpenEventsError> {
        if self.stale { self.write() } else { Ok(()) }
    }

    fn write(&mut self) -> Result<(), OpenEventsError> {
        let body = FileBody {
            open: self.open.clone(),
        };
        let res = write_atomically(&self.path, &body);
        self.stale = res.is_err();
        res.map_err(|source| OpenEventsError::Write {
            path: self.path.clone(),
            source,
        })
    }
}

fn write_atomically(path: &Path, body: &FileBody) -> std::io::Result<()> {
    use std::io::Write;
    let bytes = serde_json::to_vec_pretty(body).map_err(std::io::Error::other)?;
    let tmp = path.with_extension("json.tmp");
    let res = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

/// Why a state the last run left open is resolved, in its detail text.
const LEFT_OPEN: &str = "resolved at earshot's start: this state was open when earshot last stopped, and the new run checks afresh (raised again if it persists)";

impl Event {
    /// The resolving message for this firing message, when what raised it stopped without
    /// sending one: an anomaly ends with reason `interrupted` (a clean stop ends anomalies
    /// itself, so only a crash, SIGKILL, power loss or a monitor whose stop timed out leaves
    /// one open); a `no_signal` or `device_lost` state resolves with `detail` saying why.
    /// `None` for a message that does not open an event.
    pub fn left_open(&self, now: SystemTime, detail: &str) -> Option<Event> {
        let now_text = humantime::format_rfc3339_millis(now).to_string();
        match self {
            Event::Anomaly(d) if d.kind != DecisionKind::Ended => {
                let mut d = d.clone();
                // The end was never seen: the last instant known is detection (or onset).
                let last = d.detected.clone().unwrap_or_else(|| d.start.clone());
                d.end = Some(Stamp {
                    stream_s: last.stream_s,
                    // Stream-time strings name seconds into that run's file, not now.
                    wall: match d.time_base {
                        TimeBase::Wall => now_text,
                        TimeBase::Stream => last.wall,
                    },
                });
                d.kind = DecisionKind::Ended;
                d.reason = Some(EndReason::Interrupted);
                Some(Event::Anomaly(d))
            }
            Event::Operational(o) => {
                let kind = match o.kind {
                    OperationalKind::NoSignal => OperationalKind::SignalBack,
                    OperationalKind::DeviceLost => OperationalKind::DeviceRecovered,
                    OperationalKind::SignalBack | OperationalKind::DeviceRecovered => return None,
                };
                Some(Event::Operational(OperationalEvent {
                    kind,
                    labels: o.labels.clone(),
                    at: now_text,
                    since: Some(o.at.clone()),
                    detail: detail.to_string(),
                    severity: o.severity.clone(),
                }))
            }
            Event::Anomaly(_) => None,
        }
    }

    /// The monitor's labels the event carries.
    pub fn labels(&self) -> &BTreeMap<String, String> {
        match self {
            Event::Anomaly(d) => &d.labels,
            Event::Operational(o) => &o.labels,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::events::tests::decision_events;
    use crate::alert::events::{Emitted, EventSink, JsonlOptions, SinkError, Sinks};
    use serde_json::Value;

    fn lines(dir: &Path) -> Vec<Value> {
        std::fs::read_to_string(dir.join("events.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn sinks(dir: &Path) -> Sinks {
        Sinks::standard(dir, JsonlOptions::default(), None).unwrap()
    }

    fn no_signal() -> Event {
        let labels = BTreeMap::from([("monitor".to_string(), "press-1".to_string())]);
        Event::Operational(
            OperationalEvent::now(
                OperationalKind::NoSignal,
                labels,
                None,
                "input below -60 dBFS",
            )
            .at_time(
                SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000),
                None,
            )
            .with_severity("info"),
        )
    }

    #[test]
    fn an_anomaly_left_open_by_a_kill_is_ended_at_the_next_start_once() {
        let dir = tempfile::tempdir().unwrap();
        let evs = decision_events();
        let mut s = sinks(dir.path());
        assert_eq!(
            s.resolve_left_open(),
            0,
            "a first start has nothing to resolve"
        );
        s.emit(&evs[0]);
        let fingerprint = evs[0].to_record().fingerprint;
        assert_eq!(s.open_fingerprints(), vec![fingerprint.clone()]);
        // Killed: no ended message, no close.
        drop(s);

        let mut s = sinks(dir.path());
        assert_eq!(s.resolve_left_open(), 1);
        let last = lines(dir.path()).pop().unwrap();
        assert_eq!(last["kind"], "anomaly_ended");
        assert_eq!(last["status"], "resolved");
        assert_eq!(last["fingerprint"], fingerprint.as_str());
        assert_eq!(last["annotations"]["reason"], "interrupted");
        assert_eq!(last["startsAt"], evs[0].to_record().starts_at.as_str());
        // The end is the restart (wall time base), after the event's start.
        let end = humantime::parse_rfc3339(last["endsAt"].as_str().unwrap()).unwrap();
        assert!(end > humantime::parse_rfc3339(last["startsAt"].as_str().unwrap()).unwrap());
        assert!(SystemTime::now().duration_since(end).unwrap().as_secs() < 60);
        assert!(s.open_fingerprints().is_empty());
        drop(s);

        let mut s = sinks(dir.path());
        assert_eq!(
            s.resolve_left_open(),
            0,
            "resolved once, not at every start"
        );
        assert_eq!(lines(dir.path()).len(), 2);
    }

    #[test]
    fn an_event_that_ended_leaves_nothing_to_resolve() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = sinks(dir.path());
        for e in decision_events() {
            s.emit(&e);
        }
        assert!(s.open_fingerprints().is_empty());
        drop(s);
        let mut s = sinks(dir.path());
        assert_eq!(s.resolve_left_open(), 0);
        assert_eq!(lines(dir.path()).len(), 2);
    }

    #[test]
    fn a_no_signal_state_open_at_a_stop_resolves_at_the_next_start() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = sinks(dir.path());
        s.emit(&no_signal());
        s.close();
        drop(s);
        let mut s = sinks(dir.path());
        assert_eq!(s.resolve_left_open(), 1);
        let got = lines(dir.path());
        let (fired, back) = (&got[0], &got[1]);
        assert_eq!(back["kind"], "signal_back");
        assert_eq!(back["status"], "resolved");
        assert_eq!(back["fingerprint"], fired["fingerprint"]);
        assert_eq!(
            back["startsAt"], fired["startsAt"],
            "resolved since the state began"
        );
        assert_eq!(back["labels"]["severity"], "info");
        assert!(
            back["annotations"]["summary"]
                .as_str()
                .unwrap()
                .contains("open when earshot last stopped"),
            "{back}"
        );
    }

    #[test]
    fn a_damaged_file_is_reported_then_replaced_by_the_next_change() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE_NAME), b"{\"open\": {\"x\": ").unwrap();
        let (mut open, left, err) = OpenEvents::open(dir.path(), SystemTime::now());
        assert!(left.is_empty());
        let err = err.expect("a damaged file is reported").to_string();
        assert!(err.contains("remove the file if it is damaged"), "{err}");
        open.before(&no_signal()).unwrap();
        let (_, left, err) = OpenEvents::open(dir.path(), SystemTime::now());
        assert!(err.is_none());
        assert_eq!(left.len(), 1);
    }

    /// The order that makes a kill at any instant recoverable, seen from inside a sink: the
    /// event is on disk before a sink gets its firing message, and still there while a sink
    /// takes its resolving message.
    #[test]
    fn sinks_see_an_event_only_while_the_file_holds_it() {
        struct Peek {
            dir: std::path::PathBuf,
            seen: std::sync::Arc<std::sync::Mutex<Vec<(String, bool)>>>,
        }
        impl EventSink for Peek {
            fn name(&self) -> &'static str {
                "peek"
            }
            fn emit(&mut self, event: &Event) -> Result<Emitted, SinkError> {
                let on_disk = std::fs::read_to_string(self.dir.join(FILE_NAME))
                    .unwrap_or_default()
                    .contains(&event.to_record().fingerprint);
                self.seen
                    .lock()
                    .unwrap()
                    .push((event.to_record().kind, on_disk));
                Ok(Emitted::Written)
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let seen = std::sync::Arc::default();
        let mut s = Sinks::new();
        let (open, _, _) = OpenEvents::open(dir.path(), SystemTime::now());
        s.keep_open_events(open, None);
        s.add(
            Box::new(Peek {
                dir: dir.path().to_owned(),
                seen: std::sync::Arc::clone(&seen),
            }),
            None,
        );
        for e in decision_events() {
            s.emit(&e);
        }
        assert_eq!(
            *seen.lock().unwrap(),
            vec![
                ("anomaly_started".to_string(), true),
                ("anomaly_ended".to_string(), true)
            ]
        );
        let (_, left, _) = OpenEvents::open(dir.path(), SystemTime::now());
        assert!(left.is_empty(), "forgotten once every sink had it");
    }
}
