//! A private `rsync --daemon` on 127.0.0.1 for one test, on its own free
//! port, with one writable module `mod` whose directory the test chooses
//! (so a test compares it with the source directly). Dropping it ends the
//! daemon and every process it started (found by the environment mark they
//! inherit, even after reparenting).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, procs};

pub struct Rsyncd {
    pub port: u16,
    dir: PathBuf,
    child: Child,
}

impl Rsyncd {
    /// Writes a config in `dir` and starts the daemon serving `module_dir`
    /// as module `mod`, waiting until it answers.
    pub fn start(dir: &Path, module_dir: &Path) -> Rsyncd {
        fs::create_dir_all(dir).unwrap();
        fs::create_dir_all(module_dir).unwrap();
        // SAFETY: getuid/getgid have no preconditions.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        let conf = dir.join("rsyncd.conf");
        fs::write(
            &conf,
            format!(
                "use chroot = no\nmunge symlinks = no\nlock file = {d}/rsyncd.lock\n\
                 log file = {d}/rsyncd.log\n[mod]\n    path = {m}\n    read only = no\n\
                 \x20   uid = {uid}\n    gid = {gid}\n",
                d = dir.display(),
                m = module_dir.display()
            ),
        )
        .unwrap();
        for _ in 0..5 {
            let port = free_port();
            let out = fs::File::create(dir.join("rsyncd.out")).unwrap();
            let child = Command::new("rsync")
                .arg("--daemon")
                .arg("--no-detach")
                .arg("--address=127.0.0.1")
                .arg(format!("--port={port}"))
                .arg(format!("--config={}", conf.display()))
                .env(procs::MARK, dir)
                .stdin(Stdio::null())
                .stdout(out.try_clone().unwrap())
                .stderr(out)
                .spawn()
                .expect("start rsync --daemon");
            let mut d = Rsyncd {
                port,
                dir: dir.to_path_buf(),
                child,
            };
            if d.wait_ready() {
                return d;
            }
            d.end();
        }
        panic!(
            "rsync --daemon did not come up; log:\n{}",
            fs::read_to_string(dir.join("rsyncd.log")).unwrap_or_default()
        );
    }

    fn wait_ready(&mut self) -> bool {
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            let ok = Command::new("rsync")
                .args(["--contimeout=2", "--timeout=5"])
                .arg(format!("rsync://127.0.0.1:{}/", self.port))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ok {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// The daemon's pid (the root of every connection's processes).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn end(&mut self) {
        procs::kill_descendants(self.child.id());
        procs::kill_descendants(self.child.id());
        let _ = self.child.kill();
        let _ = self.child.wait();
        procs::kill_marked(&self.dir.to_string_lossy());
    }
}

impl Drop for Rsyncd {
    fn drop(&mut self) {
        self.end();
    }
}
