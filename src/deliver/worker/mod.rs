//! The worker stage: one thread per destination that drains its queue
//! through rsync and acknowledges only what rsync delivered.
//!
//! A worker takes the oldest pending changesets (merging a backlog into one
//! batch, bounded by an entry budget) and makes one attempt at them
//! (`attempt.rs`: the plan against the live source, the moves replayed on
//! the destination, then rsync's runs). On success it removes exactly the
//! changesets it ran, in one batch; when the store refuses that ack (a full
//! state disk), it retries the ack, not the run, with the same backoff as a
//! failure. On failure nothing is removed: it backs off exponentially with
//! jitter up to a cap (retrying as soon as the destination's cheap probe
//! passes again, when that probe explained the failure: `probe`) and tries
//! again, forever, unless the failure is of a kind that cannot fix itself,
//! in which case the changesets move to the dead-letter tree after a few
//! attempts, loudly, so they neither vanish nor block the queue. A
//! destination that is down never slows the others: workers share nothing
//! but the store.

mod attempt;

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, TryRecvError};

use crate::changeset::{Entry, Op};
use crate::config::location::Source;
use crate::config::{DestConfig, WorkerSettings};
use crate::deliver::probe::{self, Probe, Step, Verdict, Wait};
use crate::deliver::replay::Replayer;
use crate::deliver::rsync::{Class, Outcome};
use crate::observe::status::{Cmd, Live, State, WorkerLink};
use crate::store::record::{DeadLetter, DestStatus};
use crate::store::{now_ms, Store};

/// A running worker: its link for the main loop and the control socket,
/// and its thread.
pub struct Handle {
    pub link: WorkerLink,
    pub thread: JoinHandle<()>,
}

/// Starts the worker thread of `cfg`.
pub fn spawn(
    cfg: DestConfig,
    source: Arc<Source>,
    store: Arc<Store>,
    settings: WorkerSettings,
) -> crate::error::Result<Handle> {
    let (tx, rx) = crossbeam_channel::unbounded();
    let target = cfg.dest.target.clone();
    let mut persisted = store.status(std::os::unix::ffi::OsStrExt::as_bytes(target.as_os_str()));
    persisted.name = cfg.dest.name.clone();
    let live = Arc::new(Mutex::new(Live {
        state: State::InSync,
        persisted,
        attempts: 0,
        counters: Default::default(),
        progress: None,
    }));
    let w = Worker {
        queue: store.queue(&target)?,
        dead: store.dead(&target)?,
        cfg,
        source,
        store,
        settings,
        live: live.clone(),
        rx,
        replayer: Default::default(),
        probe: std::cell::OnceCell::new(),
    };
    let name = w.cfg.dest.name.clone();
    let thread = std::thread::Builder::new()
        .name(format!("worker {name}"))
        .spawn(move || w.main())
        .map_err(|e| crate::error::Error::io("cannot start a worker thread for", &name, e))?;
    Ok(Handle {
        link: WorkerLink { name, live, tx },
        thread,
    })
}

struct Worker {
    cfg: DestConfig,
    source: Arc<Source>,
    store: Arc<Store>,
    queue: sled::Tree,
    dead: sled::Tree,
    settings: WorkerSettings,
    live: Arc<Mutex<Live>>,
    rx: Receiver<Cmd>,
    replayer: std::cell::RefCell<Replayer>,
    /// The destination's cheap check, found the first time a run fails
    /// (for ssh that runs `ssh -G`); `None` inside when there is none.
    probe: std::cell::OnceCell<Option<Probe>>,
}

/// Why the worker loop ends.
struct Stopped;

impl Worker {
    fn main(mut self) {
        crate::deliver::rsync::ssh::prepare(&self.cfg.dest, &mut self.cfg.rsync);
        let _ = self.run_loop();
        crate::deliver::rsync::ssh::close_master(&self.cfg.dest, &self.cfg.rsync);
        self.set_state(State::Stopped);
    }

