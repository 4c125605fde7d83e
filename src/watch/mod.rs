//! The watcher stage: one inotify watch per directory of the source,
//! managed by syncd itself, and the raw events turned into changes.
//!
//! notify runs its callback on its only thread; blocking there overflows the
//! kernel queue, so the callback is a send on an unbounded crossbeam channel
//! and all interpretation happens in the main loop ([`events::interpret`]).
//! syncd walks the tree and adds a non-recursive watch per directory itself,
//! instead of notify's recursive mode, for two reasons: excluded directories
//! are then never watched (a `node_modules` or `.git` would otherwise eat
//! the watch limit), and a directory that cannot be watched is known and
//! reported instead of silently skipped. notify still drops the watches of
//! directories that are deleted or moved away; syncd adds the watches of
//! directories that appear. After a kernel queue overflow the whole watch set
//! is rebuilt, since the creation of a directory may be among the lost
//! events. Symlinks are never followed.

pub mod events;
pub mod scan;
pub mod writers;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use notify::{Config, EventKind, RecommendedWatcher, RecursiveMode, Watcher as _};

pub use events::{abs, explain, interpret, is_limit, rel, Change, RawEvent};
pub use scan::{DirMark, Scanner};

use crate::changeset::Entry;
use crate::error::{Error, Result};

/// Decides whether a root-relative path (a directory when the flag says so)
/// is excluded from replication. Excluded directories are not watched and
/// excluded paths are not queued.
pub type Exclude = Arc<dyn Fn(&[u8], bool) -> bool + Send + Sync>;

/// The predicate that excludes nothing.
pub fn exclude_nothing() -> Exclude {
    Arc::new(|_, _| false)
}

/// How often a degraded watch (some directories could not be watched
/// because of inotify limits) gets a full sync instead.
pub const DEGRADED_RESCAN: Duration = Duration::from_secs(300);

/// The watch of the source tree.
pub struct Watch {
    root: PathBuf,
    tx: crossbeam_channel::Sender<RawEvent>,
    exclude: Exclude,
    inner: Option<RecommendedWatcher>,
    /// How many watches syncd asked for since the watch set was last
    /// rebuilt, for the log. Not a set of paths: notify already keeps two
    /// maps of every watched path, and a third copy was a quarter of the
    /// daemon's memory on a tree of 100,000 directories.
    added: usize,
    /// Set when a directory could not be watched: changes in it are only
    /// caught by the periodic full sync until syncd restarts with a higher
    /// limit.
    degraded_since: Option<Instant>,
    last_rescan: Option<Instant>,
    /// Renames whose `From` half came and whose `To` half has not yet:
    /// (cookie, root-relative old path).
    pending_from: Vec<(usize, Vec<u8>)>,
}

impl Watch {
    /// Watches every directory of `root` that is not excluded. Running out
    /// of watches here is fatal, with the sysctl to raise.
    pub fn start(
        root: &Path,
        tx: crossbeam_channel::Sender<RawEvent>,
        exclude: Exclude,
    ) -> Result<Watch> {
        Watch::start_scanning(root, tx, exclude, None).map(|(w, _)| w)
    }

    /// [`Watch::start`], and with `scan`, the restart scan in the same
    /// walk.
    pub fn start_scanning(
        root: &Path,
        tx: crossbeam_channel::Sender<RawEvent>,
        exclude: Exclude,
        scan: Option<Scanner>,
    ) -> Result<(Watch, Option<Scanner>)> {
        let mut w = Watch {
            root: root.to_path_buf(),
            tx,
            exclude,
            inner: None,
            added: 0,
            degraded_since: None,
            last_rescan: None,
            pending_from: Vec::new(),
        };
        let scanned = w.rebuild_scanning(scan)?;
        Ok((w, scanned))
    }

    /// Drops the watch set and walks the tree again.
    pub fn rebuild(&mut self) -> Result<()> {
        self.rebuild_scanning(None).map(|_| ())
    }

