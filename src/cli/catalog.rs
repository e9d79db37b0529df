//! `earshot catalog add|list|remove`: the sound catalog of labelled example sounds, kept in
//! the state directory (`<daemon.state_dir>/catalog`) unless `--catalog DIR` names another, or
//! in an Azure AI Search index when `[catalog.index]` says `kind = "azure"`.

use anyhow::Context;
use earshot::catalog::azure::AzureCatalog;
use earshot::catalog::known::CatalogIndex;
use earshot::catalog::store::check_names;
use earshot::catalog::{CatalogBackend, EmbeddedCatalog, Entry, Header, Removal, entry_id};
use earshot::config::Settings;
use earshot::embed::card::ModelCard;
use earshot::embed::file::embed_file;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
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
    /// Catalog directory (default: `catalog` in the state directory, or the Azure AI Search
    /// index of `[catalog.index]`); a directory given here wins over the config.
    #[arg(long, value_name = "DIR")]
    catalog: Option<PathBuf>,
}

impl Location {
    /// The settings and the catalog they (or `--catalog`) name, opened for reading, or for
    /// changing it (`write`: the embedded catalog is locked).
    pub fn open(&self, write: bool) -> anyhow::Result<(Settings, Box<dyn CatalogBackend>)> {
        let s = super::settings(self.config.as_deref())?;
        let backend: Box<dyn CatalogBackend> = match (&self.catalog, &s.catalog.index) {
            (Some(d), _) => Box::new(EmbeddedCatalog::open(d, write)?),
            (None, CatalogIndex::Embedded) => Box::new(EmbeddedCatalog::open(
                &s.catalog.dir(&s.state_dir()),
                write,
            )?),
            (None, CatalogIndex::Azure(a)) => Box::new(AzureCatalog::open(a)?),
        };
        Ok((s, backend))
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
pub fn check_card(catalog: &dyn CatalogBackend, model_dir: &Path) -> anyhow::Result<()> {
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
    check_names(&a.label, a.machine.as_deref(), a.note.as_deref())?;
    let files = super::collect_wavs(&a.inputs)?;
    let (s, mut catalog) = a.at.open(true)?;
    let mdir = model_dir(&s, a.model.as_deref())?;
    check_card(catalog.as_ref(), &mdir)?;
    let mut e = super::embedder(&s, Some(&mdir))?;
    let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let header = match catalog.header() {
        Some(h) => {
            // Entries are comparable only when cut and levelled alike: the catalog's window
            // wins over the config's.
            e.use_window(&h.window)?;
            h.clone()
        }
        None => Header {
            window: super::learn_window(&s, &mut e)?,
            model: super::model_ref(&e),
            created: now.clone(),
            updated: now.clone(),
        },
    };
    let window = header.window;
    let dim = header.model.embedding_dim;
    let mut failed = 0usize;
    let mut rows = Vec::new();
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
            added: now.clone(),
        };
        if a.whole_clip {
            let mean = earshot::catalog::store::mean_embedding(
                wins.iter().map(|w| w.embedding.as_slice()),
                dim,
            );
            let end = wins.last().map_or(0.0, |w| w.end_s);
            rows.push((entry(None, end), mean));
        } else {
            for w in wins {
                rows.push((entry(Some(w.start_s), w.end_s), w.embedding));
            }
        }
    }
    let r = catalog.add(header, rows)?;
    println!(
        "catalog {}: {} new and {} replaced {} labelled {:?} from {} recording(s); it now holds {} entries",
        catalog.location(),
        r.new,
        r.replaced,
        if a.whole_clip {
            "clip entries"
        } else {
            "window entries"
        },
        a.label,
        files.len() - failed,
        r.total
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

/// Entries and distinct recordings per (label, machine); machine "" when none was given.
fn counts(entries: &[Entry]) -> BTreeMap<(String, String), (usize, BTreeSet<&str>)> {
    let mut out: BTreeMap<(String, String), (usize, BTreeSet<&str>)> = BTreeMap::new();
    for e in entries {
        let key = (e.label.clone(), e.machine.clone().unwrap_or_default());
        let c = out.entry(key).or_default();
        c.0 += 1;
        c.1.insert(&e.source);
    }
    out
}

fn list(a: ListArgs) -> anyhow::Result<()> {
    let (_, c) = a.at.open(false)?;
    let entries = c.entries()?;
    let Some(h) = c.header() else {
        return Err(earshot::catalog::CatalogError::Missing {
            path: PathBuf::from(c.location()),
        }
        .into());
    };
    let counts = counts(&entries);
    let labels: Vec<LabelRow> = counts
        .iter()
        .map(|((l, m), (n, clips))| LabelRow {
            label: l,
            machine: m,
            clips: clips.len(),
            entries: *n,
        })
        .collect();
    let mut sources: Vec<SourceRow> = Vec::new();
    for e in &entries {
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
                catalog: c.location(),
                model: &h.model,
                window: h.window,
                updated: &h.updated,
                entries: entries.len(),
                labels,
                sources,
            };
            serde_json::to_writer_pretty(&mut out, &l).context("writing JSON")?;
            writeln!(out)?;
        }
        Format::Text => {
            let w = h.window;
            writeln!(
                out,
                "catalog {}: {} entries, model {} ({} s windows every {} s), updated {}",
                c.location(),
                entries.len(),
                h.model.name,
                w.seconds,
                w.hop_seconds,
                h.updated
            )?;
            if entries.is_empty() {
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
    let (_, mut c) = a.at.open(true)?;
    let (which, what) = match (&a.label, &a.source) {
        (Some(l), _) => (Removal::Label(l.clone()), format!("labelled {l:?}")),
        (None, Some(p)) => {
            // Stored paths are canonical; a file already deleted is matched as given.
            let canonical = source_name(p);
            let what = format!("of {canonical}");
            (
                Removal::Source(vec![canonical, p.display().to_string()]),
                what,
            )
        }
        (None, None) => anyhow::bail!("give --label or --source"),
    };
    let (n, left) = c.remove(&which)?;
    println!(
        "catalog {}: removed {n} entries {what}; {left} left",
        c.location()
    );
    Ok(())
}
