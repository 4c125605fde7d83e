//! The reports of `syncd queue inspect` and `syncd status`, built from the
//! store and, when the daemon answers, from its live worker state.
//!
//! This module owns the shapes an operator reads and the rules that judge
//! them. One [`Report`] per destination says what is queued (`queue
//! inspect`); one [`Health`] per destination says whether it is fine
//! (`status`), and [`problem`] is the single definition of "in error" that
//! the exit status of `syncd status` follows. Both render as a table or as
//! JSON; the JSON field names are a stable contract (README, "JSON
//! fields"): fields may be added, never renamed or removed. The inspect
//! shape is the one the README documents. Every name or path printed is escaped
//! (`changeset::escape`), so a newline or a control byte in a file name can
//! neither forge a line of the table nor break a monitoring parser.

use std::io::Write;
use std::os::unix::ffi::OsStrExt;

use serde::{Deserialize, Serialize};

use crate::changeset::escape;
use crate::error::Result;
use crate::observe::logger::utc;
use crate::observe::status::{Live, MainLoop, State, Unwatched};
use crate::store::record::DestStatus;
use crate::store::{now_ms, Store};

/// The state word of a destination the store knows but the running daemon
/// does not replicate to (it was given in an earlier run).
pub const UNCONFIGURED: &str = "unconfigured";
/// The state word of every destination when no daemon runs.
pub const STOPPED: &str = "stopped";

/// One destination's backlog.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Report {
    pub name: String,
    pub target: String,
    pub pending: u64,
    pub pending_paths: u64,
    pub oldest_pending_age_s: Option<f64>,
    pub dead: u64,
    pub state: String,
    pub last_success_unix: Option<u64>,
    pub last_error: Option<String>,
    /// Every change made in the source before this time (Unix ms) is on
    /// the destination: its delivered watermark.
    #[serde(default)]
    pub delivered_unix_ms: Option<u64>,
    /// The checkpoint asked for and not yet complete (Unix ms).
    #[serde(default)]
    pub checkpoint_pending_unix_ms: Option<u64>,
    /// The last completed checkpoint.
    #[serde(default)]
    pub last_checkpoint: Option<CheckpointDone>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entries: Option<Vec<PendingPath>>,
}

/// A completed checkpoint: every change made before `at_unix_ms` was on the
/// destination at `completed_unix_ms`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct CheckpointDone {
    pub at_unix_ms: u64,
    pub completed_unix_ms: u64,
}

/// One of the oldest pending paths.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PendingPath {
    /// The sequence number of the changeset that holds it.
    pub seq: u64,
    /// `move`, `file`, `gone`, `tree`, `listing`, `attrs`, or `corrupt`
    /// for an unreadable record (the worker syncs the whole tree for it).
    pub kind: String,
    /// The path relative to the virtual root, escaped (`""` is the root);
    /// a move's new path.
    pub path: String,
    /// A move's old path, escaped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
}

/// The answer of `queue inspect`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Inspection {
    pub destinations: Vec<Report>,
    /// The directories the running daemon cannot watch; `null` when no
    /// daemon answered.
    #[serde(default)]
    pub unwatched: Option<Unwatched>,
}

/// Builds the report of one destination. `live` is the worker's state when
/// the daemon replicates to it; otherwise the state word is `idle_state`
/// and the last success and error come from the store.
pub fn report(
    store: &Store,
    target: &[u8],
    live: Option<&Live>,
    idle_state: &str,
    entries: usize,
) -> Result<Report> {
    let t = std::ffi::OsStr::from_bytes(target);
    let queue = store.queue(t)?;
    let dead = store.dead(t)?;
    let counts = store.counts(&queue);
    let now = now_ms();
    let oldest = store.oldest(&queue).map(|(_, cs)| cs.created_ms);
    let listed = if entries > 0 {
        oldest_paths(store, &queue, entries)?
    } else {
        Vec::new()
    };
    let checkpoints = store.checkpoints(target);
    let st: DestStatus = live.map_or_else(|| store.status(target), |l| l.persisted.clone());
    let name = if st.name.is_empty() {
        escape(target)
    } else {
        st.name.clone()
    };
    Ok(Report {
        name,
        target: escape(target),
        pending: counts.changesets,
        pending_paths: counts.paths,
        oldest_pending_age_s: oldest.map(|o| now.saturating_sub(o) as f64 / 1000.0),
        dead: store.dead_count(&dead),
        state: live.map_or(idle_state, |l| l.state.word()).to_string(),
        last_success_unix: st.last_success_ms.map(|m| m / 1000),
        last_error: st.last_error,
        delivered_unix_ms: store.delivered(&queue, &dead)?,
        checkpoint_pending_unix_ms: checkpoints.pending,
        last_checkpoint: checkpoints.done.map(|(at, done)| CheckpointDone {
            at_unix_ms: at,
            completed_unix_ms: done,
        }),
        entries: (entries > 0).then_some(listed),
    })
}

