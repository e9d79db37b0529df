//! Speed of earshot's core: log-mel, embedding, `learn` and `score`, session creation.
//!
//! Run it with `scripts/bench.sh` (or `cargo bench --bench core -- [flags]`). It prints
//! figures, it asserts nothing about time: a shared or throttled machine gives other numbers,
//! not a failure. Every figure is the median over repeated runs after warm-up runs that are
//! not counted, with the spread (min, p90, max) beside it, so a noisy run is visible as such.
//!
//! Flags:
//!   --quick        few iterations, bundled model only (< 60 s: a CI smoke test)
//!   --models DIR   directory of model directories (default target/test-models), searched
//!                  in addition to the bundled models/panns-mobilenetv1-seeded
//!   --threads N    only this ONNX Runtime intra-op thread count (default: 1 and 2)
//!   --json         one JSON document on stdout instead of tables
//!
//! Speed does not depend on the weights, so the seeded (untrained) models measure the same
//! as the AudioSet-pretrained ones of the same architecture.

use earshot::dsp::{FrontEnd, LogMel};
use earshot::embed::file::embed_file;
use earshot::embed::{EmbedOptions, Embedder};
use earshot::score::learn::ClipWindows;
use earshot::score::profile::{ModelRef, WindowSpec};
use earshot::score::{LearnOptions, Profile, Scorer, learn};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const WINDOW: WindowSpec = WindowSpec {
    seconds: 1.0,
    hop_seconds: 0.5,
    level_dbfs: Some(-10.0),
    embed: earshot::embed::EmbedMode::Exact,
};
/// Rate of the generated WAVs: a common microphone rate, so reading them includes the
/// resampling to the model's rate that real recordings need.
const WAV_RATE: u32 = 48_000;

struct Args {
    quick: bool,
    models: PathBuf,
    threads: Vec<usize>,
    json: bool,
}

fn parse_args() -> anyhow::Result<Option<Args>> {
    let raw: Vec<String> = std::env::args().skip(1).collect();
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this binary without it.
    // The benchmark is not a test, so under `cargo test` it only says how to run it.
    if !raw.iter().any(|a| a == "--bench") {
        println!("benches/core: not run under `cargo test`; run scripts/bench.sh [--quick]");
        return Ok(None);
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut a = Args {
        quick: false,
        models: root.join("target/test-models"),
        threads: vec![1, 2],
        json: false,
    };
    let mut it = raw.into_iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--bench" => {}
            "--quick" => a.quick = true,
            "--json" => a.json = true,
            "--models" => {
                let v = it
                    .next()
                    .ok_or_else(|| anyhow::anyhow!("--models needs a directory"))?;
                a.models = PathBuf::from(v);
            }
            "--threads" => {
                let v = it
                    .next()
                    .ok_or_else(|| anyhow::anyhow!("--threads needs a number"))?;
                let n: usize = v
                    .parse()
                    .map_err(|_| anyhow::anyhow!("--threads {v:?}: give a positive number"))?;
                anyhow::ensure!(n > 0, "--threads must be at least 1");
                a.threads = vec![n];
            }
            other => anyhow::bail!(
                "unknown flag {other:?}; flags: --quick, --models DIR, --threads N, --json"
            ),
        }
    }
    Ok(Some(a))
}

/// How many runs to time.
#[derive(Clone, Copy)]
struct Plan {
    warmup: usize,
    min_iters: usize,
    max_iters: usize,
    budget: Duration,
}

impl Plan {
    fn new(quick: bool) -> Self {
        if quick {
            Plan {
                warmup: 1,
                min_iters: 3,
                max_iters: 30,
                budget: Duration::from_millis(300),
            }
        } else {
            Plan {
                warmup: 2,
                min_iters: 7,
                max_iters: 300,
                budget: Duration::from_millis(2500),
            }
        }
    }
    /// For slow whole-pipeline runs (learn, score, session creation).
    fn few(self) -> Self {
        Plan {
            warmup: 1,
            min_iters: if self.max_iters < 100 { 2 } else { 5 },
            max_iters: 5,
            budget: Duration::ZERO,
        }
    }
}

/// CPU time of the whole process (all threads, ONNX Runtime's pool included), in ms.
fn process_cpu_ms() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant Linux supports.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return f64::NAN;
    }
    ts.tv_sec as f64 * 1e3 + ts.tv_nsec as f64 / 1e6
}

