//! The restart scan: what changed in the source while nobody watched, from
//! the inodes' change times, found by the same walk that adds the watches.
//!
//! Every change to an inode moves its ctime to "now" (a write, a chmod or
//! chown, a rename of it, a new hard link to it, `touch -d`), and every
//! change to a directory's entries moves the directory's ctime (an entry
//! created, deleted or renamed in or out). So after the watermark T, with
//! `since` = T minus [`SLACK_MS`]:
//!
//! - a file, symlink or other non-directory whose ctime is at or after
//!   `since` changed: a `File` entry;
//! - a directory whose ctime is at or after `since` had its entries or its
//!   attributes changed: a `Listing` (its own attributes and its direct
//!   children, deleting those gone);
//! - unless its parent changed too: a rename changes the ctime of the
//!   moved inode and of both parents, and a new entry its parent's, so a
//!   changed directory in a changed parent may be new or moved in, and is a
//!   `Tree`, which covers everything below it.
//!
//! A directory on another file system is checked against the list of file
//! systems whose ctime can be trusted ([`ctime_trust`]); one that cannot be
//! is synced whole. Nothing reads file contents: one `lstat` per entry.

use std::collections::HashMap;
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::changeset::{Entry, Kind};

/// How far before the watermark the scan looks. The kernel stamps ctime
/// from its coarse clock, which is updated once per tick (1 to 10 ms) and
/// so lags the clock syncd reads for the watermark by up to one tick; and
/// a change whose system call was in flight while the watermark was read
/// may carry a ctime just before it without an event in that window. A
/// second covers both with a wide margin (file systems with coarser
/// times, such as FAT's 2 s, are not trusted at all). Looking too far back
/// only lists a few unchanged paths again.
pub const SLACK_MS: u64 = 1_000;

/// What the walk knows of a directory while it descends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DirMark {
    /// Its ctime is at or after `since`.
    pub changed: bool,
    /// It is at or below a `Tree` entry: nothing below needs listing.
    pub covered: bool,
    /// Its device, to notice mount points.
    pub dev: u64,
}

/// What the scan counted, for the log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScanStats {
    pub dirs: u64,
    pub others: u64,
}

/// The scan's state through one walk.
#[derive(Debug)]
pub struct Scanner {
    /// `since` in nanoseconds since the epoch.
    since_ns: i128,
    found: Vec<Entry>,
    stats: ScanStats,
    /// Whether each device seen so far can be trusted.
    trusted: HashMap<u64, bool>,
}

impl Scanner {
    /// A scan for changes made at or after `since_ms` (Unix ms; the
    /// caller subtracts [`SLACK_MS`] from the watermark).
    pub fn new(since_ms: u64) -> Scanner {
        Scanner {
            since_ns: since_ms as i128 * 1_000_000,
            found: Vec::new(),
            stats: ScanStats::default(),
            trusted: HashMap::new(),
        }
    }

    fn changed(&self, m: &Metadata) -> bool {
        let ctime = m.ctime() as i128 * 1_000_000_000 + m.ctime_nsec() as i128;
        ctime >= self.since_ns
    }

    /// The root of the walk (its own metadata): a changed root is listed
    /// (it cannot have moved in).
    pub fn root(&mut self, m: &Metadata) -> DirMark {
        self.stats.dirs += 1;
        self.trusted.insert(m.dev(), true);
        let changed = self.changed(m);
        if changed {
            self.found.push(Entry::new(Kind::Listing, Vec::new()));
        }
        DirMark {
            changed,
            covered: false,
            dev: m.dev(),
        }
    }

    /// One entry at root-relative `rel` (absolute `abs`) in a directory
    /// marked `parent`, with its `lstat`. Returns the mark to descend with
    /// when it is a directory.
    pub fn entry(&mut self, parent: DirMark, rel: &[u8], abs: &Path, m: &Metadata) -> DirMark {
        let is_dir = m.is_dir();
        if is_dir {
            self.stats.dirs += 1;
        } else {
            self.stats.others += 1;
        }
        let mut mark = DirMark {
            changed: self.changed(m),
            covered: parent.covered,
            dev: m.dev(),
        };
        if parent.covered {
            // A changed file below a tree still counts: the tree's run
            // compares by size and mtime only (see `deliver::plan`).
            if !is_dir && mark.changed {
                self.found.push(Entry::new(Kind::File, rel));
            }
            return mark;
        }
        if is_dir && m.dev() != parent.dev && !self.trust(m.dev(), abs) {
            self.found.push(Entry::new(Kind::Tree, rel));
            mark.covered = true;
            return mark;
        }
        match (is_dir, mark.changed) {
            (_, false) => {}
            (false, true) => self.found.push(Entry::new(Kind::File, rel)),
            (true, true) if parent.changed => {
                self.found.push(Entry::new(Kind::Tree, rel));
                mark.covered = true;
            }
            (true, true) => self.found.push(Entry::new(Kind::Listing, rel)),
        }
        mark
    }

    /// Whether the file system of device `dev` (mounted at or above
    /// `abs`) keeps a ctime the scan can trust; logged once per device.
    fn trust(&mut self, dev: u64, abs: &Path) -> bool {
        if let Some(&t) = self.trusted.get(&dev) {
            return t;
        }
        let t = match ctime_trust(abs) {
            Ok(()) => true,
            Err(why) => {
                log::warn!("{}: {why}; syncing it whole", abs.display());
                false
            }
        };
        self.trusted.insert(dev, t);
        t
    }

