//! SOURCE and DEST arguments: what they mean and where data lands.
//!
//! This module owns pylsyncd's rules, kept exactly. SOURCE may carry the
//! virtual-root marker `/./`: the part before the first marker is the
//! *base* handed to rsync, the part after it is recreated under each
//! destination. SOURCE `.` makes the current directory both. Without a
//! marker the base is `/`, so the full path of SOURCE is recreated under
//! DEST. DEST takes every form rsync takes: a local path, `host:`,
//! `host:path`, `user@host:path`, `host::module[/path]` and
//! `rsync://[user@]host[:port]/module[/path]`. Parsing is pure (and fuzzed);
//! [`Source::resolve`] and [`Destination::resolve`] then touch the file
//! system once, at start, to make paths absolute and canonical.
//!
//! One rsync form is refused: `host:dir`, a relative path over ssh, lands
//! in the remote user's home directory, which is rarely what was meant
//! (lsyncd #481 and #668 lost data that way). `host:/dir` and `host:~/dir`
//! say where they land; a bare `host:` (pylsyncd's documented form for the
//! home directory) stays accepted, and the daemon logs where it lands.
//! Daemon paths (`host::module/path`) are relative to the module, as meant.

mod dest;
mod source;

pub use dest::{dedupe_names, parse_dest, Destination, Place};
pub use source::{parse_source, Source, SourceSpec};
