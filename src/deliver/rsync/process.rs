//! One rsync child process: started in its own process group (killed with
//! the daemon through `PR_SET_PDEATHSIG`), fed its list, watched, and
//! judged.
//!
//! rsync's stderr is read on its own thread (so a chatty rsync cannot
//! deadlock against the list being written), each line logged with the
//! destination's name, the tail kept for the status and scanned for
//! permanent causes that [`super::exitcode`] weighs with the exit code.
//! stdout is read on a third thread and handed, line by line, to the
//! caller ([`super::progress`] parses the totals of every run and the
//! progress of a full sync from it). The caller's poll function runs every
//! 50 ms and can end the run (shutdown, the stall watchdog).

use std::ffi::{OsStr, OsString};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::exitcode::{self, Class, Hint};

/// What the caller's poll function wants the running rsync to do.
pub enum Control {
    Continue,
    /// End the run (shutdown, watchdog). The reason goes into the outcome.
    Abort(String),
}

/// How one rsync run ended.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub code: Option<i32>,
    pub class: Class,
    /// A one-line summary for logs and `last_error`.
    pub summary: String,
    pub elapsed: Duration,
}

/// Takes rsync's stdout, one line at a time, on the reader thread.
pub type LineSink = Box<dyn FnMut(&[u8]) + Send>;

/// Where a run's output goes.
pub struct Io {
    /// Prefixes rsync's stderr lines in the log.
    pub name: String,
    /// The level of those lines: warn for syncs; debug for probes, whose
    /// errors are expected answers.
    pub stderr_level: log::Level,
    /// Gets each stdout line (split at `\n` and at `\r`, which rsync's
    /// progress ends its lines with; at most 64 KiB), on the reader thread.
    pub stdout: LineSink,
}

impl Io {
    /// stderr logged as warnings under `name`, stdout dropped.
    pub fn logged(name: &str) -> Io {
        Io {
            name: name.to_string(),
            stderr_level: log::Level::Warn,
            stdout: Box::new(|_| {}),
        }
    }
}

/// Runs rsync with `args`, feeds it `input`, and waits, calling `poll`
/// every 50 ms; `poll` can end the run. `io` says where its output goes.
pub fn run(
    program: &OsStr,
    args: &[OsString],
    input: Vec<u8>,
    io: Io,
    mut poll: impl FnMut(u32) -> Control,
) -> Outcome {
    let started = Instant::now();
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    // SAFETY: prctl is async-signal-safe and touches only this process.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return Outcome {
                code: None,
                class: Class::Retry,
                summary: format!("cannot start {}: {e}", program.to_string_lossy()),
                elapsed: started.elapsed(),
            }
        }
    };
    let pid = child.id();
    let feeder = feed(&mut child, input);
    let said = Arc::new(Mutex::new(Said::default()));
    let reader = read_stderr(&mut child, io.name, io.stderr_level, said.clone());
    let out_reader = read_stdout(&mut child, io.stdout);
    let mut aborted: Option<String> = None;
    let status = loop {
        if exited(pid) {
            // Whatever is left of its process group (an ssh blocked in a
            // write ignores SIGTERM) would hold stderr open and hang the
            // reader: it goes now, while the zombie leader still pins the
            // group id.
            kill_group(pid, libc::SIGKILL);
            break child.wait();
        }
        if aborted.is_none() {
            if let Control::Abort(why) = poll(pid) {
                terminate(pid);
                aborted = Some(why);
                continue;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // An ssh master connection holds the session's stdin and stderr (the
    // client passed them over the control socket) until the remote end
    // closes the session; a hung remote would hang these joins. Wait a
    // little, then let the threads finish on their own.
    let until = Instant::now() + Duration::from_secs(2);
    join_by(feeder, until);
    join_by(reader, until);
    join_by(out_reader, until);
    let said = said.lock().map(|s| s.clone()).unwrap_or_default();
    let elapsed = started.elapsed();
    match status {
        Err(e) => Outcome {
            code: None,
            class: Class::Retry,
            summary: format!("waiting for rsync failed: {e}"),
            elapsed,
        },
        Ok(st) => outcome(st, aborted, &said, elapsed),
    }
}

/// What rsync (and ssh, which shares its stderr) printed: the last lines
/// for the summary, and the first line that names a permanent cause.
#[derive(Debug, Clone, Default)]
struct Said {
    tail: Vec<String>,
    hint: Option<Hint>,
}

fn outcome(st: ExitStatus, aborted: Option<String>, said: &Said, elapsed: Duration) -> Outcome {
    let code = st.code();
    let class = if aborted.is_some() {
        Class::Retry
    } else {
        exitcode::classify(code, said.hint)
    };
    let mut summary = match (&aborted, code, st.signal()) {
        (Some(why), _, _) => format!("rsync ended by syncd: {why}"),
        (None, Some(c), _) => format!("rsync exited with {c} ({})", exitcode::meaning(c)),
        (None, None, Some(s)) => format!("rsync was killed by signal {s}"),
        (None, None, None) => "rsync ended without a status".into(),
    };
    if let (Class::Fatal, Some(h)) = (class, said.hint) {
        summary.push_str(&format!(", and {}", exitcode::hint_text(h)));
    }
    if !said.tail.is_empty() && class != Class::Success {
        summary.push_str(": ");
        summary.push_str(&said.tail.join(" | "));
    }
    Outcome {
        code,
        class,
        summary,
        elapsed,
    }
}

/// Ends a running rsync and its children (ssh, the local receiver): the
/// whole process group gets SIGTERM, then SIGKILL after three seconds if
/// rsync lingers.
fn terminate(pid: u32) {
    kill_group(pid, libc::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        if exited(pid) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    kill_group(pid, libc::SIGKILL);
}

/// Joins `t` if it finishes by `until`; otherwise leaves it running
/// (detached), to end when its pipe closes.
fn join_by(t: JoinHandle<()>, until: Instant) {
    while !t.is_finished() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(10));
    }
    if t.is_finished() {
        let _ = t.join();
    }
}

fn kill_group(pid: u32, sig: i32) {
    // SAFETY: kill(2) on the process group rsync leads; its id cannot be
    // reused before rsync is reaped, which happens only after this.
    unsafe { libc::kill(-(pid as libc::pid_t), sig) };
}

/// Whether rsync has exited, without reaping it (`WNOWAIT`), so its pid
/// and process group id stay reserved until `Child::wait`.
fn exited(pid: u32) -> bool {
    // SAFETY: waitid only writes into the zeroed siginfo we own.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        let r = libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        );
        // An error (ECHILD) means it cannot be waited for any more: treat
        // it as gone so the caller's wait reports what happened.
        r != 0 || info.si_pid() != 0
    }
}

