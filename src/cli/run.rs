//! `earshot run` (in progress).

#[derive(clap::Args)]
pub struct RunArgs {}

pub fn run(_args: RunArgs) -> anyhow::Result<()> {
    anyhow::bail!("`earshot run` is not available in this build yet")
}
