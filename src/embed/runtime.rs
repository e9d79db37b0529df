//! Finding and starting ONNX Runtime.
//!
//! earshot loads `libonnxruntime.so` at run time (the `ort` crate's `load-dynamic`), because
//! no registry reachable from an edge PC's build ships it for linking. The library is looked
//! for in a fixed, logged order so a user never has to export variables, and a missing or
//! too-old library is one clear error that says how to fix it.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The ONNX Runtime version `scripts/setup-ort.sh` fetches and the minimum ort's API level needs.
pub const ORT_VERSION: &str = "1.31.1";
const LIB_NAMES: &[&str] = &[
    "libonnxruntime.so",
    "libonnxruntime.so.1.31.1",
    "libonnxruntime.so.1",
];

#[derive(Debug, Clone, thiserror::Error)]
pub enum RuntimeError {
    #[error(
        "ONNX Runtime library not found (looked in: {searched}). Run `scripts/setup-ort.sh` in the earshot source tree, or set ORT_DYLIB_PATH (or `onnxruntime` in the config) to a libonnxruntime.so {ORT_VERSION} or newer"
    )]
    NotFound { searched: String },
    #[error(
        "ONNX Runtime at {path} cannot be used: {detail}. earshot needs ONNX Runtime {ORT_VERSION} or newer: run `scripts/setup-ort.sh` or point ORT_DYLIB_PATH at a newer libonnxruntime.so"
    )]
    Unusable { path: PathBuf, detail: String },
    #[error("ONNX Runtime failed to start: {0}")]
    Init(String),
}

struct Runtime {
    env: ort::environment::Environment,
    path: PathBuf,
}

static RUNTIME: OnceLock<Result<Runtime, RuntimeError>> = OnceLock::new();

/// Candidate locations, in the order they are tried.
pub fn candidates(configured: Option<&Path>) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH") {
        out.push(PathBuf::from(p));
    }
    if let Some(p) = configured {
        out.push(p.to_owned());
    }
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe.parent()
    {
        dirs.push(dir.to_owned());
        dirs.push(dir.join("../lib/earshot"));
        // A binary inside a source tree (target/{debug,release}[/deps]) finds the
        // project's `.ort/` where scripts/setup-ort.sh puts the library.
        for up in dir.ancestors().take(4) {
            dirs.push(up.join(".ort"));
        }
    }
    dirs.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".ort"));
    dirs.push(PathBuf::from("/usr/local/lib/earshot"));
    dirs.push(PathBuf::from("/usr/lib/earshot"));
    for d in dirs {
        for name in LIB_NAMES {
            out.push(d.join(name));
        }
    }
    out
}

/// Starts ONNX Runtime once per process (it allows only one environment) and returns the
/// library path it came from.
pub fn ensure(configured: Option<&Path>) -> Result<PathBuf, RuntimeError> {
    let rt = RUNTIME.get_or_init(|| start(configured));
    match rt {
        Ok(r) => Ok(r.path.clone()),
        Err(e) => Err(e.clone()),
    }
}

/// The ONNX Runtime environment once [`ensure`] has loaded it (benches build their own sessions).
pub fn environment() -> Option<&'static ort::environment::Environment> {
    RUNTIME.get().and_then(|r| r.as_ref().ok()).map(|r| &r.env)
}

fn start(configured: Option<&Path>) -> Result<Runtime, RuntimeError> {
    let cands = candidates(configured);
    // A path the user named must be used or refused, never silently replaced by another.
    let explicit = std::env::var_os("ORT_DYLIB_PATH").is_some() || configured.is_some();
    if explicit && !cands[0].is_file() {
        return Err(RuntimeError::Unusable {
            path: cands[0].clone(),
            detail: "no such file (named by ORT_DYLIB_PATH or `model.onnxruntime`)".into(),
        });
    }
    let found = cands.iter().find(|p| p.is_file()).cloned();
    let Some(path) = found else {
        let mut seen = Vec::new();
        for c in &cands {
            let d = c
                .parent()
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            if !seen.contains(&d) {
                seen.push(d);
            }
        }
        return Err(RuntimeError::NotFound {
            searched: seen.join(", "),
        });
    };
    let builder = ort::init_from(&path).map_err(|e| RuntimeError::Unusable {
        path: path.clone(),
        detail: e.to_string(),
    })?;
    let env = builder
        .with_name("earshot")
        .build()
        .map_err(|e| RuntimeError::Init(e.to_string()))?;
    tracing::info!(path = %path.display(), "ONNX Runtime loaded");
    Ok(Runtime { env, path })
}
