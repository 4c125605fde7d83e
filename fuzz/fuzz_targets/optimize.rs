//! Fuzzes the changeset optimizer and the aggregation window (issue 6) with
//! arbitrary event sequences: entries of every kind on byte paths built from
//! tricky names and hostile components (`..`, `.`, empty components,
//! absolute and trailing-slash paths, NUL, raw bytes).
//!
//! `optimize` must return a valid, canonical, root-confined set that is a
//! fixed point (optimizing it again changes nothing), that only keeps input
//! entries (each with the strongest kind its path had) unless it collapsed
//! to one full sync past the threshold (dropping the files named below
//! covers first), that keeps every file named below a cover, and that loses
//! no coverage: every
//! valid input path is listed with at least its kind, or lies below an
//! output entry whose kind covers its subtree.
//!
//! The `Aggregator` fed the same entries, interleaved with files opened and
//! closed for writing and with windows closing, with an early-flush cap
//! that makes it compact and flush as it goes, must never ship a file that
//! is still open (the hold is longer than the run), must not be due again
//! right after a commit when nothing changed, and, once every file is
//! closed, must have shipped changesets that together cover the same
//! paths and, when none of them is a full sync, optimize to the same set
//! but for the files named below covers.

#![no_main]

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use syncd::aggregate::Aggregator;
use syncd::changeset::{valid_path, Entry, Kind};
use syncd::optimize::{is_canonical, optimize, split_named, DEFAULT_FULL_SYNC_THRESHOLD};

#[derive(Arbitrary, Debug)]
struct Input {
    /// Below 128 the default threshold; else a small one (0..=127), which
    /// exercises the collapse to a full sync.
    threshold: u8,
    /// The aggregator's early-flush cap.
    cap: u8,
    steps: Vec<Step>,
}

/// What the main loop hands the window.
#[derive(Arbitrary, Debug)]
enum Step {
    Add(RawEntry),
    /// A file created or written (`Change::Writing`).
    Writing(PathIn),
    /// A file closed after writing, renamed or removed (`Change::Closed`).
    Closed(PathIn),
    /// The window's time is up.
    Commit,
}

