//! Touching the filesystem of a machine nobody watches: every file earshot reads is checked to
//! be a regular file before it is opened (a FIFO or a device named by mistake would block a
//! read forever), directories are walked without following a symlink loop or reading a file
//! twice, and files that must survive a crash are written with fsync.

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum PathError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path}: is a {kind}, not a regular file; earshot reads only regular files (reading from a pipe or device could block forever): give the path of a file"
    )]
    NotRegular { path: PathBuf, kind: &'static str },
}

impl PathError {
    fn io(path: &Path, source: std::io::Error) -> Self {
        PathError::Io {
            path: path.to_owned(),
            source,
        }
    }
}

fn kind(ft: std::fs::FileType) -> &'static str {
    if ft.is_dir() {
        "directory"
    } else if ft.is_fifo() {
        "FIFO (named pipe)"
    } else if ft.is_socket() {
        "socket"
    } else if ft.is_char_device() {
        "character device"
    } else if ft.is_block_device() {
        "block device"
    } else {
        "special file"
    }
}

/// Refuses anything but a regular file (symlinks are followed), without opening it.
pub fn ensure_regular(path: &Path) -> Result<(), PathError> {
    let md = std::fs::metadata(path).map_err(|e| PathError::io(path, e))?;
    if md.is_file() {
        Ok(())
    } else {
        Err(PathError::NotRegular {
            path: path.to_owned(),
            kind: kind(md.file_type()),
        })
    }
}

/// Opens a regular file for reading. Checked before opening, and again on the opened file
/// (opened non-blocking, so that a file swapped for a FIFO in between cannot block the open
/// either).
pub fn open_regular(path: &Path) -> Result<File, PathError> {
    ensure_regular(path)?;
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| PathError::io(path, e))?;
    let md = f.metadata().map_err(|e| PathError::io(path, e))?;
    if !md.is_file() {
        return Err(PathError::NotRegular {
            path: path.to_owned(),
            kind: kind(md.file_type()),
        });
    }
    Ok(f)
}

/// Reads a whole regular file.
pub fn read_regular(path: &Path) -> Result<Vec<u8>, PathError> {
    let mut f = open_regular(path)?;
    let mut v = Vec::new();
    f.read_to_end(&mut v).map_err(|e| PathError::io(path, e))?;
    Ok(v)
}

/// Reads a whole regular UTF-8 text file.
pub fn read_regular_string(path: &Path) -> Result<String, PathError> {
    String::from_utf8(read_regular(path)?).map_err(|_| {
        PathError::io(
            path,
            std::io::Error::new(std::io::ErrorKind::InvalidData, "not valid UTF-8 text"),
        )
    })
}

/// The `.wav` files below `dir` (any depth, case-insensitive extension), sorted. Symlinks
/// are followed, but each directory is entered once (by its canonical path), so a link back
/// up the tree neither loops nor repeats files; `seen` holds the canonical paths of files
/// already collected (shared between several inputs) and a file is returned only once.
/// Returns the new files and how many `.wav` names were skipped as already seen.
pub fn walk_wavs(
    dir: &Path,
    seen: &mut BTreeSet<PathBuf>,
) -> std::io::Result<(Vec<PathBuf>, usize)> {
    let mut dirs_seen = BTreeSet::new();
    let mut out = Vec::new();
    let mut repeated = 0;
    walk(dir, &mut dirs_seen, seen, &mut out, &mut repeated)?;
    out.sort();
    Ok((out, repeated))
}

fn walk(
    dir: &Path,
    dirs_seen: &mut BTreeSet<PathBuf>,
    files_seen: &mut BTreeSet<PathBuf>,
    out: &mut Vec<PathBuf>,
    repeated: &mut usize,
) -> std::io::Result<()> {
    if !dirs_seen.insert(std::fs::canonicalize(dir)?) {
        return Ok(());
    }
    let mut entries = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<Vec<_>>>()?;
    // Sorted, so that which of two paths to one file is kept does not depend on the order
    // the filesystem lists them in.
    entries.sort();
    for p in entries {
        if p.is_dir() {
            walk(&p, dirs_seen, files_seen, out, repeated)?;
        } else if p.extension().is_some_and(|e| e.eq_ignore_ascii_case("wav")) {
            // A dangling link keeps its own path: reading it then fails with its name.
            let key = std::fs::canonicalize(&p).unwrap_or_else(|_| p.clone());
            if files_seen.insert(key) {
                out.push(p);
            } else {
                *repeated += 1;
            }
        }
    }
    Ok(())
}

