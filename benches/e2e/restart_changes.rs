//! The changes of the restart workload (issue 13): `n` changes (1,000 in
//! the full run) of every kind a restart scan must find, made while the
//! daemon is down, spread over a tree of the scale run's shape (leaf
//! directories of ten files `f0`..`f9`, each with a symlink `link` → `f0`).
//!
//! The mix, per 1,000: 150 creates; 100 appends; 100 same-size rewrites
//! with the old mtime put back (as `touch -r` does: rsync's quick check
//! cannot see them); 100 file deletions and 50 tree deletions (a leaf
//! directory with its files); 100 file renames (half within their
//! directory, half into another); 50 directory renames (half within their
//! parent, half into another top directory); 100 chmods; 50 symlink
//! retargets; 100 new hard links (half in the same directory, half in
//! another); 100 hostile names (files created with a newline, an invalid
//! UTF-8 byte or a leading `-` in their names, a tenth of them renames).
//!
//! Every change gets leaf directories of its own, so the changes commute
//! and are applied in a seeded random order (a crash in the middle of them
//! leaves a mix). Round `r` of `rounds` draws its leaves from the residue
//! class `r` modulo `rounds`, so the rounds of one benchmark run (one per
//! daemon and scenario) touch disjoint parts of the same tree and cost
//! the same.

use std::ffi::OsString;
use std::fs::{self, FileTimes};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::tree::{append, rewrite, Rng};
use crate::workloads::Scale;

/// One change, on paths relative to SOURCE.
#[derive(Debug, Clone)]
pub enum Op {
    Create(PathBuf, usize),
    Append(PathBuf, usize),
    /// Rewritten with other bytes of the same length, old mtime restored.
    SameSize(PathBuf),
    RemoveFile(PathBuf),
    RemoveTree(PathBuf),
    Rename(PathBuf, PathBuf),
    Chmod(PathBuf, u32),
    /// The symlink now points to the second path.
    Retarget(PathBuf, PathBuf),
    /// A new hard link: (existing, new name).
    HardLink(PathBuf, PathBuf),
}

/// The kinds and their share of 1,000, in the report's words.
pub const MIX: [(&str, usize); 12] = [
    ("creates", 150),
    ("appends", 100),
    ("same-size rewrites, mtime restored (touch -r)", 100),
    ("file deletions", 100),
    ("tree deletions", 50),
    ("file renames", 100),
    ("directory renames", 50),
    ("chmods", 100),
    ("symlink retargets", 50),
    ("new hard links", 100),
    ("hostile names (newline, invalid UTF-8, leading -)", 90),
    ("renames to hostile names", 10),
];

/// Leaf directories of one round, in a spread-out order.
struct Leaves<'a> {
    scale: &'a Scale,
    round: usize,
    rounds: usize,
    next: usize,
}

impl Leaves<'_> {
    fn take(&mut self) -> Result<PathBuf> {
        let per_round = self.scale.dirs() / self.rounds;
        anyhow::ensure!(
            self.next < per_round,
            "the tree is too small for this many changes"
        );
        // 7,919 is prime and divides no per-round count used here, so j ↦
        // j·7919 mod per_round visits every leaf of the round once.
        let k = (self.next * 7_919) % per_round;
        self.next += 1;
        Ok(PathBuf::from(self.scale.leaf(self.round + self.rounds * k)))
    }
}

fn name(bytes: Vec<u8>) -> PathBuf {
    PathBuf::from(OsString::from_vec(bytes))
}

