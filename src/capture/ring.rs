//! The hand-off between an audio callback and the rest of earshot.
//!
//! Why a ring: the callback runs on the audio backend's real-time thread, and anything slow there
//! (a lock, an allocation, a log line) silently loses audio (a callback that slept 50 ms lost 81 %
//! of the signal with no xrun reported). So the callback only converts samples to f32 and copies
//! them into a pre-allocated lock-free single-producer/single-consumer ring; when the ring is full
//! it drops the frames it cannot store and counts them with an atomic.
//!
//! Drops must stay visible downstream (a window that silently joins audio from both sides of a
//! gap would look like a glitching machine), so the writer also records *where* each gap happened
//! in a second small ring of [`Gap`] markers; the reader turns them into jumps of
//! [`Block::first_frame`](super::Block::first_frame).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use cpal::{FromSample, Sample};
use ringbuf::HeapRb;
use ringbuf::traits::{Consumer, Observer, Producer, Split};

/// Gap markers kept between two reads. A full marker ring only delays the *position* of a
/// later gap (it is folded into the next marker), never its size.
const GAP_SLOTS: usize = 256;

/// Samples converted per step on the callback's stack: big enough to amortise the ring's index
/// updates, small enough (4 KiB) for any audio thread's stack.
const SCRATCH: usize = 1024;

/// Counters shared by the callback (writer), the supervisor and the stats snapshot. Atomics only,
/// so the callback never waits for a reader.
#[derive(Debug)]
pub struct RingCounters {
    epoch: Instant,
    /// Data callbacks seen.
    pub callbacks: AtomicU64,
    /// Frames the device delivered, stored or not.
    pub frames_received: AtomicU64,
    /// Frames the device delivered that did not fit in the ring.
    pub frames_dropped: AtomicU64,
    /// Nanoseconds after `epoch` of the last data callback; 0 = none yet.
    last_callback_ns: AtomicU64,
}

impl RingCounters {
    pub fn new() -> Self {
        RingCounters {
            epoch: Instant::now(),
            callbacks: AtomicU64::new(0),
            frames_received: AtomicU64::new(0),
            frames_dropped: AtomicU64::new(0),
            last_callback_ns: AtomicU64::new(0),
        }
    }

    /// Time of the last data callback, if there was one.
    pub fn last_callback(&self) -> Option<Instant> {
        match self.last_callback_ns.load(Ordering::Relaxed) {
            0 => None,
            ns => Some(self.epoch + std::time::Duration::from_nanos(ns)),
        }
    }

    fn mark_callback(&self) {
        // max(1) so that a callback in the very first nanosecond is not read as "none yet".
        let ns = (self.epoch.elapsed().as_nanos() as u64).max(1);
        self.last_callback_ns.store(ns, Ordering::Relaxed);
        self.callbacks.fetch_add(1, Ordering::Relaxed);
    }
}

impl Default for RingCounters {
    fn default() -> Self {
        Self::new()
    }
}

/// `frames` frames were dropped right after the writer had stored `at` frames in total.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap {
    pub at: u64,
    pub frames: u64,
}

/// The callback's side. `push_interleaved` neither blocks nor allocates.
pub struct RingWriter {
    samples: ringbuf::HeapProd<f32>,
    gaps: ringbuf::HeapProd<Gap>,
    channels: usize,
    written_frames: u64,
    /// Dropped frames not yet announced because the gap ring was full.
    pending_gap: u64,
    counters: Arc<RingCounters>,
}

/// The consumer's side: drains whole frames and reports where gaps were.
pub struct RingReader {
    samples: ringbuf::HeapCons<f32>,
    gaps: ringbuf::HeapCons<Gap>,
    channels: usize,
    read_frames: u64,
    /// Frames dropped before `read_frames` (sum of gaps already passed).
    skipped_frames: u64,
}

/// Makes a ring holding `capacity_frames` frames of `channels` interleaved channels. All memory
/// is allocated here, once.
pub fn ring(
    capacity_frames: usize,
    channels: u16,
    counters: Arc<RingCounters>,
) -> (RingWriter, RingReader) {
    let channels = usize::from(channels.max(1));
    let (sp, sc) = HeapRb::<f32>::new(capacity_frames.max(1) * channels).split();
    let (gp, gc) = HeapRb::<Gap>::new(GAP_SLOTS).split();
    (
        RingWriter {
            samples: sp,
            gaps: gp,
            channels,
            written_frames: 0,
            pending_gap: 0,
            counters,
        },
        RingReader {
            samples: sc,
            gaps: gc,
            channels,
            read_frames: 0,
            skipped_frames: 0,
        },
    )
}