/// Writes `bytes` to a new file at `path` and flushes it to disk.
pub fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), PathError> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| PathError::io(path, e))?;
    f.write_all(bytes).map_err(|e| PathError::io(path, e))?;
    f.sync_all().map_err(|e| PathError::io(path, e))
}

/// Flushes a directory's entries (new, renamed or removed names) to disk.
pub fn sync_dir(dir: &Path) -> Result<(), PathError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| PathError::io(dir, e))
}

/// An exclusive `flock` on the file at `path` (made if missing), held until the returned file
/// is dropped or the process ends. `wait`: block until it is free (interrupted waits are
/// retried); otherwise `Ok(None)` when another holds it.
pub fn lock_file(path: &Path, wait: bool) -> std::io::Result<Option<File>> {
    use std::os::fd::AsRawFd;
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)?;
    let op = if wait {
        libc::LOCK_EX
    } else {
        libc::LOCK_EX | libc::LOCK_NB
    };
    loop {
        // SAFETY: flock on a descriptor owned here for the duration of the call.
        if unsafe { libc::flock(file.as_raw_fd(), op) } == 0 {
            return Ok(Some(file));
        }
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EWOULDBLOCK) if !wait => return Ok(None),
            _ => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_lock_is_refused_without_waiting_then_free_once_dropped() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("lock");
        let held = lock_file(&p, false).unwrap().expect("free at first");
        // Another open file description: flock conflicts even within one process.
        assert!(lock_file(&p, false).unwrap().is_none());
        let waiter = std::thread::spawn({
            let p = p.clone();
            move || lock_file(&p, true).unwrap().is_some()
        });
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(!waiter.is_finished(), "a waiting lock did not wait");
        drop(held);
        assert!(waiter.join().unwrap());
        assert!(lock_file(&p, false).unwrap().is_some());
    }

    #[test]
    fn fifo_is_refused_without_blocking_and_named() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.wav");
        let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = read_regular(&p).unwrap_err().to_string();
        assert!(e.contains("x.wav") && e.contains("FIFO"), "{e}");
        let e = read_regular(d.path()).unwrap_err().to_string();
        assert!(e.contains("directory"), "{e}");
        std::fs::write(d.path().join("ok"), b"hi").unwrap();
        assert_eq!(read_regular(&d.path().join("ok")).unwrap(), b"hi");
    }

    #[test]
    fn walk_follows_links_once_and_dedups_files() {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("a");
        std::fs::create_dir_all(a.join("sub")).unwrap();
        std::fs::write(a.join("one.wav"), b"").unwrap();
        std::fs::write(a.join("sub/two.WAV"), b"").unwrap();
        std::fs::write(a.join("notes.txt"), b"").unwrap();
        std::os::unix::fs::symlink(&a, a.join("sub/back")).unwrap();
        std::os::unix::fs::symlink(a.join("one.wav"), a.join("alias.wav")).unwrap();
        let mut seen = BTreeSet::new();
        let (got, repeated) = walk_wavs(&a, &mut seen).unwrap();
        // alias.wav sorts before one.wav and is the same file: only the first is kept.
        assert_eq!(got, vec![a.join("alias.wav"), a.join("sub/two.WAV")]);
        assert_eq!(repeated, 1);
        // The same tree again (another input naming it): nothing new.
        let (again, repeated) = walk_wavs(&a.join("sub"), &mut seen).unwrap();
        assert!(again.is_empty());
        assert_eq!(repeated, 3);
    }
}
