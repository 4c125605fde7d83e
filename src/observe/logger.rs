//! The logger: one line per event, on stderr (fit for a terminal and for
//! journald) or to the local syslog daemon.
//!
//! Under systemd (`JOURNAL_STREAM` set) each stderr line starts with the
//! `<N>` priority prefix sd-daemon defines and carries no timestamp, since
//! the journal adds its own; elsewhere a line reads
//! `2026-11-26T03:58:24.123Z syncd[42]: WARN message`. With `-s` lines go to
//! `/dev/log` as `<PRI>syncd[PID]: message`, with `--syslog-facility` as
//! pylsyncd had (`-d` keeps them on stderr, also as pylsyncd did). The
//! syslog datagram is written here rather than through the `syslog` crate,
//! whose RFC 3164 formatter unwraps the local time offset and can panic in a
//! multithreaded process. Messages never contain raw path bytes: callers
//! escape names first.

use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use log::{Level, LevelFilter, Log, Metadata, Record};

/// Where log lines go.
enum Sink {
    Stderr {
        journal: bool,
    },
    Syslog {
        socket: Mutex<Option<UnixDatagram>>,
        path: PathBuf,
        facility: u8,
    },
}

struct Logger {
    sink: Sink,
    /// The most verbose level shown for syncd's own modules.
    own: LevelFilter,
    /// The most verbose level shown for dependencies (notify, sled).
    deps: LevelFilter,
}

/// How the operator asked for logs.
#[derive(Debug, Clone)]
pub struct LogConfig {
    pub debug: bool,
    pub verbose: bool,
    pub quiet: bool,
    /// `Some(facility)` to log to syslog.
    pub syslog: Option<String>,
    /// The syslog socket (`/dev/log`).
    pub syslog_socket: PathBuf,
}

fn priority(level: Level) -> u8 {
    match level {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    }
}

/// The level a record is shown at. notify 8.2.2 warns "Unable to remove
/// the path from the watches" for every watched directory that is deleted
/// or moved away (inotify reports it twice, and the second removal finds
/// nothing): routine, not something an operator should be woken for, so
/// notify's inotify backend is heard at debug level only.
fn level_of(target: &str, level: Level) -> Level {
    if target.starts_with("notify::inotify") && level == Level::Warn {
        Level::Debug
    } else {
        level
    }
}

impl Log for Logger {
    fn enabled(&self, m: &Metadata) -> bool {
        let max = if m.target().starts_with("syncd") {
            self.own
        } else {
            self.deps
        };
        level_of(m.target(), m.level()) <= max
    }

    fn log(&self, r: &Record) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let level = level_of(r.target(), r.level());
        match &self.sink {
            Sink::Stderr { journal: true } => {
                let line = format!("<{}>{}\n", priority(level), r.args());
                let _ = std::io::stderr().lock().write_all(line.as_bytes());
            }
            Sink::Stderr { journal: false } => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default();
                let line = format!(
                    "{}.{:03}Z syncd[{}]: {:<5} {}\n",
                    utc_iso(now.as_secs()),
                    now.subsec_millis(),
                    std::process::id(),
                    level,
                    r.args()
                );
                // One write per line, so lines from threads do not interleave.
                let _ = std::io::stderr().lock().write_all(line.as_bytes());
            }
            Sink::Syslog {
                socket,
                path,
                facility,
            } => {
                let pri = u32::from(*facility) * 8 + u32::from(priority(level));
                let line = format!("<{pri}>syncd[{}]: {}", std::process::id(), r.args());
                if let Ok(mut s) = socket.lock() {
                    // syslogd may have restarted: reconnect once on failure.
                    let sent = s.as_ref().is_some_and(|s| s.send(line.as_bytes()).is_ok());
                    if !sent {
                        *s = connect_syslog(path);
                        if let Some(s) = s.as_ref() {
                            let _ = s.send(line.as_bytes());
                        }
                    }
                }
            }
        }
    }

    fn flush(&self) {}
}

fn connect_syslog(path: &Path) -> Option<UnixDatagram> {
    let s = UnixDatagram::unbound().ok()?;
    s.connect(path).ok()?;
    Some(s)
}

/// The syslog facility code of a name (`user`, `daemon`, `local0`…).
pub fn facility(name: &str) -> Option<u8> {
    let n = name.to_ascii_lowercase();
    Some(match n.as_str() {
        "kern" => 0,
        "user" => 1,
        "mail" => 2,
        "daemon" => 3,
        "auth" => 4,
        "syslog" => 5,
        "lpr" => 6,
        "news" => 7,
        "uucp" => 8,
        "cron" => 9,
        "authpriv" => 10,
        "ftp" => 11,
        _ => match n.strip_prefix("local").and_then(|d| d.parse::<u8>().ok()) {
            Some(d) if d <= 7 => 16 + d,
            _ => return None,
        },
    })
}

/// Installs the logger. `debug` shows everything, `verbose` syncd's debug
/// messages, `quiet` errors only; the default is info. An unknown syslog
/// facility is an error.
pub fn init(cfg: &LogConfig) -> Result<(), String> {
    let (own, deps) = match (cfg.debug, cfg.verbose, cfg.quiet) {
        (true, _, _) => (LevelFilter::Trace, LevelFilter::Debug),
        (_, true, _) => (LevelFilter::Debug, LevelFilter::Warn),
        (_, _, true) => (LevelFilter::Error, LevelFilter::Error),
        _ => (LevelFilter::Info, LevelFilter::Warn),
    };
    let sink = match &cfg.syslog {
        Some(name) if !cfg.debug => {
            let facility = facility(name).ok_or_else(|| {
                format!(
                    "unknown syslog facility {name:?}: use user, daemon, local0 to local7, \
                     or another name from syslog(3)"
                )
            })?;
            let path = cfg.syslog_socket.clone();
            Sink::Syslog {
                socket: Mutex::new(connect_syslog(&path)),
                path,
                facility,
            }
        }
        _ => Sink::Stderr {
            journal: std::env::var_os("JOURNAL_STREAM").is_some(),
        },
    };
    if log::set_boxed_logger(Box::new(Logger { sink, own, deps })).is_ok() {
        log::set_max_level(own.max(deps));
    }
    Ok(())
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

    #[test]
    fn notify_s_routine_warnings_are_debug() {
        use log::Level;
        assert_eq!(
            super::level_of("notify::inotify", Level::Warn),
            Level::Debug
        );
        assert_eq!(
            super::level_of("notify::inotify", Level::Error),
            Level::Error
        );
        assert_eq!(super::level_of("syncd::watch", Level::Warn), Level::Warn);
        assert_eq!(super::level_of("sled::pagecache", Level::Warn), Level::Warn);
    }

    #[test]
    fn facilities_follow_syslog_3() {
        assert_eq!(super::facility("USER"), Some(1));
        assert_eq!(super::facility("daemon"), Some(3));
        assert_eq!(super::facility("local7"), Some(23));
        assert_eq!(super::facility("local8"), None);
        assert_eq!(super::facility("nope"), None);
    }
}
