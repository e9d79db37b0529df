//! One module per command. Each has an `Args` struct (clap) and a `run` function that
//! returns `anyhow::Result`: this is the edge where library errors become user messages.

pub mod devices;
pub mod eval;
pub mod index;
pub mod learn;
pub mod run;
pub mod score;
pub mod synth;

/// Logs go to stderr so that machine-readable output on stdout stays clean.
pub fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