/// The `n` changes of round `round` of `rounds`, in applying order.
pub fn round(scale: &Scale, round: usize, rounds: usize, n: usize) -> Result<Vec<Op>> {
    let mut l = Leaves {
        scale,
        round,
        rounds,
        next: 0,
    };
    let mut rng = Rng::new(0xc4a9 + round as u64);
    let count = |share: usize| (share * n / 1000).max(1);
    let mut ops = Vec::new();
    for k in 0..count(150) {
        ops.push(Op::Create(
            l.take()?.join(format!("new{k}")),
            rng.range(100, 4000) as usize,
        ));
    }
    for _ in 0..count(100) {
        ops.push(Op::Append(l.take()?.join("f1"), 100));
    }
    for _ in 0..count(100) {
        ops.push(Op::SameSize(l.take()?.join("f2")));
    }
    for _ in 0..count(100) {
        ops.push(Op::RemoveFile(l.take()?.join("f3")));
    }
    for _ in 0..count(50) {
        ops.push(Op::RemoveTree(l.take()?));
    }
    for k in 0..count(100) {
        let a = l.take()?;
        if k % 2 == 0 {
            ops.push(Op::Rename(a.join("f4"), a.join("f4-renamed")));
        } else {
            let b = l.take()?;
            ops.push(Op::Rename(
                a.join("f5"),
                b.join(format!("from-elsewhere{k}")),
            ));
        }
    }
    for k in 0..count(50) {
        let a = l.take()?;
        if k % 2 == 0 {
            let mut to = a.clone().into_os_string();
            to.push("-renamed");
            ops.push(Op::Rename(a, to.into()));
        } else {
            let b = l.take()?;
            let top = b.parent().context("a leaf has a parent")?;
            ops.push(Op::Rename(a, top.join(format!("moved-in-r{round}-{k}"))));
        }
    }
    for k in 0..count(100) {
        let mode = if k % 2 == 0 { 0o600 } else { 0o755 };
        ops.push(Op::Chmod(l.take()?.join("f6"), mode));
    }
    for _ in 0..count(50) {
        ops.push(Op::Retarget(l.take()?.join("link"), "f7".into()));
    }
    for k in 0..count(100) {
        let a = l.take()?;
        if k % 2 == 0 {
            ops.push(Op::HardLink(a.join("f8"), a.join("f8-link")));
        } else {
            let b = l.take()?;
            ops.push(Op::HardLink(
                a.join("f8"),
                b.join(format!("link-from-elsewhere{k}")),
            ));
        }
    }
    for k in 0..count(90) {
        let n = match k % 3 {
            0 => format!("new\nline{k}").into_bytes(),
            1 => [b"bad-\xff-".as_slice(), k.to_string().as_bytes()].concat(),
            _ => format!("-dash{k}").into_bytes(),
        };
        ops.push(Op::Create(l.take()?.join(name(n)), 500));
    }
    for k in 0..count(10) {
        let a = l.take()?;
        let n = [b"-renamed\n\xfe".as_slice(), k.to_string().as_bytes()].concat();
        ops.push(Op::Rename(a.join("f9"), a.join(name(n))));
    }
    ops.truncate(n);
    // A seeded shuffle (Fisher–Yates).
    for i in (1..ops.len()).rev() {
        let j = rng.range(0, i as u64 + 1) as usize;
        ops.swap(i, j);
    }
    Ok(ops)
}

/// Applies `ops` to the tree at `src`.
pub fn apply(src: &Path, ops: &[Op], rng: &mut Rng) -> Result<()> {
    for op in ops {
        apply_one(src, op, rng).with_context(|| format!("applying {op:?}"))?;
    }
    Ok(())
}

fn apply_one(src: &Path, op: &Op, rng: &mut Rng) -> Result<()> {
    let p = |r: &PathBuf| src.join(r);
    match op {
        Op::Create(f, len) => rewrite(&p(f), &rng.bytes(*len))?,
        Op::Append(f, len) => append(&p(f), &rng.bytes(*len))?,
        Op::SameSize(f) => {
            // The tree's files are 0 to 199 bytes: take the first non-empty
            // one of the leaf (every change has its leaf to itself).
            let dir = f.parent().context("a file has a parent")?;
            let f = &std::iter::once(f.clone())
                .chain((0..10).map(|i| dir.join(format!("f{i}"))))
                .find(|c| fs::metadata(p(c)).is_ok_and(|m| m.len() > 0))
                .context("a leaf of empty files")?;
            let m = fs::metadata(p(f))?;
            let old = fs::read(p(f))?;
            let mut new = rng.bytes(old.len());
            if new == old {
                new[0] ^= 1;
            }
            rewrite(&p(f), &new)?;
            let file = fs::OpenOptions::new().write(true).open(p(f))?;
            file.set_times(FileTimes::new().set_modified(m.modified()?))?;
        }
        Op::RemoveFile(f) => fs::remove_file(p(f))?,
        Op::RemoveTree(d) => fs::remove_dir_all(p(d))?,
        Op::Rename(a, b) => fs::rename(p(a), p(b))?,
        Op::Chmod(f, mode) => fs::set_permissions(p(f), fs::Permissions::from_mode(*mode))?,
        Op::Retarget(l, target) => {
            fs::remove_file(p(l))?;
            symlink(target, p(l))?;
        }
        Op::HardLink(a, b) => fs::hard_link(p(a), p(b))?,
    }
    Ok(())
}
