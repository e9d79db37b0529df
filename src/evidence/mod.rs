//! Evidence of anomaly events: what the monitor heard (a WAV clip at the capture rate, before
//! resampling), what it looked like (a spectrogram PNG with the window scores under it), kept
//! within limits, listed by the events page, `/api/events` and `earshot events`.
//!
//! ```text
//! capture thread: mono block -> ClipRecorder (pre-roll ring; appends to an open clip)
//! decision stage: event started/ended -> recorder begin/end; finished audio + the window
//!                 scores of its span -> ClipWriter thread
//! writer thread:  free-space guard -> WAV + PNG + event.json in a hidden temp directory,
//!                 fsynced, renamed into place in one step -> retention
//! ```
//!
//! Layout: `<state_dir>/evidence/<monitor>/<hex>/{clip.wav, spectrogram.png, event.json}`,
//! where `<monitor>/<hex>` is the event id of `score::decide` (the one owner of event
//! identity: nothing here recomputes it). An event directory appears by one `rename` of a
//! complete directory, so a crash leaves either nothing or everything; the hidden temp
//! directories a crash leaves (`.tmp-*`, `.del-*`) are removed at start and never listed.

pub mod offline;
pub mod page;
pub mod recorder;
pub mod reference;
pub mod retention;
pub mod spectrogram;
pub mod store;
pub mod writer;

use serde::{Deserialize, Serialize};

pub use recorder::{ClipRecorder, FinishedAudio};
pub use store::{EventEvidence, Store};
pub use writer::{ClipWriter, Evidence, WindowTrace};

/// File names inside one event's directory.
pub const CLIP_FILE: &str = "clip.wav";
pub const IMAGE_FILE: &str = "spectrogram.png";
pub const META_FILE: &str = "event.json";
/// Directory of the evidence under the state directory.
pub const EVIDENCE_DIR: &str = "evidence";

#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    #[error("{path}: {source}")]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("writing WAV {path}: {detail}")]
    Wav {
        path: std::path::PathBuf,
        detail: String,
    },
    #[error("drawing spectrogram {path}: {detail}")]
    Image {
        path: std::path::PathBuf,
        detail: String,
    },
    #[error("event id {0:?} is not <monitor>/<hex>")]
    BadId(String),
}

pub(crate) fn io_err(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> EvidenceError + '_ {
    move |source| EvidenceError::Io {
        path: path.to_owned(),
        source,
    }
}

/// `[evidence]` in the config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvidenceConfig {
    /// Save a clip and a spectrogram for every anomaly event.
    pub enabled: bool,
    /// Seconds of audio kept before the event's onset.
    pub pre_roll_seconds: f64,
    /// Seconds of audio kept after the event's end.
    pub post_roll_seconds: f64,
    /// A clip is finished at this length even if the event goes on.
    pub max_clip_seconds: f64,
    /// Retention, per monitor: the oldest events' evidence is deleted first.
    pub max_events: usize,
    pub max_megabytes: f64,
    pub max_age_days: f64,
    /// No clip is written while the state directory's filesystem has less free space than
    /// this (the events themselves and scoring go on); writing resumes when space returns.
    pub min_free_megabytes: f64,
}

impl Default for EvidenceConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            pre_roll_seconds: 5.0,
            post_roll_seconds: 2.0,
            max_clip_seconds: 60.0,
            max_events: 200,
            max_megabytes: 500.0,
            max_age_days: 30.0,
            min_free_megabytes: 200.0,
        }
    }
}

impl EvidenceConfig {
    /// Checks ranges; the error is (key, detail).
    pub fn validate(&self) -> Result<(), (String, String)> {
        let bad = |k: &str, d: String| Err((k.to_string(), d));
        let finite_nonneg = |v: f64| v.is_finite() && v >= 0.0;
        if !finite_nonneg(self.pre_roll_seconds) || self.pre_roll_seconds > 600.0 {
            return bad(
                "pre_roll_seconds",
                format!("{} must be in 0..=600", self.pre_roll_seconds),
            );
        }
        if !finite_nonneg(self.post_roll_seconds) || self.post_roll_seconds > 600.0 {
            return bad(
                "post_roll_seconds",
                format!("{} must be in 0..=600", self.post_roll_seconds),
            );
        }
        if !(self.max_clip_seconds.is_finite()
            && self.max_clip_seconds >= 1.0
            && self.max_clip_seconds <= 3600.0)
        {
            return bad(
                "max_clip_seconds",
                format!("{} must be in 1..=3600", self.max_clip_seconds),
            );
        }
        if self.max_events == 0 {
            return bad("max_events", "must be at least 1".into());
        }
        if !(self.max_megabytes.is_finite() && self.max_megabytes > 0.0) {
            return bad(
                "max_megabytes",
                format!("{} must be > 0", self.max_megabytes),
            );
        }
        if !(self.max_age_days.is_finite() && self.max_age_days > 0.0) {
            return bad("max_age_days", format!("{} must be > 0", self.max_age_days));
        }
        if !finite_nonneg(self.min_free_megabytes) {
            return bad(
                "min_free_megabytes",
                format!("{} must be >= 0", self.min_free_megabytes),
            );
        }
        Ok(())
    }
}

/// Splits an event id `<monitor>/<hex>` at its last `/`.
pub fn split_id(event_id: &str) -> Result<(&str, &str), EvidenceError> {
    let (m, h) = event_id
        .rsplit_once('/')
        .ok_or_else(|| EvidenceError::BadId(event_id.into()))?;
    if m.is_empty() || h.is_empty() || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(EvidenceError::BadId(event_id.into()));
    }
    Ok((m, h))
}

/// A monitor name as one safe path segment (and URL segment): other characters become `_`.
pub fn monitor_segment(monitor: &str) -> String {
    let s: String = monitor
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.starts_with('.') || s.is_empty() {
        format!("_{s}")
    } else {
        s
    }
}

/// Where an event's evidence is served, relative to the server's root; the one place the
/// URL scheme is defined (the page, the API and the alert annotations use it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EvidenceUrls {
    pub page: String,
    pub clip: String,
    pub image: String,
}

impl EvidenceUrls {
    /// URLs of `event_id` under `base` (e.g. `http://edge:9847`; empty = root-relative).
    pub fn of(base: &str, event_id: &str) -> Option<Self> {
        let (m, h) = split_id(event_id).ok()?;
        let root = format!(
            "{}/events/{}/{h}",
            base.trim_end_matches('/'),
            monitor_segment(m)
        );
        Some(Self {
            clip: format!("{root}/{CLIP_FILE}"),
            image: format!("{root}/{IMAGE_FILE}"),
            page: root,
        })
    }
}

/// Free bytes for unprivileged users on the filesystem holding `path`.
pub fn free_bytes(path: &std::path::Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "NUL in path"))?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated string and `st` a writable statvfs.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(st.f_bavail as u64 * st.f_frsize as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_follow_the_event_id() {
        let u = EvidenceUrls::of("http://edge:9847/", "press 1/00ff").unwrap();
        assert_eq!(u.page, "http://edge:9847/events/press_1/00ff");
        assert_eq!(u.clip, "http://edge:9847/events/press_1/00ff/clip.wav");
        assert!(EvidenceUrls::of("", "nohex").is_none());
        assert!(EvidenceUrls::of("", "m/../x").is_none());
    }

    #[test]
    fn free_space_is_read() {
        assert!(free_bytes(std::path::Path::new("/")).is_ok());
        assert!(free_bytes(std::path::Path::new("/nonexistent-dir-x")).is_err());
    }
}
