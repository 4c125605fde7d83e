//! The outbox: the durable store and the workers that drain it, started
//! together and stopped together. The daemon's main loop commits into it
//! and reads its figures; nothing else writes to the queues.
//!
//! sled 0.34 cannot survive running out of space: after an I/O error its
//! handle fails every later call, and dropping it (or even flushing it) can
//! block forever waiting for a write that will never complete. So the
//! store is never allowed to meet a full disk (every write checks the free
//! space first, see `Store::ensure_space`), and if one slips through anyway
//! (another process filled the disk between the check and the write) the
//! pipeline is abandoned, never dropped: the daemon waits for space and
//! then restarts itself in place (`daemon`), which reopens the store
//! cleanly and, since no clean-shutdown marker was written, reconciles with
//! a full sync.

use std::sync::Arc;

use crate::changeset::Changeset;
use crate::config::RunConfig;
use crate::deliver::worker;
use crate::error::{Error, Result};
use crate::observe::status::{Cmd, WorkerLink};
use crate::store::Store;

/// The store, its queues, and the workers draining them.
pub struct Outbox {
    store: Arc<Store>,
    queues: Vec<sled::Tree>,
    links: Vec<WorkerLink>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Outbox {
    /// Opens the store and its queues; workers start with
    /// [`Outbox::start_workers`]. Also returns whether the last stop was
    /// clean.
    pub fn open(cfg: &RunConfig) -> Result<(Outbox, bool)> {
        let mut store = Store::open(&cfg.state_dir)?;
        store.set_min_free(cfg.min_free);
        let store = Arc::new(store);
        let clean = store.was_clean()?;
        if let Some(old) = store.swap_source(&cfg.source.root)? {
            log::warn!(
                "this state directory replicated {} before, now {}; pending paths are read from \
                 the new source",
                old.display(),
                cfg.source.root.display()
            );
        }
        store.mark_running()?;
        let queues = cfg
            .dests
            .iter()
            .map(|d| store.queue(&d.dest.target))
            .collect::<Result<Vec<_>>>()?;
        Ok((
            Outbox {
                store,
                queues,
                links: Vec::new(),
                threads: Vec::new(),
            },
            clean,
        ))
    }

    /// The open store.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// The running workers.
    pub fn workers(&self) -> &[WorkerLink] {
        &self.links
    }

    /// Commits `cs` into every queue (one transaction, then a flush) and
    /// wakes the workers.
    pub fn commit(&self, cs: &Changeset, watermark: u64) -> Result<u64, crate::store::StoreError> {
        let seq = self.store.commit(&self.queues, cs, watermark)?;
        for w in &self.links {
            let _ = w.tx.send(Cmd::Wake);
        }
        Ok(seq)
    }

    /// Commits `cs` at start-up (a full sync, or what the restart scan
    /// found) with the new `watermark`; a failure is fatal, and `what`
    /// names the changeset in the error ("cannot commit a full sync into").
    pub fn commit_now(&self, cs: &Changeset, watermark: u64, what: &'static str) -> Result<u64> {
        let seq = self.commit(cs, watermark).map_err(|source| Error::Store {
            what,
            path: self.store.path().to_path_buf(),
            source,
            hint: "",
        })?;
        log::debug!(
            "committed changeset {seq}: {} entries, {} moves",
            cs.entries.len(),
            cs.moves.len()
        );
        Ok(seq)
    }

    /// Starts one worker per destination.
    pub fn start_workers(&mut self, cfg: &RunConfig) -> Result<()> {
        let source = Arc::new(cfg.source.clone());
        for d in &cfg.dests {
            let w = worker::spawn(
                d.clone(),
                source.clone(),
                self.store.clone(),
                cfg.workers.clone(),
            )?;
            self.links.push(w.link);
            self.threads.push(w.thread);
        }
        Ok(())
    }

    /// Stops every worker (ending a running rsync) and waits for them. What
    /// they were running stays queued.
    pub fn stop_workers(&mut self) {
        for w in self.links.drain(..) {
            let _ = w.tx.send(Cmd::Stop);
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
