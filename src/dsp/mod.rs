//! Signal processing between capture and the model: pick or mix channels, resample to the
//! model's rate, cut sliding windows, and compute the PANNs log-mel front end (streamed: a frame shared by
//! overlapping windows is computed once, see [`mel_stream`]).
//!
//! Every piece is streaming (push samples, get output) so the offline commands and the live
//! daemon run the very same code: the offline path is just a stream that ends.

pub mod impulse;
pub mod level;
pub mod mel;
pub mod mel_stream;
pub mod resample;
pub mod window;

pub use mel::{FrontEnd, LogMel};
pub use mel_stream::StreamLogMel;
pub use resample::StreamResampler;
pub use window::Windower;

/// Which channel(s) of an interleaved stream a monitor listens to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChannelMap {
    /// Mean of all channels (the default: a stereo mic pair or a mono file both work).
    #[default]
    Downmix,
    /// One channel, 0-based (one device can feed one monitor per channel).
    Select(u16),
}

/// Appends the mono signal for `map` from interleaved `frames` with `channels` channels.
/// A selected channel beyond the stream's count is a configuration error checked at start-up;
/// here it falls back to channel 0 so the audio path itself can never panic.
pub fn to_mono(frames: &[f32], channels: u16, map: ChannelMap, out: &mut Vec<f32>) {
    let ch = usize::from(channels.max(1));
    match map {
        _ if ch == 1 => out.extend_from_slice(frames),
        ChannelMap::Downmix => {
            let inv = 1.0 / ch as f32;
            out.extend(frames.chunks_exact(ch).map(|f| f.iter().sum::<f32>() * inv));
        }
        ChannelMap::Select(c) => {
            let c = usize::from(c).min(ch - 1);
            out.extend(frames.chunks_exact(ch).map(|f| f[c]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downmix_and_select() {
        let frames = [1.0, 0.0, 0.5, -0.5, 0.25, 0.75];
        let mut out = Vec::new();
        to_mono(&frames, 2, ChannelMap::Downmix, &mut out);
        assert_eq!(out, vec![0.5, 0.0, 0.5]);
        out.clear();
        to_mono(&frames, 2, ChannelMap::Select(1), &mut out);
        assert_eq!(out, vec![0.0, -0.5, 0.75]);
        out.clear();
        to_mono(&frames, 3, ChannelMap::Select(2), &mut out);
        assert_eq!(out, vec![0.5, 0.75]);
    }
}
