//! End-to-end benchmark: syncd against lsyncd and plain rsync, on the same
//! workloads, on the same machine, in one run.
//!
//! ```text
//! cargo bench --bench e2e -- [--quick] [--runs N] [--workload NAME]... [--daemon NAME]...
//!     [--syncd-alt PATH]
//! ```
//!
//! Method. For every workload (see `workloads`) and every run, three things
//! run one after the other, each on fresh SOURCE and DEST trees built
//! identically from a seed: the rsync reference (the change applied with
//! no daemon, then one catch-up `rsync -a --delete` and one no-op rsync),
//! then syncd and lsyncd, in alternating order from run to run. Both daemons
//! get the same aggregation delay (`--delay`, 1 s by default; the backlog
//! uses 10 ms) and the same rsync: a wrapper named `rsync`, first on their
//! PATH and given explicitly (`syncd --rsync`, lsyncd's `rsync.binary`),
//! that logs each invocation and `exec`s /usr/bin/rsync.
//!
//! Figures per daemon and run:
//! - time to mirror: from the end of the window holding the last change
//!   (last change + delay; for the backlog, the moment DEST became writable
//!   again) to the moment DEST first was an exact mirror of SOURCE (names,
//!   types, contents, permission bits, symlink targets). Both daemons write
//!   DEST only through rsync, so that moment is the end of an rsync run:
//!   DEST is digested after each run and the digests are matched against
//!   SOURCE's afterwards (see `measure` and `mirror`; reading SOURCE while
//!   syncd watches it would cost syncd CPU for every file opened). It can
//!   be slightly negative: a window that opened before the last change
//!   closes before last change + delay. A daemon that does not get there
//!   within a timeout (60 s, or 20× the catch-up rsync) is "never";
//! - rsync runs started from the first change on (for the backlog, from the
//!   destination's return), and runs per window: runs divided by the number
//!   of `delay`-long windows the change spans, floor((last − first) / delay) + 1;
//! - CPU: the daemon's own user+system time (all threads) and its
//!   children's (the rsync runs it waited for), from /proc/PID/stat, as the
//!   difference between the end of its start-up sync and the end of the
//!   change; the start-up sync's own CPU and wall time separately;
//! - peak RSS: VmHWM from /proc/PID/status just before SIGTERM (the whole
//!   life of the daemon, start-up on the workload's tree included), with
//!   the anonymous part of the RSS at that moment beside it;
//! - whether DEST is an exact mirror at the end;
//! - for the outages (`outage-30s`, `outage-10m`, run only when named):
//!   DEST is immutable that long while a file is rewritten every second,
//!   with the daemons' default retry backoff; time to mirror is counted from
//!   DEST's return, and the report adds what the daemon spent while DEST
//!   was unwritable: rsync runs, its CPU with its rsync children's, and
//!   syncd's probes (from its `-v` log). The target is a run that starts
//!   at most 3 s after the return (time to mirror less that run's length);
//! - bytes sent from the change on (see `link`): over ssh, every byte
//!   through a counting proxy between the ssh clients and the benchmark's
//!   loopback sshd (`ssh`, `proxy`); on a local DEST, rsync's own "Total
//!   bytes sent" (syncd's log; lsyncd's rsync gets `--stats`).
//!
//! The move workloads (`moves`: `move-1g`, `move-100x10m`, their `-ssh`
//! variants and `dir-rename-ssh`) add lsyncd with `default.rsyncssh`, which
//! replays moves as `ssh HOST mv` (always over the sshd), and their own
//! targets table. The restart workload (`restart`, `restart_changes`,
//! `restart_report`) has its own flow: one big tree, changes made while the
//! daemon is down, timed from its start. `--syncd-alt PATH` adds a syncd
//! built from another commit as a third daemon, `syncd-alt`.
//!
//! The reference rows time `rsync -a --delete SRC/ DST/` on the pre-change
//! DEST (what a cron job would run to catch up with the same change) and
//! the same command once more (the no-op: the cost of finding out that
//! nothing changed). The issue's targets are checked on the medians and
//! printed as PASS/MISS. Results go to stdout and to `target/e2e/results.md`
//! (and `.json`), with the machine described.
//!
//! Needs root for `chattr +i` (the backlog's outage) and to install lsyncd
//! (`apt-get install -y lsyncd`) when it is missing. Without `--bench`
//! (which `cargo bench` passes) it does nothing, so `cargo test
//! --all-targets` does not start an hour-long benchmark.

