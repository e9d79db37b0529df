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
    if args.json {
        println!("{}", serde_json::to_string_pretty(&hosts)?);
    } else {
        print!("{}", list::render_text(&hosts));
        println!(
            "\nPut an id in the config as `device = \"<id>\"` (a description substring works too)."
        );
    }
    Ok(())
}
