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