#[derive(Debug, Clone, serde::Serialize)]
struct Stats {
    n: usize,
    median: f64,
    min: f64,
    p90: f64,
    max: f64,
}

impl Stats {
    fn of(v: &[f64]) -> Stats {
        let mut s = v.to_vec();
        s.sort_by(f64::total_cmp);
        let n = s.len();
        let q = |p: f64| s[((p * (n - 1) as f64).round() as usize).min(n - 1)];
        let median = if n % 2 == 1 {
            s[n / 2]
        } else {
            (s[n / 2 - 1] + s[n / 2]) / 2.0
        };
        Stats {
            n,
            median,
            min: s[0],
            p90: q(0.9),
            max: s[n - 1],
        }
    }
    fn scaled(&self, k: f64) -> Stats {
        Stats {
            n: self.n,
            median: self.median * k,
            min: self.min * k,
            p90: self.p90 * k,
            max: self.max * k,
        }
    }
}

/// Times `f` (warm-up runs first, not counted); returns wall and process-CPU ms per run.
fn time<E>(plan: Plan, mut f: impl FnMut() -> Result<(), E>) -> Result<(Stats, Stats), E> {
    for _ in 0..plan.warmup {
        f()?;
    }
    let mut wall = Vec::new();
    let mut cpu = Vec::new();
    let started = Instant::now();
    while wall.len() < plan.max_iters
        && (wall.len() < plan.min_iters || started.elapsed() < plan.budget)
    {
        let c0 = process_cpu_ms();
        let t0 = Instant::now();
        f()?;
        wall.push(t0.elapsed().as_secs_f64() * 1e3);
        cpu.push(process_cpu_ms() - c0);
    }
    Ok((Stats::of(&wall), Stats::of(&cpu)))
}

/// One measured figure.
#[derive(Debug, Clone, serde::Serialize)]
struct Record {
    section: &'static str,
    model: String,
    case: String,
    /// ONNX Runtime intra-op threads (None: no ONNX Runtime involved).
    threads: Option<usize>,
    /// Audio seconds processed per run (0 when not audio-bound, e.g. session creation).
    audio_s: f64,
    wall_ms: Stats,
    cpu_ms: Stats,
}

impl Record {
    /// Wall ms per audio second.
    fn ms_per_audio_s(&self) -> Stats {
        self.wall_ms.scaled(1.0 / self.audio_s)
    }
    /// Audio seconds per wall second, from the median run.
    fn realtime(&self) -> f64 {
        self.audio_s / (self.wall_ms.median / 1e3)
    }
}

/// Deterministic test signal: a machine-like hum (fundamental + decaying harmonics) with
/// slow amplitude modulation and white noise. The content does not change the cost of any
/// stage; it only keeps the numbers finite and non-trivial.
fn machine_sound(seconds: f64, rate: u32, f0: f64, seed: u64) -> Vec<f32> {
    let n = (seconds * f64::from(rate)).round() as usize;
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut noise = move || {
        // xorshift64*: enough for test noise.
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        let x = state.wrapping_mul(0x2545_F491_4F6C_DD1D);
        (x >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    };
    let tau = 2.0 * std::f64::consts::PI;
    (0..n)
        .map(|i| {
            let t = i as f64 / f64::from(rate);
            let mut v = 0.0;
            for h in 1..=8 {
                v += (tau * f0 * h as f64 * t).sin() / h as f64;
            }
            let am = 1.0 + 0.2 * (tau * 0.7 * t).sin();
            (0.15 * am * v + 0.05 * noise()) as f32
        })
        .collect()
}

fn model_dirs(args: &Args) -> Vec<PathBuf> {
    let bundled = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/panns-mobilenetv1-seeded");
    let mut out = vec![bundled];
    if args.quick {
        return out;
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir(&args.models)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.join("card.json").is_file())
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    for p in found {
        // The bundled model is also generated into test-models: measure it once.
        let same_name = p.file_name() == out[0].file_name();
        if !same_name {
            out.push(p);
        }
    }
    out
}

fn bench_logmel(plan: Plan, out: &mut Vec<Record>) {
    for (name, fe, rate) in [
        (
            "32 kHz (Cnn14, MobileNetV1)",
            FrontEnd::panns_32k(),
            32_000u32,
        ),
        ("16 kHz (Cnn14_16k)", FrontEnd::panns_16k(), 16_000),
    ] {
        let mut lm = LogMel::new(&fe, rate);
        for secs in [1.0, 10.0] {
            let x = machine_sound(secs, rate, 97.0, 1);
            let mut buf = Vec::new();
            let (wall, cpu) = time(plan, || {
                lm.compute(&x, &mut buf);
                std::hint::black_box(&buf);
                Ok::<(), ()>(())
            })
            .unwrap_or_else(|()| unreachable!("log-mel cannot fail"));
            out.push(Record {
                section: "logmel",
                model: name.into(),
                case: format!("{secs} s window"),
                threads: None,
                audio_s: secs,
                wall_ms: wall,
                cpu_ms: cpu,
            });
        }
    }
}

fn opts(threads: usize, skip_checksum: bool) -> EmbedOptions {
    EmbedOptions {
        threads,
        skip_checksum,
        ..Default::default()
    }
}

fn bench_sessions(plan: Plan, dir: &Path, out: &mut Vec<Record>) -> anyhow::Result<()> {
    let name = model_name(dir);
    for (case, skip) in [
        ("load: checksum + session", false),
        ("session only (checksum skipped)", true),
    ] {
        let (wall, cpu) = time(plan.few(), || {
            Embedder::load(dir, &opts(1, skip)).map(|e| drop(std::hint::black_box(e)))
        })?;
        out.push(Record {
            section: "session",
            model: name.clone(),
            case: case.into(),
            threads: Some(1),
            audio_s: 0.0,
            wall_ms: wall,
            cpu_ms: cpu,
        });
    }
    Ok(())
}

fn model_name(dir: &Path) -> String {
    dir.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| dir.display().to_string())
}

