//! The plan: what rsync must be told to sync a set of queued entries, as
//! the source is now.
//!
//! One pure step, shared by the worker, the dry run and the model test, so
//! the three can never drift apart: merge the raw entries of one or many
//! changesets into one canonical set ([`optimize`]), classify every path
//! against the live tree (a `stat` callback, [`classify_with`]), make the
//! classified set canonical again (classification can turn a file entry
//! into its ancestor, which then covers siblings), drop excluded paths
//! (entries queued before an exclude was added must never be listed to
//! rsync, whose own excludes do not protect listed paths), and split what
//! is left into rsync's two runs. No I/O happens here but through `stat`.

use crate::changeset::{Entry, Kind};
use crate::deliver::classify::{classify_with, Node, RootGone};
use crate::deliver::rsync::Run;
use crate::optimize::optimize;

/// The entries of one delivery, classified, canonical and filtered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub entries: Vec<Entry>,
}

/// Entries by kind, for the log line of a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub files: usize,
    pub gone: usize,
    pub trees: usize,
    pub listings: usize,
    pub attrs: usize,
    pub moves: usize,
}

impl std::fmt::Display for Tally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "files {}, gone {}, trees {}, listings {}, attrs {}, moves {}",
            self.files, self.gone, self.trees, self.listings, self.attrs, self.moves
        )
    }
}

/// Plans the delivery of `raw` entries: `stat` stands in for `lstat` of a
/// root-relative path, `excluded` is the exclude filter, and `threshold`
/// the optimizer's full-sync threshold. Fails when the source root is not
/// a directory (syncing then would empty the mirror).
pub fn plan(
    raw: Vec<Entry>,
    stat: impl FnMut(&[u8]) -> Node,
    excluded: impl Fn(&[u8], bool) -> bool,
    threshold: usize,
) -> Result<Plan, RootGone> {
    let merged = optimize(raw, threshold);
    let classified = classify_with(&merged, stat)?;
    let mut entries = optimize(classified, threshold);
    entries.retain(|e| !crate::config::filter::entry_excluded(&excluded, e));
    Ok(Plan { entries })
}

impl Plan {
    /// The runs to start, in order, each with its entries; a run with no
    /// entries is left out. Files first, then trees, then directories, so
    /// a directory's own attributes are set after its content changed.
    /// The trees run lists the files again (rsync's quick check then skips
    /// them at the cost of a `stat`): rsync links hard links only within
    /// one run, and a new tree may hold a new link to a changed file.
    pub fn runs(&self) -> Vec<(Run, Vec<&Entry>)> {
        let mut runs = [
            (Run::Files, Vec::new()),
            (Run::Trees, Vec::new()),
            (Run::Dirs, Vec::new()),
        ];
        for e in &self.entries {
            match e.kind {
                Kind::File | Kind::Gone => runs[0].1.push(e),
                Kind::Tree => runs[1].1.push(e),
                Kind::Attrs | Kind::Listing => runs[2].1.push(e),
            }
        }
        if !runs[1].1.is_empty() {
            let files = self.entries.iter().filter(|e| e.kind == Kind::File);
            runs[1].1.extend(files);
            runs[1]
                .1
                .sort_by(|a, b| crate::changeset::path_cmp(&a.path, &b.path));
        }
        runs.into_iter()
            .filter(|(_, list)| !list.is_empty())
            .collect()
    }

    /// Whether the plan syncs the whole tree.
    pub fn is_full(&self) -> bool {
        self.entries.iter().any(Entry::is_full)
    }

    /// Whether there is nothing to run.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entries by kind.
    pub fn tally(&self) -> Tally {
        let mut t = Tally::default();
        for e in &self.entries {
            match e.kind {
                Kind::File => t.files += 1,
                Kind::Gone => t.gone += 1,
                Kind::Tree => t.trees += 1,
                Kind::Listing => t.listings += 1,
                Kind::Attrs => t.attrs += 1,
            }
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Kind::*;

    fn e(k: Kind, p: &str) -> Entry {
        Entry::new(k, p.as_bytes())
    }

    fn tree(p: &[u8]) -> Node {
        match p {
            b"" | b"d" | b"cache" => Node::Dir,
            b"d/f" | b"cache/x" | b"g" => Node::Other,
            _ => Node::Missing,
        }
    }

    #[test]
    fn merges_classifies_filters_and_splits() {
        let raw = vec![
            e(File, "d/f"),
            e(File, "d/f"),
            e(Attrs, "d"),
            e(File, "cache/x"),
            e(File, "gone/a/b"),
            e(File, "g"),
        ];
        let p = plan(raw, tree, |p, _| p.starts_with(b"cache"), 1000).unwrap();
        assert_eq!(
            p.entries,
            vec![e(Attrs, "d"), e(File, "d/f"), e(File, "g"), e(Gone, "gone")]
        );
        let runs = p.runs();
        assert_eq!(runs.len(), 2);
        assert_eq!(runs[0].0, Run::Files);
        assert_eq!(runs[0].1.len(), 3);
        assert_eq!(runs[1], (Run::Dirs, vec![&e(Attrs, "d")]));
        assert_eq!(
            p.tally(),
            Tally {
                files: 2,
                gone: 1,
                trees: 0,
                attrs: 1,
                ..Tally::default()
            }
        );
        assert!(!p.is_full());
    }

    #[test]
    fn files_are_listed_again_with_trees_so_hard_links_between_them_hold() {
        let p = Plan {
            entries: vec![e(File, "a"), e(Gone, "b"), e(Tree, "t"), e(Listing, "u")],
        };
        let runs = p.runs();
        assert_eq!(runs[0], (Run::Files, vec![&e(File, "a"), &e(Gone, "b")]));
        assert_eq!(runs[1], (Run::Trees, vec![&e(File, "a"), &e(Tree, "t")]));
        assert_eq!(runs[2], (Run::Dirs, vec![&e(Listing, "u")]));
    }

    #[test]
    fn a_file_that_became_a_directory_covers_what_is_below_it() {
        let raw = vec![e(Gone, "d"), e(File, "d/f")];
        let p = plan(raw, tree, |_, _| false, 1000).unwrap();
        assert_eq!(p.entries, vec![e(Tree, "d")]);
        assert_eq!(p.runs().len(), 1);
    }

    #[test]
    fn a_missing_root_refuses_the_plan() {
        let r = plan(vec![e(File, "x")], |_| Node::Missing, |_, _| false, 10);
        assert_eq!(r, Err(RootGone));
    }
}
