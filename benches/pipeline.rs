//! The in-process half of the side-by-side benchmark (`scripts/bench.sh --pipeline`, driven by
//! scripts/bench/pipeline.py): on one WAV and one model it measures
//!
//! - the limit: one ONNX Runtime pass over the audio in windows without overlap, on log-mels
//!   computed beforehand (the network alone, the least any window-based pipeline can spend);
//! - the embedding stage of the streaming pipeline (decode, mono, resample, windows, log-mel,
//!   network: `embed_file`, which `learn` and `score` use) at the given hops, with the streamed
//!   front end (frames shared by overlapping windows computed once) and with the per-window
//!   front end it replaced, on the same windows.
//!
//! CPU is the process's CPU time (every thread, ONNX Runtime's pool included) for the measured
//! part only, median of three passes: model loading is outside it. Prints one JSON document; asserts nothing about time.
//!
//! `cargo bench --bench pipeline -- --model DIR --wav FILE [--window S] [--hops S,S,..]
//!  [--threads N] [--level DBFS]`

use earshot::embed::file::{FileWindows, embed_file};
use earshot::embed::{EmbedOptions, Embedder};
use std::path::PathBuf;
use std::time::Instant;

struct Args {
    model: PathBuf,
    wav: PathBuf,
    window: f64,
    hops: Vec<f64>,
    threads: usize,
    level: Option<f64>,
}

fn parse_args() -> anyhow::Result<Option<Args>> {
    let raw: Vec<String> = std::env::args().skip(1).collect();
    if !raw.iter().any(|a| a == "--bench") {
        println!("benches/pipeline: not run under `cargo test`; run scripts/bench.sh --pipeline");
        return Ok(None);
    }
    let mut model = None;
    let mut wav = None;
    let mut a = Args {
        model: PathBuf::new(),
        wav: PathBuf::new(),
        window: 1.0,
        hops: Vec::new(),
        threads: 1,
        level: None,
    };
    let mut it = raw.into_iter();
    let num = |flag: &str, v: Option<String>| -> anyhow::Result<f64> {
        let v = v.ok_or_else(|| anyhow::anyhow!("{flag} needs a value"))?;
        v.parse()
            .map_err(|_| anyhow::anyhow!("{flag} {v:?}: give a number"))
    };
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--bench" => {}
            "--model" => model = it.next().map(PathBuf::from),
            "--wav" => wav = it.next().map(PathBuf::from),
            "--window" => a.window = num("--window", it.next())?,
            "--threads" => a.threads = num("--threads", it.next())? as usize,
            "--level" => a.level = Some(num("--level", it.next())?),
            "--hops" => {
                let v = it
                    .next()
                    .ok_or_else(|| anyhow::anyhow!("--hops needs S,S,..."))?;
                a.hops = v
                    .split(',')
                    .map(|h| h.parse::<f64>())
                    .collect::<Result<_, _>>()
                    .map_err(|_| anyhow::anyhow!("--hops {v:?}: give seconds, comma-separated"))?;
            }
            other => anyhow::bail!(
                "unknown flag {other:?}; flags: --model DIR --wav FILE --window S --hops S,.. --threads N --level DBFS"
            ),
        }
    }
    a.model = model.ok_or_else(|| anyhow::anyhow!("--model DIR is required"))?;
    a.wav = wav.ok_or_else(|| anyhow::anyhow!("--wav FILE is required"))?;
    if a.hops.is_empty() {
        a.hops = vec![a.window, a.window / 2.0, a.window / 4.0];
    }
    Ok(Some(a))
}

/// CPU time of the whole process (all threads), in seconds.
fn process_cpu_s() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant Linux supports.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return f64::NAN;
    }
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

/// Runs `f` three times and returns (its last result, median CPU s, median wall s): one pass
/// over a minute of audio is a fraction of a second, which a shared machine can disturb.
fn measure<T>(mut f: impl FnMut() -> anyhow::Result<T>) -> anyhow::Result<(T, f64, f64)> {
    let (mut cpu, mut wall) = (Vec::new(), Vec::new());
    let mut last = None;
    for _ in 0..3 {
        let (c0, t0) = (process_cpu_s(), Instant::now());
        last = Some(f()?);
        cpu.push(process_cpu_s() - c0);
        wall.push(t0.elapsed().as_secs_f64());
    }
    cpu.sort_by(f64::total_cmp);
    wall.sort_by(f64::total_cmp);
    let v = last.ok_or_else(|| anyhow::anyhow!("nothing measured"))?;
    Ok((v, cpu[1], wall[1]))
}

