//! rsync as the daemon runs it: the command lines, the file list, the child
//! process, and what its exit status means.
//!
//! This module owns the file-level strategy that `research/rsync-strategies.md`
//! found correct in every case: one run with `-r --delete -R --files-from=-
//! --from0 --delete-missing-args --force` for files, gone paths and trees,
//! and a second, non-recursive run only for directories whose own
//! attributes changed. No shell is involved: names travel NUL-separated on
//! stdin, each prefixed with `./`, and argv holds only flags, the base and
//! the target. `--modify-window=-1` makes same-size rewrites in the same
//! second reach the destination. rsync's stderr is read on its own thread
//! (so a chatty rsync cannot deadlock against the list being written), each
//! line logged with the destination's name, the tail kept for the status.

use std::ffi::{OsStr, OsString};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::changeset::{Entry, Kind};
use crate::location::{Destination, Source};

/// Per-destination settings of the rsync command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RsyncOptions {
    /// The rsync program (looked up on PATH when not absolute).
    pub program: OsString,
    /// `--timeout`: rsync gives up after this much I/O inactivity.
    pub timeout_s: u32,
    /// Extra arguments, placed before the base and target.
    pub extra: Vec<OsString>,
}

impl Default for RsyncOptions {
    fn default() -> RsyncOptions {
        RsyncOptions {
            program: "rsync".into(),
            timeout_s: 60,
            extra: Vec::new(),
        }
    }
}

/// Which of the two runs of a changeset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Run {
    /// Files, gone paths and trees: recursive, with deletions.
    Main,
    /// Directories whose own attributes changed: not recursive.
    Attrs,
}

/// The entries of each run, in list order.
pub fn split(entries: &[Entry]) -> (Vec<&Entry>, Vec<&Entry>) {
    entries.iter().partition(|e| e.kind != Kind::Attrs)
}

/// The argv (without the program) of a run.
pub fn argv(run: Run, source: &Source, dest: &Destination, opts: &RsyncOptions) -> Vec<OsString> {
    let mut a: Vec<OsString> = Vec::new();
    if run == Run::Main {
        a.push("-r".into());
        a.push("--delete".into());
    }
    for f in [
        "-R",
        "--files-from=-",
        "--from0",
        "--delete-missing-args",
        "--force",
        "-HpltogD",
        "--modify-window=-1",
    ] {
        a.push(f.into());
    }
    a.push(format!("--timeout={}", opts.timeout_s).into());
    a.extend(opts.extra.iter().cloned());
    let mut base = source.base.as_os_str().as_bytes().to_vec();
    if base.last() != Some(&b'/') {
        base.push(b'/');
    }
    a.push("--".into());
    a.push(OsStr::from_bytes(&base).to_os_string());
    a.push(dest.target.clone());
    a
}

/// The `--files-from` input of a run: `./path\0` per entry.
pub fn list(source: &Source, entries: &[&Entry]) -> Vec<u8> {
    let mut v = Vec::new();
    for e in entries {
        v.extend_from_slice(&source.list_entry(&e.path));
        v.push(0);
    }
    v
}

/// What an rsync exit status means for the changesets of the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Done: ack. 0, and 24 (files vanished during the run; their own
    /// events bring them to the destination).
    Success,
    /// Transient: keep queued, back off, try again, forever. Network and
    /// timeout codes, I/O errors, partial transfers, killed runs.
    Retry,
    /// Will not fix itself (usage, protocol, a missing remote rsync): keep
    /// retrying a few times, then move to the dead-letter tree, loudly.
    Fatal,
}

/// Classifies an rsync exit code (`None`: killed by a signal).
pub fn classify_exit(code: Option<i32>) -> Class {
    match code {
        Some(0) | Some(24) => Class::Success,
        // Usage, protocol incompatibility, unsupported action, program
        // diagnostics, --max-delete stop, remote command not executable or
        // not found.
        Some(1) | Some(2) | Some(4) | Some(13) | Some(25) | Some(126) | Some(127) => Class::Fatal,
        _ => Class::Retry,
    }
}

/// rsync's words for its exit codes (from its manual), for logs.
pub fn exit_meaning(code: i32) -> &'static str {
    match code {
        0 => "success",
        1 => "syntax or usage error",
        2 => "protocol incompatibility",
        3 => "errors selecting input/output files, dirs",
        4 => "requested action not supported",
        5 => "error starting client-server protocol",
        6 => "daemon unable to append to log-file",
        10 => "error in socket I/O",
        11 => "error in file I/O",
        12 => "error in rsync protocol data stream",
        13 => "errors with program diagnostics",
        14 => "error in IPC code",
        20 => "received SIGUSR1 or SIGINT",
        21 => "some error returned by waitpid()",
        22 => "error allocating core memory buffers",
        23 => "partial transfer due to error",
        24 => "partial transfer due to vanished source files",
        25 => "the --max-delete limit stopped deletions",
        30 => "timeout in data send/receive",
        35 => "timeout waiting for daemon connection",
        126 => "remote command could not be run",
        127 => "remote command not found",
        255 => "ssh or connection failure",
        _ => "unknown exit code",
    }
}

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

