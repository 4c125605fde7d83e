//! The inotify watch budget, weighed before the start-up walk: the
//! directories SOURCE needs against the watches the kernel still allows
//! this user, so that a tree too large for the limit fails at once, with
//! the sysctl to raise, instead of after a walk of many minutes.
//!
//! The limit is `fs.inotify.max_user_watches`, or, in a user namespace,
//! that namespace's `user.max_inotify_watches` when it is lower; it counts
//! every watch of every process of the user, so the watches the user's
//! other processes hold (the `inotify wd:` lines of their inotify
//! descriptors in `/proc/*/fdinfo`; those that cannot be read are
//! skipped) are subtracted. The need is the last run's watch count when the
//! store has one and it fits; else, when the inodes in use on SOURCE's file
//! systems (its own and those mounted below it, from `statfs`) fit, no
//! more directories than that can exist; else a count of the directories
//! (one `readdir` per directory, types from the directory entries, no
//! `lstat`), to the end (up to [`CLEARLY_LARGE`]), so that a refusal
//! names a limit that fits. With a budget over [`CLEARLY_LARGE`] nothing is
//! counted. Neither are other processes' watches for a tree of at most
//! [`SMALL_TREE`] directories that needs at most half the limit: their
//! fdinfo is about 100 bytes of text per watch, which the kernel writes
//! out on every read (0.4 s for another daemon's 100,000 watches), while
//! such a walk takes a fraction of a second, and one that reaches the
//! limit still stops with the sysctl to raise.

use std::io::BufRead;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::{rel, Exclude};

/// A budget above this many watches is taken to be enough without
/// counting: a tree that needs more would take minutes to walk anyway.
pub const CLEARLY_LARGE: u64 = 8_000_000;

/// A tree this small is walked without weighing what other processes hold
/// (see the module's doc), when it needs at most half the limit.
pub const SMALL_TREE: u64 = 10_000;

/// Where the need came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// The number of watches the last run's start-up walk added.
    LastRun(u64),
    /// At most this many: the inodes in use on SOURCE's file systems.
    Bounded(u64),
    /// Directories counted now (at least this many when it reached
    /// [`CLEARLY_LARGE`], where the count stops).
    Counted(u64),
}

impl Need {
    pub fn dirs(self) -> u64 {
        match self {
            Need::LastRun(n) | Need::Bounded(n) | Need::Counted(n) => n,
        }
    }
}

/// What the check found, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Budget {
    /// The limit that binds, and the sysctl that sets it.
    pub limit: u64,
    pub sysctl: &'static str,
    /// Watches held by this user's other processes (`None`: not counted,
    /// the tree being small).
    pub held: Option<u64>,
    /// `None` when the budget is clearly large and nothing was counted.
    pub need: Option<Need>,
}

impl Budget {
    pub fn left(&self) -> u64 {
        self.limit.saturating_sub(self.held.unwrap_or(0))
    }

    /// The figures, for the log.
    pub fn describe(&self) -> String {
        let need = match self.need {
            Some(Need::LastRun(n)) => format!("{n} needed (the last run's count)"),
            Some(Need::Bounded(n)) => format!("at most {n} needed (inodes in use)"),
            Some(Need::Counted(n)) => format!("{n} needed (counted)"),
            None => "not counted: the limit is clearly large".into(),
        };
        let held = match self.held {
            Some(n) => format!("{n} held by this user's other processes"),
            None => "other processes' watches not counted (a small tree)".into(),
        };
        format!("limit {} ({}), {held}, {need}", self.limit, self.sysctl)
    }
}

/// Checks the watches `root` needs against what is left; `Err` is the
/// message to stop with. `last_run` is the store's count from the last
/// start-up walk. A limit that cannot be read is not checked.
pub fn check(root: &Path, exclude: &Exclude, last_run: Option<u64>) -> Result<Budget, String> {
    let Some((limit, sysctl)) = limit() else {
        return Ok(Budget {
            limit: u64::MAX,
            sysctl: "fs.inotify.max_user_watches",
            held: None,
            need: None,
        });
    };
    let mut b = Budget {
        limit,
        sysctl,
        held: None,
        need: None,
    };
    if limit > CLEARLY_LARGE {
        return Ok(b);
    }
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    let small = last_run.is_some_and(|n| n <= SMALL_TREE.min(limit / 2));
    if !small {
        b.held = Some(held_by_others(uid));
    }
    // The last run's count is trusted when it fits; a tree may have shrunk
    // since, so one that does not is counted again before refusing.
    b.need = Some(match (last_run, inodes_in_use(root)) {
        (Some(n), _) if n <= b.left() => Need::LastRun(n),
        (_, Some(n)) if n <= b.left() => Need::Bounded(n),
        _ => Need::Counted(count_dirs(root, exclude, CLEARLY_LARGE)),
    });
    let need = b.need.map_or(0, Need::dirs);
    if need <= b.left() {
        return Ok(b);
    }
    Err(refusal(&b, need, uid))
}

