//! `earshot devices`: which inputs exist, with the ids to put in the config.

use earshot::capture::list;

#[derive(clap::Args)]
pub struct DevicesArgs {
    /// Print JSON (hosts, devices, default and supported formats) instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: DevicesArgs) -> anyhow::Result<()> {
    let hosts = list::list_inputs();
    let text = if args.json {
        format!("{}\n", serde_json::to_string_pretty(&hosts)?)
    } else {
        format!(
            "{}\nPut an id in the config as `device = \"<id>\"` (a description substring works too).\n",
            list::render_text(&hosts)
        )
    };
    // `println!` panics when the reader went away (`earshot devices --json | head`); a closed
    // pipe just means nobody wants the rest.
    use std::io::Write;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => Ok(r?),
    }
}
