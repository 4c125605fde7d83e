//! The move workloads of issue 14, and their targets: a directory of 1 GiB
//! in 1,000 files of 1 MiB renamed within its parent (`move-1g`); 100
//! directories of 10 MiB (ten 1 MiB files each) moved under a parent
//! created just before (`mkdir new; mv d* new/`: `move-100x10m`); each to a
//! local DEST and, with the suffix `-ssh`, to an ssh DEST on the
//! benchmark's loopback sshd, as is `dir-rename-ssh` (the dir-rename
//! workload over ssh). File contents are random: nothing compresses and
//! no delta helps a re-transfer.
//!
//! Each compares syncd, lsyncd `default.rsync` (which sends a moved tree
//! again), lsyncd `default.rsyncssh` (which runs `ssh HOST mv A B` on the
//! target for each move; always over the sshd, also for the "local"
//! variants, where DEST is the same local directory) and the catch-up
//! rsync. The targets, on the medians: syncd sends under 1% of the moved
//! data; is an exact mirror under 1 s after the window over loopback ssh;
//! and is ahead of lsyncd rsyncssh (time to mirror) on every workload, and
//! (over ssh, where both are counted by the proxy) in bytes.

use std::fs;

use anyhow::Result;

use crate::daemon::Kind;
use crate::link::human;
use crate::report::{median, WorkloadResult};
use crate::tree::{now, Twin};
use crate::workloads::{dir_rename, Ctx, Span, Workload};

const MIB: usize = 1024 * 1024;

/// Every move workload, local and over ssh.
pub fn all(quick: bool) -> Vec<Box<dyn Workload>> {
    let q = |full, small| if quick { small } else { full };
    let one = || RenameBig {
        files: q(1_000, 100),
    };
    let many = || MoveUnderNew {
        dirs: q(100, 20),
        per_dir: 10,
    };
    vec![
        Box::new(one()),
        Box::new(Ssh::new("move-1g-ssh", one())),
        Box::new(many()),
        Box::new(Ssh::new("move-100x10m-ssh", many())),
        Box::new(Ssh::new("dir-rename-ssh", dir_rename(quick))),
    ]
}

/// The daemons of a move workload.
fn move_kinds() -> Vec<Kind> {
    vec![Kind::Syncd, Kind::Lsyncd, Kind::LsyncdSsh]
}

/// One directory of `files` files of 1 MiB, renamed within its parent.
struct RenameBig {
    files: usize,
}

impl Workload for RenameBig {
    fn name(&self) -> &'static str {
        "move-1g"
    }
    fn about(&self) -> String {
        format!(
            "rename a directory holding {} files of 1 MiB ({} MiB of random data) within its parent, next to 100 small files",
            self.files, self.files
        )
    }
    fn kinds(&self) -> Vec<Kind> {
        move_kinds()
    }
    fn moved_bytes(&self) -> Option<u64> {
        Some((self.files * MIB) as u64)
    }
    fn prepare(&self, t: &mut Twin) -> Result<()> {
        t.dir("m")?;
        t.dir("m/big")?;
        for f in 0..self.files {
            t.file(&format!("m/big/f{f:04}"), MIB, 0o644)?;
        }
        t.dir("m/small")?;
        for f in 0..100 {
            t.file(&format!("m/small/f{f:02}"), 1000, 0o644)?;
        }
        Ok(())
    }
    fn change(&self, cx: &Ctx) -> Result<Span> {
        let first = now();
        fs::rename(cx.src.join("m/big"), cx.src.join("m/big-renamed"))?;
        Ok(window(first, now(), cx.delay))
    }
}

/// `dirs` directories of `per_dir` files of 1 MiB moved under a new parent.
struct MoveUnderNew {
    dirs: usize,
    per_dir: usize,
}

