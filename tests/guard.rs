//! The safe defaults learned from lsyncd's data-loss reports (#481, #668):
//! an empty SOURCE (what an unmounted mount point looks like) is never
//! mirrored onto a destination that holds data unless
//! `--allow-empty-source` says so, neither at start-up (local, ssh and
//! daemon destinations) nor by a later full sync; a source emptied by hand
//! while syncd runs is still followed; destinations and state directories
//! inside SOURCE, however written, and relative `host:path` destinations
//! are refused with what to write instead.

use std::ffi::OsString;
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::rsyncd::Rsyncd;
use crate::support::sshd::Sshd;
use crate::util::*;

const T: Duration = Duration::from_secs(30);

/// Runs `syncd ARGS`, which must exit by itself within `T` (a daemon that
/// starts instead is killed and fails the test); returns the exit code and
/// everything it printed.
fn exits(dir: &Dir, args: &[OsString]) -> (Option<i32>, String) {
    let log = dir.root.join(format!(
        "exit-{}.log",
        fs::read_dir(&dir.root).unwrap().count()
    ));
    let mut d = Daemon::start(args, &log);
    let st = d.wait(T);
    (st.code(), d.log())
}

/// [`Dir::run_args`] with `extra` before the positionals.
fn args(dir: &Dir, extra: &[&str]) -> Vec<OsString> {
    let mut a = dir.run_args("0.2");
    let pos = a.len() - 2;
    for (i, e) in extra.iter().enumerate() {
        a.insert(pos + i, e.into());
    }
    a
}

fn assert_refused_empty_source(code: Option<i32>, log: &str, dest: &str) {
    assert_eq!(code, Some(2), "{log}");
    for needle in [
        "is empty, but",
        dest,
        "would delete all of it",
        "mount it (findmnt",
        "start syncd with --allow-empty-source",
    ] {
        assert!(log.contains(needle), "{needle:?} missing in:\n{log}");
    }
}

#[test]
fn an_empty_source_onto_a_local_destination_with_data_is_refused() {
    let dir = Dir::new();
    fs::write(dir.dst().join("precious"), "data").unwrap();
    let (code, log) = exits(&dir, &args(&dir, &[]));
    assert_refused_empty_source(code, &log, "holds \"precious\"");
    assert_eq!(fs::read(dir.dst().join("precious")).unwrap(), b"data");
    // Only excluded names in SOURCE count as empty too (rsync would send
    // nothing and delete the rest).
    fs::create_dir(dir.s("cache")).unwrap();
    let (code, log) = exits(&dir, &args(&dir, &["--exclude", "cache/"]));
    assert_refused_empty_source(code, &log, "precious");
    assert!(dir.dst().join("precious").exists());
}

#[test]
fn allow_empty_source_empties_the_mirror() {
    let dir = Dir::new();
    fs::create_dir_all(dir.dst().join("old/dir")).unwrap();
    fs::write(dir.dst().join("old/dir/f"), "x").unwrap();
    let d = dir.start("0.2", &["--allow-empty-source"]);
    dir.wait_mirror(T);
    assert_eq!(fs::read_dir(dir.dst()).unwrap().count(), 0);
    assert!(d.stop().success());
}

#[test]
fn an_empty_source_starts_when_the_mirror_is_empty_or_elsewhere() {
    // Empty onto empty, and onto a destination that does not exist yet.
    let dir = Dir::new();
    fs::remove_dir(dir.dst()).unwrap();
    let d = dir.start_synced("0.2", &[]);
    assert!(d.stop().success());
    // Without the `/./` marker the mirror lands in DEST/<full path of
    // SOURCE>: data elsewhere in DEST is not the mirror's and does not
    // count, data where it lands does.
    let dir = Dir::new();
    fs::write(dir.dst().join("unrelated"), "x").unwrap();
    let mut a = dir.run_args("0.2");
    let n = a.len();
    a[n - 2] = dir.src().into();
    let d = Daemon::start(&a, &dir.root.join("nomarker.log"));
    d.wait_log("] synced", T);
    assert!(dir.dst().join("unrelated").exists());
    assert!(d.stop().success());
    let landing = dir.dst().join(dir.src().strip_prefix("/").unwrap());
    fs::write(landing.join("mirrored-before"), "y").unwrap();
    let (code, log) = exits(&dir, &a);
    assert_refused_empty_source(code, &log, "mirrored-before");
}

#[test]
fn a_source_emptied_while_running_is_followed() {
    let dir = Dir::new();
    dir.write("a", "1");
    dir.write("d/e/f", "2");
    dir.write("g", "3");
    let d = dir.start_synced("0.2", &[]);
    fs::remove_file(dir.s("a")).unwrap();
    fs::remove_dir_all(dir.s("d")).unwrap();
    fs::remove_file(dir.s("g")).unwrap();
    dir.wait_mirror(T);
    assert_eq!(fs::read_dir(dir.dst()).unwrap().count(), 0);
    assert!(!d.log().contains("is empty"), "{}", d.log());
    assert!(d.stop().success());
}

