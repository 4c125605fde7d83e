//! DEST: every destination form rsync takes, and the name each gets.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};

use super::source::find;
use crate::error::{Error, Result};

/// Where a destination is, by rsync's own syntax.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// A local directory (absolute after [`Destination::resolve`]).
    Local { path: PathBuf },
    /// `[user@]host:[path]` over a remote shell (ssh).
    Shell {
        user: Option<String>,
        host: String,
        path: Vec<u8>,
    },
    /// `[user@]host::module[/path]` or `rsync://[user@]host[:port]/module[/path]`.
    Daemon {
        user: Option<String>,
        host: String,
        port: Option<u16>,
        module: String,
        path: Vec<u8>,
    },
}

/// One parsed DEST argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// The argument as rsync is given it, normalized to end with `/` (or
    /// `:` for a remote home directory). It also keys the store's queue.
    pub target: OsString,
    /// A short name for logs and `--dest`, unique among destinations.
    pub name: String,
    pub place: Place,
}

/// Parses a DEST argument by rsync's rules (pure): `rsync://` is a daemon
/// URL; otherwise a `::` or a `:` before the first `/` makes it remote; all
/// else is a local path.
pub fn parse_dest(arg: &[u8]) -> Result<Place> {
    let bad = |why: &str| {
        Err(Error::Usage(format!(
            "destination {:?} is not valid: {why}",
            String::from_utf8_lossy(arg)
        )))
    };
    if arg.is_empty() {
        return bad("it is empty");
    }
    if arg.contains(&0) {
        return bad("it contains a NUL byte");
    }
    if let Some(rest) = arg.strip_prefix(b"rsync://") {
        let (auth, tail) = split_at_byte(rest, b'/');
        let Some(tail) = tail else {
            return bad("an rsync:// URL needs /module");
        };
        let (user, hostport) = split_user(auth);
        let (host, port) = match split_port(hostport) {
            Ok(hp) => hp,
            Err(why) => return bad(&why),
        };
        let (module, path) = split_at_byte(tail, b'/');
        if module.is_empty() {
            return bad("the module name is missing");
        }
        return daemon(user, host, port, module, path.unwrap_or(b""), arg);
    }
    let slash = arg.iter().position(|&b| b == b'/').unwrap_or(arg.len());
    let head = &arg[..slash];
    if let Some(i) = find(head, b"::").filter(|_| !head.starts_with(b"[")) {
        let (user, host) = split_user(&arg[..i]);
        let (module, path) = split_at_byte(&arg[i + 2..], b'/');
        if module.is_empty() {
            return bad("the module name is missing after ::");
        }
        return daemon(user, host, None, module, path.unwrap_or(b""), arg);
    }
    if let Some(i) = remote_colon(arg, slash) {
        let (user, host) = split_user(&arg[..i]);
        let host = host_text(host, arg)?;
        let path = &arg[i + 1..];
        if !path.is_empty() && !path.starts_with(b"/") && !path.starts_with(b"~") {
            return Err(relative_remote(&arg[..i + 1], path));
        }
        return Ok(Place::Shell {
            user: user_text(user, arg)?,
            host,
            path: path.to_vec(),
        });
    }
    Ok(Place::Local {
        path: PathBuf::from(OsStr::from_bytes(arg)),
    })
}

/// The refusal of `host:path` with a relative path, with what to write.
fn relative_remote(head: &[u8], path: &[u8]) -> Error {
    let (h, given) = (String::from_utf8_lossy(head), String::from_utf8_lossy(path));
    let p = given.trim_start_matches("./");
    Error::Usage(format!(
        "destination {h}{given} has a relative path, which lands in the remote user's home \
         directory: write {h}/{p} for an absolute path, or {h}~/{p} if the home directory \
         is meant (a local directory with a colon in its name: ./{h}{given})"
    ))
}

/// The `:` that makes `arg` a remote-shell destination, if any: the first
/// colon before the first `/`, skipping a bracketed IPv6 address.
fn remote_colon(arg: &[u8], slash: usize) -> Option<usize> {
    let start = if arg.starts_with(b"[")
        || arg
            .iter()
            .position(|&b| b == b'@')
            .is_some_and(|at| arg.get(at + 1) == Some(&b'['))
    {
        arg.iter().position(|&b| b == b']')? + 1
    } else {
        0
    };
    let end = if start > 0 { arg.len() } else { slash };
    arg[start..end]
        .iter()
        .position(|&b| b == b':')
        .map(|i| i + start)
}

fn split_at_byte(s: &[u8], b: u8) -> (&[u8], Option<&[u8]>) {
    match s.iter().position(|&c| c == b) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    }
}

fn split_user(s: &[u8]) -> (Option<&[u8]>, &[u8]) {
    match s.iter().rposition(|&c| c == b'@') {
        Some(i) => (Some(&s[..i]), &s[i + 1..]),
        None => (None, s),
    }
}

