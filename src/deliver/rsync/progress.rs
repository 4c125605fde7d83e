//! What rsync prints on stdout, turned into numbers: the progress of a full
//! sync and the totals of every run.
//!
//! Every run gets `--info=stats2`, whose `Total bytes sent:` line feeds the
//! `syncd_bytes_sent_total` counter. A run that contains a full sync of the
//! root also gets `--info=progress2 --no-inc-recursive`: rsync then prints
//! one line per transferred file (and one a second inside a big file) with
//! the bytes sent so far, the percentage of the file list's total size, and
//! `to-chk=LEFT/ALL`. Without incremental recursion that total covers the
//! whole tree from the first line; with it, it covers only the directories
//! scanned so far and the percentage means nothing. The price is memory:
//! each rsync process then holds the whole file list, about 100 bytes per
//! file (measured in the README), for the full sync only. rsync does not print
//! the total itself, so [`Tracker`] narrows it down from the percentages it
//! has seen (each line bounds it), and computes the ETA from the byte rate.
//! Parsing is pure and tolerant: a line that is not rsync's is ignored, so
//! a file name printed by a user's `-v` can at worst skew a figure, never
//! fail a run.

use std::time::Instant;

use crate::observe::status::Progress;

/// The totals rsync prints at the end of a run (`--info=stats2`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// `Total bytes sent:` (the whole stream: data, file list, checksums).
    pub bytes_sent: Option<u64>,
    /// `Total file size:`.
    pub total_size: Option<u64>,
    /// `Number of files:`.
    pub files: Option<u64>,
}

/// One `--info=progress2` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    pub bytes: u64,
    pub percent: u8,
    /// `LEFT/ALL` of `to-chk` (or `ir-chk`), when the line has it.
    pub to_check: Option<(u64, u64)>,
}

/// Follows one run's stdout.
#[derive(Debug, Clone)]
pub struct Tracker {
    started: Instant,
    /// When the first progress line came, and the bytes it showed.
    first: Option<(Instant, u64)>,
    last: Option<Sample>,
    /// Bounds of the total size, from the percentages seen so far.
    lo: u64,
    hi: Option<u64>,
    stats: Stats,
}

impl Tracker {
    pub fn new(started: Instant) -> Tracker {
        Tracker {
            started,
            first: None,
            last: None,
            lo: 0,
            hi: None,
            stats: Stats::default(),
        }
    }

    /// Takes one stdout line (split at `\n` or `\r`), seen at `now`.
    pub fn line(&mut self, line: &[u8], now: Instant) {
        let Ok(text) = std::str::from_utf8(line) else {
            return;
        };
        if let Some(s) = parse_progress(text) {
            self.sample(s, now);
        } else {
            parse_stats(text, &mut self.stats);
        }
    }

    fn sample(&mut self, s: Sample, now: Instant) {
        if self.first.is_none() {
            self.first = Some((now, s.bytes));
        }
        let (lo, hi) = bounds(s.bytes, s.percent);
        let (nlo, nhi) = (self.lo.max(lo), min_opt(self.hi, hi));
        // Bounds that contradict each other mean the total changed (rsync's
        // list grew): start over from this line.
        if nhi.is_some_and(|h| nlo > h) {
            (self.lo, self.hi) = (lo, hi);
        } else {
            (self.lo, self.hi) = (nlo, nhi);
        }
        self.last = Some(s);
    }

    /// The totals seen so far (complete once rsync exited).
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The progress at `now`.
    pub fn progress(&self, now: Instant) -> Progress {
        let elapsed_s = now.saturating_duration_since(self.started).as_secs();
        let Some(s) = self.last else {
            return Progress {
                elapsed_s,
                ..Progress::default()
            };
        };
        let total = self.hi.map(|hi| self.lo.midpoint(hi).max(s.bytes));
        let eta_s = match (self.first, total) {
            (Some((t0, b0)), Some(total)) if s.bytes > b0 => {
                let secs = now.saturating_duration_since(t0).as_secs_f64();
                let rate = (s.bytes - b0) as f64 / secs.max(0.001);
                Some(((total - s.bytes) as f64 / rate).round() as u64)
            }
            _ => None,
        };
        Progress {
            percent: Some(s.percent),
            bytes_done: s.bytes,
            bytes_total: total,
            files_done: s.to_check.map(|(left, all)| all.saturating_sub(left)),
            files_total: s.to_check.map(|(_, all)| all),
            eta_s,
            elapsed_s,
        }
    }
}

