//! `earshot feedback`: "that was normal". Marks an event's sound as normal in its monitor's
//! profile (`--normal`), takes that back (`--undo`), or lists what was marked (`--list`).
//! The running service picks the changed profile up on its own (see `daemon::service`).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use earshot::config::Settings;
use earshot::evidence::Store;
use earshot::evidence::store::Listed;
use earshot::feedback::{self, Records};
use earshot::score::{Profile, Scorer};

#[derive(clap::Args)]
pub struct FeedbackArgs {
    /// The event: its fingerprint `<monitor>/<hex>` as `earshot events`, events.jsonl
    /// (`fingerprint`), alerts (`event_id`) and the events page show it, or a unique start of
    /// the hex part.
    #[arg(required_unless_present = "list")]
    event: Option<String>,
    /// Add the event's windows to the monitor's normal memory.
    #[arg(long, conflicts_with_all = ["undo", "list"], required_unless_present_any = ["undo", "list"])]
    normal: bool,
    /// Remove exactly what `--normal` added for this event.
    #[arg(long, conflicts_with = "list")]
    undo: bool,
    /// List the feedback recorded in the monitors' profiles.
    #[arg(long)]
    list: bool,
    /// Why it was normal (kept in the record).
    #[arg(long)]
    note: Option<String>,
    /// Config file (state directory, monitors' profiles, model); `EARSHOT_*__*` environment
    /// variables override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// State directory (overrides the config's).
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Profile directory (default: the profile of the event's monitor in the config).
    #[arg(long)]
    profile: Option<PathBuf>,
    /// Model directory (overrides `model.dir`).
    #[arg(long)]
    model: Option<PathBuf>,
}

pub fn run(a: FeedbackArgs) -> anyhow::Result<()> {
    let s = super::settings(a.config.as_deref())?;
    if a.list {
        return list(&s, a.profile.as_deref());
    }
    let state_dir = a.state_dir.clone().unwrap_or_else(|| s.state_dir());
    let store = Store::new(&state_dir);
    let given = a.event.as_deref().unwrap_or_default();
    if a.undo {
        // The evidence may have been pruned since: undo by the recorded id too.
        let (id, monitor) = match feedback::find_event(&store, given) {
            Ok(l) => (l.meta.event_id.clone(), Some(l.meta.monitor.clone())),
            Err(_) => (
                given.trim().to_owned(),
                given.rsplit_once('/').map(|(m, _)| m.to_owned()),
            ),
        };
        let dir = profile_dir(&s, a.profile.as_deref(), monitor.as_deref())?;
        let (_, rec) = feedback::undo(&dir, &id)?;
        println!(
            "undone: {} windows of {} removed from {} (the service reloads it by itself)",
            rec.windows,
            rec.event_id,
            dir.display()
        );
        if let Some(m) = azure_monitor(&s, &rec.monitor) {
            println!(
                "note: monitor {m} scores k-NN in Azure AI Search, which still holds these {} vectors: removing them there is not automated yet; `earshot index --profile {} --config <F> --monitor {m} --recreate` rebuilds that index from the profile (and drops other machines' documents in it)",
                rec.windows,
                dir.display()
            );
        }
        return Ok(());
    }
    let event = feedback::find_event(&store, given)?;
    let dir = profile_dir(&s, a.profile.as_deref(), Some(&event.meta.monitor))?;
    let before = Profile::load(&dir)?;
    let mut e = super::embedder(&s, a.model.as_deref())?;
    let card_path = e.dir().join("card.json");
    before.check_model(e.card(), &card_path)?;
    e.set_level_dbfs(before.manifest.window.level_dbfs);
    let w = before.manifest.window;
    let (wins, report) =
        earshot::embed::file::embed_file(&mut e, &event.clip, w.seconds, w.hop_seconds)
            .with_context(|| format!("embedding the evidence clip {}", event.clip.display()))?;
    super::warn_report(&event.clip, &report);
    let span = feedback::event_span(&event);
    let windows = feedback::span_windows(
        wins.into_iter().map(|w| (w.start_s, w.embedding)).collect(),
        w.seconds,
        span,
    );
    let after = feedback::add(
        &dir,
        &event,
        a.note.clone(),
        &stream_times(&event, windows.clone()),
    )?;
    println!(
        "added {} windows of {} ({:.1}..{:.1} s of its clip) to {} as normal",
        windows.len(),
        event.meta.event_id,
        span.0,
        span.1,
        dir.display()
    );
    recheck(&event, &before, &after, &windows)?;
    if let Some(m) = azure_monitor(&s, &event.meta.monitor) {
        println!(
            "note: monitor {m} scores k-NN in Azure AI Search: upload the new vectors with `earshot index --profile {} --config <F> --monitor {m}` (deterministic keys: the rest is left as it is); the centroids apply at once",
            dir.display()
        );
    }
    println!(
        "thresholds unchanged; the running service reloads the profile by itself; undo with `earshot feedback {} --undo`",
        event.meta.event_id
    );
    Ok(())
}

fn stream_times(event: &Listed, w: Vec<(f64, Vec<f32>)>) -> Vec<(f64, Vec<f32>)> {
    w.into_iter()
        .map(|(t, e)| (event.meta.clip_start_s + t, e))
        .collect()
}

/// The thresholds stay; what changes is the event's own scores. Prints its peak per scorer
/// before and after against the threshold, and whether it would still fire.
fn recheck(
    event: &Listed,
    before: &Profile,
    after: &Profile,
    windows: &[(f64, Vec<f32>)],
) -> anyhow::Result<()> {
    let sb = Scorer::new(before).context("scoring with the former profile")?;
    let sa = Scorer::new(after).context("scoring with the new profile")?;
    let peak = |sc: &Scorer, knn: bool| {
        windows
            .iter()
            .map(|(_, e)| {
                let s = sc.score(e);
                if knn {
                    s.knn.unwrap_or(0.0)
                } else {
                    s.centroid
                }
            })
            .fold(0.0f32, f32::max)
    };
    for (name, knn) in [
        (earshot::score::CENTROID, false),
        (earshot::score::KNN, true),
    ] {
        let Some(t) = after.manifest.thresholds.get(name).map(|t| t.value) else {
            continue;
        };
        let (b, a) = (peak(&sb, knn), peak(&sa, knn));
        println!(
            "  {name}: event peak {b:.4} -> {a:.4} against threshold {t:.4}: {}",
            if a > t {
                "still above (the scorer may still fire)"
            } else {
                "below"
            }
        );
    }
    if event.meta.event.fired.iter().any(|f| f == "impulse") {
        println!(
            "  impulse: this event fired on the impulse scorer, which does not use the normal memory: feedback cannot silence it"
        );
    }
    Ok(())
}

/// The monitor's name when its k-NN index is Azure AI Search (feedback changes the local
/// profile; the remote copy of its embeddings is synced by `earshot index`).
fn azure_monitor<'a>(s: &'a Settings, monitor: &str) -> Option<&'a str> {
    s.monitors
        .iter()
        .find(|m| m.name == monitor)
        .filter(|m| matches!(m.index, earshot::index::IndexConfig::Azure(_)))
        .map(|m| m.name.as_str())
}

