//! The committer stage: a closed window becomes a durable changeset in every
//! destination's queue, or stays in memory until it can.
//!
//! Only after the pipeline's commit returned (one transaction over every
//! queue, then a flush) is the window cleared. A commit refused because the
//! state file system is (nearly) full keeps the window, logs once what
//! happened, and is retried every second while events keep joining the
//! window; when space returns the next attempt succeeds and the log says
//! so. A commit that sled itself failed leaves the store unusable in this
//! process (see `pipeline`): the committer reports it as poisoned and the
//! daemon restarts itself once there is space again. Nothing is
//! acknowledged that was not committed, because workers only ever see
//! committed changesets.

use std::time::{Duration, Instant};

use crate::aggregate::Aggregator;
use crate::changeset::escape;
use crate::deliver::outbox::Outbox;
use crate::store::{now_ms, StoreError};

const RETRY: Duration = Duration::from_secs(1);

/// The commit policy, its memory of failures, and the watermark.
#[derive(Debug, Default)]
pub struct Committer {
    failing_since: Option<Instant>,
    retry_at: Option<Instant>,
    /// sled failed a write: the store must not be touched again.
    poisoned: bool,
    lost_on_exit: bool,
    /// The watermark of the last commit (Unix ms), 0 before the first.
    watermark: u64,
}

/// How a window is committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// Files still open for writing stay held (a closing window).
    Hold,
    /// Everything goes, open files as they are (a stop).
    All,
}

impl Committer {
    /// A committer that continues from the store's watermark `watermark`
    /// (0 when there is none).
    pub fn new(watermark: u64) -> Committer {
        Committer {
            watermark,
            ..Committer::default()
        }
    }

    /// When the next attempt after a failure may run.
    pub fn retry_at(&self) -> Option<Instant> {
        self.retry_at
    }

    /// Whether a commit may be attempted now.
    pub fn may_try(&self, now: Instant) -> bool {
        self.retry_at.is_none_or(|t| now >= t)
    }

    /// Whether sled failed a write, so the store is unusable in this
    /// process.
    pub fn poisoned(&self) -> bool {
        self.poisoned
    }

    /// The watermark of the last commit.
    pub fn watermark(&self) -> u64 {
        self.watermark
    }

    /// Schedules the next look after a failure.
    pub fn postpone(&mut self) {
        self.failing_since.get_or_insert_with(Instant::now);
        self.retry_at = Some(Instant::now() + RETRY);
    }

    /// Commits the window; on success clears it, on failure keeps it and
    /// schedules a retry. `settled_ms` is when the intake last knew every
    /// event: every change made before it is in the window, so it becomes
    /// the watermark, unless a file held open since earlier keeps it back.
    /// Returns whether it was committed.
    pub fn commit_window(
        &mut self,
        outbox: &Outbox,
        window: &mut Aggregator,
        settled_ms: u64,
        release: Release,
    ) -> bool {
        if self.poisoned {
            self.postpone();
            return false;
        }
        let now = Instant::now();
        let mut cs = match release {
            Release::Hold => window.changeset(now_ms(), now),
            Release::All => window.changeset_all(now_ms()),
        };
        cs.since_ms = self.watermark;
        let held = window.oldest_held().map(|t| wall_ms(t, now));
        let watermark = held.map_or(settled_ms, |h| h.min(settled_ms));
        if cs.is_empty() {
            return match self.advance(outbox, watermark) {
                true => {
                    window.clear(now);
                    true
                }
                false => false,
            };
        }
        let started = Instant::now();
        match outbox.commit(&cs, watermark) {
            Ok(seq) => {
                window.clear(now);
                self.watermark = watermark;
                self.recovered();
                log::debug!(
                    "committed changeset {seq}: {} entries, {} moves (first {}) in {:.2} ms",
                    cs.entries.len(),
                    cs.moves.len(),
                    cs.entries
                        .first()
                        .map_or_else(String::new, |e| escape(&e.path)),
                    started.elapsed().as_secs_f64() * 1e3
                );
                true
            }
            Err(e) => {
                self.failed(outbox, &e, cs.entries.len());
                false
            }
        }
    }

    /// Moves the watermark forward to `ms` without a changeset (nothing
    /// changed since the last commit but time). Returns whether it is
    /// stored.
    pub fn advance(&mut self, outbox: &Outbox, ms: u64) -> bool {
        if self.poisoned {
            return false;
        }
        if ms <= self.watermark {
            return true;
        }
        match outbox.store().set_watermark(ms) {
            Ok(()) => {
                self.watermark = ms;
                true
            }
            Err(e) => {
                log::warn!("{e}");
                self.postpone();
                false
            }
        }
    }

    fn recovered(&mut self) {
        if let Some(since) = self.failing_since.take() {
            log::warn!(
                "commits work again after {:.0}s; the changes held in memory are now queued",
                since.elapsed().as_secs_f64()
            );
        }
        self.retry_at = None;
    }

    fn failed(&mut self, outbox: &Outbox, e: &StoreError, entries: usize) {
        if e.is_fatal() {
            log::error!(
                "the queue store at {} failed a write: {e}; it cannot be used again in \
                 this process, so syncd keeps the changes in memory and restarts itself \
                 as soon as its file system has free space (the restart scan then covers \
                 them)",
                outbox.store().path().display()
            );
            self.poisoned = true;
        } else if self.failing_since.is_none() {
            log::error!(
                "cannot commit a changeset of {entries} entries: {e}; keeping it in memory, \
                 collecting new changes, and retrying every second"
            );
        }
        self.postpone();
    }

    /// Marks that the last window could not be committed before exit.
    pub fn lost_on_exit(&mut self, entries: usize) {
        log::error!(
            "could not commit the last window ({entries} entries) before exiting; the next start \
             runs a full sync instead"
        );
        self.lost_on_exit = true;
    }

    /// Whether every window was committed, so the shutdown is clean.
    pub fn all_committed(&self) -> bool {
        !self.lost_on_exit && !self.poisoned
    }
}

/// The wall-clock time (Unix ms) of the monotonic instant `t`, seen from
/// `now`.
pub fn wall_ms(t: Instant, now: Instant) -> u64 {
    now_ms().saturating_sub(now.saturating_duration_since(t).as_millis() as u64)
}
