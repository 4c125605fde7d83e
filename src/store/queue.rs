//! The queues: one queue tree and one dead-letter tree per destination,
//! and every operation on them. A commit writes one changeset into every
//! destination's queue in one transaction and flushes; a worker reads the
//! oldest pending changesets, and acks them (removes them) only after
//! rsync delivered them, or moves them to its dead letters.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::Transactional;

use super::record::{self, DeadLetter, DestStatus};
use super::{now_ms, u64_of, Store, StoreError};
use crate::changeset::{Changeset, Entry};
use crate::error::Result;

const NEXT_SEQ: &[u8] = b"next_seq";
const QUEUE_PREFIX: &str = "queue:";
const DEAD_PREFIX: &str = "dead:";
const STATUS_PREFIX: &[u8] = b"status:";
const COUNT: &[u8] = b"count:";
const DEAD_COUNT: &[u8] = b"dead_count:";

/// One pending changeset as read from a queue. `changeset` is `None` when
/// the record could not be decoded: the worker then syncs the whole tree,
/// which covers whatever the record held.
pub struct Pending {
    pub seq: u64,
    pub changeset: Option<Changeset>,
    pub corrupt: Option<String>,
}

impl Store {
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
        self.db
            .open_tree(name)
            .map_err(self.sled_failed("cannot open a queue of"))
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

