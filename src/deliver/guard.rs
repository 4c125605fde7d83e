//! The empty-source guard: syncd does not mirror an empty SOURCE onto a
//! destination that holds data, unless told to (`--allow-empty-source`).
//!
//! lsyncd's worst reports (#481, #668) share one shape: the tree rsync was
//! handed was not the one the operator meant, and the start-up full sync,
//! with `--delete`, emptied the mirror. An unmounted mount point is the
//! common case, and it looks exactly like an empty directory. So when
//! SOURCE holds nothing (or only excluded names), each destination is
//! checked before anything runs: a local one by reading the directory the
//! mirror lands in, a remote one by `rsync --list-only` of that directory
//! with the destination's own transport and bounds. At start-up one that
//! holds data stops the daemon with a usage error (exit 2) that says what
//! to do; one that cannot be reached is not judged then. The worker checks
//! again before every run that holds a full sync of the root while SOURCE
//! is empty, and fails that run (it is retried with back-off, and
//! `last_error` says why) instead of running the deleting rsync.
//!
//! Deleting files by hand while syncd runs is not blocked: those changes
//! travel as events (one `gone` entry each), never as a full sync.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::changeset::escape;
use crate::config::filter::Filter;
use crate::config::location::{Place, Source};
use crate::config::DestConfig;
use crate::config::RunConfig;
use crate::deliver::rsync::{self, Control, Io};
use crate::error::{Error, Result};

/// What a destination holds where the mirror lands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holds {
    /// Nothing a sync would delete (or the directory does not exist).
    Nothing,
    /// At least this entry (its name, escaped).
    Data(String),
    /// It could not be told, and why.
    Unknown(String),
}

/// Whether SOURCE holds nothing rsync would send: no entry, or only
/// excluded ones. An unreadable root counts as not empty: rsync then fails
/// on it, and rsync deletes nothing after an I/O error.
pub fn source_is_empty(source: &Source, filter: &Filter) -> bool {
    let rd = match std::fs::read_dir(&source.root) {
        Ok(rd) => rd,
        Err(e) => {
            log::debug!("cannot read {}: {e}", source.root.display());
            return false;
        }
    };
    for e in rd {
        let Ok(e) = e else { return false };
        let is_dir = e.file_type().map(|t| t.is_dir()).unwrap_or(false);
        if !filter.excluded(e.file_name().as_bytes(), is_dir) {
            return false;
        }
    }
    true
}

/// Checks what `d` holds where SOURCE's content lands, giving up when
/// `stop` says so (the worker is asked to end).
pub fn check(
    d: &DestConfig,
    source: &Source,
    filter: &Filter,
    stop: impl FnMut() -> bool,
) -> Holds {
    let counts = |name: &[u8], is_dir: bool| {
        let partial = d.rsync.partial_dir.as_deref().map(OsStr::as_bytes);
        Some(name) != partial && !filter.excluded(name, is_dir)
    };
    match &d.dest.place {
        Place::Local { path } => check_local(&landing_dir(path, &source.rel), counts),
        _ => check_remote(d, source, counts, stop),
    }
}

/// Where SOURCE's content lands in a local destination: the target plus
/// SOURCE's path below the virtual root.
pub fn landing_dir(target: &Path, rel: &[u8]) -> std::path::PathBuf {
    if rel.is_empty() {
        target.to_path_buf()
    } else {
        target.join(OsStr::from_bytes(rel))
    }
}

fn check_local(dir: &Path, counts: impl Fn(&[u8], bool) -> bool) -> Holds {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Holds::Nothing,
        Err(e) => return Holds::Unknown(format!("cannot read {}: {e}", dir.display())),
    };
    for e in rd {
        match e {
            Ok(e) => {
                let is_dir = e.file_type().map(|t| t.is_dir()).unwrap_or(false);
                let name = e.file_name();
                if counts(name.as_bytes(), is_dir) {
                    return Holds::Data(escape(name.as_bytes()));
                }
            }
            Err(e) => return Holds::Unknown(format!("cannot read {}: {e}", dir.display())),
        }
    }
    Holds::Nothing
}

