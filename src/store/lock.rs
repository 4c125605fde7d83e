//! The single-instance lock: one daemon per state directory, and offline
//! queue commands that never make a daemon fail to start.
//!
//! The lock is an `fs2` `flock` on `STATE/lock`, never unlinked (unlinking
//! would let two daemons each lock a different inode). The daemon holds it
//! *exclusively* for its whole life and writes its pid into the file, so
//! that a refused second instance can say who holds it. An offline `syncd
//! status` or `queue inspect` holds it *shared* for the moment it reads the
//! store, and writes nothing. So a starting daemon that finds the lock
//! taken can tell the two apart without trusting a pid (which may be stale,
//! reused, or its own after a restart in place): if a shared lock can be
//! had, only short-lived commands hold it, and the daemon waits for them
//! for a few seconds ([`DAEMON_WAIT`]), polling; if not, another daemon
//! holds it exclusively, and the start is refused at once, naming the pid.
//!
//! Commands in a tight loop could keep a shared lock held without a pause
//! (one starts before the other ends), so a second file, `STATE/lock.gate`,
//! lets the daemon go first: a command takes the main lock only while it
//! holds the gate shared, and a starting daemon holds the gate exclusively
//! while it waits, so no new command gets in and the ones inside drain.
//! Several offline commands share the lock with each other; sled's own
//! exclusive lock on the database then makes them take turns (see
//! `Store::open`). Both fds are opened close-on-exec, so rsync children
//! never inherit them and a restart in place (an exec) drops them, and the
//! kernel releases a lock the moment its holder dies, even on `kill -9`.
//! Almost: a child the daemon was starting holds the fds from its fork to
//! its exec, so a daemon killed in that window leaves the lock held for a
//! moment longer (seen on a loaded machine). When the pid in the file is no
//! longer running, a starting daemon therefore waits for the lock as it
//! waits for readers, and then names that pid.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fs2::FileExt;

use crate::error::{Error, Result};

/// How long a starting daemon waits for offline queue commands (which hold
/// the lock shared, for a moment each) to let go.
pub const DAEMON_WAIT: Duration = Duration::from_secs(5);

/// How often a waiting daemon tries again.
const POLL: Duration = Duration::from_millis(20);

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

/// The path of the gate that lets a starting daemon go before queue
/// commands.
fn gate_path(state_dir: &Path) -> PathBuf {
    state_dir.join("lock.gate")
}

/// Polls `try_lock` until it takes the lock or `wait` has passed since
/// `start`; `Ok(false)` when it did not.
fn poll(
    file: &File,
    path: &Path,
    start: Instant,
    wait: Duration,
    try_lock: fn(&File) -> std::io::Result<()>,
) -> Result<bool> {
    loop {
        match try_lock(file) {
            Ok(()) => return Ok(true),
            Err(e) if contended(&e) => {}
            Err(e) => return Err(Error::io("cannot lock", path, e)),
        }
        if start.elapsed() >= wait {
            return Ok(false);
        }
        std::thread::sleep(POLL);
    }
}

fn open(path: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| Error::io("cannot open the lock file", path, e))
}

fn contended(e: &std::io::Error) -> bool {
    e.kind() == fs2::lock_contended_error().kind()
}

/// Who holds a lock we could not take exclusively.
#[derive(Debug, PartialEq, Eq)]
enum Holder {
    /// Another process holds it exclusively: a daemon (or one starting).
    Daemon,
    /// Only shared holders (offline queue commands, gone in a moment), or
    /// no one any more.
    Readers,
}

/// Tells who holds the lock of `file` after an exclusive try failed: a
/// shared lock can be had exactly when no one holds it exclusively.
fn who_holds(file: &File, path: &Path) -> Result<Holder> {
    match FileExt::try_lock_shared(file) {
        Ok(()) => {
            let _ = FileExt::unlock(file);
            Ok(Holder::Readers)
        }
        Err(e) if contended(&e) => Ok(Holder::Daemon),
        Err(e) => Err(Error::io("cannot lock", path, e)),
    }
}

