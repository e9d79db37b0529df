//! `earshot search WAV`: the catalog clips that sound most like a recording.

use super::catalog::{Format, Location, check_card, model_dir};
use anyhow::Context;
use earshot::catalog::{Filter, Match};
use earshot::embed::file::embed_file;
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct SearchArgs {
    #[command(flatten)]
    at: Location,
    /// The recording to look up.
    query: PathBuf,
    /// How many catalog clips to show (each clip once, at its best-matching window).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1000))]
    top: u32,
    /// Only entries of this machine.
    #[arg(long)]
    machine: Option<String>,
    /// Only entries with this label.
    #[arg(long)]
    label: Option<String>,
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
    /// Look up the recording as one sound (the mean of its windows' embeddings) instead of
    /// window by window: steadier for a recording that is the sound throughout.
    #[arg(long)]
    whole_clip: bool,
    /// Model directory (must be the catalog's model).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Also write a spectrogram PNG of the query beside its best matches (their matching
    /// windows) into this directory.
    #[arg(long, value_name = "DIR")]
    spectrogram: Option<PathBuf>,
}

#[derive(Serialize)]
struct Answer<'a> {
    query: String,
    catalog: String,
    matches: &'a [Match],
}

pub fn run(a: SearchArgs) -> anyhow::Result<()> {
    let (s, catalog) = a.at.open(false)?;
    let Some(header) = catalog.header().cloned() else {
        return Err(earshot::catalog::CatalogError::Missing {
            path: PathBuf::from(catalog.location()),
        }
        .into());
    };
    let entries = catalog.count()?;
    if entries == 0 {
        return Err(earshot::catalog::CatalogError::Empty {
            path: PathBuf::from(catalog.location()),
        }
        .into());
    }
    let mdir = model_dir(&s, a.model.as_deref())?;
    check_card(catalog.as_ref(), &mdir)?;
    let mut e = super::embedder(&s, Some(&mdir))?;
    let w = header.window;
    e.use_window(&w)?;
    let (wins, report) = embed_file(&mut e, &a.query, w.seconds, w.hop_seconds)?;
    super::warn_report(&a.query, &report);
    let mut query: Vec<(f64, Vec<f32>)> =
        wins.into_iter().map(|w| (w.start_s, w.embedding)).collect();
    if a.whole_clip {
        query = vec![(
            0.0,
            earshot::catalog::store::mean_embedding(
                query.iter().map(|(_, v)| v.as_slice()),
                header.model.embedding_dim,
            ),
        )];
    }
    let filter = Filter {
        machine: a.machine,
        label: a.label,
    };
    let matches = catalog.search(&query, &filter, a.top as usize)?;
    if let Some(dir) = &a.spectrogram {
        let png = picture(dir, &a.query, &matches)?;
        eprintln!("spectrogram: {}", png.display());
    }
    let mut out = std::io::stdout().lock();
    match a.format {
        Format::Json => {
            let answer = Answer {
                query: a.query.display().to_string(),
                catalog: catalog.location(),
                matches: &matches,
            };
            serde_json::to_writer_pretty(&mut out, &answer).context("writing JSON")?;
            writeln!(out)?;
        }
        Format::Text => {
            writeln!(
                out,
                "{}: the {} most similar of the catalog's clips ({} entries in {})",
                a.query.display(),
                matches.len(),
                entries,
                catalog.location()
            )?;
            let labels = earshot::catalog::sounds_like(&matches, 3);
            writeln!(
                out,
                "sounds like: {}",
                earshot::catalog::format_sounds_like(&labels)
            )?;
            for (i, m) in matches.iter().enumerate() {
                let at = if m.whole_clip {
                    "whole clip".to_string()
                } else {
                    format!("{:.2}-{:.2} s", m.offset_s, m.end_s)
                };
                writeln!(
                    out,
                    "{:>3}. {:.3}  {}{}  {} ({at}; query at {:.2} s)",
                    i + 1,
                    m.similarity,
                    m.label,
                    m.machine
                        .as_deref()
                        .map(|x| format!(" [{x}]"))
                        .unwrap_or_default(),
                    m.source,
                    m.query_offset_s
                )?;
            }
        }
    }
    Ok(())
}

/// How many matches the picture shows beside the query.
const PICTURE_MATCHES: usize = 3;

/// Mono samples of `path` from `from_s` to `to_s` (the whole file for `None`) and its rate.
fn mono(path: &Path, span: Option<(f64, f64)>) -> anyhow::Result<(Vec<f32>, u32)> {
    let clip = earshot::audio::read_wav(path)?;
    let ch = usize::from(clip.channels.max(1));
    let rate = clip.sample_rate;
    let frames = clip.samples.len() / ch;
    let (a, b) = match span {
        Some((from, to)) => {
            let at = |t: f64| ((t.max(0.0) * f64::from(rate)).round() as usize).min(frames);
            (at(from), at(to).max(at(from)))
        }
        None => (0, frames),
    };
    let x = clip.samples[a * ch..b * ch]
        .chunks_exact(ch)
        .map(|f| f.iter().sum::<f32>() / ch as f32)
        .collect();
    Ok((x, rate))
}

/// Draws the query (its best-matching window marked) beside the matching window of each of
/// the best matches; a catalog recording that is gone is left out with a warning.
fn picture(dir: &Path, query: &Path, matches: &[Match]) -> anyhow::Result<PathBuf> {
    use earshot::evidence::spectrogram::{Panel, Spectrogram, draw_panels};
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let (q, rate) = mono(query, None)?;
    let qspec = Spectrogram::compute(&q, rate, 400, 256);
    let mut specs = Vec::new();
    for m in matches.iter().take(PICTURE_MATCHES) {
        let span = (!m.whole_clip).then_some((m.offset_s, m.end_s));
        match mono(Path::new(&m.source), span) {
            Ok((x, r)) => specs.push((m, Spectrogram::compute(&x, r, 200, 256))),
            Err(e) => tracing::warn!(source = %m.source, error = %e, "catalog recording not drawn"),
        }
    }
    let mut panels = vec![Panel {
        caption: "query".into(),
        spec: &qspec,
        mark: matches
            .first()
            .map(|m| (m.query_offset_s, m.query_offset_s + (m.end_s - m.offset_s))),
    }];
    for (i, (m, spec)) in specs.iter().enumerate() {
        panels.push(Panel {
            caption: format!(
                "{}. {} {:.3} @ {:.1} s",
                i + 1,
                m.label,
                m.similarity,
                m.offset_s
            ),
            spec,
            mark: None,
        });
    }
    let stem = query
        .file_stem()
        .map_or_else(|| "query".into(), |s| s.to_string_lossy().into_owned());
    let out = dir.join(format!("{stem}.search.png"));
    draw_panels(
        &format!("{} and its closest catalog sounds", query.display()),
        &panels,
        &out,
    )?;
    Ok(out)
}
