//! Moves replayed on an ssh destination through its SFTP subsystem.
//!
//! syncd starts the destination's remote shell as rsync would (the same
//! words, so the same ControlMaster connection, key and port) with `-s
//! HOST sftp`, and speaks SFTP version 3 itself: names travel as
//! length-prefixed bytes, so newlines, invalid UTF-8, leading dashes and
//! quotes need no escaping and no remote shell ever splits them (the `sftp`
//! client's batch files cannot carry such names). The remote side needs
//! only OpenSSH's `sftp-server`, no shell and no interpreter. Renames use
//! the `posix-rename@openssh.com` extension, which is rename(2): it
//! replaces an existing file or empty directory atomically, as the rename
//! in the source did (plain SFTP rename refuses an existing target).
//!
//! The requests of a batch are sent without waiting for each reply (at most
//! [`IN_FLIGHT`] outstanding, so neither side's pipe fills while the other
//! waits): a batch costs about one round trip more than the session's
//! start. OpenSSH's server handles them in order, which a chain of moves
//! needs.
//!
//! A destination whose key runs a forced command (`rrsync`, say) or whose
//! server offers no `posix-rename` answers the start with something other
//! than SFTP's version packet: [`Unavailable`], which the worker reports
//! once and then sends moves as transfers.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::unix::io::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Duration;

use super::{parent, NewDirs, Replayed};
use crate::changeset::Move;

const INIT: u8 = 1;
const VERSION: u8 = 2;
const MKDIR: u8 = 14;
const LSTAT: u8 = 7;
const STATUS: u8 = 101;
const ATTRS: u8 = 105;
const EXTENDED: u8 = 200;
const POSIX_RENAME: &[u8] = b"posix-rename@openssh.com";
const NO_SUCH_FILE: u32 = 2;
const PERMISSION_DENIED: u32 = 3;
/// Requests outstanding at most.
pub const IN_FLIGHT: usize = 64;
/// The largest packet accepted (OpenSSH's own limit).
const MAX_PACKET: usize = 256 * 1024;

/// Why moves cannot be replayed on this destination now; `lasting` when
/// the server will not do better next time (a forced command, no
/// `posix-rename`), as opposed to a connection that failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unavailable {
    pub why: String,
    pub lasting: bool,
}

fn transient(why: String) -> Unavailable {
    Unavailable {
        why,
        lasting: false,
    }
}

/// An SFTP session on a destination.
pub struct Session {
    child: Child,
    stdin: ChildStdin,
    stdout: ChildStdout,
    next_id: u32,
    timeout: Duration,
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `rsh` (the remote shell's words, with syncd's ssh options) as
/// `rsh -s HOST sftp` and checks that an SFTP server answers and offers
/// `posix-rename`. `timeout` bounds every wait for the peer.
pub fn connect(rsh: &[OsString], host: &str, timeout: Duration) -> Result<Session, Unavailable> {
    let Some((program, args)) = rsh.split_first() else {
        return Err(transient("no remote shell".into()));
    };
    let mut cmd = Command::new(program);
    cmd.args(args)
        .args(["-s", "--", host, "sftp"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0);
    // SAFETY: prctl is async-signal-safe and touches only this process.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| transient(format!("cannot start {}: {e}", program.to_string_lossy())))?;
    let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        return Err(transient("no pipes to the remote shell".into()));
    };
    let mut s = Session {
        child,
        stdin,
        stdout,
        next_id: 1,
        timeout,
    };
    s.send(INIT, &3u32.to_be_bytes(), true)
        .map_err(|e| transient(format!("the connection closed: {e}")))?;
    let (kind, body) = match s.recv() {
        Ok(p) => p,
        Err(e) => {
            // ssh exits 255 when the connection failed; anything else got
            // through and found no SFTP server there.
            let _ = s.child.kill();
            let code = s.child.wait().ok().and_then(|st| st.code());
            return Err(Unavailable {
                why: format!(
                    "no SFTP server answered ({e}): a key restricted to rsync (rrsync or \
                     another forced command), or no sftp subsystem"
                ),
                lasting: code != Some(255) && e.kind() != std::io::ErrorKind::TimedOut,
            });
        }
    };
    let lasting = |why: String| Unavailable { why, lasting: true };
    if kind != VERSION {
        return Err(lasting(format!(
            "the sftp subsystem answered with packet type {kind}, not SFTP's version: a \
             forced command runs instead"
        )));
    }
    if !extensions(&body).iter().any(|e| e == POSIX_RENAME) {
        return Err(lasting(
            "the SFTP server does not offer posix-rename@openssh.com (read-only, or \
             renames denied)"
                .into(),
        ));
    }
    Ok(s)
}

/// The extension names of a VERSION packet's body.
fn extensions(body: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut r = Reader(body.get(4..).unwrap_or(&[]));
    while let (Some(name), Some(_data)) = (r.string(), r.string()) {
        out.push(name.to_vec());
    }
    out
}

/// Reads SFTP's big-endian fields from a packet body.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn u32(&mut self) -> Option<u32> {
        let (b, rest) = self.0.split_first_chunk::<4>()?;
        self.0 = rest;
        Some(u32::from_be_bytes(*b))
    }

    fn string(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()? as usize;
        if self.0.len() < n {
            return None;
        }
        let (s, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(s)
    }
}

