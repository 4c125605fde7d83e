//! The restart workload (issue 13): what a restart costs on a big tree
//! after changes made while the daemon was down, syncd against lsyncd
//! (whose start is always a full rsync), to a local DEST and to an ssh
//! DEST, in one run on one tree.
//!
//! The tree is the scale run's (1,000,000 files in 100,000 leaf
//! directories by default) plus a symlink in every leaf, built once on
//! disk (`--disk-dir`) in SOURCE and DEST and removed at the end. Each
//! scenario below makes its own round of changes (`restart_changes`:
//! 1,000 of every kind the scan must find, in its own part of the tree),
//! then times from the daemon's start to the moment DEST is an exact
//! mirror, as the other workloads do (DEST digested after every rsync run;
//! SOURCE, which nobody changes meanwhile, digested before the start).
//! Per DEST (local, then ssh through a counting proxy that spans the
//! scenarios of that DEST):
//!
//! 1. syncd starts on a fresh store (a full sync), goes quiet, gets
//!    SIGTERM; a round of changes; syncd restarts (**clean stop**);
//! 2. one file written and synced (a window committed since the start),
//!    then a tenth of a round's changes while syncd runs, SIGKILL half a
//!    delay after the first (the window still open), the other nine tenths
//!    while it is down; syncd restarts (**kill -9**);
//! 3. a round of changes; lsyncd starts (its start-up rsync of the tree).
//!
//! Then two references, each after its own round: one full `rsync -a
//! --delete` to the local DEST, and one over ssh through a proxy (the
//! bytes of a full sync). A scenario that leaves DEST inexact is reported
//! as such and DEST is repaired (`rsync -a --delete -c`) before the next.
//!
//! Figures: restart to exact mirror; to the end of the last rsync run;
//! syncd's scan (its log's `restart scan: N changed paths … in X s`, from
//! the start of the walk that adds the watches); the daemon's CPU from its
//! start, its own and its waited-for children's (rsync, and the ssh
//! clients rsync starts; not syncd's ssh ControlMaster, which detaches);
//! bytes through the proxy (both directions) and rsync's sent bytes.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::daemon::{Daemon, Kind, Setup};
use crate::link::{len_of, stats_sent, syncd_sent, text_from, Bytes, Link};
use crate::measure::{final_streak, wait_quiet, watch_dest, Dirs, Env};
use crate::mirror::{Digester, Mirror};
use crate::monitor::{write_stats_wrapper, write_wrapper, Monitor};
use crate::reference::timed_rsync;
use crate::restart_changes::{apply, round, MIX};
use crate::tree::{now, sleep_until, Rng, Twin};
use crate::workloads::{Scale, Span, Workload};

/// Rounds of changes in one benchmark run: 3 scenarios per DEST, 2 references.
const ROUNDS: usize = 8;

/// What to build and change.
pub struct Opts {
    pub files: usize,
    pub changes: usize,
    pub dir: PathBuf,
    pub keep: bool,
    pub kinds: Vec<Kind>,
}

/// One measured start.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub who: String,
    pub dest: &'static str,
    pub how: String,
    /// From the start to the exact mirror.
    pub mirror_s: Option<f64>,
    /// From the start to the end of the last rsync run.
    pub last_run_s: Option<f64>,
    /// syncd's restart scan: seconds and changed paths, from its log.
    pub scan: Option<(f64, u64)>,
    pub cpu_own_s: Option<f64>,
    pub cpu_children_s: Option<f64>,
    pub runs: usize,
    pub bytes: Bytes,
    pub exact: bool,
    pub notes: Vec<String>,
}

/// The whole workload's result.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub about: String,
    pub rows: Vec<Row>,
    pub notes: Vec<String>,
    pub minutes: f64,
}

struct Bench<'a> {
    env: &'a Env,
    o: &'a Opts,
    scale: Scale,
    d: Dirs,
    src: Digester,
    dst: Digester,
    round: usize,
    rng: Rng,
    rows: Vec<Row>,
    notes: Vec<String>,
}

