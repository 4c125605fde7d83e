//! A model-level property test of the optimizer and the classifier
//! (issue 6): pure, in memory, no disk and no processes.
//!
//! proptest builds a random source tree (tricky byte names, files, dirs,
//! symlinks) and a random sequence of operations on it: create, write,
//! same-size rewrite, a file left open for writing and closed later,
//! rename of files and dirs (inside, out of, into and over), delete (`rm
//! -rf` for dirs), `mkdir -p` with contents, symlinks, chmod, closing the
//! aggregation window and letting the worker drain the queue. Each
//! operation yields what the watcher would hand the main loop, by
//! `syncd::watch`'s rules: a write is `File` (and marks the file open for
//! writing until its close, rename or removal, so the window holds it
//! back), a new dir `Tree`, a removal or move-from `Gone`, a move-to `Tree`
//! or `File` by what the path is when the event is interpreted (sometimes
//! only later, as when the main loop lags), chmod on a dir `Attrs` (on the
//! root always). Files made inside a brand-new directory may or may not be
//! reported, as with real inotify.
//!
//! A model of rsync's file-level semantics (`-R --files-from
//! --delete-missing-args --force`, with `-r --delete` for the main run and
//! without for the attrs run; implied parent dirs created with the source's
//! mode; a listed path whose source parent is not a directory fails the
//! run, as rsync's lstat would) then syncs three destinations, each a copy
//! of the initial source:
//!
//! - the *pipeline*: windows through the real `Aggregator` (with an
//!   early-flush cap), changesets through the real record codec, and
//!   workers that plan the merged queue against the model with
//!   `deliver::plan` (the step the worker and the dry run use) and run the
//!   two runs, at random moments between operations;
//! - the *optimized* set: every raw entry optimized and classified once at
//!   the end;
//! - the *raw* baseline: every raw entry classified and synced on its own.
//!
//! All three must equal the final source tree (names, types, contents,
//! modes, link targets).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::sample::{select, Index};

use syncd::aggregate::Aggregator;
use syncd::changeset::{escape, is_below, join, Entry, Kind};
use syncd::deliver::classify::{classify_with, Node as Stat};
use syncd::deliver::plan::plan;
use syncd::deliver::rsync::Run;
use syncd::optimize::{optimize, DEFAULT_FULL_SYNC_THRESHOLD};
use syncd::store::record;

/// A file name (one path component).
type Name = &'static [u8];

/// Few names, so operations collide (renames over, re-creations); several
/// sort between `a` and `a/…` in byte order, and some are hostile to shells
/// and to rsync's list parsing.
const NAMES: &[Name] = &[
    b"a",
    b"b",
    b"c",
    b"a b",
    b"a.b",
    b"a\x01",
    b"a-",
    b"-x",
    b"#c",
    b";d",
    b"nl\n",
    b"\xff\xfe",
    b"*?[",
    b"...",
    b"a\\b",
];
const LINK_TARGETS: &[&[u8]] = &[b"a", b"../../etc", b"/abs/target", b"d/\xff\n", b"."];
/// The window's delay and the hold of open files: longer than any case, as
/// the model's time stands still.
const HOUR: Duration = Duration::from_secs(3600);
const DIR_MODES: &[u32] = &[0o755, 0o700, 0o750, 0o555];
const FILE_MODES: &[u32] = &[0o644, 0o600, 0o755, 0o444];

#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Dir { mode: u32 },
    File { data: Vec<u8>, mode: u32 },
    Link { target: Vec<u8> },
}

/// A tree: root-relative path -> node. The root (`""`) is a directory.
#[derive(Clone, PartialEq, Eq)]
struct Tree(BTreeMap<Vec<u8>, Node>);

fn at_or_below(q: &[u8], p: &[u8]) -> bool {
    q == p || is_below(q, p)
}

/// The proper ancestors of `p` below the root, outermost first.
fn ancestors(p: &[u8]) -> Vec<&[u8]> {
    p.iter()
        .enumerate()
        .filter(|(_, &b)| b == b'/')
        .map(|(i, _)| &p[..i])
        .collect()
}

impl Tree {
    fn new() -> Tree {
        Tree(BTreeMap::from([(Vec::new(), Node::Dir { mode: 0o755 })]))
    }

