//! One source, several monitors: a multi-channel device (or file) split by channel.
//!
//! Why: a factory PC often has one multi-channel interface with a microphone per machine. Opening
//! the device once per monitor would fail (ALSA hw devices are exclusive) or multiply the load,
//! so one thread pulls blocks from the single inner [`Source`] and hands every block to each
//! subscriber's bounded queue; each [`ChannelSource`] keeps the channels it asked for and is
//! itself a [`Source`], so a monitor cannot tell it from a dedicated device.
//!
//! A subscriber that does not keep up loses whole blocks (never blocking the others); the loss
//! is counted in its `stats().frames_dropped` and visible as a jump in `first_frame`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use parking_lot::Mutex;

use super::{Block, CaptureError, CaptureStats, Source, SourceState};

/// Blocks a subscriber may have waiting (~3 s of 50 ms device blocks).
const QUEUE_BLOCKS: usize = 64;

struct Subscriber {
    channels: Vec<u16>,
    tx: Sender<Result<Block, String>>,
    dropped: Arc<AtomicU64>,
}

struct Hub {
    subscribers: Mutex<Vec<Subscriber>>,
    stats: Mutex<CaptureStats>,
    describe: Mutex<String>,
    /// The inner source's channel count, once known (0 before the first block).
    channels: AtomicU64,
    stop: AtomicBool,
    /// The fan-out thread pulls from the inner source only once this is set, so views
    /// subscribed before that all see the same first block.
    started: AtomicBool,
    /// Set when the inner source stopped: `Some(None)` = it ended, `Some(Some(why))` = failed.
    end: Mutex<Option<Option<String>>>,
}

/// Owns the inner source (on its own thread) and hands out per-channel views of it.
pub struct SharedSource {
    hub: Arc<Hub>,
}

/// A view of some channels of a [`SharedSource`]; a [`Source`] in its own right.
pub struct ChannelSource {
    hub: Arc<Hub>,
    channels: Vec<u16>,
    rx: Receiver<Result<Block, String>>,
    dropped: Arc<AtomicU64>,
    ended: bool,
}

impl SharedSource {
    /// Takes `source`; pulling from it begins at [`SharedSource::start`] or at the first
    /// `next_block` of any view, whichever comes first. Subscribe every view before that so
    /// they all start at the same block; a view subscribed later starts at a later block.
    pub fn new(source: Box<dyn Source>) -> Result<Self, CaptureError> {
        let hub = Arc::new(Hub {
            subscribers: Mutex::new(Vec::new()),
            stats: Mutex::new(source.stats()),
            describe: Mutex::new(source.describe()),
            channels: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            started: AtomicBool::new(false),
            end: Mutex::new(None),
        });
        let thread_hub = hub.clone();
        std::thread::Builder::new()
            .name("earshot-fanout".into())
            .spawn(move || fan_out(source, &thread_hub))
            .map_err(|e| CaptureError::Settings(format!("cannot start the fan-out thread: {e}")))?;
        Ok(SharedSource { hub })
    }

    /// A source delivering only `channels` (0-based, in this order) of every block. Asking for
    /// a channel the inner source does not have fails now if its channel count is already
    /// known, otherwise on the first block.
    pub fn subscribe(&self, channels: &[u16]) -> Result<ChannelSource, CaptureError> {
        if channels.is_empty() {
            return Err(CaptureError::Settings(
                "a channel view needs at least one channel".into(),
            ));
        }
        let known = self.hub.channels.load(Ordering::Relaxed);
        if let Some(&c) = channels
            .iter()
            .find(|&&c| known > 0 && u64::from(c) >= known)
        {
            return Err(CaptureError::Settings(format!(
                "channel {c} requested but {} has {known} channels (they count from 0)",
                self.hub.describe.lock()
            )));
        }
        let (tx, rx) = crossbeam_channel::bounded(QUEUE_BLOCKS);
        let dropped = Arc::new(AtomicU64::new(0));
        let mut subs = self.hub.subscribers.lock();
        // After the end the sender is dropped at once, so the view reports the end.
        if self.hub.end.lock().is_none() {
            subs.push(Subscriber {
                channels: channels.to_vec(),
                tx,
                dropped: dropped.clone(),
            });
        }
        drop(subs);
        Ok(ChannelSource {
            hub: self.hub.clone(),
            channels: channels.to_vec(),
            rx,
            dropped,
            ended: false,
        })
    }

