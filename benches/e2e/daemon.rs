//! The daemons under test, started the same way: in the foreground, on
//! one SOURCE and one DEST, with the same aggregation delay, the rsync
//! wrapper as their rsync, their output in a log file, and readings of
//! their CPU time and peak RSS from /proc.
//!
//! syncd: `syncd run --state-dir STATE --delay D --rsync WRAPPER SRC/./ DST`
//! (the `/./` marker makes DEST mirror SOURCE's content), everything else at
//! its defaults except `--backoff-max 1` in the backlog workload. lsyncd:
//! `lsyncd -nodaemon CONFIG` with a Lua config holding `settings { nodaemon
//! = true, insist = true }` and one `sync { default.rsync, … }` with the same
//! delay and `rsync = { binary = WRAPPER, archive = true }`, everything
//! else at its defaults (including its normal log level, which lists every
//! path it syncs). Each gets PR_SET_PDEATHSIG, so a benchmark killed with ^C
//! does not leave them behind.
//!
//! Two more kinds: lsyncd with `default.rsyncssh` (renames and deletions
//! as `ssh HOST mv A B` on the target, always through the benchmark's sshd,
//! with `ssh.binary` a logging wrapper so its `mv` commands count as runs),
//! and `syncd-alt`, syncd built from another commit (`--syncd-alt PATH`).
//! With an ssh destination ([`crate::ssh::Remote`]) syncd gets
//! `--rsh` and `USER@127.0.0.1:DEST`, lsyncd `default.rsync` a `host:path`
//! target and `rsync.rsh`.

use std::fs;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// Which daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub enum Kind {
    Syncd,
    Lsyncd,
    /// lsyncd with `default.rsyncssh`.
    LsyncdSsh,
    /// syncd built from another commit (`--syncd-alt`).
    SyncdAlt,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::Syncd, Kind::Lsyncd, Kind::LsyncdSsh, Kind::SyncdAlt];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Syncd => "syncd",
            Kind::Lsyncd => "lsyncd",
            Kind::LsyncdSsh => "lsyncd-rsyncssh",
            Kind::SyncdAlt => "syncd-alt",
        }
    }

    pub fn is_syncd(self) -> bool {
        matches!(self, Kind::Syncd | Kind::SyncdAlt)
    }
}

/// What a daemon needs to start.
pub struct Setup<'a> {
    pub src: &'a Path,
    pub dst: &'a Path,
    /// Scratch space for the state dir, config and log.
    pub work: &'a Path,
    pub wrapper: &'a Path,
    pub delay: f64,
    /// `--backoff-max` for syncd (lsyncd retries every `delay`).
    pub backoff_max: Option<f64>,
    /// Extra logging (syncd `-v`), to count committed windows.
    pub verbose: bool,
    /// A command syncd runs under (profiling), e.g. `valgrind --tool=callgrind`.
    pub syncd_prefix: &'a [String],
    /// DEST over ssh (through a proxy); `None`: a local path.
    pub remote: Option<&'a crate::ssh::Remote>,
    /// lsyncd rsyncssh's `ssh.binary` (a logging wrapper).
    pub ssh_wrapper: Option<&'a Path>,
    /// The log file (default: WORK/KIND.log).
    pub log: Option<PathBuf>,
}

/// CPU seconds from /proc/PID/stat.
#[derive(Debug, Clone, Copy, Default)]
pub struct Cpu {
    /// The daemon's own user + system time (all threads).
    pub own: f64,
    /// user + system time of its children that it has waited for.
    pub children: f64,
}

/// A running daemon.
pub struct Daemon {
    pub kind: Kind,
    child: Child,
    pub log: PathBuf,
    pub started: f64,
}

impl Daemon {
    pub fn start(kind: Kind, s: &Setup, syncd_bin: &Path) -> Result<Daemon> {
        let log = s
            .log
            .clone()
            .unwrap_or_else(|| s.work.join(format!("{}.log", kind.name())));
        let out = fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let mut cmd = match kind {
            Kind::Syncd | Kind::SyncdAlt => syncd_command(s, syncd_bin),
            Kind::Lsyncd | Kind::LsyncdSsh => lsyncd_command(s, kind)?,
        };
        let path = format!(
            "{}:{}",
            s.wrapper.parent().unwrap_or(Path::new("/")).display(),
            std::env::var("PATH").unwrap_or_default()
        );
        cmd.env("PATH", path)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        // SAFETY: prctl only affects the child being started.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let started = crate::tree::now();
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", kind.name()))?;
        Ok(Daemon {
            kind,
            child,
            log,
            started,
        })
    }

