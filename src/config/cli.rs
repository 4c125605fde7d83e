//! The command line, described and nothing more.
//!
//! These clap types only say which arguments exist, with their help text;
//! `config` turns them into the validated settings the rest of syncd uses,
//! so no other module sees a clap type (ripgrep's low-args/high-args
//! split). Options are grouped by help heading, as watchexec does.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Replicate a directory tree to rsync destinations, with a durable queue.
///
/// syncd keeps a directory tree replicated to rsync destinations in near
/// real time, and never forgets a change: every aggregated changeset is
/// committed to a durable per-destination queue before rsync runs, and
/// removed only after rsync succeeded. A crash, a restart or a destination
/// that is down for hours just replays the backlog.
#[derive(Debug, Parser)]
#[command(name = "syncd", bin_name = "syncd", version, propagate_version = true)]
pub struct Cli {
    /// Read settings from this TOML file; every command-line option
    /// overrides the same setting in it (see the README, "Config file").
    #[arg(long, value_name = "FILE", env = "SYNCD_CONFIG", global = true)]
    pub config: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub log: LogArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Logging, for every subcommand (pylsyncd's letters).
#[derive(Debug, Args)]
#[command(next_help_heading = "Logging")]
pub struct LogArgs {
    /// Debug logging, including notify's and sled's own messages.
    #[arg(short = 'd', long, global = true)]
    pub debug: bool,
    /// Verbose: debug messages of syncd itself.
    #[arg(short = 'v', long, global = true)]
    pub verbose: bool,
    /// Quiet: errors only.
    #[arg(short = 'q', long, global = true)]
    pub quiet: bool,
    /// Log to the local syslog (/dev/log) instead of stderr; -d keeps
    /// stderr.
    #[arg(short = 's', long, global = true)]
    pub syslog: bool,
    /// The syslog facility (user, daemon, local0..local7, ...) [default:
    /// user].
    #[arg(long, value_name = "NAME", global = true)]
    pub syslog_facility: Option<String>,
    /// The syslog socket [default: /dev/log].
    #[arg(long, value_name = "PATH", global = true)]
    pub syslog_socket: Option<std::path::PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Watch SOURCE and replicate it to every DEST, in the foreground.
    ///
    /// SOURCE may carry the virtual-root marker `/./`: `/srv/./www` watches
    /// /srv/www and writes DEST/www. Without a marker the full path of
    /// SOURCE is recreated under DEST (`/srv/www` → DEST/srv/www); SOURCE
    /// `.` replicates the current directory's content itself.
    ///
    /// DEST is any rsync destination: /local/path, host:, host:path,
    /// `user@host:path`, `host::module[/path]`, `rsync://[user@]host[:port]/module[/path]`.
    ///
    /// The options under "rsync and remote destinations" apply to every
    /// DEST; `--dest-opt NAME:KEY=VALUE` sets one of them for one DEST
    /// (`--dest-opt web1:bwlimit=2M`). A failed run is retried with backoff
    /// forever, or, when it cannot fix itself (a usage error, a rejected
    /// host key), moved to dead letters after 3 attempts: the README's
    /// "Remote destinations and exit codes" has the table.
    Run(Box<RunArgs>),
    /// Look at or act on the queues of a state directory.
    #[command(subcommand)]
    Queue(QueueCommand),
    /// One line per destination (in sync, syncing, backing off, error),
    /// with the daemon's pid, uptime and version.
    ///
    /// Exit status: 0 when the daemon runs and every destination is in
    /// sync, syncing, or backing off after fewer than --max-failures
    /// failures; 5 when a destination is in error (dead letters, that many
    /// failures in a row, a stopped worker, or changesets queued for a
    /// destination the daemon no longer has); 6 when no daemon is running.
    Status(StatusArgs),
    /// Take a checkpoint: it completes for a destination once every change
    /// made in SOURCE before now is there. The open window is committed at
    /// once. With --wait, wait for it: exit 0 when every destination named
    /// completed it, 7 when --timeout passed first, 6 when no daemon runs.
    ///
    /// A deploy script can run `syncd checkpoint --wait --timeout 300`
    /// before it switches traffic to a mirror. A pending checkpoint
    /// survives a restart of the daemon; `syncd status` shows the last
    /// completed one per destination.
    Checkpoint(CheckpointArgs),
    /// Commit the open window now instead of at its deadline; with --full,
    /// also queue a full sync (all destinations, or --dest's), which
    /// repairs changes made on a destination by others.
    Sync(SyncArgs),
    /// Check the configuration `syncd run` would use (the config file and
    /// these arguments), print it resolved, and exit: 0 when it is valid, 2
    /// with the reason when not. Nothing is started or written.
    CheckConfig(Box<RunArgs>),
    /// Print the man page (roff) to stdout: `syncd man > syncd.1`.
    Man,
    /// Print a shell completion script to stdout, e.g.
    /// `syncd completions bash > /etc/bash_completion.d/syncd`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Args)]
pub struct CheckpointArgs {
    #[command(flatten)]
    pub state: StateArgs,
    /// Only this destination (its name or its target); default: all.
    #[arg(long, value_name = "NAME")]
    pub dest: Option<String>,
    /// Wait until the checkpoint completed on every destination named.
    #[arg(long)]
    pub wait: bool,
    /// With --wait, give up after this many seconds (exit status 7)
    /// [default: wait for ever].
    #[arg(long, value_name = "SECS", requires = "wait")]
    pub timeout: Option<f64>,
}

#[derive(Debug, Args)]
pub struct SyncArgs {
    #[command(flatten)]
    pub state: StateArgs,
    /// Queue a full sync of the whole tree too.
    #[arg(long)]
    pub full: bool,
    /// With --full, only this destination (its name or its target).
    #[arg(long, value_name = "NAME", requires = "full")]
    pub dest: Option<String>,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub state: StateArgs,
    /// Print one JSON object instead of lines.
    #[arg(long)]
    pub json: bool,
    /// A destination whose current batch failed this many times in a row
    /// is in error.
    #[arg(long, value_name = "N", default_value_t = crate::observe::status::DEFAULT_MAX_FAILURES)]
    pub max_failures: u32,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The directory tree to watch and replicate (or `source` in the
    /// config file).
    #[arg(value_name = "SOURCE")]
    pub source: Option<OsString>,
    /// One or more rsync destinations (or `[[dest]]` tables in the config
    /// file, which DESTs given here replace).
    #[arg(value_name = "DEST")]
    pub dests: Vec<OsString>,
    #[command(flatten)]
    pub state: StateArgs,
    #[command(flatten)]
    pub timing: TimingArgs,
    #[command(flatten)]
    pub rsync: RsyncArgs,
    #[command(flatten)]
    pub filter: FilterArgs,
    #[command(flatten)]
    pub metrics: MetricsArgs,
    /// What a start does besides replaying the queue: `scan` looks at what
    /// changed in SOURCE while syncd was not watching (one local walk that
    /// stats every entry; no rsync of the whole tree), `full` runs a full
    /// sync, `none` nothing (after an unclean stop the scan runs anyway). A
    /// scan that cannot be trusted (a new or reset store, a clock behind
    /// the store's watermark, a SOURCE whose file system keeps no reliable
    /// ctime) is a full sync instead, with the reason in the log
    /// [default: scan].
    #[arg(
        long,
        value_enum,
        value_name = "MODE",
        conflicts_with = "no_initial_sync"
    )]
    pub initial_sync: Option<InitialSyncArg>,
    /// The same as `--initial-sync none` (pylsyncd's letter).
    #[arg(short = 'i', long)]
    pub no_initial_sync: bool,
    /// Queue a full sync this often, to repair changes made on a
    /// destination by others, which neither events nor the restart scan
    /// see: `90s`, `30m`, `6h`, `1d`, or seconds [default: off].
    #[arg(long, value_name = "DURATION")]
    pub full_sync_every: Option<String>,
    /// Move the queue store aside (to STATE/db.broken-TIME) and start with an
    /// empty one and a full sync: the recovery for a damaged store. The
    /// full sync makes the mirror complete, so nothing is lost.
    #[arg(long)]
    pub reset_queue: bool,
    /// Sync even when SOURCE is empty and a destination holds data, which
    /// deletes that data. Without it syncd refuses to start then (an
    /// unmounted mount point looks empty), and never runs a full sync of
    /// an empty SOURCE onto such a destination.
    #[arg(long)]
    pub allow_empty_source: bool,
    /// Print each changeset and the rsync command lines it would run,
    /// instead of running them; touch nothing (no state directory, no
    /// store, no destination).
    #[arg(short = 'n', long)]
    pub dry_run: bool,
}

/// `--initial-sync`'s values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum InitialSyncArg {
    Scan,
    Full,
    None,
}

/// What is not replicated.
#[derive(Debug, Args, Clone)]
#[command(next_help_heading = "Excludes")]
pub struct FilterArgs {
    /// Exclude paths matching PATTERN, with rsync's own pattern rules
    /// (`*.tmp`, `/cache/`, `.git/`, `dir/***`); `/` anchors at SOURCE.
    /// Excluded directories are not watched, excluded paths are not
    /// queued, and deletion on the destination never touches them.
    #[arg(long, value_name = "PATTERN")]
    pub exclude: Vec<OsString>,
    /// Read exclude patterns from FILE, one a line (`#`/`;` comments).
    #[arg(long, value_name = "FILE")]
    pub exclude_from: Vec<PathBuf>,
}

/// Prometheus metrics.
#[derive(Debug, Args, Clone)]
#[command(next_help_heading = "Metrics")]
pub struct MetricsArgs {
    /// Serve Prometheus metrics on http://ADDR:PORT/metrics; a bare PORT
    /// listens on 127.0.0.1 only.
    #[arg(long, value_name = "[ADDR:]PORT")]
    pub metrics_listen: Option<String>,
    /// Write the metrics to FILE every 15 s (atomically), for
    /// node_exporter's textfile collector.
    #[arg(long, value_name = "FILE")]
    pub metrics_textfile: Option<PathBuf>,
}

/// Where the queue, the lock and the control socket live.
#[derive(Debug, Args, Clone)]
#[command(next_help_heading = "State")]
pub struct StateArgs {
    /// The state directory (one daemon per directory). Default:
    /// /var/lib/syncd for root, else $XDG_STATE_HOME/syncd or
    /// ~/.local/state/syncd.
    #[arg(long, value_name = "DIR", env = "SYNCD_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Keep this many MiB free on the state directory's file system: below
    /// it commits wait (changes stay in memory) instead of filling the disk
    /// [default: 8]. The queue store cannot recover in-process from a full
    /// disk, so 0 (no floor) makes syncd restart itself after one.
    #[arg(long, value_name = "MIB", hide_short_help = true)]
    pub state_min_free: Option<u64>,
}

#[derive(Debug, Args)]
#[command(next_help_heading = "Timing")]
pub struct TimingArgs {
    /// The aggregation window in seconds (fractions allowed): changes are
    /// collected this long after the first one, then committed as one
    /// changeset [default: 60].
    #[arg(long, value_name = "SECS")]
    pub delay: Option<f64>,
    /// The longest wait between retries of a failing destination, in
    /// seconds; retries start at 1 s and double up to this [default: 60].
    /// When a cheap check of the destination (a TCP connect, or access(2)
    /// on a local directory) explains the failure, it is repeated about
    /// every second and the retry runs as soon as it passes.
    #[arg(long, value_name = "SECS")]
    pub backoff_max: Option<f64>,
    /// A file still open for writing is held back from the changeset until
    /// its writer closes it, or at most this many seconds (then shipped
    /// anyway, and again every SECS while it stays open: logs, databases)
    /// [default: 60].
    #[arg(long, value_name = "SECS")]
    pub hold_open: Option<f64>,
}

/// How rsync reaches the destinations. Each option sets the default of
/// every DEST; `--dest-opt NAME:KEY=VALUE` overrides it for one DEST, KEY
/// being the option's long name (`--dest-opt web1:bwlimit=2M`).
#[derive(Debug, Args)]
#[command(next_help_heading = "rsync and remote destinations")]
pub struct RsyncArgs {
    /// The rsync program to run [default: rsync].
    #[arg(long, value_name = "PATH")]
    pub rsync: Option<OsString>,
    /// rsync's --timeout: give up after this many seconds without I/O
    /// [default: 60]. ssh's ServerAliveInterval is a third of it.
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<OsString>,
    /// Seconds to wait for a connection: rsync's --contimeout for daemon
    /// destinations, ssh's ConnectTimeout for host:path ones [default: 30].
    #[arg(long, value_name = "SECS")]
    pub contimeout: Option<OsString>,
    /// End an rsync run whose processes moved less than 64 KiB in this
    /// many seconds (a half-frozen peer that --timeout misses); 0: off
    /// [default: 600].
    #[arg(long, value_name = "SECS")]
    pub watchdog: Option<OsString>,
    /// The remote shell for host:path destinations, split into words as
    /// rsync splits -e [default: $RSYNC_RSH when set, else ssh; the config
    /// file's rsh and --dest-opt NAME:rsh= win over RSYNC_RSH too]. syncd
    /// appends BatchMode, ConnectTimeout, ServerAlive and ControlMaster
    /// options when it is ssh; options given here win.
    #[arg(short = 'e', long, value_name = "CMD")]
    pub rsh: Option<OsString>,
    /// The ssh port (host:path) or daemon port (host::module).
    #[arg(long, value_name = "PORT")]
    pub port: Option<OsString>,
    /// rsync's --bwlimit, e.g. 500K or 10M.
    #[arg(long, value_name = "RATE")]
    pub bwlimit: Option<OsString>,
    /// One more rsync argument (repeatable), e.g. --rsync-arg=--numeric-ids,
    /// with its value in the same argument (--chmod=u+w, -T/tmp). Options
    /// with which rsync can exit 0 without delivering (-n, --existing,
    /// -u, --max-size, ...; bundles such as -vn too) are refused, and so
    /// are those that break the file list or have their own setting.
    #[arg(long, value_name = "ARG", allow_hyphen_values = true)]
    pub rsync_arg: Vec<OsString>,
    /// Where an interrupted transfer waits to resume, in each file's
    /// destination directory; rsync keeps it out of the mirror and removes
    /// it once the file is complete. Empty: off [default: .syncd-partial].
    #[arg(long, value_name = "NAME")]
    pub partial_dir: Option<OsString>,
    /// Seconds an idle ssh master connection stays open for the next run;
    /// 0: one connection per run [default: 300].
    #[arg(long, value_name = "SECS")]
    pub control_persist: Option<OsString>,
    /// rsync's --password-file for daemon modules that need one.
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<OsString>,
    /// Sets KEY (an option of this group, without the dashes) for the one
    /// destination named NAME (repeatable). Names are printed at start-up:
    /// the host for host:path, host-module for daemons, the last component
    /// for local paths, with -2, -3 appended to repeats.
    #[arg(long, value_name = "NAME:KEY=VALUE")]
    pub dest_opt: Vec<OsString>,
}

impl RsyncArgs {
    /// The options given, as (key, value) pairs in the order they apply.
    pub fn pairs(&self) -> Vec<(&'static str, &OsString)> {
        let mut v = Vec::new();
        let one = [
            ("rsync", &self.rsync),
            ("timeout", &self.timeout),
            ("contimeout", &self.contimeout),
            ("watchdog", &self.watchdog),
            ("rsh", &self.rsh),
            ("port", &self.port),
            ("bwlimit", &self.bwlimit),
            ("partial-dir", &self.partial_dir),
            ("control-persist", &self.control_persist),
            ("password-file", &self.password_file),
        ];
        for (k, val) in one {
            if let Some(val) = val {
                v.push((k, val));
            }
        }
        for a in &self.rsync_arg {
            v.push(("rsync-arg", a));
        }
        v
    }
}

#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// Show every destination's backlog: pending changesets and paths, the
    /// age of the oldest, dead letters, state, last success and last error.
    ///
    /// Asks the running daemon over its control socket, or reads the store
    /// when no daemon runs.
    Inspect(InspectArgs),
    /// Move dead letters back into the queue and make a backing-off
    /// destination try again now (live or offline).
    Retry(RetryArgs),
    /// Drop every pending changeset and dead letter of one destination,
    /// for good (live or offline).
    ///
    /// The destination then misses those changes until the next full sync
    /// (`kill -HUP` the daemon, or start it without --no-initial-sync).
    Purge(PurgeArgs),
}

#[derive(Debug, Args)]
pub struct RetryArgs {
    #[command(flatten)]
    pub state: StateArgs,
    /// Only this destination (its name or its target); default: all.
    #[arg(long, value_name = "NAME")]
    pub dest: Option<String>,
}

#[derive(Debug, Args)]
pub struct PurgeArgs {
    #[command(flatten)]
    pub state: StateArgs,
    /// The destination (its name or its target).
    #[arg(long, value_name = "NAME", required = true)]
    pub dest: String,
    /// Confirm that the changesets are to be dropped.
    #[arg(long)]
    pub yes: bool,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    #[command(flatten)]
    pub state: StateArgs,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Only this destination (its name or its target).
    #[arg(long, value_name = "NAME")]
    pub dest: Option<String>,
    /// Also list the N oldest pending paths of each destination (escaped:
    /// a control byte or a backslash is shown as \xNN).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub entries: usize,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
