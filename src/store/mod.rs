//! The durable store: one sled database under `STATE/db` holding a queue
//! and a dead-letter tree per destination, and a `meta` tree.
//!
//! This module owns every read and write of the database. A commit writes
//! one changeset into every destination's queue in a single transaction and
//! then flushes, so after [`Store::commit`] returns the changeset survives a
//! crash of the process; an ack removes keys only after rsync succeeded. A
//! queue is keyed by a big-endian `u64` sequence kept in `meta` and bumped
//! inside the same transaction, so keys are contiguous and oldest-first.
//! `meta` also holds the schema version (through the `migrations` crate)
//! and the clean-shutdown marker that tells a restart whether it must
//! reconcile with a full sync.

pub mod lock;
pub mod record;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::Transactional;

use crate::changeset::{Changeset, Entry};
use crate::error::{Error, Result};
use self::record::{DeadLetter, DestStatus};

const NEXT_SEQ: &[u8] = b"next_seq";
const CLEAN: &[u8] = b"clean_shutdown";
const SOURCE: &[u8] = b"source";
const QUEUE_PREFIX: &str = "queue:";
const DEAD_PREFIX: &str = "dead:";
const STATUS_PREFIX: &[u8] = b"status:";

/// The hint printed with every store error that a reset can fix.
pub const RESET_HINT: &str = "; if it is damaged, start with `syncd run \
    --reset-queue ...`: it moves the store aside and runs a full sync, so \
    the mirror is complete again";

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

/// The default of [`Store::set_min_free`]: sled writes in 512 KiB segments
/// and compacts by rewriting them, so a few MiB of slack keep a commit from
/// ever meeting a full disk half-way.
pub const DEFAULT_MIN_FREE: u64 = 8 << 20;

/// Why a write to the store was not done.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The state file system is (nearly) full; nothing was written.
    #[error(
        "only {} KiB are free on the file system of {}, and syncd keeps {} KiB free so \
         that the store never fills the disk half-way through a write",
        free / 1024,
        path.display(),
        min / 1024
    )]
    LowSpace { path: PathBuf, free: u64, min: u64 },
    /// sled failed. After an I/O error sled 0.34 cannot be used (or even
    /// dropped) safely any more in this process.
    #[error("{0}")]
    Store(#[from] sled::Error),
}

