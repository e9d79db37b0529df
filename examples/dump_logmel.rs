//! Research helper: writes the log-mel windows earshot feeds its network for every clip of a
//! manifest (same decode, resampling, windowing and level normalisation as `earshot eval`),
//! so scorers can be prototyped in numpy on exactly earshot's features
//! (`scripts/research/scorers.py`).
//!
//! cargo run --example dump_logmel -- MANIFEST MODEL_DIR OUT_DIR [WINDOW_S HOP_S LEVEL_DBFS]
//!
//! OUT_DIR gets one `NNNN.f32` per manifest row (little-endian f32, windows x frames x mels)
//! and `index.json` with each row's path, machine, split, label and shape.

use anyhow::Context;
use earshot::embed::file::FileWindows;
use earshot::embed::{EmbedOptions, Embedder};
use std::io::Write;
use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        anyhow::bail!(
            "usage: dump_logmel MANIFEST MODEL_DIR OUT_DIR [WINDOW_S HOP_S LEVEL_DBFS|off]"
        );
    }
    let manifest = PathBuf::from(&args[1]);
    let out_dir = PathBuf::from(&args[3]);
    let window_s: f64 = args.get(4).map_or(Ok(1.0), |v| v.parse())?;
    let hop_s: f64 = args.get(5).map_or(Ok(0.5), |v| v.parse())?;
    let level: Option<f64> = match args.get(6).map(String::as_str) {
        None => Some(-10.0),
        Some("off") => None,
        Some(v) => Some(v.parse()?),
    };
    let mut e = Embedder::load(&PathBuf::from(&args[2]), &EmbedOptions::default())?;
    e.set_level_dbfs(level);
    let entries = earshot::eval::read_manifest(&manifest, None)?;
    std::fs::create_dir_all(&out_dir)?;
    let mels = e.card().frontend.mel_bins;
    let mut index = Vec::new();
    let mut buf = Vec::new();
    for (i, en) in entries.iter().enumerate() {
        let mut wins = FileWindows::open(&en.path, e.sample_rate(), window_s, hop_s)
            .with_context(|| en.path.display().to_string())?;
        let mut data: Vec<f32> = Vec::new();
        let (mut n, mut frames) = (0usize, 0usize);
        while let Some((start, w)) = wins.next_window()? {
            frames = e.logmel_at(start, &w, &mut buf);
            data.extend_from_slice(&buf);
            n += 1;
        }
        let file = out_dir.join(format!("{i:04}.f32"));
        let mut f = std::io::BufWriter::new(std::fs::File::create(&file)?);
        for v in &data {
            f.write_all(&v.to_le_bytes())?;
        }
        index.push(serde_json::json!({
            "file": file.file_name().map(|s| s.to_string_lossy().into_owned()),
            "path": en.path, "machine": en.machine,
            "split": en.split, "anomaly": en.anomaly,
            "shape": [n, frames, mels],
        }));
    }
    std::fs::write(
        out_dir.join("index.json"),
        serde_json::to_string_pretty(&index)?,
    )?;
    eprintln!("{} clips -> {}", index.len(), out_dir.display());
    Ok(())
}
