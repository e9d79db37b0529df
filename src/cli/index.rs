//! `earshot index` (in progress).

#[derive(clap::Args)]
pub struct IndexArgs {}

pub fn run(_args: IndexArgs) -> anyhow::Result<()> {
    anyhow::bail!("`earshot index` is not available in this build yet")
}
