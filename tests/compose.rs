//! A property test of moves (issue 14), pure and in memory: random
//! sequences of creates, writes, deletes, mkdirs and renames (over files,
//! over empty directories, swaps, chains) on a small tree; the steps the
//! watcher would report go through `deliver::plan` (which composes them);
//! the moves are replayed on a copy of the old tree as the local
//! destination replays them (a move that cannot be is skipped), then the
//! data pass runs against a model of rsync, with each move's new name
//! checked. The copy must equal the new tree; also when the copy is ahead
//! in places (an earlier run read the source after the moves) and when
//! the batch is replayed again after a crash in the middle of it.

use std::collections::BTreeMap;

use proptest::prelude::*;

use syncd::changeset::{is_below, Entry, Kind, Move, Op};
use syncd::deliver::classify::Node as Stat;
use syncd::deliver::plan::plan;
use syncd::deliver::replay::{parent, NewDirs};
use syncd::deliver::rsync::Run;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Dir,
    File(u32),
}

/// A tree: path -> node; the root (`""`) is a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Tree(BTreeMap<Vec<u8>, Node>);

fn under(q: &[u8], p: &[u8]) -> bool {
    q == p || is_below(q, p)
}

impl Tree {
    fn new() -> Tree {
        Tree(BTreeMap::from([(Vec::new(), Node::Dir)]))
    }

    fn is_dir(&self, p: &[u8]) -> bool {
        matches!(self.0.get(p), Some(Node::Dir))
    }

    fn exists(&self, p: &[u8]) -> bool {
        self.0.contains_key(p)
    }

    fn stat(&self, p: &[u8]) -> Stat {
        match self.0.get(p) {
            None => Stat::Missing,
            Some(Node::Dir) => Stat::Dir,
            Some(_) => Stat::Other,
        }
    }

    fn subtree(&self, p: &[u8]) -> Vec<(Vec<u8>, Node)> {
        self.0
            .iter()
            .filter(|(q, _)| under(q, p))
            .map(|(q, n)| (q.clone(), n.clone()))
            .collect()
    }

    fn remove(&mut self, p: &[u8]) {
        self.0.retain(|q, _| !under(q, p));
    }

    fn empty_dir(&self, p: &[u8]) -> bool {
        self.is_dir(p) && !self.0.keys().any(|q| is_below(q, p))
    }

    /// rename(2): `to`'s parent must be a directory; a file replaces a
    /// file, a directory an empty directory; never into itself.
    fn rename(&mut self, from: &[u8], to: &[u8]) -> bool {
        let Some(node) = self.0.get(from).cloned() else {
            return false;
        };
        if under(to, from) || !self.is_dir(parent(to)) {
            return false;
        }
        match (&node, self.0.get(to)) {
            (_, None) => {}
            (Node::Dir, Some(_)) if self.empty_dir(to) => {}
            (Node::File(_), Some(Node::File(_))) => {}
            _ => return false,
        }
        let moved = self.subtree(from);
        self.remove(from);
        self.remove(to);
        for (q, n) in moved {
            let mut r = to.to_vec();
            r.extend_from_slice(&q[from.len()..]);
            self.0.insert(r, n);
        }
        true
    }
}

fn join(d: &[u8], n: &[u8]) -> Vec<u8> {
    syncd::changeset::join(d, n)
}

/// A random operation: indexes pick among the tree's paths at run time.
#[derive(Debug, Clone)]
enum Ev {
    Create(u8, u8),
    Write(u8),
    Delete(u8),
    Mkdir(u8, u8),
    Rename(u8, u8, u8),
    RenameOver(u8, u8),
}

const NAMES: &[&[u8]] = &[b"a", b"b", b"c", b"a b", b"-x", b"\xff", b"n\nl"];

fn pick(v: &[Vec<u8>], i: u8) -> Option<Vec<u8>> {
    (!v.is_empty()).then(|| v[i as usize % v.len()].clone())
}

