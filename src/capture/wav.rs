//! Reads a whole WAV file into interleaved f32.
//!
//! Temporary: `crate::audio::read_wav` will own WAV decoding for all of earshot; this private
//! copy exists so replay works before it lands and should be swapped for it then.

use std::path::Path;

use super::CaptureError;

pub(crate) struct Clip {
    pub samples: Vec<f32>,
    pub channels: u16,
    pub sample_rate: u32,
}

fn file_err(path: &Path, reason: impl Into<String>) -> CaptureError {
    CaptureError::File {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Any PCM integer (8-32 bit) or 32-bit float WAV. Integers map to [-1, 1) by dividing by
/// 2^(bits-1), the usual convention (so 16-bit samples are exactly `i / 32768`).
pub(crate) fn read_wav(path: &Path) -> Result<Clip, CaptureError> {
    let file =
        std::fs::File::open(path).map_err(|e| file_err(path, format!("cannot open it: {e}")))?;
    if file.metadata().map(|m| m.len()).unwrap_or(1) == 0 {
        return Err(file_err(
            path,
            "not a readable WAV file (it is empty: 0 bytes)",
        ));
    }
    let reader = hound::WavReader::new(std::io::BufReader::new(file))
        .map_err(|e| file_err(path, format!("not a readable WAV file ({e})")))?;
    let spec = reader.spec();
    if spec.channels == 0 || spec.sample_rate == 0 {
        return Err(file_err(
            path,
            "its header declares 0 channels or a 0 Hz sample rate",
        ));
    }
    let samples: Result<Vec<f32>, hound::Error> = match spec.sample_format {
        hound::SampleFormat::Float => {
            if spec.bits_per_sample != 32 {
                return Err(file_err(
                    path,
                    format!(
                        "{}-bit float samples are not supported (use 32-bit float or integer PCM)",
                        spec.bits_per_sample
                    ),
                ));
            }
            reader.into_samples::<f32>().collect()
        }
        hound::SampleFormat::Int => {
            if !(1..=32).contains(&spec.bits_per_sample) {
                return Err(file_err(
                    path,
                    format!(
                        "{}-bit integer samples are not supported",
                        spec.bits_per_sample
                    ),
                ));
            }
            let scale = 1.0 / (1u64 << (spec.bits_per_sample - 1)) as f64;
            reader
                .into_samples::<i32>()
                .map(|s| s.map(|v| (f64::from(v) * scale) as f32))
                .collect()
        }
    };
    let samples = samples.map_err(|e| {
        file_err(
            path,
            format!("its audio data is corrupt or truncated ({e}); re-export or re-record it"),
        )
    })?;
    let channels = spec.channels;
    if samples.len() < usize::from(channels) {
        return Err(file_err(path, "it contains no audio (0 frames)"));
    }
    if samples.len() % usize::from(channels) != 0 {
        return Err(file_err(
            path,
            "it is truncated in the middle of a frame; re-export or re-record it",
        ));
    }
    Ok(Clip {
        samples,
        channels,
        sample_rate: spec.sample_rate,
    })
}
