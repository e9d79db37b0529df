//! `earshot check --config F`: what plant IT runs before `systemctl restart earshot`.
//!
//! Validates the config and everything it names — the model (card, checksum, an ONNX Runtime
//! session is really created), every monitor's profile against that model, replayed files,
//! capture devices (looked up through cpal, no stream is opened), index and alert secrets
//! (read, never printed), the HTTP endpoint's TLS and basic-auth files — and starts nothing:
//! no capture, no socket, no state written. Every finding is one line `ok:`, `warning:` or
//! `error:` that says what to fix; the exit status is 1 when there is any error.
//!
//! A capture device that is not present is a *warning*, not an error: the service retries a
//! missing device with backoff (a USB microphone that enumerates late, a device plugged in
//! after boot), so the config is valid and the service will run; `--require-devices` makes it
//! an error for sites where the device must be there now.

use std::path::PathBuf;

use earshot::config::Settings;
use earshot::daemon::monitor::Monitor;
use earshot::embed::{EmbedOptions, Embedder};
use earshot::index::{IndexConfig, KeySource};
use earshot::score::Profile;

#[derive(clap::Args)]
pub struct CheckArgs {
    /// Config file to check (TOML); `EARSHOT_*__*` variables override it as in `run`.
    #[arg(long, env = "EARSHOT_CONFIG")]
    config: PathBuf,
    /// Treat a capture device that is not present now as an error (default: a warning,
    /// because the service waits for a device that is plugged in later).
    #[arg(long)]
    require_devices: bool,
}

/// The findings of one check run, printed as they come.
#[derive(Default)]
struct Report {
    errors: usize,
    warnings: usize,
}

impl Report {
    fn ok(&mut self, what: impl std::fmt::Display) {
        println!("ok: {what}");
    }
    fn warn(&mut self, what: impl std::fmt::Display) {
        self.warnings += 1;
        println!("warning: {what}");
    }
    fn error(&mut self, what: impl std::fmt::Display) {
        self.errors += 1;
        println!("error: {what}");
    }
}

pub fn run(a: CheckArgs) -> anyhow::Result<()> {
    let mut r = Report::default();
    let shown = a.config.display().to_string();
    let settings = match Settings::load(Some(&a.config)) {
        Ok(s) => {
            r.ok(format!(
                "config {shown}: keys and values valid ({} monitor(s))",
                s.monitors.len()
            ));
            Some(s)
        }
        Err(e) => {
            r.error(e);
            None
        }
    };
    if let Some(s) = &settings {
        check_settings(s, &a, &mut r);
    }
    println!(
        "{shown}: {} error(s), {} warning(s){}",
        r.errors,
        r.warnings,
        if r.errors == 0 {
            " — the service can be (re)started with this config"
        } else {
            " — fix the errors above before restarting the service"
        }
    );
    if r.errors > 0 {
        anyhow::bail!("{shown}: check failed with {} error(s)", r.errors);
    }
    Ok(())
}

fn check_settings(s: &Settings, a: &CheckArgs, r: &mut Report) {
    if s.monitors.is_empty() {
        r.error("no [[monitor]] in the config: add one per machine (see config/earshot.toml)");
    }
    let embedder = check_model(s, r);
    for m in &s.monitors {
        check_monitor(m, embedder.as_ref(), a.require_devices, r);
    }
    check_catalog(s, embedder.as_ref(), r);
    check_alerts(s, r);
    check_http(s, r);
    check_state_dir(s, r);
}

/// The sound catalog events are compared with. A refused one is a warning, not an error: the
/// service runs without `sounds_like` rather than not at all.
fn check_catalog(s: &Settings, embedder: Option<&Embedder>, r: &mut Report) {
    use earshot::catalog::known::KnownSounds;
    let dir = s.catalog.dir(&s.state_dir());
    let (Some(e), Ok(model_dir)) = (embedder, s.find_model_dir()) else {
        return;
    };
    let card_path = model_dir.join(earshot::embed::card::CARD_FILE);
    if let earshot::catalog::known::CatalogIndex::Azure(a) = &s.catalog.index {
        r.warn(format!(
            "catalog.index: Azure AI Search index `{}`: `earshot catalog` and `earshot search` use it, but events are compared with an embedded catalog only and will carry no `sounds_like`",
            a.index_name
        ));
        return;
    }
    match KnownSounds::load(&s.catalog, &s.state_dir(), e.card(), &card_path) {
        Ok(None) if !s.catalog.sounds_like => r.ok("catalog.sounds_like = false"),
        Ok(None) => r.ok(format!(
            "catalog {}: no entries; events will carry no `sounds_like`",
            dir.display()
        )),
        Ok(Some(k)) => {
            r.ok(format!(
                "catalog {}: {} entries ({}) match the model",
                dir.display(),
                k.catalog().len(),
                k.catalog().known_labels()
            ));
            let unknown = k.unknown_benign();
            if !unknown.is_empty() {
                r.warn(format!(
                    "catalog.benign: {unknown:?} not in the catalog (its labels: {}); they cannot match",
                    k.catalog().known_labels()
                ));
            }
        }
        Err(err) => r.warn(format!(
            "catalog: {err}; the service would run without `sounds_like`"
        )),
    }
}

