//! earshot: listens to machines and says when one starts to sound wrong.
//!
//! The modules follow the data:
//! `capture` (device or WAV replay) -> `dsp` (downmix, resample, windows, log-mel)
//! -> `embed` (PANNs on ONNX Runtime) -> `score` (centroid and k-NN distances against the
//! learned normal profile, thresholds, decisions) -> `alert` (events) with `metrics` beside
//! every stage and `daemon` wiring it into a long-running service. `index` holds the normal
//! embeddings that k-NN searches; `synth` makes machine sounds for tests and the demo;
//! `eval` measures detection quality on a labelled set; `catalog` holds labelled example
//! sounds to look a sound up by example.

pub mod alert;
pub mod audio;
pub mod capture;
pub mod catalog;
pub mod config;
pub mod daemon;
pub mod dsp;
pub mod embed;
pub mod eval;
pub mod evidence;
pub mod feedback;
pub mod files;
pub mod index;
pub mod metrics;
pub mod score;
pub mod synth;
