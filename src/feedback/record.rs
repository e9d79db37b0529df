//! `feedback.json`: which events were marked normal in a profile, when, why, and exactly which
//! rows that added, so that `--undo` and `--list` never have to guess.

use super::FeedbackError;
use crate::score::profile::Profile;
use serde::{Deserialize, Serialize};

pub const FEEDBACK_FILE: &str = "feedback.json";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedbackRecord {
    /// The event's fingerprint `<monitor>/<hex>`.
    pub event_id: String,
    pub monitor: String,
    /// RFC 3339.
    pub added_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The evidence clip the windows were embedded from.
    pub clip: String,
    pub windows: usize,
    /// The profile ids of the rows added (k-NN memory; each is a centroid too).
    pub ids: Vec<String>,
    /// The loudest impulse value (dB) of the windows added: the impulse level is kept
    /// [`crate::score::impulse::MIN_MARGIN_DB`] above it, as `learn` keeps it above every
    /// normal window. Absent when the profile has no impulse level.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub impulse_peak_db: Option<f64>,
    /// The highest `mel` score of the windows added (profiles with log-mel statistics): a
    /// window near these rows counts as normal for `mel` and `fused` up to
    /// [`crate::score::melstats::mel_ceiling`] of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mel_peak: Option<f32>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Records {
    pub entries: Vec<FeedbackRecord>,
    /// The impulse level `learn` set, kept while feedback has raised it, so that undoing the
    /// feedback restores it exactly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub impulse_learned: Option<crate::score::impulse::ImpulseLevel>,
}

impl Records {
    /// The records of a loaded profile: none when it has no `feedback.json`. The file must
    /// match the checksum the manifest holds for it, and every id it lists must be in the
    /// profile, or undo could remove the wrong rows.
    pub fn load(profile: &Profile) -> Result<Records, FeedbackError> {
        let path = profile.dir.join(FEEDBACK_FILE);
        let bad = |detail: String| FeedbackError::BadRecord {
            path: path.clone(),
            detail,
        };
        let Some(expected) = profile.manifest.files.get(FEEDBACK_FILE) else {
            if path.exists() {
                return Err(bad(
                    "present but not in manifest.json's `files`: not written with the profile"
                        .into(),
                ));
            }
            return Ok(Records::default());
        };
        let bytes =
            crate::files::read_regular(&path).map_err(|e| bad(format!("cannot be read: {e}")))?;
        let actual = crate::score::profile::sha256_hex(&bytes);
        if !actual.eq_ignore_ascii_case(expected) {
            return Err(bad("its sha256 is not the one manifest.json records".into()));
        }
        let r: Records = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
        let ids: std::collections::BTreeSet<&str> =
            profile.ids.iter().map(String::as_str).collect();
        for e in &r.entries {
            if let Some(id) = e.ids.iter().find(|id| !ids.contains(id.as_str())) {
                return Err(bad(format!(
                    "id {id:?} of event {} is not in ids.txt",
                    e.event_id
                )));
            }
        }
        Ok(r)
    }

    /// The `mel` ceiling per event ([`crate::score::Profile::feedback_mel`]).
    pub fn mel_ceilings(&self) -> std::collections::BTreeMap<String, f32> {
        self.entries
            .iter()
            .filter_map(|r| {
                r.mel_peak
                    .filter(|m| m.is_finite())
                    .map(|m| (r.event_id.clone(), crate::score::melstats::mel_ceiling(m)))
            })
            .collect()
    }

    pub fn get(&self, event_id: &str) -> Option<&FeedbackRecord> {
        self.entries.iter().find(|r| r.event_id == event_id)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }
}
