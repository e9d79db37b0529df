//! The `earshot` binary: parses the command line and hands over to one `cli` module per
//! command. It wires; the library computes.

mod cli;

use clap::{Parser, Subcommand};

/// `earshot --version`: the bundled pretrained model's licence (CC BY 4.0) requires its credit.
const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    "\nBundled models:",
    "\n  aisfx-cnn9: pretrained weights by Alison B. Ma and Alexander Lerch, \"Representation Learning",
    "\n    for the Automatic Indexing of Sound Effects Libraries\", ISMIR 2022 (PyPI aisfx 0.1.2),",
    "\n    licensed CC BY 4.0 (https://creativecommons.org/licenses/by/4.0/); converted to ONNX.",
    "\n  panns-mobilenetv1-seeded: PANNs MobileNetV1 architecture (Kong et al. 2020) with seeded",
    "\n    random weights (not trained)."
);

#[derive(Parser)]
#[command(
    name = "earshot",
    version,
    long_version = LONG_VERSION,
    about = "Listens to machines and says when one starts to sound wrong"
)]
struct Cli {
    /// Log filter (tracing EnvFilter syntax), e.g. `info` or `earshot=debug`.
    #[arg(long, global = true, env = "EARSHOT_LOG", default_value = "info")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Learn what normal sounds like from WAV files and write a profile directory.
    Learn(cli::learn::LearnArgs),
    /// Score WAV files against a learned profile, window by window.
    Score(cli::score::ScoreArgs),
    /// Evaluate detection quality (AUC, pAUC) on a labelled manifest.
    Eval(cli::eval::EvalArgs),
    /// List anomaly events with their evidence (clip, spectrogram) from the state directory.
    Events(cli::events::EventsArgs),
    /// "That was normal": add an event's sound to its monitor's normal memory (--normal), undo it, or list.
    Feedback(cli::feedback::FeedbackArgs),
    /// Run the long-lived monitoring service described by a config file.
    Run(cli::run::RunArgs),
    /// Check a config and every model, profile, device and secret file it names, starting
    /// nothing (run it before restarting the service). Exit status 1 on any error.
    Check(cli::check::CheckArgs),
    /// List audio capture devices with their ids, formats and rates.
    Devices(cli::devices::DevicesArgs),
    /// Create, fill or check a vector index of normal embeddings (e.g. Azure AI Search).
    Index(cli::index::IndexArgs),
    /// Generate synthetic machine sounds (normal and faulty) for tests and the demo.
    Synth(cli::synth::SynthArgs),
    /// Manage the sound catalog: labelled example sounds (faults, known noises) to look up.
    Catalog(cli::catalog::CatalogArgs),
    /// Find the catalog sounds most like a recording.
    Search(cli::search::SearchArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    cli::init_logging(&cli.log);
    let result = match cli.command {
        Command::Learn(a) => cli::learn::run(a),
        Command::Score(a) => cli::score::run(a),
        Command::Eval(a) => cli::eval::run(a),
        Command::Events(a) => cli::events::run(a),
        Command::Feedback(a) => cli::feedback::run(a),
        Command::Run(a) => cli::run::run(a),
        Command::Check(a) => cli::check::run(a),
        Command::Devices(a) => cli::devices::run(a),
        Command::Index(a) => cli::index::run(a),
        Command::Synth(a) => cli::synth::run(a),
        Command::Catalog(a) => cli::catalog::run(a),
        Command::Search(a) => cli::search::run(a),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