/// Applies `ev` to the source and returns the steps the watcher reports.
fn apply(src: &mut Tree, ev: &Ev, n: &mut u32) -> Vec<Op> {
    let dirs: Vec<Vec<u8>> = src
        .0
        .iter()
        .filter(|(_, v)| **v == Node::Dir)
        .map(|(k, _)| k.clone())
        .collect();
    let files: Vec<Vec<u8>> = src
        .0
        .iter()
        .filter(|(_, v)| **v != Node::Dir)
        .map(|(k, _)| k.clone())
        .collect();
    let all: Vec<Vec<u8>> = src.0.keys().filter(|k| !k.is_empty()).cloned().collect();
    *n += 1;
    let entry = |k: Kind, p: Vec<u8>| Op::Entry(Entry::new(k, p));
    match *ev {
        Ev::Create(d, name) => {
            let p = join(
                &pick(&dirs, d).unwrap_or_default(),
                NAMES[name as usize % NAMES.len()],
            );
            if src.exists(&p) {
                return vec![];
            }
            src.0.insert(p.clone(), Node::File(*n));
            vec![entry(Kind::File, p)]
        }
        Ev::Write(f) => match pick(&files, f) {
            Some(p) => {
                src.0.insert(p.clone(), Node::File(*n));
                vec![entry(Kind::File, p)]
            }
            None => vec![],
        },
        Ev::Delete(i) => match pick(&all, i) {
            Some(p) => {
                // rm -rf reports every path, deepest first.
                let mut gone: Vec<Vec<u8>> = src.subtree(&p).into_iter().map(|(q, _)| q).collect();
                gone.reverse();
                src.remove(&p);
                gone.into_iter().map(|q| entry(Kind::Gone, q)).collect()
            }
            None => vec![],
        },
        Ev::Mkdir(d, name) => {
            let p = join(
                &pick(&dirs, d).unwrap_or_default(),
                NAMES[name as usize % NAMES.len()],
            );
            if src.exists(&p) {
                return vec![];
            }
            src.0.insert(p.clone(), Node::Dir);
            vec![entry(Kind::Tree, p)]
        }
        Ev::Rename(i, d, name) => {
            let (Some(from), Some(dir)) = (pick(&all, i), pick(&dirs, d)) else {
                return vec![];
            };
            let to = join(&dir, NAMES[name as usize % NAMES.len()]);
            rename(src, from, to)
        }
        Ev::RenameOver(i, j) => {
            let (Some(from), Some(to)) = (pick(&all, i), pick(&all, j)) else {
                return vec![];
            };
            rename(src, from, to)
        }
    }
}

fn rename(src: &mut Tree, from: Vec<u8>, to: Vec<u8>) -> Vec<Op> {
    if src.rename(&from, &to) {
        vec![Op::Move(Move { from, to })]
    } else {
        vec![]
    }
}

/// The local destination's replay of `moves` (see `deliver::replay::local`).
fn replay(dst: &mut Tree, moves: &[Move], new: &NewDirs) {
    for m in moves {
        if !dst.exists(&m.from) {
            continue;
        }
        let up = parent(&m.to).to_vec();
        if !dst.is_dir(&up) {
            if !new.covers(&up) {
                continue;
            }
            // create_dir_all
            let mut p = Vec::new();
            for part in up.split(|&b| b == b'/') {
                p = join(&p, part);
                if dst.exists(&p) && !dst.is_dir(&p) {
                    break;
                }
                dst.0.entry(p.clone()).or_insert(Node::Dir);
            }
        }
        // A failed rename falls back to the transfer of `to`.
        dst.rename(&m.from, &m.to);
    }
}

/// rsync's file-level runs over the listed entries (as in `tests/model.rs`,
/// without modes): implied parents are made, a missing source path is
/// deleted, a recursive run copies the subtree exactly.
fn rsync(src: &Tree, dst: &mut Tree, list: &[&Entry], recursive: bool) -> Result<(), String> {
    for e in list {
        let p = e.path.as_slice();
        let ancestors = p
            .iter()
            .enumerate()
            .filter(|(_, &b)| b == b'/')
            .map(|(i, _)| p[..i].to_vec());
        for anc in ancestors {
            match src.0.get(&anc) {
                Some(Node::Dir) => {
                    if !dst.is_dir(&anc) {
                        dst.remove(&anc);
                        dst.0.insert(anc.clone(), Node::Dir);
                    }
                }
                _ => return Err(format!("{anc:?}: not a directory in the source")),
            }
        }
        match src.0.get(p) {
            None => dst.remove(p),
            Some(Node::Dir) if recursive => {
                dst.remove(p);
                dst.0.extend(src.subtree(p));
            }
            Some(Node::Dir) => {
                if !dst.is_dir(p) {
                    dst.remove(p);
                }
                dst.0.insert(p.to_vec(), Node::Dir);
            }
            Some(n) => {
                dst.remove(p);
                dst.0.insert(p.to_vec(), n.clone());
            }
        }
    }
    Ok(())
}

