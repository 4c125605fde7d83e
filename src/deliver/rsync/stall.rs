//! syncd's own progress watchdog for a running rsync.
//!
//! rsync's `--timeout` and ssh's `ServerAlive*` notice a link on which
//! nothing moves. They miss a half-frozen peer: when only one of the two
//! remote rsync processes hangs, the other keeps the connection alive with
//! keep-alive messages and the run hangs forever (measured; ARCHITECTURE.md,
//! "Facts the design rests on"). The watchdog measures progress itself, from
//! the I/O counters of the run's processes (`rchar + wchar` in
//! `/proc/PID/io` of every process in rsync's process group: rsync, its
//! local children, and the ssh client). Those count every byte read or
//! written through pipes, sockets and files, so a file list being built, a
//! file being read for its checksums and data on the wire all count.
//! Keep-alives count too, but they are a few dozen bytes every few
//! seconds; so a run makes *progress* only when its processes moved at
//! least [`MIN_PROGRESS`] bytes since the last progress. A run without
//! progress for the limit is ended by the caller (a retry, like any
//! transport failure). Processes that exit take their counters with them;
//! the watchdog sums only increases per process, so that is no progress
//! and no regression either.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Bytes of I/O that count as progress: far above keep-alive traffic,
/// far below what even a slow link moves in a minute.
pub const MIN_PROGRESS: u64 = 64 * 1024;

/// Watches one rsync run.
pub struct StallWatch {
    limit: Option<Duration>,
    every: Duration,
    started: Instant,
    last_sample: Option<Instant>,
    last_progress: Instant,
    /// The last counter seen per pid.
    seen: HashMap<u32, u64>,
    /// Bytes moved since the last progress.
    moved: u64,
    /// Bytes moved in the whole run.
    total: u64,
}

impl StallWatch {
    /// A watchdog that ends a run after `limit` without progress; `None`
    /// never ends one.
    pub fn new(limit: Option<Duration>) -> StallWatch {
        let now = Instant::now();
        let every = limit
            .map(|l| (l / 4).clamp(Duration::from_millis(100), Duration::from_secs(1)))
            .unwrap_or(Duration::from_secs(1));
        StallWatch {
            limit,
            every,
            started: now,
            last_sample: None,
            last_progress: now,
            seen: HashMap::new(),
            moved: 0,
            total: 0,
        }
    }

    /// Samples the process group `pgid` (at most every quarter of the
    /// limit, and at least once a second) and says why the run should end,
    /// if it should.
    pub fn check(&mut self, pgid: u32) -> Option<String> {
        let limit = self.limit?;
        let now = Instant::now();
        if self
            .last_sample
            .is_some_and(|t| now.duration_since(t) < self.every)
        {
            return None;
        }
        self.last_sample = Some(now);
        self.observe(group_io(pgid), now);
        let idle = now.duration_since(self.last_progress);
        if idle < limit {
            return None;
        }
        Some(format!(
            "no progress for {:.0}s (the watchdog's limit; {} bytes of I/O in that time, \
             {} in the {:.0}s run): the link or the peer hangs",
            idle.as_secs_f64(),
            self.moved,
            self.total,
            now.duration_since(self.started).as_secs_f64()
        ))
    }

    /// Adds one sample of `(pid, rchar + wchar)` pairs.
    fn observe(&mut self, sample: Vec<(u32, u64)>, now: Instant) {
        for (pid, bytes) in sample {
            let before = self.seen.insert(pid, bytes).unwrap_or(0);
            let delta = bytes.saturating_sub(before);
            self.moved += delta;
            self.total += delta;
        }
        if self.moved >= MIN_PROGRESS {
            self.moved = 0;
            self.last_progress = now;
        }
    }
}

/// `rchar + wchar` of every process in process group `pgid`.
fn group_io(pgid: u32) -> Vec<(u32, u64)> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pgrp_of(pid) != Some(pgid) {
            continue;
        }
        if let Some(b) = io_bytes(pid) {
            out.push((pid, b));
        }
    }
    out
}

/// The process group of `pid`, from `/proc/PID/stat` (the fields after
/// the parenthesized command name: state, ppid, pgrp).
fn pgrp_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
    let close = stat.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(&stat[close + 1..]).ok()?;
    rest.split_whitespace().nth(2)?.parse().ok()
}

fn io_bytes(pid: u32) -> Option<u64> {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    let mut sum = 0u64;
    for line in io.lines() {
        if let Some(v) = line
            .strip_prefix("rchar: ")
            .or_else(|| line.strip_prefix("wchar: "))
        {
            sum = sum.saturating_add(v.trim().parse().ok()?);
        }
    }
    Some(sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_is_bytes_beyond_keepalive_noise() {
        let mut w = StallWatch::new(Some(Duration::from_secs(10)));
        let t0 = w.last_progress;
        w.observe(vec![(1, 100), (2, 100)], t0 + Duration::from_secs(1));
        assert_eq!(
            w.last_progress, t0,
            "200 bytes are keep-alives, not progress"
        );
        w.observe(
            vec![(1, 100 + MIN_PROGRESS), (2, 150)],
            t0 + Duration::from_secs(2),
        );
        assert_eq!(w.last_progress, t0 + Duration::from_secs(2));
        // A process that exits is no regression; a new one counts whole.
        w.observe(vec![(3, MIN_PROGRESS)], t0 + Duration::from_secs(3));
        assert_eq!(w.last_progress, t0 + Duration::from_secs(3));
    }

    #[test]
    fn a_silent_process_group_is_ended_after_the_limit() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .process_group(0)
            .spawn()
            .unwrap();
        let pid = child.id();
        let mut w = StallWatch::new(Some(Duration::from_millis(400)));
        let t = Instant::now();
        let why = loop {
            if let Some(why) = w.check(pid) {
                break why;
            }
            assert!(t.elapsed() < Duration::from_secs(3), "watchdog never fired");
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(why.contains("no progress"), "{why}");
        assert!(!w.seen.is_empty(), "the group's process was sampled");
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(StallWatch::new(None).check(pid), None);
    }

    use std::os::unix::process::CommandExt;
}
