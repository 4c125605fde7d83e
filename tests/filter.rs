//! Agreement of `syncd::config::filter` with real rsync: for a table of exclude
//! patterns (and for random ones), the set of paths rsync copies from a tree
//! full of tricky names equals exactly the set that `Filter::excluded`
//! keeps, and the set a `--delete` run leaves on the destination of an
//! emptied source equals exactly the excluded paths and their ancestors.
//! Both with SOURCE at the virtual root and below it (a non-empty `rel`
//! holding wildcard characters and a backslash, which the anchored-pattern
//! rewrite must escape).

use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use proptest::prelude::*;
use syncd::changeset::escape;
use syncd::config::filter::{ExcludeArg, Filter, FilterError};

/// One entry of a test tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Node {
    Dir,
    File,
    /// A symlink to a directory: rsync (without -L) sees it as a
    /// non-directory, so directory-only patterns must not match it.
    Link,
}

/// The fixed tree of the table test: every name some pattern of the table
/// should, or should not, match. Parents come before children.
fn table_tree() -> Vec<(Vec<u8>, Node)> {
    use Node::*;
    let e: &[(&[u8], Node)] = &[
        (b"a", Dir),
        (b"a/b", Dir),
        (b"a/b/f", File),
        (b"a/b.tmp", File),
        (b"a/x", File),
        (b"a/cache", Dir),
        (b"a/cache/f", File),
        (b"b", File),
        (b"ab.c", File),
        (b"c", Dir),
        (b"c/a", Dir),
        (b"c/a/b", File),
        (b"c/xa", Dir),
        (b"c/xa/b", File),
        (b"cache", Dir),
        (b"cache/y", File),
        (b"cache/sub", Dir),
        (b"cache/sub/z", File),
        (b"d", Dir),
        (b"d/cache", Link),
        (b"d/e", Dir),
        (b"d/e/x", Dir),
        (b"d/e/x/in", File),
        (b"d/e/xx", File),
        (b"dir", Dir),
        (b"dir/f", File),
        (b"dir/deep", Dir),
        (b"dir/deep/g", File),
        (b"dir2", File),
        (b"f", Dir),
        (b"f/dir", File),
        (b"f/.git", File),
        (b"f/cache", File),
        (b"sub", Dir),
        (b"sub/dir", Dir),
        (b"sub/dir/h", File),
        (b"sub/.git", Dir),
        (b"sub/.git/HEAD", File),
        (b"sub/x", File),
        (b".git", Dir),
        (b".git/config", File),
        (b".tmp", File),
        (b"x", File),
        (b"x.tmp", File),
        (b"dir.tmp", Dir),
        (b"dir.tmp/inner", File),
        (b"tmp", File),
        (b"*lit", File),
        (b"\\*lit", File),
        (b"Xlit", File),
        (b"?", File),
        (b"*", File),
        (b"[ab]x", File),
        (b"back\\slash", File),
        (b"my file", File),
        (b"trail ", File),
        (b"-rf", File),
        (b"--exclude=x", File),
        (b"- minus", File),
        (b"+ plus", File),
        (b"!bang", File),
        (b"#hash", File),
        (b";semi", File),
        (b"new\nline", File),
        (b"\xc3\xa9", File),
        (b"\xff", File),
        (b"\xff\xfe.tmp", File),
        (b"\xc3\x28", Dir),
        (b"\xc3\x28/a", File),
        (b"9lives", File),
        (b"]", File),
        (b":", File),
        (b"-", File),
        (b"7", File),
        (b"\x0b", File),
        (b"v", Dir),
        (b"v/w", Dir),
        (b"v/w/x", Dir),
        (b"v/w/x/y", File),
    ];
    e.iter().map(|(p, n)| (p.to_vec(), *n)).collect()
}

