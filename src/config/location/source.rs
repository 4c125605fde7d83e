//! SOURCE: the watched root, the base handed to rsync, and the `/./`
//! virtual-root marker.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The watched tree and how its paths map onto destinations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// The directory that is watched, absolute and canonical.
    pub root: PathBuf,
    /// The directory rsync is given as its source: the virtual root, or `/`.
    pub base: PathBuf,
    /// `root` relative to `base`, as bytes without leading or trailing `/`;
    /// empty when they are the same directory.
    pub rel: Vec<u8>,
}

/// The two halves of a SOURCE argument before any file system access.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceSpec {
    /// The virtual root as written, or `None` for "no marker" (base `/`).
    pub vroot: Option<Vec<u8>>,
    /// The path below the virtual root (or the whole path without one).
    pub below: Vec<u8>,
}

/// Splits a SOURCE argument at its first `/./` marker (pure).
pub fn parse_source(arg: &[u8]) -> Result<SourceSpec> {
    if arg.is_empty() {
        return Err(Error::Usage("SOURCE is empty".into()));
    }
    if arg.contains(&0) {
        return Err(Error::Usage("SOURCE contains a NUL byte".into()));
    }
    if normalizes_to_dot(arg) {
        return Ok(SourceSpec {
            vroot: Some(b".".to_vec()),
            below: Vec::new(),
        });
    }
    if let Some(i) = find(arg, b"/./") {
        let vroot = if i == 0 {
            b"/".to_vec()
        } else {
            arg[..i].to_vec()
        };
        return Ok(SourceSpec {
            vroot: Some(vroot),
            below: arg[i + 3..].to_vec(),
        });
    }
    Ok(SourceSpec {
        vroot: None,
        below: arg.to_vec(),
    })
}

fn normalizes_to_dot(arg: &[u8]) -> bool {
    arg.split(|&b| b == b'/').all(|c| c.is_empty() || c == b".") && arg[0] != b'/'
}

pub(super) fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

impl Source {
    /// Parses and resolves SOURCE against `cwd`: the base and the root are
    /// canonicalized (symlinks resolved), the root must be a directory and
    /// must stay inside the base.
    pub fn resolve(arg: &OsStr, cwd: &Path) -> Result<Source> {
        let spec = parse_source(arg.as_bytes())?;
        let abs = |p: &[u8]| cwd.join(OsStr::from_bytes(p));
        let (base_given, root_given) = match &spec.vroot {
            Some(v) => {
                let base = abs(v);
                let root = base.join(OsStr::from_bytes(&spec.below));
                (base, root)
            }
            None => (PathBuf::from("/"), abs(&spec.below)),
        };
        let root = canonical_dir("SOURCE", &root_given)?;
        let base = canonical_dir("the virtual root of SOURCE", &base_given)?;
        let rel = root.strip_prefix(&base).map_err(|_| {
            Error::Usage(format!(
                "SOURCE {} resolves to {}, outside its virtual root {}",
                root_given.display(),
                root.display(),
                base.display()
            ))
        })?;
        let rel = rel.as_os_str().as_bytes().to_vec();
        Ok(Source { root, base, rel })
    }

    /// The rsync `--files-from` entry for a root-relative path: `./` then
    /// the path relative to the base (the root itself is `.` or `./rel`).
    /// The `./` is required: rsync drops entries starting with `#` or `;`
    /// as comments.
    pub fn list_entry(&self, path: &[u8]) -> Vec<u8> {
        let mut e = Vec::with_capacity(2 + self.rel.len() + 1 + path.len());
        e.extend_from_slice(b"./");
        e.extend_from_slice(&self.rel);
        if !self.rel.is_empty() && !path.is_empty() {
            e.push(b'/');
        }
        e.extend_from_slice(path);
        if e == b"./" {
            e.truncate(1);
        }
        e
    }

    /// The absolute source path of a root-relative path.
    pub fn abs(&self, path: &[u8]) -> PathBuf {
        if path.is_empty() {
            self.root.clone()
        } else {
            self.root.join(OsStr::from_bytes(path))
        }
    }
}

fn canonical_dir(what: &str, p: &Path) -> Result<PathBuf> {
    let c = std::fs::canonicalize(p)
        .map_err(|e| Error::Usage(format!("{what} {} cannot be used: {e}", p.display())))?;
    if !c.is_dir() {
        return Err(Error::Usage(format!(
            "{what} {} is not a directory",
            p.display()
        )));
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(v: Option<&str>, below: &str) -> SourceSpec {
        SourceSpec {
            vroot: v.map(|s| s.as_bytes().to_vec()),
            below: below.as_bytes().to_vec(),
        }
    }

    #[test]
    fn source_marker_rules_follow_pylsyncd() {
        assert_eq!(parse_source(b"/a/./b/c").unwrap(), spec(Some("/a"), "b/c"));
        assert_eq!(parse_source(b"/a/b/./").unwrap(), spec(Some("/a/b"), ""));
        assert_eq!(parse_source(b"/var/www").unwrap(), spec(None, "/var/www"));
        assert_eq!(parse_source(b".").unwrap(), spec(Some("."), ""));
        assert_eq!(parse_source(b"./").unwrap(), spec(Some("."), ""));
        assert_eq!(parse_source(b"/./x").unwrap(), spec(Some("/"), "x"));
        assert_eq!(
            parse_source(b"/a/./b/./c").unwrap(),
            spec(Some("/a"), "b/./c")
        );
        assert!(parse_source(b"").is_err());
    }

    #[test]
    fn list_entries_carry_the_dot_slash_prefix() {
        let s = Source {
            root: "/a/b".into(),
            base: "/a".into(),
            rel: b"b".to_vec(),
        };
        assert_eq!(s.list_entry(b""), b"./b");
        assert_eq!(s.list_entry(b"#x"), b"./b/#x");
        let s = Source {
            root: "/a".into(),
            base: "/a".into(),
            rel: vec![],
        };
        assert_eq!(s.list_entry(b""), b".");
        assert_eq!(s.list_entry(b";y"), b"./;y");
    }
}
