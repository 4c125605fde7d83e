//! The workloads: each builds a pre-change tree (identical in SOURCE and
//! DEST) and then changes SOURCE while a daemon watches it.
//!
//! A workload's change is the same for every daemon and for the catch-up
//! rsync reference, with two exceptions that only exist because a daemon is
//! there: pacing (the trickle and the backlog space their changes in time;
//! the reference applies them at once, since only the end state matters to
//! rsync), and the burst's stop rule, which watches the daemon's rsync runs
//! to end with a same-size rewrite in the same second as the version the
//! last run copied (the case where rsync's quick check, size plus mtime to
//! the second, skips a changed file). The backlog also makes DEST immutable
//! for the outage, which the reference does not need.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::{Context, Result};

use crate::daemon::Kind;
use crate::monitor::Monitor;
use crate::tree::{append, immutable, now, rewrite, sleep_until, Rng, Twin};

/// What a workload's change phase may use.
pub struct Ctx<'a> {
    pub src: &'a Path,
    pub dst: &'a Path,
    pub delay: f64,
    /// The rsync runs of the daemon under test; `None` for the reference.
    pub monitor: Option<&'a Monitor>,
    /// How many windows the daemon committed so far, if it says (syncd -v).
    pub commits: Option<&'a dyn Fn() -> usize>,
    /// The daemon's CPU so far, its own and its waited-for children's.
    pub cpu: Option<&'a dyn Fn() -> f64>,
    /// How many probes of a backing-off destination the daemon made so
    /// far, if it says (syncd -v).
    pub probes: Option<&'a dyn Fn() -> usize>,
}

impl Ctx<'_> {
    /// Whether a daemon watches (pace the changes, honour outages).
    fn live(&self) -> bool {
        self.monitor.is_some()
    }
}

/// When the change happened.
#[derive(Debug, Clone)]
pub struct Span {
    pub first: f64,
    pub last: f64,
    /// Where "time to mirror" starts: the end of the window holding the
    /// last change (last + delay), or the moment the destination returned.
    pub reference: f64,
    /// rsync runs are counted from here.
    pub count_from: f64,
    /// Backlog and outages: rsync runs while DEST was unwritable.
    pub outage_runs: usize,
    /// Outages: how long DEST was unwritable, and what the daemon spent
    /// meanwhile (CPU with its rsync children; probes).
    pub outage: Option<OutageCost>,
    pub notes: Vec<String>,
}

/// What a daemon spent while DEST was unwritable.
#[derive(Debug, Clone, serde::Serialize)]
pub struct OutageCost {
    pub secs: f64,
    pub cpu_s: Option<f64>,
    pub probes: Option<usize>,
}

impl Span {
    fn window(first: f64, last: f64, delay: f64) -> Span {
        Span {
            first,
            last,
            reference: last + delay,
            count_from: first,
            outage_runs: 0,
            outage: None,
            notes: Vec::new(),
        }
    }
}

pub trait Workload {
    fn name(&self) -> &'static str;
    /// One line for the report.
    fn about(&self) -> String;
    /// The aggregation delay for this workload (the backlog uses a tiny one).
    fn delay(&self, default: f64) -> f64 {
        default
    }
    /// Whether this is the backlog (outage) workload.
    fn backlog(&self) -> bool {
        false
    }
    /// Whether this is an outage workload: DEST unwritable for a while
    /// with the daemon's default backoff, timed from its return.
    fn outage(&self) -> bool {
        false
    }
    /// Whether it runs only when asked for by name (`--workload`): the
    /// outages take minutes of waiting each.
    fn on_request(&self) -> bool {
        self.outage()
    }
    /// Whether the trees are too big for tmpfs (they go to the disk dir).
    fn big(&self) -> bool {
        false
    }
    /// Whether DEST is reached over ssh (the benchmark's sshd, through a
    /// counting proxy), for every daemon and the reference.
    fn remote(&self) -> bool {
        false
    }
    /// The daemons this workload compares (those also given with
    /// `--daemon`, when any are).
    fn kinds(&self) -> Vec<Kind> {
        vec![Kind::Syncd, Kind::Lsyncd]
    }
    /// The bytes of the data the change moves, for "sent as a share of
    /// the moved data" (move workloads).
    fn moved_bytes(&self) -> Option<u64> {
        None
    }
    fn prepare(&self, t: &mut Twin) -> Result<()>;
    fn change(&self, cx: &Ctx) -> Result<Span>;
}

