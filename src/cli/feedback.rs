//! `earshot feedback`: "that was normal". Marks an event's sound as normal in its monitor's
//! profile (`--normal`), takes that back (`--undo`), or lists what was marked (`--list`).
//! The running service picks the changed profile up on its own (see `daemon::service`).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use earshot::config::Settings;
use earshot::evidence::Store;
use earshot::evidence::store::Listed;
use earshot::feedback::{self, FeedbackRecord, Records};
use earshot::index::AzureConfig;
use earshot::index::azure::AzureClient;
use earshot::index::upload::UploadOptions;
use earshot::score::impulse::IMPULSE;
use earshot::score::{Profile, Scorer, WindowScores};

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
        // Azure first: the local record holds the keys to delete, so it goes only once the
        // index has let go of them (an outage then changes nothing, and a re-run finishes).
        let profile = Profile::load(&dir)?;
        if let Some(rec) = Records::load(&profile)?.get(&id)
            && let Some(cfg) = azure_index(&s, &rec.monitor)
        {
            let (client, opts, location) = azure_client(cfg)?;
            let r = runtime()?.block_on(feedback::azure::delete_rows(
                &client,
                &profile.machine,
                &rec.ids,
                &opts,
            ));
            if let Err(e) = r {
                return Err(feedback::FeedbackError::Azure {
                    done: format!(
                        "nothing was undone: the feedback on {} stays recorded in {}",
                        rec.event_id,
                        dir.display()
                    ),
                    location,
                    detail: e.to_string(),
                    todo: format!(
                        "run `earshot feedback {} --undo` again once the service answers (removing is idempotent)",
                        rec.event_id
                    ),
                }
                .into());
            }
            println!(
                "removed {} vectors of {} from Azure AI Search {location}",
                rec.ids.len(),
                rec.event_id
            );
        }
        let (_, rec) = feedback::undo(&dir, &id)?;
        println!(
            "undone: {} windows of {} removed from {} (the service reloads it by itself)",
            rec.windows,
            rec.event_id,
            dir.display()
        );
        return Ok(());
    }
    let event = feedback::find_event(&store, given)?;
    if event.meta.partial {
        // Only the clip so far (written at detection) is there: marking it normal would teach
        // the profile the onset and miss the rest of the event.
        let (open, _, _) =
            earshot::alert::open::OpenEvents::open(&state_dir, std::time::SystemTime::now());
        if open.fingerprints().any(|f| f == event.meta.event_id) {
            anyhow::bail!(
                "{} has not ended: its clip so far covers {:.1} s, up to its detection (or earshot stopped before the event ended and has not started since). Run this again once the event has ended and its whole clip is written (`earshot events` then shows it without \"partial\")",
                event.meta.event_id,
                event.meta.clip_seconds
            );
        }
        println!(
            "note: earshot stopped before {} ended, so only its clip so far ({:.1} s, up to its detection) exists: that is what is marked normal",
            event.meta.event_id, event.meta.clip_seconds
        );
    }
    let dir = profile_dir(&s, a.profile.as_deref(), Some(&event.meta.monitor))?;
    let before = Profile::load(&dir)?;
    let azure = azure_index(&s, &event.meta.monitor);
    if let Some(cfg) = azure
        && let Some(rec) = Records::load(&before)?.get(&event.meta.event_id)
    {
        // Recorded before, but maybe not uploaded (Azure was down): finish that.
        upload(cfg, &before, rec)?;
        println!(
            "{} was already marked normal in {}; its {} vectors are in Azure AI Search now",
            rec.event_id,
            dir.display(),
            rec.ids.len()
        );
        return Ok(());
    }
    let mut e = super::embedder(&s, a.model.as_deref())?;
    let card_path = e.dir().join("card.json");
    before.check_model(e.card(), &card_path)?;
    e.use_window(&before.manifest.window)?;
    // The log-mel too when the profile scores it (`mel`, `fused`): the re-check shows them.
    e.set_keep_logmel(before.mel.is_some());
    let w = before.manifest.window;
    let (wins, report) =
        earshot::embed::file::embed_file(&mut e, &event.clip, w.seconds, w.hop_seconds)
            .with_context(|| format!("embedding the evidence clip {}", event.clip.display()))?;
    super::warn_report(&event.clip, &report);
    let span = feedback::event_span(&event);
    let (windows, rest): (Vec<_>, Vec<_>) = feedback::span_windows(
        wins.into_iter()
            .map(|w| (w.start_s, (w.embedding, w.impulse_db, w.logmel)))
            .collect(),
        w.seconds,
        span,
    )
    .into_iter()
    .map(|(t, (e, i, m))| ((t, e), (i, m)))
    .unzip();
    let (impulses, logmels): (Vec<f64>, Vec<Vec<f32>>) = rest.into_iter().unzip();
    let impulse_peak = impulses
        .into_iter()
        .filter(|v| v.is_finite())
        .reduce(f64::max);
    // The added windows' scores under the former profile: their highest `mel` score is
    // recorded (feedback does not change the Gaussian), and the re-check prints them.
    let sb = Scorer::new(&before).context("scoring with the former profile")?;
    let scores_before = window_scores(&sb, &windows, &logmels);
    let mel_peak = scores_before.iter().filter_map(|s| s.mel).reduce(f32::max);
    let after = feedback::add(
        &dir,
        &event,
        a.note.clone(),
        &stream_times(&event, windows.clone()),
        feedback::Peaks {
            impulse_db: impulse_peak,
            mel: mel_peak,
        },
    )?;
    println!(
        "added {} windows of {} ({:.1}..{:.1} s of its clip) to {} as normal",
        windows.len(),
        event.meta.event_id,
        span.0,
        span.1,
        dir.display()
    );
    recheck(
        &event,
        &before,
        &scores_before,
        &after,
        &windows,
        &logmels,
        impulse_peak,
    )?;
    if let Some(cfg) = azure {
        let records = Records::load(&after)?;
        if let Some(rec) = records.get(&event.meta.event_id) {
            upload(cfg, &after, rec)?;
        }
    }
    println!(
        "embedding thresholds unchanged; the running service reloads the profile by itself; undo with `earshot feedback {} --undo`",
        event.meta.event_id
    );
    Ok(())
}

