//! The fuzz corpora and every saved crash input, replayed on stable through the same entry
//! points as the fuzz targets (`fuzz/harness.rs`), so CI keeps them fixed without nightly or
//! cargo-fuzz. A crash found by `scripts/fuzz.sh` goes into `fuzz/regressions/<target>/`
//! with its fix; this test then fails if the bug comes back.

#[path = "../fuzz/harness.rs"]
mod harness;

use std::path::Path;

/// Files of `fuzz/<kind>/<target>/`, sorted (a missing directory is none).
fn inputs(kind: &str, target: &str) -> Vec<std::path::PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join(kind)
        .join(target);
    let mut v: Vec<_> = std::fs::read_dir(&dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    v.sort();
    v
}

fn replay(kind: &str) -> usize {
    let mut n = 0;
    for (target, run) in harness::TARGETS {
        for path in inputs(kind, target) {
            let data = std::fs::read(&path).expect("read a saved fuzz input");
            let r = std::panic::catch_unwind(|| run(&data));
            assert!(r.is_ok(), "{target} panicked on {}", path.display());
            n += 1;
        }
    }
    n
}

#[test]
fn every_corpus_input_goes_through_its_target() {
    // Every target has a committed seed corpus.
    for (target, _) in harness::TARGETS {
        assert!(
            !inputs("corpus", target).is_empty(),
            "fuzz/corpus/{target} is empty"
        );
    }
    assert!(replay("corpus") >= harness::TARGETS.len());
    harness::remove_scratch();
}

#[test]
fn every_saved_crash_stays_fixed() {
    assert!(replay("regressions") >= 1, "no saved crash inputs found");
    harness::remove_scratch();
}

/// The seed corpus reaches past the first checks: the valid seeds parse (a target whose seeds
/// all bounce off the first check fuzzes nothing but that check).
#[test]
fn valid_seeds_parse() {
    let read = |t: &str, n: &str| {
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("fuzz/corpus/{t}/{n}")))
            .unwrap()
    };
    let wav = read("wav", "pcm16_mono");
    let clip = earshot::audio::decode_wav(&wav[..], wav.len() as u64, Path::new("pcm16_mono"))
        .expect("the 16-bit seed decodes");
    assert_eq!(
        (clip.channels, clip.sample_rate, clip.frames()),
        (1, 16000, 8)
    );
    let n = earshot::index::azure::parse_search_body(&read("azure", "search")).unwrap();
    assert_eq!(n.len(), 2);
    assert_eq!(n[0].id, "a@0", "nearest (highest score) first");
    // The profile seed loads once the harness has written its checksums.
    harness::profile(&read("profile", "valid"));
    let p = earshot::score::profile::Profile::load(&harness::scratch().join("profile"))
        .expect("the profile seed loads");
    assert_eq!((p.embeddings.nrows(), p.centroids.nrows()), (3, 1));
    harness::outbox(&read("outbox", "put_put_ack"));
    harness::remove_scratch();
}

/// One deterministic mutation of `input` (libFuzzer's cheap moves: flip a bit, set an
/// interesting byte, insert, delete, duplicate a run, truncate, splice another input).
fn mutate(rng: &mut rand_xoshiro::Xoshiro256PlusPlus, input: &[u8], other: &[u8]) -> Vec<u8> {
    use rand::Rng;
    let mut v = input.to_vec();
    for _ in 0..rng.random_range(1..=4) {
        let n = v.len();
        let at = if n == 0 { 0 } else { rng.random_range(0..n) };
        match rng.random_range(0..7) {
            0 if n > 0 => v[at] ^= 1 << rng.random_range(0..8),
            1 if n > 0 => {
                v[at] = [0x00, 0xff, 0x7f, 0x80, 0x01, b'"', b'{', b'='][rng.random_range(0..8)]
            }
            2 => {
                let k = rng.random_range(1..=16);
                let b: Vec<u8> = (0..k).map(|_| rng.random()).collect();
                v.splice(at..at, b);
            }
            3 if n > 0 => {
                let end = (at + rng.random_range(1..=32)).min(n);
                v.drain(at..end);
            }
            4 if n > 0 => {
                let end = (at + rng.random_range(1..=64)).min(n);
                let run = v[at..end].to_vec();
                v.splice(at..at, run);
            }
            5 if n > 0 => v.truncate(at),
            _ if !other.is_empty() => {
                let from = rng.random_range(0..other.len());
                let end = (from + rng.random_range(1..=64)).min(other.len());
                v.splice(at..at, other[from..end].iter().copied());
            }
            _ => {}
        }
    }
    v
}

/// A brief fuzz run that CI can afford on stable: every target gets seeded random mutations of
/// its corpus (no coverage guidance: `scripts/fuzz.sh` runs cargo-fuzz for the long, guided
/// run). A panic saves the input under the target dir and names it, ready to become a
/// regression file. `EARSHOT_FUZZ_ITERS` sets the mutations per target (default 400).
#[test]
fn mutated_corpus_inputs_never_panic() {
    use rand::SeedableRng;
    let iters: usize = std::env::var("EARSHOT_FUZZ_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(400);
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let mut failures = Vec::new();
    for (t, (target, run)) in harness::TARGETS.iter().enumerate() {
        let seeds: Vec<Vec<u8>> = inputs("corpus", target)
            .iter()
            .chain(inputs("regressions", target).iter())
            .filter_map(|p| std::fs::read(p).ok())
            .collect();
        assert!(!seeds.is_empty(), "fuzz/corpus/{target} is empty");
        let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(0xF022 + t as u64);
        for i in 0..iters {
            let a = &seeds[i % seeds.len()];
            let b = &seeds[(i * 7 + 3) % seeds.len()];
            let data = mutate(&mut rng, a, b);
            if std::panic::catch_unwind(|| run(&data)).is_err() {
                let out =
                    Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("fuzz-crash-{target}-{i}"));
                let _ = std::fs::write(&out, &data);
                failures.push(format!("{target}: {}", out.display()));
            }
        }
    }
    std::panic::set_hook(prev);
    harness::remove_scratch();
    assert!(
        failures.is_empty(),
        "targets panicked on mutated inputs (saved; copy them to fuzz/regressions/<target>/): {failures:#?}"
    );
}
