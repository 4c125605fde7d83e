//! What each raw inotify event means for the mirror.
//!
//! Pure rules, from notify's behaviour as ARCHITECTURE.md records it: an overflow (an event
//! with `need_rescan()`, which has no paths) becomes a full sync; a new or
//! moved-in directory becomes a `Tree`, because notify never reports files
//! created in it before its watch existed; a close after writing, a write or
//! a create is a `File`; a removal or a move away is `Gone`; opens are
//! ignored (rsync itself reads the source, and notify's own walk opens
//! directories); the third event of a rename (`Both`) is ignored because
//! `From` and `To` already came; the root moved, deleted or replaced by a
//! symlink is lost. The only file system access is one `lstat` where the
//! event does not say whether the path is a directory.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use notify::event::{AccessKind, AccessMode, CreateKind, ModifyKind, RenameMode};
use notify::{Event, EventKind};

use crate::changeset::{Entry, Kind};

/// What one raw event asks of the pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A path to sync.
    Entry(Entry),
    /// A rename inside the tree, both halves seen.
    Move(crate::changeset::Move),
    /// Events were lost (kernel queue overflow): sync the whole tree.
    Rescan,
    /// The watched root itself was moved or deleted.
    RootLost(&'static str),
    /// inotify reported an error; the message says what to do.
    Error(String),
    /// A directory could not be watched because an inotify limit was hit.
    Limit(String),
    /// notify's thread is gone: no event will come any more. The message
    /// says why and what happens next.
    WatcherStopped(String),
    /// A writer has this file open: it created it (`O_CREAT`), and has not
    /// closed it yet.
    Writing(Vec<u8>),
    /// This file was written by a writer syncd did not see open it (one
    /// from before the watch, or `truncate(2)` by path): it may or may not
    /// still be open.
    Modified(Vec<u8>),
    /// This file is no longer being written (closed after writing, renamed
    /// or removed).
    Closed(Vec<u8>),
}

/// The raw events notify delivers.
pub type RawEvent = notify::Result<Event>;

/// Whether a notify error means an inotify limit was hit: out of watches
/// (`MaxFilesWatch`, or the raw ENOSPC that `inotify_add_watch` returns for
/// it) or out of inotify instances (EMFILE).
pub fn is_limit(e: &notify::Error) -> bool {
    matches!(e.kind, notify::ErrorKind::MaxFilesWatch)
        || matches!(&e.kind, notify::ErrorKind::Io(io)
            if matches!(io.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EMFILE)))
}

/// An operator-facing explanation of a notify error, naming the sysctl to
/// raise when a limit was hit.
pub fn explain(e: &notify::Error, root: &Path) -> String {
    let at = e
        .paths
        .first()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| root.display().to_string());
    let emfile =
        matches!(&e.kind, notify::ErrorKind::Io(io) if io.raw_os_error() == Some(libc::EMFILE));
    if emfile {
        "too many inotify instances for this user: raise the limit with \
         `sysctl fs.inotify.max_user_instances=N`"
            .to_string()
    } else if is_limit(e) {
        watches_hint(&at)
    } else {
        format!("inotify error at {at}: {:?}", e.kind)
    }
}

fn watches_hint(at: &str) -> String {
    format!(
        "out of inotify watches while watching {at}: raise the limit with \
         `sysctl fs.inotify.max_user_watches=N` (one watch per directory)"
    )
}

/// Interprets one raw event against the watched `root`.
pub fn interpret(root: &Path, ev: RawEvent) -> Vec<Change> {
    let ev = match ev {
        Ok(ev) => ev,
        Err(e) => {
            let msg = explain(&e, root);
            let mut out = vec![if is_limit(&e) {
                Change::Limit(msg)
            } else {
                Change::Error(msg)
            }];
            // A directory that could not be watched is synced whole once, so
            // its current content is not lost; later changes in it are not
            // seen, which the error says.
            out.extend(
                e.paths
                    .iter()
                    .filter_map(|p| rel(root, p))
                    .map(|p| Change::Entry(Entry::new(Kind::Tree, p))),
            );
            return out;
        }
    };
    if ev.need_rescan() {
        return vec![Change::Rescan];
    }
    let mut out = Vec::new();
    for p in &ev.paths {
        if p == root {
            match ev.kind {
                EventKind::Remove(_) => out.push(Change::RootLost("deleted")),
                EventKind::Modify(ModifyKind::Name(RenameMode::From | RenameMode::Any))
                    if !is_real_dir(root) =>
                {
                    out.push(Change::RootLost("moved away"))
                }
                EventKind::Modify(ModifyKind::Metadata(_)) => {
                    out.push(Change::Entry(Entry::new(Kind::Attrs, Vec::new())))
                }
                _ => {}
            }
            continue;
        }
        let Some(r) = rel(root, p) else { continue };
        match ev.kind {
            EventKind::Create(CreateKind::File) if being_written(p) => {
                out.push(Change::Writing(r.clone()))
            }
            EventKind::Modify(ModifyKind::Data(_)) => out.push(Change::Modified(r.clone())),
            EventKind::Access(AccessKind::Close(AccessMode::Write))
            | EventKind::Remove(_)
            | EventKind::Modify(ModifyKind::Name(_)) => out.push(Change::Closed(r.clone())),
            _ => {}
        }
        if let Some(kind) = kind_of(&ev.kind, p) {
            out.push(Change::Entry(Entry::new(kind, r)));
        }
    }
    out
}

