//! The matcher's own cases; `tests/filter.rs` checks it against rsync.

use super::*;
use proptest::prelude::*;

fn filter(patterns: &[&str], rel: &str) -> Filter {
    let args: Vec<ExcludeArg> = patterns
        .iter()
        .map(|p| ExcludeArg::Pattern(p.into()))
        .collect();
    Filter::new(&args, rel.as_bytes()).unwrap()
}

fn ex(pattern: &str, path: &str, is_dir: bool) -> bool {
    filter(&[pattern], "").excluded(path.as_bytes(), is_dir)
}

fn args(f: &Filter) -> Vec<String> {
    let args = f.rsync_args();
    args.iter()
        .map(|a| escape(a.as_bytes()).replace("\\x5c", "\\"))
        .collect()
}

fn from_file(data: &[u8]) -> Result<Filter, FilterError> {
    let mut f = Filter::default();
    f.add_file(Path::new("ex.txt"), data)?;
    Ok(f)
}

#[test]
fn exclude_from_skips_blanks_and_comments_and_splits_at_cr_and_lf() {
    let f = from_file(b"a\n\n# c\n; d\n- b\r\nc\rd\n  e \n- - f\n-x\n#\n!g").unwrap();
    assert_eq!(
        args(&f),
        [
            "--exclude=a",
            "--exclude=b",
            "--exclude=c",
            "--exclude=d",
            "--exclude=  e ",
            "--exclude=- - f",
            "--exclude=-x",
            "--exclude=- !g",
        ]
    );
}

#[test]
fn include_clear_empty_and_nul_rules_are_refused_with_their_line() {
    let line = |e: FilterError| match e {
        FilterError::Include { origin, .. }
        | FilterError::Clear { origin }
        | FilterError::Empty { origin }
        | FilterError::Nul { origin } => origin,
        other => panic!("{other}"),
    };
    let at = |n| Origin::Line {
        file: "ex.txt".into(),
        line: n,
    };
    assert_eq!(line(from_file(b"a\r\n\n+ b").unwrap_err()), at(3));
    assert_eq!(line(from_file(b"a\r!").unwrap_err()), at(2));
    assert_eq!(line(from_file(b"- ").unwrap_err()), at(1));
    assert_eq!(line(from_file(b"x\n\na\0b").unwrap_err()), at(3));
    let e = from_file(b"#x\n+ *.c").unwrap_err().to_string();
    assert_eq!(
        e,
        "ex.txt line 2: \"+ *.c\" is an include rule; syncd supports exclude patterns \
         only (an include would make syncd and rsync disagree)"
    );
    // The same prefixes apply to --exclude values, as in rsync.
    let one = |p: &str| Filter::new(&[ExcludeArg::Pattern(p.into())], b"");
    assert!(matches!(one("+ x"), Err(FilterError::Include { .. })));
    assert!(matches!(one("!"), Err(FilterError::Clear { .. })));
    assert!(matches!(one(""), Err(FilterError::Empty { .. })));
    assert!(matches!(one("- "), Err(FilterError::Empty { .. })));
    assert_eq!(args(&one("- x").unwrap()), ["--exclude=x"]);
    assert_eq!(args(&one("#x").unwrap()), ["--exclude=#x"]);
}

#[test]
fn files_that_cannot_be_read_and_stdin_are_refused() {
    let from = |p: &str| Filter::new(&[ExcludeArg::From(p.into())], b"");
    assert!(matches!(from("-"), Err(FilterError::Stdin)));
    let e = from("/nonexistent/syncd-excludes").unwrap_err().to_string();
    assert!(e.starts_with("cannot read the --exclude-from file /nonexistent/syncd-excludes: "));
}

#[test]
fn patterns_rsync_would_drop_as_too_long_are_refused() {
    let long = "x".repeat(MAX_PATTERN - 1);
    assert!(Filter::new(&[ExcludeArg::Pattern(long.clone().into())], b"").is_ok());
    let anchored = format!("/{long}");
    let e = Filter::new(&[ExcludeArg::Pattern(anchored.into())], b"").unwrap_err();
    assert!(matches!(e, FilterError::TooLong { len: 4096, .. }), "{e}");
}

