//! The daemon: start-up, the main loop, and shutdown.
//!
//! Start-up takes the state directory's lock, opens (and if needed
//! migrates) the store, starts the watch *before* any full sync so nothing
//! between scan and watch is missed, queues a full sync when asked or when
//! the last stop was unclean, and starts one worker per destination, which
//! replays whatever is pending. The main loop receives one closed enum of
//! events (raw inotify events, signals, timer ticks) over crossbeam
//! channels, feeds the aggregator, and commits each closed window through
//! the committer. SIGTERM or SIGINT commits the open window, stops the
//! workers (ending their rsync children), marks a clean shutdown, and
//! returns.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{select, Receiver};

use crate::aggregate::Aggregator;
use crate::changeset::{Changeset, Entry};
use crate::commit::Committer;
use crate::config::RunConfig;
use crate::error::{Error, Result};
use crate::store::{now_ms, Store};
use crate::watch::{self, Change, RawEvent};
use crate::worker;

/// Everything that can wake the main loop.
enum Event {
    Fs(RawEvent),
    Signal(i32),
    /// A deadline passed (window close or commit retry).
    Tick,
}

/// Runs the daemon until SIGTERM/SIGINT (`Ok`) or a fatal error.
pub fn run(cfg: RunConfig) -> Result<()> {
    std::fs::create_dir_all(&cfg.state_dir)
        .map_err(|e| Error::io("cannot create the state directory", &cfg.state_dir, e))?;
    let lock = crate::lock::acquire(&cfg.state_dir)?;
    let program = &cfg.dests[0].rsync.program;
    let version = crate::rsync::check_program(program).map_err(Error::Usage)?;
    log::debug!("using {version}");
    let store = Arc::new(Store::open(&cfg.state_dir)?);
    let clean = store.was_clean()?;
    if let Some(old) = store.swap_source(&cfg.source.root)? {
        log::warn!(
            "this state directory replicated {} before, now {}; pending paths are read from the new source",
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
    let mut committer = Committer::new(store.clone(), queues);

    let (fs_tx, fs_rx) = crossbeam_channel::unbounded();
    let watcher = watch::start(&cfg.source.root, fs_tx)?;
    let sig_rx = signals()?;

    if cfg.initial_sync || !clean {
        let why = if clean {
            "start-up"
        } else {
            "the last stop was not clean"
        };
        log::info!("queueing a full sync ({why})");
        let full = Changeset {
            created_ms: now_ms(),
            entries: vec![Entry::full()],
        };
        committer.commit_now(&full)?;
    }
    for d in &cfg.dests {
        let n = store.queue(&d.dest.target)?.len();
        log::info!(
            "destination {} = {} ({n} changesets pending)",
            d.dest.name,
            d.dest.target.to_string_lossy()
        );
    }
    let mut workers = Vec::new();
    for d in &cfg.dests {
        let w = worker::spawn(
            d.clone(),
            Arc::new(cfg.source.clone()),
            store.clone(),
            cfg.workers.clone(),
        )?;
        workers.push(w);
    }
    committer.set_wakers(workers.iter().map(|w| w.tx.clone()).collect());
    log::info!(
        "watching {} (window {:.3}s, state {}, lock {})",
        cfg.source.root.display(),
        cfg.delay.as_secs_f64(),
        cfg.state_dir.display(),
        lock.path().display()
    );

    let mut window = Aggregator::new(cfg.delay, cfg.window_cap, cfg.workers.full_threshold);
    let result = main_loop(&cfg, &fs_rx, &sig_rx, &mut window, &mut committer);

    // Shutdown: the watcher first, so no new events; then the workers, so
    // the last window is committed but not started (the next start replays
    // it); then the open window.
    drop(watcher);
    for w in &workers {
        let _ = w.tx.send(worker::Cmd::Stop);
    }
    for w in workers {
        let _ = w.thread.join();
    }
    while let Ok(ev) = fs_rx.try_recv() {
        absorb(&cfg, ev, &mut window);
    }
    if !window.is_empty() {
        committer.flush_on_exit(&mut window);
    }
    if committer.all_committed() {
        store.mark_clean()?;
    }
    log::info!("stopped");
    drop(lock);
    result
}

fn main_loop(
    cfg: &RunConfig,
    fs_rx: &Receiver<RawEvent>,
    sig_rx: &Receiver<i32>,
    window: &mut Aggregator,
    committer: &mut Committer,
) -> Result<()> {
    loop {
        let now = Instant::now();
        let wake = [window.deadline(), committer.retry_at()]
            .into_iter()
            .flatten()
            .min();
        let timeout = wake
            .map(|w| w.saturating_duration_since(now))
            .unwrap_or(Duration::from_secs(3600));
        let ev = select! {
            recv(fs_rx) -> m => match m {
                Ok(ev) => Event::Fs(ev),
                Err(_) => return Err(Error::Watch("the inotify watcher stopped unexpectedly".into())),
            },
            recv(sig_rx) -> m => Event::Signal(m.unwrap_or(libc::SIGTERM)),
            default(timeout) => Event::Tick,
        };
        match ev {
            Event::Fs(raw) => {
                if let Some(lost) = absorb(cfg, raw, window) {
                    return Err(lost);
                }
            }
            Event::Signal(libc::SIGHUP) => {
                log::info!("SIGHUP: queueing a full sync");
                window.add(Entry::full(), Instant::now());
            }
            Event::Signal(s) => {
                log::info!("signal {s}: committing the open window and stopping");
                return Ok(());
            }
            Event::Tick => {}
        }
        let now = Instant::now();
        if window.due(now) && committer.may_try(now) {
            committer.commit_window(window);
        }
    }
}

/// Feeds one raw event into the window. Returns the fatal error when the
/// root is lost.
fn absorb(cfg: &RunConfig, raw: RawEvent, window: &mut Aggregator) -> Option<Error> {
    let now = Instant::now();
    for change in watch::interpret(&cfg.source.root, raw) {
        match change {
            Change::Entry(e) => {
                log::trace!(
                    "event: {} {}",
                    e.kind.name(),
                    crate::changeset::escape(&e.path)
                );
                window.add(e, now);
            }
            Change::Rescan => {
                log::warn!("the inotify queue overflowed: events were lost; queueing a full sync");
                window.add(Entry::full(), now);
            }
            Change::Error(msg) => log::error!("{msg}"),
            Change::RootLost(how) => {
                return Some(Error::RootLost {
                    path: cfg.source.root.clone(),
                    how,
                });
            }
        }
    }
    None
}

fn signals() -> Result<Receiver<i32>> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut sigs = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])
        .map_err(|e| Error::io("cannot install signal handlers", "-", e))?;
    let (tx, rx) = crossbeam_channel::unbounded();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for s in sigs.forever() {
                if tx.send(s).is_err() {
                    break;
                }
            }
        })
        .map_err(|e| Error::io("cannot start the signal thread", "-", e))?;
    Ok(rx)
}
