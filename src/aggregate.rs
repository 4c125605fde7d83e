//! The aggregator stage: the time window that collects entries, and when it
//! closes.
//!
//! A window opens with the first entry after the last commit and closes
//! `--delay` seconds later (a fixed window, as pylsyncd's, so one busy file
//! cannot postpone replication forever), or early once it holds more than
//! the size cap after optimizing. The entries are kept until the committer
//! says the changeset is on disk: a failed commit (a full disk) leaves the
//! window intact, and new events keep joining it. The window compacts itself
//! with the optimizer as it grows, so a flood of events on a few files costs
//! memory for the few files, not for the events.
//!
//! A file that is still open for writing (created or written, and not yet
//! closed) is held back from the changeset, so a half-written file is not
//! shipped as if it were done; it goes out with the window in which its
//! writer closes it. A file that stays open (a log, a database) is shipped
//! anyway once it has been held for `hold` (`--hold-open`), and again every
//! `hold` while it stays open.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use crate::changeset::{Changeset, Entry, Kind, Move, Op};
use crate::optimize::{compose, keep_named};

/// The open window.
pub struct Aggregator {
    delay: Duration,
    cap: usize,
    full_threshold: usize,
    hold: Duration,
    /// What the window saw, in order; after a compaction, its moves and
    /// then its canonical entries.
    ops: Vec<Op>,
    /// Length after the last compaction; the next one runs at twice this.
    compacted: usize,
    opened: Option<Instant>,
    /// Files being written, with when they were first seen open (or last
    /// shipped while open).
    open: HashMap<Vec<u8>, Instant>,
    /// Files written by someone syncd did not see open them (a writer from
    /// before the watch, or `truncate(2)` by path, which opens nothing),
    /// with when: held only if [`Aggregator::confirm_open`] finds them
    /// open for writing.
    unsure: HashMap<Vec<u8>, Instant>,
    /// Entries held back from the changeset being committed.
    held: Vec<Entry>,
    /// Paths deleted or moved away in this window.
    removed: HashSet<Vec<u8>>,
    /// Files named in this window where something was deleted or moved
    /// away before: below a directory made again, the destination may
    /// hold an old file of the same size and mtime, which the tree's quick
    /// check would keep, so these stay listed below their tree (and are
    /// sent with `--ignore-times`). Other files below a tree are new: the
    /// tree sends them, and listing them again would cost a second pass.
    at_risk: HashSet<Vec<u8>>,
}

impl Aggregator {
    /// A window of `delay` that closes early past `cap` optimized entries;
    /// `full_threshold` is passed to the optimizer; files open for writing
    /// are held at most `hold`.
    pub fn new(delay: Duration, cap: usize, full_threshold: usize, hold: Duration) -> Aggregator {
        Aggregator {
            delay,
            cap,
            full_threshold,
            hold,
            ops: Vec::new(),
            compacted: 0,
            opened: None,
            open: HashMap::new(),
            unsure: HashMap::new(),
            held: Vec::new(),
            removed: HashSet::new(),
            at_risk: HashSet::new(),
        }
    }

    /// Adds one entry, opening the window if it was closed.
    pub fn add(&mut self, e: Entry, now: Instant) {
        match e.kind {
            Kind::Gone => {
                self.removed.insert(e.path.clone());
            }
            Kind::File if self.was_removed(&e.path) => {
                self.at_risk.insert(e.path.clone());
            }
            _ => {}
        }
        self.push(Op::Entry(e), now);
    }

    /// Whether `p` or a directory above it was deleted or moved away in
    /// this window.
    fn was_removed(&self, p: &[u8]) -> bool {
        if self.removed.is_empty() {
            return false;
        }
        let ends = p
            .iter()
            .enumerate()
            .filter(|(_, &b)| b == b'/')
            .map(|(i, _)| i);
        ends.chain(std::iter::once(p.len()))
            .any(|i| self.removed.contains(&p[..i]))
    }

    /// Adds a move (a rename seen whole), opening the window if it was
    /// closed.
    pub fn moved(&mut self, m: Move, now: Instant) {
        self.removed.insert(m.from.clone());
        self.push(Op::Move(m), now);
    }

    /// Opens the window without adding anything: something is known to
    /// come (the second half of a rename), and the window's close settles
    /// it.
    pub fn touch(&mut self, now: Instant) {
        self.opened.get_or_insert(now);
    }

    fn push(&mut self, op: Op, now: Instant) {
        self.opened.get_or_insert(now);
        self.ops.push(op);
        if self.ops.len() >= 2 * self.compacted.max(4096) {
            self.compact();
        }
    }

    /// Notes that a writer has `path` open (it was created or written).
    pub fn writing(&mut self, path: &[u8], now: Instant) {
        self.open.entry(path.to_vec()).or_insert(now);
    }