/// The `n` oldest pending paths of a queue, moves first in each
/// changeset: reads as many changesets as that takes, not the queue.
fn oldest_paths(store: &Store, queue: &sled::Tree, n: usize) -> Result<Vec<PendingPath>> {
    let mut listed = Vec::new();
    for p in store.pending_iter(queue) {
        let p = p?;
        let Some(cs) = &p.changeset else {
            listed.push(PendingPath {
                seq: p.seq,
                kind: "corrupt".into(),
                path: String::new(),
                from: None,
            });
            if listed.len() >= n {
                break;
            }
            continue;
        };
        let moves = cs.moves.iter().map(|m| PendingPath {
            seq: p.seq,
            kind: "move".into(),
            path: escape(&m.to),
            from: Some(escape(&m.from)),
        });
        let others = cs.entries.iter().map(|e| PendingPath {
            seq: p.seq,
            kind: e.kind.name().into(),
            path: escape(&e.path),
            from: None,
        });
        listed.extend(moves.chain(others).take(n - listed.len()));
        if listed.len() >= n {
            break;
        }
    }
    Ok(listed)
}

/// Whether the destination of `name` and (escaped) `target` is the one
/// `--dest` names, by name or by target; a trailing `/` does not matter.
pub fn matches(name: &str, target: &str, dest: Option<&str>) -> bool {
    match dest {
        None => true,
        Some(d) => {
            name == d || target == d || target.trim_end_matches('/') == d.trim_end_matches('/')
        }
    }
}

/// The answer of `syncd status`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StatusReport {
    /// The running daemon, or `null` when none runs.
    pub daemon: Option<DaemonInfo>,
    pub state_dir: String,
    /// True when a daemon runs and no destination has a `problem`; exactly
    /// when `syncd status` exits 0.
    pub healthy: bool,
    pub destinations: Vec<Health>,
    /// The directories the running daemon cannot watch; `null` when no
    /// daemon runs.
    #[serde(default)]
    pub unwatched: Option<Unwatched>,
}

/// The daemon that answered.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DaemonInfo {
    pub pid: u32,
    /// syncd's version.
    pub version: String,
    /// The control protocol version it speaks.
    pub protocol: u32,
    pub started_unix: u64,
    pub uptime_s: f64,
    /// How long its main loop's steps took (`null` from a daemon too old
    /// to say).
    #[serde(default)]
    pub main_loop: Option<MainLoop>,
}

/// One destination's health.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Health {
    pub name: String,
    pub target: String,
    /// The worker's state: `in_sync`, `syncing`, `backing_off`, `stopped`,
    /// or `unconfigured`.
    pub state: String,
    pub pending: u64,
    pub dead: u64,
    /// Consecutive failed attempts of the current batch.
    pub attempts: u32,
    /// When a backing-off destination tries again.
    pub next_attempt_unix: Option<u64>,
    pub last_success_unix: Option<u64>,
    pub last_error: Option<String>,
    /// Why this destination counts as in error, or `null` when it does not.
    pub problem: Option<String>,
    /// While rsync runs a full sync to it: how far along it is.
    #[serde(default)]
    pub progress: Option<crate::observe::status::Progress>,
    /// As in [`Report`]: the delivered watermark and the checkpoints.
    #[serde(default)]
    pub delivered_unix_ms: Option<u64>,
    #[serde(default)]
    pub checkpoint_pending_unix_ms: Option<u64>,
    #[serde(default)]
    pub last_checkpoint: Option<CheckpointDone>,
}

