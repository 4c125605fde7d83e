//! The daemon: start-up, the main loop, and shutdown.
//!
//! Start-up takes the state directory's lock, opens (and if needed
//! migrates) the store, starts the watch *before* any full sync so nothing
//! between scan and watch is missed, queues a full sync when asked or when
//! the last stop was unclean, and starts one worker per destination, which
//! replays whatever is pending. The main loop receives one closed enum of
//! events (raw inotify events, signals, timer ticks, control requests) over
//! crossbeam channels, feeds the aggregator, and commits each closed window
//! through the committer. SIGTERM or SIGINT commits the open window, stops the
//! workers (ending their rsync children), marks a clean shutdown, and
//! returns.

mod actions;
pub mod dryrun;
pub mod intake;
pub mod start;

use std::time::{Duration, Instant};

use crossbeam_channel::{select, Receiver};

use crate::commit::{Committer, Release};
use crate::config::RunConfig;
use crate::deliver::outbox::Outbox;
use crate::error::{Error, Result};
use crate::observe::control::Request;
use crate::observe::status::DaemonFacts;
use crate::observe::steps::Steps;
use crate::watch::Notice;
use intake::{signals, Intake};

/// Everything that can wake the main loop.
enum Event {
    Fs(Notice),
    Signal(i32),
    /// A deadline passed (window close or commit retry).
    Tick,
    /// A request on the control socket.
    Control(crate::observe::control::Call),
    /// A metrics scrape waiting for the text.
    Scrape(crate::observe::metrics::Scrape),
}

impl Event {
    /// What the main loop does with it, for its step times.
    fn what(&self) -> &'static str {
        match self {
            Event::Fs(_) => "event",
            Event::Signal(_) => "signal",
            Event::Tick => "tick",
            Event::Control(_) => "control",
            Event::Scrape(_) => "scrape",
        }
    }
}

/// How often the metrics textfile is rewritten.
const TEXTFILE_EVERY: Duration = Duration::from_secs(15);

/// Runs the daemon until SIGTERM/SIGINT (`Ok`) or a fatal error.
pub fn run(cfg: RunConfig) -> Result<()> {
    // 0700: the control socket refuses a directory others could write.
    std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
        .create(&cfg.state_dir)
        .map_err(|e| Error::io("cannot create the state directory", &cfg.state_dir, e))?;
    // A queue command reading the store offline holds the lock shared for
    // a moment: wait for it rather than fail a start (or a restart in place).
    let lock = crate::store::lock::acquire(&cfg.state_dir, crate::store::lock::DAEMON_WAIT)?;
    // Handlers first: a SIGTERM during a long start-up (a big store takes
    // seconds to open) then ends the daemon cleanly once it is up.
    let sig_rx = signals()?;
    let control = crate::observe::control::Server::start(&cfg.state_dir)?;
    let program = &cfg.dests[0].rsync.program;
    let version = crate::deliver::rsync::check_program(program).map_err(Error::Usage)?;
    log::debug!("using {version}");
    crate::deliver::guard::at_start(&cfg)?;
    if cfg.reset_queue {
        if let Some(to) = crate::store::move_aside(&cfg.state_dir)? {
            log::warn!(
                "--reset-queue: moved the store to {}; a full sync rebuilds the mirror",
                to.display()
            );
        }
    }
    let (mut outbox, clean) = Outbox::open(&cfg)?;
    let (fs_tx, fs_rx) = crossbeam_channel::unbounded();
    let (mut intake, watermark) = start::begin(&cfg, &outbox, fs_tx, clean)?;
    intake.committed_until(watermark);
    for d in &cfg.dests {
        let n = outbox
            .store()
            .counts(&outbox.store().queue(&d.dest.target)?)
            .changesets;
        log::info!(
            "destination {} = {}{} ({n} changesets pending)",
            d.dest.name,
            d.dest.target.to_string_lossy(),
            d.dest
                .landing_note()
                .map_or_else(String::new, |w| format!(", {w}"))
        );
    }
    outbox.start_workers(&cfg)?;
    log::info!(
        "watching {} (window {:.3}s, state {}, lock {})",
        cfg.source.root.display(),
        cfg.delay.as_secs_f64(),
        cfg.state_dir.display(),
        lock.path().display()
    );

    crate::observe::service::ready(&format!(
        "watching {}, {} destination(s)",
        cfg.source.root.display(),
        cfg.dests.len()
    ));
    let (scrape_tx, scrape_rx) = crate::observe::metrics::channel();
    let listener = match cfg.metrics_listen {
        Some(addr) => Some(crate::observe::metrics::Listener::start(addr, scrape_tx)?),
        None => None,
    };
    let cfg_full_every = cfg.full_sync_every;
    let mut d = Daemon {
        cfg,
        fs_rx,
        sig_rx,
        control,
        scrape_rx,
        started_unix: crate::store::now_ms() / 1000,
        steps: Steps::default(),
        next_textfile: Instant::now(),
        next_full: cfg_full_every.map(|e| Instant::now() + e),
        intake,
        committer: Committer::new(watermark),
        outbox,
    };
    let result = d.main_loop();
    drop(listener);
    d.shutdown()?;
    if d.committer.poisoned() {
        // Dropping a failed sled store can block forever; the process ends
        // now and the kernel releases it.
        std::mem::forget(d);
    }
    drop(lock);
    result
}

