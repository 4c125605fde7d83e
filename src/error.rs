//! Error types of the library, split the way an operator acts on them.
//!
//! Fatal errors ([`Error`]) stop the daemon or the command with a message
//! that names what is wrong and where: a bad argument, a store that cannot
//! be opened, a lock held by another instance, the watched root gone. The
//! recoverable ones (a failed rsync run, a commit that hit a full disk) are
//! handled where they happen, by retrying, and only show up in logs and in
//! `queue inspect`; they have their own small types next to the code that
//! retries them. Messages are lower-case sentences without a final period,
//! so they read well after "syncd: error: ". Each message already says
//! its cause, so one `{}` prints all an operator needs; the cause is also
//! kept as the error's `source()` (sled's own error, an `io::Error`) for
//! code that inspects it.

use std::io;
use std::path::PathBuf;

/// A record in the store could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("corrupt {what} record: {reason}")]
    Decode { what: &'static str, reason: String },
    #[error("corrupt {what} record: {extra} trailing bytes")]
    Trailing { what: &'static str, extra: usize },
}

/// Why an operation on the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The state file system is (nearly) full; nothing was written.
    #[error(
        "only {} KiB are free on the file system of {}, and syncd keeps {} KiB free so \
         that the store never fills the disk half-way through a write",
        free / 1024,
        path.display(),
        min / 1024
    )]
    LowSpace { path: PathBuf, free: u64, min: u64 },
    /// sled failed. After an I/O error sled 0.34 cannot be used (or even
    /// dropped) safely any more in this process.
    #[error("{0}")]
    Sled(#[from] sled::Error),
    /// The schema version is missing, malformed or newer than this syncd.
    #[error("{0}")]
    Schema(#[from] migrations::Error),
    /// The files are not a store sled can read.
    #[error("{0}")]
    Corrupt(String),
    /// Another process has the database open.
    #[error("another process has it open")]
    Busy,
}

impl StoreError {
    /// Whether sled itself failed, so the handle is unusable from now on.
    pub fn is_fatal(&self) -> bool {
        matches!(self, StoreError::Sled(_))
    }
}

/// Everything that ends a syncd command.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A command-line argument or a config value is wrong.
    #[error("{0}")]
    Usage(String),

    /// An I/O error on a path the operator gave or syncd owns.
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// A system call that is about no path failed (signal handlers, a
    /// thread).
    #[error("{what}: {source}")]
    Os {
        what: &'static str,
        #[source]
        source: io::Error,
    },

    /// The command's output could not be written.
    #[error("cannot write to standard output: {0}")]
    Output(#[source] io::Error),

    /// Another syncd holds the state directory.
    #[error(
        "another syncd (pid {pid}) is running on this state directory: it \
         holds the lock on {}; stop it first, or give a different --state-dir",
        path.display()
    )]
    Locked { path: PathBuf, pid: String },

    /// The lock outlived the daemon that took it: a process it started
    /// holds it.
    #[error(
        "the lock on {} is still held, but the syncd that took it (pid {pid}) is no longer \
         running: a process it started holds it; `fuser -v {}` names it",
        path.display(),
        path.display()
    )]
    LockedByLeftover { path: PathBuf, pid: String },

    /// Queue commands (`syncd status`, `queue inspect`) kept the state
    /// directory's lock for longer than a starting daemon waits.
    #[error(
        "queue commands (syncd status, syncd queue inspect) kept the lock on {} for {:.1}s \
         without a pause, so syncd could not start; slow down whatever runs them in a loop, \
         then start syncd again",
        path.display(),
        waited.as_secs_f64()
    )]
    LockBusy {
        path: PathBuf,
        waited: std::time::Duration,
    },

    /// An operation on the queue store failed; `what` says which
    /// ("cannot open", "cannot acknowledge changesets in", ...), and
    /// `hint` what the operator can do when the store is damaged.
    #[error("{what} the queue store at {}: {source}{hint}", path.display())]
    Store {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: StoreError,
        hint: &'static str,
    },

    /// inotify refused to watch (limits) or failed.
    #[error("{0}")]
    Watch(String),

    /// The watched root was moved, deleted or replaced.
    #[error(
        "the watched directory {} was {how}; syncd cannot follow it: \
         restore it and start syncd again (a full sync runs at start)",
        path.display()
    )]
    RootLost { path: PathBuf, how: &'static str },

    /// The daemon's control socket or a request over it failed.
    #[error("{0}")]
    Control(String),

    /// `syncd status`: the daemon runs, but a destination is in error.
    #[error("{0}")]
    Unhealthy(String),

    /// No daemon runs on the state directory (`status` exits on it).
    #[error("{0}")]
    NotRunning(String),

    /// `syncd checkpoint --wait` gave up before the checkpoint completed.
    #[error("{0}")]
    Timeout(String),
}

impl Error {
    /// Builds an [`Error::Io`] from a path and what was being done to it.
    pub fn io(what: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Error {
        Error::Io {
            what,
            path: path.into(),
            source,
        }
    }

    /// Builds an [`Error::Os`].
    pub fn os(what: &'static str, source: io::Error) -> Error {
        Error::Os { what, source }
    }

    /// The process exit status for this error: 2 for usage errors (as clap
    /// uses), 3 for a held lock, 4 for store problems, 5 for a destination
    /// in error and 6 for no daemon running (both for `syncd status`, so a
    /// monitoring check can tell them apart), 7 for a checkpoint that did
    /// not complete in time, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_) => 2,
            Error::Locked { .. } | Error::LockedByLeftover { .. } | Error::LockBusy { .. } => 3,
            Error::Store { .. } => 4,
            Error::Unhealthy(_) => 5,
            Error::NotRunning(_) => 6,
            Error::Timeout(_) => 7,
            _ => 1,
        }
    }
}

/// The library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
