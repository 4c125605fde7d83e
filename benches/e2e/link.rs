//! What a run's destination is reached through, and the bytes that crossed.
//!
//! A run with an ssh destination (an ssh workload, or lsyncd's
//! `default.rsyncssh`, which always needs ssh) gets its own counting
//! [`Proxy`] in front of the benchmark's sshd, so the bytes over ssh are
//! those of that run alone, both directions, everything included. Beside
//! that, rsync's own count ("Total bytes sent", what the sending rsync
//! wrote to its peer, file list and deltas included) where it is known:
//! syncd logs it per run (`… in 0.11s, 929 B sent`); lsyncd's rsync runs
//! through a wrapper that adds `--stats`; the reference passes `--stats`.
//! On a local destination that is the only measure (the pipe between
//! rsync's sender and receiver); over ssh it leaves out lsyncd's `mv`
//! commands and syncd's SFTP renames, which the proxy sees.

use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::proxy::{Count, Proxy};
use crate::ssh::{Remote, Sshd};

/// A run's way to DEST.
pub struct Link {
    proxy: Option<Proxy>,
    remote: Option<Remote>,
}

impl Link {
    /// A local link, or (with `ssh`) a new proxy in front of `sshd`.
    pub fn new(sshd: Option<&Sshd>, ssh: bool) -> Result<Link> {
        if !ssh {
            return Ok(Link {
                proxy: None,
                remote: None,
            });
        }
        let sshd = sshd.context("this run needs the benchmark's sshd, which did not start")?;
        let proxy = Proxy::start(sshd.port)?;
        let remote = sshd.remote(proxy.port());
        Ok(Link {
            proxy: Some(proxy),
            remote: Some(remote),
        })
    }

    pub fn remote(&self) -> Option<&Remote> {
        self.remote.as_ref()
    }

    /// The proxy's counters (`None` on a local link).
    pub fn count(&self) -> Option<Count> {
        self.proxy.as_ref().map(Proxy::count)
    }
}

/// The bytes of one change, as far as they are known.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Bytes {
    /// Through the proxy, both directions (ssh destinations).
    pub proxy: Option<Count>,
    /// rsync's "Total bytes sent", summed over the runs.
    pub rsync_sent: Option<u64>,
}

impl Bytes {
    /// The figure the tables show: the proxy's total where there is one,
    /// else rsync's sent bytes.
    pub fn shown(&self) -> Option<u64> {
        self.proxy.map(|c| c.total()).or(self.rsync_sent)
    }
}

/// The bytes rsync sent in every run a syncd log names (`] synced … in
/// 0.11s, 929 B sent`), in `log` (a part of the log).
pub fn syncd_sent(log: &str) -> u64 {
    log.lines()
        .filter(|l| l.contains("] synced "))
        .filter_map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            let i = words.iter().rposition(|w| *w == "sent")?;
            let n: f64 = words.get(i.checked_sub(2)?)?.parse().ok()?;
            let unit = match words.get(i - 1)?.trim_end_matches(',') {
                "B" => 1.0,
                "kB" => 1e3,
                "MB" => 1e6,
                "GB" => 1e9,
                "TB" => 1e12,
                _ => return None,
            };
            Some((n * unit).round() as u64)
        })
        .sum()
}

/// The sum of every `Total bytes sent: 1,234` in rsync `--stats` output.
pub fn stats_sent(text: &str) -> u64 {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("Total bytes sent:"))
        .filter_map(|v| v.trim().replace(',', "").parse::<u64>().ok())
        .sum()
}

/// The length of a file (0 when missing): a mark to read a log from.
pub fn len_of(p: &Path) -> usize {
    std::fs::metadata(p).map_or(0, |m| m.len() as usize)
}

/// A file's text from byte `from` on.
pub fn text_from(p: &Path, from: usize) -> String {
    let b = std::fs::read(p).unwrap_or_default();
    String::from_utf8_lossy(&b[from.min(b.len())..]).into_owned()
}

/// `1.2 MB`, SI units as syncd logs them.
pub fn human(n: u64) -> String {
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
