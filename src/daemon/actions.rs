//! What the running daemon does when asked over the control socket:
//! checkpoints, and syncs now (`syncd checkpoint`, `syncd sync`).
//!
//! Both act on the main loop, which owns the window and the committer:
//! each settles the intake (every event so far is in the window), commits
//! the window now instead of at its deadline, and then records the
//! checkpoint or queues the full sync.

use std::os::unix::ffi::OsStrExt;

use super::Daemon;
use crate::changeset::{Changeset, Entry};
use crate::commit::Release;
use crate::error::{Error, Result};
use crate::observe::control::ops::select;
use crate::observe::control::protocol::{CheckpointTaken, Reply, SyncQueued};
use crate::observe::status::Cmd;
use crate::store::now_ms;

impl Daemon {
    /// Commits the window now, whether or not its time is up. Fails when
    /// the store cannot take it (the change stays in memory, as always).
    fn commit_now(&mut self) -> Result<()> {
        if self.committer.poisoned() {
            return Err(Error::Control(
                "the queue store failed a write; syncd restarts itself once there is free space"
                    .into(),
            ));
        }
        let settled = self.intake.settle(&self.fs_rx)?;
        let window = &mut self.intake.window;
        if !self
            .committer
            .commit_window(&self.outbox, window, settled, Release::Hold)
        {
            return Err(Error::Control(
                "cannot commit the open window now (see the log); it stays in memory and is \
                 retried"
                    .into(),
            ));
        }
        self.intake.committed_until(self.committer.watermark());
        Ok(())
    }

    /// `syncd checkpoint`: takes T = now, commits the window, and records a
    /// pending checkpoint at T on every destination `dest` names, settling
    /// at once those that already have everything.
    pub(super) fn checkpoint(&mut self, dest: Option<&str>) -> Result<Reply> {
        let at = now_ms();
        let picked: Vec<_> = select(&self.cfg.dests, dest)?
            .into_iter()
            .cloned()
            .collect();
        self.commit_now()?;
        let store = self.outbox.store().clone();
        let mut names = Vec::new();
        for d in picked {
            let target = d.dest.target.as_os_str();
            store.request_checkpoint(target.as_bytes(), at)?;
            let delivered = store.delivered(&store.queue(target)?, &store.dead(target)?)?;
            if store
                .settle_checkpoint(target.as_bytes(), delivered)?
                .is_some()
            {
                log::info!("[{}] checkpoint complete at once", d.dest.name);
            }
            names.push(d.dest.name.clone());
        }
        log::info!(
            "checkpoint {} taken on {}",
            crate::observe::logger::utc_iso(at / 1000),
            names.join(", ")
        );
        Ok(Reply::Checkpoint(CheckpointTaken {
            at_unix_ms: at,
            destinations: names,
        }))
    }

    /// `syncd sync`: commits the window now; with `full`, queues a full
    /// sync of the whole tree for every destination `dest` names.
    pub(super) fn sync(&mut self, dest: Option<&str>, full: bool) -> Result<Reply> {
        let picked: Vec<_> = select(&self.cfg.dests, dest)?
            .into_iter()
            .cloned()
            .collect();
        if full && dest.is_none() {
            log::info!("asked for a full sync of every destination");
            self.intake.full_sync();
        }
        self.commit_now()?;
        if full && dest.is_some() {
            let store = self.outbox.store().clone();
            let cs = Changeset {
                since_ms: self.committer.watermark(),
                ..Changeset::new(now_ms(), vec![Entry::full()])
            };
            for d in &picked {
                log::info!("[{}] asked for a full sync", d.dest.name);
                let q = store.queue(&d.dest.target)?;
                store
                    .commit(&[q], &cs, self.committer.watermark())
                    .map_err(|source| Error::Store {
                        what: "cannot commit a full sync into",
                        path: store.path().to_path_buf(),
                        source,
                        hint: "",
                    })?;
            }
            for w in self.outbox.workers() {
                let _ = w.tx.send(Cmd::Wake);
            }
        }
        Ok(Reply::Synced(SyncQueued {
            full,
            destinations: picked.iter().map(|d| d.dest.name.clone()).collect(),
        }))
    }
}