    fn get(&self, p: &[u8]) -> Option<&Node> {
        self.0.get(p)
    }

    fn is_dir(&self, p: &[u8]) -> bool {
        matches!(self.get(p), Some(Node::Dir { .. }))
    }

    /// What `lstat` says, for `classify_with`. A path through a non-dir is
    /// missing here; `classify` never asks for one (it stops at the
    /// non-dir), and the rsync model refuses it.
    fn stat(&self, p: &[u8]) -> Stat {
        match self.get(p) {
            None => Stat::Missing,
            Some(Node::Dir { .. }) => Stat::Dir,
            Some(_) => Stat::Other,
        }
    }

    /// `p` and everything below it, sorted.
    fn subtree(&self, p: &[u8]) -> Vec<(Vec<u8>, Node)> {
        self.0
            .iter()
            .filter(|(q, _)| at_or_below(q, p))
            .map(|(q, n)| (q.clone(), n.clone()))
            .collect()
    }

    fn remove_subtree(&mut self, p: &[u8]) -> Vec<(Vec<u8>, Node)> {
        let gone = self.subtree(p);
        self.0.retain(|q, _| !at_or_below(q, p));
        gone
    }

    fn paths(&self, keep: impl Fn(&[u8], &Node) -> bool) -> Vec<Vec<u8>> {
        self.0
            .iter()
            .filter(|(p, n)| keep(p, n))
            .map(|(p, _)| p.clone())
            .collect()
    }

    fn dirs(&self) -> Vec<Vec<u8>> {
        self.paths(|_, n| matches!(n, Node::Dir { .. }))
    }

    fn files(&self) -> Vec<Vec<u8>> {
        self.paths(|_, n| matches!(n, Node::File { .. }))
    }

    /// Every node but the root.
    fn nodes(&self) -> Vec<Vec<u8>> {
        self.paths(|p, _| !p.is_empty())
    }

    /// Whether a node of kind `incoming_dir` may be renamed onto `to`
    /// (rename(2): a dir only onto nothing or an empty dir, a non-dir only
    /// onto nothing or a non-dir).
    fn may_replace(&self, to: &[u8], incoming_dir: bool) -> bool {
        match self.get(to) {
            None => true,
            Some(Node::Dir { .. }) => incoming_dir && self.subtree(to).len() == 1,
            Some(_) => !incoming_dir,
        }
    }

    /// Lines that differ from `other`, for failure messages.
    fn diff(&self, other: &Tree) -> String {
        let mut out = String::new();
        for (p, n) in &self.0 {
            if other.get(p) != Some(n) {
                let theirs = other.get(p);
                out += &format!("  {:?}: want {n:?}, got {theirs:?}\n", escape(p));
            }
        }
        for (p, n) in &other.0 {
            if self.get(p).is_none() {
                out += &format!("  {:?}: want nothing, got {n:?}\n", escape(p));
            }
        }
        out
    }
}

impl std::fmt::Debug for Tree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(p, n)| (escape(p), n)))
            .finish()
    }
}

/// One rsync run over `list` as the daemon runs it: the main run
/// (`recursive`: `-r --delete`) or the attrs run (directories listed are
/// created or updated without descending). Returns rsync's complaint for a
/// path it could not even look at.
fn rsync_run(src: &Tree, dst: &mut Tree, list: &[&Entry], recursive: bool) -> Result<(), String> {
    for e in list {
        let p = e.path.as_slice();
        for a in ancestors(p) {
            match src.get(a) {
                Some(Node::Dir { mode }) => {
                    // -R sends the implied parent dirs: a missing one is
                    // created with the source's mode, a non-dir in its way
                    // is replaced; an existing dir is left alone.
                    if !dst.is_dir(a) {
                        dst.remove_subtree(a);
                        dst.0.insert(a.to_vec(), Node::Dir { mode: *mode });
                    }
                }
                Some(_) => return Err(format!("{}: Not a directory", escape(p))),
                None => return Err(format!("{}: No such file or directory", escape(p))),
            }
        }
        match src.get(p) {
            // --delete-missing-args (--force for a non-empty dir).
            None => {
                dst.remove_subtree(p);
            }
            Some(Node::Dir { mode }) if !recursive => {
                if !dst.is_dir(p) {
                    dst.remove_subtree(p);
                }
                dst.0.insert(p.to_vec(), Node::Dir { mode: *mode });
            }
            // -r --delete: the subtree becomes an exact copy.
            Some(Node::Dir { .. }) => {
                dst.remove_subtree(p);
                dst.0.extend(src.subtree(p));
            }
            Some(n) => {
                dst.remove_subtree(p);
                dst.0.insert(p.to_vec(), n.clone());
            }
        }
    }
    Ok(())
}

