//! Renames and the watch set after an event: the two halves of a rename
//! paired by inotify's cookie into one move, and the watches kept in step
//! with the tree (directories that appeared are walked, a paired move is
//! not walked again unless its watches may be incomplete, a move into an
//! excluded path unwatches it).

use std::path::PathBuf;

use notify::event::{CreateKind, ModifyKind, RenameMode};
use notify::EventKind;

use super::{rel, Change, Watch, Why};
use crate::changeset::{Entry, Kind};

/// What `pair` made of a rename's half.
pub(super) enum Paired {
    /// The `To` half of a move within the tree, whose `From` half had
    /// index `index` in the channel.
    Move { from: Vec<u8>, index: u64 },
    /// The `To` half of a move into an excluded path.
    IntoExcluded,
    /// A `From` half.
    From,
}

impl Watch {
    /// The two halves of a rename inside the tree, paired by inotify's
    /// cookie (notify's tracker): the `From` half waits, and the `To` half
    /// with the same cookie makes one [`Change::Move`]. A half that stays
    /// alone is what it always was: moved out of the tree (gone, once
    /// [`Watch::unpaired`] gives up on it) or moved in (a new path). A move
    /// into an excluded path is a deletion; out of one, an arrival.
    /// Returns `None` for every other event.
    pub(super) fn pair(&mut self, ev: &notify::Event, index: u64) -> Option<(Vec<Change>, Paired)> {
        let EventKind::Modify(ModifyKind::Name(mode)) = ev.kind else {
            return None;
        };
        let [p] = ev.paths.as_slice() else {
            return None;
        };
        let r = rel(&self.root, p)?;
        let Some(cookie) = ev.tracker() else {
            // A `From` without a cookie is the moved directory's own watch
            // reporting the move (IN_MOVE_SELF), after the half with the
            // cookie. While that half waits for its `To` (none comes when
            // the directory went into one not watched yet: `mkdir new;
            // mv big new/`), a deletion here would come before the move
            // that [`Watch::unpaired`]'s caller may still find, and turn
            // it into a transfer.
            let waiting = self.pending_from.iter().any(|(_, from, _)| *from == r);
            return (mode == RenameMode::From && waiting)
                .then(|| (vec![Change::Closed(r)], Paired::From));
        };
        match mode {
            RenameMode::From => {
                if (self.exclude)(&r, true) && (self.exclude)(&r, false) {
                    return Some((vec![Change::Closed(r)], Paired::From));
                }
                self.pending_from.push((cookie, r.clone(), index));
                Some((vec![Change::Closed(r)], Paired::From))
            }
            RenameMode::To => {
                let i = self
                    .pending_from
                    .iter()
                    .position(|(c, _, _)| *c == cookie)?;
                let (_, from, from_index) = self.pending_from.remove(i);
                let is_dir = std::fs::symlink_metadata(p).is_ok_and(|m| m.is_dir());
                if (self.exclude)(&r, is_dir) {
                    return Some((
                        vec![
                            Change::Closed(r),
                            Change::Entry(Entry::new(Kind::Gone, from)),
                        ],
                        Paired::IntoExcluded,
                    ));
                }
                Some((
                    vec![
                        Change::Closed(r.clone()),
                        Change::Move(crate::changeset::Move {
                            from: from.clone(),
                            to: r,
                        }),
                    ],
                    Paired::Move {
                        from,
                        index: from_index,
                    },
                ))
            }
            _ => None,
        }
    }

    /// Whether a rename's `From` half waits for its `To`.
    pub fn awaits_pairs(&self) -> bool {
        !self.pending_from.is_empty()
    }

    /// The `From` halves still waiting for their `To`: after every event
    /// read so far was interpreted, they are moves out of the tree, and so
    /// deletions.
    pub fn unpaired(&mut self) -> Vec<Change> {
        self.pending_from
            .drain(..)
            .map(|(_, p, _)| Change::Entry(Entry::new(Kind::Gone, p)))
            .collect()
    }

    pub(super) fn excluded(&self, e: &Entry) -> bool {
        crate::config::filter::entry_excluded(|p, d| (self.exclude)(p, d), e)
    }

    /// Keeps the watch set in step with the tree after an event: watches
    /// the directories that appeared, except a directory moved within the
    /// tree whose watches notify moved with it ([`super::marks`] says when they
    /// may be incomplete, and then it is walked); unwatches one moved to an
    /// excluded path; takes deleted directories off the unwatched list, and
    /// retries one whose attributes changed (a `chmod` may let the daemon
    /// read it).
    ///
    /// notify keys its watches by path, so a directory renamed over another
    /// one is ambiguous: the old inode's removal can be reported after the
    /// new one's arrival, and takes the watch registered under that path with
    /// it. So after any removal, a path that is a directory again is watched
    /// again.
    pub(super) fn follow(
        &mut self,
        kind: EventKind,
        paths: &[PathBuf],
        paired: Option<Paired>,
        out: &mut Vec<Change>,
    ) {
        for p in paths {
            if p == &self.root {
                continue;
            }
            let arrived = matches!(
                kind,
                EventKind::Create(CreateKind::Folder)
                    | EventKind::Create(CreateKind::Any)
                    | EventKind::Modify(ModifyKind::Name(RenameMode::To))
            );
            let removed = matches!(kind, EventKind::Remove(_));
            let left =
                removed || matches!(kind, EventKind::Modify(ModifyKind::Name(RenameMode::From)));
            let attrs = matches!(kind, EventKind::Modify(ModifyKind::Metadata(_)));
            if !(arrived || left || attrs) {
                continue;
            }
            let Some(r) = rel(&self.root, p) else {
                continue;
            };
            if attrs {
                if self.unwatched.get(&r) == Some(&Why::Permission) {
                    self.retry(vec![r]);
                }
                continue;
            }
            if removed && !self.unwatched.is_empty() {
                self.unwatched.remove_at_or_below(&r);
            }
            let md = std::fs::symlink_metadata(p);
            let is_dir = md.as_ref().is_ok_and(|m| m.is_dir());
            let walk = match (&paired, arrived, is_dir) {
                (Some(Paired::IntoExcluded), true, true) => {
                    self.unwatch_tree(p);
                    false
                }
                (Some(Paired::Move { from, index }), true, true) => {
                    let walk = self.move_needs_walk(from, *index);
                    if walk && !self.unwatched.is_empty() {
                        let from = from.clone();
                        self.unwatched.remove_at_or_below(&from);
                    }
                    if !self.moves_keep_excludes {
                        self.unwatch_excluded(p);
                    }
                    walk
                }
                (_, _, true) => true,
                (_, true, false) => {
                    // Gone before it could be watched: a rename of it may
                    // come next, and then it has no watches to keep.
                    if md.is_err() && kind != EventKind::Create(CreateKind::File) {
                        self.marks.walked(r);
                    }
                    false
                }
                (_, false, false) => false,
            };
            if walk {
                if let Err(e) = self.add_tree(p, None) {
                    out.push(Change::WatcherStopped(e.to_string()));
                    return;
                }
            }
        }
    }

    /// Whether a directory moved within the tree from `from` (its `From`
    /// half at `index`) must be walked: when its watches may be incomplete
    /// ([`super::marks`]), when part of it was not watched, or when a move can
    /// change what is excluded below it.
    pub(super) fn move_needs_walk(&self, from: &[u8], index: u64) -> bool {
        !self.moves_keep_excludes
            || self.unwatched.at_or_below(from).next().is_some()
            || self.marks.touches(from, index)
    }
}
