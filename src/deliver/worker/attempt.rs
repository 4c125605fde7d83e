//! One attempt at a batch: the plan of the pending changesets against the
//! live source, the moves replayed on the destination, the empty-source
//! guard before a full sync, then rsync's runs, with a stall watchdog and a
//! full sync's progress published and logged. What the outcome means for
//! the queue (ack, back off, bury) is the worker loop's (`mod.rs`).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::TryRecvError;

use super::{Stopped, Worker};
use crate::changeset::Op;
use crate::config::location::Place;
use crate::deliver::classify::{lstat, RootGone};
use crate::deliver::plan::plan;
use crate::deliver::replay::Replayed;
use crate::deliver::rsync::progress::Tracker;
use crate::deliver::rsync::stall::StallWatch;
use crate::deliver::rsync::{self, Class, Control, Outcome, Run};
use crate::observe::status::Cmd;

impl Worker {
    /// Plans and runs rsync for the `raw` entries of the pending
    /// changesets; `Ok(None)` on success.
    pub(super) fn sync(&self, raw: Vec<Op>, seqs: &[u64]) -> Result<Option<Outcome>, Stopped> {
        let f = &self.settings.filter;
        let planned = plan(
            raw,
            |p| lstat(&self.source, p),
            |p, d| f.excluded(p, d),
            self.settings.full_threshold,
        );
        let mut plan = match planned {
            Ok(p) => p,
            Err(RootGone) => return Ok(Some(self.root_gone())),
        };
        let target = self.target();
        let first = seqs.first().copied().unwrap_or(0);
        let again = !plan.moves.is_empty()
            && self
                .store
                .moves_replayed(&target)
                .is_some_and(|through| first <= through);
        let can_rename = self.cfg.rsync.moves
            && matches!(
                self.cfg.dest.place,
                Place::Local { .. } | Place::Shell { .. }
            );
        let recorded = || {
            let last = seqs.last().copied().unwrap_or(0);
            match self.store.set_moves_replayed(&target, last) {
                Ok(()) => None,
                Err(e) => Some(format!("the replay could not be recorded: {e}")),
            }
        };
        let unsafe_to_replay = if again {
            plan.distrust_moves = true;
            Some(
                "they may have been replayed before, by an attempt that did not finish (a \
                 failed run, or a stop): their new names are sent and compared by content"
                    .to_string(),
            )
        } else if can_rename && !plan.moves.is_empty() {
            recorded()
        } else {
            None
        };
        let replayed = if let Some(why) = unsafe_to_replay {
            Replayed::all_fall_back(&plan.moves, &why)
        } else {
            let mut stop = false;
            let mut r = self.replayer.borrow_mut();
            let replayed = r.replay(&self.cfg.dest, &self.cfg.rsync, &self.source, &plan, || {
                stop |= matches!(
                    self.rx.try_recv(),
                    Ok(Cmd::Stop) | Err(TryRecvError::Disconnected)
                );
                stop
            });
            if stop {
                return Err(Stopped);
            }
            replayed
        };
        if !plan.moves.is_empty() {
            log::info!(
                "[{}] replayed {} of {} moves on the destination{}",
                self.name(),
                replayed.done,
                plan.moves.len(),
                match replayed.why.first() {
                    Some(why) => format!(
                        "; {} sent as transfers ({why}{})",
                        replayed.fell_back.len(),
                        if replayed.why.len() > 1 { ", ..." } else { "" }
                    ),
                    None => String::new(),
                }
            );
        }
        if matches!(self.cfg.dest.place, Place::Daemon { .. }) {
            plan.fuzzy_first(&replayed.fell_back, |p| lstat(&self.source, p));
        }
        if plan
            .check_moves(|p| lstat(&self.source, p), |p, d| f.excluded(p, d))
            .is_err()
        {
            return Ok(Some(self.root_gone()));
        }
        let full = plan.is_full();
        if full && !self.settings.allow_empty_source {
            if let Some(why) = self.guard()? {
                log::error!("[{}] {why}", self.name());
                return Ok(Some(Outcome {
                    code: None,
                    class: Class::Retry,
                    summary: why,
                    elapsed: Duration::ZERO,
                }));
            }
        }
        let started = Instant::now();
        let mut sent = 0u64;
        for (run, list) in plan.runs() {
            let progress = full && run == Run::Trees;
            let args = rsync::argv(run, &self.source, &self.cfg.dest, &self.cfg.rsync, progress);
            let input = rsync::list(&self.source, &list);
            log::debug!(
                "[{}] running rsync {:?} with {} entries",
                self.name(),
                args,
                list.len()
            );
            let mut stop = false;
            let limit = self.cfg.rsync.watchdog_s;
            let mut dog = StallWatch::new((limit > 0).then(|| Duration::from_secs(limit.into())));
            let tracker = Arc::new(Mutex::new(Tracker::new(Instant::now())));
            let t = tracker.clone();
            let io = rsync::Io {
                stdout: Box::new(move |line| {
                    if let Ok(mut t) = t.lock() {
                        t.line(line, Instant::now());
                    }
                }),
                ..rsync::Io::logged(self.name())
            };
            let mut shown = ProgressLog::new(progress);
            let out = rsync::run(&self.cfg.rsync.program, &args, input, io, |pid| {
                shown.tick(self, &tracker);
                match self.rx.try_recv() {
                    Ok(Cmd::Stop) | Err(TryRecvError::Disconnected) => {
                        stop = true;
                        Control::Abort("syncd is stopping".into())
                    }
                    _ => match dog.check(pid) {
                        Some(why) => Control::Abort(why),
                        None => Control::Continue,
                    },
                }
            });
            let bytes = tracker.lock().ok().and_then(|t| t.stats().bytes_sent);
            sent += bytes.unwrap_or(0);
            self.update(|l| {
                l.progress = None;
                l.counters.bytes_sent += bytes.unwrap_or(0);
            });
            if stop {
                return Err(Stopped);
            }
            if out.class != Class::Success && crate::deliver::rsync::ssh::link_suspect(&out) {
                crate::deliver::rsync::ssh::close_master(&self.cfg.dest, &self.cfg.rsync);
            }
            if out.code == Some(24) {
                log::warn!("[{}] some source files vanished during the run (rsync 24); their own events sync them", self.name());
            }
            if out.class != Class::Success {
                return Ok(Some(out));
            }
        }
        log::info!(
            "[{}] synced {} entries ({}) in {:.2}s, {} sent",
            self.name(),
            plan.entries.len(),
            plan.tally(),
            started.elapsed().as_secs_f64(),
            crate::observe::status::bytes(sent)
        );
        Ok(None)
    }

