//! Retention of one monitor's evidence: by count, total size and age, oldest first.

use std::time::{Duration, SystemTime};

use super::EvidenceConfig;
use super::store::Store;

/// What one pass deleted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    pub events: usize,
    pub bytes: u64,
}

/// Deletes the oldest events of `monitor` until its count, total size and age are within
/// `cfg`'s limits. `now` is the wall clock (age is by when the evidence was written).
pub fn prune(store: &Store, monitor: &str, cfg: &EvidenceConfig, now: SystemTime) -> Pruned {
    let mut events = store.list(Some(monitor));
    // Newest written first: the oldest is popped from the end.
    events.sort_by(|a, b| b.modified.cmp(&a.modified));
    let max_bytes = (cfg.max_megabytes * 1e6) as u64;
    let max_age = Duration::from_secs_f64(cfg.max_age_days * 86_400.0);
    let mut total: u64 = events.iter().map(|e| e.bytes).sum();
    let mut out = Pruned::default();
    while let Some(oldest) = events.last() {
        let age = now.duration_since(oldest.modified).unwrap_or_default();
        let over = events.len() > cfg.max_events || total > max_bytes || age > max_age;
        if !over {
            break;
        }
        let Some(e) = events.pop() else { break };
        match store.delete(&e.dir) {
            Ok(()) => {
                total -= e.bytes;
                out.events += 1;
                out.bytes += e.bytes;
                tracing::info!(monitor, event_id = %e.meta.event_id, "evidence removed by retention");
            }
            Err(err) => {
                tracing::warn!(monitor, error = %err, "cannot remove old evidence");
                break;
            }
        }
    }
    out
}
