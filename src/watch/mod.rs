//! The watcher stage: one inotify watch per directory of the source,
//! managed by syncd itself, and the raw events turned into changes.
//!
//! notify runs its callback on its only thread; blocking there overflows the
//! kernel queue, so the callback is a send on an unbounded crossbeam channel
//! and all interpretation happens in the main loop ([`events::interpret`]).
//! syncd walks the tree and adds a non-recursive watch per directory itself,
//! instead of notify's recursive mode, for two reasons: excluded directories
//! are then never watched (a `node_modules` or `.git` would otherwise eat
//! the watch limit), and a directory that cannot be watched is known,
//! listed and retried ([`unwatched`]) instead of silently skipped. The walk
//! is bounded: up to [`WALK_BATCH`] directories taken from a stack are
//! watched in one `update_paths` round trip, then read, so memory does not
//! grow with the width of a level; a directory is always watched before it
//! is read. notify (vendor/notify, patched) drops the watches of
//! directories that are deleted or moved out, and keeps those of a
//! directory moved within the tree under its new path, so a paired move is
//! not walked again unless its watches may be incomplete ([`marks`]); syncd
//! adds the watches of directories that appear. After a kernel queue
//! overflow the whole watch set is rebuilt, since the creation of a
//! directory may be among the lost events. Symlinks are never followed.
//!
//! notify's thread can end (its poll failed, or the handler panicked): the
//! handler owns a `Sentinel` that then sends [`Notice::Stopped`], unless
//! syncd itself dropped the watcher, and the daemon stops with a message
//! instead of replicating nothing while it reports itself in sync.

pub mod budget;
pub mod events;
mod follow;
pub mod marks;
pub mod scan;
pub mod unwatched;
mod walk;
pub mod writers;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use notify::{Config, EventKindMask, RecommendedWatcher, Watcher as _};

pub use events::{abs, explain, interpret, is_limit, rel, Change, RawEvent};
pub use scan::{DirMark, Scanner};
pub use unwatched::{Unwatched, Why};

use crate::changeset::{Entry, Kind};
use crate::error::{Error, Result};
use marks::WalkMarks;

/// Decides whether a root-relative path (a directory when the flag says so)
/// is excluded from replication. Excluded directories are not watched and
/// excluded paths are not queued.
pub type Exclude = Arc<dyn Fn(&[u8], bool) -> bool + Send + Sync>;

/// The predicate that excludes nothing.
pub fn exclude_nothing() -> Exclude {
    Arc::new(|_, _| false)
}

/// What notify's thread hands the main loop.
#[derive(Debug)]
pub enum Notice {
    /// An event, or an error notify reported.
    Event(RawEvent),
    /// notify's thread ended while the watch was meant to run: no event
    /// will come any more.
    Stopped,
}

/// How many directories the walk watches in one round trip to notify's
/// thread before it reads them. Measured: a bounded walk keeps the memory
/// per watched directory at lsyncd's, where a level-by-level walk held
/// about 70 bytes more per directory (BENCHMARKS.md, "Watching large
/// trees").
pub const WALK_BATCH: usize = 128;

/// The watch limit is reported at most this often (a burst of new
/// directories would otherwise log one error each).
const LIMIT_LOG_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// The inotify events syncd asks for: creations, deletions, writes,
/// attribute changes, renames and closes after writing. Not opens nor
/// closes after reading: every read of a file in the tree (rsync's
/// included) would be an event.
pub fn event_kinds() -> EventKindMask {
    EventKindMask::CORE | EventKindMask::ACCESS_CLOSE
}

/// Owned by notify's event handler, so dropped when notify's thread ends:
/// reports that end on the channel, unless syncd itself dropped the watcher
/// and cleared `armed` first.
struct Sentinel {
    tx: crossbeam_channel::Sender<Notice>,
    armed: Arc<AtomicBool>,
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        if self.armed.load(Ordering::SeqCst) {
            let _ = self.tx.send(Notice::Stopped);
        }
    }
}

/// Debug builds only: with `SYNCD_TEST_FAULT=watcher-panic` notify's event
/// handler panics on its first event, which ends notify's thread the way a
/// real panic would (the tests check that the daemon notices).
#[cfg(debug_assertions)]
fn fault_watcher_panic() -> bool {
    std::env::var("SYNCD_TEST_FAULT").is_ok_and(|v| v == "watcher-panic")
}

#[cfg(not(debug_assertions))]
fn fault_watcher_panic() -> bool {
    false
}