/// What a worker does with the entries it took from the queue: classify
/// against the source, re-optimize, and run the main and attrs runs.
fn sync(src: &Tree, dst: &mut Tree, entries: &[Entry], threshold: usize) -> Result<(), String> {
    let ops = entries.iter().cloned().map(syncd::changeset::Op::Entry);
    let plan = plan(ops, |p| src.stat(p), |_, _| false, threshold).map_err(|_| "root gone")?;
    for (run, list) in plan.runs() {
        rsync_run(src, dst, &list, run == Run::Trees)?;
    }
    Ok(())
}

/// A raw watcher event on a path, before it is interpreted.
#[derive(Debug, Clone, Copy)]
enum Ev {
    /// Create(File), also of a symlink.
    Created,
    /// Modify(Data).
    Modified,
    /// Access(Close(Write)).
    CloseWrite,
    /// Create(Folder).
    Mkdir,
    /// Remove, Name(From) (moved away or renamed).
    Removed,
    /// Name(To): decided by what the path is when interpreted.
    MovedTo,
    /// Modify(Metadata): decided the same way; on the root always attrs.
    Chmod,
}

/// A new file: created, written, closed.
const NEW_FILE: &[Ev] = &[Ev::Created, Ev::Modified, Ev::CloseWrite];
/// An existing file written and closed.
const REWRITTEN: &[Ev] = &[Ev::Modified, Ev::CloseWrite];

/// What the main loop does with an interpreted event.
enum Act {
    Writing(Vec<u8>),
    Closed(Vec<u8>),
    Entry(Entry),
}

/// `watch::interpret`'s rules, with the model standing in for `lstat`.
fn interpret(src: &Tree, p: &[u8], ev: Ev) -> Vec<Act> {
    let on_disk = |if_dir: Kind, otherwise: Kind| match src.get(p) {
        None => Kind::Gone,
        Some(Node::Dir { .. }) => if_dir,
        Some(_) => otherwise,
    };
    let mut out = Vec::new();
    match ev {
        // Only a regular file is being written (not a new symlink).
        Ev::Created if matches!(src.get(p), Some(Node::File { .. })) => {
            out.push(Act::Writing(p.to_vec()))
        }
        Ev::Modified => out.push(Act::Writing(p.to_vec())),
        Ev::CloseWrite | Ev::Removed | Ev::MovedTo => out.push(Act::Closed(p.to_vec())),
        _ => {}
    }
    let kind = match ev {
        Ev::Created | Ev::Modified | Ev::CloseWrite => Kind::File,
        Ev::Mkdir => Kind::Tree,
        Ev::Removed => Kind::Gone,
        Ev::MovedTo => on_disk(Kind::Tree, Kind::File),
        Ev::Chmod if p.is_empty() => Kind::Attrs,
        Ev::Chmod => on_disk(Kind::Attrs, Kind::File),
    };
    out.push(Act::Entry(Entry::new(kind, p)));
    out
}

#[derive(Debug, Clone)]
enum Shape {
    File(u8),
    /// A directory of files and subdirectories of files.
    Dir(Vec<(Name, Option<Vec<Name>>)>),
}

