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
//! handler owns a [`Sentinel`] that then sends [`Notice::Stopped`], unless
//! syncd itself dropped the watcher, and the daemon stops with a message
//! instead of replicating nothing while it reports itself in sync.

pub mod budget;
pub mod events;
pub mod marks;
pub mod scan;
pub mod unwatched;
pub mod writers;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use notify::event::{CreateKind, ModifyKind, RenameMode};
use notify::{
    Config, EventKind, EventKindMask, PathOp, RecommendedWatcher, UpdatePathsError, Watcher as _,
};

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

/// What `pair` made of a rename's half.
enum Paired {
    /// The `To` half of a move within the tree, whose `From` half had
    /// index `index` in the channel.
    Move { from: Vec<u8>, index: u64 },
    /// The `To` half of a move into an excluded path.
    IntoExcluded,
    /// A `From` half.
    From,
}

/// The outcome of watching one batch of directories.
#[derive(Default)]
struct Batch {
    /// Not watched, and why.
    failed: Vec<(PathBuf, Why)>,
    /// Gone (or no longer a directory) before they could be watched.
    vanished: Vec<PathBuf>,
    /// The watch limit, and the directories not watched because of it.
    limit: Option<(notify::Error, Vec<PathBuf>)>,
}

/// How a failed watch is told: `None` when the directory vanished.
fn why(e: &notify::Error) -> Option<Why> {
    use notify::ErrorKind as K;
    match &e.kind {
        K::PathNotFound | K::WatchNotFound => None,
        K::Io(io) => match io.raw_os_error() {
            Some(libc::ENOENT) | Some(libc::ENOTDIR) => None,
            Some(libc::EACCES) | Some(libc::EPERM) => Some(Why::Permission),
            _ => Some(Why::Other(format!("{io}"))),
        },
        K::MaxFilesWatch => Some(Why::Limit),
        other => Some(Why::Other(format!("{other:?}"))),
    }
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

    /// The two halves of a rename inside the tree, paired by inotify's
    /// cookie (notify's tracker): the `From` half waits, and the `To` half
    /// with the same cookie makes one [`Change::Move`]. A half that stays
    /// alone is what it always was: moved out of the tree (gone, once
    /// [`Watch::unpaired`] gives up on it) or moved in (a new path). A move
    /// into an excluded path is a deletion; out of one, an arrival.
    /// Returns `None` for every other event.
    fn pair(&mut self, ev: &notify::Event, index: u64) -> Option<(Vec<Change>, Paired)> {
        let EventKind::Modify(ModifyKind::Name(mode)) = ev.kind else {
            return None;
        };
        let cookie = ev.tracker()?;
        let [p] = ev.paths.as_slice() else {
            return None;
        };
        let r = rel(&self.root, p)?;
        match mode {
            RenameMode::From => {
                if (self.exclude)(&r, true) && (self.exclude)(&r, false) {
                    return Some((vec![Change::Closed(r)], Paired::From));
                }
                self.pending_from.push((cookie, r.clone(), index));
                Some((vec![Change::Closed(r)], Paired::From))
            }
            RenameMode::To => {
                let i = self
                    .pending_from
                    .iter()
                    .position(|(c, _, _)| *c == cookie)?;
                let (_, from, from_index) = self.pending_from.remove(i);
                let is_dir = std::fs::symlink_metadata(p).is_ok_and(|m| m.is_dir());
                if (self.exclude)(&r, is_dir) {
                    return Some((
                        vec![
                            Change::Closed(r),
                            Change::Entry(Entry::new(Kind::Gone, from)),
                        ],
                        Paired::IntoExcluded,
                    ));
                }
                Some((
                    vec![
                        Change::Closed(r.clone()),
                        Change::Move(crate::changeset::Move {
                            from: from.clone(),
                            to: r,
                        }),
                    ],
                    Paired::Move {
                        from,
                        index: from_index,
                    },
                ))
            }
            _ => None,
        }
    }

    /// Whether a rename's `From` half waits for its `To`.
    pub fn awaits_pairs(&self) -> bool {
        !self.pending_from.is_empty()
    }

    /// The `From` halves still waiting for their `To`: after every event
    /// read so far was interpreted, they are moves out of the tree, and so
    /// deletions.
    pub fn unpaired(&mut self) -> Vec<Change> {
        self.pending_from
            .drain(..)
            .map(|(_, p, _)| Change::Entry(Entry::new(Kind::Gone, p)))
            .collect()
    }

    fn excluded(&self, e: &Entry) -> bool {
        crate::config::filter::entry_excluded(|p, d| (self.exclude)(p, d), e)
    }

    /// Keeps the watch set in step with the tree after an event: watches
    /// the directories that appeared, except a directory moved within the
    /// tree whose watches notify moved with it ([`marks`] says when they
    /// may be incomplete, and then it is walked); unwatches one moved to an
    /// excluded path; takes deleted directories off the unwatched list, and
    /// retries one whose attributes changed (a `chmod` may let the daemon
    /// read it).
    ///
    /// notify keys its watches by path, so a directory renamed over another
    /// one is ambiguous: the old inode's removal can be reported after the
    /// new one's arrival, and takes the watch registered under that path with
    /// it. So after any removal, a path that is a directory again is watched
    /// again.
    fn follow(
        &mut self,
        kind: EventKind,
        paths: &[PathBuf],
        paired: Option<Paired>,
        out: &mut Vec<Change>,
    ) {
        for p in paths {
            if p == &self.root {
                continue;
            }
            let arrived = matches!(
                kind,
                EventKind::Create(CreateKind::Folder)
                    | EventKind::Create(CreateKind::Any)
                    | EventKind::Modify(ModifyKind::Name(RenameMode::To))
            );
            let removed = matches!(kind, EventKind::Remove(_));
            let left =
                removed || matches!(kind, EventKind::Modify(ModifyKind::Name(RenameMode::From)));
            let attrs = matches!(kind, EventKind::Modify(ModifyKind::Metadata(_)));
            if !(arrived || left || attrs) {
                continue;
            }
            let Some(r) = rel(&self.root, p) else {
                continue;
            };
            if attrs {
                if self.unwatched.get(&r) == Some(&Why::Permission) {
                    self.retry(vec![r]);
                }
                continue;
            }
            if removed && !self.unwatched.is_empty() {
                self.unwatched.remove_at_or_below(&r);
            }
            let md = std::fs::symlink_metadata(p);
            let is_dir = md.as_ref().is_ok_and(|m| m.is_dir());
            let walk = match (&paired, arrived, is_dir) {
                (Some(Paired::IntoExcluded), true, true) => {
                    self.unwatch_tree(p);
                    false
                }
                (Some(Paired::Move { from, index }), true, true) => {
                    let walk = self.move_needs_walk(from, *index);
                    if walk && !self.unwatched.is_empty() {
                        let from = from.clone();
                        self.unwatched.remove_at_or_below(&from);
                    }
                    if !self.moves_keep_excludes {
                        self.unwatch_excluded(p);
                    }
                    walk
                }
                (_, _, true) => true,
                (_, true, false) => {
                    // Gone before it could be watched: a rename of it may
                    // come next, and then it has no watches to keep.
                    if md.is_err() && kind != EventKind::Create(CreateKind::File) {
                        self.marks.walked(r);
                    }
                    false
                }
                (_, false, false) => false,
            };
            if walk {
                if let Err(e) = self.add_tree(p, None) {
                    out.push(Change::WatcherStopped(e.to_string()));
                    return;
                }
            }
        }
    }

    /// Whether a directory moved within the tree from `from` (its `From`
    /// half at `index`) must be walked: when its watches may be incomplete
    /// ([`marks`]), when part of it was not watched, or when a move can
    /// change what is excluded below it.
    fn move_needs_walk(&self, from: &[u8], index: u64) -> bool {
        !self.moves_keep_excludes
            || self.unwatched.at_or_below(from).next().is_some()
            || self.marks.touches(from, index)
    }

    /// Watches `top` and every directory below it that is not excluded, with
    /// a bounded walk: up to [`WALK_BATCH`] directories taken from a stack
    /// are watched in one round trip, then read, their subdirectories
    /// pushed; a directory is always watched before it is read, so an entry
    /// created meanwhile has an event or is read. With `scan`, every entry
    /// read is also weighed by the restart scan (one `lstat` each). A
    /// directory that vanished meanwhile is skipped; one that cannot be
    /// watched is listed ([`unwatched`]) and synced whole; at the watch
    /// limit the rest of the walk is listed too, except during the start-up
    /// walk, where the limit is fatal. A directory watched now leaves the
    /// list. Fails when notify's thread is gone, or the root cannot be
    /// watched. Returns whether `top` itself is watched.
    fn add_tree(&mut self, top: &Path, mut scan: Option<&mut Scanner>) -> Result<bool> {
        if self.inner.is_none() {
            return Ok(false);
        }
        let top_rel = rel(&self.root, top).unwrap_or_default();
        if !top_rel.is_empty() && (self.exclude)(&top_rel, true) {
            return Ok(false);
        }
        let top_mark = match (&mut scan, std::fs::symlink_metadata(top)) {
            (Some(s), Ok(m)) => s.root(&m),
            _ => DirMark::default(),
        };
        let mut stack = vec![(top.to_path_buf(), top_mark)];
        let mut top_watched = false;
        let mut limited = 0;
        let mut limit = false;
        while !stack.is_empty() {
            let batch = stack.split_off(stack.len().saturating_sub(WALK_BATCH));
            let ops = batch
                .iter()
                .map(|(d, _)| PathOp::watch_non_recursive(d.clone()))
                .collect();
            let outcome = self.watch_all(ops)?;
            let mut skip: HashSet<&Path> = HashSet::new();
            skip.extend(outcome.failed.iter().map(|(d, _)| d.as_path()));
            skip.extend(outcome.vanished.iter().map(PathBuf::as_path));
            if let Some((_, rest)) = &outcome.limit {
                skip.extend(rest.iter().map(PathBuf::as_path));
            }
            for (dir, mark) in &batch {
                if skip.contains(dir.as_path()) {
                    continue;
                }
                self.added += 1;
                if dir == top {
                    top_watched = true;
                }
                if !self.unwatched.is_empty() {
                    if let Some(r) = rel(&self.root, dir) {
                        self.unwatched.remove(&r);
                    }
                }
                self.read_dir(dir, *mark, scan.as_deref_mut(), &mut stack);
            }
            for (dir, why) in &outcome.failed {
                if dir == &self.root {
                    return Err(Error::Watch(format!(
                        "cannot watch {}: {}",
                        self.root.display(),
                        why.describe()
                    )));
                }
                self.list(dir, why.clone());
            }
            if let Some((e, rest)) = outcome.limit {
                if self.starting {
                    return Err(Error::Watch(explain(&e, &self.root)));
                }
                let rest: Vec<PathBuf> = rest
                    .into_iter()
                    .chain(stack.drain(..).map(|(d, _)| d))
                    .collect();
                limited += rest.len();
                for dir in &rest {
                    self.list(dir, Why::Limit);
                }
                limit = true;
            }
        }
        if limit {
            self.limited += limited;
            let now = Instant::now();
            if self
                .limit_logged
                .is_none_or(|t| now.duration_since(t) >= LIMIT_LOG_EVERY)
            {
                self.limit_logged = Some(now);
                let listed = self.unwatched.len() as u64;
                let want = budget::limit()
                    .map(|(l, _)| (l + (listed + listed / 4).max(10_000)).div_ceil(1024) * 1024);
                self.found.push(Change::Limit(format!(
                    "out of inotify watches while watching {}: {} directories are not watched \
                     (since the last report; {listed} in all); raise the limit with `sysctl \
                     fs.inotify.max_user_watches={}` (one watch per directory; keep it in \
                     /etc/sysctl.d/)",
                    top.display(),
                    std::mem::take(&mut self.limited),
                    want.map_or_else(|| "N".into(), |w| w.to_string())
                )));
            }
        }
        self.marks.walked(top_rel);
        Ok(top_watched)
    }

    /// Lists a directory that could not be watched; the first time, it is
    /// synced whole (and logged, but for the watch limit, which the walk
    /// reports once).
    fn list(&mut self, dir: &Path, why: Why) {
        let Some(r) = rel(&self.root, dir) else {
            return;
        };
        let limit = why == Why::Limit;
        let reason = why.describe();
        if self.unwatched.add(r.clone(), why, Instant::now()) {
            if !limit {
                log::warn!(
                    "not watching {}: {reason}; it is synced whole now and every {}s, and \
                     watching it is retried every {}s and when its attributes change",
                    dir.display(),
                    unwatched::RESYNC.as_secs(),
                    unwatched::RETRY.as_secs()
                );
            }
            self.found.push(Change::Entry(Entry::new(Kind::Tree, r)));
        }
    }

    /// Asks notify to watch every directory of `ops` (in one round trip
    /// when all goes well), going on past those that fail.
    fn watch_all(&mut self, mut ops: Vec<PathOp>) -> Result<Batch> {
        let mut out = Batch::default();
        loop {
            let Err(e) = self.apply(ops) else {
                return Ok(out);
            };
            let UpdatePathsError {
                source,
                origin,
                remaining,
            } = e;
            let Some(origin) = origin else {
                return Err(Error::Watch(self.stopped(Some(&source))));
            };
            let dir = origin.into_path();
            if is_limit(&source) {
                let mut rest = vec![dir];
                rest.extend(remaining.into_iter().map(PathOp::into_path));
                out.limit = Some((source, rest));
                return Ok(out);
            }
            match why(&source) {
                None => {
                    log::debug!("not watching {}: {source}", dir.display());
                    out.vanished.push(dir);
                }
                Some(w) => out.failed.push((dir, w)),
            }
            ops = remaining;
        }
    }

    /// One `update_paths` round trip. It first hands over every event
    /// queued until then, so the walks that ended before it get their mark
    /// ([`marks`]) from what was sent once it returned.
    fn apply(&mut self, ops: Vec<PathOp>) -> std::result::Result<(), UpdatePathsError> {
        let Some(inner) = self.inner.as_mut() else {
            return Ok(());
        };
        let walks = self.marks.take_unresolved();
        let r = inner.update_paths(ops);
        let sent = self.received + self.tx.len() as u64;
        self.marks.resolve(walks, sent);
        r
    }

    /// Removes the watches of `top` and of every directory below it (moved
    /// to an excluded path, where notify kept them).
    fn unwatch_tree(&mut self, top: &Path) {
        let mut dirs = Vec::new();
        let mut stack = vec![top.to_path_buf()];
        while let Some(d) = stack.pop() {
            if let Ok(rd) = std::fs::read_dir(&d) {
                stack.extend(
                    rd.flatten()
                        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                        .map(|e| e.path()),
                );
            }
            dirs.push(d);
        }
        for chunk in dirs.chunks(1024) {
            let mut ops: Vec<PathOp> = chunk.iter().cloned().map(PathOp::unwatch).collect();
            while let Err(e) = self.apply(ops) {
                if e.origin.is_none() {
                    let msg = self.stopped(Some(&e.source));
                    self.found.push(Change::WatcherStopped(msg));
                    return;
                }
                // Not watched (excluded at the old path as well): fine.
                ops = e.remaining;
            }
        }
    }

    /// After a move that may change what is excluded below `top`: unwatches
    /// the directories below it that are excluded now.
    fn unwatch_excluded(&mut self, top: &Path) {
        let mut stack = vec![top.to_path_buf()];
        let mut excluded = Vec::new();
        while let Some(d) = stack.pop() {
            let Ok(rd) = std::fs::read_dir(&d) else {
                continue;
            };
            for e in rd.flatten() {
                if !e.file_type().is_ok_and(|t| t.is_dir()) {
                    continue;
                }
                let path = e.path();
                if rel(&self.root, &path).is_some_and(|r| (self.exclude)(&r, true)) {
                    excluded.push(path);
                } else {
                    stack.push(path);
                }
            }
        }
        for d in excluded {
            self.unwatch_tree(&d);
        }
    }

    /// Reads one watched directory: its subdirectories join `next`, and
    /// with `scan` every entry is weighed.
    fn read_dir(
        &self,
        dir: &Path,
        mark: DirMark,
        mut scan: Option<&mut Scanner>,
        next: &mut Vec<(PathBuf, DirMark)>,
    ) {
        let entries = match std::fs::read_dir(dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(e) => {
                log::warn!(
                    "cannot read {}: {e}; changes below it are not seen (rsync will \
                     report the same error)",
                    dir.display()
                );
                return;
            }
        };
        for entry in entries.flatten() {
            match scan.as_deref_mut() {
                Some(s) => {
                    let path = entry.path();
                    let (Ok(m), Some(r)) = (entry.metadata(), rel(&self.root, &path)) else {
                        continue;
                    };
                    if (self.exclude)(&r, m.is_dir()) {
                        continue;
                    }
                    let child = s.entry(mark, &r, &path, &m);
                    if m.is_dir() {
                        next.push((path, child));
                    }
                }
                // Files cost nothing but their directory entry.
                None if entry.file_type().is_ok_and(|t| t.is_dir()) => {
                    let path = entry.path();
                    if rel(&self.root, &path).is_some_and(|r| !(self.exclude)(&r, true)) {
                        next.push((path, DirMark::default()));
                    }
                }
                None => {}
            }
        }
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
