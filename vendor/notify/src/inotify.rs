//! Watcher implementation for the inotify Linux API
//!
//! The inotify API provides a mechanism for monitoring filesystem events.  Inotify can be used to
//! monitor individual files, or to monitor directories.  When a directory is monitored, inotify
//! will return events for the directory itself, and for files inside the directory.

use super::event::*;
use super::{
    Config, Error, ErrorKind, EventHandler, PathOp, RecursiveMode, Result, UpdatePathsError,
    Watcher,
};
use crate::{bounded, unbounded, BoundSender, Receiver, Sender};
use inotify as inotify_sys;
use inotify_sys::{EventMask, Inotify, WatchDescriptor, WatchMask};
use notify_types::event::EventKindMask;
use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::env;
use std::ffi::OsStr;
use std::fs::metadata;
use std::ops::Bound;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread;
use walkdir::WalkDir;

const INOTIFY: mio::Token = mio::Token(0);
const MESSAGE: mio::Token = mio::Token(1);

/// How many operations of an [`EventLoopMsg::UpdatePaths`] batch are applied between two
/// reads of the inotify queue, so that a long batch cannot overflow it.
const UPDATE_PATHS_CHUNK: usize = 1024;

/// The inotify events that report the kinds of `mask`.
///
/// A recursive watch also asks for the events that keep its watches in step with the tree
/// (a directory created, deleted or moved in or out); events of those that `mask` excludes are
/// then dropped before delivery.
fn event_kinds_to_watch_mask(mask: EventKindMask, is_recursive: bool) -> WatchMask {
    let mut watch_mask = WatchMask::empty();
    if is_recursive {
        watch_mask |=
            WatchMask::CREATE | WatchMask::DELETE | WatchMask::MOVED_FROM | WatchMask::MOVED_TO;
    }
    if mask.intersects(EventKindMask::CREATE) {
        watch_mask |= WatchMask::CREATE;
    }
    if mask.intersects(EventKindMask::REMOVE) {
        watch_mask |= WatchMask::DELETE;
    }
    if mask.intersects(EventKindMask::MODIFY_DATA) {
        watch_mask |= WatchMask::MODIFY;
    }
    if mask.intersects(EventKindMask::MODIFY_META) {
        watch_mask |= WatchMask::ATTRIB;
    }
    if mask.intersects(EventKindMask::MODIFY_NAME) {
        watch_mask |= WatchMask::MOVED_FROM | WatchMask::MOVED_TO;
    }
    if mask.intersects(EventKindMask::ACCESS_OPEN) {
        watch_mask |= WatchMask::OPEN;
    }
    if mask.intersects(EventKindMask::ACCESS_CLOSE) {
        watch_mask |= WatchMask::CLOSE_WRITE;
    }
    if mask.intersects(EventKindMask::ACCESS_CLOSE_NOWRITE) {
        watch_mask |= WatchMask::CLOSE_NOWRITE;
    }
    watch_mask
}

// The EventLoop will set up a mio::Poll and use it to wait for the following:
//
// -  messages telling it what to do
//
// -  events telling it that something has happened on one of the watched files.

struct EventLoop {
    running: bool,
    poll: mio::Poll,
    event_loop_waker: Arc<mio::Waker>,
    event_loop_tx: Sender<EventLoopMsg>,
    event_loop_rx: Receiver<EventLoopMsg>,
    inotify: Option<Inotify>,
    event_handler: Box<dyn EventHandler>,
    /// Path -> (WatchDescriptor, WatchMask, is_recursive, is_dir)
    ///
    /// Ordered by path, so the watches below a path are the range that follows it.
    watches: BTreeMap<Arc<Path>, (WatchDescriptor, WatchMask, bool, bool)>,
    /// The path of each descriptor, by its number, sharing its allocation with the key in
    /// `watches`.
    paths: HashMap<i32, Arc<Path>>,
    rename_event: Option<Event>,
    /// Watched paths reported moved (`IN_MOVED_FROM`) whose move is not settled yet.
    pending_moves: Vec<PendingMove>,
    follow_links: bool,
    event_kinds: EventKindMask,
}

/// A watched path reported moved by an `IN_MOVED_FROM`.
///
/// inotify watches follow inodes, so a path moved within the watched tree keeps its watches, and
/// those of everything below it: only the paths they are known by change. A move is settled
/// either way once it is certain: by the `IN_MOVE_SELF` of its own watch when the watch asked for
/// it (explicitly watched paths do), which the kernel queues after the `IN_MOVED_TO` of the same
/// rename, so that an `IN_MOVED_FROM` and its `IN_MOVED_TO` read apart are still paired, and only
/// the inode that really moved is re-keyed; otherwise by the `IN_MOVED_TO` with the same cookie,
/// or, without one, by the end of the batch of events read together.
#[derive(Debug)]
struct PendingMove {
    cookie: u32,
    from: PathBuf,
    /// The descriptor watching `from`.
    wd: i32,
    /// Where it went, once its `IN_MOVED_TO` came (settled by its `IN_MOVE_SELF`).
    to: Option<PathBuf>,
    /// Whether its watch reports `IN_MOVE_SELF`, which then settles it.
    until_self: bool,
}

/// How many unsettled moves are remembered at most. An `IN_MOVED_FROM` of a watched path whose
/// `IN_MOVE_SELF` never comes was the move of another inode than the watched one (the path was
/// reused meanwhile): nothing is to be done for it, and the oldest such are forgotten.
const MAX_PENDING_MOVES: usize = 1024;

/// Watcher implementation based on inotify
#[derive(Debug)]
pub struct INotifyWatcher {
    channel: Sender<EventLoopMsg>,
    waker: Arc<mio::Waker>,
}

enum EventLoopMsg {
    AddWatch(PathBuf, RecursiveMode, Sender<Result<()>>),
    RemoveWatch(PathBuf, Sender<Result<()>>),
    UpdatePaths(
        Vec<PathOp>,
        Sender<std::result::Result<(), UpdatePathsError>>,
    ),
    Shutdown,
    Configure(Config, BoundSender<Result<bool>>),
}

#[inline]
/// The device and inode of a file, which name it whatever the path.
fn dev_ino(m: &std::fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (m.dev(), m.ino())
}

/// Whether the directory `id` is at `path` now, reached with no symlink below `common` (the part
/// of the path shared with another name of it, which both went through alike).
fn is_at(path: &Path, common: &Path, id: (u64, u64)) -> bool {
    let through_link = path
        .ancestors()
        .skip(1)
        .take_while(|a| a.starts_with(common) && *a != common)
        .any(|a| std::fs::symlink_metadata(a).map_or(true, |m| m.file_type().is_symlink()));
    !through_link && std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir() && dev_ino(&m) == id)
}

fn add_watch_by_event(
    path: &PathBuf,
    event: &inotify_sys::Event<&OsStr>,
    watches: &BTreeMap<Arc<Path>, (WatchDescriptor, WatchMask, bool, bool)>,
    add_watches: &mut Vec<PathBuf>,
) {
    if event.mask.contains(EventMask::ISDIR) {
        if let Some(parent_path) = path.parent() {
            if let Some(&(_, _, is_recursive, _)) = watches.get(parent_path) {
                if is_recursive {
                    add_watches.push(path.to_owned());
                }
            }
        }
    }
}

#[inline]
fn remove_watch_by_event(
    path: &PathBuf,
    watches: &BTreeMap<Arc<Path>, (WatchDescriptor, WatchMask, bool, bool)>,
    remove_watches: &mut Vec<PathBuf>,
) {
    if watches.contains_key(path.as_path()) {
        remove_watches.push(path.to_owned());
    }
}

impl EventLoop {
    pub fn new(
        inotify: Inotify,
        event_handler: Box<dyn EventHandler>,
        config: &Config,
    ) -> Result<Self> {
        let (event_loop_tx, event_loop_rx) = unbounded::<EventLoopMsg>();
        let poll = mio::Poll::new()?;

        let event_loop_waker = Arc::new(mio::Waker::new(poll.registry(), MESSAGE)?);

        let inotify_fd = inotify.as_raw_fd();
        let mut evented_inotify = mio::unix::SourceFd(&inotify_fd);
        poll.registry()
            .register(&mut evented_inotify, INOTIFY, mio::Interest::READABLE)?;

        let event_loop = EventLoop {
            running: true,
            poll,
            event_loop_waker,
            event_loop_tx,
            event_loop_rx,
            inotify: Some(inotify),
            event_handler,
            watches: BTreeMap::new(),
            paths: HashMap::new(),
            rename_event: None,
            pending_moves: Vec::new(),
            follow_links: config.follow_symlinks(),
            event_kinds: config.event_kinds(),
        };
        Ok(event_loop)
    }

    // Run the event loop.
    pub fn run(self) {
        let _ = thread::Builder::new()
            .name("notify-rs inotify loop".to_string())
            .spawn(|| self.event_loop_thread());
    }

    fn event_loop_thread(mut self) {
        let mut events = mio::Events::with_capacity(16);
        loop {
            // Wait for something to happen.
            match self.poll.poll(&mut events, None) {
                Err(ref e) if matches!(e.kind(), std::io::ErrorKind::Interrupted) => {
                    // System call was interrupted, we will retry
                    // TODO: Not covered by tests (to reproduce likely need to setup signal handlers)
                }
                Err(e) => {
                    // Nothing will wake this loop any more: report, and stop. Dropping the
                    // event loop drops the handler, and closes the inotify instance.
                    self.event_handler.handle_event(Err(Error::io(e)));
                    break;
                }
                Ok(()) => {}
            }

            // Process whatever happened.
            for event in &events {
                self.handle_event(event);
            }

            // Stop, if we're done.
            if !self.running {
                break;
            }
        }
    }

    // Handle a single event.
    fn handle_event(&mut self, event: &mio::event::Event) {
        match event.token() {
            MESSAGE => {
                // The channel is readable - handle messages.
                self.handle_messages()
            }
            INOTIFY => {
                // inotify has something to tell us.
                self.handle_inotify()
            }
            _ => unreachable!(),
        }
    }

    fn handle_messages(&mut self) {
        while let Ok(msg) = self.event_loop_rx.try_recv() {
            match msg {
                EventLoopMsg::AddWatch(path, recursive_mode, tx) => {
                    let _ = tx.send(self.add_watch(&path, recursive_mode.is_recursive(), true));
                }
                EventLoopMsg::RemoveWatch(path, tx) => {
                    let _ = tx.send(self.remove_watch(path, false));
                }
                EventLoopMsg::UpdatePaths(ops, tx) => {
                    let _ = tx.send(self.update_paths(ops));
                }
                EventLoopMsg::Shutdown => {
                    let _ = self.remove_all_watches();
                    if let Some(inotify) = self.inotify.take() {
                        let _ = inotify.close();
                    }
                    self.running = false;
                    break;
                }
                EventLoopMsg::Configure(config, tx) => {
                    self.configure_raw_mode(config, tx);
                }
            }
        }
    }

