//! A large backlog must not stall the daemon (issue 16, item 9): with
//! 500,000 changesets pending for a destination that is down, `syncd
//! status` answers in under 50 ms and event intake never pauses for more
//! than 10 ms.
//!
//! The set-up: a daemon runs once so its store knows the destination (an
//! rsync daemon URL on a loopback port nobody listens on, so every attempt
//! and probe fails at once), stops, and the bench commits the backlog
//! straight into the store with `Store::commit`, as the committer would
//! (two file entries each, one flush each: about two minutes for 500,000).
//! Then the daemon starts on that store and, while a writer changes a file
//! in SOURCE every 2 ms (each change is an event the main loop must take
//! in; 5 s alone first and last), the bench times, one after another, the
//! read-only commands an operator or a monitor runs against it: `status`,
//! `status --json`, `queue inspect`, `queue inspect --entries 10` and a
//! scrape of the metrics endpoint; then `queue inspect` offline (daemon
//! stopped, the store opened by the command itself; `status` needs a
//! daemon). Intake pauses are the daemon's own figure: the main loop times
//! every step between two waits (an event, a control request, a scrape, a
//! commit), and `status --json` reports the slowest step and how many took
//! over 10 ms.
//!
//! Run: `cargo bench --bench backlog` (500,000 changesets); `-- --quick`
//! for 50,000; `cargo test --benches` passes `--test`, which uses 2,000.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use syncd::changeset::{Changeset, Entry, Kind};
use syncd::store::Store;

const BIN: &str = env!("CARGO_BIN_EXE_syncd");
const TIMED_RUNS: usize = 30;
/// How long the writer runs alone before and after the timed commands.
const SETTLE: Duration = Duration::from_secs(5);

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

struct Setup {
    root: PathBuf,
    dest: String,
    metrics_port: u16,
}

impl Setup {
    fn state(&self) -> PathBuf {
        self.root.join("state")
    }

    fn src(&self) -> PathBuf {
        self.root.join("src")
    }

    fn start(&self) -> Child {
        let log = std::fs::File::create(self.root.join("syncd.log")).expect("the log file");
        let mut src = self.src().into_os_string();
        src.push("/./");
        let child = Command::new(BIN)
            .arg("run")
            .arg("--state-dir")
            .arg(self.state())
            .args(["--delay", "0.05", "--initial-sync", "none"])
            .args([
                "--metrics-listen",
                &format!("127.0.0.1:{}", self.metrics_port),
            ])
            .arg(src)
            .arg(&self.dest)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("the log file"))
            .stderr(log)
            .spawn()
            .expect("syncd starts");
        self.wait_log("watching");
        child
    }

    fn wait_log(&self, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            let log = std::fs::read_to_string(self.root.join("syncd.log")).unwrap_or_default();
            if log.contains(what) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("syncd did not log {what:?} within 120 s");
    }

    fn syncd(&self, args: &[&str]) -> (Duration, String) {
        let t = Instant::now();
        let out = Command::new(BIN)
            .args(args)
            .arg("--state-dir")
            .arg(self.state())
            .output()
            .expect("syncd runs");
        let took = t.elapsed();
        // status exits 5 for a destination in error (a backlog that keeps
        // failing is one); anything else is a failed bench.
        assert!(
            matches!(out.status.code(), Some(0 | 5)),
            "syncd {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        (took, String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn scrape(&self) -> (Duration, String) {
        let t = Instant::now();
        let mut s = TcpStream::connect(("127.0.0.1", self.metrics_port)).expect("metrics");
        s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n")
            .expect("metrics request");
        let mut body = String::new();
        s.read_to_string(&mut body).expect("metrics answer");
        (t.elapsed(), body)
    }
}

fn stop(mut child: Child) {
    // SAFETY: kill(2) on the pid of a child this bench started.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
}

