//! The logger: one line per event on stderr, fit for a terminal and for
//! journald.
//!
//! Under systemd (`JOURNAL_STREAM` set) each line starts with the
//! `<N>` priority prefix sd-daemon defines and carries no timestamp, since
//! the journal adds its own; elsewhere a line reads
//! `2026-11-26T03:58:24.123Z syncd[42]: WARN message`. Messages never
//! contain raw path bytes: callers escape names first.

use std::io::Write;

use log::{Level, LevelFilter, Log, Metadata, Record};

struct Logger {
    journal: bool,
    /// The most verbose level shown for syncd's own modules.
    own: LevelFilter,
    /// The most verbose level shown for dependencies (notify, sled).
    deps: LevelFilter,
}

impl Log for Logger {
    fn enabled(&self, m: &Metadata) -> bool {
        let max = if m.target().starts_with("syncd") {
            self.own
        } else {
            self.deps
        };
        m.level() <= max
    }

    fn log(&self, r: &Record) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let line = if self.journal {
            let pri = match r.level() {
                Level::Error => 3,
                Level::Warn => 4,
                Level::Info => 6,
                Level::Debug | Level::Trace => 7,
            };
            format!("<{pri}>{}\n", r.args())
        } else {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            format!(
                "{}.{:03}Z syncd[{}]: {:<5} {}\n",
                utc_iso(now.as_secs()),
                now.subsec_millis(),
                std::process::id(),
                r.level(),
                r.args()
            )
        };
        // One write per line, so lines from threads do not interleave.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

/// Installs the logger. `debug` shows everything, `verbose` syncd's debug
/// messages, `quiet` errors only; the default is info.
pub fn init(debug: bool, verbose: bool, quiet: bool) {
    let (own, deps) = match (debug, verbose, quiet) {
        (true, _, _) => (LevelFilter::Trace, LevelFilter::Debug),
        (_, true, _) => (LevelFilter::Debug, LevelFilter::Warn),
        (_, _, true) => (LevelFilter::Error, LevelFilter::Error),
        _ => (LevelFilter::Info, LevelFilter::Warn),
    };
    let journal = std::env::var_os("JOURNAL_STREAM").is_some();
    if log::set_boxed_logger(Box::new(Logger { journal, own, deps })).is_ok() {
        log::set_max_level(own.max(deps));
    }
}

/// A Unix time as `2026-11-26 03:58:24Z`.
pub fn utc(secs: u64) -> String {
    utc_iso(secs).replace('T', " ") + "Z"
}

/// A Unix time as `2026-11-26T03:58:24` (UTC), by the civil-from-days
/// algorithm, to avoid a date crate for one format.
pub fn utc_iso(secs: u64) -> String {
    let days = (secs / 86400) as i64;
    let rem = secs % 86400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_formats_known_dates() {
        assert_eq!(super::utc_iso(0), "1970-01-01T00:00:00");
        assert_eq!(super::utc_iso(1_795_665_504), "2026-11-26T03:58:24");
        assert_eq!(super::utc(951_782_400), "2000-02-29 00:00:00Z");
    }
}
