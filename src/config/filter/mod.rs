//! Exclude patterns (`--exclude`, `--exclude-from`) with rsync's own
//! semantics, applied by syncd itself and handed to rsync unchanged.
//!
//! Why syncd filters at all, when rsync takes the same `--exclude`s: the
//! daemon lists changed paths with `--files-from`, and rsync's excludes do
//! not protect a path that is listed explicitly. An exclude of a directory
//! works by rsync not descending into it; a listed `cache/y` bypasses that
//! descent, so it is sent, and a listed missing `cache/x` is deleted through
//! `--delete-missing-args` (measured in `research/rsync-strategies.md`
//! §2.1 item 6). So syncd drops every path that is, or lies below, an
//! excluded path before it is watched or queued ([`Filter::excluded`]), and
//! still gives rsync the same rules ([`Filter::rsync_args`]): they are what
//! keeps excluded names out of recursive tree runs and protects
//! destination-only excluded files from `--delete`. The two cannot disagree
//! because syncd matches the very patterns it passes, reimplementing rsync's
//! parsing and matching (its `rule_matches` and wildmatch; `tests/filter.rs`
//! checks the two against the real rsync), and refuses the rule kinds it
//! does not implement (includes, list clears) instead of guessing.
//!
//! Names are matched as rsync sees them: relative to rsync's transfer root
//! (the virtual root, [`crate::config::location::Source::base`]), which is SOURCE's
//! `rel` path plus the root-relative path. An anchored pattern (`/build`)
//! means "at the top of SOURCE" to a syncd user, so it is rewritten as
//! `/<rel>/build` for rsync and matched in that form; an unanchored pattern
//! with a slash (`a/b`) matches the last components of the transfer path,
//! exactly as rsync matches it.

use std::ffi::OsString;
use std::fmt;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use crate::changeset::escape;

mod wildmatch;
use wildmatch::{is_wild, Glob};

/// rsync discards a pattern of this many bytes or more (`MAXPATHLEN`), with
/// an error but without stopping; syncd refuses it instead.
const MAX_PATTERN: usize = 4096;

/// One exclude option as given on the command line, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExcludeArg {
    /// `--exclude PATTERN`.
    Pattern(OsString),
    /// `--exclude-from FILE`: one pattern a line.
    From(PathBuf),
}

/// Where a pattern was written, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// An `--exclude` option.
    Flag,
    /// A line (counted from 1) of an `--exclude-from` file.
    Line { file: PathBuf, line: usize },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Flag => f.write_str("--exclude"),
            Origin::Line { file, line } => write!(f, "{} line {line}", file.display()),
        }
    }
}

/// An exclude rule syncd cannot use as written.
#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    #[error(
        "{origin}: \"{rule}\" is an include rule; syncd supports exclude patterns only \
         (an include would make syncd and rsync disagree)"
    )]
    Include { origin: Origin, rule: String },
    #[error(
        "{origin}: \"!\" clears rsync's rule list; syncd supports exclude patterns only, \
         remove the line and the patterns it was meant to clear"
    )]
    Clear { origin: Origin },
    #[error("{origin}: the pattern is empty")]
    Empty { origin: Origin },
    #[error("{origin}: the pattern contains a NUL byte")]
    Nul { origin: Origin },
    #[error(
        "{origin}: the pattern is {len} bytes long as given to rsync; rsync drops patterns \
         of {MAX_PATTERN} bytes or more"
    )]
    TooLong { origin: Origin, len: usize },
    #[error("cannot read the --exclude-from file {}: {source}", file.display())]
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "--exclude-from -: reading patterns from standard input is not supported; name a file"
    )]
    Stdin,
    #[error(
        "{origin}: the pattern \"{pattern}\" excludes \"{dir}\", which is SOURCE or a directory \
         above it below the virtual root: nothing would be replicated"
    )]
    ExcludesRoot {
        origin: Origin,
        pattern: String,
        dir: String,
    },
}

impl From<FilterError> for crate::error::Error {
    /// Every filter problem is a wrong argument or a wrong file the operator
    /// named: a usage error.
    fn from(e: FilterError) -> crate::error::Error {
        crate::error::Error::Usage(e.to_string())
    }
}

