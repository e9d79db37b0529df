//! One module per command. Each has an `Args` struct (clap) and a `run` function that
//! returns `anyhow::Result`: this is the edge where library errors become user messages.

pub mod devices;
pub mod eval;
pub mod index;
pub mod learn;
pub mod run;
pub mod score;
pub mod synth;

/// Logs go to stderr so that machine-readable output on stdout stays clean.
pub fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}

use anyhow::Context;
use earshot::config::Settings;
use earshot::embed::Embedder;
use earshot::embed::file::embed_file;
use earshot::score::learn::ClipWindows;
use earshot::score::profile::{ModelRef, WindowSpec};
use std::path::{Path, PathBuf};

/// Loads settings from `--config` (or defaults), with environment overrides.
pub fn settings(config: Option<&Path>) -> anyhow::Result<Settings> {
    Ok(Settings::load(config)?)
}

/// Loads the model the settings name, or `model` when given on the command line.
pub fn embedder(settings: &Settings, model: Option<&Path>) -> anyhow::Result<Embedder> {
    let dir = model
        .map(Path::to_owned)
        .unwrap_or_else(|| settings.model_dir());
    let e = Embedder::load(&dir, &settings.embed_options())
        .with_context(|| format!("loading model {}", dir.display()))?;
    if e.card().is_untrained() {
        tracing::warn!(
            model = %e.card().name,
            "this model has untrained (seeded random) weights: fine for trying earshot out, but convert the AudioSet-pretrained PANNs checkpoint for real machines (models/README.md)"
        );
    }
    Ok(e)
}

pub fn model_ref(e: &Embedder) -> ModelRef {
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

/// Expands directories into the WAV files below them (sorted, so runs are repeatable).
pub fn collect_wavs(inputs: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in inputs {
        if p.is_dir() {
            let mut found = Vec::new();
            walk(p, &mut found).with_context(|| format!("reading directory {}", p.display()))?;
            found.sort();
            if found.is_empty() {
                anyhow::bail!(
                    "{}: no .wav files in this directory (searched recursively); point it at the folder holding the recordings or name the WAV files",
                    p.display()
                );
            }
            out.extend(found);
        } else if p.exists() {
            out.push(p.clone());
        } else {
            anyhow::bail!("{}: no such file or directory; check the path", p.display());
        }
    }
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let p = entry?.path();
        if p.is_dir() {
            walk(&p, out)?;
        } else if p.extension().is_some_and(|e| e.eq_ignore_ascii_case("wav")) {
            out.push(p);
        }
    }
    Ok(())
}

/// Embeds normal recordings window by window, warning about odd but usable input.
pub fn embed_normals(
    e: &mut Embedder,
    files: &[PathBuf],
    window: WindowSpec,
) -> anyhow::Result<Vec<ClipWindows>> {
    let mut clips = Vec::with_capacity(files.len());
    for f in files {
        let (wins, report) = embed_file(e, f, window.seconds, window.hop_seconds)?;
        warn_report(f, &report);
        let name = f
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| f.display().to_string());
        clips.push(ClipWindows {
            name,
            levels_dbfs: wins.iter().map(|w| w.level_dbfs).collect(),
            windows: wins.into_iter().map(|w| (w.start_s, w.embedding)).collect(),
        });
    }
    Ok(clips)
}

pub fn warn_report(f: &Path, r: &earshot::embed::file::FileReport) {
    if r.non_finite > 0 {
        tracing::warn!(file = %f.display(), samples = r.non_finite, "NaN/infinite samples replaced by silence");
    }
    if r.clipped_fraction > 0.01 {
        tracing::warn!(file = %f.display(), fraction = r.clipped_fraction, "recording is clipped (at full scale): lower the input gain");
    }
    if r.shorter_than_window {
        tracing::warn!(file = %f.display(), seconds = r.seconds, "recording is shorter than one window: embedded whole");
    }
}

/// The window `learn` and `eval` embed with: the config's, checked against the model, with the
/// level normalisation applied to the embedder.
pub fn learn_window(s: &Settings, e: &mut Embedder) -> anyhow::Result<WindowSpec> {
    s.window
        .check("window.", Some(e.card().min_window_seconds()))
        .map_err(|(k, d)| s.invalid(&k, d))?;
    e.set_level_dbfs(s.window.level_dbfs);
    Ok(WindowSpec {
        seconds: s.window.seconds,
        hop_seconds: s.window.hop_seconds,
        level_dbfs: s.window.level_dbfs,
    })
}

/// The config's `[learn]` section as learn options for `machine`.
pub fn learn_options(s: &Settings, machine: String) -> earshot::score::LearnOptions {
    earshot::score::LearnOptions {
        machine,
        kmeans_k: (s.learn.kmeans_k > 0).then_some(s.learn.kmeans_k),
        knn_k: s.learn.knn_k,
        target_far: s.learn.target_far,
        holdout_fraction: s.learn.holdout_fraction,
    }
}
