//! One module per command. Each has an `Args` struct (clap) and a `run` function that
//! returns `anyhow::Result`: this is the edge where library errors become user messages.

pub mod catalog;
pub mod check;
pub mod devices;
pub mod eval;
pub mod events;
pub mod feedback;
pub mod index;
pub mod learn;
pub mod run;
pub mod score;
pub mod search;
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
use earshot::embed::{Chunk, EmbedMode};
use earshot::score::learn::ClipWindows;
use earshot::score::profile::{ModelRef, WindowSpec};
use std::path::{Path, PathBuf};

/// Loads settings from `--config` (or defaults), with environment overrides.
pub fn settings(config: Option<&Path>) -> anyhow::Result<Settings> {
    Ok(Settings::load(config)?)
}

/// Loads the model the settings name, or `model` when given on the command line.
pub fn embedder(settings: &Settings, model: Option<&Path>) -> anyhow::Result<Embedder> {
    let dir = match model {
        Some(m) => m.to_owned(),
        None => settings.find_model_dir()?,
    };
    let e = Embedder::load(&dir, &settings.embed_options())
        .with_context(|| format!("loading model {}", dir.display()))?;
    if e.card().is_untrained() {
        tracing::warn!(
            model = %e.card().name,
            "this model has untrained (seeded random) weights: fine for trying earshot out, but use the pretrained models/aisfx-cnn9 or a converted PANNs checkpoint for real machines (models/README.md)"
        );
    }
    if let Some(credit) = &e.card().provenance.attribution {
        tracing::info!(model = %e.card().name, "{credit}");
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

/// Expands directories into the WAV files below them (sorted, so runs are repeatable). A file
/// reached twice (named twice, or through a symlink) is kept once, and symlink loops are not
/// followed round.
pub fn collect_wavs(inputs: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for p in inputs {
        if p.is_dir() {
            let (found, repeated) = earshot::files::walk_wavs(p, &mut seen)
                .with_context(|| format!("reading directory {}", p.display()))?;
            if found.is_empty() && repeated == 0 {
                anyhow::bail!(
                    "{}: no .wav files in this directory (searched recursively); point it at the folder holding the recordings or name the WAV files",
                    p.display()
                );
            }
            out.extend(found);
        } else if p.exists() {
            if seen.insert(std::fs::canonicalize(p).unwrap_or_else(|_| p.clone())) {
                out.push(p.clone());
            }
        } else {
            anyhow::bail!("{}: no such file or directory; check the path", p.display());
        }
    }
    Ok(out)
}

/// Embeds normal recordings window by window, warning about odd but usable input. Any file
/// that cannot be embedded is an error.
pub fn embed_normals(
    e: &mut Embedder,
    files: &[PathBuf],
    window: WindowSpec,
) -> anyhow::Result<Vec<ClipWindows>> {
    let (clips, mut failed) = embed_normals_skipping(e, files, window);
    match failed.is_empty() {
        true => Ok(clips),
        false => Err(failed.swap_remove(0).1),
    }
}

/// Like [`embed_normals`], but a file that cannot be embedded is returned with its error
/// beside the clips of the others instead of stopping them.
pub fn embed_normals_skipping(
    e: &mut Embedder,
    files: &[PathBuf],
    window: WindowSpec,
) -> (Vec<ClipWindows>, Vec<(PathBuf, anyhow::Error)>) {
    // Names (and so window ids) are unique per path even when folders share file names.
    let names = earshot::score::learn::clip_names(files);
    let mut clips = Vec::with_capacity(files.len());
    let mut failed = Vec::new();
    for (f, name) in files.iter().zip(names) {
        match embed_file(e, f, window.seconds, window.hop_seconds) {
            Ok((wins, report)) => {
                warn_report(f, &report);
                clips.push(ClipWindows {
                    name,
                    levels_dbfs: wins.iter().map(|w| w.level_dbfs).collect(),
                    impulse_db: wins.iter().map(|w| w.impulse_db).collect(),
                    logmels: wins.iter().map(|w| w.logmel.clone()).collect(),
                    windows: wins.into_iter().map(|w| (w.start_s, w.embedding)).collect(),
                });
            }
            Err(err) => failed.push((f.clone(), err.into())),
        }
    }
    (clips, failed)
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
/// level normalisation and the mode applied to the embedder. In chunk-max mode the hop is
/// rounded to whole front-end frames and the window to whole hops
/// ([`earshot::embed::Chunk::round_window`]); the profile records what was used.
pub fn learn_window(s: &Settings, e: &mut Embedder) -> anyhow::Result<WindowSpec> {
    s.window
        .check("window.", Some(e.card().min_window_seconds()))
        .map_err(|(k, d)| s.invalid(&k, d))?;
    let (seconds, hop_seconds) = match s.window.embed {
        EmbedMode::Exact => (s.window.seconds, s.window.hop_seconds),
        EmbedMode::ChunkMax => {
            let (w, h) = Chunk::round_window(e.card(), s.window.seconds, s.window.hop_seconds);
            if (w - s.window.seconds).abs() > 1e-9 || (h - s.window.hop_seconds).abs() > 1e-9 {
                tracing::info!(
                    window_s = w,
                    hop_s = h,
                    "chunk-max: window and hop rounded to whole front-end frames of the model"
                );
            }
            (w, h)
        }
    };
    let window = WindowSpec {
        seconds,
        hop_seconds,
        level_dbfs: s.window.level_dbfs,
        embed: s.window.embed,
    };
    e.use_window(&window)?;
    Ok(window)
}

/// The config's `[learn]` section as learn options for `machine`.
pub fn learn_options(s: &Settings, machine: String) -> earshot::score::LearnOptions {
    earshot::score::LearnOptions {
        machine,
        kmeans_k: (s.learn.kmeans_k > 0).then_some(s.learn.kmeans_k),
        knn_k: s.learn.knn_k,
        target_far: s.learn.target_far,
        holdout_fraction: s.learn.holdout_fraction,
        false_alarms_per_day: s.learn.false_alarms_per_day,
        decide: Default::default(),
        mel_bins: None,
        decide_on: s.learn.decide_on.clone(),
    }
}