/// The pattern table: each case is the list of `--exclude` values given
/// together. Checked with every `rel` of [`RELS`].
const TABLE: &[&[&[u8]]] = &[
    &[b"*.tmp"],
    &[b"/cache/"],
    &[b"cache/"],
    &[b"cache"],
    &[b"a/b"],
    &[b"/a/b/"],
    &[b"/a/b"],
    &[b"**/x"],
    &[b"dir/***"],
    &[b"dir/**"],
    &[b"[ab]*"],
    &[b"\\*lit"],
    &[b"*lit"],
    &[b"?"],
    &[b".git/"],
    &[b"/*.tmp"],
    &[b"*/*.tmp"],
    &[b"d/**/x"],
    &[b"/v/**/y"],
    &[b"v/*/x/"],
    &[b"**.tmp"],
    &[b"a**b"],
    &[b"x/"],
    &[b"[!a-c]*.tmp"],
    &[b"[^ab]"],
    &[b"[]ab]*"],
    &[b"[[:digit:]]*"],
    &[b"[[:alpha:]]"],
    &[b"[a-"],
    &[b"[]a]"],
    &[b"[!]]"],
    &[b"[a-]"],
    &[b"[\\]]"],
    &[b"[[:a]"],
    &[b"[[:digit:]x]"],
    &[b"[[:space:]]"],
    &[b"[[:punct:]]"],
    &[b"[[:bogus:]]"],
    &[b"/a[/]b"],
    &[b"x\\"],
    &[b"*\\"],
    &[b"back\\slash"],
    &[b"back\\\\slash*"],
    &[b"[ab]x"],
    &[b"\\[ab]x"],
    &[b"- - minus"],
    &[b"- + plus"],
    &[b"!bang"],
    &[b"#hash"],
    &[b";semi"],
    &[b"trail "],
    &[b"my file"],
    &[b"-rf"],
    &[b"--exclude=x"],
    &[b"new\nline"],
    &[b"\xc3\xa9"],
    &[b"\xff*"],
    &[b"*.tmp", b"/cache/", b".git/", b"dir/***"],
    &[b"- a/b", b"**/x", b"[ab]*"],
];

/// Cases of [`TABLE`] whose result depends on the directories between the
/// virtual root and SOURCE: `*/*.tmp` matches a top-level `x.tmp` once it
/// has a parent directory, as in rsync.
const REACH_INTO_REL: &[&[&[u8]]] = &[&[b"*/*.tmp"]];

/// SOURCE below the virtual root: none, one with a backslash (literal in a
/// pattern without wildcards), and one holding `[`, `*` and a backslash.
const RELS: &[&[u8]] = &[b"", b"top/p\\q", b"v[1]*\\p/s d"];

/// Creates `tree` under `root`.
fn build(root: &Path, tree: &[(Vec<u8>, Node)]) {
    fs::create_dir_all(root).unwrap();
    for (p, n) in tree {
        let path = root.join(OsStr::from_bytes(p));
        match n {
            Node::Dir => fs::create_dir(&path).unwrap(),
            Node::File => fs::write(&path, p).unwrap(),
            Node::Link => std::os::unix::fs::symlink(".", &path).unwrap(),
        }
    }
}

/// Every path below `root` (relative, as bytes) with whether it is a
/// directory (not following symlinks).
fn walk(root: &Path) -> Vec<(Vec<u8>, bool)> {
    fn rec(dir: &Path, prefix: &[u8], out: &mut Vec<(Vec<u8>, bool)>) {
        for e in fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let mut p = prefix.to_vec();
            if !p.is_empty() {
                p.push(b'/');
            }
            p.extend_from_slice(e.file_name().as_bytes());
            let is_dir = e.file_type().unwrap().is_dir();
            out.push((p.clone(), is_dir));
            if is_dir {
                rec(&e.path(), &p, out);
            }
        }
    }
    let mut out = Vec::new();
    if root.exists() {
        rec(root, b"", &mut out);
    }
    out
}

fn under(dir: &Path, rel: &[u8]) -> PathBuf {
    if rel.is_empty() {
        dir.to_path_buf()
    } else {
        dir.join(OsStr::from_bytes(rel))
    }
}

/// `rsync -rl [--delete] ARGS -- FROM/ TO/`; returns the exit code.
fn rsync(args: &[OsString], delete: bool, from: &Path, to: &Path) -> i32 {
    let slash = |p: &Path| {
        let mut s = p.as_os_str().to_os_string();
        s.push("/");
        s
    };
    let mut c = Command::new("rsync");
    c.arg("-rl");
    if delete {
        c.arg("--delete");
    }
    c.args(args).arg("--").arg(slash(from)).arg(slash(to));
    let out = c.output().expect("run rsync");
    out.status.code().unwrap_or(-1)
}

fn show(set: &BTreeSet<Vec<u8>>) -> Vec<String> {
    set.iter().map(|p| escape(p)).collect()
}

/// A test tree built once under `base/<rel>`, reused by many cases.
struct Tree {
    _tmp: tempfile::TempDir,
    nodes: Vec<(Vec<u8>, Node)>,
    rel: Vec<u8>,
    base: PathBuf,
    /// Every path of the tree, with whether it is a directory.
    all: Vec<(Vec<u8>, bool)>,
}