impl Workload for MoveUnderNew {
    fn name(&self) -> &'static str {
        "move-100x10m"
    }
    fn about(&self) -> String {
        format!(
            "mkdir new; mv d* new/: {} directories of {} files of 1 MiB ({} MiB of random data) moved under a directory created just before",
            self.dirs,
            self.per_dir,
            self.dirs * self.per_dir
        )
    }
    fn kinds(&self) -> Vec<Kind> {
        move_kinds()
    }
    fn moved_bytes(&self) -> Option<u64> {
        Some((self.dirs * self.per_dir * MIB) as u64)
    }
    fn prepare(&self, t: &mut Twin) -> Result<()> {
        t.dir("p")?;
        for d in 0..self.dirs {
            t.dir(&format!("p/d{d:03}"))?;
            for f in 0..self.per_dir {
                t.file(&format!("p/d{d:03}/f{f}"), MIB, 0o644)?;
            }
        }
        Ok(())
    }
    fn change(&self, cx: &Ctx) -> Result<Span> {
        let p = cx.src.join("p");
        let first = now();
        fs::create_dir(p.join("new"))?;
        for d in 0..self.dirs {
            let name = format!("d{d:03}");
            fs::rename(p.join(&name), p.join("new").join(&name))?;
        }
        Ok(window(first, now(), cx.delay))
    }
}

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

/// A workload to an ssh DEST: the same trees and change, under its own name.
struct Ssh<W> {
    name: &'static str,
    inner: W,
}

impl<W: Workload> Ssh<W> {
    fn new(name: &'static str, inner: W) -> Ssh<W> {
        Ssh { name, inner }
    }
}

impl<W: Workload> Workload for Ssh<W> {
    fn name(&self) -> &'static str {
        self.name
    }
    fn about(&self) -> String {
        format!(
            "{}; DEST over ssh (loopback sshd, through a counting proxy)",
            self.inner.about()
        )
    }
    fn remote(&self) -> bool {
        true
    }
    fn kinds(&self) -> Vec<Kind> {
        move_kinds()
    }
    fn moved_bytes(&self) -> Option<u64> {
        self.inner.moved_bytes()
    }
    fn prepare(&self, t: &mut Twin) -> Result<()> {
        self.inner.prepare(t)
    }
    fn change(&self, cx: &Ctx) -> Result<Span> {
        self.inner.change(cx)
    }
}

/// The move targets, one row per move workload measured (on the medians).
pub fn targets_table(results: &[WorkloadResult], out: &mut String) -> (usize, usize) {
    use std::fmt::Write;
    let rows: Vec<&WorkloadResult> = results
        .iter()
        .filter(|w| w.name.starts_with("move-") || w.name == "dir-rename-ssh")
        .collect();
    if rows.is_empty() {
        return (0, 0);
    }
    let _ = writeln!(
        out,
        "| workload | syncd sent < 1% of the moved data | < 1 s after the window (ssh) | time < lsyncd rsyncssh | bytes < lsyncd rsyncssh |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|");
    let (mut pass, mut all) = (0, 0);
    let mut cell = |ok: bool, detail: String| {
        all += 1;
        if ok {
            pass += 1;
            format!("PASS {detail}")
        } else {
            format!("**MISS** {detail}")
        }
    };
    for w in rows {
        let time = |runs: &[crate::measure::DaemonRun]| {
            median(
                &runs
                    .iter()
                    .map(|r| r.mirror_s.unwrap_or(f64::INFINITY))
                    .collect::<Vec<_>>(),
            )
        };
        let bytes = |runs: &[crate::measure::DaemonRun]| {
            median(
                &runs
                    .iter()
                    .filter_map(|r| r.bytes.shown())
                    .map(|b| b as f64)
                    .collect::<Vec<_>>(),
            )
        };
        let (st, sb) = (time(&w.syncd), bytes(&w.syncd));
        let (lt, lb) = (time(&w.lsyncd_ssh), bytes(&w.lsyncd_ssh));
        let share = match (sb, w.moved_bytes) {
            (Some(b), Some(m)) if w.name != "dir-rename-ssh" => cell(
                b < 0.01 * m as f64,
                format!(
                    "{} = {:.3}% of {}",
                    human(b as u64),
                    100.0 * b / m as f64,
                    human(m)
                ),
            ),
            _ => "–".into(),
        };
        let fast = match st {
            Some(t) if w.remote => cell(t < 1.0, format!("{t:.3} s")),
            _ => "–".into(),
        };
        let ahead = match (st, lt) {
            (Some(a), Some(b)) => cell(a < b, format!("{a:.3} vs {b:.3} s")),
            _ => "–".into(),
        };
        let fewer = match (sb, lb) {
            (Some(a), Some(b)) if w.remote => {
                cell(a < b, format!("{} vs {}", human(a as u64), human(b as u64)))
            }
            _ => "–".into(),
        };
        let _ = writeln!(out, "| {} | {share} | {fast} | {ahead} | {fewer} |", w.name);
    }
    (pass, all)
}