/// Builds the tree, runs every scenario, removes the tree.
pub fn run(env: &Env, o: &Opts) -> Result<Report> {
    let started = now();
    let scale = Scale::new(o.files);
    let _limit = WatchLimit::at_least(2 * scale.dirs() + 100_000)?;
    let d = Dirs::fresh(&o.dir.join("restart"), true)?;
    eprintln!("e2e: restart: building {} files", o.files);
    let mut twin = Twin::new(&[&d.src, &d.dst], 0x5eed)?;
    scale.prepare(&mut twin)?;
    for i in 0..scale.dirs() {
        twin.symlink(&format!("{}/link", scale.leaf(i)), "f0")?;
    }
    let about = format!(
        "a tree of {} files and {} symlinks in {} directories (on {}); {} changes while the daemon is down: {}",
        twin.files,
        scale.dirs(),
        scale.dirs() + scale.dirs() / 1000 + 2,
        o.dir.display(),
        o.changes,
        MIX.iter()
            .map(|(what, n)| format!("{} {what}", (n * o.changes / 1000).max(1)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut b = Bench {
        env,
        o,
        scale,
        src: Digester::new(&d.src),
        dst: Digester::new(&d.dst),
        d,
        round: 0,
        rng: Rng::new(13),
        rows: Vec::new(),
        notes: Vec::new(),
    };
    if b.src.digest()? != b.dst.digest()? {
        bail!("the restart tree's SOURCE and DEST differ after the build");
    }
    let result = b.all();
    b.d.done(o.keep, true);
    result?;
    Ok(Report {
        about,
        rows: b.rows,
        notes: b.notes,
        minutes: (now() - started) / 60.0,
    })
}

impl Bench<'_> {
    fn all(&mut self) -> Result<()> {
        for ssh in [false, true] {
            if self.o.kinds.contains(&Kind::Syncd) {
                self.syncd(ssh)?;
            }
            if self.o.kinds.contains(&Kind::Lsyncd) {
                self.lsyncd(ssh)?;
            }
        }
        for ssh in [false, true] {
            self.full_rsync(ssh)?;
        }
        Ok(())
    }

    /// The next round's changes, applied to SOURCE from `from` on (the
    /// kill -9 scenario applies the first tenth itself).
    fn changes(&mut self) -> Result<Vec<crate::restart_changes::Op>> {
        let ops = round(&self.scale, self.round, ROUNDS, self.o.changes)?;
        self.round += 1;
        Ok(ops)
    }

    /// SOURCE and DEST (owned: a `Setup` borrows them while `self` changes).
    fn roots(&self) -> (PathBuf, PathBuf) {
        (self.d.src.clone(), self.d.dst.clone())
    }
}

/// A daemon's start-up settings for this workload.
fn setup<'s>(
    roots: &'s (PathBuf, PathBuf),
    work: &'s Path,
    wrapper: &'s Path,
    link: &'s Link,
    delay: f64,
    log: &str,
) -> Setup<'s> {
    Setup {
        src: &roots.0,
        dst: &roots.1,
        work,
        wrapper,
        delay,
        backoff_max: None,
        verbose: false,
        syncd_prefix: &[],
        remote: link.remote(),
        ssh_wrapper: None,
        log: Some(work.join(log)),
    }
}

