//! What `/healthz` reports, and the one place a monitor's state is derived.
//!
//! A monitor's state has independent parts that different threads learn about: the capture
//! thread knows the device, the decision stage knows whether there is a signal, the scoring
//! stage knows the index. Each reports only its own part to the monitor's [`StatusHandle`],
//! which derives the one [`MonitorStatus`] shown in `/healthz` and `earshot_monitor_up` from
//! all of them, so a thread can never overwrite what another found (an index answering again
//! does not make a lost device "running").

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::Mutex;
use prometheus::IntGauge;
use serde::Serialize;

/// What `/healthz` reports per monitor.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum MonitorStatus {
    Starting,
    Running,
    /// Running with reduced capability (e.g. k-NN off); counts as healthy.
    Degraded {
        reason: String,
    },
    /// Input below the level floor (device or machine off). Healthy only when the monitor's
    /// settings say a stopped machine is normal (`expected`).
    NoSignal {
        reason: String,
        expected: bool,
    },
    /// Running but something needs fixing (e.g. the index refuses the key).
    Error {
        reason: String,
    },
    /// Not scoring (device lost, failed to start, ...).
    Down {
        reason: String,
    },
    Stopped,
}

impl MonitorStatus {
    fn healthy(&self) -> bool {
        match self {
            MonitorStatus::Running | MonitorStatus::Degraded { .. } => true,
            MonitorStatus::NoSignal { expected, .. } => *expected,
            _ => false,
        }
    }
}

#[derive(Default)]
struct HealthInner {
    monitors: BTreeMap<String, MonitorStatus>,
    ready: bool,
    /// Config sections changed on disk whose new values only a restart applies.
    restart_required: Vec<String>,
    /// Conditions that do not stop readiness but should be seen there (e.g. clip writing
    /// paused for lack of disk space), by topic.
    notes: BTreeMap<String, String>,
}

/// Shared health state the daemon updates and the HTTP endpoint reads.
#[derive(Clone, Default)]
pub struct Health(Arc<parking_lot::RwLock<HealthInner>>);

impl Health {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn set(&self, monitor: &str, status: MonitorStatus) {
        self.0.write().monitors.insert(monitor.to_string(), status);
    }

    pub fn remove(&self, monitor: &str) {
        self.0.write().monitors.remove(monitor);
    }

    /// Every registered monitor's status.
    pub fn monitors(&self) -> BTreeMap<String, MonitorStatus> {
        self.0.read().monitors.clone()
    }

    /// The status of one monitor, if registered.
    pub fn get(&self, monitor: &str) -> Option<MonitorStatus> {
        self.0.read().monitors.get(monitor).cloned()
    }

    /// Start-up finished (every monitor attempted); what `/readyz` reports.
    pub fn set_ready(&self, ready: bool) {
        self.0.write().ready = ready;
    }

    /// (healthy, JSON body) as served by `/healthz`.
    pub fn report(&self) -> (bool, serde_json::Value) {
        let g = self.0.read();
        let not_running: Vec<&String> = g
            .monitors
            .iter()
            .filter(|(_, s)| !s.healthy())
            .map(|(k, _)| k)
            .collect();
        let ok = !g.monitors.is_empty() && not_running.is_empty();
        let body = serde_json::json!({
            "status": if ok { "ok" } else { "unhealthy" },
            "monitors": g.monitors,
            "not_running": not_running,
            "reason": if g.monitors.is_empty() { Some("no monitors registered yet") } else { None },
        });
        let mut body = body;
        if !g.restart_required.is_empty() {
            body["restart_required"] = serde_json::json!(g.restart_required);
            body["restart_detail"] = serde_json::json!(
                "the configuration file changed sections that a reload cannot apply; restart earshot (systemctl restart earshot) to use them"
            );
        }
        (ok, body)
    }

    /// Config sections (`events`, `metrics`, `state_dir`, ...) that differ from the running
    /// ones and need a restart; shown in `/healthz` (which stays healthy: the service runs).
    pub fn set_restart_required(&self, sections: Vec<String>) {
        self.0.write().restart_required = sections;
    }

    /// Sets (Some) or clears (None) a note shown by `/readyz`.
    pub fn set_note(&self, topic: &str, note: Option<String>) {
        let mut g = self.0.write();
        match note {
            Some(n) => g.notes.insert(topic.to_string(), n),
            None => g.notes.remove(topic),
        };
    }

    /// The notes shown by `/readyz`.
    pub fn notes(&self) -> BTreeMap<String, String> {
        self.0.read().notes.clone()
    }

    pub fn is_ready(&self) -> bool {
        self.0.read().ready
    }
}

/// The device part of a monitor's state (reported by the capture thread).
#[derive(Debug, Clone, PartialEq)]
pub enum DevicePart {
    Starting,
    Running,
    Lost { reason: String },
    Failed { reason: String },
    Stopped,
}

