//! Moves composed with everything else a window (or a backlog of them)
//! saw: the steps in order in, the moves to replay and the entries of the
//! data pass out.
//!
//! Entries live in one ordered map keyed by path in component order, so
//! everything at or below a path is one range. A move carries the entries
//! at or below `from` to `to` (they name data that now lives there), drops
//! those at or below `to` (the data it replaced is gone), and leaves a
//! `Gone` at `from` (the name no longer exists in the source; on the
//! destination it is gone after the move, or is deleted if the move falls
//! back to a transfer). Then:
//!
//! - a move right after the one that brought its `from` into place is one
//!   move (`a→b`, `b→c` is `a→c`; `a→b`, `b→a` is none), unless `a` and
//!   `c` nest (`a→b`, `b→a/x` needs both renames);
//! - a move of a directory created in the same stream is not a move: the
//!   `Tree` it carries to `to` creates it there;
//! - a delete of the path the last move brought something to undoes that
//!   move (the `Gone`s at both names delete whatever the destination has);
//! - anything else is kept, in order: a swap through a temporary name is
//!   three moves, replayed as they happened.
//!
//! The work is O((n + m) log n) for n steps that move m entries in all.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use super::entries::optimize;
use crate::changeset::{is_below, path_cmp, valid_path, Entry, Kind, Move, Op};

/// A path ordered component by component ([`path_cmp`]), so a subtree is
/// one range of the map.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Key(Vec<u8>);

impl Ord for Key {
    fn cmp(&self, other: &Key) -> Ordering {
        path_cmp(&self.0, &other.0)
    }
}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Key) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

fn at_or_below(p: &[u8], dir: &[u8]) -> bool {
    p == dir || is_below(p, dir)
}

/// `p`, at or below `from`, with `from` replaced by `to`.
fn rebase(p: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = to.to_vec();
    let rest = &p[from.len()..];
    if from.is_empty() && !rest.is_empty() && !to.is_empty() {
        out.push(b'/');
    }
    out.extend_from_slice(rest);
    out
}

#[derive(Default)]
struct State {
    entries: BTreeMap<Key, Kind>,
    moves: Vec<Move>,
}

impl State {
    fn add(&mut self, path: Vec<u8>, kind: Kind) {
        self.entries
            .entry(Key(path))
            .and_modify(|k| *k = (*k).max(kind))
            .or_insert(kind);
    }

    /// Removes and returns everything at or below `p`.
    fn take_subtree(&mut self, p: &[u8]) -> Vec<(Vec<u8>, Kind)> {
        let keys: Vec<Key> = self
            .entries
            .range(Key(p.to_vec())..)
            .take_while(|(k, _)| at_or_below(&k.0, p))
            .map(|(k, _)| k.clone())
            .collect();
        keys.into_iter()
            .filter_map(|k| self.entries.remove(&k).map(|v| (k.0, v)))
            .collect()
    }

    fn entry(&mut self, e: Entry) {
        if e.kind == Kind::Gone && self.moves.last().is_some_and(|m| m.to == e.path) {
            // The data the last move brought here is deleted: the move is
            // pointless, and the Gone it left at its `from` remains.
            self.moves.pop();
        }
        self.add(e.path, e.kind);
    }

    fn relocate(&mut self, m: Move) {
        if m.from == m.to || at_or_below(&m.to, &m.from) {
            // rename(2) refuses both; nothing happened.
            return;
        }
        self.take_subtree(&m.to);
        let moved = self.take_subtree(&m.from);
        let was_new = moved
            .first()
            .is_some_and(|(p, k)| p == &m.from && *k == Kind::Tree);
        for (p, k) in moved {
            self.add(rebase(&p, &m.from, &m.to), k);
        }
        self.add(m.from.clone(), Kind::Gone);
        // A move that carries only a "gone" to `to` carries nothing the
        // stream knows to exist: the entry there decides at run time.
        let to_gone = self.entries.get(&Key(m.to.clone())) == Some(&Kind::Gone);
        if let Some(last) = self.moves.last_mut() {
            // `a→b`, `b→c` is `a→c`, unless `a` and `c` nest: the first
            // move emptied the way for the second, and one rename cannot.
            let nested = at_or_below(&m.to, &last.from) || at_or_below(&last.from, &m.to);
            if last.to == m.from && (last.from == m.to || !nested) {
                if last.from == m.to || to_gone {
                    self.moves.pop();
                } else {
                    last.to = m.to;
                }
                return;
            }
        }
        if !was_new && !to_gone {
            self.moves.push(m);
        }
    }
}

