//! Moves replayed on the destination, before the data pass.
//!
//! rsync has no rename: without this a renamed directory would be deleted
//! at its old name and sent again at its new one. So the worker renames on
//! the destination first, in order, each move checked against what is
//! actually there: when `from` is missing, or the parent of `to` is missing
//! (and not one the same batch creates), or the rename itself fails (a
//! non-empty directory in the way), the move falls back to a transfer of
//! `to`, and `from` is deleted by the `Gone` the optimizer left there.
//! Whatever happened here, the data pass checks every move's `to` by
//! rsync's quick check ([`Plan::check_moves`]), so a rename that put the
//! wrong data in place (the destination was ahead of the move) is
//! repaired. A batch is never replayed twice: the worker records in the
//! store that a batch's moves are being replayed before the first rename,
//! and until that batch is acked its attempts replay nothing and send the
//! new names compared by content (`Plan::distrust_moves`), since a swap
//! replayed twice can leave two files of one size and mtime each where
//! the other belongs.
//! Nothing here acks: the worker acks the batch only after the data pass
//! succeeded too.
//!
//! By destination kind: [`local`] renames with rename(2); [`sftp`] speaks
//! the SFTP protocol to the ssh destination's `sftp` subsystem over the
//! same connection rsync uses, names as length-prefixed bytes; an rsync
//! daemon cannot rename, so every move falls back to a transfer (a first
//! run with `--fuzzy` lets a file renamed within its directory be sent as
//! a delta of its old self).

pub mod local;
pub mod sftp;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use crate::changeset::parent;
use crate::changeset::{escape, Entry, Kind, Move};
use crate::config::location::{Destination, Place, Source};
use crate::config::DestOptions;
use crate::deliver::plan::Plan;
use crate::deliver::rsync::ssh::rsh_words;

/// Replays a destination's moves, and remembers when its kind or its
/// server cannot, so a key restricted to rsync costs one attempt and one
/// warning, not one failure per batch.
#[derive(Debug, Default)]
pub struct Replayer {
    unavailable: Option<String>,
}

impl Replayer {
    /// Replays the moves of `plan` on `dest` (in order; `stop` is asked
    /// between steps). What could not be replayed is in
    /// [`Replayed::fell_back`], to transfer.
    pub fn replay(
        &mut self,
        dest: &Destination,
        opts: &DestOptions,
        source: &Source,
        plan: &Plan,
        stop: impl FnMut() -> bool,
    ) -> Replayed {
        let moves = &plan.moves;
        if moves.is_empty() {
            return Replayed::default();
        }
        if !opts.moves {
            return Replayed::all_fall_back(moves, "moves = false for this destination");
        }
        let new_dirs = NewDirs::of(&plan.entries);
        match &dest.place {
            Place::Local { path } => local::replay(path, &source.rel, moves, &new_dirs, stop),
            Place::Daemon { .. } => Replayed::all_fall_back(moves, "an rsync daemon cannot rename"),
            Place::Shell { user, host, path } => {
                if let Some(why) = &self.unavailable {
                    return Replayed::all_fall_back(moves, why);
                }
                let Some(words) = rsh_words(dest, opts) else {
                    return Replayed::all_fall_back(moves, "no remote shell");
                };
                let login = match user {
                    Some(u) => format!("{u}@{host}"),
                    None => host.clone(),
                };
                let timeout = Duration::from_secs(opts.timeout_s.max(1).into());
                match sftp::connect(&words, &login, timeout) {
                    Ok(mut session) => {
                        session.replay(&sftp_base(path, &source.rel), moves, &new_dirs)
                    }
                    Err(sftp::Unavailable { why, lasting }) => {
                        if lasting {
                            log::warn!(
                                "[{}] renames cannot be replayed on this destination: {why}; \
                                 they are sent as transfers from now on (the remote side needs \
                                 OpenSSH's sftp subsystem; set moves = false to skip this \
                                 check)",
                                dest.name
                            );
                            self.unavailable = Some(why.clone());
                        }
                        Replayed::all_fall_back(moves, &why)
                    }
                }
            }
        }
    }
}

