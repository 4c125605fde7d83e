//! The aggregator stage: the time window that collects entries, and when it
//! closes.
//!
//! A window opens with the first entry after the last commit and closes
//! `--delay` seconds later (a fixed window, as pylsyncd's, so one busy file
//! cannot postpone replication forever), or early once it holds more than
//! the size cap after optimizing. The entries are kept until the committer
//! says the changeset is on disk: a failed commit (a full disk) leaves the
//! window intact, and new events keep joining it. The window compacts
//! itself with the optimizer as it grows, so a flood of events on a few
//! files costs memory for the few files, not for the events.

use std::time::{Duration, Instant};

use crate::changeset::{Changeset, Entry};
use crate::optimize::optimize;

/// The open window.
pub struct Aggregator {
    delay: Duration,
    cap: usize,
    full_threshold: usize,
    entries: Vec<Entry>,
    /// Length after the last compaction; the next one runs at twice this.
    compacted: usize,
    opened: Option<Instant>,
}

impl Aggregator {
    /// A window of `delay` that closes early past `cap` optimized entries;
    /// `full_threshold` is passed to the optimizer.
    pub fn new(delay: Duration, cap: usize, full_threshold: usize) -> Aggregator {
        Aggregator {
            delay,
            cap,
            full_threshold,
            entries: Vec::new(),
            compacted: 0,
            opened: None,
        }
    }

    /// Adds one entry, opening the window if it was closed.
    pub fn add(&mut self, e: Entry, now: Instant) {
        self.opened.get_or_insert(now);
        self.entries.push(e);
        if self.entries.len() >= 2 * self.compacted.max(4096) {
            self.compact();
        }
    }

    fn compact(&mut self) {
        let v = std::mem::take(&mut self.entries);
        self.entries = optimize(v, self.full_threshold);
        self.compacted = self.entries.len();
    }

    /// Whether the window holds anything.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// When the window closes by time, if it is open.
    pub fn deadline(&self) -> Option<Instant> {
        self.opened.map(|t| t + self.delay)
    }

    /// Whether the window must be committed now: its time is up, or it
    /// holds more than the cap after compaction.
    pub fn due(&mut self, now: Instant) -> bool {
        if self.entries.is_empty() {
            return false;
        }
        if self.deadline().is_some_and(|d| now >= d) {
            return true;
        }
        if self.entries.len() > self.cap {
            self.compact();
            return self.entries.len() > self.cap;
        }
        false
    }

    /// The optimized changeset of the window. The window is not cleared:
    /// call [`Aggregator::clear`] once the changeset is committed.
    pub fn changeset(&mut self, created_ms: u64) -> Changeset {
        self.compact();
        Changeset {
            created_ms,
            entries: self.entries.clone(),
        }
    }

    /// Forgets the window after a successful commit.
    pub fn clear(&mut self) {
        self.entries.clear();
        self.compacted = 0;
        self.opened = None;
    }

    /// The number of entries held (before the last optimization).
    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::changeset::Kind;

    fn f(p: &str) -> Entry {
        Entry::new(Kind::File, p.as_bytes())
    }

    #[test]
    fn window_closes_after_the_delay_from_the_first_entry() {
        let t0 = Instant::now();
        let mut a = Aggregator::new(Duration::from_secs(10), 1000, 1_000_000);
        assert!(!a.due(t0) && a.deadline().is_none());
        a.add(f("a"), t0);
        a.add(f("b"), t0 + Duration::from_secs(9));
        assert!(!a.due(t0 + Duration::from_secs(9)));
        assert!(a.due(t0 + Duration::from_secs(10)));
        let cs = a.changeset(7);
        assert_eq!(cs.entries, vec![f("a"), f("b")]);
        assert!(!a.is_empty(), "kept until the commit succeeds");
        a.clear();
        assert!(a.is_empty() && a.deadline().is_none());
    }

    #[test]
    fn a_failed_commit_keeps_the_window_and_new_entries_join_it() {
        let t0 = Instant::now();
        let mut a = Aggregator::new(Duration::from_secs(1), 1000, 1_000_000);
        a.add(f("a"), t0);
        let _ = a.changeset(1); // the commit fails: no clear()
        a.add(f("b"), t0 + Duration::from_secs(5));
        assert_eq!(a.changeset(2).entries, vec![f("a"), f("b")]);
    }

    #[test]
    fn early_flush_past_the_cap_counts_distinct_paths() {
        let t0 = Instant::now();
        let mut a = Aggregator::new(Duration::from_secs(60), 100, 1_000_000);
        for _ in 0..10_000 {
            a.add(f("hot"), t0);
        }
        assert!(!a.due(t0), "one hot file is one entry");
        for i in 0..101 {
            a.add(f(&format!("f{i}")), t0);
        }
        assert!(a.due(t0));
    }
}
