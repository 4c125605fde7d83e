//! The cheap check of a backing-off destination, so that its return is
//! noticed within about a second without running a large backlog every
//! second.
//!
//! A failed run backs off exponentially (up to `--backoff-max`), which
//! after a long outage means tens of seconds between the destination's
//! return and the next run. So when a run failed with a retryable cause,
//! the worker asks the destination's [`Probe`] once: a local destination
//! is checked with `faccessat(W_OK)` on the directory the mirror lands in
//! (which sees `chattr +i` as EPERM and a read-only mount as EROFS) and
//! `statvfs` for free space and inodes, writing nothing; a remote one with
//! a TCP connect to its ssh or daemon port (the ssh port and host as `ssh
//! -G` resolves them through the same `-e`, `-p`/`port=` and ssh config,
//! so a `ProxyJump` or `ProxyCommand` host gets no probe). Only when the
//! probe fails too does it explain the failure, and then the worker checks
//! it again at a jittered interval of about a second ([`INTERVAL`]) and
//! runs the batch as soon as it passes; the backoff still bounds the wait.
//! When the probe passes while runs fail (a deeper unwritable directory,
//! a full remote disk, a refused login), it explains nothing, and the
//! plain exponential backoff applies, so a persistent failure never re-runs
//! a large backlog every second. [`Wait`] is that decision, kept pure for
//! its tests.

use std::ffi::{CString, OsStr};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::config::location::{Place, Source};
use crate::config::DestConfig;

/// The mean time between two probes of a backing-off destination; each
/// interval is jittered by ±25%, so destinations that failed together do
/// not probe (and then run) in lock-step.
pub const INTERVAL: Duration = Duration::from_secs(1);

/// The longest a probe's TCP connect waits (or `contimeout`, if shorter).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Free space below which a local destination counts as full.
pub const MIN_FREE: u64 = 1 << 20;

/// What a probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The destination looks usable.
    Pass,
    /// It does not, and why.
    Fail(String),
}

impl Verdict {
    pub fn passes(&self) -> bool {
        matches!(self, Verdict::Pass)
    }
}

/// How a destination is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// A local directory: writable, with free space and inodes.
    Local { dir: PathBuf },
    /// A TCP endpoint: the ssh server or the rsync daemon.
    Tcp {
        host: String,
        port: u16,
        timeout: Duration,
        what: &'static str,
    },
}

impl Probe {
    /// The probe of a destination, or `None` when there is no cheap check
    /// that speaks for it (a remote shell other than ssh, a proxy).
    pub fn for_dest(cfg: &DestConfig, source: &Source) -> Option<Probe> {
        let timeout = Duration::from_secs(cfg.rsync.contimeout_s.into()).min(CONNECT_TIMEOUT);
        match &cfg.dest.place {
            Place::Local { path } => Some(Probe::Local {
                dir: crate::deliver::guard::landing_dir(path, &source.rel),
            }),
            Place::Daemon { host, port, .. } => {
                // rsync reaches the daemon some other way with these.
                if ["RSYNC_PROXY", "RSYNC_CONNECT_PROG"]
                    .iter()
                    .any(|v| std::env::var_os(v).is_some_and(|v| !v.is_empty()))
                {
                    return None;
                }
                Some(Probe::Tcp {
                    host: unbracket(host),
                    port: port.or(cfg.rsync.port).unwrap_or(873),
                    timeout,
                    what: "rsync daemon",
                })
            }
            Place::Shell { .. } => {
                let (host, port) = ssh_endpoint(cfg)?;
                Some(Probe::Tcp {
                    host,
                    port,
                    timeout,
                    what: "ssh",
                })
            }
        }
    }

    /// Runs the check: no write, no login, at most one connection.
    pub fn check(&self) -> Verdict {
        match self {
            Probe::Local { dir } => local(dir),
            Probe::Tcp {
                host,
                port,
                timeout,
                what,
            } => tcp(host, *port, *timeout, what),
        }
    }

    /// What passing means, for the log: "/dst is writable",
    /// "host:22 (ssh) accepts connections".
    pub fn describe(&self) -> String {
        match self {
            Probe::Local { dir } => format!("{} is writable", dir.display()),
            Probe::Tcp {
                host, port, what, ..
            } => format!("{host}:{port} ({what}) accepts connections"),
        }
    }
}