fn feed(child: &mut Child, input: Vec<u8>) -> JoinHandle<()> {
    let mut stdin = child.stdin.take().expect("stdin is piped");
    std::thread::spawn(move || {
        // A broken pipe means rsync exited early; its status says why.
        let _ = stdin.write_all(&input);
    })
}

/// Reads stdout, handing over each line ended by `\n` or `\r` (a longer
/// one in 64 KiB pieces).
fn read_stdout(child: &mut Child, mut each: LineSink) -> JoinHandle<()> {
    let mut stdout = child.stdout.take().expect("stdout is piped");
    std::thread::spawn(move || {
        const MAX: usize = 64 * 1024;
        let mut buf = vec![0u8; 16 * 1024];
        let mut line: Vec<u8> = Vec::new();
        loop {
            let n = match stdout.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            for &b in &buf[..n] {
                if b == b'\n' || b == b'\r' {
                    if !line.is_empty() {
                        each(&line);
                        line.clear();
                    }
                } else if line.len() < MAX {
                    line.push(b);
                } else {
                    each(&line);
                    line.clear();
                    line.push(b);
                }
            }
        }
        if !line.is_empty() {
            each(&line);
        }
    })
}

fn read_stderr(
    child: &mut Child,
    name: String,
    level: log::Level,
    said: Arc<Mutex<Said>>,
) -> JoinHandle<()> {
    let stderr = child.stderr.take().expect("stderr is piped");
    std::thread::spawn(move || {
        let mut r = BufReader::new(stderr);
        let mut line = Vec::new();
        loop {
            line.clear();
            match r.by_ref().take(64 * 1024).read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            let text = String::from_utf8_lossy(&line).trim_end().to_string();
            if text.is_empty() {
                continue;
            }
            log::log!(level, "[{name}] rsync: {text}");
            if let Ok(mut s) = said.lock() {
                if s.hint.is_none() {
                    s.hint = exitcode::hint(&text);
                }
                s.tail.push(text);
                if s.tail.len() > 3 {
                    s.tail.remove(0);
                }
            }
        }
    })
}

/// Finds the rsync program at start, so a missing rsync is a clear error
/// instead of a retry loop.
pub fn check_program(program: &OsStr) -> Result<String, String> {
    let out = Command::new(program)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            format!(
                "cannot run {}: {e}; install rsync",
                program.to_string_lossy()
            )
        })?;
    let first = String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or("")
        .to_string();
    if !out.status.success() {
        return Err(format!("{} --version failed", program.to_string_lossy()));
    }
    Ok(first)
}
