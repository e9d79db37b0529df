//! The Azure AI Search backend against the emulator (tests/common/azure_emulator.rs) on
//! 127.0.0.1: create/check, batched upload under injected faults, k-NN parity with the embedded
//! exact index, degraded mode and recovery, auth and schema errors.

#[path = "common/azure_emulator.rs"]
mod azure_emulator;

use std::sync::Arc;
use std::time::Duration;

use azure_emulator::{ADMIN_KEY, Emulator, Fault, Op, QUERY_KEY, RetryHint};
use earshot::index::azure::{AzureClient, AzureIndex, IndexSchema, KeySource};
use earshot::index::manage::{EnsureOutcome, check_index, ensure_index};
use earshot::index::retry::RetryPolicy;
use earshot::index::upload::{UploadOptions, upload_embeddings};
use earshot::index::{
    AzureConfig, BreakerConfig, BreakerState, EmbeddedConfig, EmbeddedIndex, IndexError,
    ResilientIndex, VectorIndex, knn_score,
};
use ndarray::Array2;
use rand::{Rng, SeedableRng, rngs::StdRng};

const DIM: usize = 48;

fn config(emu: &Emulator, index: &str) -> AzureConfig {
    let mut c = AzureConfig::new(&emu.endpoint(), index, "EARSHOT_TEST_UNUSED_KEY_VAR");
    c.timeout_ms = 3_000;
    c
}

fn client(emu: &Emulator, index: &str, key: &str) -> AzureClient {
    AzureClient::with_key(
        &config(emu, index),
        key.to_string(),
        KeySource::Env("EARSHOT_AZURE_KEY".into()),
    )
    .expect("client")
}

/// Clustered unit vectors with ids that Azure keys could not hold as they are.
fn profile(n: usize, seed: u64, machine_tag: &str) -> (Array2<f32>, Vec<String>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let centres: Vec<Vec<f32>> = (0..6)
        .map(|_| (0..DIM).map(|_| rng.random_range(-1.0..1.0)).collect())
        .collect();
    let mut e = Array2::<f32>::zeros((n, DIM));
    for i in 0..n {
        let c = &centres[i % centres.len()];
        for j in 0..DIM {
            e[[i, j]] = c[j] + rng.random_range(-0.4..0.4);
        }
        let norm = e.row(i).iter().map(|x| x * x).sum::<f32>().sqrt();
        e.row_mut(i).mapv_inplace(|x| x / norm);
    }
    let ids = (0..n)
        .map(|i| format!("{machine_tag} clip/ä'{}-w{i:05}", i % 7))
        .collect();
    (e, ids)
}

fn small_batches() -> UploadOptions {
    UploadOptions {
        max_docs: 40,
        max_bytes: 64 * 1024,
        policy: RetryPolicy {
            max_attempts: 8,
            base: Duration::from_millis(5),
            max_delay: Duration::from_millis(40),
        },
        timeout: Duration::from_secs(10),
    }
}

