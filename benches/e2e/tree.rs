//! Deterministic trees: the pre-change state of a workload, written
//! identically into SOURCE and DEST, and the small file operations the
//! change phase uses.
//!
//! Every file of the pre-change state gets the same bytes, mode and mtime
//! (a fixed instant in 2020) in both roots, so the daemons' start-up syncs
//! find nothing to copy and the catch-up rsync's quick check behaves as it
//! would on a real, older mirror. Contents come from a seeded splitmix64
//! generator: the same workload always builds the same tree.

use std::fs::{self, File, FileTimes, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{symlink, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch, as the wrapper's `$EPOCHREALTIME`: every
/// timestamp of the benchmark is on this one clock.
pub fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Sleeps until the wall-clock instant `t` (no-op if it passed).
pub fn sleep_until(t: f64) {
    let left = t - now();
    if left > 0.0 {
        std::thread::sleep(Duration::from_secs_f64(left));
    }
}

/// splitmix64: tiny, fast, and good enough for file contents and choices.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `lo..hi` (`hi > lo`).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo)
    }

    /// `n` pseudo-random bytes.
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(n + 8);
        while v.len() < n {
            v.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        v.truncate(n);
        v
    }
}

/// The mtime of every pre-change file: 2020-09-13, long before any change.
const OLD: Duration = Duration::from_secs(1_600_000_000);

/// Writes the same pre-change tree into several roots (SOURCE and DEST).
pub struct Twin {
    roots: Vec<PathBuf>,
    pub rng: Rng,
    /// Regular files written so far (for sizing timeouts).
    pub files: u64,
}

impl Twin {
    /// Creates the roots (they must not exist yet).
    pub fn new(roots: &[&Path], seed: u64) -> io::Result<Twin> {
        for r in roots {
            fs::create_dir_all(r)?;
        }
        Ok(Twin {
            roots: roots.iter().map(|r| r.to_path_buf()).collect(),
            rng: Rng::new(seed),
            files: 0,
        })
    }

    pub fn dir(&mut self, rel: &str) -> io::Result<()> {
        for r in &self.roots {
            fs::create_dir(r.join(rel))?;
        }
        Ok(())
    }

    /// A file of `size` random bytes with `mode`, mtime [`OLD`].
    pub fn file(&mut self, rel: &str, size: usize, mode: u32) -> io::Result<()> {
        let data = self.rng.bytes(size);
        let times = FileTimes::new().set_modified(UNIX_EPOCH + OLD);
        for r in &self.roots {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode)
                .open(r.join(rel))?;
            f.write_all(&data)?;
            f.set_times(times)?;
            // The umask may have narrowed the mode.
            f.set_permissions(fs::Permissions::from_mode(mode))?;
        }
        self.files += 1;
        Ok(())
    }

    pub fn symlink(&mut self, rel: &str, target: &str) -> io::Result<()> {
        for r in &self.roots {
            symlink(target, r.join(rel))?;
        }
        Ok(())
    }
}

/// Rewrites (or creates) `path` with `data`, in place: open, truncate,
/// write, close, as an editor without a temp file or a program's output.
pub fn rewrite(path: &Path, data: &[u8]) -> io::Result<()> {
    let mut f = File::create(path)?;
    f.write_all(data)
}

/// Appends `data` to `path`.
pub fn append(path: &Path, data: &[u8]) -> io::Result<()> {
    let mut f = OpenOptions::new().append(true).open(path)?;
    f.write_all(data)
}

/// `chattr -R {+i|-i} root`: makes a whole tree immutable (nothing inside
/// can be created, written, renamed or removed, even by root) or writable
/// again. Needs CAP_LINUX_IMMUTABLE and a filesystem with the flag (ext4,
/// xfs, btrfs, tmpfs since 6.0).
pub fn immutable(root: &Path, on: bool) -> io::Result<()> {
    let flag = if on { "+i" } else { "-i" };
    let st = Command::new("chattr")
        .arg("-R")
        .arg(flag)
        .arg(root)
        .status()?;
    if st.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "chattr -R {flag} {} failed ({st}); the backlog workload needs root and ext4/xfs/btrfs/tmpfs",
            root.display()
        )))
    }
}

/// Removes a benchmark directory, first lifting any immutable flag a
/// failed backlog run left behind.
pub fn remove_all(dir: &Path) -> io::Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    if fs::remove_dir_all(dir).is_ok() {
        return Ok(());
    }
    let _ = Command::new("chattr")
        .arg("-R")
        .arg("-i")
        .arg(dir)
        .stderr(std::process::Stdio::null())
        .status();
    fs::remove_dir_all(dir)
}