#[derive(Debug, Clone)]
enum Op {
    Create {
        dir: Index,
        name: Name,
        len: u8,
    },
    Write {
        file: Index,
        len: u8,
    },
    /// Same size, different bytes (the rewrite lsyncd misses).
    Rewrite {
        file: Index,
    },
    /// Create or write a file and keep it open for writing.
    Open {
        dir: Index,
        name: Name,
        len: u8,
    },
    /// Close one of the files left open.
    Close {
        file: Index,
    },
    Rename {
        from: Index,
        dir: Index,
        name: Name,
    },
    MoveOut {
        node: Index,
    },
    MoveIn {
        dir: Index,
        name: Name,
        shape: Shape,
    },
    Delete {
        node: Index,
    },
    MkdirP {
        dir: Index,
        chain: Vec<Name>,
        files: Vec<Name>,
        seen: Vec<bool>,
    },
    Symlink {
        dir: Index,
        name: Name,
        target: Name,
    },
    Chmod {
        node: Index,
        mode: Index,
    },
    /// The aggregation window closes and is committed.
    Window,
    /// The worker drains the queue now.
    Sync,
}

/// The pipeline under test and everything the watcher reported.
struct Sim {
    src: Tree,
    /// The pipeline's destination.
    dst: Tree,
    raw: Vec<Entry>,
    /// Events sent but not read yet by the main loop: after an operation
    /// marked "late" they wait, and are interpreted (in order, with `lstat`
    /// then) only after later operations changed the tree again.
    channel: Vec<(Vec<u8>, Ev)>,
    window: Aggregator,
    /// Committed changesets, as bytes, as in the store.
    queue: Vec<Vec<u8>>,
    /// Files some writer still has open, by their current path.
    open: Vec<Vec<u8>>,
    /// Files the watcher saw written and not yet closed (it cannot tell
    /// two writers of one file apart: the first close counts).
    writing: Vec<Vec<u8>>,
    threshold: usize,
    t0: Instant,
    counter: u8,
}

impl Sim {
    /// Sends an event down the channel; the main loop reads it, in order,
    /// at the next [`Sim::catch_up`].
    fn emit(&mut self, p: &[u8], ev: Ev) {
        self.channel.push((p.to_vec(), ev));
    }

    fn emit_all(&mut self, p: &[u8], evs: &[Ev]) {
        for ev in evs {
            self.emit(p, *ev);
        }
    }

    fn interpret(&mut self, p: &[u8], ev: Ev) {
        for act in interpret(&self.src, p, ev) {
            match act {
                Act::Writing(p) => {
                    self.window.writing(&p, self.t0);
                    self.writing.push(p);
                }
                Act::Closed(p) => {
                    self.window.closed(&p);
                    // A directory renamed or removed takes the files open
                    // below it along: nothing is open at their old paths.
                    self.writing.retain(|q| *q != p && !is_below(q, &p));
                }
                Act::Entry(e) => {
                    self.raw.push(e.clone());
                    self.window.add(e, self.t0);
                }
            }
        }
        if self.window.due(self.t0) {
            self.commit();
        }
    }

    /// Files left open at or below `from` now live below `to` (`None`:
    /// they left the tree, or were replaced).
    fn move_open(&mut self, from: &[u8], to: Option<&[u8]>) {
        let mut kept = Vec::new();
        for q in std::mem::take(&mut self.open) {
            if !at_or_below(&q, from) {
                kept.push(q);
            } else if let Some(to) = to {
                kept.push([to, &q[from.len()..]].concat());
            }
        }
        self.open = kept;
    }

    fn catch_up(&mut self) {
        for (p, ev) in std::mem::take(&mut self.channel) {
            self.interpret(&p, ev);
        }
    }

    fn commit(&mut self) {
        if self.window.is_empty() {
            return;
        }
        let cs = self.window.changeset(self.queue.len() as u64, self.t0);
        for e in &cs.entries {
            // Time stands still and the hold is an hour: a file being
            // written only ever goes out as part of a directory above it.
            let open = e.kind == Kind::File && self.writing.contains(&e.path);
            assert!(!open, "shipped {} while it is open", escape(&e.path));
        }
        self.queue.push(record::encode_changeset(&cs));
        self.window.clear(self.t0);
    }

    fn drain(&mut self) -> Result<(), String> {
        let mut raw = Vec::new();
        for bytes in self.queue.drain(..) {
            let cs = record::decode_changeset(&bytes).map_err(|e| e.to_string())?;
            raw.extend(cs.entries);
        }
        sync(&self.src, &mut self.dst, &raw, self.threshold)
    }