/// The definition of "in error" that `syncd status` exits non-zero on:
/// dead letters are present (changesets that will not be retried without
/// `syncd queue retry`), or the current batch failed `max_failures` times in
/// a row, or, while a daemon runs, its worker for the destination stopped,
/// or changesets are queued for a destination it no longer replicates to.
/// A destination that is merely catching up or backing off after fewer
/// failures is fine.
pub fn problem(r: &Report, attempts: u32, running: bool, max_failures: u32) -> Option<String> {
    let err = r.last_error.as_deref().map(one_line);
    let last = || {
        err.clone()
            .map_or(String::new(), |e| format!(" (last error: {e})"))
    };
    if r.dead > 0 {
        return Some(format!(
            "{} changesets are dead letters{}; fix the cause, then run `syncd queue retry --dest {}`",
            r.dead,
            last(),
            r.name
        ));
    }
    if attempts >= max_failures.max(1) {
        return Some(format!("failed {attempts} times in a row{}", last()));
    }
    if running && r.state == STOPPED {
        return Some("its worker stopped".into());
    }
    if running && r.state == UNCONFIGURED && r.pending > 0 {
        return Some(format!(
            "{} changesets are queued for it but the daemon no longer replicates to it; \
             drop them with `syncd queue purge --dest {} --yes`",
            r.pending, r.name
        ));
    }
    None
}

/// Builds a destination's health from its report and live state.
pub fn health(r: Report, live: Option<&Live>, running: bool, max_failures: u32) -> Health {
    let attempts = live.map_or(0, |l| l.attempts);
    let next = match live.map(|l| &l.state) {
        Some(State::BackingOff { until_ms }) => Some(until_ms.div_ceil(1000)),
        _ => None,
    };
    let problem = problem(&r, attempts, running, max_failures);
    Health {
        name: r.name,
        target: r.target,
        state: r.state,
        pending: r.pending,
        dead: r.dead,
        attempts,
        next_attempt_unix: next,
        last_success_unix: r.last_success_unix,
        last_error: r.last_error,
        problem,
        progress: live.and_then(|l| l.progress.clone()),
        delivered_unix_ms: r.delivered_unix_ms,
        checkpoint_pending_unix_ms: r.checkpoint_pending_unix_ms,
        last_checkpoint: r.last_checkpoint,
    }
}

/// Writes an inspection as a table.
pub fn write_table(out: &mut dyn Write, ins: &Inspection) -> std::io::Result<()> {
    if ins.destinations.is_empty() {
        writeln!(out, "no destinations in this store")?;
        return write_unwatched(out, ins.unwatched.as_ref());
    }
    writeln!(
        out,
        "{:<16} {:>8} {:>8} {:>8} {:>5}  {:<12} {:<20} LAST ERROR",
        "DEST", "PENDING", "PATHS", "OLDEST", "DEAD", "STATE", "LAST SUCCESS"
    )?;
    for r in &ins.destinations {
        writeln!(
            out,
            "{:<16} {:>8} {:>8} {:>8} {:>5}  {:<12} {:<20} {}",
            r.name,
            r.pending,
            r.pending_paths,
            r.oldest_pending_age_s.map_or_else(|| "-".into(), age),
            r.dead,
            r.state,
            when(r.last_success_unix),
            r.last_error.as_deref().map_or_else(|| "-".into(), one_line),
        )?;
        for e in r.entries.iter().flatten() {
            match &e.from {
                Some(from) => writeln!(
                    out,
                    "    #{:<8} {:<7} {} -> {}",
                    e.seq,
                    e.kind,
                    shown(from),
                    shown(&e.path)
                )?,
                None => writeln!(out, "    #{:<8} {:<7} {}", e.seq, e.kind, shown(&e.path))?,
            }
        }
    }
    write_unwatched(out, ins.unwatched.as_ref())
}

