//! The watermark and the checkpoints: what the store can promise about
//! time.
//!
//! The watermark T says: every change made in the source before T is in a
//! committed changeset (or already delivered). It is written in the same
//! transaction as each commit ([`Store::commit`]), and on its own at a
//! clean stop, after the kernel's event queue was drained and committed. A
//! restart trusts it to look only at what changed since.
//!
//! A destination's *delivered* watermark says the same of what is on that
//! destination: every change before it was acked there. It is the
//! watermark recorded before its oldest undelivered changeset (pending or
//! dead), or the store's watermark when it has none; so it needs one read
//! at the head of two trees, never a scan. A checkpoint at time T completes
//! for a destination once its delivered watermark reaches T; the pending
//! one and the last completed one are kept per destination and survive a
//! restart.

use super::{now_ms, record, u64_of, Store};
use crate::error::Result;

pub(super) const WATERMARK: &[u8] = b"watermark";
const CHECKPOINT: &[u8] = b"checkpoint:";
const CHECKPOINT_DONE: &[u8] = b"checkpoint_done:";
const MOVES_REPLAYED: &[u8] = b"moves_replayed:";

/// A destination's checkpoints.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Checkpoints {
    /// The latest checkpoint asked for and not yet complete, in Unix ms.
    pub pending: Option<u64>,
    /// The last completed checkpoint and when it completed, in Unix ms.
    pub done: Option<(u64, u64)>,
}

impl Store {
    /// The watermark, or `None` in a store that never had one (new, or
    /// written before watermarks existed).
    pub fn watermark(&self) -> Result<Option<u64>> {
        let v = self
            .meta
            .get(WATERMARK)
            .map_err(self.sled_failed("cannot read the watermark of"))?;
        Ok(v.and_then(|b| u64_of(&b)))
    }

    /// Sets the watermark and flushes (a clean stop, or a window that
    /// committed nothing but time).
    pub fn set_watermark(&self, ms: u64) -> Result<()> {
        const WHAT: &str = "cannot write the watermark into";
        self.ensure_space(64).map_err(self.failed(WHAT))?;
        self.meta
            .insert(WATERMARK, &ms.to_be_bytes())
            .map_err(self.sled_failed(WHAT))?;
        self.flush_for(WHAT)
    }

    /// The last changeset of a batch whose moves a destination's worker
    /// began to replay and which was not acked since: a batch that holds
    /// it may have had its moves applied already, and replaying them again
    /// (a swap twice) would be wrong.
    pub fn moves_replayed(&self, target: &[u8]) -> Option<u64> {
        let key = [MOVES_REPLAYED, target].concat();
        self.meta.get(key).ok().flatten().and_then(|b| u64_of(&b))
    }

    /// Records, and flushes, that the moves of a batch ending at changeset
    /// `through` are about to be replayed on `target`; before the first
    /// rename, so that a crash in the middle of them is known at the next
    /// start.
    pub fn set_moves_replayed(&self, target: &[u8], through: u64) -> Result<()> {
        const WHAT: &str = "cannot record a replay of moves in";
        self.ensure_space(64 + target.len())
            .map_err(self.failed(WHAT))?;
        self.meta
            .insert([MOVES_REPLAYED, target].concat(), &through.to_be_bytes())
            .map_err(self.sled_failed(WHAT))?;
        self.flush_for(WHAT)
    }

    /// Forgets the replay once its batch is acked (not flushed: a crash
    /// before the next flush only makes one batch be checked by content).
    pub fn clear_moves_replayed(&self, target: &[u8]) -> Result<()> {
        self.meta
            .remove([MOVES_REPLAYED, target].concat())
            .map_err(self.sled_failed("cannot clear a replay of moves in"))?;
        Ok(())
    }

    /// The delivered watermark of a destination: every change made before
    /// it is on the destination. `None` when the store has no watermark
    /// and the destination has nothing pending either.
    pub fn delivered(&self, queue: &sled::Tree, dead: &sled::Tree) -> Result<Option<u64>> {
        let since = |tree: &sled::Tree, dead: bool| -> Option<(u64, u64)> {
            let (k, v) = tree.first().ok().flatten()?;
            let seq = u64_of(&k)?;
            let since = if dead {
                record::decode_dead(&v).ok().map(|d| d.changeset.since_ms)
            } else {
                record::decode_changeset(&v).ok().map(|c| c.since_ms)
            };
            // An unreadable record promises nothing.
            Some((seq, since.unwrap_or(0)))
        };
        let oldest = [since(queue, false), since(dead, true)]
            .into_iter()
            .flatten()
            .min_by_key(|(seq, _)| *seq);
        match oldest {
            Some((_, since)) => Ok(Some(since)),
            None => self.watermark(),
        }
    }

