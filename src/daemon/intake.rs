//! The intake: raw inotify events, through the watch, into the open window.
//!
//! One implementation serves the daemon and the dry run, so both react to
//! every kind of change the same way: an entry joins the window, a file
//! opened or closed for writing is marked, a kernel queue overflow queues
//! a full sync and rebuilds the watch set, a directory that cannot be
//! watched is synced whole (the watch lists and retries it), and a lost
//! root or a stopped watcher ends the run. It owns nothing durable: what it
//! collects is committed by the caller.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};

use crate::aggregate::Aggregator;
use crate::changeset::{escape, Entry, Move};
use crate::config::RunConfig;
use crate::error::{Error, Result};
use crate::watch::scan::{ctime_trust, Scanner, SLACK_MS};
use crate::watch::{self, Change, Notice, Watch};

/// The watch of the source and the window it feeds.
pub struct Intake {
    pub watch: Watch,
    pub window: Aggregator,
    root: PathBuf,
    /// Whether SOURCE's ctime can be trusted, so an overflow can be
    /// recovered by a scan instead of a full sync.
    scan_trusted: bool,
    /// The watermark: every change before it is committed. An overflow
    /// scans from just before it.
    known_ms: u64,
}

impl Intake {
    /// Watches the source of `cfg` (events go to `tx`) and opens an empty
    /// window with `cfg`'s timing; with `scan`, the walk that adds the
    /// watches also runs the restart scan, returned when done.
    ///
    /// Before the walk, the watches it needs are weighed against what the
    /// kernel still allows ([`watch::budget`]); `last_run` is the store's
    /// count from the last start. Too few is an error naming the sysctl.
    pub fn start(
        cfg: &RunConfig,
        tx: Sender<Notice>,
        scan: Option<Scanner>,
        last_run: Option<u64>,
    ) -> Result<(Intake, Option<Scanner>)> {
        let filter = cfg.filter.clone();
        let exclude: watch::Exclude = Arc::new(move |p: &[u8], dir| filter.excluded(p, dir));
        let budget =
            watch::budget::check(&cfg.source.root, &exclude, last_run).map_err(Error::Watch)?;
        log::debug!("inotify watch budget: {}", budget.describe());
        let (mut watch, scanned) = Watch::start_scanning(&cfg.source.root, tx, exclude, scan)?;
        watch.set_moves_keep_excludes(cfg.filter.names_only());
        let found = watch.take_found();
        let window = Aggregator::new(
            cfg.delay,
            cfg.window_cap,
            cfg.workers.full_threshold,
            cfg.hold,
        );
        let mut intake = Intake {
            watch,
            window,
            root: cfg.source.root.clone(),
            scan_trusted: ctime_trust(&cfg.source.root).is_ok(),
            known_ms: 0,
        };
        intake.apply(found, true)?;
        Ok((intake, scanned))
    }

    /// Notes the watermark of the last commit.
    pub fn committed_until(&mut self, ms: u64) {
        self.known_ms = ms;
    }

    /// Feeds what notify sent into the window. With `live` (not while
    /// stopping), an overflow also rebuilds the watch set. Fails when the
    /// root is lost, cannot be watched again, or notify's thread stopped.
    pub fn absorb(&mut self, notice: Notice, live: bool) -> Result<()> {
        let changes = self.watch.interpret(notice);
        self.apply(changes, live)
    }

    fn apply(&mut self, changes: Vec<Change>, live: bool) -> Result<()> {
        let now = Instant::now();
        for change in changes {
            match change {
                Change::Entry(e) => {
                    log::trace!("event: {} {}", e.kind.name(), escape(&e.path));
                    self.window.add(e, now);
                }
                Change::Move(m) => {
                    log::trace!("event: move {} -> {}", escape(&m.from), escape(&m.to));
                    self.window.moved(m, now);
                }
                Change::Rescan => self.overflowed(live)?,
                Change::Writing(p) => self.window.writing(&p, now),
                Change::Modified(p) => self.window.modified(&p, now),
                Change::Closed(p) if self.watch.awaits_pairs() => {
                    self.window.closed(&p);
                    self.window.touch(now);
                }
                Change::Closed(p) => self.window.closed(&p),
                Change::Error(msg) => log::error!("{msg}"),
                Change::Limit(msg) => {
                    log::error!(
                        "{msg}; until then they are synced whole now and every {}s, and watching \
                         them is retried every {}s (`syncd status` lists them)",
                        watch::unwatched::RESYNC.as_secs(),
                        watch::unwatched::RETRY.as_secs()
                    );
                }
                Change::WatcherStopped(msg) => return Err(Error::Watch(msg)),
                Change::RootLost(how) => {
                    return Err(Error::RootLost {
                        path: self.root.clone(),
                        how,
                    });
                }
            }
        }
        Ok(())
    }

