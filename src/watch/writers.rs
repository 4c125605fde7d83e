//! Which files some process has open for writing, from `/proc`.
//!
//! inotify reports a write (`IN_MODIFY`) but not who made it, and syncd
//! does not ask the kernel for opens (every read in the tree would be an
//! event). A file created under the watch was opened by its creator and is
//! held until closed; a file written by a writer syncd did not see open it
//! (one from before the watch, or a `truncate(2)` by path, which opens
//! nothing) is held only if a process has it open for writing *now*: this
//! module looks, once per closing window and only for such files, through
//! every process's open files (`/proc/PID/fd`, the file's device and inode,
//! and `/proc/PID/fdinfo` for the open flags). A daemon that does not run
//! as root sees only its own user's processes; a file open by another user
//! is then shipped as it is, and again when its writer closes it.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Which of `paths` (relative to `root`) some process has open for
/// writing.
pub fn open_for_writing(root: &Path, paths: &[Vec<u8>]) -> HashSet<Vec<u8>> {
    let mut wanted: HashMap<(u64, u64), &Vec<u8>> = HashMap::new();
    for p in paths {
        if let Ok(m) = std::fs::symlink_metadata(super::abs(root, p)) {
            if m.is_file() {
                wanted.insert((m.dev(), m.ino()), p);
            }
        }
    }
    let mut found = HashSet::new();
    if wanted.is_empty() {
        return found;
    }
    let me = std::process::id().to_string();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return found;
    };
    for pid in procs.flatten() {
        let name = pid.file_name();
        let Some(name) = name.to_str() else { continue };
        if !name.bytes().all(|b| b.is_ascii_digit()) || name == me {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(pid.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            // stat follows the magic link to the open file itself.
            let Ok(m) = std::fs::metadata(fd.path()) else {
                continue;
            };
            let Some(p) = wanted.get(&(m.dev(), m.ino())) else {
                continue;
            };
            let info = pid.path().join("fdinfo").join(fd.file_name());
            if writes(&std::fs::read_to_string(info).unwrap_or_default()) {
                found.insert((*p).clone());
            }
        }
        if found.len() == wanted.len() {
            break;
        }
    }
    found
}

/// Whether an fdinfo text's `flags:` (octal) open the file for writing.
fn writes(fdinfo: &str) -> bool {
    fdinfo
        .lines()
        .find_map(|l| l.strip_prefix("flags:"))
        .and_then(|f| u32::from_str_radix(f.trim(), 8).ok())
        .is_some_and(|f| f & (libc::O_WRONLY | libc::O_RDWR) as u32 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_open_for_writing_is_found_and_one_open_for_reading_is_not() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("w"), b"x").unwrap();
        std::fs::write(t.path().join("r"), b"x").unwrap();
        std::fs::write(t.path().join("closed"), b"x").unwrap();
        // Another process holds them: this one's own fds are skipped.
        let mut child = std::process::Command::new("sh")
            .arg("-c")
            .arg("exec 3>>w 4<r; sleep 30")
            .current_dir(t.path())
            .spawn()
            .unwrap();
        let paths = [
            b"w".to_vec(),
            b"r".to_vec(),
            b"closed".to_vec(),
            b"none".to_vec(),
        ];
        let mut found = HashSet::new();
        for _ in 0..100 {
            found = open_for_writing(t.path(), &paths);
            if !found.is_empty() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(found, [b"w".to_vec()].into_iter().collect());
        assert!(writes("pos:\t0\nflags:\t0100001\n"));
        assert!(writes("flags:\t02\n"));
        assert!(!writes("flags:\t0100000\n"));
    }
}
