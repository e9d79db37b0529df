//! Index benchmark: prints figures, asserts nothing.
//!
//! `cargo bench --bench index` (default, a few minutes at most), `-- --quick` (CI: small sizes),
//! `-- --full` (adds HNSW at 100k, slow to build on 2 cores).
//!
//! Embedded: query latency (median, p95) and single-thread throughput at 1k/10k/100k normal
//! embeddings of 1024 and 2048 dimensions, exact and HNSW, with HNSW recall@10 against exact.
//! Azure path: added latency per window against the in-process emulator on 127.0.0.1, and
//! windows/second sustained with several queries in flight.

#[path = "../tests/common/azure_emulator.rs"]
mod azure_emulator;

use std::sync::Arc;
use std::time::{Duration, Instant};

use earshot::index::azure::{AzureClient, AzureIndex, IndexSchema, KeySource};
use earshot::index::manage::ensure_index;
use earshot::index::upload::{UploadOptions, upload_embeddings};
use earshot::index::{
    AzureConfig, BreakerConfig, EmbeddedConfig, EmbeddedIndex, HnswParams, ResilientIndex,
    SearchMode, VectorIndex,
};
use ndarray::Array2;
use rand::{Rng, SeedableRng, rngs::StdRng};

const K: usize = 10;

fn clustered(n: usize, dim: usize, seed: u64) -> Array2<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    let clusters = 32;
    let centres: Vec<Vec<f32>> = (0..clusters)
        .map(|_| (0..dim).map(|_| rng.random_range(-1.0..1.0)).collect())
        .collect();
    let mut e = Array2::<f32>::zeros((n, dim));
    for (i, mut row) in e.outer_iter_mut().enumerate() {
        let c = &centres[(i * 7919 + rng.random_range(0..clusters)) % clusters];
        for (x, cj) in row.iter_mut().zip(c) {
            *x = cj + rng.random_range(-0.6..0.6);
        }
    }
    e
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

