//! One measured run: a daemon on fresh trees, or the rsync reference.
//!
//! A daemon run: build the pre-change tree in SOURCE and DEST, digest
//! SOURCE, start the daemon, wait for its start-up sync to end and for
//! quiet, check that DEST's digest is SOURCE's, read its CPU times, apply
//! the change. Then follow DEST alone: after each rsync run, when none is
//! running, digest DEST and note the digest with the end of that run; stop
//! once no run started or ended for a settle period (twice the delay, at
//! least 1 s, plus 1.5 s) after the window and the daemon used no CPU for
//! a second. Read CPU times and RSS, and
//! only then digest SOURCE again: DEST became an exact mirror at the end of
//! the first run of the final streak of digests equal to SOURCE's. A daemon
//! that is not there yet gets the rest of its timeout, compared against
//! SOURCE directly (see `mirror` for why SOURCE is not read earlier). The
//! run ends with a side-by-side comparison naming any differences, and
//! SIGTERM.
//! The reference run is in `reference`.
//!
//! Workloads with an ssh destination run every daemon against the
//! benchmark's sshd, each run through its own counting proxy (see `link`);
//! lsyncd's `default.rsyncssh` always does. Bytes are counted from the
//! change on.

use std::path::{Path, PathBuf};

use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::daemon::{Daemon, Kind, Setup};
use crate::link::{len_of, stats_sent, syncd_sent, text_from, Bytes, Link};
use crate::mirror::{Digester, Mirror};
use crate::monitor::{write_ssh_wrapper, write_stats_wrapper, write_wrapper, Monitor};
use crate::tree::{now, remove_all, Twin};
use crate::workloads::{Ctx, Span, Workload};

/// What a run needs besides the workload.
pub struct Env {
    pub syncd: PathBuf,
    pub real_rsync: PathBuf,
    pub delay: f64,
    /// The least time a daemon gets to reach the mirror.
    pub timeout_s: f64,
    pub keep: bool,
    /// syncd runs under this command (profiling); empty: directly.
    pub syncd_prefix: Vec<String>,
    /// The ssh destination's server, when a selected workload needs it.
    pub sshd: Option<crate::ssh::Sshd>,
    /// The syncd binary of the `syncd-alt` daemon.
    pub syncd_alt: Option<PathBuf>,
}

/// The figures of one daemon run.
#[derive(Debug, Clone, Serialize)]
pub struct DaemonRun {
    /// From spawn to the end of the start-up sync.
    pub ready_s: f64,
    /// The daemon's own CPU until then.
    pub startup_cpu_s: f64,
    /// From the end of the window (or the destination's return) to the
    /// exact mirror; `None`: not reached within `timeout_s`.
    pub mirror_s: Option<f64>,
    /// Backlog only: from the first rsync run after the return to the mirror.
    pub drain_s: Option<f64>,
    pub timeout_s: f64,
    pub runs: usize,
    /// Backlog and outages: runs while DEST was unwritable.
    pub outage_runs: usize,
    /// Outages: how long, and what the daemon spent meanwhile.
    pub outage: Option<crate::workloads::OutageCost>,
    /// Windows of `delay` the change spans (a perfect aggregator's runs).
    pub windows: usize,
    pub cpu_s: f64,
    pub children_cpu_s: f64,
    pub peak_rss_mib: f64,
    /// The anonymous part of the RSS at the end (see `Daemon::rss_mib`).
    pub anon_rss_mib: f64,
    pub exact: bool,
    pub notes: Vec<String>,
    /// How long applying the change took (last − first change).
    pub change_s: f64,
    /// Every counted rsync run as (start, end), in seconds from the first
    /// change (JSON only: for reading a daemon's behaviour afterwards).
    pub timeline: Vec<(f64, Option<f64>)>,
    /// Bytes from the change on (see `link`).
    pub bytes: Bytes,
}

/// The figures of one reference run.
#[derive(Debug, Clone, Serialize)]
pub struct RefRun {
    pub catchup_s: f64,
    pub catchup_cpu_s: f64,
    pub noop_s: f64,
    pub noop_cpu_s: f64,
    pub exact: bool,
    pub notes: Vec<String>,
    /// The catch-up rsync's bytes.
    pub bytes: Bytes,
}

pub struct Dirs {
    pub root: PathBuf,
    pub src: PathBuf,
    pub dst: PathBuf,
}