#[test]
fn anchored_patterns_are_rewritten_below_the_virtual_root() {
    let rw = |p: &str, rel: &str| args(&filter(&[p], rel)).remove(0);
    assert_eq!(rw("/x", ""), "--exclude=/x");
    assert_eq!(rw("/x/", "a/b"), "--exclude=/a/b/x/");
    assert_eq!(rw("x", "a/b"), "--exclude=x");
    assert_eq!(rw("/", "a"), "--exclude=/");
    // rel is escaped when the pattern is a wildcard one, and the rest
    // too when only rel made it one.
    assert_eq!(rw("/x*", "p\\q"), "--exclude=/p\\\\q/x*");
    assert_eq!(rw("/x\\y", "p\\q"), "--exclude=/p\\q/x\\y");
    assert_eq!(rw("/x", "v[1]*?"), "--exclude=/v\\[1]\\*\\?/x");
    assert_eq!(rw("/x\\y", "v*"), "--exclude=/v\\*/x\\\\y");
    assert_eq!(rw("/[ab]", "v*"), "--exclude=/v\\*/[ab]");
}

#[test]
fn anchored_patterns_match_at_source_whatever_its_place() {
    for rel in ["", "top", "v[1]*\\p/s d"] {
        let f = filter(&["/cache/", "/a/*.tmp", "/x\\y"], rel);
        assert!(f.excluded(b"cache/f", false), "{rel}");
        assert!(!f.excluded(b"a/cache", true), "{rel}");
        assert!(f.excluded(b"a/b.tmp", false), "{rel}");
        assert!(!f.excluded(b"b.tmp", false), "{rel}");
        assert!(f.excluded(b"x\\y", false), "{rel}");
        assert!(!f.excluded(b"xy", false), "{rel}");
    }
}

#[test]
fn rules_excluding_source_or_a_directory_above_it_are_refused() {
    let new = |p: &str, rel: &str| Filter::new(&[ExcludeArg::Pattern(p.into())], rel.as_bytes());
    for (p, rel) in [
        ("top", "top/s"),
        ("s/", "top/s"),
        ("*", "t"),
        ("t*/***", "t"),
    ] {
        assert!(
            matches!(new(p, rel), Err(FilterError::ExcludesRoot { .. })),
            "{p} {rel}"
        );
    }
    let e = new("top", "top/s").unwrap_err().to_string();
    assert!(e.contains("\"top\" excludes \"top\""), "{e}");
    // A file-only match cannot hit a directory; `/top` means top/top.
    for (p, rel) in [("/top", "top"), ("t*/x", "t"), ("*", "")] {
        assert!(new(p, rel).is_ok(), "{p} {rel}");
    }
}

#[test]
fn a_name_pattern_matches_the_last_component_at_any_depth() {
    assert!(ex("*.tmp", "x.tmp", false));
    assert!(ex("*.tmp", "a/b/x.tmp", false));
    assert!(!ex("*.tmp", "x.tmpl", false));
    assert!(ex("cache", "a/cache", false));
    assert!(!ex("cache", "a/cachex", false));
    assert!(!ex("cache", "xcache", true));
}

#[test]
fn a_trailing_slash_matches_directories_only() {
    assert!(ex("cache/", "a/cache", true));
    assert!(!ex("cache/", "a/cache", false));
    assert!(ex("/a/b/", "a/b", true));
    assert!(!ex("/a/b/", "a/b", false));
}

#[test]
fn an_excluded_directory_excludes_everything_below_it() {
    let f = filter(&["cache/", "/a/b"], "");
    assert!(f.excluded(b"x/cache/y/z", false));
    assert!(!f.matches(b"x/cache/y/z", false));
    assert!(f.matches(b"x/cache", true));
    assert!(f.excluded(b"a/b/c", true));
    assert!(!f.excluded(b"a/bc", false));
    assert!(!f.excluded(b"", true));
}

#[test]
fn star_stays_within_a_component_and_double_star_crosses() {
    assert!(ex("/*.tmp", "x.tmp", false));
    assert!(!ex("/*.tmp", "a/x.tmp", false));
    assert!(ex("/a/**/z", "a/b/c/z", false));
    assert!(!ex("/a/**/z", "a/z", false));
    assert!(ex("**/x", "x", false));
    assert!(ex("**/x", "a/b/x", false));
    assert!(!ex("**/x", "a/bx", false));
    assert!(ex("a**b", "x/a/y/b", false));
    assert!(!ex("a**b", "x/ya/b", false));
    assert!(ex("**.tmp", "a/b.tmp", false));
}