/// The entry kind of an event on a path below the root, or `None` for
/// events that change nothing (opens, reads, the third event of a rename).
fn kind_of(kind: &EventKind, p: &Path) -> Option<Kind> {
    Some(match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => Kind::File,
        EventKind::Access(_) => return None,
        EventKind::Create(CreateKind::Folder) => Kind::Tree,
        EventKind::Create(CreateKind::File) => Kind::File,
        EventKind::Create(_) => on_disk(p, Kind::Tree, Kind::File),
        EventKind::Modify(ModifyKind::Data(_)) => Kind::File,
        EventKind::Modify(ModifyKind::Metadata(_)) => on_disk(p, Kind::Attrs, Kind::File),
        EventKind::Modify(ModifyKind::Name(RenameMode::From)) => Kind::Gone,
        EventKind::Modify(ModifyKind::Name(RenameMode::To)) => on_disk(p, Kind::Tree, Kind::File),
        EventKind::Modify(ModifyKind::Name(RenameMode::Both)) => return None,
        EventKind::Modify(_) => on_disk(p, Kind::Tree, Kind::File),
        // A removal of a path that exists again is of an inode that was
        // replaced (a directory renamed over another reports the old one's
        // deletion after the move): what is there now came with an event
        // of its own, and a `Gone` here would make the worker send it again.
        EventKind::Remove(_) if std::fs::symlink_metadata(p).is_ok() => return None,
        EventKind::Remove(_) => Kind::Gone,
        EventKind::Any | EventKind::Other => on_disk(p, Kind::Tree, Kind::File),
    })
}

/// Whether a file just created is one a writer will close: a regular file
/// with one link. A symlink, a fifo or a new hard link (created by
/// `link(2)`, never opened) gets no close event, so holding it for one
/// would delay it for nothing.
fn being_written(p: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(p).is_ok_and(|m| m.is_file() && m.nlink() == 1)
}

/// Whether `p` is a directory itself, not a symlink to one: a root replaced
/// by a symlink is a root lost.
fn is_real_dir(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok_and(|m| m.is_dir())
}

/// `if_dir` when `p` is a directory now, `Gone` when it is missing, else
/// `otherwise`. The event does not say which, so one `lstat` decides.
fn on_disk(p: &Path, if_dir: Kind, otherwise: Kind) -> Kind {
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => if_dir,
        Ok(_) => otherwise,
        Err(_) => Kind::Gone,
    }
}

/// Whether an event only says that something was read: an open, a read or
/// a close after reading. None of them changes the tree. The watcher asks
/// the kernel for none of them (`watch::event_kinds`: notify's default
/// would report every open() in the tree, rsync's included); this check in
/// notify's callback is the second line, should one arrive anyway. A close
/// after writing is kept.
pub fn read_only(ev: &RawEvent) -> bool {
    matches!(ev, Ok(e) if matches!(e.kind, EventKind::Access(a)
        if a != AccessKind::Close(AccessMode::Write)))
}

/// `p` relative to `root` as bytes, or `None` when it is not below it.
/// Compared as bytes: notify builds every path as the watched directory
/// joined with a name, and `root` is canonical, so no `.`, `..` or doubled
/// slash can make a path below `root` look otherwise; std's component-wise
/// `strip_prefix` costs about two thousand instructions per event.
pub fn rel(root: &Path, p: &Path) -> Option<Vec<u8>> {
    let r = root.as_os_str().as_bytes();
    let rest = p.as_os_str().as_bytes().strip_prefix(r)?;
    let rest = if r.ends_with(b"/") {
        rest
    } else {
        rest.strip_prefix(b"/")?
    };
    if rest.is_empty() {
        return None;
    }
    Some(rest.to_vec())
}

