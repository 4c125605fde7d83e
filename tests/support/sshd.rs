//! A private sshd on 127.0.0.1 for one test: its own host and client
//! ed25519 keys generated per run, key-only login, its own free port, and
//! a known_hosts entry under a fixed alias, so a client going through a
//! proxy on another port checks the same key (`HostKeyAlias`). Dropping it
//! ends the listener and every process its sessions started, found by the
//! tree below it and by the mark sshd puts into each session's environment
//! (sshd leaves sessions and their `rsync --server` running when only the
//! listener dies, and a remote rsync outlives a closed session while a test
//! holds it stopped).

use std::ffi::CStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, procs};

/// The name the host key is known under.
pub const ALIAS: &str = "syncd-test-sshd";

pub struct Sshd {
    pub port: u16,
    pub dir: PathBuf,
    pub user: String,
    child: Child,
}

fn keygen(path: &Path, comment: &str) {
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .status()
        .expect("run ssh-keygen");
    assert!(st.success(), "ssh-keygen failed");
}

/// The name of the user the tests run as (sshd logs in as it).
pub fn user_name() -> String {
    // SAFETY: getpwuid returns a pointer into static storage or NULL; the
    // name is copied out at once, and tests do not call getpw* elsewhere.
    unsafe {
        let pw = libc::getpwuid(libc::getuid());
        assert!(!pw.is_null(), "the current user has no passwd entry");
        CStr::from_ptr((*pw).pw_name).to_string_lossy().into_owned()
    }
}

impl Sshd {
    /// Generates keys and config in `dir` and starts sshd, waiting until a
    /// login works.
    pub fn start(dir: &Path) -> Sshd {
        fs::create_dir_all(dir).unwrap();
        // The privilege-separation directory sshd insists on.
        fs::create_dir_all("/run/sshd").unwrap();
        keygen(&dir.join("host_ed25519"), "syncd-test-host");
        keygen(&dir.join("client_ed25519"), "syncd-test-client");
        fs::copy(dir.join("client_ed25519.pub"), dir.join("authorized_keys")).unwrap();
        let host_pub = fs::read_to_string(dir.join("host_ed25519.pub")).unwrap();
        let key: Vec<&str> = host_pub.split_whitespace().take(2).collect();
        fs::write(
            dir.join("known_hosts"),
            format!("{ALIAS} {}\n", key.join(" ")),
        )
        .unwrap();
        let user = user_name();
        for _ in 0..5 {
            let port = free_port();
            let conf = dir.join("sshd_config");
            fs::write(
                &conf,
                format!(
                    "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_ed25519\n\
                     PidFile none\nAuthorizedKeysFile {d}/authorized_keys\n\
                     PermitRootLogin prohibit-password\nPubkeyAuthentication yes\n\
                     PasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                     UsePAM no\nStrictModes no\nLogLevel ERROR\nMaxStartups 100\n\
                     Subsystem sftp internal-sftp\n\
                     SetEnv {mark}={d}\n",
                    d = dir.display(),
                    mark = procs::MARK,
                ),
            )
            .unwrap();
            let log = fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join("sshd.log"))
                .unwrap();
            let child = Command::new("/usr/sbin/sshd")
                .arg("-D")
                .arg("-e")
                .arg("-f")
                .arg(&conf)
                .env(procs::MARK, dir)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("start /usr/sbin/sshd (install openssh-server)");
            let mut s = Sshd {
                port,
                dir: dir.to_path_buf(),
                user: user.clone(),
                child,
            };
            if s.wait_ready() {
                return s;
            }
            // Most likely the port was taken meanwhile: try another.
            s.end();
        }
        panic!(
            "sshd did not come up; log:\n{}",
            fs::read_to_string(dir.join("sshd.log")).unwrap_or_default()
        );
    }

    fn wait_ready(&mut self) -> bool {
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            let ok = Command::new("ssh")
                .args(self.ssh_words())
                .args(["-o", "ConnectTimeout=2", "-p"])
                .arg(self.port.to_string())
                .arg(format!("{}@127.0.0.1", self.user))
                .arg("true")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ok {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// The ssh arguments (after `ssh`) that log in to this server on any
    /// port: our key, our known_hosts, the alias, and no user config.
    pub fn ssh_words(&self) -> Vec<String> {
        vec![
            "-F".into(),
            "none".into(),
            "-i".into(),
            self.dir.join("client_ed25519").display().to_string(),
            "-o".into(),
            "IdentitiesOnly=yes".into(),
            "-o".into(),
            format!(
                "UserKnownHostsFile={}",
                self.dir.join("known_hosts").display()
            ),
            "-o".into(),
            "StrictHostKeyChecking=yes".into(),
            "-o".into(),
            format!("HostKeyAlias={ALIAS}"),
        ]
    }

    /// The remote shell command for syncd's `--rsh` (no port: give it with
    /// `port=` or `-p`).
    pub fn rsh(&self) -> String {
        let mut w = vec!["ssh".to_string()];
        w.extend(self.ssh_words());
        w.join(" ")
    }

    /// Restricts the client key from the next login on: `options` go
    /// before it in `authorized_keys` (for example `command="rrsync /"`,
    /// a key that may run rsync only).
    pub fn restrict(&self, options: &str) {
        let key = fs::read_to_string(self.dir.join("client_ed25519.pub")).unwrap();
        fs::write(self.dir.join("authorized_keys"), format!("{options} {key}")).unwrap();
    }

    /// The listener's pid (the root of every session).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn end(&mut self) {
        // Twice: a session may fork while the first sweep runs.
        procs::kill_descendants(self.child.id());
        procs::kill_descendants(self.child.id());
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Sessions whose sshd died were reparented away: find them by mark.
        procs::kill_marked(&self.dir.to_string_lossy());
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.end();
    }
}
