//! rsync as the daemon runs it: the command lines, the file list, the child
//! process, and its outcome.
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
//! line logged with the destination's name, the tail kept for the status
//! and scanned for permanent causes that [`crate::deliver::rsync::exitcode`] weighs with the
//! exit code. Every run is bounded: `--timeout` always, the transport's
//! own bounds ([`crate::deliver::rsync::ssh`] for ssh, `--contimeout` for daemons), and
//! the caller's poll function, which the worker uses for its progress
//! [`crate::deliver::rsync::stall`]. `--partial-dir` (a single relative name, which rsync
//! itself keeps out of transfers and deletions) lets an interrupted large
//! file resume instead of starting over. stdout is read on a third thread
//! and handed, line by line, to the caller ([`crate::deliver::rsync::progress`] parses the
//! totals of every run and the progress of a full sync from it).

pub mod exitcode;
pub mod progress;
pub mod ssh;
pub mod stall;

use std::ffi::{OsStr, OsString};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::changeset::{Entry, Kind};
pub use crate::config::destopts::DestOptions;
pub use crate::deliver::rsync::exitcode::Class;
use self::exitcode::Hint;
use crate::config::location::{Destination, Place, Source};

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

/// The argv (without the program) of a run: the strategy's flags, the
/// totals on stdout (`--info=stats2`; with `progress`, also
/// `--info=progress2` and `--no-inc-recursive`, so that the total is the
/// whole tree's from the first line: see [`crate::deliver::rsync::progress`]), the bounds
/// (`--timeout` always; `-e` with ssh's bounds for remote-shell
/// destinations, `--contimeout` for daemons), the destination's options,
/// then `--`, the base and the target. The user's `rsync-arg`s come after
/// syncd's flags, so `--inc-recursive` there wins over progress.
pub fn argv(
    run: Run,
    source: &Source,
    dest: &Destination,
    opts: &DestOptions,
    progress: bool,
) -> Vec<OsString> {
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
    if progress {
        a.push("--info=stats2,progress2".into());
        a.push("--no-inc-recursive".into());
    } else {
        a.push("--info=stats2".into());
    }
    a.extend(transport_args(dest, opts));
    if let Some(bw) = &opts.bwlimit {
        a.push(format!("--bwlimit={bw}").into());
    }
    if let Some(dir) = &opts.partial_dir {
        let mut o = OsString::from("--partial-dir=");
        o.push(dir);
        a.push(o);
    }
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

/// The flags that bound a run and carry it to `dest`: `--timeout` always;
/// `-e` with ssh's bounds for remote-shell destinations; `--contimeout`,
/// the port and the password file for daemons. Any rsync that talks to
/// `dest` (a sync, a listing) takes the same.
pub fn transport_args(dest: &Destination, opts: &DestOptions) -> Vec<OsString> {
    let mut a: Vec<OsString> = vec![format!("--timeout={}", opts.timeout_s.max(1)).into()];
    match &dest.place {
        Place::Shell { .. } => {
            if let Some(words) = crate::deliver::rsync::ssh::rsh_words(dest, opts) {
                a.push("-e".into());
                a.push(crate::deliver::rsync::ssh::join_command(&words));
            }
        }
        Place::Daemon { port, .. } => {
            a.push(format!("--contimeout={}", opts.contimeout_s.max(1)).into());
            if let (None, Some(p)) = (port, opts.port) {
                a.push(format!("--port={p}").into());
            }
            if let Some(f) = &opts.password_file {
                let mut o = OsString::from("--password-file=");
                o.push(f);
                a.push(o);
            }
        }
        Place::Local { .. } => {}
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn argv_keeps_names_out_and_ends_options() {
        let s = Source {
            root: "/src/a".into(),
            base: "/src".into(),
            rel: b"a".to_vec(),
        };
        let d = Destination::resolve(OsStr::new("-weird"), Path::new("/dst")).unwrap();
        let a = argv(Run::Main, &s, &d, &DestOptions::default(), false);
        let n = a.len();
        assert_eq!(
            &a[n - 3..],
            &[OsString::from("--"), "/src/".into(), "/dst/-weird/".into()]
        );
        assert!(a.contains(&"--modify-window=-1".into()));
        assert!(a.contains(&"-r".into()));
        let attrs = argv(Run::Attrs, &s, &d, &DestOptions::default(), false);
        assert!(!attrs.contains(&"-r".into()) && !attrs.contains(&"--delete".into()));
        assert!(a.contains(&"--info=stats2".into()) && !a.contains(&"--no-inc-recursive".into()));
        let user = DestOptions {
            extra: vec!["--inc-recursive".into()],
            ..DestOptions::default()
        };
        let full = argv(Run::Main, &s, &d, &user, true);
        let at = |w: &str| full.iter().position(|x| x == w).unwrap();
        assert!(full.contains(&"--info=stats2,progress2".into()));
        assert!(
            at("--no-inc-recursive") < at("--inc-recursive"),
            "the user's flag comes later and wins: {full:?}"
        );
    }

    #[test]
    fn each_transport_gets_its_bounds() {
        let s = Source {
            root: "/src".into(),
            base: "/src".into(),
            rel: vec![],
        };
        let opts = DestOptions {
            timeout_s: 7,
            contimeout_s: 4,
            port: Some(2222),
            bwlimit: Some("1M".into()),
            control_dir: Some("/state/ssh".into()),
            ..DestOptions::default()
        };
        let args = |d: &str| -> Vec<String> {
            let d = Destination::resolve(OsStr::new(d), Path::new("/")).unwrap();
            argv(Run::Main, &s, &d, &opts, false)
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect()
        };
        let has = |a: &[String], x: &str| a.iter().any(|y| y == x);
        for d in ["/local", "h:/x", "h::m/p", "rsync://h:99/m/"] {
            let a = args(d);
            assert!(has(&a, "--timeout=7"), "{d}: {a:?}");
            assert!(has(&a, "--bwlimit=1M"), "{d}: {a:?}");
            assert!(has(&a, "--partial-dir=.syncd-partial"), "{d}: {a:?}");
        }
        let local = args("/local");
        assert!(!local
            .iter()
            .any(|x| x == "-e" || x.starts_with("--contimeout")));
        let ssh = args("u@h:/x");
        let i = ssh.iter().position(|x| x == "-e").unwrap();
        assert!(ssh[i + 1].starts_with("ssh -o BatchMode=yes -o ConnectTimeout=4"));
        assert!(ssh[i + 1].contains("-o ControlPath=/state/ssh/"));
        assert!(ssh[i + 1].ends_with("-p 2222"));
        assert!(!ssh.iter().any(|x| x.starts_with("--contimeout")));
        let daemon = args("h::m/p");
        assert!(has(&daemon, "--contimeout=4") && has(&daemon, "--port=2222"));
        assert!(!has(&daemon, "-e"));
        let url = args("rsync://h:99/m/");
        assert!(
            !url.iter().any(|x| x.starts_with("--port")),
            "the URL's port wins"
        );
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
