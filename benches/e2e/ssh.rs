//! The ssh destination of the benchmark: a private sshd on 127.0.0.1,
//! started by the benchmark on a free port with its own host key and
//! client key (ed25519, generated per run), key-only login as the current
//! user, a shell (lsyncd's `default.rsyncssh` runs `mv` through it) and
//! SFTP (`Subsystem sftp internal-sftp`: syncd renames through it). DEST
//! stays a local directory, reached as `USER@127.0.0.1:DEST`, so the mirror
//! check reads it directly; every client connects through a counting
//! [`crate::proxy::Proxy`] of its run.
//!
//! Dropping the server ends the listener and every process its sessions
//! started: those below it in the process tree, and those reparented away
//! (found by the mark sshd puts into each session's environment with
//! `SetEnv`). Only processes this benchmark started are signalled.

use std::ffi::CStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// The name the host key is known under (clients reach it through proxies
/// on other ports, so the key is checked against this alias).
const ALIAS: &str = "syncd-e2e-sshd";

/// The environment variable sshd sets in every session it starts.
const MARK: &str = "SYNCD_E2E_SSHD";

pub struct Sshd {
    pub port: u16,
    pub dir: PathBuf,
    pub user: String,
    child: Child,
}

/// How a client of one run reaches the server: through a proxy's port.
#[derive(Debug, Clone)]
pub struct Remote {
    pub user: String,
    pub port: u16,
    pub key: PathBuf,
    pub known_hosts: PathBuf,
}

impl Remote {
    /// ssh's `-o` options (as key, value) besides the key and the port.
    pub fn options(&self) -> Vec<(&'static str, String)> {
        vec![
            ("IdentitiesOnly", "yes".into()),
            ("UserKnownHostsFile", self.known_hosts.display().to_string()),
            ("StrictHostKeyChecking", "yes".into()),
            ("HostKeyAlias", ALIAS.into()),
        ]
    }

    /// The remote shell for rsync's `-e` and syncd's `--rsh`: every word
    /// ours, port included (paths under the benchmark's directories have no
    /// spaces or quotes).
    pub fn rsh(&self) -> String {
        let mut w = vec![
            "ssh".to_string(),
            "-F".into(),
            "none".into(),
            "-i".into(),
            self.key.display().to_string(),
            "-p".into(),
            self.port.to_string(),
        ];
        for (k, v) in self.options() {
            w.push("-o".into());
            w.push(format!("{k}={v}"));
        }
        w.join(" ")
    }

    /// `USER@127.0.0.1`.
    pub fn host(&self) -> String {
        format!("{}@127.0.0.1", self.user)
    }

    /// `USER@127.0.0.1:PATH`.
    pub fn target(&self, path: &Path) -> String {
        format!("{}:{}", self.host(), path.display())
    }
}

fn keygen(path: &Path, comment: &str) -> Result<()> {
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .status()
        .context("running ssh-keygen")?;
    if !st.success() {
        bail!("ssh-keygen failed ({st})");
    }
    Ok(())
}