    /// Notes that `path` was written by a writer syncd did not see open
    /// it: it is held only if [`Aggregator::confirm_open`] says it is open.
    pub fn modified(&mut self, path: &[u8], now: Instant) {
        if !self.open.contains_key(path) {
            self.unsure.entry(path.to_vec()).or_insert(now);
        }
    }

    /// Asks `open_for_writing` which of the files written without a seen
    /// open are open for writing now: those are held like files seen
    /// opened; the others (a `truncate(2)` by path, a writer that is done)
    /// are not held at all. Called before [`Aggregator::changeset`].
    pub fn confirm_open(
        &mut self,
        open_for_writing: impl FnOnce(&[Vec<u8>]) -> std::collections::HashSet<Vec<u8>>,
    ) {
        if self.unsure.is_empty() {
            return;
        }
        let paths: Vec<Vec<u8>> = self.unsure.keys().cloned().collect();
        let writing = open_for_writing(&paths);
        for (p, since) in self.unsure.drain() {
            if writing.contains(&p) {
                self.open.entry(p).or_insert(since);
            }
        }
    }

    /// Notes that `path` is no longer being written (closed after writing,
    /// renamed or removed).
    pub fn closed(&mut self, path: &[u8]) {
        self.unsure.remove(path);
        if self.open.remove(path).is_none() && !path.is_empty() && !self.open.is_empty() {
            // A directory renamed or removed takes the files open below it
            // along; their closes come under the new path, if at all.
            self.open
                .retain(|p, _| !crate::changeset::is_below(p, path));
        }
    }

    fn compact(&mut self) {
        let (moves, entries) = compose(std::mem::take(&mut self.ops), self.full_threshold);
        let at_risk = &self.at_risk;
        let entries = keep_named(entries, |e| at_risk.contains(&e.path));
        self.ops = moves.into_iter().map(Op::Move).collect();
        self.ops.extend(entries.into_iter().map(Op::Entry));
        self.compacted = self.ops.len();
    }

    /// The directories created (or moved in whole) in this window: its
    /// `Tree` entries but the root.
    pub fn new_trees(&self) -> Vec<Vec<u8>> {
        self.entries()
            .filter(|e| e.kind == Kind::Tree && !e.path.is_empty())
            .map(|e| e.path.clone())
            .collect()
    }