fn min_opt(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

/// The total size a line allows: rsync prints `floor(100 · bytes / total)`
/// (100 only when equal), so `100·b/(p+1) < total <= 100·b/p`; one byte
/// of slack on each side absorbs its floating-point rounding.
fn bounds(b: u64, p: u8) -> (u64, Option<u64>) {
    let b = b as u128;
    let p = u128::from(p.min(100));
    if p >= 100 {
        return (b as u64, Some(b as u64));
    }
    let lo = (100 * b / (p + 1)).max(b) as u64;
    let hi = (p > 0).then(|| (100 * b / p + 1).min(u64::MAX as u128) as u64);
    (lo, hi)
}

/// Parses an `--info=progress2` line:
/// `  1,850,000  17%    2.02MB/s    0:00:03 (xfr#37, to-chk=263/303)`.
pub fn parse_progress(line: &str) -> Option<Sample> {
    let mut it = line.split_whitespace();
    let bytes = number(it.next()?)?;
    let percent: u8 = it.next()?.strip_suffix('%')?.parse().ok()?;
    if percent > 100 || !it.next()?.ends_with("B/s") {
        return None;
    }
    let time = it.next()?;
    if !time.contains(':') {
        return None;
    }
    let rest: Vec<&str> = it.collect();
    let to_check = rest.iter().find_map(|w| {
        let w = w.trim_end_matches(')');
        let v = w
            .strip_prefix("to-chk=")
            .or_else(|| w.strip_prefix("ir-chk="))?;
        let (left, all) = v.split_once('/')?;
        Some((left.parse().ok()?, all.parse().ok()?))
    });
    Some(Sample {
        bytes,
        percent,
        to_check,
    })
}

/// Reads the `--info=stats2` lines it knows into `stats`.
pub fn parse_stats(line: &str, stats: &mut Stats) {
    let line = line.trim();
    let first_number = |s: &str| s.split_whitespace().next().and_then(number);
    if let Some(v) = line.strip_prefix("Total bytes sent:") {
        stats.bytes_sent = first_number(v).or(stats.bytes_sent);
    } else if let Some(v) = line.strip_prefix("Total file size:") {
        stats.total_size = first_number(v).or(stats.total_size);
    } else if let Some(v) = line.strip_prefix("Number of files:") {
        stats.files = first_number(v).or(stats.files);
    } else if let Some(v) = line.strip_prefix("sent ") {
        // The stats1 summary, when a user's flags leave only that.
        if stats.bytes_sent.is_none() && v.split_whitespace().nth(1) == Some("bytes") {
            stats.bytes_sent = first_number(v);
        }
    }
}

/// A number as rsync prints it: digits with `,` or `.` between thousands,
/// or, with `-hh`, a decimal with a K/M/G/T/P suffix (powers of 1000).
fn number(w: &str) -> Option<u64> {
    let last = w.chars().last()?;
    if let Some(exp) = "KMGTP".find(last.to_ascii_uppercase()) {
        let v: f64 = w[..w.len() - 1].replace(',', ".").parse().ok()?;
        return Some((v * 1000f64.powi(exp as i32 + 1)) as u64);
    }
    if !w
        .bytes()
        .all(|b| b.is_ascii_digit() || b == b',' || b == b'.')
    {
        return None;
    }
    let digits: String = w.chars().filter(char::is_ascii_digit).collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::status::{bytes, clock};
    use std::time::Duration;

    #[test]
    fn progress_lines_parse_and_others_do_not() {
        assert_eq!(
            parse_progress("      1,850,000  17%    2.02MB/s    0:00:00 (xfr#37, to-chk=263/303)"),
            Some(Sample {
                bytes: 1_850_000,
                percent: 17,
                to_check: Some((263, 303))
            })
        );
        assert_eq!(
            parse_progress("         32,768   0%    0.00kB/s    0:00:00  "),
            Some(Sample {
                bytes: 32_768,
                percent: 0,
                to_check: None
            })
        );
        let ir = parse_progress("9.999.000 3% 1,5MB/s ??:??:?? (xfr#2, ir-chk=10/30)").unwrap();
        assert_eq!((ir.bytes, ir.to_check), (9_999_000, Some((10, 30))));
        assert_eq!(
            parse_progress("1.85M  17%  2.02MB/s 0:00:01")
                .unwrap()
                .bytes,
            1_850_000
        );
        for not in [
            "",
            "Number of files: 303 (reg: 300, dir: 3)",
            "sent 10 bytes  received 5 bytes  1.00 bytes/sec",
            "12 170% 1kB/s 0:00:00",
            "a/b 17% 1kB/s 0:00:00",
        ] {
            assert_eq!(parse_progress(not), None, "{not:?}");
        }
    }

    #[test]
    fn stats_give_the_bytes_sent() {
        let mut s = Stats::default();
        for l in [
            "Number of files: 303 (reg: 300, dir: 3)",
            "Total file size: 10,300,000 bytes",
            "Total bytes sent: 10,319,218",
            "Total bytes received: 5,746",
            "sent 10,319,218 bytes  received 5,746 bytes  1,877,266.18 bytes/sec",
        ] {
            parse_stats(l, &mut s);
        }
        assert_eq!(
            s,
            Stats {
                bytes_sent: Some(10_319_218),
                total_size: Some(10_300_000),
                files: Some(303)
            }
        );
        let mut only_summary = Stats::default();
        parse_stats(
            "sent 1.234 bytes  received 5 bytes  9 bytes/sec",
            &mut only_summary,
        );
        assert_eq!(only_summary.bytes_sent, Some(1234));
    }

    #[test]
    fn the_total_is_narrowed_from_the_percentages() {
        let t0 = Instant::now();
        let mut t = Tracker::new(t0);
        assert_eq!(t.progress(t0).percent, None);
        assert!(t.progress(t0).describe().starts_with("scanning"));
        // A 10,300,000-byte tree sent in 50,000-byte files, 1 MB/s.
        let total = 10_300_000u64;
        let mut b = 0;
        let mut at = t0;
        while b < total / 2 {
            b += 50_000;
            at += Duration::from_millis(50);
            let pct = 100 * b / total;
            let line = format!(
                "{b} {pct}% 1.00MB/s 0:00:00 (xfr#{}, to-chk={}/303)",
                b / 50_000,
                303 - b / 50_000
            );
            t.line(line.as_bytes(), at);
        }
        let p = t.progress(at);
        let est = p.bytes_total.unwrap();
        assert!(est.abs_diff(total) < total / 100, "{est}");
        assert_eq!(p.percent, Some(50));
        let eta = p.eta_s.unwrap();
        assert!((4..=6).contains(&eta), "{eta}");
        assert_eq!((p.files_done, p.files_total), Some((103, 303)).unzip());
        assert_eq!(
            p.describe(),
            format!(
                "50% ({} of {}), 103 of 303 files, ETA {}",
                bytes(b),
                bytes(est),
                clock(eta)
            )
        );
    }

    #[test]
    fn a_total_that_grows_restarts_the_estimate() {
        let t0 = Instant::now();
        let mut t = Tracker::new(t0);
        t.line(b"500 50% 1kB/s 0:00:00", t0);
        assert!(t.progress(t0).bytes_total.unwrap().abs_diff(1000) < 25);
        // The list grew to 10,000 bytes: 600 is now 6%.
        t.line(b"600 6% 1kB/s 0:00:00", t0);
        let est = t.progress(t0).bytes_total.unwrap();
        assert!((8_500..=10_100).contains(&est), "{est}");
    }
}
