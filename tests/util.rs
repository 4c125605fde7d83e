//! Test helpers: a temporary tree with `src/`, `dst/` and `state/`, the real
//! `syncd` binary started as a child and ended by the test that started it,
//! and an exact mirror comparison (names as bytes, types, contents, modes,
//! symlink targets).

#![allow(dead_code)]

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// The syncd binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_syncd")
}

/// A temporary work directory, removed on drop (unless SYNCD_KEEP_TEST_DIRS
/// is set, for debugging).
pub struct Dir {
    pub tmp: Option<tempfile::TempDir>,
    pub root: PathBuf,
}

impl Dir {
    /// A fresh directory with empty `src/` and `dst/`.
    pub fn new() -> Dir {
        let tmp = tempfile::Builder::new()
            .prefix("syncd-test-")
            .tempdir()
            .expect("tempdir");
        let root = tmp.path().to_path_buf();
        fs::create_dir(root.join("src")).unwrap();
        fs::create_dir(root.join("dst")).unwrap();
        let keep = std::env::var_os("SYNCD_KEEP_TEST_DIRS").is_some();
        Dir {
            tmp: if keep {
                let _ = tmp.keep();
                None
            } else {
                Some(tmp)
            },
            root,
        }
    }

    pub fn src(&self) -> PathBuf {
        self.root.join("src")
    }

    pub fn dst(&self) -> PathBuf {
        self.root.join("dst")
    }

    pub fn state(&self) -> PathBuf {
        self.root.join("state")
    }

    /// `src/` joined with a relative path given as bytes (any name).
    pub fn s(&self, rel: impl AsRef<[u8]>) -> PathBuf {
        self.src().join(OsStr::from_bytes(rel.as_ref()))
    }

    /// Writes a file under `src/`, creating parents.
    pub fn write(&self, rel: impl AsRef<[u8]>, data: impl AsRef<[u8]>) {
        let p = self.s(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, data).unwrap();
    }

    /// The default arguments of `syncd run` for this tree: the `src/./`
    /// virtual root (so DEST mirrors SOURCE's content), the state dir, a
    /// short window and quick retries.
    pub fn run_args(&self, delay: &str) -> Vec<OsString> {
        let mut src = self.src().into_os_string();
        src.push("/./");
        vec![
            "run".into(),
            "--state-dir".into(),
            self.state().into(),
            "--delay".into(),
            delay.into(),
            "--backoff-max".into(),
            "1".into(),
            src,
            self.dst().into(),
        ]
    }

    /// Starts the daemon with [`Dir::run_args`] plus `extra` (before the
    /// positionals).
    pub fn start(&self, delay: &str, extra: &[&str]) -> Daemon {
        let mut a = self.run_args(delay);
        let pos = a.len() - 2;
        for (i, e) in extra.iter().enumerate() {
            a.insert(pos + i, e.into());
        }
        Daemon::start(&a, &self.root.join(format!("syncd-{}.log", unique())))
    }

    /// Starts the daemon and waits until its initial full sync finished (not
    /// only until the files are there: rsync may still be running, and
    /// would pick up a change a test makes next).
    pub fn start_synced(&self, delay: &str, extra: &[&str]) -> Daemon {
        let d = self.start(delay, extra);
        d.wait_log("watching", Duration::from_secs(30));
        self.wait_mirror(Duration::from_secs(30));
        d.wait_log("] synced", Duration::from_secs(30));
        d
    }

    /// Waits until `dst/` is an exact mirror of `src/`.
    pub fn wait_mirror(&self, within: Duration) {
        wait_mirror(&self.src(), &self.dst(), within)
    }
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// A syncd daemon started by a test. Dropping it kills it (SIGKILL) if it
/// still runs, so a failing test never leaves one behind.
pub struct Daemon {
    pub child: Option<Child>,
    pub log: PathBuf,
}

impl Daemon {
    pub fn start(args: &[OsString], log: &Path) -> Daemon {
        Daemon::start_with(&[], &[], args, log)
    }