    /// Drops the watch set and walks the tree again; with `scan`, the same
    /// walk finds what changed since then ([`scan`]) and returns it.
    pub fn rebuild_scanning(&mut self, scan: Option<Scanner>) -> Result<Option<Scanner>> {
        self.inner = None;
        self.added = 0;
        let config = Config::default().with_follow_symlinks(false);
        let tx = self.tx.clone();
        let forward = move |ev: RawEvent| {
            if !events::read_only(&ev) {
                let _ = tx.send(ev);
            }
        };
        let inner = RecommendedWatcher::new(forward, config)
            .map_err(|e| Error::Watch(explain(&e, &self.root)))?;
        self.inner = Some(inner);
        let root = self.root.clone();
        let mut scan = scan;
        if let Err(e) = self.add_tree(&root, scan.as_mut()) {
            // Watches added before the failure are released with the watcher.
            self.inner = None;
            return Err(Error::Watch(explain(&e, &root)));
        }
        log::debug!("watching {} directories", self.added);
        Ok(scan)
    }

    /// How many watches were asked for since the watch set was last
    /// (re)built: those of the start-up walk plus those of every directory
    /// that appeared since, excluded ones never counted.
    pub fn added(&self) -> usize {
        self.added
    }

    /// Stops watching.
    pub fn stop(&mut self) {
        self.inner = None;
    }

    /// Interprets a raw event, keeping the watch set in step with the tree
    /// and dropping excluded paths.
    pub fn interpret(&mut self, raw: RawEvent) -> Vec<Change> {
        let dir_event = match &raw {
            Ok(ev) => Some((ev.kind, ev.paths.clone())),
            Err(_) => None,
        };
        let paired = match &raw {
            Ok(ev) => self.pair(ev),
            Err(_) => None,
        };
        let mut out: Vec<Change> = match paired {
            Some(changes) => changes,
            None => interpret(&self.root, raw)
                .into_iter()
                .filter(|c| match c {
                    Change::Entry(e) => !self.excluded(e),
                    _ => true,
                })
                .collect(),
        };
        if let Some((kind, paths)) = dir_event {
            self.follow(kind, &paths, &mut out);
        }
        out
    }