/// Lists the landing directory with `rsync --list-only` (not recursive),
/// through the destination's own transport, bounded by its timeouts and an
/// overall deadline; ends the listing at the first entry that counts.
fn check_remote(
    d: &DestConfig,
    source: &Source,
    counts: impl Fn(&[u8], bool) -> bool,
    mut stop: impl FnMut() -> bool,
) -> Holds {
    let mut where_ = d.dest.target.as_bytes().to_vec();
    if !source.rel.is_empty() {
        where_.extend_from_slice(&source.rel);
        where_.push(b'/');
    }
    let mut args: Vec<OsString> = vec!["--list-only".into()];
    args.extend(rsync::transport_args(&d.dest, &d.rsync));
    args.push("--".into());
    args.push(OsString::from_vec(where_));
    // The reader thread collects the entries; the poll below judges them,
    // since the filter cannot travel to that thread.
    let entries: Arc<Mutex<Vec<Listed>>> = Arc::default();
    let e = entries.clone();
    let io = Io {
        name: d.dest.name.clone(),
        stderr_level: log::Level::Debug,
        stdout: Box::new(move |line| {
            if let (Some(entry), Ok(mut v)) = (listed(line), e.lock()) {
                v.push(entry);
            }
        }),
    };
    let mut found: Option<String> = None;
    let mut judge = || {
        let taken = entries.lock().map(|mut v| std::mem::take(&mut *v));
        for (name, is_dir) in taken.unwrap_or_default() {
            if found.is_none() && name != b"." && counts(&name, is_dir) {
                found = Some(escape(&name));
            }
        }
        found.is_some()
    };
    let limit = u64::from(d.rsync.contimeout_s) + u64::from(d.rsync.timeout_s) + 5;
    let deadline = Instant::now() + Duration::from_secs(limit);
    let out = rsync::run(&d.rsync.program, &args, Vec::new(), io, |_| {
        if stop() {
            Control::Abort("syncd is stopping".into())
        } else if judge() {
            Control::Abort("an entry was found".into())
        } else if Instant::now() >= deadline {
            Control::Abort(format!("no answer within {limit}s"))
        } else {
            Control::Continue
        }
    });
    judge();
    if let Some(name) = found {
        return Holds::Data(name);
    }
    match out.code {
        Some(0) => Holds::Nothing,
        // The landing directory does not exist yet.
        Some(23) if out.summary.contains("change_dir") && out.summary.contains("(2)") => {
            Holds::Nothing
        }
        _ => Holds::Unknown(out.summary),
    }
}

/// A listed name and whether it is a directory.
type Listed = (Vec<u8>, bool);

/// One line of `rsync --list-only`: `-rw-r--r--  1,234 2024/01/02 03:04:05
/// name`, the name escaped by rsync (`\#ooo`). Returns the name, unescaped,
/// and whether it is a directory.
fn listed(line: &[u8]) -> Option<Listed> {
    let is_dir = *line.first()? == b'd';
    // The name follows the time, the fourth field, and one space.
    let mut fields = 0;
    let mut i = 0;
    while fields < 4 {
        while line.get(i) == Some(&b' ') {
            i += 1;
        }
        let start = i;
        while i < line.len() && line[i] != b' ' {
            i += 1;
        }
        if i == start {
            return None;
        }
        fields += 1;
        if fields == 4 && !line[start..i].contains(&b':') {
            return None;
        }
    }
    let name = line.get(i + 1..).filter(|n| !n.is_empty())?;
    Some((unescape(name), is_dir))
}

/// Undoes rsync's `\#ooo` escapes of unprintable bytes in names.
fn unescape(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'\\' && s.get(i + 1) == Some(&b'#') && i + 5 <= s.len() {
            let oct = &s[i + 2..i + 5];
            if oct.iter().all(|b| (b'0'..=b'7').contains(b)) {
                out.push((oct[0] - b'0') * 64 + (oct[1] - b'0') * 8 + (oct[2] - b'0'));
                i += 5;
                continue;
            }
        }
        out.push(s[i]);
        i += 1;
    }
    out
}

/// The refusal for destinations that hold data, as one sentence.
fn refusal(source: &Source, held: &[(&DestConfig, String)], when: &str) -> String {
    let list: Vec<String> = held
        .iter()
        .map(|(d, name)| {
            format!(
                "{} ({}) holds \"{name}\"",
                d.dest.name,
                d.dest.target.to_string_lossy()
            )
        })
        .collect();
    format!(
        "SOURCE {root} is empty, but {dests}: {when} would delete all of it. If SOURCE \
         is a mount point, mount it (findmnt {root}) and start again; if SOURCE is meant \
         to be empty, start syncd with --allow-empty-source (allow_empty_source = true in \
         a config file)",
        root = source.root.display(),
        dests = list.join(", and "),
    )
}

