//! The control socket: how `syncd queue inspect`, `status`, `queue retry`
//! and `queue purge` reach the queues, whether or not the daemon runs.
//!
//! sled lets one process open a store, so while the daemon runs it is the
//! one that must answer: it listens on `STATE/control.sock` (a Unix socket,
//! mode 0600, this user and root only) and answers one JSON line per
//! request ([`protocol`], versioned). When no daemon runs, a command takes
//! the state directory's lock *shared* (a daemon starting meanwhile waits
//! for it, and other queue commands may share it: sled's own lock then
//! makes them take turns) and opens the store; both paths run
//! the same operations ([`ops`]), so their output is the same. A socket in
//! a directory another user could write is refused at both ends, since
//! that user could put their own socket in its place.

pub mod client;
pub mod ops;
pub mod protocol;
pub mod server;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

pub use ops::View;
pub use protocol::{Reply, Request};
pub use server::{Call, Server};

use crate::error::{Error, Result};
use crate::store::lock::{self, Lock};
use crate::store::{self, Store};

/// The control socket's name in the state directory.
pub const SOCKET_NAME: &str = "control.sock";

/// The control socket's path in a state directory.
pub fn socket_path(state_dir: &Path) -> PathBuf {
    state_dir.join(SOCKET_NAME)
}

/// Refuses a state directory in which another user could replace the
/// socket: one writable by group or others, or owned by someone other than
/// this user or root.
pub fn check_dir(state_dir: &Path) -> Result<()> {
    let md = std::fs::metadata(state_dir)
        .map_err(|e| Error::io("cannot read the state directory", state_dir, e))?;
    let refuse = |why: String| {
        Error::Control(format!(
            "refusing to use a control socket in {}: {why}",
            state_dir.display()
        ))
    };
    if !md.is_dir() {
        return Err(refuse("it is not a directory".into()));
    }
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if md.uid() != me && md.uid() != 0 {
        return Err(refuse(format!(
            "it belongs to uid {}, not to this user (uid {me}) or root; use a state directory \
             of your own",
            md.uid()
        )));
    }
    let mode = md.mode() & 0o7777;
    if mode & 0o022 != 0 {
        let who = match (mode & 0o020 != 0, mode & 0o002 != 0) {
            (true, true) => "group and others",
            (true, false) => "its group",
            _ => "others",
        };
        return Err(refuse(format!(
            "it is writable by {who} (mode {mode:04o}), who could replace the socket; \
             run `chmod go-w {}`",
            state_dir.display()
        )));
    }
    Ok(())
}

/// The queues of a state directory, reached one way or the other.
pub enum Reached {
    /// The daemon answers on its socket.
    Live(client::Client),
    /// No daemon runs: the store, opened under the state directory's lock,
    /// held shared, so that no daemon starts meanwhile.
    Offline { store: Store, _lock: Lock },
}

impl Reached {
    /// Runs one request.
    pub fn run(&mut self, req: &Request) -> Result<Reply> {
        match self {
            Reached::Live(c) => c.call(req),
            Reached::Offline { store, .. } => ops::handle(&View::offline(store), req),
        }
    }

    /// Whether the daemon answered.
    pub fn is_live(&self) -> bool {
        matches!(self, Reached::Live(_))
    }
}

/// How long a queue command waits for a daemon that holds the lock but
/// does not answer yet: one that is binding its socket, or one that stopped
/// and is letting go of the lock. A monitoring probe run during a start
/// then gets an answer, not an error.
const STARTING_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Reaches the queues of `state_dir`: through the daemon when it answers,
/// else by opening the store. [`Error::NotRunning`] when there is neither
/// a daemon nor a store.
pub fn reach(state_dir: &Path) -> Result<Reached> {
    let start = std::time::Instant::now();
    loop {
        match reach_once(state_dir)? {
            Ok(reached) => return Ok(reached),
            Err(pid) if start.elapsed() >= STARTING_GRACE => {
                return Err(not_answering(state_dir, &pid, &socket_path(state_dir)))
            }
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(50)),
        }
    }
}

/// One try: the queues, or the pid of a process that holds the lock and
/// does not answer.
fn reach_once(state_dir: &Path) -> Result<std::result::Result<Reached, String>> {
    if let Some(c) = client::connect(state_dir)? {
        return Ok(Ok(Reached::Live(c)));
    }
    if !store::db_path(state_dir).exists() {
        if let Some(pid) = lock::holder_of(state_dir) {
            return Ok(Err(pid));
        }
        return Err(Error::NotRunning(format!(
            "no syncd daemon is running on {}, and there is no store there: no daemon has run \
             with this --state-dir",
            state_dir.display()
        )));
    }
    let lock = match lock::acquire_shared(state_dir) {
        Ok(l) => l,
        Err(Error::Locked { pid, .. }) => return Ok(Err(pid)),
        Err(e) => return Err(e),
    };
    let store = Store::open(state_dir)?;
    Ok(Ok(Reached::Offline { store, _lock: lock }))
}

fn not_answering(state_dir: &Path, pid: &str, sock: &Path) -> Error {
    Error::Control(format!(
        "a syncd process (pid {pid}) holds {} but does not answer on {}: a daemon starting up \
         or stopping, or another queue command; try again",
        lock::lock_path(state_dir).display(),
        sock.display()
    ))
}
