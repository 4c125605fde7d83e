//! The plan: the moves to replay and what rsync must be told to sync a set
//! of queued changesets, as the source is now.
//!
//! One pure step, shared by the worker, the dry run and the model test, so
//! the three can never drift apart: merge the moves and entries of one or
//! many changesets, in order, into the moves to replay and one canonical
//! set of entries ([`compose`]), classify every path against the live tree
//! (a `stat` callback, [`classify_with`]), make the classified set
//! canonical again (classification can turn a file entry into its
//! ancestor, which then covers siblings), drop excluded paths (entries
//! queued before an exclude was added must never be listed to rsync, whose
//! own excludes do not protect listed paths), and split what is left into
//! rsync's runs. After the moves are replayed, the new name of each is
//! checked by rsync's quick check ([`Plan::check_moves`]), which sends
//! the data of a move that could not be replayed. No I/O happens here but
//! through `stat`.

use crate::changeset::{Entry, Kind, Move, Op};
use crate::config::filter::entry_excluded;
use crate::deliver::classify::{classify_with, Node, RootGone};
use crate::deliver::rsync::Run;
use crate::optimize::{compose, optimize, split_named};

/// One delivery: the moves to replay first, in order; then the entries,
/// classified, canonical and filtered; and the new names of the moves,
/// which rsync checks by its quick check only (the data is there when the
/// rename put it there).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    pub moves: Vec<Move>,
    pub entries: Vec<Entry>,
    pub quick: Vec<Entry>,
    /// New names of renamed files to send first with `--fuzzy` (see
    /// [`Plan::fuzzy_first`]).
    pub fuzzy: Vec<Entry>,
    /// Files named changed that a tree of `entries` covers: sent in the
    /// files run too, since the trees run's quick check cannot see a
    /// replacement of the same size and mtime ([`split_named`]).
    pub sure: Vec<Entry>,
    /// The moves may have been replayed before: `quick` is compared by
    /// content ([`Run::Resend`]), not by the quick check.
    pub distrust_moves: bool,
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

/// Plans the delivery of the steps `ops` (the moves and entries of the
/// pending changesets, oldest first): `stat` stands in for `lstat` of a
/// root-relative path, `excluded` is the exclude filter, and `threshold`
/// the optimizer's full-sync threshold. Fails when the source root is not
/// a directory (syncing then would empty the mirror).
pub fn plan(
    ops: impl IntoIterator<Item = Op>,
    mut stat: impl FnMut(&[u8]) -> Node,
    excluded: impl Fn(&[u8], bool) -> bool,
    threshold: usize,
) -> Result<Plan, RootGone> {
    let (moves, mut merged) = compose(ops, threshold);
    let mut kept = Vec::with_capacity(moves.len());
    for m in moves {
        // An exclude added since the move was queued: the excluded side is
        // never touched; the other is synced as data.
        let gone = |p: &[u8]| entry_excluded(&excluded, &Entry::new(Kind::Gone, p));
        match (gone(&m.from), gone(&m.to)) {
            (false, false) => kept.push(m),
            (_, to_out) => {
                if !to_out {
                    merged.push(Entry::new(Kind::Tree, m.to));
                }
            }
        }
    }
    let merged = optimize(merged, threshold);
    let classified = classify_with(&merged, &mut stat)?;
    let mut entries = optimize(classified, threshold);
    entries.retain(|e| !entry_excluded(&excluded, e));
    // Classified, a named file that is a directory now is a tree, and a
    // missing one is gone below its tree: neither is named any more.
    let (entries, sure) = split_named(entries);
    Ok(Plan {
        moves: kept,
        entries,
        quick: Vec::new(),
        fuzzy: Vec::new(),
        sure,
        distrust_moves: false,
    })
}

impl Plan {
    /// Checks the `to` of every move, replayed or not, in the trees run by
    /// rsync's quick check: a file list and no data when the rename put
    /// the right data there, a transfer when it could not (the move fell
    /// back) or put the wrong data there. A rename alone is not proof: an
    /// earlier run may have read the source after the move and sent the
    /// moved data already (then a replayed swap swaps it back), and a
    /// batch replayed again would repeat its swaps (the worker does not
    /// replay a batch twice, and then sets [`Plan::distrust_moves`]).
    pub fn check_moves(
        &mut self,
        stat: impl FnMut(&[u8]) -> Node,
        excluded: impl Fn(&[u8], bool) -> bool,
    ) -> Result<(), RootGone> {
        if self.moves.is_empty() {
            return Ok(());
        }
        let tos = self.moves.iter().map(|m| m.to.clone());
        let raw = tos.map(|p| Entry::new(Kind::Tree, p)).collect();
        let raw = optimize(raw, usize::MAX);
        let mut quick = classify_with(&raw, stat)?;
        quick.retain(|e| !entry_excluded(&excluded, e));
        self.quick = optimize(quick, usize::MAX);
        Ok(())
    }