/// When a big tree was last removed (see [`Dirs::done`]).
static BIG_REMOVAL: Mutex<Option<Instant>> = Mutex::new(None);

/// How long ext4 without a journal avoids reusing a deleted inode once its
/// inode table block is clean (`recently_deleted()` in fs/ext4/ialloc.c:
/// 60 s, plus 300 s while the block is dirty), plus a margin.
const INODE_RECENCY: Duration = Duration::from_secs(65);

impl Dirs {
    /// Empty SOURCE and DEST directories at `root`. After a big tree was
    /// removed on the same file system, waits until its inodes are no
    /// longer "recently deleted": ext4 without a journal (this machine's
    /// root file system) skips such inodes one by one when it allocates
    /// new ones, which after a million deletions makes every file creation
    /// slow for minutes and would be measured as the daemons' cost.
    pub fn fresh(root: &Path, big: bool) -> Result<Dirs> {
        remove_all(root).with_context(|| format!("removing {}", root.display()))?;
        if big {
            let last = BIG_REMOVAL.lock().ok().and_then(|l| *l);
            if let Some(t) = last {
                std::thread::sleep(INODE_RECENCY.saturating_sub(t.elapsed()));
            }
        }
        std::fs::create_dir_all(root)?;
        Ok(Dirs {
            root: root.to_path_buf(),
            src: root.join("src"),
            dst: root.join("dst"),
        })
    }

    pub fn prepare(&self, w: &dyn Workload) -> Result<u64> {
        let mut twin = Twin::new(&[&self.src, &self.dst], 0x5eed)?;
        w.prepare(&mut twin)
            .with_context(|| format!("building the {} tree", w.name()))?;
        Ok(twin.files)
    }

    /// Removes the trees (unless `keep`); after a big one, writes the
    /// freed inode table blocks out, which shortens ext4's memory of them
    /// to a minute (see [`Dirs::fresh`]).
    pub fn done(&self, keep: bool, big: bool) {
        if keep {
            return;
        }
        if let Err(e) = remove_all(&self.root) {
            eprintln!("e2e: cannot remove {}: {e}", self.root.display());
        }
        if big {
            // SAFETY: sync has no preconditions.
            unsafe { libc::sync() };
            if let Ok(mut l) = BIG_REMOVAL.lock() {
                *l = Some(Instant::now());
            }
        }
    }
}

