//! syncd: watch a directory tree, aggregate its changes, commit each
//! changeset to a durable per-destination queue, and drain the queues
//! through rsync, acknowledging only what rsync delivered.
//!
//! The pipeline has one module per stage: [`watch`] (inotify through
//! notify), [`aggregate`] (the time window) with the pure [`optimize`]r,
//! [`commit`] (one transaction per changeset into the [`store`]), and
//! [`worker`] (one thread per destination running [`rsync`] on paths
//! [`classify`]d against the live tree; [`exitcode`] judges each run,
//! [`remote`] shapes ssh, [`watchdog`] ends runs that hang, [`destopts`]
//! holds each destination's settings). [`daemon`] wires them into one
//! main loop; [`record`] is the on-disk codec, [`lock`] the single-instance
//! guard, [`inspect`] the queue and status reports, [`control`] the socket
//! through which commands reach a running daemon. The binary (`main.rs`)
//! is a thin layer over [`run`].

pub mod aggregate;
pub mod changeset;
pub mod classify;
pub mod cli;
pub mod commit;
pub mod config;
pub mod configfile;
pub mod control;
pub mod daemon;
pub mod destopts;
pub mod dryrun;
pub mod error;
pub mod exitcode;
pub mod filter;
pub mod guard;
pub mod inspect;
pub mod location;
pub mod lock;
pub mod logger;
pub mod metrics;
pub mod optimize;
pub mod pipeline;
pub mod progress;
pub mod record;
pub mod remote;
pub mod rsync;
pub mod service;
pub mod store;
pub mod watch;
pub mod watchdog;
pub mod worker;

use std::io::Write;
use std::path::Path;

pub use error::{Error, Result};

use cli::{Cli, Command, InspectArgs, PurgeArgs, QueueCommand, RetryArgs, StatusArgs};
use control::{Reply, Request};

/// Runs a parsed command line. Output goes to `out`.
pub fn run(cli: Cli, out: &mut dyn Write) -> Result<()> {
    let file = cli
        .config
        .as_deref()
        .map(configfile::ConfigFile::load)
        .transpose()?;
    let f = file.as_ref();
    let flog = f.map(configfile::ConfigFile::log).unwrap_or_default();
    logger::init(&logger::LogConfig {
        debug: cli.log.debug || flog.debug.unwrap_or(false),
        verbose: cli.log.verbose || flog.verbose.unwrap_or(false),
        quiet: cli.log.quiet || flog.quiet.unwrap_or(false),
        syslog: (cli.log.syslog || flog.syslog.unwrap_or(false)).then(|| {
            cli.log
                .syslog_facility
                .clone()
                .or(flog.syslog_facility)
                .unwrap_or_else(|| "user".into())
        }),
        syslog_socket: cli
            .log
            .syslog_socket
            .clone()
            .or(flog.syslog_socket)
            .unwrap_or_else(|| "/dev/log".into()),
    })
    .map_err(Error::Usage)?;
    match cli.command {
        Command::Run(a) => {
            let cfg = config::RunConfig::from_args(&a, f)?;
            if a.dry_run {
                return dryrun::run(cfg, out);
            }
            daemon::run(cfg)
        }
        Command::CheckConfig(a) => {
            let cfg = config::RunConfig::from_args(&a, f)?;
            written(config::describe(&cfg, out), out)
        }
        Command::Status(a) => status(&a, f, out),
        Command::Queue(QueueCommand::Inspect(a)) => queue_inspect(&a, f, out),
        Command::Queue(QueueCommand::Retry(a)) => queue_retry(&a, f, out),
        Command::Queue(QueueCommand::Purge(a)) => queue_purge(&a, f, out),
        Command::Man => {
            let man = clap_mangen::Man::new(<Cli as clap::CommandFactory>::command());
            man.render(out)
                .map_err(|e| Error::io("cannot write to", "stdout", e))
        }
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "syncd", out);
            Ok(())
        }
    }
}

/// Runs one request on the queues of `dir`, through the daemon or not.
fn request(dir: &Path, req: &Request) -> Result<(Reply, bool)> {
    let mut reached = control::reach(dir)?;
    let reply = reached.run(req)?;
    Ok((reply, reached.is_live()))
}

fn unexpected(reply: &Reply) -> Error {
    Error::Control(format!(
        "the daemon answered with an unexpected reply: {reply:?}"
    ))
}