/// The watch of the source tree.
pub struct Watch {
    root: PathBuf,
    tx: crossbeam_channel::Sender<Notice>,
    exclude: Exclude,
    /// Whether moving a directory leaves unchanged which paths below it are
    /// excluded (no rule is matched against whole paths), so that a move
    /// needs no walk to watch or unwatch them.
    moves_keep_excludes: bool,
    inner: Option<RecommendedWatcher>,
    /// Cleared before syncd drops the watcher itself (see [`Sentinel`]).
    armed: Arc<AtomicBool>,
    /// How many watches syncd asked for since the watch set was last
    /// rebuilt, for the log. Not a set of paths: notify already keeps a
    /// map of every watched path, and a second copy was a quarter of the
    /// daemon's memory on a tree of 100,000 directories.
    added: usize,
    /// While the start-up walk runs, when a watch limit is fatal.
    starting: bool,
    /// Directories that could not be watched.
    unwatched: Unwatched,
    /// Events (notices) received so far: the index of the next one.
    received: u64,
    marks: WalkMarks,
    /// Renames whose `From` half came and whose `To` half has not yet:
    /// (cookie, root-relative old path, index of the `From` half).
    pending_from: Vec<(usize, Vec<u8>, u64)>,
    /// Changes found outside the interpretation of an event (walks at
    /// start, retries), for the caller to take.
    found: Vec<Change>,
    /// The last error notify reported about no path, for the message when
    /// its thread ends.
    last_error: Option<String>,
    /// When the watch limit was last reported, and how many directories it
    /// left unwatched since.
    limit_logged: Option<Instant>,
    limited: usize,
}

impl Watch {
    /// Watches every directory of `root` that is not excluded. Running out
    /// of watches here is fatal, with the sysctl to raise.
    pub fn start(
        root: &Path,
        tx: crossbeam_channel::Sender<Notice>,
        exclude: Exclude,
    ) -> Result<Watch> {
        Watch::start_scanning(root, tx, exclude, None).map(|(w, _)| w)
    }

    /// [`Watch::start`], and with `scan`, the restart scan in the same
    /// walk.
    pub fn start_scanning(
        root: &Path,
        tx: crossbeam_channel::Sender<Notice>,
        exclude: Exclude,
        scan: Option<Scanner>,
    ) -> Result<(Watch, Option<Scanner>)> {
        let mut w = Watch {
            root: root.to_path_buf(),
            tx,
            exclude,
            moves_keep_excludes: false,
            inner: None,
            armed: Arc::new(AtomicBool::new(false)),
            added: 0,
            starting: true,
            unwatched: Unwatched::default(),
            received: 0,
            marks: WalkMarks::default(),
            pending_from: Vec::new(),
            found: Vec::new(),
            last_error: None,
            limit_logged: None,
            limited: 0,
        };
        let scanned = w.rebuild_scanning(scan)?;
        w.starting = false;
        Ok((w, scanned))
    }

    /// Says that the exclude rules match names only, never whole paths, so
    /// moving a directory cannot change what is excluded below it.
    pub fn set_moves_keep_excludes(&mut self, yes: bool) {
        self.moves_keep_excludes = yes;
    }

    /// Drops the watch set and walks the tree again.
    pub fn rebuild(&mut self) -> Result<()> {
        self.rebuild_scanning(None).map(|_| ())
    }

    /// Drops the watch set and walks the tree again; with `scan`, the same
    /// walk finds what changed since then ([`scan`]) and returns it.
    pub fn rebuild_scanning(&mut self, scan: Option<Scanner>) -> Result<Option<Scanner>> {
        self.drop_watcher();
        self.added = 0;
        self.unwatched = Unwatched::default();
        let config = Config::default()
            .with_follow_symlinks(false)
            .with_event_kinds(event_kinds());
        let armed = Arc::new(AtomicBool::new(true));
        let sentinel = Sentinel {
            tx: self.tx.clone(),
            armed: armed.clone(),
        };
        let panic_on_event = fault_watcher_panic();
        let forward = move |ev: RawEvent| {
            if panic_on_event {
                panic!("SYNCD_TEST_FAULT=watcher-panic: the inotify event handler panics");
            }
            // The kernel reports no reads with the event kinds above; this
            // stays as a second check, should notify deliver one anyway.
            if !events::read_only(&ev) {
                let _ = sentinel.tx.send(Notice::Event(ev));
            }
        };
        let inner = RecommendedWatcher::new(forward, config)
            .map_err(|e| Error::Watch(explain(&e, &self.root)))?;
        self.inner = Some(inner);
        self.armed = armed;
        let root = self.root.clone();
        let mut scan = scan;
        let walked = self
            .add_tree(&root, scan.as_mut())
            .and_then(|_| self.flush_events());
        if let Err(e) = walked {
            // Watches added before the failure are released with the watcher.
            self.drop_watcher();
            return Err(e);
        }
        log::debug!("watching {} directories", self.added);
        Ok(scan)
    }

