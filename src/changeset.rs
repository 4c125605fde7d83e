//! The in-memory changeset: what one aggregation window decided must be
//! made true on every destination.
//!
//! These are the core types the pipeline passes between its stages. They are
//! deliberately not serializable: the on-disk form lives in `record`, so a
//! refactor here can never silently change the format of a store.

use std::cmp::Ordering;

/// What an entry asks rsync to do with its path.
///
/// The variants are ordered by strength: when one window sees the same path
/// twice, the stronger kind wins (`Tree` over `File` over `Gone` over
/// `Listing` over `Attrs`), because a stronger kind does everything a weaker
/// one does for that path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// An existing directory whose own mode, owner or times changed: a
    /// non-recursive run updates it without descending.
    Attrs,
    /// An existing directory whose entries changed while nobody watched
    /// (the restart scan): its own attributes and its direct children are
    /// synced, children gone from the source are deleted, and nothing below
    /// them is descended into.
    Listing,
    /// A path that disappeared (deleted or moved away). rsync deletes it on
    /// the destination through `--delete-missing-args`.
    Gone,
    /// A changed file or symlink. Sent as it is in the source at run time.
    File,
    /// A new or moved-in directory, or the whole root after an overflow: rsync
    /// recurses into it with `--delete`, so nothing created inside it before
    /// its inotify watch existed can be missed.
    Tree,
}

impl Kind {
    /// Whether an entry of this kind also covers every path below it.
    /// `Attrs` and `Listing` do not: they touch the directory itself (and a
    /// listing its direct children by rsync's quick check) and nothing
    /// deeper. A `File` or `Gone` path that turns out to be a directory at
    /// run time is synced as a `Tree` (see `classify`), so they subsume too.
    pub fn subsumes_children(self) -> bool {
        !matches!(self, Kind::Attrs | Kind::Listing)
    }

    /// The one-word name used in logs and `queue inspect`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Attrs => "attrs",
            Kind::Listing => "listing",
            Kind::Gone => "gone",
            Kind::File => "file",
            Kind::Tree => "tree",
        }
    }
}

/// One path of a changeset, relative to the watched root.
///
/// The path is raw bytes: Linux names may hold any byte but `/` and NUL, and
/// need not be UTF-8. The root itself is the empty path. A valid path has no
/// leading or trailing `/`, no empty component, and no `.` or `..`
/// component, so it can never point outside the root (see [`valid_path`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Entry {
    pub kind: Kind,
    pub path: Vec<u8>,
}

impl Entry {
    pub fn new(kind: Kind, path: impl Into<Vec<u8>>) -> Entry {
        Entry {
            kind,
            path: path.into(),
        }
    }

    /// The entry that asks for a full sync of the root.
    pub fn full() -> Entry {
        Entry::new(Kind::Tree, Vec::new())
    }

    /// Whether this entry is a full sync of the root.
    pub fn is_full(&self) -> bool {
        self.kind == Kind::Tree && self.path.is_empty()
    }
}

/// A rename seen whole (its two halves paired by inotify's cookie): the
/// destination renames `from` to `to` before the data pass, instead of
/// deleting one and transferring the other.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Move {
    pub from: Vec<u8>,
    pub to: Vec<u8>,
}

/// One step of what a window saw, in order: an entry, or a move. Order
/// matters only around moves: an entry before a move names the path its
/// data had then, and the move carries it along.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Op {
    Entry(Entry),
    Move(Move),
}

/// A set of entries committed as one unit, with the time it was formed.
///
/// Applying it means: the moves, in order, on the destination, then one
/// data pass over the entries, whose paths are where the data is after the
/// moves.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Changeset {
    /// Milliseconds since the Unix epoch when the window closed.
    pub created_ms: u64,
    /// The watermark before this changeset: every change made in the
    /// source before this time was in an earlier changeset (0 when not
    /// known, as in changesets written before watermarks existed).
    pub since_ms: u64,
    /// The renames to replay first, in order.
    pub moves: Vec<Move>,
    /// The optimized entries, in [`path_cmp`] order.
    pub entries: Vec<Entry>,
}