/// The profile to change: `--profile`, else the config's monitor of that name.
fn profile_dir(
    s: &Settings,
    given: Option<&Path>,
    monitor: Option<&str>,
) -> anyhow::Result<PathBuf> {
    if let Some(p) = given {
        return Ok(p.to_owned());
    }
    let Some(m) = monitor else {
        bail!("cannot tell the event's monitor: pass --profile DIR");
    };
    match s.monitors.iter().find(|x| x.name == m) {
        Some(x) => Ok(x.profile.clone()),
        None => bail!(
            "no [[monitor]] named {m:?} in the config: pass --config with the service's config, or --profile DIR"
        ),
    }
}

fn list(s: &Settings, given: Option<&Path>) -> anyhow::Result<()> {
    let dirs: Vec<PathBuf> = match given {
        Some(p) => vec![p.to_owned()],
        None => s.monitors.iter().map(|m| m.profile.clone()).collect(),
    };
    if dirs.is_empty() {
        bail!("no profiles to list: pass --config with monitors, or --profile DIR");
    }
    let mut n = 0;
    for d in dirs {
        let p = Profile::load(&d)?;
        for r in Records::load(&p)?.entries {
            n += 1;
            println!(
                "{}  {}  {} windows  {}  {}{}",
                r.added_at,
                r.event_id,
                r.windows,
                r.monitor,
                d.display(),
                r.note.map(|n| format!("  note: {n}")).unwrap_or_default()
            );
        }
    }
    if n == 0 {
        println!("no feedback recorded");
    }
    Ok(())
}