/// Whether an entry is excluded by `excluded(path, is_dir)`: trees and
/// attribute changes are directories, files are not, and a gone path may
/// have been either, so it is excluded if either would be: no deletion may
/// touch an excluded path.
pub fn entry_excluded(excluded: impl Fn(&[u8], bool) -> bool, e: &crate::changeset::Entry) -> bool {
    use crate::changeset::Kind;
    match e.kind {
        Kind::Tree | Kind::Attrs => excluded(&e.path, true),
        Kind::File => excluded(&e.path, false),
        Kind::Gone => excluded(&e.path, true) || excluded(&e.path, false),
    }
}

/// The exclude rules of a daemon, compiled once at start.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// SOURCE relative to the transfer root, without leading or trailing
    /// `/`; empty when SOURCE is the virtual root.
    rel: Vec<u8>,
    rules: Vec<Rule>,
}

impl Filter {
    /// Builds the filter from the exclude options in command-line order.
    /// `rel` is SOURCE's path below the virtual root
    /// ([`crate::config::location::Source::rel`]). Refuses include rules, list
    /// clears, unreadable files, and any pattern that would exclude SOURCE
    /// itself or a directory above it (rsync would then send nothing).
    pub fn new(args: &[ExcludeArg], rel: &[u8]) -> Result<Filter, FilterError> {
        let mut f = Filter {
            rel: rel.to_vec(),
            rules: Vec::new(),
        };
        for a in args {
            match a {
                ExcludeArg::Pattern(p) => f.add(p.as_bytes(), Origin::Flag)?,
                ExcludeArg::From(file) => {
                    if file.as_os_str() == "-" {
                        return Err(FilterError::Stdin);
                    }
                    let data = std::fs::read(file).map_err(|source| FilterError::Read {
                        file: file.clone(),
                        source,
                    })?;
                    f.add_file(file, &data)?;
                }
            }
        }
        f.check_root()?;
        Ok(f)
    }

    /// Whether there are no rules (nothing is ever excluded).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether a root-relative path is excluded: it, or any of its
    /// ancestors (which are directories), matches a rule, as rsync, which
    /// does not descend into an excluded directory, would decide. `is_dir`
    /// is the type of the path itself as `lstat` sees it (a symlink to a
    /// directory is not a directory). For a path whose type is unknown (a
    /// gone path), ask with `true`: everything that matches a non-directory
    /// also matches a directory, and a directory-only rule (`cache/`) then
    /// keeps a gone file named `cache` from being deleted, which errs on the
    /// side of the destination's data. The root (empty path) is never
    /// excluded; [`Filter::new`] refuses rules that would exclude it.
    pub fn excluded(&self, path: &[u8], is_dir: bool) -> bool {
        if path.is_empty() || self.rules.is_empty() {
            return false;
        }
        let full = self.transfer_path(path);
        // The ancestors within SOURCE, top down, then the path itself.
        let hit = component_ends(&full, full.len() - path.len()).any(|end| {
            let dir = end < full.len() || is_dir;
            self.rules.iter().any(|r| r.matches(&full[..end], dir))
        });
        hit
    }

    /// Whether a rule matches this path itself, without looking at its
    /// ancestors: for a walk down the tree that has already checked them.
    pub fn matches(&self, path: &[u8], is_dir: bool) -> bool {
        if path.is_empty() || self.rules.is_empty() {
            return false;
        }
        let full = self.transfer_path(path);
        self.rules.iter().any(|r| r.matches(&full, is_dir))
    }

    /// The `--exclude=...` arguments that give rsync these rules, in order,
    /// for every run (they go before the `--` that ends rsync's options). A
    /// pattern that rsync would read as a rule prefix (`- `, `+ `, `!`) is
    /// passed behind an explicit `- ` so rsync takes it as the pattern.
    pub fn rsync_args(&self) -> Vec<OsString> {
        self.rules
            .iter()
            .map(|r| {
                let mut a = b"--exclude=".to_vec();
                let p = &r.pattern;
                if p.starts_with(b"- ") || p.starts_with(b"+ ") || p.starts_with(b"!") {
                    a.extend_from_slice(b"- ");
                }
                a.extend_from_slice(p);
                OsString::from_vec(a)
            })
            .collect()
    }

    /// The root-relative `path` as rsync names it: below `rel`.
    fn transfer_path(&self, path: &[u8]) -> Vec<u8> {
        if self.rel.is_empty() {
            return path.to_vec();
        }
        [&self.rel, &b"/"[..], path].concat()
    }

