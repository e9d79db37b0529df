//! `earshot score`: WAV files -> per-window and per-clip scores against a profile.

use anyhow::Context;
use earshot::embed::file::embed_file;
use earshot::score::decide::{DecideConfig, DecisionEvent};
use earshot::score::replay::{self, Levels, WindowRecord};
use earshot::score::{CENTROID, FUSED, KNN, MEL, Profile, Scorer};
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Format {
    /// One JSON object per window and one per clip (`type` tells which).
    Jsonl,
    Csv,
    /// A human summary: per file, its verdict and the anomalous time ranges.
    Text,
}

#[derive(clap::Args)]
pub struct ScoreArgs {
    /// Profile directory written by `earshot learn`.
    #[arg(long)]
    profile: PathBuf,
    /// Recordings to score (WAV files or directories).
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    #[arg(long, value_enum, default_value = "jsonl")]
    format: Format,
    #[arg(long)]
    config: Option<PathBuf>,
    /// Model directory (must be the model the profile was learned with).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Also write a spectrogram PNG per file into this directory (as the daemon draws for
    /// its anomaly events: window scores vs thresholds under it, the profile's reference).
    #[arg(long, value_name = "DIR")]
    spectrogram: Option<PathBuf>,
}

/// One output row: a window, or a clip summary (`type` tells which).
#[derive(Serialize)]
struct Row<'a> {
    r#type: &'a str,
    file: String,
    start_s: f64,
    end_s: f64,
    windows: usize,
    centroid: f32,
    /// None (empty in CSV, null in JSON): this score does not decide for the profile
    /// (`learn.decide_on`), so it has no threshold.
    centroid_threshold: Option<f32>,
    centroid_anomaly: bool,
    knn: Option<f32>,
    knn_threshold: Option<f32>,
    knn_anomaly: bool,
    /// k-NN and log-mel statistics together (profiles with log-mel statistics).
    fused: Option<f32>,
    fused_threshold: Option<f32>,
    fused_anomaly: bool,
    anomaly: bool,
    /// Clip rows: how many windows were anomalous.
    anomalous_windows: usize,
}

/// Scores one recording: per window its place, level and scores (the replay's input).
pub fn score_file(
    e: &mut earshot::embed::Embedder,
    scorer: &Scorer,
    path: &Path,
) -> anyhow::Result<Vec<WindowRecord>> {
    let w = scorer.profile.manifest.window;
    let (wins, report) = embed_file(e, path, w.seconds, w.hop_seconds)?;
    super::warn_report(path, &report);
    Ok(earshot::score::replay::scored_windows(scorer, &wins))
}

/// Refuses a profile learned with another model: its embeddings would be meaningless here.
pub fn check_profile_model(p: &Profile, e: &earshot::embed::Embedder) -> anyhow::Result<()> {
    let card = e.dir().join(earshot::embed::card::CARD_FILE);
    Ok(p.check_model(e.card(), &card)?)
}