fn split_port(s: &[u8]) -> std::result::Result<(&[u8], Option<u16>), String> {
    let colon = if s.starts_with(b"[") {
        s.iter()
            .position(|&b| b == b']')
            .map(|i| i + 1)
            .filter(|&i| s.get(i) == Some(&b':'))
    } else {
        s.iter().rposition(|&b| b == b':')
    };
    match colon {
        None => Ok((s, None)),
        Some(i) => {
            let port = std::str::from_utf8(&s[i + 1..])
                .ok()
                .and_then(|p| p.parse::<u16>().ok())
                .filter(|&p| p != 0)
                .ok_or_else(|| "the port is not a number from 1 to 65535".to_string())?;
            Ok((&s[..i], Some(port)))
        }
    }
}

fn host_text(host: &[u8], arg: &[u8]) -> Result<String> {
    let h = std::str::from_utf8(host).ok().filter(|h| !h.is_empty());
    match h {
        Some(h) if h.starts_with('-') => Err(Error::Usage(format!(
            "destination {:?}: a host may not start with '-' (rsync or ssh \
             would read it as an option)",
            String::from_utf8_lossy(arg)
        ))),
        Some(h) if h.bytes().all(|b| b.is_ascii_graphic()) => Ok(h.to_string()),
        _ => Err(Error::Usage(format!(
            "destination {:?}: the host name is empty or not printable ASCII",
            String::from_utf8_lossy(arg)
        ))),
    }
}

fn user_text(user: Option<&[u8]>, arg: &[u8]) -> Result<Option<String>> {
    match user {
        None => Ok(None),
        Some(u) => match std::str::from_utf8(u) {
            Ok(u)
                if !u.is_empty()
                    && !u.starts_with('-')
                    && u.bytes().all(|b| b.is_ascii_graphic()) =>
            {
                Ok(Some(u.to_string()))
            }
            _ => Err(Error::Usage(format!(
                "destination {:?}: the user name is empty, starts with '-' or \
                 is not printable ASCII",
                String::from_utf8_lossy(arg)
            ))),
        },
    }
}

fn daemon(
    user: Option<&[u8]>,
    host: &[u8],
    port: Option<u16>,
    module: &[u8],
    path: &[u8],
    arg: &[u8],
) -> Result<Place> {
    let module = match std::str::from_utf8(module) {
        Ok(m) if m.bytes().all(|b| b.is_ascii_graphic()) => m.to_string(),
        _ => {
            return Err(Error::Usage(format!(
                "destination {:?}: the module name is not printable ASCII",
                String::from_utf8_lossy(arg)
            )))
        }
    };
    Ok(Place::Daemon {
        user: user_text(user, arg)?,
        host: host_text(host, arg)?,
        port,
        module,
        path: path.to_vec(),
    })
}

impl Destination {
    /// Parses DEST and normalizes it once, against `cwd`: a local path is
    /// made absolute and lexically clean, and every form gets the trailing
    /// `/` that makes rsync treat it as a directory.
    pub fn resolve(arg: &OsStr, cwd: &Path) -> Result<Destination> {
        let place = parse_dest(arg.as_bytes())?;
        let (place, target) = match place {
            Place::Local { path } => {
                let abs = clean(&cwd.join(path));
                let mut t = abs.clone().into_os_string().into_vec();
                if t.last() != Some(&b'/') {
                    t.push(b'/');
                }
                (Place::Local { path: abs }, t)
            }
            other => {
                let mut t = arg.as_bytes().to_vec();
                if !matches!(t.last(), Some(b'/') | Some(b':')) {
                    t.push(b'/');
                }
                (other, t)
            }
        };
        let name = default_name(&place);
        Ok(Destination {
            target: OsString::from_vec(target),
            name,
            place,
        })
    }

    /// Whether the destination is on this machine.
    pub fn is_local(&self) -> bool {
        matches!(self.place, Place::Local { .. })
    }

    /// Where a remote-shell destination lands when its path is relative to
    /// the remote home directory (`host:`, `host:~/dir`), in words for the
    /// start-up log; `None` for every other destination.
    pub fn landing_note(&self) -> Option<String> {
        let Place::Shell { user, host, path } = &self.place else {
            return None;
        };
        let whose = match user {
            Some(u) => format!("{u}'s home directory on {host}"),
            None => format!("the home directory on {host} of the user ssh logs in as"),
        };
        if path.is_empty() {
            Some(format!("which is {whose}"))
        } else if path.starts_with(b"~/") || path == b"~" {
            Some(format!("under {whose} (the remote shell expands ~)"))
        } else if path.starts_with(b"~") {
            Some("under that user's home directory (the remote shell expands ~user)".into())
        } else {
            None
        }
    }
}