fn written(r: std::io::Result<()>, out: &mut dyn Write) -> Result<()> {
    r.and_then(|_| out.flush())
        .map_err(|e| Error::io("cannot write to", "stdout", e))
}

fn json(out: &mut dyn Write, v: &impl serde::Serialize) -> std::io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, v)?;
    writeln!(out)
}

fn queue_inspect(
    a: &InspectArgs,
    file: Option<&configfile::ConfigFile>,
    out: &mut dyn Write,
) -> Result<()> {
    let dir = config::state_dir(&a.state, file)?;
    let req = Request::Inspect {
        dest: a.dest.clone(),
        entries: a.entries,
    };
    let ins = match request(&dir, &req)?.0 {
        Reply::Inspection(i) => i,
        other => return Err(unexpected(&other)),
    };
    let r = if a.json {
        json(out, &ins)
    } else {
        inspect::write_table(out, &ins)
    };
    written(r, out)
}

fn status(
    a: &StatusArgs,
    file: Option<&configfile::ConfigFile>,
    out: &mut dyn Write,
) -> Result<()> {
    let dir = config::state_dir(&a.state, file)?;
    let req = Request::Status {
        max_failures: a.max_failures,
    };
    let (report, why_down) = match request(&dir, &req) {
        Ok((Reply::Status(s), _)) => (s, None),
        Ok((other, _)) => return Err(unexpected(&other)),
        Err(Error::NotRunning(msg)) => (
            inspect::StatusReport {
                daemon: None,
                state_dir: changeset::escape(std::os::unix::ffi::OsStrExt::as_bytes(
                    dir.as_os_str(),
                )),
                healthy: false,
                destinations: Vec::new(),
            },
            Some(msg),
        ),
        Err(e) => return Err(e),
    };
    let r = if a.json {
        json(out, &report)
    } else {
        inspect::write_status(out, &report)
    };
    written(r, out)?;
    if report.daemon.is_none() {
        return Err(Error::NotRunning(why_down.unwrap_or_else(|| {
            format!("no syncd daemon is running on {}", dir.display())
        })));
    }
    let bad: Vec<&str> = report
        .destinations
        .iter()
        .filter(|h| h.problem.is_some())
        .map(|h| h.name.as_str())
        .collect();
    if !bad.is_empty() {
        return Err(Error::Unhealthy(format!(
            "destinations in error: {}",
            bad.join(", ")
        )));
    }
    Ok(())
}

fn queue_retry(
    a: &RetryArgs,
    file: Option<&configfile::ConfigFile>,
    out: &mut dyn Write,
) -> Result<()> {
    let dir = config::state_dir(&a.state, file)?;
    let req = Request::Retry {
        dest: a.dest.clone(),
    };
    changed(&dir, &req, out)
}

fn queue_purge(
    a: &PurgeArgs,
    file: Option<&configfile::ConfigFile>,
    out: &mut dyn Write,
) -> Result<()> {
    if !a.yes {
        return Err(Error::Usage(format!(
            "`syncd queue purge` drops every pending changeset and dead letter of {:?} for \
             good: that destination then misses those changes until the next full sync. \
             Add --yes to do it",
            a.dest
        )));
    }
    let dir = config::state_dir(&a.state, file)?;
    let req = Request::Purge {
        dest: a.dest.clone(),
    };
    changed(&dir, &req, out)
}

/// Runs `retry` or `purge` and says what it did, one line per destination.
fn changed(dir: &Path, req: &Request, out: &mut dyn Write) -> Result<()> {
    let (reply, live) = request(dir, req)?;
    let Reply::Changed(c) = reply else {
        return Err(unexpected(&reply));
    };
    let mut r = Ok(());
    for m in &c.destinations {
        let what = match (c.action.as_str(), m.changesets) {
            ("purge", n) => format!("{n} changesets dropped"),
            (_, 0) => "no dead letters".to_string(),
            (_, n) => format!("{n} dead changesets back in the queue"),
        };
        let how = match (live, m.woken) {
            (true, true) => "; its worker tries now",
            (true, false) => "; the daemon does not replicate to it",
            (false, _) => " (no daemon is running: done in the store)",
        };
        r = r.and_then(|_| writeln!(out, "{}: {}: {what}{how}", c.action, m.name));
    }
    written(r, out)
}