    fn update_paths(&mut self, ops: Vec<PathOp>) -> std::result::Result<(), UpdatePathsError> {
        // Every event queued before the call is handed over first, so that when `update_paths`
        // returns, the handler has them all: an empty batch is a barrier.
        self.handle_inotify();
        let mut applied = 0;
        crate::update_paths(ops, |op| {
            let result = match &op {
                PathOp::Watch(path, config) => {
                    self.add_watch(path, config.recursive_mode().is_recursive(), true)
                }
                PathOp::Unwatch(path) => self.remove_watch(path.clone(), false),
            };
            applied += 1;
            if applied % UPDATE_PATHS_CHUNK == 0 {
                self.handle_inotify();
            }
            result.map_err(|e| (op, e))
        })
    }

    fn configure_raw_mode(&mut self, _config: Config, tx: BoundSender<Result<bool>>) {
        tx.send(Ok(false))
            .expect("configuration channel disconnected");
    }

    fn handle_inotify(&mut self) {
        let mut add_watches = Vec::new();
        let mut remove_watches = Vec::new();

        if let Some(ref mut inotify) = self.inotify {
            let mut buffer = [0; 1024];
            // Read all buffers available.
            loop {
                match inotify.read_events(&mut buffer) {
                    Ok(events) => {
                        let mut num_events = 0;
                        for event in events {
                            log::trace!("inotify event: {event:?}");

                            num_events += 1;
                            if event.mask.contains(EventMask::Q_OVERFLOW) {
                                let ev = Ok(Event::new(EventKind::Other).set_flag(Flag::Rescan));
                                self.event_handler.handle_event(ev);
                                // The events that would settle them may be lost.
                                for m in self.pending_moves.drain(..) {
                                    match m.to {
                                        Some(to) => Self::rekey(
                                            &mut self.watches,
                                            &mut self.paths,
                                            inotify,
                                            &m.from,
                                            &to,
                                            [&mut remove_watches, &mut add_watches],
                                        ),
                                        None => remove_watches.push(m.from),
                                    }
                                }
                            }

                            let path = match event.name {
                                Some(name) => self
                                    .paths
                                    .get(&event.wd.get_watch_descriptor_id())
                                    .map(|root| root.join(name)),
                                None => self
                                    .paths
                                    .get(&event.wd.get_watch_descriptor_id())
                                    .map(|root| root.to_path_buf()),
                            };

                            let path = match path {
                                Some(path) => path,
                                None => {
                                    log::debug!("inotify event with unknown descriptor: {event:?}");
                                    continue;
                                }
                            };

                            let mut evs = Vec::new();

                            if event.mask.contains(EventMask::MOVED_FROM) {
                                if let Some((wd, mask, _, _)) = self.watches.get(path.as_path()) {
                                    let m = PendingMove {
                                        cookie: event.cookie,
                                        from: path.clone(),
                                        wd: wd.get_watch_descriptor_id(),
                                        to: None,
                                        until_self: mask.contains(WatchMask::MOVE_SELF),
                                    };
                                    self.pending_moves.retain(|p| p.from != path);
                                    if self.pending_moves.len() >= MAX_PENDING_MOVES {
                                        self.pending_moves.remove(0);
                                    }
                                    self.pending_moves.push(m);
                                }

                                let event = Event::new(EventKind::Modify(ModifyKind::Name(
                                    RenameMode::From,
                                )))
                                .add_path(path.clone())
                                .set_tracker(event.cookie as usize);

                                self.rename_event = Some(event.clone());

                                evs.push(event);
                            } else if event.mask.contains(EventMask::MOVED_TO) {
                                evs.push(
                                    Event::new(EventKind::Modify(ModifyKind::Name(RenameMode::To)))
                                        .set_tracker(event.cookie as usize)
                                        .add_path(path.clone()),
                                );

                                let trackers_match =
                                    self.rename_event.as_ref().and_then(|e| e.tracker())
                                        == Some(event.cookie as usize);

                                if trackers_match {
                                    let rename_event = self.rename_event.take().unwrap(); // unwrap is safe because `rename_event` must be set at this point
                                    evs.push(
                                        Event::new(EventKind::Modify(ModifyKind::Name(
                                            RenameMode::Both,
                                        )))
                                        .set_tracker(event.cookie as usize)
                                        .add_some_path(rename_event.paths.first().cloned())
                                        .add_path(path.clone()),
                                    );
                                }
                                add_watch_by_event(&path, &event, &self.watches, &mut add_watches);
                                let moved = self
                                    .pending_moves
                                    .iter()
                                    .position(|m| m.cookie == event.cookie && m.to.is_none());
                                if let Some(i) = moved {
                                    if self.pending_moves[i].until_self {
                                        self.pending_moves[i].to = Some(path.clone());
                                    } else {
                                        let m = self.pending_moves.remove(i);
                                        Self::rekey(
                                            &mut self.watches,
                                            &mut self.paths,
                                            inotify,
                                            &m.from,
                                            &path,
                                            [&mut remove_watches, &mut add_watches],
                                        );
                                    }
                                }
                            }
                            if event.mask.contains(EventMask::MOVE_SELF) {
                                evs.push(
                                    Event::new(EventKind::Modify(ModifyKind::Name(
                                        RenameMode::From,
                                    )))
                                    .add_path(path.clone()),
                                );
                                let wd = event.wd.get_watch_descriptor_id();
                                let moved = self
                                    .pending_moves
                                    .iter()
                                    .position(|m| m.until_self && m.wd == wd);
                                if let Some(i) = moved {
                                    let m = self.pending_moves.remove(i);
                                    match m.to {
                                        // Moved within the tree: its watches stay, known by the
                                        // new paths from the next event on.
                                        Some(to) => Self::rekey(
                                            &mut self.watches,
                                            &mut self.paths,
                                            inotify,
                                            &m.from,
                                            &to,
                                            [&mut remove_watches, &mut add_watches],
                                        ),
                                        // Moved out of it.
                                        None => remove_watches.push(m.from),
                                    }
                                }
                            }
                            if event.mask.contains(EventMask::CREATE) {
                                evs.push(
                                    Event::new(EventKind::Create(
                                        if event.mask.contains(EventMask::ISDIR) {
                                            CreateKind::Folder
                                        } else {
                                            CreateKind::File
                                        },
                                    ))
                                    .add_path(path.clone()),
                                );
                                add_watch_by_event(&path, &event, &self.watches, &mut add_watches);
                            }
                            if event.mask.contains(EventMask::DELETE) {
                                evs.push(
                                    Event::new(EventKind::Remove(
                                        if event.mask.contains(EventMask::ISDIR) {
                                            RemoveKind::Folder
                                        } else {
                                            RemoveKind::File
                                        },
                                    ))
                                    .add_path(path.clone()),
                                );
                                remove_watch_by_event(&path, &self.watches, &mut remove_watches);
                            }
                            if event.mask.contains(EventMask::DELETE_SELF) {
                                let remove_kind = match self.watches.get(path.as_path()) {
                                    Some(&(_, _, _, true)) => RemoveKind::Folder,
                                    Some(&(_, _, _, false)) => RemoveKind::File,
                                    None => RemoveKind::Other,
                                };
                                evs.push(
                                    Event::new(EventKind::Remove(remove_kind))
                                        .add_path(path.clone()),
                                );
                                remove_watch_by_event(&path, &self.watches, &mut remove_watches);
                            }
                            if event.mask.contains(EventMask::MODIFY) {
                                evs.push(
                                    Event::new(EventKind::Modify(ModifyKind::Data(
                                        DataChange::Any,
                                    )))
                                    .add_path(path.clone()),
                                );
                            }
                            if event.mask.contains(EventMask::CLOSE_WRITE) {
                                evs.push(
                                    Event::new(EventKind::Access(AccessKind::Close(
                                        AccessMode::Write,
                                    )))
                                    .add_path(path.clone()),
                                );
                            }
                            if event.mask.contains(EventMask::CLOSE_NOWRITE) {
                                evs.push(
                                    Event::new(EventKind::Access(AccessKind::Close(
                                        AccessMode::Read,
                                    )))
                                    .add_path(path.clone()),
                                );
                            }
                            if event.mask.contains(EventMask::ATTRIB) {
                                evs.push(
                                    Event::new(EventKind::Modify(ModifyKind::Metadata(
                                        MetadataKind::Any,
                                    )))
                                    .add_path(path.clone()),
                                );
                            }
                            if event.mask.contains(EventMask::OPEN) {
                                evs.push(
                                    Event::new(EventKind::Access(AccessKind::Open(
                                        AccessMode::Any,
                                    )))
                                    .add_path(path.clone()),
                                );
                            }

                            for ev in evs {
                                if self.event_kinds.matches(&ev.kind) {
                                    self.event_handler.handle_event(Ok(ev));
                                }
                            }
                        }

                        // All events read. Break out.
                        if num_events == 0 {
                            break;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        // No events read. Break out.
                        break;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        // Reading again would fail again.
                        self.event_handler.handle_event(Err(Error::io(e)));
                        break;
                    }
                }
            }
        }

        // A move of a path whose watch reports no IN_MOVE_SELF is settled by the end of the batch:
        // without its IN_MOVED_TO, it left the watched tree. The others wait for their
        // IN_MOVE_SELF, while their watch exists.
        let paths = &self.paths;
        self.pending_moves.retain(|m| {
            if !m.until_self {
                remove_watches.push(m.from.clone());
            }
            m.until_self && paths.contains_key(&m.wd)
        });

        for path in remove_watches {
            // Both IN_DELETE and IN_DELETE_SELF report a deleted directory, and the removal of
            // an ancestor already removed the watches below it.
            if !self.watches.contains_key(path.as_path()) {
                continue;
            }
            if let Err(err) = self.remove_watch(path, true) {
                log::warn!("Unable to remove the path from the watches: {err:?}");
            }
        }

        for path in add_watches {
            if let Err(add_watch_error) = self.add_watch(&path, true, false) {
                // The handler should be notified if we have reached the limit.
                // Otherwise, the user might expect that a recursive watch
                // is continuing to work correctly, but it's not.
                if let ErrorKind::MaxFilesWatch = add_watch_error.kind {
                    self.event_handler.handle_event(Err(add_watch_error));

                    // After that kind of a error we should stop adding watches,
                    // because the limit has already reached and all next calls
                    // will return us only the same error.
                    break;
                }
            }
        }
    }

    fn add_watch(&mut self, path: &Path, is_recursive: bool, mut watch_self: bool) -> Result<()> {
        // If the watch is not recursive, or if we determine (by stat'ing the path to get its
        // metadata) that the watched path is not a directory, add a single path watch. Only a
        // recursive watch needs the stat: a caller that watches a large tree one directory at a
        // time would otherwise pay one per watch. Without follow_links a symlink is never a
        // directory to walk (WalkDir always follows its root).
        if !is_recursive {
            return self.add_single_watch(path, false, true);
        }
        let meta = if self.follow_links {
            metadata(path)
        } else {
            std::fs::symlink_metadata(path)
        };
        if !meta.map_err(Error::io_watch)?.is_dir() {
            return self.add_single_watch(path, false, true);
        }

        for entry in WalkDir::new(path)
            .follow_links(self.follow_links)
            .into_iter()
            .filter_map(filter_dir)
        {
            self.add_single_watch(entry.path(), is_recursive, watch_self)?;
            watch_self = false;
        }

        Ok(())
    }

    fn add_single_watch(
        &mut self,
        path: &Path,
        is_recursive: bool,
        watch_self: bool,
    ) -> Result<()> {
        let mut watchmask = event_kinds_to_watch_mask(self.event_kinds, is_recursive);

        if watch_self {
            watchmask.insert(WatchMask::DELETE_SELF);
            watchmask.insert(WatchMask::MOVE_SELF);
        }
        // Without follow_links, a path that is (or just became) a symlink is watched as the link
        // itself. Followed, the kernel would hand back the descriptor of the directory it points
        // to, which `paths` would then map to the link's path: the directory's own events would
        // be reported under the link, and lost with it.
        if !self.follow_links {
            watchmask.insert(WatchMask::DONT_FOLLOW);
        }

        // One allocation of the path, shared by both maps, and one search of `watches`.
        let entry = self.watches.entry(Arc::from(path));
        let existing = matches!(entry, Entry::Occupied(_));
        if let Entry::Occupied(ref watch) = entry {
            watchmask.insert(watch.get().1);
            watchmask.insert(WatchMask::MASK_ADD);
        }

        if let Some(ref mut inotify) = self.inotify {
            log::trace!("adding inotify watch: {}", path.display());

            // A new watch is asked for with IN_ONLYDIR first: this tells a directory without a
            // second lookup of the path.
            let added = if existing {
                inotify.watches().add(path, watchmask).map(|w| (w, None))
            } else {
                match inotify.watches().add(path, watchmask | WatchMask::ONLYDIR) {
                    Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => inotify
                        .watches()
                        .add(path, watchmask)
                        .map(|w| (w, Some(false))),
                    added => added.map(|w| (w, Some(true))),
                }
            };
            match added {
                Err(e) => {
                    Err(if e.raw_os_error() == Some(libc::ENOSPC) {
                        // do not report inotify limits as "no more space" on linux #266
                        Error::new(ErrorKind::MaxFilesWatch)
                    } else if e.kind() == std::io::ErrorKind::NotFound {
                        Error::new(ErrorKind::PathNotFound)
                    } else {
                        Error::io(e)
                    }
                    .add_path(path.to_path_buf()))
                }
                Ok((w, is_dir)) => {
                    watchmask.remove(WatchMask::MASK_ADD);
                    let is_dir = match is_dir {
                        Some(is_dir) => is_dir,
                        None => metadata(path).map_err(Error::io)?.is_dir(),
                    };
                    let id = w.get_watch_descriptor_id();
                    let path = entry.key().clone();
                    let watch = (w.clone(), watchmask, is_recursive, is_dir);
                    // The kernel keys watches by inode: a path that reaches an inode already
                    // watched under another path gets that watch's descriptor back.
                    let known = self.paths.get(&id).filter(|old| **old != path).cloned();
                    let Some(old) = known else {
                        match entry {
                            Entry::Occupied(mut entry) => {
                                entry.insert(watch);
                            }
                            Entry::Vacant(entry) => {
                                entry.insert(watch);
                            }
                        }
                        self.paths.insert(id, path);
                        return Ok(());
                    };
                    drop(entry);
                    Self::settle_alias(
                        &mut self.watches,
                        &mut self.paths,
                        inotify,
                        &old,
                        path,
                        watch,
                    )
                }
            }
        } else {
            Ok(())
        }
    }

    /// Decides which of two paths that reached the same inode names its watch. One of them
    /// usually went through a symlink: `root/link/sub` where `link` points to a watched `dir`
    /// (a directory replaced by a symlink between its `IN_CREATE` and this watch), or it is the
    /// old path of a directory moved since. Mapping the descriptor to such a path would report
    /// the directory's events under a path where it is not, and a later removal of that path
    /// (its `IN_DELETE`) would remove the directory's own watch. So the path where the
    /// directory now is, with no symlink on the way, keeps the watch: a new path that is not
    /// such a place is refused as not found (it is not a directory of the tree), and an old one
    /// is re-keyed, with the watches below it, to the new. When both are (a bind mount), the
    /// new path takes the descriptor, as before.
    fn settle_alias(
        watches: &mut BTreeMap<Arc<Path>, (WatchDescriptor, WatchMask, bool, bool)>,
        paths: &mut HashMap<i32, Arc<Path>>,
        inotify: &Inotify,
        old: &Arc<Path>,
        path: Arc<Path>,
        watch: (WatchDescriptor, WatchMask, bool, bool),
    ) -> Result<()> {
        let common: PathBuf = old
            .components()
            .zip(path.components())
            .take_while(|(a, b)| a == b)
            .map(|(a, _)| a)
            .collect();
        let target = std::fs::metadata(&path).ok().map(|m| dev_ino(&m));
        let new_is_real = target.is_some_and(|t| is_at(&path, &common, t));
        if !new_is_real {
            log::debug!(
                "not watching {} apart: it is the watched {} reached another way",
                path.display(),
                old.display()
            );
            if let Some((w, mask, _, _)) = watches.get(old.as_ref()) {
                if *mask != watch.1 {
                    // The refused add replaced the kernel's mask; put the old one back.
                    let _ = inotify.watches().add(old.as_ref(), *mask);
                }
                debug_assert_eq!(
                    w.get_watch_descriptor_id(),
                    watch.0.get_watch_descriptor_id()
                );
            }
            if watches.get(path.as_ref()).map(|v| &v.0) == Some(&watch.0) {
                watches.remove(path.as_ref());
            }
            return Err(Error::path_not_found().add_path(path.to_path_buf()));
        }
        let old_is_real = target.is_some_and(|t| is_at(old, &common, t));
        if !old_is_real {
            log::debug!("{} is watched at {} now", old.display(), path.display());
            Self::rekey(
                watches,
                paths,
                inotify,
                old,
                &path,
                [&mut Vec::new(), &mut Vec::new()],
            );
        }
        paths.insert(watch.0.get_watch_descriptor_id(), path.clone());
        watches.insert(path, watch);
        Ok(())
    }

    fn remove_watch(&mut self, path: PathBuf, remove_recursive: bool) -> Result<()> {
        match self.watches.remove(path.as_path()) {
            None => return Err(Error::watch_not_found().add_path(path)),
            Some((w, _, is_recursive, _)) => {
                if let Some(ref mut inotify) = self.inotify {
                    let mut inotify_watches = inotify.watches();
                    log::trace!("removing inotify watch for {path:?}, remove_recursive: {remove_recursive:?}");

                    Self::remove_single_descriptor(&mut inotify_watches, w.clone());
                    self.paths.remove(&w.get_watch_descriptor_id());

                    if is_recursive || remove_recursive {
                        for p in Self::watches_below(&self.watches, &path) {
                            if let Some((w, _, _, _)) = self.watches.remove(&p) {
                                Self::remove_single_descriptor(&mut inotify_watches, w.clone());
                                self.paths.remove(&w.get_watch_descriptor_id());
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// The watched paths below `path`, in order.
    ///
    /// `Path` orders component by component, so they directly follow `path` (`/a/b/c` sorts
    /// between `/a/b` and `/a/b-c`): finding them costs a lookup, not a scan of every watch.
    fn watches_below<V>(watches: &BTreeMap<Arc<Path>, V>, path: &Path) -> Vec<Arc<Path>> {
        watches
            .range::<Path, _>((Bound::Excluded(path), Bound::Unbounded))
            .map(|(p, _)| p)
            .take_while(|p| p.starts_with(path))
            .cloned()
            .collect()
    }

    /// Re-keys the watches of `from` and of everything below it to `to`, where it was moved: the
    /// kernel's watches follow the inodes, so only the paths change. O(k log n) for k watches
    /// moved among n. Watches that `to` had (a directory replaced by the rename) are removed, and
    /// so are paths queued for removal or addition in the same batch (`queued`) re-keyed.
    fn rekey(
        watches: &mut BTreeMap<Arc<Path>, (WatchDescriptor, WatchMask, bool, bool)>,
        paths: &mut HashMap<i32, Arc<Path>>,
        inotify: &Inotify,
        from: &Path,
        to: &Path,
        queued: [&mut Vec<PathBuf>; 2],
    ) {
        if from == to || to.starts_with(from) || from.starts_with(to) {
            // A directory cannot be moved into itself or over one of its ancestors.
            return;
        }
        if !watches.contains_key(from) {
            // Already re-keyed: the new path was watched before the move's events were read
            // (`settle_alias`), and the watch there is the moved directory's own.
            return;
        }
        let at_or_below = |watches: &BTreeMap<Arc<Path>, _>, p: &Path| -> Vec<Arc<Path>> {
            let mut v: Vec<Arc<Path>> = watches
                .get_key_value(p)
                .map(|(k, _)| k.clone())
                .into_iter()
                .collect();
            v.extend(Self::watches_below(watches, p));
            v
        };
        let mut inotify_watches = inotify.watches();
        for p in at_or_below(watches, to) {
            if let Some((w, _, _, _)) = watches.remove(&p) {
                paths.remove(&w.get_watch_descriptor_id());
                Self::remove_single_descriptor(&mut inotify_watches, w);
            }
        }
        let moved_to = |p: &Path| match p.strip_prefix(from) {
            Ok(rest) if rest.as_os_str().is_empty() => Some(to.to_path_buf()),
            Ok(rest) => Some(to.join(rest)),
            Err(_) => None,
        };
        for p in at_or_below(watches, from) {
            let (Some(watch), Some(new)) = (watches.remove(&p), moved_to(&p)) else {
                continue;
            };
            let new: Arc<Path> = Arc::from(new);
            paths.insert(watch.0.get_watch_descriptor_id(), new.clone());
            watches.insert(new, watch);
        }
        for list in queued {
            for p in list.iter_mut() {
                if let Some(new) = moved_to(p) {
                    *p = new;
                }
            }
        }
    }

    /// As long as we use the `inotify` crate its behaviour is specified by the documentation of
    /// a [`inotify::Watches::remove`] method:
    /// ```text
    /// Directly returns the error from the call to [inotify_rm_watch].
    /// Returns an [io::Error] with [ErrorKind]::InvalidInput,
    /// if the given WatchDescriptor did not originate from this [Inotify] instance.
    /// ```
    ///
    /// inotify documentation says, that `inotify_rm_watch` may fail with two specific errors:
    /// * EBADF - fd is not a valid file descriptor.
    /// * EINVAL - The watch descriptor wd is not valid or fd is not an inotify file descriptor.
    ///
    /// Therefore, we can ignore this errors (and log it), because
    /// * in the case, when we are removing a watch because of an caught `DELETE` or `DELETE_SELF` event we want the
    ///   path to be not watched, and in error cases it's already done (unknown file descriptor == it is not watched)
    /// * in the case, when user is trying to remove the watch, they can do nothing with that kind of an error,
    ///   it's totally internal. BUT, if there are no "strange" states (like races between user call and internal call,
    ///   when internal inotify file descriptor has already been invalidated, but the event still hasn't been handled)
    ///   they will get an [`ErrorKind::WatchNotFound`] error and can deal with it
    ///
    /// Log level is info, because it is not a "real" error. Expectedly, it may occurred only by race condition
    /// (like described above), in other cases it is a bug (but we aren't able to distinguish that states)
    fn remove_single_descriptor(watches: &mut inotify::Watches, wd: WatchDescriptor) {
        if let Err(err) = watches.remove(wd) {
            log::info!("unable to remove watch descriptor from inotify: {err:?}");
        }
    }

    fn remove_all_watches(&mut self) -> Result<()> {
        if let Some(ref mut inotify) = self.inotify {
            let mut inotify_watches = inotify.watches();
            for (p, (w, _, _, _)) in &self.watches {
                inotify_watches
                    .remove(w.clone())
                    .map_err(|e| Error::io(e).add_path(p.to_path_buf()))?;
            }
            self.watches.clear();
            self.paths.clear();
        }
        Ok(())
    }
}

/// return `DirEntry` when it is a directory
fn filter_dir(e: walkdir::Result<walkdir::DirEntry>) -> Option<walkdir::DirEntry> {
    if let Ok(e) = e {
        if let Ok(metadata) = e.metadata() {
            if metadata.is_dir() {
                return Some(e);
            }
        }
    }
    None
}

impl INotifyWatcher {
    fn from_event_handler(event_handler: Box<dyn EventHandler>, config: &Config) -> Result<Self> {
        let inotify = Inotify::init()?;
        let event_loop = EventLoop::new(inotify, event_handler, config)?;
        let channel = event_loop.event_loop_tx.clone();
        let waker = event_loop.event_loop_waker.clone();
        event_loop.run();
        Ok(INotifyWatcher { channel, waker })
    }

    fn watch_inner(&mut self, path: &Path, recursive_mode: RecursiveMode) -> Result<()> {
        let pb = if path.is_absolute() {
            path.to_owned()
        } else {
            let p = env::current_dir().map_err(Error::io)?;
            p.join(path)
        };
        let (tx, rx) = unbounded();
        let msg = EventLoopMsg::AddWatch(pb, recursive_mode, tx);

        // the event loop is gone if its poll failed
        self.channel.send(msg)?;
        self.waker.wake()?;
        rx.recv()?
    }

    fn unwatch_inner(&mut self, path: &Path) -> Result<()> {
        let pb = if path.is_absolute() {
            path.to_owned()
        } else {
            let p = env::current_dir().map_err(Error::io)?;
            p.join(path)
        };
        let (tx, rx) = unbounded();
        let msg = EventLoopMsg::RemoveWatch(pb, tx);

        // the event loop is gone if its poll failed
        self.channel.send(msg)?;
        self.waker.wake()?;
        rx.recv()?
    }

    fn update_paths_inner(
        &mut self,
        mut ops: Vec<PathOp>,
    ) -> std::result::Result<(), UpdatePathsError> {
        // Resolve relative paths here, as watch() and unwatch() do.
        if ops.iter().any(|op| op.as_path().is_relative()) {
            let cwd = match env::current_dir() {
                Ok(cwd) => cwd,
                Err(e) => {
                    return Err(UpdatePathsError {
                        source: Error::io(e),
                        origin: None,
                        remaining: ops,
                    })
                }
            };
            for op in &mut ops {
                let path = match op {
                    PathOp::Watch(path, _) | PathOp::Unwatch(path) => path,
                };
                if path.is_relative() {
                    *path = cwd.join(&*path);
                }
            }
        }
        let (tx, rx) = unbounded();
        if let Err(e) = self.channel.send(EventLoopMsg::UpdatePaths(ops, tx)) {
            let EventLoopMsg::UpdatePaths(ops, _) = e.0 else {
                unreachable!()
            };
            return Err(UpdatePathsError {
                source: Error::generic("internal channel disconnect"),
                origin: None,
                remaining: ops,
            });
        }
        let error = |source| UpdatePathsError {
            source,
            origin: None,
            // The batch was sent; which part of it was applied is unknown without a reply.
            remaining: Vec::new(),
        };
        self.waker.wake().map_err(|e| error(e.into()))?;
        rx.recv().map_err(|e| error(e.into()))?
    }
}

impl Watcher for INotifyWatcher {
    /// Create a new watcher.
    fn new<F: EventHandler>(event_handler: F, config: Config) -> Result<Self> {
        Self::from_event_handler(Box::new(event_handler), &config)
    }

    fn watch(&mut self, path: &Path, recursive_mode: RecursiveMode) -> Result<()> {
        self.watch_inner(path, recursive_mode)
    }

    fn unwatch(&mut self, path: &Path) -> Result<()> {
        self.unwatch_inner(path)
    }

    fn update_paths(&mut self, ops: Vec<PathOp>) -> std::result::Result<(), UpdatePathsError> {
        self.update_paths_inner(ops)
    }

    fn configure(&mut self, config: Config) -> Result<bool> {
        let (tx, rx) = bounded(1);
        self.channel.send(EventLoopMsg::Configure(config, tx))?;
        self.waker.wake()?;
        rx.recv()?
    }

    fn kind() -> crate::WatcherKind {
        crate::WatcherKind::Inotify
    }
}

impl Drop for INotifyWatcher {
    fn drop(&mut self) {
        // the event loop is gone if its poll failed
        let _ = self.channel.send(EventLoopMsg::Shutdown);
        let _ = self.waker.wake();
    }
}

#[cfg(test)]
mod tests {
    use std::{
        path::{Path, PathBuf},
        sync::{atomic::AtomicBool, mpsc, Arc},
        thread::{self, available_parallelism},
        time::Duration,
    };

    use super::{Config, Error, ErrorKind, Event, INotifyWatcher, RecursiveMode, Result, Watcher};
    use crate::event::{CreateKind, EventKind, ModifyKind, RenameMode};

    use crate::test::*;

    fn watcher() -> (TestWatcher<INotifyWatcher>, Receiver) {
        channel()
    }

    /// An event loop driven by the test itself, without its thread.
    fn event_loop(config: &Config) -> (super::EventLoop, mpsc::Receiver<Result<Event>>) {
        let (tx, rx) = mpsc::channel();
        let inotify = super::Inotify::init().expect("inotify init");
        let event_loop = super::EventLoop::new(inotify, Box::new(tx), config).expect("event loop");
        (event_loop, rx)
    }

    /// The masks of the watches that the kernel holds for `event_loop`, one per watch, read from
    /// `/proc/self/fdinfo`.
    fn kernel_watch_masks(event_loop: &super::EventLoop) -> Vec<u32> {
        use std::os::unix::io::AsRawFd;
        let fd = event_loop.inotify.as_ref().expect("inotify").as_raw_fd();
        let fdinfo = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).expect("fdinfo");
        fdinfo
            .lines()
            .filter(|line| line.starts_with("inotify wd:"))
            .map(|line| {
                let mask = line
                    .split_whitespace()
                    .find_map(|field| field.strip_prefix("mask:"))
                    .expect("mask field");
                u32::from_str_radix(mask, 16).expect("hex mask")
            })
            .collect()
    }

    /// Watches `dirs` one by one, as a caller that walks the tree itself does.
    fn watch_each(event_loop: &mut super::EventLoop, dirs: &[PathBuf]) {
        let ops = dirs
            .iter()
            .map(|dir| super::PathOp::watch_non_recursive(dir.clone()))
            .collect();
        event_loop.update_paths(ops).expect("update_paths");
    }

    fn watched(event_loop: &super::EventLoop) -> Vec<PathBuf> {
        assert_eq!(event_loop.watches.len(), event_loop.paths.len());
        for (w, path) in &event_loop.paths {
            assert_eq!(
                event_loop.watches[path].0.get_watch_descriptor_id(),
                *w,
                "{path:?}"
            );
        }
        event_loop
            .watches
            .keys()
            .map(|path| path.to_path_buf())
            .collect()
    }

    #[test]
    fn watches_below_a_path_are_its_descendants_only() {
        let paths = [
            "/a", "/a/a", "/a/b", "/a/b/c", "/a/b/c/d", "/a/b/e", "/a/b c", "/a/b-c", "/a/b-c/d",
            "/a/b.c", "/a/b0", "/a/bc", "/a/c", "/b",
        ];
        let watches: std::collections::BTreeMap<Arc<Path>, ()> = paths
            .iter()
            .map(|p| (Arc::from(Path::new(p)), ()))
            .collect();
        let below = |p: &str| -> Vec<String> {
            super::EventLoop::watches_below(&watches, Path::new(p))
                .iter()
                .map(|p| p.to_str().unwrap().to_owned())
                .collect()
        };
        assert_eq!(below("/a/b"), ["/a/b/c", "/a/b/c/d", "/a/b/e"]);
        assert_eq!(below("/a/b/"), ["/a/b/c", "/a/b/c/d", "/a/b/e"]);
        assert_eq!(below("/a/b-c"), ["/a/b-c/d"]);
        assert_eq!(below("/a/bc"), Vec::<String>::new());
        assert_eq!(below("/a/x"), Vec::<String>::new());
        assert_eq!(below("/a").len(), 12);
        assert_eq!(below("/").len(), 14);
    }

    #[test]
    fn moving_a_directory_out_of_the_tree_removes_the_watches_of_its_subtree_only() {
        let tmpdir = testdir();
        let outside = testdir();
        let root = tmpdir.path();
        let dirs: Vec<PathBuf> = [
            "", "a", "a/b", "a/b/c", "a/b/c/d", "a/b c", "a/b-c", "a/b-c/d", "a/b.c", "a/bc",
        ]
        .iter()
        .map(|d| root.join(d))
        .collect();
        for dir in &dirs {
            std::fs::create_dir_all(dir).expect("create_dir_all");
        }
        let (mut event_loop, _rx) = event_loop(&Config::default());
        watch_each(&mut event_loop, &dirs);
        assert_eq!(kernel_watch_masks(&event_loop).len(), dirs.len());

        // Moved, the directories still exist: only notify can remove their watches.
        std::fs::rename(root.join("a/b"), outside.path().join("moved")).expect("rename");
        event_loop.handle_inotify();

        let expected: Vec<PathBuf> = ["", "a", "a/b c", "a/b-c", "a/b-c/d", "a/b.c", "a/bc"]
            .iter()
            .map(|d| root.join(d))
            .collect();
        assert_eq!(watched(&event_loop), expected);
        assert_eq!(kernel_watch_masks(&event_loop).len(), expected.len());
    }

    #[test]
    fn update_paths_first_hands_over_the_events_already_queued() {
        use crate::EventKindMask;
        let tmpdir = testdir();
        let (mut event_loop, rx) =
            event_loop(&Config::default().with_event_kinds(EventKindMask::CORE));
        watch_each(&mut event_loop, &[tmpdir.path().to_path_buf()]);
        for i in 0..100 {
            std::fs::File::create(tmpdir.path().join(format!("f{i}"))).expect("create");
        }
        assert!(rx.try_recv().is_err(), "nothing was read yet");

        event_loop.update_paths(Vec::new()).expect("an empty batch");

        let created = rx
            .try_iter()
            .filter(|e| matches!(e, Ok(e) if e.kind == EventKind::Create(CreateKind::File)))
            .count();
        assert_eq!(created, 100);
    }

    #[test]
    fn an_empty_update_paths_is_a_barrier_for_the_events_queued_before_it() {
        let tmpdir = testdir();
        let (tx, rx) = mpsc::channel();
        let mut watcher = INotifyWatcher::new(tx, Config::default()).expect("watcher");
        watcher
            .watch(tmpdir.path(), RecursiveMode::NonRecursive)
            .expect("watch");
        for i in 0..1000 {
            std::fs::File::create(tmpdir.path().join(format!("f{i}"))).expect("create");
        }

        watcher.update_paths(Vec::new()).expect("an empty batch");

        // No waiting: every event queued before the call is in the channel.
        let created: std::collections::HashSet<PathBuf> = rx
            .try_iter()
            .filter_map(|e| e.ok())
            .filter(|e| e.kind == EventKind::Create(CreateKind::File))
            .flat_map(|e| e.paths)
            .collect();
        assert_eq!(created.len(), 1000);
    }

    #[test]
    fn without_follow_links_a_symlink_to_a_watched_directory_does_not_take_its_events() {
        let tmpdir = testdir();
        let root = tmpdir.path();
        std::fs::create_dir_all(root.join("d/inside")).expect("create_dir_all");
        let (mut event_loop, rx) = event_loop(&Config::default().with_follow_symlinks(false));
        watch_each(
            &mut event_loop,
            &[root.to_path_buf(), root.join("d"), root.join("d/inside")],
        );
        // A directory replaced by a symlink to another watched directory between its create
        // event and its watch: the watch is on the link, not on what it points to.
        std::os::unix::fs::symlink("d/inside", root.join("link")).expect("symlink");
        watch_each(&mut event_loop, &[root.join("link")]);
        while rx.try_recv().is_ok() {}

        std::fs::write(root.join("d/inside/f"), b"x").expect("write");
        event_loop.handle_inotify();

        let paths: Vec<PathBuf> = rx
            .try_iter()
            .filter_map(|e| e.ok())
            .flat_map(|e| e.paths)
            .collect();
        assert!(paths.contains(&root.join("d/inside/f")), "{paths:?}");
        assert!(
            !paths.iter().any(|p| p.starts_with(root.join("link"))),
            "{paths:?}"
        );
        assert_eq!(kernel_watch_masks(&event_loop).len(), 4);
    }

    /// The paths of the events read so far.
    fn event_paths(rx: &mpsc::Receiver<Result<Event>>) -> Vec<PathBuf> {
        rx.try_iter()
            .filter_map(|e| e.ok())
            .flat_map(|e| e.paths)
            .collect()
    }

    #[test]
    fn a_path_through_a_symlink_to_a_watched_directory_is_refused_and_removes_nothing() {
        let tmpdir = testdir();
        let root = tmpdir.path();
        std::fs::create_dir_all(root.join("d/inside")).expect("create_dir_all");
        let (mut event_loop, rx) = event_loop(&Config::default().with_follow_symlinks(false));
        let real = [root.to_path_buf(), root.join("d"), root.join("d/inside")];
        watch_each(&mut event_loop, &real);
        // `link/inside` was a directory when its creation was read; `link` is now a symlink,
        // and the kernel follows it to the watched `d/inside`.
        std::os::unix::fs::symlink("d", root.join("link")).expect("symlink");
        let op = super::PathOp::watch_non_recursive(root.join("link/inside"));
        let err = event_loop.update_paths(vec![op]).expect_err("an alias");
        assert!(
            matches!(err.source.kind, ErrorKind::PathNotFound),
            "{err:?}"
        );
        assert_eq!(watched(&event_loop), real.to_vec());
        // Its removal (the `IN_DELETE` of the directory it was) leaves the real watch alone.
        let _ = event_loop.update_paths(vec![super::PathOp::unwatch(root.join("link/inside"))]);
        while rx.try_recv().is_ok() {}
        std::fs::write(root.join("d/inside/f"), b"x").expect("write");
        event_loop.handle_inotify();
        let paths = event_paths(&rx);
        assert!(paths.contains(&root.join("d/inside/f")), "{paths:?}");
        assert!(
            !paths.iter().any(|p| p.starts_with(root.join("link"))),
            "{paths:?}"
        );
        assert_eq!(kernel_watch_masks(&event_loop).len(), 3);
    }

    #[test]
    fn a_directory_watched_through_a_symlink_first_is_re_keyed_to_its_real_path() {
        let tmpdir = testdir();
        let root = tmpdir.path();
        std::fs::create_dir_all(root.join("d/inside/below")).expect("create_dir_all");
        std::os::unix::fs::symlink("d", root.join("link")).expect("symlink");
        let (mut event_loop, rx) = event_loop(&Config::default().with_follow_symlinks(false));
        watch_each(
            &mut event_loop,
            &[
                root.to_path_buf(),
                root.join("d"),
                root.join("link/inside"),
                root.join("link/inside/below"),
            ],
        );
        watch_each(&mut event_loop, &[root.join("d/inside")]);
        assert_eq!(
            watched(&event_loop),
            vec![
                root.to_path_buf(),
                root.join("d"),
                root.join("d/inside"),
                root.join("d/inside/below"),
            ]
        );
        while rx.try_recv().is_ok() {}
        std::fs::write(root.join("d/inside/below/f"), b"x").expect("write");
        event_loop.handle_inotify();
        let paths = event_paths(&rx);
        assert!(paths.contains(&root.join("d/inside/below/f")), "{paths:?}");
        assert!(
            !paths.iter().any(|p| p.starts_with(root.join("link"))),
            "{paths:?}"
        );
    }

    #[test]
    fn a_moved_directory_watched_at_its_new_path_before_the_move_is_read_keeps_its_watch() {
        let tmpdir = testdir();
        let root = tmpdir.path();
        std::fs::create_dir_all(root.join("a/sub")).expect("create_dir_all");
        let (mut event_loop, rx) = event_loop(&Config::default().with_follow_symlinks(false));
        watch_each(
            &mut event_loop,
            &[root.to_path_buf(), root.join("a"), root.join("a/sub")],
        );
        std::fs::rename(root.join("a"), root.join("b")).expect("rename");
        // A walk reaches the new path before the move's events are read (`update_paths` would
        // read them first).
        event_loop
            .add_watch(&root.join("b"), false, true)
            .expect("watch b");
        event_loop.handle_inotify();
        assert_eq!(
            watched(&event_loop),
            vec![root.to_path_buf(), root.join("b"), root.join("b/sub")]
        );
        while rx.try_recv().is_ok() {}
        std::fs::write(root.join("b/sub/f"), b"x").expect("write");
        event_loop.handle_inotify();
        let paths = event_paths(&rx);
        assert!(paths.contains(&root.join("b/sub/f")), "{paths:?}");
        assert_eq!(kernel_watch_masks(&event_loop).len(), 3);
    }

    /// The kernel's watch descriptors, by the path notify knows them by.
    fn descriptors(event_loop: &super::EventLoop) -> Vec<(PathBuf, i32)> {
        event_loop
            .watches
            .iter()
            .map(|(p, (w, _, _, _))| (p.to_path_buf(), w.get_watch_descriptor_id()))
            .collect()
    }

    #[test]
    fn a_directory_moved_within_the_tree_keeps_its_watches_under_the_new_path() {
        let tmpdir = testdir();
        let root = tmpdir.path();
        let dirs: Vec<PathBuf> = ["", "a", "a/b", "a/b/c", "a-c", "x"]
            .iter()
            .map(|d| root.join(d))
            .collect();
        for dir in &dirs {
            std::fs::create_dir_all(dir).expect("create_dir_all");
        }
        let (mut event_loop, rx) = event_loop(&Config::default());
        watch_each(&mut event_loop, &dirs);
        let before = descriptors(&event_loop);
        let wd = |list: &[(PathBuf, i32)], p: &str| {
            list.iter()
                .find(|(q, _)| q == &root.join(p))
                .map(|(_, w)| *w)
        };

        std::fs::rename(root.join("a"), root.join("x/moved")).expect("rename");
        event_loop.handle_inotify();

        // The same kernel watches, known by the new paths.
        let after = descriptors(&event_loop);
        let expected: Vec<PathBuf> = ["", "a-c", "x", "x/moved", "x/moved/b", "x/moved/b/c"]
            .iter()
            .map(|d| root.join(d))
            .collect();
        assert_eq!(watched(&event_loop), expected);
        assert_eq!(kernel_watch_masks(&event_loop).len(), dirs.len());
        for (old, new) in [
            ("a", "x/moved"),
            ("a/b", "x/moved/b"),
            ("a/b/c", "x/moved/b/c"),
        ] {
            assert_eq!(wd(&before, old), wd(&after, new), "{old} -> {new}");
        }
        // The rename is reported as before: From, To, Both, and the watch's own From.
        let events: Vec<(EventKind, Vec<PathBuf>, Option<usize>)> = rx
            .try_iter()
            .map(|e| e.expect("event"))
            .filter(|e| matches!(e.kind, EventKind::Modify(ModifyKind::Name(_))))
            .map(|e| (e.kind, e.paths.clone(), e.tracker()))
            .collect();
        let (a, moved) = (root.join("a"), root.join("x/moved"));
        let cookie = events[0].2;
        assert!(cookie.is_some());
        assert_eq!(
            events,
            [
                (
                    EventKind::Modify(ModifyKind::Name(RenameMode::From)),
                    vec![a.clone()],
                    cookie
                ),
                (
                    EventKind::Modify(ModifyKind::Name(RenameMode::To)),
                    vec![moved.clone()],
                    cookie
                ),
                (
                    EventKind::Modify(ModifyKind::Name(RenameMode::Both)),
                    vec![a.clone(), moved.clone()],
                    cookie
                ),
                (
                    EventKind::Modify(ModifyKind::Name(RenameMode::From)),
                    vec![a],
                    None
                ),
            ]
        );

        // Events below it come with the new paths.
        std::fs::create_dir(root.join("x/moved/b/c/new")).expect("create_dir");
        event_loop.handle_inotify();
        let created: Vec<PathBuf> = rx
            .try_iter()
            .map(|e| e.expect("event"))
            .filter(|e| e.kind == EventKind::Create(CreateKind::Folder))
            .flat_map(|e| e.paths)
            .collect();
        assert_eq!(created, [root.join("x/moved/b/c/new")]);
    }

    #[test]
    fn a_directory_moved_over_an_empty_one_replaces_its_watch() {
        let tmpdir = testdir();
        let root = tmpdir.path();
        let dirs: Vec<PathBuf> = ["", "b", "b/sub", "empty"]
            .iter()
            .map(|d| root.join(d))
            .collect();
        for dir in &dirs {
            std::fs::create_dir_all(dir).expect("create_dir_all");
        }
        let (mut event_loop, _rx) = event_loop(&Config::default());
        watch_each(&mut event_loop, &dirs);
        let b = descriptors(&event_loop)
            .into_iter()
            .find(|(p, _)| p == &root.join("b"))
            .map(|(_, w)| w);

        std::fs::rename(root.join("b"), root.join("empty")).expect("rename");
        event_loop.handle_inotify();

        assert_eq!(
            watched(&event_loop),
            [
                root.to_path_buf(),
                root.join("empty"),
                root.join("empty/sub")
            ]
        );
        assert_eq!(kernel_watch_masks(&event_loop).len(), 3);
        let empty = descriptors(&event_loop)
            .into_iter()
            .find(|(p, _)| p == &root.join("empty"))
            .map(|(_, w)| w);
        assert_eq!(empty, b);
    }

    #[test]
    fn a_watcher_reports_events_in_a_moved_directory_under_its_new_path() {
        let tmpdir = testdir();
        let root = tmpdir.path();
        std::fs::create_dir_all(root.join("a/b")).expect("create_dir_all");
        let (tx, rx) = mpsc::channel();
        let mut watcher = INotifyWatcher::new(tx, Config::default()).expect("watcher");
        watcher
            .update_paths(
                [root.to_path_buf(), root.join("a"), root.join("a/b")]
                    .into_iter()
                    .map(super::PathOp::watch_non_recursive)
                    .collect(),
            )
            .expect("update_paths");

        std::fs::rename(root.join("a"), root.join("z")).expect("rename");
        std::fs::create_dir(root.join("z/b/new")).expect("create_dir");
        watcher.update_paths(Vec::new()).expect("barrier");

        let created: Vec<PathBuf> = rx
            .try_iter()
            .filter_map(|e| e.ok())
            .filter(|e| e.kind == EventKind::Create(CreateKind::Folder))
            .flat_map(|e| e.paths)
            .collect();
        assert_eq!(created, [root.join("z/b/new")]);
    }

    #[test]
    fn deleting_ten_thousand_watched_directories_leaves_the_others_watched() {
        let tmpdir = testdir();
        let root = tmpdir.path();
        let mut dirs = vec![
            root.to_path_buf(),
            root.join("big"),
            root.join("big-c"),
            root.join("bigger"),
        ];
        for i in 0..100 {
            for j in 0..99 {
                dirs.push(root.join(format!("big/{i}/{j}")));
            }
            dirs.push(root.join(format!("big/{i}")));
        }
        for dir in &dirs {
            std::fs::create_dir_all(dir).expect("create_dir_all");
        }
        let (mut event_loop, _rx) = event_loop(&Config::default());
        watch_each(&mut event_loop, &dirs);
        assert_eq!(watched(&event_loop).len(), 10_004);
        assert_eq!(kernel_watch_masks(&event_loop).len(), 10_004);

        // The kernel queue holds 16384 events by default: drain it as the removal goes.
        for i in 0..100 {
            std::fs::remove_dir_all(root.join(format!("big/{i}"))).expect("remove_dir_all");
            event_loop.handle_inotify();
        }
        std::fs::remove_dir(root.join("big")).expect("remove_dir");
        event_loop.handle_inotify();

        assert_eq!(
            watched(&event_loop),
            [root.to_path_buf(), root.join("big-c"), root.join("bigger")]
        );
        assert_eq!(kernel_watch_masks(&event_loop).len(), 3);
    }

    #[test]
    fn update_paths_applies_the_batch_and_stops_at_the_first_failure() {
        let tmpdir = testdir();
        let a = tmpdir.path().join("a");
        let missing = tmpdir.path().join("missing");
        let b = tmpdir.path().join("b");
        let c = tmpdir.path().join("c");
        for dir in [&a, &b, &c] {
            std::fs::create_dir(dir).expect("create_dir");
        }
        let (mut watcher, mut rx) = watcher();
        watcher
            .watcher
            .update_paths(Vec::new())
            .expect("empty batch");

        let err = watcher
            .watcher
            .update_paths(vec![
                super::PathOp::watch_non_recursive(&a),
                super::PathOp::watch_non_recursive(&missing),
                super::PathOp::watch_non_recursive(&b),
                super::PathOp::watch_non_recursive(&c),
            ])
            .expect_err("a missing path fails");
        assert!(
            matches!(err.source.kind, ErrorKind::PathNotFound),
            "{err:?}"
        );
        assert_eq!(err.source.paths, std::slice::from_ref(&missing));
        assert_eq!(
            err.origin.as_ref().map(|op| op.as_path()),
            Some(missing.as_path())
        );
        let remaining: Vec<_> = err.remaining.iter().map(|op| op.as_path()).collect();
        assert_eq!(remaining, [b.as_path(), c.as_path()]);

        // The operations before the failure were applied; the rest can be sent again.
        watcher
            .watcher
            .update_paths(err.remaining)
            .expect("the remaining operations");
        for dir in [&a, &b, &c] {
            std::fs::create_dir(dir.join("new")).expect("create_dir");
        }
        rx.wait_ordered_exact([
            expected(a.join("new")).create_folder(),
            expected(b.join("new")).create_folder(),
            expected(c.join("new")).create_folder(),
        ])
        .ensure_no_tail();

        watcher
            .watcher
            .update_paths(vec![super::PathOp::unwatch(&b)])
            .expect("unwatch");
        std::fs::create_dir(b.join("newer")).expect("create_dir");
        rx.ensure_empty();
    }

    #[test]
    fn default_event_kinds_keep_the_watch_mask_of_notify_8() {
        use inotify::WatchMask;
        let stock = WatchMask::ATTRIB
            | WatchMask::CREATE
            | WatchMask::OPEN
            | WatchMask::DELETE
            | WatchMask::CLOSE_WRITE
            | WatchMask::MODIFY
            | WatchMask::MOVED_FROM
            | WatchMask::MOVED_TO;
        let kinds = Config::default().event_kinds();
        assert_eq!(super::event_kinds_to_watch_mask(kinds, false), stock);
        assert_eq!(super::event_kinds_to_watch_mask(kinds, true), stock);
    }

    #[test]
    fn event_kinds_exclude_open_in_the_kernel() {
        use crate::EventKindMask;
        use inotify::WatchMask;
        let tmpdir = testdir();
        let dir = tmpdir.path().join("dir");
        std::fs::create_dir(&dir).expect("create_dir");
        let config =
            Config::default().with_event_kinds(EventKindMask::CORE | EventKindMask::ACCESS_CLOSE);
        let (mut event_loop, _rx) = event_loop(&config);
        watch_each(&mut event_loop, &[tmpdir.path().to_path_buf(), dir]);
        let wanted = WatchMask::ATTRIB
            | WatchMask::CREATE
            | WatchMask::DELETE
            | WatchMask::CLOSE_WRITE
            | WatchMask::MODIFY
            | WatchMask::MOVED_FROM
            | WatchMask::MOVED_TO
            | WatchMask::DELETE_SELF
            | WatchMask::MOVE_SELF;
        assert_eq!(
            kernel_watch_masks(&event_loop),
            [wanted.bits(), wanted.bits()]
        );
    }

    #[test]
    fn opening_a_file_is_no_event_when_event_kinds_exclude_open() {
        use crate::EventKindMask;
        let tmpdir = testdir();
        let path = tmpdir.path().join("entry");
        std::fs::write(&path, b"123").expect("write");
        let (mut watcher, mut rx) = channel_with_config::<INotifyWatcher>(
            ChannelConfig::default().with_watcher_config(
                Config::default()
                    .with_event_kinds(EventKindMask::CORE | EventKindMask::ACCESS_CLOSE),
            ),
        );
        watcher.watch_nonrecursively(&tmpdir);

        let mut contents = String::new();
        std::io::Read::read_to_string(
            &mut std::fs::File::open(&path).expect("open"),
            &mut contents,
        )
        .expect("read");
        std::fs::read_dir(tmpdir.path())
            .expect("read_dir")
            .for_each(drop);
        rx.ensure_empty();

        std::fs::write(&path, b"321").expect("write");
        rx.wait_ordered_exact([
            expected(&path).modify_data_any().multiple(),
            expected(&path).access_close_write(),
        ])
        .ensure_no_tail();
    }

    #[test]
    fn event_kinds_filter_the_self_events() {
        use crate::EventKindMask;
        let tmpdir = testdir();
        let dir = tmpdir.path().join("dir");
        std::fs::create_dir(&dir).expect("create_dir");
        let (mut watcher, mut rx) = channel_with_config::<INotifyWatcher>(
            ChannelConfig::default()
                .with_watcher_config(Config::default().with_event_kinds(EventKindMask::CREATE)),
        );
        watcher.watch_nonrecursively(&dir);
        std::fs::rename(&dir, tmpdir.path().join("moved")).expect("rename");
        std::fs::create_dir(tmpdir.path().join("moved/new")).expect("create_dir");
        rx.wait_ordered_exact([expected(tmpdir.path().join("dir/new")).create_folder()])
            .ensure_no_tail();
    }

    #[test]
    fn a_failed_poll_is_reported_and_ends_the_event_loop() {
        use std::os::unix::io::AsRawFd;
        let (event_loop, rx) = event_loop(&Config::default());
        let channel = event_loop.event_loop_tx.clone();
        let waker = event_loop.event_loop_waker.clone();
        // Put /dev/null in place of the epoll instance: epoll_wait fails with EINVAL.
        let null = std::fs::File::open("/dev/null").expect("/dev/null");
        let epoll = event_loop.poll.as_raw_fd();
        assert_eq!(unsafe { libc::dup2(null.as_raw_fd(), epoll) }, epoll);
        event_loop.run();

        let error = rx
            .recv_timeout(Duration::from_secs(5))
            .expect("the poll error")
            .expect_err("an error");
        assert!(matches!(error.kind, ErrorKind::Io(_)), "{error:?}");
        // The loop ended, and dropped the handler with it.
        assert!(matches!(
            rx.recv_timeout(Duration::from_secs(5)),
            Err(mpsc::RecvTimeoutError::Disconnected)
        ));

        let mut watcher = INotifyWatcher { channel, waker };
        let tmpdir = testdir();
        assert!(watcher
            .watch(tmpdir.path(), RecursiveMode::NonRecursive)
            .is_err());
        assert!(watcher.unwatch(tmpdir.path()).is_err());
        let err = watcher
            .update_paths(vec![super::PathOp::watch_non_recursive(tmpdir.path())])
            .expect_err("no event loop");
        assert_eq!(err.remaining.len(), 1);
        drop(watcher);
    }

    #[test]
    fn inotify_watcher_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<INotifyWatcher>();
    }

    #[test]
    fn native_error_type_on_missing_path() {
        let mut watcher = INotifyWatcher::new(|_| {}, Config::default()).unwrap();

        let result = watcher.watch(
            &PathBuf::from("/some/non/existant/path"),
            RecursiveMode::NonRecursive,
        );

        assert!(matches!(
            result,
            Err(Error {
                paths: _,
                kind: ErrorKind::PathNotFound
            })
        ))
    }

    /// Runs manually.
    ///
    /// * Save actual value of the limit: `MAX_USER_WATCHES=$(sysctl -n fs.inotify.max_user_watches)`
    /// * Run the test.
    /// * Set the limit to 0: `sudo sysctl fs.inotify.max_user_watches=0` while test is running
    /// * Wait for the test to complete
    /// * Restore the limit `sudo sysctl fs.inotify.max_user_watches=$MAX_USER_WATCHES`
    #[test]
    #[ignore = "requires changing sysctl fs.inotify.max_user_watches while test is running"]
    fn recursive_watch_calls_handler_if_creating_a_file_raises_max_files_watch() {
        use std::time::Duration;

        let tmpdir = tempfile::tempdir().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let (proc_changed_tx, proc_changed_rx) = std::sync::mpsc::channel();
        let proc_path = Path::new("/proc/sys/fs/inotify/max_user_watches");
        let mut watcher = INotifyWatcher::new(
            move |result: Result<Event>| match result {
                Ok(event) => {
                    if event.paths.first().is_some_and(|path| path == proc_path) {
                        proc_changed_tx.send(()).unwrap();
                    }
                }
                Err(e) => tx.send(e).unwrap(),
            },
            Config::default(),
        )
        .unwrap();

        watcher
            .watch(tmpdir.path(), RecursiveMode::Recursive)
            .unwrap();
        watcher
            .watch(proc_path, RecursiveMode::NonRecursive)
            .unwrap();

        // give the time to set the limit
        proc_changed_rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap();

        let child_dir = tmpdir.path().join("child");
        std::fs::create_dir(child_dir).unwrap();

        let result = rx.recv_timeout(Duration::from_millis(500));

        assert!(
            matches!(
                &result,
                Ok(Error {
                    kind: ErrorKind::MaxFilesWatch,
                    paths: _,
                })
            ),
            "expected {:?}, found: {:#?}",
            ErrorKind::MaxFilesWatch,
            result
        );
    }

    /// https://github.com/notify-rs/notify/issues/678
    #[test]
    fn race_condition_on_unwatch_and_pending_events_with_deleted_descriptor() {
        let tmpdir = tempfile::tempdir().expect("tmpdir");
        let (tx, rx) = mpsc::channel();
        let mut inotify = INotifyWatcher::new(
            move |e: Result<Event>| {
                let e = match e {
                    Ok(e) if e.paths.is_empty() => e,
                    Ok(_) | Err(_) => return,
                };
                let _ = tx.send(e);
            },
            Config::default(),
        )
        .expect("inotify creation");

        let dir_path = tmpdir.path();
        let file_path = dir_path.join("foo");
        std::fs::File::create(&file_path).unwrap();

        let stop = Arc::new(AtomicBool::new(false));

        let handles: Vec<_> = (0..available_parallelism().unwrap().get().max(4))
            .map(|_| {
                let file_path = file_path.clone();
                let stop = stop.clone();
                thread::spawn(move || {
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let _ = std::fs::File::open(&file_path).unwrap();
                    }
                })
            })
            .collect();

        let non_recursive = RecursiveMode::NonRecursive;
        for _ in 0..(handles.len() * 4) {
            inotify.watch(dir_path, non_recursive).unwrap();
            inotify.unwatch(dir_path).unwrap();
        }

        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        handles
            .into_iter()
            .for_each(|handle| handle.join().ok().unwrap_or_default());

        drop(inotify);

        let events: Vec<_> = rx.into_iter().map(|e| format!("{e:?}")).collect();

        const LOG_LEN: usize = 10;
        let events_len = events.len();
        assert!(
            events.is_empty(),
            "expected no events without path, but got {events_len}. first 10: {:#?}",
            &events[..LOG_LEN.min(events_len)]
        );
    }

    /// https://github.com/notify-rs/notify/issues/709
    #[test]
    fn remove_a_subdir_in_a_recursively_watched_parent() {
        let tmpdir = tempfile::tempdir().expect("tmpdir");
        let subdirectory_path_1 = tmpdir.path().join("subdir");
        let subdirectory_path_2 = subdirectory_path_1.join("nested");
        std::fs::create_dir(&subdirectory_path_1).expect("unable to create a subdir");
        std::fs::create_dir(&subdirectory_path_2).expect("unable to create a nested dir");

        let mut watcher =
            INotifyWatcher::new(|_| (), Config::default()).expect("unable to create watcher");
        watcher
            .watch(tmpdir.path(), RecursiveMode::Recursive)
            .expect("unable to watch");
        std::fs::remove_dir_all(&subdirectory_path_1).expect("unable to remove a subdir");
        let unwatch_result = watcher.unwatch(tmpdir.path());

        assert!(
            matches!(unwatch_result, Ok(())),
            "error: {unwatch_result:#?}"
        );
    }

    #[test]
    fn create_file() {
        let tmpdir = testdir();
        let (mut watcher, mut rx) = watcher();
        watcher.watch_recursively(&tmpdir);

        let path = tmpdir.path().join("entry");
        std::fs::File::create_new(&path).expect("create");

        rx.wait_ordered_exact([
            expected(&path).create_file(),
            expected(&path).access_open_any(),
            expected(&path).access_close_write(),
        ]);
    }

    #[test]
    fn write_file() {
        let tmpdir = testdir();
        let (mut watcher, mut rx) = watcher();

        let path = tmpdir.path().join("entry");
        std::fs::File::create_new(&path).expect("create");

        watcher.watch_recursively(&tmpdir);
        std::fs::write(&path, b"123").expect("write");

        rx.wait_ordered_exact([
            expected(&path).access_open_any(),
            expected(&path).modify_data_any().multiple(),
            expected(&path).access_close_write(),
        ])
        .ensure_no_tail();
    }

    #[test]
    fn chmod_file() {
        let tmpdir = testdir();
        let (mut watcher, mut rx) = watcher();

        let path = tmpdir.path().join("entry");
        let file = std::fs::File::create_new(&path).expect("create");
        let mut permissions = file.metadata().expect("metadata").permissions();
        permissions.set_readonly(true);

        watcher.watch_recursively(&tmpdir);
        file.set_permissions(permissions).expect("set_permissions");

        rx.wait_ordered_exact([expected(&path).modify_meta_any()]);
    }

    #[test]
    fn rename_file() {
        let tmpdir = testdir();
        let (mut watcher, mut rx) = watcher();

        let path = tmpdir.path().join("entry");
        std::fs::File::create_new(&path).expect("create");

        watcher.watch_recursively(&tmpdir);
        let new_path = tmpdir.path().join("renamed");

        std::fs::rename(&path, &new_path).expect("rename");

        rx.wait_ordered_exact([
            expected(&path).rename_from(),
            expected(&new_path).rename_to(),
            expected([path, new_path]).rename_both(),
        ])
        .ensure_trackers_len(1)
        .ensure_no_tail();
    }

    #[test]
    fn delete_file() {
        let tmpdir = testdir();
        let (mut watcher, mut rx) = watcher();
        let file = tmpdir.path().join("file");
        std::fs::write(&file, "").expect("write");

        watcher.watch_nonrecursively(&tmpdir);

        std::fs::remove_file(&file).expect("remove");

        rx.wait_ordered_exact([expected(&file).remove_file()]);
    }

    #[test]
    fn delete_self_file() {
        let tmpdir = testdir();
        let (mut watcher, mut rx) = watcher();
        let file = tmpdir.path().join("file");
        std::fs::write(&file, "").expect("write");

        watcher.watch_nonrecursively(&file);

        std::fs::remove_file(&file).expect("remove");

        rx.wait_ordered_exact([
            expected(&file).modify_meta_any(),
            expected(&file).remove_file(),
        ]);
    }

    #[test]
    fn create_write_overwrite() {
        let tmpdir = testdir();
        let (mut watcher, mut rx) = watcher();
        let overwritten_file = tmpdir.path().join("overwritten_file");
        let overwriting_file = tmpdir.path().join("overwriting_file");
        std::fs::write(&overwritten_file, "123").expect("write1");

        watcher.watch_nonrecursively(&tmpdir);

        std::fs::File::create(&overwriting_file).expect("create");
        std::fs::write(&overwriting_file, "321").expect("write2");
        std::fs::rename(&overwriting_file, &overwritten_file).expect("rename");

        rx.wait_ordered_exact([
            expected(&overwriting_file).create_file(),
            expected(&overwriting_file).access_open_any(),
            expected(&overwriting_file).access_close_write(),
            expected(&overwriting_file).access_open_any(),
            expected(&overwriting_file).modify_data_any().multiple(),
            expected(&overwriting_file).access_close_write(),
            expected(&overwriting_file).rename_from(),
            expected(&overwritten_file).rename_to(),
            expected([overwriting_file, overwritten_file]).rename_both(),
        ])
        .ensure_no_tail()
        .ensure_trackers_len(1);
    }

    #[test]
    fn create_dir() {
        let tmpdir = testdir();
        let (mut watcher, mut rx) = watcher();
        watcher.watch_recursively(&tmpdir);

        let path = tmpdir.path().join("entry");
        std::fs::create_dir(&path).expect("create");

        rx.wait_ordered_exact([expected(&path).create_folder()]);
    }

    #[test]
    fn chmod_dir() {
        let tmpdir = testdir();
        let (mut watcher, mut rx) = watcher();

        let path = tmpdir.path().join("entry");
        std::fs::create_dir(&path).expect("create_dir");
        let mut permissions = std::fs::metadata(&path).expect("metadata").permissions();
        permissions.set_readonly(true);

        watcher.watch_recursively(&tmpdir);
        std::fs::set_permissions(&path, permissions).expect("set_permissions");

        rx.wait_ordered_exact([
            expected(&path).access_open_any().optional(),
            expected(&path).modify_meta_any(),
            expected(&path).modify_meta_any(),
        ])
        .ensure_no_tail();
    }

    #[test]
    fn rename_dir() {
        let tmpdir = testdir();
        let (mut watcher, mut rx) = watcher();

        let path = tmpdir.path().join("entry");
        let new_path = tmpdir.path().join("new_path");
        std::fs::create_dir(&path).expect("create_dir");

        watcher.watch_recursively(&tmpdir);

        std::fs::rename(&path, &new_path).expect("rename");

        rx.wait_ordered_exact([
            expected(&path).access_open_any().optional(),
            expected(&path).rename_from(),
            expected(&new_path).rename_to(),
            expected([path, new_path]).rename_both(),
        ])
        .ensure_trackers_len(1);
    }

    #[test]
    fn delete_dir() {
        let tmpdir = testdir();
        let (mut watcher, mut rx) = watcher();

        let path = tmpdir.path().join("entry");
        std::fs::create_dir(&path).expect("create_dir");

        watcher.watch_recursively(&tmpdir);
        std::fs::remove_dir(&path).expect("remove");

        rx.wait_ordered_exact([
            expected(&path).access_open_any().optional(),
            expected(&path).remove_folder(),
        ])
        .ensure_no_tail();
    }

    #[test]
    fn rename_dir_twice() {
        let tmpdir = testdir();
        let (mut watcher, mut rx) = watcher();

        let path = tmpdir.path().join("entry");
        let new_path = tmpdir.path().join("new_path");
        let new_path2 = tmpdir.path().join("new_path2");
        std::fs::create_dir(&path).expect("create_dir");

        watcher.watch_recursively(&tmpdir);
        std::fs::rename(&path, &new_path).expect("rename");
        std::fs::rename(&new_path, &new_path2).expect("rename2");

        rx.wait_ordered_exact([
            expected(&path).access_open_any().optional(),
            expected(&path).rename_from(),
            expected(&new_path).rename_to(),
            expected([&path, &new_path]).rename_both(),
            // The recursive watch walks the new path (opening it) when the
            // second rename has not happened yet; the moved directory's own
            // watch, which it keeps, reports that open too.
            expected(&new_path).access_open_any().optional().multiple(),
            expected(&new_path).rename_from(),
            expected(&new_path2).rename_to(),
            expected([&new_path, &new_path2]).rename_both(),
        ])
        .ensure_trackers_len(2);
    }

    #[test]
    fn move_out_of_watched_dir() {
        let tmpdir = testdir();
        let subdir = tmpdir.path().join("subdir");
        let (mut watcher, mut rx) = watcher();

        let path = subdir.join("entry");
        std::fs::create_dir_all(&subdir).expect("create_dir_all");
        std::fs::File::create_new(&path).expect("create");

        watcher.watch_recursively(&subdir);
        let new_path = tmpdir.path().join("entry");

        std::fs::rename(&path, &new_path).expect("rename");

        let event = rx.recv();
        let tracker = event.attrs.tracker();
        assert_eq!(event, expected(path).rename_from());
        assert!(tracker.is_some(), "tracker is none: [event:#?]");
        rx.ensure_empty();
    }

    #[test]
    fn create_write_write_rename_write_remove() {
        let tmpdir = testdir();
        let (mut watcher, mut rx) = watcher();

        let file1 = tmpdir.path().join("entry");
        let file2 = tmpdir.path().join("entry2");
        std::fs::File::create_new(&file2).expect("create file2");
        let new_path = tmpdir.path().join("renamed");

        watcher.watch_recursively(&tmpdir);
        std::fs::write(&file1, "123").expect("write 1");
        std::fs::write(&file2, "321").expect("write 2");
        std::fs::rename(&file1, &new_path).expect("rename");
        std::fs::write(&new_path, b"1").expect("write 3");
        std::fs::remove_file(&new_path).expect("remove");

        rx.wait_ordered_exact([
            expected(&file1).create_file(),
            expected(&file1).access_open_any(),
            expected(&file1).modify_data_any().multiple(),
            expected(&file1).access_close_write(),
            expected(&file2).access_open_any(),
            expected(&file2).modify_data_any().multiple(),
            expected(&file2).access_close_write(),
            expected(&file1).access_open_any().optional(),
            expected(&file1).rename_from(),
            expected(&new_path).rename_to(),
            expected([&file1, &new_path]).rename_both(),
            expected(&new_path).access_open_any(),
            expected(&new_path).modify_data_any().multiple(),
            expected(&new_path).access_close_write(),
            expected(&new_path).remove_file(),
        ]);
    }

    #[test]
    fn rename_twice() {
        let tmpdir = testdir();
        let (mut watcher, mut rx) = watcher();

        let path = tmpdir.path().join("entry");
        std::fs::File::create_new(&path).expect("create");

        watcher.watch_recursively(&tmpdir);
        let new_path1 = tmpdir.path().join("renamed1");
        let new_path2 = tmpdir.path().join("renamed2");

        std::fs::rename(&path, &new_path1).expect("rename1");
        std::fs::rename(&new_path1, &new_path2).expect("rename2");

        rx.wait_ordered_exact([
            expected(&path).access_open_any().optional(),
            expected(&path).rename_from(),
            expected(&new_path1).rename_to(),
            expected([&path, &new_path1]).rename_both(),
            expected(&new_path1).access_open_any().optional(),
            expected(&new_path1).rename_from(),
            expected(&new_path2).rename_to(),
            expected([&new_path1, &new_path2]).rename_both(),
        ])
        .ensure_no_tail()
        .ensure_trackers_len(2);
    }

    #[test]
    fn set_file_mtime() {
        let tmpdir = testdir();
        let (mut watcher, mut rx) = watcher();

        let path = tmpdir.path().join("entry");
        let file = std::fs::File::create_new(&path).expect("create");

        watcher.watch_recursively(&tmpdir);

        file.set_modified(
            std::time::SystemTime::now()
                .checked_sub(Duration::from_secs(60 * 60))
                .expect("time"),
        )
        .expect("set_time");

        assert_eq!(rx.recv(), expected(&path).modify_data_any());
        rx.ensure_empty();
    }

    #[test]
    fn write_file_non_recursive_watch() {
        let tmpdir = testdir();
        let (mut watcher, mut rx) = watcher();

        let path = tmpdir.path().join("entry");
        std::fs::File::create_new(&path).expect("create");

        watcher.watch_nonrecursively(&path);

        std::fs::write(&path, b"123").expect("write");

        rx.wait_ordered_exact([
            expected(&path).access_open_any(),
            expected(&path).modify_data_any().multiple(),
            expected(&path).access_close_write(),
        ])
        .ensure_no_tail();
    }

    #[test]
    fn watch_recursively_then_unwatch_child_stops_events_from_child() {
        let tmpdir = testdir();
        let (mut watcher, mut rx) = watcher();

        let subdir = tmpdir.path().join("subdir");
        let file = subdir.join("file");
        std::fs::create_dir(&subdir).expect("create");

        watcher.watch_recursively(&tmpdir);

        std::fs::File::create(&file).expect("create");

        rx.wait_ordered_exact([
            expected(&subdir).access_open_any().optional(),
            expected(&file).create_file(),
            expected(&file).access_open_any(),
            expected(&file).access_close_write(),
        ])
        .ensure_no_tail();

        watcher.watcher.unwatch(&subdir).expect("unwatch");

        std::fs::write(&file, b"123").expect("write");

        std::fs::remove_dir_all(&subdir).expect("remove_dir_all");

        rx.wait_ordered_exact([
            expected(&subdir).access_open_any().optional(),
            expected(&subdir).remove_folder(),
        ])
        .ensure_no_tail();
    }

    #[test]
    fn write_to_a_hardlink_pointed_to_the_watched_file_triggers_an_event() {
        let tmpdir = testdir();
        let (mut watcher, mut rx) = watcher();

        let subdir = tmpdir.path().join("subdir");
        let file = subdir.join("file");
        let hardlink = tmpdir.path().join("hardlink");

        std::fs::create_dir(&subdir).expect("create");
        std::fs::write(&file, "").expect("file");
        std::fs::hard_link(&file, &hardlink).expect("hardlink");

        watcher.watch_nonrecursively(&file);

        std::fs::write(&hardlink, "123123").expect("write to the hard link");

        rx.wait_ordered_exact([
            expected(&file).access_open_any(),
            expected(&file).modify_data_any().multiple(),
            expected(&file).access_close_write(),
        ]);
    }

    #[test]
    fn write_to_a_hardlink_pointed_to_the_file_in_the_watched_dir_doesnt_trigger_an_event() {
        let tmpdir = testdir();
        let (mut watcher, mut rx) = watcher();

        let subdir = tmpdir.path().join("subdir");
        let file = subdir.join("file");
        let hardlink = tmpdir.path().join("hardlink");

        std::fs::create_dir(&subdir).expect("create");
        std::fs::write(&file, "").expect("file");
        std::fs::hard_link(&file, &hardlink).expect("hardlink");

        watcher.watch_nonrecursively(&subdir);

        std::fs::write(&hardlink, "123123").expect("write to the hard link");

        let events = rx.iter().collect::<Vec<_>>();
        assert!(events.is_empty(), "unexpected events: {events:#?}");
    }

    #[test]
    #[ignore = "see https://github.com/notify-rs/notify/issues/727"]
    fn recursive_creation() {
        let tmpdir = testdir();
        let nested1 = tmpdir.path().join("1");
        let nested2 = tmpdir.path().join("1/2");
        let nested3 = tmpdir.path().join("1/2/3");
        let nested4 = tmpdir.path().join("1/2/3/4");
        let nested5 = tmpdir.path().join("1/2/3/4/5");
        let nested6 = tmpdir.path().join("1/2/3/4/5/6");
        let nested7 = tmpdir.path().join("1/2/3/4/5/6/7");
        let nested8 = tmpdir.path().join("1/2/3/4/5/6/7/8");
        let nested9 = tmpdir.path().join("1/2/3/4/5/6/7/8/9");

        let (mut watcher, mut rx) = watcher();

        watcher.watch_recursively(&tmpdir);

        std::fs::create_dir_all(&nested9).expect("create_dir_all");
        rx.wait_ordered([
            expected(&nested1).create_folder(),
            expected(&nested2).create_folder(),
            expected(&nested3).create_folder(),
            expected(&nested4).create_folder(),
            expected(&nested5).create_folder(),
            expected(&nested6).create_folder(),
            expected(&nested7).create_folder(),
            expected(&nested8).create_folder(),
            expected(&nested9).create_folder(),
        ]);
    }
}
