//! `earshot eval`: AUC and pAUC per machine and scorer on a labelled manifest, the replayed
//! daemon decisions, false events on held-back normal clips before and after feedback
//! ([`earshot::eval::after_feedback`]) and, with `--catalog`, known-fault identification
//! ([`earshot::eval::identify`]).

use earshot::embed::file::WindowEmbedding;
use earshot::eval::after_feedback::{self, AfterFeedback};
use earshot::eval::identify::{self, Identification};
use earshot::eval::{self, Entry, Split};
use earshot::score::decide::DecideConfig;
use earshot::score::replay::{self, ClipScore, Levels};
use earshot::score::{self, CENTROID, FUSED, KNN, MEL, Scorer};
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
    /// CSV with columns path,machine,split,label (split train|test, label normal|anomaly), and
    /// anomaly_type (the fault of each anomalous clip) for --catalog.
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
    /// Clip score shown in the text table (JSON has all): the mean window score (DCASE), the
    /// mean of the `--top-k` highest, or the N-of-M statistic the daemon fires on.
    #[arg(long, value_enum, default_value = "mean")]
    clip_score: ClipScore,
    /// k of the top-k clip score.
    #[arg(long, default_value_t = 3)]
    top_k: usize,
    /// Also measure known-fault identification: per machine, half of each anomaly type's test
    /// clips become a sound catalog labelled with their type and the other half are looked up
    /// in it (top-1 and top-3 accuracy). Needs the manifest's anomaly_type column.
    #[arg(long)]
    catalog: bool,
}

/// The scorers evaluated (`mel` and `fused` need the log-mel statistics learn fits).
const SCORERS: [&str; 4] = [CENTROID, KNN, MEL, FUSED];

/// The clip scores every scorer is evaluated with.
const CLIP_SCORES: [ClipScore; 3] = [ClipScore::Mean, ClipScore::TopK, ClipScore::NOfM];

fn clip_score_name(c: ClipScore) -> &'static str {
    match c {
        ClipScore::Mean => "mean",
        ClipScore::TopK => "top_k",
        ClipScore::NOfM => "n_of_m",
    }
}

/// What the daemon would have done on the test clips (default `[monitor.decide]`, the
/// profile's thresholds): the replayed decision, each clip on its own.
#[derive(Serialize, Default, Clone)]
struct DecisionResult {
    /// Events started on normal test clips.
    normal_events: usize,
    /// Seconds of normal test audio.
    normal_seconds: f64,
    /// `normal_events` per 24 h of normal audio.
    false_events_per_day: Option<f64>,
    /// Share of anomalous test clips with at least one event.
    detected: Option<f64>,
    /// Share of normal test clips with at least one event.
    normal_flagged: Option<f64>,
    /// The false-alarm budget the thresholds were calibrated for (events per day), and what
    /// `learn` stated of it: the expected rate and its 68 % range.
    target_per_day: Option<f64>,
    expected_per_day: Option<f64>,
    low_per_day: Option<f64>,
    high_per_day: Option<f64>,
}

#[derive(Serialize, Default, Clone, Copy)]
struct ScorerResult {
    auc: Option<f64>,
    pauc: Option<f64>,
}

/// One scorer's figures: `auc`/`pauc` of the mean clip score (DCASE), and the same under
/// `top_k` and `n_of_m` for the other clip scores.
#[derive(Serialize, Default)]
struct ScorerFigures {
    auc: Option<f64>,
    pauc: Option<f64>,
    #[serde(flatten)]
    other: BTreeMap<String, ScorerResult>,
}

impl ScorerFigures {
    fn from(mut by: BTreeMap<String, ScorerResult>) -> Self {
        let mean = by
            .remove(clip_score_name(ClipScore::Mean))
            .unwrap_or_default();
        Self {
            auc: mean.auc,
            pauc: mean.pauc,
            other: by,
        }
    }

    fn get(&self, how: &str) -> ScorerResult {
        if how == clip_score_name(ClipScore::Mean) {
            ScorerResult {
                auc: self.auc,
                pauc: self.pauc,
            }
        } else {
            self.other.get(how).copied().unwrap_or_default()
        }
    }
}

#[derive(Serialize)]
struct MachineResult {
    machine: String,
    train_clips: usize,
    test_normal: usize,
    test_anomaly: usize,
    /// Files of this machine that could not be read: left out of the figures.
    skipped: usize,
    /// Per scorer (see [`ScorerFigures`]).
    scorers: BTreeMap<String, ScorerFigures>,
    decision: DecisionResult,
    /// Known-fault identification (`--catalog`).
    #[serde(skip_serializing_if = "Option::is_none")]
    identification: Option<Identification>,
    /// Events on held-back normal clips before and after feedback on the other half.
    after_feedback: AfterFeedback,
}

