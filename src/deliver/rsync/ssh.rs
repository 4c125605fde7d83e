//! The transport of remote destinations: the ssh command line and the one
//! ssh connection per destination that runs reuse.
//!
//! For a `host:path` destination rsync gets `-e` with the user's remote
//! shell (default `ssh`) followed by syncd's bounds: `BatchMode=yes` (no
//! prompt can hang a daemon), `ConnectTimeout`, and `ServerAlive*` sized so
//! a dead peer is noticed within about `--timeout`. ssh takes the first
//! value it sees for an option, so anything the user put in `--rsh` wins.
//! When `control-persist` is not 0, the first run opens a master connection
//! (`ControlMaster=auto`) on a socket in the state directory and later runs
//! ride on it, so a daemon that syncs every few seconds does not pay an ssh
//! handshake each time. After a run that failed in a way that suggests a
//! broken link, the master is told to exit, so the next attempt (after the
//! worker's jittered backoff) dials afresh instead of reusing a dead
//! connection; the daemon also closes it when the worker stops.
//!
//! Only a remote shell whose words include `ssh` gets these options; any
//! other (`rsh`, a wrapper script) is passed as given, and the watchdog and
//! `--timeout` still bound each run.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::config::destopts::DestOptions;
use crate::config::location::{Destination, Place};
use crate::config::state::Fnv;
use crate::deliver::rsync::Outcome;

/// Whether the remote shell is ssh (so syncd's ssh options apply): one of
/// its words is a program named `ssh` (`ssh`, `/usr/bin/ssh`, or the `ssh`
/// after a wrapper such as `env` or `sshpass`).
pub fn is_ssh(words: &[OsString]) -> bool {
    words
        .iter()
        .any(|w| Path::new(w).file_name() == Some(OsStr::new("ssh")))
}

/// syncd's ssh options for `opts`: the bounds, and connection reuse when a
/// control socket is available.
fn ssh_options(dest: &Destination, opts: &DestOptions) -> Vec<OsString> {
    let alive = opts.timeout_s.div_ceil(3).max(1);
    let mut o: Vec<OsString> = Vec::new();
    let mut opt = |s: String| {
        o.push("-o".into());
        o.push(s.into());
    };
    opt("BatchMode=yes".into());
    opt(format!("ConnectTimeout={}", opts.contimeout_s));
    opt(format!("ServerAliveInterval={alive}"));
    opt("ServerAliveCountMax=3".into());
    if let Some(path) = control_path(dest, opts) {
        opt("ControlMaster=auto".into());
        opt(format!("ControlPath={}", escape_tokens(&path)));
        opt(format!("ControlPersist={}", opts.control_persist_s));
    }
    if let Some(p) = opts.port {
        o.push("-p".into());
        o.push(p.to_string().into());
    }
    o
}

/// ssh expands `%` tokens in ControlPath; a literal `%` is `%%`.
fn escape_tokens(p: &Path) -> String {
    p.to_string_lossy().replace('%', "%%")
}

/// The remote shell words rsync runs for `dest` (`None` for destinations
/// that use no remote shell: local paths and rsync daemons).
pub fn rsh_words(dest: &Destination, opts: &DestOptions) -> Option<Vec<OsString>> {
    if !matches!(dest.place, Place::Shell { .. }) {
        return None;
    }
    let mut w = opts.rsh.clone();
    if is_ssh(&w) {
        w.extend(ssh_options(dest, opts));
    }
    Some(w)
}

/// The control socket of `dest`, when connection reuse is on. It is named
/// by a hash of the target, the port and the remote shell, so a changed
/// setting never reuses a master opened with the old one.
pub fn control_path(dest: &Destination, opts: &DestOptions) -> Option<PathBuf> {
    let shell = matches!(dest.place, Place::Shell { .. });
    if !shell || opts.control_persist_s == 0 || !is_ssh(&opts.rsh) {
        return None;
    }
    let dir = opts.control_dir.as_ref()?;
    let mut h = Fnv::new();
    h.write(dest.target.as_bytes());
    h.write(&opts.port.unwrap_or(0).to_be_bytes());
    for w in &opts.rsh {
        h.write(w.as_bytes());
        h.write(&[0]);
    }
    Some(dir.join(format!("{:016x}", h.0)))
}

/// Creates the control directory of `opts` (mode 0700, checked to be this
/// user's and closed to others; under `/tmp` the `syncd-UID` level too).
/// When that fails, connection reuse is turned off for this destination,
/// with a warning: runs still work, each with its own connection.
pub fn prepare(dest: &Destination, opts: &mut DestOptions) {
    if control_path(dest, opts).is_none() {
        return;
    }
    let Some(dir) = opts.control_dir.clone() else {
        return;
    };
    // SAFETY: getuid has no preconditions.
    let shared_tmp = PathBuf::from(format!("/tmp/syncd-{}", unsafe { libc::getuid() }));
    let made = match dir.parent() {
        Some(top) if top == shared_tmp => private_dir(top).and_then(|_| private_dir(&dir)),
        Some(top) => std::fs::create_dir_all(top)
            .map_err(|e| format!("cannot create {}: {e}", top.display()))
            .and_then(|_| private_dir(&dir)),
        None => private_dir(&dir),
    };
    if let Err(why) = made {
        log::warn!("[{}] ssh connections are not reused: {why}", dest.name);
        opts.control_dir = None;
    }
}

