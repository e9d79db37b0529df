//! Events leaving earshot: anomaly decisions and operational happenings (device lost and
//! recovered), delivered to sinks, and alerts that reach people.
//!
//! `events` defines the event records (Alertmanager-shaped), the [`events::EventSink`] trait,
//! a JSON-lines file sink for the state directory and a structured log sink. The alert path:
//! `config` (`[alerts]`), `payload` (Alertmanager's webhook and API shapes), `outbox` (the
//! durable queue every alert passes through), `delivery` (the sink feeding the outbox and the
//! per-target tasks that deliver with retries) and `metrics` (their counters and gauges).
//! `open` keeps the events that fired and have not resolved on disk, so that a start resolves
//! what the last run left open.

pub mod config;
pub mod delivery;
pub mod events;
pub mod metrics;
pub mod open;
pub mod outbox;
pub mod payload;
