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
use crate::store::now_ms;

const RETRY: Duration = Duration::from_secs(1);

/// The commit policy and its memory of failures.
#[derive(Debug, Default)]
pub struct Committer {
    failing_since: Option<Instant>,
    retry_at: Option<Instant>,
    /// sled failed a write: the store must not be touched again.
    poisoned: bool,
    lost_on_exit: bool,
}

impl Committer {
    pub fn new() -> Committer {
        Committer::default()
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

    /// Schedules the next look after a failure.
    pub fn postpone(&mut self) {
        self.failing_since.get_or_insert_with(Instant::now);
        self.retry_at = Some(Instant::now() + RETRY);
    }

    /// Commits the window; on success clears it, on failure keeps it and
    /// schedules a retry. Returns whether it was committed.
    pub fn commit_window(&mut self, outbox: &Outbox, window: &mut Aggregator) -> bool {
        if self.poisoned {
            self.postpone();
            return false;
        }
        let now = Instant::now();
        let cs = window.changeset(now_ms(), now);
        if cs.entries.is_empty() {
            window.clear(now);
            return true;
        }
        let started = Instant::now();
        match outbox.commit(&cs) {
            Ok(seq) => {
                window.clear(now);
                if let Some(since) = self.failing_since.take() {
                    log::warn!(
                        "commits work again after {:.0}s; the changes held in memory are now queued",
                        since.elapsed().as_secs_f64()
                    );
                }
                self.retry_at = None;
                log::debug!(
                    "committed changeset {seq}: {} entries (first {}) in {:.2} ms",
                    cs.entries.len(),
                    escape(&cs.entries[0].path),
                    started.elapsed().as_secs_f64() * 1e3
                );
                true
            }
            Err(e) => {
                if e.is_fatal() {
                    log::error!(
                        "the queue store at {} failed a write: {e}; it cannot be used again in \
                         this process, so syncd keeps the changes in memory and restarts itself \
                         as soon as its file system has free space (a full sync then covers \
                         them)",
                        outbox.store().path().display()
                    );
                    self.poisoned = true;
                } else if self.failing_since.is_none() {
                    log::error!(
                        "cannot commit a changeset of {} entries: {e}; keeping it in memory, \
                         collecting new changes, and retrying every second",
                        cs.entries.len()
                    );
                }
                self.postpone();
                false
            }
        }
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