/// A file left out because it could not be read or embedded.
#[derive(Serialize)]
struct Skipped {
    path: PathBuf,
    machine: String,
    error: String,
}

/// Means over machines of top-1/top-3 accuracy (machines without queries left out).
#[derive(Serialize, Default)]
struct MeanIdentification {
    chance_top1: Option<f64>,
    chance_top3: Option<f64>,
    windows_top1: Option<f64>,
    windows_top3: Option<f64>,
    whole_clip_top1: Option<f64>,
    whole_clip_top3: Option<f64>,
    queries: usize,
}

#[derive(Serialize, Default)]
struct TotalAfterFeedback {
    feedback_events: usize,
    windows_added: usize,
    held_back_seconds: f64,
    events_before: usize,
    events_after: usize,
    per_day_before: Option<f64>,
    per_day_after: Option<f64>,
}

#[derive(Serialize)]
struct Report {
    model: String,
    untrained_model: bool,
    max_fpr: f64,
    top_k: usize,
    machines: Vec<MachineResult>,
    /// Arithmetic means over machines, per scorer (same shape as a machine's).
    mean: BTreeMap<String, ScorerFigures>,
    /// Means over machines of the decision figures.
    mean_decision: DecisionResult,
    /// Means over machines of the identification figures (`--catalog`).
    #[serde(skip_serializing_if = "Option::is_none")]
    mean_identification: Option<MeanIdentification>,
    /// Sums over machines of the feedback figures.
    total_after_feedback: TotalAfterFeedback,
    /// Files left out of the figures (each also reported on stderr as it happened).
    skipped: Vec<Skipped>,
}

