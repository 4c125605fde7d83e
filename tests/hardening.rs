//! Ways a healthy daemon could stop replicating, or do needless work
//! (issue 16): a file truncated by path is not held as if open, a writer
//! syncd did not see open it is held until it closes, a stop with a file
//! still open is clean and ships it, a same-size replacement with the old
//! mtime is sent, and a stop with `--no-initial-sync` keeps the events
//! still in the kernel's queue.

use std::fs;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::*;

const T: Duration = Duration::from_secs(40);

/// `truncate(2)` by path: no open, no close (coreutils' `truncate` opens
/// the file and closes it, which is a close after writing).
fn truncate(p: &std::path::Path, len: i64) {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::truncate(c.as_ptr(), len) }, 0);
}

#[test]
fn a_truncate_by_path_is_sent_in_the_next_window_not_held() {
    let dir = Dir::new();
    dir.write("f", "0123456789abcdef");
    let d = dir.start_synced("0.3", &["--hold-open", "60"]);
    truncate(&dir.s("f"), 4);
    let t = Instant::now();
    dir.wait_mirror(Duration::from_secs(10));
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "held like an open file"
    );
    assert!(d.stop().success());
}

#[test]
fn a_writer_syncd_did_not_see_open_the_file_is_held_until_it_closes() {
    let dir = Dir::new();
    dir.write("log", "first\n");
    let d = dir.start_synced("0.3", &["--hold-open", "60"]);
    // The writer opens the file (no event), writes, and keeps it open.
    let mut w = Command::new("sh")
        .arg("-c")
        .arg("exec 3>>log; echo second >&3; sleep 3; echo third >&3")
        .current_dir(dir.src())
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(2_000));
    assert_eq!(
        fs::read(dir.dst().join("log")).unwrap(),
        b"first\n",
        "shipped while its writer still has it open"
    );
    assert!(w.wait().unwrap().success());
    dir.wait_mirror(T);
    assert_eq!(
        fs::read(dir.dst().join("log")).unwrap(),
        b"first\nsecond\nthird\n"
    );
    assert!(d.stop().success());
}

#[test]
fn a_stop_with_a_file_open_for_writing_is_clean_and_ships_it() {
    let dir = Dir::new();
    let d = dir.start_synced("0.3", &["--hold-open", "60"]);
    let mut w = Command::new("sh")
        .arg("-c")
        .arg("exec 3>open.log; echo written >&3; sleep 30")
        .current_dir(dir.src())
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    wait_until("the file exists", T, || dir.s("open.log").exists());
    std::thread::sleep(Duration::from_millis(1_000));
    assert!(d.stop().success());
    let d = dir.start("0.3", &["-i"]);
    d.wait_log("watching", T);
    wait_until("the open file's data reached DEST", T, || {
        fs::read(dir.dst().join("open.log")).is_ok_and(|b| b == b"written\n")
    });
    let log = d.log();
    assert!(!log.contains("not clean"), "{log}");
    let _ = w.kill();
    let _ = w.wait();
    assert!(d.stop().success());
}

#[test]
fn a_replacement_of_the_same_size_and_mtime_is_sent() {
    let dir = Dir::new();
    dir.write("f", "aaaa");
    let d = dir.start_synced("0.3", &[]);
    // `cp -p` of other content of the same size and the same mtime.
    fs::write(dir.root.join("other"), "bbbb").unwrap();
    let st = Command::new("touch")
        .arg("-r")
        .arg(dir.s("f"))
        .arg(dir.root.join("other"))
        .status()
        .unwrap();
    assert!(st.success());
    let st = Command::new("cp")
        .arg("-p")
        .arg(dir.root.join("other"))
        .arg(dir.s("f"))
        .status()
        .unwrap();
    assert!(st.success());
    wait_until("the new content on DEST", T, || {
        fs::read(dir.dst().join("f")).is_ok_and(|b| b == b"bbbb")
    });
    assert!(d.stop().success());
}