    /// Drops notify's watcher, which ends its thread, without that end
    /// being reported.
    fn drop_watcher(&mut self) {
        self.armed.store(false, Ordering::SeqCst);
        self.inner = None;
    }

    /// How many watches were asked for since the watch set was last
    /// (re)built: those of the start-up walk plus those of every directory
    /// that appeared since, excluded ones never counted.
    pub fn added(&self) -> usize {
        self.added
    }

    /// The directories that are not watched.
    pub fn unwatched(&self) -> &Unwatched {
        &self.unwatched
    }

    /// Stops watching.
    pub fn stop(&mut self) {
        self.drop_watcher();
    }

    /// Changes found since the last call outside the interpretation of an
    /// event: directories that could not be watched (synced whole), and
    /// those watched again.
    pub fn take_found(&mut self) -> Vec<Change> {
        std::mem::take(&mut self.found)
    }

    /// Interprets what notify sent, keeping the watch set in step with the
    /// tree and dropping excluded paths.
    pub fn interpret(&mut self, notice: Notice) -> Vec<Change> {
        let index = self.received;
        self.received += 1;
        let oldest_from = self.pending_from.iter().map(|p| p.2).min();
        self.marks
            .prune(oldest_from.unwrap_or(self.received).min(self.received));
        let raw = match notice {
            Notice::Event(raw) => raw,
            Notice::Stopped => return vec![Change::WatcherStopped(self.stopped(None))],
        };
        if let Err(e) = &raw {
            if e.paths.is_empty() {
                self.last_error = Some(explain(e, &self.root));
            }
        }
        let dir_event = match &raw {
            Ok(ev) => Some((ev.kind, ev.paths.clone())),
            Err(_) => None,
        };
        let paired = match &raw {
            Ok(ev) => self.pair(ev, index),
            Err(_) => None,
        };
        let (mut out, paired) = match paired {
            Some((changes, p)) => (changes, Some(p)),
            None => (
                interpret(&self.root, raw)
                    .into_iter()
                    .filter(|c| match c {
                        Change::Entry(e) => !self.excluded(e),
                        _ => true,
                    })
                    .collect(),
                None,
            ),
        };
        if let Some((kind, paths)) = dir_event {
            self.follow(kind, &paths, paired, &mut out);
        }
        out.append(&mut self.found);
        out
    }

    /// The message of a watch that stopped: what notify reported last, or
    /// `e`.
    fn stopped(&self, e: Option<&notify::Error>) -> String {
        let why = match (&self.last_error, e) {
            (Some(last), _) => last.clone(),
            (None, Some(e)) => format!("{e}"),
            (None, None) => "its thread ended (a panic in its event handler: see above)".into(),
        };
        format!(
            "the inotify watcher stopped: {why}; syncd exits so that the service manager \
             restarts it, and the restart scan covers the gap"
        )
    }

    /// Waits until notify has handed over every event the kernel queued
    /// before this call (an empty `update_paths` is a barrier). Fails when
    /// notify's thread is gone.
    pub fn flush_events(&mut self) -> Result<()> {
        self.apply(Vec::new())
            .map_err(|e| Error::Watch(self.stopped(Some(&e.source))))
    }

    /// Retries watching listed directories; one watched now is synced whole
    /// once more (what changed while it was not watched) and leaves the
    /// list. At the watch limit, the other limited ones wait for the next
    /// round.
    fn retry(&mut self, dirs: Vec<Vec<u8>>) {
        let mut at_limit = false;
        for r in dirs {
            let Some(why) = self.unwatched.get(&r).cloned() else {
                continue;
            };
            if at_limit && why == Why::Limit {
                continue;
            }
            let p = abs(&self.root, &r);
            if !std::fs::symlink_metadata(&p).is_ok_and(|m| m.is_dir()) || (self.exclude)(&r, true)
            {
                self.unwatched.remove_at_or_below(&r);
                continue;
            }
            match self.add_tree(&p, None) {
                Ok(true) => {
                    log::info!(
                        "watching {} now; it is synced whole once more, for what changed while \
                         it was not watched",
                        p.display()
                    );
                    self.unwatched.remove(&r);
                    self.found.push(Change::Entry(Entry::new(Kind::Tree, r)));
                }
                Ok(false) => at_limit |= self.unwatched.get(&r) == Some(&Why::Limit),
                Err(e) => {
                    self.found.push(Change::WatcherStopped(e.to_string()));
                    return;
                }
            }
        }
    }