/// The current user's name (sshd logs in as it).
fn user_name() -> Result<String> {
    // SAFETY: getpwuid returns a pointer into static storage or NULL; the
    // name is copied out at once, on the benchmark's main thread.
    unsafe {
        let pw = libc::getpwuid(libc::getuid());
        if pw.is_null() {
            bail!("the current user has no passwd entry");
        }
        Ok(CStr::from_ptr((*pw).pw_name).to_string_lossy().into_owned())
    }
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl Sshd {
    /// Keys and config in `dir` (created), then sshd, waiting until a
    /// login works.
    pub fn start(dir: &Path) -> Result<Sshd> {
        if !Path::new("/usr/sbin/sshd").exists() {
            bail!("/usr/sbin/sshd is missing: apt-get install -y openssh-server");
        }
        let _ = fs::remove_dir_all(dir);
        fs::create_dir_all(dir)?;
        fs::create_dir_all("/run/sshd")?; // sshd's privilege-separation directory
        keygen(&dir.join("host_ed25519"), "syncd-e2e-host")?;
        keygen(&dir.join("client_ed25519"), "syncd-e2e-client")?;
        fs::copy(dir.join("client_ed25519.pub"), dir.join("authorized_keys"))?;
        let host_pub = fs::read_to_string(dir.join("host_ed25519.pub"))?;
        let key: Vec<&str> = host_pub.split_whitespace().take(2).collect();
        fs::write(
            dir.join("known_hosts"),
            format!("{ALIAS} {}\n", key.join(" ")),
        )?;
        let user = user_name()?;
        for _ in 0..5 {
            let port = free_port()?;
            let conf = dir.join("sshd_config");
            fs::write(
                &conf,
                format!(
                    "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_ed25519\n\
                     PidFile none\nAuthorizedKeysFile {d}/authorized_keys\n\
                     PermitRootLogin prohibit-password\nPubkeyAuthentication yes\n\
                     PasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                     UsePAM no\nStrictModes no\nLogLevel ERROR\nMaxStartups 100\n\
                     MaxSessions 100\nSubsystem sftp internal-sftp\nSetEnv {MARK}={d}\n",
                    d = dir.display(),
                ),
            )?;
            let log = fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join("sshd.log"))?;
            let child = Command::new("/usr/sbin/sshd")
                .arg("-D")
                .arg("-e")
                .arg("-f")
                .arg(&conf)
                .env(MARK, dir)
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .context("starting /usr/sbin/sshd")?;
            let mut s = Sshd {
                port,
                dir: dir.to_path_buf(),
                user: user.clone(),
                child,
            };
            if s.wait_ready() {
                return Ok(s);
            }
            s.end(); // most likely the port was taken meanwhile
        }
        bail!(
            "sshd did not come up; its log:\n{}",
            fs::read_to_string(dir.join("sshd.log")).unwrap_or_default()
        )
    }

    /// How to reach this server through a proxy listening on `port`.
    pub fn remote(&self, port: u16) -> Remote {
        Remote {
            user: self.user.clone(),
            port,
            key: self.dir.join("client_ed25519"),
            known_hosts: self.dir.join("known_hosts"),
        }
    }

    fn wait_ready(&mut self) -> bool {
        let t = Instant::now();
        let remote = self.remote(self.port);
        while t.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            let mut words = remote.rsh();
            words.push_str(" -o ConnectTimeout=2 ");
            words.push_str(&remote.host());
            words.push_str(" true");
            let ok = Command::new("sh")
                .arg("-c")
                .arg(words)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    fn end(&mut self) {
        for _ in 0..2 {
            for pid in descendants(self.child.id()) {
                kill(pid);
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        kill_marked(&format!("{MARK}={}", self.dir.display()));
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.end();
    }
}

fn kill(pid: u32) {
    // SAFETY: kill(2) on a process this benchmark's sshd started.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
}

/// (pid, ppid) of every process.
fn table() -> Vec<(u32, u32)> {
    let Ok(rd) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let ppid = stat[stat.rfind(')')? + 1..]
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            Some((pid, ppid))
        })
        .collect()
}

/// Every descendant of `root`.
fn descendants(root: u32) -> Vec<u32> {
    let t = table();
    let mut out = Vec::new();
    let mut stack = vec![root];
    while let Some(p) = stack.pop() {
        for &(pid, ppid) in &t {
            if ppid == p {
                out.push(pid);
                stack.push(pid);
            }
        }
    }
    out
}

/// Kills every process whose environment holds `needle` (`MARK=dir`).
fn kill_marked(needle: &str) {
    for (pid, _) in table() {
        let Ok(env) = fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        if env.split(|&b| b == 0).any(|v| v == needle.as_bytes()) {
            kill(pid);
        }
    }
}