fn ev() -> impl Strategy<Value = Ev> {
    prop_oneof![
        (any::<u8>(), any::<u8>()).prop_map(|(a, b)| Ev::Create(a, b)),
        any::<u8>().prop_map(Ev::Write),
        any::<u8>().prop_map(Ev::Delete),
        (any::<u8>(), any::<u8>()).prop_map(|(a, b)| Ev::Mkdir(a, b)),
        (any::<u8>(), any::<u8>(), any::<u8>()).prop_map(|(a, b, c)| Ev::Rename(a, b, c)),
        (any::<u8>(), any::<u8>()).prop_map(|(a, b)| Ev::RenameOver(a, b)),
    ]
}

/// What can put the destination out of step with the old tree before a
/// batch of moves is replayed.
#[derive(Debug, Clone, Default)]
struct Adversity {
    /// Paths (picked among the old and new trees) an earlier run sent
    /// after the moves had happened: the destination is ahead there.
    ahead: Vec<u8>,
    /// A crash after this many moves were replayed (modulo the batch), and
    /// the whole batch replayed again after the restart.
    crash: Option<u8>,
}

fn run(setup: &[Ev], evs: &[Ev], adv: &Adversity) -> Result<(), TestCaseError> {
    let mut src = Tree::new();
    let mut n = 0;
    for e in setup {
        apply(&mut src, e, &mut n);
    }
    let mut dst = src.clone();
    let old = src.clone();
    let mut ops = Vec::new();
    for e in evs {
        ops.extend(apply(&mut src, e, &mut n));
    }
    let paths: Vec<Vec<u8>> = old.0.keys().chain(src.0.keys()).cloned().collect();
    for &i in &adv.ahead {
        let p = pick(&paths, i).unwrap();
        // An earlier run that could not list it is no harm.
        let _ = rsync(&src, &mut dst, &[&Entry::new(Kind::Tree, p)], true);
    }
    let mut p = plan(ops, |q| src.stat(q), |_, _| false, 1_000_000)
        .map_err(|_| TestCaseError::fail("root gone"))?;
    let new_dirs = NewDirs::of(&p.entries);
    if let Some(k) = adv.crash {
        let k = k as usize % (p.moves.len() + 1);
        replay(&mut dst, &p.moves[..k], &new_dirs);
    }
    replay(&mut dst, &p.moves, &new_dirs);
    p.check_moves(|q| src.stat(q), |_, _| false)
        .map_err(|_| TestCaseError::fail("root gone"))?;
    for (run, list) in p.runs() {
        rsync(&src, &mut dst, &list, run == Run::Trees).map_err(TestCaseError::fail)?;
    }
    prop_assert_eq!(&dst, &src, "plan {:?}", p);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn moves_composed_and_replayed_then_the_data_pass_mirror_the_source(
        setup in proptest::collection::vec(ev(), 0..25),
        evs in proptest::collection::vec(ev(), 1..30),
    ) {
        run(&setup, &evs, &Adversity::default())?;
    }

    /// The same when the destination is ahead of the old tree (an earlier
    /// run read the source after the moves) or the batch is replayed again
    /// after a crash: the quick check of every move's new name repairs what
    /// a rename alone would get wrong.
    #[test]
    fn moves_replayed_on_a_destination_ahead_or_twice_still_mirror_the_source(
        setup in proptest::collection::vec(ev(), 0..25),
        evs in proptest::collection::vec(ev(), 1..30),
        ahead in proptest::collection::vec(any::<u8>(), 0..3),
        crash in proptest::option::of(any::<u8>()),
    ) {
        run(&setup, &evs, &Adversity { ahead, crash })?;
    }
}

#[test]
fn a_swap_and_a_chain_replay_exactly() {
    let setup = [Ev::Create(0, 0), Ev::Create(0, 1), Ev::Mkdir(0, 2)];
    run(
        &setup,
        &[Ev::RenameOver(0, 1), Ev::Rename(1, 0, 3), Ev::Delete(2)],
        &Adversity::default(),
    )
    .unwrap();
}
