//! Settings: the command line and the config file turned into what the
//! daemon runs.
//!
//! [`cli`] only describes arguments (clap types stay there), [`file`](mod@file) reads
//! the TOML file, [`build`] checks both and resolves paths once, at start,
//! so a bad invocation fails before anything is watched or written, with a
//! message that says what to write instead; [`location`] parses SOURCE and
//! DEST, [`filter`] the excludes, [`destopts`] each destination's rsync
//! settings ([`rsyncarg`] the checks of extra rsync options), [`state`]
//! where the state lives. The types below are what the
//! rest of syncd reads: no other folder sees a clap type. This folder
//! imports only the core types, the store's constants and the shared
//! status leaf; nothing here starts a thread or touches a destination.

pub mod build;
pub mod cli;
pub mod describe;
pub mod destopts;
pub mod file;
pub mod filter;
pub mod location;
pub mod rsyncarg;
pub mod state;
pub mod words;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use describe::describe;
pub use destopts::DestOptions;
pub use state::state_dir;

use location::{Destination, Source};

/// Everything `syncd run` needs.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub source: Source,
    pub dests: Vec<DestConfig>,
    pub state_dir: PathBuf,
    pub delay: Duration,
    /// How long a file still open for writing is held back.
    pub hold: Duration,
    /// What a start does besides replaying the queue.
    pub initial_sync: InitialSync,
    /// Queue a full sync this often (`--full-sync-every`), if at all.
    pub full_sync_every: Option<Duration>,
    /// Move the store aside first (`--reset-queue`).
    pub reset_queue: bool,
    pub workers: WorkerSettings,
    /// Early-flush cap of the window, in optimized entries.
    pub window_cap: usize,
    /// Where to serve metrics, if anywhere.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Where to write the metrics textfile, if anywhere.
    pub metrics_textfile: Option<PathBuf>,
    /// The excludes, shared by the watcher, the workers and rsync.
    pub filter: std::sync::Arc<crate::config::filter::Filter>,
    /// Free bytes kept on the state file system (`--state-min-free`).
    pub min_free: u64,
}

/// What a start does besides replaying the queue (`--initial-sync`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitialSync {
    /// Look at what changed while syncd was not watching (the restart
    /// scan), or a full sync when the scan cannot be trusted.
    Scan,
    /// A full sync of the whole tree.
    Full,
    /// Nothing after a clean stop (pylsyncd's `-i`); after an unclean one,
    /// the restart scan still runs, since the queue lacks the last window.
    None,
}

impl InitialSync {
    /// The word of the option and of the config file.
    pub fn word(self) -> &'static str {
        match self {
            InitialSync::Scan => "scan",
            InitialSync::Full => "full",
            InitialSync::None => "none",
        }
    }
}

/// A destination's settings as a worker needs them.
#[derive(Debug, Clone)]
pub struct DestConfig {
    pub dest: Destination,
    /// Everything that shapes this destination's rsync runs.
    pub rsync: DestOptions,
}

/// Settings shared by all workers.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// Entries merged into one run at most (a backlog is drained in runs
    /// of about this size).
    pub batch_entries: usize,
    /// The optimizer's full-sync threshold.
    pub full_threshold: usize,
    /// First retry delay; doubled per failure up to `backoff_max`.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// Attempts before a fatal failure moves changesets to dead letters.
    pub dead_after: u32,
    /// The excludes: entries queued before an exclude was added are dropped
    /// here, so rsync is never given an excluded path explicitly.
    pub filter: Arc<crate::config::filter::Filter>,
    /// Run a full sync of an empty SOURCE even onto a destination that holds
    /// data (`--allow-empty-source`); see `deliver::guard`.
    pub allow_empty_source: bool,
}

impl Default for WorkerSettings {
    fn default() -> WorkerSettings {
        WorkerSettings {
            batch_entries: 100_000,
            full_threshold: crate::optimize::DEFAULT_FULL_SYNC_THRESHOLD,
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            dead_after: 3,
            filter: Arc::default(),
            allow_empty_source: false,
        }
    }
}