impl Bench<'_> {
    fn syncd(&mut self, ssh: bool) -> Result<()> {
        let dest = if ssh { "ssh" } else { "local" };
        let link = Link::new(self.env.sshd.as_ref(), ssh)?;
        let work = self.d.root.join(format!("syncd-{dest}"));
        std::fs::create_dir_all(&work)?;
        let runs_log = work.join("rsync-runs.log");
        let wrapper = write_wrapper(&work.join("bin"), &runs_log, &self.env.real_rsync)?;
        let mon = Monitor::start(&runs_log);
        let c0 = link.count();
        eprintln!("e2e: restart: syncd, {dest}: first start (full sync)");
        let roots = self.roots();
        let delay = self.env.delay;
        let first = setup(&roots, &work, &wrapper, &link, delay, "syncd-first.log");
        let mut dm = Daemon::start(Kind::Syncd, &first, &self.env.syncd)?;
        dm.wait_started(self.patience())?;
        wait_quiet(&mon, &mut dm, 1.0, 1800.0)?;
        dm.wait_idle(Duration::from_millis(500), self.patience())?;
        if let (Some(a), Some(b)) = (link.count(), c0) {
            self.notes.push(format!(
                "syncd's first start over ssh (a fresh store: a full sync) took {:.1} s and moved {} through the proxy ({} connections)",
                now() - dm.started,
                crate::link::human(a.since(b).total()),
                a.since(b).connections
            ));
        }
        dm.stop()?;

        let ops = self.changes()?;
        apply(&self.d.src, &ops, &mut self.rng)?;
        let clean = setup(&roots, &work, &wrapper, &link, delay, "syncd-clean.log");
        let dm = self.restart(
            Kind::Syncd,
            &clean,
            &mon,
            &link,
            dest,
            "clean stop (SIGTERM)",
        )?;

        // The daemon has been running: one window committed and delivered
        // (without it the watermark would still be the first stop's).
        let mut dm = dm;
        let warm = now();
        crate::tree::rewrite(&self.d.src.join(format!("s/warm-up-{dest}")), b"warm")?;
        while !mon.since(warm).iter().any(|r| r.end.is_some()) {
            dm.check_alive()?;
            anyhow::ensure!(now() - warm < 60.0, "syncd did not sync the warm-up write");
            std::thread::sleep(Duration::from_millis(20));
        }
        wait_quiet(&mon, &mut dm, 1.0, 120.0)?;
        let ops = self.changes()?;
        let live = ops.len() / 10;
        let first = now();
        apply(&self.d.src, &ops[..live], &mut self.rng)?;
        sleep_until(first + self.env.delay / 2.0);
        dm.kill9()?;
        apply(&self.d.src, &ops[live..], &mut self.rng)?;
        let killed = setup(&roots, &work, &wrapper, &link, delay, "syncd-kill.log");
        let how = format!(
            "kill -9 with a window open ({live} changes in it), {} more while down",
            ops.len() - live
        );
        let dm = self.restart(Kind::Syncd, &killed, &mon, &link, dest, &how)?;
        dm.stop()
    }

    fn lsyncd(&mut self, ssh: bool) -> Result<()> {
        let dest = if ssh { "ssh" } else { "local" };
        let link = Link::new(self.env.sshd.as_ref(), ssh)?;
        let work = self.d.root.join(format!("lsyncd-{dest}"));
        std::fs::create_dir_all(&work)?;
        let runs_log = work.join("rsync-runs.log");
        let stats = work.join("rsync-stats.log");
        let wrapper =
            write_stats_wrapper(&work.join("bin"), &runs_log, &self.env.real_rsync, &stats)?;
        let mon = Monitor::start(&runs_log);
        let ops = self.changes()?;
        apply(&self.d.src, &ops, &mut self.rng)?;
        let roots = self.roots();
        let s = setup(&roots, &work, &wrapper, &link, self.env.delay, "lsyncd.log");
        let dm = self.restart(Kind::Lsyncd, &s, &mon, &link, dest, "start (a full rsync)")?;
        dm.stop()
    }

    fn full_rsync(&mut self, ssh: bool) -> Result<()> {
        let dest = if ssh { "ssh" } else { "local" };
        let link = Link::new(self.env.sshd.as_ref(), ssh)?;
        let ops = self.changes()?;
        apply(&self.d.src, &ops, &mut self.rng)?;
        let target = self.src.digest()?;
        eprintln!("e2e: restart: full rsync, {dest}");
        let c0 = link.count();
        let mut notes = Vec::new();
        let (wall, cpu, sent) = timed_rsync(self.env, &self.d, link.remote(), &mut notes)?;
        let proxy = link.count().zip(c0).map(|(a, b)| a.since(b));
        let exact = self.dst.digest()? == target;
        let mut row = Row {
            who: "full `rsync -a --delete`".into(),
            dest,
            how: "one run, no daemon".into(),
            mirror_s: exact.then_some(wall),
            last_run_s: Some(wall),
            scan: None,
            cpu_own_s: None,
            cpu_children_s: Some(cpu),
            runs: 1,
            bytes: Bytes {
                proxy,
                rsync_sent: Some(sent),
            },
            exact,
            notes,
        };
        self.settle(&mut row, target)?;
        self.rows.push(row);
        Ok(())
    }

    /// How long a start-up on this tree may take.
    fn patience(&self) -> Duration {
        Duration::from_secs(600 + self.o.files as u64 / 500)
    }

    /// Starts `kind` after the changes, times it to the exact mirror and
    /// records the row; returns the running daemon.
    fn restart(
        &mut self,
        kind: Kind,
        setup: &Setup,
        mon: &Monitor,
        link: &Link,
        dest: &'static str,
        how: &str,
    ) -> Result<Daemon> {
        let target = self.src.digest()?;
        eprintln!("e2e: restart: {} {dest}: {how}", kind.name());
        let stats = setup.work.join("rsync-stats.log");
        let stats_mark = len_of(&stats);
        let c0 = link.count();
        let mut dm = Daemon::start(kind, setup, &self.env.syncd)?;
        let t0 = dm.started;
        dm.wait_started(self.patience())?;
        let span = Span {
            first: t0,
            last: t0,
            reference: t0,
            count_from: t0,
            outage_runs: 0,
            outage: None,
            notes: Vec::new(),
        };
        let deadline = t0 + self.patience().as_secs_f64();
        let seen = watch_dest(mon, &mut self.dst, &mut dm, &span, 2.5, deadline)?;
        let cpu = dm.cpu()?;
        let runs = mon.since(t0);
        let last_end = runs.iter().filter_map(|r| r.end).fold(f64::NAN, f64::max);
        let log = dm.log_text();
        let exact = self.dst.digest()? == target;
        let mut row = Row {
            who: kind.name().into(),
            dest,
            how: how.into(),
            mirror_s: final_streak(&seen, target).map(|t| t - t0),
            last_run_s: last_end.is_finite().then_some(last_end - t0),
            scan: scan_line(&log),
            cpu_own_s: Some(cpu.own),
            cpu_children_s: Some(cpu.children),
            runs: runs.len(),
            bytes: Bytes {
                proxy: link.count().zip(c0).map(|(a, b)| a.since(b)),
                rsync_sent: Some(if kind.is_syncd() {
                    syncd_sent(&log)
                } else {
                    stats_sent(&text_from(&stats, stats_mark))
                }),
            },
            exact,
            notes: Vec::new(),
        };
        if kind.is_syncd() && !log.contains("restart scan:") {
            row.notes.push(format!(
                "no restart scan in the log; it says: {}",
                log.lines()
                    .filter(|l| l.contains("full sync"))
                    .take(2)
                    .collect::<Vec<_>>()
                    .join(" / ")
            ));
        }
        self.settle(&mut row, target)?;
        self.rows.push(row);
        Ok(dm)
    }

    /// For an inexact DEST: names what differs, then repairs DEST so the
    /// next scenario starts from a mirror.
    fn settle(&mut self, row: &mut Row, target: u128) -> Result<()> {
        if row.exact {
            return Ok(());
        }
        let diffs = Mirror::new(&self.d.src, &self.d.dst)
            .differences(5)
            .map_err(anyhow::Error::msg)?;
        row.notes.push(format!(
            "not a mirror at the end: {}; DEST repaired with `rsync -a --delete -c` before the next scenario",
            diffs.join("; ")
        ));
        let st = Command::new(&self.env.real_rsync)
            .args(["-a", "--delete", "-c"])
            .arg(format!("{}/", self.d.src.display()))
            .arg(format!("{}/", self.d.dst.display()))
            .stdin(Stdio::null())
            .status()?;
        if !st.success() || self.dst.digest()? != target {
            bail!("could not repair DEST after {} ({st})", row.who);
        }
        Ok(())
    }
}

