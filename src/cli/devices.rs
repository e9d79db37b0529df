//! `earshot devices` (in progress).

#[derive(clap::Args)]
pub struct DevicesArgs {}

pub fn run(_args: DevicesArgs) -> anyhow::Result<()> {
    anyhow::bail!("`earshot devices` is not available in this build yet")
}
