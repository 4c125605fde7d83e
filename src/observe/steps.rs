//! How long the main loop's steps take: the loop is the daemon's only
//! reader of events, so while one step runs (an event taken in, a control
//! request answered, a metrics scrape, a commit) no event is read, and the
//! kernel's queue fills. The slowest step is how long event intake paused
//! at worst; `status --json` and the metrics endpoint show these figures
//! so an operator can see a stall instead of guessing at one.

use std::time::Duration;

use crate::observe::status::MainLoop;

/// The upper bounds of the histogram's buckets, in seconds (Prometheus'
/// `le`); the last bucket is everything slower.
pub const BUCKETS_S: [f64; 4] = [0.001, 0.01, 0.1, 1.0];

/// A step slower than this is a pause worth counting on its own.
pub const SLOW: Duration = Duration::from_millis(10);

/// The main loop's step times since the daemon started.
#[derive(Debug, Clone, Default)]
pub struct Steps {
    /// Steps per bucket of [`BUCKETS_S`], then the slower ones.
    counts: [u64; BUCKETS_S.len() + 1],
    sum: Duration,
    slowest: Duration,
    slowest_what: &'static str,
    over_slow: u64,
}

impl Steps {
    /// Counts one step that took `d`, doing `what` (for the log and the
    /// slowest step).
    pub fn record(&mut self, d: Duration, what: &'static str) {
        let s = d.as_secs_f64();
        let i = BUCKETS_S
            .iter()
            .position(|&le| s <= le)
            .unwrap_or(BUCKETS_S.len());
        self.counts[i] += 1;
        self.sum += d;
        if d > self.slowest {
            self.slowest = d;
            self.slowest_what = what;
        }
        if d > SLOW {
            self.over_slow += 1;
            log::debug!(
                "main loop: a step took {:.1} ms ({what}); no event was read meanwhile",
                s * 1e3
            );
        }
    }

    /// The summary `status --json` shows under `daemon.main_loop`.
    pub fn summary(&self) -> MainLoop {
        MainLoop {
            steps: self.counts.iter().sum(),
            slowest_step_ms: self.slowest.as_secs_f64() * 1e3,
            slowest_step: self.slowest_what.to_string(),
            steps_over_10ms: self.over_slow,
        }
    }

    /// The histogram in Prometheus' text format.
    pub fn prometheus(&self, out: &mut String) {
        use std::fmt::Write;
        let name = "syncd_main_loop_step_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Time of each main-loop step (no event is read meanwhile).\n\
             # TYPE {name} histogram"
        );
        let mut cumulative = 0;
        for (le, n) in BUCKETS_S.iter().zip(&self.counts) {
            cumulative += n;
            let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
        }
        let total: u64 = self.counts.iter().sum();
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {total}");
        let _ = writeln!(out, "{name}_sum {}", self.sum.as_secs_f64());
        let _ = writeln!(out, "{name}_count {total}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_fall_in_cumulative_buckets() {
        let mut s = Steps::default();
        for ms in [0, 5, 5, 2000, 50] {
            s.record(
                Duration::from_millis(ms),
                if ms == 2000 { "commit" } else { "event" },
            );
        }
        let m = s.summary();
        assert_eq!((m.steps, m.steps_over_10ms), (5, 2));
        assert_eq!(
            (m.slowest_step_ms, m.slowest_step.as_str()),
            (2000.0, "commit")
        );
        let mut text = String::new();
        s.prometheus(&mut text);
        for line in [
            "syncd_main_loop_step_seconds_bucket{le=\"0.001\"} 1",
            "syncd_main_loop_step_seconds_bucket{le=\"0.01\"} 3",
            "syncd_main_loop_step_seconds_bucket{le=\"0.1\"} 4",
            "syncd_main_loop_step_seconds_bucket{le=\"1\"} 4",
            "syncd_main_loop_step_seconds_bucket{le=\"+Inf\"} 5",
            "syncd_main_loop_step_seconds_count 5",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
    }
}
