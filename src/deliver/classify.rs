//! Run-time classification: what each queued path is in the source *now*,
//! just before rsync runs.
//!
//! A queued path only says "make the destination match the source here";
//! the tree may have changed since the event. This module walks each path
//! down from the root with `lstat` (never following symlinks) and stops at
//! the first component that is not an existing directory: a missing one is
//! the topmost missing path (`Gone`), a file or symlink is sent as a `File`
//! (even when it replaced a directory the event named a child of), and a
//! path that is an existing directory all the way is a `Tree`, or `Attrs`
//! when only its own attributes changed. The walk itself is a pure function
//! over a `stat` callback, so the rules are unit-tested without a disk.

use std::collections::HashMap;

use crate::changeset::{Entry, Kind};
use crate::config::location::Source;

/// What `lstat` says a path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Node {
    Missing,
    Dir,
    /// A regular file, symlink, device, fifo or socket.
    Other,
}

/// The source root is not a directory any more: syncing now would delete
/// the whole mirror, so the run is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootGone;

/// What `lstat` says the root-relative `path` of the source is now.
pub fn lstat(source: &Source, path: &[u8]) -> Node {
    match std::fs::symlink_metadata(source.abs(path)) {
        Ok(m) if m.is_dir() => Node::Dir,
        Ok(_) => Node::Other,
        // ENOTDIR (an ancestor became a file) cannot happen: the walk stops
        // at that ancestor first. Any other error (EACCES) is left to rsync,
        // which reports it and fails the run, so the entry is retried.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Node::Missing,
        Err(_) => Node::Other,
    }
}

/// Classifies `entries` with `stat` standing in for `lstat`. Results are
/// cached per path, so shared ancestors are looked up once.
pub fn classify_with(
    entries: &[Entry],
    mut stat: impl FnMut(&[u8]) -> Node,
) -> Result<Vec<Entry>, RootGone> {
    if entries.is_empty() {
        return Ok(Vec::new());
    }
    if stat(b"") != Node::Dir {
        return Err(RootGone);
    }
    let mut cache: HashMap<Vec<u8>, Node> = HashMap::new();
    let mut out = Vec::with_capacity(entries.len());
    'entries: for e in entries {
        let p = &e.path;
        let ends = p
            .iter()
            .enumerate()
            .filter(|(_, &b)| b == b'/')
            .map(|(i, _)| i)
            .chain(std::iter::once(p.len()))
            .filter(|&i| i > 0);
        for end in ends {
            let q = &p[..end];
            let node = *cache.entry(q.to_vec()).or_insert_with(|| stat(q));
            match node {
                Node::Dir => continue,
                Node::Missing => {
                    out.push(Entry::new(Kind::Gone, q));
                    continue 'entries;
                }
                Node::Other => {
                    out.push(Entry::new(Kind::File, q));
                    continue 'entries;
                }
            }
        }
        let kind = match e.kind {
            Kind::Attrs | Kind::Listing => e.kind,
            _ => Kind::Tree,
        };
        out.push(Entry::new(kind, p.clone()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Kind::*;

    fn run(entries: &[(Kind, &str)], tree: &[(&str, Node)]) -> Result<Vec<Entry>, RootGone> {
        let map: HashMap<&[u8], Node> = tree.iter().map(|(p, n)| (p.as_bytes(), *n)).collect();
        let es: Vec<Entry> = entries
            .iter()
            .map(|(k, p)| Entry::new(*k, p.as_bytes()))
            .collect();
        classify_with(&es, |p| *map.get(p).unwrap_or(&Node::Missing))
    }

    fn e(k: Kind, p: &str) -> Entry {
        Entry::new(k, p.as_bytes())
    }

    #[test]
    fn topmost_missing_path_is_listed() {
        let out = run(&[(File, "t/a/b/f")], &[("", Node::Dir), ("t", Node::Dir)]).unwrap();
        assert_eq!(out, vec![e(Gone, "t/a")]);
    }

    #[test]
    fn an_ancestor_that_became_a_file_is_listed_instead() {
        let out = run(
            &[(File, "d6/sub/f")],
            &[("", Node::Dir), ("d6", Node::Dir), ("d6/sub", Node::Other)],
        )
        .unwrap();
        assert_eq!(out, vec![e(File, "d6/sub")]);
    }

    #[test]
    fn directories_become_trees_unless_only_attributes_changed() {
        let tree = [("", Node::Dir), ("d", Node::Dir)];
        assert_eq!(run(&[(File, "d")], &tree).unwrap(), vec![e(Tree, "d")]);
        assert_eq!(run(&[(Gone, "d")], &tree).unwrap(), vec![e(Tree, "d")]);
        assert_eq!(run(&[(Attrs, "d")], &tree).unwrap(), vec![e(Attrs, "d")]);
        assert_eq!(run(&[(Tree, "")], &tree).unwrap(), vec![e(Tree, "")]);
    }

    #[test]
    fn files_stay_files_and_vanished_files_are_gone() {
        let tree = [("", Node::Dir), ("f", Node::Other)];
        assert_eq!(
            run(&[(File, "f"), (Gone, "g")], &tree).unwrap(),
            vec![e(File, "f"), e(Gone, "g")]
        );
    }

    #[test]
    fn a_missing_root_refuses_the_run() {
        assert_eq!(run(&[(File, "x")], &[("", Node::Missing)]), Err(RootGone));
        assert_eq!(run(&[(File, "x")], &[("", Node::Other)]), Err(RootGone));
    }

    #[test]
    fn shared_ancestors_are_looked_up_once() {
        let mut calls = 0;
        let es: Vec<Entry> = (0..100).map(|i| e(File, &format!("a/b/f{i}"))).collect();
        classify_with(&es, |p| {
            calls += 1;
            if p.starts_with(b"a/b/") {
                Node::Other
            } else {
                Node::Dir
            }
        })
        .unwrap();
        assert_eq!(calls, 1 + 2 + 100);
    }
}