/// Every workload, full-size or reduced (`--quick`); the scale run has
/// `scale_files` files (ten per directory).
pub fn all(quick: bool, scale_files: usize) -> Vec<Box<dyn Workload>> {
    let q = |full, small| if quick { small } else { full };
    let mut v: Vec<Box<dyn Workload>> = vec![
        Box::new(SmallFiles {
            dirs: q(1_000, 200),
            per_dir: 10,
        }),
        Box::new(Burst {
            same: 50,
            vary: 10,
            min_s: if quick { 2.0 } else { 3.0 },
        }),
        Box::new(dir_rename(quick)),
        Box::new(TreeDelete {
            top: q(50, 10),
            sub: q(50, 25),
            per_dir: 20,
        }),
        Box::new(Trickle {
            ticks: q(200, 50),
            every_s: 0.1,
        }),
        Box::new(DeepTree {
            old: q(500, 100),
            new: q(1_000, 200),
        }),
        Box::new(Backlog {
            changes: q(1_000, 200),
            delay: 0.01,
            spacing_s: 0.04,
        }),
        Box::new(Scale::new(scale_files)),
        Box::new(TimedOutage {
            name: "outage-30s",
            secs: 30.0,
            every_s: 1.0,
        }),
        Box::new(TimedOutage {
            name: "outage-10m",
            secs: 600.0,
            every_s: 1.0,
        }),
    ];
    v.extend(crate::moves::all(quick));
    v
}

/// The dir-rename workload at its full or reduced size.
pub fn dir_rename(quick: bool) -> DirRename {
    let q = |full, small| if quick { small } else { full };
    DirRename {
        dirs: q(200, 50),
        per_dir: q(50, 20),
        renamed: q(100, 25),
    }
}

/// Many small files created across many new directories.
struct SmallFiles {
    dirs: usize,
    per_dir: usize,
}

impl Workload for SmallFiles {
    fn name(&self) -> &'static str {
        "small-files"
    }
    fn about(&self) -> String {
        format!(
            "create {} files (100 B–4 KiB, some 0600/0755) and {} symlinks in {} new directories under 10 parents, next to 1,000 existing files",
            self.dirs * self.per_dir,
            self.dirs,
            self.dirs
        )
    }
    fn prepare(&self, t: &mut Twin) -> Result<()> {
        t.dir("base")?;
        for d in 0..100 {
            t.dir(&format!("base/d{d:02}"))?;
            for f in 0..10 {
                let size = t.rng.range(100, 4000) as usize;
                t.file(&format!("base/d{d:02}/f{f}"), size, 0o644)?;
            }
            t.symlink(&format!("base/d{d:02}/link"), "f0")?;
        }
        Ok(())
    }
    fn change(&self, cx: &Ctx) -> Result<Span> {
        let mut rng = Rng::new(1);
        let first = now();
        let new = cx.src.join("new");
        fs::create_dir(&new)?;
        for g in 0..10 {
            fs::create_dir(new.join(format!("g{g}")))?;
        }
        for d in 0..self.dirs {
            let dir = new.join(format!("g{}/d{d:04}", d % 10));
            fs::create_dir(&dir)?;
            for f in 0..self.per_dir {
                let p = dir.join(format!("f{f}"));
                let size = rng.range(100, 4000) as usize;
                rewrite(&p, &rng.bytes(size))?;
                let mode = match (d * self.per_dir + f) % 11 {
                    3 => Some(0o600),
                    7 => Some(0o755),
                    _ => None,
                };
                if let Some(m) = mode {
                    fs::set_permissions(&p, fs::Permissions::from_mode(m))?;
                }
            }
            std::os::unix::fs::symlink("f0", dir.join("link"))?;
        }
        Ok(Span::window(first, now(), cx.delay))
    }
}

/// Repeated rewrites of the same files, most of them same-size, ending with
/// a same-size rewrite in the same second as the version last copied.
struct Burst {
    same: usize,
    vary: usize,
    min_s: f64,
}

impl Burst {
    fn round(&self, src: &Path, rng: &mut Rng) -> Result<()> {
        for i in 0..self.same {
            rewrite(&src.join(format!("b/s{i:02}")), &rng.bytes(4096))?;
        }
        for i in 0..self.vary {
            let n = rng.range(1000, 4000) as usize;
            rewrite(&src.join(format!("b/v{i}")), &rng.bytes(n))?;
        }
        Ok(())
    }
}