fn bench_embed(
    plan: Plan,
    e: &mut Embedder,
    name: &str,
    threads: usize,
    out: &mut Vec<Record>,
) -> anyhow::Result<()> {
    let rate = e.sample_rate();
    let one: Vec<Vec<f32>> = (0..8)
        .map(|i| machine_sound(1.0, rate, 90.0 + i as f64, i))
        .collect();
    let ten = machine_sound(10.0, rate, 97.0, 99);
    let mut push = |case: &str, audio_s: f64, (wall, cpu): (Stats, Stats)| {
        out.push(Record {
            section: "embed",
            model: name.into(),
            case: case.into(),
            threads: Some(threads),
            audio_s,
            wall_ms: wall,
            cpu_ms: cpu,
        })
    };
    let r = time(plan, || e.embed(&one[0]).map(drop))?;
    push("embed, batch 1 x 1 s", 1.0, r);
    let views: Vec<&[f32]> = one.iter().map(Vec::as_slice).collect();
    let r = time(plan, || e.embed_batch(&views).map(drop))?;
    push("embed_batch, batch 8 x 1 s", 8.0, r);
    let r = time(plan, || e.embed(&ten).map(drop))?;
    push("embed, 1 x 10 s", 10.0, r);
    // The network alone, on a log-mel computed beforehand: what ONNX Runtime costs.
    let (m1, f1) = e.logmel(&one[0]);
    let r = time(plan, || e.embed_logmel(&m1, f1).map(drop))?;
    push("network only (embed_logmel), 1 x 1 s", 1.0, r);
    let (m10, f10) = e.logmel(&ten);
    let r = time(plan, || e.embed_logmel(&m10, f10).map(drop))?;
    push("network only (embed_logmel), 1 x 10 s", 10.0, r);
    Ok(())
}

fn model_ref(e: &Embedder) -> ModelRef {
    let c = e.card();
    ModelRef {
        name: c.name.clone(),
        architecture: c.architecture.clone(),
        onnx_sha256: c.onnx.sha256.clone(),
        sample_rate: c.sample_rate,
        embedding_dim: c.embedding_dim,
        untrained: c.is_untrained(),
    }
}

/// Generated recordings for learn/score: `normal` and `test` WAV sets in a temp dir.
struct Corpus {
    _dir: tempfile::TempDir,
    normal: Vec<PathBuf>,
    test: Vec<PathBuf>,
    normal_s: f64,
    test_s: f64,
}

