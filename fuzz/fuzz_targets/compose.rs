//! Fuzzes the composition of moves with entries (issue 14): arbitrary
//! streams of entries of every kind and renames (chains, swaps, over
//! existing names, into and out of subtrees, hostile components), fed to
//! `compose` and to the aggregation window.
//!
//! `compose` must keep every move valid (both paths valid and distinct, no
//! move into its own subtree, never the root) and return canonical,
//! root-confined entries, for its input and again for its own output (the
//! moves, then the entries). The window, fed the same stream with windows
//! closing at arbitrary points, must ship changesets whose moves are valid
//! and whose entries are canonical, and keep nothing once committed. That
//! the composed moves and entries make the same mirror as the raw stream is
//! checked on consistent histories by the property test `tests/compose.rs`.

#![no_main]

use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use syncd::aggregate::Aggregator;
use syncd::changeset::{is_below, valid_path, Entry, Kind, Move, Op};
use syncd::optimize::{compose, is_canonical};

#[derive(Arbitrary, Debug)]
struct Input {
    threshold: u8,
    steps: Vec<Step>,
}

#[derive(Arbitrary, Debug)]
enum Step {
    Entry(KindIn, Vec<Part>),
    Move(Vec<Part>, Vec<Part>),
    Commit,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum KindIn {
    Attrs,
    Listing,
    Gone,
    File,
    Tree,
}

#[derive(Arbitrary, Debug)]
enum Part {
    Name(u8),
    Dot,
    DotDot,
    Empty,
    Bytes(Vec<u8>),
}

/// Few names, so paths collide, nest and chain.
const NAMES: &[&[u8]] = &[b"a", b"b", b"c", b"a b", b"a-", b"\xff", b"t"];

fn path_of(parts: &[Part]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, part) in parts.iter().take(4).enumerate() {
        if i > 0 {
            out.push(b'/');
        }
        match part {
            Part::Name(n) => out.extend_from_slice(NAMES[*n as usize % NAMES.len()]),
            Part::Dot => out.push(b'.'),
            Part::DotDot => out.extend_from_slice(b".."),
            Part::Empty => {}
            Part::Bytes(b) => out.extend_from_slice(b),
        }
    }
    out
}

fn kind_of(k: KindIn) -> Kind {
    match k {
        KindIn::Attrs => Kind::Attrs,
        KindIn::Listing => Kind::Listing,
        KindIn::Gone => Kind::Gone,
        KindIn::File => Kind::File,
        KindIn::Tree => Kind::Tree,
    }
}

fn op_of(s: &Step) -> Option<Op> {
    match s {
        Step::Entry(k, p) => Some(Op::Entry(Entry::new(kind_of(*k), path_of(p)))),
        Step::Move(a, b) => Some(Op::Move(Move {
            from: path_of(a),
            to: path_of(b),
        })),
        Step::Commit => None,
    }
}

fn check_moves(moves: &[Move]) {
    for m in moves {
        assert!(
            valid_path(&m.from) && valid_path(&m.to),
            "invalid move {m:?}"
        );
        assert!(
            !m.from.is_empty() && !m.to.is_empty(),
            "the root moved: {m:?}"
        );
        assert!(
            m.from != m.to && !is_below(&m.to, &m.from),
            "impossible move {m:?}"
        );
    }
}

fuzz_target!(|input: Input| {
    let threshold = if input.threshold < 200 {
        1_000_000
    } else {
        (input.threshold - 200) as usize
    };
    let ops: Vec<Op> = input.steps.iter().filter_map(op_of).collect();
    let (moves, entries) = compose(ops.clone(), threshold);
    check_moves(&moves);
    assert!(is_canonical(&entries), "not canonical: {entries:?}");
    let again: Vec<Op> = moves
        .iter()
        .cloned()
        .map(Op::Move)
        .chain(entries.iter().cloned().map(Op::Entry))
        .collect();
    let (moves2, entries2) = compose(again, threshold);
    check_moves(&moves2);
    assert!(is_canonical(&entries2), "not canonical again: {entries2:?}");

    let t0 = Instant::now();
    let hour = Duration::from_secs(3600);
    let mut agg = Aggregator::new(hour, 1_000_000, threshold, hour);
    let commit = |agg: &mut Aggregator| {
        let cs = agg.changeset(1, t0);
        check_moves(&cs.moves);
        assert!(is_canonical(&cs.entries), "window not canonical: {cs:?}");
        agg.clear(t0);
    };
    for s in &input.steps {
        match op_of(s) {
            Some(Op::Entry(e)) => agg.add(e, t0),
            Some(Op::Move(m)) => agg.moved(m, t0),
            None => commit(&mut agg),
        }
    }
    commit(&mut agg);
    assert!(agg.is_empty(), "the window kept something");
});
