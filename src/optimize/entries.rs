//! The changeset optimizer: pure code that turns the raw entries of one or
//! many windows into the smallest canonical set that syncs the same mirror.
//!
//! It owns the optimizer's rules (ARCHITECTURE.md): drop invalid paths, keep one entry per
//! path with the strongest kind, drop everything at or below an entry that
//! covers its subtree but the files named there (see
//! [`split_named`]), and collapse to one full sync when the set is huge.
//! It does no I/O, so it is unit-tested, property-tested and fuzzed; the
//! run-time facts (does the path exist, is it a directory) are `classify`'s.
//! It sorts once and sweeps once: O(n log n) in the number of entries.

use crate::changeset::{is_below, path_cmp, valid_path, Entry, Kind};

/// Past this many entries after pruning, a changeset becomes one full sync
/// of the root: a recursive rsync of the whole tree is then about as cheap
/// as the list, and the record stays small.
pub const DEFAULT_FULL_SYNC_THRESHOLD: usize = 200_000;

/// Whether `e`, below `cover`, stays listed: a file named changed below a
/// path that covers its subtree (but the whole root). A tree's run, and the
/// run of a file or gone path that is a directory by then (`classify`),
/// compare by size and mtime (rsync's quick check), which cannot see a
/// file replaced by other content of the same size and mtime (`cp -p`, or
/// a rewrite within one tick of the kernel's clock) where the destination
/// already has one, as it does when the directory was deleted and made
/// again. So such a file is sent in the files run too (`--ignore-times`),
/// and stays in the changeset for it.
fn named_below(cover: &Entry, e: &Entry) -> bool {
    !cover.is_full() && e.kind == Kind::File
}

/// Returns the canonical form of `entries`: valid paths only, sorted in
/// [`path_cmp`] order, one entry per path (the strongest kind), nothing at or
/// below a path whose kind covers its subtree but the files named there,
/// and `[Tree(root)]` when more than `threshold` entries would remain
/// even without those files.
pub fn optimize(mut entries: Vec<Entry>, threshold: usize) -> Vec<Entry> {
    entries.retain(|e| valid_path(&e.path));
    // Equal paths end up adjacent with the strongest kind first, so the
    // sweep keeps the first of each run.
    entries.sort_unstable_by(|a, b| path_cmp(&a.path, &b.path).then(b.kind.cmp(&a.kind)));
    let mut out: Vec<Entry> = Vec::with_capacity(entries.len());
    // The last kept entry that covers its subtree. Because of the order,
    // once the sweep leaves its subtree it never comes back.
    let mut cover: Option<usize> = None;
    let mut named = 0;
    // The path of the entry before, kept or not: a weaker kind of a path
    // whose strongest was dropped below a cover is not a file named there.
    let mut prev: Option<Vec<u8>> = None;
    for e in entries {
        if prev.as_deref() == Some(e.path.as_slice()) {
            continue;
        }
        prev = Some(e.path.clone());
        if let Some(i) = cover {
            if is_below(&e.path, &out[i].path) {
                if named_below(&out[i], &e) {
                    named += 1;
                    out.push(e);
                }
                continue;
            }
        }
        if e.kind.subsumes_children() {
            cover = Some(out.len());
        }
        out.push(e);
    }
    if out.len() > threshold && named > 0 {
        // The named files are a refinement; the trees alone sync the same.
        out = split_named(out).0;
    }
    if out.len() > threshold {
        return vec![Entry::full()];
    }
    out
}

/// `entries`, canonical, without the files named below a cover for which
/// `keep` is false.
pub fn keep_named(entries: Vec<Entry>, keep: impl Fn(&Entry) -> bool) -> Vec<Entry> {
    sweep_named(entries, keep).0
}

/// Splits a canonical set into its entries without the files named below
/// a cover, and those files: what the trees run sends and what the files
/// run sends regardless.
pub fn split_named(entries: Vec<Entry>) -> (Vec<Entry>, Vec<Entry>) {
    sweep_named(entries, |_| false)
}

/// One sweep of a canonical set: the files named below a cover that
/// `keep` takes stay in place, the others come out apart.
fn sweep_named(entries: Vec<Entry>, keep: impl Fn(&Entry) -> bool) -> (Vec<Entry>, Vec<Entry>) {
    let mut rest: Vec<Entry> = Vec::with_capacity(entries.len());
    let mut named = Vec::new();
    let mut cover: Option<usize> = None;
    for e in entries {
        if let Some(i) = cover {
            if is_below(&e.path, &rest[i].path) {
                if named_below(&rest[i], &e) {
                    if keep(&e) {
                        rest.push(e);
                    } else {
                        named.push(e);
                    }
                }
                continue;
            }
        }
        if e.kind.subsumes_children() {
            cover = Some(rest.len());
        }
        rest.push(e);
    }
    (rest, named)
}