impl Workload for Burst {
    fn name(&self) -> &'static str {
        "burst"
    }
    fn about(&self) -> String {
        format!(
            "rewrite {} files of 4 KiB (same size) and {} of varying size every 20 ms for ≥ {} s, ending with a same-size rewrite in the same second as the daemon's last rsync run",
            self.same, self.vary, self.min_s
        )
    }
    fn prepare(&self, t: &mut Twin) -> Result<()> {
        t.dir("b")?;
        for i in 0..self.same {
            t.file(&format!("b/s{i:02}"), 4096, 0o644)?;
        }
        for i in 0..self.vary {
            let n = t.rng.range(1000, 4000) as usize;
            t.file(&format!("b/v{i}"), n, 0o644)?;
        }
        Ok(())
    }
    fn change(&self, cx: &Ctx) -> Result<Span> {
        let mut rng = Rng::new(2);
        let first = now();
        let Some(mon) = cx.monitor else {
            for _ in 0..20 {
                self.round(cx.src, &mut rng)?;
            }
            return Ok(Span::window(first, now(), cx.delay));
        };
        let mut notes = Vec::new();
        let mut seen = 0;
        loop {
            self.round(cx.src, &mut rng)?;
            let t = now();
            let ended: Vec<_> = mon
                .since(first + 0.2)
                .into_iter()
                .filter(|r| r.end.is_some())
                .collect();
            if t - first >= self.min_s && ended.len() > seen {
                seen = ended.len();
                let copied = ended.iter().map(|r| r.start).fold(0.0, f64::max) - 0.03;
                // The files the run copied were written in the second of
                // `copied`; the next round lands in the same second when
                // that is still the current one.
                if copied.floor() == now().floor() {
                    self.round(cx.src, &mut rng)?;
                    notes.push(
                        "ended with a same-size rewrite in the second of the last run's copy"
                            .into(),
                    );
                    break;
                }
            }
            if t - first > self.min_s + 15.0 {
                notes.push("no rsync run allowed a same-second ending".into());
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let mut span = Span::window(first, now(), cx.delay);
        span.notes = notes;
        Ok(span)
    }
}

/// Directory renames, within a parent and into a deeper one.
pub struct DirRename {
    dirs: usize,
    per_dir: usize,
    renamed: usize,
}

impl Workload for DirRename {
    fn name(&self) -> &'static str {
        "dir-rename"
    }
    fn about(&self) -> String {
        format!(
            "rename {} of {} directories of {} files, one directory holding 10 subdirectories, and move one directory two levels down",
            self.renamed, self.dirs, self.per_dir
        )
    }
    fn prepare(&self, t: &mut Twin) -> Result<()> {
        t.dir("r")?;
        for d in 0..self.dirs {
            t.dir(&format!("r/d{d:03}"))?;
            for f in 0..self.per_dir {
                t.file(&format!("r/d{d:03}/f{f:02}"), 1024, 0o644)?;
            }
        }
        for n in 0..2 {
            t.dir(&format!("r/n{n}"))?;
            for s in 0..10 {
                t.dir(&format!("r/n{n}/s{s}"))?;
                for f in 0..10 {
                    t.file(&format!("r/n{n}/s{s}/f{f}"), 512, 0o644)?;
                }
            }
        }
        Ok(())
    }
    fn change(&self, cx: &Ctx) -> Result<Span> {
        let r = cx.src.join("r");
        let first = now();
        for d in 0..self.renamed {
            fs::rename(r.join(format!("d{d:03}")), r.join(format!("m{d:03}")))?;
        }
        fs::rename(r.join("n0"), r.join("n0-renamed"))?;
        let last_dir = format!("d{:03}", self.dirs - 1);
        fs::rename(r.join(&last_dir), r.join("n1/s0").join(&last_dir))?;
        Ok(Span::window(first, now(), cx.delay))
    }
}

/// One large subtree deleted at once.
struct TreeDelete {
    top: usize,
    sub: usize,
    per_dir: usize,
}