/// `restart scan: N changed paths since … in X.XXs` → (X, N).
fn scan_line(log: &str) -> Option<(f64, u64)> {
    let l = log.lines().find(|l| l.contains("restart scan: "))?;
    let rest = &l[l.find("restart scan: ")? + 14..];
    let n = rest.split_whitespace().next()?.parse().ok()?;
    let secs = l.rsplit("in ").next()?.trim().trim_end_matches('s');
    Some((secs.parse().ok()?, n))
}

/// Raises `fs.inotify.max_user_watches` to at least `n` for the run (both
/// daemons watch every directory), and puts the old value back.
struct WatchLimit(Option<String>);

const WATCHES: &str = "/proc/sys/fs/inotify/max_user_watches";

impl WatchLimit {
    fn at_least(n: usize) -> Result<WatchLimit> {
        let old = std::fs::read_to_string(WATCHES).context("reading max_user_watches")?;
        if old.trim().parse::<usize>().unwrap_or(0) >= n {
            return Ok(WatchLimit(None));
        }
        std::fs::write(WATCHES, n.to_string()).context("raising max_user_watches (needs root)")?;
        eprintln!(
            "e2e: restart: fs.inotify.max_user_watches {} -> {n} for the run",
            old.trim()
        );
        Ok(WatchLimit(Some(old)))
    }
}

impl Drop for WatchLimit {
    fn drop(&mut self) {
        if let Some(old) = &self.0 {
            let _ = std::fs::write(WATCHES, old.trim());
        }
    }
}
