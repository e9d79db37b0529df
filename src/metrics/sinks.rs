//! Event sink metrics: events written, deliberately skipped and failed, per sink.

use prometheus::{IntCounter, IntCounterVec, Registry};

use super::counter;
use super::names::*;

pub(super) struct SinkFamilies {
    written: IntCounterVec,
    failures: IntCounterVec,
    skipped: IntCounterVec,
}

impl SinkFamilies {
    pub(super) fn register(r: &Registry) -> prometheus::Result<Self> {
        Ok(Self {
            written: counter(
                r,
                EVENTS_WRITTEN,
                "Events written by an event sink.",
                &["sink"],
            )?,
            failures: counter(
                r,
                EVENT_WRITE_FAILURES,
                "Events an event sink failed to write (sink=\"open_events\": the on-disk record of fired, unresolved events that lets a restart resolve them).",
                &["sink"],
            )?,
            skipped: counter(
                r,
                EVENTS_SKIPPED,
                "Events an event sink deliberately did not send (alerts: no target takes the kind, or a benign sounds-like match with benign_action = record).",
                &["sink"],
            )?,
        })
    }

    pub(super) fn handle(&self, sink: &str) -> SinkHandle {
        SinkHandle {
            written: self.written.with_label_values(&[sink]),
            failures: self.failures.with_label_values(&[sink]),
            skipped: self.skipped.with_label_values(&[sink]),
        }
    }
}

/// Metrics of one event sink.
#[derive(Clone)]
pub struct SinkHandle {
    pub written: IntCounter,
    pub failures: IntCounter,
    pub skipped: IntCounter,
}
