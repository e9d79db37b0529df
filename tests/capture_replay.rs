//! WAV replay, channel views over a source, and the allocation-free ring push path.
//! Real files in a temp dir; no audio hardware needed.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use earshot::capture::ring::{RingCounters, ring};
use earshot::capture::{
    Block, CaptureError, ReplaySettings, ReplaySource, SharedSource, Source, SourceState,
};

// ---------------------------------------------------------------- allocation counting
// Counts allocations made by the current thread only, so tests running in parallel on other
// threads do not disturb the measurement.
struct CountingAlloc;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

fn bump() {
    let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
}

unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        bump();
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        bump();
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        bump();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

fn allocations() -> u64 {
    ALLOCS.with(|c| c.get())
}

#[test]
fn ring_push_is_allocation_free_and_counts_drops() {
    let counters = Arc::new(RingCounters::new());
    let (mut w, mut r) = ring(1000, 2, counters.clone());
    // Callback-sized buffers in every supported sample format, made before counting.
    let f: Vec<f32> = (0..1024).map(|i| (i as f32 / 1024.0) - 0.5).collect();
    let s16: Vec<i16> = (0..1024).map(|i| (i * 31 - 16000) as i16).collect();
    let s32: Vec<i32> = (0..1024).map(|i| i * 1_000_000).collect();
    let s24: Vec<cpal::I24> = (0..1024)
        .map(|i| cpal::I24::new_unchecked(i * 8000 - 4_000_000))
        .collect();
    let warm = allocations();
    w.push_interleaved(&f); // 512 frames: fit
    w.push_interleaved(&s16); // 488 fit, 24 dropped
    w.push_interleaved(&s32); // ring full: all 512 dropped
    w.push_interleaved(&s24); // all 512 dropped
    let used = allocations() - warm;
    assert_eq!(used, 0, "the callback path allocated {used} times");
    assert_eq!(counters.callbacks.load(Ordering::Relaxed), 4);
    assert_eq!(counters.frames_received.load(Ordering::Relaxed), 2048);
    assert_eq!(
        counters.frames_dropped.load(Ordering::Relaxed),
        24 + 512 + 512
    );
    assert!(counters.last_callback().is_some());

    // Converted exactly, and the drop shows as a jump in the reader's positions.
    let mut out = Vec::new();
    let mut got = Vec::new();
    let mut positions = Vec::new();
    while let Some(p) = r.read(300, &mut out) {
        positions.push((p, out.len() / 2));
        got.extend_from_slice(&out);
    }
    assert_eq!(got.len(), 2000);
    assert_eq!(&got[..1024], &f[..]);
    assert_eq!(got[1024], -16000.0 / 32768.0);
    assert_eq!(positions[0].0, 0);
    // Room again: the next callback lands after the 1048 dropped frames.
    w.push_interleaved(&f[..4]);
    assert_eq!(r.read(300, &mut out), Some(1000 + 1048));
    assert_eq!(out, &f[..4]);
    assert_eq!(counters.frames_dropped.load(Ordering::Relaxed), 1048);
}

// ---------------------------------------------------------------- helpers

