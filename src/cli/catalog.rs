//! `earshot catalog add|list|remove`: the sound catalog of labelled example sounds, kept in
//! the state directory (`<daemon.state_dir>/catalog`) unless `--catalog DIR` names another.

use anyhow::Context;
use earshot::catalog::store::{CatalogLock, check_names};
use earshot::catalog::{Catalog, Entry, entry_id};
use earshot::config::Settings;
use earshot::embed::card::ModelCard;
use earshot::embed::file::embed_file;
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct CatalogArgs {
    #[command(subcommand)]
    command: CatalogCommand,
}

#[derive(clap::Subcommand)]
enum CatalogCommand {
    /// Embed labelled recordings (every window, or each whole recording) into the catalog.
    Add(AddArgs),
    /// Show what the catalog holds: entries and recordings per label and machine.
    List(ListArgs),
    /// Remove every entry with a label, or every entry of one recording.
    Remove(RemoveArgs),
}

/// Where the catalog is.
#[derive(clap::Args)]
pub struct Location {
    /// Config file (its `daemon.state_dir` and `[model]`); `EARSHOT_*__*` environment
    /// variables override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Catalog directory (default: `catalog` in the state directory).
    #[arg(long, value_name = "DIR")]
    catalog: Option<PathBuf>,
}

impl Location {
    /// The settings and the catalog directory they (or `--catalog`) name.
    pub fn resolve(&self) -> anyhow::Result<(Settings, PathBuf)> {
        let s = super::settings(self.config.as_deref())?;
        let dir = match &self.catalog {
            Some(d) => d.clone(),
            None => s.state_dir().join("catalog"),
        };
        Ok((s, dir))
    }
}

#[derive(clap::Args)]
struct AddArgs {
    #[command(flatten)]
    at: Location,
    /// What the sound is, e.g. "bearing squeal" (shown in search results and alerts).
    #[arg(long)]
    label: String,
    /// The machine the recordings come from (searches can be limited to it).
    #[arg(long)]
    machine: Option<String>,
    /// Free text kept with the entries (e.g. the work order that found the fault).
    #[arg(long)]
    note: Option<String>,
    /// One entry per recording (the mean of its windows' embeddings) instead of one per window.
    #[arg(long)]
    whole_clip: bool,
    /// Model directory (must be the catalog's model once the catalog exists).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Recordings (WAV files or directories searched recursively).
    #[arg(required = true, value_name = "WAV_OR_DIR")]
    inputs: Vec<PathBuf>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(clap::Args)]
struct ListArgs {
    #[command(flatten)]
    at: Location,
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
}

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["label", "source"])))]
struct RemoveArgs {
    #[command(flatten)]
    at: Location,
    /// Remove every entry with this label.
    #[arg(long)]
    label: Option<String>,
    /// Remove every entry of this recording.
    #[arg(long, value_name = "PATH")]
    source: Option<PathBuf>,
}

pub fn run(a: CatalogArgs) -> anyhow::Result<()> {
    match a.command {
        CatalogCommand::Add(a) => add(a),
        CatalogCommand::List(a) => list(a),
        CatalogCommand::Remove(a) => remove(a),
    }
}

/// The model directory a command uses: `--model`, else the config's.
pub fn model_dir(s: &Settings, model: Option<&Path>) -> anyhow::Result<PathBuf> {
    Ok(match model {
        Some(m) => m.to_owned(),
        None => s.find_model_dir()?,
    })
}

/// Refuses a model other than the catalog's from its card alone, before the network loads.
pub fn check_card(catalog: &Catalog, model_dir: &Path) -> anyhow::Result<()> {
    let (card, card_path) = ModelCard::load(model_dir)
        .with_context(|| format!("loading model {}", model_dir.display()))?;
    Ok(catalog.check_model(&card, &card_path)?)
}

/// How a source path is stored: absolute and canonical, so the same file added from another
/// working directory or through a symlink gets the same ids.
fn source_name(path: &Path) -> String {
    std::fs::canonicalize(path)
        .unwrap_or_else(|_| std::path::absolute(path).unwrap_or_else(|_| path.to_owned()))
        .display()
        .to_string()
}

