//! Whether a directory moved within the tree kept complete watches, so the
//! watcher need not walk it again.
//!
//! notify re-keys the watches of a moved directory to its new path, but
//! only those it had when it read the rename: a directory whose walk was
//! still going on, or had not started (a `mkdir d; mv d e` seen as a whole
//! after the fact), moved with part of its watches or none. The watcher
//! tells the two cases apart by the order of the channel. Each walk, once
//! done, is given a mark: the number of events sent into the channel when
//! the next `update_paths` returned, which hands over every event the
//! kernel had queued until then (`Watch::flush_events`). A rename whose
//! `From` half has an index (its place in the channel) at or after the
//! mark of every walk at, above or below its path happened after those
//! walks: notify had their watches and moved them. Otherwise the moved
//! directory is walked again. A walk with no mark yet (no `update_paths`
//! since it ended) counts as unfinished. Marks are dropped once every
//! event before them was read, so only the walks of the last moments are
//! kept.

use std::collections::{BTreeMap, VecDeque};

use super::unwatched::at_or_below;

/// The walks whose marks still matter.
#[derive(Debug, Default)]
pub struct WalkMarks {
    /// Walks done since the last `update_paths`, by top (root-relative,
    /// empty for the root).
    unresolved: Vec<Vec<u8>>,
    /// Walks with their mark, the latest per top.
    recent: BTreeMap<Vec<u8>, u64>,
    /// The same, in the order of their marks (which never decrease).
    order: VecDeque<(u64, Vec<u8>)>,
}

impl WalkMarks {
    /// Notes a walk of `top` that just ended (or found nothing to walk).
    pub fn walked(&mut self, top: Vec<u8>) {
        self.unresolved.push(top);
    }

    /// The walks that ended before an `update_paths` that is about to
    /// start: they get the mark it gives ([`WalkMarks::resolve`]).
    pub fn take_unresolved(&mut self) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.unresolved)
    }

    /// Gives `walks` their `mark`: the events sent so far, once the
    /// `update_paths` that followed them returned.
    pub fn resolve(&mut self, walks: Vec<Vec<u8>>, mark: u64) {
        for top in walks {
            self.recent.insert(top.clone(), mark);
            self.order.push_back((mark, top));
        }
    }

    /// Drops the marks of walks before which every event is read.
    pub fn prune(&mut self, received: u64) {
        while let Some((mark, _)) = self.order.front() {
            if *mark > received {
                break;
            }
            let Some((mark, top)) = self.order.pop_front() else {
                break;
            };
            if self.recent.get(&top) == Some(&mark) {
                self.recent.remove(&top);
            }
        }
    }

    /// Whether a walk at, above or below `from` may not have been complete
    /// when the rename whose `From` half has index `index` was read.
    pub fn touches(&self, from: &[u8], index: u64) -> bool {
        let overlaps = |t: &[u8]| at_or_below(from, t) || at_or_below(t, from);
        if self.unresolved.iter().any(|t| overlaps(t)) {
            return true;
        }
        let after = |t: &[u8]| self.recent.get(t).is_some_and(|&m| m > index);
        // At or above: the root, each ancestor, `from` itself.
        let above = std::iter::once(0)
            .chain(
                from.iter()
                    .enumerate()
                    .filter(|(_, &b)| b == b'/')
                    .map(|(i, _)| i),
            )
            .chain(std::iter::once(from.len()));
        if above.map(|end| &from[..end]).any(after) {
            return true;
        }
        // Below: `from/...`, which sorts between `from/` and `from0`.
        let mut lo = from.to_vec();
        lo.push(b'/');
        let mut hi = from.to_vec();
        hi.push(b'/' + 1);
        self.recent.range(lo..hi).any(|(_, &m)| m > index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_move_after_every_overlapping_walk_needs_no_walk() {
        let mut m = WalkMarks::default();
        m.walked(Vec::new());
        assert!(m.touches(b"a", 100), "the root walk has no mark yet");
        let w = m.take_unresolved();
        m.resolve(w, 10);
        assert!(
            m.touches(b"a", 9),
            "renamed before the start-up walk was over"
        );
        assert!(!m.touches(b"a", 10));
        m.walked(b"a/b/c".to_vec());
        m.walked(b"x".to_vec());
        let w = m.take_unresolved();
        m.resolve(w, 20);
        assert!(m.touches(b"a", 15), "a walk below it");
        assert!(m.touches(b"a/b/c/d", 15), "a walk above it");
        assert!(!m.touches(b"a/b-c", 15), "beside it");
        assert!(!m.touches(b"a/b/cd", 15));
        assert!(!m.touches(b"a", 20));
        m.prune(10);
        assert!(!m.touches(b"q", 5), "the root walk's mark is dropped");
        m.prune(20);
        assert!(!m.touches(b"a", 15));
        assert!(m.order.is_empty() && m.recent.is_empty());
    }
}
