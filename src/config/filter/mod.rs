//! Exclude patterns (`--exclude`, `--exclude-from`) with rsync's own
//! semantics, applied by syncd itself and handed to rsync unchanged.
//!
//! Why syncd filters at all, when rsync takes the same `--exclude`s: the
//! daemon lists changed paths with `--files-from`, and rsync's excludes do
//! not protect a path that is listed explicitly. An exclude of a directory
//! works by rsync not descending into it; a listed `cache/y` bypasses that
//! descent, so it is sent, and a listed missing `cache/x` is deleted through
//! `--delete-missing-args` (measured; ARCHITECTURE.md, "Facts the design
//! rests on"). So syncd drops every path that is, or lies below, an
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

mod rule;
mod wildmatch;

use rule::{anchor, component_ends, Rule};

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

/// Whether an entry is excluded by `excluded(path, is_dir)`: trees,
/// listings and attribute changes are directories, files are not, and a
/// gone path may
/// have been either, so it is excluded if either would be: no deletion may
/// touch an excluded path.
pub fn entry_excluded(excluded: impl Fn(&[u8], bool) -> bool, e: &crate::changeset::Entry) -> bool {
    use crate::changeset::Kind;
    match e.kind {
        Kind::Tree | Kind::Listing | Kind::Attrs => excluded(&e.path, true),
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

    /// Whether every rule matches a name alone (no `/` but a trailing one,
    /// no `**`): then renaming or moving a directory cannot change whether
    /// anything below it is excluded, since the names below it stay the
    /// same. A rule matched against the path (`/build`, `a/b`, `**/x`) can.
    pub fn names_only(&self) -> bool {
        self.rules.iter().all(Rule::matches_name_only)
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

#[cfg(test)]
mod tests;
