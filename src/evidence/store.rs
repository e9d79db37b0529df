//! The evidence directory: where each event's files live, what is listed, and clean-up of
//! what a crash left. Only complete event directories (renamed into place with all their
//! files) are ever listed or served; hidden `.tmp-*` / `.del-*` directories never are.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::spectrogram::WindowScores;
use super::{
    CLIP_FILE, EVIDENCE_DIR, EvidenceError, IMAGE_FILE, META_FILE, io_err, monitor_segment,
    split_id,
};
use crate::score::decide::DecisionEvent;

/// `event.json`: the event as it stood when its clip was finished, and the clip's facts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventEvidence {
    pub event_id: String,
    pub monitor: String,
    /// The latest decision of the event when the clip was finished (`ended` if it ended
    /// within the clip).
    pub event: DecisionEvent,
    /// Capture rate of the clip (before resampling).
    pub sample_rate: u32,
    pub clip_seconds: f64,
    /// Stream seconds of the clip's first sample; the onset is `onset_offset_s` into it.
    pub clip_start_s: f64,
    pub onset_offset_s: f64,
    /// Whether `spectrogram.png` exists (a drawing failure leaves the clip alone).
    pub image: bool,
    /// Window scores over the clip, times relative to its first sample.
    pub windows: Vec<WindowScores>,
    /// When the evidence was written (RFC 3339).
    pub written_at: String,
    /// The clip so far, written when the event was detected: the whole clip replaces it when
    /// the event ends or the clip reaches its maximum length. One that stays partial was cut
    /// by earshot stopping (a kill, a crash, a power loss) before either.
    #[serde(default)]
    pub partial: bool,
}

impl EventEvidence {
    /// Duration of the event (onset to end) if it has ended.
    pub fn duration_s(&self) -> Option<f64> {
        self.event
            .end
            .as_ref()
            .map(|e| (e.stream_s - self.event.start.stream_s).max(0.0))
    }

    /// The highest peak score over its threshold: (scorer, peak, threshold).
    pub fn peak(&self) -> Option<(&str, f64, f64)> {
        self.event
            .scores
            .iter()
            .max_by(|a, b| (a.1.peak / a.1.threshold).total_cmp(&(b.1.peak / b.1.threshold)))
            .map(|(k, s)| (k.as_str(), s.peak, s.threshold))
    }
}

/// A listed event: its facts and where its files are.
#[derive(Debug, Clone, Serialize)]
pub struct Listed {
    #[serde(flatten)]
    pub meta: EventEvidence,
    pub dir: PathBuf,
    pub clip: PathBuf,
    pub image: Option<PathBuf>,
    pub bytes: u64,
    #[serde(skip)]
    pub modified: SystemTime,
}

/// The evidence directory under a state directory.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    pub fn new(state_dir: &Path) -> Self {
        Self {
            root: state_dir.join(EVIDENCE_DIR),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory of one monitor's evidence.
    pub fn monitor_dir(&self, monitor: &str) -> PathBuf {
        self.root.join(monitor_segment(monitor))
    }

    /// The final directory of an event.
    pub fn event_dir(&self, event_id: &str) -> Result<PathBuf, EvidenceError> {
        let (m, h) = split_id(event_id)?;
        Ok(self.monitor_dir(m).join(h))
    }

    /// Removes what an interrupted write or deletion left (hidden temp directories) and any
    /// event directory that lacks one of its files; returns how many were removed. An earlier
    /// version that [`Store::replace`] had set aside when it was interrupted is put back.
    pub fn sweep(&self) -> usize {
        let mut removed = 0;
        for m in subdirs(&self.root) {
            for d in subdirs(&m) {
                let name = d.file_name().and_then(|n| n.to_str()).unwrap_or("");
                let incomplete = !d.join(META_FILE).is_file() || !d.join(CLIP_FILE).is_file();
                if let Some(event) = name.strip_prefix(OLD_PREFIX)
                    && !incomplete
                    && !m.join(event).exists()
                    && std::fs::rename(&d, m.join(event)).is_ok()
                {
                    continue;
                }
                if (name.starts_with('.') || incomplete) && std::fs::remove_dir_all(&d).is_ok() {
                    removed += 1;
                }
            }
        }
        removed
    }

    /// Complete events of one monitor (`None`: all), newest first.
    pub fn list(&self, monitor: Option<&str>) -> Vec<Listed> {
        let dirs: Vec<PathBuf> = match monitor {
            Some(m) => vec![self.monitor_dir(m)],
            None => subdirs(&self.root),
        };
        let mut out = Vec::new();
        for m in dirs {
            for d in subdirs(&m) {
                if let Some(l) = read_event(&d) {
                    out.push(l);
                }
            }
        }
        out.sort_by(|a, b| {
            b.meta
                .event
                .start
                .wall
                .cmp(&a.meta.event.start.wall)
                .then(b.modified.cmp(&a.modified))
        });
        out
    }

    /// One complete event by monitor segment and hex id.
    pub fn get(&self, monitor_seg: &str, hex: &str) -> Option<Listed> {
        if !valid_segment(monitor_seg) || !valid_segment(hex) {
            return None;
        }
        read_event(&self.root.join(monitor_seg).join(hex))
    }

    /// Puts the complete directory `tmp` (a sibling) in the place of `final_dir`, which may
    /// hold an earlier version (the clip so far). The earlier one is set aside under a hidden
    /// name first and removed last, so a crash between the two renames leaves it for the next
    /// start's [`Store::sweep`] to put back: the event keeps the evidence it had.
    pub fn replace(&self, tmp: &Path, final_dir: &Path) -> Result<(), EvidenceError> {
        let name = final_dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("x");
        let old = final_dir.with_file_name(format!("{OLD_PREFIX}{name}"));
        let had = final_dir.exists();
        if had {
            let _ = std::fs::remove_dir_all(&old);
            std::fs::rename(final_dir, &old).map_err(io_err(final_dir))?;
        }
        if let Err(e) = std::fs::rename(tmp, final_dir) {
            if had {
                let _ = std::fs::rename(&old, final_dir);
            }
            return Err(io_err(final_dir)(e));
        }
        if had {
            let _ = std::fs::remove_dir_all(&old);
        }
        Ok(())
    }

    /// Deletes an event's directory: renamed to a hidden name first, so a half-deleted
    /// directory is never listed.
    pub fn delete(&self, dir: &Path) -> Result<(), EvidenceError> {
        let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or("x");
        let hidden = dir.with_file_name(format!(".del-{name}"));
        std::fs::rename(dir, &hidden).map_err(io_err(dir))?;
        std::fs::remove_dir_all(&hidden).map_err(io_err(&hidden))
    }
}