/// The running daemon's state, shared by the main loop and the shutdown
/// after it.
struct Daemon {
    cfg: RunConfig,
    fs_rx: Receiver<Notice>,
    sig_rx: Receiver<i32>,
    control: crate::observe::control::Server,
    scrape_rx: Receiver<crate::observe::metrics::Scrape>,
    started_unix: u64,
    next_textfile: Instant,
    /// When `--full-sync-every` queues the next full sync.
    next_full: Option<Instant>,
    intake: Intake,
    committer: Committer,
    outbox: Outbox,
    /// How long each step of the main loop took (no event is read
    /// meanwhile).
    steps: Steps,
}

impl Daemon {
    fn main_loop(&mut self) -> Result<()> {
        let mut watchdog = crate::observe::service::SystemdWatchdog::from_env();
        // When the loop last woke up: the step lasts until it waits again.
        let mut woke: Option<(Instant, &'static str)> = None;
        loop {
            let now = Instant::now();
            watchdog.tick(now);
            self.intake.tick(now)?;
            if let (Some(at), Some(every)) = (self.next_full, self.cfg.full_sync_every) {
                if now >= at {
                    log::info!(
                        "--full-sync-every {}s: queueing a full sync",
                        every.as_secs()
                    );
                    self.intake.full_sync();
                    self.next_full = Some(now + every);
                }
            }
            if self.cfg.metrics_textfile.is_some() && now >= self.next_textfile {
                self.write_textfile();
                self.next_textfile = now + TEXTFILE_EVERY;
            }
            let wake = [
                self.intake.next_wake(),
                self.cfg
                    .metrics_textfile
                    .as_ref()
                    .map(|_| self.next_textfile),
                self.committer.retry_at(),
                self.next_full,
                watchdog.due_at(),
            ]
            .into_iter()
            .flatten()
            .min();
            let timeout = wake
                .map(|w| w.saturating_duration_since(now))
                .unwrap_or(Duration::from_secs(3600));
            if let Some((w, what)) = woke.take() {
                self.steps.record(w.elapsed(), what);
            }
            let ev = select! {
                recv(self.fs_rx) -> m => match m {
                    Ok(ev) => Event::Fs(ev),
                    Err(_) => return Err(Error::Watch("the inotify watcher stopped unexpectedly".into())),
                },
                recv(self.sig_rx) -> m => Event::Signal(m.unwrap_or(libc::SIGTERM)),
                recv(self.control.calls()) -> m => m.map_or(Event::Tick, Event::Control),
                recv(self.scrape_rx) -> m => m.map_or(Event::Tick, Event::Scrape),
                default(timeout) => Event::Tick,
            };
            let mut what = ev.what();
            let woke_at = Instant::now();
            match ev {
                Event::Fs(raw) => self.intake.absorb(raw, true)?,
                Event::Signal(libc::SIGHUP) => {
                    log::info!("SIGHUP: queueing a full sync");
                    self.intake.full_sync();
                }
                Event::Signal(s) => {
                    log::info!("signal {s}: committing the open window and stopping");
                    return Ok(());
                }
                Event::Tick => {}
                Event::Scrape(reply) => {
                    let text = self.metrics_text().unwrap_or_default();
                    let _ = reply.send(text);
                }
                Event::Control(call) => match call.request().clone() {
                    Request::Checkpoint { dest } => {
                        let r = self.checkpoint(dest.as_deref());
                        call.reply(r);
                    }
                    Request::Sync { dest, full } => {
                        let r = self.sync(dest.as_deref(), full);
                        call.reply(r);
                    }
                    _ => {
                        // A failed store is not read again (it may block).
                        let running = (!self.committer.poisoned())
                            .then(|| (self.outbox.store().as_ref(), self.outbox.workers()));
                        let facts = DaemonFacts {
                            unwatched: self.unwatched(),
                            main_loop: self.steps.summary(),
                        };
                        self.control.answer(call, &self.cfg.dests, running, &facts);
                    }
                },
            }
            let now = Instant::now();
            if (self.intake.window.due(now) || self.committer.poisoned())
                && self.committer.may_try(now)
            {
                self.try_commit()?;
                what = "commit";
            }
            woke = Some((woke_at, what));
        }
    }

    /// Settles the intake first (every event of a change made until now is
    /// read), then stops the watch, so no new events; then the workers, so
    /// the last window is committed but not started (the next start replays
    /// it); then commits the whole window, files still open for writing
    /// included, moves the watermark to the stop and marks a clean
    /// shutdown. With a failed store nothing of that is safe: the daemon
    /// just leaves, and the next start's scan covers what it held.
    fn shutdown(&mut self) -> Result<()> {
        crate::observe::service::stopping();
        let settled = match self.committer.poisoned() {
            true => 0,
            false => self.intake.settle(&self.fs_rx).unwrap_or(0),
        };
        self.intake.watch.stop();
        if self.committer.poisoned() {
            log::error!(
                "stopping with an unusable queue store: {} changes in memory are not committed; \
                 the next start's scan finds them",
                self.intake.window.len()
            );
            return Ok(());
        }
        self.outbox.stop_workers();
        while let Ok(ev) = self.fs_rx.try_recv() {
            // The root lost now changes nothing: what was seen is committed.
            let _ = self.intake.absorb(ev, false);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let window = &mut self.intake.window;
            if self
                .committer
                .commit_window(&self.outbox, window, settled, Release::All)
                || self.committer.poisoned()
                || Instant::now() >= deadline
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        if !self.intake.window.is_empty() {
            self.committer.lost_on_exit(self.intake.window.len());
        }
        self.write_textfile();
        if self.committer.all_committed() {
            self.outbox.store().mark_clean()?;
        }
        log::info!("stopped");
        Ok(())
    }

    /// What the watch cannot watch, for the reports.
    fn unwatched(&self) -> crate::observe::status::Unwatched {
        let u = self.intake.watch.unwatched();
        crate::observe::status::Unwatched {
            count: u.len() as u64,
            paths: u
                .first(crate::observe::status::UNWATCHED_LISTED)
                .map(crate::changeset::escape)
                .collect(),
            reason: u.reasons(),
        }
    }

    /// The metrics text, or `None` once the store failed.
    fn metrics_text(&self) -> Option<String> {
        use std::os::unix::ffi::OsStrExt;
        if self.committer.poisoned() {
            return None;
        }
        let p = &self.outbox;
        let mut rows = Vec::new();
        for d in &self.cfg.dests {
            let live = p
                .workers()
                .iter()
                .find(|w| w.name == d.dest.name)
                .and_then(|w| w.live.lock().ok().map(|l| l.clone()));
            let target = d.dest.target.as_bytes();
            match crate::observe::inspect::report(p.store(), target, live.as_ref(), "stopped", 0) {
                Ok(r) => rows.push((r, live.map(|l| l.counters).unwrap_or_default())),
                Err(e) => log::warn!("metrics: cannot read the queue of {}: {e}", d.dest.name),
            }
        }
        let dests: Vec<crate::observe::metrics::DestMetrics<'_>> = rows
            .iter()
            .map(|(report, counters)| crate::observe::metrics::DestMetrics {
                report,
                counters: counters.clone(),
            })
            .collect();
        let mut text = crate::observe::metrics::render(&dests, self.started_unix);
        self.steps.prometheus(&mut text);
        crate::observe::metrics::unwatched(&mut text, self.unwatched().count);
        Some(text)
    }

    fn write_textfile(&self) {
        let (Some(path), Some(text)) = (&self.cfg.metrics_textfile, self.metrics_text()) else {
            return;
        };
        if let Err(e) = crate::observe::metrics::write_textfile(path, &text) {
            log::warn!("cannot write the metrics textfile {}: {e}", path.display());
        }
    }

    /// Commits the window, or, once sled failed a write, waits for free
    /// space and restarts the daemon in place.
    fn try_commit(&mut self) -> Result<()> {
        if self.committer.poisoned() {
            let free = crate::store::free_space(&self.cfg.state_dir).unwrap_or(0);
            if free >= self.cfg.min_free.max(1 << 20) {
                return Err(restart_in_place());
            }
            self.committer.postpone();
            return Ok(());
        }
        let settled = self.intake.settle(&self.fs_rx)?;
        let window = &mut self.intake.window;
        self.committer
            .commit_window(&self.outbox, window, settled, Release::Hold);
        self.intake.committed_until(self.committer.watermark());
        Ok(())
    }
}

/// Replaces the process with a fresh run of the same command line (same
/// pid, so a service manager sees nothing), the way out of a failed store.
/// The lock, the control socket's listener and sled's threads go with the
/// old image; the new one finds no clean-shutdown marker and runs a full
/// sync. Returns only if the exec failed.
fn restart_in_place() -> Error {
    use std::os::unix::process::CommandExt;
    log::warn!("the state file system has free space again: restarting syncd in place");
    let err = std::process::Command::new("/proc/self/exe")
        .args(std::env::args_os().skip(1))
        .exec();
    Error::io("cannot restart syncd in place", "/proc/self/exe", err)
}