    /// Writes `cs` into every queue of `queues` in one transaction, with
    /// the queues' counts and the new `watermark`, then flushes. Returns
    /// the sequence number it was given. Nothing is written if it fails,
    /// and the caller keeps the window to retry.
    pub fn commit(
        &self,
        queues: &[sled::Tree],
        cs: &Changeset,
        watermark: u64,
    ) -> Result<u64, StoreError> {
        let value = record::encode_changeset(cs);
        self.ensure_space(value.len() * queues.len())?;
        let paths = size_of(cs);
        let keys: Vec<Vec<u8>> = queues.iter().map(|q| count_key(COUNT, q)).collect();
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
                t[0].insert(super::marks::WATERMARK, &watermark.to_be_bytes())?;
                for (q, key) in t[1..].iter().zip(&keys) {
                    q.insert(&seq.to_be_bytes(), value.as_slice())?;
                    let c = Counts::read(t[0].get(key)?.as_deref());
                    t[0].insert(key.as_slice(), &c.add(1, paths).bytes())?;
                }
                Ok(seq)
            })
            .map_err(untx)?;
        self.db.flush()?;
        Ok(seq)
    }

    /// A queue's counts: pending changesets and the paths they hold, kept
    /// with every write so no report has to read the queue.
    pub fn counts(&self, queue: &sled::Tree) -> Counts {
        let key = count_key(COUNT, queue);
        Counts::read(self.meta.get(key).ok().flatten().as_deref())
    }

    /// The number of dead letters of a destination.
    pub fn dead_count(&self, dead: &sled::Tree) -> u64 {
        let key = count_key(DEAD_COUNT, dead);
        Counts::read(self.meta.get(key).ok().flatten().as_deref()).changesets
    }

    /// The oldest pending changeset of a queue, with its sequence number
    /// (`None` when the queue is empty or its first record is unreadable).
    pub fn oldest(&self, queue: &sled::Tree) -> Option<(u64, Changeset)> {
        let (k, v) = queue.first().ok().flatten()?;
        Some((u64_of(&k)?, record::decode_changeset(&v).ok()?))
    }

    /// Counts every queue and dead-letter tree that has no counts yet (a
    /// store written by version 1), once: the only time a queue is read
    /// whole for its size.
    pub(super) fn fill_counts(&self) -> Result<()> {
        const WHAT: &str = "cannot count the queues of";
        for name in self.db.tree_names() {
            let (prefix, which) = if name.starts_with(QUEUE_PREFIX.as_bytes()) {
                (QUEUE_PREFIX, COUNT)
            } else if name.starts_with(DEAD_PREFIX.as_bytes()) {
                (DEAD_PREFIX, DEAD_COUNT)
            } else {
                continue;
            };
            let tree = self.db.open_tree(&name).map_err(self.sled_failed(WHAT))?;
            let key = count_key(which, &tree);
            if self
                .meta
                .get(&key)
                .map_err(self.sled_failed(WHAT))?
                .is_some()
            {
                continue;
            }
            let mut c = Counts::default();
            for kv in tree.iter() {
                let (_, v) = kv.map_err(self.sled_failed(WHAT))?;
                let paths = match prefix {
                    QUEUE_PREFIX => record::decode_changeset(&v).map_or(1, |cs| size_of(&cs)),
                    _ => 0,
                };
                c = c.add(1, paths);
            }
            self.meta
                .insert(key, &c.bytes())
                .map_err(self.sled_failed(WHAT))?;
        }
        self.flush_for(WHAT)
    }

    /// The pending changesets of a queue, oldest first, decoded one at a
    /// time as the caller asks for them.
    pub fn pending_iter<'a>(
        &'a self,
        queue: &'a sled::Tree,
    ) -> impl Iterator<Item = Result<Pending>> + 'a {
        queue.iter().map(move |kv| {
            let (k, v) = kv.map_err(self.sled_failed("cannot read a queue of"))?;
            let seq = u64_of(&k).unwrap_or(0);
            Ok(match record::decode_changeset(&v) {
                Ok(cs) => Pending {
                    seq,
                    changeset: Some(cs),
                    corrupt: None,
                },
                Err(e) => Pending {
                    seq,
                    changeset: None,
                    corrupt: Some(e.to_string()),
                },
            })
        })
    }

    /// Reads the oldest pending changesets of a queue, stopping after the
    /// one that brings the total past `max_entries` entries (at least one
    /// is always returned when the queue is not empty).
    pub fn pending(&self, queue: &sled::Tree, max_entries: usize) -> Result<Vec<Pending>> {
        let mut out = Vec::new();
        let mut total = 0usize;
        for p in self.pending_iter(queue) {
            let p = p?;
            total += p.changeset.as_ref().map_or(0, |cs| size_of(cs) as usize);
            out.push(p);
            if total >= max_entries {
                break;
            }
        }
        Ok(out)
    }

    /// Removes acknowledged changesets (holding `paths` paths in all) from
    /// a queue, with its counts, in one transaction, and flushes. A lost
    /// ack only makes rsync run the same paths again.
    pub fn ack(&self, queue: &sled::Tree, seqs: &[u64], paths: u64) -> Result<()> {
        const WHAT: &str = "cannot acknowledge changesets in";
        self.ensure_space(seqs.len() * 16)
            .map_err(self.failed(WHAT))?;
        let key = count_key(COUNT, queue);
        (queue, &self.meta)
            .transaction(|(q, m)| {
                for s in seqs {
                    q.remove(&s.to_be_bytes())?;
                }
                let c = Counts::read(m.get(&key)?.as_deref());
                m.insert(key.as_slice(), &c.sub(seqs.len() as u64, paths).bytes())?;
                Ok::<(), ConflictableTransactionError<sled::Error>>(())
            })
            .map_err(|e| self.failed(WHAT)(untx(e)))?;
        self.heal_counts(queue)?;
        self.flush_for(WHAT)
    }

    /// Resets the counts of an empty queue: a count that drifted (a
    /// corrupt record counts one path, whatever it held) heals as soon as
    /// the queue drains.
    fn heal_counts(&self, queue: &sled::Tree) -> Result<()> {
        if queue.first().ok().flatten().is_none() {
            self.meta
                .insert(count_key(COUNT, queue), &Counts::default().bytes())
                .map_err(self.sled_failed("cannot count a queue of"))?;
        }
        Ok(())
    }

    /// Moves changesets from a queue to the dead-letter tree, atomically.
    pub fn bury(
        &self,
        queue: &sled::Tree,
        dead: &sled::Tree,
        letters: &[(u64, DeadLetter)],
    ) -> Result<()> {
        const WHAT: &str = "cannot move changesets to the dead letters in";
        self.ensure_space(4096 * letters.len())
            .map_err(self.failed(WHAT))?;
        let values: Vec<(u64, Vec<u8>)> = letters
            .iter()
            .map(|(s, d)| (*s, record::encode_dead(d)))
            .collect();
        let paths: u64 = letters.iter().map(|(_, d)| size_of(&d.changeset)).sum();
        let n = letters.len() as u64;
        let (qkey, dkey) = (count_key(COUNT, queue), count_key(DEAD_COUNT, dead));
        (queue, dead, &self.meta)
            .transaction(|(q, d, m)| {
                for (seq, v) in &values {
                    q.remove(&seq.to_be_bytes())?;
                    d.insert(&seq.to_be_bytes(), v.as_slice())?;
                }
                let qc = Counts::read(m.get(&qkey)?.as_deref());
                m.insert(qkey.as_slice(), &qc.sub(n, paths).bytes())?;
                let dc = Counts::read(m.get(&dkey)?.as_deref());
                m.insert(dkey.as_slice(), &dc.add(n, 0).bytes())?;
                Ok::<(), ConflictableTransactionError<sled::Error>>(())
            })
            .map_err(|e| self.failed(WHAT)(untx(e)))?;
        self.heal_counts(queue)?;
        self.flush_for(WHAT)
    }

    /// Moves every dead letter of a destination back into its queue, with
    /// its original sequence number (so it keeps its age). Returns how many.
    pub fn revive(&self, queue: &sled::Tree, dead: &sled::Tree) -> Result<usize> {
        const WHAT: &str = "cannot move dead letters back into a queue of";
        self.ensure_space(4096 * self.dead_count(dead) as usize)
            .map_err(self.failed(WHAT))?;
        let (qkey, dkey) = (count_key(COUNT, queue), count_key(DEAD_COUNT, dead));
        let mut n = 0;
        for kv in dead.iter() {
            let (k, v) = kv.map_err(self.sled_failed(WHAT))?;
            let cs = match record::decode_dead(&v) {
                Ok(d) => d.changeset,
                // A corrupt dead letter comes back as a full sync.
                Err(_) => Changeset::new(now_ms(), vec![Entry::full()]),
            };
            let value = record::encode_changeset(&cs);
            let paths = size_of(&cs);
            (queue, dead, &self.meta)
                .transaction(|(q, d, m)| {
                    q.insert(k.as_ref(), value.as_slice())?;
                    d.remove(k.as_ref())?;
                    let qc = Counts::read(m.get(&qkey)?.as_deref());
                    m.insert(qkey.as_slice(), &qc.add(1, paths).bytes())?;
                    let dc = Counts::read(m.get(&dkey)?.as_deref());
                    m.insert(dkey.as_slice(), &dc.sub(1, 0).bytes())?;
                    Ok::<(), ConflictableTransactionError<sled::Error>>(())
                })
                .map_err(|e| self.failed(WHAT)(untx(e)))?;
            n += 1;
        }
        self.flush_for(WHAT)?;
        Ok(n)
    }

    /// Removes every pending changeset and dead letter of a destination.
    /// Returns how many changesets were dropped.
    pub fn purge(&self, queue: &sled::Tree, dead: &sled::Tree) -> Result<usize> {
        const WHAT: &str = "cannot purge a queue of";
        self.ensure_space(4096).map_err(self.failed(WHAT))?;
        let n = self.counts(queue).changesets + self.dead_count(dead);
        queue.clear().map_err(self.sled_failed(WHAT))?;
        dead.clear().map_err(self.sled_failed(WHAT))?;
        for key in [count_key(COUNT, queue), count_key(DEAD_COUNT, dead)] {
            self.meta
                .insert(key, &Counts::default().bytes())
                .map_err(self.sled_failed(WHAT))?;
        }
        self.flush_for(WHAT)?;
        Ok(n as usize)
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
        const WHAT: &str = "cannot record a destination's status in";
        self.ensure_space(1024).map_err(self.failed(WHAT))?;
        let key = [STATUS_PREFIX, target].concat();
        self.meta
            .insert(key, record::encode_status(s))
            .map_err(self.sled_failed(WHAT))?;
        Ok(())
    }
}