mod daemon;
mod link;
mod measure;
mod mirror;
mod monitor;
mod moves;
mod proxy;
mod reference;
mod render;
mod report;
mod restart;
mod restart_changes;
mod restart_report;
mod ssh;
mod tree;
mod workloads;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Parser;

use daemon::Kind;
use measure::Env;
use report::WorkloadResult;

/// End-to-end benchmark of syncd against lsyncd and plain rsync.
#[derive(Debug, Parser)]
#[command(name = "e2e")]
pub struct Opts {
    /// Reduced sizes, for a quick look (about 15 minutes).
    #[arg(long)]
    quick: bool,
    /// Runs per workload and daemon.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Files in the scale run's tree (ten per directory); default
    /// 1,000,000, or 20,000 with --quick.
    #[arg(long, value_name = "N")]
    scale_files: Option<usize>,
    /// Files in the restart workload's tree (ten per directory); default
    /// 1,000,000, or 20,000 with --quick.
    #[arg(long, value_name = "N")]
    restart_files: Option<usize>,
    /// Changes per round of the restart workload; default 1,000, or 200
    /// with --quick.
    #[arg(long, value_name = "N")]
    restart_changes: Option<usize>,
    /// Only these workloads (repeatable): small-files, burst, dir-rename,
    /// tree-delete, trickle, deep-tree, backlog, scale, move-1g,
    /// move-1g-ssh, move-100x10m, move-100x10m-ssh, dir-rename-ssh,
    /// restart; and outage-30s and outage-10m, which run only when named.
    #[arg(long = "workload", value_name = "NAME")]
    workloads: Vec<String>,
    /// Only these daemons (repeatable): syncd, lsyncd, lsyncd-rsyncssh
    /// (move workloads), syncd-alt (with --syncd-alt).
    #[arg(long = "daemon", value_name = "NAME")]
    daemons: Vec<String>,
    /// Also run this syncd binary (built from another commit), as the
    /// daemon `syncd-alt`, on every workload syncd runs.
    #[arg(long, value_name = "PATH")]
    syncd_alt: Option<PathBuf>,
    /// The aggregation delay of both daemons, in seconds.
    #[arg(long, default_value_t = 1.0)]
    delay: f64,
    /// The least time a daemon gets to reach an exact mirror, in seconds.
    #[arg(long, default_value_t = 60.0)]
    timeout: f64,
    /// Where the trees are built (removed after each run); default
    /// /dev/shm/syncd-e2e (tmpfs: no disk noise), else /tmp/syncd-e2e.
    #[arg(long, value_name = "DIR")]
    work_dir: Option<PathBuf>,
    /// Where trees too big for memory are built (the scale run from
    /// 100,000 files on).
    #[arg(long, value_name = "DIR", default_value = "/tmp/syncd-e2e")]
    disk_dir: PathBuf,
    /// The Markdown report (a `.json` with the raw figures goes next to it).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Keep every run's trees and logs.
    #[arg(long)]
    keep: bool,
    /// Run syncd under this command, for profiling: with
    /// "valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.%p" the
    /// start-up goes into its own dump (callgrind_control) and the final
    /// one holds the change alone. Figures taken this way are meaningless.
    #[arg(long, value_name = "CMD")]
    syncd_prefix: Option<String>,
    /// Passed by `cargo bench`; without it nothing runs.
    #[arg(long, hide = true)]
    bench: bool,
    /// Like --workload, as `cargo bench e2e NAME` passes it.
    #[arg(hide = true)]
    filter: Option<String>,
}

