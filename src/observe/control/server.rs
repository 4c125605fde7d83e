//! The daemon's side of the control socket.
//!
//! [`Server::start`] checks the state directory, replaces a stale socket
//! left by a daemon that died (only after nobody answered on it; the
//! caller already holds the state directory's lock), binds
//! `STATE/control.sock` with mode 0600 and accepts connections on its own
//! thread, one short-lived thread per client so that a client that connects
//! and says nothing never blocks another. Each request becomes a [`Call`]
//! on a channel the daemon's main loop selects on: the main loop owns the
//! store and the workers and rebuilds them after a store error, so it is
//! the one that answers. This module keeps no handle on the store: sled
//! locks its files, and a handle kept here would make that reopen fail.
//! Peers are checked with `SO_PEERCRED`: only this user and root are
//! served, even if the socket's mode were widened. Dropping the server
//! stops the accept thread and removes the socket, if it is still ours.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use crate::config::DestConfig;
use crate::error::{Error, Result};
use crate::observe::status::{DaemonFacts, WorkerLink};
use crate::store::{now_ms, Store};

use super::ops::{self, View};
use super::protocol::{self, Failure, Reply, Request, MAX_LINE};
use super::{check_dir, socket_path};

/// Clients served at once; more are told to try again.
const MAX_CLIENTS: usize = 16;
/// How long a connection may stay silent before it is closed.
const IDLE: Duration = Duration::from_secs(60);
/// How long a request waits for the main loop. Past it the client hears
/// that the daemon is busy (it answers only once start-up is done).
pub const ANSWER_WITHIN: Duration = Duration::from_secs(15);

/// One request waiting for the main loop.
pub struct Call {
    request: Request,
    reply: Sender<Result<Reply, Failure>>,
}

impl Call {
    /// What the client asks.
    pub fn request(&self) -> &Request {
        &self.request
    }

    /// Answers it (the main loop's own requests: checkpoint, sync).
    pub fn reply(self, result: Result<Reply>) {
        let _ = self.reply.send(result.map_err(|e| Failure {
            usage: matches!(e, Error::Usage(_)),
            message: e.to_string(),
        }));
    }
}

