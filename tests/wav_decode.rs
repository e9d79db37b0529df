//! WAV decoding gives, for every layout, the samples `hound` gives one by one: the reference
//! here is `hound`'s own per-sample reader on the same bytes, which earshot used everywhere
//! before its raw path for 16/24-bit integer and 32-bit float data. Files are built byte by
//! byte, so chunks before and after the data, containers wider than the sample, cut-off data
//! and non-finite floats are all covered (and a container nothing reads is refused by name); `read_wav`, `decode_wav` and `WavStream` (block by
//! block, at awkward block sizes) must agree with it and with each other, errors included.

use std::io::Cursor;
use std::path::Path;

use earshot::audio::{AudioError, WavStream, decode_wav, read_wav};

/// How the samples are stored: WAVE format tag, bits used, bytes per sample.
#[derive(Debug, Clone, Copy)]
struct Layout {
    tag: u16,
    bits: u16,
    container: u16,
}

const fn layout(tag: u16, bits: u16, container: u16) -> Layout {
    Layout {
        tag,
        bits,
        container,
    }
}

const I8: Layout = layout(1, 8, 1);
const I16: Layout = layout(1, 16, 2);
const I24: Layout = layout(1, 24, 3);
const I32: Layout = layout(1, 32, 4);
const F32: Layout = layout(3, 32, 4);
/// 24 bits in a 4-byte container: allowed by the format, read by hound (not the raw path).
const I24_IN_4: Layout = layout(1, 24, 4);
/// 16 bits in a 4-byte container: allowed by the format, read by nothing earshot has.
const I16_IN_4: Layout = layout(1, 16, 4);

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// `n` samples of random bytes in `layout`'s container; float samples are finite values in
/// [-1, 1] except where `specials` puts NaN or infinities.
fn data(layout: Layout, n: usize, seed: u64, specials: bool) -> Vec<u8> {
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut out = Vec::with_capacity(n * usize::from(layout.container));
    for i in 0..n {
        let r = rng.next();
        if layout.tag == 3 {
            let v = match (specials, i % 97) {
                (true, 5) => f32::NAN,
                (true, 50) => f32::INFINITY,
                (true, 90) => f32::NEG_INFINITY,
                _ => ((r >> 40) as f32 / (1u64 << 23) as f32) - 1.0,
            };
            out.extend_from_slice(&v.to_le_bytes());
        } else {
            out.extend_from_slice(&r.to_le_bytes()[..usize::from(layout.container)]);
        }
    }
    out
}

/// A RIFF/WAVE file: fmt, an optional LIST chunk (even length: hound skips no pad byte) before the
/// data, the data chunk (its header says `claimed` bytes, or the data's own length), and an
/// optional chunk after it.
fn wav(
    layout: Layout,
    channels: u16,
    body: &[u8],
    before: bool,
    after: bool,
    claimed: Option<u32>,
) -> Vec<u8> {
    let mut chunks = Vec::new();
    let block_align = channels * layout.container;
    chunks.extend_from_slice(b"fmt ");
    chunks.extend_from_slice(&16u32.to_le_bytes());
    chunks.extend_from_slice(&layout.tag.to_le_bytes());
    chunks.extend_from_slice(&channels.to_le_bytes());
    chunks.extend_from_slice(&48_000u32.to_le_bytes());
    chunks.extend_from_slice(&(48_000 * u32::from(block_align)).to_le_bytes());
    chunks.extend_from_slice(&block_align.to_le_bytes());
    chunks.extend_from_slice(&layout.bits.to_le_bytes());
    if before {
        chunks.extend_from_slice(b"LIST");
        chunks.extend_from_slice(&6u32.to_le_bytes());
        chunks.extend_from_slice(b"INFO\x01\x02");
    }
    chunks.extend_from_slice(b"data");
    chunks.extend_from_slice(&claimed.unwrap_or(body.len() as u32).to_le_bytes());
    chunks.extend_from_slice(body);
    if after {
        // A trailing chunk whose bytes would be loud samples if read as data.
        chunks.extend_from_slice(b"id3 ");
        chunks.extend_from_slice(&8u32.to_le_bytes());
        chunks.extend_from_slice(&[0x7f; 8]);
    }
    let mut out = b"RIFF".to_vec();
    out.extend_from_slice(&(4 + chunks.len() as u32).to_le_bytes());
    out.extend_from_slice(b"WAVE");
    out.extend_from_slice(&chunks);
    out
}