/// The message of a refused start: the figures, the sysctl with a value
/// that leaves room to grow, and how to keep it across reboots.
fn refusal(b: &Budget, need: u64, uid: u32) -> String {
    // A quarter more than needed now, and at least 10,000 more, rounded up
    // to a multiple of 1,024.
    let held = b.held.unwrap_or(0);
    let want = (need + held).saturating_add(((need + held) / 4).max(10_000));
    let want = want.div_ceil(1024) * 1024;
    let counted = match b.need {
        Some(Need::Counted(n)) if n >= CLEARLY_LARGE => {
            format!("at least {need} directories to watch (counted up to {CLEARLY_LARGE})")
        }
        Some(Need::Counted(_)) => format!("{need} directories to watch (counted)"),
        _ => format!("{need} directories to watch (as many as the last run watched)"),
    };
    let ns = if b.sysctl == "user.max_inotify_watches" {
        format!(
            " (in this user namespace the binding limit is user.max_inotify_watches = {}: \
             raise it too, `sysctl user.max_inotify_watches={want}`, or fs.inotify.max_user_watches \
             on the host)",
            b.limit
        )
    } else {
        String::new()
    };
    format!(
        "SOURCE needs {counted}, but only {} inotify watches are left for uid {uid}: the limit is \
         {} and other processes of uid {uid} hold {}. Raise it with `sysctl \
         fs.inotify.max_user_watches={want}`, and keep it across reboots with `echo \
         fs.inotify.max_user_watches={want} > /etc/sysctl.d/90-syncd.conf`{ns}; syncd did not \
         start watching",
        b.left(),
        b.limit,
        held
    )
}

/// The inodes in use on the file system of `root` and on every file system
/// mounted below it: no more directories can be below `root`. `None` when
/// one of them does not count its inodes (btrfs reports none).
pub fn inodes_in_use(root: &Path) -> Option<u64> {
    let mut mounts = vec![root.to_path_buf()];
    let info = std::fs::read("/proc/self/mountinfo").ok()?;
    for line in info.split(|&b| b == b'\n') {
        let Some(point) = line.split(|&b| b == b' ').nth(4) else {
            continue;
        };
        let point = std::path::PathBuf::from(std::ffi::OsStr::from_bytes(&unescape(point)));
        if point != root && point.starts_with(root) {
            mounts.push(point);
        }
    }
    let mut used: u64 = 0;
    for m in mounts {
        let c = std::ffi::CString::new(m.as_os_str().as_bytes()).ok()?;
        // SAFETY: statvfs writes into the zeroed struct we own; `c` is a
        // valid NUL-terminated path.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 || st.f_files == 0 {
            return None;
        }
        used = used.saturating_add((st.f_files as u64).saturating_sub(st.f_ffree as u64));
    }
    Some(used)
}

