//! The normal reference beside every spectrogram: `reference.wav` in the profile, a few
//! seconds of the normal recording `learn` found most typical (the clip whose windows lie,
//! on average, at the median distance from the normal centroids), at its own sample rate.
//! The file is optional: profiles without it load as before, and their pictures simply have
//! no reference panel.

use std::path::{Path, PathBuf};

use super::spectrogram::Spectrogram;
use crate::score::Profile;

/// File name of the reference in a profile directory.
pub const REFERENCE_FILE: &str = "reference.wav";
/// Longest reference kept.
pub const REFERENCE_SECONDS: f64 = 10.0;

/// The most typical of the normal files `learn` used (`names` are their clip names, as in
/// the profile's window ids `<clip>@<start>`).
pub fn choose(profile: &Profile, files: &[PathBuf], names: &[String]) -> Option<PathBuf> {
    let mut per_clip: std::collections::BTreeMap<&str, (f64, usize)> = Default::default();
    for (i, id) in profile.ids.iter().enumerate() {
        let clip = id.rsplit_once('@').map_or(id.as_str(), |(c, _)| c);
        let row = profile.embeddings.row(i);
        let d = crate::score::centroid::nearest_distance(&profile.centroids, row.as_slice()?);
        let e = per_clip.entry(clip).or_default();
        e.0 += f64::from(d);
        e.1 += 1;
    }
    let mut means: Vec<(f64, &str)> = per_clip
        .into_iter()
        .map(|(c, (s, n))| (s / n as f64, c))
        .collect();
    means.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (_, clip) = means.get(means.len() / 2)?;
    let i = names.iter().position(|n| n == clip)?;
    files.get(i).cloned()
}

/// The first [`REFERENCE_SECONDS`] of `file`, mixed to mono, as 16-bit WAV bytes.
pub fn encode(file: &Path) -> Result<Vec<u8>, String> {
    let clip = crate::audio::read_wav(file).map_err(|e| e.to_string())?;
    let ch = usize::from(clip.channels.max(1));
    let frames = clip
        .frames()
        .min((REFERENCE_SECONDS * f64::from(clip.sample_rate)) as usize);
    let mono: Vec<f32> = (0..frames)
        .map(|f| clip.samples[f * ch..(f + 1) * ch].iter().sum::<f32>() / ch as f32)
        .collect();
    let mut out = std::io::Cursor::new(Vec::new());
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: clip.sample_rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::new(&mut out, spec).map_err(|e| e.to_string())?;
    for v in mono {
        w.write_sample((v.clamp(-1.0, 1.0) * 32767.0).round() as i16)
            .map_err(|e| e.to_string())?;
    }
    w.finalize().map_err(|e| e.to_string())?;
    Ok(out.into_inner())
}

/// The reference spectrogram of a profile, if it has one that reads.
pub fn load(profile_dir: &Path) -> Option<Spectrogram> {
    let path = profile_dir.join(REFERENCE_FILE);
    if !path.is_file() {
        return None;
    }
    match crate::audio::read_wav(&path) {
        Ok(c) if c.channels == 1 && !c.samples.is_empty() => {
            Some(Spectrogram::compute(&c.samples, c.sample_rate, 250, 256))
        }
        Ok(_) => None,
        Err(e) => {
            tracing::warn!(error = %e, "the profile's normal reference is unreadable; spectrograms are drawn without it");
            None
        }
    }
}
