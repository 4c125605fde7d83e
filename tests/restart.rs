//! Restarts replay the backlog and rescan only what changed (issue 13):
//! every kind of change made while syncd was stopped cleanly, or killed in
//! the middle of a window, arrives without a full sync; the fallbacks to a
//! full sync say why; `syncd sync --full` and `--full-sync-every` repair a
//! destination changed by hand, which a restart does not; checkpoints
//! complete only after delivery, time out while a destination is down, and
//! survive a restart.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::util::*;

const T: Duration = Duration::from_secs(40);

/// An rsync wrapper that keeps, for every run, its arguments and the list
/// it was fed on stdin (`N.args`, `N.list` in `dir`).
struct ListingRsync {
    wrapper: PathBuf,
    dir: PathBuf,
}

/// One rsync run as the wrapper saw it.
struct Seen {
    args: String,
    entries: Vec<Vec<u8>>,
}

impl ListingRsync {
    fn new(root: &Path) -> ListingRsync {
        let dir = root.join("rsync-runs");
        fs::create_dir_all(&dir).unwrap();
        let wrapper = root.join("rsync-listing");
        let script = format!(
            "#!/bin/sh\n\
             n=$(date +%s%N)\n\
             printf '%s\\n' \"$*\" > '{d}'/$n.args\n\
             tee '{d}'/$n.list | rsync \"$@\"\n",
            d = dir.display()
        );
        fs::write(&wrapper, script).unwrap();
        fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o755)).unwrap();
        ListingRsync { wrapper, dir }
    }

    fn arg(&self) -> &str {
        self.wrapper.to_str().unwrap()
    }

    /// Forgets the runs seen so far.
    fn clear(&self) {
        for e in fs::read_dir(&self.dir).unwrap().flatten() {
            let _ = fs::remove_file(e.path());
        }
    }

    /// The runs that fed a list (syncs, not version checks), oldest first.
    fn runs(&self) -> Vec<Seen> {
        let mut names: Vec<PathBuf> = fs::read_dir(&self.dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension() == Some(OsStr::new("args")))
            .collect();
        names.sort();
        names
            .into_iter()
            .filter_map(|a| {
                let args = fs::read_to_string(&a).ok()?;
                if !args.contains("--files-from=-") {
                    return None;
                }
                let list = fs::read(a.with_extension("list")).unwrap_or_default();
                let entries = list
                    .split(|&b| b == 0)
                    .filter(|e| !e.is_empty())
                    .map(<[u8]>::to_vec)
                    .collect();
                Some(Seen { args, entries })
            })
            .collect()
    }

    /// Asserts that no run since the last clear was a full sync (the root
    /// listed to a recursive run), and returns how many paths were listed.
    fn assert_no_full_sync(&self) -> usize {
        let runs = self.runs();
        for r in &runs {
            let recursive = r.args.split(' ').any(|a| a == "-r");
            assert!(
                !(recursive && r.entries.iter().any(|e| e == b"." || e == b"./")),
                "a full sync ran: {} with {:?}",
                r.args,
                r.entries
                    .iter()
                    .map(|e| String::from_utf8_lossy(e).into_owned())
                    .collect::<Vec<_>>()
            );
        }
        runs.iter().map(|r| r.entries.len()).sum()
    }
}

/// A tree of 20 directories of 25 files, a symlink, hard links and tricky
/// names: enough that a full sync would list far more than the changes.
fn populate(dir: &Dir) {
    for d in 0..20 {
        for f in 0..25 {
            dir.write(format!("d{d}/f{f}"), format!("{d}/{f} original"));
        }
    }
    dir.write("deep/a/b/c/file", "deep");
    dir.write("tree/x/y", "gone later");
    dir.write(b"odd/n\nl", "newline");
    dir.write(b"odd/\xff\xfe", "invalid utf-8");
    dir.write("odd/-e x", "dash");
    dir.write("same", "0123456789");
    dir.write("linked", "hard");
    symlink("d0/f0", dir.s("link")).unwrap();
}