    /// Under callgrind, dumps the profile so far (the start-up) into its
    /// own file and switches instrumentation on (for `--instr-atstart=no`),
    /// so the final dump holds the change alone.
    pub fn profile_checkpoint(&self, s: &Setup) {
        if self.kind.is_syncd() && s.syncd_prefix.iter().any(|a| a.contains("callgrind")) {
            for arg in ["--dump=start-up", "--instr=on"] {
                let _ = Command::new("callgrind_control")
                    .arg(arg)
                    .arg(self.pid().to_string())
                    .stdout(Stdio::null())
                    .status();
            }
        }
    }

    /// Waits until the daemon stops using CPU (less than one clock tick in
    /// `quiet`): the end of the start-up includes digesting the events its
    /// own first rsync run caused, which must not count as the change's.
    pub fn wait_idle(&mut self, quiet: Duration, within: Duration) -> Result<()> {
        let t = Instant::now();
        let mut last = (Instant::now(), self.cpu()?.own);
        while t.elapsed() < within {
            std::thread::sleep(Duration::from_millis(100));
            self.check_alive()?;
            let now = self.cpu()?.own;
            if now - last.1 > 0.011 {
                last = (Instant::now(), now);
            } else if last.0.elapsed() >= quiet {
                return Ok(());
            }
        }
        bail!(
            "{} kept using CPU for {within:?} after its start-up sync",
            self.kind.name()
        )
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// The daemon's log so far.
    pub fn log_text(&self) -> String {
        String::from_utf8_lossy(&fs::read(&self.log).unwrap_or_default()).into_owned()
    }

    /// Fails if the daemon exited.
    pub fn check_alive(&mut self) -> Result<()> {
        if let Some(st) = self.child.try_wait()? {
            bail!(
                "{} exited ({st}); its log ({}) ends with:\n{}",
                self.kind.name(),
                self.log.display(),
                tail(&self.log_text(), 15)
            );
        }
        Ok(())
    }

    /// Whether the daemon said its start-up sync is done: syncd logs
    /// `[DEST] synced` after its first rsync run, lsyncd `Startup of …
    /// finished` (`finished.` with default.rsync, `finished: 0` with
    /// default.rsyncssh).
    pub fn started_up(&self) -> bool {
        let log = self.log_text();
        if self.kind.is_syncd() {
            log.contains("] synced")
        } else {
            log.lines()
                .any(|l| l.contains("Startup of") && l.contains("finished"))
        }
    }

    /// Waits until [`Daemon::started_up`].
    pub fn wait_started(&mut self, within: Duration) -> Result<()> {
        let t = Instant::now();
        while !self.started_up() {
            self.check_alive()?;
            if t.elapsed() > within {
                bail!(
                    "{} did not finish its start-up sync within {within:?}; log {}",
                    self.kind.name(),
                    self.log.display()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    pub fn cpu(&self) -> Result<Cpu> {
        let stat = fs::read_to_string(format!("/proc/{}/stat", self.pid()))?;
        let rest = stat
            .rsplit_once(')')
            .map(|(_, r)| r)
            .context("unreadable /proc/PID/stat")?;
        // Fields after the command: state is field 3, so utime (14) is at 11.
        let f: Vec<f64> = rest
            .split_whitespace()
            .skip(11)
            .take(4)
            .map(|x| x.parse::<f64>().unwrap_or(0.0))
            .collect();
        if f.len() < 4 {
            bail!("short /proc/PID/stat");
        }
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        Ok(Cpu {
            own: (f[0] + f[1]) / hz,
            children: (f[2] + f[3]) / hz,
        })
    }

    /// Peak resident set size (VmHWM) and the anonymous (private) part of
    /// the current one (RssAnon), in MiB. VmHWM also counts the pages of
    /// the program and its libraries that were ever touched, which page
    /// cache shares with every other process mapping them.
    pub fn rss_mib(&self) -> Result<(f64, f64)> {
        let status = fs::read_to_string(format!("/proc/{}/status", self.pid()))?;
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<f64>().ok())
                .map(|kib| kib / 1024.0)
                .with_context(|| format!("no {name} in /proc/PID/status"))
        };
        Ok((field("VmHWM:")?, field("RssAnon:")?))
    }

    /// SIGKILL, at once (a crash).
    pub fn kill9(mut self) -> Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// SIGTERM, then SIGKILL after 30 s.
    pub fn stop(mut self) -> Result<()> {
        // SAFETY: kill on our own child's pid, which we have not reaped.
        unsafe { libc::kill(self.pid(), libc::SIGTERM) };
        let t = Instant::now();
        while self.child.try_wait()?.is_none() {
            if t.elapsed() > Duration::from_secs(30) {
                let _ = self.child.kill();
                let _ = self.child.wait();
                bail!("{} ignored SIGTERM for 30 s", self.kind.name());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn syncd_command(s: &Setup, bin: &Path) -> Command {
    let mut src = s.src.as_os_str().to_os_string();
    src.push("/./");
    let mut cmd = match s.syncd_prefix.split_first() {
        Some((program, args)) => {
            let mut c = Command::new(program);
            c.args(args).arg(bin);
            c
        }
        None => Command::new(bin),
    };
    if s.verbose {
        cmd.arg("-v");
    }
    cmd.arg("run")
        .arg("--state-dir")
        .arg(s.work.join("state"))
        .arg("--delay")
        .arg(s.delay.to_string())
        .arg("--rsync")
        .arg(s.wrapper);
    if let Some(b) = s.backoff_max {
        cmd.arg("--backoff-max").arg(b.to_string());
    }
    match s.remote {
        Some(r) => cmd.arg("--rsh").arg(r.rsh()).arg(src).arg(r.target(s.dst)),
        None => cmd.arg(src).arg(s.dst),
    };
    cmd
}

fn lsyncd_command(s: &Setup, kind: Kind) -> io::Result<Command> {
    let config = s.work.join("lsyncd.conf.lua");
    let text = if kind == Kind::LsyncdSsh {
        lsyncd_rsyncssh_config(s)
    } else {
        lsyncd_config(s)
    };
    fs::write(&config, text)?;
    let mut cmd = Command::new("lsyncd");
    cmd.arg("-nodaemon").arg(&config);
    Ok(cmd)
}

/// lsyncd's config (a Lua program). Paths are ours, under the work dir,
/// and never contain a quote or a backslash.
pub fn lsyncd_config(s: &Setup) -> String {
    let (target, rsh) = match s.remote {
        Some(r) => (r.target(s.dst), format!("        rsh = \"{}\",\n", r.rsh())),
        None => (s.dst.display().to_string(), String::new()),
    };
    format!(
        "-- Written by syncd's e2e benchmark.\n\
         settings {{\n    nodaemon = true,\n    insist = true,\n}}\n\
         sync {{\n    default.rsync,\n    source = \"{}\",\n    target = \"{target}\",\n    delay = {},\n    \
         rsync = {{\n        binary = \"{}\",\n        archive = true,\n{rsh}    }},\n}}\n",
        s.src.display(),
        s.delay,
        s.wrapper.display()
    )
}

/// lsyncd's config with `default.rsyncssh`: rsync for data, `ssh HOST mv`
/// for moves. Its ssh is the logging wrapper with our key, port and
/// options; rsyncssh passes the same to rsync's `--rsh`.
pub fn lsyncd_rsyncssh_config(s: &Setup) -> String {
    let Some(r) = s.remote else {
        return "error('default.rsyncssh needs the benchmark sshd')".into();
    };
    let options: Vec<String> = r
        .options()
        .iter()
        .map(|(k, v)| format!("            {k} = \"{v}\",\n"))
        .collect();
    let ssh = s.ssh_wrapper.unwrap_or(Path::new("/usr/bin/ssh"));
    format!(
        "-- Written by syncd's e2e benchmark.\n\
         settings {{\n    nodaemon = true,\n    insist = true,\n}}\n\
         sync {{\n    default.rsyncssh,\n    source = \"{}\",\n    host = \"{}\",\n    \
         targetdir = \"{}\",\n    delay = {},\n    \
         rsync = {{\n        binary = \"{}\",\n        archive = true,\n    }},\n    \
         ssh = {{\n        binary = \"{}\",\n        identityFile = \"{}\",\n        port = {},\n        \
         options = {{\n{}        }},\n    }},\n}}\n",
        s.src.display(),
        r.host(),
        s.dst.display(),
        s.delay,
        s.wrapper.display(),
        ssh.display(),
        r.key.display(),
        r.port,
        options.concat()
    )
}

/// Makes sure lsyncd is installed: `apt-get install -y lsyncd` (as root)
/// when it is missing. Returns its version line.
pub fn ensure_lsyncd() -> Result<String> {
    if let Some(v) = version("lsyncd", "--version") {
        return Ok(v);
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("lsyncd is not installed; run `apt-get install -y lsyncd` as root, or run the benchmark as root");
    }
    eprintln!("e2e: installing lsyncd from Debian's packages");
    let install = || {
        Command::new("apt-get")
            .args([
                "install",
                "-y",
                "-q",
                "-o",
                "DPkg::Lock::Timeout=300",
                "lsyncd",
            ])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
    };
    if !install()?.success() {
        Command::new("apt-get").args(["update", "-q"]).status()?;
        if !install()?.success() {
            bail!("apt-get install -y lsyncd failed");
        }
    }
    version("lsyncd", "--version").context("lsyncd still does not run after apt-get install")
}

/// The first line of `PROG ARG`'s output, if it runs.
pub fn version(prog: &str, arg: &str) -> Option<String> {
    let out = Command::new(prog)
        .arg(arg)
        .stdin(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines().next().map(|l| l.trim().to_string())
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
