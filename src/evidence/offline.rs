//! `earshot score --spectrogram DIR`: the same picture as the daemon's evidence, for scored
//! files (the whole file, its windows' scores against the profile's thresholds).

use std::path::{Path, PathBuf};

use super::EvidenceError;
use super::spectrogram::{self, Picture, Spectrogram, WindowScores};

/// Draws one PNG per scored file into a directory.
pub struct Pictures {
    dir: PathBuf,
    files: Vec<PathBuf>,
    names: Vec<String>,
    reference: Option<Spectrogram>,
}

impl Pictures {
    pub fn new(dir: &Path, profile_dir: &Path, files: &[PathBuf]) -> Result<Self, EvidenceError> {
        std::fs::create_dir_all(dir).map_err(super::io_err(dir))?;
        Ok(Self {
            dir: dir.to_owned(),
            files: files.to_vec(),
            names: crate::score::learn::clip_names(files),
            reference: super::reference::load(profile_dir),
        })
    }

    /// The PNG of file `i` (its clip name with `/` as `__`, `.png`).
    pub fn path(&self, i: usize) -> PathBuf {
        let name = self.names.get(i).map_or("clip", String::as_str);
        self.dir.join(format!("{}.png", name.replace('/', "__")))
    }

    /// Draws file `i` with its windows and the deciding scores (`deciding`: each scorer
    /// that decides with its threshold, as the profile has them), as the daemon draws its
    /// evidence: a score that does not decide is not drawn.
    pub fn draw(
        &self,
        i: usize,
        windows: &[crate::score::replay::WindowRecord],
        deciding: &[(&str, f32)],
    ) -> Result<PathBuf, EvidenceError> {
        let file = &self.files[i];
        let clip = crate::audio::read_wav(file).map_err(|e| EvidenceError::Image {
            path: file.clone(),
            detail: e.to_string(),
        })?;
        let ch = usize::from(clip.channels.max(1));
        let mono: Vec<f32> = clip
            .samples
            .chunks_exact(ch)
            .map(|f| f.iter().sum::<f32>() / ch as f32)
            .collect();
        let spec = Spectrogram::compute(&mono, clip.sample_rate, 800, 256);
        let ws: Vec<WindowScores> = windows
            .iter()
            .map(|w| WindowScores {
                start_s: w.start_s,
                end_s: w.end_s,
                scores: deciding
                    .iter()
                    .filter_map(|&(name, t)| {
                        let s = w.scores.get(name)?;
                        Some((name.to_string(), f64::from(s), f64::from(t)))
                    })
                    .collect(),
            })
            .collect();
        let out = self.path(i);
        let title = file.display().to_string();
        spectrogram::draw(
            &Picture {
                title: &title,
                clip: &spec,
                windows: &ws,
                onset_s: None,
                reference: self.reference.as_ref(),
            },
            &out,
        )?;
        Ok(out)
    }
}
