//! Where audio comes from: a live input device (cpal) or a WAV file replayed as if it were one.
//!
//! Everything downstream sees one [`Source`] trait and pulls [`Block`]s from it on its own
//! thread, so the daemon does not care whether it listens to a microphone or to a recording.
//!
//! - [`DeviceSource`] ([`device`]): one cpal input stream on its own thread, feeding a
//!   pre-allocated lock-free [`ring`]. Device loss (error storm, or no callbacks for a while) is
//!   handled inside: the stream is dropped on a throw-away thread (dropping can hang inside
//!   libpulse) and reopened with exponential backoff. A device missing at start-up (a USB
//!   microphone that enumerates late) is retried the same way, never fatal.
//! - [`ReplaySource`] ([`replay`]): a WAV file in ~10 ms blocks, paced in real time or as fast as
//!   possible, optionally looping.
//! - [`SharedSource`] ([`shared`]): splits one source among several monitors by channel. One
//!   thread pulls from the inner source (so a device is opened once, with one cpal stream) and
//!   fans every block out to per-monitor [`ChannelSource`]s, each of which keeps only the
//!   channels it asked for. A slow monitor loses blocks (counted, and visible as a jump in
//!   `first_frame`), it never stalls the device or the other monitors.
//! - [`settings`]: [`DeviceSettings`] as embedded in the config file (serde, unknown fields
//!   rejected, durations as "500ms"/"3s" or seconds via [`settings::serde_duration`]).
//! - [`list`]: what `earshot devices` prints.

pub mod device;
pub mod list;
mod open;
pub mod replay;
pub mod ring;
pub mod settings;
pub mod shared;

use std::time::Duration;

pub use device::DeviceSource;
pub use replay::{ReplaySettings, ReplaySource};
pub use settings::{DeviceSettings, RetrySettings, SampleFormat};
pub use shared::{ChannelSource, SharedSource};

/// Interleaved f32 samples in [-1, 1] at the source's native rate.
#[derive(Debug, Clone, PartialEq)]
pub struct Block {
    pub samples: Vec<f32>,
    pub channels: u16,
    pub sample_rate: u32,
    /// Frames since the source started, counting dropped frames (so gaps are visible): if a block
    /// does not start where the previous one ended, the frames in between were lost.
    pub first_frame: u64,
}

impl Block {
    /// Number of frames (samples per channel).
    pub fn frames(&self) -> usize {
        self.samples.len() / usize::from(self.channels.max(1))
    }
}

/// A producer of audio blocks. Implementations are pulled by one consumer thread.
pub trait Source: Send {
    /// Human-readable: which device/file, format, why it was chosen.
    fn describe(&self) -> String;
    /// Waits up to `timeout` for the next block. `Ok(None)` = nothing yet (keep calling);
    /// `Err(CaptureError::Ended)` = replay finished. Device loss is handled inside the source
    /// (reconnect with backoff); it shows in `stats()` and logs, not as an error here.
    fn next_block(&mut self, timeout: Duration) -> Result<Option<Block>, CaptureError>;
    /// Cheap snapshot of counters and state.
    fn stats(&self) -> CaptureStats;
}

impl<S: Source + ?Sized> Source for Box<S> {
    fn describe(&self) -> String {
        (**self).describe()
    }
    fn next_block(&mut self, timeout: Duration) -> Result<Option<Block>, CaptureError> {
        (**self).next_block(timeout)
    }
    fn stats(&self) -> CaptureStats {
        (**self).stats()
    }
}

/// Where a source is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceState {
    /// Opening for the first time (includes waiting for a device that is not there yet).
    Starting,
    /// Delivering audio.
    Running,
    /// The device stopped delivering; the stream is being torn down.
    Lost,
    /// Waiting for the next attempt to reopen the device, or trying it.
    Reconnecting,
    /// A replay reached its end (not looping), or the source was shut down.
    Ended,
}

impl SourceState {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceState::Starting => "starting",
            SourceState::Running => "running",
            SourceState::Lost => "lost",
            SourceState::Reconnecting => "reconnecting",
            SourceState::Ended => "ended",
        }
    }
}

impl std::fmt::Display for SourceState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Counters for metrics and health checks.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CaptureStats {
    pub state: SourceState,
    /// The device id (or file) in use, or the one being looked for.
    pub device: String,
    /// Frames the device delivered (including those dropped because the ring was full).
    pub frames_received: u64,
    /// Frames lost between the device and the consumer (ring full, or a slow channel consumer).
    pub frames_dropped: u64,
    pub callbacks: u64,
    pub stream_errors: u64,
    /// Successful reopenings after a loss.
    pub reconnects: u64,
    /// Time since the last data callback (None before the first one).
    pub last_callback_age: Option<Duration>,
    /// Why the device was last considered lost (error storm, no audio, device gone), for the
    /// device-lost event and log; None if it never was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lost_reason: Option<String>,
}

/// Errors a consumer of a [`Source`] can see. Device trouble is not among them: sources recover
/// from it themselves.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// The replay reached its end (and does not loop).
    #[error("the audio source has ended")]
    Ended,
    /// A WAV file cannot be used.
    #[error("cannot replay {}: {reason}", path.display())]
    File {
        path: std::path::PathBuf,
        reason: String,
    },
    /// A WAV file cannot be read (the message names the file and the fix).
    #[error("cannot replay: {0}")]
    Audio(#[from] crate::audio::AudioError),
    /// Settings that can never work (fix the config).
    #[error("invalid capture settings: {0}")]
    Settings(String),
    /// The thread feeding this source is gone (it panicked or was shut down).
    #[error("the capture thread for {0} stopped unexpectedly; restart earshot and report a bug")]
    Disconnected(String),
}

/// Looks the configured input device up without opening a stream (what `earshot check` does):
/// returns its id and why it was chosen, or why none matches. `None` = the host's default input.
pub fn lookup_input_device(spec: Option<&str>) -> Result<(String, String), String> {
    open::find_device(spec)
        .map(|(_, id, why)| (id, why))
        .map_err(|e| e.to_string())
}