/// The destination's entry in `syncd status --json`.
fn status_of(dir: &Dir) -> serde_json::Value {
    let out = syncd(&[
        "status".as_ref(),
        "--json".as_ref(),
        "--state-dir".as_ref(),
        dir.state().as_os_str(),
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status prints JSON");
    v["destinations"][0].clone()
}

#[test]
fn a_full_sync_of_an_empty_source_waits_while_the_destination_holds_data() {
    let dir = Dir::new();
    let d = dir.start_synced("0.2", &[]);
    // Data appears on the destination behind syncd's back, then a full
    // sync is asked for while SOURCE is still empty.
    fs::write(dir.dst().join("precious"), "data").unwrap();
    d.signal(libc::SIGHUP);
    d.wait_log("this full sync would delete all of it", T);
    let t = Instant::now();
    loop {
        let s = status_of(&dir);
        let err = s["last_error"].as_str().unwrap_or("").to_string();
        if err.contains("is empty, but") {
            assert_eq!(s["pending"], 1, "{s}");
            break;
        }
        assert!(t.elapsed() < T, "status never showed the refusal: {s}");
        std::thread::sleep(Duration::from_millis(100));
    }
    d.wait_log("retrying in", T);
    assert_eq!(fs::read(dir.dst().join("precious")).unwrap(), b"data");
    // Once SOURCE holds something, the queued full sync goes through and
    // makes an exact mirror.
    dir.write("real", "content");
    dir.wait_mirror(T);
    assert!(d.stop().success());
}

#[test]
fn remote_destinations_with_data_are_checked_over_their_transport() {
    let dir = Dir::new();
    let sshd = Sshd::start(&dir.root.join("sshd"));
    let modules = dir.root.join("modules");
    let rsyncd = Rsyncd::start(&dir.root.join("rsyncd"), &modules);
    let rsh = format!("{} -p {}", sshd.rsh(), sshd.port);
    let ssh_dest = format!("127.0.0.1:{}", dir.dst().display());
    let daemon_dest = format!("rsync://127.0.0.1:{}/mod/m", rsyncd.port);
    fs::create_dir_all(modules.join("m")).unwrap();
    let base = |dests: &[&str]| -> Vec<OsString> {
        let mut a = dir.run_args("0.2");
        a.truncate(a.len() - 1);
        for x in ["--contimeout", "2", "--timeout", "3", "-e", &rsh] {
            a.insert(a.len() - 1, x.into());
        }
        a.extend(dests.iter().map(OsString::from));
        a
    };
    // Both empty: it starts.
    let d = Daemon::start(&base(&[&ssh_dest, &daemon_dest]), &dir.root.join("a.log"));
    wait_count(&d, "] synced", 2);
    assert!(d.stop().success());
    // Data in the daemon module's directory: refused.
    fs::write(modules.join("m/in-module"), "x").unwrap();
    let (code, log) = exits(&dir, &base(&[&ssh_dest, &daemon_dest]));
    assert_refused_empty_source(code, &log, "in-module");
    // Data behind ssh, with a name rsync escapes in its listing.
    fs::remove_file(modules.join("m/in-module")).unwrap();
    fs::write(dir.dst().join("over\nssh"), "x").unwrap();
    let (code, log) = exits(&dir, &base(&[&ssh_dest, &daemon_dest]));
    assert_refused_empty_source(code, &log, "over\\x0assh");
    assert!(dir.dst().join("over\nssh").exists());
}

#[test]
fn an_unreachable_destination_is_not_judged_at_start_but_gets_no_full_sync() {
    let dir = Dir::new();
    // Nothing listens on this port: the check cannot reach it.
    let port = crate::support::free_port();
    let dest = format!("rsync://127.0.0.1:{port}/mod/");
    let mut a = dir.run_args("0.2");
    a.truncate(a.len() - 1);
    for x in ["--contimeout", "2", "--timeout", "3"] {
        a.insert(a.len() - 1, x.into());
    }
    a.push(dest.into());
    let d = Daemon::start(&a, &dir.root.join("unreachable.log"));
    d.wait_log("cannot tell whether it holds data", T);
    d.wait_log("not running a full sync that could delete it", T);
    d.wait_log("retrying in", T);
    assert!(d.stop().success());
}

fn wait_count(d: &Daemon, needle: &str, n: usize) {
    let t = Instant::now();
    while d.log().matches(needle).count() < n {
        assert!(t.elapsed() < T, "{needle:?} not {n} times:\n{}", d.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_relative_remote_path_is_refused_with_what_to_write() {
    let dir = Dir::new();
    let mut a = dir.run_args("0.2");
    *a.last_mut().unwrap() = "backup.example:www".into();
    let (code, log) = exits(&dir, &a);
    assert_eq!(code, Some(2), "{log}");
    assert!(
        log.contains("lands in the remote user's home directory"),
        "{log}"
    );
    assert!(log.contains("write backup.example:/www"), "{log}");
    assert!(log.contains("or backup.example:~/www"), "{log}");
    assert!(!dir.state().exists(), "refused before anything was created");
}

#[test]
fn a_destination_or_state_inside_the_source_is_refused_however_written() {
    let dir = Dir::new();
    fs::create_dir(dir.s("sub")).unwrap();
    std::os::unix::fs::symlink(dir.src(), dir.root.join("link")).unwrap();
    let through_link = dir.root.join("link/sub/mirror");
    let dotdot = dir.dst().join("../src/sub/x");
    for dest in [through_link.as_path(), dotdot.as_path()] {
        let mut a = dir.run_args("0.2");
        *a.last_mut().unwrap() = dest.into();
        let (code, log) = exits(&dir, &a);
        assert_eq!(code, Some(2), "{}: {log}", dest.display());
        assert!(log.contains("is inside SOURCE"), "{log}");
    }
    let mut a = dir.run_args("0.2");
    let state = dir.root.join("link/state");
    a[2] = state.clone().into();
    let (code, log) = exits(&dir, &a);
    assert_eq!(code, Some(2), "{log}");
    assert!(log.contains("state directory"), "{log}");
    assert!(!Path::new(&state).exists());
}