fn window_ids(emu: &Emulator, index: &str, machine: &str) -> Vec<String> {
    let mut v: Vec<String> = emu
        .docs(index)
        .values()
        .filter(|d| d.fields["machine"] == machine)
        .map(|d| d.fields["window_id"].as_str().unwrap_or("").to_string())
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_under_faults_loses_and_duplicates_nothing_and_check_passes() {
    let emu = Emulator::start().await;
    let c = client(&emu, "normals", ADMIN_KEY);
    let schema = IndexSchema {
        dim: DIM,
        hnsw: config(&emu, "normals").hnsw,
    };
    assert_eq!(
        ensure_index(&c, &schema, "cnn14", false)
            .await
            .expect("create"),
        EnsureOutcome::Created
    );
    assert_eq!(
        ensure_index(&c, &schema, "cnn14", false)
            .await
            .expect("again"),
        EnsureOutcome::Existing
    );

    let (pump, pump_ids) = profile(500, 1, "pump");
    let (fan, fan_ids) = profile(130, 2, "fan");
    // Bodies over 40 KB get 413 (our batches go up to 64 KB): forces size splits.
    emu.set_max_body_bytes(40 * 1024);
    emu.push_fault(Fault::Status {
        op: Op::IndexDocs,
        status: 503,
        hint: RetryHint::Seconds(0),
        times: 2,
    });
    emu.push_fault(Fault::Status {
        op: Op::IndexDocs,
        status: 429,
        hint: RetryHint::XMsMs(5),
        times: 1,
    });
    emu.push_fault(Fault::Status {
        op: Op::IndexDocs,
        status: 429,
        hint: RetryHint::Ms(3),
        times: 1,
    });
    emu.push_fault(Fault::Status {
        op: Op::IndexDocs,
        status: 503,
        hint: RetryHint::None,
        times: 1,
    });
    emu.push_fault(Fault::Partial {
        every: 3,
        item_status: 503,
        times: 3,
    });
    emu.push_fault(Fault::Partial {
        every: 5,
        item_status: 422,
        times: 2,
    });

    let r = upload_embeddings(
        &c,
        "pump",
        "cnn14",
        pump.view(),
        &pump_ids,
        &small_batches(),
    )
    .await
    .expect("upload pump");
    assert_eq!(r.documents, 500, "{r:?}");
    assert!(r.retried_items > 0, "partial failures were resent: {r:?}");
    assert!(r.splits > 0, "413 answers were split: {r:?}");
    let statuses = emu.statuses(Op::IndexDocs);
    for s in [503, 429, 207, 413] {
        assert!(
            statuses.contains(&s),
            "emulator answered {s} at least once: {statuses:?}"
        );
    }
    let r = upload_embeddings(&c, "fan", "cnn14", fan.view(), &fan_ids, &small_batches())
        .await
        .expect("upload fan");
    assert_eq!(r.documents, 130);

    let mut want = pump_ids.clone();
    want.sort();
    assert_eq!(
        window_ids(&emu, "normals", "pump"),
        want,
        "every pump window exactly once"
    );
    assert_eq!(window_ids(&emu, "normals", "fan").len(), 130);
    assert_eq!(emu.docs("normals").len(), 630);
    // Stored vectors are the (normalised) profile rows.
    let doc = emu
        .docs("normals")
        .into_values()
        .find(|d| d.fields["window_id"] == pump_ids[17].as_str())
        .expect("doc");
    for (a, b) in doc.vector.iter().zip(pump.row(17)) {
        assert!((a - b).abs() < 1e-6);
    }

    // Interrupted and resumed: a first half, then the whole set again -> still one doc per window.
    let half = pump.slice(ndarray::s![..250, ..]).to_owned();
    upload_embeddings(
        &c,
        "pump",
        "cnn14",
        half.view(),
        &pump_ids[..250],
        &small_batches(),
    )
    .await
    .expect("half");
    upload_embeddings(
        &c,
        "pump",
        "cnn14",
        pump.view(),
        &pump_ids,
        &small_batches(),
    )
    .await
    .expect("resume");
    assert_eq!(window_ids(&emu, "normals", "pump"), want);
    assert_eq!(emu.docs("normals").len(), 630);

    let expected = vec![("pump".to_string(), 500u64), ("fan".to_string(), 130u64)];
    let report = check_index(&c, DIM, "cnn14", &expected)
        .await
        .expect("check passes");
    assert_eq!(report.total, 630);
    assert_eq!(report.schema.metric, "cosine");
    assert_eq!(report.machines[0].found, 500);

    // A profile with more windows than uploaded, or another model's name, is refused.
    let err = check_index(&c, DIM, "cnn14", &[("pump".to_string(), 501)])
        .await
        .expect_err("count mismatch");
    assert!(
        err.to_string()
            .contains("holds 500 documents but the profile has 501"),
        "{err}"
    );
    let err = check_index(&c, DIM, "mobilenet", &expected)
        .await
        .expect_err("model mismatch");
    assert!(
        err.to_string().contains("another model than `mobilenet`"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_knn_distances_equal_embedded_exact_ones() {
    let emu = Emulator::start().await;
    let c = client(&emu, "parity", ADMIN_KEY);
    let schema = IndexSchema {
        dim: DIM,
        hnsw: None,
    };
    ensure_index(&c, &schema, "cnn14", false)
        .await
        .expect("create");
    let (normals, ids) = profile(300, 3, "press");
    let (other, other_ids) = profile(200, 4, "press");
    upload_embeddings(&c, "press", "cnn14", normals.view(), &ids, &small_batches())
        .await
        .expect("upload");
    // Another machine's windows must never be returned (filter).
    upload_embeddings(
        &c,
        "lathe",
        "cnn14",
        other.view(),
        &other_ids,
        &small_batches(),
    )
    .await
    .expect("upload");

    let embedded = EmbeddedIndex::new(normals.view(), ids.clone(), &EmbeddedConfig::default())
        .expect("embedded");
    // The daemon uses a query key: enough to verify (by probe) and search.
    let qc = client(&emu, "parity", QUERY_KEY);
    let azure = AzureIndex::new(qc, "press".into(), DIM, true);
    azure
        .verify_schema()
        .await
        .expect("query key can verify by probe");
    let (queries, _) = profile(25, 99, "q");
    for k in [1usize, 3, 10] {
        for q in queries.outer_iter() {
            let q = q.to_vec();
            let a = azure.knn(&q, k).await.expect("azure knn");
            let e = embedded.search(&q, k).expect("embedded");
            assert_eq!(a.len(), k);
            let a_ids: Vec<&str> = a.iter().map(|n| n.id.as_str()).collect();
            let e_ids: Vec<&str> = e.iter().map(|n| n.id.as_str()).collect();
            assert_eq!(a_ids, e_ids);
            for (x, y) in a.iter().zip(&e) {
                assert!(
                    (x.distance - y.distance).abs() < 1e-4,
                    "{} vs {}",
                    x.distance,
                    y.distance
                );
            }
            let (sa, se) = (knn_score(&a).expect("score"), knn_score(&e).expect("score"));
            assert!((sa - se).abs() < 1e-4);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_fall_back_under_faults_and_recover() {
    let emu = Emulator::start().await;
    let c = client(&emu, "live", ADMIN_KEY);
    ensure_index(
        &c,
        &IndexSchema {
            dim: DIM,
            hnsw: config(&emu, "live").hnsw,
        },
        "cnn14",
        false,
    )
    .await
    .expect("create");
    let (normals, ids) = profile(60, 5, "m");
    upload_embeddings(&c, "m", "cnn14", normals.view(), &ids, &small_batches())
        .await
        .expect("upload");

    let inner: Arc<dyn VectorIndex> = Arc::new(AzureIndex::new(c.clone(), "m".into(), DIM, false));
    let breaker = BreakerConfig {
        failure_threshold: 3,
        open_ms: 150,
    };
    let idx = ResilientIndex::with_limits(inner, Duration::from_millis(1500), 2, breaker);
    let q = normals.row(0).to_vec();
    assert_eq!(idx.knn(&q, 3).await.expect("healthy")[0].id, ids[0]);

    // Service down: 503 on every search, then also slow answers (client timeouts).
    emu.set_outage(Op::Search, Some(503));
    for _ in 0..2 {
        let e = idx.knn(&q, 3).await.expect_err("down");
        assert!(e.is_degraded(), "{e}");
    }
    emu.set_outage(Op::Search, None);
    emu.push_fault(Fault::Delay {
        op: Op::Search,
        delay: Duration::from_secs(20),
        times: 1,
    });
    let e = idx.knn(&q, 3).await.expect_err("timeout");
    assert!(matches!(e, IndexError::Timeout(_)), "{e}");
    let h = idx.health();
    assert_eq!(h.state, BreakerState::Open);
    assert_eq!(h.opened, 1);
    assert!(h.last_error.as_deref().unwrap_or("").contains("timed out"));

    // While open: answered at once without touching the service.
    emu.set_outage(Op::Search, Some(503));
    let before = emu.requests(Op::Search);
    let e = idx.knn(&q, 3).await.expect_err("open");
    if matches!(e, IndexError::Unavailable { .. }) {
        assert_eq!(
            emu.requests(Op::Search),
            before,
            "open breaker must not call the service"
        );
    }
    assert!(e.is_degraded());

    // Recovery: service back; after the open period a probe succeeds and the breaker closes.
    emu.set_outage(Op::Search, None);
    let mut recovered = None;
    for _ in 0..200 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if let Ok(n) = idx.knn(&q, 3).await {
            recovered = Some(n);
            break;
        }
    }
    let n = recovered.expect("k-NN scoring resumes after the service recovers");
    assert_eq!(n[0].id, ids[0]);
    assert!(n[0].distance < 1e-4);
    let h = idx.health();
    assert_eq!(h.state, BreakerState::Closed);
    assert_eq!(h.consecutive_failures, 0);
    assert!(h.short_circuited >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_key_gives_a_clear_auth_error_naming_the_key_source() {
    let emu = Emulator::start().await;
    let admin = client(&emu, "auth", ADMIN_KEY);
    ensure_index(
        &admin,
        &IndexSchema {
            dim: DIM,
            hnsw: None,
        },
        "cnn14",
        false,
    )
    .await
    .expect("create");

    let wrong = client(&emu, "auth", "not-the-key");
    let e = wrong.get_index().await.expect_err("wrong key");
    assert!(matches!(e, IndexError::Auth { status: 403, .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains("environment variable EARSHOT_AZURE_KEY"),
        "{msg}"
    );
    assert!(
        !msg.contains("not-the-key"),
        "the key itself is never printed: {msg}"
    );

    // A query key can search and count but not write: uploading says so.
    let query = client(&emu, "auth", QUERY_KEY);
    assert_eq!(query.count_all().await.expect("query key counts"), 0);
    let (e1, ids) = profile(3, 7, "x");
    let e = upload_embeddings(&query, "x", "cnn14", e1.view(), &ids, &small_batches())
        .await
        .expect_err("query key write");
    assert!(e.to_string().contains("admin key"), "{e}");

    // A key file is named too; the client never reaches the service with an empty key.
    let dir = tempfile::tempdir().expect("tempdir");
    let key_file = dir.path().join("azure.key");
    std::fs::write(&key_file, "wrong-from-file\n").expect("write key");
    let mut cfg = config(&emu, "auth");
    cfg.api_key_env = None;
    cfg.api_key_file = Some(key_file.display().to_string());
    let from_file = AzureClient::from_config(&cfg).expect("client from key file");
    let e = from_file.get_index().await.expect_err("wrong file key");
    assert!(
        e.to_string()
            .contains(&format!("file {}", key_file.display())),
        "{e}"
    );
    std::fs::write(&key_file, "  \n").expect("write key");
    let e = AzureClient::from_config(&cfg).expect_err("empty key file");
    assert!(e.to_string().contains("is empty"), "{e}");

    // Without any api-key header the documented answer is 401.
    let r = reqwest::Client::new()
        .get(format!(
            "{}/indexes/auth?api-version=2025-09-01",
            emu.endpoint()
        ))
        .send()
        .await
        .expect("raw request");
    assert_eq!(r.status().as_u16(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_index_schema_is_refused() {
    let emu = Emulator::start().await;
    let c = client(&emu, "schema", ADMIN_KEY);
    // Another model's index: 32 dims.
    ensure_index(
        &c,
        &IndexSchema {
            dim: 32,
            hnsw: None,
        },
        "mobilenet",
        false,
    )
    .await
    .expect("create 32");
    let e = ensure_index(
        &c,
        &IndexSchema {
            dim: DIM,
            hnsw: None,
        },
        "cnn14",
        false,
    )
    .await
    .expect_err("dims");
    let msg = e.to_string();
    assert!(
        msg.contains("32 dimensions")
            && msg.contains(&format!("makes {DIM}"))
            && msg.contains("--recreate"),
        "{msg}"
    );
    assert!(check_index(&c, DIM, "cnn14", &[]).await.is_err());
    // The daemon's start-up check refuses it too, even with a query key (probe query -> 400).
    let qidx = AzureIndex::new(client(&emu, "schema", QUERY_KEY), "m".into(), DIM, false);
    let e = qidx.verify_schema().await.expect_err("probe refuses");
    assert!(matches!(e, IndexError::SchemaMismatch(_)), "{e:?}");
    // --recreate replaces it.
    assert_eq!(
        ensure_index(
            &c,
            &IndexSchema {
                dim: DIM,
                hnsw: None
            },
            "cnn14",
            true
        )
        .await
        .expect("recreate"),
        EnsureOutcome::Recreated
    );
    assert_eq!(
        emu.definition("schema").expect("def")["fields"][4]["dimensions"],
        DIM
    );

    // Wrong metric: an index someone made by hand with dotProduct.
    let mut def = IndexSchema {
        dim: DIM,
        hnsw: None,
    }
    .definition("dotidx");
    def["vectorSearch"]["algorithms"][0]["exhaustiveKnnParameters"]["metric"] = "dotProduct".into();
    let dc = client(&emu, "dotidx", ADMIN_KEY);
    dc.put_index(&def).await.expect("put dotProduct index");
    let e = check_index(&dc, DIM, "cnn14", &[])
        .await
        .expect_err("metric");
    assert!(e.to_string().contains("metric is `dotProduct`"), "{e}");

    // Missing index: a clear not-found.
    let e = check_index(&client(&emu, "nothere", ADMIN_KEY), DIM, "cnn14", &[])
        .await
        .expect_err("missing");
    assert!(matches!(e, IndexError::NotFound { .. }), "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn count_with_and_without_bom_and_api_version_enforced() {
    let emu = Emulator::start().await;
    let c = client(&emu, "counts", ADMIN_KEY);
    ensure_index(
        &c,
        &IndexSchema {
            dim: DIM,
            hnsw: None,
        },
        "cnn14",
        false,
    )
    .await
    .expect("create");
    let (e, ids) = profile(17, 8, "c");
    upload_embeddings(&c, "c", "cnn14", e.view(), &ids, &small_batches())
        .await
        .expect("upload");
    emu.set_count_bom(true);
    assert_eq!(c.count_all().await.expect("count with BOM"), 17);
    emu.set_count_bom(false);
    assert_eq!(c.count_all().await.expect("count"), 17);
    assert_eq!(
        c.count_filtered("machine eq 'c'").await.expect("filtered"),
        17
    );
    assert_eq!(
        c.count_filtered("machine eq 'other'")
            .await
            .expect("filtered"),
        0
    );

    // Every request carries api-version: the oldest GA version with vector search works too.
    let mut cfg = config(&emu, "counts");
    cfg.api_version = "2023-11-01".into();
    let old =
        AzureClient::with_key(&cfg, ADMIN_KEY.into(), KeySource::Env("K".into())).expect("client");
    assert_eq!(old.count_all().await.expect("old version"), 17);
    let r = reqwest::Client::new()
        .get(format!("{}/indexes/counts/docs/$count", emu.endpoint()))
        .header("api-key", ADMIN_KEY)
        .send()
        .await
        .expect("raw");
    assert_eq!(
        r.status().as_u16(),
        400,
        "the emulator, like the service, requires api-version"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emulator_enforces_documented_batch_limits() {
    let emu = Emulator::start().await;
    let c = client(&emu, "limits", ADMIN_KEY);
    ensure_index(&c, &IndexSchema { dim: 2, hnsw: None }, "m", false)
        .await
        .expect("create");
    // {"value":[ ...1001 documents... ]} -> 400
    let docs: Vec<serde_json::Value> = (0..1001)
        .map(|i| serde_json::json!({"@search.action": "upload", "id": format!("k{i}"), "embedding": [1.0, 0.0]}))
        .collect();
    let r = reqwest::Client::new()
        .post(format!(
            "{}/indexes/limits/docs/index?api-version=2025-09-01",
            emu.endpoint()
        ))
        .header("api-key", ADMIN_KEY)
        .json(&serde_json::json!({ "value": docs }))
        .send()
        .await
        .expect("raw");
    assert_eq!(r.status().as_u16(), 400);
    let body: serde_json::Value = r.json().await.expect("error body");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("1000")
    );

    // Over the bytes limit -> 413, which the uploader answers by splitting; a single document
    // that is too large on its own is reported with its id.
    emu.set_max_body_bytes(200);
    let e = Array2::from_shape_vec((3, 2), vec![1.0, 0.0, 0.0, 1.0, 1.0, 1.0]).expect("shape");
    let ids: Vec<String> = vec![
        "a".into(),
        "b".into(),
        "a-very-long-window-id-that-makes-the-document-too-big".repeat(3),
    ];
    let err = upload_embeddings(&c, "m", "model", e.view(), &ids, &small_batches())
        .await
        .expect_err("too big");
    assert!(err.to_string().contains("a-very-long-window-id"), "{err}");
    assert!(emu.statuses(Op::IndexDocs).contains(&413));
    assert_eq!(
        emu.docs("limits").len(),
        2,
        "the two small documents were stored"
    );
}

/// Runs the real `earshot` binary against the emulator.
async fn earshot(args: Vec<String>, key: &'static str) -> std::process::Output {
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_earshot"))
            .args(&args)
            .env("EARSHOT_TEST_AZURE_KEY", key)
            .env("EARSHOT_LOG", "warn")
            .output()
            .expect("run earshot")
    })
    .await
    .expect("join")
}

fn save_profile(dir: &std::path::Path, machine: &str, e: Array2<f32>, ids: Vec<String>) {
    use earshot::score::profile::{Calibration, Counts, Manifest, ModelRef, Profile, WindowSpec};
    let manifest = Manifest {
        format: earshot::score::profile::FORMAT.into(),
        version: earshot::score::profile::VERSION,
        created: "2026-11-22T00:00:00Z".into(),
        earshot_version: "test".into(),
        machine: machine.into(),
        model: ModelRef {
            name: "cnn14-test".into(),
            architecture: "Cnn14".into(),
            onnx_sha256: "0".repeat(64),
            sample_rate: 32000,
            embedding_dim: e.ncols(),
            untrained: true,
        },
        window: WindowSpec {
            seconds: 1.0,
            hop_seconds: 0.5,
            level_dbfs: None,
            embed: Default::default(),
        },
        counts: Counts {
            clips: 1,
            fit_windows: e.nrows(),
            holdout_windows: 0,
            holdout_clips: 0,
        },
        kmeans_k: 1,
        knn_k: 3,
        thresholds: ["centroid", "knn"]
            .into_iter()
            .map(|s| {
                let t = earshot::score::Threshold {
                    value: 0.5,
                    target_far: 0.01,
                    n: 100,
                    method: "quantile".into(),
                    calibration_far: 0.01,
                    release: None,
                    release_quantile: None,
                    transient: None,
                    transient_far: None,
                };
                (s.to_string(), t)
            })
            .collect(),
        sources: vec![],
        files: Default::default(),
        level: None,
        impulse: None,
        coverage_warning: None,
        false_alarms: None,
        mel: None,
    };
    let centroids = e.slice(ndarray::s![..1, ..]).to_owned();
    let p = Profile {
        dir: dir.to_owned(),
        manifest,
        embeddings: e,
        ids,
        centroids,
        mel: None,
        feedback_mel: Default::default(),
        machine: machine.into(),
        model: "cnn14-test".into(),
    };
    p.save(dir, &Calibration::default()).expect("save profile");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_creates_uploads_and_checks_from_a_monitor_config() {
    let emu = Emulator::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let prof = dir.path().join("profile");
    let (e, ids) = profile(120, 11, "press");
    save_profile(&prof, "press 2", e, ids.clone());
    let cfg = dir.path().join("earshot.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[monitor]]\nname = \"press\"\nindex = {{ kind = \"azure\", endpoint = \"{}\", index_name = \"cli-normals\", api_key_env = \"EARSHOT_TEST_AZURE_KEY\", exhaustive = true }}\n",
            emu.endpoint()
        ),
    )
    .expect("write config");
    let base = vec![
        "index".to_string(),
        "--profile".into(),
        prof.display().to_string(),
        "--config".into(),
        cfg.display().to_string(),
        "--monitor".into(),
        "press".into(),
    ];
    // Faults on the way: the CLI still finishes.
    emu.push_fault(Fault::Status {
        op: Op::IndexDocs,
        status: 503,
        hint: RetryHint::Ms(5),
        times: 1,
    });
    emu.push_fault(Fault::Partial {
        every: 4,
        item_status: 503,
        times: 1,
    });
    let out = earshot(base.clone(), ADMIN_KEY).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("uploaded 120 documents"));
    assert_eq!(window_ids(&emu, "cli-normals", "press 2").len(), 120);
    let def = emu.definition("cli-normals").expect("created");
    assert_eq!(def["fields"][4]["dimensions"], DIM);
    assert_eq!(
        def["vectorSearch"]["algorithms"][0]["hnswParameters"]["metric"],
        "cosine"
    );

    let mut check = base.clone();
    check.push("--check".into());
    let out = earshot(check.clone(), QUERY_KEY).await;
    // GET index needs an admin key: a query key is refused with a message naming the variable.
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        err.contains("environment variable EARSHOT_TEST_AZURE_KEY") && err.contains("admin key"),
        "{err}"
    );
    let out = earshot(check.clone(), ADMIN_KEY).await;
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("machine `press 2`: 120 documents"),
        "{stdout}"
    );

    // A document lost remotely is found by --check.
    let lost = earshot::index::keys::doc_key("press 2", &ids[5]);
    let r = reqwest::Client::new()
        .post(format!(
            "{}/indexes/cli-normals/docs/index?api-version=2025-09-01",
            emu.endpoint()
        ))
        .header("api-key", ADMIN_KEY)
        .json(&serde_json::json!({"value": [{"@search.action": "delete", "id": lost}]}))
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status().as_u16(), 200);
    let out = earshot(check, ADMIN_KEY).await;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("holds 119 documents but the profile has 120")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn build_gives_working_indexes_for_both_kinds() {
    let emu = Emulator::start().await;
    let c = client(&emu, "built", ADMIN_KEY);
    ensure_index(
        &c,
        &IndexSchema {
            dim: DIM,
            hnsw: None,
        },
        "cnn14",
        false,
    )
    .await
    .expect("create");
    let (e, ids) = profile(40, 12, "b");
    upload_embeddings(&c, "b", "cnn14", e.view(), &ids, &small_batches())
        .await
        .expect("upload");

    let dir = tempfile::tempdir().expect("tempdir");
    let key_file = dir.path().join("query.key");
    std::fs::write(&key_file, format!("{QUERY_KEY}\n")).expect("key");
    let mut a = config(&emu, "built");
    a.api_key_env = None;
    a.api_key_file = Some(key_file.display().to_string());
    a.exhaustive = true;
    let azure = earshot::index::build(&earshot::index::IndexConfig::Azure(a), &e, &ids, "b")
        .await
        .expect("azure");
    let embedded = earshot::index::build(&earshot::index::IndexConfig::default(), &e, &ids, "b")
        .await
        .expect("embedded");
    assert_eq!((azure.dim(), embedded.dim()), (DIM, DIM));
    assert!(
        azure.describe().contains("azure index `built`") && !azure.describe().contains(QUERY_KEY)
    );
    let q = e.row(9).to_vec();
    let (x, y) = (
        azure.knn(&q, 3).await.expect("azure"),
        embedded.knn(&q, 3).await.expect("embedded"),
    );
    assert_eq!(x[0].id, ids[9]);
    assert_eq!(
        x.iter().map(|n| &n.id).collect::<Vec<_>>(),
        y.iter().map(|n| &n.id).collect::<Vec<_>>()
    );

    // A wrong dimension is refused at build time, before any window is scored.
    let (small, small_ids) = (
        Array2::<f32>::ones((2, 8)),
        vec!["s1".to_string(), "s2".to_string()],
    );
    let mut a = config(&emu, "built");
    a.api_key_env = None;
    a.api_key_file = Some(key_file.display().to_string());
    let err = earshot::index::build(
        &earshot::index::IndexConfig::Azure(a),
        &small,
        &small_ids,
        "b",
    )
    .await
    .err()
    .expect("dims");
    assert!(matches!(err, IndexError::SchemaMismatch(_)), "{err:?}");
}

/// A profile learned from two folders whose clips share file names: every window has its own
/// id, so `earshot index` uploads as many documents as the profile holds (with `<stem>@<start>`
/// ids the duplicates were resent until the upload gave up and blamed the service).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_uploads_every_window_of_folders_sharing_file_names() {
    let emu = Emulator::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut folders = Vec::new();
    for (k, line) in ["line1", "line2"].iter().enumerate() {
        let f = dir.path().join(line);
        std::fs::create_dir(&f).expect("mkdir");
        for i in 0..2u64 {
            let spec = hound::WavSpec {
                channels: 1,
                sample_rate: 16_000,
                bits_per_sample: 16,
                sample_format: hound::SampleFormat::Int,
            };
            let mut w =
                hound::WavWriter::create(f.join(format!("clip{i}.wav")), spec).expect("wav");
            let f0 = 150.0 + 20.0 * (2 * k as u64 + i) as f64;
            for n in 0..48_000 {
                let t = n as f64 / 16_000.0;
                let v = 0.3 * (std::f64::consts::TAU * f0 * t).sin()
                    + 0.02 * ((n * 7919 % 1000) as f64 / 1000.0 - 0.5);
                w.write_sample((v * 32767.0) as i16).expect("sample");
            }
            w.finalize().expect("finalize");
        }
        folders.push(f.display().to_string());
    }
    let prof = dir.path().join("profile");
    let out = earshot(
        vec![
            "learn".into(),
            "--model".into(),
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/models/panns-mobilenetv1-seeded"
            )
            .into(),
            "--out".into(),
            prof.display().to_string(),
            "--normal".into(),
            folders[0].clone(),
            folders[1].clone(),
        ],
        ADMIN_KEY,
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(prof.join("manifest.json")).expect("read"))
            .expect("manifest");
    let fit = manifest["counts"]["fit_windows"].as_u64().expect("count") as usize;
    let cfg = dir.path().join("earshot.toml");
    std::fs::write(
        &cfg,
        format!(
            "[index]\nkind = \"azure\"\nendpoint = \"{}\"\nindex_name = \"shared-names\"\napi_key_env = \"EARSHOT_TEST_AZURE_KEY\"\n",
            emu.endpoint()
        ),
    )
    .expect("write config");
    let out = earshot(
        vec![
            "index".into(),
            "--profile".into(),
            prof.display().to_string(),
            "--config".into(),
            cfg.display().to_string(),
        ],
        ADMIN_KEY,
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let machine = manifest["machine"].as_str().expect("machine");
    let ids = window_ids(&emu, "shared-names", machine);
    assert_eq!(ids.len(), fit, "{ids:?}");
    // One clip is held out for calibration; both folders' names appear among the rest.
    assert!(ids.iter().any(|i| i.starts_with("line1/")), "{ids:?}");
    assert!(ids.iter().any(|i| i.starts_with("line2/")), "{ids:?}");
}