/// The listening socket and its accept thread.
pub struct Server {
    path: PathBuf,
    /// Device and inode of the socket we bound, so that drop never removes
    /// a socket that is no longer ours.
    ident: (u64, u64),
    started_ms: u64,
    calls: Receiver<Call>,
    /// Keeps the channel connected while the server lives, so the main
    /// loop's `select!` never sees it disconnected.
    _keep: Sender<Call>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Binds `STATE/control.sock` and starts accepting. The caller holds
    /// the state directory's lock, so any socket already there is stale
    /// unless something answers on it.
    pub fn start(state_dir: &Path) -> Result<Server> {
        check_dir(state_dir)?;
        let path = socket_path(state_dir);
        remove_stale(&path)?;
        let listener = UnixListener::bind(&path)
            .map_err(|e| Error::io("cannot create the control socket", &path, e))?;
        // Peers are also checked one by one (see `allowed`), which covers
        // the moment between bind and chmod.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| Error::io("cannot set the mode of", &path, e))?;
        let md =
            std::fs::symlink_metadata(&path).map_err(|e| Error::io("cannot read", &path, e))?;
        let (tx, calls) = crossbeam_channel::unbounded();
        let stop = Arc::new(AtomicBool::new(false));
        let (tx2, stop2) = (tx.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("control".into())
            .spawn(move || accept_loop(listener, tx2, stop2))
            .map_err(|e| Error::io("cannot start the control thread for", &path, e))?;
        log::debug!("control socket {}", path.display());
        Ok(Server {
            path,
            ident: (md.dev(), md.ino()),
            started_ms: now_ms(),
            calls,
            _keep: tx,
            stop,
            thread: Some(thread),
        })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The requests for the main loop to answer. The channel stays
    /// connected as long as the server lives.
    pub fn calls(&self) -> &Receiver<Call> {
        &self.calls
    }

    /// Answers one request on the main loop. `running` is the daemon's
    /// store and workers, or `None` while the store is being reopened
    /// after an error, when the request is refused with that reason;
    /// `facts` what the main loop knows of the daemon itself.
    pub fn answer(
        &self,
        call: Call,
        dests: &[DestConfig],
        running: Option<(&Store, &[WorkerLink])>,
        facts: &DaemonFacts,
    ) {
        let result = match running {
            Some((store, workers)) => {
                let view = View::running(store, dests, workers, self.started_ms, facts);
                ops::handle(&view, &call.request).map_err(|e| Failure {
                    usage: matches!(e, Error::Usage(_)),
                    message: e.to_string(),
                })
            }
            None => Err(Failure {
                message: "the daemon is reopening its store after an error (see its log) and \
                          cannot read it now; try again"
                    .into(),
                usage: false,
            }),
        };
        // The client may have given up; nothing to do then.
        let _ = call.reply.send(result);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // accept() has no timeout: a connection of our own wakes it, and
        // the loop then sees the flag. If even that fails the thread is
        // left blocked (the process is ending) rather than joined forever.
        if UnixStream::connect(&self.path).is_ok() {
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
        let ours = std::fs::symlink_metadata(&self.path)
            .map(|m| (m.dev(), m.ino()) == self.ident)
            .unwrap_or(false);
        if ours {
            if let Err(e) = std::fs::remove_file(&self.path) {
                log::warn!("cannot remove {}: {e}", self.path.display());
            }
        }
    }
}

/// Removes a socket left by a daemon that died, after checking that
/// nobody answers on it. Anything else in its place is left alone.
fn remove_stale(path: &Path) -> Result<()> {
    let md = match std::fs::symlink_metadata(path) {
        Ok(md) => md,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io("cannot read", path, e)),
    };
    if !std::os::unix::fs::FileTypeExt::is_socket(&md.file_type()) {
        return Err(Error::Control(format!(
            "{} exists and is not a socket; syncd will not replace it: move it away",
            path.display()
        )));
    }
    match UnixStream::connect(path) {
        Ok(_) => Err(Error::Control(format!(
            "a process answers on {} although this daemon holds the state directory's lock; \
             refusing to replace its socket",
            path.display()
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            std::fs::remove_file(path)
                .map_err(|e| Error::io("cannot remove the stale control socket", path, e))?;
            log::info!(
                "removed the stale control socket {} (the last daemon did not stop cleanly)",
                path.display()
            );
            Ok(())
        }
        Err(e) => Err(Error::io("cannot check the old control socket", path, e)),
    }
}

fn accept_loop(listener: UnixListener, tx: Sender<Call>, stop: Arc<AtomicBool>) {
    let active = Arc::new(AtomicUsize::new(0));
    for conn in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let mut stream = match conn {
            Ok(s) => s,
            Err(e) => {
                // EMFILE and the like: do not spin.
                log::warn!("control socket: cannot accept a connection: {e}");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        if active.load(Ordering::SeqCst) >= MAX_CLIENTS {
            refuse(&mut stream, "too many control clients at once; try again");
            continue;
        }
        active.fetch_add(1, Ordering::SeqCst);
        let (tx, active2) = (tx.clone(), active.clone());
        let spawned = std::thread::Builder::new()
            .name("control client".into())
            .spawn(move || {
                serve(stream, &tx);
                active2.fetch_sub(1, Ordering::SeqCst);
            });
        if let Err(e) = spawned {
            active.fetch_sub(1, Ordering::SeqCst);
            log::warn!("control socket: cannot start a client thread: {e}");
        }
    }
}

fn refuse(stream: &mut UnixStream, why: &str) {
    let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
    let _ = stream.write_all(&protocol::encode_response(&Err(Failure {
        message: why.into(),
        usage: false,
    })));
}

/// Serves one client: one answer line per request line, until it closes
/// the connection, stays silent past [`IDLE`], or sends an oversized line.
fn serve(mut stream: UnixStream, tx: &Sender<Call>) {
    if let Err(why) = allowed(&stream) {
        refuse(&mut stream, &why);
        return;
    }
    let _ = stream.set_read_timeout(Some(IDLE));
    let _ = stream.set_write_timeout(Some(IDLE));
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    loop {
        let mut line = Vec::new();
        match (&mut reader)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut line)
        {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if line.len() > MAX_LINE {
            refuse(
                &mut stream,
                &format!("request longer than {MAX_LINE} bytes"),
            );
            return;
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let result = protocol::decode_request(&line).and_then(|req| forward(tx, req));
        if stream
            .write_all(&protocol::encode_response(&result))
            .is_err()
        {
            return;
        }
    }
}

/// Hands a request to the main loop and waits for its answer.
fn forward(tx: &Sender<Call>, request: Request) -> Result<Reply, Failure> {
    let stopping = || Failure {
        message: "syncd is stopping".into(),
        usage: false,
    };
    let (reply, answer) = crossbeam_channel::bounded(1);
    tx.send(Call { request, reply }).map_err(|_| stopping())?;
    match answer.recv_timeout(ANSWER_WITHIN) {
        Ok(r) => r,
        Err(RecvTimeoutError::Disconnected) => Err(stopping()),
        Err(RecvTimeoutError::Timeout) => Err(Failure {
            message: format!(
                "the daemon (pid {}) did not answer within {}s: it is still starting up \
                 (watching the tree) or busy; try again",
                std::process::id(),
                ANSWER_WITHIN.as_secs()
            ),
            usage: false,
        }),
    }
}

/// Serves only this user and root, by the peer's credentials.
fn allowed(stream: &UnixStream) -> std::result::Result<(), String> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `cred`, which is a
    // properly sized and aligned ucred, on a socket fd we own.
    let r = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if r != 0 {
        return Err(format!(
            "cannot read the client's credentials: {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if cred.uid == me || cred.uid == 0 {
        Ok(())
    } else {
        log::warn!(
            "control socket: refused a client of uid {} (pid {})",
            cred.uid,
            cred.pid
        );
        Err(format!(
            "permission denied: this daemon serves uid {me} and root only"
        ))
    }
}
