//! The watcher on hostile trees: inotify limits, the root moved, deleted
//! or replaced, symlinks, and directories renamed in, out and over each
//! other. (A kernel queue overflow needs a machine-wide sysctl: its test
//! binary, `tests/overflow.rs`, runs alone.)

use std::fs;
use std::os::unix::fs::symlink;
use std::process::Command;
use std::time::Duration;

use crate::util::*;

const T: Duration = Duration::from_secs(40);

/// Runs `syncd ARGS` inside a user namespace whose inotify watch limit is
/// `watches` (the limit is per namespace, so the machine's is untouched).
fn unshared(
    watches: u32,
    args: &[std::ffi::OsString],
    log: &std::path::Path,
) -> std::process::Child {
    let mut script = format!(
        "echo {watches} > /proc/sys/user/max_inotify_watches && exec '{}'",
        bin()
    );
    for a in args {
        script.push_str(&format!(" '{}'", a.to_str().unwrap()));
    }
    let f = fs::File::create(log).unwrap();
    Command::new("unshare")
        .args([
            "-U",
            "-r",
            "--fork",
            "--kill-child=SIGTERM",
            "sh",
            "-c",
            &script,
        ])
        .stdout(f.try_clone().unwrap())
        .stderr(f)
        .spawn()
        .expect("unshare")
}

/// The syncd that `unshare --fork` (`child`) runs, once it started.
fn syncd_in(child: &std::process::Child) -> u32 {
    let mut pid = None;
    wait_until("syncd started in the namespace", T, || {
        pid = children(child.id()).first().copied();
        pid.is_some()
    });
    pid.unwrap()
}

/// Stops the syncd of an `unshared` child cleanly and waits for it.
fn stop_unshared(mut child: std::process::Child) -> std::process::ExitStatus {
    let pid = syncd_in(&child);
    // SAFETY: kill on a process this test started (through unshare).
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    child.wait().unwrap()
}

#[test]
fn a_tree_too_big_for_the_watch_limit_is_refused_before_the_walk_with_the_sysctl_to_raise() {
    let dir = Dir::new();
    for i in 0..30 {
        dir.write(format!("d{i}/f"), "x");
    }
    let mut args = dir.run_args("0.2");
    args.insert(1, "-v".into());
    let run = |watches: u32, name: &str| {
        let log = dir.root.join(name);
        (unshared(watches, &args, &log), log)
    };
    let read = |log: &std::path::Path| fs::read_to_string(log).unwrap_or_default();

    // Enough watches: the walk's count (31) is recorded in the store...
    let (child, log) = run(100, "fits.log");
    wait_until("watching", T, || read(&log).contains("watching /"));
    assert!(read(&log).contains("31 needed (counted)"), "{}", read(&log));
    assert!(stop_unshared(child).success(), "{}", read(&log));
    // ... and the next start weighs its budget with it, without counting.
    let (child, log) = run(100, "again.log");
    wait_until("watching", T, || read(&log).contains("watching /"));
    assert!(
        read(&log).contains("31 needed (the last run's count)"),
        "{}",
        read(&log)
    );
    assert!(stop_unshared(child).success(), "{}", read(&log));

    // Too few: refused before any watch is added, with a value to set and
    // where to keep it. (The last run's count does not fit, so the tree is
    // counted again.)
    let (mut child, log) = run(10, "limit.log");
    let st = child.wait().unwrap();
    let text = read(&log);
    assert!(!st.success(), "{text}");
    assert!(
        text.contains("SOURCE needs 31 directories to watch (counted), but only 10"),
        "{text}"
    );
    assert!(
        text.contains("`sysctl fs.inotify.max_user_watches=10240`"),
        "{text}"
    );
    assert!(text.contains("/etc/sysctl.d/"), "{text}");
    assert!(text.contains("user.max_inotify_watches = 10"), "{text}");
    assert!(!text.contains("while watching"), "no walk: {text}");
    assert!(!text.contains("panicked"), "{text}");
}

