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

enum Msg {
    Block(Block),
    Ended,
    Failed(String),
}

struct Subscriber {
    channels: Vec<u16>,
    tx: Sender<Msg>,
    dropped: Arc<AtomicU64>,
}

struct Hub {
    subscribers: Mutex<Vec<Subscriber>>,
    stats: Mutex<CaptureStats>,
    describe: Mutex<String>,
    /// The inner source's channel count, once known (0 before the first block).
    channels: AtomicU64,
    stop: AtomicBool,
}

/// Owns the inner source (on its own thread) and hands out per-channel views of it.
pub struct SharedSource {
    hub: Arc<Hub>,
}

/// A view of some channels of a [`SharedSource`]; a [`Source`] in its own right.
pub struct ChannelSource {
    hub: Arc<Hub>,
    channels: Vec<u16>,
    rx: Receiver<Msg>,
    dropped: Arc<AtomicU64>,
    ended: bool,
}

impl SharedSource {
    /// Starts pulling from `source` at once. Blocks that arrive before a subscriber subscribes
    /// are not delivered to it.
    pub fn new(source: Box<dyn Source>) -> Result<Self, CaptureError> {
        let hub = Arc::new(Hub {
            subscribers: Mutex::new(Vec::new()),
            stats: Mutex::new(source.stats()),
            describe: Mutex::new(source.describe()),
            channels: AtomicU64::new(0),
            stop: AtomicBool::new(false),
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
        self.hub.subscribers.lock().push(Subscriber {
            channels: channels.to_vec(),
            tx,
            dropped: dropped.clone(),
        });
        Ok(ChannelSource {
            hub: self.hub.clone(),
            channels: channels.to_vec(),
            rx,
            dropped,
            ended: false,
        })
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
                let msg = |_: &Subscriber| match &e {
                    CaptureError::Ended => Msg::Ended,
                    other => Msg::Failed(other.to_string()),
                };
                for s in hub.subscribers.lock().iter() {
                    // Blocking send is fine here: it is the last message, bounded by the queue.
                    let _ = s.tx.send_timeout(msg(s), Duration::from_secs(1));
                }
                break;
            }
        };
        hub.channels
            .store(u64::from(block.channels), Ordering::Relaxed);
        let mut subs = hub.subscribers.lock();
        subs.retain(|s| {
            if let Some(&c) = s.channels.iter().find(|&&c| c >= block.channels) {
                let _ = s.tx.try_send(Msg::Failed(format!(
                    "channel {c} requested but the source has {} channels (they count from 0)",
                    block.channels
                )));
                return false;
            }
            match s.tx.try_send(Msg::Block(select(&block, &s.channels))) {
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
        match self.rx.recv_timeout(timeout) {
            Ok(Msg::Block(b)) => Ok(Some(b)),
            Ok(Msg::Ended) => {
                self.ended = true;
                Err(CaptureError::Ended)
            }
            Ok(Msg::Failed(m)) => Err(CaptureError::Disconnected(m)),
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(RecvTimeoutError::Disconnected) => {
                Err(CaptureError::Disconnected(self.hub.describe.lock().clone()))
            }
        }
    }

    fn stats(&self) -> CaptureStats {
        let mut s = self.hub.stats.lock().clone();
        s.frames_dropped += self.dropped.load(Ordering::Relaxed);
        s
    }
}