/// Runs rsync with `args`, feeds it `input`, and waits, calling `poll`
/// every 50 ms; `poll` can end the run. `name` prefixes rsync's stderr
/// lines in the log.
pub fn run(
    program: &OsStr,
    args: &[OsString],
    input: Vec<u8>,
    name: &str,
    mut poll: impl FnMut(u32) -> Control,
) -> Outcome {
    let started = Instant::now();
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
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
    let tail = Arc::new(Mutex::new(Vec::<String>::new()));
    let reader = read_stderr(&mut child, name.to_string(), tail.clone());
    let mut aborted: Option<String> = None;
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break Ok(st),
            Ok(None) => {}
            Err(e) => break Err(e),
        }
        if aborted.is_none() {
            if let Control::Abort(why) = poll(pid) {
                terminate(&mut child, pid);
                aborted = Some(why);
                continue;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = feeder.join();
    let _ = reader.join();
    let tail = tail.lock().map(|t| t.join(" | ")).unwrap_or_default();
    let elapsed = started.elapsed();
    match status {
        Err(e) => Outcome {
            code: None,
            class: Class::Retry,
            summary: format!("waiting for rsync failed: {e}"),
            elapsed,
        },
        Ok(st) => outcome(st, aborted, tail, elapsed),
    }
}

fn outcome(st: ExitStatus, aborted: Option<String>, tail: String, elapsed: Duration) -> Outcome {
    let code = st.code();
    let class = if aborted.is_some() {
        Class::Retry
    } else {
        classify_exit(code)
    };
    let mut summary = match (&aborted, code, st.signal()) {
        (Some(why), _, _) => format!("rsync ended by syncd: {why}"),
        (None, Some(c), _) => format!("rsync exited with {c} ({})", exit_meaning(c)),
        (None, None, Some(s)) => format!("rsync was killed by signal {s}"),
        (None, None, None) => "rsync ended without a status".into(),
    };
    if !tail.is_empty() && class != Class::Success {
        summary.push_str(": ");
        summary.push_str(&tail);
    }
    Outcome {
        code,
        class,
        summary,
        elapsed,
    }
}

/// Ends a running rsync and its children (ssh, the local receiver): the
/// whole process group gets SIGTERM, then SIGKILL if it lingers.
fn terminate(child: &mut Child, pid: u32) {
    let pg = pid as libc::pid_t;
    // SAFETY: plain syscalls on the process group we created.
    unsafe { libc::kill(-pg, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    unsafe { libc::kill(-pg, libc::SIGKILL) };
}

fn feed(child: &mut Child, input: Vec<u8>) -> JoinHandle<()> {
    let mut stdin = child.stdin.take().expect("stdin is piped");
    std::thread::spawn(move || {
        // A broken pipe means rsync exited early; its status says why.
        let _ = stdin.write_all(&input);
    })
}

fn read_stderr(child: &mut Child, name: String, tail: Arc<Mutex<Vec<String>>>) -> JoinHandle<()> {
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
            log::warn!("[{name}] rsync: {text}");
            if let Ok(mut t) = tail.lock() {
                t.push(text);
                if t.len() > 3 {
                    t.remove(0);
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn exit_codes_follow_the_policy() {
        for c in [0, 24] {
            assert_eq!(classify_exit(Some(c)), Class::Success, "{c}");
        }
        for c in [3, 5, 6, 10, 11, 12, 14, 20, 21, 22, 23, 30, 35, 255] {
            assert_eq!(classify_exit(Some(c)), Class::Retry, "{c}");
        }
        for c in [1, 2, 4, 13, 25, 126, 127] {
            assert_eq!(classify_exit(Some(c)), Class::Fatal, "{c}");
        }
        assert_eq!(classify_exit(None), Class::Retry);
    }

    #[test]
    fn argv_keeps_names_out_and_ends_options() {
        let s = Source {
            root: "/src/a".into(),
            base: "/src".into(),
            rel: b"a".to_vec(),
        };
        let d = Destination::resolve(OsStr::new("-weird"), Path::new("/dst")).unwrap();
        let a = argv(Run::Main, &s, &d, &RsyncOptions::default());
        let n = a.len();
        assert_eq!(
            &a[n - 3..],
            &[OsString::from("--"), "/src/".into(), "/dst/-weird/".into()]
        );
        assert!(a.contains(&"--modify-window=-1".into()));
        assert!(a.contains(&"-r".into()));
        let attrs = argv(Run::Attrs, &s, &d, &RsyncOptions::default());
        assert!(!attrs.contains(&"-r".into()) && !attrs.contains(&"--delete".into()));
    }

    #[test]
    fn list_is_nul_separated_with_dot_slash() {
        let s = Source {
            root: "/r".into(),
            base: "/r".into(),
            rel: vec![],
        };
        let es = [Entry::new(Kind::File, b"#c\nx".to_vec()), Entry::full()];
        let refs: Vec<&Entry> = es.iter().collect();
        assert_eq!(list(&s, &refs), b"./#c\nx\0.\0");
    }
}