fn add(a: AddArgs) -> anyhow::Result<()> {
    let (s, dir) = a.at.resolve()?;
    check_names(&a.label, a.machine.as_deref(), a.note.as_deref())?;
    let files = super::collect_wavs(&a.inputs)?;
    let _lock = CatalogLock::acquire(&dir)?;
    let existing = Catalog::open(&dir)?;
    let mdir = model_dir(&s, a.model.as_deref())?;
    if let Some(c) = &existing {
        check_card(c, &mdir)?;
    }
    let mut e = super::embedder(&s, Some(&mdir))?;
    let mut catalog = match existing {
        Some(c) => {
            // Entries are comparable only when cut and levelled alike: the catalog's window
            // wins over the config's.
            e.set_level_dbfs(c.window().level_dbfs);
            c
        }
        None => {
            let window = super::learn_window(&s, &mut e)?;
            Catalog::new(&dir, super::model_ref(&e), window)
        }
    };
    let window = catalog.window();
    let added_at = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let (mut new, mut replaced, mut failed) = (0usize, 0usize, 0usize);
    for f in &files {
        let (wins, report) = match embed_file(&mut e, f, window.seconds, window.hop_seconds) {
            Ok(r) => r,
            Err(err) => {
                // One unreadable file must not cost the others their entries.
                eprintln!("error: {err:#}");
                failed += 1;
                continue;
            }
        };
        super::warn_report(f, &report);
        let source = source_name(f);
        let entry = |offset: Option<f64>, end_s: f64| Entry {
            id: entry_id(&source, offset),
            label: a.label.clone(),
            machine: a.machine.clone(),
            source: source.clone(),
            offset_s: offset.unwrap_or(0.0),
            end_s,
            whole_clip: offset.is_none(),
            note: a.note.clone(),
            added: added_at.clone(),
        };
        let mut rows = Vec::new();
        if a.whole_clip {
            let mean = earshot::catalog::store::mean_embedding(
                wins.iter().map(|w| w.embedding.as_slice()),
                catalog.dim(),
            );
            let end = wins.last().map_or(0.0, |w| w.end_s);
            rows.push((entry(None, end), mean));
        } else {
            for w in wins {
                rows.push((entry(Some(w.start_s), w.end_s), w.embedding));
            }
        }
        for (en, emb) in rows {
            match catalog.upsert(en, emb) {
                Ok(true) => new += 1,
                Ok(false) => replaced += 1,
                // A silent window has no direction to compare: leave it out, keep the rest.
                Err(err) => tracing::warn!(error = %err, "window left out of the catalog"),
            }
        }
    }
    if new + replaced > 0 {
        catalog.save()?;
    }
    println!(
        "catalog {}: {new} new and {replaced} replaced {} labelled {:?} from {} recording(s); it now holds {} entries",
        dir.display(),
        if a.whole_clip {
            "clip entries"
        } else {
            "window entries"
        },
        a.label,
        files.len() - failed,
        catalog.len()
    );
    if failed > 0 {
        anyhow::bail!(
            "{failed} of {} files could not be added (see above)",
            files.len()
        );
    }
    Ok(())
}

#[derive(Serialize)]
struct LabelRow<'a> {
    label: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    machine: &'a str,
    clips: usize,
    entries: usize,
}

#[derive(Serialize)]
struct SourceRow<'a> {
    source: &'a str,
    label: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    machine: Option<&'a str>,
    entries: usize,
    whole_clip: bool,
}

#[derive(Serialize)]
struct Listing<'a> {
    catalog: String,
    model: &'a earshot::score::profile::ModelRef,
    window: earshot::score::profile::WindowSpec,
    updated: &'a str,
    entries: usize,
    labels: Vec<LabelRow<'a>>,
    sources: Vec<SourceRow<'a>>,
}

fn list(a: ListArgs) -> anyhow::Result<()> {
    let (_, dir) = a.at.resolve()?;
    let c = Catalog::load(&dir)?;
    let counts = c.counts();
    let labels: Vec<LabelRow> = counts
        .iter()
        .map(|((l, m), n)| LabelRow {
            label: l,
            machine: m,
            clips: n.clips,
            entries: n.entries,
        })
        .collect();
    let mut sources: Vec<SourceRow> = Vec::new();
    for e in c.entries() {
        match sources
            .iter_mut()
            .find(|r| r.source == e.source && r.label == e.label)
        {
            Some(r) => r.entries += 1,
            None => sources.push(SourceRow {
                source: &e.source,
                label: &e.label,
                machine: e.machine.as_deref(),
                entries: 1,
                whole_clip: e.whole_clip,
            }),
        }
    }
    sources.sort_by(|a, b| (a.label, a.source).cmp(&(b.label, b.source)));
    let mut out = std::io::stdout().lock();
    match a.format {
        Format::Json => {
            let l = Listing {
                catalog: dir.display().to_string(),
                model: c.model(),
                window: c.window(),
                updated: &c.manifest().updated,
                entries: c.len(),
                labels,
                sources,
            };
            serde_json::to_writer_pretty(&mut out, &l).context("writing JSON")?;
            writeln!(out)?;
        }
        Format::Text => {
            let w = c.window();
            writeln!(
                out,
                "catalog {}: {} entries, model {} ({} s windows every {} s), updated {}",
                dir.display(),
                c.len(),
                c.model().name,
                w.seconds,
                w.hop_seconds,
                c.manifest().updated
            )?;
            if c.is_empty() {
                writeln!(
                    out,
                    "(empty: add labelled sounds with `earshot catalog add --label NAME WAV_OR_DIR...`)"
                )?;
            } else {
                writeln!(
                    out,
                    "{:<32} {:<20} {:>6} {:>8}",
                    "label", "machine", "clips", "entries"
                )?;
            }
            for r in &labels {
                let machine = if r.machine.is_empty() { "-" } else { r.machine };
                writeln!(
                    out,
                    "{:<32} {:<20} {:>6} {:>8}",
                    r.label, machine, r.clips, r.entries
                )?;
            }
        }
    }
    Ok(())
}

fn remove(a: RemoveArgs) -> anyhow::Result<()> {
    let (_, dir) = a.at.resolve()?;
    let _lock = CatalogLock::acquire(&dir)?;
    let mut c = Catalog::load(&dir)?;
    let (n, what) = match (&a.label, &a.source) {
        (Some(l), _) => (c.remove_label(l)?, format!("labelled {l:?}")),
        (None, Some(p)) => {
            // Stored paths are canonical; a file already deleted is matched as given.
            let canonical = source_name(p);
            let n = match c.remove_source(&canonical) {
                Ok(n) => n,
                Err(_) => c.remove_source(&p.display().to_string())?,
            };
            (n, format!("of {canonical}"))
        }
        (None, None) => anyhow::bail!("give --label or --source"),
    };
    c.save()?;
    println!(
        "catalog {}: removed {n} entries {what}; {} left",
        dir.display(),
        c.len()
    );
    Ok(())
}