pub fn run(a: EvalArgs) -> anyhow::Result<()> {
    let s = super::settings(a.config.as_deref())?;
    let entries = eval::read_manifest(&a.manifest, a.root.as_deref())?;
    if a.catalog {
        // Before anything is embedded: a manifest without fault types cannot be used.
        identify::check_types(&entries, &a.manifest)?;
    }
    let mut e = super::embedder(&s, a.model.as_deref())?;
    let window = super::learn_window(&s, &mut e)?;
    e.set_keep_logmel(true);
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
        let mut opts = super::learn_options(&s, machine.clone());
        opts.mel_bins = Some(e.card().frontend.mel_bins);
        let (profile, _) = score::learn(&clips, &opts, super::model_ref(&e), window)?;
        let scorer = Scorer::new(&profile)?;
        let decide = DecideConfig::default();
        // Per scorer, per clip: the window scores.
        let mut per: BTreeMap<&str, Vec<Vec<f32>>> = BTreeMap::new();
        let mut labels = Vec::new();
        let fa = profile.manifest.false_alarms.as_ref();
        let mut dec = DecisionResult {
            target_per_day: fa.map(|f| f.target_per_day),
            expected_per_day: fa.map(|f| f.expected_per_day),
            low_per_day: fa.map(|f| f.low_per_day),
            high_per_day: fa.map(|f| f.high_per_day),
            ..Default::default()
        };
        let (mut flagged_normal, mut flagged_anom) = (0usize, 0usize);
        // Each test clip's windows, kept for identification and the feedback replay.
        let mut embedded: Vec<(&Entry, Vec<WindowEmbedding>)> = Vec::new();
        for t in &test {
            let wins = match embed_test(&mut e, window, &t.path) {
                Ok(w) => w,
                Err(err) => {
                    n_skipped += 1;
                    skip(&t.path, machine, err);
                    continue;
                }
            };
            let w = replay::scored_windows(&scorer, &wins);
            embedded.push((t, wins));
            let events = replay::replay(Levels::of(&profile), &decide, machine, &w)?;
            let started = replay::started(&events);
            if t.anomaly {
                flagged_anom += usize::from(started > 0);
            } else {
                flagged_normal += usize::from(started > 0);
                dec.normal_events += started;
                dec.normal_seconds += match (w.first(), w.last()) {
                    (Some(a), Some(b)) => b.end_s - a.start_s,
                    _ => 0.0,
                };
            }
            for name in SCORERS {
                per.entry(name).or_default().push(
                    w.iter()
                        .flat_map(|x| x.named_scores())
                        .filter(|(n, _)| *n == name)
                        .map(|(_, v)| v as f32)
                        .collect(),
                );
            }
            labels.push(t.anomaly);
        }
        let n_anom = labels.iter().filter(|&&l| l).count();
        let n_norm = labels.len() - n_anom;
        dec.detected = (n_anom > 0).then(|| flagged_anom as f64 / n_anom as f64);
        dec.normal_flagged = (n_norm > 0).then(|| flagged_normal as f64 / n_norm as f64);
        dec.false_events_per_day = (dec.normal_seconds > 0.0)
            .then(|| dec.normal_events as f64 * 86_400.0 / dec.normal_seconds);
        let mut scorers = BTreeMap::new();
        for (name, per_clip) in &per {
            if per_clip.iter().all(Vec::is_empty) {
                continue; // not computed (no log-mel statistics)
            }
            let mut by = BTreeMap::new();
            for how in CLIP_SCORES {
                // A clip without a score (too short for N of M) ranks lowest.
                let v: Vec<f32> = per_clip
                    .iter()
                    .map(|w| {
                        replay::clip_score(w, how, a.top_k, &decide).unwrap_or(f32::NEG_INFINITY)
                    })
                    .collect();
                by.insert(
                    clip_score_name(how).to_string(),
                    ScorerResult {
                        auc: eval::auc(&v, &labels),
                        pauc: eval::pauc(&v, &labels, a.max_fpr),
                    },
                );
            }
            scorers.insert(name.to_string(), ScorerFigures::from(by));
        }
        let clips = |anomaly: bool| -> Vec<after_feedback::Clip> {
            embedded
                .iter()
                .filter(|(t, _)| t.anomaly == anomaly)
                .map(|(t, w)| after_feedback::Clip {
                    path: &t.path,
                    windows: w,
                })
                .collect()
        };
        let after_feedback = after_feedback::after_feedback(
            &profile,
            &decide,
            machine,
            &clips(false),
            &clips(true),
        )?;
        let identification = if a.catalog {
            let typed: Vec<identify::Clip> = embedded
                .iter()
                .filter_map(|(t, w)| {
                    Some(identify::Clip {
                        path: &t.path,
                        anomaly_type: t.anomaly_type.as_deref()?,
                        windows: w,
                    })
                })
                .collect();
            Some(identify::identify(
                machine,
                &super::model_ref(&e),
                window,
                &typed,
            )?)
        } else {
            None
        };
        machines.push(MachineResult {
            machine: machine.clone(),
            train_clips: train.len(),
            test_normal: labels.iter().filter(|&&l| !l).count(),
            test_anomaly: labels.iter().filter(|&&l| l).count(),
            skipped: n_skipped,
            scorers,
            decision: dec,
            identification,
            after_feedback,
        });
    }
    let avg = |v: Vec<f64>| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
    let mut mean = BTreeMap::new();
    for name in SCORERS {
        if !machines.iter().any(|m| m.scorers.contains_key(name)) {
            continue;
        }
        let mut by = BTreeMap::new();
        for how in CLIP_SCORES {
            let key = clip_score_name(how);
            let m = |f: &dyn Fn(&ScorerResult) -> Option<f64>| {
                avg(machines
                    .iter()
                    .filter_map(|x| x.scorers.get(name).and_then(|b| f(&b.get(key))))
                    .collect())
            };
            by.insert(
                key.to_string(),
                ScorerResult {
                    auc: m(&|r| r.auc),
                    pauc: m(&|r| r.pauc),
                },
            );
        }
        mean.insert(name.to_string(), ScorerFigures::from(by));
    }
    let md = |f: &dyn Fn(&DecisionResult) -> Option<f64>| {
        avg(machines.iter().filter_map(|x| f(&x.decision)).collect())
    };
    let mean_decision = DecisionResult {
        normal_events: machines.iter().map(|m| m.decision.normal_events).sum(),
        normal_seconds: machines.iter().map(|m| m.decision.normal_seconds).sum(),
        false_events_per_day: md(&|d| d.false_events_per_day),
        detected: md(&|d| d.detected),
        normal_flagged: md(&|d| d.normal_flagged),
        target_per_day: md(&|d| d.target_per_day),
        expected_per_day: md(&|d| d.expected_per_day),
        low_per_day: md(&|d| d.low_per_day),
        high_per_day: md(&|d| d.high_per_day),
    };
    let mean_identification = a.catalog.then(|| {
        let ids: Vec<&Identification> = machines
            .iter()
            .filter_map(|m| m.identification.as_ref())
            .filter(|i| i.queries > 0)
            .collect();
        let m = |f: &dyn Fn(&Identification) -> Option<f64>| {
            avg(ids.iter().filter_map(|i| f(i)).collect())
        };
        MeanIdentification {
            chance_top1: m(&|i| i.chance_top1),
            chance_top3: m(&|i| i.chance_top3),
            windows_top1: m(&|i| i.windows.top1),
            windows_top3: m(&|i| i.windows.top3),
            whole_clip_top1: m(&|i| i.whole_clip.top1),
            whole_clip_top3: m(&|i| i.whole_clip.top3),
            queries: ids.iter().map(|i| i.queries).sum(),
        }
    });
    let mut total_after_feedback = TotalAfterFeedback::default();
    for f in machines.iter().map(|m| &m.after_feedback) {
        total_after_feedback.feedback_events += f.feedback_events;
        total_after_feedback.windows_added += f.windows_added;
        total_after_feedback.held_back_seconds += f.held_back_seconds;
        total_after_feedback.events_before += f.events_before;
        total_after_feedback.events_after += f.events_after;
    }
    let secs = total_after_feedback.held_back_seconds;
    let per_day = |n: usize| (secs > 0.0).then(|| n as f64 * 86_400.0 / secs);
    total_after_feedback.per_day_before = per_day(total_after_feedback.events_before);
    total_after_feedback.per_day_after = per_day(total_after_feedback.events_after);
    let report = Report {
        model: e.card().name.clone(),
        untrained_model: e.card().is_untrained(),
        max_fpr: a.max_fpr,
        top_k: a.top_k,
        machines,
        mean,
        mean_decision,
        mean_identification,
        total_after_feedback,
        skipped,
    };
    match a.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Format::Text => print_text(&report, clip_score_name(a.clip_score)),
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

