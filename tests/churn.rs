//! Churn: random operations on a live tree, with the daemon killed
//! (SIGKILL) and restarted several times in the middle, then an exact
//! mirror: names as bytes, types, contents, modes and symlink targets
//! (issue 16). The operations: creates, appends and same-size rewrites in
//! the same second; safe-save replaces (a temporary file renamed over the
//! target); renames of files and directories over each other, and swaps;
//! type changes between file, directory and symlink; chmod; truncate by
//! path; names with a newline, invalid UTF-8 or a leading `-`.
//!
//! CI runs it for 20 s; `SYNCD_CHURN_SECS=1800` soaks for 30 minutes, and
//! `SYNCD_TEST_SEED` replays a run.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::util::*;

const T: Duration = Duration::from_secs(120);

const NAMES: &[&[u8]] = &[b"a", b"b", b"c", b"n\nl", b"\xff\xfe", b"-rf", b"s p"];
const DIRS: &[&[u8]] = &[b"", b"d1", b"d2", b"d1/e", b"-d", b"\xfd"];

fn pick_path(rng: &mut Rng) -> Vec<u8> {
    let d = rng.pick(DIRS);
    let n = rng.pick(NAMES);
    syncd::changeset::join(d, n)
}

fn bytes(rng: &mut Rng, n: usize) -> Vec<u8> {
    (0..n).map(|_| rng.below(256) as u8).collect()
}

fn truncate(p: &Path, len: i64) {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path; failure is fine (churn).
    unsafe { libc::truncate(c.as_ptr(), len) };
}

/// One random operation; failures (a missing path, a type in the way) are
/// part of the churn and ignored.
fn random_op(dir: &Dir, rng: &mut Rng, n: &mut u64) {
    *n += 1;
    let p = dir.s(pick_path(rng));
    let q = dir.s(pick_path(rng));
    let _ = fs::create_dir_all(p.parent().unwrap());
    match rng.below(14) {
        0 | 1 => {
            let len = rng.below(3000) as usize;
            let data = bytes(rng, len);
            let _ = fs::write(&p, data);
        }
        2 => {
            if let Ok(mut f) = fs::OpenOptions::new().append(true).open(&p) {
                let _ = std::io::Write::write_all(&mut f, &bytes(rng, 100));
            }
        }
        3 => {
            // Two same-size rewrites within the same second.
            let len = fs::metadata(&p).map(|m| m.len() as usize).unwrap_or(10);
            let a = bytes(rng, len);
            let b = bytes(rng, len);
            let _ = fs::write(&p, a);
            let _ = fs::write(&p, b);
        }
        4 => {
            // Safe save: a temporary file renamed over the target.
            let tmp = p.with_extension("tmp~");
            let len = rng.below(2000) as usize;
            if fs::write(&tmp, bytes(rng, len)).is_ok() {
                let _ = fs::rename(&tmp, &p);
            }
        }
        5 | 6 => {
            let _ = fs::create_dir_all(q.parent().unwrap());
            let _ = fs::rename(&p, &q);
        }
        7 => {
            // A swap through a temporary name.
            let t = dir.s(format!("swap{n}"));
            if fs::rename(&p, &t).is_ok() {
                let _ = fs::rename(&q, &p);
                let _ = fs::rename(&t, &q);
                let _ = fs::remove_file(&t);
                let _ = fs::remove_dir_all(&t);
            }
        }
        8 => {
            // Type changes: file -> dir -> symlink -> file.
            match fs::symlink_metadata(&p) {
                Ok(m) if m.is_file() => {
                    let _ = fs::remove_file(&p);
                    let _ = fs::create_dir(&p);
                }
                Ok(m) if m.is_dir() => {
                    let _ = fs::remove_dir_all(&p);
                    let _ = symlink(rng.pick(&["a", "../x", "d1/e"]), &p);
                }
                Ok(_) => {
                    let _ = fs::remove_file(&p);
                    let _ = fs::write(&p, b"was a link");
                }
                Err(_) => {
                    let _ = fs::create_dir(&p);
                }
            }
        }
        9 => {
            let mode = *rng.pick(&[0o600, 0o644, 0o755, 0o700, 0o640]);
            let _ = fs::set_permissions(&p, fs::Permissions::from_mode(mode));
        }
        10 => truncate(&p, rng.below(50) as i64),
        11 => {
            let _ = fs::remove_file(&p);
            let _ = fs::remove_dir_all(&p);
        }
        12 => {
            let _ = fs::create_dir_all(p.join("inside"));
            let _ = fs::write(p.join("inside/f"), bytes(rng, 64));
        }
        _ => {
            let _ = fs::remove_file(&p);
            let _ = symlink(rng.pick(&["a", "/abs", "b c"]), &p);
        }
    }
}

#[test]
fn churn_with_kill_9_restarts_ends_in_an_exact_mirror() {
    let secs: u64 = std::env::var("SYNCD_CHURN_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let mut rng = Rng::from_env("churn");
    let dir = Dir::new();
    let mut d = dir.start("0.3", &[]);
    d.wait_log("watching", T);
    let started = Instant::now();
    let mut next_kill = Duration::from_secs(secs / 4 + 1);
    let (mut ops, mut kills) = (0u64, 0u32);
    while started.elapsed() < Duration::from_secs(secs) {
        random_op(&dir, &mut rng, &mut ops);
        if rng.below(20) == 0 {
            std::thread::sleep(Duration::from_millis(rng.below(50)));
        }
        if started.elapsed() >= next_kill {
            d.kill9();
            kills += 1;
            // Changes while nobody watches.
            for _ in 0..rng.below(50) {
                random_op(&dir, &mut rng, &mut ops);
            }
            d = dir.start("0.3", &[]);
            d.wait_log("watching", T);
            next_kill += Duration::from_secs(secs / 4 + rng.below(3));
        }
    }
    eprintln!("churn: {ops} operations and {kills} kill -9 in {secs}s");
    assert!(kills >= 2, "the run killed the daemon {kills} times");
    // A transfer cut by a kill leaves its part in rsync's partial
    // directory on DEST, where it stays until that file is sent again
    // (README, "Large files on a link that drops"): not part of the mirror.
    let partial = |p: &[u8]| p.split(|&b| b == b'/').any(|c| c == b".syncd-partial");
    wait_mirror_except(&dir.src(), &dir.dst(), partial, T);
    wait_drained(&dir.state(), T);
    wait_mirror_except(&dir.src(), &dir.dst(), partial, T);
    assert!(d.stop().success());
}
