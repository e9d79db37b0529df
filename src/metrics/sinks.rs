//! Event sink metrics: events written and failed, per sink.

use prometheus::{IntCounter, IntCounterVec, Registry};

use super::counter;
use super::names::*;

pub(super) struct SinkFamilies {
    written: IntCounterVec,
    failures: IntCounterVec,
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
                "Events an event sink failed to write.",
                &["sink"],
            )?,
        })
    }

    pub(super) fn handle(&self, sink: &str) -> SinkHandle {
        SinkHandle {
            written: self.written.with_label_values(&[sink]),
            failures: self.failures.with_label_values(&[sink]),
        }
    }
}

/// Metrics of one event sink.
#[derive(Clone)]
pub struct SinkHandle {
    pub written: IntCounter,
    pub failures: IntCounter,
}