#[test]
fn question_mark_is_one_byte_but_not_a_slash() {
    assert!(ex("?", "x", false));
    assert!(!ex("?", "xy", false));
    assert!(!ex("/a?b", "a/b", false));
    assert!(ex("/a?b", "a.b", false));
    let f = filter(&["?"], "");
    assert!(f.excluded(b"\xff", false));
    assert!(!f.excluded("é".as_bytes(), false), "é is two bytes");
}

#[test]
fn backslash_escapes_only_in_wildcard_patterns() {
    assert!(ex("\\*lit", "*lit", false));
    assert!(!ex("\\*lit", "xlit", false));
    assert!(ex("back\\slash", "back\\slash", false));
    assert!(!ex("back\\slash", "backslash", false));
    assert!(ex("back\\slash*", "backslash", false));
    assert!(!ex("back\\slash*", "back\\slash", false));
    assert!(ex("back\\\\slash*", "back\\slash", false));
    // A trailing backslash escapes nothing: never a match.
    assert!(!ex("x*\\", "x\\", false));
}

#[test]
fn triple_star_matches_a_directory_and_its_contents() {
    assert!(ex("dir/***", "dir", true));
    assert!(ex("dir/***", "a/dir/b/c", false));
    assert!(!ex("dir/***", "dir", false));
    assert!(!ex("dir/**", "dir", true));
    assert!(ex("dir/**", "dir/x", false));
}

#[test]
fn a_pattern_with_a_slash_matches_whole_trailing_components() {
    assert!(ex("a/b", "a/b", false));
    assert!(ex("a/b", "x/a/b", false));
    assert!(!ex("a/b", "xa/b", false));
    assert!(ex("a/*/c", "z/a/b/c", false));
    assert!(!ex("a/*/c", "a/b/b/c", false));
    assert!(ex("/a/b", "a/b", false));
    assert!(!ex("/a/b", "x/a/b", false));
    // Unanchored patterns see SOURCE's place below the virtual root.
    assert!(filter(&["s/x"], "t/s").excluded(b"x", false));
    assert!(!filter(&["/s/x"], "t/s").excluded(b"x", false));
}

#[test]
fn rule_prefixes_reach_rsync_as_patterns() {
    let f = filter(&["- - x", "- + y", "!z", "- !"], "");
    assert_eq!(
        args(&f),
        [
            "--exclude=- - x",
            "--exclude=- + y",
            "--exclude=- !z",
            "--exclude=- !"
        ]
    );
    assert!(f.excluded(b"- x", false) && f.excluded(b"+ y", false));
    assert!(f.excluded(b"!z", false) && f.excluded(b"!", false));
}

proptest! {
    /// Any bytes as pattern and path: no panic, and a path that is
    /// excluded as a non-directory is excluded as a directory too (so
    /// asking with `true` for a gone path of unknown type is safe).
    #[test]
    fn matching_never_panics_and_directories_match_a_superset(
        pat in prop::collection::vec(prop::sample::select(&b"ab*?[]!^-:\\/\xff"[..]), 0..14),
        path in prop::collection::vec(prop::sample::select(&b"ab*?[]/\\\xff"[..]), 0..14),
    ) {
        let mut f = Filter::default();
        if f.add(&pat, Origin::Flag).is_ok() {
            let as_file = f.excluded(&path, false);
            let as_dir = f.excluded(&path, true);
            prop_assert!(!as_file || as_dir);
            f.matches(&path, false);
            f.rsync_args();
        }
    }
}

#[test]
fn names_only_rules_cannot_change_by_a_move() {
    assert!(filter(&[], "").names_only());
    assert!(filter(&["*.tmp", "cache/", "node_modules"], "").names_only());
    for p in ["/build", "a/b", "**/x", "a/**", "cache/**/x/"] {
        assert!(!filter(&[p], "").names_only(), "{p}");
    }
}