impl Tree {
    fn new(nodes: Vec<(Vec<u8>, Node)>, rel: &[u8]) -> Tree {
        let tmp = tempfile::Builder::new()
            .prefix("syncd-filter-")
            .tempdir()
            .unwrap();
        let base = tmp.path().join("base");
        build(&under(&base, rel), &nodes);
        let all = walk(&under(&base, rel));
        Tree {
            _tmp: tmp,
            nodes,
            rel: rel.to_vec(),
            base,
            all,
        }
    }
}

/// Checks one case: what rsync copies is what the filter keeps and, with
/// `delete`, what a `--delete` run leaves is what the filter protects.
/// Returns the paths kept, or a description of the disagreement.
fn agree(tree: &Tree, patterns: &[&[u8]], delete: bool) -> Result<BTreeSet<Vec<u8>>, String> {
    let rel = tree.rel.as_slice();
    let args: Vec<ExcludeArg> = patterns
        .iter()
        .map(|p| ExcludeArg::Pattern(OsStr::from_bytes(p).to_os_string()))
        .collect();
    let filter = Filter::new(&args, rel).map_err(|e| format!("refused: {e}"))?;
    let rsync_args = filter.rsync_args();
    let tmp = tempfile::Builder::new()
        .prefix("syncd-filter-")
        .tempdir()
        .unwrap();

    // The copy: rsync sends exactly what the filter keeps.
    let dst = tmp.path().join("dst");
    let code = rsync(&rsync_args, false, &tree.base, &dst);
    if code != 0 {
        return Err(format!("rsync copy exited {code}"));
    }
    let kept: BTreeSet<Vec<u8>> = tree
        .all
        .iter()
        .filter(|(p, d)| !filter.excluded(p, *d))
        .map(|(p, _)| p.clone())
        .collect();
    let copied: BTreeSet<Vec<u8>> = walk(&under(&dst, rel)).into_iter().map(|e| e.0).collect();
    if kept != copied {
        return Err(format!(
            "copy: syncd keeps but rsync skipped {:?}; rsync sent but syncd excludes {:?}",
            show(&kept.difference(&copied).cloned().collect()),
            show(&copied.difference(&kept).cloned().collect()),
        ));
    }
    if !delete {
        return Ok(kept);
    }

    // The deletion: a full destination, an emptied source, `--delete`:
    // exactly the excluded paths survive, with their ancestors (which cannot
    // be removed while they hold protected paths).
    let (empty, full) = (tmp.path().join("empty"), tmp.path().join("full"));
    fs::create_dir_all(under(&empty, rel)).unwrap();
    build(&under(&full, rel), &tree.nodes);
    let code = rsync(&rsync_args, true, &empty, &full);
    if code != 0 {
        return Err(format!("rsync --delete exited {code}"));
    }
    let mut protected = BTreeSet::new();
    for (p, d) in &tree.all {
        if filter.excluded(p, *d) {
            protected.insert(p.clone());
            let mut a = p.as_slice();
            while let Some(i) = a.iter().rposition(|&b| b == b'/') {
                a = &a[..i];
                protected.insert(a.to_vec());
            }
        }
    }
    let left: BTreeSet<Vec<u8>> = walk(&under(&full, rel)).into_iter().map(|e| e.0).collect();
    if protected != left {
        return Err(format!(
            "delete: syncd protects but rsync deleted {:?}; rsync kept but syncd does not protect {:?}",
            show(&protected.difference(&left).cloned().collect()),
            show(&left.difference(&protected).cloned().collect()),
        ));
    }
    Ok(kept)
}

