//! The catalog on disk: a directory like a profile's, written whole and swapped in atomically
//! ([`crate::score::profile::replace_dir`]), so a crash during `catalog add` leaves the old
//! catalog or the new one.
//!
//! `manifest.json` (format, model, window, sha256 of the other files), `entries.jsonl` (one
//! [`Entry`] per line) and `embeddings.f32` (little-endian f32 rows, L2-normalised, in the
//! order of the entries). An entry's id is derived from its source file and offset only, so
//! adding the same recording again replaces its entries instead of duplicating them.

use crate::embed::card::ModelCard;
use crate::score::profile::{ModelRef, ProfileError, WindowSpec};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

pub const FORMAT: &str = "earshot-catalog";
pub const VERSION: u32 = 1;
const ENTRIES: &str = "entries.jsonl";
const EMBEDDINGS: &str = "embeddings.f32";
/// Labels, machines and notes are shown in alerts and terminals: keep them printable and short.
const MAX_NAME: usize = 128;
const MAX_NOTE: usize = 1000;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: String,
    pub version: u32,
    pub created: String,
    pub updated: String,
    pub earshot_version: String,
    /// The model every embedding was made with; another one is refused.
    pub model: ModelRef,
    /// The windows entries were cut into (and that queries are cut into).
    pub window: WindowSpec,
    pub entries: usize,
    /// sha256 (hex) of the other files, by name.
    #[serde(default)]
    pub files: BTreeMap<String, String>,
}

/// One labelled sound: a window of a recording (or the whole recording).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// [`entry_id`] of `source` and `offset_s`.
    pub id: String,
    pub label: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine: Option<String>,
    /// Absolute path of the recording when it was added.
    pub source: String,
    /// Start and end of the window in the recording, seconds.
    pub offset_s: f64,
    pub end_s: f64,
    /// The entry is the mean of all the recording's windows, not one window.
    #[serde(default)]
    pub whole_clip: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// RFC 3339 time it was (last) added.
    pub added: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error(
        "{path}: no sound catalog here yet; add labelled sounds with `earshot catalog add --label NAME WAV_OR_DIR...` (or point --catalog at an existing one)"
    )]
    Missing { path: PathBuf },
    #[error(
        "{path}: the sound catalog is empty; add labelled sounds with `earshot catalog add --label NAME WAV_OR_DIR...`"
    )]
    Empty { path: PathBuf },
    #[error("{path}: invalid sound catalog: {detail}")]
    Invalid { path: PathBuf, detail: String },
    #[error(
        "{location} was made with model {ours} but this run uses {theirs} (card {card}): embeddings of different models cannot be compared; pass the catalog's model (--model or model.dir), or {elsewhere}"
    )]
    OtherModel {
        /// The catalog directory, or the Azure index.
        location: String,
        ours: String,
        theirs: String,
        card: PathBuf,
        /// How to start a catalog for this model where this backend keeps catalogs.
        elsewhere: String,
    },
    /// The Azure AI Search catalog did not answer as it should; `todo` says how to go on.
    #[error("{doing} ({location}): {detail}; {todo}")]
    Remote {
        doing: String,
        location: String,
        detail: String,
        todo: String,
    },
    #[error("no catalog entries labelled {label:?}; the labels are: {known}")]
    NoSuchLabel { label: String, known: String },
    #[error(
        "no catalog entries from {source_path:?} (sources are stored as absolute paths; `earshot catalog list --format json` shows them)"
    )]
    NoSuchSource { source_path: String },
    #[error("--{field} {value:?}: {detail}")]
    BadName {
        field: &'static str,
        value: String,
        detail: String,
    },
    #[error(
        "{path}: another `earshot catalog` command is changing this catalog; wait for it to finish"
    )]
    Busy { path: PathBuf },
    #[error("{0}")]
    File(#[from] crate::files::PathError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl From<ProfileError> for CatalogError {
    fn from(e: ProfileError) -> Self {
        match e {
            ProfileError::Invalid { path, detail } => CatalogError::Invalid { path, detail },
            ProfileError::Io { path, source } => CatalogError::Io { path, source },
            ProfileError::File(f) => CatalogError::File(f),
            other => CatalogError::Invalid {
                path: PathBuf::new(),
                detail: other.to_string(),
            },
        }
    }
}