/// The absolute path of a root-relative one.
pub fn abs(root: &Path, rel: &[u8]) -> PathBuf {
    root.join(std::ffi::OsStr::from_bytes(rel))
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{DataChange, Flag, MetadataKind, RemoveKind};

    fn ev(kind: EventKind, paths: &[&str]) -> RawEvent {
        let mut e = Event::new(kind);
        for p in paths {
            e = e.add_path(PathBuf::from(p));
        }
        Ok(e)
    }

    fn entry(k: Kind, p: &str) -> Change {
        Change::Entry(Entry::new(k, p.as_bytes()))
    }

    #[test]
    fn overflow_is_a_rescan_even_without_paths() {
        let e = Event::new(EventKind::Other).set_flag(Flag::Rescan);
        assert_eq!(interpret(Path::new("/r"), Ok(e)), vec![Change::Rescan]);
    }

    #[test]
    fn common_events_map_to_entries() {
        let r = Path::new("/nonexistent-root");
        let close = EventKind::Access(AccessKind::Close(AccessMode::Write));
        assert_eq!(
            interpret(r, ev(close, &["/nonexistent-root/a"])),
            vec![Change::Closed(b"a".to_vec()), entry(Kind::File, "a")]
        );
        let open = EventKind::Access(AccessKind::Open(AccessMode::Any));
        assert!(interpret(r, ev(open, &["/nonexistent-root/a"])).is_empty());
        let mkdir = EventKind::Create(CreateKind::Folder);
        assert_eq!(
            interpret(r, ev(mkdir, &["/nonexistent-root/d"])),
            vec![entry(Kind::Tree, "d")]
        );
        let from = EventKind::Modify(ModifyKind::Name(RenameMode::From));
        assert_eq!(
            interpret(r, ev(from, &["/nonexistent-root/o"])),
            vec![Change::Closed(b"o".to_vec()), entry(Kind::Gone, "o")]
        );
        let both = EventKind::Modify(ModifyKind::Name(RenameMode::Both));
        assert!(
            interpret(r, ev(both, &["/nonexistent-root/o", "/nonexistent-root/n"]))
                .iter()
                .all(|c| matches!(c, Change::Closed(_)))
        );
        let write = EventKind::Modify(ModifyKind::Data(DataChange::Any));
        assert_eq!(
            interpret(r, ev(write, &["/nonexistent-root/x/\u{1}"])),
            vec![
                Change::Modified(b"x/\x01".to_vec()),
                entry(Kind::File, "x/\u{1}")
            ]
        );
        let rm = EventKind::Remove(RemoveKind::File);
        assert_eq!(interpret(r, ev(rm, &["/elsewhere/x"])), vec![]);
    }

    #[test]
    fn reads_are_dropped_and_writes_kept() {
        let p = &["/r/a"];
        for kind in [
            AccessKind::Open(AccessMode::Any),
            AccessKind::Read,
            AccessKind::Close(AccessMode::Read),
            AccessKind::Any,
        ] {
            assert!(read_only(&ev(EventKind::Access(kind), p)), "{kind:?}");
        }
        let close = EventKind::Access(AccessKind::Close(AccessMode::Write));
        assert!(!read_only(&ev(close, p)));
        let write = EventKind::Modify(ModifyKind::Data(DataChange::Any));
        assert!(!read_only(&ev(write, p)));
        assert!(!read_only(&Err(notify::Error::generic("x"))));
    }

    #[test]
    fn rel_is_below_the_root_only() {
        let r = Path::new("/r/s");
        assert_eq!(rel(r, Path::new("/r/s/a/b")), Some(b"a/b".to_vec()));
        assert_eq!(rel(r, Path::new("/r/s")), None);
        assert_eq!(rel(r, Path::new("/r/sx/a")), None);
        assert_eq!(rel(r, Path::new("/r")), None);
        assert_eq!(rel(Path::new("/"), Path::new("/a")), Some(b"a".to_vec()));
        let odd = std::ffi::OsStr::from_bytes(b"/r/s/\xff\n");
        assert_eq!(rel(r, Path::new(odd)), Some(b"\xff\n".to_vec()));
    }

    #[test]
    fn metadata_on_a_directory_is_attrs() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("d")).unwrap();
        std::fs::write(dir.path().join("f"), b"x").unwrap();
        let k = EventKind::Modify(ModifyKind::Metadata(MetadataKind::Permissions));
        let d = dir.path().join("d");
        let f = dir.path().join("f");
        let out = interpret(dir.path(), Ok(Event::new(k).add_path(d).add_path(f)));
        assert_eq!(out, vec![entry(Kind::Attrs, "d"), entry(Kind::File, "f")]);
    }

    #[test]
    fn the_root_deleted_or_moved_is_fatal() {
        let r = Path::new("/nonexistent-root");
        let rm = EventKind::Remove(RemoveKind::Folder);
        assert_eq!(
            interpret(r, ev(rm, &["/nonexistent-root"])),
            vec![Change::RootLost("deleted")]
        );
        let from = EventKind::Modify(ModifyKind::Name(RenameMode::From));
        assert_eq!(
            interpret(r, ev(from, &["/nonexistent-root"])),
            vec![Change::RootLost("moved away")]
        );
    }
}
