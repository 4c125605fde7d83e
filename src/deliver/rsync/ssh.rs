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
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::config::destopts::DestOptions;
use crate::config::location::{Destination, Place};
use crate::deliver::rsync::Outcome;

/// Splits a remote-shell command as rsync splits `-e`: words are separated
/// by spaces; single or double quotes group, and a doubled quote inside
/// quotes is a literal quote. No backslash escapes.
pub fn split_command(s: &OsStr) -> Result<Vec<OsString>, String> {
    let b = s.as_bytes();
    let mut words = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b' ' {
            i += 1;
            continue;
        }
        let mut w = Vec::new();
        let mut quote: Option<u8> = None;
        while i < b.len() && (b[i] != b' ' || quote.is_some()) {
            let c = b[i];
            match quote {
                None if c == b'\'' || c == b'"' => quote = Some(c),
                Some(q) if c == q => {
                    if b.get(i + 1) == Some(&q) {
                        w.push(q);
                        i += 1;
                    } else {
                        quote = None;
                    }
                }
                _ => w.push(c),
            }
            i += 1;
        }
        if let Some(q) = quote {
            return Err(format!(
                "the remote shell command {:?} lacks a trailing {}",
                s.to_string_lossy(),
                q as char
            ));
        }
        words.push(OsString::from_vec(w));
    }
    Ok(words)
}

/// Joins words into one `-e` value that [`split_command`] (and rsync)
/// splits back into the same words.
pub fn join_command(words: &[OsString]) -> OsString {
    let mut out = Vec::new();
    for (n, w) in words.iter().enumerate() {
        if n > 0 {
            out.push(b' ');
        }
        let b = w.as_bytes();
        if !b.is_empty() && !b.iter().any(|&c| c == b' ' || c == b'\'' || c == b'"') {
            out.extend_from_slice(b);
            continue;
        }
        out.push(b'\'');
        for &c in b {
            out.push(c);
            if c == b'\'' {
                out.push(b'\'');
            }
        }
        out.push(b'\'');
    }
    OsString::from_vec(out)
}

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

/// FNV-1a, 64 bits: a stable file name, not a security boundary (the
/// directory is private).
struct Fnv(u64);

impl Fnv {
    fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    fn write(&mut self, b: &[u8]) {
        for &c in b {
            self.0 ^= c as u64;
            self.0 = self.0.wrapping_mul(0x100_0000_01b3);
        }
    }
}

/// The longest control directory path that still fits a socket path:
/// `sun_path` holds 107 bytes, ssh appends `/` + 16 hex digits for our
/// name and `.` + 16 random characters while it creates the socket.
const MAX_CONTROL_DIR: usize = 107 - 17 - 17;

/// Where the control sockets of a state directory live: `STATE/ssh`, or,
/// when that path is too long for a socket or has characters ssh's option
/// parser would split on, `$XDG_RUNTIME_DIR/syncd-HASH` or
/// `/tmp/syncd-UID/HASH`. Pure: [`prepare`] creates it when a worker
/// starts, so `--dry-run` touches nothing.
pub fn control_dir(state_dir: &Path) -> PathBuf {
    let preferred = state_dir.join("ssh");
    if fits(&preferred) {
        return preferred;
    }
    let mut h = Fnv::new();
    h.write(state_dir.as_os_str().as_bytes());
    let hash = format!("{:016x}", h.0);
    if let Some(run) = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from) {
        let p = run.join(format!("syncd-{hash}"));
        if fits(&p) {
            return p;
        }
    }
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    PathBuf::from(format!("/tmp/syncd-{uid}/{hash}"))
}

fn fits(p: &Path) -> bool {
    let b = p.as_os_str().as_bytes();
    b.len() <= MAX_CONTROL_DIR
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || b"/._-+@,".contains(c))
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

    fn words(s: &str) -> Vec<OsString> {
        split_command(OsStr::new(s)).unwrap()
    }

    #[test]
    fn commands_split_as_rsync_splits_them() {
        assert_eq!(words("ssh  -p 22"), ["ssh", "-p", "22"]);
        assert_eq!(words("ssh -i '/a b/k'"), ["ssh", "-i", "/a b/k"]);
        assert_eq!(words(r#"ssh -o "X=it""s""#), ["ssh", "-o", "X=it\"s"]);
        assert_eq!(words("ssh ''"), ["ssh", ""]);
        assert_eq!(words("a'b c'd"), ["ab cd"]);
        assert!(split_command(OsStr::new("ssh \"x")).is_err());
    }

    #[test]
    fn joined_commands_split_back_into_the_same_words() {
        let cases: Vec<Vec<OsString>> = vec![
            vec!["ssh".into(), "-i".into(), "/a b/it's".into()],
            vec!["x".into(), "".into(), "\"q\"".into(), "''".into()],
            vec![OsString::from_vec(b"\xff \xfe".to_vec())],
        ];
        for w in cases {
            assert_eq!(split_command(&join_command(&w)).unwrap(), w);
        }
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