    /// The kernel's queue overflowed, so events were lost: the watch set is
    /// rebuilt (a lost event may be a new directory's) and the same walk
    /// scans for what changed since the watermark, as a restart does; a
    /// full sync when the scan cannot be trusted. While stopping
    /// (`!live`), the next start's scan covers it.
    fn overflowed(&mut self, live: bool) -> Result<()> {
        let now = Instant::now();
        if !live {
            return Ok(());
        }
        if !self.scan_trusted || self.known_ms == 0 {
            log::warn!(
                "the inotify queue overflowed: events were lost; rebuilding the watch and \
                 queueing a full sync (raise fs.inotify.max_queued_events if this repeats)"
            );
            self.window.add(Entry::full(), now);
            self.watch.rebuild()?;
            let found = self.watch.take_found();
            return self.apply(found, live);
        }
        let since = self.known_ms.saturating_sub(SLACK_MS);
        let began = Instant::now();
        let scanned = self.watch.rebuild_scanning(Some(Scanner::new(since)))?;
        let unwatched = self.watch.take_found();
        let (found, stats) = scanned.map(Scanner::finish).unwrap_or_default();
        log::warn!(
            "the inotify queue overflowed: events were lost; rebuilt the watch and scanned for \
             changes since {}: {} paths among {} directories and {} other entries, in {:.2}s \
             (raise fs.inotify.max_queued_events if this repeats)",
            crate::observe::logger::utc_iso(since / 1000),
            found.len(),
            stats.dirs,
            stats.others,
            began.elapsed().as_secs_f64()
        );
        for e in found {
            self.window.add(e, now);
        }
        self.apply(unwatched, live)
    }

    /// Reads every event of a change made until now into the window, and
    /// returns "now" (Unix ms): what the watermark may move to. notify's
    /// thread reads the kernel queue on its own; the events it has read
    /// wait in `rx`.
    pub fn settle(&mut self, rx: &Receiver<Notice>) -> Result<u64> {
        let now = crate::store::now_ms();
        self.watch.flush_events()?;
        while let Ok(ev) = rx.try_recv() {
            self.absorb(ev, true)?;
        }
        let root = self.root.clone();
        self.window
            .confirm_open(|paths| crate::watch::writers::open_for_writing(&root, paths));
        let t = Instant::now();
        let trees = self.window.new_trees();
        for c in self.watch.unpaired() {
            let Change::Entry(e) = c else { continue };
            match self.relocated(&e.path, &trees) {
                Some(to) => self.window.moved(Move { from: e.path, to }, t),
                None => self.window.add(e, t),
            }
        }
        Ok(now)
    }

    /// Where a path whose rename had no second half went, if it went into
    /// a directory created in this window: the kernel reports no `To` half
    /// in a directory it does not watch yet, and `mkdir new; mv big new/`
    /// is done before syncd can watch `new`. A name in a new tree that
    /// matches is taken for the moved path. A wrong guess costs nothing
    /// but time: the new tree's data pass makes the destination exact.
    fn relocated(&self, from: &[u8], trees: &[Vec<u8>]) -> Option<Vec<u8>> {
        if std::fs::symlink_metadata(watch::abs(&self.root, from)).is_ok() {
            return None;
        }
        let name = from.rsplit(|&b| b == b'/').next()?;
        trees.iter().find_map(|t| {
            let to = crate::changeset::join(t, name);
            std::fs::symlink_metadata(watch::abs(&self.root, &to))
                .is_ok()
                .then_some(to)
        })
    }

    /// Runs the watch's timers: directories that could not be watched are
    /// retried, and synced whole now and then. Fails when notify's thread
    /// stopped.
    pub fn tick(&mut self, now: Instant) -> Result<()> {
        let changes = self.watch.tick(now);
        self.apply(changes, true)
    }

    /// Queues a full sync of the whole tree (SIGHUP, or asked for).
    pub fn full_sync(&mut self) {
        self.window.add(Entry::full(), Instant::now());
    }

    /// The earliest moment something here needs the main loop: the window
    /// closing, or a timer of the directories that are not watched.
    pub fn next_wake(&self) -> Option<Instant> {
        [self.window.deadline(), self.watch.next_wake()]
            .into_iter()
            .flatten()
            .min()
    }
}

/// Turns SIGTERM, SIGINT and SIGHUP into messages on a channel.
pub fn signals() -> Result<Receiver<i32>> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut sigs = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])
        .map_err(|e| Error::os("cannot install the signal handlers", e))?;
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
        .map_err(|e| Error::os("cannot start the signal thread", e))?;
    Ok(rx)
}