/// Every kind of change the scan must find, made while nobody watches.
fn change_everything(dir: &Dir) {
    dir.write("d1/new", "created while down");
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(dir.s("d2/f1"))
        .unwrap();
    std::io::Write::write_all(&mut f, b" appended").unwrap();
    drop(f);
    // A same-size rewrite with the old mtime put back (`touch -r`).
    fs::copy(dir.s("same"), dir.root.join("same.ref")).unwrap();
    fs::write(dir.s("same"), "9876543210").unwrap();
    let st = Command::new("touch")
        .arg("-r")
        .arg(dir.root.join("same.ref"))
        .arg(dir.s("same"))
        .status()
        .unwrap();
    assert!(st.success());
    fs::remove_file(dir.s("d3/f3")).unwrap();
    fs::remove_dir_all(dir.s("tree")).unwrap();
    fs::rename(dir.s("d4/f4"), dir.s("d4/renamed")).unwrap();
    fs::rename(dir.s("d5/f5"), dir.s("d6/moved-in")).unwrap();
    fs::rename(dir.s("d7"), dir.s("d7-renamed")).unwrap();
    fs::rename(dir.s("d8"), dir.s("deep/a/d8-moved")).unwrap();
    fs::set_permissions(dir.s("d9/f9"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::set_permissions(dir.s("d10"), fs::Permissions::from_mode(0o700)).unwrap();
    fs::remove_file(dir.s("link")).unwrap();
    symlink("d11/f11", dir.s("link")).unwrap();
    fs::hard_link(dir.s("linked"), dir.s("d12/also-linked")).unwrap();
    fs::write(dir.s(b"odd/n\nl"), "newline, changed").unwrap();
    fs::remove_file(dir.s(b"odd/\xff\xfe")).unwrap();
    dir.write(b"odd/\xff\xfd-new", "another invalid name");
    fs::rename(dir.s("odd/-e x"), dir.s("odd/-rf renamed")).unwrap();
    // `touch -d` on a file whose content is unchanged.
    let st = Command::new("touch")
        .args(["-d", "2001-02-03 04:05:06"])
        .arg(dir.s("d13/f13"))
        .status()
        .unwrap();
    assert!(st.success());
}

/// The hard links of `linked`: the mirror must keep them one inode.
fn assert_hard_links_kept(dir: &Dir) {
    assert_eq!(
        ino(&dir.dst().join("linked")),
        ino(&dir.dst().join("d12/also-linked")),
        "the new hard link is a hard link on DEST"
    );
}

fn restart_after(kill: bool) {
    let dir = Dir::new();
    populate(&dir);
    let rsync = ListingRsync::new(&dir.root);
    let d = dir.start_synced("0.2", &["--rsync", rsync.arg()]);
    // The tree is older than the watermark's slack when the daemon stops.
    std::thread::sleep(Duration::from_millis(1_500));
    assert!(d.stop().success());
    if kill {
        // A window is open (5 s) with a change in it when the daemon dies.
        let d = dir.start("5", &["--rsync", rsync.arg()]);
        d.wait_log("watching", T);
        dir.write("d0/in-the-open-window", "not committed when killed");
        std::thread::sleep(Duration::from_millis(500));
        d.kill9();
    }
    change_everything(&dir);
    rsync.clear();
    let d = dir.start("0.2", &["--rsync", rsync.arg()]);
    d.wait_log("restart scan", T);
    dir.wait_mirror(T);
    wait_drained(&dir.state(), T);
    assert_hard_links_kept(&dir);
    let log = d.log();
    assert!(!log.contains("queueing a full sync"), "{log}");
    let listed = rsync.assert_no_full_sync();
    assert!(
        (10..200).contains(&listed),
        "only the changed paths are listed, not the tree's 520: {listed}"
    );
    assert!(d.stop().success());
}

#[test]
fn changes_made_while_stopped_cleanly_arrive_without_a_full_sync() {
    restart_after(false);
}

#[test]
fn changes_made_after_a_kill_in_the_middle_of_a_window_arrive_without_a_full_sync() {
    restart_after(true);
}

/// Writes a watermark `ahead_ms` in the future into the stopped daemon's
/// store, as a clock set back would leave it.
fn watermark_ahead(state: &Path, ahead_ms: u64) {
    let store = syncd::store::Store::open(state).unwrap();
    store.set_watermark(now_ms() + ahead_ms).unwrap();
}

#[test]
fn a_clock_behind_the_watermark_gives_a_full_sync_that_says_why() {
    let dir = Dir::new();
    dir.write("a", "1");
    let d = dir.start_synced("0.2", &[]);
    assert!(d.stop().success());
    watermark_ahead(&dir.state(), 86_400_000);
    dir.write("b", "2");
    let d = dir.start("0.2", &[]);
    d.wait_log("queueing a full sync", T);
    assert!(
        d.log().contains("is behind the store's watermark"),
        "{}",
        d.log()
    );
    dir.wait_mirror(T);
    assert!(d.stop().success());
}

/// Changes a file on DEST behind syncd's back (a new size and mtime, so a
/// full sync's quick check notices it).
fn tamper(dir: &Dir) -> PathBuf {
    let p = dir.dst().join("d0/f0");
    fs::write(&p, "changed by hand on DEST").unwrap();
    p
}

#[test]
fn a_restart_does_not_repair_dest_but_sync_full_and_the_schedule_do() {
    let dir = Dir::new();
    populate(&dir);
    let d = dir.start_synced("0.2", &[]);
    std::thread::sleep(Duration::from_millis(1_500));
    assert!(d.stop().success());
    let p = tamper(&dir);
    // A scan restart sees no change in SOURCE: the drift stays (README).
    let d = dir.start("0.2", &[]);
    d.wait_log("restart scan", T);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(fs::read(&p).unwrap(), b"changed by hand on DEST");
    let out = syncd(&[
        "sync".as_ref(),
        "--full".as_ref(),
        "--state-dir".as_ref(),
        dir.state().as_os_str(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("full sync queued for dst"));
    dir.wait_mirror(T);
    assert!(d.stop().success());

    let p = tamper(&dir);
    let d = dir.start("0.2", &["--full-sync-every", "2s"]);
    d.wait_log("--full-sync-every 2s: queueing a full sync", T);
    dir.wait_mirror(T);
    assert_ne!(fs::read(&p).unwrap(), b"changed by hand on DEST");
    assert!(d.stop().success());
}

fn checkpoint(state: &Path, extra: &[&str]) -> std::process::Output {
    let mut args: Vec<&OsStr> = vec!["checkpoint".as_ref(), "--state-dir".as_ref()];
    args.push(state.as_os_str());
    args.extend(extra.iter().map(OsStr::new));
    syncd(&args)
}

#[test]
fn a_checkpoint_completes_only_after_delivery_and_times_out_while_down() {
    let dir = Dir::new();
    let d = dir.start_synced("0.2", &[]);
    let down = Immutable::new(&dir.dst());
    dir.write(
        "during-outage",
        "must be there before the checkpoint completes",
    );
    let out = checkpoint(&dir.state(), &["--wait", "--timeout", "2"]);
    assert_eq!(
        out.status.code(),
        Some(7),
        "times out while the destination is down: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("did not complete within 2s on dst"));
    drop(down);
    let out = checkpoint(&dir.state(), &["--wait", "--timeout", "30"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Complete means delivered: the change is on DEST right now.
    assert_eq!(
        fs::read(dir.dst().join("during-outage")).unwrap(),
        b"must be there before the checkpoint completes"
    );
    let st = inspect(&dir.state());
    let dst = &st["destinations"][0];
    assert!(
        dst["last_checkpoint"]["at_unix_ms"].as_u64().is_some(),
        "{st}"
    );
    assert!(dst["delivered_unix_ms"].as_u64().is_some(), "{st}");
    assert!(d.stop().success());
}

#[test]
fn a_pending_checkpoint_survives_a_restart_and_completes_after_it() {
    let dir = Dir::new();
    let d = dir.start_synced("0.2", &[]);
    let down = Immutable::new(&dir.dst());
    dir.write("pending", "x");
    let out = checkpoint(&dir.state(), &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let at: u64 = text
        .split(['(', ' '])
        .find_map(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("the checkpoint's time: {text}"));
    assert!(d.stop().success());
    let st = inspect(&dir.state());
    assert_eq!(
        st["destinations"][0]["checkpoint_pending_unix_ms"].as_u64(),
        Some(at),
        "{st}"
    );
    drop(down);
    let d = dir.start("0.2", &["-v"]);
    wait_until("the checkpoint completed after the restart", T, || {
        inspect(&dir.state())["destinations"][0]["last_checkpoint"]["at_unix_ms"].as_u64()
            == Some(at)
    });
    assert_eq!(fs::read(dir.dst().join("pending")).unwrap(), b"x");
    assert!(d.stop().success());
}

#[test]
fn checkpoint_and_sync_need_the_running_daemon() {
    let dir = Dir::new();
    let d = dir.start_synced("0.2", &[]);
    assert!(d.stop().success());
    let out = checkpoint(&dir.state(), &["--wait"]);
    assert_eq!(
        out.status.code(),
        Some(6),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bad = syncd(&[
        "sync".as_ref(),
        "--dest".as_ref(),
        "x".as_ref(),
        "--state-dir".as_ref(),
        dir.state().as_os_str(),
    ]);
    assert_eq!(bad.status.code(), Some(2), "--dest needs --full");
}