    /// Begins pulling from the inner source (idempotent).
    pub fn start(&self) {
        self.hub.started.store(true, Ordering::Relaxed);
    }

    /// The inner source's counters.
    pub fn stats(&self) -> CaptureStats {
        self.hub.stats.lock().clone()
    }
}

impl Drop for SharedSource {
    fn drop(&mut self) {
        // The fan-out thread keeps running while views exist; it stops once they are all gone.
        if self.hub.subscribers.lock().is_empty() {
            self.hub.stop.store(true, Ordering::Relaxed);
        }
    }
}

fn select(block: &Block, channels: &[u16]) -> Block {
    let n = usize::from(block.channels.max(1));
    let mut samples = Vec::with_capacity(block.frames() * channels.len());
    for frame in block.samples.chunks_exact(n) {
        samples.extend(channels.iter().map(|&c| frame[usize::from(c)]));
    }
    Block {
        samples,
        // Invariant: at most 64 channels were validated in, far below u16::MAX.
        channels: channels.len() as u16,
        sample_rate: block.sample_rate,
        first_frame: block.first_frame,
    }
}

fn fan_out(mut source: Box<dyn Source>, hub: &Arc<Hub>) {
    while !hub.started.load(Ordering::Relaxed) {
        if hub.stop.load(Ordering::Relaxed) || Arc::strong_count(hub) == 1 {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    loop {
        // Only this thread and no one else holds the hub: every view and the owner are gone.
        if hub.stop.load(Ordering::Relaxed) || Arc::strong_count(hub) == 1 {
            break;
        }
        let r = source.next_block(Duration::from_millis(100));
        *hub.stats.lock() = source.stats();
        *hub.describe.lock() = source.describe();
        let block = match r {
            Ok(Some(b)) => b,
            Ok(None) => continue,
            Err(e) => {
                // Views drain what is queued, then see this (their senders are dropped below).
                let _subs = hub.subscribers.lock();
                *hub.end.lock() = Some(match e {
                    CaptureError::Ended => None,
                    other => Some(other.to_string()),
                });
                break;
            }
        };
        hub.channels
            .store(u64::from(block.channels), Ordering::Relaxed);
        let mut subs = hub.subscribers.lock();
        subs.retain(|s| {
            if let Some(&c) = s.channels.iter().find(|&&c| c >= block.channels) {
                let _ = s.tx.try_send(Err(format!(
                    "channel {c} requested but the source has {} channels (they count from 0)",
                    block.channels
                )));
                return false;
            }
            match s.tx.try_send(Ok(select(&block, &s.channels))) {
                Ok(()) => true,
                Err(TrySendError::Full(_)) => {
                    s.dropped
                        .fetch_add(block.frames() as u64, Ordering::Relaxed);
                    true
                }
                Err(TrySendError::Disconnected(_)) => false,
            }
        });
    }
    hub.subscribers.lock().clear();
    // Dropping the inner source here stops the device (bounded by its own drop timeout).
    drop(source);
    hub.stats.lock().state = SourceState::Ended;
}

impl Source for ChannelSource {
    fn describe(&self) -> String {
        format!(
            "channel(s) {:?} of {}",
            self.channels,
            self.hub.describe.lock()
        )
    }

    fn next_block(&mut self, timeout: Duration) -> Result<Option<Block>, CaptureError> {
        if self.ended {
            return Err(CaptureError::Ended);
        }
        self.hub.started.store(true, Ordering::Relaxed);
        match self.rx.recv_timeout(timeout) {
            Ok(Ok(b)) => Ok(Some(b)),
            Ok(Err(why)) => Err(CaptureError::Disconnected(why)),
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(RecvTimeoutError::Disconnected) => match self.hub.end.lock().clone() {
                Some(None) => {
                    self.ended = true;
                    Err(CaptureError::Ended)
                }
                Some(Some(why)) => Err(CaptureError::Disconnected(why)),
                None => Err(CaptureError::Disconnected(self.hub.describe.lock().clone())),
            },
        }
    }

    fn stats(&self) -> CaptureStats {
        let mut s = self.hub.stats.lock().clone();
        s.frames_dropped += self.dropped.load(Ordering::Relaxed);
        s
    }
}