/// What `hound`, one sample at a time, makes of the bytes: interleaved samples, non-finite
/// count and the frames the header promises; or why it cannot.
#[derive(Debug, PartialEq)]
enum Reference {
    Ok(Vec<f32>, usize),
    Truncated { expected: u64, got: u64 },
    Empty,
    Unreadable,
}

fn reference(bytes: &[u8]) -> Reference {
    let Ok(mut r) = hound::WavReader::new(Cursor::new(bytes)) else {
        return Reference::Unreadable;
    };
    let spec = r.spec();
    let expected = u64::from(r.duration());
    let mut out = Vec::new();
    let mut non_finite = 0;
    if spec.sample_format == hound::SampleFormat::Float {
        for s in r.samples::<f32>() {
            let Ok(v) = s else { break };
            if v.is_finite() {
                out.push(v);
            } else {
                non_finite += 1;
                out.push(0.0);
            }
        }
    } else {
        let scale = 1.0 / (1u64 << (spec.bits_per_sample - 1)) as f64;
        for s in r.samples::<i32>() {
            let Ok(v) = s else { break };
            out.push((f64::from(v) * scale) as f32);
        }
    }
    let ch = usize::from(spec.channels);
    out.truncate(out.len() - out.len() % ch);
    let got = (out.len() / ch) as u64;
    if got < expected {
        Reference::Truncated { expected, got }
    } else if got == 0 {
        Reference::Empty
    } else {
        Reference::Ok(out, non_finite)
    }
}

fn ours(result: Result<earshot::audio::Clip, AudioError>) -> Reference {
    match result {
        Ok(c) => Reference::Ok(c.samples, c.non_finite),
        Err(AudioError::Truncated { expected, got, .. }) => Reference::Truncated { expected, got },
        Err(AudioError::Empty { .. }) => Reference::Empty,
        Err(e) => panic!("unexpected error: {e}"),
    }
}

/// The same bytes through `WavStream`, `frames` at a time.
fn streamed(path: &Path, frames: usize) -> Reference {
    let mut s = WavStream::open(path).expect("header reads");
    let mut all = Vec::new();
    let mut block = Vec::new();
    while s.read_block(frames, &mut block) {
        assert!(block.len() <= frames * usize::from(s.channels()));
        assert_eq!(
            block.len() % usize::from(s.channels()),
            0,
            "whole frames only"
        );
        all.extend_from_slice(&block);
    }
    match s.finish() {
        Ok(()) => Reference::Ok(all, s.non_finite()),
        Err(AudioError::Truncated { expected, got, .. }) => Reference::Truncated { expected, got },
        Err(AudioError::Empty { .. }) => Reference::Empty,
        Err(e) => panic!("unexpected error: {e}"),
    }
}