fn corpus(quick: bool) -> anyhow::Result<Corpus> {
    let dir = tempfile::tempdir()?;
    let (clips, secs) = if quick { (4, 5.0) } else { (6, 10.0) };
    let mut normal = Vec::new();
    let mut test = Vec::new();
    for i in 0..clips {
        let p = dir.path().join(format!("normal-{i}.wav"));
        let x = machine_sound(secs, WAV_RATE, 95.0 + i as f64, 10 + i as u64);
        earshot::audio::write_wav_i16(&p, &x, WAV_RATE)?;
        normal.push(p);
    }
    for i in 0..clips / 2 {
        let p = dir.path().join(format!("test-{i}.wav"));
        // Slightly off fundamental: the "sounds different" case; cost is the same.
        let x = machine_sound(secs, WAV_RATE, 120.0 + i as f64, 50 + i as u64);
        earshot::audio::write_wav_i16(&p, &x, WAV_RATE)?;
        test.push(p);
    }
    Ok(Corpus {
        _dir: dir,
        normal_s: clips as f64 * secs,
        test_s: (clips / 2) as f64 * secs,
        normal,
        test,
    })
}

/// `earshot learn` and `earshot score` as the CLI runs them (read WAV, downmix, resample,
/// window, embed, fit/calibrate, save; load, embed, score), minus session creation.
fn bench_learn_score(
    plan: Plan,
    e: &mut Embedder,
    name: &str,
    threads: usize,
    c: &Corpus,
    out: &mut Vec<Record>,
) -> anyhow::Result<()> {
    let profile_dir = tempfile::tempdir()?;
    let pdir = profile_dir.path().join("profile");
    let mref = model_ref(e);
    let (wall, cpu) = time(plan.few(), || -> anyhow::Result<()> {
        let mut clips = Vec::new();
        for f in &c.normal {
            let (wins, _) = embed_file(e, f, WINDOW.seconds, WINDOW.hop_seconds)?;
            clips.push(ClipWindows {
                name: model_name(f),
                levels_dbfs: wins.iter().map(|w| w.level_dbfs).collect(),
                impulse_db: wins.iter().map(|w| w.impulse_db).collect(),
                logmels: Vec::new(),
                windows: wins.into_iter().map(|w| (w.start_s, w.embedding)).collect(),
            });
        }
        let (profile, cal) = learn(&clips, &LearnOptions::default(), mref.clone(), WINDOW)?;
        profile.save(&pdir, &cal)?;
        Ok(())
    })?;
    out.push(Record {
        section: "pipeline",
        model: name.into(),
        case: "learn".into(),
        threads: Some(threads),
        audio_s: c.normal_s,
        wall_ms: wall,
        cpu_ms: cpu,
    });
    let (wall, cpu) = time(plan.few(), || -> anyhow::Result<()> {
        let profile = Profile::load(&pdir)?;
        let scorer = Scorer::new(&profile)?;
        for f in &c.test {
            let (wins, _) = embed_file(e, f, WINDOW.seconds, WINDOW.hop_seconds)?;
            for w in &wins {
                std::hint::black_box(scorer.score(&w.embedding));
            }
        }
        Ok(())
    })?;
    out.push(Record {
        section: "pipeline",
        model: name.into(),
        case: "score".into(),
        threads: Some(threads),
        audio_s: c.test_s,
        wall_ms: wall,
        cpu_ms: cpu,
    });
    Ok(())
}

