//! The control socket and the commands on it (`queue inspect`, `status`,
//! `queue retry`, `queue purge`), against the real binary and real rsync:
//! live answers that follow a destination going down and coming back,
//! the same commands offline, the socket's life (stale after kill -9,
//! refused in a directory others can write, several clients at once), and
//! output that behaves in a pipe.

use std::ffi::OsStr;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::*;

const T: Duration = Duration::from_secs(30);

/// Runs `syncd ARGS... --state-dir STATE`.
fn cmd(state: &Path, args: &[&str]) -> Output {
    let mut a: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    a.push("--state-dir".as_ref());
    a.push(state.as_os_str());
    syncd(&a)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `syncd status --json`: the exit code and the parsed report.
fn status(state: &Path, extra: &[&str]) -> (Option<i32>, Value, String) {
    let mut args = vec!["status", "--json"];
    args.extend_from_slice(extra);
    let out = cmd(state, &args);
    let v = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("status printed no JSON ({e}): {}", text(&out.stderr)));
    (out.status.code(), v, text(&out.stderr))
}

/// The first destination of `queue inspect --json`.
fn first(state: &Path) -> Value {
    inspect(state)["destinations"][0].clone()
}

/// Polls `f` until it returns true; panics with `what` and the last value.
fn wait_for(what: &str, mut f: impl FnMut() -> (bool, String)) {
    let t = Instant::now();
    loop {
        let (ok, seen) = f();
        if ok {
            return;
        }
        assert!(
            t.elapsed() < T,
            "{what}: not within {T:?}; last seen:\n{seen}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A daemon whose start-up sync is done and acknowledged.
fn started(dir: &Dir, extra: &[&str]) -> Daemon {
    let d = dir.start("0.3", extra);
    ready(dir, d)
}

/// As [`started`], with another `--backoff-max` than the helpers' 1 s.
fn started_with(dir: &Dir, backoff_max: &str, extra: &[&str]) -> Daemon {
    let mut a = dir.run_args("0.3");
    let i = a.iter().position(|x| x == "--backoff-max").unwrap();
    a[i + 1] = backoff_max.into();
    let pos = a.len() - 2;
    for (k, e) in extra.iter().enumerate() {
        a.insert(pos + k, e.into());
    }
    let d = Daemon::start(&a, &dir.root.join("syncd-backoff.log"));
    ready(dir, d)
}

fn now_unix() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn ready(dir: &Dir, d: Daemon) -> Daemon {
    d.wait_log("watching", T);
    dir.wait_mirror(T);
    wait_for("the start-up sync is acknowledged", || {
        let r = first(&dir.state());
        (r["pending"] == 0 && r["state"] == "in_sync", r.to_string())
    });
    d
}

#[test]
fn inspect_and_status_offline_and_live() {
    let dir = Dir::new();
    let state = dir.state();
    // Neither a daemon nor a store: both commands say so.
    let out = cmd(&state, &["queue", "inspect"]);
    assert_eq!(out.status.code(), Some(6), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("no store"),
        "{}",
        text(&out.stderr)
    );
    let (code, v, err) = status(&state, &[]);
    assert_eq!(code, Some(6), "{err}");
    assert_eq!(v["daemon"], Value::Null);

    dir.write("a", "1");
    let d = started(&dir, &[]);
    let sock = state.join("control.sock");
    let mode = fs::symlink_metadata(&sock).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "socket mode {mode:o}");
    let mode = fs::metadata(&state).unwrap().permissions().mode();
    assert_eq!(
        mode & 0o777,
        0o700,
        "a new state directory is private: {mode:o}"
    );

    let (code, v, err) = status(&state, &[]);
    assert_eq!(code, Some(0), "{v} {err}");
    assert_eq!(v["healthy"], true);
    assert_eq!(v["daemon"]["pid"], d.pid());
    assert_eq!(v["daemon"]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(v["daemon"]["protocol"], 1);
    assert!(v["daemon"]["uptime_s"].as_f64().unwrap() >= 0.0);
    // The main loop woke at least for this request's predecessors (the
    // start-up, the first window), and timed each step.
    let main_loop = &v["daemon"]["main_loop"];
    assert!(main_loop["steps"].as_u64().unwrap() >= 1, "{main_loop}");
    assert!(
        main_loop["slowest_step_ms"].as_f64().unwrap() > 0.0,
        "{main_loop}"
    );
    assert!(
        main_loop["steps_over_10ms"].as_u64().is_some(),
        "{main_loop}"
    );
    assert_eq!(v["destinations"][0]["state"], "in_sync");
    assert_eq!(v["destinations"][0]["problem"], Value::Null);

    let out = cmd(&state, &["status"]);
    let lines = text(&out.stdout);
    assert!(
        lines.starts_with(&format!(
            "syncd {} running as pid {}",
            env!("CARGO_PKG_VERSION"),
            d.pid()
        )),
        "{lines}"
    );
    assert!(
        lines.contains("dst              in sync (last success 20"),
        "{lines}"
    );

    let live = first(&state);
    assert_eq!(live["state"], "in_sync");
    assert_eq!(live["pending"], 0);
    assert_eq!(live["name"], "dst");
    assert!(live["last_success_unix"].as_u64().is_some(), "{live}");
    let table = text(&cmd(&state, &["queue", "inspect"]).stdout);
    assert!(table.starts_with("DEST "), "{table}");
    assert!(table.contains(" in_sync "), "{table}");

    assert!(d.stop().success());
    assert!(!sock.exists(), "a clean stop removes the socket");
    let off = first(&state);
    assert_eq!(off["state"], "stopped");
    assert_eq!(off["last_success_unix"], live["last_success_unix"]);
    let (code, v, err) = status(&state, &[]);
    assert_eq!(code, Some(6), "{err}");
    assert_eq!(v["daemon"], Value::Null);
    assert_eq!(v["healthy"], false);
    assert_eq!(v["destinations"][0]["state"], "stopped");
    assert!(err.contains("no syncd daemon is running"), "{err}");
    let lines = text(&cmd(&state, &["status"]).stdout);
    assert!(lines.starts_with("syncd is not running"), "{lines}");
}

#[test]
fn live_figures_follow_a_destination_down_and_back() {
    let dir = Dir::new();
    let state = dir.state();
    let d = started(&dir, &[]);
    let dst = dir.dst();
    let guard = Immutable::new(&dst);
    dir.write(b"new\nline DEST 0 0", "x");
    dir.write("plain", "y");
    wait_for("a failing destination backs off, naming the cause", || {
        let r = first(&state);
        let ok = r["pending"].as_u64() >= Some(1)
            && r["state"] == "backing_off"
            && r["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("Operation not permitted"));
        (ok, r.to_string())
    });
    let before = first(&state)["pending"].as_u64().unwrap();
    dir.write("later", "z");
    wait_for("pending grows while it is down", || {
        let r = first(&state);
        (r["pending"].as_u64() > Some(before), r.to_string())
    });
    let r = first(&state);
    assert!(r["pending_paths"].as_u64() >= Some(3), "{r}");
    assert!(r["oldest_pending_age_s"].as_f64().is_some(), "{r}");

    // Backing off after a few failures is not an error; past
    // --max-failures it is. (The default, 10, could be reached by a slow
    // run of this test with its 1 s back-off, hence the explicit 1000.)
    let (code, v, err) = status(&state, &["--max-failures", "1000"]);
    assert_eq!(code, Some(0), "{v} {err}");
    let h = &v["destinations"][0];
    assert!(h["attempts"].as_u64() >= Some(1), "{v}");
    if h["state"] == "backing_off" {
        assert!(h["next_attempt_unix"].as_u64().is_some(), "{v}");
    }
    let (code, v, err) = status(&state, &["--max-failures", "1"]);
    assert_eq!(code, Some(5), "{v} {err}");
    assert!(
        v["destinations"][0]["problem"]
            .as_str()
            .unwrap()
            .contains("times in a row"),
        "{v}"
    );
    assert!(err.contains("destinations in error: dst"), "{err}");
    wait_for("the status line says backing off until", || {
        let out = text(&cmd(&state, &["status", "--max-failures", "1000"]).stdout);
        (out.contains("dst              backing off until 20"), out)
    });

    // --entries: the oldest paths, escaped; a newline in a name cannot
    // forge a line of the table, and JSON carries the same escape.
    let out = cmd(&state, &["queue", "inspect", "--entries", "10"]);
    let table = text(&out.stdout);
    assert!(table.contains("new\\x0aline DEST 0 0"), "{table}");
    assert!(
        !table.lines().any(|l| l.starts_with("line DEST")),
        "{table}"
    );
    let pending = first(&state)["pending"].as_u64().unwrap();
    let entry_lines = table.lines().filter(|l| l.starts_with("    #")).count();
    assert_eq!(table.lines().count(), 2 + entry_lines, "{table}");
    assert!(entry_lines >= 3 && pending >= 2, "{table}");
    let j = cmd(
        &state,
        &[
            "queue",
            "inspect",
            "--json",
            "--entries",
            "10",
            "--dest",
            "dst",
        ],
    );
    let v: Value = serde_json::from_slice(&j.stdout).unwrap();
    let paths: Vec<&str> = v["destinations"][0]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert!(paths.contains(&"new\\x0aline DEST 0 0"), "{paths:?}");

    drop(guard);
    wait_for("pending returns to 0 once it is writable", || {
        let r = first(&state);
        (r["pending"] == 0 && r["state"] == "in_sync", r.to_string())
    });
    dir.wait_mirror(T);
    let (code, v, _) = status(&state, &["--max-failures", "1"]);
    assert_eq!(code, Some(0), "{v}");
    assert_eq!(v["destinations"][0]["attempts"], 0);
    assert!(d.stop().success());
}

/// Sends one raw line on a connection and reads the answer.
fn ask(s: &mut UnixStream, r: &mut BufReader<UnixStream>, line: &str) -> Value {
    s.write_all(line.as_bytes()).unwrap();
    s.write_all(b"\n").unwrap();
    let mut answer = String::new();
    r.read_line(&mut answer).unwrap();
    serde_json::from_str(&answer).unwrap()
}

#[test]
fn a_second_client_is_served_while_one_stays_connected() {
    let dir = Dir::new();
    let state = dir.state();
    let d = started(&dir, &[]);
    let sock = state.join("control.sock");
    // One client connects and says nothing.
    let mut idle = UnixStream::connect(&sock).unwrap();
    let mut idle_r = BufReader::new(idle.try_clone().unwrap());
    // Another one, raw, and the command line, are served meanwhile.
    let mut other = UnixStream::connect(&sock).unwrap();
    let mut other_r = BufReader::new(other.try_clone().unwrap());
    let a = ask(&mut other, &mut other_r, r#"{"version":1,"op":"status"}"#);
    assert_eq!(a["version"], 1);
    assert_eq!(a["reply"]["kind"], "status");
    assert_eq!(a["reply"]["result"]["daemon"]["pid"], d.pid());
    let (code, _, err) = status(&state, &[]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(first(&state)["state"], "in_sync");

    // The silent one still works, several requests on one connection, and
    // a newer protocol or an unknown op is refused by name.
    let a = ask(&mut idle, &mut idle_r, r#"{"version":2,"op":"status"}"#);
    let e = a["error"].as_str().unwrap();
    assert!(e.contains("version 2 is not supported"), "{a}");
    let a = ask(&mut idle, &mut idle_r, r#"{"version":1,"op":"reboot"}"#);
    assert!(a["error"].as_str().unwrap().contains("\"reboot\""), "{a}");
    let a = ask(&mut idle, &mut idle_r, "not json");
    assert!(
        a["error"].as_str().unwrap().contains("not valid JSON"),
        "{a}"
    );
    let a = ask(
        &mut idle,
        &mut idle_r,
        r#"{"version":1,"op":"inspect","entries":1}"#,
    );
    assert_eq!(a["reply"]["kind"], "inspection", "{a}");
    assert_eq!(
        a["reply"]["result"]["destinations"][0]["entries"],
        serde_json::json!([])
    );
    drop(other);
    // A client still connected does not hold up a clean stop, and sees the
    // connection end.
    assert!(d.stop().success());
    let mut rest = String::new();
    assert_eq!(idle_r.read_line(&mut rest).unwrap_or(0), 0, "{rest}");
    drop(idle);
}

#[test]
fn a_stale_socket_from_a_killed_daemon_is_replaced() {
    let dir = Dir::new();
    let state = dir.state();
    let d = started(&dir, &[]);
    d.kill9();
    let sock = state.join("control.sock");
    assert!(sock.exists(), "kill -9 leaves the socket file");
    // Nobody answers: the commands say the daemon is not running and read
    // the store instead.
    let (code, v, err) = status(&state, &[]);
    assert_eq!(code, Some(6), "{err}");
    assert_eq!(v["destinations"][0]["state"], "stopped");
    assert_eq!(first(&state)["state"], "stopped");
    // The next daemon replaces it and answers.
    let d = dir.start("0.3", &["--no-initial-sync"]);
    d.wait_log("removed the stale control socket", T);
    d.wait_log("watching", T);
    let (code, v, err) = status(&state, &[]);
    assert_eq!(code, Some(0), "{v} {err}");
    assert_eq!(v["daemon"]["pid"], d.pid());
    assert!(d.stop().success());
    assert!(!sock.exists());
}

/// Takes the state directory's lock as a starting daemon holds it.
fn hold_lock(state: &Path) -> fs::File {
    let lock = fs::File::open(state.join("lock")).unwrap();
    // SAFETY: flock on a file descriptor this test owns.
    let r = unsafe {
        libc::flock(
            std::os::fd::AsRawFd::as_raw_fd(&lock),
            libc::LOCK_EX | libc::LOCK_NB,
        )
    };
    assert_eq!(r, 0);
    lock
}

#[test]
fn a_held_lock_without_an_answer_is_waited_for_then_reported() {
    let dir = Dir::new();
    let state = dir.state();
    let d = started(&dir, &[]);
    assert!(d.stop().success());
    // Someone holds the lock (this test, as a daemon starting up would)
    // but no socket answers: the command waits a few seconds for it, then
    // says so instead of reading the store.
    let lock = hold_lock(&state);
    let t = Instant::now();
    let out = cmd(&state, &["queue", "inspect"]);
    drop(lock);
    assert!(t.elapsed() >= Duration::from_secs(4), "{:?}", t.elapsed());
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("but does not answer on"), "{err}");
    assert!(err.contains("control.sock"), "{err}");
    // A lock let go of during the wait (the start ended, or the daemon
    // stopped) gets an answer: a probe run during a start does not fail.
    let lock = hold_lock(&state);
    let release = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(500));
        drop(lock);
    });
    let out = cmd(&state, &["queue", "inspect", "--json"]);
    release.join().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(first(&state)["state"], "stopped");
}

#[test]
fn a_socket_in_a_directory_others_can_write_is_refused() {
    let dir = Dir::new();
    let state = dir.state();
    let d = started(&dir, &[]);
    let set = |mode: u32| fs::set_permissions(&state, fs::Permissions::from_mode(mode)).unwrap();
    for mode in [0o777, 0o775, 0o757] {
        set(mode);
        let out = cmd(&state, &["status"]);
        assert_eq!(out.status.code(), Some(1), "{mode:o}");
        let err = text(&out.stderr);
        assert!(err.contains("refusing to use a control socket"), "{err}");
        assert!(err.contains("chmod go-w"), "{err}");
        let out = cmd(&state, &["queue", "inspect"]);
        assert_eq!(out.status.code(), Some(1), "{mode:o}");
    }
    // Owned by another user: refused too.
    set(0o755);
    std::os::unix::fs::chown(&state, Some(65534), None).unwrap();
    let err = text(&cmd(&state, &["status"]).stderr);
    assert!(err.contains("belongs to uid 65534"), "{err}");
    std::os::unix::fs::chown(&state, Some(0), None).unwrap();
    let (code, _, err) = status(&state, &[]);
    assert_eq!(code, Some(0), "{err}");
    assert!(d.stop().success());

    // A daemon does not start there either.
    set(0o777);
    let mut d = dir.start("0.3", &[]);
    let st = d.wait(T);
    assert!(!st.success());
    assert!(
        d.log().contains("writable by group and others (mode 0777)"),
        "{}",
        d.log()
    );
    assert!(!state.join("control.sock").exists());
    set(0o755);
}

#[test]
fn retry_and_purge_live_and_offline() {
    let dir = Dir::new();
    let state = dir.state();
    // An rsync that fails with a usage error (exit 1: dead-lettered after
    // three attempts) while `flag` exists.
    let (wrapper, flag) = (dir.root.join("rsync-wrapper"), dir.root.join("broken"));
    rsync_wrapper(&wrapper, &dir.root.join("runs"), &flag);
    let w = wrapper.to_str().unwrap();
    // A long back-off cap, so that "tries now" differs from "tries later".
    let d = started_with(&dir, "60", &["--rsync", w]);

    // Dead letters, live: status is in error and says how to retry.
    fs::write(&flag, "").unwrap();
    dir.write("dead-1", "1");
    wait_for("changesets become dead letters", || {
        let r = first(&state);
        (
            r["dead"].as_u64() >= Some(1) && r["pending"] == 0,
            r.to_string(),
        )
    });
    let (code, v, _) = status(&state, &[]);
    assert_eq!(code, Some(5), "{v}");
    let p = v["destinations"][0]["problem"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        p.contains("dead letters") && p.contains("queue retry --dest dst"),
        "{p}"
    );
    assert!(p.contains("rsync exited with 1"), "{p}");
    fs::remove_file(&flag).unwrap();
    let out = cmd(&state, &["queue", "retry", "--dest", "dst"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let said = text(&out.stdout);
    assert!(
        said.starts_with("retry: dst: ")
            && said.contains("dead changesets back in the queue; its worker tries now"),
        "{said}"
    );
    dir.wait_mirror(T);
    wait_for("the revived changeset is acknowledged", || {
        let r = first(&state);
        (r["dead"] == 0 && r["pending"] == 0, r.to_string())
    });
    assert_eq!(status(&state, &[]).0, Some(0));

    // Purge, live: refused without --yes; with it the backlog is gone and
    // the worker stops backing off at once, well before its next attempt
    // (after three failures the back-off is 3 to 4 s).
    let dst = dir.dst();
    let guard = Immutable::new(&dst);
    dir.write("purged", "p");
    let mut next = 0;
    wait_for(
        "the change is pending, backing off after 3 failures",
        || {
            let (_, v, _) = status(&state, &["--max-failures", "1000"]);
            let h = &v["destinations"][0];
            next = h["next_attempt_unix"].as_u64().unwrap_or(0);
            let ok = h["pending"].as_u64() >= Some(1)
                && h["attempts"].as_u64() >= Some(3)
                && h["state"] == "backing_off";
            (ok, v.to_string())
        },
    );
    let out = cmd(&state, &["queue", "purge", "--dest", "dst"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--yes"), "{}", text(&out.stderr));
    assert!(first(&state)["pending"].as_u64() >= Some(1));
    let out = cmd(&state, &["queue", "purge", "--dest", "dst", "--yes"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("changesets dropped; its worker tries now"));
    wait_for("the purged destination is in sync", || {
        let r = first(&state);
        (r["pending"] == 0 && r["state"] == "in_sync", r.to_string())
    });
    // `next` is rounded up to the second: one second less is still before
    // the scheduled attempt.
    assert!(
        now_unix() < next as f64 - 1.0,
        "in sync only at the scheduled retry ({next}): the worker was not woken"
    );
    drop(guard);
    let out = cmd(&state, &["queue", "purge", "--dest", "nope", "--yes"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("known: dst"),
        "{}",
        text(&out.stderr)
    );

    // Offline: dead letters made live, then retried and purged with no
    // daemon running.
    fs::write(&flag, "").unwrap();
    dir.write("dead-2", "2");
    wait_for("a dead letter again", || {
        let r = first(&state);
        (r["dead"].as_u64() >= Some(1), r.to_string())
    });
    assert!(d.stop().success());
    fs::remove_file(&flag).unwrap();
    let out = cmd(&state, &["queue", "retry"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("no daemon is running"),
        "{}",
        text(&out.stdout)
    );
    let r = first(&state);
    assert_eq!(
        (r["dead"].as_u64(), r["pending"].as_u64()),
        (Some(0), Some(1)),
        "{r}"
    );
    let out = cmd(&state, &["queue", "purge", "--dest", "dst", "--yes"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(first(&state)["pending"], 0);
    // The purged changesets were dropped for good: dead-2 is not replayed.
    let d = dir.start("0.3", &["--no-initial-sync", "--rsync", w]);
    d.wait_log("watching", T);
    assert!(
        still_differs(&dir.src(), &dir.dst(), Duration::from_millis(1500))
            .iter()
            .any(|l| l.contains("dead-2"))
    );
    assert!(d.stop().success());
}

/// Runs `syncd ARGS` with its stdout in a pipe the reader closes after one
/// line, as `| head -1` does; returns the exit code and stderr.
fn closed_after_one_line(state: &Path, args: &[&str]) -> (Option<i32>, String) {
    let mut child = Command::new(bin())
        .args(args)
        .arg("--state-dir")
        .arg(state)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(!first.is_empty());
    let out = child.wait_with_output().unwrap();
    (out.status.code(), text(&out.stderr))
}

#[test]
fn output_in_a_pipe_closed_early_is_not_an_error() {
    let dir = Dir::new();
    let state = dir.state();
    let d = started(&dir, &[]);
    let dst = dir.dst();
    let guard = Immutable::new(&dst);
    // Enough pending paths that the table and JSON outgrow a pipe's buffer.
    let long = "x".repeat(100);
    for i in 0..2000 {
        dir.write(format!("{long}-{i:05}"), "");
    }
    wait_for("2000 paths pending", || {
        let r = first(&state);
        (r["pending_paths"].as_u64() >= Some(2000), r.to_string())
    });
    for args in [
        &["queue", "inspect", "--entries", "5000"][..],
        &["queue", "inspect", "--json", "--entries", "5000"][..],
    ] {
        let (code, err) = closed_after_one_line(&state, args);
        assert_eq!(code, Some(0), "live {args:?}: {err}");
        assert!(err.is_empty(), "live {args:?}: {err}");
    }
    assert!(d.stop().success());
    for args in [
        &["queue", "inspect", "--entries", "5000"][..],
        &["queue", "inspect", "--json", "--entries", "5000"][..],
    ] {
        let (code, err) = closed_after_one_line(&state, args);
        assert_eq!(code, Some(0), "offline {args:?}: {err}");
        assert!(err.is_empty(), "offline {args:?}: {err}");
    }
    drop(guard);
}

/// Runs `syncd ARGS --state-dir STATE` over and over until `stop`, and
/// returns each run's exit code and stderr.
fn in_a_loop(
    state: &Path,
    args: &'static [&'static str],
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<Vec<(Option<i32>, String)>> {
    let state = state.to_path_buf();
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let out = cmd(&state, args);
            seen.push((out.status.code(), text(&out.stderr)));
        }
        seen
    })
}

/// A monitoring check that runs `syncd status` every few seconds must
/// never make `systemctl start syncd` fail (issue 16, item 2). An offline
/// command holds the lock shared for a moment, and a starting daemon waits
/// for it; two offline commands share it and take turns on sled's lock.
#[test]
fn offline_queue_commands_never_make_a_starting_daemon_fail() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let dir = Dir::new();
    dir.write("a", "1");
    let state = dir.state();
    let d = started(&dir, &[]);
    assert!(d.stop().success());

    // The lock held shared for a second, as an offline command holds it.
    let lock = fs::File::open(state.join("lock")).unwrap();
    // SAFETY: flock on a file descriptor this test owns.
    let r = unsafe {
        libc::flock(
            std::os::fd::AsRawFd::as_raw_fd(&lock),
            libc::LOCK_SH | libc::LOCK_NB,
        )
    };
    assert_eq!(r, 0);
    let release = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(1));
        drop(lock);
    });
    let d = dir.start("0.3", &["--no-initial-sync"]);
    d.wait_log("watching", T);
    release.join().unwrap();
    assert!(d.log().contains("waited"), "{}", d.log());
    assert!(d.stop().success());

    // Two offline readers at once, no daemon: both always get through.
    let stop = Arc::new(AtomicBool::new(false));
    let a = in_a_loop(&state, &["queue", "inspect", "--json"], stop.clone());
    let b = in_a_loop(&state, &["queue", "inspect", "--json"], stop.clone());
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    for (code, err) in a.join().unwrap().into_iter().chain(b.join().unwrap()) {
        assert_eq!(code, Some(0), "two offline readers collided: {err}");
    }

    // `status` and `inspect` in tight loops while the daemon starts and
    // stops three times: every start comes up.
    let stop = Arc::new(AtomicBool::new(false));
    let a = in_a_loop(&state, &["status"], stop.clone());
    let b = in_a_loop(&state, &["queue", "inspect"], stop.clone());
    for _ in 0..3 {
        let d = dir.start("0.3", &["--no-initial-sync"]);
        d.wait_log("watching", T);
        std::thread::sleep(Duration::from_millis(300));
        assert!(d.stop().success());
    }
    stop.store(true, Ordering::Relaxed);
    let seen: Vec<_> = a
        .join()
        .unwrap()
        .into_iter()
        .chain(b.join().unwrap())
        .collect();
    assert!(seen.len() > 10, "the loops ran: {}", seen.len());
    for (code, err) in seen {
        // 0 live or offline, 6 status offline, 1 while a daemon starts or
        // stops (it holds the lock but does not answer yet): never a
        // store that another process has open.
        assert!(matches!(code, Some(0 | 1 | 6)), "{code:?}: {err}");
        assert!(!err.contains("has it open"), "{err}");
    }
}
