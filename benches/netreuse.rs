//! Issue 14 item 3, measured before it is built: what reusing the network's convolutional work
//! across overlapping windows would cost in fidelity and save in CPU.
//!
//! The model is split (outside this bench, with the `onnx` Python package:
//! `onnx.utils.extract_model`) into a trunk (log-mel -> frame features, time stride 32 frames)
//! and a head (frequency mean, time max + mean, fc1 -> embedding). The trunk runs once over the
//! whole stream's log-mel; each window's embedding is the head on the window's slice of those
//! features. That is compared with the exact per-window embedding (`Embedder::embed`): cosine
//! distribution, and CPU per audio second of both.
//!
//! `cargo bench --bench netreuse -- --model DIR --trunk trunk.onnx --head head.onnx --wav FILE`
//! (the WAV at the model's rate, mono; windows of 96 frames every 32 frames: 0.96 s / 0.32 s
//! for PANNs, on the feature grid). Prints JSON; asserts nothing.

use earshot::dsp::LogMel;
use earshot::embed::{EmbedOptions, Embedder, runtime};
use ndarray::{ArrayView4, Axis, s};
use ort::session::Session;
use ort::value::TensorRef;
use std::path::PathBuf;

fn cpu_s() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid, writable timespec; constant clock id.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb).max(1e-30)
}

