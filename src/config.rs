//! Validated settings: the command line turned into what the daemon runs.
//!
//! `cli` describes arguments; this module checks them and resolves paths
//! once, at start, so a bad invocation fails before anything is watched or
//! written, with a message that says what to write instead. It refuses the
//! combinations that lose data or loop forever: a destination inside the
//! source (every sync would trigger another), a state directory inside the
//! source (every commit would), two destinations with the same target.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cli::{RsyncArgs, RunArgs, StateArgs};
use crate::destopts::DestOptions;
use crate::error::{Error, Result};
use crate::filter::{ExcludeArg, Filter};
use crate::location::{dedupe_names, Destination, Place, Source};
use crate::worker::{DestConfig, WorkerSettings};

/// Everything `syncd run` needs.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub source: Source,
    pub dests: Vec<DestConfig>,
    pub state_dir: PathBuf,
    pub delay: Duration,
    /// How long a file still open for writing is held back.
    pub hold: Duration,
    pub initial_sync: bool,
    /// Move the store aside first (`--reset-queue`).
    pub reset_queue: bool,
    pub workers: WorkerSettings,
    /// Early-flush cap of the window, in optimized entries.
    pub window_cap: usize,
    /// Where to serve metrics, if anywhere.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Where to write the metrics textfile, if anywhere.
    pub metrics_textfile: Option<PathBuf>,
    /// The excludes, shared by the watcher, the workers and rsync.
    pub filter: std::sync::Arc<crate::filter::Filter>,
}

impl RunConfig {
    /// The watcher's view of the filter.
    pub fn exclude(&self) -> crate::watch::Exclude {
        let f = self.filter.clone();
        std::sync::Arc::new(move |p: &[u8], is_dir: bool| f.excluded(p, is_dir))
    }
}

/// The state directory from the flag or env, or the default for this user.
pub fn state_dir(args: &StateArgs) -> Result<PathBuf> {
    if let Some(d) = &args.state_dir {
        return absolute(d);
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return Ok(PathBuf::from("/var/lib/syncd"));
    }
    if let Some(x) = std::env::var_os("XDG_STATE_HOME").filter(|x| !x.is_empty()) {
        return Ok(PathBuf::from(x).join("syncd"));
    }
    match std::env::var_os("HOME") {
        Some(h) => Ok(PathBuf::from(h).join(".local/state/syncd")),
        None => Err(Error::Usage(
            "no --state-dir given and $HOME is not set".into(),
        )),
    }
}

fn absolute(p: &Path) -> Result<PathBuf> {
    std::path::absolute(p).map_err(|e| Error::io("cannot resolve", p, e))
}

fn seconds(what: &str, s: f64, max: f64) -> Result<Duration> {
    if !s.is_finite() || s < 0.0 || s > max {
        return Err(Error::Usage(format!(
            "{what} must be a number of seconds from 0 to {max}, not {s}"
        )));
    }
    Ok(Duration::from_secs_f64(s))
}

impl RunConfig {
    /// Checks and resolves `syncd run`'s arguments.
    pub fn from_args(a: &RunArgs) -> Result<RunConfig> {
        let cwd = std::env::current_dir().map_err(|e| Error::io("cannot read", ".", e))?;
        let delay = seconds("--delay", a.timing.delay, 86_400.0)?;
        let backoff_max = seconds("--backoff-max", a.timing.backoff_max, 86_400.0)?
            .max(Duration::from_millis(100));
        let source = Source::resolve(&a.source, &cwd)?;
        let state_dir = state_dir(&a.state)?;
        if is_inside(&state_dir, &source.root) {
            return Err(Error::Usage(format!(
                "the state directory {} is inside SOURCE {}: every commit would \
                 be an event; put it elsewhere with --state-dir",
                state_dir.display(),
                source.root.display()
            )));
        }
        let mut excludes: Vec<ExcludeArg> = a
            .filter
            .exclude
            .iter()
            .cloned()
            .map(ExcludeArg::Pattern)
            .collect();
        for f in &a.filter.exclude_from {
            excludes.push(ExcludeArg::From(absolute(f)?));
        }
        let filter = std::sync::Arc::new(Filter::new(&excludes, &source.rel)?);
        let mut dests = Vec::new();
        for d in &a.dests {
            dests.push(Destination::resolve(d, &cwd)?);
        }
        check_dests(&source, &dests)?;
        dedupe_names(&mut dests);
        // The same excludes as syncd's own, so rsync's recursion into trees
        // and its --delete agree with what was not queued.
        let opts = dest_options(&a.rsync, filter.rsync_args(), &dests, &state_dir)?;
        let workers = WorkerSettings {
            filter: filter.clone(),
            backoff_max,
            ..WorkerSettings::default()
        };
        Ok(RunConfig {
            source,
            dests: dests
                .into_iter()
                .zip(opts)
                .map(|(dest, rsync)| DestConfig { dest, rsync })
                .collect(),
            state_dir,
            delay,
            hold: seconds("--hold-open", a.timing.hold_open, 86_400.0)?,
            initial_sync: !a.no_initial_sync,
            reset_queue: a.reset_queue,
            workers,
            window_cap: 50_000,
            metrics_listen: a
                .metrics
                .metrics_listen
                .as_deref()
                .map(crate::metrics::parse_listen)
                .transpose()?,
            metrics_textfile: a
                .metrics
                .metrics_textfile
                .as_deref()
                .map(absolute)
                .transpose()?,
            filter,
        })
    }
}