/// The line about unwatched directories, when there are some.
fn write_unwatched(out: &mut dyn Write, u: Option<&Unwatched>) -> std::io::Result<()> {
    let Some(u) = u.filter(|u| u.count > 0) else {
        return Ok(());
    };
    let more = match u.count.saturating_sub(u.paths.len() as u64) {
        0 => String::new(),
        n => format!(" and {n} more"),
    };
    writeln!(
        out,
        "WARNING: {} directories are not watched ({}): {}{more}; changes in them are found by \
         a periodic sync of each, not by events, until watching them succeeds",
        u.count,
        one_line(u.reason.as_deref().unwrap_or("unknown")),
        u.paths
            .iter()
            .map(|p| shown(p))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// Writes a status report: a line about the daemon, then one line per
/// destination.
pub fn write_status(out: &mut dyn Write, s: &StatusReport) -> std::io::Result<()> {
    match &s.daemon {
        Some(d) => writeln!(
            out,
            "syncd {} running as pid {}, up {} (state {})",
            d.version,
            d.pid,
            age(d.uptime_s),
            s.state_dir
        )?,
        None => writeln!(out, "syncd is not running (state {})", s.state_dir)?,
    }
    write_unwatched(out, s.unwatched.as_ref())?;
    for h in &s.destinations {
        writeln!(out, "{:<16} {}", h.name, describe(h))?;
        if let Some(d) = h.delivered_unix_ms {
            writeln!(
                out,
                "{:<16} every change made before {} is on it{}",
                "",
                utc(d / 1000),
                checkpoint_note(h.checkpoint_pending_unix_ms, h.last_checkpoint)
            )?;
        }
    }
    Ok(())
}

/// One destination's status in words.
/// "; checkpoint 12:00:00 pending" and "; last checkpoint ... done at ...".
fn checkpoint_note(pending: Option<u64>, done: Option<CheckpointDone>) -> String {
    let mut s = String::new();
    if let Some(p) = pending {
        s.push_str(&format!("; checkpoint {} pending", utc(p / 1000)));
    }
    if let Some(d) = done {
        s.push_str(&format!(
            "; last checkpoint {} completed {}",
            utc(d.at_unix_ms / 1000),
            utc(d.completed_unix_ms / 1000)
        ));
    }
    s
}

fn describe(h: &Health) -> String {
    if let Some(p) = &h.problem {
        return format!("ERROR: {}", one_line(p));
    }
    let err = h.last_error.as_deref().map_or_else(String::new, one_line);
    if let (Some(p), "syncing") = (&h.progress, h.state.as_str()) {
        return format!(
            "syncing, {} changesets pending; full sync: {}",
            h.pending,
            p.describe()
        );
    }
    match h.state.as_str() {
        "in_sync" if h.pending == 0 => {
            format!("in sync (last success {})", when(h.last_success_unix))
        }
        "in_sync" | "syncing" => format!("syncing, {} changesets pending", h.pending),
        "backing_off" => format!(
            "backing off until {} after {} failed attempts, {} changesets pending: {err}",
            when(h.next_attempt_unix),
            h.attempts,
            h.pending
        ),
        state => format!(
            "{}, {} changesets pending, {} dead",
            state.replace('_', " "),
            h.pending,
            h.dead
        ),
    }
}

/// An age as `42s`, `7m05s`, `3h12m`, `2d04h`.
pub fn age(s: f64) -> String {
    let s = s.max(0.0) as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86400, s % 86400 / 3600),
    }
}

fn when(unix: Option<u64>) -> String {
    unix.map_or_else(|| "never".into(), crate::observe::logger::utc)
}

/// The root is listed as `.` so that an empty path is visible.
fn shown(path: &str) -> &str {
    if path.is_empty() {
        "."
    } else {
        path
    }
}

