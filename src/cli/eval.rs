//! `earshot eval`: AUC and pAUC per machine and scorer on a labelled manifest.

use earshot::eval::{self, Entry, Split};
use earshot::score::{self, CENTROID, KNN, Scorer};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(clap::Args)]
pub struct EvalArgs {
    /// CSV with columns path,machine,split,label (split train|test, label normal|anomaly).
    #[arg(long)]
    manifest: PathBuf,
    /// Directory relative paths are taken from (default: the manifest's directory).
    #[arg(long)]
    root: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
    #[arg(long)]
    config: Option<PathBuf>,
    #[arg(long)]
    model: Option<PathBuf>,
    /// Largest false-positive rate of the partial AUC.
    #[arg(long, default_value_t = 0.1)]
    max_fpr: f64,
}

#[derive(Serialize, Default)]
struct ScorerResult {
    auc: Option<f64>,
    pauc: Option<f64>,
}

#[derive(Serialize)]
struct MachineResult {
    machine: String,
    train_clips: usize,
    test_normal: usize,
    test_anomaly: usize,
    /// Files of this machine that could not be read: left out of the figures.
    skipped: usize,
    scorers: BTreeMap<String, ScorerResult>,
}

/// A file left out because it could not be read or embedded.
#[derive(Serialize)]
struct Skipped {
    path: PathBuf,
    machine: String,
    error: String,
}

#[derive(Serialize)]
struct Report {
    model: String,
    untrained_model: bool,
    max_fpr: f64,
    machines: Vec<MachineResult>,
    /// Arithmetic means over machines, per scorer.
    mean: BTreeMap<String, ScorerResult>,
    /// Files left out of the figures (each also reported on stderr as it happened).
    skipped: Vec<Skipped>,
}

pub fn run(a: EvalArgs) -> anyhow::Result<()> {
    let s = super::settings(a.config.as_deref())?;
    let entries = eval::read_manifest(&a.manifest, a.root.as_deref())?;
    let mut e = super::embedder(&s, a.model.as_deref())?;
    let window = super::learn_window(&s, &mut e)?;
    let mut by_machine: BTreeMap<String, Vec<Entry>> = BTreeMap::new();
    for en in entries {
        by_machine.entry(en.machine.clone()).or_default().push(en);
    }
    let mut machines = Vec::new();
    let mut skipped = Vec::new();
    // One unreadable file is reported, counted and left out; it must not cost the others.
    let mut skip = |path: &std::path::Path, machine: &str, err: anyhow::Error| {
        eprintln!("error: {err:#} (skipped)");
        skipped.push(Skipped {
            path: path.to_owned(),
            machine: machine.to_owned(),
            error: format!("{err:#}"),
        });
    };
    for (machine, ens) in &by_machine {
        let train: Vec<PathBuf> = ens
            .iter()
            .filter(|x| x.split == Split::Train)
            .map(|x| x.path.clone())
            .collect();
        let test: Vec<&Entry> = ens.iter().filter(|x| x.split == Split::Test).collect();
        if train.is_empty() || test.is_empty() {
            anyhow::bail!(
                "machine {machine}: the manifest needs train normals and test clips for it"
            );
        }
        tracing::info!(%machine, train = train.len(), test = test.len(), "evaluating");
        let (clips, failed) = super::embed_normals_skipping(&mut e, &train, window);
        let mut n_skipped = failed.len();
        for (path, err) in failed {
            skip(&path, machine, err);
        }
        let opts = super::learn_options(&s, machine.clone());
        let (profile, _) = score::learn(&clips, &opts, super::model_ref(&e), window)?;
        let scorer = Scorer::new(&profile)?;
        let mut cs = Vec::new();
        let mut ks = Vec::new();
        let mut labels = Vec::new();
        for t in &test {
            let w = match super::score::score_file(&mut e, &scorer, &t.path) {
                Ok(w) => w,
                Err(err) => {
                    n_skipped += 1;
                    skip(&t.path, machine, err);
                    continue;
                }
            };
            let n = w.len().max(1) as f32;
            cs.push(w.iter().map(|x| x.2).sum::<f32>() / n);
            ks.push(w.iter().filter_map(|x| x.3).sum::<f32>() / n);
            labels.push(t.anomaly);
        }
        let mut scorers = BTreeMap::new();
        for (name, v) in [(CENTROID, &cs), (KNN, &ks)] {
            scorers.insert(
                name.to_string(),
                ScorerResult {
                    auc: eval::auc(v, &labels),
                    pauc: eval::pauc(v, &labels, a.max_fpr),
                },
            );
        }
        machines.push(MachineResult {
            machine: machine.clone(),
            train_clips: train.len(),
            test_normal: labels.iter().filter(|&&l| !l).count(),
            test_anomaly: labels.iter().filter(|&&l| l).count(),
            skipped: n_skipped,
            scorers,
        });
    }
    let mut mean = BTreeMap::new();
    for name in [CENTROID, KNN] {
        let m = |f: &dyn Fn(&ScorerResult) -> Option<f64>| {
            let v: Vec<f64> = machines
                .iter()
                .filter_map(|x| x.scorers.get(name).and_then(f))
                .collect();
            (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
        };
        mean.insert(
            name.to_string(),
            ScorerResult {
                auc: m(&|r| r.auc),
                pauc: m(&|r| r.pauc),
            },
        );
    }
    let report = Report {
        model: e.card().name.clone(),
        untrained_model: e.card().is_untrained(),
        max_fpr: a.max_fpr,
        machines,
        mean,
        skipped,
    };
    match a.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Format::Text => print_text(&report),
    }
    if !report.skipped.is_empty() {
        anyhow::bail!(
            "{} of {} files could not be read and are left out of the figures (see above)",
            report.skipped.len(),
            by_machine.values().map(Vec::len).sum::<usize>()
        );
    }
    Ok(())
}

fn print_text(r: &Report) {
    let f = |v: Option<f64>| v.map_or_else(|| "  n/a".to_string(), |x| format!("{x:.3}"));
    println!(
        "model {}{}",
        r.model,
        if r.untrained_model {
            " (untrained weights)"
        } else {
            ""
        }
    );
    println!(
        "{:<20} {:>6} {:>6} {:>6}  {:>8} {:>8}  {:>8} {:>8}",
        "machine", "train", "normal", "anom", "AUC cen", "pAUC cen", "AUC knn", "pAUC knn"
    );
    for m in &r.machines {
        let c = &m.scorers[CENTROID];
        let k = &m.scorers[KNN];
        println!(
            "{:<20} {:>6} {:>6} {:>6}  {:>8} {:>8}  {:>8} {:>8}",
            m.machine,
            m.train_clips,
            m.test_normal,
            m.test_anomaly,
            f(c.auc),
            f(c.pauc),
            f(k.auc),
            f(k.pauc)
        );
    }
    let c = &r.mean[CENTROID];
    let k = &r.mean[KNN];
    println!(
        "{:<20} {:>6} {:>6} {:>6}  {:>8} {:>8}  {:>8} {:>8}",
        "mean",
        "",
        "",
        "",
        f(c.auc),
        f(c.pauc),
        f(k.auc),
        f(k.pauc)
    );
    println!(
        "(pAUC over FPR 0..{}, standardised as scikit-learn's roc_auc_score(max_fpr); 0.5 = chance)",
        r.max_fpr
    );
    for s in &r.skipped {
        println!("skipped ({}): {}", s.machine, s.error);
    }
}