pub fn run(a: ScoreArgs) -> anyhow::Result<()> {
    let s = super::settings(a.config.as_deref())?;
    let profile = Profile::load(&a.profile)?;
    let mut e = super::embedder(&s, a.model.as_deref())?;
    check_profile_model(&profile, &e)?;
    e.use_window(&profile.manifest.window)?;
    e.set_keep_logmel(profile.mel.is_some());
    let scorer = Scorer::new(&profile)?;
    let (tc, tk, tf) = (
        scorer.threshold(CENTROID),
        scorer.threshold(KNN),
        scorer.threshold(FUSED),
    );
    // The deciding scores, in the order windows name them (centroid, knn, mel, fused).
    let deciding: Vec<(&str, f32)> = [CENTROID, KNN, MEL, FUSED]
        .into_iter()
        .filter_map(|n| scorer.threshold(n).map(|t| (n, t)))
        .collect();
    // Above its threshold, for a score that decides.
    let above = |v: Option<f32>, t: Option<f32>| matches!((v, t), (Some(v), Some(t)) if v > t);
    let files = super::collect_wavs(&a.inputs)?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut csv_w = match a.format {
        Format::Csv => Some(csv::Writer::from_writer(std::io::stdout())),
        Format::Jsonl | Format::Text => None,
    };
    let text = matches!(a.format, Format::Text);
    let pictures = match &a.spectrogram {
        Some(dir) => Some(earshot::evidence::offline::Pictures::new(
            dir, &a.profile, &files,
        )?),
        None => None,
    };
    let mut failed = 0;
    for (i, f) in files.iter().enumerate() {
        let scores = match score_file(&mut e, &scorer, f) {
            Ok(s) => s,
            Err(err) => {
                // One bad file must not cost the scores of the others.
                eprintln!("error: {err:#}");
                failed += 1;
                continue;
            }
        };
        if let Some(p) = &pictures {
            p.draw(i, &scores, &deciding)?;
        }
        let mut rows = Vec::with_capacity(scores.len() + 1);
        let mut n_anom = 0;
        for w in &scores {
            let (c, k, fu) = (w.scores.centroid, w.scores.knn, w.scores.fused);
            let (ca, ka, fa) = (above(Some(c), tc), above(k, tk), above(fu, tf));
            let any = ca || ka || fa;
            n_anom += usize::from(any);
            rows.push(Row {
                r#type: "window",
                file: f.display().to_string(),
                start_s: w.start_s,
                end_s: w.end_s,
                windows: 1,
                centroid: c,
                centroid_threshold: tc,
                centroid_anomaly: ca,
                knn: k,
                knn_threshold: tk,
                knn_anomaly: ka,
                fused: fu,
                fused_threshold: tf,
                fused_anomaly: fa,
                anomaly: any,
                anomalous_windows: usize::from(any),
            });
        }
        let n = scores.len().max(1) as f32;
        let cm = scores.iter().map(|s| s.scores.centroid).sum::<f32>() / n;
        let km = scores.iter().filter_map(|s| s.scores.knn).sum::<f32>() / n;
        let fused: Vec<f32> = scores.iter().filter_map(|s| s.scores.fused).collect();
        let fm = (!fused.is_empty()).then(|| fused.iter().sum::<f32>() / fused.len() as f32);
        let (ca, ka, fa) = (above(Some(cm), tc), above(Some(km), tk), above(fm, tf));
        rows.push(Row {
            r#type: "clip",
            file: f.display().to_string(),
            start_s: scores.first().map_or(0.0, |s| s.start_s),
            end_s: scores.last().map_or(0.0, |s| s.end_s),
            windows: scores.len(),
            centroid: cm,
            centroid_threshold: tc,
            centroid_anomaly: ca,
            knn: Some(km),
            knn_threshold: tk,
            knn_anomaly: ka,
            fused: fm,
            fused_threshold: tf,
            fused_anomaly: fa,
            anomaly: ca || ka || fa,
            anomalous_windows: n_anom,
        });
        // What the daemon would raise on this file (default `[monitor.decide]`).
        let decisions = replay::replay(
            Levels::of(&profile),
            &DecideConfig::default(),
            &profile.machine,
            &scores,
        )?;
        if text {
            print_text(&mut out, &rows, replay::started(&decisions))?;
            continue;
        }
        for r in &rows {
            match csv_w.as_mut() {
                Some(w) => w.serialize(r).context("writing CSV")?,
                None => {
                    serde_json::to_writer(&mut out, r).context("writing JSON")?;
                    writeln!(out).context("writing output")?;
                }
            }
        }
        if let Some(w) = csv_w.as_mut() {
            w.flush().context("writing CSV")?;
        } else {
            for d in &decisions {
                let row = EventRow {
                    r#type: "event",
                    file: f.display().to_string(),
                    event: d,
                };
                serde_json::to_writer(&mut out, &row).context("writing JSON")?;
                writeln!(out).context("writing output")?;
            }
        }
    }
    if failed > 0 {
        anyhow::bail!(
            "{failed} of {} files could not be scored (see above)",
            files.len()
        );
    }
    Ok(())
}

/// A JSON-lines row for one decision message of the replayed daemon (`kind` started,
/// ongoing or ended, in stream seconds of the file).
#[derive(Serialize)]
struct EventRow<'a> {
    r#type: &'a str,
    file: String,
    event: &'a DecisionEvent,
}

/// Prints a file's verdict (from the decision rule) and its anomalous windows merged into
/// time ranges.
fn print_text(out: &mut impl Write, rows: &[Row], events: usize) -> anyhow::Result<()> {
    let Some(clip) = rows.last() else {
        return Ok(());
    };
    // Anomalous windows merged into time ranges, with each score's peak over the range.
    let mut ranges: Vec<(f64, f64, f32, f32, Option<f32>)> = Vec::new();
    for r in rows.iter().filter(|r| r.r#type == "window" && r.anomaly) {
        let k = r.knn.unwrap_or(0.0);
        match ranges.last_mut() {
            Some(last) if r.start_s <= last.1 => {
                last.1 = r.end_s;
                last.2 = last.2.max(r.centroid);
                last.3 = last.3.max(k);
                last.4 = match (last.4, r.fused) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    (a, b) => a.or(b),
                };
            }
            _ => ranges.push((r.start_s, r.end_s, r.centroid, k, r.fused)),
        }
    }
    // Each score's clip mean, with its threshold when it decides.
    let mean = |name: &str, v: f32, t: Option<f32>| match t {
        Some(t) => format!("mean {name} {v:.3} / threshold {t:.3}"),
        None => format!("mean {name} {v:.3}"),
    };
    let mut means = vec![
        mean("centroid", clip.centroid, clip.centroid_threshold),
        mean("knn", clip.knn.unwrap_or(0.0), clip.knn_threshold),
    ];
    if let Some(fm) = clip.fused {
        means.push(mean("fused", fm, clip.fused_threshold));
    }
    writeln!(
        out,
        "{}: {} ({} anomaly event(s) by the decision rule; {} of {} windows above threshold; {})",
        clip.file,
        if events > 0 { "ANOMALOUS" } else { "normal" },
        events,
        clip.anomalous_windows,
        clip.windows,
        means.join(", ")
    )?;
    for (a, b, c, k, fu) in ranges {
        let fused = fu.map_or(String::new(), |f| format!(", fused {f:.3}"));
        writeln!(
            out,
            "    {a:7.2} s - {b:7.2} s  peak centroid {c:.3}, knn {k:.3}{fused}"
        )?;
    }
    Ok(())
}