/// The same inside a directory deleted and made again, and while the
/// daemon is stopped: the directory is a tree then, whose run compares by
/// size and mtime, and the file that events (or the restart scan) named
/// inside it must still be sent whatever that comparison says.
#[test]
fn a_replacement_of_the_same_size_and_mtime_inside_a_new_tree_is_sent() {
    let dir = Dir::new();
    dir.write("d/f", "aaaa");
    dir.write("e/f", "aaaa");
    // Other content with the mtime of `over`, outside the tree.
    let stamped = |over: &str, content: &str| {
        let other = dir.root.join("other");
        fs::write(&other, content).unwrap();
        let st = Command::new("touch")
            .arg("-r")
            .arg(dir.s(over))
            .arg(&other)
            .status()
            .unwrap();
        assert!(st.success());
        other
    };
    let cp_p = |from: &std::path::Path, to: &str| {
        let st = Command::new("cp")
            .arg("-p")
            .arg(from)
            .arg(dir.s(to))
            .status();
        assert!(st.unwrap().success());
    };
    let d = dir.start_synced("0.5", &[]);
    let watches = watch_count(d.pid() as u32);
    let other = stamped("d/f", "bbbb");
    fs::remove_dir_all(dir.s("d")).unwrap();
    fs::create_dir(dir.s("d")).unwrap();
    // Once the new `d` is watched, the copy is an event. (Made before
    // the watch, the walk of `d` finds it, and only the tree's quick
    // check weighs it: README, the optimizer's paragraph.)
    wait_until("the new d watched", T, || {
        watch_count(d.pid() as u32) == watches
    });
    cp_p(&other, "d/f");
    wait_until("the new content of d/f on DEST", T, || {
        fs::read(dir.dst().join("d/f")).is_ok_and(|b| b == b"bbbb")
    });
    assert!(d.stop().success());
    // While stopped: the restart scan finds `e` new (its parent changed
    // too) and `e/f` changed.
    let other = stamped("e/f", "cccc");
    fs::rename(dir.s("e"), dir.s("e.old")).unwrap();
    fs::create_dir(dir.s("e")).unwrap();
    cp_p(&other, "e/f");
    let d = dir.start("0.5", &[]);
    wait_until("the new content of e/f on DEST", T, || {
        fs::read(dir.dst().join("e/f")).is_ok_and(|b| b == b"cccc")
    });
    dir.wait_mirror(T);
    assert!(d.stop().success());
}

/// The events of changes made before a stop may still wait in the kernel's
/// queue while the watcher's thread is busy (here with the removal of
/// 300 watched directories out of 20,000): the stop must read them all
/// before it commits and marks itself clean.
#[test]
fn a_stop_with_no_initial_sync_keeps_the_events_still_queued() {
    let dir = Dir::new();
    for i in 0..20_000 {
        fs::create_dir_all(dir.s(format!("w{}/d{i}", i % 100))).unwrap();
    }
    let d = dir.start("5", &["-i"]);
    d.wait_log("watching", T);
    fs::create_dir(dir.s("late")).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    for i in 0..3 {
        fs::remove_dir_all(dir.s(format!("w{i}"))).unwrap();
    }
    for i in 0..200 {
        fs::write(dir.s(format!("late/f{i}")), format!("{i}")).unwrap();
    }
    d.signal(libc::SIGTERM);
    let mut d = d;
    assert!(d.wait(T).success());
    // The restart runs nothing but the queue: what was committed at the
    // stop is all DEST gets of those files.
    let d = dir.start("0.3", &["-i"]);
    d.wait_log("watching", T);
    wait_until("the files written before the stop on DEST", T, || {
        (0..200).all(|i| dir.dst().join(format!("late/f{i}")).exists())
    });
    assert!(!d.log().contains("restart scan"), "{}", d.log());
    assert!(d.stop().success());
}