/// The destination directory as the SFTP server sees it: `host:path`'s path
/// (a relative one, or `~/...`, is relative to the login's home, as for
/// rsync), then SOURCE's path below the virtual root.
fn sftp_base(path: &[u8], rel: &[u8]) -> Vec<u8> {
    let mut base = match path {
        b"~" => Vec::new(),
        p => p.strip_prefix(b"~/").unwrap_or(p).to_vec(),
    };
    if !rel.is_empty() {
        if !base.is_empty() && !base.ends_with(b"/") {
            base.push(b'/');
        }
        base.extend_from_slice(rel);
    }
    base
}

/// What replaying a batch of moves did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Replayed {
    /// Moves renamed on the destination.
    pub done: usize,
    /// The `to` of every move that fell back to a transfer.
    pub fell_back: Vec<Vec<u8>>,
    /// Why the first few fell back, for the log.
    pub why: Vec<String>,
}

impl Replayed {
    /// Records a move that fell back, and why.
    pub fn fall_back(&mut self, m: &Move, why: impl std::fmt::Display) {
        if self.why.len() < 3 {
            self.why
                .push(format!("{} -> {}: {why}", escape(&m.from), escape(&m.to)));
        }
        self.fell_back.push(m.to.clone());
    }

    /// Every move of `moves` falls back, for one reason.
    pub fn all_fall_back(moves: &[Move], why: &str) -> Replayed {
        let mut r = Replayed::default();
        for m in moves {
            r.fall_back(m, why);
        }
        r
    }
}

/// The directories the data pass creates: the `Tree` entries of a plan. A
/// move into a directory the same batch creates (`mkdir new; mv big new/`)
/// must not fall back to a transfer of everything it carries, so the
/// parent is made first (empty; the data pass gives it its attributes).
pub struct NewDirs(HashSet<Vec<u8>>);

impl NewDirs {
    pub fn of(entries: &[Entry]) -> NewDirs {
        NewDirs(
            entries
                .iter()
                .filter(|e| e.kind == Kind::Tree && !e.path.is_empty())
                .map(|e| e.path.clone())
                .collect(),
        )
    }

    /// Whether `dir` is one of the new trees itself.
    pub fn contains(&self, dir: &[u8]) -> bool {
        self.0.contains(dir)
    }

    /// Whether the data pass creates `dir` (it is at or below a new tree).
    pub fn covers(&self, dir: &[u8]) -> bool {
        let mut p = dir;
        loop {
            if self.0.contains(p) {
                return true;
            }
            match p.iter().rposition(|&b| b == b'/') {
                Some(i) => p = &p[..i],
                None => return false,
            }
        }
    }
}

/// Where a root-relative path lands in a destination directory: the
/// directory, SOURCE's path below the virtual root, then the path.
pub fn landing(dir: &Path, rel: &[u8], p: &[u8]) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    let mut out = dir.to_path_buf();
    for part in [rel, p] {
        if !part.is_empty() {
            out.push(std::ffi::OsStr::from_bytes(part));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sftp_base_is_the_landing_directory() {
        assert_eq!(sftp_base(b"/srv/m/", b"www"), b"/srv/m/www".to_vec());
        assert_eq!(sftp_base(b"~/m", b""), b"m".to_vec());
        assert_eq!(sftp_base(b"", b"www"), b"www".to_vec());
        assert_eq!(sftp_base(b"~", b""), b"".to_vec());
    }

    #[test]
    fn new_dirs_cover_what_is_below_them() {
        let n = NewDirs::of(&[
            Entry::new(Kind::Tree, b"new".to_vec()),
            Entry::new(Kind::File, b"f".to_vec()),
        ]);
        assert!(n.covers(b"new") && n.covers(b"new/a/b"));
        assert!(!n.covers(b"newer") && !n.covers(b"f") && !n.covers(b""));
        assert_eq!(parent(b"a/b/c"), b"a/b");
        assert_eq!(parent(b"a"), b"");
        assert_eq!(
            landing(Path::new("/d"), b"www", b"x/y"),
            PathBuf::from("/d/www/x/y")
        );
        assert_eq!(landing(Path::new("/d"), b"", b""), PathBuf::from("/d"));
    }
}