    fn content(&mut self, len: u8) -> Vec<u8> {
        self.counter = self.counter.wrapping_add(1);
        (0..len).map(|i| self.counter.wrapping_add(i)).collect()
    }

    /// Applies `op` to the source; unless `late`, the main loop then reads
    /// every event sent so far.
    fn apply(&mut self, op: &Op, late: bool) -> Result<(), String> {
        self.change(op)?;
        if !late {
            self.catch_up();
        }
        Ok(())
    }

    fn change(&mut self, op: &Op) -> Result<(), String> {
        match op {
            Op::Create { dir, name, len } => {
                let p = join(&index(&self.src.dirs(), dir), name);
                let evs = match self.write_file(&p, *len) {
                    Some(true) => NEW_FILE,
                    Some(false) => REWRITTEN,
                    None => return Ok(()),
                };
                self.emit_all(&p, evs);
            }
            Op::Open { dir, name, len } => {
                let p = join(&index(&self.src.dirs(), dir), name);
                let evs = match self.write_file(&p, *len) {
                    Some(true) => &[Ev::Created, Ev::Modified][..],
                    Some(false) => &[Ev::Modified][..],
                    None => return Ok(()),
                };
                self.emit_all(&p, evs);
                if !self.open.contains(&p) {
                    self.open.push(p);
                }
            }
            Op::Close { file } => {
                let Some(p) = pick(&self.open, file) else {
                    return Ok(());
                };
                self.open.retain(|q| *q != p);
                self.emit(&p, Ev::CloseWrite);
            }
            Op::Write { file, len } => {
                let Some(p) = pick(&self.src.files(), file) else {
                    return Ok(());
                };
                self.overwrite(&p, *len);
                self.emit_all(&p, REWRITTEN);
            }
            Op::Rewrite { file } => {
                let Some(p) = pick(&self.src.files(), file) else {
                    return Ok(());
                };
                if let Some(Node::File { data, .. }) = self.src.0.get_mut(&p) {
                    data.iter_mut().for_each(|b| *b = b.wrapping_add(1));
                }
                self.emit_all(&p, REWRITTEN);
            }
            Op::Rename { from, dir, name } => {
                let Some(f) = pick(&self.src.nodes(), from) else {
                    return Ok(());
                };
                let d = index(&self.src.dirs(), dir);
                let to = join(&d, name);
                let is_dir = self.src.is_dir(&f);
                if to == f || at_or_below(&d, &f) || !self.src.may_replace(&to, is_dir) {
                    return Ok(());
                }
                let moved = self.src.remove_subtree(&f);
                self.src.remove_subtree(&to);
                self.move_open(&to, None);
                self.move_open(&f, Some(&to));
                for (q, n) in moved {
                    self.src.0.insert([&to[..], &q[f.len()..]].concat(), n);
                }
                self.emit(&f, Ev::Removed);
                self.emit(&to, Ev::MovedTo);
            }
            Op::MoveOut { node } => {
                let Some(p) = pick(&self.src.nodes(), node) else {
                    return Ok(());
                };
                self.src.remove_subtree(&p);
                self.move_open(&p, None);
                self.emit(&p, Ev::Removed);
            }
            Op::MoveIn { dir, name, shape } => {
                let to = join(&index(&self.src.dirs(), dir), name);
                let is_dir = matches!(shape, Shape::Dir(_));
                if !self.src.may_replace(&to, is_dir) {
                    return Ok(());
                }
                self.src.remove_subtree(&to);
                self.move_open(&to, None);
                self.build(&to, shape);
                self.emit(&to, Ev::MovedTo);
            }
            Op::Delete { node } => {
                let Some(p) = pick(&self.src.nodes(), node) else {
                    return Ok(());
                };
                // rm -rf: children before their parent.
                let mut gone: Vec<Vec<u8>> = self
                    .src
                    .remove_subtree(&p)
                    .into_iter()
                    .map(|(q, _)| q)
                    .collect();
                self.move_open(&p, None);
                gone.sort_by_key(|q| std::cmp::Reverse(q.iter().filter(|&&b| b == b'/').count()));
                for q in gone {
                    self.emit(&q, Ev::Removed);
                }
            }
            Op::MkdirP {
                dir,
                chain,
                files,
                seen,
            } => self.mkdir_p(dir, chain, files, seen),
            Op::Symlink { dir, name, target } => {
                let p = join(&index(&self.src.dirs(), dir), name);
                if self.src.get(&p).is_some() {
                    return Ok(());
                }
                let target = target.to_vec();
                self.src.0.insert(p.clone(), Node::Link { target });
                self.emit(&p, Ev::Created);
            }
            Op::Chmod { node, mode } => {
                let all = self.src.paths(|_, n| !matches!(n, Node::Link { .. }));
                let p = index(&all, node);
                match self.src.0.get_mut(&p) {
                    Some(Node::Dir { mode: m }) => *m = *mode.get(DIR_MODES),
                    Some(Node::File { mode: m, .. }) => *m = *mode.get(FILE_MODES),
                    _ => return Ok(()),
                }
                self.emit(&p, Ev::Chmod);
            }
            Op::Window => {
                self.catch_up();
                self.commit();
            }
            Op::Sync => self.drain()?,
        }
        Ok(())
    }

