//! The operations behind the control requests, run on a [`View`]: the
//! store alone (offline, opened by the command itself) or the store and
//! the workers of the running daemon (live, on its main loop).
//!
//! One implementation serves both paths, so `queue inspect` prints the same
//! fields whether or not the daemon runs, and `retry`/`purge` change the
//! store the same way; live, they also tell the destination's worker to try
//! now instead of waiting out its back-off.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::Mutex;

use crossbeam_channel::Sender;

use crate::changeset::escape;
use crate::config::DestConfig;
use crate::error::{Error, Result};
use crate::observe::inspect::{
    self, DaemonInfo, Inspection, Report, StatusReport, STOPPED, UNCONFIGURED,
};
use crate::observe::status::{Cmd, DaemonFacts, Live, WorkerLink};
use crate::store::{now_ms, Store};

use super::protocol::{Action, Changed, Moved, Reply, Request, VERSION};

/// What an operation can see and touch.
pub struct View<'a> {
    pub store: &'a Store,
    /// The running daemon's destinations; `None` offline.
    pub daemon: Option<Running<'a>>,
}

/// The running daemon, as its main loop lends it.
pub struct Running<'a> {
    pub dests: Vec<DestRef<'a>>,
    pub started_ms: u64,
    /// What its main loop knows of it: what its watch could not watch,
    /// how long its steps took.
    pub facts: &'a DaemonFacts,
}

/// One destination of the running daemon, and its worker when it runs.
pub struct DestRef<'a> {
    pub name: &'a str,
    pub target: &'a [u8],
    pub worker: Option<(&'a Mutex<Live>, &'a Sender<Cmd>)>,
}

impl<'a> View<'a> {
    /// The store alone (no daemon runs).
    pub fn offline(store: &'a Store) -> View<'a> {
        View {
            store,
            daemon: None,
        }
    }

    /// The daemon's store, destinations and workers (matched by name), and
    /// what its main loop knows of it.
    pub fn running(
        store: &'a Store,
        dests: &'a [DestConfig],
        workers: &'a [WorkerLink],
        started_ms: u64,
        facts: &'a DaemonFacts,
    ) -> View<'a> {
        let dests = dests
            .iter()
            .map(|d| DestRef {
                name: &d.dest.name,
                target: d.dest.target.as_bytes(),
                worker: workers
                    .iter()
                    .find(|w| w.name == d.dest.name)
                    .map(|w| (&*w.live, &w.tx)),
            })
            .collect();
        View {
            store,
            daemon: Some(Running {
                dests,
                started_ms,
                facts,
            }),
        }
    }
}

/// One destination as an operation walks them: `dest` is set for the
/// running daemon's destinations, `live` when their worker runs.
struct Slot<'v> {
    target: Vec<u8>,
    dest: Option<&'v DestRef<'v>>,
    live: Option<Live>,
}

impl View<'_> {
    /// The daemon's destinations in their order, then the others the store
    /// knows (from earlier runs), sorted.
    fn slots(&self) -> Vec<Slot<'_>> {
        let mut v: Vec<Slot<'_>> = Vec::new();
        if let Some(d) = &self.daemon {
            for w in &d.dests {
                let live = w.worker.map(|(live, _)| match live.lock() {
                    Ok(g) => g.clone(),
                    // A worker that panicked holding the lock: its last
                    // state is still the best answer.
                    Err(p) => p.into_inner().clone(),
                });
                v.push(Slot {
                    target: w.target.to_vec(),
                    dest: Some(w),
                    live,
                });
            }
        }
        for t in self.store.targets() {
            if !v.iter().any(|s| s.target == t) {
                v.push(Slot {
                    target: t,
                    dest: None,
                    live: None,
                });
            }
        }
        v
    }

    /// The state word of a destination without a live worker: stopped,
    /// unless a daemon runs that does not replicate to it.
    fn idle_state(&self, s: &Slot<'_>) -> &'static str {
        if self.daemon.is_some() && s.dest.is_none() {
            UNCONFIGURED
        } else {
            STOPPED
        }
    }

    fn report(&self, s: &Slot<'_>, entries: usize) -> Result<Report> {
        inspect::report(
            self.store,
            &s.target,
            s.live.as_ref(),
            self.idle_state(s),
            entries,
        )
    }

    /// The name `--dest` is matched against, as in the reports.
    fn name(&self, s: &Slot<'_>) -> String {
        match s.dest {
            Some(w) => w.name.to_string(),
            None => {
                let st = self.store.status(&s.target);
                if st.name.is_empty() {
                    escape(&s.target)
                } else {
                    st.name
                }
            }
        }
    }
}