    /// Reads an `--exclude-from` file as rsync does: lines end at LF or CR
    /// (so CRLF works), empty lines and lines starting with `;` or `#` are
    /// skipped, nothing else (not even whitespace) is trimmed.
    fn add_file(&mut self, file: &Path, data: &[u8]) -> Result<(), FilterError> {
        let mut line = 1;
        let mut rest = data;
        while !rest.is_empty() {
            let end = rest
                .iter()
                .position(|&b| b == b'\n' || b == b'\r')
                .unwrap_or(rest.len());
            let text = &rest[..end];
            if !text.is_empty() && text[0] != b';' && text[0] != b'#' {
                let origin = Origin::Line {
                    file: file.to_path_buf(),
                    line,
                };
                self.add(text, origin)?;
            }
            // One line break: LF, CR, or CR LF.
            let brk = match rest.get(end..end + 2) {
                Some(b"\r\n") => 2,
                _ => 1,
            };
            rest = rest.get(end + brk..).unwrap_or_default();
            line += 1;
        }
        Ok(())
    }

    /// Parses one rule as rsync parses `--exclude` values and
    /// `--exclude-from` lines: an optional `- ` (exclude) prefix; `+ `
    /// (include) and a lone `!` (clear) are refused.
    fn add(&mut self, text: &[u8], origin: Origin) -> Result<(), FilterError> {
        if text.contains(&0) {
            return Err(FilterError::Nul { origin });
        }
        let pat = if let Some(p) = text.strip_prefix(b"- ") {
            p
        } else if text.starts_with(b"+ ") {
            let rule = escape(text);
            return Err(FilterError::Include { origin, rule });
        } else if text == b"!" {
            return Err(FilterError::Clear { origin });
        } else {
            text
        };
        if pat.is_empty() {
            return Err(FilterError::Empty { origin });
        }
        let pattern = anchor(pat, &self.rel);
        if pattern.len() >= MAX_PATTERN {
            let len = pattern.len();
            return Err(FilterError::TooLong { origin, len });
        }
        self.rules.push(Rule::compile(pattern, origin));
        Ok(())
    }

    /// Refuses a rule that matches SOURCE or a directory between the
    /// virtual root and SOURCE: rsync checks those names on a full sync.
    fn check_root(&self) -> Result<(), FilterError> {
        let rel = &self.rel;
        if rel.is_empty() {
            return Ok(());
        }
        for end in component_ends(rel, 0) {
            let dir = &rel[..end];
            if let Some(r) = self.rules.iter().find(|r| r.matches(dir, true)) {
                return Err(FilterError::ExcludesRoot {
                    origin: r.origin.clone(),
                    pattern: escape(&r.pattern),
                    dir: escape(dir),
                });
            }
        }
        Ok(())
    }
}

/// The end of every component of `p` that ends at or after `from`: each
/// `/` from there on, then the end of `p`.
fn component_ends(p: &[u8], from: usize) -> impl Iterator<Item = usize> + '_ {
    (from..p.len())
        .filter(move |&i| p[i] == b'/')
        .chain(std::iter::once(p.len()))
}

/// Rewrites an anchored pattern (`/x`) to `/<rel>/x`, so that it is anchored
/// at SOURCE rather than at the virtual root. rsync reads backslashes as
/// escapes only in a pattern holding `*`, `?` or `[`, so `rel` is escaped
/// when the result is such a pattern, and so is the rest of the pattern when
/// only `rel` made it one. A lone `/` matches nothing in rsync and is kept.
fn anchor(pat: &[u8], rel: &[u8]) -> Vec<u8> {
    let tail = match pat.strip_prefix(b"/") {
        Some(t) if !t.is_empty() && !rel.is_empty() => t,
        _ => return pat.to_vec(),
    };
    let (wild_tail, wild_rel) = (is_wild(tail), is_wild(rel));
    let mut out = Vec::with_capacity(pat.len() + 2 * rel.len() + 2);
    out.push(b'/');
    push_escaped(&mut out, rel, wild_tail || wild_rel);
    out.push(b'/');
    push_escaped(&mut out, tail, wild_rel && !wild_tail);
    out
}

fn push_escaped(out: &mut Vec<u8>, s: &[u8], escape: bool) {
    for &b in s {
        if escape && matches!(b, b'\\' | b'*' | b'?' | b'[') {
            out.push(b'\\');
        }
        out.push(b);
    }
}