impl Changeset {
    /// A changeset of `entries` alone.
    pub fn new(created_ms: u64, entries: Vec<Entry>) -> Changeset {
        Changeset {
            created_ms,
            entries,
            ..Changeset::default()
        }
    }

    /// Whether it holds nothing to do.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.moves.is_empty()
    }

    /// The changeset as a stream of steps: its moves, then its entries.
    pub fn ops(&self) -> impl Iterator<Item = Op> + '_ {
        let moves = self.moves.iter().cloned().map(Op::Move);
        moves.chain(self.entries.iter().cloned().map(Op::Entry))
    }

    /// Whether this changeset is (or contains) a full sync of the root.
    pub fn is_full(&self) -> bool {
        self.entries.iter().any(Entry::is_full)
    }
}

/// Whether `path` is a valid root-relative path (see [`Entry`]).
pub fn valid_path(path: &[u8]) -> bool {
    if path.is_empty() {
        return true;
    }
    path.split(|&b| b == b'/')
        .all(|c| !c.is_empty() && c != b"." && c != b".." && !c.contains(&0))
}

/// Orders paths component by component, so that every path below `a`
/// sorts directly after `a` and before any sibling of `a` (`a`, `a/b`,
/// `a b` rather than byte order's `a`, `a b`, `a/b`). The optimizer relies
/// on this to prune a subtree in one linear sweep.
pub fn path_cmp(a: &[u8], b: &[u8]) -> Ordering {
    let key = |c: u8| if c == b'/' { 0u8 } else { c };
    a.iter().map(|&c| key(c)).cmp(b.iter().map(|&c| key(c)))
}

/// Whether `path` lies strictly below `dir` (the root, `dir` empty, holds
/// every non-empty path).
pub fn is_below(path: &[u8], dir: &[u8]) -> bool {
    if dir.is_empty() {
        return !path.is_empty();
    }
    path.len() > dir.len() && path.starts_with(dir) && path[dir.len()] == b'/'
}

/// The root-relative parent of a path (`""` for a top-level name).
pub fn parent(p: &[u8]) -> &[u8] {
    match p.iter().rposition(|&b| b == b'/') {
        Some(i) => &p[..i],
        None => b"",
    }
}

/// Joins a root-relative directory and a child name.
pub fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    if dir.is_empty() {
        return name.to_vec();
    }
    let mut p = Vec::with_capacity(dir.len() + 1 + name.len());
    p.extend_from_slice(dir);
    p.push(b'/');
    p.extend_from_slice(name);
    p
}

/// Escapes a path for a log line or a table: printable ASCII stays, every
/// other byte (newline, control bytes, invalid UTF-8, backslash) becomes a
/// `\xNN` escape, so a hostile name cannot forge a line of output.
pub fn escape(path: &[u8]) -> String {
    let mut s = String::with_capacity(path.len());
    for &b in path {
        if (0x20..0x7f).contains(&b) && b != b'\\' {
            s.push(b as char);
        } else {
            s.push_str(&format!("\\x{b:02x}"));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_order_keeps_subtrees_together() {
        let mut v: Vec<&[u8]> = vec![b"a b", b"a/b", b"a", b"a-x", b"a/b/c", b""];
        v.sort_by(|x, y| path_cmp(x, y));
        assert_eq!(v, vec![&b""[..], b"a", b"a/b", b"a/b/c", b"a b", b"a-x"]);
    }

    #[test]
    fn below_needs_a_separator() {
        assert!(is_below(b"foo/bar", b"foo"));
        assert!(!is_below(b"foobar", b"foo"));
        assert!(!is_below(b"foo", b"foo"));
        assert!(is_below(b"x", b""));
        assert!(!is_below(b"", b""));
    }

    #[test]
    fn validity_rejects_escapes() {
        assert!(valid_path(b""));
        assert!(valid_path(b"a/b c/\xff\n"));
        for bad in [
            &b"/a"[..],
            b"a/",
            b"a//b",
            b"..",
            b"a/./b",
            b"a/../b",
            b"a\0b",
        ] {
            assert!(!valid_path(bad), "{}", escape(bad));
        }
    }

    #[test]
    fn escape_neutralizes_control_bytes() {
        assert_eq!(escape(b"a\nb\\\xff"), "a\\x0ab\\x5c\\xff");
    }
}