/// Runs one request.
pub fn handle(view: &View<'_>, req: &Request) -> Result<Reply> {
    match req {
        Request::Inspect { dest, entries } => inspect(view, dest.as_deref(), *entries),
        Request::Status { max_failures } => Ok(Reply::Status(status(view, *max_failures)?)),
        Request::Retry { dest } => change(view, Action::Retry, dest.as_deref()),
        Request::Purge { dest } => change(view, Action::Purge, Some(dest)),
        Request::Checkpoint { .. } | Request::Sync { .. } => Err(Error::NotRunning(
            "no syncd daemon is running on this state directory: checkpoints and syncs are \
             taken by the running daemon"
                .into(),
        )),
    }
}

fn inspect(view: &View<'_>, dest: Option<&str>, entries: usize) -> Result<Reply> {
    let mut out = Vec::new();
    for s in view.slots() {
        let r = view.report(&s, entries)?;
        if inspect::matches(&r.name, &r.target, dest) {
            out.push(r);
        }
    }
    if let (Some(d), true) = (dest, out.is_empty()) {
        return Err(unknown(view, d));
    }
    Ok(Reply::Inspection(Inspection {
        destinations: out,
        unwatched: view.daemon.as_ref().map(|d| d.facts.unwatched.clone()),
    }))
}

fn status(view: &View<'_>, max_failures: u32) -> Result<StatusReport> {
    let running = view.daemon.is_some();
    let mut dests = Vec::new();
    for s in view.slots() {
        let r = view.report(&s, 0)?;
        dests.push(inspect::health(r, s.live.as_ref(), running, max_failures));
    }
    let now = now_ms();
    let daemon = view.daemon.as_ref().map(|d| DaemonInfo {
        pid: std::process::id(),
        version: env!("CARGO_PKG_VERSION").into(),
        protocol: VERSION,
        started_unix: d.started_ms / 1000,
        uptime_s: now.saturating_sub(d.started_ms) as f64 / 1000.0,
        main_loop: Some(d.facts.main_loop.clone()),
    });
    let state_dir = view
        .store
        .path()
        .parent()
        .map_or_else(String::new, |p| escape(p.as_os_str().as_bytes()));
    Ok(StatusReport {
        unwatched: view.daemon.as_ref().map(|d| d.facts.unwatched.clone()),
        healthy: daemon.is_some() && dests.iter().all(|h| h.problem.is_none()),
        daemon,
        state_dir,
        destinations: dests,
    })
}

/// `retry` (dead letters back into the queue) or `purge` (drop the queue
/// and the dead letters) on every destination `dest` names, or on all.
fn change(view: &View<'_>, action: Action, dest: Option<&str>) -> Result<Reply> {
    let mut moved = Vec::new();
    for s in view.slots() {
        let name = view.name(&s);
        let target = escape(&s.target);
        if !inspect::matches(&name, &target, dest) {
            continue;
        }
        let t = OsStr::from_bytes(&s.target);
        let (queue, dead) = (view.store.queue(t)?, view.store.dead(t)?);
        let n = match action {
            Action::Purge => view.store.purge(&queue, &dead)?,
            Action::Retry => view.store.revive(&queue, &dead)?,
        };
        match action {
            Action::Purge => log::warn!("[{name}] purged {n} changesets on request"),
            Action::Retry if n > 0 => {
                log::info!("[{name}] {n} dead changesets back in the queue on request")
            }
            Action::Retry => {}
        }
        // The worker re-reads its queue now: a revived changeset runs at
        // once, and a purged destination stops backing off for nothing.
        let woken = s
            .dest
            .and_then(|w| w.worker)
            .is_some_and(|(_, tx)| tx.send(Cmd::Retry).is_ok());
        moved.push(Moved {
            name,
            target,
            changesets: n as u64,
            woken,
        });
    }
    if let (Some(d), true) = (dest, moved.is_empty()) {
        return Err(unknown(view, d));
    }
    Ok(Reply::Changed(Changed {
        action,
        destinations: moved,
    }))
}

/// The daemon's destinations that `dest` names (all when `None`), as
/// (name, target); a usage error names the known ones when none matches.
pub fn select<'d>(dests: &'d [DestConfig], dest: Option<&str>) -> Result<Vec<&'d DestConfig>> {
    let picked: Vec<&DestConfig> = dests
        .iter()
        .filter(|d| inspect::matches(&d.dest.name, &escape(d.dest.target.as_bytes()), dest))
        .collect();
    if picked.is_empty() {
        let known: Vec<&str> = dests.iter().map(|d| d.dest.name.as_str()).collect();
        return Err(Error::Usage(format!(
            "no destination named {:?} (known: {})",
            dest.unwrap_or(""),
            known.join(", ")
        )));
    }
    Ok(picked)
}

fn unknown(view: &View<'_>, d: &str) -> Error {
    let known: Vec<String> = view.slots().iter().map(|s| view.name(s)).collect();
    Error::Usage(format!(
        "no destination named {:?} (known: {})",
        d,
        if known.is_empty() {
            "none".into()
        } else {
            known.join(", ")
        }
    ))
}
