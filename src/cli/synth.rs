//! `earshot synth`: writes synthetic machine sounds (a labelled dataset, or one long
//! recording in which a fault starts part-way) for tests, tuning and the demo.

use anyhow::Context;
use earshot::synth::{self, DatasetOptions, Fault, FaultKind, Machine, MachineKind};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct SynthArgs {
    #[command(subcommand)]
    command: SynthCommand,
}

#[derive(clap::Subcommand)]
enum SynthCommand {
    /// Write a DCASE-style dataset (train normals, test normals and anomalies) and manifest.csv.
    Dataset(DatasetArgs),
    /// Write one continuous WAV: normal operation, then a fault from --onset seconds on.
    Stream(StreamArgs),
}

#[derive(clap::Args)]
struct DatasetArgs {
    /// Output directory (created if missing).
    #[arg(long)]
    out: PathBuf,
    /// Seed for the clips (the machines are fixed by their ids).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Machines as KIND:ID (kind: motor, fan, pump), repeatable. Default: motor:1 fan:2 pump:3.
    #[arg(long = "machine", value_name = "KIND:ID")]
    machines: Vec<String>,
    /// Normal training clips per machine.
    #[arg(long, default_value_t = 10)]
    train_clips: usize,
    /// Test clips per machine and label (this many normal and this many anomalous).
    #[arg(long, default_value_t = 6)]
    test_clips: usize,
    /// Clip length in seconds.
    #[arg(long, default_value_t = 5.0)]
    seconds: f32,
    #[arg(long, default_value_t = 16_000)]
    sample_rate: u32,
    /// Fault levels in dB (fault-to-normal energy), comma-separated, cycled over anomalies.
    #[arg(long, value_delimiter = ',', allow_hyphen_values = true)]
    levels_db: Vec<f32>,
}

#[derive(clap::Args)]
struct StreamArgs {
    /// Output WAV file.
    #[arg(long)]
    out: PathBuf,
    /// motor, fan or pump.
    #[arg(long, default_value = "motor")]
    machine: MachineKind,
    /// Machine id (fixes its character).
    #[arg(long, default_value_t = 1)]
    id: u64,
    /// bearing, impact, rub, speed-change, imbalance or cavitation.
    #[arg(long, default_value = "bearing")]
    fault: FaultKind,
    /// Fault-to-normal energy ratio in dB (for speed-change: size of the speed departure).
    #[arg(long, default_value_t = -6.0, allow_hyphen_values = true)]
    level_db: f32,
    #[arg(long, default_value_t = 40.0)]
    seconds: f32,
    /// Seconds at which the fault starts.
    #[arg(long, default_value_t = 20.0)]
    onset: f32,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, default_value_t = 16_000)]
    sample_rate: u32,
}

fn parse_machine(s: &str) -> anyhow::Result<(MachineKind, u64)> {
    let (kind, id) = s
        .split_once(':')
        .with_context(|| format!("machine `{s}` should look like KIND:ID, e.g. motor:1"))?;
    let id = id
        .parse::<u64>()
        .with_context(|| format!("machine id in `{s}` should be a whole number, e.g. motor:1"))?;
    Ok((kind.parse()?, id))
}

pub fn run(args: SynthArgs) -> anyhow::Result<()> {
    match args.command {
        SynthCommand::Dataset(a) => {
            let mut opts = DatasetOptions {
                train_clips: a.train_clips,
                test_clips: a.test_clips,
                seconds: a.seconds,
                sample_rate: a.sample_rate,
                seed: a.seed,
                ..DatasetOptions::default()
            };
            if !a.machines.is_empty() {
                opts.machines = a
                    .machines
                    .iter()
                    .map(|s| parse_machine(s))
                    .collect::<anyhow::Result<_>>()?;
            }
            if !a.levels_db.is_empty() {
                opts.fault_levels_db = a.levels_db;
            }
            let s = synth::write_dataset(&a.out, &opts)?;
            println!(
                "wrote {} machines: {} normal + {} anomalous clips ({:.0} s of audio, min headroom {:.1} dB) to {}",
                s.machines,
                s.normal_clips,
                s.anomalous_clips,
                s.seconds_of_audio,
                s.min_headroom_db,
                s.manifest.display()
            );
        }
        SynthCommand::Stream(a) => {
            let machine = Machine::new(a.machine, a.id);
            let fault = Fault {
                kind: a.fault,
                level_db: a.level_db,
                onset_s: a.onset,
            };
            let s =
                synth::write_stream(&a.out, &machine, &fault, a.seconds, a.sample_rate, a.seed)?;
            let speed = match s.fault_shaft_hz {
                Some(f) if a.fault == FaultKind::SpeedChange => {
                    format!("shaft {:.2} -> {:.2} Hz", s.shaft_hz, f)
                }
                _ => format!("shaft {:.2} Hz", s.shaft_hz),
            };
            println!(
                "wrote {:.1} s of {} with {} at {} dB from {:.1} s ({speed}, headroom {:.1} dB) to {}",
                s.seconds,
                machine.name(),
                a.fault,
                a.level_db,
                s.onset_s,
                s.headroom_db,
                s.path.display()
            );
        }
    }
    Ok(())
}