    /// The entries of the window (its moves aside).
    fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.ops.iter().filter_map(|op| match op {
            Op::Entry(e) => Some(e),
            Op::Move(_) => None,
        })
    }

    /// Whether the window holds anything.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// When the window closes by time, if it is open.
    pub fn deadline(&self) -> Option<Instant> {
        self.opened.map(|t| t + self.delay)
    }

    /// Whether the window must be committed now: its time is up, or it
    /// holds more than the cap after compaction.
    pub fn due(&mut self, now: Instant) -> bool {
        if self.ops.is_empty() && self.opened.is_none() {
            return false;
        }
        if self.deadline().is_some_and(|d| now >= d) {
            return true;
        }
        // Compact again only once the window grew by an eighth of the cap
        // since the last compaction: a window that stays just under the
        // cap would otherwise re-optimize tens of thousands of entries for
        // every event.
        if self.ops.len() > self.cap && self.ops.len() > self.compacted + self.cap / 8 {
            self.compact();
            // Held files do not count: they cannot be committed yet, and
            // counting them would leave a window of more open files than
            // the cap due again right after every commit (found by the
            // `optimize` fuzz target).
            let ready = self.entries().filter(|e| !self.is_held(e, now));
            return ready.count() > self.cap;
        }
        false
    }

    /// Whether `e` is held back at `now`: a file still open for writing,
    /// for less than `hold` so far.
    fn is_held(&self, e: &Entry, now: Instant) -> bool {
        e.kind == Kind::File
            && self
                .open
                .get(&e.path)
                .is_some_and(|since| now.saturating_duration_since(*since) < self.hold)
    }

    /// The optimized changeset of the window, without the files still open
    /// for writing. The window is not cleared: call [`Aggregator::clear`]
    /// once the changeset is committed.
    pub fn changeset(&mut self, created_ms: u64, now: Instant) -> Changeset {
        self.compact();
        let mut cs = Changeset::new(created_ms, Vec::with_capacity(self.ops.len()));
        self.held.clear();
        for op in &self.ops {
            match op {
                Op::Move(m) => cs.moves.push(m.clone()),
                Op::Entry(e) if self.is_held(e, now) => self.held.push(e.clone()),
                Op::Entry(e) => cs.entries.push(e.clone()),
            }
        }
        cs
    }

    /// The optimized changeset of the whole window, files still open for
    /// writing included, as they are now: what a stop commits, so it stays
    /// clean and a restart has nothing to guess.
    pub fn changeset_all(&mut self, created_ms: u64) -> Changeset {
        self.compact();
        self.held.clear();
        let mut cs = Changeset::new(created_ms, Vec::new());
        for op in &self.ops {
            match op {
                Op::Move(m) => cs.moves.push(m.clone()),
                Op::Entry(e) => cs.entries.push(e.clone()),
            }
        }
        cs
    }

    /// Since when the longest-held file of the last [`Aggregator::changeset`]
    /// has been held: its change is not committed, so the watermark must
    /// not pass it.
    pub fn oldest_held(&self) -> Option<Instant> {
        self.held
            .iter()
            .filter_map(|e| self.open.get(&e.path))
            .min()
            .copied()
    }

    /// Forgets the committed part of the window; held entries stay and open
    /// the next window. A file shipped while still open is held again for
    /// another `hold` from now.
    pub fn clear(&mut self, now: Instant) {
        for op in &self.ops {
            if let Op::Entry(e) = op {
                if let Some(since) = self.open.get_mut(&e.path) {
                    if now.saturating_duration_since(*since) >= self.hold {
                        *since = now;
                    }
                }
            }
        }
        let held: HashSet<&[u8]> = self.held.iter().map(|e| e.path.as_slice()).collect();
        self.at_risk.retain(|p| held.contains(p.as_slice()));
        self.removed.clear();
        self.ops = std::mem::take(&mut self.held)
            .into_iter()
            .map(Op::Entry)
            .collect();
        self.compacted = 0;
        self.opened = if self.ops.is_empty() { None } else { Some(now) };
    }

    /// The number of steps held (before the last optimization).
    pub fn len(&self) -> usize {
        self.ops.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOLD: Duration = Duration::from_secs(60);

    fn f(p: &str) -> Entry {
        Entry::new(Kind::File, p.as_bytes())
    }

    fn agg(delay: u64, cap: usize) -> Aggregator {
        Aggregator::new(Duration::from_secs(delay), cap, 1_000_000, HOLD)
    }

    #[test]
    fn window_closes_after_the_delay_from_the_first_entry() {
        let t0 = Instant::now();
        let mut a = agg(10, 1000);
        assert!(!a.due(t0) && a.deadline().is_none());
        a.add(f("a"), t0);
        a.add(f("b"), t0 + Duration::from_secs(9));
        assert!(!a.due(t0 + Duration::from_secs(9)));
        assert!(a.due(t0 + Duration::from_secs(10)));
        let cs = a.changeset(7, t0);
        assert_eq!(cs.entries, vec![f("a"), f("b")]);
        assert!(!a.is_empty(), "kept until the commit succeeds");
        a.clear(t0);
        assert!(a.is_empty() && a.deadline().is_none());
    }

    #[test]
    fn files_below_a_new_tree_are_listed_only_where_something_was_removed() {
        let t0 = Instant::now();
        let e = |k: Kind, p: &str| Entry::new(k, p.as_bytes());
        let mut a = agg(1, 1000);
        for x in [
            e(Kind::Gone, "d/f"),
            e(Kind::Gone, "d"),
            e(Kind::Tree, "d"),
            f("d/f"),
        ] {
            a.add(x, t0);
        }
        for x in [e(Kind::Tree, "n"), f("n/g")] {
            a.add(x, t0);
        }
        let want = vec![e(Kind::Tree, "d"), f("d/f"), e(Kind::Tree, "n")];
        assert_eq!(a.changeset(1, t0).entries, want);
        // Compacted twice, the same.
        assert_eq!(a.changeset(1, t0).entries, want);
        a.clear(t0);
        // A new window knows nothing removed.
        a.add(e(Kind::Tree, "d"), t0);
        a.add(f("d/f"), t0);
        assert_eq!(a.changeset(2, t0).entries, vec![e(Kind::Tree, "d")]);
    }

    #[test]
    fn a_failed_commit_keeps_the_window_and_new_entries_join_it() {
        let t0 = Instant::now();
        let mut a = agg(1, 1000);
        a.add(f("a"), t0);
        let _ = a.changeset(1, t0); // the commit fails: no clear()
        a.add(f("b"), t0 + Duration::from_secs(5));
        assert_eq!(a.changeset(2, t0).entries, vec![f("a"), f("b")]);
    }

    #[test]
    fn early_flush_past_the_cap_counts_distinct_paths() {
        let t0 = Instant::now();
        let mut a = agg(60, 100);
        for _ in 0..10_000 {
            a.add(f("hot"), t0);
        }
        assert!(!a.due(t0), "one hot file is one entry");
        for i in 0..101 {
            a.add(f(&format!("f{i}")), t0);
        }
        assert!(a.due(t0));
    }

    #[test]
    fn files_held_open_do_not_count_against_the_cap() {
        let t0 = Instant::now();
        let mut a = agg(60, 2);
        for p in ["a", "b", "c"] {
            a.writing(p.as_bytes(), t0);
            a.add(f(p), t0);
        }
        assert!(!a.due(t0), "nothing in the window can be committed yet");
        a.add(f("x"), t0);
        a.add(f("y"), t0);
        assert!(!a.due(t0), "two ready entries are within the cap");
        a.add(f("z"), t0);
        assert!(a.due(t0));
        assert_eq!(a.changeset(1, t0).entries, vec![f("x"), f("y"), f("z")]);
        a.clear(t0);
        assert_eq!(a.len(), 3, "the open files stay in the window");
        assert!(!a.due(t0), "not due again right after the commit");
    }

    #[test]
    fn a_file_open_for_writing_is_held_until_closed() {
        let t0 = Instant::now();
        let mut a = agg(1, 1000);
        a.add(f("done"), t0);
        a.add(f("writing"), t0);
        a.writing(b"writing", t0);
        let cs = a.changeset(1, t0 + Duration::from_secs(1));
        assert_eq!(cs.entries, vec![f("done")]);
        a.clear(t0 + Duration::from_secs(1));
        assert_eq!(
            a.deadline(),
            Some(t0 + Duration::from_secs(2)),
            "held entries open the next window"
        );
        a.closed(b"writing");
        let cs = a.changeset(2, t0 + Duration::from_secs(2));
        assert_eq!(cs.entries, vec![f("writing")]);
        a.clear(t0 + Duration::from_secs(2));
        assert!(a.is_empty());
    }

    #[test]
    fn a_file_that_stays_open_is_shipped_after_the_hold_and_held_again() {
        let t0 = Instant::now();
        let mut a = agg(1, 1000);
        a.add(f("log"), t0);
        a.writing(b"log", t0);
        assert!(a
            .changeset(1, t0 + Duration::from_secs(59))
            .entries
            .is_empty());
        a.clear(t0 + Duration::from_secs(59));
        let t1 = t0 + HOLD;
        assert_eq!(a.changeset(2, t1).entries, vec![f("log")]);
        a.clear(t1);
        a.add(f("log"), t1);
        assert!(
            a.changeset(3, t1 + Duration::from_secs(1))
                .entries
                .is_empty(),
            "held again"
        );
    }

    #[test]
    fn a_file_written_unseen_is_held_only_if_it_is_open_now() {
        let t0 = Instant::now();
        let mut a = agg(1, 1000);
        a.add(f("truncated"), t0);
        a.modified(b"truncated", t0);
        a.add(f("log"), t0);
        a.modified(b"log", t0);
        a.confirm_open(|paths| {
            assert_eq!(paths.len(), 2);
            [b"log".to_vec()].into_iter().collect()
        });
        let cs = a.changeset(1, t0 + Duration::from_secs(1));
        assert_eq!(cs.entries, vec![f("truncated")], "the log is held");
        a.clear(t0 + Duration::from_secs(1));
        a.closed(b"log");
        assert_eq!(a.changeset(2, t0).entries, vec![f("log")]);
    }

    #[test]
    fn a_stop_ships_open_files_and_the_oldest_hold_is_known() {
        let t0 = Instant::now();
        let mut a = agg(1, 1000);
        a.add(f("log"), t0);
        a.writing(b"log", t0);
        a.add(f("later"), t0);
        a.writing(b"later", t0 + Duration::from_secs(5));
        a.add(f("done"), t0);
        let cs = a.changeset(1, t0 + Duration::from_secs(10));
        assert_eq!(cs.entries, vec![f("done")]);
        assert_eq!(a.oldest_held(), Some(t0));
        let all = a.changeset_all(2);
        assert_eq!(all.entries, vec![f("done"), f("later"), f("log")]);
        assert_eq!(a.oldest_held(), None);
        a.clear(t0 + Duration::from_secs(10));
        assert!(a.is_empty());
    }

    #[test]
    fn a_directory_going_away_releases_the_files_open_below_it() {
        let t0 = Instant::now();
        let mut a = agg(1, 1000);
        a.add(f("d/log"), t0);
        a.writing(b"d/log", t0);
        a.add(f("other"), t0);
        a.writing(b"other", t0);
        a.closed(b"d");
        a.closed(b"");
        let cs = a.changeset(1, t0 + Duration::from_secs(1));
        assert_eq!(
            cs.entries,
            vec![f("d/log")],
            "other stays held; the root never releases all"
        );
    }
}