fn main() {
    let opts = Opts::parse();
    if !opts.bench {
        println!("e2e: run it with `cargo bench --bench e2e -- [--quick]`; nothing to do without --bench");
        return;
    }
    if let Err(e) = run(&opts) {
        eprintln!("e2e: error: {e:#}");
        std::process::exit(1);
    }
}

fn run(opts: &Opts) -> Result<()> {
    let lsyncd_version = daemon::ensure_lsyncd()?;
    let real_rsync = PathBuf::from("/usr/bin/rsync");
    if !real_rsync.exists() {
        bail!("/usr/bin/rsync is missing: apt-get install -y rsync");
    }
    let syncd = PathBuf::from(env!("CARGO_BIN_EXE_syncd"));
    let kinds = selected_daemons(opts)?;
    let scale_files = opts
        .scale_files
        .unwrap_or(if opts.quick { 20_000 } else { 1_000_000 });
    let mut selected = workloads::all(opts.quick, scale_files);
    let mut names: Vec<String> = selected.iter().map(|w| w.name().to_string()).collect();
    names.push("restart".into());
    let restart_on = (opts.workloads.is_empty() || opts.workloads.iter().any(|n| n == "restart"))
        && opts
            .filter
            .as_ref()
            .is_none_or(|f| "restart".contains(f.as_str()));
    for n in opts.workloads.iter() {
        if !names.contains(n) {
            bail!("no workload {n:?}; there are: {}", names.join(", "));
        }
    }
    selected.retain(|w| {
        let named = opts.workloads.iter().any(|n| n == w.name())
            || opts
                .filter
                .as_ref()
                .is_some_and(|f| w.name().contains(f.as_str()));
        (named || !w.on_request())
            && (opts.workloads.is_empty() || opts.workloads.iter().any(|n| n == w.name()))
            && opts
                .filter
                .as_ref()
                .is_none_or(|f| w.name().contains(f.as_str()))
    });
    let sshd = if restart_on
        || selected.iter().any(|w| {
            w.remote() || (w.kinds().contains(&Kind::LsyncdSsh) && kinds.contains(&Kind::LsyncdSsh))
        }) {
        let dir = std::env::temp_dir().join(format!("syncd-e2e-sshd-{}", std::process::id()));
        Some(ssh::Sshd::start(&dir)?)
    } else {
        None
    };
    let env = Env {
        syncd,
        real_rsync,
        sshd,
        syncd_alt: opts.syncd_alt.clone(),
        delay: opts.delay,
        timeout_s: opts.timeout,
        keep: opts.keep,
        syncd_prefix: opts
            .syncd_prefix
            .as_deref()
            .map(|p| p.split_whitespace().map(String::from).collect())
            .unwrap_or_default(),
    };
    let work_dir = opts
        .work_dir
        .clone()
        .unwrap_or_else(render::default_work_dir);
    let load_before = render::loadavg();
    let started = tree::now();
    let mut results = Vec::new();
    for w in &selected {
        eprintln!("e2e: {} — {}", w.name(), w.about());
        let mut res = WorkloadResult {
            name: w.name().into(),
            about: w.about(),
            delay: w.delay(opts.delay),
            backlog: w.backlog(),
            outage: w.outage(),
            syncd: Vec::new(),
            lsyncd: Vec::new(),
            lsyncd_ssh: Vec::new(),
            syncd_alt: Vec::new(),
            remote: w.remote(),
            moved_bytes: w.moved_bytes(),
            reference: Vec::new(),
            errors: Vec::new(),
        };
        for run in 1..=opts.runs {
            let base = if w.big() { &opts.disk_dir } else { &work_dir }.join(w.name());
            let catchup =
                match reference::reference(w.as_ref(), &env, &base.join(format!("rsync-{run}"))) {
                    Ok(r) => {
                        eprintln!(
                            "e2e:   run {run} rsync: catch-up {:.3} s, no-op {:.3} s",
                            r.catchup_s, r.noop_s
                        );
                        let c = r.catchup_s;
                        res.reference.push(r);
                        c
                    }
                    Err(e) => {
                        res.errors
                            .push(format!("reference run {run} failed: {e:#}"));
                        0.0
                    }
                };
            // Alternate who goes first, so neither always gets the warmer machine.
            let wanted = w.kinds();
            let mut order: Vec<Kind> = kinds
                .iter()
                .copied()
                .filter(|k| {
                    wanted.contains(k) || (*k == Kind::SyncdAlt && wanted.contains(&Kind::Syncd))
                })
                .collect();
            if run % 2 == 0 {
                order.reverse();
            }
            for kind in order {
                let dir = base.join(format!("{}-{run}", kind.name()));
                match measure::daemon(kind, w.as_ref(), &env, &dir, catchup) {
                    Ok(r) => {
                        eprintln!(
                            "e2e:   run {run} {}: mirror {}, {} runs, cpu {:.2}+{:.2} s, rss {:.1} MiB, exact {}",
                            kind.name(),
                            r.mirror_s.map_or("never".into(), |t| format!("{t:.3} s")),
                            r.runs,
                            r.cpu_s,
                            r.children_cpu_s,
                            r.peak_rss_mib,
                            r.exact
                        );
                        res.runs_of(kind).push(r);
                    }
                    Err(e) => {
                        eprintln!("e2e:   run {run} {} failed: {e:#}", kind.name());
                        res.errors
                            .push(format!("{} run {run} failed: {e:#}", kind.name()));
                        if !opts.keep {
                            let _ = tree::remove_all(&dir);
                        }
                    }
                }
            }
        }
        results.push(res);
    }
    let restart = if restart_on {
        let o = restart::Opts {
            files: opts
                .restart_files
                .unwrap_or(if opts.quick { 20_000 } else { 1_000_000 }),
            changes: opts
                .restart_changes
                .unwrap_or(if opts.quick { 200 } else { 1_000 }),
            dir: opts.disk_dir.clone(),
            keep: opts.keep,
            kinds: kinds.clone(),
        };
        eprintln!(
            "e2e: restart — {} files, {} changes per round",
            o.files, o.changes
        );
        match restart::run(&env, &o) {
            Ok(r) => Some(r),
            Err(e) => {
                eprintln!("e2e: restart failed: {e:#}");
                None
            }
        }
    } else {
        None
    };
    let minutes = (tree::now() - started) / 60.0;
    let mut md = render::render(
        opts,
        &work_dir,
        &results,
        &lsyncd_version,
        &load_before,
        minutes,
    );
    if let Some(r) = &restart {
        restart_report::render(r, opts.delay, &mut md);
    }
    print!("{md}");
    let out = opts
        .out
        .clone()
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/e2e/results.md"));
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&out, &md).with_context(|| format!("writing {}", out.display()))?;
    std::fs::write(
        out.with_extension("json"),
        serde_json::to_string_pretty(&serde_json::json!({
            "workloads": results,
            "restart": restart,
        }))?,
    )?;
    eprintln!("e2e: report written to {}", out.display());
    Ok(())
}

/// The daemons asked for (default: all; syncd-alt only with --syncd-alt).
fn selected_daemons(opts: &Opts) -> Result<Vec<Kind>> {
    if opts.daemons.is_empty() {
        return Ok(Kind::ALL
            .into_iter()
            .filter(|k| *k != Kind::SyncdAlt || opts.syncd_alt.is_some())
            .collect());
    }
    opts.daemons
        .iter()
        .map(|d| {
            let k = Kind::ALL.into_iter().find(|k| k.name() == d.as_str());
            match k {
                Some(Kind::SyncdAlt) if opts.syncd_alt.is_none() => {
                    bail!("the daemon syncd-alt needs --syncd-alt PATH")
                }
                Some(k) => Ok(k),
                None => {
                    bail!("no daemon {d:?}; there are syncd, lsyncd, lsyncd-rsyncssh and syncd-alt")
                }
            }
        })
        .collect()
}