#[test]
fn out_of_watches_at_run_time_lists_the_directories_and_watches_them_once_the_limit_is_raised() {
    let dir = Dir::new();
    let log = dir.root.join("limit.log");
    let mut child = unshared(12, &dir.run_args("0.3"), &log);
    let read = || fs::read_to_string(&log).unwrap_or_default();
    wait_until("syncd watching in the namespace", T, || {
        read().contains("watching /")
    });
    for i in 0..30 {
        dir.write(format!("n{i:02}/f"), "x");
    }
    // Synced whole at once, although not watched.
    dir.wait_mirror(T);
    assert!(
        read().contains("fs.inotify.max_user_watches="),
        "{}",
        read()
    );

    let st = status_json(&dir.state());
    let u = &st["unwatched"];
    let count = u["count"].as_u64().unwrap();
    assert!((19..=30).contains(&count), "{st}");
    let paths: Vec<&str> = u["paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert_eq!(paths.len(), 10, "{st}");
    assert!(paths.iter().all(|p| p.starts_with('n')), "{st}");
    assert!(
        u["reason"]
            .as_str()
            .unwrap()
            .contains("out of inotify watches"),
        "{st}"
    );
    assert_eq!(inspect(&dir.state())["unwatched"], *u);
    let text = syncd(&[
        "status".as_ref(),
        "--state-dir".as_ref(),
        dir.state().as_os_str(),
    ]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains(&format!("WARNING: {count} directories are not watched")),
        "{text}"
    );

    // A change in an unwatched directory has no event; raising the limit
    // lets the next retry watch them all and sync them once more.
    let some = paths[9];
    dir.write(format!("{some}/while-unwatched"), "y");
    let pid = syncd_in(&child).to_string();
    let raised = Command::new("nsenter")
        .args(["-t", &pid, "-U", "sh", "-c"])
        .arg("echo 1000 > /proc/sys/user/max_inotify_watches")
        .status()
        .unwrap();
    assert!(raised.success());
    wait_until("every directory watched", Duration::from_secs(70), || {
        status_json(&dir.state())["unwatched"]["count"] == 0
    });
    dir.wait_mirror(T);
    assert!(
        read().contains("now; it is synced whole once more"),
        "{}",
        read()
    );
    // And now its changes come by events.
    dir.write(format!("{some}/watched"), "z");
    dir.wait_mirror(T);
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn a_directory_the_daemon_may_not_read_is_listed_and_watched_once_a_chmod_allows_it() {
    use std::os::unix::fs::PermissionsExt;
    let dir = Dir::new();
    dir.write("open/f", "1");
    dir.write("locked/inner/g", "2");
    fs::set_permissions(dir.s("locked"), fs::Permissions::from_mode(0o000)).unwrap();
    // The daemon runs as nobody, on a tree it owns but for `locked`'s
    // mode: as root (the tests' user) nothing is unreadable.
    let st = Command::new("chown")
        .args(["-R", "65534:65534"])
        .arg(&dir.root)
        .status()
        .unwrap();
    assert!(st.success());
    let nobody = [
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
    ];
    let d = Daemon::start_with(
        &nobody,
        &[],
        &dir.run_args("0.3"),
        &dir.root.join("nobody.log"),
    );
    d.wait_log("watching /", T);
    d.wait_log("not watching", T);
    assert!(
        d.log()
            .contains("locked: permission denied; it is synced whole now"),
        "{}",
        d.log()
    );
    let status = || {
        let out = Command::new(nobody[0])
            .args(&nobody[1..])
            .arg(bin())
            .args(["status", "--json", "--state-dir"])
            .arg(dir.state())
            .output()
            .unwrap();
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let u = &status()["unwatched"];
    assert_eq!(u["count"], 1, "{u}");
    assert_eq!(u["paths"][0], "locked", "{u}");
    assert_eq!(u["reason"], "permission denied", "{u}");
    wait_until("the readable part synced", T, || {
        dir.dst().join("open/f").exists()
    });

    // Written while the daemon can see nothing of it; then a chmod lets it
    // in: the directory's attribute change retries the watch at once.
    dir.write("locked/inner/h", "3");
    fs::set_permissions(dir.s("locked"), fs::Permissions::from_mode(0o755)).unwrap();
    dir.wait_mirror(T);
    assert_eq!(status()["unwatched"]["count"], 0);
    assert!(
        d.log().contains("locked now; it is synced whole once more"),
        "{}",
        d.log()
    );
    dir.write("locked/inner/later", "4");
    dir.wait_mirror(T);
    assert!(d.stop().success());
}

#[test]
fn a_watcher_whose_thread_died_stops_the_daemon_and_a_restart_covers_the_gap() {
    let dir = Dir::new();
    dir.write("before", "1");
    // Debug builds only: notify's event handler panics on its first event,
    // which ends notify's thread by the real unwinding path.
    let mut d = Daemon::start_with(
        &[],
        &[("SYNCD_TEST_FAULT", "watcher-panic")],
        &dir.run_args("0.2"),
        &dir.root.join("dies.log"),
    );
    d.wait_log("watching /", T);
    let t = std::time::Instant::now();
    dir.write("while-dead", "2");
    let st = d.wait(Duration::from_secs(10));
    assert_eq!(st.code(), Some(1), "{}", d.log());
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert!(
        d.log().contains(
            "the inotify watcher stopped: its thread ended (a panic in its event handler: see \
             above); syncd exits so that the service manager restarts it, and the restart scan \
             covers the gap"
        ),
        "{}",
        d.log()
    );

    // Restarted (as a service manager would): nothing is lost.
    dir.write("while-down", "3");
    let d = dir.start("0.2", &[]);
    dir.wait_mirror(T);
    assert!(d.stop().success());
}

#[test]
fn a_directory_of_ten_thousand_renamed_then_deleted_leaves_the_watch_set_exact() {
    let dir = Dir::new();
    for i in 0..100 {
        for j in 0..100 {
            fs::create_dir_all(dir.s(format!("big/a{i}/b{j}"))).unwrap();
        }
    }
    dir.write("big/a5/b5/f", "1");
    dir.write("keep/cache/deep/x", "excluded");
    let excluded = |p: &[u8]| {
        let p = String::from_utf8_lossy(p);
        p == "cache" || p.ends_with("/cache") || p.contains("cache/")
    };
    let d = dir.start("0.3", &["--exclude", "cache/"]);
    d.wait_log("watching /", T);
    wait_mirror_except(&dir.src(), &dir.dst(), excluded, T);
    d.wait_log("] synced", T);
    let exact = |what: &str| {
        let want = dirs_in(&dir.src(), excluded);
        wait_until(what, T, || watch_count(d.pid() as u32) == want);
    };
    exact("the start watches every directory but the excluded");
    assert_eq!(watch_count(d.pid() as u32), 10_103);

    fs::rename(dir.s("big"), dir.s("big-moved")).unwrap();
    // Seen by the watches that moved with it: none was dropped or added.
    dir.write("big-moved/a5/b5/g", "2");
    fs::create_dir(dir.s("big-moved/a99/b99/new")).unwrap();
    wait_mirror_except(&dir.src(), &dir.dst(), excluded, T);
    exact("the moved tree keeps exactly its watches");

    fs::remove_dir_all(dir.s("big-moved")).unwrap();
    wait_mirror_except(&dir.src(), &dir.dst(), excluded, T);
    exact("no stale watch after the deletion");
    assert_eq!(watch_count(d.pid() as u32), 2, "the root and keep");
    assert!(d.stop().success());
}

fn expect_fatal(dir: &Dir, d: Daemon, needle: &str) {
    let mut d = d;
    let st = d.wait(T);
    assert_eq!(st.code(), Some(1), "{}", d.log());
    assert!(d.log().contains(needle), "{}", d.log());
    let _ = dir;
}

#[test]
fn the_root_deleted_is_a_clear_fatal_error() {
    let dir = Dir::new();
    dir.write("keep/me", "1");
    let d = dir.start_synced("0.2", &[]);
    Command::new("rm")
        .arg("-rf")
        .arg(dir.src())
        .status()
        .unwrap();
    expect_fatal(&dir, d, "was deleted");
}

#[test]
fn the_root_moved_away_is_a_clear_fatal_error() {
    let dir = Dir::new();
    dir.write("f", "1");
    let d = dir.start_synced("0.2", &[]);
    fs::rename(dir.src(), dir.root.join("elsewhere")).unwrap();
    expect_fatal(&dir, d, "was moved away");
    assert!(dir.dst().join("f").exists(), "the mirror is not emptied");
}

#[test]
fn the_root_replaced_by_a_symlink_is_a_clear_fatal_error() {
    let dir = Dir::new();
    dir.write("f", "1");
    let d = dir.start_synced("0.2", &[]);
    fs::rename(dir.src(), dir.root.join("real")).unwrap();
    symlink(dir.root.join("real"), dir.src()).unwrap();
    expect_fatal(&dir, d, "was moved away");
    assert!(dir.dst().join("f").exists(), "the mirror is not emptied");
}

#[test]
fn directories_renamed_in_out_over_and_replaced_by_symlinks() {
    let dir = Dir::new();
    let outside = dir.root.join("outside");
    for d in ["a", "b", "c", "s"] {
        for i in 0..5 {
            dir.write(format!("{d}/f{i}"), format!("{d}{i}"));
        }
    }
    fs::create_dir(dir.s("empty")).unwrap();
    let d = dir.start_synced("0.3", &[]);

    // In from outside, with content the watch never saw created.
    fs::create_dir_all(outside.join("x/deep")).unwrap();
    fs::write(outside.join("x/deep/f"), "from outside").unwrap();
    fs::rename(outside.join("x"), dir.s("x")).unwrap();
    // Out of the tree.
    fs::rename(dir.s("a"), outside.join("a")).unwrap();
    // Over an empty directory.
    fs::rename(dir.s("b"), dir.s("empty")).unwrap();
    dir.wait_mirror(T);

    // A watched subdirectory replaced by a symlink to another one.
    fs::rename(dir.s("s"), dir.s("s-real")).unwrap();
    symlink("c", dir.s("s")).unwrap();
    dir.wait_mirror(T);
    assert!(fs::symlink_metadata(dir.dst().join("s"))
        .unwrap()
        .file_type()
        .is_symlink());

    // Changes inside a directory renamed in are seen.
    dir.write("x/deep/g", "later");
    dir.write("empty/f9", "in the renamed-over dir");
    dir.wait_mirror(T);
    assert!(d.stop().success());
}

#[test]
fn a_file_still_being_written_is_held_until_its_writer_closes_it() {
    use std::io::Write;
    let dir = Dir::new();
    let d = dir.start_synced("0.3", &[]);
    let mut f = fs::File::create(dir.s("growing")).unwrap();
    f.write_all(&[b'a'; 100_000]).unwrap();
    f.flush().unwrap();
    dir.write("done", "x");
    wait_until("the closed file synced", T, || {
        dir.dst().join("done").exists()
    });
    // Several windows pass while the writer keeps it open.
    std::thread::sleep(Duration::from_millis(1200));
    assert!(
        !dir.dst().join("growing").exists(),
        "a half-written file was shipped"
    );
    f.write_all(&[b'b'; 100_000]).unwrap();
    drop(f);
    dir.wait_mirror(T);
    assert_eq!(
        fs::metadata(dir.dst().join("growing")).unwrap().len(),
        200_000
    );
    assert!(d.stop().success());
}

#[test]
fn a_file_rewritten_during_its_transfer_is_sent_again() {
    let dir = Dir::new();
    let d = dir.start_synced("0.2", &["-v"]);
    let size = 64 << 20;
    let before = d.log().matches("running rsync").count();
    dir.write("big", vec![b'a'; size]);
    let t = std::time::Instant::now();
    while d.log().matches("running rsync").count() == before {
        assert!(t.elapsed() < T);
        std::thread::sleep(Duration::from_millis(5));
    }
    // rsync is reading it now: rewrite it, same size, other content.
    dir.write("big", vec![b'b'; size]);
    dir.wait_mirror(T);
    assert!(d.stop().success());
}

#[test]
fn excluded_paths_are_neither_synced_nor_deleted() {
    let dir = Dir::new();
    dir.write("keep/a", "1");
    dir.write("cache/big", "not replicated");
    dir.write("keep/x.tmp", "tmp");
    dir.write("sub/cache/deeper", "also excluded (unanchored dir pattern)");
    // The destination has excluded files of its own: they must survive.
    for p in ["cache/dst-only", "keep/dst-only.tmp", "gone/inner.tmp"] {
        let f = dir.dst().join(p);
        fs::create_dir_all(f.parent().unwrap()).unwrap();
        fs::write(&f, "dst only").unwrap();
    }
    let excl = dir.root.join("excludes");
    fs::write(&excl, "# comment\n*.tmp\n").unwrap();
    let d = dir.start(
        "0.3",
        &[
            "--exclude",
            "cache/",
            "--exclude-from",
            excl.to_str().unwrap(),
        ],
    );
    d.wait_log("watching", T);
    let skip = |p: &[u8]| {
        let s = String::from_utf8_lossy(p);
        s.ends_with(".tmp")
            || s == "cache"
            || s.starts_with("cache/")
            || s.contains("/cache")
            || s == "gone"
    };
    let wait = || wait_mirror_except(&dir.src(), &dir.dst(), skip, T);
    wait();
    dir.write("cache/new", "x");
    dir.write("keep/y.tmp", "x");
    dir.write("keep/b", "2");
    fs::remove_file(dir.s("keep/x.tmp")).unwrap();
    fs::remove_dir_all(dir.s("cache")).unwrap();
    wait();
    d.wait_log("] synced", T);
    std::thread::sleep(Duration::from_millis(800));
    for p in ["cache/dst-only", "keep/dst-only.tmp", "gone/inner.tmp"] {
        assert!(dir.dst().join(p).exists(), "{p} was deleted");
    }
    assert!(!dir.dst().join("cache/big").exists() && !dir.dst().join("keep/y.tmp").exists());
    assert!(!dir.dst().join("sub/cache").exists());
    assert!(d.stop().success());
}

/// The soak's one failure, made certain: a directory created, then its
/// parent replaced by a symlink to a watched directory that holds one of
/// the same name, all before the daemon reads the events. Watching the
/// new directory's path then reaches the other one through the symlink;
/// neither the mapping of its events nor the removal that follows may
/// take the real directory's watch with it.
#[test]
fn a_directory_replaced_by_a_symlink_before_its_events_are_read_keeps_the_target_s_watch() {
    let dir = Dir::new();
    dir.write("d1/e/inside/f", "0");
    fs::create_dir(dir.s("a")).unwrap();
    let d = dir.start_synced("0.3", &[]);
    let watches = watch_count(d.pid() as u32);
    for round in 0..3 {
        d.signal(libc::SIGSTOP);
        fs::create_dir(dir.s("a/inside")).unwrap();
        fs::write(dir.s("a/inside/f"), "in the real a").unwrap();
        fs::remove_dir_all(dir.s("a")).unwrap();
        symlink("d1/e", dir.s("a")).unwrap();
        d.signal(libc::SIGCONT);
        dir.wait_mirror(T);
        // Written only through the link; its events come from the watch
        // of d1/e/inside, by that path.
        fs::write(dir.s("a/inside/f"), format!("through the link {round}")).unwrap();
        dir.wait_mirror(T);
        fs::remove_file(dir.s("a")).unwrap();
        fs::create_dir(dir.s("a")).unwrap();
        fs::write(dir.s("d1/e/inside/f"), format!("direct {round}")).unwrap();
        dir.wait_mirror(T);
        wait_until("the watch set is as before", T, || {
            watch_count(d.pid() as u32) == watches
        });
    }
    assert!(d.stop().success());
}