/// `[::1]` -> `::1`, as a socket address wants it.
fn unbracket(host: &str) -> String {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .to_string()
}

/// The directory to check: `dir`, or its nearest existing ancestor while
/// the mirror does not exist yet (the run creates it there).
fn existing(dir: &Path) -> &Path {
    dir.ancestors()
        .find(|a| a.symlink_metadata().is_ok())
        .unwrap_or(Path::new("/"))
}

fn local(dir: &Path) -> Verdict {
    let at = existing(dir);
    let Ok(c) = CString::new(at.as_os_str().as_bytes()) else {
        return Verdict::Fail(format!("{} is not a valid path", at.display()));
    };
    // SAFETY: `c` is a valid NUL-terminated path; faccessat only reads it.
    // AT_EACCESS: the effective ids, which rsync runs with.
    let r = unsafe {
        libc::faccessat(
            libc::AT_FDCWD,
            c.as_ptr(),
            libc::W_OK | libc::X_OK,
            libc::AT_EACCESS,
        )
    };
    if r != 0 {
        let e = std::io::Error::last_os_error();
        return Verdict::Fail(format!("{} is not writable: {e}", at.display()));
    }
    // SAFETY: statvfs writes into the zeroed struct we own.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        let e = std::io::Error::last_os_error();
        return Verdict::Fail(format!("cannot check {}: {e}", at.display()));
    }
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let blocks = if root { st.f_bfree } else { st.f_bavail };
    let free = (blocks as u64).saturating_mul(st.f_frsize as u64);
    if free < MIN_FREE {
        return Verdict::Fail(format!(
            "the file system of {} has {} KiB free",
            at.display(),
            free / 1024
        ));
    }
    if st.f_files > 0 && st.f_favail == 0 {
        return Verdict::Fail(format!(
            "the file system of {} has no free inodes",
            at.display()
        ));
    }
    Verdict::Pass
}

fn tcp(host: &str, port: u16, timeout: Duration, what: &str) -> Verdict {
    let addrs = match (host, port).to_socket_addrs() {
        Ok(a) => a.collect::<Vec<_>>(),
        Err(e) => return Verdict::Fail(format!("cannot resolve {host}: {e}")),
    };
    let mut last = format!("{host} has no address");
    for a in addrs {
        match TcpStream::connect_timeout(&a, timeout) {
            Ok(_) => return Verdict::Pass,
            Err(e) => last = format!("cannot connect to {host}:{port} ({what}): {e}"),
        }
    }
    Verdict::Fail(last)
}

/// Where ssh connects for `cfg`: `ssh -G` (which connects nowhere) with
/// the same words rsync's `-e` gets, so `-p`, `port=`, `-o Port=` and the
/// ssh config's `HostName` and `Port` all count. `None` when the remote
/// shell is not ssh, when ssh goes through a proxy, or when `ssh -G`
/// fails: then there is no cheap check, and the plain backoff applies.
fn ssh_endpoint(cfg: &DestConfig) -> Option<(String, u16)> {
    let Place::Shell { user, host, .. } = &cfg.dest.place else {
        return None;
    };
    if !crate::deliver::rsync::ssh::is_ssh(&cfg.rsync.rsh) {
        return None;
    }
    let words = crate::deliver::rsync::ssh::rsh_words(&cfg.dest, &cfg.rsync)?;
    let (program, args) = words.split_first()?;
    let target = match user {
        Some(u) => format!("{u}@{}", unbracket(host)),
        None => unbracket(host),
    };
    let mut child = Command::new(program)
        .args(args)
        .arg("-G")
        .arg("--")
        .arg(&target)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while child.try_wait().ok()?.is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output().ok()?;
    if !out.status.success() {
        return None;
    }
    parse_ssh_g(OsStr::from_bytes(&out.stdout).to_string_lossy().as_ref())
}