/// Whether `entries` is already canonical: what [`optimize`] would return
/// for it, below any threshold. Used by tests and the fuzz targets.
pub fn is_canonical(entries: &[Entry]) -> bool {
    let mut cover: Option<&Entry> = None;
    for (i, e) in entries.iter().enumerate() {
        if !valid_path(&e.path) {
            return false;
        }
        if i > 0 && path_cmp(&entries[i - 1].path, &e.path).is_ge() {
            return false;
        }
        if let Some(c) = cover {
            if is_below(&e.path, &c.path) {
                if named_below(c, e) {
                    continue;
                }
                return false;
            }
        }
        if e.kind.subsumes_children() {
            cover = Some(e);
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::changeset::Kind;
    use Kind::*;

    fn e(kind: Kind, p: &str) -> Entry {
        Entry::new(kind, p.as_bytes())
    }

    fn opt(v: Vec<Entry>) -> Vec<Entry> {
        optimize(v, DEFAULT_FULL_SYNC_THRESHOLD)
    }

    #[test]
    fn dedupes_and_keeps_the_strongest_kind() {
        let out = opt(vec![
            e(File, "a"),
            e(Gone, "a"),
            e(File, "a"),
            e(Attrs, "d"),
            e(Tree, "d"),
        ]);
        assert_eq!(out, vec![e(File, "a"), e(Tree, "d")]);
    }

    #[test]
    fn a_tree_absorbs_everything_below_it_but_the_files_named() {
        let out = opt(vec![
            e(File, "new/a/b/f"),
            e(Tree, "new/a"),
            e(Tree, "new"),
            e(Attrs, "new/a/b"),
            e(Gone, "new/x"),
            e(File, "newer"),
        ]);
        let want = vec![e(Tree, "new"), e(File, "new/a/b/f"), e(File, "newer")];
        assert_eq!(out, want);
        assert!(is_canonical(&out));
        let (rest, named) = split_named(out);
        assert_eq!(rest, vec![e(Tree, "new"), e(File, "newer")]);
        assert_eq!(named, vec![e(File, "new/a/b/f")]);
    }

    #[test]
    fn files_below_a_file_or_gone_path_are_kept_but_not_below_the_whole_root() {
        let raw = vec![
            e(File, "f"),
            e(File, "f/x"),
            e(Gone, "g"),
            e(File, "g/y"),
            e(Attrs, "g/z"),
        ];
        let out = opt(raw);
        assert_eq!(
            out,
            vec![e(File, "f"), e(File, "f/x"), e(Gone, "g"), e(File, "g/y")]
        );
        assert!(is_canonical(&out));
        let out = opt(vec![Entry::full(), e(File, "a/b")]);
        assert_eq!(out, vec![Entry::full()]);
        assert!(!is_canonical(&[Entry::full(), e(File, "a/b")]));
        assert!(!is_canonical(&[e(Gone, "g"), e(Attrs, "g/z")]));
    }

    #[test]
    fn a_path_that_is_also_a_tree_below_a_tree_is_not_a_named_file() {
        let out = opt(vec![e(Tree, "d"), e(Tree, "d/x"), e(File, "d/x")]);
        assert_eq!(out, vec![e(Tree, "d")]);
    }

    #[test]
    fn past_the_threshold_the_named_files_go_before_the_trees_do() {
        let mut v: Vec<Entry> = (0..10).map(|i| e(File, &format!("d/f{i}"))).collect();
        v.push(e(Tree, "d"));
        v.push(e(File, "g"));
        assert_eq!(optimize(v.clone(), 12).len(), 12);
        assert_eq!(optimize(v.clone(), 5), vec![e(Tree, "d"), e(File, "g")]);
        assert_eq!(optimize(v, 1), vec![Entry::full()]);
    }

    #[test]
    fn only_the_topmost_missing_path_is_listed() {
        let out = opt(vec![
            e(Gone, "t/a/b/f"),
            e(Gone, "t/a"),
            e(Gone, "t/a/b"),
            e(Gone, "t"),
        ]);
        assert_eq!(out, vec![e(Gone, "t")]);
    }

    #[test]
    fn attrs_does_not_absorb_its_children() {
        let out = opt(vec![e(File, "d/f"), e(Attrs, "d"), e(Attrs, "d/sub")]);
        assert_eq!(out, vec![e(Attrs, "d"), e(File, "d/f"), e(Attrs, "d/sub")]);
    }

    #[test]
    fn prefix_without_separator_is_not_a_parent() {
        let out = opt(vec![
            e(Tree, "foo"),
            e(File, "foobar"),
            e(File, "foo bar"),
            e(Attrs, "foo/x"),
        ]);
        assert_eq!(
            out,
            vec![e(Tree, "foo"), e(File, "foo bar"), e(File, "foobar")]
        );
    }

    #[test]
    fn a_full_sync_absorbs_everything() {
        let out = opt(vec![e(File, "a"), Entry::full(), e(Attrs, "")]);
        assert_eq!(out, vec![Entry::full()]);
    }

    #[test]
    fn invalid_paths_are_dropped() {
        let out = opt(vec![
            e(File, "../etc/passwd"),
            e(File, "/abs"),
            e(File, "a//b"),
            e(File, "ok"),
        ]);
        assert_eq!(out, vec![e(File, "ok")]);
    }

    #[test]
    fn huge_sets_collapse_to_a_full_sync() {
        let v: Vec<Entry> = (0..11).map(|i| e(File, &format!("f{i}"))).collect();
        assert_eq!(optimize(v.clone(), 10), vec![Entry::full()]);
        assert_eq!(optimize(v, 11).len(), 11);
    }

    #[test]
    fn output_is_canonical_and_idempotent() {
        let raw = vec![
            e(File, "b/c"),
            e(Gone, "a"),
            e(Attrs, "b"),
            e(File, "a/x"),
            e(Tree, "c"),
            e(File, "c/d"),
            e(File, "b c"),
            e(File, "b/c"),
        ];
        let once = opt(raw);
        assert!(is_canonical(&once));
        assert_eq!(opt(once.clone()), once);
    }

    #[test]
    fn bytes_that_are_not_utf8_survive() {
        let p = b"dir/\xff\xfe name\n".to_vec();
        let out = opt(vec![Entry::new(File, p.clone())]);
        assert_eq!(out, vec![Entry::new(File, p)]);
    }
}