impl Workload for TreeDelete {
    fn name(&self) -> &'static str {
        "tree-delete"
    }
    fn about(&self) -> String {
        format!(
            "delete a tree of {} files in {} directories (rm -rf), keeping 100 other files",
            self.top * self.sub * self.per_dir,
            self.top * self.sub + self.top + 1
        )
    }
    fn prepare(&self, t: &mut Twin) -> Result<()> {
        t.dir("keep")?;
        for f in 0..100 {
            t.file(&format!("keep/f{f:02}"), 700, 0o644)?;
        }
        t.dir("big")?;
        for a in 0..self.top {
            t.dir(&format!("big/a{a:02}"))?;
            for b in 0..self.sub {
                t.dir(&format!("big/a{a:02}/b{b:02}"))?;
                for f in 0..self.per_dir {
                    let n = t.rng.range(100, 1000) as usize;
                    t.file(&format!("big/a{a:02}/b{b:02}/f{f:02}"), n, 0o644)?;
                }
            }
        }
        Ok(())
    }
    fn change(&self, cx: &Ctx) -> Result<Span> {
        let first = now();
        fs::remove_dir_all(cx.src.join("big"))?;
        Ok(Span::window(first, now(), cx.delay))
    }
}

/// A steady trickle: one change every `every_s`, cycling through create,
/// append, rewrite with a new size, and delete.
struct Trickle {
    ticks: usize,
    every_s: f64,
}

impl Workload for Trickle {
    fn name(&self) -> &'static str {
        "trickle"
    }
    fn about(&self) -> String {
        format!(
            "{} changes, one every {} ms for {:.0} s (create, append, rewrite, delete in turn)",
            self.ticks,
            self.every_s * 1e3,
            self.ticks as f64 * self.every_s
        )
    }
    fn prepare(&self, t: &mut Twin) -> Result<()> {
        t.dir("t")?;
        for f in 0..100 {
            t.file(&format!("t/f{f:02}"), 1024, 0o644)?;
        }
        Ok(())
    }
    fn change(&self, cx: &Ctx) -> Result<Span> {
        let mut rng = Rng::new(5);
        let t = cx.src.join("t");
        let first = now();
        for i in 0..self.ticks {
            if cx.live() {
                sleep_until(first + i as f64 * self.every_s);
            }
            match i % 4 {
                0 => rewrite(&t.join(format!("new{i}")), &rng.bytes(2000))?,
                1 => append(&t.join(format!("f{:02}", i % 100)), &rng.bytes(100))?,
                2 => {
                    let n = rng.range(500, 3000) as usize;
                    rewrite(&t.join(format!("f{:02}", (i * 7) % 100)), &rng.bytes(n))?
                }
                _ => fs::remove_file(t.join(format!("new{}", i - 3)))?,
            }
        }
        Ok(Span::window(first, now(), cx.delay))
    }
}

/// A very deep tree: a new chain of directories created level by level, a
/// file modified and a subtree deleted deep in an existing chain.
struct DeepTree {
    old: usize,
    new: usize,
}

impl DeepTree {
    fn chain(name: &str, levels: usize) -> String {
        vec![name; levels].join("/")
    }
}

impl Workload for DeepTree {
    fn name(&self) -> &'static str {
        "deep-tree"
    }
    fn about(&self) -> String {
        format!(
            "create a chain of {} nested directories with a file at every level; in an existing chain of {}, modify a file at level {} and delete the levels below {}",
            self.new,
            self.old,
            self.old - 60,
            self.old - 50
        )
    }
    fn prepare(&self, t: &mut Twin) -> Result<()> {
        for level in 1..=self.old {
            let dir = Self::chain("d", level);
            t.dir(&dir)?;
            if level % 10 == 0 {
                t.file(&format!("{dir}/f"), 300, 0o644)?;
            }
        }
        Ok(())
    }
    fn change(&self, cx: &Ctx) -> Result<Span> {
        let mut rng = Rng::new(6);
        let first = now();
        let mut dir = cx.src.to_path_buf();
        for _ in 0..self.new {
            dir.push("e");
            fs::create_dir(&dir)?;
            rewrite(&dir.join("f"), &rng.bytes(200))?;
        }
        let keep = cx.src.join(Self::chain("d", self.old - 50));
        fs::remove_dir_all(keep.join("d")).context("deleting the bottom of the old chain")?;
        let f = cx.src.join(Self::chain("d", self.old - 60)).join("f");
        rewrite(&f, &rng.bytes(300))?;
        Ok(Span::window(first, now(), cx.delay))
    }
}

