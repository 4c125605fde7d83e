//! The durable store: one sled database under `STATE/db` holding a queue
//! and a dead-letter tree per destination, and a `meta` tree; with the
//! record codec ([`record`]) and the single-instance lock ([`lock`]).
//!
//! This folder owns every read and write of the database; nothing else
//! touches sled. A commit writes one changeset into every destination's
//! queue in a single transaction and then flushes, so after
//! [`Store::commit`] returns the changeset survives a crash of the
//! process; an ack removes keys only after rsync succeeded ([`queue`]). A
//! queue is keyed by a big-endian `u64` sequence kept in `meta` and bumped
//! inside the same transaction, so keys are contiguous and oldest-first.
//! `meta` also holds the schema version (through the `migrations` crate,
//! whose steps upgrade an older store and refuse a newer one), the
//! clean-shutdown marker, and how many directories the last start watched.
//!
//! sled 0.34 cannot survive running out of space: after an I/O error its
//! handle fails every later call. So no write starts while the state file
//! system has less than the floor free ([`Store::ensure_space`]).

pub mod lock;
pub mod marks;
pub mod queue;
pub mod record;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

pub use crate::error::StoreError;
use crate::error::{Error, Result};

pub use marks::Checkpoints;
pub use queue::{Counts, Pending};

const CLEAN: &[u8] = b"clean_shutdown";
const SOURCE: &[u8] = b"source";
const WATCHES: &[u8] = b"watch_count";

/// The hint printed with every store error that a reset can fix.
pub const RESET_HINT: &str = "; if it is damaged, start with `syncd run \
    --reset-queue ...`: it moves the store aside and runs a full sync, so \
    the mirror is complete again";

/// The default of [`Store::set_min_free`]: sled writes in 512 KiB segments
/// and compacts by rewriting them, so a few MiB of slack keep a commit from
/// ever meeting a full disk half-way.
pub const DEFAULT_MIN_FREE: u64 = 8 << 20;

/// The open database.
pub struct Store {
    db: sled::Db,
    meta: sled::Tree,
    path: PathBuf,
    /// Whether the store was created by this open (no earlier state).
    fresh: bool,
    /// Free bytes kept on the state file system: no write starts below it.
    min_free: u64,
}