    fn run_loop(&self) -> Result<(), Stopped> {
        loop {
            self.drain_wakes()?;
            let pending = match self.store.pending(&self.queue, self.settings.batch_entries) {
                Ok(p) => p,
                Err(e) => {
                    log::error!("[{}] cannot read the queue: {e}", self.name());
                    self.sleep(self.settings.backoff_max)?;
                    continue;
                }
            };
            if pending.is_empty() {
                self.set_state(State::InSync);
                match self.rx.recv() {
                    Ok(Cmd::Wake | Cmd::Retry) => continue,
                    Ok(Cmd::Stop) | Err(_) => return Err(Stopped),
                }
            }
            let seqs: Vec<u64> = pending.iter().map(|p| p.seq).collect();
            let mut raw: Vec<Op> = Vec::new();
            for p in &pending {
                match (&p.changeset, &p.corrupt) {
                    (Some(cs), _) => raw.extend(cs.ops()),
                    (None, why) => {
                        log::error!(
                            "[{}] queued changeset {} is unreadable ({}); syncing the whole tree instead",
                            self.name(),
                            p.seq,
                            why.as_deref().unwrap_or("?")
                        );
                        raw.push(Op::Entry(Entry::full()));
                    }
                }
            }
            self.set_state(State::Syncing);
            let result = self.sync(raw, &seqs)?;
            self.finish(&pending, &seqs, result)?;
        }
    }

