//! Running as a service: sd_notify READY/STOPPING, syslog output with a
//! facility, and SIGHUP queueing a full sync.

use std::ffi::OsString;
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::util::*;

const T: Duration = Duration::from_secs(30);

fn recv_until(sock: &UnixDatagram, needle: &str) -> String {
    sock.set_read_timeout(Some(T)).unwrap();
    let mut all = String::new();
    let mut buf = vec![0u8; 65536];
    loop {
        let n = sock
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("no {needle:?} within {T:?} ({e}); got:\n{all}"));
        all.push_str(&String::from_utf8_lossy(&buf[..n]));
        all.push('\n');
        if all.contains(needle) {
            return all;
        }
    }
}

#[test]
fn sd_notify_reports_ready_then_stopping() {
    let dir = Dir::new();
    let path = dir.root.join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    let log = std::fs::File::create(dir.root.join("notify.log")).unwrap();
    let mut child = Command::new(bin())
        .args(dir.run_args("0.2"))
        .env("NOTIFY_SOCKET", &path)
        .stdin(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let got = recv_until(&sock, "READY=1");
    assert!(got.contains("STATUS=watching"), "{got}");
    // SAFETY: our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let got = recv_until(&sock, "STOPPING=1");
    assert!(got.contains("STOPPING=1"));
    assert!(child.wait().unwrap().success());
}

#[test]
fn syslog_gets_one_datagram_per_line_with_the_facility() {
    let dir = Dir::new();
    let path = dir.root.join("log.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    let mut args: Vec<OsString> = vec!["-s".into(), "--syslog-facility".into(), "local3".into()];
    args.push("--syslog-socket".into());
    args.push(path.clone().into());
    args.extend(dir.run_args("0.2"));
    let d = Daemon::start(&args, &dir.root.join("stderr.log"));
    // local3 (19) * 8 + info (6) = 158.
    let got = recv_until(&sock, "watching");
    assert!(
        got.lines()
            .any(|l| l.starts_with("<158>syncd[") && l.contains("watching")),
        "{got}"
    );
    assert!(d.log().is_empty(), "nothing on stderr with -s: {}", d.log());
    assert!(d.stop().success());
}

#[test]
fn an_unknown_syslog_facility_is_a_usage_error() {
    let dir = Dir::new();
    let mut args: Vec<OsString> = vec!["-s".into(), "--syslog-facility".into(), "local9".into()];
    args.extend(dir.run_args("0.2"));
    let out = Command::new(bin()).args(&args).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("local9"));
}

#[test]
fn sighup_queues_a_full_sync_that_repairs_drift() {
    let dir = Dir::new();
    dir.write("a/b", "1");
    let d = dir.start_synced("0.2", &[]);
    // The destination drifts behind syncd's back; no event can notice.
    std::fs::write(dir.dst().join("a/b"), "drift").unwrap();
    std::fs::write(dir.dst().join("extra"), "x").unwrap();
    assert!(!mirror_diff(&dir.src(), &dir.dst()).is_empty());
    d.signal(libc::SIGHUP);
    d.wait_log("SIGHUP", T);
    dir.wait_mirror(T);
    assert!(d.stop().success());
}

#[test]
fn the_man_page_and_completions_are_generated_from_the_cli() {
    let out = syncd(&["man".as_ref()]);
    assert!(out.status.success());
    let man = String::from_utf8(out.stdout).unwrap();
    assert!(man.contains(".TH syncd 1"), "{man}");
    for sub in ["run", "queue", "completions"] {
        assert!(man.contains(sub), "the man page lists {sub}");
    }
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = syncd(&["completions".as_ref(), shell.as_ref()]);
        assert!(out.status.success(), "{shell}");
        let script = String::from_utf8(out.stdout).unwrap();
        assert!(
            script.contains("syncd") && script.contains("state-dir"),
            "{shell}"
        );
    }
    // The bash script is valid bash.
    let dir = Dir::new();
    let p = dir.root.join("syncd.bash");
    std::fs::write(&p, syncd(&["completions".as_ref(), "bash".as_ref()]).stdout).unwrap();
    assert!(Command::new("bash")
        .arg("-n")
        .arg(&p)
        .status()
        .unwrap()
        .success());
    let out = syncd(&["completions".as_ref(), "tcsh".as_ref()]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn dry_run_prints_changesets_and_command_lines_and_touches_nothing() {
    let dir = Dir::new();
    dir.write("existing", "1");
    let d = dir.start("0.2", &["--dry-run"]);
    d.wait_log("would run", T);
    assert!(
        d.log().contains("(the whole tree)"),
        "the initial full sync is shown: {}",
        d.log()
    );
    dir.write(b"new\nline", "2");
    dir.write("sub/-e sh", "3");
    std::fs::remove_file(dir.s("existing")).unwrap();
    d.wait_log("changeset 2", T);
    std::thread::sleep(Duration::from_millis(500));
    let log = d.log();
    assert!(
        log.contains("new\\x0aline"),
        "names are escaped, one per line: {log}"
    );
    assert!(log.contains("gone  existing"), "{log}");
    assert!(
        log.contains("tree  sub") || log.contains("file  sub/-e sh"),
        "{log}"
    );
    assert!(
        log.contains("--files-from=-") && log.contains("--delete-missing-args"),
        "{log}"
    );
    assert!(d.stop().success());
    assert!(!dir.state().exists(), "no state directory was created");
    assert_eq!(
        std::fs::read_dir(dir.dst()).unwrap().count(),
        0,
        "the destination was not touched"
    );
}

fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

fn metric(text: &str, line_start: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {line_start} in:\n{text}"))
}

#[test]
fn metrics_are_served_on_loopback_and_follow_the_queue() {
    let dir = Dir::new();
    let d = dir.start_synced("0.2", &["--metrics-listen", "0"]);
    let log = d.log();
    let addr = log
        .split("serving metrics on http://")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .expect("the log names the metrics address")
        .to_string();
    assert!(addr.starts_with("127.0.0.1:"), "{addr}");
    // "synced" is logged just before the run's counters are updated.
    let t = std::time::Instant::now();
    let text = loop {
        let text = http_get(&addr, "/metrics");
        let ok = "syncd_rsync_runs_total{dest=\"dst\",result=\"success\"}";
        if text.contains("200") && metric(&text, ok) >= 1.0 {
            break text;
        }
        assert!(t.elapsed() < T, "{text}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        text.starts_with("HTTP/1.1 200") || text.starts_with("HTTP/1.0 200"),
        "{text}"
    );
    assert!(text.contains("text/plain; version=0.0.4"), "{text}");
    assert_eq!(metric(&text, "syncd_pending_changesets{dest=\"dst\"}"), 0.0);
    assert!(metric(&text, "syncd_last_success_timestamp_seconds{dest=\"dst\"}") > 1e9);
    // The main loop's step times, as a histogram whose buckets add up (a
    // step is counted when it ends: this scrape is in the next one).
    let text = http_get(&addr, "/metrics");
    assert!(
        text.contains("# TYPE syncd_main_loop_step_seconds histogram"),
        "{text}"
    );
    assert_eq!(metric(&text, "syncd_unwatched_directories"), 0.0);
    let steps = metric(&text, "syncd_main_loop_step_seconds_count");
    assert!(steps >= 1.0, "{text}");
    assert_eq!(
        metric(&text, "syncd_main_loop_step_seconds_bucket{le=\"+Inf\"}"),
        steps
    );

    // Bytes sent grow by at least the size of a new file (random, so
    // nothing shrinks it), once its run ended.
    let before = metric(&text, "syncd_bytes_sent_total{dest=\"dst\"}");
    dir.write("known-size", random_bytes(300_000));
    let t = std::time::Instant::now();
    loop {
        let text = http_get(&addr, "/metrics");
        let now = metric(&text, "syncd_bytes_sent_total{dest=\"dst\"}");
        if now >= before + 300_000.0 {
            break;
        }
        assert!(
            t.elapsed() < T,
            "bytes sent stayed at {now} (before: {before})"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    dir.wait_mirror(T);

    let guard = Immutable::new(&dir.dst());
    dir.write("blocked", "x");
    d.wait_log("stay queued", T);
    let text = http_get(&addr, "/metrics");
    assert!(
        metric(&text, "syncd_pending_changesets{dest=\"dst\"}") >= 1.0,
        "{text}"
    );
    assert!(
        metric(
            &text,
            "syncd_rsync_runs_total{dest=\"dst\",result=\"retry\"}"
        ) >= 1.0,
        "{text}"
    );
    assert!(
        text.contains("syncd_destination_state{dest=\"dst\",state=\"backing_off\"} 1")
            || text.contains("state=\"syncing\""),
        "{text}"
    );
    drop(guard);
    dir.wait_mirror(T);
    assert!(http_get(&addr, "/other").contains("404"));
    assert!(d.stop().success());
}

#[test]
fn metrics_textfile_is_written_for_node_exporter() {
    let dir = Dir::new();
    let file = dir.root.join("syncd.prom");
    let f = file.to_str().unwrap().to_string();
    let d = dir.start_synced("0.2", &["--metrics-textfile", &f]);
    wait_until("the textfile written", T, || file.exists());
    assert!(d.stop().success());
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.contains("# TYPE syncd_pending_changesets gauge"),
        "{text}"
    );
    assert_eq!(metric(&text, "syncd_pending_changesets{dest=\"dst\"}"), 0.0);
}

fn random_bytes(n: usize) -> Vec<u8> {
    let mut rng = Rng::from_env("random_bytes");
    let mut v = Vec::with_capacity(n + 8);
    while v.len() < n {
        v.extend_from_slice(&rng.next().to_le_bytes());
    }
    v.truncate(n);
    v
}

/// `syncd status` for the test's state directory: the JSON and the text.
fn status(dir: &Dir) -> (serde_json::Value, String) {
    let state = dir.state();
    let run = |json: bool| {
        let mut a: Vec<&std::ffi::OsStr> = vec!["status".as_ref(), "--state-dir".as_ref()];
        a.push(state.as_os_str());
        if json {
            a.push("--json".as_ref());
        }
        String::from_utf8_lossy(&syncd(&a).stdout).into_owned()
    };
    let v = serde_json::from_str(&run(true)).unwrap_or(serde_json::Value::Null);
    (v, run(false))
}

#[test]
fn a_long_full_sync_shows_its_progress_in_status_and_the_log() {
    let dir = Dir::new();
    // 5 MB at --bwlimit 400K take about 12 s: long enough for a progress
    // line in the log (one every 10 s) and for status to catch it running.
    for i in 0..50 {
        dir.write(format!("d{}/f{i:02}", i % 5), random_bytes(100_000));
    }
    let d = dir.start("0.2", &["--bwlimit", "400K"]);
    let t = std::time::Instant::now();
    let text = loop {
        let (v, text) = status(&dir);
        let p = &v["destinations"][0]["progress"];
        if p["percent"].is_u64() && p["files_total"].is_u64() {
            assert_eq!(v["destinations"][0]["state"], "syncing", "{v}");
            assert!(
                p["files_total"].as_u64() >= Some(55),
                "50 files and 6 dirs: {p}"
            );
            assert!(p["elapsed_s"].is_u64(), "{p}");
            break text;
        }
        assert!(t.elapsed() < T, "status never showed progress: {v}");
        std::thread::sleep(Duration::from_millis(200));
    };
    let line = text.lines().find(|l| l.starts_with("dst ")).unwrap_or("");
    assert!(
        line.contains("; full sync: ") && line.contains("% ("),
        "{text}"
    );
    d.wait_log("] full sync: ", T);
    let log = d.log();
    let logged = log.lines().find(|l| l.contains("] full sync: ")).unwrap();
    assert!(
        logged.contains("% (") && logged.contains(" of ") && logged.contains("files"),
        "{logged}"
    );
    dir.wait_mirror(T);
    d.wait_log("] synced", T);
    let (v, _) = status(&dir);
    assert!(v["destinations"][0]["progress"].is_null(), "{v}");
    assert!(d.stop().success());
}