    /// The outcome of a run refused because the source root is not a
    /// directory.
    pub(super) fn root_gone(&self) -> Outcome {
        Outcome {
            code: None,
            class: Class::Retry,
            summary: format!(
                "the source {} is not a directory; not syncing, since that would empty the mirror",
                self.source.root.display()
            ),
            elapsed: Duration::ZERO,
        }
    }

    /// The empty-source guard before a full sync: why it must not run.
    /// `Err` when the worker is told to stop meanwhile.
    pub(super) fn guard(&self) -> Result<Option<String>, Stopped> {
        let mut stop = false;
        let why = crate::deliver::guard::before_full_sync(
            &self.cfg,
            &self.source,
            &self.settings.filter,
            || {
                stop |= matches!(
                    self.rx.try_recv(),
                    Ok(Cmd::Stop) | Err(TryRecvError::Disconnected)
                );
                stop
            },
        );
        if stop {
            return Err(Stopped);
        }
        Ok(why)
    }
}

/// How often a full sync's progress is logged.
const PROGRESS_LOG_EVERY: Duration = Duration::from_secs(10);

/// Publishes a full sync's progress into [`Live`] on every poll, and logs
/// it every [`PROGRESS_LOG_EVERY`].
struct ProgressLog {
    on: bool,
    next_log: Instant,
}

impl ProgressLog {
    fn new(on: bool) -> ProgressLog {
        ProgressLog {
            on,
            next_log: Instant::now() + PROGRESS_LOG_EVERY,
        }
    }

    fn tick(&mut self, w: &Worker, tracker: &Mutex<Tracker>) {
        if !self.on {
            return;
        }
        let now = Instant::now();
        let Some(p) = tracker.lock().ok().map(|t| t.progress(now)) else {
            return;
        };
        if now >= self.next_log {
            log::info!("[{}] full sync: {}", w.name(), p.describe());
            self.next_log = now + PROGRESS_LOG_EVERY;
        }
        w.update(|l| l.progress = Some(p));
    }
}