/// 1,000 changesets committed while DEST is unwritable, drained after it
/// returns.
struct Backlog {
    changes: usize,
    delay: f64,
    spacing_s: f64,
}

/// Lifts the outage even when the change phase fails half-way.
struct Outage<'a>(&'a Path);

impl Drop for Outage<'_> {
    fn drop(&mut self) {
        let _ = immutable(self.0, false);
    }
}

impl Backlog {
    /// 1,000 files of 1,000 bytes in 100 directories under `bl/`.
    fn prepare_tree(t: &mut Twin) -> Result<()> {
        t.dir("bl")?;
        for d in 0..100 {
            t.dir(&format!("bl/d{d:02}"))?;
            for f in 0..10 {
                t.file(&format!("bl/d{d:02}/f{f}"), 1000, 0o644)?;
            }
        }
        Ok(())
    }
}

impl Workload for Backlog {
    fn name(&self) -> &'static str {
        "backlog"
    }
    fn about(&self) -> String {
        format!(
            "DEST immutable (chattr -R +i) while {} files are rewritten one at a time, {} ms apart, with a {} ms delay (one window each); then DEST is made writable again",
            self.changes,
            self.spacing_s * 1e3,
            self.delay * 1e3
        )
    }
    fn delay(&self, _default: f64) -> f64 {
        self.delay
    }
    fn backlog(&self) -> bool {
        true
    }
    fn prepare(&self, t: &mut Twin) -> Result<()> {
        Backlog::prepare_tree(t)
    }
    fn change(&self, cx: &Ctx) -> Result<Span> {
        let mut rng = Rng::new(7);
        let mut notes = Vec::new();
        let outage_from = now();
        let outage = if cx.live() {
            immutable(cx.dst, true)?;
            std::thread::sleep(std::time::Duration::from_millis(500));
            Some(Outage(cx.dst))
        } else {
            None
        };
        let commits0 = cx.commits.map(|c| c());
        let first = now();
        for i in 0..self.changes {
            let n = rng.range(500, 1500) as usize;
            let p = cx
                .src
                .join(format!("bl/d{:02}/f{}", (i / 10) % 100, i % 10));
            rewrite(&p, &rng.bytes(n))?;
            if cx.live() {
                sleep_until(first + (i + 1) as f64 * self.spacing_s);
            }
        }
        let last = now();
        let mut span = Span::window(first, last, self.delay);
        if let Some(outage) = outage {
            // Let the last window close and be committed before the return.
            std::thread::sleep(std::time::Duration::from_secs(1));
            if let (Some(c0), Some(c)) = (commits0, cx.commits) {
                notes.push(format!("{} windows committed during the outage", c() - c0));
            }
            drop(outage);
            if let Some(mon) = cx.monitor {
                span.outage_runs = mon.since(outage_from).len();
            }
            span.reference = now();
            span.count_from = span.reference;
        }
        span.notes = notes;
        Ok(span)
    }
}

/// DEST unwritable (`chattr -R +i`) for `secs` while a file is rewritten
/// every `every_s` (one window each), with the daemons' default retry
/// backoff; timed from DEST's return to the exact mirror, with what the
/// daemon spent during the outage.
struct TimedOutage {
    name: &'static str,
    secs: f64,
    every_s: f64,
}

