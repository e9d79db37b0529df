//! `earshot synth` (in progress).

#[derive(clap::Args)]
pub struct SynthArgs {}

pub fn run(_args: SynthArgs) -> anyhow::Result<()> {
    anyhow::bail!("`earshot synth` is not available in this build yet")
}