fn write_wav(path: &Path, channels: u16, rate: u32, bits: u16, frames: usize) -> Vec<f32> {
    let float = bits == 0;
    let spec = hound::WavSpec {
        channels,
        sample_rate: rate,
        bits_per_sample: if float { 32 } else { bits },
        sample_format: if float {
            hound::SampleFormat::Float
        } else {
            hound::SampleFormat::Int
        },
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    let mut expected = Vec::new();
    // A deterministic pseudo-random signal covering the full range, extremes included.
    let mut x: u32 = 12345;
    for i in 0..frames * usize::from(channels) {
        x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        if float {
            let v = (x >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0;
            w.write_sample(v).unwrap();
            expected.push(v);
        } else {
            let max = (1i64 << (bits - 1)) - 1;
            let min = -(1i64 << (bits - 1));
            let v = match i {
                0 => min,
                1 => max,
                _ => (i64::from(x) % (max - min + 1)) + min,
            };
            if bits == 16 {
                w.write_sample(v as i16).unwrap();
            } else {
                w.write_sample(v as i32).unwrap();
            }
            expected.push((v as f64 / (1i64 << (bits - 1)) as f64) as f32);
        }
    }
    w.finalize().unwrap();
    expected
}

fn fast(path: &Path) -> ReplaySettings {
    ReplaySettings {
        path: path.to_path_buf(),
        realtime: false,
        looping: false,
    }
}

/// Drains a source to its end (bounded), checking that blocks are contiguous.
fn drain(src: &mut dyn Source, limit: Duration) -> Vec<Block> {
    let deadline = Instant::now() + limit;
    let mut blocks: Vec<Block> = Vec::new();
    loop {
        assert!(
            Instant::now() < deadline,
            "source did not end within {limit:?}"
        );
        match src.next_block(Duration::from_millis(100)) {
            Ok(Some(b)) => {
                if let Some(prev) = blocks.last() {
                    assert_eq!(b.first_frame, prev.first_frame + prev.frames() as u64);
                }
                blocks.push(b);
            }
            Ok(None) => {}
            Err(CaptureError::Ended) => return blocks,
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
}

// ---------------------------------------------------------------- replay

#[test]
fn fast_replay_is_bit_exact_for_int_and_float_files() {
    let dir = tempfile::tempdir().unwrap();
    for (bits, channels, rate) in [
        (16, 2, 16_000),
        (24, 1, 44_100),
        (32, 3, 48_000),
        (0, 2, 8_000),
    ] {
        let path = dir.path().join(format!("x{bits}.wav"));
        let expected = write_wav(&path, channels, rate, bits, 12_345);
        let mut src = ReplaySource::open(fast(&path)).unwrap();
        assert!(src.describe().contains("x"), "{}", src.describe());
        let blocks = drain(&mut src, Duration::from_secs(10));
        let got: Vec<f32> = blocks
            .iter()
            .flat_map(|b| b.samples.iter().copied())
            .collect();
        assert_eq!(got.len(), expected.len(), "{bits}-bit");
        assert!(
            got.iter()
                .zip(&expected)
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "{bits}-bit replay differs from the file"
        );
        // ~10 ms blocks with the file's format.
        let b = &blocks[0];
        assert_eq!(
            (b.channels, b.sample_rate, b.first_frame),
            (channels, rate, 0)
        );
        assert_eq!(b.frames(), (f64::from(rate) * 0.01).round() as usize);
        assert_eq!(src.stats().state, SourceState::Ended);
        assert_eq!(src.stats().frames_received, 12_345);
        assert!(matches!(
            src.next_block(Duration::ZERO),
            Err(CaptureError::Ended)
        ));
    }
}

#[test]
fn realtime_replay_delivers_about_one_second_per_second() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("long.wav");
    write_wav(&path, 1, 16_000, 16, 16_000 * 10);
    let mut src = ReplaySource::open(ReplaySettings {
        path,
        realtime: true,
        looping: false,
    })
    .unwrap();
    let start = Instant::now();
    let mut frames = 0usize;
    while start.elapsed() < Duration::from_secs(1) {
        if let Some(b) = src.next_block(Duration::from_millis(50)).unwrap() {
            frames += b.frames();
        }
    }
    let ratio = frames as f64 / 16_000.0 / start.elapsed().as_secs_f64();
    assert!(
        (0.5..=2.0).contains(&ratio),
        "real-time replay ran at {ratio:.2}x real time"
    );
    // A short timeout returns promptly with nothing rather than blocking for the next block.
    let t = Instant::now();
    let mut nones = 0;
    for _ in 0..20 {
        if src
            .next_block(Duration::from_micros(100))
            .unwrap()
            .is_none()
        {
            nones += 1;
        }
    }
    assert!(nones > 0, "pacing never made the caller wait");
    assert!(t.elapsed() < Duration::from_secs(1));
}

#[test]
fn looping_replay_restarts_and_keeps_counting_frames() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("loop.wav");
    let expected = write_wav(&path, 2, 8_000, 16, 1_000); // 125 ms, not a whole number of blocks
    let mut src = ReplaySource::open(ReplaySettings {
        path,
        realtime: false,
        looping: true,
    })
    .unwrap();
    let mut got = Vec::new();
    let mut next = 0u64;
    while got.len() < expected.len() * 3 + 10 {
        let b = src.next_block(Duration::from_millis(100)).unwrap().unwrap();
        assert_eq!(b.first_frame, next, "looping must not reset the timeline");
        next += b.frames() as u64;
        got.extend_from_slice(&b.samples);
    }
    for (i, chunk) in got.chunks(expected.len()).take(3).enumerate() {
        assert_eq!(chunk, &expected[..], "loop {i} differs");
    }
    assert_eq!(src.stats().state, SourceState::Running);
}

#[test]
fn bad_files_give_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cases: Vec<(PathBuf, &str)> = {
        let missing = d.join("missing.wav");
        let empty = d.join("empty.wav");
        std::fs::write(&empty, b"").unwrap();
        let text = d.join("text.wav");
        std::fs::write(&text, b"this is not a wav file at all, just some text").unwrap();
        let noframes = d.join("noframes.wav");
        write_wav(&noframes, 1, 8000, 16, 0);
        let truncated = d.join("truncated.wav");
        write_wav(&truncated, 2, 8000, 16, 1000);
        let bytes = std::fs::read(&truncated).unwrap();
        std::fs::write(&truncated, &bytes[..bytes.len() - 1001]).unwrap();
        vec![
            (missing, "cannot open"),
            (empty, "not a readable WAV"),
            (text, "not a readable WAV"),
            (noframes, "no audio"),
            (truncated, "truncated"),
        ]
    };
    for (path, want) in cases {
        let err = match ReplaySource::open(fast(&path)) {
            Ok(_) => panic!("{} was accepted", path.display()),
            Err(e) => e.to_string(),
        };
        assert!(
            err.contains(&path.display().to_string()) && err.contains(want),
            "error for {}: {err:?} (want it to name the file and say {want:?})",
            path.display()
        );
    }
}

// ---------------------------------------------------------------- channel views

#[test]
fn channel_views_get_exactly_their_channels() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("three.wav");
    let expected = write_wav(&path, 3, 8_000, 16, 2_400); // 0.3 s
    let inner = ReplaySource::open(ReplaySettings {
        path,
        realtime: true, // paced, so the views keep up and nothing is dropped
        looping: false,
    })
    .unwrap();
    let shared = SharedSource::new(Box::new(inner)).unwrap();
    let mut a = shared.subscribe(&[2, 0]).unwrap();
    let mut b = shared.subscribe(&[1]).unwrap();
    let ga: Vec<f32> = drain(&mut a, Duration::from_secs(10))
        .iter()
        .flat_map(|x| {
            assert_eq!(x.channels, 2);
            x.samples.clone()
        })
        .collect();
    let gb: Vec<f32> = drain(&mut b, Duration::from_secs(10))
        .iter()
        .flat_map(|x| x.samples.clone())
        .collect();
    let want_a: Vec<f32> = expected.chunks(3).flat_map(|f| [f[2], f[0]]).collect();
    let want_b: Vec<f32> = expected.chunks(3).map(|f| f[1]).collect();
    assert_eq!(ga, want_a);
    assert_eq!(gb, want_b);
    assert_eq!(a.stats().frames_dropped, 0);
    assert!(a.describe().contains("[2, 0]"), "{}", a.describe());
    // The inner source's channel count is known now: impossible channels fail at once.
    assert!(shared.subscribe(&[3]).is_err());
}