/// The id of the entry for `source` at `offset_s` (`None`: the whole recording). A hash, so
/// that it is a valid Azure document key whatever the path holds, and the same on every run:
/// re-adding a recording replaces its entries.
pub fn entry_id(source: &str, offset_s: Option<f64>) -> String {
    let at = match offset_s {
        Some(s) => format!("{:.3}", s),
        None => "whole".into(),
    };
    let h = crate::score::profile::sha256_hex(format!("{source}\n{at}").as_bytes());
    h[..32].to_owned()
}

/// Refuses a card other than the one a catalog's embeddings were made with (another network,
/// front end or embedding size): their similarities would be meaningless. `location` names the
/// catalog and `elsewhere` says how to start one for this model, both for the message.
pub fn check_model_ref(
    m: &ModelRef,
    location: &str,
    elsewhere: &str,
    card: &ModelCard,
    card_path: &Path,
) -> Result<(), CatalogError> {
    let same = m.onnx_sha256.eq_ignore_ascii_case(&card.onnx.sha256)
        && m.sample_rate == card.sample_rate
        && m.embedding_dim == card.embedding_dim;
    if same {
        return Ok(());
    }
    let short = |s: &str| s[..12.min(s.len())].to_owned();
    Err(CatalogError::OtherModel {
        location: location.to_owned(),
        ours: format!(
            "{:?} (onnx sha256 {}, {} Hz, {}-d)",
            m.name,
            short(&m.onnx_sha256),
            m.sample_rate,
            m.embedding_dim
        ),
        theirs: format!(
            "{:?} (onnx sha256 {}, {} Hz, {}-d)",
            card.name,
            short(&card.onnx.sha256),
            card.sample_rate,
            card.embedding_dim
        ),
        card: card_path.to_owned(),
        elsewhere: elsewhere.to_owned(),
    })
}

/// Checks a label, machine (`field`) or note given on the command line.
pub fn check_name(field: &'static str, value: &str, max: usize) -> Result<(), CatalogError> {
    let bad = |detail: &str| CatalogError::BadName {
        field,
        value: value.to_owned(),
        detail: detail.to_owned(),
    };
    if value.trim().is_empty() {
        return Err(bad("must not be empty"));
    }
    if value.trim() != value {
        return Err(bad("must not start or end with spaces"));
    }
    if value.chars().count() > max {
        return Err(bad(&format!("is longer than {max} characters")));
    }
    if value.chars().any(char::is_control) {
        return Err(bad("must not hold control characters (newlines, tabs)"));
    }
    Ok(())
}

/// Checks the label, machine and note of a new entry.
pub fn check_names(
    label: &str,
    machine: Option<&str>,
    note: Option<&str>,
) -> Result<(), CatalogError> {
    check_name("label", label, MAX_NAME)?;
    if let Some(m) = machine {
        check_name("machine", m, MAX_NAME)?;
    }
    if let Some(n) = note {
        check_name("note", n, MAX_NOTE)?;
    }
    Ok(())
}

/// One embedding for a whole recording: the mean of its windows' (unit) embeddings, scaled
/// back to unit length. Streaming the windows keeps memory bounded for long recordings, and
/// the mean is a steadier prototype of a sound than any one window.
pub fn mean_embedding<'a>(windows: impl IntoIterator<Item = &'a [f32]>, dim: usize) -> Vec<f32> {
    let mut mean = vec![0.0f32; dim];
    for w in windows {
        mean.iter_mut().zip(w).for_each(|(m, v)| *m += v);
    }
    crate::score::normalize(&mut mean);
    mean
}

/// How many entries and clips one (label, machine) pair has.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Count {
    pub entries: usize,
    pub clips: usize,
}

