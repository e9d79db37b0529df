//! SHA-256 of model files, computed once per file per process.
//!
//! Why: every monitor's model is checked against its card at load, and a load from the
//! optimised-model cache checks the saved graph and weights too. With several monitors of one
//! model that is the same files hashed over and over at every start (Cnn14: 2 x 308 MB per
//! monitor, about a second of CPU each). A checksum is kept for the file it was computed on,
//! identified by device, inode, size, modification and status-change times: a write,
//! truncation, or a rename over it changes one of them (the status-change time cannot be set
//! back from user space). The times are as fine as the filesystem keeps them (a few ms on
//! some): contents rewritten in place at the same size within that tick of the hash would
//! not be seen, which a model replaced by copying (slower than that) or renaming is not.
//! Concurrent loads of one file wait for the one hash in progress instead of each reading it.

use sha2::Digest;
use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

/// What identifies one version of a file's contents.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Identity {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: (i64, i64),
    ctime_ns: (i64, i64),
}

impl Identity {
    fn of(md: &std::fs::Metadata) -> Self {
        Self {
            dev: md.dev(),
            ino: md.ino(),
            size: md.len(),
            mtime_ns: (md.mtime(), md.mtime_nsec()),
            ctime_ns: (md.ctime(), md.ctime_nsec()),
        }
    }
}

type Slot = Arc<Mutex<Option<String>>>;

fn memo() -> &'static Mutex<HashMap<Identity, Slot>> {
    static MEMO: OnceLock<Mutex<HashMap<Identity, Slot>>> = OnceLock::new();
    MEMO.get_or_init(Default::default)
}

/// SHA-256 (lower-case hex) of the file at `path`, read in full.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// [`sha256_file`], kept for the file version it was computed on (module doc). The identity
/// is taken before and after reading: a file that changed while it was read is hashed again
/// by the next caller, and its checksum is not kept.
pub fn sha256_file_cached(path: &Path) -> std::io::Result<String> {
    let before = Identity::of(&std::fs::metadata(path)?);
    let slot = {
        let mut m = memo().lock().unwrap_or_else(|p| p.into_inner());
        m.entry(before.clone()).or_default().clone()
    };
    let mut kept = slot.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(sum) = kept.as_ref() {
        return Ok(sum.clone());
    }
    let sum = sha256_file(path)?;
    if Identity::of(&std::fs::metadata(path)?) == before {
        *kept = Some(sum.clone());
    }
    Ok(sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_checksum_follows_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.bin");
        std::fs::write(&p, b"one").unwrap();
        let one = sha256_file_cached(&p).unwrap();
        assert_eq!(one, sha256_file(&p).unwrap());
        assert_eq!(sha256_file_cached(&p).unwrap(), one);
        // The same size, rewritten in place: new times, so hashed again (after the
        // coarsest timestamp tick).
        std::thread::sleep(std::time::Duration::from_millis(50));
        std::fs::write(&p, b"two").unwrap();
        assert_eq!(sha256_file_cached(&p).unwrap(), sha256_file(&p).unwrap());
        assert_ne!(sha256_file_cached(&p).unwrap(), one);
        // Replaced by a rename: another inode.
        let q = dir.path().join("g.bin");
        std::fs::write(&q, b"one").unwrap();
        std::fs::rename(&q, &p).unwrap();
        assert_eq!(sha256_file_cached(&p).unwrap(), one);
    }
}