/// One daemon on one workload. `catchup_s` (the reference's time) scales
/// the timeout for big changes.
pub fn daemon(
    kind: Kind,
    w: &dyn Workload,
    env: &Env,
    root: &Path,
    catchup_s: f64,
) -> Result<DaemonRun> {
    let d = Dirs::fresh(root, w.big())?;
    let files = d.prepare(w)?;
    let work = d.root.join("work");
    std::fs::create_dir_all(&work)?;
    let runs_log = work.join("rsync-runs.log");
    let stats = work.join("rsync-stats.log");
    let wrapper = if kind.is_syncd() {
        write_wrapper(&work.join("bin"), &runs_log, &env.real_rsync)?
    } else {
        write_stats_wrapper(&work.join("bin"), &runs_log, &env.real_rsync, &stats)?
    };
    let ssh_wrapper = write_ssh_wrapper(&work.join("ssh-bin"), &runs_log)?;
    let link = Link::new(env.sshd.as_ref(), w.remote() || kind == Kind::LsyncdSsh)?;
    let mon = Monitor::start(&runs_log);
    let delay = w.delay(env.delay);
    let syncd_bin = match kind {
        Kind::SyncdAlt => env
            .syncd_alt
            .clone()
            .context("syncd-alt runs need --syncd-alt PATH")?,
        _ => env.syncd.clone(),
    };
    let setup = Setup {
        src: &d.src,
        dst: &d.dst,
        work: &work,
        wrapper: &wrapper,
        delay,
        backoff_max: w.backlog().then_some(1.0),
        verbose: (w.backlog() || w.outage()) && kind.is_syncd(),
        syncd_prefix: &env.syncd_prefix,
        remote: link.remote(),
        ssh_wrapper: Some(&ssh_wrapper),
        log: None,
    };
    // SOURCE is read only while no daemon watches it (see `mirror`).
    let mut src = Digester::new(&d.src);
    let before = src.digest()?;
    let mut daemon = Daemon::start(kind, &setup, &syncd_bin)?;
    daemon.wait_started(Duration::from_secs(120 + files / 500))?;
    wait_quiet(&mon, &mut daemon, 0.3, 600.0)?;
    daemon.wait_idle(Duration::from_millis(500), Duration::from_secs(600))?;
    let mut dst = Digester::new(&d.dst);
    if dst.digest()? != before {
        bail!(
            "{}'s start-up sync did not leave an exact mirror: {:?}",
            kind.name(),
            Mirror::new(&d.src, &d.dst).differences(5)
        );
    }
    let ready_s = now() - daemon.started;
    let cpu0 = daemon.cpu()?;
    daemon.profile_checkpoint(&setup);

    let log = daemon.log.clone();
    let count_in_log = move |needle: &str| {
        let text = std::fs::read(&log).unwrap_or_default();
        String::from_utf8_lossy(&text).matches(needle).count()
    };
    let log_mark = len_of(&daemon.log);
    let stats_mark = len_of(&stats);
    let count0 = link.count();
    let commits = || count_in_log("committed changeset");
    let probes = || count_in_log("] probe: ");
    let span = {
        let cpu = || daemon.cpu().map_or(f64::NAN, |c| c.own + c.children);
        let cx = Ctx {
            src: &d.src,
            dst: &d.dst,
            delay,
            monitor: Some(&mon),
            commits: setup.verbose.then_some(&commits as &dyn Fn() -> usize),
            cpu: Some(&cpu),
            probes: setup.verbose.then_some(&probes as &dyn Fn() -> usize),
        };
        w.change(&cx)?
    };
    let timeout_s = env.timeout_s.max(20.0 * catchup_s);
    let deadline = span.reference + timeout_s;
    let settle_s = (2.0 * delay).max(1.0) + 1.5;
    let seen = watch_dest(&mon, &mut dst, &mut daemon, &span, settle_s, deadline)?;
    let mut cpu1 = daemon.cpu()?;
    let (mut peak_rss_mib, mut anon_rss_mib) = daemon.rss_mib()?;
    let mut notes = span.notes.clone();

    let after = src.digest()?;
    let mut mirror = Mirror::new(&d.src, &d.dst);
    let mut exact_at = final_streak(&seen, after);
    if exact_at.is_none() && now() < deadline {
        // Not a mirror once the daemon went quiet: give it the rest of the
        // timeout, now comparing against SOURCE directly.
        exact_at = wait_mirror(&mon, &mut mirror, &mut daemon, &span, deadline)?;
        if exact_at.is_some() {
            wait_quiet(&mon, &mut daemon, settle_s, 120.0)?;
            cpu1 = daemon.cpu()?;
            (peak_rss_mib, anon_rss_mib) = daemon.rss_mib()?;
            notes.push(
                "reached the mirror only after a quiet period; its CPU then includes the \
                 benchmark's own reads of SOURCE"
                    .into(),
            );
        }
    }
    // Digests decide; the side-by-side walk only names what differs.
    let exact = dst.digest()? == after;
    let bytes = Bytes {
        proxy: link.count().zip(count0).map(|(a, b)| a.since(b)),
        rsync_sent: Some(if kind.is_syncd() {
            syncd_sent(&text_from(&daemon.log, log_mark))
        } else {
            stats_sent(&text_from(&stats, stats_mark))
        }),
    };
    if !exact {
        let diffs = mirror.differences(5).map_err(anyhow::Error::msg)?;
        notes.push(format!("not a mirror at the end: {}", diffs.join("; ")));
    }
    daemon.stop()?;
    let runs = mon.since(span.count_from);
    let drain_s = match (w.backlog() || w.outage(), exact_at, runs.first()) {
        (true, Some(t), Some(r)) => Some(t - r.start),
        _ => None,
    };
    let result = DaemonRun {
        ready_s,
        startup_cpu_s: cpu0.own,
        mirror_s: exact_at.map(|t| t - span.reference),
        drain_s,
        timeout_s,
        runs: runs.len(),
        outage_runs: span.outage_runs,
        outage: span.outage.clone(),
        windows: ((span.last - span.first) / delay).floor() as usize + 1,
        cpu_s: cpu1.own - cpu0.own,
        children_cpu_s: cpu1.children - cpu0.children,
        peak_rss_mib,
        anon_rss_mib,
        exact,
        notes,
        change_s: span.last - span.first,
        timeline: runs
            .iter()
            .map(|r| (r.start - span.first, r.end.map(|e| e - span.first)))
            .collect(),
        bytes,
    };
    drop(mon);
    drop(link);
    d.done(env.keep, w.big());
    Ok(result)
}