/// The host and port of `ssh -G`'s output; `None` with a proxy.
fn parse_ssh_g(out: &str) -> Option<(String, u16)> {
    let (mut host, mut port) = (None, None);
    for line in out.lines() {
        let mut kv = line.splitn(2, ' ');
        let (k, v) = (kv.next()?, kv.next().unwrap_or("").trim());
        match k {
            "hostname" => host = Some(v.to_string()),
            "port" => port = v.parse::<u16>().ok(),
            "proxycommand" | "proxyjump" if v != "none" => return None,
            _ => {}
        }
    }
    Some((unbracket(&host?), port?))
}

/// What a backing-off worker does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Run the batch now: the backoff is over, or the probe passed.
    Run,
    /// Run the probe now.
    Probe,
    /// Sleep until then (woken early by `queue retry`).
    Sleep(Instant),
}

/// The wait after a failed run: until the backoff's end, or, when the
/// probe explained the failure (it failed right after the run), until the
/// probe passes, checked every [`INTERVAL`] with jitter.
#[derive(Debug, Clone)]
pub struct Wait {
    deadline: Instant,
    probing: bool,
    next_probe: Instant,
}

impl Wait {
    /// Starts the wait at `now` for `delay`, given the probe's verdict
    /// right after the failure (`None`: no probe for this destination) and
    /// a `jitter` from 0 to 1.
    pub fn new(now: Instant, delay: Duration, first: Option<&Verdict>, jitter: f64) -> Wait {
        Wait {
            deadline: now + delay,
            probing: first.is_some_and(|v| !v.passes()),
            next_probe: now + interval(jitter),
        }
    }

    /// Whether the probe explained the failure, so it is being watched.
    pub fn probing(&self) -> bool {
        self.probing
    }

    /// What to do at `now`.
    pub fn step(&self, now: Instant) -> Step {
        if now >= self.deadline {
            Step::Run
        } else if !self.probing {
            Step::Sleep(self.deadline)
        } else if now >= self.next_probe {
            Step::Probe
        } else {
            Step::Sleep(self.next_probe.min(self.deadline))
        }
    }

    /// Takes a probe's verdict at `now`; `true` when the batch should run
    /// now (the probe passes again).
    pub fn observed(&mut self, now: Instant, v: &Verdict, jitter: f64) -> bool {
        if v.passes() {
            return true;
        }
        self.next_probe = now + interval(jitter);
        false
    }
}

/// [`INTERVAL`] with ±25% of jitter (`jitter` from 0 to 1).
fn interval(jitter: f64) -> Duration {
    INTERVAL.mul_f64(0.75 + 0.5 * jitter.clamp(0.0, 1.0))
}

