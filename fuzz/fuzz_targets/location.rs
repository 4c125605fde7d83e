//! Fuzzes the SOURCE and DEST parsers (issue 6) on arbitrary bytes. They
//! must never panic, and what they accept must keep the invariants the
//! rest of syncd relies on:
//!
//! - SOURCE: a marker split reproduces the argument exactly, at its *first*
//!   `/./`; no marker means base `/` and the argument unchanged; an
//!   argument made only of `.` and empty components means the current
//!   directory as both base and root.
//! - DEST: a remote-shell or daemon host (and user) is non-empty printable
//!   ASCII that never starts with `-` (else rsync or ssh would read it as
//!   an option); a daemon module is non-empty printable ASCII and a port is
//!   1..=65535; the parts reassemble into the argument; a local path is the
//!   argument itself, and has no `:` before its first `/` (rsync would take
//!   it as remote) unless it holds a `[`; `rsync://` is always a daemon.
//! - `Destination::resolve` (pure apart from the given cwd) gives an
//!   absolute, `.`/`..`-free local path, a target ending in `/` (or `:` for
//!   a remote home), a short safe name, and `dedupe_names` makes names
//!   unique.

#![no_main]

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};

use libfuzzer_sys::fuzz_target;
use syncd::config::location::{dedupe_names, parse_dest, parse_source, Destination, Place};

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn is_dot(arg: &[u8]) -> bool {
    !arg.starts_with(b"/") && arg.split(|&b| b == b'/').all(|c| c.is_empty() || c == b".")
}

fn check_source(data: &[u8]) {
    let Ok(spec) = parse_source(data) else { return };
    assert!(!data.is_empty() && !data.contains(&0));
    if is_dot(data) {
        assert_eq!(spec.vroot.as_deref(), Some(&b"."[..]));
        assert!(spec.below.is_empty());
        return;
    }
    match &spec.vroot {
        None => {
            assert_eq!(spec.below, data);
            assert_eq!(find(data, b"/./"), None);
        }
        Some(v) => {
            assert!(!v.is_empty());
            // A marker at the very start (`/./x`) has the base `/`, which
            // is not a prefix of the argument; `//./x` gives `/` as well.
            let (head, at) = if v.as_slice() == b"/" && data.starts_with(b"/./") {
                (&b""[..], 0)
            } else {
                (v.as_slice(), v.len())
            };
            assert_eq!(find(data, b"/./"), Some(at), "not the first marker");
            assert_eq!([head, b"/./", &spec.below].concat(), data);
        }
    }
}

fn safe_word(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic())
}

fn check_host(user: &Option<String>, host: &str) {
    assert!(safe_word(host) && !host.starts_with('-'), "host {host:?}");
    if let Some(u) = user {
        assert!(safe_word(u) && !u.starts_with('-'), "user {u:?}");
    }
}

fn with_user(user: &Option<String>, host: &str) -> Vec<u8> {
    match user {
        Some(u) => format!("{u}@{host}").into_bytes(),
        None => host.as_bytes().to_vec(),
    }
}

fn check_dest(data: &[u8]) {
    let Ok(place) = parse_dest(data) else { return };
    assert!(!data.is_empty() && !data.contains(&0));
    let url = data.starts_with(b"rsync://");
    match &place {
        Place::Local { path } => {
            assert!(!url);
            assert_eq!(path.as_os_str().as_bytes(), data);
            if !data.contains(&b'[') {
                let slash = data.iter().position(|&b| b == b'/').unwrap_or(data.len());
                assert!(!data[..slash].contains(&b':'), "remote taken as local");
            }
        }
        Place::Shell { user, host, path } => {
            assert!(!url);
            check_host(user, host);
            // host:dir lands in the remote home directory: refused.
            assert!(
                path.is_empty() || path.starts_with(b"/") || path.starts_with(b"~"),
                "relative remote path accepted"
            );
            assert_eq!(
                [with_user(user, host), b":".to_vec(), path.clone()].concat(),
                data
            );
        }
        Place::Daemon {
            user,
            host,
            port,
            module,
            path,
        } => {
            check_host(user, host);
            assert!(safe_word(module), "module {module:?}");
            assert!(port.is_none_or(|p| p != 0));
            let mut tail = module.as_bytes().to_vec();
            if url {
                assert!(data.ends_with(&tail) || data.ends_with(&[&tail[..], b"/", path].concat()));
                assert!(data[8..].starts_with(&with_user(user, host)));
            } else {
                assert!(port.is_none());
                let head = [with_user(user, host), b"::".to_vec()].concat();
                let bare = [&head[..], &tail[..]].concat();
                tail.push(b'/');
                tail.extend_from_slice(path);
                let full = [&head[..], &tail[..]].concat();
                assert!(data == bare.as_slice() && path.is_empty() || data == full.as_slice());
            }
        }
    }
    let Ok(d) = Destination::resolve(OsStr::from_bytes(data), Path::new("/cwd")) else {
        panic!("parse_dest accepted what resolve refused");
    };
    let t = d.target.as_bytes();
    match &d.place {
        Place::Local { path } => {
            assert!(path.is_absolute());
            assert!(path
                .components()
                .all(|c| !matches!(c, Component::CurDir | Component::ParentDir)));
            assert!(t.ends_with(b"/"));
        }
        _ => {
            assert!(t.starts_with(data));
            assert!(t.ends_with(b"/") || t.ends_with(b":"));
        }
    }
    assert!(!d.name.is_empty());
    assert!(d
        .name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)));
    let mut v = vec![d.clone(), d.clone(), d];
    dedupe_names(&mut v);
    assert!(v[0].name != v[1].name && v[1].name != v[2].name && v[0].name != v[2].name);
}

fuzz_target!(|data: &[u8]| {
    check_source(data);
    check_dest(data);
});