fn machine() -> serde_json::Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    serde_json::json!({
        "cpu": cpu,
        "cores": cores,
        "onnxruntime": earshot::embed::runtime::ORT_VERSION,
        "loadavg_start": loadavg(),
    })
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn main() -> anyhow::Result<()> {
    let Some(args) = parse_args()? else {
        return Ok(());
    };
    let started = Instant::now();
    let plan = Plan::new(args.quick);
    let mach = machine();
    if !args.json {
        println!(
            "earshot core benchmark: {} ({} cores), ONNX Runtime {}, load average at start {}",
            mach["cpu"].as_str().unwrap_or(""),
            mach["cores"],
            mach["onnxruntime"].as_str().unwrap_or(""),
            mach["loadavg_start"].as_str().unwrap_or("")
        );
        println!(
            "Models have seeded (untrained) weights: speed does not depend on the weights. Figures: median over runs after warm-up, [min / p90 / max]."
        );
    }
    let mut recs = Vec::new();
    bench_logmel(plan, &mut recs);
    let corpus = corpus(args.quick)?;
    for dir in model_dirs(&args) {
        let name = model_name(&dir);
        // Progress on stderr, so `--json` keeps stdout clean.
        eprintln!("measuring {name} ...");
        bench_sessions(plan, &dir, &mut recs)?;
        for &threads in &args.threads {
            let mut e = Embedder::load(&dir, &opts(threads, true))?;
            bench_embed(plan, &mut e, &name, threads, &mut recs)?;
            bench_learn_score(plan, &mut e, &name, threads, &corpus, &mut recs)?;
        }
    }
    if args.json {
        let doc = serde_json::json!({
            "machine": mach,
            "loadavg_end": loadavg(),
            "quick": args.quick,
            "window": {"seconds": WINDOW.seconds, "hop_seconds": WINDOW.hop_seconds},
            "wav_rate": WAV_RATE,
            "records": recs,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        print_tables(&recs);
        println!(
            "\nload average at end {}; total {:.0} s",
            loadavg(),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

fn spread(s: &Stats) -> String {
    format!(
        "{:.2} [{:.2} / {:.2} / {:.2}]",
        s.median, s.min, s.p90, s.max
    )
}

fn print_tables(recs: &[Record]) {
    let of = |sec: &'static str| recs.iter().filter(move |r| r.section == sec);
    println!("\n## Log-mel (Rust front end, one thread)");
    println!(
        "{:<30} {:<12} {:>38} {:>16} {:>5}",
        "front end", "window", "wall ms per audio s [min/p90/max]", "CPU ms per s", "runs"
    );
    for r in of("logmel") {
        println!(
            "{:<30} {:<12} {:>38} {:>16.2} {:>5}",
            r.model,
            r.case,
            spread(&r.ms_per_audio_s()),
            r.cpu_ms.median / r.audio_s,
            r.wall_ms.n
        );
    }
    println!("\n## Embedding (ONNX Runtime intra-op threads as given)");
    println!(
        "{:<26} {:>3} {:<40} {:>38} {:>14} {:>10} {:>5}",
        "model",
        "thr",
        "case",
        "wall ms per audio s [min/p90/max]",
        "CPU ms per s",
        "x realtime",
        "runs"
    );
    for r in of("embed") {
        println!(
            "{:<26} {:>3} {:<40} {:>38} {:>14.2} {:>10.1} {:>5}",
            r.model,
            r.threads.unwrap_or(0),
            r.case,
            spread(&r.ms_per_audio_s()),
            r.cpu_ms.median / r.audio_s,
            r.realtime(),
            r.wall_ms.n
        );
    }
    println!("\n## Front end's share of `embed` (1 - network only / whole embed, medians)");
    for r in of("embed").filter(|r| r.case.starts_with("network only")) {
        let whole_case = if r.audio_s > 1.0 {
            "embed, 1 x 10 s"
        } else {
            "embed, batch 1 x 1 s"
        };
        if let Some(w) = recs.iter().find(|w| {
            w.section == "embed"
                && w.model == r.model
                && w.threads == r.threads
                && w.case == whole_case
        }) {
            println!(
                "{:<26} thr {} {:>5} s: embed {:.2} ms, network {:.2} ms, front end share {:.1} %",
                r.model,
                r.threads.unwrap_or(0),
                r.audio_s,
                w.wall_ms.median,
                r.wall_ms.median,
                100.0 * (1.0 - r.wall_ms.median / w.wall_ms.median)
            );
        }
    }
    println!(
        "\n## learn / score throughput (generated {} Hz WAVs, window {} s hop {} s; read, resample, embed, fit/score; session creation excluded)",
        WAV_RATE, WINDOW.seconds, WINDOW.hop_seconds
    );
    println!(
        "{:<26} {:>3} {:<6} {:>8} {:>34} {:>22} {:>5}",
        "model",
        "thr",
        "step",
        "audio s",
        "wall s per run [min/p90/max]",
        "audio s per wall s",
        "runs"
    );
    for r in of("pipeline") {
        println!(
            "{:<26} {:>3} {:<6} {:>8.0} {:>34} {:>22.1} {:>5}",
            r.model,
            r.threads.unwrap_or(0),
            r.case,
            r.audio_s,
            spread(&r.wall_ms.scaled(1e-3)),
            r.realtime(),
            r.wall_ms.n
        );
    }
    println!("\n## Session creation (Embedder::load, intra-op threads 1)");
    for r in of("session") {
        println!(
            "{:<26} {:<34} {:>10} ms",
            r.model,
            r.case,
            spread(&r.wall_ms)
        );
    }
}