    /// [`Daemon::start`] under `prefix` (a command that execs the rest,
    /// such as `setpriv ...`, so the pid stays syncd's), with `env` added.
    pub fn start_with(
        prefix: &[&str],
        env: &[(&str, &str)],
        args: &[OsString],
        log: &Path,
    ) -> Daemon {
        let f = fs::File::create(log).unwrap();
        let mut cmd = match prefix.split_first() {
            Some((p, rest)) => {
                let mut c = Command::new(p);
                c.args(rest).arg(bin());
                c
            }
            None => Command::new(bin()),
        };
        let child = cmd
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(f.try_clone().unwrap())
            .stderr(f)
            .spawn()
            .expect("start syncd");
        Daemon {
            child: Some(child),
            log: log.to_path_buf(),
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().unwrap().id() as i32
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&fs::read(&self.log).unwrap_or_default()).into_owned()
    }

    /// Waits until the log contains `needle`.
    pub fn wait_log(&self, needle: &str, within: Duration) {
        let t = Instant::now();
        while t.elapsed() < within {
            if self.log().contains(needle) {
                return;
            }
            if let Some(st) = self.try_status() {
                panic!(
                    "syncd exited ({st}) before logging {needle:?}; log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "syncd did not log {needle:?} within {within:?}; log:\n{}",
            self.log()
        );
    }

    /// Whether the daemon exited, with its status.
    pub fn try_status(&self) -> Option<ExitStatus> {
        // try_wait needs &mut; peek at /proc instead to keep &self.
        let pid = self.child.as_ref()?.id();
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        if stat.split_whitespace().nth(2) == Some("Z") {
            use std::os::unix::process::ExitStatusExt;
            return Some(ExitStatus::from_raw(0));
        }
        None
    }

    /// Sends a signal.
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill on the pid of our own child.
        unsafe { libc::kill(self.pid(), sig) };
    }

    /// SIGTERM, then waits for the exit (at most 20 s) and returns the status.
    pub fn stop(mut self) -> ExitStatus {
        self.signal(libc::SIGTERM);
        self.wait(Duration::from_secs(20))
    }

    /// Waits for the daemon to exit on its own.
    pub fn wait(&mut self, within: Duration) -> ExitStatus {
        let mut child = self.child.take().unwrap();
        let t = Instant::now();
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                return st;
            }
            if t.elapsed() > within {
                let _ = child.kill();
                let _ = child.wait();
                panic!("syncd did not exit within {within:?}; log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL, like a crash.
    pub fn kill9(mut self) {
        let mut child = self.child.take().unwrap();
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
            if std::thread::panicking() {
                eprintln!("--- syncd log ({}) ---\n{}", self.log.display(), self.log());
            }
        }
    }
}

/// Runs `syncd ARGS` to completion.
pub fn syncd(args: &[&OsStr]) -> Output {
    Command::new(bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run syncd")
}

/// Waits until every destination of the daemon on `state` has nothing
/// pending: the mirror can be exact a moment before the last run ends and
/// is acked.
pub fn wait_drained(state: &Path, within: Duration) {
    wait_until("every queue drained", within, || {
        inspect(state)["destinations"]
            .as_array()
            .is_some_and(|ds| ds.iter().all(|d| d["pending"] == 0))
    });
}

/// `syncd status --json --state-dir DIR` parsed (whatever its exit status).
pub fn status_json(state: &Path) -> serde_json::Value {
    let out = syncd(&[
        "status".as_ref(),
        "--json".as_ref(),
        "--state-dir".as_ref(),
        state.as_os_str(),
    ]);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "status prints JSON: {e}; stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// The inotify watches the process `pid` holds: the `inotify wd:` lines of
/// the fdinfo of each of its descriptors that is an inotify instance.
pub fn watch_count(pid: u32) -> usize {
    let mut n = 0;
    for fd in fs::read_dir(format!("/proc/{pid}/fd")).unwrap().flatten() {
        let inotify = fs::read_link(fd.path())
            .is_ok_and(|l| l.as_os_str().as_bytes() == b"anon_inode:inotify");
        if inotify {
            let info = fs::read_to_string(format!(
                "/proc/{pid}/fdinfo/{}",
                fd.file_name().to_string_lossy()
            ))
            .unwrap_or_default();
            n += info
                .lines()
                .filter(|l| l.starts_with("inotify wd:"))
                .count();
        }
    }
    n
}

/// The directories of a tree, itself included, but those (relative paths)
/// that `skip` names and everything below them.
pub fn dirs_in(root: &Path, skip: impl Fn(&[u8]) -> bool) -> usize {
    let mut n = 1;
    let mut stack = vec![(PathBuf::new(), root.to_path_buf())];
    while let Some((rel, abs)) = stack.pop() {
        for e in fs::read_dir(&abs).unwrap().flatten() {
            if !e.file_type().unwrap().is_dir() {
                continue;
            }
            let r = rel.join(e.file_name());
            if skip(r.as_os_str().as_bytes()) {
                continue;
            }
            n += 1;
            stack.push((r, e.path()));
        }
    }
    n
}

/// The children of a process (the syncd that `unshare --fork` started).
pub fn children(pid: u32) -> Vec<u32> {
    fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// `syncd queue inspect --json --state-dir DIR` parsed.
pub fn inspect(state: &Path) -> serde_json::Value {
    let out = syncd(&[
        "queue".as_ref(),
        "inspect".as_ref(),
        "--json".as_ref(),
        "--state-dir".as_ref(),
        state.as_os_str(),
    ]);
    assert!(
        out.status.success(),
        "inspect failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("inspect prints JSON")
}

/// One node of a tree as compared.
#[derive(Debug, PartialEq, Eq)]
enum Node {
    Dir { mode: u32 },
    File { mode: u32, data: Vec<u8> },
    Link(PathBuf),
    Other,
}

fn scan(root: &Path) -> std::collections::BTreeMap<Vec<u8>, Node> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![(PathBuf::new(), root.to_path_buf())];
    while let Some((rel, abs)) = stack.pop() {
        let Ok(rd) = fs::read_dir(&abs) else { continue };
        for e in rd.flatten() {
            let r = rel.join(e.file_name());
            let p = e.path();
            let Ok(m) = fs::symlink_metadata(&p) else {
                continue;
            };
            let key = r.as_os_str().as_bytes().to_vec();
            let node = if m.file_type().is_symlink() {
                Node::Link(fs::read_link(&p).unwrap_or_default())
            } else if m.is_dir() {
                stack.push((r, p));
                Node::Dir {
                    mode: m.permissions().mode() & 0o7777,
                }
            } else if m.is_file() {
                let mut data = Vec::new();
                if let Ok(mut f) = fs::File::open(&p) {
                    let _ = f.read_to_end(&mut data);
                }
                Node::File {
                    mode: m.permissions().mode() & 0o7777,
                    data,
                }
            } else {
                Node::Other
            };
            out.insert(key, node);
        }
    }
    out
}

/// The differences between two trees, one line each (empty: exact mirror).
pub fn mirror_diff(src: &Path, dst: &Path) -> Vec<String> {
    mirror_diff_except(src, dst, |_| false)
}

/// [`mirror_diff`] ignoring the paths (relative, as bytes) `skip` names,
/// on both sides: for excluded paths.
pub fn mirror_diff_except(src: &Path, dst: &Path, skip: impl Fn(&[u8]) -> bool) -> Vec<String> {
    let mut a = scan(src);
    let mut b = scan(dst);
    a.retain(|k, _| !skip(k));
    b.retain(|k, _| !skip(k));
    let mut d = Vec::new();
    let esc = |k: &[u8]| k.escape_ascii().to_string();
    for (k, v) in &a {
        match b.get(k) {
            None => d.push(format!("missing in dst: {}", esc(k))),
            Some(w) if w != v => d.push(format!("differs: {} ({})", esc(k), short(v, w))),
            _ => {}
        }
    }
    for k in b.keys() {
        if !a.contains_key(k) {
            d.push(format!("extra in dst: {}", esc(k)));
        }
    }
    d
}

fn short(a: &Node, b: &Node) -> String {
    match (a, b) {
        (Node::File { mode: m1, data: d1 }, Node::File { mode: m2, data: d2 }) => {
            format!(
                "mode {m1:o}/{m2:o}, {} vs {} bytes, same={}",
                d1.len(),
                d2.len(),
                d1 == d2
            )
        }
        _ => format!("{a:?} vs {b:?}").chars().take(200).collect(),
    }
}

/// Waits until `dst` mirrors `src` exactly; panics with the differences.
pub fn wait_mirror(src: &Path, dst: &Path, within: Duration) {
    let t = Instant::now();
    loop {
        let d = mirror_diff(src, dst);
        if d.is_empty() {
            return;
        }
        if t.elapsed() > within {
            let n = d.len();
            let head: Vec<_> = d.into_iter().take(20).collect();
            panic!(
                "no exact mirror after {within:?}: {n} differences, first:\n{}",
                head.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Polls `f` every 20 ms until it holds; panics naming `what` after
/// `within`.
pub fn wait_until(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < within, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until `dst` mirrors `src` except for the paths `skip` names (the
/// excluded ones); panics with the differences.
pub fn wait_mirror_except(src: &Path, dst: &Path, skip: impl Fn(&[u8]) -> bool, within: Duration) {
    let t = Instant::now();
    loop {
        let diff = mirror_diff_except(src, dst, &skip);
        if diff.is_empty() {
            return;
        }
        assert!(
            t.elapsed() < within,
            "no mirror within {within:?}: {diff:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Asserts the mirror stays different for `d`, e.g. while a destination is
/// unwritable; returns the differences seen at the end.
pub fn still_differs(src: &Path, dst: &Path, d: Duration) -> Vec<String> {
    std::thread::sleep(d);
    let diff = mirror_diff(src, dst);
    assert!(
        !diff.is_empty(),
        "dst became a mirror although it should not have"
    );
    diff
}

/// Counts the files (not dirs) in a tree.
pub fn count_files(root: &Path) -> usize {
    scan(root)
        .values()
        .filter(|n| matches!(n, Node::File { .. }))
        .count()
}

/// The inode of a path, to tell replaced files apart.
pub fn ino(p: &Path) -> u64 {
    fs::symlink_metadata(p).map(|m| m.ino()).unwrap_or(0)
}

/// A small deterministic random generator (xorshift64*), so a failing
/// randomized test can be replayed from the seed it prints.
pub struct Rng(u64);

impl Rng {
    /// Seeded from `SYNCD_TEST_SEED` when set, else from the clock.
    pub fn from_env(name: &str) -> Rng {
        let seed = std::env::var("SYNCD_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            });
        eprintln!("{name}: SYNCD_TEST_SEED={seed}");
        Rng(seed | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// Picks one element.
    pub fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len() as u64) as usize]
    }
}

/// Writes an executable rsync wrapper at `path` that appends one line per
/// run (the Unix time in ms) to `count`, then runs the real rsync with the
/// same arguments. With `fail_flag` present, it adds an option rsync does
/// not know, so the real rsync fails with a usage error (exit 1).
pub fn rsync_wrapper(path: &Path, count: &Path, fail_flag: &Path) {
    let script = format!(
        "#!/bin/sh\n\
         echo \"$(date +%s%3N)\" >> '{}'\n\
         if [ -e '{}' ]; then exec rsync --syncd-test-no-such-option \"$@\"; fi\n\
         exec rsync \"$@\"\n",
        count.display(),
        fail_flag.display()
    );
    fs::write(path, script).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

/// The start times (Unix ms) of the rsync runs a wrapper counted.
pub fn rsync_runs(count: &Path) -> Vec<u64> {
    fs::read_to_string(count)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Makes a directory immutable (root cannot write into it either) until
/// dropped.
pub struct Immutable(PathBuf);

impl Immutable {
    pub fn new(p: &Path) -> Immutable {
        let st = Command::new("chattr")
            .arg("+i")
            .arg(p)
            .status()
            .expect("chattr");
        assert!(st.success(), "chattr +i failed");
        Immutable(p.to_path_buf())
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").arg(&self.0).status();
    }
}

/// Runs `cmd` to completion with its output captured, or kills it and
/// panics after `within` (for a command that must refuse at once, and
/// would otherwise hang a test by running as a daemon).
pub fn output_within(cmd: &mut Command, within: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run syncd");
    let t = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if t.elapsed() > within {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "{cmd:?} still ran after {within:?}; stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}