    fn finish(
        &self,
        pending: &[crate::store::Pending],
        seqs: &[u64],
        failure: Option<Outcome>,
    ) -> Result<(), Stopped> {
        let target =
            std::os::unix::ffi::OsStrExt::as_bytes(self.cfg.dest.target.as_os_str()).to_vec();
        let Some(out) = failure else {
            let st = self.update(|l| {
                l.counters.runs_success += 1;
                l.persisted.runs += 1;
                l.persisted.last_success_ms = Some(now_ms());
            });
            let _ = self.store.put_status(&target, &st);
            self.ack(pending, seqs)?;
            let st = self.update(|l| l.attempts = 0);
            let _ = self.store.put_status(&target, &st);
            return Ok(());
        };
        let attempts = self.live.lock().map(|l| l.attempts + 1).unwrap_or(1);
        let st = self.update(|l| {
            l.attempts = attempts;
            match out.class {
                Class::Fatal => l.counters.runs_fatal += 1,
                _ => l.counters.runs_retry += 1,
            }
            l.persisted.runs += 1;
            l.persisted.failures += 1;
            l.persisted.last_error = Some(out.summary.clone());
            l.persisted.last_error_ms = Some(now_ms());
        });
        let _ = self.store.put_status(&target, &st);
        if out.class == Class::Fatal && attempts >= self.settings.dead_after {
            self.bury(pending, &out, attempts);
            self.update(|l| l.attempts = 0);
            return Ok(());
        }
        let delay = backoff(
            self.settings.backoff_min,
            self.settings.backoff_max,
            attempts,
        );
        // Whether the destination's cheap check explains the failure; only
        // then is it watched, so a failure it does not see keeps the plain
        // backoff.
        let probe = match out.class {
            Class::Retry => self
                .probe
                .get_or_init(|| Probe::for_dest(&self.cfg, &self.source)),
            _ => &None,
        };
        let first = probe.as_ref().map(|p| {
            self.update(|l| l.counters.probes += 1);
            p.check()
        });
        let watching = match (probe, &first) {
            (Some(p), Some(Verdict::Fail(why))) => {
                format!(", or as soon as {} (now: {why})", p.describe())
            }
            _ => String::new(),
        };
        log::warn!(
            "[{}] attempt {attempts} failed: {}; {} changesets stay queued; retrying in {:.1}s{watching}",
            self.name(),
            out.summary,
            seqs.len(),
            delay.as_secs_f64()
        );
        self.set_state(State::BackingOff {
            until_ms: now_ms() + delay.as_millis() as u64,
        });
        let mut wait = Wait::new(Instant::now(), delay, first.as_ref(), probe::jitter());
        loop {
            match wait.step(Instant::now()) {
                Step::Run => return Ok(()),
                Step::Sleep(until) => {
                    if self.nap(until.saturating_duration_since(Instant::now()))? {
                        return Ok(());
                    }
                }
                Step::Probe => {
                    let Some(p) = probe else { return Ok(()) };
                    self.update(|l| l.counters.probes += 1);
                    let v = p.check();
                    log::debug!("[{}] probe: {v:?}", self.name());
                    if wait.observed(Instant::now(), &v, probe::jitter()) {
                        log::info!("[{}] {} again: retrying now", self.name(), p.describe());
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Completes this destination's pending checkpoint if what was just
    /// acked delivered it.
    fn settle_checkpoint(&self, target: &[u8]) {
        let delivered = match self.store.delivered(&self.queue, &self.dead) {
            Ok(d) => d,
            Err(e) => return log::warn!("[{}] {e}", self.name()),
        };
        match self.store.settle_checkpoint(target, delivered) {
            Ok(Some(at)) => log::info!(
                "[{}] checkpoint {} complete: every change made before it is on the destination",
                self.name(),
                crate::observe::logger::utc_iso(at / 1000)
            ),
            Ok(None) => {}
            Err(e) => log::warn!("[{}] {e}", self.name()),
        }
    }

    /// The destination's key in the store.
    fn target(&self) -> Vec<u8> {
        std::os::unix::ffi::OsStrExt::as_bytes(self.cfg.dest.target.as_os_str()).to_vec()
    }

    /// Acknowledges the changesets `seqs`, which rsync delivered. When the
    /// store refuses (the state file system is full), the ack itself is
    /// retried with the same exponential backoff as a failed run, the
    /// reason in `last_error`, and rsync is not run again: what it
    /// delivered stays delivered, and acking it later is the same ack.
    /// `Err` when the worker is told to stop meanwhile; the changesets then
    /// stay queued and run again after the next start, harmlessly.
    fn ack(&self, pending: &[crate::store::Pending], seqs: &[u64]) -> Result<(), Stopped> {
        let target = self.target();
        let paths = pending
            .iter()
            .map(|p| p.changeset.as_ref().map_or(1, crate::store::queue::size_of))
            .sum();
        loop {
            // Logged before the ack, so a crash between the two can only
            // make the log claim less than the store holds, never more.
            log::debug!(
                "[{}] acking changesets {}..{} ({} in all)",
                self.name(),
                seqs.first().copied().unwrap_or(0),
                seqs.last().copied().unwrap_or(0),
                seqs.len()
            );
            let e = match self.store.ack(&self.queue, seqs, paths) {
                Ok(()) => {
                    log::debug!("[{}] acked", self.name());
                    self.settle_checkpoint(&target);
                    let last = seqs.last().copied().unwrap_or(0);
                    if self
                        .store
                        .moves_replayed(&target)
                        .is_some_and(|t| t <= last)
                    {
                        if let Err(e) = self.store.clear_moves_replayed(&target) {
                            log::warn!(
                                "[{}] {e}; the next batch is compared by content",
                                self.name()
                            );
                        }
                    }
                    return Ok(());
                }
                Err(e) => e,
            };
            let why = format!(
                "rsync delivered {} changesets, but acknowledging them failed: {e}",
                seqs.len()
            );
            let attempts = self.live.lock().map(|l| l.attempts + 1).unwrap_or(1);
            let st = self.update(|l| {
                l.attempts = attempts;
                l.persisted.failures += 1;
                l.persisted.last_error = Some(why.clone());
                l.persisted.last_error_ms = Some(now_ms());
            });
            // Fails too while the disk is full; the live status has it.
            let _ = self.store.put_status(&target, &st);
            let delay = backoff(
                self.settings.backoff_min,
                self.settings.backoff_max,
                attempts,
            );
            log::error!(
                "[{}] {why}; not running rsync again for them; retrying the acknowledgement in {:.1}s",
                self.name(),
                delay.as_secs_f64()
            );
            self.set_state(State::BackingOff {
                until_ms: now_ms() + delay.as_millis() as u64,
            });
            self.sleep(delay)?;
        }
    }

    fn bury(&self, pending: &[crate::store::Pending], out: &Outcome, attempts: u32) {
        let letters: Vec<(u64, DeadLetter)> = pending
            .iter()
            .map(|p| {
                let changeset = p.changeset.clone().unwrap_or_else(|| {
                    crate::changeset::Changeset::new(now_ms(), vec![Entry::full()])
                });
                (
                    p.seq,
                    DeadLetter {
                        changeset,
                        error: out.summary.clone(),
                        attempts,
                        dead_since_ms: now_ms(),
                    },
                )
            })
            .collect();
        match self.store.bury(&self.queue, &self.dead, &letters) {
            Ok(()) => log::error!(
                "[{}] {} changesets moved to dead letters after {attempts} attempts: {}; \
                 fix the cause, then run `syncd queue retry --dest {}`",
                self.name(),
                letters.len(),
                out.summary,
                self.name()
            ),
            Err(e) => log::error!(
                "[{}] cannot move changesets to dead letters: {e}",
                self.name()
            ),
        }
    }

    fn name(&self) -> &str {
        &self.cfg.dest.name
    }

    fn update(&self, f: impl FnOnce(&mut Live)) -> DestStatus {
        match self.live.lock() {
            Ok(mut l) => {
                f(&mut l);
                l.persisted.clone()
            }
            Err(_) => DestStatus::default(),
        }
    }

    fn set_state(&self, s: State) {
        self.update(|l| l.state = s);
    }

    fn drain_wakes(&self) -> Result<(), Stopped> {
        loop {
            match self.rx.try_recv() {
                Ok(Cmd::Wake | Cmd::Retry) => continue,
                Ok(Cmd::Stop) | Err(TryRecvError::Disconnected) => return Err(Stopped),
                Err(TryRecvError::Empty) => return Ok(()),
            }
        }
    }

    /// Waits `d`, returning early to stop (`Err`) or to retry now (`Ok`).
    fn sleep(&self, d: Duration) -> Result<(), Stopped> {
        self.nap(d).map(|_| ())
    }

    /// [`Worker::sleep`], saying whether it was told to retry now (`true`)
    /// rather than waited out.
    fn nap(&self, d: Duration) -> Result<bool, Stopped> {
        let until = Instant::now() + d;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(false);
            }
            match self.rx.recv_timeout(left) {
                Ok(Cmd::Wake) => continue,
                Ok(Cmd::Retry) => return Ok(true),
                Err(RecvTimeoutError::Timeout) => return Ok(false),
                Ok(Cmd::Stop) | Err(RecvTimeoutError::Disconnected) => return Err(Stopped),
            }
        }
    }
}

/// The delay before attempt `attempts + 1`: `min · 2^(attempts-1)`, capped
/// at `max`, with up to 25% of jitter removed so that destinations that
/// failed together do not retry in lock-step.
pub fn backoff(min: Duration, max: Duration, attempts: u32) -> Duration {
    let exp = min.saturating_mul(1u32 << attempts.saturating_sub(1).min(20));
    let d = exp.min(max);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let seed =
        (nanos as u64 ^ (std::process::id() as u64) << 17).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let frac = (seed >> 40) as f64 / (1u64 << 24) as f64; // 0..1
    d.mul_f64(1.0 - 0.25 * frac)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped_with_jitter() {
        let (min, max) = (Duration::from_secs(1), Duration::from_secs(60));
        let b1 = backoff(min, max, 1);
        assert!(b1 <= min && b1 >= min.mul_f64(0.75), "{b1:?}");
        let b3 = backoff(min, max, 3);
        assert!(
            b3 <= Duration::from_secs(4) && b3 >= Duration::from_secs(3),
            "{b3:?}"
        );
        let b30 = backoff(min, max, 30);
        assert!(b30 <= max && b30 >= max.mul_f64(0.75), "{b30:?}");
    }
}
