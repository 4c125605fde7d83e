//! Building a [`RunConfig`] from `syncd run`'s arguments over the config
//! file: every check that can fail at start fails here, with a message that
//! says what to write instead.

use std::ffi::{OsStr, OsString};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use super::cli::{RsyncArgs, RunArgs};
use super::file::{ConfigFile, FileDest};
use super::filter::{ExcludeArg, Filter};
use super::location::{dedupe_names, Destination, Place, Source};
use super::state::absolute;
use super::{DestConfig, DestOptions, InitialSync, RunConfig, WorkerSettings};
use crate::error::{Error, Result};

fn seconds(what: &str, s: f64, max: f64) -> Result<Duration> {
    if !s.is_finite() || s < 0.0 || s > max {
        return Err(Error::Usage(format!(
            "{what} must be a number of seconds from 0 to {max}, not {s}"
        )));
    }
    Ok(Duration::from_secs_f64(s))
}

impl RunConfig {
    /// Checks and resolves `syncd run`'s arguments over the config file's
    /// settings: every option given on the command line wins; lists
    /// (excludes, rsync arguments) add up; DESTs given on the command line
    /// replace the file's `[[dest]]` tables. `RSYNC_RSH` in the environment
    /// is the default remote shell, as it is rsync's.
    pub fn from_args(a: &RunArgs, file: Option<&ConfigFile>) -> Result<RunConfig> {
        let rsync_rsh = std::env::var_os(RSYNC_RSH);
        RunConfig::from_args_env(a, file, rsync_rsh.as_deref())
    }