/// The model the service would load: found, checksum right, ONNX Runtime found and a session
/// created with the graph's inputs and outputs matching the card.
fn check_model(s: &Settings, r: &mut Report) -> Option<Embedder> {
    let dir = match s.find_model_dir() {
        Ok(d) => d,
        Err(e) => {
            r.error(e);
            return None;
        }
    };
    let opts = EmbedOptions {
        // One thread is all a check needs; the session is dropped at once.
        threads: 1,
        ..s.embed_options()
    };
    match Embedder::load(&dir, &opts) {
        Ok(e) => {
            let path = earshot::embed::runtime::ensure(opts.onnxruntime.as_deref())
                // Shown resolved (`/usr/bin/../lib/earshot/...` -> `/usr/lib/earshot/...`).
                .map(|p| std::fs::canonicalize(&p).unwrap_or(p).display().to_string())
                .unwrap_or_default();
            r.ok(format!(
                "model {} ({}): card, checksum and ONNX Runtime session OK (runtime {path})",
                dir.display(),
                e.card().name
            ));
            if e.card().is_untrained() {
                r.warn(format!(
                    "model {} has untrained (seeded random) weights: use models/aisfx-cnn9 (or a converted PANNs checkpoint) for real machines",
                    e.card().name
                ));
            }
            check_model_cache(s, &e, r);
            Some(e)
        }
        Err(e) => {
            r.error(format!(
                "`model.dir` {}: {e}; fix the model directory or set `model.dir` to one with card.json and model.onnx",
                dir.display()
            ));
            None
        }
    }
}