struct Sizes {
    exact: Vec<(usize, usize)>,
    hnsw: Vec<(usize, usize)>,
    azure_docs: usize,
    azure_queries: usize,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this binary without it,
    // and a benchmark is not a test.
    if !args.iter().any(|a| a == "--bench") {
        println!(
            "benches/index: not run under `cargo test`; run `cargo bench --bench index [-- --quick]`"
        );
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    let full = args.iter().any(|a| a == "--full");
    let sizes = if quick {
        Sizes {
            exact: vec![(1_000, 1024), (10_000, 1024)],
            hnsw: vec![(1_000, 1024)],
            azure_docs: 500,
            azure_queries: 100,
        }
    } else {
        let all: Vec<(usize, usize)> = [1_000, 10_000, 100_000]
            .iter()
            .flat_map(|&n| [(n, 1024), (n, 2048)])
            .collect();
        let hnsw = all
            .iter()
            .copied()
            .filter(|&(n, _)| full || n <= 10_000)
            .collect();
        Sizes {
            exact: all,
            hnsw,
            azure_docs: 2_000,
            azure_queries: 300,
        }
    };
    println!(
        "# earshot index benchmark ({})",
        if quick {
            "quick"
        } else if full {
            "full"
        } else {
            "default"
        }
    );
    println!("\n## Embedded index, k = {K}, single thread per query");
    println!(
        "{:>7} {:>5} {:>8} {:>9} {:>9} {:>10} {:>9} {:>9}",
        "n", "dim", "mode(ef)", "median_ms", "p95_ms", "queries/s", "recall@10", "build_s"
    );
    for &(n, dim) in &sizes.exact {
        bench_embedded(n, dim, sizes.hnsw.contains(&(n, dim)));
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(bench_azure(sizes.azure_docs, 1024, sizes.azure_queries));
}

fn bench_embedded(n: usize, dim: usize, with_hnsw: bool) {
    let data = clustered(n, dim, n as u64 ^ dim as u64);
    let queries = clustered(if n >= 100_000 { 30 } else { 100 }, dim, 7 + dim as u64);
    let ids: Vec<String> = (0..n).map(|i| format!("w{i}")).collect();
    let t = Instant::now();
    let exact = EmbeddedIndex::new(data.view(), ids.clone(), &EmbeddedConfig::default())
        .expect("exact index");
    let exact_build = t.elapsed();
    let mut truth = Vec::new();
    let mut lat = Vec::new();
    for q in queries.outer_iter() {
        let q = q.to_vec();
        let t = Instant::now();
        let r = exact.search_indices(&q, K).expect("search");
        lat.push(t.elapsed());
        truth.push(r.into_iter().map(|x| x.0).collect::<Vec<_>>());
    }
    report(n, dim, "exact", lat, None, exact_build);
    if !with_hnsw {
        return;
    }
    let cfg = EmbeddedConfig {
        k: K,
        mode: SearchMode::Hnsw,
        hnsw: HnswParams {
            m: 16,
            ef_construction: 100,
            ef_search: 64,
        },
    };
    let t = Instant::now();
    let mut approx = EmbeddedIndex::new(data.view(), ids, &cfg).expect("hnsw index");
    let build = t.elapsed();
    for ef in [64usize, 256] {
        approx.set_ef_search(ef);
        let mut lat = Vec::new();
        let mut hits = 0usize;
        for (q, tr) in queries.outer_iter().zip(&truth) {
            let q = q.to_vec();
            let t = Instant::now();
            let r = approx.search_indices(&q, K).expect("search");
            lat.push(t.elapsed());
            hits += r.iter().filter(|(i, _)| tr.contains(i)).count();
        }
        let recall = hits as f64 / (truth.len() * K) as f64;
        report(n, dim, &format!("hnsw{ef}"), lat, Some(recall), build);
    }
}

fn report(
    n: usize,
    dim: usize,
    mode: &str,
    mut lat: Vec<Duration>,
    recall: Option<f64>,
    build: Duration,
) {
    lat.sort();
    let total: Duration = lat.iter().sum();
    let qps = lat.len() as f64 / total.as_secs_f64().max(1e-9);
    println!(
        "{:>7} {:>5} {:>8} {:>9.3} {:>9.3} {:>10.0} {:>9} {:>9.2}",
        n,
        dim,
        mode,
        ms(percentile(&lat, 0.5)),
        ms(percentile(&lat, 0.95)),
        qps,
        recall
            .map(|r| format!("{r:.3}"))
            .unwrap_or_else(|| "-".into()),
        build.as_secs_f64()
    );
}

async fn bench_azure(n: usize, dim: usize, queries: usize) {
    println!(
        "\n## Azure path against the emulator on 127.0.0.1 ({n} normal docs x {dim} dims, k = 3)"
    );
    let emu = azure_emulator::Emulator::start().await;
    let mut cfg = AzureConfig::new(&emu.endpoint(), "bench", "UNUSED");
    cfg.timeout_ms = 5_000;
    cfg.exhaustive = true;
    let client = AzureClient::with_key(
        &cfg,
        azure_emulator::ADMIN_KEY.into(),
        KeySource::Env("UNUSED".into()),
    )
    .expect("client");
    ensure_index(
        &client,
        &IndexSchema::from_config(&cfg, dim),
        "bench",
        false,
    )
    .await
    .expect("create index");
    let data = clustered(n, dim, 3);
    let ids: Vec<String> = (0..n).map(|i| format!("w{i}")).collect();
    let t = Instant::now();
    let up = upload_embeddings(
        &client,
        "m",
        "bench",
        data.view(),
        &ids,
        &UploadOptions::default(),
    )
    .await
    .expect("upload");
    let up_s = t.elapsed().as_secs_f64();
    println!(
        "upload: {} docs in {} requests, {:.2} s ({:.0} docs/s)",
        up.documents,
        up.requests,
        up_s,
        up.documents as f64 / up_s.max(1e-9)
    );

    let embedded =
        EmbeddedIndex::new(data.view(), ids, &EmbeddedConfig::default()).expect("embedded");
    let azure: Arc<dyn VectorIndex> = Arc::new(AzureIndex::new(client, "m".into(), dim, true));
    let qs = clustered(queries, dim, 11);
    let mut remote = Vec::new();
    let mut local = Vec::new();
    for q in qs.outer_iter() {
        let q = q.to_vec();
        let t = Instant::now();
        azure.knn(&q, 3).await.expect("azure knn");
        remote.push(t.elapsed());
        let t = Instant::now();
        embedded.search(&q, 3).expect("embedded");
        local.push(t.elapsed());
    }
    remote.sort();
    local.sort();
    let added_med = ms(percentile(&remote, 0.5)) - ms(percentile(&local, 0.5));
    println!(
        "latency per window: azure median {:.3} ms p95 {:.3} ms; embedded exact median {:.3} ms; added median {:.3} ms",
        ms(percentile(&remote, 0.5)),
        ms(percentile(&remote, 0.95)),
        ms(percentile(&local, 0.5)),
        added_med
    );

    println!(
        "{:>11} {:>10} {:>9} {:>9}",
        "in_flight", "windows/s", "ok", "degraded"
    );
    for conc in [1usize, 4, 16] {
        let idx = Arc::new(ResilientIndex::with_limits(
            azure.clone(),
            Duration::from_secs(5),
            conc,
            BreakerConfig::default(),
        ));
        let per_task = queries.div_ceil(conc).max(1);
        let t = Instant::now();
        let mut tasks = Vec::new();
        for w in 0..conc {
            let idx = idx.clone();
            let qs: Vec<Vec<f32>> = (0..per_task)
                .map(|i| qs.row((w * per_task + i) % qs.nrows()).to_vec())
                .collect();
            tasks.push(tokio::spawn(async move {
                let (mut ok, mut degraded) = (0usize, 0usize);
                for q in qs {
                    match idx.knn(&q, 3).await {
                        Ok(_) => ok += 1,
                        Err(_) => degraded += 1,
                    }
                }
                (ok, degraded)
            }));
        }
        let (mut ok, mut degraded) = (0, 0);
        for t in tasks {
            let (o, d) = t.await.expect("task");
            ok += o;
            degraded += d;
        }
        let secs = t.elapsed().as_secs_f64();
        println!(
            "{:>11} {:>10.0} {:>9} {:>9}",
            conc,
            (ok + degraded) as f64 / secs.max(1e-9),
            ok,
            degraded
        );
    }
}