/// The free bytes (for unprivileged users) of the file system holding `p`.
pub fn free_space(p: &Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
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

/// One pending changeset as read from a queue. `changeset` is `None` when
/// the record could not be decoded: the worker then syncs the whole tree,
/// which covers whatever the record held.
pub struct Pending {
    pub seq: u64,
    pub changeset: Option<Changeset>,
    pub corrupt: Option<String>,
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

/// The path of the database inside a state directory.
pub fn db_path(state_dir: &Path) -> PathBuf {
    state_dir.join("db")
}

impl Store {
    /// Opens (or creates) the store in `state_dir` and checks or migrates
    /// its schema. sled 0.34 can panic on some corrupt files instead of
    /// returning an error; that panic is caught and reported like any other
    /// corruption, with the recovery the operator can run.
    pub fn open(state_dir: &Path) -> Result<Store> {
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
        let store_err = |reason: String, hint: &'static str| Error::Store {
            path: path.clone(),
            reason,
            hint,
        };
        let db = match opened {
            Ok(Ok(db)) => db,
            Ok(Err(sled::Error::Io(e))) if e.kind() == std::io::ErrorKind::WouldBlock => {
                return Err(store_err("another process has it open".into(), ""));
            }
            Ok(Err(e)) => return Err(store_err(e.to_string(), RESET_HINT)),
            Err(panic) => {
                let why = panic_text(&panic);
                return Err(store_err(
                    format!("sled panicked reading it: {why}"),
                    RESET_HINT,
                ));
            }
        };
        // sled recovers the longest valid prefix of its log and opens a
        // truncated or overwritten file as an empty database. A store that
        // existed but has no schema version lost its data that way; taking it
        // for a new one would hide the loss, so it is refused.
        if existed && migrations::version(&db).ok().flatten().is_none() {
            return Err(store_err(
                "it exists but holds no schema version, so it is truncated or corrupt".into(),
                RESET_HINT,
            ));
        }
        let outcome = migrations::migrate(&db).map_err(|e| {
            let hint = match e {
                migrations::Error::Newer { .. } => "",
                _ => RESET_HINT,
            };
            store_err(e.to_string(), hint)
        })?;
        if let migrations::Outcome::Upgraded { from, steps } = &outcome {
            log::warn!(
                "store upgraded from schema {from} to {}: {}",
                migrations::CURRENT,
                steps.join("; ")
            );
        }
        let meta = db
            .open_tree(migrations::META_TREE)
            .map_err(|e| store_err(e.to_string(), RESET_HINT))?;
        let fresh = outcome == migrations::Outcome::Created && !existed;
        Ok(Store {
            db,
            meta,
            path,
            fresh,
            min_free: DEFAULT_MIN_FREE,
        })
    }

    /// The directory of the database.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether this open created the store.
    pub fn is_fresh(&self) -> bool {
        self.fresh
    }

    fn err(&self, e: impl std::fmt::Display) -> Error {
        Error::Store {
            path: self.path.clone(),
            reason: e.to_string(),
            hint: RESET_HINT,
        }
    }

    /// Sets how many bytes must stay free on the state file system; writes
    /// below it fail with [`WriteError::LowSpace`] without touching sled.
    pub fn set_min_free(&mut self, bytes: u64) {
        self.min_free = bytes;
    }

    /// Checks that `need` more bytes can be written above the free-space
    /// floor. sled 0.34 cannot recover from running out of space (see
    /// `pipeline`), so it is never allowed to try.
    pub fn ensure_space(&self, need: usize) -> Result<(), WriteError> {
        if self.min_free == 0 {
            return Ok(());
        }
        let free = free_space(&self.path).unwrap_or(u64::MAX);
        let min = self.min_free.saturating_add(2 * need as u64);
        if free < min {
            return Err(WriteError::LowSpace {
                path: self.path.clone(),
                free,
                min,
            });
        }
        Ok(())
    }

    fn write_err(&self, e: WriteError) -> Error {
        match e {
            WriteError::Store(e) => self.err(e),
            low => Error::Store {
                path: self.path.clone(),
                reason: low.to_string(),
                hint: "",
            },
        }
    }

    /// Whether the last daemon on this store stopped cleanly. A fresh store
    /// counts as clean: there is nothing to reconcile.
    pub fn was_clean(&self) -> Result<bool> {
        if self.fresh {
            return Ok(true);
        }
        Ok(self.meta.get(CLEAN).map_err(|e| self.err(e))?.is_some())
    }

    /// Marks the store as in use: until [`Store::mark_clean`], a crash is
    /// detected at the next start.
    pub fn mark_running(&self) -> Result<()> {
        self.ensure_space(64).map_err(|e| self.write_err(e))?;
        self.meta.remove(CLEAN).map_err(|e| self.err(e))?;
        self.flush()
    }

    /// Marks a clean shutdown and flushes.
    pub fn mark_clean(&self) -> Result<()> {
        self.ensure_space(64).map_err(|e| self.write_err(e))?;
        self.meta.insert(CLEAN, &[1u8]).map_err(|e| self.err(e))?;
        self.flush()
    }

    /// Records which source this store replicates, returning the one
    /// recorded before, if it differs.
    pub fn swap_source(&self, root: &Path) -> Result<Option<PathBuf>> {
        let new = root.as_os_str().as_bytes();
        let old = self.meta.insert(SOURCE, new).map_err(|e| self.err(e))?;
        Ok(old
            .filter(|o| o.as_ref() != new)
            .map(|o| PathBuf::from(OsStr::from_bytes(&o))))
    }

    /// Flushes every tree to disk (sled's flush covers the whole database).
    pub fn flush(&self) -> Result<()> {
        self.db.flush().map(|_| ()).map_err(|e| self.err(e))
    }

    /// The queue tree of a destination.
    pub fn queue(&self, target: &OsStr) -> Result<sled::Tree> {
        self.tree(QUEUE_PREFIX, target)
    }

    /// The dead-letter tree of a destination.
    pub fn dead(&self, target: &OsStr) -> Result<sled::Tree> {
        self.tree(DEAD_PREFIX, target)
    }

    fn tree(&self, prefix: &str, target: &OsStr) -> Result<sled::Tree> {
        let mut name = prefix.as_bytes().to_vec();
        name.extend_from_slice(target.as_bytes());
        self.db.open_tree(name).map_err(|e| self.err(e))
    }

    /// Every destination that has a queue or dead-letter tree in the store,
    /// configured now or not, sorted.
    pub fn targets(&self) -> Vec<Vec<u8>> {
        let mut v: Vec<Vec<u8>> = self
            .db
            .tree_names()
            .into_iter()
            .filter_map(|n| {
                n.strip_prefix(QUEUE_PREFIX.as_bytes())
                    .or_else(|| n.strip_prefix(DEAD_PREFIX.as_bytes()))
                    .map(<[u8]>::to_vec)
            })
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// Writes `cs` into every queue of `queues` in one transaction, then
    /// flushes. Returns the sequence number it was given. Nothing is
    /// written if it fails, and the caller keeps the window to retry.
    pub fn commit(&self, queues: &[sled::Tree], cs: &Changeset) -> Result<u64, WriteError> {
        let value = record::encode_changeset(cs);
        self.ensure_space(value.len() * queues.len())?;
        let mut trees = Vec::with_capacity(queues.len() + 1);
        trees.push(self.meta.clone());
        trees.extend(queues.iter().cloned());
        let seq = trees
            .as_slice()
            .transaction(|t| {
                let seq = match t[0].get(NEXT_SEQ)? {
                    Some(v) => u64_of(&v).ok_or_else(|| {
                        ConflictableTransactionError::Abort(sled::Error::Unsupported(
                            "next_seq is corrupt".into(),
                        ))
                    })?,
                    None => 1,
                };
                t[0].insert(NEXT_SEQ, &(seq + 1).to_be_bytes())?;
                for q in &t[1..] {
                    q.insert(&seq.to_be_bytes(), value.as_slice())?;
                }
                Ok(seq)
            })
            .map_err(|e| match e {
                TransactionError::Abort(e) | TransactionError::Storage(e) => e,
            })?;
        self.db.flush()?;
        Ok(seq)
    }

    /// Reads the oldest pending changesets of a queue, stopping after the
    /// one that brings the total past `max_entries` entries (at least one
    /// is always returned when the queue is not empty).
    pub fn pending(&self, queue: &sled::Tree, max_entries: usize) -> Result<Vec<Pending>> {
        let mut out = Vec::new();
        let mut total = 0usize;
        for kv in queue.iter() {
            let (k, v) = kv.map_err(|e| self.err(e))?;
            let seq = u64_of(&k).unwrap_or(0);
            match record::decode_changeset(&v) {
                Ok(cs) => {
                    total += cs.entries.len();
                    out.push(Pending {
                        seq,
                        changeset: Some(cs),
                        corrupt: None,
                    });
                }
                Err(e) => out.push(Pending {
                    seq,
                    changeset: None,
                    corrupt: Some(e.to_string()),
                }),
            }
            if total >= max_entries {
                break;
            }
        }
        Ok(out)
    }

    /// Removes acknowledged changesets from a queue in one batch and
    /// flushes. A lost ack only makes rsync run the same paths again.
    pub fn ack(&self, queue: &sled::Tree, seqs: &[u64]) -> Result<()> {
        self.ensure_space(seqs.len() * 16)
            .map_err(|e| self.write_err(e))?;
        let mut batch = sled::Batch::default();
        for s in seqs {
            batch.remove(&s.to_be_bytes());
        }
        queue.apply_batch(batch).map_err(|e| self.err(e))?;
        self.flush()
    }

    /// Moves changesets from a queue to the dead-letter tree, atomically.
    pub fn bury(
        &self,
        queue: &sled::Tree,
        dead: &sled::Tree,
        letters: &[(u64, DeadLetter)],
    ) -> Result<()> {
        self.ensure_space(4096 * letters.len())
            .map_err(|e| self.write_err(e))?;
        let values: Vec<(u64, Vec<u8>)> = letters
            .iter()
            .map(|(s, d)| (*s, record::encode_dead(d)))
            .collect();
        (queue, dead)
            .transaction(|(q, d)| {
                for (seq, v) in &values {
                    q.remove(&seq.to_be_bytes())?;
                    d.insert(&seq.to_be_bytes(), v.as_slice())?;
                }
                Ok::<(), ConflictableTransactionError<sled::Error>>(())
            })
            .map_err(|e| self.err(e))?;
        self.flush()
    }

    /// Moves every dead letter of a destination back into its queue, with
    /// its original sequence number (so it keeps its age). Returns how many.
    pub fn revive(&self, queue: &sled::Tree, dead: &sled::Tree) -> Result<usize> {
        self.ensure_space(4096 * dead.len())
            .map_err(|e| self.write_err(e))?;
        let mut n = 0;
        for kv in dead.iter() {
            let (k, v) = kv.map_err(|e| self.err(e))?;
            let cs = match record::decode_dead(&v) {
                Ok(d) => d.changeset,
                // A corrupt dead letter comes back as a full sync.
                Err(_) => Changeset {
                    created_ms: now_ms(),
                    entries: vec![Entry::full()],
                },
            };
            let value = record::encode_changeset(&cs);
            (queue, dead)
                .transaction(|(q, d)| {
                    q.insert(k.as_ref(), value.as_slice())?;
                    d.remove(k.as_ref())?;
                    Ok::<(), ConflictableTransactionError<sled::Error>>(())
                })
                .map_err(|e| self.err(e))?;
            n += 1;
        }
        self.flush()?;
        Ok(n)
    }

    /// Removes every pending changeset and dead letter of a destination.
    /// Returns how many changesets were dropped.
    pub fn purge(&self, queue: &sled::Tree, dead: &sled::Tree) -> Result<usize> {
        let n = queue.len() + dead.len();
        queue.clear().map_err(|e| self.err(e))?;
        dead.clear().map_err(|e| self.err(e))?;
        self.flush()?;
        Ok(n)
    }

    /// The persisted status of a destination (default when none).
    pub fn status(&self, target: &[u8]) -> DestStatus {
        let key = [STATUS_PREFIX, target].concat();
        self.meta
            .get(key)
            .ok()
            .flatten()
            .and_then(|v| record::decode_status(&v).ok())
            .unwrap_or_default()
    }

    /// Persists the status of a destination. Not flushed on its own: it is
    /// informational and rides along with the next commit or ack.
    pub fn put_status(&self, target: &[u8], s: &DestStatus) -> Result<()> {
        self.ensure_space(1024).map_err(|e| self.write_err(e))?;
        let key = [STATUS_PREFIX, target].concat();
        self.meta
            .insert(key, record::encode_status(s))
            .map_err(|e| self.err(e))?;
        Ok(())
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
    use crate::changeset::Kind;

    fn cs(paths: &[&str]) -> Changeset {
        Changeset {
            created_ms: 1,
            entries: paths
                .iter()
                .map(|p| Entry::new(Kind::File, p.as_bytes()))
                .collect(),
        }
    }

    #[test]
    fn commit_reaches_every_queue_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Store::open(dir.path()).unwrap();
            assert!(s.is_fresh());
            let qs = [
                s.queue(OsStr::new("/a/")).unwrap(),
                s.queue(OsStr::new("h:")).unwrap(),
            ];
            assert_eq!(s.commit(&qs, &cs(&["x"])).unwrap(), 1);
            assert_eq!(s.commit(&qs, &cs(&["y"])).unwrap(), 2);
            s.ack(&qs[0], &[1]).unwrap();
        }
        let s = Store::open(dir.path()).unwrap();
        assert!(!s.is_fresh());
        assert!(!s.was_clean().unwrap(), "no clean marker was written");
        let a = s
            .pending(&s.queue(OsStr::new("/a/")).unwrap(), 100)
            .unwrap();
        let h = s.pending(&s.queue(OsStr::new("h:")).unwrap(), 100).unwrap();
        assert_eq!(a.iter().map(|p| p.seq).collect::<Vec<_>>(), [2]);
        assert_eq!(h.iter().map(|p| p.seq).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(s.targets(), vec![b"/a/".to_vec(), b"h:".to_vec()]);
    }

    #[test]
    fn pending_stops_past_the_entry_budget() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let q = [s.queue(OsStr::new("d")).unwrap()];
        for _ in 0..5 {
            s.commit(&q, &cs(&["a", "b"])).unwrap();
        }
        assert_eq!(s.pending(&q[0], 3).unwrap().len(), 2);
        assert_eq!(s.pending(&q[0], 1000).unwrap().len(), 5);
    }

    #[test]
    fn a_corrupt_value_is_reported_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let q = s.queue(OsStr::new("d")).unwrap();
        q.insert(7u64.to_be_bytes(), &[0xff, 0xff][..]).unwrap();
        let p = s.pending(&q, 10).unwrap();
        assert_eq!(p.len(), 1);
        assert!(p[0].changeset.is_none() && p[0].corrupt.is_some());
    }

    #[test]
    fn dead_letters_move_out_and_back() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let q = s.queue(OsStr::new("d")).unwrap();
        let d = s.dead(OsStr::new("d")).unwrap();
        s.commit(std::slice::from_ref(&q), &cs(&["a"])).unwrap();
        let letter = DeadLetter {
            changeset: cs(&["a"]),
            error: "x".into(),
            attempts: 3,
            dead_since_ms: 1,
        };
        s.bury(&q, &d, &[(1, letter)]).unwrap();
        assert_eq!((q.len(), d.len()), (0, 1));
        assert_eq!(s.revive(&q, &d).unwrap(), 1);
        assert_eq!((q.len(), d.len()), (1, 0));
        assert_eq!(s.pending(&q, 9).unwrap()[0].seq, 1);
    }

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
}