/// A number from 0 to 1 that differs between calls and processes.
pub fn jitter() -> f64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let seed =
        (nanos as u64 ^ (std::process::id() as u64) << 17).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (seed >> 40) as f64 / (1u64 << 24) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    /// Drives a wait with probe verdicts, returning when it ran (seconds
    /// after the failure) and how many probes it made.
    fn drive(delay_s: u64, first: Option<&Verdict>, passes_from_s: f64) -> (f64, u32) {
        let t0 = Instant::now();
        let mut now = t0;
        let mut w = Wait::new(now, Duration::from_secs(delay_s), first, 0.5);
        let mut probes = 0;
        loop {
            match w.step(now) {
                Step::Run => return ((now - t0).as_secs_f64(), probes),
                Step::Sleep(until) => {
                    assert!(until > now, "a sleep moves time on");
                    now = until;
                }
                Step::Probe => {
                    probes += 1;
                    let v = if (now - t0).as_secs_f64() >= passes_from_s {
                        Verdict::Pass
                    } else {
                        Verdict::Fail("down".into())
                    };
                    if w.observed(now, &v, 0.5) {
                        return ((now - t0).as_secs_f64(), probes);
                    }
                }
            }
        }
    }

    #[test]
    fn a_probe_that_explains_the_failure_runs_the_batch_when_it_passes() {
        let down = Verdict::Fail("EPERM".into());
        // Back in 10.5 s of a 60 s backoff: run at the next probe, ~11 s.
        let (ran, probes) = drive(60, Some(&down), 10.5);
        assert!((10.5..=11.5).contains(&ran), "{ran}");
        assert_eq!(probes, 11);
        // Still down: the backoff bounds the wait, probing each second.
        let (ran, probes) = drive(8, Some(&down), f64::MAX);
        assert_eq!(ran, 8.0);
        assert_eq!(probes, 7);
    }

    #[test]
    fn a_probe_that_passes_after_a_failure_explains_nothing() {
        // The run failed though the destination looks fine (a deeper
        // unwritable directory): the plain backoff, not a run a second.
        let (ran, probes) = drive(30, Some(&Verdict::Pass), 0.0);
        assert_eq!((ran, probes), (30.0, 0));
        // No probe for this destination: the plain backoff too.
        assert_eq!(drive(4, None, 0.0), (4.0, 0));
        let w = Wait::new(Instant::now(), S, Some(&Verdict::Pass), 0.0);
        assert!(!w.probing());
    }

    #[test]
    fn intervals_are_jittered_around_a_second() {
        assert_eq!(interval(0.0), Duration::from_millis(750));
        assert_eq!(interval(1.0), Duration::from_millis(1250));
        for _ in 0..100 {
            let j = jitter();
            assert!((0.0..=1.0).contains(&j), "{j}");
        }
    }

    #[test]
    fn a_local_probe_sees_an_immutable_or_missing_landing_directory() {
        let t = tempfile::tempdir().unwrap();
        let p = Probe::Local {
            dir: t.path().join("not/yet"),
        };
        assert_eq!(p.check(), Verdict::Pass, "its parent is checked");
        let ro = t.path().join("ro");
        std::fs::create_dir(&ro).unwrap();
        let immutable = Command::new("chattr").arg("+i").arg(&ro).status();
        if immutable.is_ok_and(|s| s.success()) {
            let v = Probe::Local { dir: ro.clone() }.check();
            let _ = Command::new("chattr").arg("-i").arg(&ro).status();
            match v {
                Verdict::Fail(why) => assert!(why.contains("not writable"), "{why}"),
                Verdict::Pass => panic!("an immutable directory passed"),
            }
        }
    }

    /// A TCP socket bound to a free loopback port, not listening.
    fn bound_not_listening() -> (std::os::fd::OwnedFd, u16) {
        use std::os::fd::FromRawFd;
        // SAFETY: plain socket calls on a descriptor owned from here on;
        // the address structures are zeroed and sized as the calls expect.
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
            assert!(fd >= 0);
            let owned = std::os::fd::OwnedFd::from_raw_fd(fd);
            let mut a: libc::sockaddr_in = std::mem::zeroed();
            a.sin_family = libc::AF_INET as libc::sa_family_t;
            a.sin_addr.s_addr = u32::from_ne_bytes([127, 0, 0, 1]);
            let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            let r = libc::bind(fd, &a as *const _ as *const libc::sockaddr, len);
            assert_eq!(r, 0);
            let mut got: libc::sockaddr_in = std::mem::zeroed();
            let mut glen = len;
            let r = libc::getsockname(fd, &mut got as *mut _ as *mut libc::sockaddr, &mut glen);
            assert_eq!(r, 0);
            (owned, u16::from_be(got.sin_port))
        }
    }

    #[test]
    fn a_tcp_probe_connects_and_ssh_g_output_is_read() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let p = Probe::Tcp {
            host: "127.0.0.1".into(),
            port,
            timeout: S,
            what: "ssh",
        };
        assert_eq!(p.check(), Verdict::Pass);
        drop(l);
        // A port that was just closed can be taken by another process
        // before the second check: hold one bound without listening, which
        // refuses connections and keeps the port ours.
        let (_held, port) = bound_not_listening();
        let p = Probe::Tcp {
            host: "127.0.0.1".into(),
            port,
            timeout: S,
            what: "ssh",
        };
        match p.check() {
            Verdict::Fail(why) => assert!(why.contains("cannot connect"), "{why}"),
            Verdict::Pass => panic!("a closed port passed"),
        }
        let g = "user root\nhostname 10.1.2.3\nport 2222\naddressfamily any\n";
        assert_eq!(parse_ssh_g(g), Some(("10.1.2.3".into(), 2222)));
        let g = "hostname h\nport 22\nproxyjump bastion\n";
        assert_eq!(parse_ssh_g(g), None);
        let g = "hostname h\nport 22\nproxycommand none\n";
        assert_eq!(parse_ssh_g(g), Some(("h".into(), 22)));
    }
}