/// Which part of the name a rule is compared with (rsync's
/// `rule_matches`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// No slash and no `**`: the last component only.
    LastComponent,
    /// Unanchored with a slash but no `**`: the last `n` components.
    Trailing(usize),
    /// Unanchored with `**` not at the start: the whole name, or what
    /// follows any of its slashes.
    AnySuffix,
    /// Anchored, or starting with `**`: the whole name.
    Whole,
}

/// One exclude rule, compiled as rsync's `add_rule` would.
#[derive(Debug, Clone)]
struct Rule {
    /// The pattern exactly as rsync receives it.
    pattern: Vec<u8>,
    origin: Origin,
    /// A trailing `/`: matches directories only.
    dir_only: bool,
    /// Starts with `**`: the name is matched with a `/` in front.
    wild2_prefix: bool,
    /// Ends with `***`: a directory is matched with a `/` behind.
    wild3_suffix: bool,
    anchored: bool,
    scope: Scope,
    body: Body,
}

#[derive(Debug, Clone)]
enum Body {
    /// No `*`, `?` or `[`: compared byte for byte, backslashes included.
    Literal(Vec<u8>),
    /// A wildcard pattern.
    Glob(Glob),
}

impl Rule {
    fn compile(pattern: Vec<u8>, origin: Origin) -> Rule {
        let mut p = pattern.as_slice();
        let dir_only = p.len() > 1 && p.ends_with(b"/");
        if dir_only {
            p = &p[..p.len() - 1];
        }
        let slashes = p.iter().filter(|&&b| b == b'/').count();
        let wild = is_wild(p);
        let wild2 = wild && p.windows(2).any(|w| w == b"**");
        let wild2_prefix = wild2 && p.starts_with(b"**");
        let wild3_suffix = wild2 && p.ends_with(b"***");
        let anchored = p.starts_with(b"/");
        let scope = if slashes == 0 && !wild2 {
            Scope::LastComponent
        } else if !anchored && !wild2 {
            Scope::Trailing(slashes + 1)
        } else if !anchored && !wild2_prefix {
            Scope::AnySuffix
        } else {
            Scope::Whole
        };
        let body = if anchored { &p[1..] } else { p };
        let body = if wild {
            Body::Glob(Glob::new(body))
        } else {
            Body::Literal(body.to_vec())
        };
        Rule {
            pattern,
            origin,
            dir_only,
            wild2_prefix,
            wild3_suffix,
            anchored,
            scope,
            body,
        }
    }

    /// Whether the rule matches `name`, a path relative to the transfer
    /// root (no leading slash), by itself.
    fn matches(&self, name: &[u8], is_dir: bool) -> bool {
        if name.is_empty() || (self.dir_only && !is_dir) {
            return false;
        }
        if self.scope == Scope::LastComponent {
            let last = name.rsplit(|&b| b == b'/').next().unwrap_or(name);
            return match &self.body {
                Body::Literal(l) => last == l.as_slice(),
                Body::Glob(g) => g.matches(last, false),
            };
        }
        let glob = match &self.body {
            Body::Literal(l) if self.anchored => return name == l.as_slice(),
            // Unanchored: the name ends with the pattern at a component
            // boundary.
            Body::Literal(l) => {
                return name.ends_with(l)
                    && (name.len() == l.len() || name[name.len() - l.len() - 1] == b'/');
            }
            Body::Glob(g) => g,
        };
        let mut text = Vec::with_capacity(name.len() + 2);
        if self.wild2_prefix {
            text.push(b'/');
        }
        text.extend_from_slice(name);
        if is_dir && self.wild3_suffix {
            text.push(b'/');
        }
        match self.scope {
            Scope::Trailing(n) => trailing(&text, n).is_some_and(|t| glob.matches(t, false)),
            Scope::AnySuffix => glob.matches(&text, true),
            _ => glob.matches(&text, false),
        }
    }
}

/// The last `n` components of `text`, or `None` when it has fewer.
fn trailing(text: &[u8], n: usize) -> Option<&[u8]> {
    let mut seen = 0;
    for (i, &b) in text.iter().enumerate().rev() {
        if b == b'/' {
            seen += 1;
            if seen == n {
                return text.get(i + 1..);
            }
        }
    }
    (seen + 1 == n).then_some(text)
}

#[cfg(test)]
mod tests {
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
        let new =
            |p: &str, rel: &str| Filter::new(&[ExcludeArg::Pattern(p.into())], rel.as_bytes());
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
}
