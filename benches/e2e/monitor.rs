//! Counting and timing rsync runs: a wrapper named `rsync` that logs each
//! invocation and then becomes the real rsync, and a thread that follows
//! the log and notices when each run ends.
//!
//! The wrapper appends `$EPOCHREALTIME $$ ARGS` to a log and `exec`s
//! /usr/bin/rsync, so the logged pid *is* the rsync process, the daemon's
//! child, and its CPU lands in the daemon's children's time like any rsync
//! it runs. A run has ended when that pid is gone or a zombie; the monitor
//! polls every few milliseconds, so an end is known to within that much.
//! Both daemons only ever write DEST through rsync, so the moment DEST
//! became an exact mirror is the end of some run: the benchmark compares
//! the trees only between runs and dates a successful comparison to the
//! end of the last run before it, which makes the figure independent of
//! how long the comparison itself takes.

use std::fs;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::tree::now;

/// How often the monitor looks at the log and at running pids.
const POLL: Duration = Duration::from_millis(4);

/// Writes the wrapper as `bin/rsync`, logging to `log`.
pub fn write_wrapper(bin: &Path, log: &Path, real: &Path) -> io::Result<PathBuf> {
    fs::create_dir_all(bin)?;
    let path = bin.join("rsync");
    let script = format!(
        "#!/bin/bash\n\
         # Written by the e2e benchmark: log the invocation, then become rsync.\n\
         printf '%s %s %s\\n' \"$EPOCHREALTIME\" \"$$\" \"$*\" >> '{}'\n\
         exec '{}' \"$@\"\n",
        log.display(),
        real.display()
    );
    fs::write(&path, script)?;
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755))?;
    fs::write(log, b"")?;
    Ok(path)
}

/// Like [`write_wrapper`], for lsyncd: rsync also gets `--stats`, and its
/// standard output (the totals) is appended to `stats`, so the bytes it
/// sent can be read afterwards (syncd logs them itself).
pub fn write_stats_wrapper(
    bin: &Path,
    log: &Path,
    real: &Path,
    stats: &Path,
) -> io::Result<PathBuf> {
    fs::create_dir_all(bin)?;
    let path = bin.join("rsync");
    let script = format!(
        "#!/bin/bash\n\
         # Written by the e2e benchmark: log the invocation, then become rsync --stats.\n\
         printf '%s %s %s\\n' \"$EPOCHREALTIME\" \"$$\" \"$*\" >> '{}'\n\
         exec '{}' --stats \"$@\" >> '{}'\n",
        log.display(),
        real.display(),
        stats.display()
    );
    fs::write(&path, script)?;
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755))?;
    fs::write(stats, b"")?;
    Ok(path)
}

/// A wrapper named `ssh` that logs to the same run log as the rsync
/// wrapper and becomes /usr/bin/ssh: lsyncd rsyncssh's `mv` commands then
/// count as runs (they write DEST, as rsync does). Put it where rsync does
/// not find it on PATH (rsync's own ssh is not a run).
pub fn write_ssh_wrapper(bin: &Path, log: &Path) -> io::Result<PathBuf> {
    fs::create_dir_all(bin)?;
    let path = bin.join("ssh");
    let script = format!(
        "#!/bin/bash\n\
         # Written by the e2e benchmark: log the invocation, then become ssh.\n\
         printf '%s %s %s\\n' \"$EPOCHREALTIME\" \"$$\" \"$*\" >> '{}'\n\
         exec /usr/bin/ssh \"$@\"\n",
        log.display(),
    );
    fs::write(&path, script)?;
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755))?;
    Ok(path)
}

/// One rsync invocation.
#[derive(Debug, Clone)]
pub struct Run {
    pub start: f64,
    pub pid: i32,
    /// When the monitor first saw it gone; `None` while it runs.
    pub end: Option<f64>,
}

/// Follows one wrapper log.
pub struct Monitor {
    runs: Arc<Mutex<Vec<Run>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Monitor {
    pub fn start(log: &Path) -> Monitor {
        let runs = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, s, log) = (runs.clone(), stop.clone(), log.to_path_buf());
        let thread = std::thread::spawn(move || follow(&log, &r, &s));
        Monitor {
            runs,
            stop,
            thread: Some(thread),
        }
    }

    /// Every run that started at or after `t`.
    pub fn since(&self, t: f64) -> Vec<Run> {
        self.runs
            .lock()
            .map(|v| v.iter().filter(|r| r.start >= t).cloned().collect())
            .unwrap_or_default()
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn follow(log: &Path, runs: &Mutex<Vec<Run>>, stop: &AtomicBool) {
    let mut offset = 0u64;
    let mut partial = String::new();
    while !stop.load(Ordering::Relaxed) {
        let new = read_from(log, &mut offset).unwrap_or_default();
        partial.push_str(&new);
        let t = now();
        if let Ok(mut v) = runs.lock() {
            while let Some(nl) = partial.find('\n') {
                let line: String = partial.drain(..=nl).collect();
                if let Some(run) = parse(&line) {
                    v.push(run);
                }
            }
            for r in v.iter_mut().filter(|r| r.end.is_none()) {
                if !alive(r.pid) {
                    r.end = Some(t);
                }
            }
        }
        std::thread::sleep(POLL);
    }
}

/// `START PID ARGS` → a run; `--version` probes (syncd checks its rsync at
/// start) are not runs.
fn parse(line: &str) -> Option<Run> {
    let mut it = line.trim_end().splitn(3, ' ');
    let start = it.next()?.parse().ok()?;
    let pid = it.next()?.parse().ok()?;
    let args = it.next().unwrap_or("");
    if args.split(' ').any(|a| a == "--version") {
        return None;
    }
    Some(Run {
        start,
        pid,
        end: None,
    })
}

fn read_from(path: &Path, offset: &mut u64) -> io::Result<String> {
    let mut f = fs::File::open(path)?;
    f.seek(SeekFrom::Start(*offset))?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf)?;
    *offset += buf.len() as u64;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// Whether `pid` still runs (a zombie has ended; its parent just has not
/// reaped it yet).
pub fn alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}