fn stream_times(event: &Listed, w: Vec<(f64, Vec<f32>)>) -> Vec<(f64, Vec<f32>)> {
    w.into_iter()
        .map(|(t, e)| (event.meta.clip_start_s + t, e))
        .collect()
}

/// Every window's scores (all scorers) under one profile.
fn window_scores(
    sc: &Scorer,
    windows: &[(f64, Vec<f32>)],
    logmels: &[Vec<f32>],
) -> Vec<WindowScores> {
    windows
        .iter()
        .zip(logmels)
        .map(|((_, e), m)| sc.score_window(e, (!m.is_empty()).then_some(m.as_slice())))
        .collect()
}

/// The thresholds stay; what changes is the event's own scores. Prints its peak per scorer
/// before and after against the threshold, and whether it would still fire.
fn recheck(
    event: &Listed,
    before: &Profile,
    wb: &[WindowScores],
    after: &Profile,
    windows: &[(f64, Vec<f32>)],
    logmels: &[Vec<f32>],
    impulse_peak: Option<f64>,
) -> anyhow::Result<()> {
    let sa = Scorer::new(after).context("scoring with the new profile")?;
    let wa = window_scores(&sa, windows, logmels);
    for (name, t) in &after.manifest.thresholds {
        let peak = |w: &[WindowScores]| {
            w.iter()
                .filter_map(|s| s.get(name))
                .fold(None, |m: Option<f32>, v| Some(m.map_or(v, |m| m.max(v))))
        };
        let (Some(b), Some(a)) = (peak(wb), peak(&wa)) else {
            continue;
        };
        let t = t.value;
        let verdict = if a > t {
            "still above (the scorer may still fire)"
        } else {
            "below"
        };
        println!("  {name}: event peak {b:.4} -> {a:.4} against threshold {t:.4}: {verdict}");
    }
    let fired_impulse = event.meta.event.fired.iter().any(|f| f == IMPULSE);
    match (
        before.manifest.impulse,
        after.manifest.impulse,
        impulse_peak,
    ) {
        (Some(b), Some(a), Some(peak)) => println!(
            "  {IMPULSE}: event peak {peak:.1} dB; level {:.1} -> {:.1} dB: {}",
            b.level_db,
            a.level_db,
            if peak > a.level_db {
                "still above (the scorer may still fire)"
            } else {
                "below"
            }
        ),
        _ if fired_impulse => println!(
            "  {IMPULSE}: this event fired on the impulse scorer, but its level could not be raised (no impulse value measured in the clip)"
        ),
        _ => {}
    }
    Ok(())
}

/// The Azure AI Search settings of the monitor, when its normal memory (k-NN) is there.
fn azure_index<'a>(s: &'a Settings, monitor: &str) -> Option<&'a AzureConfig> {
    s.monitors
        .iter()
        .find(|m| m.name == monitor)
        .and_then(|m| match &m.index {
            earshot::index::IndexConfig::Azure(a) => Some(a),
            earshot::index::IndexConfig::Embedded(_) => None,
        })
}

/// A client for the monitor's index (the api-key from its env var or file), the upload
/// options its config asks for, and how messages name the index.
fn azure_client(cfg: &AzureConfig) -> anyhow::Result<(AzureClient, UploadOptions, String)> {
    let client = AzureClient::from_config(cfg)?;
    let location = format!("`{}` at {}", client.index_name(), client.endpoint());
    Ok((client, UploadOptions::from_config(cfg), location))
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Uploads what one feedback added to the monitor's Azure index; on failure says that the
/// feedback holds locally and how to finish the upload.
fn upload(cfg: &AzureConfig, profile: &Profile, rec: &FeedbackRecord) -> anyhow::Result<()> {
    let (client, opts, location) = azure_client(cfg)?;
    let r = runtime()?.block_on(feedback::azure::upload_rows(
        &client, profile, &rec.ids, &opts,
    ));
    match r {
        Ok(rep) => {
            println!(
                "uploaded {} vectors of {} to Azure AI Search {location} (the keys `earshot index` gives them)",
                rep.documents, rec.event_id
            );
            Ok(())
        }
        Err(e) => Err(feedback::FeedbackError::Azure {
            done: format!(
                "{} is marked normal in {} (its centroids apply at once)",
                rec.event_id,
                profile.dir.display()
            ),
            location,
            detail: e.to_string(),
            todo: format!(
                "its {} k-NN vectors are not all uploaded yet: run `earshot feedback {} --normal` again once the service answers (same keys: nothing is duplicated)",
                rec.ids.len(),
                rec.event_id
            ),
        }
        .into()),
    }
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
