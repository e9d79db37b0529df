//! `earshot learn`: normal recordings -> profile directory.

use anyhow::Context;
use earshot::score;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct LearnArgs {
    /// Normal recordings: WAV files or directories (searched recursively for .wav).
    #[arg(long, required = true, num_args = 1..)]
    normal: Vec<PathBuf>,
    /// Profile directory to write.
    #[arg(long)]
    out: PathBuf,
    /// Config file (TOML); `EARSHOT_*__*` environment variables override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Model directory (overrides `model.dir`).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Machine label stored in the profile (default: the output directory's name).
    #[arg(long)]
    machine: Option<String>,
}

pub fn run(a: LearnArgs) -> anyhow::Result<()> {
    let s = super::settings(a.config.as_deref())?;
    let files = super::collect_wavs(&a.normal)?;
    let mut e = super::embedder(&s, a.model.as_deref())?;
    let window = super::learn_window(&s, &mut e)?;
    // The log-mel statistics (the `mel` and `fused` scorers) are fitted from the windows'.
    e.set_keep_logmel(true);
    let started = std::time::Instant::now();
    let clips = super::embed_normals(&mut e, &files, window)?;
    let machine = a.machine.clone().unwrap_or_else(|| {
        a.out
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "machine".into())
    });
    let mut opts = super::learn_options(&s, machine);
    opts.mel_bins = Some(e.card().frontend.mel_bins);
    let (profile, cal) = score::learn(&clips, &opts, super::model_ref(&e), window)?;
    // A typical normal clip for the evidence spectrograms' reference panel (optional).
    let names = score::learn::clip_names(&files);
    let reference = earshot::evidence::reference::choose(&profile, &files, &names).and_then(|f| {
        match earshot::evidence::reference::encode(&f) {
            Ok(b) => Some(b),
            Err(e) => {
                tracing::warn!(error = %e, "no normal reference clip in the profile");
                None
            }
        }
    });
    let optional: Vec<(&str, Vec<u8>)> = reference
        .map(|b| (earshot::evidence::reference::REFERENCE_FILE, b))
        .into_iter()
        .collect();
    profile
        .save_with(&a.out, &cal, &optional)
        .with_context(|| format!("writing profile {}", a.out.display()))?;
    let m = &profile.manifest;
    let th: Vec<String> = m
        .thresholds
        .iter()
        .map(|(k, t)| format!("{k} {:.4}", t.value))
        .chain(
            m.impulse
                .iter()
                .map(|i| format!("impulse {:.1} dB", i.level_db)),
        )
        .collect();
    println!(
        "learned {} from {} clips ({} windows, all scored leave-one-clip-out over {} parts, k-means k={}) in {:.1} s; thresholds: {}; profile: {}",
        m.machine,
        m.counts.clips,
        m.counts.fit_windows,
        m.counts.holdout_clips,
        m.kmeans_k,
        started.elapsed().as_secs_f64(),
        th.join(", "),
        a.out.display()
    );
    let w = m.window;
    if !w.embed.is_exact() {
        println!(
            "embeddings: chunk-max, windows of {:.4} s made of {} chunks of {:.4} s (the network runs once per chunk); score and run use the same",
            w.seconds,
            (w.seconds / w.hop_seconds).round(),
            w.hop_seconds
        );
    }
    if let Some(f) = &m.false_alarms {
        println!(
            "false alarms: {:.2} event(s)/day expected from the N-of-M rule ({} of {}; asked {:.2}), 68 % range {:.2}..{:.2}, from {:.0} s of normal audio{}",
            f.expected_per_day,
            f.trigger_n,
            f.trigger_m,
            f.target_per_day,
            f.low_per_day,
            f.high_per_day,
            f.normal_seconds,
            match f.audio_needed_s {
                Some(s) => format!(
                    "; too little to know it well: about {:.0} min of normal audio would give a factor of 2",
                    s / 60.0
                ),
                None => String::new(),
            }
        );
    }
    Ok(())
}