fn main() -> anyhow::Result<()> {
    let raw: Vec<String> = std::env::args().skip(1).collect();
    if !raw.iter().any(|a| a == "--bench") {
        println!("benches/netreuse: not run under `cargo test`");
        return Ok(());
    }
    let arg = |name: &str| -> anyhow::Result<PathBuf> {
        let i = raw
            .iter()
            .position(|a| a == name)
            .ok_or_else(|| anyhow::anyhow!("{name} is required"))?;
        raw.get(i + 1)
            .map(PathBuf::from)
            .ok_or_else(|| anyhow::anyhow!("{name} needs a value"))
    };
    let (model, trunk_p, head_p, wav) = (
        arg("--model")?,
        arg("--trunk")?,
        arg("--head")?,
        arg("--wav")?,
    );
    let opts = EmbedOptions {
        threads: 1,
        ..Default::default()
    };
    let mut e = Embedder::load(&model, &opts)?;
    let env = runtime::environment().ok_or_else(|| anyhow::anyhow!("ONNX Runtime not loaded"))?;
    let session = |p: &PathBuf| -> anyhow::Result<Session> {
        let err = |e: String| anyhow::anyhow!("{}: {e}", p.display());
        Session::builder(env)
            .map_err(|e| err(e.to_string()))?
            .with_intra_threads(1)
            .map_err(|e| err(e.to_string()))?
            .commit_from_file(p)
            .map_err(|e| err(e.to_string()))
    };
    let mut trunk = session(&trunk_p)?;
    let mut head = session(&head_p)?;
    let clip = earshot::audio::read_wav(&wav)?;
    anyhow::ensure!(
        clip.sample_rate == e.sample_rate() && clip.channels == 1,
        "give a mono WAV at the model's rate ({} Hz)",
        e.sample_rate()
    );
    let x = clip.samples;
    let fe = e.card().frontend.clone();
    let mels = fe.mel_bins;
    let audio_s = x.len() as f64 / f64::from(e.sample_rate());
    // Windows on the trunk's feature grid: 96 frames (3 features) every 32 frames.
    let (stride, win_frames) = (32usize, 96usize);
    let hop = stride * fe.hop_size;
    let win = (win_frames - 1) * fe.hop_size + 1;
    let starts: Vec<usize> = (0..)
        .map(|k| k * hop)
        .take_while(|s| s + win <= x.len())
        .collect();

    // Exact: every window through the whole network.
    let c0 = cpu_s();
    let mut exact = Vec::new();
    for &s0 in &starts {
        exact.push(e.embed_at(s0 as u64, &x[s0..s0 + win])?.embedding);
    }
    let exact_cpu = cpu_s() - c0;

    // Reused: the trunk once over the stream, the head per window.
    let c0 = cpu_s();
    let mut lm = LogMel::new(&fe, e.sample_rate());
    let mut mel = Vec::new();
    let frames = lm.compute(&x, &mut mel);
    let view = ArrayView4::from_shape((1, 1, frames, mels), mel.as_slice())?;
    let out = trunk.run(ort::inputs!["logmel" => TensorRef::from_array_view(view)?])?;
    let feats = out[0].try_extract_array::<f32>()?.to_owned();
    drop(out);
    let trunk_cpu = cpu_s() - c0;
    let shape = feats.shape().to_vec();
    let c0 = cpu_s();
    let mut approx = Vec::new();
    for &s0 in &starts {
        let j = s0 / fe.hop_size / stride;
        let slice = feats
            .slice(s![.., .., j..j + win_frames / stride, ..])
            .as_standard_layout()
            .to_owned();
        let o = head.run(ort::inputs![TensorRef::from_array_view(slice.view())?])?;
        approx.push(
            o[0].try_extract_array::<f32>()?
                .iter()
                .copied()
                .collect::<Vec<f32>>(),
        );
    }
    let head_cpu = cpu_s() - c0;
    let _ = feats.len_of(Axis(0));

    // Check of the split itself: trunk + head on one window's own log-mel is the whole network.
    let (wm, wf) = e.logmel(&x[starts[0]..starts[0] + win]);
    let view = ArrayView4::from_shape((1, 1, wf, mels), wm.as_slice())?;
    let f1 = trunk.run(ort::inputs!["logmel" => TensorRef::from_array_view(view)?])?[0]
        .try_extract_array::<f32>()?
        .to_owned();
    let o = head.run(ort::inputs![TensorRef::from_array_view(f1.view())?])?;
    let split: Vec<f32> = o[0].try_extract_array::<f32>()?.iter().copied().collect();
    let split_cos = cosine(&split, &exact[0]);
    drop(o);

    // Does it still separate? With --onset S (the WAV's fault onset): windows ending before
    // S/1.5 are the normal reference, the k-NN (k = 1) cosine distance to them scores the
    // held-out normal windows (the rest before S) against the fault windows (from S on); AUC
    // for both ways. A proxy on one recording, not the dev-set AUC.
    let onset = raw
        .iter()
        .position(|a| a == "--onset")
        .and_then(|i| raw.get(i + 1))
        .and_then(|v| v.parse::<f64>().ok());
    let rate = f64::from(e.sample_rate());
    let auc = |embs: &[Vec<f32>], onset: f64| -> f64 {
        let t = |i: usize| starts[i] as f64 / rate;
        let end = |i: usize| t(i) + win as f64 / rate;
        let reference: Vec<usize> = (0..embs.len()).filter(|&i| end(i) < onset / 1.5).collect();
        let score = |i: usize| {
            1.0 - reference
                .iter()
                .map(|&r| cosine(&embs[i], &embs[r]))
                .fold(f64::MIN, f64::max)
        };
        let normal: Vec<f64> = (0..embs.len())
            .filter(|&i| t(i) >= onset / 1.5 && end(i) < onset)
            .map(score)
            .collect();
        let fault: Vec<f64> = (0..embs.len())
            .filter(|&i| t(i) >= onset)
            .map(score)
            .collect();
        let mut wins = 0.0;
        for f in &fault {
            for n in &normal {
                wins += if f > n {
                    1.0
                } else if f == n {
                    0.5
                } else {
                    0.0
                };
            }
        }
        wins / (fault.len() * normal.len()).max(1) as f64
    };
    let aucs = onset.map(|o| (auc(&exact, o), auc(&approx, o)));

    let mut cos: Vec<f64> = exact
        .iter()
        .zip(&approx)
        .map(|(a, b)| cosine(a, b))
        .collect();
    cos.sort_by(f64::total_cmp);
    let q = |p: f64| cos[((p * (cos.len() - 1) as f64).round() as usize).min(cos.len() - 1)];
    let doc = serde_json::json!({
        "model": e.card().name,
        "audio_s": audio_s,
        "windows": starts.len(),
        "window_s": win as f64 / f64::from(e.sample_rate()),
        "hop_s": hop as f64 / f64::from(e.sample_rate()),
        "trunk_features_shape": shape,
        "split_check_cosine": split_cos,
        "proxy_auc_exact_vs_reused": aucs,
        "exact_cpu_per_audio_s": exact_cpu / audio_s,
        "reused_cpu_per_audio_s": (trunk_cpu + head_cpu) / audio_s,
        "cosine_reused_vs_exact": {"min": q(0.0), "p05": q(0.05), "median": q(0.5), "max": q(1.0)},
    });
    println!("{}", serde_json::to_string_pretty(&doc)?);
    Ok(())
}
