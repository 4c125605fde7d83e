//! The bounded walk that adds watches: up to [`WALK_BATCH`] directories
//! from a stack watched in one `update_paths` round trip to notify's
//! thread, then read, so memory does not grow with the width of a level and
//! a directory is always watched before it is read. Also the unwatching of
//! a subtree, and what a failed watch means (vanished, not permitted, the
//! limit).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

use notify::{PathOp, UpdatePathsError, Watcher as _};

use super::{
    budget, explain, is_limit, rel, unwatched, Change, DirMark, Scanner, Watch, Why,
    LIMIT_LOG_EVERY, WALK_BATCH,
};
use crate::changeset::{Entry, Kind};
use crate::error::{Error, Result};

/// The outcome of watching one batch of directories.
#[derive(Default)]
pub(super) struct Batch {
    /// Not watched, and why.
    failed: Vec<(PathBuf, Why)>,
    /// Gone (or no longer a directory) before they could be watched.
    vanished: Vec<PathBuf>,
    /// The watch limit, and the directories not watched because of it.
    limit: Option<(notify::Error, Vec<PathBuf>)>,
}

/// How a failed watch is told: `None` when the directory vanished.
pub(super) fn why(e: &notify::Error) -> Option<Why> {
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

impl Watch {
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
    pub(super) fn add_tree(&mut self, top: &Path, mut scan: Option<&mut Scanner>) -> Result<bool> {
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
    pub(super) fn list(&mut self, dir: &Path, why: Why) {
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
    pub(super) fn watch_all(&mut self, mut ops: Vec<PathOp>) -> Result<Batch> {
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
    pub(super) fn apply(&mut self, ops: Vec<PathOp>) -> std::result::Result<(), UpdatePathsError> {
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
    pub(super) fn unwatch_tree(&mut self, top: &Path) {
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
    pub(super) fn unwatch_excluded(&mut self, top: &Path) {
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
    pub(super) fn read_dir(
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
}