/// Creates `p` (mode 0700) if missing and checks it is a real directory
/// owned by this user and closed to others.
fn private_dir(p: &Path) -> Result<(), String> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    let mut b = std::fs::DirBuilder::new();
    b.mode(0o700);
    if let Err(e) = b.create(p) {
        if e.kind() != std::io::ErrorKind::AlreadyExists {
            return Err(format!("cannot create {}: {e}", p.display()));
        }
    }
    let m = std::fs::symlink_metadata(p).map_err(|e| format!("{}: {e}", p.display()))?;
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    if !m.is_dir() || m.uid() != uid || m.mode() & 0o077 != 0 {
        return Err(format!(
            "{} is not a private directory of uid {uid} (mode 0700)",
            p.display()
        ));
    }
    Ok(())
}

/// Whether a failed run suggests a broken link, so the master connection
/// (which may hang on it) should be closed before the next attempt. A run
/// syncd ended itself (watchdog) exits with 20 or by a signal.
pub fn link_suspect(out: &Outcome) -> bool {
    matches!(out.code, None | Some(10 | 12 | 14 | 20 | 30 | 35 | 255))
}

/// Asks the ssh master of `dest`, if one runs, to exit (`ssh -O exit`),
/// waiting at most three seconds. The master is a local process, so this
/// works even when the link is frozen.
pub fn close_master(dest: &Destination, opts: &DestOptions) {
    let Some(path) = control_path(dest, opts) else {
        return;
    };
    if !path.exists() {
        return;
    }
    let Place::Shell { user, host, .. } = &dest.place else {
        return;
    };
    let Some((program, args)) = opts.rsh.split_first() else {
        return;
    };
    let target = match user {
        Some(u) => format!("{u}@{host}"),
        None => host.clone(),
    };
    let mut cmd = Command::new(program);
    cmd.args(args)
        .arg("-o")
        .arg(format!("ControlPath={}", escape_tokens(&path)))
        .args(["-O", "exit", "--"])
        .arg(target)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let Ok(mut child) = cmd.spawn() else {
        return;
    };
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        match child.try_wait() {
            Ok(Some(_)) | Err(_) => break,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    log::debug!("[{}] closed the ssh master connection", dest.name);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::state::{control_dir, MAX_CONTROL_DIR};

    fn words(s: &str) -> Vec<OsString> {
        crate::config::words::split_command(OsStr::new(s)).unwrap()
    }

    #[test]
    fn ssh_gets_bounds_reuse_and_port_after_the_users_words() {
        let dest = Destination::resolve(OsStr::new("u@h:/x"), Path::new("/")).unwrap();
        let mut o = DestOptions {
            rsh: words("ssh -o ConnectTimeout=99"),
            timeout_s: 10,
            contimeout_s: 4,
            port: Some(2222),
            control_dir: Some("/state/ssh".into()),
            ..DestOptions::default()
        };
        let w = rsh_words(&dest, &o).unwrap();
        let s: Vec<String> = w.iter().map(|w| w.to_string_lossy().into()).collect();
        assert_eq!(&s[..3], ["ssh", "-o", "ConnectTimeout=99"]);
        for needle in [
            "BatchMode=yes",
            "ConnectTimeout=4",
            "ServerAliveInterval=4",
            "ServerAliveCountMax=3",
            "ControlMaster=auto",
            "ControlPersist=300",
        ] {
            assert!(s.iter().any(|x| x == needle), "{needle} in {s:?}");
        }
        assert!(s.iter().any(|x| x.starts_with("ControlPath=/state/ssh/")));
        assert_eq!(&s[s.len() - 2..], ["-p", "2222"]);
        o.control_persist_s = 0;
        let w = rsh_words(&dest, &o).unwrap();
        assert!(!w.iter().any(|x| x.to_string_lossy().contains("Control")));
        o.rsh = words("/usr/local/bin/my-rsh -x");
        assert_eq!(
            rsh_words(&dest, &o).unwrap(),
            words("/usr/local/bin/my-rsh -x")
        );
        let daemon = Destination::resolve(OsStr::new("h::m"), Path::new("/")).unwrap();
        assert_eq!(rsh_words(&daemon, &o), None);
    }

    #[test]
    fn control_paths_differ_by_target_port_and_shell() {
        let o = DestOptions {
            control_dir: Some("/s".into()),
            ..DestOptions::default()
        };
        let d = |s: &str| Destination::resolve(OsStr::new(s), Path::new("/")).unwrap();
        let a = control_path(&d("h:/a"), &o).unwrap();
        assert_ne!(a, control_path(&d("h:/b"), &o).unwrap());
        let p = DestOptions {
            port: Some(2),
            ..o.clone()
        };
        assert_ne!(a, control_path(&d("h:/a"), &p).unwrap());
        assert_eq!(a, control_path(&d("h:/a"), &o).unwrap());
        assert!(a.as_os_str().len() < 20);
    }

    #[test]
    fn control_dirs_are_private_and_short_enough_for_a_socket() {
        let t = tempfile::tempdir().unwrap();
        assert_eq!(control_dir(t.path()), t.path().join("ssh"));
        let long = t.path().join("x".repeat(90));
        let d = control_dir(&long);
        assert!(d.as_os_str().len() <= MAX_CONTROL_DIR, "{}", d.display());
        assert!(!d.starts_with(&long));
        let dest = Destination::resolve(OsStr::new("h:/x"), Path::new("/")).unwrap();
        let mut o = DestOptions {
            control_dir: Some(control_dir(t.path())),
            ..DestOptions::default()
        };
        prepare(&dest, &mut o);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(t.path().join("ssh"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
        assert!(o.control_dir.is_some());
        // A directory others can enter is refused, and reuse turned off.
        std::fs::set_permissions(t.path().join("ssh"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        prepare(&dest, &mut o);
        assert_eq!(o.control_dir, None);
    }
}
