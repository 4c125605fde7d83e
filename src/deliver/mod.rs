//! Delivery: from committed changesets to rsync runs, and the acks.
//!
//! The [`outbox`] is the store and one [`worker`] thread per destination.
//! A worker reads the oldest pending changesets of its queue, turns them
//! into a [`plan`] (merged, [`classify`]d against the live source,
//! filtered, split into rsync's two runs), checks the empty-source
//! [`guard`] before a full sync, runs [`rsync`], and acks only what rsync
//! delivered; after a failure it backs off, watching the destination's
//! cheap [`probe`] to retry as soon as it is back. This folder may read the settings (`config`), the store and
//! the shared status types (`observe::status`); it never imports the
//! watcher, the window or the daemon's main loop, and it is the only place
//! that acks.

pub mod classify;
pub mod guard;
pub mod outbox;
pub mod plan;
pub mod probe;
pub mod replay;
pub mod rsync;
pub mod worker;