/// All windows of the file at the model's rate (decoded and resampled outside the timing).
fn windows(a: &Args, rate: u32, hop: f64) -> anyhow::Result<Vec<(u64, Vec<f32>)>> {
    let mut w = FileWindows::open(&a.wav, rate, a.window, hop)?;
    let mut out = Vec::new();
    while let Some(x) = w.next_window()? {
        out.push(x);
    }
    Ok(out)
}

fn main() -> anyhow::Result<()> {
    let Some(a) = parse_args()? else {
        return Ok(());
    };
    let opts = EmbedOptions {
        threads: a.threads,
        ..Default::default()
    };
    let mut e = Embedder::load(&a.model, &opts)?;
    e.set_level_dbfs(a.level);
    let rate = e.sample_rate();
    let audio_s = earshot::audio::WavStream::open(&a.wav)
        .map(|s| s.frames_expected() as f64 / f64::from(s.sample_rate()))?;

    // The limit: the network alone over windows without overlap, log-mel made beforehand.
    let plain = windows(&a, rate, a.window)?;
    let mels: Vec<(Vec<f32>, usize)> = plain.iter().map(|(_, w)| e.logmel(w)).collect();
    if let Some((m, f)) = mels.first() {
        e.embed_logmel(m, *f)?; // warm-up: first-run allocations are not the steady state
    }
    let (_, limit_cpu, limit_wall) = measure(|| {
        for (m, f) in &mels {
            e.embed_logmel(m, *f)?;
        }
        Ok(())
    })?;
    let limit = limit_cpu / audio_s;

    let mut rows = Vec::new();
    for &hop in &a.hops {
        // embed_file: the whole offline path with the streamed front end.
        let before = e.frame_counts();
        let ((embs, _), cpu, wall) = measure(|| Ok(embed_file(&mut e, &a.wav, a.window, hop)?))?;
        let after = e.frame_counts();
        // Frames of one pass (the measurement made three).
        let per_pass = |a: u64, b: u64| (a - b) / 3;
        // The per-window front end on the same windows and batches (decode and resampling
        // are outside this timing: it is the front end + network only).
        let ws = windows(&a, rate, hop)?;
        let (_, pw_cpu, _) = measure(|| {
            for batch in ws.chunks(8) {
                let views: Vec<&[f32]> = batch.iter().map(|(_, w)| w.as_slice()).collect();
                e.embed_batch(&views)?;
            }
            Ok(())
        })?;
        let (_, st_cpu, _) = measure(|| {
            for batch in ws.chunks(8) {
                let views: Vec<(u64, &[f32])> =
                    batch.iter().map(|(s, w)| (*s, w.as_slice())).collect();
                e.embed_batch_at(&views)?;
            }
            Ok(())
        })?;
        rows.push(serde_json::json!({
            "hop_s": hop,
            "windows": embs.len(),
            "embed_file_cpu_per_audio_s": cpu / audio_s,
            "embed_file_wall_s": wall,
            "embed_file_ratio_to_limit": cpu / audio_s / limit,
            "frames_computed": per_pass(after.0, before.0),
            "frames_reused": per_pass(after.1, before.1),
            "front_end_and_network_cpu_per_audio_s": {
                "per_window": pw_cpu / audio_s,
                "streamed": st_cpu / audio_s,
            },
        }));
    }
    let doc = serde_json::json!({
        "model": e.card().name,
        "wav": a.wav.display().to_string(),
        "audio_s": audio_s,
        "window_s": a.window,
        "threads": a.threads,
        "limit": {
            "what": "network only, windows without overlap, log-mel made beforehand",
            "windows": mels.len(),
            "cpu_per_audio_s": limit,
            "wall_s": limit_wall,
        },
        "embed": rows,
    });
    println!("{}", serde_json::to_string_pretty(&doc)?);
    Ok(())
}
