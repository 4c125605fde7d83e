//! What a destination is doing, as the workers publish it and the
//! observers read it: the state, the live figures, the run counters and a
//! full sync's progress, and the commands the main loop sends a worker;
//! and the directories the daemon cannot watch, as the main loop fills
//! them in for the reports.
//!
//! This is the one module both sides of the daemon share, so it is a leaf:
//! it imports only the core types and the store's persisted status, and
//! nothing here runs anything. The workers (`deliver`) write these values;
//! `inspect`, `metrics` and the control socket read them.

use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::store::record::DestStatus;

/// A destination whose current batch failed this many times in a row is in
/// error (`syncd status --max-failures`).
pub const DEFAULT_MAX_FAILURES: u32 = 10;

/// Messages from the main loop to a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmd {
    /// New changesets were committed.
    Wake,
    /// Try now: re-read the queue and end a back-off early (`syncd queue
    /// retry` and `purge`).
    Retry,
    /// End any running rsync and return.
    Stop,
}

/// What a destination is doing, for `status` and live `queue inspect`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Nothing pending.
    InSync,
    /// rsync is running.
    Syncing,
    /// The last run failed; the next attempt is at the given Unix ms.
    BackingOff { until_ms: u64 },
    /// The worker stopped.
    Stopped,
}

impl State {
    pub fn word(&self) -> &'static str {
        match self {
            State::InSync => "in_sync",
            State::Syncing => "syncing",
            State::BackingOff { .. } => "backing_off",
            State::Stopped => "stopped",
        }
    }
}

/// Live status of one worker, shared with the main loop.
#[derive(Debug, Clone)]
pub struct Live {
    pub state: State,
    pub persisted: DestStatus,
    /// Consecutive failed attempts of the current batch.
    pub attempts: u32,
    /// Run counters for metrics.
    pub counters: Counters,
    /// The progress of the full sync rsync is running now, if it is one.
    pub progress: Option<Progress>,
}

/// Counters a worker keeps for metrics (reset when the daemon restarts, as
/// Prometheus counters may be).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    pub runs_success: u64,
    pub runs_retry: u64,
    pub runs_fatal: u64,
    pub bytes_sent: u64,
    /// Cheap checks of the destination while backing off
    /// (`deliver::probe`).
    pub probes: u64,
}

/// The part of a running worker that the main loop and the control socket
/// use: its live figures, and the channel its commands go through.
#[derive(Debug, Clone)]
pub struct WorkerLink {
    pub name: String,
    pub live: Arc<Mutex<Live>>,
    pub tx: crossbeam_channel::Sender<Cmd>,
}

/// How many unwatched directories the reports list by name.
pub const UNWATCHED_LISTED: usize = 10;

/// The directories of SOURCE the running daemon cannot watch (each with
/// everything below it), for `syncd status` and `queue inspect`. Plain
/// data: the main loop fills it in from its watch. The JSON field names
/// are part of the status contract.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Unwatched {
    /// How many directories are not watched.
    pub count: u64,
    /// The first [`UNWATCHED_LISTED`], in path order, relative to SOURCE,
    /// escaped.
    pub paths: Vec<String>,
    /// Why, in words (several reasons joined with "; "); `null` when none
    /// is unwatched.
    pub reason: Option<String>,
}

/// How long the main loop's steps took since the daemon started (see
/// `observe::steps`), as `status --json` shows it under
/// `daemon.main_loop`. The JSON field names are part of the status
/// contract.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct MainLoop {
    pub steps: u64,
    /// The longest time event intake paused.
    pub slowest_step_ms: f64,
    /// What the slowest step did: `event`, `control` (a request of a
    /// command), `scrape`, `commit`, `signal` or `tick` (timers).
    #[serde(default)]
    pub slowest_step: String,
    pub steps_over_10ms: u64,
}

/// What the main loop knows of the daemon itself, lent to the reports
/// with each request.
#[derive(Debug, Clone, Default)]
pub struct DaemonFacts {
    pub unwatched: Unwatched,
    pub main_loop: MainLoop,
}

/// A full sync's progress, as `syncd status` shows it and the log prints
/// it. The JSON field names are part of the status contract.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Progress {
    /// rsync's percentage: bytes sent of the tree's total size; `null`
    /// until rsync sent its first file.
    pub percent: Option<u8>,
    /// File data sent so far.
    pub bytes_done: u64,
    /// The tree's total size, estimated from the percentages (`null` until
    /// the first percent is reached).
    pub bytes_total: Option<u64>,
    /// Entries of the file list checked so far.
    pub files_done: Option<u64>,
    /// Entries in the file list (files, directories, links).
    pub files_total: Option<u64>,
    /// Seconds left at the byte rate so far, when it can be told.
    pub eta_s: Option<u64>,
    /// Seconds since the run started.
    pub elapsed_s: u64,
}

impl Progress {
    /// One line for the log and `syncd status`:
    /// `45% (1.2 GB of 2.7 GB), 12,000 of 202,001 files, ETA 0:03:10`.
    pub fn describe(&self) -> String {
        let Some(pct) = self.percent else {
            return format!(
                "scanning, nothing sent yet (running {})",
                clock(self.elapsed_s)
            );
        };
        let mut s = match self.bytes_total {
            Some(t) => format!("{pct}% ({} of {})", bytes(self.bytes_done), bytes(t)),
            None => format!("{pct}% ({} sent)", bytes(self.bytes_done)),
        };
        match (self.files_done, self.files_total) {
            (Some(d), Some(t)) => s.push_str(&format!(", {} of {} files", grouped(d), grouped(t))),
            (Some(d), None) => s.push_str(&format!(", {} files", grouped(d))),
            _ => {}
        }
        if let Some(eta) = self.eta_s {
            s.push_str(&format!(", ETA {}", clock(eta)));
        }
        s
    }
}

/// A byte count with one decimal in SI units: `950 B`, `1.2 MB`, `2.7 GB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["kB", "MB", "GB", "TB", "PB"];
    if n < 1000 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1000.0;
    let mut u = 0;
    while v >= 999.95 && u + 1 < UNITS.len() {
        v /= 1000.0;
        u += 1;
    }
    format!("{v:.1} {}", UNITS[u])
}

/// `12,000`.
pub fn grouped(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Seconds as `H:MM:SS`.
pub fn clock(s: u64) -> String {
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_read_well() {
        assert_eq!(bytes(999), "999 B");
        assert_eq!(bytes(1_234_567), "1.2 MB");
        assert_eq!(bytes(2_700_000_000), "2.7 GB");
        assert_eq!(bytes(999_999), "1.0 MB");
        assert_eq!(grouped(12_000), "12,000");
        assert_eq!(grouped(202_001), "202,001");
        assert_eq!(grouped(7), "7");
        assert_eq!(clock(190), "0:03:10");
        assert_eq!(clock(3 * 3600 + 61), "3:01:01");
    }
}