/// The index part of a monitor's state (reported by the scoring stage).
#[derive(Debug, Clone, PartialEq)]
pub enum IndexPart {
    Ok,
    /// Unavailable for now: scoring by centroid alone.
    Degraded {
        reason: String,
    },
    /// The index refuses the key: an error state until an answer comes back.
    Refused {
        reason: String,
    },
}

#[derive(Debug)]
struct Parts {
    device: DevicePart,
    /// `Some(expected)` while there is no signal.
    no_signal: Option<(String, bool)>,
    index: IndexPart,
}

/// One monitor's state, shared by its threads (see the module docs).
#[derive(Clone)]
pub struct StatusHandle {
    name: String,
    health: Health,
    up: IntGauge,
    parts: Arc<Mutex<Parts>>,
    /// The monitor instance's right to publish (a retired instance's threads publish nothing).
    lease: super::Lease,
}

impl StatusHandle {
    pub(super) fn new(name: &str, health: Health, up: IntGauge, lease: super::Lease) -> Self {
        let h = Self {
            name: name.to_string(),
            health,
            up,
            lease,
            parts: Arc::new(Mutex::new(Parts {
                device: DevicePart::Starting,
                no_signal: None,
                index: IndexPart::Ok,
            })),
        };
        h.publish(&h.parts.lock());
        h
    }

    pub fn device(&self, d: DevicePart) {
        let mut p = self.parts.lock();
        if matches!(p.device, DevicePart::Failed { .. }) && d == DevicePart::Stopped {
            // A monitor that failed stays failed (with its reason) when its threads end.
            return;
        }
        p.device = d;
        self.publish(&p);
    }

    /// `Some((reason, expected))` while there is no signal, `None` once it is back.
    pub fn no_signal(&self, s: Option<(String, bool)>) {
        let mut p = self.parts.lock();
        p.no_signal = s;
        self.publish(&p);
    }

    pub fn index(&self, i: IndexPart) {
        let mut p = self.parts.lock();
        if p.index != i {
            p.index = i;
            self.publish(&p);
        }
    }

    /// The derived status (what `/healthz` shows for this monitor).
    pub fn status(&self) -> MonitorStatus {
        derive(&self.parts.lock())
    }

    fn publish(&self, p: &Parts) {
        // `earshot_monitor_up` follows the device: 1 only while it delivers audio.
        self.lease.with(|| {
            self.up.set((p.device == DevicePart::Running) as i64);
            self.health.set(&self.name, derive(p));
        });
    }
}

fn derive(p: &Parts) -> MonitorStatus {
    match &p.device {
        DevicePart::Starting => return MonitorStatus::Starting,
        DevicePart::Stopped => return MonitorStatus::Stopped,
        DevicePart::Lost { reason } | DevicePart::Failed { reason } => {
            return MonitorStatus::Down {
                reason: reason.clone(),
            };
        }
        DevicePart::Running => {}
    }
    if let IndexPart::Refused { reason } = &p.index {
        return MonitorStatus::Error {
            reason: reason.clone(),
        };
    }
    if let Some((reason, expected)) = &p.no_signal {
        return MonitorStatus::NoSignal {
            reason: reason.clone(),
            expected: *expected,
        };
    }
    if let IndexPart::Degraded { reason } = &p.index {
        return MonitorStatus::Degraded {
            reason: reason.clone(),
        };
    }
    MonitorStatus::Running
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_part_is_kept_and_the_worst_wins() {
        let m = super::super::Metrics::new().unwrap();
        let health = Health::new();
        let s = m.status("press-1", &health);
        assert_eq!(health.get("press-1"), Some(MonitorStatus::Starting));
        assert_eq!(s.up.get(), 0);
        s.device(DevicePart::Running);
        assert_eq!(s.up.get(), 1);
        assert!(health.report().0);
        // The index fails while the device is lost: when the index answers again, the
        // monitor is still down (the old code let the last writer win).
        s.device(DevicePart::Lost {
            reason: "no audio for 3.0 s".into(),
        });
        s.index(IndexPart::Degraded {
            reason: "timeout".into(),
        });
        s.index(IndexPart::Ok);
        assert!(matches!(s.status(), MonitorStatus::Down { .. }));
        assert_eq!(s.up.get(), 0, "monitor_up follows the device");
        assert!(!health.report().0);
        s.device(DevicePart::Running);
        // A refused key is an error, not a healthy "degraded".
        s.index(IndexPart::Refused {
            reason: "HTTP 403".into(),
        });
        assert!(matches!(s.status(), MonitorStatus::Error { .. }));
        assert!(!health.report().0);
        s.index(IndexPart::Ok);
        // No signal: healthy only if a stopped machine is normal for this monitor.
        s.no_signal(Some(("input below -75 dBFS".into(), false)));
        assert!(!health.report().0);
        s.no_signal(Some(("input below -75 dBFS".into(), true)));
        assert!(health.report().0);
        let body = health.report().1;
        assert_eq!(body["monitors"]["press-1"]["state"], "no_signal");
        s.no_signal(None);
        assert_eq!(s.status(), MonitorStatus::Running);
    }
}
