//! The entry points the fuzz targets drive, shared with the stable regression test
//! (`tests/fuzz_regressions.rs` includes this file), so a saved crash input is replayed through
//! exactly the code that found it.
//!
//! Each function feeds untrusted bytes to the same public function earshot uses on that input
//! (a WAV file, the config file, a model card, a profile directory, an Azure AI Search answer,
//! an event record turned into alert payloads, the alert outbox log). Errors are the expected
//! outcome for most inputs; only a panic, an abort (out of memory) or a hang is a finding.
//! Inputs that must be files are written to a private scratch directory (on /dev/shm when it
//! exists, so the loop does not wear a disk).
#![allow(dead_code)]

use std::cell::OnceCell;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A scratch directory private to this thread (one fuzz process runs one input at a time; the
/// regression test runs its tests on several threads).
pub fn scratch() -> PathBuf {
    thread_local! {
        static DIR: OnceCell<PathBuf> = const { OnceCell::new() };
    }
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    DIR.with(|d| {
        d.get_or_init(|| {
            let shm = Path::new("/dev/shm");
            let base = if let Some(d) = std::env::var_os("EARSHOT_FUZZ_SCRATCH") {
                PathBuf::from(d)
            } else if shm.is_dir() {
                shm.to_path_buf()
            } else {
                std::env::temp_dir()
            };
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let d = base.join(format!("earshot-fuzz-{}-{n}", std::process::id()));
            std::fs::create_dir_all(&d).expect("scratch dir");
            d
        })
        .clone()
    })
}

/// Removes this thread's scratch directory (the regression test calls it when done).
pub fn remove_scratch() {
    let _ = std::fs::remove_dir_all(scratch());
}

/// A fresh empty sub-directory of [`scratch`].
fn fresh(name: &str) -> PathBuf {
    let d = scratch().join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("fresh scratch dir");
    d
}

/// WAV decoding (`earshot::audio::decode_wav`, what `read_wav` runs on every file).
pub fn wav(data: &[u8]) {
    if let Ok(clip) = earshot::audio::decode_wav(data, data.len() as u64, Path::new("fuzz.wav")) {
        // What callers rely on: whole frames, a rate and channel count within the bounds.
        assert!(clip.channels >= 1);
        assert_eq!(clip.samples.len() % usize::from(clip.channels), 0);
        assert!(clip.samples.iter().all(|s| s.is_finite()));
        assert!(
            (earshot::audio::MIN_SAMPLE_RATE..=earshot::audio::MAX_SAMPLE_RATE)
                .contains(&clip.sample_rate)
        );
    }
}

/// The config file (`Settings::load`: TOML, environment overrides, validation).
pub fn config(data: &[u8]) {
    let d = fresh("config");
    let p = d.join("earshot.toml");
    std::fs::write(&p, data).expect("write scratch config");
    let _ = earshot::config::Settings::load(Some(&p));
}

/// A model card (`ModelCard::load` of `card.json`).
pub fn model_card(data: &[u8]) {
    let d = fresh("card");
    std::fs::write(d.join("card.json"), data).expect("write scratch card");
    if let Ok((card, _)) = earshot::embed::card::ModelCard::load(&d) {
        // Derived values every user of a valid card computes.
        let _ = card.min_window_seconds();
        let _ = card.is_untrained();
    }
}

/// Splits `data` at the byte 0xFF 0x00 0xFF into at most `n` parts.
fn split(data: &[u8], n: usize) -> Vec<&[u8]> {
    let mut parts = Vec::with_capacity(n);
    let mut rest = data;
    while parts.len() + 1 < n {
        match rest.windows(3).position(|w| w == [0xFF, 0x00, 0xFF]) {
            Some(i) => {
                parts.push(&rest[..i]);
                rest = &rest[i + 3..];
            }
            None => break,
        }
    }
    parts.push(rest);
    parts.resize(n, &[][..]);
    parts
}

/// A profile directory (`Profile::load`). The input is manifest.json, embeddings.f32,
/// centroids.f32, ids.txt and calibration.json separated by `FF 00 FF`. When the manifest is
/// a JSON object its `files` checksums are set to the real ones, so the fuzzer gets past the
/// checksum check to the parsing and consistency checks behind it (a mismatch is covered by
/// the plain input too: a manifest that is not an object stays as it is).
pub fn profile(data: &[u8]) {
    use sha2::Digest;
    let parts = split(data, 5);
    let d = fresh("profile");
    let names = earshot::score::profile::DATA_FILES;
    let mut sums = serde_json::Map::new();
    for (name, bytes) in names.iter().zip(&parts[1..]) {
        std::fs::write(d.join(name), bytes).expect("write scratch profile file");
        sums.insert(
            (*name).to_string(),
            serde_json::Value::String(hex::encode(sha2::Sha256::digest(bytes))),
        );
    }
    let manifest = match serde_json::from_slice::<serde_json::Value>(parts[0]) {
        Ok(serde_json::Value::Object(mut m)) => {
            m.insert("files".into(), serde_json::Value::Object(sums));
            serde_json::to_vec(&m).expect("a JSON value serialises")
        }
        _ => parts[0].to_vec(),
    };
    std::fs::write(d.join("manifest.json"), manifest).expect("write scratch manifest");
    if let Ok(p) = earshot::score::profile::Profile::load(&d) {
        assert_eq!(p.ids.len(), p.embeddings.nrows());
        assert!(p.embeddings.iter().all(|v| v.is_finite()));
        assert!(p.centroids.iter().all(|v| v.is_finite()));
    }
}

/// Azure AI Search answers: a `docs/search` body, a `$count` body, an error body, and an
/// index definition as `GET /indexes/{name}` returns it.
pub fn azure(data: &[u8]) {
    use earshot::index::azure;
    if let Ok(n) = azure::parse_search_body(data) {
        assert!(n.windows(2).all(|w| w[0].distance <= w[1].distance));
        assert!(n.iter().all(|x| x.distance.is_finite()));
    }
    let _ = azure::parse_count(data);
    let _ = azure::error_body(data);
    if let Ok(def) = serde_json::from_slice::<serde_json::Value>(data) {
        let _ = azure::check_definition(&def, 1024, "fuzz-model");
    }
}

/// Alert payloads built from an event record (as read back from `events.jsonl`): the webhook
/// body, the Alertmanager alert and the HMAC signature over the body.
pub fn alert_payload(data: &[u8]) {
    use earshot::alert::events::EventRecord;
    use earshot::alert::payload::{
        Alert, WebhookContext, alertmanager_alert, signature, webhook_payload,
    };
    let alert = match serde_json::from_slice::<EventRecord>(data) {
        Ok(r) => Alert::from_record(&r),
        Err(_) => match serde_json::from_slice::<Alert>(data) {
            Ok(a) => a,
            Err(_) => return,
        },
    };
    let ctx = WebhookContext {
        receiver: "fuzz",
        external_url: "http://edge-pc:9847",
    };
    let body = serde_json::to_vec(&webhook_payload(&alert, &ctx)).expect("payload serialises");
    let back: serde_json::Value = serde_json::from_slice(&body).expect("payload is JSON");
    assert_eq!(
        back["alerts"][0]["fingerprint"].as_str(),
        Some(alert.fingerprint().as_str())
    );
    let _ = alertmanager_alert(&alert, "2030-01-01T00:00:00Z", "http://edge-pc:9847");
    assert!(signature(b"fuzz-key", &body).starts_with("sha256="));
}

/// The alert outbox log as found after a crash (`Outbox::open` replays and repairs it).
pub fn outbox(data: &[u8]) {
    use earshot::alert::outbox::{Caps, FILE_NAME, Outbox};
    let d = fresh("outbox");
    std::fs::write(d.join(FILE_NAME), data).expect("write scratch outbox");
    let caps = Caps {
        max_age: std::time::Duration::from_secs(3600),
        max_bytes: 1 << 20,
    };
    if let Ok((ob, rec)) = Outbox::open(&d, caps) {
        assert_eq!(ob.len(), rec.pending);
        // Opening what opening left must find the same pending alerts and nothing bad.
        drop(ob);
        let (ob2, rec2) = Outbox::open(&d, caps).expect("reopen a repaired outbox");
        assert!(rec2.bad_lines <= rec.bad_lines, "repair made damage");
        assert_eq!(
            ob2.len(),
            rec.pending,
            "reopening changed the pending alerts"
        );
    }
}

/// Every target by name: (name, entry point).
pub const TARGETS: &[(&str, fn(&[u8]))] = &[
    ("wav", wav),
    ("config", config),
    ("model_card", model_card),
    ("profile", profile),
    ("azure", azure),
    ("alert_payload", alert_payload),
    ("outbox", outbox),
];