/// Follows DEST while the daemon works: after every rsync run, once none
/// is running, DEST's digest is recorded with the end of that run. Returns
/// at `deadline`, or once the last run's DEST is digested, no run started
/// or ended for `settle_s` after the window, and the daemon used no CPU for
/// a second (a daemon still digesting events may yet start a run).
pub fn watch_dest(
    mon: &Monitor,
    dst: &mut Digester,
    daemon: &mut Daemon,
    span: &Span,
    settle_s: f64,
    deadline: f64,
) -> Result<Vec<(f64, u128)>> {
    let mut seen = Vec::new();
    let mut digested_after = 0;
    let mut cpu = (now(), daemon.cpu()?.own);
    loop {
        daemon.check_alive()?;
        let runs = mon.since(span.count_from);
        let ended: Vec<f64> = runs.iter().filter_map(|r| r.end).collect();
        let busy = ended.len() < runs.len();
        if !busy && ended.len() > digested_after {
            digested_after = ended.len();
            let last_end = ended.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let t = now();
            // A run that began during the walk makes the digest a blur of
            // two states: drop it, that run's end brings another.
            if let Ok(digest) = dst.digest() {
                if no_run_since(mon, t) {
                    seen.push((last_end, digest));
                }
            }
            continue;
        }
        let own = daemon.cpu()?.own;
        if own - cpu.1 > 0.011 {
            cpu = (now(), own);
        }
        let last_activity = runs
            .iter()
            .map(|r| r.end.unwrap_or(f64::INFINITY).max(r.start))
            .fold(span.reference, f64::max);
        let quiet = !busy
            && digested_after == ended.len()
            && now() - last_activity >= settle_s
            && now() - cpu.0 >= 1.0;
        if quiet || now() > deadline {
            return Ok(seen);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// When DEST became `target` for good: the earliest of the digests at the
/// end of `seen` that all equal it.
pub fn final_streak(seen: &[(f64, u128)], target: u128) -> Option<f64> {
    seen.iter()
        .rev()
        .take_while(|(_, d)| *d == target)
        .last()
        .map(|(t, _)| *t)
}

/// Waits until DEST is an exact mirror, comparing it with SOURCE only
/// between rsync runs; returns when it became one (the end of the last run
/// before the successful comparison), or `None` at `deadline`.
fn wait_mirror(
    mon: &Monitor,
    mirror: &mut Mirror,
    daemon: &mut Daemon,
    span: &Span,
    deadline: f64,
) -> Result<Option<f64>> {
    let mut compared_after: Option<usize> = None;
    loop {
        daemon.check_alive()?;
        let runs = mon.since(span.count_from);
        let ended: Vec<f64> = runs.iter().filter_map(|r| r.end).collect();
        let busy = ended.len() < runs.len();
        if !busy && compared_after != Some(ended.len()) {
            compared_after = Some(ended.len());
            let last_end = ended.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let started = now();
            // A run that began during the comparison may have fixed what
            // was compared late: then only its end proves the mirror.
            if mirror.matches() && no_run_since(mon, started) {
                return Ok(Some(if last_end.is_finite() {
                    last_end
                } else {
                    started
                }));
            }
        }
        if now() > deadline {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Whether no run started since `t` (after a pause longer than the
/// monitor's poll, so a run that just started has been seen).
fn no_run_since(mon: &Monitor, t: f64) -> bool {
    std::thread::sleep(Duration::from_millis(10));
    mon.since(t).is_empty()
}

/// Waits until no rsync run is going on and none started for `quiet_s`
/// (bounded by `max_s`).
pub fn wait_quiet(mon: &Monitor, daemon: &mut Daemon, quiet_s: f64, max_s: f64) -> Result<()> {
    let t0 = now();
    loop {
        daemon.check_alive()?;
        let runs = mon.since(0.0);
        let last = runs
            .iter()
            .map(|r| r.end.unwrap_or(f64::INFINITY).max(r.start))
            .fold(daemon.started, f64::max);
        if now() - last >= quiet_s {
            return Ok(());
        }
        if now() - t0 > max_s {
            bail!("{} kept running rsync for {max_s} s", daemon.kind.name());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