/// The changesets of a queue and the paths they hold.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub changesets: u64,
    pub paths: u64,
}

impl Counts {
    fn read(v: Option<&[u8]>) -> Counts {
        match v {
            Some(b) if b.len() == 16 => Counts {
                changesets: u64_of(&b[..8]).unwrap_or(0),
                paths: u64_of(&b[8..]).unwrap_or(0),
            },
            _ => Counts::default(),
        }
    }

    fn bytes(self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&self.changesets.to_be_bytes());
        b[8..].copy_from_slice(&self.paths.to_be_bytes());
        b
    }

    fn add(self, n: u64, paths: u64) -> Counts {
        Counts {
            changesets: self.changesets.saturating_add(n),
            paths: self.paths.saturating_add(paths),
        }
    }

    fn sub(self, n: u64, paths: u64) -> Counts {
        Counts {
            changesets: self.changesets.saturating_sub(n),
            paths: self.paths.saturating_sub(paths),
        }
    }
}

/// The paths a changeset holds, as the counts and `pending_paths` count
/// them: its entries and its moves.
pub fn size_of(cs: &Changeset) -> u64 {
    (cs.entries.len() + cs.moves.len()) as u64
}

/// The meta key of a queue's (or dead-letter tree's) counts: `prefix` and
/// the destination's target, taken from the tree's own name.
fn count_key(prefix: &[u8], tree: &sled::Tree) -> Vec<u8> {
    let name = tree.name();
    let target = name
        .strip_prefix(QUEUE_PREFIX.as_bytes())
        .or_else(|| name.strip_prefix(DEAD_PREFIX.as_bytes()))
        .unwrap_or(&name);
    [prefix, target].concat()
}

/// The storage error of a failed transaction (an abort carries one too).
fn untx(e: TransactionError<sled::Error>) -> StoreError {
    match e {
        TransactionError::Abort(e) | TransactionError::Storage(e) => e.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::changeset::Kind;

    fn cs(paths: &[&str]) -> Changeset {
        Changeset::new(
            1,
            paths
                .iter()
                .map(|p| Entry::new(Kind::File, p.as_bytes()))
                .collect(),
        )
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
            assert_eq!(s.commit(&qs, &cs(&["x"]), 1).unwrap(), 1);
            assert_eq!(s.commit(&qs, &cs(&["y"]), 2).unwrap(), 2);
            s.ack(&qs[0], &[1], 1).unwrap();
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
            s.commit(&q, &cs(&["a", "b"]), 1).unwrap();
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
        s.commit(std::slice::from_ref(&q), &cs(&["a"]), 1).unwrap();
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
}