impl RingWriter {
    /// Stores as many whole frames of `data` (interleaved, any cpal sample type) as fit; counts
    /// the rest as dropped. Runs in the audio callback: no locks, no allocation, no logging.
    pub fn push_interleaved<T>(&mut self, data: &[T])
    where
        T: Sample,
        f32: FromSample<T>,
    {
        self.counters.mark_callback();
        let frames = data.len() / self.channels;
        let fit = frames.min(self.samples.vacant_len() / self.channels);
        let mut scratch = [0.0f32; SCRATCH];
        // Chunks need not end on frame boundaries: the reader only ever takes whole frames.
        for chunk in data[..fit * self.channels].chunks(SCRATCH) {
            for (out, &s) in scratch.iter_mut().zip(chunk) {
                *out = f32::from_sample_(s);
            }
            // Cannot be short: `fit` was computed from the vacant space and only we write.
            self.samples.push_slice(&scratch[..chunk.len()]);
        }
        self.written_frames += fit as u64;
        let dropped = (frames - fit) as u64;
        self.counters
            .frames_received
            .fetch_add(frames as u64, Ordering::Relaxed);
        if dropped > 0 {
            self.counters
                .frames_dropped
                .fetch_add(dropped, Ordering::Relaxed);
            self.pending_gap += dropped;
        }
        if self.pending_gap > 0 {
            let gap = Gap {
                at: self.written_frames,
                frames: self.pending_gap,
            };
            if self.gaps.try_push(gap).is_ok() {
                self.pending_gap = 0;
            }
        }
    }

    /// Frames that fit right now.
    pub fn vacant_frames(&self) -> usize {
        self.samples.vacant_len() / self.channels
    }
}

impl RingReader {
    /// Frames waiting to be read.
    pub fn available_frames(&self) -> usize {
        self.samples.occupied_len() / self.channels
    }

    /// Appends up to `max_frames` contiguous frames to `out` (cleared first) and returns the
    /// timeline position of the first one (frames stored plus frames dropped before it), or
    /// `None` if the ring is empty. A read never spans a gap, so each result is gap-free.
    pub fn read(&mut self, max_frames: usize, out: &mut Vec<f32>) -> Option<u64> {
        out.clear();
        // Pass the gaps that happened exactly here.
        while let Some(g) = self.gaps.try_peek().copied() {
            if g.at > self.read_frames {
                break;
            }
            self.skipped_frames += g.frames;
            self.gaps.try_pop();
        }
        let mut frames = self.available_frames().min(max_frames);
        if let Some(g) = self.gaps.try_peek() {
            frames = frames.min((g.at - self.read_frames) as usize);
        }
        if frames == 0 {
            return None;
        }
        let n = frames * self.channels;
        let (a, b) = self.samples.as_slices();
        let from_a = n.min(a.len());
        out.extend_from_slice(&a[..from_a]);
        out.extend_from_slice(&b[..n - from_a]);
        self.samples.skip(n);
        let first = self.read_frames + self.skipped_frames;
        self.read_frames += frames as u64;
        Some(first)
    }

    /// Timeline position of the next frame to be read (gaps announced so far included).
    pub fn position(&self) -> u64 {
        self.read_frames + self.skipped_frames
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_show_in_positions() {
        let c = Arc::new(RingCounters::new());
        let (mut w, mut r) = ring(4, 2, c.clone());
        w.push_interleaved(&[0.1f32, 0.2, 0.3, 0.4, 0.5, 0.6]); // 3 frames
        w.push_interleaved(&[1.0f32; 6]); // 1 fits, 2 dropped
        assert_eq!(c.frames_dropped.load(Ordering::Relaxed), 2);
        assert_eq!(c.frames_received.load(Ordering::Relaxed), 6);
        let mut out = Vec::new();
        assert_eq!(r.read(100, &mut out), Some(0));
        assert_eq!(out.len(), 8);
        w.push_interleaved(&[i16::MIN, 0]);
        assert_eq!(r.read(100, &mut out), Some(6), "2 dropped frames skipped");
        assert_eq!(out, vec![-1.0, 0.0]);
        assert_eq!(r.read(100, &mut out), None);
    }
}
