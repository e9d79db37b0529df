//! `earshot learn` (in progress).

#[derive(clap::Args)]
pub struct LearnArgs {}

pub fn run(_args: LearnArgs) -> anyhow::Result<()> {
    anyhow::bail!("`earshot learn` is not available in this build yet")
}