/// The start-up check: when SOURCE is empty, refuses (a usage error) if a
/// destination holds data; destinations that cannot be reached are left
/// to their worker's check. Destinations are checked in parallel, so the
/// wait is that of the slowest.
pub fn at_start(cfg: &RunConfig) -> Result<()> {
    if cfg.workers.allow_empty_source || !source_is_empty(&cfg.source, &cfg.filter) {
        return Ok(());
    }
    log::info!(
        "SOURCE {} is empty: checking that no destination holds data",
        cfg.source.root.display()
    );
    let verdicts: Vec<Holds> = std::thread::scope(|s| {
        let handles: Vec<_> = cfg
            .dests
            .iter()
            .map(|d| {
                s.spawn(move || {
                    // The worker opens the ssh master later; this check
                    // connects on its own.
                    let mut d = d.clone();
                    d.rsync.control_dir = None;
                    check(&d, &cfg.source, &cfg.filter, || false)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Holds::Unknown("the check panicked".into()))
            })
            .collect()
    });
    let mut held = Vec::new();
    for (d, v) in cfg.dests.iter().zip(verdicts) {
        match v {
            Holds::Data(name) => held.push((d, name)),
            Holds::Unknown(why) => log::warn!(
                "[{}] cannot tell whether it holds data ({why}); it gets no full sync while \
                 SOURCE is empty and it does",
                d.dest.name
            ),
            Holds::Nothing => {}
        }
    }
    if held.is_empty() {
        return Ok(());
    }
    Err(Error::Usage(refusal(
        &cfg.source,
        &held,
        "the start-up full sync",
    )))
}

/// The worker's check before a run that holds a full sync of the root:
/// why the run must not go ahead, or `None`.
pub fn before_full_sync(
    d: &DestConfig,
    source: &Source,
    filter: &Filter,
    stop: impl FnMut() -> bool,
) -> Option<String> {
    if !source_is_empty(source, filter) {
        return None;
    }
    match check(d, source, filter, stop) {
        Holds::Nothing => None,
        Holds::Data(name) => Some(refusal(source, &[(d, name)], "this full sync")),
        Holds::Unknown(why) => Some(format!(
            "SOURCE {} is empty and syncd cannot tell whether {} holds data ({why}); not \
             running a full sync that could delete it (--allow-empty-source turns this check off)",
            source.root.display(),
            d.dest.name
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_lines_give_names() {
        assert_eq!(
            listed(b"drwxr-xr-x          4,096 2026/11/26 05:18:50 ."),
            Some((b".".to_vec(), true))
        );
        assert_eq!(
            listed(b"-rw-r--r--              1 2026/11/26 05:18:50 new\\#012line"),
            Some((b"new\nline".to_vec(), false))
        );
        assert_eq!(
            listed(b"-rw-r--r--              0 2026/11/26 05:18:50  two  spaces"),
            Some((b" two  spaces".to_vec(), false))
        );
        assert_eq!(
            listed(b"lrwxrwxrwx             11 2026/11/26 05:20:53 li nk"),
            Some((b"li nk".to_vec(), false))
        );
        assert_eq!(listed(b"rsync: [sender] change_dir failed"), None);
        assert_eq!(listed(b""), None);
        assert_eq!(unescape(b"a\\#134b\\#1"), b"a\\b\\#1");
    }

    fn source(root: &Path) -> Source {
        Source {
            root: root.to_path_buf(),
            base: root.to_path_buf(),
            rel: Vec::new(),
        }
    }

    #[test]
    fn emptiness_ignores_excluded_names() {
        let t = tempfile::tempdir().unwrap();
        let s = source(t.path());
        let none = Filter::default();
        assert!(source_is_empty(&s, &none));
        std::fs::create_dir(t.path().join("cache")).unwrap();
        assert!(!source_is_empty(&s, &none));
        let f = Filter::new(
            &[crate::config::filter::ExcludeArg::Pattern("cache/".into())],
            b"",
        )
        .unwrap();
        assert!(source_is_empty(&s, &f));
    }

    #[test]
    fn a_local_destination_is_read_where_the_mirror_lands() {
        let t = tempfile::tempdir().unwrap();
        let yes = |_: &[u8], _: bool| true;
        assert_eq!(check_local(&t.path().join("missing"), yes), Holds::Nothing);
        assert_eq!(check_local(t.path(), yes), Holds::Nothing);
        std::fs::write(t.path().join("a\nb"), "x").unwrap();
        assert_eq!(check_local(t.path(), yes), Holds::Data("a\\x0ab".into()));
        assert_eq!(check_local(t.path(), |_, _| false), Holds::Nothing);
        assert_eq!(
            landing_dir(Path::new("/d"), b"srv/www"),
            Path::new("/d/srv/www")
        );
    }
}