/// Removes `.` and `..` components without touching the file system.
fn clean(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

fn default_name(place: &Place) -> String {
    let raw = match place {
        Place::Local { path } => path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "root".into()),
        Place::Shell { host, .. } => host.clone(),
        Place::Daemon { host, module, .. } => format!("{host}-{module}"),
    };
    let s: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() {
        "dest".into()
    } else {
        s
    }
}

/// Makes the names of `dests` unique by appending `-2`, `-3`, … in order.
pub fn dedupe_names(dests: &mut [Destination]) {
    let mut seen = std::collections::HashSet::new();
    for d in dests.iter_mut() {
        let base = d.name.clone();
        let mut n = 1;
        while !seen.insert(d.name.clone()) {
            n += 1;
            d.name = format!("{base}-{n}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn place(s: &str) -> Place {
        parse_dest(s.as_bytes()).unwrap()
    }

    #[test]
    fn every_rsync_destination_form_parses() {
        assert_eq!(
            place("/mnt/b"),
            Place::Local {
                path: "/mnt/b".into()
            }
        );
        assert_eq!(
            place("rel/dir"),
            Place::Local {
                path: "rel/dir".into()
            }
        );
        assert_eq!(
            place("./a:b"),
            Place::Local {
                path: "./a:b".into()
            }
        );
        assert_eq!(
            place("host:"),
            Place::Shell {
                user: None,
                host: "host".into(),
                path: vec![]
            }
        );
        assert_eq!(
            place("u@host:/srv/x"),
            Place::Shell {
                user: Some("u".into()),
                host: "host".into(),
                path: b"/srv/x".to_vec()
            }
        );
        assert_eq!(
            place("host::mod/sub"),
            Place::Daemon {
                user: None,
                host: "host".into(),
                port: None,
                module: "mod".into(),
                path: b"sub".to_vec()
            }
        );
        assert_eq!(
            place("rsync://u@h:8873/mod/p/q"),
            Place::Daemon {
                user: Some("u".into()),
                host: "h".into(),
                port: Some(8873),
                module: "mod".into(),
                path: b"p/q".to_vec()
            }
        );
        assert_eq!(
            place("[::1]:/x"),
            Place::Shell {
                user: None,
                host: "[::1]".into(),
                path: b"/x".to_vec()
            }
        );
    }

    #[test]
    fn dangerous_or_broken_destinations_are_refused() {
        for bad in [
            "",
            "-e sh:x",
            "rsync://h",
            "rsync://h:99999/m",
            "h::",
            "@h:x",
            "-u@h::m",
        ] {
            assert!(parse_dest(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn targets_are_normalized_with_a_trailing_slash() {
        let cwd = Path::new("/work");
        let t = |s: &str| Destination::resolve(OsStr::new(s), cwd).unwrap().target;
        assert_eq!(t("out/../dst"), "/work/dst/");
        assert_eq!(t("/abs/"), "/abs/");
        assert_eq!(t("host:"), "host:");
        assert_eq!(t("host:/dir"), "host:/dir/");
        assert_eq!(t("host:~/dir"), "host:~/dir/");
        assert_eq!(t("h::m"), "h::m/");
        assert_eq!(t("-leading"), "/work/-leading/");
    }

    #[test]
    fn a_relative_remote_path_is_refused_with_what_to_write() {
        for (arg, absolute, home) in [
            ("host:dir", "host:/dir", "host:~/dir"),
            ("u@h:backup/www", "u@h:/backup/www", "u@h:~/backup/www"),
            ("h:./x", "h:/x", "h:~/x"),
        ] {
            let e = parse_dest(arg.as_bytes()).unwrap_err().to_string();
            assert!(e.contains("home directory"), "{arg}: {e}");
            assert!(e.contains(&format!("write {absolute} ")), "{arg}: {e}");
            assert!(e.contains(&format!("or {home} ")), "{arg}: {e}");
        }
        for ok in [
            "host:",
            "host:/x",
            "host:~",
            "host:~/x",
            "u@host:~other/x",
            "h::m/rel",
            "./a:b",
        ] {
            assert!(parse_dest(ok.as_bytes()).is_ok(), "{ok}");
        }
        let note = |s: &str| {
            Destination::resolve(OsStr::new(s), Path::new("/"))
                .unwrap()
                .landing_note()
        };
        assert!(note("u@h:").unwrap().contains("u's home directory on h"));
        assert!(note("h:~/x").unwrap().contains("expands ~"));
        assert_eq!(note("h:/x"), None);
        assert_eq!(note("/local"), None);
        assert_eq!(note("h::m"), None);
    }

    #[test]
    fn names_are_short_and_unique() {
        let cwd = Path::new("/");
        let mut v: Vec<Destination> = ["/a/backup", "/b/backup", "u@web1:/x", "h::m"]
            .iter()
            .map(|s| Destination::resolve(OsStr::new(s), cwd).unwrap())
            .collect();
        dedupe_names(&mut v);
        let names: Vec<_> = v.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["backup", "backup-2", "web1", "h-m"]);
    }
}