#[test]
fn filter_agrees_with_rsync_on_the_pattern_table() {
    // One thread per placement of SOURCE: the cost is rsync's start-up.
    let results: Vec<Vec<Result<BTreeSet<Vec<u8>>, String>>> = std::thread::scope(|s| {
        let workers: Vec<_> = RELS
            .iter()
            .map(|rel| {
                s.spawn(move || {
                    let tree = Tree::new(table_tree(), rel);
                    // The deletion side is checked at the virtual root; the
                    // random test checks it at every placement.
                    TABLE
                        .iter()
                        .map(|case| agree(&tree, case, rel.is_empty()))
                        .collect()
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let mut failures = Vec::new();
    for (i, case) in TABLE.iter().enumerate() {
        let pats: Vec<String> = case.iter().map(|p| escape(p)).collect();
        let at_vroot = results[0][i].as_ref().ok();
        for (rel, res) in RELS.iter().zip(&results) {
            match &res[i] {
                Err(e) => failures.push(format!("rel {:?} patterns {pats:?}: {e}", escape(rel))),
                // Below the virtual root, a pattern selects the same paths
                // of SOURCE as at it: anchored ones are anchored at SOURCE.
                // Only unanchored patterns with inner slashes can reach
                // into `rel`, as they do in rsync.
                Ok(kept) if at_vroot != Some(kept) && !REACH_INTO_REL.contains(case) => failures
                    .push(format!(
                        "rel {:?} patterns {pats:?}: keeps {:?}, at the virtual root {:?}",
                        escape(rel),
                        show(kept),
                        at_vroot.map(show)
                    )),
                Ok(_) => {}
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn filter_refuses_patterns_that_exclude_source_itself() {
    let pat = |p: &str| vec![ExcludeArg::Pattern(p.into())];
    for (p, rel) in [
        ("top", "top/sub"),
        ("sub/", "top/sub"),
        ("*", "top"),
        ("t*/", "top"),
    ] {
        match Filter::new(&pat(p), rel.as_bytes()) {
            Err(FilterError::ExcludesRoot { .. }) => {}
            other => panic!("{p} with rel {rel}: {other:?}"),
        }
    }
    // An anchored pattern is anchored at SOURCE: with SOURCE `top`, `/top`
    // means `top/top`, not SOURCE itself.
    assert!(Filter::new(&pat("/top"), b"top").is_ok());
}

/// Pieces random patterns are made of: wildcards, classes, escapes,
/// slashes and names that occur in the random trees.
const PIECES: &[&str] = &[
    "a", "b", "x", ".t", "*", "**", "***", "?", "[ab]", "[!a]", "[^x]", "/", "\\*", "\\", "[", "]",
    "-", " ",
];

/// Names random trees are made of.
const NAMES: &[&[u8]] = &[
    b"a",
    b"b",
    b"x",
    b"ab",
    b"a.t",
    b"x.t",
    b"*",
    b"?",
    b"[a]",
    b"\\",
    b"\\*",
    b"-",
    b"a b",
    b"\xff",
    b"\xc3\xa9",
];

fn pattern() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(prop::sample::select(PIECES), 1..6).prop_map(|v| v.concat().into_bytes())
}

/// A random tree: up to 12 paths of depth 1 to 3; each path's parents are
/// directories, its last component a directory, a file or a symlink.
fn tree() -> impl Strategy<Value = Vec<(Vec<u8>, Node)>> {
    let path = prop::collection::vec(prop::sample::select(NAMES), 1..4);
    let kind = prop::sample::select(&[Node::Dir, Node::File, Node::Link][..]);
    prop::collection::vec((path, kind), 1..12).prop_map(|paths| {
        let mut out: Vec<(Vec<u8>, Node)> = Vec::new();
        for (comps, kind) in paths {
            let mut p = Vec::new();
            for (i, c) in comps.iter().enumerate() {
                if !p.is_empty() {
                    p.push(b'/');
                }
                p.extend_from_slice(c);
                let want = if i + 1 == comps.len() {
                    kind
                } else {
                    Node::Dir
                };
                match out.iter().find(|(q, _)| *q == p).map(|e| e.1) {
                    Some(Node::Dir) => continue,
                    // A file or symlink is in the way.
                    Some(_) => break,
                    None => out.push((p.clone(), want)),
                }
            }
        }
        out
    })
}

proptest! {
    // 64 cases keep the test near 10 s on a loaded 2-core machine (two rsync
    // runs a case); PROPTEST_CASES=N asks for a longer run.
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(64)
    ))]

    #[test]
    fn filter_agrees_with_rsync_on_random_patterns(
        tree in tree(),
        patterns in prop::collection::vec(pattern(), 1..3),
        rel in prop::sample::select(RELS),
    ) {
        let pats: Vec<&[u8]> = patterns.iter().map(|p| p.as_slice()).collect();
        match agree(&Tree::new(tree, rel), &pats, true) {
            Ok(_) => {}
            // Rules syncd refuses are not given to rsync at all.
            Err(e) if e.starts_with("refused") => {}
            Err(e) => {
                let shown: Vec<String> = pats.iter().map(|p| escape(p)).collect();
                prop_assert!(false, "rel {:?} patterns {:?}: {}", escape(rel), shown, e);
            }
        }
    }
}
