//! The model as ONNX Runtime optimises it, kept on disk so the next start loads it as it is.
//!
//! Why: ONNX Runtime's graph optimisations (batch norms folded into convolutions, constant
//! folding, the blocked NCHWc layout of the convolutions) build new weight tensors while the
//! original ones are still held, so creating a session peaks at about three times the model's
//! size and then falls back (measured on Cnn14, 308 MB: 1.2 GB peak, 0.5 GB after; aisfx-cnn9,
//! 18 MB: 149 MB peak). A model saved after optimisation and loaded with optimisations off
//! runs the same graph at the same speed and peaks at the model's size plus the runtime
//! (501 MB and 85 MB). Several monitors starting at once multiply the peak, which is what
//! decides whether an edge PC runs out of memory.
//!
//! The saved graph is specific to the ONNX Runtime build and the CPU it was made on (the
//! layout optimisations use the CPU's vector width), so an entry is keyed by the source
//! model's checksum, ONNX Runtime's build string and the CPU's model and flags, and a file
//! whose checksum does not match its entry is not used. Anything wrong with the cache (no
//! write access, a full disk, a damaged entry) costs only the peak: the session is made from
//! the original model as before, and the log says why.

use sha2::Digest;
use std::path::{Path, PathBuf};

/// The cache entry of one model on this machine and runtime.
#[derive(Debug, Clone)]
pub struct Entry {
    dir: PathBuf,
    /// The model's name as it appears in entry directory names (`<name>-<key id>`).
    name: String,
    key: Key,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Key {
    /// The source model's SHA-256 (its card's).
    source_sha256: String,
    /// ONNX Runtime's build information (version, commit, flags).
    runtime: String,
    /// SHA-256 of the CPU's model name and flags.
    cpu: String,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Meta {
    #[serde(flatten)]
    key: Key,
    /// SHA-256 of the saved, optimised graph (`model.onnx`).
    sha256: String,
    /// The weights file the graph refers to, and its SHA-256 (None: all weights inline).
    weights: Option<(String, String)>,
}

/// A session's save in progress: the graph's file and the name of its weights file, both in
/// the entry's directory and unique to this save.
#[derive(Debug)]
pub struct Staged {
    pub model: PathBuf,
    pub weights: String,
}

const MODEL: &str = "model.onnx";
const META: &str = "entry.json";
const WEIGHTS_PREFIX: &str = "weights-";
const LOCK: &str = "lock";

/// Held while an entry is made: one save per entry at a time, across the monitors of one
/// service and across processes (an exclusive `flock` on the entry's lock file, let go when
/// this is dropped, or when the process dies).
#[derive(Debug)]
pub struct Lock {
    _file: Option<std::fs::File>,
}

impl Entry {
    /// The entry for a model (`name` and its checksum) under `cache_dir`. ONNX Runtime must be
    /// started first ([`super::runtime::ensure`]): the key holds its build string.
    pub fn new(cache_dir: &Path, name: &str, source_sha256: &str) -> Self {
        let key = Key {
            source_sha256: source_sha256.to_ascii_lowercase(),
            runtime: ort::info().to_string(),
            cpu: cpu_signature(),
        };
        let mut h = sha2::Sha256::new();
        h.update(serde_json::to_vec(&key).unwrap_or_default());
        let id = hex::encode(h.finalize());
        let safe: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        Self {
            dir: cache_dir.join(format!("{safe}-{}", &id[..16])),
            name: safe,
            key,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The saved model, if this entry holds one that is intact; `Err` says why one that is
    /// there cannot be used (`Ok(None)`: none saved yet).
    pub fn usable(&self) -> Result<Option<PathBuf>, String> {
        let meta_path = self.dir.join(META);
        let text = match std::fs::read_to_string(&meta_path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("{}: {e}", meta_path.display())),
        };
        let meta: Meta =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", meta_path.display()))?;
        if meta.key != self.key {
            return Err(format!(
                "{} was made for another model, runtime or CPU",
                meta_path.display()
            ));
        }
        let model = self.dir.join(MODEL);
        check(&model, &meta.sha256)?;
        if let Some((name, sha256)) = &meta.weights {
            check(&self.dir.join(name), sha256)?;
        }
        Ok(Some(model))
    }

    /// Waits for the entry's lock. A cache where no lock can be taken (not writable, or a
    /// filesystem without locks) gives an empty one: saving there fails or races as before,
    /// and costs only the peak.
    pub fn lock(&self) -> Lock {
        let path = self.dir.join(LOCK);
        let file = std::fs::create_dir_all(&self.dir)
            .and_then(|()| crate::files::lock_file(&path, true))
            .unwrap_or_else(|e| {
                tracing::debug!(path = %path.display(), error = %e, "no lock for the model cache entry");
                None
            });
        Lock { _file: file }
    }

    /// Names for a session being created to save its optimised graph and weights to: new
    /// files in the entry's directory (made here), unique to this save.
    pub fn stage(&self) -> std::io::Result<Staged> {
        std::fs::create_dir_all(&self.dir)?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let tag = format!("{}-{nanos}", std::process::id());
        Ok(Staged {
            model: self.dir.join(format!("{MODEL}.{tag}.tmp")),
            weights: format!("{WEIGHTS_PREFIX}{tag}.bin"),
        })
    }

    /// Makes what a session saved the entry: checksummed, the graph renamed into place, then
    /// the metadata (a reader sees the old entry, none, or the new one whole; a graph renamed
    /// over an older one is refused by its checksum until its metadata follows). Weights files
    /// of earlier saves are removed.
    pub fn commit(&self, staged: &Staged) -> Result<(), String> {
        let sum = |p: &Path| {
            super::checksum::sha256_file_cached(p).map_err(|e| format!("{}: {e}", p.display()))
        };
        let weights_path = self.dir.join(&staged.weights);
        let weights = match weights_path.exists() {
            true => Some((staged.weights.clone(), sum(&weights_path)?)),
            false => None,
        };
        let meta = Meta {
            key: self.key.clone(),
            sha256: sum(&staged.model)?,
            weights,
        };
        let text = serde_json::to_vec_pretty(&meta).map_err(|e| e.to_string())?;
        let model = self.dir.join(MODEL);
        std::fs::rename(&staged.model, &model).map_err(|e| format!("{}: {e}", model.display()))?;
        let meta_tmp = self.dir.join(format!("{META}.{}.tmp", std::process::id()));
        let _ = std::fs::remove_file(&meta_tmp);
        crate::files::write_synced(&meta_tmp, &text).map_err(|e| e.to_string())?;
        let meta_path = self.dir.join(META);
        std::fs::rename(&meta_tmp, &meta_path)
            .map_err(|e| format!("{}: {e}", meta_path.display()))?;
        let _ = crate::files::sync_dir(&self.dir);
        if let Ok(rd) = std::fs::read_dir(&self.dir) {
            for f in rd.flatten() {
                let name = f.file_name().to_string_lossy().into_owned();
                if name.starts_with(WEIGHTS_PREFIX) && name != staged.weights {
                    let _ = std::fs::remove_file(f.path());
                }
            }
        }
        self.remove_earlier_versions();
        Ok(())
    }

    /// Removes the entries of the same model name made for another key: an earlier model
    /// file, ONNX Runtime or CPU. Nothing would load them again, and each holds a copy of the
    /// weights (308 MB for Cnn14), so a service upgraded a few times over months would fill a
    /// small state disk with them. An entry another process is saving (its lock held) is
    /// left alone; a session already made from a removed entry keeps its mapped weights.
    fn remove_earlier_versions(&self) {
        self.remove_others(|name| name == self.name);
    }

    /// Removes every other entry of the cache, of this model or any other: the service calls
    /// it at start and when a reload changes the model, since it uses one model and only it
    /// reads the cache. An engineer who tried Cnn14 for a week and went back to the default
    /// model would otherwise keep its 308 MB copy for good. Directories that are not entries
    /// (not `<name>-<16 hex digits>`) and entries being saved (their lock held) stay.
    /// Returns the directories removed.
    pub fn remove_other_entries(&self) -> Vec<PathBuf> {
        self.remove_others(|_| true)
    }

    /// The cache's other entries (of this model or any other) and their sizes in bytes: what
    /// [`Entry::remove_other_entries`] would remove (`earshot check` lists them).
    pub fn other_entries(&self) -> Vec<(PathBuf, u64)> {
        self.others(|_| true)
            .into_iter()
            .map(|p| {
                let bytes = std::fs::read_dir(&p)
                    .map(|rd| {
                        rd.flatten()
                            .filter_map(|f| f.metadata().ok())
                            .filter(|m| m.is_file())
                            .map(|m| m.len())
                            .sum()
                    })
                    .unwrap_or(0);
                (p, bytes)
            })
            .collect()
    }

    /// Entry directories of the cache other than this one, of the models `model` accepts
    /// (by name): `<name>-<16 hex digits>`.
    fn others(&self, model: impl Fn(&str) -> bool) -> Vec<PathBuf> {
        let Some(Ok(rd)) = self.dir.parent().map(std::fs::read_dir) else {
            return Vec::new();
        };
        rd.flatten()
            .filter(|d| d.file_type().is_ok_and(|t| t.is_dir()) && d.path() != self.dir)
            .filter(|d| {
                let file_name = d.file_name().to_string_lossy().into_owned();
                file_name.rsplit_once('-').is_some_and(|(name, id)| {
                    id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()) && model(name)
                })
            })
            .map(|d| d.path())
            .collect()
    }

    fn remove_others(&self, model: impl Fn(&str) -> bool) -> Vec<PathBuf> {
        let mut removed = Vec::new();
        for path in self.others(model) {
            let Ok(Some(_held)) = crate::files::lock_file(&path.join(LOCK), false) else {
                continue;
            };
            match std::fs::remove_dir_all(&path) {
                Ok(()) => {
                    tracing::info!(removed = %path.display(), "removed an optimised model copy the service no longer uses (another model, or an earlier model file, ONNX Runtime or CPU)");
                    removed.push(path);
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot remove an outdated optimised model copy; it may be deleted by hand")
                }
            }
        }
        removed
    }

    /// Removes what a failed save left behind.
    pub fn discard(&self, staged: &Staged) {
        let _ = std::fs::remove_file(&staged.model);
        let _ = std::fs::remove_file(self.dir.join(&staged.weights));
    }
}

/// A saved file is a regular file with the checksum it was saved with.
fn check(path: &Path, sha256: &str) -> Result<(), String> {
    crate::files::ensure_regular(path).map_err(|e| e.to_string())?;
    let actual = super::checksum::sha256_file_cached(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if actual != sha256 {
        return Err(format!(
            "{} is damaged (sha256 {actual}, saved as {sha256})",
            path.display()
        ));
    }
    Ok(())
}

/// SHA-256 of the first processor's model name and flags in /proc/cpuinfo ("unknown" where
/// there is none): a disk moved to a machine with another CPU gets a new entry.
fn cpu_signature() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let mut h = sha2::Sha256::new();
    let mut seen = 0;
    for line in info.lines() {
        let key = line.split(':').next().unwrap_or("").trim();
        if matches!(key, "model name" | "flags" | "Features" | "CPU part") {
            h.update(line.as_bytes());
            h.update(b"\n");
            seen += 1;
        }
        if line.trim().is_empty() && seen > 0 {
            break;
        }
    }
    if seen == 0 {
        return "unknown".into();
    }
    hex::encode(h.finalize())
}