#[test]
fn a_slow_view_loses_whole_blocks_visibly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("long.wav");
    let total = 8_000 * 5;
    write_wav(&path, 1, 8_000, 16, total); // 500 blocks, far more than a view queues
    let shared = SharedSource::new(Box::new(ReplaySource::open(fast(&path)).unwrap())).unwrap();
    let mut view = shared.subscribe(&[0]).unwrap();
    shared.start();
    drop(shared); // the view keeps the inner source alive
    // Do not read until the fan-out thread is done with the whole file.
    let deadline = Instant::now() + Duration::from_secs(10);
    while view.stats().state != SourceState::Ended && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut blocks = Vec::new();
    let mut first = None;
    loop {
        match view.next_block(Duration::from_millis(500)) {
            Ok(Some(b)) => {
                first.get_or_insert(b.first_frame);
                blocks.push(b);
            }
            Ok(None) => panic!("view stalled"),
            Err(CaptureError::Ended) => break,
            Err(e) => panic!("{e}"),
        }
    }
    let received: usize = blocks.iter().map(Block::frames).sum();
    let dropped = view.stats().frames_dropped;
    assert!(dropped > 0, "a view that never read lost nothing?");
    let jumps: u64 = blocks
        .windows(2)
        .map(|w| w[1].first_frame - (w[0].first_frame + w[0].frames() as u64))
        .sum();
    // Everything is accounted for: delivered, or dropped at the view (visible as jumps or as
    // the missing tail).
    assert_eq!(
        first,
        Some(0),
        "subscribed before start: sees the first block"
    );
    assert_eq!(received as u64 + dropped, total as u64);
    assert!(jumps <= dropped);
}