/// The moves to replay, in order, and the canonical entries of the data
/// pass, for a stream of steps. Invalid paths are dropped; past
/// `threshold` entries the data pass is one full sync (the moves stay:
/// they still spare the transfer of what they carry). Files named below a
/// cover stay listed ([`super::entries::split_named`]).
pub fn compose(ops: impl IntoIterator<Item = Op>, threshold: usize) -> (Vec<Move>, Vec<Entry>) {
    let mut st = State::default();
    for op in ops {
        match op {
            Op::Entry(e) if valid_path(&e.path) => st.entry(e),
            Op::Move(m) if valid_path(&m.from) && valid_path(&m.to) => {
                if m.from.is_empty() || m.to.is_empty() {
                    // The root is never moved while watched; treat as data.
                    st.add(m.to, Kind::Tree);
                    continue;
                }
                st.relocate(m)
            }
            _ => {}
        }
    }
    let entries: Vec<Entry> = st
        .entries
        .into_iter()
        .map(|(k, kind)| Entry::new(kind, k.0))
        .collect();
    (st.moves, optimize(entries, threshold))
}

#[cfg(test)]
mod tests {
    use super::*;
    use Kind::*;

    fn e(k: Kind, p: &str) -> Op {
        Op::Entry(Entry::new(k, p.as_bytes()))
    }

    fn mv(a: &str, b: &str) -> Op {
        Op::Move(Move {
            from: a.into(),
            to: b.into(),
        })
    }

    fn m(a: &str, b: &str) -> Move {
        Move {
            from: a.into(),
            to: b.into(),
        }
    }

    fn en(k: Kind, p: &str) -> Entry {
        Entry::new(k, p.as_bytes())
    }

    fn run(ops: Vec<Op>) -> (Vec<Move>, Vec<Entry>) {
        compose(ops, 1_000_000)
    }

    #[test]
    fn a_plain_move_carries_nothing_but_itself() {
        assert_eq!(
            run(vec![mv("a", "b")]),
            (vec![m("a", "b")], vec![en(Gone, "a")])
        );
    }

    #[test]
    fn chains_collapse_and_a_move_back_cancels() {
        assert_eq!(
            run(vec![mv("a", "b"), mv("b", "c")]),
            (vec![m("a", "c")], vec![en(Gone, "a"), en(Gone, "b")])
        );
        assert_eq!(
            run(vec![mv("a", "b"), mv("b", "a")]),
            (vec![], vec![en(Gone, "b")])
        );
    }

    #[test]
    fn a_swap_through_a_temporary_name_is_replayed_in_order() {
        let (moves, entries) = run(vec![mv("a", "t"), mv("b", "a"), mv("t", "b")]);
        assert_eq!(moves, vec![m("a", "t"), m("b", "a"), m("t", "b")]);
        assert_eq!(entries, vec![en(Gone, "t")]);
    }

    #[test]
    fn move_then_modify_and_move_then_delete() {
        assert_eq!(
            run(vec![mv("a", "b"), e(File, "b")]),
            (vec![m("a", "b")], vec![en(Gone, "a"), en(File, "b")])
        );
        assert_eq!(
            run(vec![mv("a", "b"), e(Gone, "b")]),
            (vec![], vec![en(Gone, "a"), en(Gone, "b")])
        );
    }

    #[test]
    fn entries_follow_their_data_and_a_new_tree_is_created_in_place() {
        let (moves, entries) = run(vec![
            e(File, "d/f"),
            e(Tree, "new"),
            e(File, "x/old-content"),
            mv("d", "e"),
            mv("new", "x"),
        ]);
        assert_eq!(moves, vec![m("d", "e")]);
        assert_eq!(
            entries,
            vec![
                en(Gone, "d"),
                en(File, "e/f"),
                en(Gone, "new"),
                en(Tree, "x")
            ]
        );
    }

    #[test]
    fn moves_stay_when_the_data_pass_collapses_to_a_full_sync() {
        let mut ops: Vec<Op> = (0..20).map(|i| e(File, &format!("f{i}"))).collect();
        ops.push(mv("big", "big2"));
        let (moves, entries) = compose(ops, 10);
        assert_eq!(moves, vec![m("big", "big2")]);
        assert_eq!(entries, vec![Entry::full()]);
    }

    #[test]
    fn a_chain_back_into_the_old_place_stays_two_moves() {
        let (moves, _) = run(vec![mv("a", "b"), e(Tree, "a"), mv("b", "a/x")]);
        assert_eq!(moves, vec![m("a", "b"), m("b", "a/x")]);
    }

    #[test]
    fn a_move_into_its_own_subtree_or_onto_itself_is_nothing() {
        assert_eq!(run(vec![mv("a", "a/b"), mv("c", "c")]), (vec![], vec![]));
    }

    #[test]
    fn files_a_tree_covers_stay_listed_unless_the_whole_tree_goes() {
        let ops = vec![e(Tree, "d"), e(File, "d/f"), e(File, "g"), e(File, "d/x/y")];
        let (_, entries) = compose(ops.clone(), 100);
        let want = [
            en(Tree, "d"),
            en(File, "d/f"),
            en(File, "d/x/y"),
            en(File, "g"),
        ];
        assert_eq!(entries, want);
        assert_eq!(compose(ops, 1).1, vec![Entry::full()]);
    }

    #[test]
    fn rebasing_keeps_the_rest_of_the_path() {
        assert_eq!(rebase(b"a/b/c", b"a", b"x/y"), b"x/y/b/c".to_vec());
        assert_eq!(rebase(b"a", b"a", b"z"), b"z".to_vec());
    }
}