    /// [`RunConfig::from_args`] with the value of `RSYNC_RSH` given.
    pub fn from_args_env(
        a: &RunArgs,
        file: Option<&ConfigFile>,
        rsync_rsh: Option<&OsStr>,
    ) -> Result<RunConfig> {
        let cwd = std::env::current_dir().map_err(|e| Error::io("cannot read", ".", e))?;
        let pick = |cli: Option<f64>, f: fn(&ConfigFile) -> Option<f64>| {
            cli.or_else(|| file.and_then(f)).unwrap_or(60.0)
        };
        let delay = seconds("--delay", pick(a.timing.delay, ConfigFile::delay), 86_400.0)?;
        let backoff_max = seconds(
            "--backoff-max",
            pick(a.timing.backoff_max, ConfigFile::backoff_max),
            86_400.0,
        )?
        .max(Duration::from_millis(100));
        let hold = seconds(
            "--hold-open",
            pick(a.timing.hold_open, ConfigFile::hold_open),
            86_400.0,
        )?;
        let source_arg = a
            .source
            .clone()
            .or_else(|| file.and_then(ConfigFile::source))
            .ok_or_else(|| {
                Error::Usage(
                "no SOURCE: give it on the command line or as `source = \"...\"` in the config file"
                    .into(),
            )
            })?;
        // Relative paths in the file are relative to the file's directory.
        let source_cwd = match (&a.source, file) {
            (None, Some(f)) => f
                .path()
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or(cwd.clone()),
            _ => cwd.clone(),
        };
        let source = Source::resolve(&source_arg, &source_cwd)?;
        let state_dir = super::state_dir(&a.state, file)?;
        if is_inside(&state_dir, &source.root) {
            return Err(Error::Usage(format!(
                "the state directory {} is inside SOURCE {}: every commit would \
                 be an event; put it elsewhere with --state-dir",
                state_dir.display(),
                source.root.display()
            )));
        }
        let mut excludes: Vec<ExcludeArg> = Vec::new();
        if let Some(f) = file {
            excludes.extend(f.excludes().into_iter().map(ExcludeArg::Pattern));
            excludes.extend(f.exclude_from().into_iter().map(ExcludeArg::From));
        }
        excludes.extend(a.filter.exclude.iter().cloned().map(ExcludeArg::Pattern));
        for f in &a.filter.exclude_from {
            excludes.push(ExcludeArg::From(absolute(f)?));
        }
        let filter = std::sync::Arc::new(Filter::new(&excludes, &source.rel)?);
        let (mut dests, file_dests) = match (a.dests.is_empty(), file) {
            (false, _) | (true, None) => {
                let mut v = Vec::new();
                for d in &a.dests {
                    v.push(Destination::resolve(d, &cwd)?);
                }
                (v, Vec::new())
            }
            (true, Some(f)) => {
                let dir = f
                    .path()
                    .parent()
                    .map(Path::to_path_buf)
                    .unwrap_or(cwd.clone());
                let mut v = Vec::new();
                for fd in f.dests() {
                    let mut d = Destination::resolve(&fd.target, &dir)
                        .map_err(|e| Error::Usage(format!("{}: {e}", f.at(fd.line))))?;
                    if let Some(n) = &fd.name {
                        d.name = n.clone();
                    }
                    v.push(d);
                }
                (v, f.dests().to_vec())
            }
        };
        if dests.is_empty() {
            return Err(Error::Usage(
                "no DEST: give one or more on the command line or as [[dest]] tables in the \
                 config file"
                    .into(),
            ));
        }
        check_dests(&source, &dests)?;
        check_names(&dests, &file_dests)?;
        dedupe_names(&mut dests);
        // The same excludes as syncd's own, so rsync's recursion into trees
        // and its --delete agree with what was not queued.
        let opts = dest_options(
            &a.rsync,
            file,
            &file_dests,
            filter.rsync_args(),
            &dests,
            &state_dir,
            rsync_rsh,
        )?;
        let workers = WorkerSettings {
            filter: filter.clone(),
            backoff_max,
            allow_empty_source: a.allow_empty_source
                || file
                    .and_then(ConfigFile::allow_empty_source)
                    .unwrap_or(false),
            ..WorkerSettings::default()
        };
        let metrics_listen = a
            .metrics
            .metrics_listen
            .clone()
            .or_else(|| file.and_then(ConfigFile::metrics_listen));
        let metrics_textfile = match (&a.metrics.metrics_textfile, file) {
            (Some(p), _) => Some(absolute(p)?),
            (None, Some(f)) => f.metrics_textfile(),
            (None, None) => None,
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
            hold,
            initial_sync: initial_sync(a, file)?,
            full_sync_every: a
                .full_sync_every
                .clone()
                .or_else(|| file.and_then(ConfigFile::full_sync_every))
                .map(|t| duration("--full-sync-every", &t))
                .transpose()?,
            reset_queue: a.reset_queue,
            workers,
            window_cap: 50_000,
            metrics_listen: metrics_listen.as_deref().map(parse_listen).transpose()?,
            metrics_textfile,
            filter,
            min_free: a
                .state
                .state_min_free
                .map(|m| m.saturating_mul(1 << 20))
                .unwrap_or(crate::store::DEFAULT_MIN_FREE),
        })
    }
}

/// Names given in the config file must be unique: a repeat there is a
/// mistake, not something to number.
fn check_names(dests: &[Destination], file_dests: &[FileDest]) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    for (d, fd) in dests.iter().zip(file_dests) {
        if fd.name.is_some() && !seen.insert(d.name.clone()) {
            return Err(Error::Usage(format!(
                "line {}: the name {:?} is used by another [[dest]]",
                fd.line, d.name
            )));
        }
    }
    Ok(())
}

/// The environment variable rsync reads its default remote shell from.
pub const RSYNC_RSH: &str = "RSYNC_RSH";