    /// Runs the timers of the unwatched list: retries due, and the periodic
    /// sync of what is not watched. Returns what it found.
    pub fn tick(&mut self, now: Instant) -> Vec<Change> {
        let due = self.unwatched.due_retry(now);
        if !due.is_empty() {
            self.retry(due);
        }
        let resync = self.unwatched.due_resync(now);
        if !resync.is_empty() {
            log::warn!(
                "{} directories are not watched ({}): syncing them whole",
                resync.len(),
                self.unwatched.reasons().unwrap_or_default()
            );
            self.found.extend(
                resync
                    .into_iter()
                    .map(|r| Change::Entry(Entry::new(Kind::Tree, r))),
            );
        }
        self.take_found()
    }

    /// When [`Watch::tick`] has something to do next.
    pub fn next_wake(&self) -> Option<Instant> {
        self.unwatched.next_wake()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.drop_watcher();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::changeset::Kind;
    use std::time::Duration;

    fn collect(
        rx: &crossbeam_channel::Receiver<Notice>,
        w: &mut Watch,
        quiet: Duration,
    ) -> Vec<Entry> {
        let mut out = Vec::new();
        while let Ok(ev) = rx.recv_timeout(quiet) {
            for c in w.interpret(ev) {
                if let Change::Entry(e) = c {
                    out.push(e);
                }
            }
        }
        out
    }

    #[test]
    fn excluded_directories_are_not_watched_and_new_ones_are() {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::create_dir_all(root.join("cache/deep")).unwrap();
        let (tx, rx) = crossbeam_channel::unbounded();
        let ex: Exclude = Arc::new(|p: &[u8], _| p == b"cache" || p.starts_with(b"cache/"));
        let mut w = Watch::start(&root, tx, ex).unwrap();
        w.set_moves_keep_excludes(true);
        assert_eq!(w.added(), 3, "root, a, a/b; not cache or cache/deep");
        std::fs::write(root.join("cache/deep/x"), b"1").unwrap();
        std::fs::create_dir(root.join("new")).unwrap();
        let got = collect(&rx, &mut w, Duration::from_millis(300));
        assert!(got.iter().all(|e| !e.path.starts_with(b"cache")), "{got:?}");
        assert!(
            got.contains(&Entry::new(Kind::Tree, b"new".to_vec())),
            "{got:?}"
        );
        assert_eq!(w.added(), 4);
        std::fs::write(root.join("new/f"), b"1").unwrap();
        let got = collect(&rx, &mut w, Duration::from_millis(300));
        assert!(
            got.contains(&Entry::new(Kind::File, b"new/f".to_vec())),
            "{got:?}"
        );
        std::fs::rename(root.join("a"), root.join("a2")).unwrap();
        let _ = collect(&rx, &mut w, Duration::from_millis(300));
        std::fs::write(root.join("a2/b/g"), b"1").unwrap();
        let got = collect(&rx, &mut w, Duration::from_millis(300));
        assert!(
            got.contains(&Entry::new(Kind::File, b"a2/b/g".to_vec())),
            "{got:?}"
        );
        assert_eq!(w.added(), 4, "a2 and a2/b kept their watches: no walk");

        // A directory renamed before its creation was read has no watches
        // to keep: it is walked.
        std::fs::create_dir_all(root.join("d/sub")).unwrap();
        std::fs::rename(root.join("d"), root.join("e")).unwrap();
        let _ = collect(&rx, &mut w, Duration::from_millis(300));
        std::fs::write(root.join("e/sub/h"), b"1").unwrap();
        let got = collect(&rx, &mut w, Duration::from_millis(300));
        assert!(
            got.contains(&Entry::new(Kind::File, b"e/sub/h".to_vec())),
            "{got:?}"
        );
    }

    #[test]
    fn the_end_of_notifys_thread_is_reported_unless_syncd_stopped_it() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, rx) = crossbeam_channel::unbounded();
        let mut w = Watch::start(dir.path(), tx.clone(), exclude_nothing()).unwrap();
        w.stop();
        assert!(rx.recv_timeout(Duration::from_millis(300)).is_err());
        // A sentinel dropped while armed: what notify's thread does when it
        // ends on its own.
        drop(Sentinel {
            tx,
            armed: Arc::new(AtomicBool::new(true)),
        });
        let notice = rx.recv_timeout(Duration::from_secs(1)).unwrap();
        assert!(matches!(notice, Notice::Stopped));
        let changes = w.interpret(notice);
        let [Change::WatcherStopped(msg)] = changes.as_slice() else {
            panic!("{changes:?}");
        };
        assert!(msg.contains("service manager restarts it"), "{msg}");
    }
}
