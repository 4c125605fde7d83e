//! The directories of the tree that are not watched, and why: syncd never
//! leaves a directory unwatched silently.
//!
//! A directory that cannot be watched at run time (inotify's watch limit,
//! a permission the daemon lacks, or any other error than the directory
//! having vanished) is the top of a subtree whose changes no event reports.
//! The watcher lists it here by its root-relative path and syncs it whole
//! when it is listed; `syncd status` and `queue inspect` show the list.
//! While it is listed it is synced whole again every [`RESYNC`] and
//! watching it is retried every [`RETRY`], and at once when its own
//! attributes change (a `chmod` that lets the daemon read it); once a retry
//! watches it, it is synced whole one last time, for what changed
//! meanwhile, and leaves the list. Nothing here touches the file system.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// How often watching the listed directories is retried.
pub const RETRY: Duration = Duration::from_secs(30);

/// How often the listed directories are synced whole while they are
/// listed.
pub const RESYNC: Duration = Duration::from_secs(300);

/// Why a directory is not watched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Why {
    /// Out of inotify watches (`fs.inotify.max_user_watches`).
    Limit,
    /// The daemon may not read it (EACCES, EPERM).
    Permission,
    /// Any other error, as notify reported it.
    Other(String),
}

impl Why {
    /// The reason in words, for the log and the status.
    pub fn describe(&self) -> String {
        match self {
            Why::Limit => "out of inotify watches (fs.inotify.max_user_watches)".into(),
            Why::Permission => "permission denied".into(),
            Why::Other(e) => e.clone(),
        }
    }
}

/// The list of unwatched directories and its timers.
#[derive(Debug, Default)]
pub struct Unwatched {
    dirs: BTreeMap<Vec<u8>, Why>,
    next_retry: Option<Instant>,
    next_resync: Option<Instant>,
}

/// `p` is `top` or below it.
pub fn at_or_below(p: &[u8], top: &[u8]) -> bool {
    top.is_empty() || p == top || (p.starts_with(top) && p.get(top.len()) == Some(&b'/'))
}

impl Unwatched {
    /// Lists `dir`; `true` when it was not listed before (the caller then
    /// syncs it whole).
    pub fn add(&mut self, dir: Vec<u8>, why: Why, now: Instant) -> bool {
        if self.dirs.is_empty() {
            self.next_retry = Some(now + RETRY);
            self.next_resync = Some(now + RESYNC);
        }
        self.dirs.insert(dir, why).is_none()
    }

    /// Takes `dir` off the list (it is watched now, or gone).
    pub fn remove(&mut self, dir: &[u8]) -> bool {
        let had = self.dirs.remove(dir).is_some();
        self.reset_if_empty();
        had
    }

    /// Takes every listed directory at or below `top` off the list.
    pub fn remove_at_or_below(&mut self, top: &[u8]) {
        let below: Vec<Vec<u8>> = self.at_or_below(top).map(|(p, _)| p.to_vec()).collect();
        for p in below {
            self.dirs.remove(&p);
        }
        self.reset_if_empty();
    }

    fn reset_if_empty(&mut self) {
        if self.dirs.is_empty() {
            self.next_retry = None;
            self.next_resync = None;
        }
    }

    /// The listed directories at or below `top`, in order.
    pub fn at_or_below<'a>(&'a self, top: &'a [u8]) -> impl Iterator<Item = (&'a [u8], &'a Why)> {
        // `top/...` sorts right after `top` only up to the names that
        // continue `top` with a byte below '/' (`top-x`): compare each.
        self.dirs
            .range::<[u8], _>((std::ops::Bound::Included(top), std::ops::Bound::Unbounded))
            .take_while(move |(p, _)| p.starts_with(top))
            .filter(move |(p, _)| at_or_below(p, top))
            .map(|(p, w)| (p.as_slice(), w))
    }

    /// Why `dir` is listed, if it is.
    pub fn get(&self, dir: &[u8]) -> Option<&Why> {
        self.dirs.get(dir)
    }

    pub fn len(&self) -> usize {
        self.dirs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.dirs.is_empty()
    }

    /// The first `n` listed directories, in path order.
    pub fn first(&self, n: usize) -> impl Iterator<Item = &[u8]> {
        self.dirs.keys().take(n).map(Vec::as_slice)
    }

    /// The distinct reasons, most frequent first, joined with "; ".
    pub fn reasons(&self) -> Option<String> {
        let mut counts: Vec<(String, usize)> = Vec::new();
        for why in self.dirs.values() {
            let d = why.describe();
            match counts.iter_mut().find(|(r, _)| *r == d) {
                Some((_, n)) => *n += 1,
                None => counts.push((d, 1)),
            }
        }
        counts.sort_by_key(|c| std::cmp::Reverse(c.1));
        (!counts.is_empty()).then(|| {
            counts
                .into_iter()
                .map(|(r, _)| r)
                .collect::<Vec<_>>()
                .join("; ")
        })
    }

    /// The listed directories, when their retry is due (and the next one
    /// then set).
    pub fn due_retry(&mut self, now: Instant) -> Vec<Vec<u8>> {
        match self.next_retry {
            Some(t) if now >= t => {
                self.next_retry = Some(now + RETRY);
                self.dirs.keys().cloned().collect()
            }
            _ => Vec::new(),
        }
    }

    /// The listed directories, when their periodic sync is due (and the
    /// next one then set).
    pub fn due_resync(&mut self, now: Instant) -> Vec<Vec<u8>> {
        match self.next_resync {
            Some(t) if now >= t => {
                self.next_resync = Some(now + RESYNC);
                self.dirs.keys().cloned().collect()
            }
            _ => Vec::new(),
        }
    }

    /// The earliest moment a timer here is due.
    pub fn next_wake(&self) -> Option<Instant> {
        [self.next_retry, self.next_resync]
            .into_iter()
            .flatten()
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_knows_what_is_below_a_path_and_why() {
        let now = Instant::now();
        let mut u = Unwatched::default();
        assert!(u.next_wake().is_none());
        assert!(u.add(b"a/b".to_vec(), Why::Permission, now));
        assert!(!u.add(b"a/b".to_vec(), Why::Permission, now), "listed once");
        u.add(b"a/b/c".to_vec(), Why::Limit, now);
        u.add(b"a/b-c".to_vec(), Why::Limit, now);
        u.add(b"x".to_vec(), Why::Limit, now);
        let below: Vec<&[u8]> = u.at_or_below(b"a/b").map(|(p, _)| p).collect();
        assert_eq!(below, [&b"a/b"[..], b"a/b/c"]);
        assert_eq!(u.at_or_below(b"").count(), 4);
        assert_eq!(
            u.reasons().unwrap(),
            "out of inotify watches (fs.inotify.max_user_watches); permission denied"
        );
        assert_eq!(u.next_wake(), Some(now + RETRY));
        assert!(u.due_retry(now).is_empty());
        assert_eq!(u.due_retry(now + RETRY).len(), 4);
        assert!(u.due_retry(now + RETRY).is_empty(), "the next one is later");
        u.remove_at_or_below(b"a/b");
        assert_eq!(u.first(10).collect::<Vec<_>>(), [&b"a/b-c"[..], b"x"]);
        u.remove(b"a/b-c");
        u.remove(b"x");
        assert!(u.is_empty() && u.next_wake().is_none());
    }
}
