//! `earshot run`: the long-running monitoring service (what systemd starts).

use earshot::daemon::service::{self, RunOptions};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct RunArgs {
    /// Config file (TOML) with `[[monitor]]` tables; `EARSHOT_*__*` variables override it.
    #[arg(long, env = "EARSHOT_CONFIG")]
    config: PathBuf,
    /// Stop once every source has ended (replayed files without `loop`), instead of waiting
    /// for a signal. For tests and batch replays.
    #[arg(long)]
    exit_when_done: bool,
}

pub fn run(a: RunArgs) -> anyhow::Result<()> {
    check_events_file(&a.config)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("earshot-rt")
        .build()?;
    rt.block_on(service::run(RunOptions {
        config: Some(a.config),
        exit_when_done: a.exit_when_done,
    }))?;
    Ok(())
}

/// Opening a FIFO for appending blocks until something reads it: refuse an events file that
/// is not a regular file before the service starts (config errors are left to the service,
/// which reports them in full).
fn check_events_file(config: &std::path::Path) -> anyhow::Result<()> {
    let Ok(s) = earshot::config::Settings::load(Some(config)) else {
        return Ok(());
    };
    let events = s.state_dir().join(&s.events.file_name);
    if events.exists() {
        earshot::files::ensure_regular(&events)?;
    }
    Ok(())
}