/// Takes the daemon's exclusive lock of `state_dir` and writes our pid in
/// it. While only offline queue commands hold it (shared), waits for them
/// for up to `wait`, polling; fails at once with [`Error::Locked`], naming
/// the holder's pid, when another daemon holds it.
pub fn acquire(state_dir: &Path, wait: Duration) -> Result<Lock> {
    let path = lock_path(state_dir);
    let mut file = open(&path)?;
    let start = Instant::now();
    let busy = |start: Instant| Error::LockBusy {
        path: path.clone(),
        waited: start.elapsed(),
    };
    // The gate first: queue commands hold it shared only for the instant
    // they take the main lock, a daemon exclusively while it waits.
    let gate_at = gate_path(state_dir);
    let gate = open(&gate_at)?;
    if !poll(&gate, &gate_at, start, wait, FileExt::try_lock_exclusive)? {
        return Err(busy(start));
    }
    loop {
        match FileExt::try_lock_exclusive(&file) {
            Ok(()) => break,
            Err(e) if contended(&e) => {}
            Err(e) => return Err(Error::io("cannot lock", &path, e)),
        }
        match who_holds(&file, &path)? {
            Holder::Daemon => {
                let pid = holder(&mut file);
                let gone = pid.parse().is_ok_and(|p: u32| !running(p));
                if !gone {
                    return Err(Error::Locked { path, pid });
                }
                // The daemon that wrote its pid died (kill -9) while a
                // child it was starting had not yet reached exec: the fd
                // is closed on exec, and the lock freed a moment later.
                if start.elapsed() >= wait {
                    return Err(Error::LockedByLeftover { path, pid });
                }
                std::thread::sleep(POLL);
            }
            Holder::Readers if start.elapsed() < wait => std::thread::sleep(POLL),
            Holder::Readers => return Err(busy(start)),
        }
    }
    drop(gate);
    if start.elapsed() >= POLL {
        log::info!(
            "waited {:.2}s for queue commands (syncd status, queue inspect) to release {}",
            start.elapsed().as_secs_f64(),
            path.display()
        );
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

/// Takes the lock of `state_dir` shared, for an offline queue command:
/// no daemon starts while it is held (a starting one waits), other
/// commands may hold it too, and nothing is written. Fails with
/// [`Error::Locked`] naming the pid when a daemon holds it.
pub fn acquire_shared(state_dir: &Path) -> Result<Lock> {
    let path = lock_path(state_dir);
    let mut file = open(&path)?;
    // A daemon waiting at the gate goes first: wait for it to be in (and
    // then be told it holds the lock) rather than keep it out.
    let gate_at = gate_path(state_dir);
    let gate = open(&gate_at)?;
    let start = Instant::now();
    if !poll(
        &gate,
        &gate_at,
        start,
        DAEMON_WAIT * 2,
        FileExt::try_lock_shared,
    )? {
        let pid = holder(&mut file);
        return Err(Error::Locked { path, pid });
    }
    let taken = FileExt::try_lock_shared(&file);
    drop(gate);
    match taken {
        Ok(()) => Ok(Lock { _file: file, path }),
        Err(e) if contended(&e) => {
            let pid = holder(&mut file);
            Err(Error::Locked { path, pid })
        }
        Err(e) => Err(Error::io("cannot lock", &path, e)),
    }
}

/// Whether a daemon holds the lock of `state_dir` now, and its pid. Used
/// by `queue inspect` to choose between the live and the offline path;
/// offline commands holding it shared do not count.
pub fn holder_of(state_dir: &Path) -> Option<String> {
    let path = lock_path(state_dir);
    let mut file = OpenOptions::new().read(true).open(&path).ok()?;
    match who_holds(&file, &path) {
        Ok(Holder::Daemon) => Some(holder(&mut file)),
        _ => None,
    }
}

/// Whether process `pid` runs (a zombie has let go of its files).
fn running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name, which is in parentheses.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
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
        let first = acquire(dir.path(), DAEMON_WAIT).unwrap();
        let t = Instant::now();
        let err = acquire(dir.path(), DAEMON_WAIT).unwrap_err();
        assert!(t.elapsed() < Duration::from_secs(1), "refused at once");
        let msg = err.to_string();
        assert!(msg.contains(&std::process::id().to_string()), "{msg}");
        assert!(msg.contains(&first.path().display().to_string()), "{msg}");
        assert_eq!(err.exit_code(), 3);
        assert_eq!(holder_of(dir.path()), Some(std::process::id().to_string()));
        assert!(matches!(
            acquire_shared(dir.path()),
            Err(Error::Locked { .. })
        ));
        drop(first);
        assert_eq!(holder_of(dir.path()), None);
        acquire(dir.path(), DAEMON_WAIT).unwrap();
    }

    /// The pid of a process that ran and is gone.
    fn dead_pid() -> u32 {
        let mut c = std::process::Command::new("true").spawn().unwrap();
        let pid = c.id();
        c.wait().unwrap();
        pid
    }

    #[test]
    fn a_lock_left_by_a_dead_daemon_s_child_is_waited_for() {
        let dir = tempfile::tempdir().unwrap();
        // A dead daemon's pid in the file, and the lock held through
        // another open file (as a child between fork and exec holds it).
        let path = lock_path(dir.path());
        std::fs::create_dir_all(dir.path()).unwrap();
        std::fs::write(&path, format!("{}\n", dead_pid())).unwrap();
        let leftover = open(&path).unwrap();
        FileExt::try_lock_exclusive(&leftover).unwrap();
        let e = acquire(dir.path(), Duration::from_millis(100)).unwrap_err();
        assert!(e.to_string().contains("no longer running"), "{e}");
        assert_eq!(e.exit_code(), 3);
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            drop(leftover);
        });
        let t = Instant::now();
        acquire(dir.path(), DAEMON_WAIT).unwrap();
        assert!(t.elapsed() >= Duration::from_millis(250));
        release.join().unwrap();
    }

    #[test]
    fn a_daemon_waits_for_shared_holders_and_they_share() {
        let dir = tempfile::tempdir().unwrap();
        let a = acquire_shared(dir.path()).unwrap();
        let b = acquire_shared(dir.path()).unwrap();
        assert_eq!(holder_of(dir.path()), None, "readers are not a daemon");
        let e = acquire(dir.path(), Duration::from_millis(100)).unwrap_err();
        assert!(e.to_string().contains("queue commands"), "{e}");
        assert_eq!(e.exit_code(), 3);
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            drop((a, b));
        });
        let t = Instant::now();
        let l = acquire(dir.path(), DAEMON_WAIT).unwrap();
        assert!(t.elapsed() >= Duration::from_millis(250));
        release.join().unwrap();
        let pid = std::fs::read_to_string(l.path()).unwrap();
        assert_eq!(pid.trim(), std::process::id().to_string());
    }
}