fn print_text(r: &Report, how: &str) {
    let f = |v: Option<f64>| v.map_or_else(|| "  n/a".to_string(), |x| format!("{x:.3}"));
    let fd = |v: Option<f64>| v.map_or_else(|| "  n/a".to_string(), |x| format!("{x:.1}"));
    println!(
        "model {}{}; clip score: {how}{}",
        r.model,
        if r.untrained_model {
            " (untrained weights)"
        } else {
            ""
        },
        if how == "top_k" {
            format!(" (k = {})", r.top_k)
        } else {
            String::new()
        }
    );
    println!(
        "{:<20} {:>6} {:>6} {:>6}  {:>8} {:>8}  {:>8} {:>8}  {:>8} {:>8}  {:>8} {:>8}  {:>9} {:>8}",
        "machine",
        "train",
        "normal",
        "anom",
        "AUC cen",
        "pAUC cen",
        "AUC knn",
        "pAUC knn",
        "AUC mel",
        "pAUC mel",
        "AUC fus",
        "pAUC fus",
        "false/day",
        "detected"
    );
    let row = |name: &str,
               counts: [String; 3],
               sc: &BTreeMap<String, ScorerFigures>,
               d: &DecisionResult| {
        let get = |s: &str| sc.get(s).map(|b| b.get(how));
        let (c, k, m, u) = (get(CENTROID), get(KNN), get(MEL), get(FUSED));
        println!(
            "{:<20} {:>6} {:>6} {:>6}  {:>8} {:>8}  {:>8} {:>8}  {:>8} {:>8}  {:>8} {:>8}  {:>9} {:>8}",
            name,
            counts[0],
            counts[1],
            counts[2],
            f(c.and_then(|x| x.auc)),
            f(c.and_then(|x| x.pauc)),
            f(k.and_then(|x| x.auc)),
            f(k.and_then(|x| x.pauc)),
            f(m.and_then(|x| x.auc)),
            f(m.and_then(|x| x.pauc)),
            f(u.and_then(|x| x.auc)),
            f(u.and_then(|x| x.pauc)),
            fd(d.false_events_per_day),
            f(d.detected)
        );
    };
    for m in &r.machines {
        row(
            &m.machine,
            [
                m.train_clips.to_string(),
                m.test_normal.to_string(),
                m.test_anomaly.to_string(),
            ],
            &m.scorers,
            &m.decision,
        );
    }
    row(
        "mean",
        [String::new(), String::new(), String::new()],
        &r.mean,
        &r.mean_decision,
    );
    println!(
        "(pAUC over FPR 0..{}, standardised as scikit-learn's roc_auc_score(max_fpr); 0.5 = chance.\n \
         false/day: events the daemon's rule (default [monitor.decide]) raises per 24 h of normal test audio;\n \
         detected: share of anomalous test clips with an event; calibrated for {} false event(s)/day)",
        r.max_fpr,
        fd(r.mean_decision.target_per_day)
    );
    print_identification(r);
    print_after_feedback(r);
    for s in &r.skipped {
        println!("skipped ({}): {}", s.machine, s.error);
    }
}