    /// Creates the file at `p` or overwrites the one there: `Some(true)`
    /// when it is new, `Some(false)` when it was rewritten, `None` (nothing
    /// done) when a directory or symlink holds the name.
    fn write_file(&mut self, p: &[u8], len: u8) -> Option<bool> {
        match self.src.get(p) {
            None => {
                let data = self.content(len);
                self.src
                    .0
                    .insert(p.to_vec(), Node::File { data, mode: 0o644 });
                Some(true)
            }
            Some(Node::File { .. }) => {
                self.overwrite(p, len);
                Some(false)
            }
            Some(_) => None,
        }
    }

    fn overwrite(&mut self, p: &[u8], len: u8) {
        let new = self.content(len);
        if let Some(Node::File { data, .. }) = self.src.0.get_mut(p) {
            *data = new;
        }
    }

    fn build(&mut self, at: &[u8], shape: &Shape) {
        match shape {
            Shape::File(len) => {
                let data = self.content(*len);
                self.src
                    .0
                    .insert(at.to_vec(), Node::File { data, mode: 0o644 });
            }
            Shape::Dir(children) => {
                self.src.0.insert(at.to_vec(), Node::Dir { mode: 0o750 });
                for (name, sub) in children {
                    let p = join(at, name);
                    if self.src.get(&p).is_some() {
                        continue; // a name given twice
                    }
                    match sub {
                        None => self.build(&p, &Shape::File(3)),
                        Some(files) => {
                            let files = files.iter().map(|f| (*f, None)).collect();
                            self.build(&p, &Shape::Dir(files));
                        }
                    }
                }
            }
        }
    }

    /// `mkdir -p dir/chain… && touch` the files in the deepest dir. A path
    /// whose parent existed before is always reported; one inside a dir
    /// made by this operation only when `seen` says so (the race of a new
    /// directory with its inotify watch).
    fn mkdir_p(&mut self, dir: &Index, chain: &[Name], files: &[Name], seen: &[bool]) {
        let mut cur = index(&self.src.dirs(), dir);
        let mut cur_is_new = false;
        let mut made: Vec<(Vec<u8>, &[Ev], bool)> = Vec::new();
        for name in chain {
            let next = join(&cur, name);
            match self.src.get(&next) {
                Some(Node::Dir { .. }) => {}
                Some(_) => return self.report(made, seen), // mkdir -p fails here
                None => {
                    self.src.0.insert(next.clone(), Node::Dir { mode: 0o755 });
                    made.push((next.clone(), &[Ev::Mkdir], cur_is_new));
                    cur_is_new = true;
                }
            }
            cur = next;
        }
        for name in files {
            let p = join(&cur, name);
            let evs = match self.src.get(&p) {
                None => {
                    let data = self.content(5);
                    self.src
                        .0
                        .insert(p.clone(), Node::File { data, mode: 0o644 });
                    NEW_FILE
                }
                Some(Node::File { .. }) => {
                    self.overwrite(&p, 5);
                    REWRITTEN
                }
                Some(_) => continue,
            };
            made.push((p, evs, cur_is_new));
        }
        self.report(made, seen)
    }