/// Each destination's options, each layer overriding the one before: the
/// defaults, `RSYNC_RSH` (rsync's own default for the remote shell; empty
/// counts as unset), the file's `[rsync]`, the file's `[[dest]]`, the global flags,
/// then `--dest-opt`; plus where ssh control sockets go (created by the
/// worker, so a dry run touches nothing).
fn dest_options(
    args: &RsyncArgs,
    file: Option<&ConfigFile>,
    file_dests: &[FileDest],
    excludes: Vec<OsString>,
    dests: &[Destination],
    state_dir: &Path,
    rsync_rsh: Option<&OsStr>,
) -> Result<Vec<DestOptions>> {
    let mut base = DestOptions {
        extra: excludes,
        ..DestOptions::default()
    };
    if let Some(rsh) = rsync_rsh.filter(|v| !v.is_empty()) {
        base.set("rsh", rsh)
            .map_err(|e| Error::Usage(format!("the environment's {RSYNC_RSH}: {e}")))?;
    }
    if let Some(f) = file {
        for s in f.rsync() {
            base.set(&s.key, &s.value)
                .map_err(|e| Error::Usage(format!("{}: [rsync] {}: {e}", f.at(s.line), s.key)))?;
        }
    }
    let mut opts = vec![base; dests.len()];
    let mut own: Vec<Vec<String>> = vec![Vec::new(); dests.len()];
    if let Some(f) = file {
        for (i, fd) in file_dests.iter().enumerate() {
            for s in &fd.settings {
                opts[i]
                    .set(&s.key, &s.value)
                    .map_err(|e| Error::Usage(format!("{}: {}: {e}", f.at(s.line), s.key)))?;
                own[i].push(s.key.clone());
            }
        }
    }
    for (key, value) in args.pairs() {
        for o in &mut opts {
            o.set(key, value)
                .map_err(|e| Error::Usage(format!("--{key}: {e}")))?;
        }
    }
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
    let dir = super::state::control_dir(state_dir);
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

/// Parses `--metrics-listen`: `PORT` (on 127.0.0.1) or `ADDR:PORT`.
pub fn parse_listen(s: &str) -> Result<SocketAddr> {
    if let Ok(port) = s.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    s.parse().map_err(|_| {
        Error::Usage(format!(
            "--metrics-listen {s:?}: give PORT (loopback) or ADDR:PORT, e.g. 127.0.0.1:9101"
        ))
    })
}

/// `--initial-sync` (or `-i`) over the file's `initial_sync`.
fn initial_sync(a: &RunArgs, file: Option<&ConfigFile>) -> Result<InitialSync> {
    use super::cli::InitialSyncArg;
    if a.no_initial_sync {
        return Ok(InitialSync::None);
    }
    if let Some(m) = a.initial_sync {
        return Ok(match m {
            InitialSyncArg::Scan => InitialSync::Scan,
            InitialSyncArg::Full => InitialSync::Full,
            InitialSyncArg::None => InitialSync::None,
        });
    }
    match file.and_then(ConfigFile::initial_sync).as_deref() {
        None | Some("scan") => Ok(InitialSync::Scan),
        Some("full") => Ok(InitialSync::Full),
        Some("none") => Ok(InitialSync::None),
        Some(other) => Err(Error::Usage(format!(
            "initial_sync = {other:?} in the config file: write \"scan\", \"full\" or \"none\""
        ))),
    }
}

/// Parses a duration: whole seconds, or a number with `s`, `m`, `h` or `d`.
pub fn duration(what: &str, text: &str) -> Result<Duration> {
    let t = text.trim();
    let (num, unit) = match t.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => t.split_at(i),
        None => (t, "s"),
    };
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => 0,
    };
    match num.parse::<u64>() {
        Ok(n) if scale > 0 && n > 0 => Ok(Duration::from_secs(n.saturating_mul(scale))),
        _ => Err(Error::Usage(format!(
            "{what} {text:?}: write a positive number of seconds, or one with a unit: 90s, 30m, \
             6h, 1d"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn config(args: &[&str]) -> Result<RunConfig> {
        config_with(args, None, None)
    }

    /// [`config`] with `RSYNC_RSH` set to `rsync_rsh` and a config file
    /// holding `file` (its SOURCE and DESTs are replaced by the command
    /// line's).
    fn config_with(
        args: &[&str],
        rsync_rsh: Option<&str>,
        file: Option<&str>,
    ) -> Result<RunConfig> {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("src");
        std::fs::create_dir(&src).unwrap();
        let state = t.path().join("state");
        let mut v: Vec<OsString> = vec!["syncd".into(), "run".into(), "--state-dir".into()];
        v.push(state.into());
        v.extend(args.iter().map(OsString::from));
        v.push(src.into());
        v.extend(["u@web1:/x", "h::mod/p", "/tmp/local-dst"].map(OsString::from));
        let cli =
            crate::config::cli::Cli::try_parse_from(v).map_err(|e| Error::Usage(e.to_string()))?;
        let file = file
            .map(|text| ConfigFile::parse(&t.path().join("syncd.toml"), text))
            .transpose()?;
        match cli.command {
            crate::config::cli::Command::Run(a) => {
                RunConfig::from_args_env(&a, file.as_ref(), rsync_rsh.map(OsStr::new))
            }
            _ => unreachable!("parsed a run command"),
        }
    }

    /// `RSYNC_RSH` is the remote shell's default, below the config file's
    /// `rsh`, `--rsh`/`-e` and `--dest-opt NAME:rsh=` (issue 16, item 8).
    #[test]
    fn rsync_rsh_is_the_default_remote_shell_and_everything_else_wins() {
        let rsh = |c: &RunConfig, i: usize| -> Vec<String> {
            c.dests[i]
                .rsync
                .rsh
                .iter()
                .map(|w| w.to_string_lossy().into_owned())
                .collect()
        };
        let env = Some("ssh -p 2200 -i '/k ey'");
        let c = config_with(&[], env, None).unwrap();
        assert_eq!(rsh(&c, 0), ["ssh", "-p", "2200", "-i", "/k ey"]);
        assert_eq!(rsh(&config_with(&[], None, None).unwrap(), 0), ["ssh"]);
        assert_eq!(rsh(&config_with(&[], Some(""), None).unwrap(), 0), ["ssh"]);
        let file = "[rsync]\nrsh = \"ssh -i /from-file\"\n";
        let c = config_with(&[], env, Some(file)).unwrap();
        assert_eq!(rsh(&c, 0), ["ssh", "-i", "/from-file"]);
        let c = config_with(&["-e", "ssh -i /from-flag"], env, Some(file)).unwrap();
        assert_eq!(rsh(&c, 0), ["ssh", "-i", "/from-flag"]);
        let c = config_with(&["--dest-opt", "web1:rsh=ssh -i /one"], env, None).unwrap();
        assert_eq!(rsh(&c, 0), ["ssh", "-i", "/one"]);
        let e = config_with(&[], Some("ssh 'open"), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("RSYNC_RSH"), "{e}");
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

    #[test]
    fn listen_defaults_to_loopback() {
        assert_eq!(parse_listen("9101").unwrap().to_string(), "127.0.0.1:9101");
        assert_eq!(parse_listen("[::1]:9").unwrap().to_string(), "[::1]:9");
        assert!(parse_listen("nope").is_err());
    }

    #[test]
    fn durations_take_a_unit() {
        assert_eq!(duration("x", "90").unwrap(), Duration::from_secs(90));
        assert_eq!(duration("x", "30m").unwrap(), Duration::from_secs(1800));
        assert_eq!(duration("x", "6h").unwrap(), Duration::from_secs(21_600));
        assert_eq!(duration("x", "1d").unwrap(), Duration::from_secs(86_400));
        for bad in ["", "0", "5w", "h", "-3", "1.5h"] {
            assert!(duration("--x", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn initial_sync_modes_and_the_old_letter() {
        assert_eq!(config(&[]).unwrap().initial_sync, InitialSync::Scan);
        assert_eq!(config(&["-i"]).unwrap().initial_sync, InitialSync::None);
        let full = config(&["--initial-sync", "full"]).unwrap();
        assert_eq!(full.initial_sync, InitialSync::Full);
        assert!(config(&["-i", "--initial-sync", "scan"]).is_err());
    }
}