/// Each destination's options: the defaults, the global flags, then its
/// own `--dest-opt`s; plus where ssh control sockets go (created by the
/// worker, so a dry run touches nothing).
fn dest_options(
    args: &RsyncArgs,
    excludes: Vec<OsString>,
    dests: &[Destination],
    state_dir: &Path,
) -> Result<Vec<DestOptions>> {
    let mut base = DestOptions {
        extra: excludes,
        ..DestOptions::default()
    };
    for (key, value) in args.pairs() {
        base.set(key, value)
            .map_err(|e| Error::Usage(format!("--{key}: {e}")))?;
    }
    let mut opts = vec![base; dests.len()];
    let mut own: Vec<Vec<String>> = vec![Vec::new(); dests.len()];
    for arg in &args.dest_opt {
        let (name, key, value) = split_dest_opt(arg)?;
        let Some(i) = dests.iter().position(|d| d.name == name) else {
            let names: Vec<&str> = dests.iter().map(|d| d.name.as_str()).collect();
            return Err(Error::Usage(format!(
                "--dest-opt {}: no destination is named {name:?}; the names are: {}",
                arg.to_string_lossy(),
                names.join(", ")
            )));
        };
        opts[i]
            .set(&key, value)
            .map_err(|e| Error::Usage(format!("--dest-opt {}: {e}", arg.to_string_lossy())))?;
        own[i].push(key);
    }
    for ((d, o), keys) in dests.iter().zip(&opts).zip(&own) {
        o.check_for(d, keys).map_err(Error::Usage)?;
    }
    let dir = crate::remote::control_dir(state_dir);
    for o in &mut opts {
        o.control_dir = Some(dir.clone());
    }
    Ok(opts)
}

/// Splits `NAME:KEY=VALUE` (names never contain `:`; the value is bytes).
fn split_dest_opt(arg: &OsStr) -> Result<(String, String, &OsStr)> {
    use std::os::unix::ffi::OsStrExt;
    let b = arg.as_bytes();
    let bad = || {
        Error::Usage(format!(
            "--dest-opt {}: write NAME:KEY=VALUE, e.g. web1:bwlimit=2M",
            arg.to_string_lossy()
        ))
    };
    let colon = b.iter().position(|&c| c == b':').ok_or_else(bad)?;
    let eq = b[colon..].iter().position(|&c| c == b'=').ok_or_else(bad)? + colon;
    let name = std::str::from_utf8(&b[..colon]).map_err(|_| bad())?;
    let key = std::str::from_utf8(&b[colon + 1..eq]).map_err(|_| bad())?;
    if name.is_empty() || key.is_empty() {
        return Err(bad());
    }
    Ok((
        name.to_string(),
        key.to_string(),
        OsStr::from_bytes(&b[eq + 1..]),
    ))
}

fn check_dests(source: &Source, dests: &[Destination]) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    for d in dests {
        if !seen.insert(d.target.clone()) {
            return Err(Error::Usage(format!(
                "destination {} is given twice",
                d.target.to_string_lossy()
            )));
        }
        if let Place::Local { path } = &d.place {
            if is_inside(path, &source.root) {
                return Err(Error::Usage(format!(
                    "destination {} is inside SOURCE {}: each sync would change \
                     the source and start another; choose a directory outside it",
                    path.display(),
                    source.root.display()
                )));
            }
        }
    }
    Ok(())
}