/// The free bytes (for unprivileged users) of the file system holding `p`.
pub fn free_space(p: &Path) -> std::io::Result<u64> {
    let c = std::ffi::CString::new(p.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: statvfs writes into the zeroed struct we own; `c` is a valid
    // NUL-terminated path.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

/// Moves a damaged store aside (to `db.broken-<unix time>`), so the next
/// open starts empty. Returns where it went, or `None` when there was no
/// store. The caller must hold the state directory's lock.
pub fn move_aside(state_dir: &Path) -> Result<Option<PathBuf>> {
    let db = db_path(state_dir);
    if !db.exists() {
        return Ok(None);
    }
    let mut to = state_dir.join(format!("db.broken-{}", now_ms() / 1000));
    let mut n = 1;
    while to.exists() {
        n += 1;
        to = state_dir.join(format!("db.broken-{}-{n}", now_ms() / 1000));
    }
    std::fs::rename(&db, &to).map_err(|e| Error::io("cannot move the store aside", &db, e))?;
    Ok(Some(to))
}

/// How long [`Store::open`] waits for another process to close the store.
pub const BUSY_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Whether sled failed to open because another process has the database
/// open: sled 0.34 reports its failed `flock` as an error of kind `Other`
/// whose text starts "could not acquire lock" (config.rs, `try_lock`).
fn is_busy(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::WouldBlock
        || e.to_string().starts_with("could not acquire lock")
}

/// The path of the database inside a state directory.
pub fn db_path(state_dir: &Path) -> PathBuf {
    state_dir.join("db")
}

impl Store {
    /// Opens (or creates) the store in `state_dir` and checks or migrates
    /// its schema. sled 0.34 can panic on some corrupt files instead of
    /// returning an error; that panic is caught and reported like any other
    /// corruption, with the recovery the operator can run. sled locks the
    /// database exclusively, so two offline queue commands (which share the
    /// state directory's lock) collide here: while another process has it
    /// open, this tries again for up to [`BUSY_WAIT`].
    pub fn open(state_dir: &Path) -> Result<Store> {
        let start = std::time::Instant::now();
        loop {
            match Store::open_once(state_dir) {
                Err(Error::Store {
                    source: StoreError::Busy,
                    ..
                }) if start.elapsed() < BUSY_WAIT => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                other => return other,
            }
        }
    }

    fn open_once(state_dir: &Path) -> Result<Store> {
        let path = db_path(state_dir);
        let existed = path.join("conf").exists() || path.join("db").exists();
        let p = path.clone();
        let opened = std::panic::catch_unwind(move || {
            sled::Config::new()
                .path(&p)
                .cache_capacity(64 << 20)
                .flush_every_ms(Some(500))
                .open()
        });
        let fail = |source: StoreError| {
            let hint = match &source {
                StoreError::Busy | StoreError::Schema(migrations::Error::Newer { .. }) => "",
                _ => RESET_HINT,
            };
            Error::Store {
                what: "cannot open",
                path: path.clone(),
                source,
                hint,
            }
        };
        let db = match opened {
            Ok(Ok(db)) => db,
            Ok(Err(sled::Error::Io(e))) if is_busy(&e) => return Err(fail(StoreError::Busy)),
            Ok(Err(e)) => return Err(fail(e.into())),
            Err(panic) => {
                let why = panic_text(&panic);
                return Err(fail(StoreError::Corrupt(format!(
                    "sled panicked reading it: {why}"
                ))));
            }
        };
        // sled recovers the longest valid prefix of its log and opens a
        // truncated or overwritten file as an empty database. A store that
        // existed but has no schema version lost its data that way; taking it
        // for a new one would hide the loss, so it is refused.
        if existed && migrations::version(&db).ok().flatten().is_none() {
            return Err(fail(StoreError::Corrupt(
                "it exists but holds no schema version, so it is truncated or corrupt".into(),
            )));
        }
        let outcome = migrations::migrate(&db).map_err(|e| fail(e.into()))?;
        if let migrations::Outcome::Upgraded { from, steps } = &outcome {
            log::warn!(
                "store upgraded from schema {from} to {}: {}",
                migrations::CURRENT,
                steps.join("; ")
            );
        }
        let meta = db
            .open_tree(migrations::META_TREE)
            .map_err(|e| fail(e.into()))?;
        let fresh = outcome == migrations::Outcome::Created && !existed;
        let store = Store {
            db,
            meta,
            path,
            fresh,
            min_free: DEFAULT_MIN_FREE,
        };
        store.fill_counts()?;
        Ok(store)
    }

    /// The directory of the database.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether this open created the store.
    pub fn is_fresh(&self) -> bool {
        self.fresh
    }

    /// The error of a failed operation: `what` says which, in the form
    /// "cannot acknowledge changesets in".
    pub(crate) fn failed(&self, what: &'static str) -> impl Fn(StoreError) -> Error + '_ {
        move |source| Error::Store {
            what,
            path: self.path.clone(),
            hint: if source.is_fatal() { RESET_HINT } else { "" },
            source,
        }
    }

    /// [`Store::failed`] for a sled error.
    pub(crate) fn sled_failed(&self, what: &'static str) -> impl Fn(sled::Error) -> Error + '_ {
        let f = self.failed(what);
        move |e| f(e.into())
    }

    /// Sets how many bytes must stay free on the state file system; writes
    /// below it fail with [`StoreError::LowSpace`] without touching sled.
    pub fn set_min_free(&mut self, bytes: u64) {
        self.min_free = bytes;
    }

    /// Checks that `need` more bytes can be written above the free-space
    /// floor. sled 0.34 cannot recover from running out of space (see
    /// `deliver::outbox`), so it is never allowed to try.
    pub fn ensure_space(&self, need: usize) -> Result<(), StoreError> {
        if self.min_free == 0 {
            return Ok(());
        }
        let free = free_space(&self.path).unwrap_or(u64::MAX);
        let min = self.min_free.saturating_add(2 * need as u64);
        if free < min {
            return Err(StoreError::LowSpace {
                path: self.path.clone(),
                free,
                min,
            });
        }
        Ok(())
    }

    /// Whether the last daemon on this store stopped cleanly. A fresh store
    /// counts as clean: there is nothing to reconcile.
    pub fn was_clean(&self) -> Result<bool> {
        if self.fresh {
            return Ok(true);
        }
        let marker = self.meta.get(CLEAN);
        Ok(marker
            .map_err(self.sled_failed("cannot read the clean-shutdown marker of"))?
            .is_some())
    }

    /// Marks the store as in use: until [`Store::mark_clean`], a crash is
    /// detected at the next start.
    pub fn mark_running(&self) -> Result<()> {
        const WHAT: &str = "cannot clear the clean-shutdown marker of";
        self.ensure_space(64).map_err(self.failed(WHAT))?;
        self.meta.remove(CLEAN).map_err(self.sled_failed(WHAT))?;
        self.flush_for(WHAT)
    }

    /// Marks a clean shutdown and flushes.
    pub fn mark_clean(&self) -> Result<()> {
        const WHAT: &str = "cannot write the clean-shutdown marker into";
        self.ensure_space(64).map_err(self.failed(WHAT))?;
        self.meta
            .insert(CLEAN, &[1u8])
            .map_err(self.sled_failed(WHAT))?;
        self.flush_for(WHAT)
    }

    /// Records which source this store replicates, returning the one
    /// recorded before, if it differs.
    pub fn swap_source(&self, root: &Path) -> Result<Option<PathBuf>> {
        let new = root.as_os_str().as_bytes();
        let old = self
            .meta
            .insert(SOURCE, new)
            .map_err(self.sled_failed("cannot record the source in"))?;
        Ok(old
            .filter(|o| o.as_ref() != new)
            .map(|o| PathBuf::from(OsStr::from_bytes(&o))))
    }

    /// How many directories the last start-up walk watched, if a start
    /// recorded it: the next start weighs its inotify watch budget with it.
    pub fn watch_count(&self) -> Option<u64> {
        self.meta
            .get(WATCHES)
            .ok()
            .flatten()
            .and_then(|v| u64_of(&v))
    }

    /// Records how many directories this start watched. Written without a
    /// flush: it is an estimate, and the next commit flushes it.
    pub fn set_watch_count(&self, n: u64) -> Result<()> {
        const WHAT: &str = "cannot record the watch count in";
        self.ensure_space(64).map_err(self.failed(WHAT))?;
        self.meta
            .insert(WATCHES, &n.to_be_bytes())
            .map_err(self.sled_failed(WHAT))?;
        Ok(())
    }

    /// Flushes every tree to disk (sled's flush covers the whole database).
    pub fn flush(&self) -> Result<()> {
        self.flush_for("cannot flush")
    }

    /// [`Store::flush`], where `what` names the operation it completes.
    pub(crate) fn flush_for(&self, what: &'static str) -> Result<()> {
        self.db.flush().map(|_| ()).map_err(self.sled_failed(what))
    }
}

/// Decodes a big-endian `u64` key.
pub fn u64_of(b: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(b.try_into().ok()?))
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn panic_text(p: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_marker_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Store::open(dir.path()).unwrap();
            s.mark_running().unwrap();
            s.mark_clean().unwrap();
        }
        let s = Store::open(dir.path()).unwrap();
        assert!(s.was_clean().unwrap());
        s.mark_running().unwrap();
        drop(s);
        assert!(!Store::open(dir.path()).unwrap().was_clean().unwrap());
    }

    /// Two processes cannot have the store open at once (sled's lock);
    /// the second waits for the first instead of failing at once.
    #[test]
    fn a_busy_store_is_waited_for() {
        let dir = tempfile::tempdir().unwrap();
        let first = Store::open(dir.path()).unwrap();
        assert!(matches!(
            Store::open_once(dir.path()),
            Err(Error::Store {
                source: StoreError::Busy,
                ..
            })
        ));
        let t = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(300));
            drop(first);
        });
        Store::open(dir.path()).unwrap();
        t.join().unwrap();
    }

    #[test]
    fn the_watch_count_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Store::open(dir.path()).unwrap();
            assert_eq!(s.watch_count(), None);
            s.set_watch_count(123_456).unwrap();
            s.flush().unwrap();
        }
        assert_eq!(
            Store::open(dir.path()).unwrap().watch_count(),
            Some(123_456)
        );
    }

    #[test]
    fn a_refused_write_says_what_failed() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path()).unwrap();
        s.set_min_free(u64::MAX / 4);
        let e = s.mark_clean().unwrap_err().to_string();
        assert!(
            e.starts_with("cannot write the clean-shutdown marker into the queue store at"),
            "{e}"
        );
        assert!(e.contains("KiB are free"), "{e}");
        assert!(
            !e.contains("--reset-queue"),
            "a full disk is not damage: {e}"
        );
    }
}