    /// The checkpoints of the destination `target`.
    pub fn checkpoints(&self, target: &[u8]) -> Checkpoints {
        let get = |prefix: &[u8]| self.meta.get([prefix, target].concat()).ok().flatten();
        Checkpoints {
            pending: get(CHECKPOINT).and_then(|b| u64_of(&b)),
            done: get(CHECKPOINT_DONE).and_then(|b| Some((u64_of(&b[..8])?, u64_of(&b[8..])?))),
        }
    }

    /// Asks for a checkpoint at `at` (Unix ms) on `target`: it stays
    /// pending until [`Store::settle_checkpoint`] sees it delivered.
    pub fn request_checkpoint(&self, target: &[u8], at: u64) -> Result<()> {
        const WHAT: &str = "cannot record a checkpoint in";
        self.ensure_space(64).map_err(self.failed(WHAT))?;
        let key = [CHECKPOINT, target].concat();
        let pending = self.checkpoints(target).pending.unwrap_or(0);
        self.meta
            .insert(key, &pending.max(at).to_be_bytes())
            .map_err(self.sled_failed(WHAT))?;
        self.flush_for(WHAT)
    }

    /// Completes the pending checkpoint of `target` if `delivered` reached
    /// it; returns the checkpoint completed now, if any.
    pub fn settle_checkpoint(&self, target: &[u8], delivered: Option<u64>) -> Result<Option<u64>> {
        const WHAT: &str = "cannot complete a checkpoint in";
        let Some(at) = self.checkpoints(target).pending else {
            return Ok(None);
        };
        if delivered.is_none_or(|d| d < at) {
            return Ok(None);
        }
        self.ensure_space(64).map_err(self.failed(WHAT))?;
        let mut done = [0u8; 16];
        done[..8].copy_from_slice(&at.to_be_bytes());
        done[8..].copy_from_slice(&now_ms().to_be_bytes());
        let batch = {
            let mut b = sled::Batch::default();
            b.remove([CHECKPOINT, target].concat());
            b.insert([CHECKPOINT_DONE, target].concat(), &done[..]);
            b
        };
        self.meta
            .apply_batch(batch)
            .map_err(self.sled_failed(WHAT))?;
        self.flush_for(WHAT)?;
        Ok(Some(at))
    }
}

#[cfg(test)]
mod tests {
    use crate::changeset::{Changeset, Entry, Kind};
    use crate::store::Store;
    use std::ffi::OsStr;

    fn cs(since: u64) -> Changeset {
        Changeset {
            since_ms: since,
            ..Changeset::new(1, vec![Entry::new(Kind::File, b"f".to_vec())])
        }
    }

    #[test]
    fn the_delivered_watermark_follows_the_oldest_undelivered_changeset() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let t = OsStr::new("d");
        let (q, d) = (s.queue(t).unwrap(), s.dead(t).unwrap());
        assert_eq!(s.watermark().unwrap(), None);
        assert_eq!(s.delivered(&q, &d).unwrap(), None);
        s.commit(std::slice::from_ref(&q), &cs(0), 100).unwrap();
        s.commit(std::slice::from_ref(&q), &cs(100), 200).unwrap();
        assert_eq!(s.watermark().unwrap(), Some(200));
        assert_eq!(s.delivered(&q, &d).unwrap(), Some(0));
        s.ack(&q, &[1], 1).unwrap();
        assert_eq!(s.delivered(&q, &d).unwrap(), Some(100));
        s.ack(&q, &[2], 1).unwrap();
        assert_eq!(s.delivered(&q, &d).unwrap(), Some(200));
        s.set_watermark(250).unwrap();
        assert_eq!(s.delivered(&q, &d).unwrap(), Some(250));
    }

    #[test]
    fn a_checkpoint_completes_once_delivered_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Store::open(dir.path()).unwrap();
            s.request_checkpoint(b"d", 150).unwrap();
            assert_eq!(s.settle_checkpoint(b"d", Some(100)).unwrap(), None);
        }
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(s.checkpoints(b"d").pending, Some(150));
        assert_eq!(s.settle_checkpoint(b"d", Some(150)).unwrap(), Some(150));
        let c = s.checkpoints(b"d");
        assert_eq!(c.pending, None);
        assert_eq!(c.done.map(|d| d.0), Some(150));
    }
}
