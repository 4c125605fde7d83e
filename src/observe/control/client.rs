//! The command's side of the control socket: connect to the daemon of a
//! state directory, send requests, read answers.
//!
//! [`connect`] says `None` when no daemon listens (no socket, or a stale
//! one that refuses connections), so the caller can fall back to opening
//! the store; it refuses, with an error, a socket in a directory another
//! user could write or one owned by another user, since whoever answers
//! there would be believed.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, Result};

use super::protocol::{self, Reply, Request};
use super::server::ANSWER_WITHIN;
use super::{check_dir, socket_path};

/// A connection to a running daemon.
pub struct Client {
    path: PathBuf,
    stream: UnixStream,
    reader: BufReader<UnixStream>,
}

/// Connects to the daemon of `state_dir`; `Ok(None)` when none listens.
pub fn connect(state_dir: &Path) -> Result<Option<Client>> {
    let path = socket_path(state_dir);
    let md = match std::fs::symlink_metadata(&path) {
        Ok(md) => md,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("cannot read the control socket", &path, e)),
    };
    check_dir(state_dir)?;
    if !md.file_type().is_socket() {
        return Err(Error::Control(format!(
            "{} is not a socket; refusing to use it",
            path.display()
        )));
    }
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if md.uid() != me && md.uid() != 0 {
        return Err(Error::Control(format!(
            "refusing to use the control socket {}: it belongs to uid {}, not to this user \
             (uid {me}) or root",
            path.display(),
            md.uid()
        )));
    }
    let stream = match UnixStream::connect(&path) {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::NotFound
            ) =>
        {
            return Ok(None)
        }
        Err(e) => return Err(Error::io("cannot connect to the control socket", &path, e)),
    };
    let wait = Some(ANSWER_WITHIN + Duration::from_secs(5));
    let setup = stream
        .set_read_timeout(wait)
        .and_then(|_| stream.set_write_timeout(wait))
        .and_then(|_| stream.try_clone());
    let read_half = setup.map_err(|e| Error::io("cannot use the control socket", &path, e))?;
    Ok(Some(Client {
        path,
        stream,
        reader: BufReader::new(read_half),
    }))
}

impl Client {
    /// Sends one request and reads its answer. A refusal by the daemon is
    /// an [`Error::Usage`] or [`Error::Control`] with its message.
    pub fn call(&mut self, req: &Request) -> Result<Reply> {
        let gone = |what: &str, e: std::io::Error| {
            Error::Control(format!(
                "the daemon on {} {what}: {e} (it may be stopping)",
                self.path.display()
            ))
        };
        self.stream
            .write_all(&protocol::encode_request(req))
            .map_err(|e| gone("did not take the request", e))?;
        let mut line = Vec::new();
        match self.reader.read_until(b'\n', &mut line) {
            Ok(0) => {
                return Err(Error::Control(format!(
                    "the daemon on {} closed the connection without answering (it may be stopping)",
                    self.path.display()
                )))
            }
            Ok(_) => {}
            Err(e) => return Err(gone("did not answer", e)),
        }
        match protocol::decode_response(&line).map_err(Error::Control)? {
            Ok(reply) => Ok(reply),
            Err(f) if f.usage => Err(Error::Usage(f.message)),
            Err(f) => Err(Error::Control(f.message)),
        }
    }
}
