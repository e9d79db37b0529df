//! The long-running service: wiring the pipeline stages into monitors, their lifecycle
//! (start, reload, stop) and the conversation with systemd.
//!
//! `notify` speaks sd_notify (READY/STATUS/WATCHDOG) without libsystemd; the watchdog pings
//! only while the pipeline makes progress, so a hung pipeline gets restarted by systemd.

pub mod clock;
pub mod monitor;
pub mod notify;
pub mod service;
pub mod sounds;