/// The service's saved optimised model ([`earshot::embed::optimized`]): whether the next
/// start can load it (a lower memory peak) or will make it.
fn check_model_cache(s: &Settings, e: &Embedder, r: &mut Report) {
    if s.model.skip_checksum {
        return;
    }
    let card = e.card();
    let entry =
        earshot::embed::optimized::Entry::new(&s.model_cache_dir(), &card.name, &card.onnx.sha256);
    let dir = entry.dir().display();
    match entry.usable() {
        Ok(Some(_)) => r.ok(format!(
            "optimised model saved in {dir}: the service loads it without optimising again"
        )),
        Ok(None) => r.ok(format!(
            "no optimised model saved yet in {dir}: the service's first start makes it (a higher memory peak once)"
        )),
        Err(why) => r.warn(format!(
            "the saved optimised model cannot be used ({why}): the service makes it again at its next start; nothing to do"
        )),
    }
    let others = entry.other_entries();
    if !others.is_empty() {
        let mb = others.iter().map(|o| o.1).sum::<u64>() as f64 / 1e6;
        let names: Vec<String> = others
            .iter()
            .filter_map(|o| o.0.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        r.ok(format!(
            "{} optimised copies of other models or versions in {} ({mb:.0} MB: {}): the service's next start removes them",
            others.len(),
            s.model_cache_dir().display(),
            names.join(", ")
        ));
    }
}

fn check_monitor(
    m: &earshot::config::MonitorSettings,
    embedder: Option<&Embedder>,
    require_devices: bool,
    r: &mut Report,
) {
    let name = &m.name;
    // Profile loads, hop fits, a replayed file opens: what a reload checks before it swaps.
    // The errors already say what to run or fix.
    let preflight = Monitor::preflight(m);
    if let Err(e) = &preflight {
        r.error(e);
    }
    if preflight.is_ok() {
        check_profile(m, embedder, r);
    }
    match (&m.source.file, &m.source.device) {
        (Some(f), _) if preflight.is_ok() => {
            r.ok(format!("monitor {name}: replay file {} opens", f.display()))
        }
        (Some(_), _) => {}
        (None, dev) => {
            let spec = earshot::daemon::monitor::device_settings(m).device;
            match earshot::capture::lookup_input_device(spec.as_deref()) {
                Ok((id, why)) => r.ok(format!("monitor {name}: device {id} present ({why})")),
                Err(why) => {
                    let msg = format!(
                        "monitor {name}: `source.device` {:?}: {why}. The service waits for it and opens it when it appears; check the cable and `earshot devices`, or fix the id",
                        dev.as_deref().unwrap_or("default")
                    );
                    if require_devices {
                        r.error(msg);
                    } else {
                        r.warn(msg);
                    }
                }
            }
        }
    }
    if let IndexConfig::Azure(az) = &m.index {
        let source = match (&az.api_key_env, &az.api_key_file) {
            (Some(v), _) => Some(KeySource::Env(v.clone())),
            (None, Some(f)) => Some(KeySource::File(PathBuf::from(f))),
            (None, None) => None,
        };
        match source.map(|k| (k.read(), k.describe())) {
            Some((Ok(_), from)) => r.ok(format!(
                "monitor {name}: Azure api-key readable from {from} (not contacted: `earshot index --check` tests the index itself)"
            )),
            Some((Err(e), _)) => r.error(format!("monitor {name}: `index`: {e}")),
            None => r.error(format!(
                "monitor {name}: `index`: no api_key_env or api_key_file"
            )),
        }
    }
}

/// The profile against the model the service would load.
fn check_profile(
    m: &earshot::config::MonitorSettings,
    embedder: Option<&Embedder>,
    r: &mut Report,
) {
    let name = &m.name;
    let profile = match Profile::load(&m.profile) {
        Ok(p) => p,
        Err(e) => {
            r.error(format!("monitor {name}: `profile`: {e}"));
            return;
        }
    };
    match embedder {
        Some(e) => {
            let card = e.dir().join(earshot::embed::card::CARD_FILE);
            match profile.check_model(e.card(), &card) {
                Ok(()) => r.ok(format!(
                    "monitor {name}: profile {} matches the model {}",
                    m.profile.display(),
                    e.card().name
                )),
                Err(err) => r.error(format!("monitor {name}: `profile`: {err}")),
            }
            let w = profile.manifest.window;
            if w.embed == earshot::embed::EmbedMode::ChunkMax
                && let Err(why) = earshot::embed::Chunk::for_hop(e.card(), w.hop_seconds)
            {
                r.error(format!("monitor {name}: `profile`: {why}"));
            }
            let window = w.seconds;
            if w.embed.is_exact() && window < e.card().min_window_seconds() {
                r.error(format!(
                    "monitor {name}: the profile's window ({window} s) is shorter than the model accepts ({:.2} s): learn the profile again with a longer `window.seconds`",
                    e.card().min_window_seconds()
                ));
            }
        }
        None => r.warn(format!(
            "monitor {name}: profile {} loads, but could not be checked against the model (see the model error)",
            m.profile.display()
        )),
    }
}

fn check_alerts(s: &Settings, r: &mut Report) {
    for (key, t, _) in s.alerts.targets() {
        let url = t.resolve_url(&key);
        let secret = t.resolve_secret(&key);
        match (url, secret) {
            (Ok(_), Ok(_)) => r.ok(format!("alerts.{key}: URL and secrets readable")),
            (Err(e), _) | (_, Err(e)) => r.error(e),
        }
    }
}

/// The HTTP endpoint: exposure beyond loopback without authentication is worth a warning;
/// TLS and basic-auth files must load.
fn check_http(s: &Settings, r: &mut Report) {
    let m = &s.metrics;
    if !m.enabled {
        return;
    }
    match earshot::metrics::security::check(m) {
        Ok(notes) => {
            for n in notes.ok {
                r.ok(format!("metrics: {n}"));
            }
            for n in notes.warnings {
                r.warn(format!("metrics: {n}"));
            }
        }
        Err(e) => r.error(format!("metrics: {e}")),
    }
}

/// The state directory is written by the service (events, outbox). A missing one is only a
/// warning: systemd's `StateDirectory=` (and the package) create it.
fn check_state_dir(s: &Settings, r: &mut Report) {
    let d = s.state_dir();
    match std::fs::metadata(&d) {
        Ok(md) if md.is_dir() => {
            r.ok(format!("state directory {} exists", d.display()));
            check_open_events(&d, r);
        }
        Ok(_) => r.error(format!(
            "state directory {} is not a directory: set `daemon.state_dir` to a directory",
            d.display()
        )),
        Err(_) => r.warn(format!(
            "state directory {} does not exist yet: the service (systemd StateDirectory=) creates it; create it by hand when running earshot outside systemd",
            d.display()
        )),
    }
}

/// The events on record as fired and not resolved (`open-events.json`): open now if the
/// service runs, left open by its last stop if not; either way what a start would resolve. A
/// damaged file is a warning: that start could not resolve them.
fn check_open_events(state_dir: &std::path::Path, r: &mut Report) {
    let (open, _, err) =
        earshot::alert::open::OpenEvents::open(state_dir, std::time::SystemTime::now());
    if let Some(e) = err {
        r.warn(e);
        return;
    }
    let open: Vec<&str> = open.fingerprints().collect();
    if !open.is_empty() {
        r.ok(format!(
            "{} event(s) on record as fired and not resolved ({}): open now if the service runs; otherwise its last stop left them open and its next start resolves them",
            open.len(),
            open.join(", ")
        ));
    }
}