/// A mount point of `/proc/self/mountinfo`, whose space, tab, newline and
/// backslash are written as octal escapes (`\040`).
fn unescape(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        let octal = s
            .get(i + 1..i + 4)
            .filter(|o| o.iter().all(|b| (b'0'..=b'7').contains(b)));
        match (s[i], octal) {
            (b'\\', Some(o)) => {
                out.push(o.iter().fold(0u8, |v, d| v.wrapping_mul(8) + (d - b'0')));
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

/// The watch limit that binds this process, and the sysctl that sets it.
pub fn limit() -> Option<(u64, &'static str)> {
    let read = |p: &str| -> Option<u64> { std::fs::read_to_string(p).ok()?.trim().parse().ok() };
    let host = read("/proc/sys/fs/inotify/max_user_watches");
    let ns = read("/proc/sys/user/max_inotify_watches");
    match (host, ns) {
        (Some(h), Some(n)) if n < h => Some((n, "user.max_inotify_watches")),
        (Some(h), _) => Some((h, "fs.inotify.max_user_watches")),
        (None, Some(n)) => Some((n, "user.max_inotify_watches")),
        (None, None) => None,
    }
}

/// The inotify watches that processes of effective uid `uid` other than
/// this one hold, from their `/proc/PID/fdinfo`; processes and descriptors
/// that cannot be read are skipped.
pub fn held_by_others(uid: u32) -> u64 {
    let me = std::process::id();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut held = 0;
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me || euid_of(pid) != Some(uid) {
            continue;
        }
        held += watches_of(pid);
    }
    held
}

/// The effective uid of a process, from `/proc/PID/status`.
fn euid_of(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// The watches of every inotify descriptor of a process (0 when its
/// descriptors cannot be read).
pub fn watches_of(pid: u32) -> u64 {
    inotify_fds(pid)
        .into_iter()
        .map(|fd| watches_of_fd(pid, fd))
        .sum()
}

/// The descriptors of a process that are inotify instances.
pub fn inotify_fds(pid: u32) -> Vec<u32> {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    fds.flatten()
        .filter(|fd| {
            std::fs::read_link(fd.path())
                .is_ok_and(|l| l.as_os_str().as_bytes() == b"anon_inode:inotify")
        })
        .filter_map(|fd| fd.file_name().to_str()?.parse().ok())
        .collect()
}

/// The `inotify wd:` lines of one descriptor's fdinfo, read as a stream
/// (a million watches are about 100 MB of text).
pub fn watches_of_fd(pid: u32, fd: u32) -> u64 {
    let Ok(f) = std::fs::File::open(format!("/proc/{pid}/fdinfo/{fd}")) else {
        return 0;
    };
    let mut r = std::io::BufReader::with_capacity(1 << 16, f);
    let mut line = Vec::with_capacity(256);
    let mut n = 0;
    loop {
        line.clear();
        match r.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return n,
            Ok(_) if line.starts_with(b"inotify wd:") => n += 1,
            Ok(_) => {}
        }
    }
}

/// Counts the directories below `root` (itself included) that are not
/// excluded, as the walk would watch them, stopping once `stop_at` is
/// reached. Types come from the directory entries (`d_type`); only file
/// systems that do not fill it in cost an `lstat`.
pub fn count_dirs(root: &Path, exclude: &Exclude, stop_at: u64) -> u64 {
    let mut n = 1;
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let path = e.path();
            if rel(root, &path).is_some_and(|r| exclude(&r, true)) {
                continue;
            }
            n += 1;
            if n >= stop_at {
                return n;
            }
            stack.push(path);
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn directories_are_counted_without_the_excluded_ones_and_the_count_stops_early() {
        let t = tempfile::tempdir().unwrap();
        for d in ["a/b/c", "a/d", "skip/x/y", "e"] {
            std::fs::create_dir_all(t.path().join(d)).unwrap();
        }
        std::fs::write(t.path().join("a/file"), b"x").unwrap();
        let ex: Exclude = Arc::new(|p: &[u8], _| p == b"skip" || p.starts_with(b"skip/"));
        assert_eq!(
            count_dirs(t.path(), &ex, u64::MAX),
            6,
            "root, a, a/b, a/b/c, a/d, e"
        );
        assert_eq!(count_dirs(t.path(), &ex, 3), 3);
    }

    #[test]
    fn other_processes_are_weighed_only_for_a_tree_that_is_not_small() {
        let t = tempfile::tempdir().unwrap();
        let ex: Exclude = Arc::new(|_: &[u8], _| false);
        let small = check(t.path(), &ex, Some(10)).unwrap();
        assert_eq!(small.held, None, "{}", small.describe());
        assert!(small.describe().contains("not counted (a small tree)"));
        // Where the limit is readable and not clearly large, a larger tree
        // (as the last run counted it) is weighed against the others.
        let Some((limit, _)) = limit() else { return };
        if limit > CLEARLY_LARGE || limit <= 2 * SMALL_TREE {
            return;
        }
        if let Ok(large) = check(t.path(), &ex, Some(SMALL_TREE + 1)) {
            assert!(large.held.is_some(), "{}", large.describe());
        }
    }

    #[test]
    fn mount_points_are_unescaped_and_a_tmpfs_counts_its_inodes() {
        assert_eq!(unescape(br"/a\040b\134c\0"), b"/a b\\c\\0");
        let t = tempfile::tempdir().unwrap();
        assert!(inodes_in_use(t.path()).is_some_and(|n| n > 0));
    }

    #[test]
    fn a_refusal_names_the_sysctl_a_value_with_room_and_where_to_keep_it() {
        let b = Budget {
            limit: 8192,
            sysctl: "fs.inotify.max_user_watches",
            held: Some(1000),
            need: Some(Need::Counted(100_000)),
        };
        let m = refusal(&b, 100_000, 1000);
        assert!(
            m.contains("needs 100000 directories to watch (counted)"),
            "{m}"
        );
        assert!(m.contains("only 7192 inotify watches are left"), "{m}");
        // (100,000 + 1,000) × 1.25, rounded up to 1,024.
        assert!(
            m.contains("`sysctl fs.inotify.max_user_watches=126976`"),
            "{m}"
        );
        assert!(m.contains("/etc/sysctl.d/90-syncd.conf"), "{m}");
        assert!(!m.contains("user namespace"), "{m}");
    }
}