    /// For a destination that cannot rename: the moves of a file within its
    /// directory that fell back to transfers are sent first with
    /// `--fuzzy`, while the old name is still there to serve as the basis
    /// (`--fuzzy` looks only in the new file's directory, and only for a
    /// file that is not deleted in the same run).
    pub fn fuzzy_first(&mut self, fell_back: &[Vec<u8>], mut stat: impl FnMut(&[u8]) -> Node) {
        let same_dir: std::collections::HashSet<&[u8]> = self
            .moves
            .iter()
            .filter(|m| crate::changeset::parent(&m.from) == crate::changeset::parent(&m.to))
            .map(|m| m.to.as_slice())
            .collect();
        self.fuzzy = fell_back
            .iter()
            .filter(|to| same_dir.contains(to.as_slice()) && stat(to) == Node::Other)
            .map(|to| Entry::new(Kind::File, to.clone()))
            .collect();
        self.fuzzy
            .sort_by(|a, b| crate::changeset::path_cmp(&a.path, &b.path));
        self.fuzzy.dedup();
    }

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
        let fuzzy = (Run::Fuzzy, self.fuzzy.iter().collect::<Vec<_>>());
        runs[0].1.extend(self.sure.iter());
        for e in &self.entries {
            match e.kind {
                Kind::File | Kind::Gone => runs[0].1.push(e),
                Kind::Tree => runs[1].1.push(e),
                Kind::Attrs | Kind::Listing => runs[2].1.push(e),
            }
        }
        runs[0]
            .1
            .sort_by(|a, b| crate::changeset::path_cmp(&a.path, &b.path));
        runs[0].1.dedup_by(|a, b| a.path == b.path);
        let resend = match self.distrust_moves {
            true => self.quick.iter().collect(),
            false => {
                runs[1].1.extend(self.quick.iter());
                Vec::new()
            }
        };
        if !runs[1].1.is_empty() {
            let files = self.entries.iter().filter(|e| e.kind == Kind::File);
            runs[1].1.extend(files);
            runs[1]
                .1
                .sort_by(|a, b| crate::changeset::path_cmp(&a.path, &b.path));
            runs[1].1.dedup_by(|a, b| a.path == b.path);
        }
        let [files, trees, dirs] = runs;
        [fuzzy, files, trees, (Run::Resend, resend), dirs]
            .into_iter()
            .filter(|(_, list)| !list.is_empty())
            .collect()
    }

    /// Whether the plan syncs the whole tree.
    pub fn is_full(&self) -> bool {
        self.entries.iter().any(Entry::is_full)
    }

    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.moves.is_empty() && self.quick.is_empty()
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
        t.moves = self.moves.len();
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

    fn ops(v: Vec<Entry>) -> Vec<Op> {
        v.into_iter().map(Op::Entry).collect()
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
        let p = plan(ops(raw), tree, |p, _| p.starts_with(b"cache"), 1000).unwrap();
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
            ..Plan::default()
        };
        let runs = p.runs();
        assert_eq!(runs[0], (Run::Files, vec![&e(File, "a"), &e(Gone, "b")]));
        assert_eq!(runs[1], (Run::Trees, vec![&e(File, "a"), &e(Tree, "t")]));
        assert_eq!(runs[2], (Run::Dirs, vec![&e(Listing, "u")]));
    }

    #[test]
    fn a_file_that_became_a_directory_covers_what_is_below_it() {
        let raw = vec![e(File, "d"), e(Attrs, "d/f"), e(Gone, "d/x")];
        let p = plan(ops(raw), tree, |_, _| false, 1000).unwrap();
        assert_eq!(p.entries, vec![e(Tree, "d")]);
        assert_eq!(p.runs().len(), 1);
    }

    #[test]
    fn a_file_named_where_a_directory_was_deleted_is_sent_besides_the_tree() {
        let raw = vec![e(Gone, "d"), e(File, "d/f")];
        let p = plan(ops(raw), tree, |_, _| false, 1000).unwrap();
        assert_eq!(p.entries, vec![e(Tree, "d")]);
        assert_eq!(p.sure, vec![e(File, "d/f")]);
        let runs = p.runs();
        assert_eq!(runs[0], (Run::Files, vec![&e(File, "d/f")]));
        assert_eq!(runs[1], (Run::Trees, vec![&e(Tree, "d")]));
    }

    #[test]
    fn moves_are_kept_unless_an_exclude_now_covers_one_side() {
        let mv = |a: &str, b: &str| {
            Op::Move(Move {
                from: a.into(),
                to: b.into(),
            })
        };
        let p = plan(
            vec![mv("d", "g"), mv("cache/x", "d"), mv("g", "cache/y")],
            tree,
            |p, _| p.starts_with(b"cache"),
            1000,
        )
        .unwrap();
        // d→g stays; cache/x→d is the data of d; g→cache/y deletes g
        // (which this test's source has again, so it is sent).
        assert_eq!(
            p.moves,
            vec![Move {
                from: b"d".to_vec(),
                to: b"g".to_vec()
            }]
        );
        assert_eq!(p.entries, vec![e(Tree, "d"), e(File, "g")]);
    }

    #[test]
    fn the_new_name_of_every_move_is_checked_in_the_trees_run() {
        let mv = |f: &str, t: &str| Move {
            from: f.as_bytes().to_vec(),
            to: t.as_bytes().to_vec(),
        };
        let mut p = Plan {
            moves: vec![mv("x", "d/f"), mv("y", "d")],
            ..Plan::default()
        };
        p.check_moves(tree, |_, _| false).unwrap();
        assert_eq!(p.quick, vec![e(Tree, "d")]);
        assert_eq!(p.runs(), vec![(Run::Trees, vec![&e(Tree, "d")])]);
    }

    #[test]
    fn a_missing_root_refuses_the_plan() {
        let r = plan(ops(vec![e(File, "x")]), |_| Node::Missing, |_, _| false, 10);
        assert_eq!(r, Err(RootGone));
    }
}
