//! `earshot score` (in progress).

#[derive(clap::Args)]
pub struct ScoreArgs {}

pub fn run(_args: ScoreArgs) -> anyhow::Result<()> {
    anyhow::bail!("`earshot score` is not available in this build yet")
}
