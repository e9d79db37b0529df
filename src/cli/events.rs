//! `earshot events`: the anomaly events that have evidence, read from the state directory
//! (works whether or not the daemon runs: only complete events are listed).

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use earshot::evidence::page::{EventView, evidence_list, parse_since};

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(clap::Args)]
pub struct EventsArgs {
    /// Config file (its `daemon.state_dir`); `EARSHOT_*__*` environment variables override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// State directory (overrides the config's).
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Only this monitor's events.
    #[arg(long)]
    monitor: Option<String>,
    /// Only events that started at or after this time: RFC 3339 (2026-01-31T08:00:00Z) or a
    /// duration back from now (2h, 7days).
    #[arg(long)]
    since: Option<String>,
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
    /// At most this many events, newest first.
    #[arg(long, default_value_t = 1000)]
    limit: usize,
}

pub fn run(a: EventsArgs) -> anyhow::Result<()> {
    let state_dir = match a.state_dir {
        Some(d) => d,
        None => super::settings(a.config.as_deref())?.state_dir(),
    };
    let since = a
        .since
        .as_deref()
        .map(parse_since)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let store = earshot::evidence::Store::new(&state_dir);
    let list = evidence_list(&store, a.monitor.as_deref(), since, a.limit, "");
    let mut out = std::io::stdout().lock();
    match a.format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut out, &list).context("writing JSON")?;
            writeln!(out)?;
        }
        Format::Text => {
            if list.is_empty() {
                writeln!(
                    out,
                    "no events with evidence under {}",
                    store.root().display()
                )?;
            }
            for e in &list {
                writeln!(out, "{}", line(e))?;
            }
        }
    }
    Ok(())
}

fn line(e: &EventView) -> String {
    let dur = match e.duration_s {
        _ if e.partial => "clip so far (partial)".to_string(),
        Some(d) => format!("{d:.1} s"),
        None => "open".to_string(),
    };
    let peak = match (&e.peak_scorer, e.peak, e.threshold) {
        (Some(s), Some(p), Some(t)) => format!("{s} {p:.3}/{t:.3}"),
        _ => "-".into(),
    };
    format!(
        "{}  {}  {}  {}  peak {}  clip {}{}",
        e.start,
        e.monitor,
        e.event_id,
        dur,
        peak,
        e.clip_path,
        e.image_path
            .as_ref()
            .map(|p| format!("  image {p}"))
            .unwrap_or_default()
    )
}
