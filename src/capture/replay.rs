//! A WAV file played back as if it were a microphone: for the demo, for tests of the whole
//! pipeline, and for re-running a recorded incident through a new profile.
//!
//! Real-time pacing is computed from one monotonic start instant (block `k` is due when the
//! frames before it would have been heard), never by sleeping a fixed time per block, so the
//! replay does not drift however long it runs.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::{Block, CaptureError, CaptureStats, Source, SourceState};

/// How to replay a file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplaySettings {
    pub path: PathBuf,
    /// Deliver audio at the speed it would be heard (true) or as fast as the consumer pulls it.
    #[serde(default = "default_true")]
    pub realtime: bool,
    /// Start again at the end instead of ending.
    #[serde(default)]
    pub looping: bool,
}

fn default_true() -> bool {
    true
}

/// Blocks of 10 ms: the size a sound card would typically deliver.
const BLOCK_SECONDS: f64 = 0.010;

/// See the module docs.
pub struct ReplaySource {
    settings: ReplaySettings,
    samples: Vec<f32>,
    channels: u16,
    sample_rate: u32,
    block_frames: usize,
    /// Frame index in the file of the next block.
    cursor: usize,
    /// Frames delivered since the start (all loops).
    delivered: u64,
    started: Option<Instant>,
    ended: bool,
}

impl ReplaySource {
    /// Reads the whole file now, so a bad file fails here with its name, not in the middle of a
    /// run.
    pub fn open(settings: ReplaySettings) -> Result<Self, CaptureError> {
        let clip = crate::audio::read_wav(&settings.path)?;
        let block_frames = ((f64::from(clip.sample_rate) * BLOCK_SECONDS).round() as usize).max(1);
        tracing::info!(
            file = %settings.path.display(),
            channels = clip.channels,
            sample_rate = clip.sample_rate,
            seconds = clip.samples.len() as f64 / f64::from(clip.channels) / f64::from(clip.sample_rate),
            realtime = settings.realtime,
            looping = settings.looping,
            "replaying a WAV file instead of a device"
        );
        Ok(ReplaySource {
            samples: clip.samples,
            channels: clip.channels,
            sample_rate: clip.sample_rate,
            block_frames,
            cursor: 0,
            delivered: 0,
            started: None,
            ended: false,
            settings,
        })
    }

    fn total_frames(&self) -> usize {
        self.samples.len() / usize::from(self.channels)
    }

    /// When the next block is due under real-time pacing: once its last frame "has been heard".
    fn due(&self, start: Instant, frames: usize) -> Instant {
        let end_frame = self.delivered + frames as u64;
        start + Duration::from_secs_f64(end_frame as f64 / f64::from(self.sample_rate))
    }
}

impl Source for ReplaySource {
    fn describe(&self) -> String {
        format!(
            "replay of {} ({} ch, {} Hz, {:.1} s, {}{})",
            self.settings.path.display(),
            self.channels,
            self.sample_rate,
            self.total_frames() as f64 / f64::from(self.sample_rate),
            if self.settings.realtime {
                "real-time"
            } else {
                "as fast as possible"
            },
            if self.settings.looping {
                ", looping"
            } else {
                ""
            },
        )
    }

    fn next_block(&mut self, timeout: Duration) -> Result<Option<Block>, CaptureError> {
        if self.ended {
            return Err(CaptureError::Ended);
        }
        if self.cursor >= self.total_frames() {
            if self.settings.looping {
                self.cursor = 0;
            } else {
                self.ended = true;
                tracing::info!(file = %self.settings.path.display(), "replay finished");
                return Err(CaptureError::Ended);
            }
        }
        let frames = self.block_frames.min(self.total_frames() - self.cursor);
        if self.settings.realtime {
            let start = *self.started.get_or_insert_with(Instant::now);
            let due = self.due(start, frames);
            let now = Instant::now();
            if due > now {
                let wait = due - now;
                if wait > timeout {
                    std::thread::sleep(timeout);
                    return Ok(None);
                }
                std::thread::sleep(wait);
            }
        }
        let ch = usize::from(self.channels);
        let samples = self.samples[self.cursor * ch..(self.cursor + frames) * ch].to_vec();
        let block = Block {
            samples,
            channels: self.channels,
            sample_rate: self.sample_rate,
            first_frame: self.delivered,
        };
        self.cursor += frames;
        self.delivered += frames as u64;
        Ok(Some(block))
    }

    fn stats(&self) -> CaptureStats {
        CaptureStats {
            state: if self.ended {
                SourceState::Ended
            } else {
                SourceState::Running
            },
            device: self.settings.path.display().to_string(),
            frames_received: self.delivered,
            frames_dropped: 0,
            callbacks: self.delivered.div_ceil(self.block_frames as u64),
            stream_errors: 0,
            reconnects: 0,
            last_callback_age: None,
            lost_reason: None,
        }
    }
}