/// A catalog in memory: entries and their embeddings, row `i` belonging to `entries[i]`.
#[derive(Debug, Clone)]
pub struct Catalog {
    dir: PathBuf,
    manifest: Manifest,
    entries: Vec<Entry>,
    /// n x dim, row-major, unit rows.
    embeddings: Vec<f32>,
    /// Row of each id, so that re-adding a long recording stays linear.
    rows: HashMap<String, usize>,
}

impl Catalog {
    /// A new, empty catalog for `model` (not written until [`Catalog::save`]).
    pub fn new(dir: &Path, model: ModelRef, window: WindowSpec) -> Catalog {
        let now = now();
        Catalog {
            dir: dir.to_owned(),
            manifest: Manifest {
                format: FORMAT.into(),
                version: VERSION,
                created: now.clone(),
                updated: now,
                earshot_version: env!("CARGO_PKG_VERSION").into(),
                model,
                window,
                entries: 0,
                files: BTreeMap::new(),
            },
            entries: Vec::new(),
            embeddings: Vec::new(),
            rows: HashMap::new(),
        }
    }

    /// The catalog in `dir`, or `None` when there is none yet (no directory, or an empty one).
    pub fn open(dir: &Path) -> Result<Option<Catalog>, CatalogError> {
        match Catalog::load(dir) {
            Ok(c) => Ok(Some(c)),
            Err(CatalogError::Missing { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Loads and checks the catalog in `dir`: checksums, one embedding row per entry, unique
    /// ids, finite unit vectors. Errors name the file.
    pub fn load(dir: &Path) -> Result<Catalog, CatalogError> {
        let mpath = dir.join("manifest.json");
        if !mpath.exists() {
            return Err(CatalogError::Missing {
                path: dir.to_owned(),
            });
        }
        let invalid = |file: &str, detail: String| CatalogError::Invalid {
            path: dir.join(file),
            detail,
        };
        let text = crate::files::read_regular_string(&mpath)?;
        let manifest: Manifest =
            serde_json::from_str(&text).map_err(|e| invalid("manifest.json", e.to_string()))?;
        if manifest.format != FORMAT || manifest.version != VERSION {
            return Err(invalid(
                "manifest.json",
                format!(
                    "format {:?} version {} is not one this earshot reads ({FORMAT:?} version {VERSION}): is this a profile? Point --catalog at a catalog directory",
                    manifest.format, manifest.version
                ),
            ));
        }
        let mut data = BTreeMap::new();
        for name in [ENTRIES, EMBEDDINGS] {
            let Some(expected) = manifest.files.get(name) else {
                return Err(invalid(
                    "manifest.json",
                    format!("`files` has no checksum for {name}"),
                ));
            };
            let bytes = crate::files::read_regular(&dir.join(name))?;
            let actual = crate::score::profile::sha256_hex(&bytes);
            if !actual.eq_ignore_ascii_case(expected) {
                return Err(invalid(
                    name,
                    "its sha256 does not match manifest.json: the catalog's files were changed by hand or copied from different catalogs; restore them, or remove the directory and add the sounds again".into(),
                ));
            }
            data.insert(name, bytes);
        }
        let dim = manifest.model.embedding_dim;
        let matrix = crate::score::profile::read_matrix(&data[EMBEDDINGS], dim)
            .map_err(|d| invalid(EMBEDDINGS, d))?;
        let text = std::str::from_utf8(&data[ENTRIES])
            .map_err(|_| invalid(ENTRIES, "is not UTF-8 text".into()))?;
        let mut entries = Vec::new();
        let mut ids = BTreeSet::new();
        for (i, line) in text.lines().enumerate() {
            let e: Entry = serde_json::from_str(line)
                .map_err(|err| invalid(ENTRIES, format!("line {}: {err}", i + 1)))?;
            if !ids.insert(e.id.clone()) {
                return Err(invalid(
                    ENTRIES,
                    format!("line {}: id {} appears twice", i + 1, e.id),
                ));
            }
            entries.push(e);
        }
        if entries.len() != matrix.nrows() || entries.len() != manifest.entries {
            return Err(invalid(
                ENTRIES,
                format!(
                    "{} entries, but {} has {} rows and manifest.json says {}",
                    entries.len(),
                    EMBEDDINGS,
                    matrix.nrows(),
                    manifest.entries
                ),
            ));
        }
        let embeddings: Vec<f32> = matrix.into_iter().collect();
        if let Some(i) = embeddings.iter().position(|v| !v.is_finite()) {
            return Err(invalid(
                EMBEDDINGS,
                format!("entry {} holds a non-finite value", entries[i / dim].id),
            ));
        }
        let rows = row_of(&entries);
        Ok(Catalog {
            dir: dir.to_owned(),
            manifest,
            entries,
            embeddings,
            rows,
        })
    }

    /// Refuses a model other than the catalog's (another network, front end or embedding size).
    pub fn check_model(&self, card: &ModelCard, card_path: &Path) -> Result<(), CatalogError> {
        check_model_ref(
            &self.manifest.model,
            &self.dir.display().to_string(),
            "start a new catalog for this model (--catalog DIR)",
            card,
            card_path,
        )
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    pub fn model(&self) -> &ModelRef {
        &self.manifest.model
    }

    pub fn window(&self) -> WindowSpec {
        self.manifest.window
    }

    pub fn dim(&self) -> usize {
        self.manifest.model.embedding_dim
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Entry `i`'s embedding (unit length).
    pub fn embedding(&self, i: usize) -> &[f32] {
        let d = self.dim();
        &self.embeddings[i * d..(i + 1) * d]
    }

    /// Adds `entry` with its embedding, or replaces the entry with the same id (the same
    /// recording at the same offset). Returns true when it is new. The embedding is stored
    /// unit-length; a zero or non-finite one is refused.
    pub fn upsert(&mut self, entry: Entry, mut embedding: Vec<f32>) -> Result<bool, CatalogError> {
        if embedding.len() != self.dim() {
            return Err(CatalogError::Invalid {
                path: self.dir.clone(),
                detail: format!(
                    "an embedding of {} dimensions cannot join a catalog of {}-dimensional ones",
                    embedding.len(),
                    self.dim()
                ),
            });
        }
        if !crate::index::embedded::normalise(&mut embedding) {
            return Err(CatalogError::Invalid {
                path: PathBuf::from(&entry.source),
                detail: format!(
                    "the window at {:.2} s has no usable embedding (silent or not finite)",
                    entry.offset_s
                ),
            });
        }
        let d = self.dim();
        match self.rows.get(&entry.id).copied() {
            Some(i) => {
                self.entries[i] = entry;
                self.embeddings[i * d..(i + 1) * d].copy_from_slice(&embedding);
                Ok(false)
            }
            None => {
                self.rows.insert(entry.id.clone(), self.entries.len());
                self.entries.push(entry);
                self.embeddings.extend_from_slice(&embedding);
                Ok(true)
            }
        }
    }

    /// Removes every entry labelled `label`; refuses a label the catalog does not have.
    pub fn remove_label(&mut self, label: &str) -> Result<usize, CatalogError> {
        let n = self.retain(|e| e.label != label);
        if n == 0 {
            return Err(CatalogError::NoSuchLabel {
                label: label.to_owned(),
                known: self.known_labels(),
            });
        }
        Ok(n)
    }

    /// Removes every entry of the recording `source` (an absolute path, as stored).
    pub fn remove_source(&mut self, source: &str) -> Result<usize, CatalogError> {
        let n = self.retain(|e| e.source != source);
        if n == 0 {
            return Err(CatalogError::NoSuchSource {
                source_path: source.to_owned(),
            });
        }
        Ok(n)
    }

    /// Keeps the entries for which `keep` holds; returns how many were removed.
    fn retain(&mut self, keep: impl Fn(&Entry) -> bool) -> usize {
        let d = self.dim();
        let before = self.entries.len();
        let mut entries = Vec::with_capacity(before);
        let mut emb = Vec::with_capacity(self.embeddings.len());
        for (i, e) in std::mem::take(&mut self.entries).into_iter().enumerate() {
            if keep(&e) {
                emb.extend_from_slice(&self.embeddings[i * d..(i + 1) * d]);
                entries.push(e);
            }
        }
        self.rows = row_of(&entries);
        self.entries = entries;
        self.embeddings = emb;
        before - self.entries.len()
    }

    /// The labels, comma-separated (for messages), or "(none: the catalog is empty)".
    pub fn known_labels(&self) -> String {
        let labels: BTreeSet<&str> = self.entries.iter().map(|e| e.label.as_str()).collect();
        if labels.is_empty() {
            return "(none: the catalog is empty)".into();
        }
        labels.into_iter().collect::<Vec<_>>().join(", ")
    }

    /// Entries and distinct recordings per (label, machine); machine "" when none was given.
    pub fn counts(&self) -> BTreeMap<(String, String), Count> {
        let mut clips: BTreeMap<(String, String), BTreeSet<&str>> = BTreeMap::new();
        let mut out: BTreeMap<(String, String), Count> = BTreeMap::new();
        for e in &self.entries {
            let key = (e.label.clone(), e.machine.clone().unwrap_or_default());
            out.entry(key.clone()).or_default().entries += 1;
            clips.entry(key).or_default().insert(&e.source);
        }
        for (k, c) in out.iter_mut() {
            c.clips = clips.get(k).map_or(0, BTreeSet::len);
        }
        out
    }

    /// Writes the catalog to its directory, replacing the previous one atomically.
    pub fn save(&mut self) -> Result<(), CatalogError> {
        let mut lines = String::new();
        for e in &self.entries {
            let line = serde_json::to_string(e).map_err(|err| CatalogError::Invalid {
                path: self.dir.clone(),
                detail: err.to_string(),
            })?;
            lines.push_str(&line);
            lines.push('\n');
        }
        let emb: Vec<u8> = self
            .embeddings
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let mut files: Vec<(&str, Vec<u8>)> =
            vec![(ENTRIES, lines.into_bytes()), (EMBEDDINGS, emb)];
        self.manifest.entries = self.entries.len();
        self.manifest.updated = now();
        self.manifest.earshot_version = env!("CARGO_PKG_VERSION").into();
        self.manifest.files = files
            .iter()
            .map(|(n, b)| ((*n).to_owned(), crate::score::profile::sha256_hex(b)))
            .collect();
        let man =
            serde_json::to_vec_pretty(&self.manifest).map_err(|err| CatalogError::Invalid {
                path: self.dir.clone(),
                detail: err.to_string(),
            })?;
        files.push(("manifest.json", man));
        crate::score::profile::replace_dir(&self.dir, &files, "earshot catalog")?;
        Ok(())
    }
}

/// Held while a command changes a catalog: a second `catalog add` at the same time would
/// otherwise replace the first one's entries with its own. Released on drop.
pub struct CatalogLock {
    _file: std::fs::File,
}

impl CatalogLock {
    /// Takes the lock beside `dir` (`.<name>.lock`), or says another command holds it.
    pub fn acquire(dir: &Path) -> Result<CatalogLock, CatalogError> {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "catalog".into());
        let parent = match dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| CatalogError::Io { path, source }
        };
        std::fs::create_dir_all(parent).map_err(io(parent))?;
        let path = parent.join(format!(".{name}.lock"));
        let file = crate::files::lock_file(&path, false)
            .map_err(io(&path))?
            .ok_or_else(|| CatalogError::Busy {
                path: dir.to_owned(),
            })?;
        Ok(CatalogLock { _file: file })
    }
}

fn row_of(entries: &[Entry]) -> HashMap<String, usize> {
    entries
        .iter()
        .enumerate()
        .map(|(i, e)| (e.id.clone(), i))
        .collect()
}

fn now() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(dim: usize) -> ModelRef {
        ModelRef {
            name: "m".into(),
            architecture: "a".into(),
            onnx_sha256: "ab".repeat(32),
            sample_rate: 32000,
            embedding_dim: dim,
            untrained: true,
        }
    }

    fn window() -> WindowSpec {
        WindowSpec {
            seconds: 1.0,
            hop_seconds: 0.5,
            level_dbfs: None,
            embed: Default::default(),
        }
    }

    fn entry(label: &str, source: &str, offset: f64) -> Entry {
        Entry {
            id: entry_id(source, Some(offset)),
            label: label.into(),
            machine: Some("motor".into()),
            source: source.into(),
            offset_s: offset,
            end_s: offset + 1.0,
            whole_clip: false,
            note: None,
            added: now(),
        }
    }

    #[test]
    fn ids_are_stable_distinct_and_valid_azure_keys() {
        let a = entry_id("/data/a.wav", Some(0.5));
        assert_eq!(a, entry_id("/data/a.wav", Some(0.5)));
        assert_ne!(a, entry_id("/data/a.wav", Some(1.0)));
        assert_ne!(a, entry_id("/data/b.wav", Some(0.5)));
        assert_ne!(
            entry_id("/data/a.wav", Some(0.0)),
            entry_id("/data/a.wav", None)
        );
        assert!(crate::index::keys::is_valid_azure_key(&a), "{a}");
    }

    #[test]
    fn saved_catalog_loads_back_and_upsert_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog");
        let mut c = Catalog::new(&path, model(3), window());
        assert!(
            c.upsert(entry("rub", "/x.wav", 0.0), vec![1.0, 0.0, 0.0])
                .unwrap()
        );
        assert!(
            c.upsert(entry("rub", "/x.wav", 0.5), vec![0.0, 2.0, 0.0])
                .unwrap()
        );
        // Same recording and offset, new label: replaced, not added.
        assert!(
            !c.upsert(entry("bearing", "/x.wav", 0.5), vec![0.0, 0.0, 3.0])
                .unwrap()
        );
        c.save().unwrap();
        let back = Catalog::load(&path).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back.entries()[1].label, "bearing");
        assert_eq!(back.embedding(1), &[0.0, 0.0, 1.0]);
        assert_eq!(back.manifest().model, model(3));
        // Saved over itself: still one catalog, no leftovers beside it.
        let mut again = back.clone();
        again.remove_label("rub").unwrap();
        again.save().unwrap();
        assert_eq!(Catalog::load(&path).unwrap().len(), 1);
        let siblings: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(siblings, vec!["catalog".to_string()]);
    }

    #[test]
    fn a_file_changed_by_hand_is_refused_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c");
        let mut c = Catalog::new(&path, model(2), window());
        c.upsert(entry("rub", "/x.wav", 0.0), vec![1.0, 1.0])
            .unwrap();
        c.save().unwrap();
        std::fs::write(path.join(ENTRIES), "{}\n").unwrap();
        let err = Catalog::load(&path).unwrap_err().to_string();
        assert!(err.contains(ENTRIES) && err.contains("sha256"), "{err}");
    }

    #[test]
    fn unknown_label_names_the_known_ones() {
        let mut c = Catalog::new(Path::new("/nowhere"), model(2), window());
        c.upsert(entry("rub", "/x.wav", 0.0), vec![1.0, 0.0])
            .unwrap();
        let err = c.remove_label("squeal").unwrap_err().to_string();
        assert!(err.contains("\"squeal\"") && err.contains("rub"), "{err}");
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn names_with_control_characters_or_blank_are_refused() {
        assert!(check_names("bearing squeal", Some("press 3"), Some("left side")).is_ok());
        for bad in ["", "  ", "a\nb", " lead"] {
            assert!(check_names(bad, None, None).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_second_writer_is_told_to_wait() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog");
        let held = CatalogLock::acquire(&path).unwrap();
        let err = CatalogLock::acquire(&path).err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("wait")));
        drop(held);
        assert!(CatalogLock::acquire(&path).is_ok());
    }
}