/// Every way earshot reads `bytes` equals the reference; returns it.
fn check(bytes: &[u8], what: &str) -> Reference {
    let want = reference(bytes);
    assert_ne!(
        want,
        Reference::Unreadable,
        "{what}: the test built a file hound refuses"
    );
    let got = ours(decode_wav(bytes, bytes.len() as u64, Path::new(what)));
    assert!(
        got == want,
        "{what}: decode_wav differs from hound's samples"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("x.wav");
    std::fs::write(&path, bytes).expect("write");
    assert!(ours(read_wav(&path)) == want, "{what}: read_wav differs");
    for frames in [1, 7, 4096, 100_000] {
        assert!(
            streamed(&path, frames) == want,
            "{what}: WavStream at {frames} frames differs"
        );
    }
    want
}

#[test]
fn every_layout_decodes_to_hounds_samples() {
    let mut seed = 1;
    for layout in [I8, I16, I24, I32, F32, I24_IN_4] {
        for channels in [1u16, 2, 3] {
            // 70 001 frames cross several of the raw path's blocks, at an odd boundary.
            for frames in [1usize, 1000, 70_001] {
                for (before, after) in [(false, false), (true, true)] {
                    seed += 1;
                    let n = frames * usize::from(channels);
                    let body = data(layout, n, seed, false);
                    let what =
                        format!("{layout:?} x{channels}, {frames} frames, chunks {before}/{after}");
                    let got = check(&wav(layout, channels, &body, before, after, None), &what);
                    let Reference::Ok(samples, 0) = got else {
                        panic!("{what}: {got:?}");
                    };
                    assert_eq!(samples.len(), n, "{what}: the trailing chunk is not data");
                    assert!(samples.iter().all(|v| (-1.0..=1.0).contains(v)), "{what}");
                }
            }
        }
    }
}

#[test]
fn known_values_land_where_the_format_says() {
    // Independent of hound: full scale and one step of each integer layout.
    let body: Vec<u8> = [i16::MIN, -1, 0, 1, i16::MAX]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let Reference::Ok(s, _) = check(&wav(I16, 1, &body, false, false, None), "i16 values") else {
        panic!("i16 values");
    };
    assert_eq!(
        s,
        [-1.0, -1.0 / 32768.0, 0.0, 1.0 / 32768.0, 32767.0 / 32768.0]
    );
    let body: Vec<u8> = [-8_388_608i32, -1, 1, 8_388_607]
        .iter()
        .flat_map(|v| v.to_le_bytes()[..3].to_vec())
        .collect();
    let Reference::Ok(s, _) = check(&wav(I24, 1, &body, false, false, None), "i24 values") else {
        panic!("i24 values");
    };
    assert_eq!(
        s,
        [
            -1.0,
            -1.0 / 8_388_608.0,
            1.0 / 8_388_608.0,
            8_388_607.0 / 8_388_608.0
        ]
    );
}

#[test]
fn non_finite_floats_become_zero_and_are_counted() {
    let body = data(F32, 970, 3, true);
    let Reference::Ok(s, non_finite) = check(&wav(F32, 2, &body, true, false, None), "specials")
    else {
        panic!("specials");
    };
    assert_eq!(non_finite, 30, "3 of every 97 samples");
    assert!(s.iter().all(|v| v.is_finite()));
}

#[test]
fn cut_off_data_is_reported_as_truncated_with_the_frames_that_were_there() {
    for layout in [I16, I24, F32, I8] {
        let channels = 2u16;
        let full = data(layout, 2 * 5000, 9, false);
        // Cut at a frame boundary, mid-frame and mid-sample; the header still claims all.
        for keep in [4000 * 4 * 2 / 4, full.len() / 2 + 1, full.len() - 1, 3] {
            let keep = keep.min(full.len());
            let bytes = wav(
                layout,
                channels,
                &full[..keep],
                false,
                false,
                Some(full.len() as u32),
            );
            let what = format!("{layout:?} cut to {keep} bytes");
            let got = check(&bytes, &what);
            let frame = usize::from(channels * layout.container);
            match got {
                Reference::Truncated { expected, got } => {
                    assert_eq!(expected, 5000, "{what}");
                    assert_eq!(got as usize, keep / frame, "{what}");
                }
                other => panic!("{what}: {other:?}"),
            }
        }
    }
}

#[test]
fn a_data_chunk_with_no_samples_is_empty() {
    assert_eq!(
        check(&wav(I16, 1, &[], true, true, None), "no samples"),
        Reference::Empty
    );
}

#[test]
fn samples_in_a_container_nothing_reads_are_refused_by_name_not_called_cut_off() {
    // hound reads this header, then fails on the first sample, which read as a truncated file.
    let bytes = wav(
        I16_IN_4,
        2,
        &data(I16_IN_4, 200, 4, false),
        false,
        false,
        None,
    );
    assert_eq!(
        reference(&bytes),
        Reference::Truncated {
            expected: 100,
            got: 0
        },
        "what hound alone makes of it"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("wide.wav");
    std::fs::write(&path, &bytes).expect("write");
    let errors = [
        decode_wav(&bytes[..], bytes.len() as u64, &path).err(),
        read_wav(&path).err(),
        WavStream::open(&path).err(),
    ];
    for e in errors {
        match e {
            Some(e @ AudioError::Unsupported { .. }) => {
                let msg = e.to_string();
                assert!(
                    msg.contains("16-bit samples stored in 4-byte containers"),
                    "{msg}"
                );
                assert!(msg.contains("sox"), "says what to do: {msg}");
            }
            other => panic!("want Unsupported, got {other:?}"),
        }
    }
}