fn put_string(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s);
}

/// `base` (the destination's directory as the server sees it: relative to
/// the login's home unless absolute) joined with a root-relative path.
fn remote(base: &[u8], p: &[u8]) -> Vec<u8> {
    let mut out = base.to_vec();
    if !p.is_empty() {
        if !out.is_empty() && !out.ends_with(b"/") {
            out.push(b'/');
        }
        out.extend_from_slice(p);
    }
    if out.is_empty() {
        out.push(b'.');
    }
    out
}

impl Session {
    /// Sends one packet: `kind`, a fresh request id unless `bare`, `body`.
    /// Returns the id.
    fn send(&mut self, kind: u8, body: &[u8], bare: bool) -> std::io::Result<u32> {
        let id = self.next_id;
        let mut pkt = Vec::with_capacity(body.len() + 9);
        let len = body.len() + 1 + if bare { 0 } else { 4 };
        pkt.extend_from_slice(&(len as u32).to_be_bytes());
        pkt.push(kind);
        if !bare {
            pkt.extend_from_slice(&id.to_be_bytes());
            self.next_id = self.next_id.wrapping_add(1);
        }
        pkt.extend_from_slice(body);
        self.stdin.write_all(&pkt)?;
        Ok(id)
    }

    /// Waits for the peer's next bytes at most the timeout.
    fn wait_readable(&self) -> std::io::Result<()> {
        let mut fds = libc::pollfd {
            fd: self.stdout.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = self.timeout.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: poll reads and writes the one pollfd we own.
        match unsafe { libc::poll(&mut fds, 1, ms) } {
            0 => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer within {}s", self.timeout.as_secs()),
            )),
            n if n < 0 => Err(std::io::Error::last_os_error()),
            _ => Ok(()),
        }
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> std::io::Result<()> {
        let mut got = 0;
        while got < buf.len() {
            self.wait_readable()?;
            match self.stdout.read(&mut buf[got..])? {
                0 => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the connection closed",
                    ))
                }
                n => got += n,
            }
        }
        Ok(())
    }

    /// Reads one packet: its type and body.
    fn recv(&mut self) -> std::io::Result<(u8, Vec<u8>)> {
        let mut len = [0u8; 4];
        self.read_exact(&mut len)?;
        let len = u32::from_be_bytes(len) as usize;
        if len == 0 || len > MAX_PACKET {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("a packet of {len} bytes is not SFTP"),
            ));
        }
        let mut body = vec![0u8; len];
        self.read_exact(&mut body)?;
        let kind = body[0];
        body.remove(0);
        Ok((kind, body))
    }

    /// Reads one reply: its request id and SFTP status code (0 is OK).
    fn status(&mut self) -> std::io::Result<(u32, u32)> {
        let (kind, body) = self.recv()?;
        let mut r = Reader(&body);
        let (Some(id), Some(code)) = (r.u32(), r.u32()) else {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "a short reply",
            ));
        };
        if kind != STATUS {
            return Ok((id, u32::MAX));
        }
        Ok((id, code))
    }

    /// Whether `path` is a symlink on the server (`false` when it is
    /// missing). Sent alone, before any other request is in flight.
    fn is_symlink(&mut self, path: &[u8]) -> std::io::Result<bool> {
        let mut body = Vec::new();
        put_string(&mut body, path);
        let id = self.send(LSTAT, &body, false)?;
        loop {
            let (kind, body) = self.recv()?;
            let mut r = Reader(&body);
            if r.u32() != Some(id) {
                continue;
            }
            if kind != ATTRS {
                return Ok(false);
            }
            let flags = r.u32().unwrap_or(0);
            // SSH_FILEXFER_ATTR_SIZE (a u64), then _UIDGID (two u32).
            let skip = 2 * u32::from(flags & 1 != 0) + 2 * u32::from(flags & 2 != 0);
            for _ in 0..skip {
                r.u32();
            }
            let mode = match flags & 4 {
                0 => None,
                _ => r.u32(),
            };
            return Ok(mode.is_some_and(|m| m & 0o170000 == 0o120000));
        }
    }

    /// The directories the batch creates above a move's paths that are
    /// symlinks on the destination (a symlink of the source replaced by a
    /// directory, not delivered yet): the server's rename would follow
    /// them, so their moves fall back.
    fn linked_new_dirs(
        &mut self,
        base: &[u8],
        moves: &[Move],
        new_dirs: &NewDirs,
    ) -> std::io::Result<Vec<Vec<u8>>> {
        let mut seen = std::collections::HashSet::new();
        let mut linked = Vec::new();
        for m in moves {
            for p in [&m.from, &m.to] {
                for dir in ancestors(parent(p)) {
                    if new_dirs.contains(dir)
                        && seen.insert(dir.to_vec())
                        && self.is_symlink(&remote(base, dir))?
                    {
                        linked.push(dir.to_vec());
                    }
                }
            }
        }
        Ok(linked)
    }

    /// Replays `moves` in order under `base`; a move whose rename fails
    /// falls back. A parent the batch creates is made first, one `mkdir`
    /// per missing level (an existing one just fails). A broken connection
    /// makes every move without an answer fall back.
    pub fn replay(&mut self, base: &[u8], moves: &[Move], new_dirs: &NewDirs) -> Replayed {
        let mut r = Replayed::default();
        let mut waiting: Vec<(u32, Option<usize>)> = Vec::new();
        let mut answered = vec![false; moves.len()];
        let mut failure: Option<String> = None;
        let mut body = Vec::new();
        let linked = match self.linked_new_dirs(base, moves, new_dirs) {
            Ok(l) => l,
            Err(e) => {
                failure = Some(e.to_string());
                Vec::new()
            }
        };
        'moves: for (i, m) in moves.iter().enumerate() {
            if failure.is_some() {
                break;
            }
            let below =
                |p: &[u8], l: &[u8]| p.len() > l.len() && p.starts_with(l) && p[l.len()] == b'/';
            if let Some(l) = linked.iter().find(|l| below(&m.from, l) || below(&m.to, l)) {
                answered[i] = true;
                r.fall_back(
                    m,
                    format_args!(
                        "{} is a symlink on the destination",
                        crate::changeset::escape(l)
                    ),
                );
                continue;
            }
            let mut requests: Vec<(u8, Vec<u8>, Option<usize>)> = Vec::new();
            if new_dirs.covers(parent(&m.to)) {
                for dir in ancestors(parent(&m.to)) {
                    body.clear();
                    put_string(&mut body, &remote(base, dir));
                    body.extend_from_slice(&0u32.to_be_bytes()); // no attributes
                    requests.push((MKDIR, body.clone(), None));
                }
            }
            body.clear();
            put_string(&mut body, POSIX_RENAME);
            put_string(&mut body, &remote(base, &m.from));
            put_string(&mut body, &remote(base, &m.to));
            requests.push((EXTENDED, body.clone(), Some(i)));
            for (kind, b, which) in requests {
                while waiting.len() >= IN_FLIGHT {
                    if let Err(e) = self.answer(&mut waiting, &mut answered, moves, &mut r) {
                        failure = Some(e.to_string());
                        break 'moves;
                    }
                }
                match self.send(kind, &b, false) {
                    Ok(id) => waiting.push((id, which)),
                    Err(e) => {
                        failure = Some(e.to_string());
                        break 'moves;
                    }
                }
            }
        }
        while failure.is_none() && !waiting.is_empty() {
            if let Err(e) = self.answer(&mut waiting, &mut answered, moves, &mut r) {
                failure = Some(e.to_string());
            }
        }
        for (i, m) in moves.iter().enumerate() {
            if !answered[i] {
                let why = failure.as_deref().unwrap_or("no answer");
                r.fall_back(m, format_args!("the SFTP session failed: {why}"));
            }
        }
        r
    }

    /// Reads one reply and books it against its move, if it is a rename's.
    fn answer(
        &mut self,
        waiting: &mut Vec<(u32, Option<usize>)>,
        answered: &mut [bool],
        moves: &[Move],
        r: &mut Replayed,
    ) -> std::io::Result<()> {
        let (id, code) = self.status()?;
        let Some(pos) = waiting.iter().position(|(w, _)| *w == id) else {
            return Ok(());
        };
        let (_, which) = waiting.remove(pos);
        let Some(i) = which else { return Ok(()) };
        answered[i] = true;
        match code {
            0 => r.done += 1,
            NO_SUCH_FILE => r.fall_back(
                &moves[i],
                "not on the destination, or its new parent is not",
            ),
            PERMISSION_DENIED => r.fall_back(&moves[i], "permission denied"),
            c => r.fall_back(
                &moves[i],
                format_args!("the server refused it (SFTP status {c})"),
            ),
        }
        Ok(())
    }
}