/// Whether `p` is `dir` or below it, once the existing part of `p` is
/// resolved (so a symlink into the source is caught too).
pub fn is_inside(p: &Path, dir: &Path) -> bool {
    let mut existing = p.to_path_buf();
    let mut rest = Vec::new();
    while !existing.exists() {
        match (
            existing.file_name().map(OsStr::to_os_string),
            existing.parent(),
        ) {
            (Some(name), Some(parent)) => {
                rest.push(name);
                existing = parent.to_path_buf();
            }
            _ => break,
        }
    }
    let mut resolved = std::fs::canonicalize(&existing).unwrap_or(existing);
    for name in rest.into_iter().rev() {
        resolved.push(name);
    }
    resolved.starts_with(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn config(args: &[&str]) -> Result<RunConfig> {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("src");
        std::fs::create_dir(&src).unwrap();
        let state = t.path().join("state");
        let mut v: Vec<OsString> = vec!["syncd".into(), "run".into(), "--state-dir".into()];
        v.push(state.into());
        v.extend(args.iter().map(OsString::from));
        v.push(src.into());
        v.extend(["u@web1:/x", "h::mod/p", "/tmp/local-dst"].map(OsString::from));
        let cli = crate::cli::Cli::try_parse_from(v).map_err(|e| Error::Usage(e.to_string()))?;
        match cli.command {
            crate::cli::Command::Run(a) => RunConfig::from_args(&a),
            _ => unreachable!("parsed a run command"),
        }
    }

    #[test]
    fn global_options_then_per_destination_ones_apply() {
        let c = config(&[
            "--timeout=9",
            "--bwlimit=1M",
            "--rsync-arg",
            "--numeric-ids",
            "--dest-opt",
            "web1:bwlimit=5M",
            "--dest-opt",
            "web1:port=2222",
            "--dest-opt=h-mod:rsync-arg=--checksum",
            "--dest-opt=local-dst:watchdog=0",
        ])
        .unwrap();
        let [web, daemon, local] = &c.dests[..] else {
            panic!("three destinations")
        };
        assert_eq!(web.rsync.bwlimit.as_deref(), Some("5M"));
        assert_eq!(web.rsync.port, Some(2222));
        assert_eq!(daemon.rsync.bwlimit.as_deref(), Some("1M"));
        assert_eq!(daemon.rsync.extra, ["--numeric-ids", "--checksum"]);
        assert_eq!(web.rsync.extra, ["--numeric-ids"]);
        assert!(c.dests.iter().all(|d| d.rsync.timeout_s == 9));
        assert_eq!(local.rsync.watchdog_s, 0);
        assert_eq!(web.rsync.watchdog_s, 600);
        assert!(web
            .rsync
            .control_dir
            .as_ref()
            .unwrap()
            .ends_with("state/ssh"));
    }

    #[test]
    fn bad_destination_options_are_usage_errors() {
        for (args, needle) in [
            (
                vec!["--dest-opt", "nope:port=1"],
                "the names are: web1, h-mod, local-dst",
            ),
            (vec!["--dest-opt", "web1port=1"], "NAME:KEY=VALUE"),
            (
                vec!["--dest-opt", "web1:colour=red"],
                "unknown destination option",
            ),
            (vec!["--dest-opt", "local-dst:port=22"], "local destination"),
            (vec!["--timeout", "0"], "--timeout"),
            (vec!["--rsync-arg=--ignore-errors"], "refused"),
        ] {
            let e = config(&args).unwrap_err().to_string();
            assert!(e.contains(needle), "{args:?}: {e}");
        }
    }

    #[test]
    fn inside_checks_resolve_symlinks_and_missing_tails() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("src");
        std::fs::create_dir(&src).unwrap();
        std::os::unix::fs::symlink(&src, t.path().join("link")).unwrap();
        let src = std::fs::canonicalize(&src).unwrap();
        assert!(is_inside(&src, &src));
        assert!(is_inside(&t.path().join("src/a/b"), &src));
        assert!(is_inside(&t.path().join("link/new"), &src));
        assert!(!is_inside(&t.path().join("srcx"), &src));
    }
}