/// The nearest-rank percentile of sorted samples.
fn pct(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn row(what: &str, mut t: Vec<Duration>) {
    t.sort();
    println!(
        "| {what} | {} | {} | {} | {} |",
        t.len(),
        ms(pct(&t, 50.0)),
        ms(pct(&t, 90.0)),
        ms(*t.last().unwrap())
    );
}

fn timed(n: usize, mut f: impl FnMut() -> Duration) -> Vec<Duration> {
    (0..n).map(|_| f()).collect()
}

/// Commits `n` two-file changesets into the destination's queue.
fn fill(state: &Path, n: usize) -> Duration {
    let store = Store::open(state).expect("the store opens");
    let targets = store.targets();
    assert_eq!(targets.len(), 1, "one destination in the store");
    let target = std::ffi::OsStr::from_bytes(&targets[0]);
    let queue = store.queue(target).expect("the queue");
    let t = Instant::now();
    for i in 0..n {
        let cs = Changeset::new(
            syncd::store::now_ms(),
            vec![
                Entry::new(Kind::File, format!("proj{}/src/file_{i:07}.rs", i % 97)),
                Entry::new(Kind::File, format!("proj{}/README", i % 97)),
            ],
        );
        store
            .commit(std::slice::from_ref(&queue), &cs, syncd::store::now_ms())
            .expect("a commit");
    }
    t.elapsed()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n = if args.iter().any(|a| a == "--test") {
        2_000
    } else if args.iter().any(|a| a == "--quick") {
        50_000
    } else {
        500_000
    };
    let tmp = tempfile::Builder::new()
        .prefix("syncd-bench-backlog-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("a temporary directory under target/");
    let s = Setup {
        root: tmp.path().to_path_buf(),
        dest: format!("rsync://127.0.0.1:{}/mirror/", free_port()),
        metrics_port: free_port(),
    };
    std::fs::create_dir_all(s.src().join("w")).expect("SOURCE");
    stop(s.start());
    let filled = fill(&s.state(), n);
    println!(
        "{n} changesets committed for a destination that is down in {:.1} s",
        filled.as_secs_f64()
    );

    let daemon = s.start();
    let writing = Arc::new(AtomicBool::new(true));
    let writer = {
        let (writing, dir) = (writing.clone(), s.src().join("w"));
        std::thread::spawn(move || {
            let mut i = 0u64;
            while writing.load(Ordering::Relaxed) {
                let _ = std::fs::write(dir.join(format!("f{}", i % 100)), i.to_le_bytes());
                i += 1;
                std::thread::sleep(Duration::from_millis(2));
            }
            i
        })
    };
    let (_, text) = s.syncd(&["status"]);
    assert!(
        text.contains(&n.to_string()),
        "status shows the backlog:\n{text}"
    );
    // Windows of the writer's changes are committed behind the backlog
    // meanwhile, and the worker keeps failing on it.
    std::thread::sleep(SETTLE);
    println!();
    println!("| live, {n} changesets pending, a change every 2 ms | runs | p50 | p90 | max |");
    println!("|---|---:|---:|---:|---:|");
    row(
        "`syncd status`",
        timed(TIMED_RUNS, || s.syncd(&["status"]).0),
    );
    row(
        "`syncd status --json`",
        timed(TIMED_RUNS, || s.syncd(&["status", "--json"]).0),
    );
    row(
        "`syncd queue inspect`",
        timed(TIMED_RUNS, || s.syncd(&["queue", "inspect"]).0),
    );
    row(
        "`syncd queue inspect --entries 10`",
        timed(TIMED_RUNS, || {
            s.syncd(&["queue", "inspect", "--entries", "10"]).0
        }),
    );
    row("GET /metrics", timed(TIMED_RUNS, || s.scrape().0));
    std::thread::sleep(SETTLE);
    let (_, json) = s.syncd(&["status", "--json"]);
    writing.store(false, Ordering::Relaxed);
    let changes = writer.join().expect("the writer");
    let v: serde_json::Value = serde_json::from_str(&json).expect("status --json is JSON");
    let main_loop = &v["daemon"]["main_loop"];
    println!();
    println!(
        "main loop while {changes} changes were made and the commands above ran: \
         {} steps, slowest {:.2} ms ({}), {} over 10 ms",
        main_loop["steps"],
        main_loop["slowest_step_ms"].as_f64().unwrap_or(f64::NAN),
        main_loop["slowest_step"].as_str().unwrap_or("?"),
        main_loop["steps_over_10ms"]
    );
    stop(daemon);

    println!();
    println!("| offline, {n} changesets pending | runs | p50 | p90 | max |");
    println!("|---|---:|---:|---:|---:|");
    row(
        "`syncd queue inspect`",
        timed(TIMED_RUNS, || s.syncd(&["queue", "inspect"]).0),
    );
    row(
        "`syncd queue inspect --entries 10`",
        timed(TIMED_RUNS, || {
            s.syncd(&["queue", "inspect", "--entries", "10"]).0
        }),
    );
}