impl Workload for TimedOutage {
    fn name(&self) -> &'static str {
        self.name
    }
    fn about(&self) -> String {
        format!(
            "DEST immutable (chattr -R +i) for {} s while a file is rewritten every {} s, with the default retry backoff (syncd: up to 60 s); then DEST is made writable again",
            self.secs, self.every_s
        )
    }
    fn outage(&self) -> bool {
        true
    }
    fn prepare(&self, t: &mut Twin) -> Result<()> {
        Backlog::prepare_tree(t)
    }
    fn change(&self, cx: &Ctx) -> Result<Span> {
        let mut rng = Rng::new(9);
        let outage_from = now();
        let outage = if cx.live() {
            immutable(cx.dst, true)?;
            Some(Outage(cx.dst))
        } else {
            None
        };
        let cpu0 = cx.cpu.map(|c| c());
        let probes0 = cx.probes.map(|p| p());
        let first = now();
        // Changes stop 2 s before the return, so the last window is
        // committed (and failed) while DEST is still unwritable.
        let n = ((self.secs - 2.0) / self.every_s).max(1.0) as usize;
        for i in 0..n {
            let p = cx
                .src
                .join(format!("bl/d{:02}/f{}", (i / 10) % 100, i % 10));
            let len = rng.range(500, 1500) as usize;
            rewrite(&p, &rng.bytes(len))?;
            if cx.live() {
                sleep_until(first + (i + 1) as f64 * self.every_s);
            }
        }
        let last = now();
        let mut span = Span::window(first, last, cx.delay);
        if let Some(outage) = outage {
            sleep_until(outage_from + self.secs);
            let cost = OutageCost {
                secs: now() - outage_from,
                cpu_s: cx.cpu.map(|c| c()).zip(cpu0).map(|(a, b)| a - b),
                probes: cx.probes.map(|p| p()).zip(probes0).map(|(a, b)| a - b),
            };
            drop(outage);
            if let Some(mon) = cx.monitor {
                span.outage_runs = mon.since(outage_from).len();
            }
            span.reference = now();
            span.count_from = span.reference;
            span.outage = Some(cost);
        }
        Ok(span)
    }
}

/// The scale run: a tree of 1,000,000 files in 100,000 directories is
/// watched from the start; then 1,000 files in as many directories are
/// modified, 100 directories of 10 files created and 100 deleted.
pub struct Scale {
    top: usize,
    leaves: usize,
    per_dir: usize,
}

impl Scale {
    /// `files` files, ten per directory, in parents of up to 1,000
    /// directories each.
    pub fn new(files: usize) -> Scale {
        let per_dir = 10;
        let dirs = (files / per_dir).max(100);
        let leaves = dirs.min(1_000);
        Scale {
            top: dirs / leaves,
            leaves,
            per_dir,
        }
    }
    /// The `i`-th leaf directory (ten files `f0`..`f9`).
    pub fn leaf(&self, i: usize) -> String {
        format!("s/t{:03}/l{:04}", i / self.leaves, i % self.leaves)
    }
    /// The number of leaf directories.
    pub fn dirs(&self) -> usize {
        self.top * self.leaves
    }
    /// How many directories each part of the change touches: 100 in the
    /// full run, fewer in small trees.
    fn touched(&self) -> usize {
        (self.dirs() / 1_000).clamp(10, 100)
    }
}

impl Workload for Scale {
    fn name(&self) -> &'static str {
        "scale"
    }
    fn big(&self) -> bool {
        self.dirs() * self.per_dir >= 100_000
    }
    fn about(&self) -> String {
        let n = self.touched();
        format!(
            "a tree of {} files in {} directories; modify {} files in as many directories, create {n} directories of 10 files, delete {n} directories",
            self.dirs() * self.per_dir,
            self.dirs() + self.top + 1,
            n * 10
        )
    }
    fn prepare(&self, t: &mut Twin) -> Result<()> {
        t.dir("s")?;
        for i in 0..self.dirs() {
            if i % self.leaves == 0 {
                t.dir(&format!("s/t{:03}", i / self.leaves))?;
            }
            let leaf = self.leaf(i);
            t.dir(&leaf)?;
            for f in 0..self.per_dir {
                let n = t.rng.range(0, 200) as usize;
                t.file(&format!("{leaf}/f{f}"), n, 0o644)?;
            }
        }
        Ok(())
    }
    fn change(&self, cx: &Ctx) -> Result<Span> {
        let mut rng = Rng::new(8);
        let n = self.touched();
        let first = now();
        let modified = n * 10;
        for k in 0..modified {
            let leaf = self.leaf(k * (self.dirs() / modified) + 1);
            rewrite(&cx.src.join(leaf).join("f3"), &rng.bytes(150))?;
        }
        let new = cx.src.join("s/new");
        fs::create_dir(&new)?;
        for d in 0..n {
            let dir = new.join(format!("n{d:03}"));
            fs::create_dir(&dir)?;
            for f in 0..10 {
                rewrite(&dir.join(format!("f{f}")), &rng.bytes(100))?;
            }
        }
        for k in 0..n {
            let leaf = self.leaf(k * (self.dirs() / n) + 2);
            fs::remove_dir_all(cx.src.join(leaf))?;
        }
        Ok(Span::window(first, now(), cx.delay))
    }
}