/// Every ancestor of a root-relative directory and the directory itself,
/// outermost first.
fn ancestors(dir: &[u8]) -> Vec<&[u8]> {
    let mut out: Vec<&[u8]> = dir
        .iter()
        .enumerate()
        .filter(|(_, &b)| b == b'/')
        .map(|(i, _)| &dir[..i])
        .collect();
    if !dir.is_empty() {
        out.push(dir);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_join_and_extensions_parse() {
        assert_eq!(
            remote(b"/srv/m", b"a/\xff\nb"),
            b"/srv/m/a/\xff\nb".to_vec()
        );
        assert_eq!(remote(b"", b"x"), b"x".to_vec());
        assert_eq!(remote(b"", b""), b".".to_vec());
        assert_eq!(remote(b"/srv/", b""), b"/srv/".to_vec());
        let mut v = 3u32.to_be_bytes().to_vec();
        put_string(&mut v, POSIX_RENAME);
        put_string(&mut v, b"1");
        put_string(&mut v, b"statvfs@openssh.com");
        put_string(&mut v, b"2");
        put_string(&mut v, b"truncated");
        v.extend_from_slice(&[0, 0]); // a pair without its data is ignored
        assert_eq!(
            extensions(&v),
            vec![POSIX_RENAME.to_vec(), b"statvfs@openssh.com".to_vec()]
        );
        assert_eq!(ancestors(b"a/b/c"), vec![&b"a"[..], b"a/b", b"a/b/c"]);
        assert!(ancestors(b"").is_empty());
    }
}
