//! The single-instance lock: one daemon per state directory.
//!
//! The lock is an `fs2` exclusive `flock` on `STATE/lock`, kept open for the
//! daemon's whole life and never unlinked (unlinking would let two daemons
//! each lock a different inode). The holder writes its pid into the file so
//! that a refused second instance can say who holds it. The fd is opened
//! close-on-exec, so rsync children never inherit the lock, and the kernel
//! releases it the moment the daemon dies, even on `kill -9`.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use fs2::FileExt;

use crate::error::{Error, Result};

/// A held lock; dropping it releases the lock.
#[derive(Debug)]
pub struct Lock {
    _file: File,
    path: PathBuf,
}

impl Lock {
    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The path of the lock file in a state directory.
pub fn lock_path(state_dir: &Path) -> PathBuf {
    state_dir.join("lock")
}

/// Takes the lock of `state_dir` without waiting, and writes our pid in it.
/// Fails with [`Error::Locked`] naming the holder's pid when it is taken.
pub fn acquire(state_dir: &Path) -> Result<Lock> {
    let path = lock_path(state_dir);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| Error::io("cannot open the lock file", &path, e))?;
    if let Err(e) = FileExt::try_lock_exclusive(&file) {
        if e.kind() == fs2::lock_contended_error().kind() {
            let pid = holder(&mut file);
            return Err(Error::Locked { path, pid });
        }
        return Err(Error::io("cannot lock", &path, e));
    }
    let write = |f: &mut File| -> std::io::Result<()> {
        f.set_len(0)?;
        f.seek(SeekFrom::Start(0))?;
        writeln!(f, "{}", std::process::id())?;
        f.sync_data()
    };
    write(&mut file).map_err(|e| Error::io("cannot write the pid into", &path, e))?;
    Ok(Lock { _file: file, path })
}

/// Whether some process holds the lock of `state_dir` now, and its pid.
/// Used by `queue inspect` to choose between the live and the offline path.
pub fn holder_of(state_dir: &Path) -> Option<String> {
    let path = lock_path(state_dir);
    let mut file = OpenOptions::new().read(true).write(true).open(path).ok()?;
    match FileExt::try_lock_exclusive(&file) {
        Ok(()) => {
            let _ = FileExt::unlock(&file);
            None
        }
        Err(_) => Some(holder(&mut file)),
    }
}

fn holder(file: &mut File) -> String {
    let mut s = String::new();
    let _ = file.seek(SeekFrom::Start(0));
    let _ = file.read_to_string(&mut s);
    let s = s.trim();
    if s.is_empty() {
        "unknown".into()
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_is_refused_with_the_pid() {
        let dir = tempfile::tempdir().unwrap();
        let first = acquire(dir.path()).unwrap();
        let err = acquire(dir.path()).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(&std::process::id().to_string()), "{msg}");
        assert!(msg.contains(&first.path().display().to_string()), "{msg}");
        assert_eq!(holder_of(dir.path()), Some(std::process::id().to_string()));
        drop(first);
        assert_eq!(holder_of(dir.path()), None);
        acquire(dir.path()).unwrap();
    }
}
