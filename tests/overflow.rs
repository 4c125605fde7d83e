//! A kernel queue overflow, survived without a full sync. It lowers the
//! machine-wide `fs.inotify.max_queued_events`, so it is its own test
//! binary: cargo runs test binaries one after the other, so no daemon of
//! another test is created while the limit is low, and the tests in here
//! take turns. The limit is read when an inotify instance is created, so
//! it is restored as soon as the daemon's watcher exists.

#[path = "util.rs"]
mod util;

use std::fs;
use std::sync::Mutex;
use std::time::Duration;

use util::*;

const T: Duration = Duration::from_secs(40);

/// The tests in this binary change the sysctl one at a time.
static SYSCTL: Mutex<()> = Mutex::new(());

/// Sets a sysctl under /proc/sys and restores the old value on drop.
struct Sysctl {
    path: &'static str,
    old: String,
}

impl Sysctl {
    fn set(path: &'static str, value: &str) -> Sysctl {
        let old = fs::read_to_string(path).unwrap();
        fs::write(path, value).unwrap();
        Sysctl { path, old }
    }
}

impl Drop for Sysctl {
    fn drop(&mut self) {
        let _ = fs::write(self.path, self.old.trim());
    }
}

/// Starts a daemon whose inotify queue holds 64 events.
fn with_a_small_queue(dir: &Dir, extra: &[&str]) -> Daemon {
    let small = Sysctl::set("/proc/sys/fs/inotify/max_queued_events", "64");
    let d = dir.start("0.5", extra);
    d.wait_log("watching", T);
    drop(small);
    d
}

#[test]
fn an_overflow_rescans_what_changed_instead_of_a_full_sync() {
    let _serial = SYSCTL.lock().unwrap_or_else(|p| p.into_inner());
    let dir = Dir::new();
    for i in 0..30 {
        dir.write(format!("old{i}/f"), "untouched by the burst");
    }
    dir.write("d/first", "1");
    let first = dir.start_synced("0.5", &[]);
    // The watermark passes the old tree by more than the scan's slack.
    std::thread::sleep(Duration::from_millis(1_500));
    dir.write("d/second", "2");
    dir.wait_mirror(T);
    assert!(first.stop().success());
    let d = with_a_small_queue(&dir, &["-v"]);
    // The daemon is stopped while the burst is written, so that its
    // watcher cannot keep up with the kernel's queue however fast the
    // machine. The new directories are not watched yet, so the events
    // that overflow the queue come from a watched one: 100 files in `d`
    // are far more than 64 events.
    d.signal(libc::SIGSTOP);
    for i in 0..20 {
        for j in 0..100 {
            dir.write(format!("burst{i}/f{j}"), format!("{i}/{j}"));
        }
    }
    for j in 0..100 {
        dir.write(format!("d/burst{j}"), format!("{j}"));
    }
    d.signal(libc::SIGCONT);
    d.wait_log("overflowed", T);
    dir.wait_mirror(T);
    let log = d.log();
    assert!(log.contains("scanned for changes since"), "{log}");
    assert!(!log.contains("queueing a full sync"), "{log}");
    // Directories created during the overflow are watched after the
    // rebuild: a change inside them is seen without another overflow.
    let before = d.log().matches("overflowed").count();
    for i in 0..20 {
        dir.write(format!("burst{i}/later"), "seen");
    }
    dir.wait_mirror(T);
    assert_eq!(
        d.log().matches("overflowed").count(),
        before,
        "the later changes came as events"
    );
    assert!(d.stop().success());
}
