//! The optimizer: pure code that turns what windows saw into the smallest
//! canonical changeset that syncs the same mirror. [`entries`] makes a set
//! of entries canonical; [`moves`] composes renames with the entries
//! around them, in order. No I/O: unit-tested, property-tested and fuzzed.

pub mod entries;
pub mod moves;

pub use entries::{is_canonical, keep_named, optimize, split_named, DEFAULT_FULL_SYNC_THRESHOLD};
pub use moves::compose;