/// A share as a fixed-width figure, `n/a` without one.
fn share(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".to_string(), |x| format!("{x:.2}"))
}

fn print_identification(r: &Report) {
    let Some(mean) = &r.mean_identification else {
        return;
    };
    println!(
        "\nfault identification: catalog and queries split {}",
        identify::SPLIT
    );
    println!(
        "{:<20} {:>5} {:>8} {:>7}  {:>9} {:>9}  {:>9} {:>9}",
        "machine",
        "types",
        "catalog",
        "queries",
        "top-1 win",
        "top-3 win",
        "top-1 clp",
        "top-3 clp"
    );
    for m in &r.machines {
        let Some(i) = &m.identification else { continue };
        println!(
            "{:<20} {:>5} {:>8} {:>7}  {:>9} {:>9}  {:>9} {:>9}",
            m.machine,
            i.types,
            i.catalog_clips,
            i.queries,
            share(i.windows.top1),
            share(i.windows.top3),
            share(i.whole_clip.top1),
            share(i.whole_clip.top3)
        );
        if !i.unqueried_types.is_empty() {
            println!(
                "  (in the catalog but with no clip left to query: {})",
                i.unqueried_types.join(", ")
            );
        }
    }
    println!(
        "{:<20} {:>5} {:>8} {:>7}  {:>9} {:>9}  {:>9} {:>9}",
        "mean",
        "",
        "",
        mean.queries,
        share(mean.windows_top1),
        share(mean.windows_top3),
        share(mean.whole_clip_top1),
        share(mean.whole_clip_top3)
    );
    println!(
        "(win: one catalog entry per window, queried window by window, as `catalog add` and `search` do;\n \
         clp: one entry per clip, queried with the clip's mean, as with --whole-clip; labels ranked by `sounds like`;\n \
         chance: top-1 {}, top-3 {} on average over machines)",
        share(mean.chance_top1),
        share(mean.chance_top3)
    );
}

fn print_after_feedback(r: &Report) {
    let fd = |v: Option<f64>| v.map_or_else(|| "n/a".to_string(), |x| format!("{x:.1}"));
    println!("\nfalse alarms after feedback: {}", after_feedback::SPLIT);
    println!(
        "{:<20} {:>8} {:>9} {:>7}  {:>9} {:>6} {:>6}  {:>10} {:>9}  {:>8}",
        "machine",
        "fb clips",
        "fb events",
        "windows",
        "held back",
        "before",
        "after",
        "before/day",
        "after/day",
        "detected"
    );
    for m in &r.machines {
        let f = &m.after_feedback;
        println!(
            "{:<20} {:>8} {:>9} {:>7}  {:>9} {:>6} {:>6}  {:>10} {:>9}  {:>8}",
            m.machine,
            f.feedback_clips,
            f.feedback_events,
            f.windows_added,
            f.held_back_clips,
            f.events_before,
            f.events_after,
            fd(f.per_day_before),
            fd(f.per_day_after),
            format!("{}->{}", share(f.detected_before), share(f.detected_after))
        );
    }
    let t = &r.total_after_feedback;
    println!(
        "{:<20} {:>8} {:>9} {:>7}  {:>9} {:>6} {:>6}  {:>10} {:>9}",
        "total",
        "",
        t.feedback_events,
        t.windows_added,
        "",
        t.events_before,
        t.events_after,
        fd(t.per_day_before),
        fd(t.per_day_after)
    );
    println!(
        "(each event on the feedback half marked normal as `earshot feedback --normal` does; events counted on the\n \
         held-back half with the daemon's rule before and after; detected: anomalous test clips with an event, before->after)"
    );
}

/// Embeds a test clip with the profile's window (the level normalisation is set on `e`).
fn embed_test(
    e: &mut earshot::embed::Embedder,
    window: earshot::score::profile::WindowSpec,
    path: &std::path::Path,
) -> anyhow::Result<Vec<WindowEmbedding>> {
    let (wins, report) =
        earshot::embed::file::embed_file(e, path, window.seconds, window.hop_seconds)?;
    super::warn_report(path, &report);
    Ok(wins)
}
