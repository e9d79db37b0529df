//! `earshot eval` (in progress).

#[derive(clap::Args)]
pub struct EvalArgs {}

pub fn run(_args: EvalArgs) -> anyhow::Result<()> {
    anyhow::bail!("`earshot eval` is not available in this build yet")
}
