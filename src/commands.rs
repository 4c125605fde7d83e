//! The commands that observe or act on the queues of a state directory
//! (`status`, `queue inspect`, `queue retry`, `queue purge`): each one
//! reaches the running daemon over its control socket, or opens the store
//! itself when none runs, and prints the answer.

use std::io::Write;
use std::path::Path;

use crate::config::cli::{CheckpointArgs, InspectArgs, PurgeArgs, RetryArgs, StatusArgs, SyncArgs};
use crate::config::file::ConfigFile;
use crate::error::{Error, Result};
use crate::observe::control::protocol::Action;
use crate::observe::control::{self, Reply, Request};
use crate::observe::inspect;

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

pub fn written(r: std::io::Result<()>, out: &mut dyn Write) -> Result<()> {
    r.and_then(|_| out.flush()).map_err(Error::Output)
}

fn json(out: &mut dyn Write, v: &impl serde::Serialize) -> std::io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, v)?;
    writeln!(out)
}

pub fn queue_inspect(
    a: &InspectArgs,
    file: Option<&ConfigFile>,
    out: &mut dyn Write,
) -> Result<()> {
    let dir = crate::config::state_dir(&a.state, file)?;
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

pub fn status(a: &StatusArgs, file: Option<&ConfigFile>, out: &mut dyn Write) -> Result<()> {
    let dir = crate::config::state_dir(&a.state, file)?;
    let req = Request::Status {
        max_failures: a.max_failures,
    };
    let (report, why_down) = match request(&dir, &req) {
        Ok((Reply::Status(s), _)) => (s, None),
        Ok((other, _)) => return Err(unexpected(&other)),
        Err(Error::NotRunning(msg)) => (
            inspect::StatusReport {
                daemon: None,
                state_dir: crate::changeset::escape(std::os::unix::ffi::OsStrExt::as_bytes(
                    dir.as_os_str(),
                )),
                healthy: false,
                destinations: Vec::new(),
                unwatched: None,
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

pub fn queue_retry(a: &RetryArgs, file: Option<&ConfigFile>, out: &mut dyn Write) -> Result<()> {
    let dir = crate::config::state_dir(&a.state, file)?;
    let req = Request::Retry {
        dest: a.dest.clone(),
    };
    changed(&dir, &req, out)
}

pub fn queue_purge(a: &PurgeArgs, file: Option<&ConfigFile>, out: &mut dyn Write) -> Result<()> {
    if !a.yes {
        return Err(Error::Usage(format!(
            "`syncd queue purge` drops every pending changeset and dead letter of {:?} for \
             good: that destination then misses those changes until the next full sync. \
             Add --yes to do it",
            a.dest
        )));
    }
    let dir = crate::config::state_dir(&a.state, file)?;
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
        let what = match (c.action, m.changesets) {
            (Action::Purge, n) => format!("{n} changesets dropped"),
            (_, 0) => "no dead letters".to_string(),
            (_, n) => format!("{n} dead changesets back in the queue"),
        };
        let how = match (live, m.woken) {
            (true, true) => "; its worker tries now",
            (true, false) => "; the daemon does not replicate to it",
            (false, _) => " (no daemon is running: done in the store)",
        };
        r = r.and_then(|_| writeln!(out, "{}: {}: {what}{how}", c.action.word(), m.name));
    }
    written(r, out)
}

/// The daemon of `dir`, which must be running: checkpoints and syncs are
/// its acts.
fn live(dir: &Path) -> Result<control::client::Client> {
    control::client::connect(dir)?.ok_or_else(|| {
        Error::NotRunning(format!(
            "no syncd daemon is running on {}: checkpoints and syncs are taken by the running \
             daemon",
            dir.display()
        ))
    })
}

/// `syncd checkpoint [--wait]`.
pub fn checkpoint(
    a: &CheckpointArgs,
    file: Option<&ConfigFile>,
    out: &mut dyn Write,
) -> Result<()> {
    let dir = crate::config::state_dir(&a.state, file)?;
    let mut c = live(&dir)?;
    let taken = match c.call(&Request::Checkpoint {
        dest: a.dest.clone(),
    })? {
        Reply::Checkpoint(t) => t,
        other => return Err(unexpected(&other)),
    };
    let at = crate::observe::logger::utc_iso(taken.at_unix_ms / 1000);
    written(
        writeln!(
            out,
            "checkpoint {at} ({} ms) taken on {}",
            taken.at_unix_ms,
            taken.destinations.join(", ")
        ),
        out,
    )?;
    if !a.wait {
        return Ok(());
    }
    let started = std::time::Instant::now();
    let timeout = a.timeout.map(std::time::Duration::from_secs_f64);
    loop {
        let report = match c.call(&Request::Status {
            max_failures: crate::observe::status::DEFAULT_MAX_FAILURES,
        })? {
            Reply::Status(s) => s,
            other => return Err(unexpected(&other)),
        };
        let waiting: Vec<&str> = report
            .destinations
            .iter()
            .filter(|h| taken.destinations.contains(&h.name))
            .filter(|h| h.delivered_unix_ms.is_none_or(|d| d < taken.at_unix_ms))
            .map(|h| h.name.as_str())
            .collect();
        if waiting.is_empty() {
            return written(
                writeln!(
                    out,
                    "checkpoint {at} complete: every change made before it is on {}",
                    taken.destinations.join(", ")
                ),
                out,
            );
        }
        if timeout.is_some_and(|t| started.elapsed() >= t) {
            return Err(Error::Timeout(format!(
                "checkpoint {at} did not complete within {:.0}s on {}",
                timeout.unwrap_or_default().as_secs_f64(),
                waiting.join(", ")
            )));
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// `syncd sync [--full] [--dest NAME]`.
pub fn sync(a: &SyncArgs, file: Option<&ConfigFile>, out: &mut dyn Write) -> Result<()> {
    let dir = crate::config::state_dir(&a.state, file)?;
    let mut c = live(&dir)?;
    let done = match c.call(&Request::Sync {
        dest: a.dest.clone(),
        full: a.full,
    })? {
        Reply::Synced(s) => s,
        other => return Err(unexpected(&other)),
    };
    let r = if done.full {
        writeln!(
            out,
            "window committed; full sync queued for {}",
            done.destinations.join(", ")
        )
    } else {
        writeln!(out, "window committed")
    };
    written(r, out)
}