    fn report(&mut self, made: Vec<(Vec<u8>, &[Ev], bool)>, seen: &[bool]) {
        for (i, (p, evs, in_new_dir)) in made.into_iter().enumerate() {
            if !in_new_dir || seen[i % seen.len()] {
                self.emit_all(&p, evs);
            }
        }
    }
}

fn index(v: &[Vec<u8>], i: &Index) -> Vec<u8> {
    i.get(v).clone()
}

fn pick(v: &[Vec<u8>], i: &Index) -> Option<Vec<u8>> {
    (!v.is_empty()).then(|| index(v, i))
}

fn name() -> impl Strategy<Value = Name> {
    select(NAMES)
}

fn shape() -> impl Strategy<Value = Shape> {
    prop_oneof![
        (0u8..8).prop_map(Shape::File),
        prop::collection::vec(
            (
                name(),
                prop::option::of(prop::collection::vec(name(), 0..3))
            ),
            0..4
        )
        .prop_map(Shape::Dir),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let i = any::<Index>;
    prop_oneof![
        4 => (i(), name(), 0u8..8).prop_map(|(dir, name, len)| Op::Create { dir, name, len }),
        3 => (i(), 0u8..8).prop_map(|(file, len)| Op::Write { file, len }),
        2 => i().prop_map(|file| Op::Rewrite { file }),
        2 => (i(), name(), 0u8..8).prop_map(|(dir, name, len)| Op::Open { dir, name, len }),
        2 => i().prop_map(|file| Op::Close { file }),
        4 => (i(), i(), name()).prop_map(|(from, dir, name)| Op::Rename { from, dir, name }),
        1 => i().prop_map(|node| Op::MoveOut { node }),
        2 => (i(), name(), shape()).prop_map(|(dir, name, shape)| Op::MoveIn { dir, name, shape }),
        2 => i().prop_map(|node| Op::Delete { node }),
        2 => (
            i(),
            prop::collection::vec(name(), 1..4),
            prop::collection::vec(name(), 0..4),
            prop::collection::vec(any::<bool>(), 1..8),
        )
            .prop_map(|(dir, chain, files, seen)| Op::MkdirP { dir, chain, files, seen }),
        1 => (i(), name(), select(LINK_TARGETS))
            .prop_map(|(dir, name, target)| Op::Symlink { dir, name, target }),
        2 => (i(), i()).prop_map(|(node, mode)| Op::Chmod { node, mode }),
        2 => Just(Op::Window),
        2 => Just(Op::Sync),
    ]
}

/// The initial tree: each item adds a child to an existing dir.
fn initial() -> impl Strategy<Value = Tree> {
    prop::collection::vec((any::<Index>(), name(), 0u8..10), 0..30).prop_map(|items| {
        let mut t = Tree::new();
        for (i, (dir, name, kind)) in items.into_iter().enumerate() {
            let p = join(&index(&t.dirs(), &dir), name);
            if t.get(&p).is_some() {
                continue;
            }
            let node = match kind {
                0..=5 => Node::File {
                    data: vec![i as u8; kind as usize],
                    mode: FILE_MODES[kind as usize % FILE_MODES.len()],
                },
                6..=8 => Node::Dir {
                    mode: DIR_MODES[kind as usize % DIR_MODES.len()],
                },
                _ => Node::Link {
                    target: LINK_TARGETS[i % LINK_TARGETS.len()].to_vec(),
                },
            };
            t.0.insert(p, node);
        }
        t
    })
}

/// The scenario: tree, operations (each with "interpreted late"), the
/// optimizer's full-sync threshold and the window's early-flush cap.
fn scenario() -> impl Strategy<Value = (Tree, Vec<(Op, bool)>, usize, usize)> {
    (
        initial(),
        prop::collection::vec((op(), prop::bool::weighted(0.25)), 1..40),
        prop_oneof![3 => Just(DEFAULT_FULL_SYNC_THRESHOLD), 1 => 1usize..8],
        prop_oneof![Just(100_000usize), 1usize..6],
    )
}

fn run(start: Tree, ops: &[(Op, bool)], threshold: usize, cap: usize) -> Result<(), TestCaseError> {
    let mut sim = Sim {
        src: start.clone(),
        dst: start.clone(),
        raw: Vec::new(),
        channel: Vec::new(),
        window: Aggregator::new(HOUR, cap, threshold, HOUR),
        queue: Vec::new(),
        open: Vec::new(),
        writing: Vec::new(),
        threshold,
        t0: Instant::now(),
        counter: 0,
    };
    for (op, late) in ops {
        sim.apply(op, *late).map_err(TestCaseError::fail)?;
    }
    // Every writer closes its file in the end.
    for p in std::mem::take(&mut sim.open) {
        sim.emit(&p, Ev::CloseWrite);
    }
    sim.catch_up();
    sim.commit();
    sim.drain().map_err(TestCaseError::fail)?;
    let src = &sim.src;

    let mut raw_dst = start.clone();
    for e in &sim.raw {
        let one = classify_with(std::slice::from_ref(e), |p| src.stat(p)).unwrap();
        let recursive = one[0].kind != Kind::Attrs;
        rsync_run(src, &mut raw_dst, &[&one[0]], recursive).map_err(TestCaseError::fail)?;
    }
    prop_assert!(
        raw_dst == *src,
        "syncing each raw path does not mirror the source:\n{}",
        src.diff(&raw_dst)
    );

    let mut opt_dst = start;
    let merged = optimize(sim.raw.clone(), threshold);
    sync(src, &mut opt_dst, &merged, threshold).map_err(TestCaseError::fail)?;
    prop_assert!(
        opt_dst == raw_dst,
        "syncing the optimized set {merged:?} differs from syncing each raw path:\n{}",
        src.diff(&opt_dst)
    );
    prop_assert!(
        sim.dst == *src,
        "the pipeline's mirror differs from the source:\n{}",
        src.diff(&sim.dst)
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn optimized_changesets_sync_the_same_mirror_as_raw_paths(
        (tree, ops, threshold, cap) in scenario()
    ) {
        run(tree, &ops, threshold, cap)?;
    }
}

/// The rsync model itself, on a case worked by hand: a file that replaced
/// a directory, a new dir with its content, a deletion, and an attrs-only
/// change that must not descend.
#[test]
fn the_rsync_model_follows_the_file_level_strategy() {
    let mut src = Tree::new();
    let mut dst = Tree::new();
    let file = |d: &[u8]| Node::File {
        data: d.to_vec(),
        mode: 0o644,
    };
    dst.0.insert(b"x".to_vec(), Node::Dir { mode: 0o755 });
    dst.0.insert(b"x/old".to_vec(), file(b"o"));
    dst.0.insert(b"gone".to_vec(), file(b"g"));
    dst.0.insert(b"d".to_vec(), Node::Dir { mode: 0o755 });
    dst.0.insert(b"d/keep".to_vec(), file(b"k"));
    src.0.insert(b"x".to_vec(), file(b"now a file"));
    src.0.insert(b"n".to_vec(), Node::Dir { mode: 0o700 });
    src.0.insert(b"n/f".to_vec(), file(b"f"));
    src.0.insert(b"d".to_vec(), Node::Dir { mode: 0o555 });
    // d/keep changed in the source, but only d's mode was reported.
    src.0.insert(b"d/keep".to_vec(), file(b"K"));
    let raw = vec![
        Entry::new(Kind::File, b"x/old".to_vec()),
        Entry::new(Kind::Tree, b"n".to_vec()),
        Entry::new(Kind::File, b"n/f".to_vec()),
        Entry::new(Kind::Gone, b"gone".to_vec()),
        Entry::new(Kind::Attrs, b"d".to_vec()),
    ];
    sync(&src, &mut dst, &optimize(raw, 10), 10).unwrap();
    let mut want = src.clone();
    want.0.insert(b"d/keep".to_vec(), file(b"k"));
    assert_eq!(dst, want, "{}", want.diff(&dst));
    // A path below a file in the source is refused, as by rsync's lstat.
    let e = Entry::new(Kind::File, b"x/old".to_vec());
    assert!(rsync_run(&src, &mut dst, &[&e], true).is_err());
}
