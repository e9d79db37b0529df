//! Events leaving earshot: anomaly decisions and operational happenings (device lost and
//! recovered), delivered to sinks.
//!
//! `events` defines the event records (Alertmanager-shaped, so a webhook or Alertmanager sink
//! can post them as they are), the [`events::EventSink`] trait, a JSON-lines file sink for the
//! state directory and a structured log sink.

pub mod events;