#[derive(Arbitrary, Debug)]
struct RawEntry {
    kind: KindIn,
    path: PathIn,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum KindIn {
    Attrs,
    Gone,
    File,
    Tree,
}

#[derive(Arbitrary, Debug)]
enum PathIn {
    Parts {
        absolute: bool,
        trailing: bool,
        parts: Vec<Part>,
    },
    Raw(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
enum Part {
    Name(u8),
    Dot,
    DotDot,
    Empty,
    Nul,
    Bytes(Vec<u8>),
}

/// Few names, so paths collide and nest; several sort between `a` and
/// `a/...` in byte order, which `path_cmp` must not be fooled by.
const NAMES: &[&[u8]] = &[
    b"a",
    b"b",
    b"a b",
    b"a.b",
    b"a\x01",
    b"a-",
    b"\xff\xfe",
    b"-x",
    b"#c",
    b"sp ace\n",
];

fn path_of(p: &PathIn) -> Vec<u8> {
    match p {
        PathIn::Raw(b) => b.clone(),
        PathIn::Parts {
            absolute,
            trailing,
            parts,
        } => {
            let mut out = Vec::new();
            if *absolute {
                out.push(b'/');
            }
            for (i, part) in parts.iter().enumerate() {
                if i > 0 {
                    out.push(b'/');
                }
                match part {
                    Part::Name(n) => out.extend_from_slice(NAMES[*n as usize % NAMES.len()]),
                    Part::Dot => out.push(b'.'),
                    Part::DotDot => out.extend_from_slice(b".."),
                    Part::Empty => {}
                    Part::Nul => out.extend_from_slice(b"n\0l"),
                    Part::Bytes(b) => out.extend_from_slice(b),
                }
            }
            if *trailing {
                out.push(b'/');
            }
            out
        }
    }
}

fn kind_of(k: KindIn) -> Kind {
    match k {
        KindIn::Attrs => Kind::Attrs,
        KindIn::Gone => Kind::Gone,
        KindIn::File => Kind::File,
        KindIn::Tree => Kind::Tree,
    }
}

/// Whether `path` stays inside the root however it is joined to it.
fn root_confined(path: &[u8]) -> bool {
    !path.starts_with(b"/")
        && !path.contains(&0)
        && path.split(|&b| b == b'/').all(|c| c != b".." && c != b".")
}

/// Every proper ancestor of a non-empty path, the root (`""`) first.
fn ancestors(path: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::once(&path[..0]).chain(
        path.iter()
            .enumerate()
            .filter(|(_, &b)| b == b'/')
            .map(move |(i, _)| &path[..i]),
    )
}

/// Whether `e` is covered by the set `out` (path -> kind).
fn covered(out: &HashMap<&[u8], Kind>, e: &Entry) -> bool {
    if out.get(e.path.as_slice()).is_some_and(|&k| k >= e.kind) {
        return true;
    }
    !e.path.is_empty()
        && ancestors(&e.path).any(|a| out.get(a).is_some_and(|k| k.subsumes_children()))
}

/// Path -> strongest kind listed for it in `v`.
fn index(v: &[Entry]) -> HashMap<&[u8], Kind> {
    let mut m: HashMap<&[u8], Kind> = HashMap::new();
    for e in v {
        let k = m.entry(e.path.as_slice()).or_insert(e.kind);
        *k = (*k).max(e.kind);
    }
    m
}

fuzz_target!(|input: Input| {
    let threshold = if input.threshold < 128 {
        DEFAULT_FULL_SYNC_THRESHOLD
    } else {
        (input.threshold - 128) as usize
    };
    let entries: Vec<Entry> = input
        .steps
        .iter()
        .filter_map(|s| match s {
            Step::Add(r) => Some(Entry::new(kind_of(r.kind), path_of(&r.path))),
            _ => None,
        })
        .collect();
    let valid: Vec<&Entry> = entries.iter().filter(|e| valid_path(&e.path)).collect();

    let out = optimize(entries.clone(), threshold);
    assert!(is_canonical(&out), "not canonical: {out:?}");
    for e in &out {
        assert!(root_confined(&e.path), "escapes the root: {e:?}");
    }
    assert_eq!(optimize(out.clone(), threshold), out, "not idempotent");

    // Soundness: below the threshold the output is the unbounded result,
    // and that one only keeps input entries, each with the strongest kind
    // its path had.
    let unbounded = optimize(entries.clone(), usize::MAX);
    let valid_owned: Vec<Entry> = valid.iter().map(|e| (*e).clone()).collect();
    let strongest = index(&valid_owned);
    for e in &unbounded {
        assert_eq!(
            strongest.get(e.path.as_slice()),
            Some(&e.kind),
            "invented: {e:?}"
        );
    }
    // Past the threshold the files named below covers go first, then the
    // whole set collapses.
    let trees_only = split_named(unbounded.clone()).0;
    if unbounded.len() <= threshold {
        assert_eq!(out, unbounded, "the threshold changed a small set");
    } else if trees_only.len() <= threshold {
        assert_eq!(out, trees_only, "the named files stayed past the threshold");
    } else {
        assert_eq!(out, vec![Entry::full()], "no collapse past the threshold");
    }
    // Files named below a cover (not the whole root) stay listed, for the
    // files run: the quick check of a tree's run cannot see a replacement
    // of the same size and mtime.
    let full = unbounded.iter().any(Entry::is_full);
    let named = |e: &&&Entry| strongest.get(e.path.as_slice()) == Some(&Kind::File);
    for e in valid.iter().filter(named) {
        if !full {
            assert!(
                unbounded.iter().any(|o| o.path == e.path),
                "dropped the named {e:?} in {unbounded:?}"
            );
        }
    }

    // Coverage: nothing valid is lost.
    let idx = index(&out);
    for e in &valid {
        assert!(covered(&idx, e), "lost {e:?} in {out:?}");
    }

    // The aggregation window, flushing early past a small cap. Time stands
    // still, so only closing a file releases it.
    let t0 = Instant::now();
    let hold = Duration::from_secs(3600);
    let mut agg = Aggregator::new(hold, input.cap as usize, threshold, hold);
    let mut open: HashSet<Vec<u8>> = HashSet::new();
    let mut sets: Vec<Vec<Entry>> = Vec::new();
    let mut commit = |agg: &mut Aggregator, open: &HashSet<Vec<u8>>| {
        let cs = agg.changeset(1, t0);
        assert!(is_canonical(&cs.entries), "window not canonical: {cs:?}");
        for e in &cs.entries {
            let shipped_open = e.kind == Kind::File && open.contains(&e.path);
            assert!(!shipped_open, "shipped a file still open: {e:?}");
        }
        sets.push(cs.entries);
        agg.clear(t0);
    };
    let mut entries_iter = entries.iter();
    for step in &input.steps {
        match step {
            Step::Add(_) => agg.add(entries_iter.next().expect("one per Add").clone(), t0),
            Step::Writing(p) => {
                let p = path_of(p);
                agg.writing(&p, t0);
                open.insert(p);
            }
            Step::Closed(p) => {
                let p = path_of(p);
                agg.closed(&p);
                // A path that was not open is a directory going away: the
                // files open below it go with it (never the root itself).
                if !open.remove(&p) && !p.is_empty() {
                    open.retain(|o| !syncd::changeset::is_below(o, &p));
                }
            }
            Step::Commit => commit(&mut agg, &open),
        }
        if agg.due(t0) {
            commit(&mut agg, &open);
            assert!(!agg.due(t0), "due again right after a commit");
        }
    }
    for p in open.drain() {
        agg.closed(&p);
    }
    commit(&mut agg, &open);
    assert!(
        agg.is_empty() && !agg.due(t0),
        "entries left after closing all"
    );
    let all: Vec<Entry> = sets.concat();
    let idx = index(&all);
    for e in &valid {
        assert!(covered(&idx, e), "the windows lost {e:?}");
    }
    if !all.iter().any(Entry::is_full) {
        // The same set but for the files named below covers: the windows
        // keep only those where something was removed before (compose),
        // and may keep one that a later window's tree made a cover of.
        let (trees, _) = split_named(optimize(all, usize::MAX));
        let (want_trees, _) = split_named(unbounded);
        assert_eq!(trees, want_trees, "windows differ");
    }
});
