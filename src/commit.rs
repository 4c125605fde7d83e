//! The committer stage: a closed window becomes a durable changeset in every
//! destination's queue, or stays in memory until it can.
//!
//! Only after [`Store::commit`] returned (one transaction over every queue,
//! then a flush) is the window cleared and are the workers woken. A commit
//! that fails, typically because the state directory's disk is full, keeps
//! the window, logs once what happened and retries every second while
//! events keep joining the window; when space returns the next attempt
//! succeeds and the log says so. Nothing is acknowledged that was not
//! committed, because workers only ever see committed changesets.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

use crate::aggregate::Aggregator;
use crate::changeset::{escape, Changeset};
use crate::error::{Error, Result};
use crate::store::{now_ms, Store};
use crate::worker::Cmd;

const RETRY: Duration = Duration::from_secs(1);

/// Commits windows and remembers whether the last attempt failed.
pub struct Committer {
    store: Arc<Store>,
    queues: Vec<sled::Tree>,
    wakers: Vec<Sender<Cmd>>,
    failing_since: Option<Instant>,
    retry_at: Option<Instant>,
    lost_on_exit: bool,
}

impl Committer {
    pub fn new(store: Arc<Store>, queues: Vec<sled::Tree>) -> Committer {
        Committer {
            store,
            queues,
            wakers: Vec::new(),
            failing_since: None,
            retry_at: None,
            lost_on_exit: false,
        }
    }

    /// The workers to wake after each commit.
    pub fn set_wakers(&mut self, wakers: Vec<Sender<Cmd>>) {
        self.wakers = wakers;
    }

    /// When the next attempt after a failure may run.
    pub fn retry_at(&self) -> Option<Instant> {
        self.retry_at
    }

    /// Whether a commit may be attempted now.
    pub fn may_try(&self, now: Instant) -> bool {
        self.retry_at.is_none_or(|t| now >= t)
    }

    /// Commits one changeset at start-up, where a failure is fatal.
    pub fn commit_now(&mut self, cs: &Changeset) -> Result<u64> {
        let seq = self
            .store
            .commit(&self.queues, cs)
            .map_err(|e| Error::Store {
                path: self.store.path().to_path_buf(),
                reason: format!("cannot commit: {e}"),
                hint: "",
            })?;
        self.wake();
        Ok(seq)
    }

    /// Commits the window; on success clears it and wakes the workers, on
    /// failure keeps it and schedules a retry.
    pub fn commit_window(&mut self, window: &mut Aggregator) -> bool {
        let cs = window.changeset(now_ms());
        if cs.entries.is_empty() {
            window.clear();
            return true;
        }
        let started = Instant::now();
        match self.store.commit(&self.queues, &cs) {
            Ok(seq) => {
                window.clear();
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
                self.wake();
                true
            }
            Err(e) => {
                if self.failing_since.is_none() {
                    log::error!(
                        "cannot commit a changeset of {} entries to {}: {e}; keeping it in \
                         memory, collecting new changes, and retrying every second",
                        cs.entries.len(),
                        self.store.path().display()
                    );
                    self.failing_since = Some(Instant::now());
                }
                self.retry_at = Some(Instant::now() + RETRY);
                false
            }
        }
    }

    /// Tries for a few seconds to commit the window at shutdown.
    pub fn flush_on_exit(&mut self, window: &mut Aggregator) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if self.commit_window(window) {
                return;
            }
            if Instant::now() >= deadline {
                log::error!(
                    "could not commit the last window ({} entries) before exiting; the next start \
                     runs a full sync instead",
                    window.len()
                );
                self.lost_on_exit = true;
                return;
            }
            std::thread::sleep(RETRY);
        }
    }

    /// Whether every window was committed, so the shutdown is clean.
    pub fn all_committed(&self) -> bool {
        !self.lost_on_exit
    }

    fn wake(&self) {
        for w in &self.wakers {
            let _ = w.send(Cmd::Wake);
        }
    }
}