    /// The two halves of a rename inside the tree, paired by inotify's
    /// cookie (notify's tracker): the `From` half waits, and the `To` half
    /// with the same cookie makes one [`Change::Move`]. A half that stays
    /// alone is what it always was: moved out of the tree (gone, once
    /// [`Watch::unpaired`] gives up on it) or moved in (a new path). A move
    /// into an excluded path is a deletion; out of one, an arrival.
    /// Returns `None` for every other event.
    fn pair(&mut self, ev: &notify::Event) -> Option<Vec<Change>> {
        use notify::event::{ModifyKind, RenameMode};
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
                    return Some(vec![Change::Closed(r)]);
                }
                self.pending_from.push((cookie, r.clone()));
                Some(vec![Change::Closed(r)])
            }
            RenameMode::To => {
                let i = self.pending_from.iter().position(|(c, _)| *c == cookie)?;
                let (_, from) = self.pending_from.remove(i);
                let is_dir = std::fs::symlink_metadata(p).is_ok_and(|m| m.is_dir());
                if (self.exclude)(&r, is_dir) {
                    return Some(vec![
                        Change::Closed(r),
                        Change::Entry(Entry::new(crate::changeset::Kind::Gone, from)),
                    ]);
                }
                Some(vec![
                    Change::Closed(r.clone()),
                    Change::Move(crate::changeset::Move { from, to: r }),
                ])
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
            .map(|(_, p)| Change::Entry(Entry::new(crate::changeset::Kind::Gone, p)))
            .collect()
    }

    fn excluded(&self, e: &Entry) -> bool {
        crate::config::filter::entry_excluded(|p, d| (self.exclude)(p, d), e)
    }

    /// Adds watches for directories that appeared (notify itself drops the
    /// watches of those that went away).
    ///
    /// notify keys its watches by path, so a directory renamed over another
    /// one is ambiguous: the old inode's removal can be reported after the
    /// new one's arrival, and takes the watch registered under that path with
    /// it. So after any removal, a path that is a directory again is watched
    /// again, and an arrival always re-adds its tree.
    fn follow(&mut self, kind: EventKind, paths: &[PathBuf], out: &mut Vec<Change>) {
        use notify::event::{CreateKind, ModifyKind, RenameMode};
        for p in paths {
            let arrived = matches!(
                kind,
                EventKind::Create(CreateKind::Folder)
                    | EventKind::Create(CreateKind::Any)
                    | EventKind::Modify(ModifyKind::Name(RenameMode::To))
            );
            let left = matches!(
                kind,
                EventKind::Remove(_) | EventKind::Modify(ModifyKind::Name(RenameMode::From))
            );
            if !(arrived || left) || p == &self.root {
                continue;
            }
            if std::fs::symlink_metadata(p).is_ok_and(|m| m.is_dir()) {
                if let Err(e) = self.add_tree(p, None) {
                    out.push(self.runtime_error(e, p));
                }
            }
        }
    }

    fn runtime_error(&mut self, e: notify::Error, p: &Path) -> Change {
        if is_limit(&e) {
            self.degraded_since.get_or_insert_with(Instant::now);
            Change::Limit(explain(&e, p))
        } else {
            Change::Error(explain(&e, p))
        }
    }

    /// Watches `top` and every directory below it that is not excluded,
    /// level by level: a level's directories are watched before any of
    /// them is read, so an entry created meanwhile has an event or is read.
    /// With `scan`, every entry read is also weighed by the restart scan
    /// (one `lstat` each). Stops at the first watch-limit error; other
    /// errors (a directory that vanished meanwhile, one that cannot be
    /// read) skip that directory, loudly for the unreadable ones.
    fn add_tree(
        &mut self,
        top: &Path,
        mut scan: Option<&mut Scanner>,
    ) -> std::result::Result<(), notify::Error> {
        if self.inner.is_none() {
            return Ok(());
        }
        let top_mark = match (&mut scan, std::fs::symlink_metadata(top)) {
            (Some(s), Ok(m)) => s.root(&m),
            _ => DirMark::default(),
        };
        let mut level = vec![(top.to_path_buf(), top_mark)];
        while !level.is_empty() {
            let mut watched = Vec::with_capacity(level.len());
            for (dir, mark) in level {
                if let Some(r) = rel(&self.root, &dir) {
                    if (self.exclude)(&r, true) {
                        continue;
                    }
                }
                let Some(inner) = self.inner.as_mut() else {
                    return Ok(());
                };
                match inner.watch(&dir, RecursiveMode::NonRecursive) {
                    Ok(()) => self.added += 1,
                    Err(e) if is_limit(&e) => return Err(e),
                    Err(e) => {
                        log::debug!("not watching {}: {e}", dir.display());
                        continue;
                    }
                }
                watched.push((dir, mark));
            }
            let mut next = Vec::new();
            for (dir, mark) in watched {
                self.read_level(&dir, mark, scan.as_deref_mut(), &mut next);
            }
            level = next;
        }
        Ok(())
    }

    /// Reads one watched directory: its subdirectories join `next`, and
    /// with `scan` every entry is weighed.
    fn read_level(
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
            let path = entry.path();
            let is_dir = match scan.as_deref_mut() {
                Some(s) => {
                    let Ok(m) = entry.metadata() else { continue };
                    let Some(r) = rel(&self.root, &path) else {
                        continue;
                    };
                    if (self.exclude)(&r, m.is_dir()) {
                        continue;
                    }
                    let child = s.entry(mark, &r, &path, &m);
                    if m.is_dir() {
                        next.push((path, child));
                    }
                    continue;
                }
                None => entry.file_type().is_ok_and(|t| t.is_dir()),
            };
            if is_dir {
                next.push((path, DirMark::default()));
            }
        }
    }

    /// Waits until notify has handed over every event the kernel queued
    /// before this call.
    pub fn flush_events(&mut self) {
        // notify reads the kernel queue on its own thread as soon as it is
        // readable; a short pause lets it hand over what is queued now.
        std::thread::sleep(std::time::Duration::from_millis(2));
    }

    /// Records that part of the tree is not watched.
    pub fn degrade(&mut self) {
        self.degraded_since.get_or_insert_with(Instant::now);
    }

    /// When the next periodic full sync of a degraded watch is due.
    pub fn next_rescan(&self) -> Option<Instant> {
        let since = self.degraded_since?;
        Some(self.last_rescan.unwrap_or(since) + DEGRADED_RESCAN)
    }

    /// Notes that the periodic full sync was queued.
    pub fn rescanned(&mut self, now: Instant) {
        self.last_rescan = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::changeset::Kind;
    use std::time::Duration;

    fn collect(
        rx: &crossbeam_channel::Receiver<RawEvent>,
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
        assert_eq!(w.added(), 6, "a2 and a2/b watched on arrival");
    }
}
