//! Where a daemon keeps its state: the state directory, and the private
//! directory of its ssh control sockets.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::cli::StateArgs;
use super::file::ConfigFile;
use crate::error::{Error, Result};

/// The state directory from the flag or env, then the config file, or the
/// default for this user.
pub fn state_dir(args: &StateArgs, file: Option<&ConfigFile>) -> Result<PathBuf> {
    if let Some(d) = &args.state_dir {
        return absolute(d);
    }
    if let Some(d) = file.and_then(ConfigFile::state_dir) {
        return absolute(&d);
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return Ok(PathBuf::from("/var/lib/syncd"));
    }
    if let Some(x) = std::env::var_os("XDG_STATE_HOME").filter(|x| !x.is_empty()) {
        return Ok(PathBuf::from(x).join("syncd"));
    }
    match std::env::var_os("HOME") {
        Some(h) => Ok(PathBuf::from(h).join(".local/state/syncd")),
        None => Err(Error::Usage(
            "no --state-dir given and $HOME is not set".into(),
        )),
    }
}

/// `p` made absolute against the working directory (not canonical: a
/// path that does not exist yet stays as given).
pub(crate) fn absolute(p: &Path) -> Result<PathBuf> {
    std::path::absolute(p).map_err(|e| Error::io("cannot resolve", p, e))
}

/// The longest control directory path that still fits a socket path:
/// `sun_path` holds 107 bytes, ssh appends `/` + 16 hex digits for our
/// name and `.` + 16 random characters while it creates the socket.
pub(crate) const MAX_CONTROL_DIR: usize = 107 - 17 - 17;

/// Where the control sockets of a state directory live: `STATE/ssh`, or,
/// when that path is too long for a socket or has characters ssh's option
/// parser would split on, `$XDG_RUNTIME_DIR/syncd-HASH` or
/// `/tmp/syncd-UID/HASH`. Pure: `deliver::rsync::ssh::prepare` creates it when a worker
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

/// FNV-1a, 64 bits: a stable file name, not a security boundary (the
/// directory is private).
pub(crate) struct Fnv(pub(crate) u64);

impl Fnv {
    pub(crate) fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    pub(crate) fn write(&mut self, b: &[u8]) {
        for &c in b {
            self.0 ^= c as u64;
            self.0 = self.0.wrapping_mul(0x100_0000_01b3);
        }
    }
}