/// A message on one line, shortened: control characters (rsync's stderr
/// can hold escaped names) become spaces.
fn one_line(s: &str) -> String {
    let t: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if t.chars().count() > 160 {
        t.chars().take(157).collect::<String>() + "..."
    } else {
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_are_short() {
        assert_eq!(age(5.2), "5s");
        assert_eq!(age(425.0), "7m05s");
        assert_eq!(age(3.0 * 3600.0 + 720.0), "3h12m");
        assert_eq!(age(2.0 * 86400.0 + 4.0 * 3600.0), "2d04h");
    }

    fn rep(dead: u64, state: &str, pending: u64) -> Report {
        Report {
            name: "b".into(),
            target: "/b/".into(),
            pending,
            pending_paths: pending,
            oldest_pending_age_s: None,
            dead,
            state: state.into(),
            last_success_unix: None,
            last_error: Some("rsync exited with 23\nnext".into()),
            delivered_unix_ms: Some(5_000),
            checkpoint_pending_unix_ms: None,
            last_checkpoint: Some(CheckpointDone {
                at_unix_ms: 4_000,
                completed_unix_ms: 4_500,
            }),
            entries: None,
        }
    }

    #[test]
    fn error_means_dead_letters_repeated_failures_or_a_lost_worker() {
        assert_eq!(problem(&rep(0, "backing_off", 3), 2, true, 5), None);
        assert_eq!(problem(&rep(0, "syncing", 9), 0, true, 5), None);
        let p = problem(&rep(2, "in_sync", 0), 0, true, 5).unwrap();
        assert!(p.contains("2 changesets are dead letters"), "{p}");
        assert!(p.contains("queue retry --dest b"), "{p}");
        assert!(!p.contains('\n'), "{p}");
        assert!(problem(&rep(0, "backing_off", 3), 5, true, 5).is_some());
        assert!(problem(&rep(0, STOPPED, 0), 0, true, 5).is_some());
        assert_eq!(problem(&rep(0, STOPPED, 4), 0, false, 5), None);
        assert!(problem(&rep(0, UNCONFIGURED, 1), 0, true, 5).is_some());
        assert_eq!(problem(&rep(0, UNCONFIGURED, 0), 0, true, 5), None);
    }

    #[test]
    fn a_full_sync_shows_its_progress() {
        let mut live = Live {
            state: State::Syncing,
            persisted: DestStatus::default(),
            attempts: 0,
            counters: Default::default(),
            progress: Some(crate::observe::status::Progress {
                percent: Some(45),
                bytes_done: 1_200_000_000,
                bytes_total: Some(2_700_000_000),
                files_done: Some(12_000),
                files_total: None,
                eta_s: Some(190),
                elapsed_s: 60,
            }),
        };
        let h = health(rep(0, "syncing", 1), Some(&live), true, 5);
        assert_eq!(
            describe(&h),
            "syncing, 1 changesets pending; full sync: 45% (1.2 GB of 2.7 GB), 12,000 files, \
             ETA 0:03:10"
        );
        let json = serde_json::to_value(&h).unwrap();
        assert_eq!(json["progress"]["percent"], 45);
        assert_eq!(json["progress"]["eta_s"], 190);
        live.progress = None;
        let h = health(rep(0, "syncing", 1), Some(&live), true, 5);
        assert!(serde_json::to_value(&h).unwrap()["progress"].is_null());
        assert_eq!(describe(&h), "syncing, 1 changesets pending");
    }

    #[test]
    fn unwatched_directories_are_reported_on_one_line_and_in_json() {
        let s = StatusReport {
            daemon: None,
            state_dir: "/s".into(),
            healthy: false,
            destinations: Vec::new(),
            unwatched: Some(Unwatched {
                count: 12,
                paths: vec![escape(b"a\nb"), "c".into()],
                reason: Some("permission denied".into()),
            }),
        };
        let mut out = Vec::new();
        write_status(&mut out, &s).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(
            text.contains(
                "WARNING: 12 directories are not watched (permission denied): a\\x0ab, c and \
                 10 more;"
            ),
            "{text}"
        );
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["unwatched"]["count"], 12);
        assert_eq!(json["unwatched"]["paths"][1], "c");
        assert_eq!(json["unwatched"]["reason"], "permission denied");
        let none = StatusReport {
            unwatched: Some(Unwatched::default()),
            ..s
        };
        let mut out = Vec::new();
        write_status(&mut out, &none).unwrap();
        assert_eq!(String::from_utf8(out).unwrap().lines().count(), 1);
    }

    #[test]
    fn an_entry_with_a_newline_stays_on_its_line() {
        let mut r = rep(0, "in_sync", 1);
        r.entries = Some(vec![PendingPath {
            seq: 1,
            kind: "file".into(),
            path: escape(b"evil\nDEST 0 0"),
            from: None,
        }]);
        let mut out = Vec::new();
        write_table(
            &mut out,
            &Inspection {
                destinations: vec![r],
                unwatched: None,
            },
        )
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.lines().count(), 3, "{text}");
        assert!(text.contains("evil\\x0aDEST 0 0"), "{text}");
    }
}