    /// What the scan found, and its counts.
    pub fn finish(self) -> (Vec<Entry>, ScanStats) {
        (self.found, self.stats)
    }
}

/// File systems whose ctime is kept by the local kernel on every change,
/// from its own clock: the scan relies on them. By `statfs` magic number.
const TRUSTED: &[(i64, &str)] = &[
    (0xEF53, "ext2/ext3/ext4"),
    (0x5846_5342, "xfs"),
    (0x9123_683E, "btrfs"),
    (0x0102_1994, "tmpfs"),
    (0xF2F5_2010, "f2fs"),
    (0x2FC1_2FC1, "zfs"),
    (0xCA45_1A4E, "bcachefs"),
    (0x3153_464A, "jfs"),
    (0x5265_4973, "reiserfs"),
];

/// File systems known not to keep such a ctime, with why.
const UNTRUSTED: &[(i64, &str, &str)] = &[
    (
        0x6969,
        "nfs",
        "its ctime comes from the server's clock and attribute cache",
    ),
    (
        0xFF53_4D42,
        "cifs",
        "its ctime comes from the server, and may not change on a rename",
    ),
    (
        0xFE53_4D42,
        "smb2",
        "its ctime comes from the server, and may not change on a rename",
    ),
    (
        0x6573_5546,
        "fuse",
        "a FUSE file system keeps whatever ctime its daemon reports",
    ),
    (0x0102_1997, "9p", "its ctime comes from the host"),
    (
        0x00C3_6400,
        "ceph",
        "its ctime comes from the cluster's clocks",
    ),
    (0x4D44, "vfat", "FAT keeps no change time"),
    (0x2011_BAB0, "exfat", "exFAT keeps no change time"),
    (0x5346_544E, "ntfs", "NTFS's change time is not POSIX ctime"),
    (
        0x794C_7630,
        "overlay",
        "overlayfs reports a lower layer's ctime, which changes behind it",
    ),
];

/// Whether the file system holding `p` keeps a ctime the restart scan can
/// trust: `Err` says which file system and why not.
pub fn ctime_trust(p: &Path) -> Result<(), String> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(p.as_os_str().as_bytes()).map_err(|e| e.to_string())?;
    // SAFETY: statfs writes into the zeroed struct we own; `c` is a valid
    // NUL-terminated path.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return Err(format!(
            "cannot tell its file system ({})",
            std::io::Error::last_os_error()
        ));
    }
    let magic = st.f_type as i64;
    if TRUSTED.iter().any(|(m, _)| *m == magic) {
        return Ok(());
    }
    match UNTRUSTED.iter().find(|(m, _, _)| *m == magic) {
        Some((_, name, why)) => Err(format!("it is on {name}, and {why}")),
        None => Err(format!(
            "it is on a file system (statfs type {magic:#x}) whose ctime syncd does not know \
             to be kept"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn meta(p: &Path) -> Metadata {
        fs::symlink_metadata(p).unwrap()
    }

    #[test]
    fn changed_files_dirs_and_new_trees_are_told_apart() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        fs::create_dir_all(r.join("old/keep")).unwrap();
        fs::write(r.join("old/keep/f"), b"1").unwrap();
        // Everything above is older than `since`.
        std::thread::sleep(std::time::Duration::from_millis(30));
        let since = crate::store::now_ms();
        std::thread::sleep(std::time::Duration::from_millis(30));
        fs::write(r.join("old/keep/f"), b"2").unwrap();
        fs::create_dir(r.join("new")).unwrap();
        fs::write(r.join("new/x"), b"1").unwrap();
        let mut s = Scanner::new(since);
        let root = s.root(&meta(r));
        assert!(root.changed, "a new entry changed the root");
        let old = s.entry(root, b"old", &r.join("old"), &meta(&r.join("old")));
        assert!(!old.changed);
        let keep = s.entry(
            old,
            b"old/keep",
            &r.join("old/keep"),
            &meta(&r.join("old/keep")),
        );
        assert!(!keep.changed, "rewriting a file leaves its directory alone");
        s.entry(
            keep,
            b"old/keep/f",
            &r.join("old/keep/f"),
            &meta(&r.join("old/keep/f")),
        );
        let new = s.entry(root, b"new", &r.join("new"), &meta(&r.join("new")));
        assert!(new.covered, "a changed dir in a changed parent is a tree");
        s.entry(new, b"new/x", &r.join("new/x"), &meta(&r.join("new/x")));
        let (found, stats) = s.finish();
        assert_eq!(
            found,
            vec![
                Entry::new(Kind::Listing, Vec::new()),
                Entry::new(Kind::File, b"old/keep/f".to_vec()),
                Entry::new(Kind::Tree, b"new".to_vec()),
                Entry::new(Kind::File, b"new/x".to_vec()),
            ]
        );
        assert_eq!(stats, ScanStats { dirs: 4, others: 2 });
    }

    #[test]
    fn local_file_systems_are_trusted_and_the_reason_names_the_others() {
        assert_eq!(ctime_trust(&std::env::temp_dir()), Ok(()));
        assert!(ctime_trust(Path::new("/proc"))
            .unwrap_err()
            .contains("0x9fa0"));
    }
}