/// Hidden name of an event's earlier version while [`Store::replace`] swaps in the new one.
const OLD_PREFIX: &str = ".old-";

/// A path segment that cannot leave its directory.
fn valid_segment(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('.')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn subdirs(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    rd.filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect()
}

fn read_event(dir: &Path) -> Option<Listed> {
    let name = dir.file_name()?.to_str()?;
    if name.starts_with('.') {
        return None;
    }
    let text = std::fs::read_to_string(dir.join(META_FILE)).ok()?;
    let meta: EventEvidence = serde_json::from_str(&text).ok()?;
    let clip = dir.join(CLIP_FILE);
    let cm = std::fs::metadata(&clip).ok()?;
    let image = dir.join(IMAGE_FILE);
    let im = std::fs::metadata(&image).ok();
    let modified = cm.modified().unwrap_or(SystemTime::UNIX_EPOCH);
    Some(Listed {
        bytes: cm.len() + im.as_ref().map_or(0, |m| m.len()) + text.len() as u64,
        image: im.map(|_| image),
        meta,
        dir: dir.to_owned(),
        clip,
        modified,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A complete event directory whose clip holds `tag`.
    fn event(dir: &Path, tag: &str) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join(META_FILE), b"{}").unwrap();
        std::fs::write(dir.join(CLIP_FILE), tag).unwrap();
    }

    fn clip(dir: &Path) -> String {
        std::fs::read_to_string(dir.join(CLIP_FILE)).unwrap()
    }

    #[test]
    fn replace_swaps_in_the_new_version_and_a_crash_between_keeps_the_old() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::new(tmp.path());
        let mon = store.monitor_dir("press");
        let fin = mon.join("0a1b");
        // First write: nothing there yet.
        event(&mon.join(".tmp-0a1b"), "so far");
        store.replace(&mon.join(".tmp-0a1b"), &fin).unwrap();
        assert_eq!(clip(&fin), "so far");
        // The whole clip replaces it; nothing hidden is left.
        event(&mon.join(".tmp-0a1b"), "whole");
        store.replace(&mon.join(".tmp-0a1b"), &fin).unwrap();
        assert_eq!(clip(&fin), "whole");
        let names: Vec<String> = std::fs::read_dir(&mon)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["0a1b".to_string()]);
        // A crash between the two renames: the old version set aside, the new one still in
        // its temp directory. The next start puts the old one back and removes the temp.
        std::fs::rename(&fin, mon.join(".old-0a1b")).unwrap();
        event(&mon.join(".tmp-0a1b"), "never renamed");
        assert_eq!(store.sweep(), 1);
        assert_eq!(clip(&fin), "whole");
        assert!(!mon.join(".tmp-0a1b").exists());
        assert!(!mon.join(".old-0a1b").exists());
        // An old version whose event is in place (the crash came after the second rename)
        // is removed, not put back over the new one.
        event(&mon.join(".old-0a1b"), "stale");
        assert_eq!(store.sweep(), 1);
        assert_eq!(clip(&fin), "whole");
        assert!(!mon.join(".old-0a1b").exists());
    }
}
