//! Per-destination settings: everything that shapes the rsync runs of one
//! destination, in one struct.
//!
//! Every setting has a key (`timeout`, `bwlimit`, `rsh`, ...) and a text
//! value, set through [`DestOptions::set`]. The command line uses it twice:
//! the global flags (`--timeout 30`) set the defaults of every destination,
//! then `--dest-opt NAME:KEY=VALUE` overrides one destination. A config
//! file can fill the same struct through the same method, so the checks
//! and the error messages are the same everywhere. Values are bytes where
//! they are paths or arguments (`OsString`), never assumed UTF-8.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use crate::config::location::{Destination, Place};
use crate::config::rsyncarg::{check_rsync_arg, secludes_args};

/// The keys [`DestOptions::set`] takes, with a one-line description (the
/// `--dest-opt` help and the README list them).
pub const KEYS: &[(&str, &str)] = &[
    ("rsync", "the local rsync program"),
    (
        "timeout",
        "rsync --timeout: seconds without I/O before rsync gives up",
    ),
    (
        "contimeout",
        "seconds to wait for a connection: rsync --contimeout (daemons), ssh ConnectTimeout",
    ),
    (
        "watchdog",
        "end a run that moved less than 64 KiB in this many seconds (0: off)",
    ),
    (
        "rsh",
        "the remote shell for host:path destinations (default $RSYNC_RSH, else ssh)",
    ),
    ("port", "ssh port (host:path) or daemon port (host::module)"),
    ("bwlimit", "rsync --bwlimit, e.g. 500K or 10M"),
    (
        "rsync-arg",
        "one more rsync argument (repeatable; adds to the list)",
    ),
    (
        "partial-dir",
        "where interrupted transfers wait to resume (default .syncd-partial; empty: off)",
    ),
    (
        "control-persist",
        "seconds an idle ssh master connection stays open (0: one connection per run)",
    ),
    ("password-file", "rsync --password-file for daemon modules"),
    (
        "moves",
        "replay renames on the destination (true, the default) or send them as transfers (false)",
    ),
    (
        "exact-mtimes",
        "compare modification times to the nanosecond (true, the default: --modify-window=-1) \
         or to the second (false, for a server that refuses it, such as rrsync)",
    ),
];

/// Everything that shapes the rsync runs of one destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestOptions {
    /// The rsync program (looked up on PATH when not absolute).
    pub program: OsString,
    /// `--timeout`: rsync gives up after this much I/O inactivity. Always
    /// passed; never 0.
    pub timeout_s: u32,
    /// `--contimeout` for daemons and ssh's `ConnectTimeout`.
    pub contimeout_s: u32,
    /// The progress watchdog's limit; 0 turns it off.
    pub watchdog_s: u32,
    /// `--bwlimit`, as rsync reads it.
    pub bwlimit: Option<String>,
    /// `--partial-dir`, a single relative name; `None` turns it off.
    pub partial_dir: Option<OsString>,
    /// Extra rsync arguments, placed before the base and target.
    pub extra: Vec<OsString>,
    /// The remote shell, split into words by rsync's rules.
    pub rsh: Vec<OsString>,
    /// The ssh or daemon port.
    pub port: Option<u16>,
    /// `--password-file` for daemon destinations.
    pub password_file: Option<PathBuf>,
    /// ssh's `ControlPersist`; 0 turns connection reuse off.
    pub control_persist_s: u32,
    /// Where ssh keeps its control sockets. Set by the daemon from the
    /// state directory, not by the user; `None` turns reuse off.
    pub control_dir: Option<PathBuf>,
    /// Replay renames on the destination before the data pass.
    pub moves: bool,
    /// Pass `--modify-window=-1`, so that rsync's quick check compares
    /// modification times to the nanosecond. rrsync, the forced command
    /// rsync ships for keys restricted to rsync, refuses the negative
    /// window (the server sees `-@-1`), so such a destination turns it
    /// off; the runs of the files that events name are sent with
    /// `--ignore-times` either way.
    pub exact_mtimes: bool,
}

impl Default for DestOptions {
    fn default() -> DestOptions {
        DestOptions {
            program: "rsync".into(),
            timeout_s: 60,
            contimeout_s: 30,
            watchdog_s: 600,
            bwlimit: None,
            partial_dir: Some(".syncd-partial".into()),
            extra: Vec::new(),
            rsh: vec!["ssh".into()],
            port: None,
            password_file: None,
            control_persist_s: 300,
            control_dir: None,
            moves: true,
            exact_mtimes: true,
        }
    }
}

fn seconds(key: &str, v: &str, zero_ok: bool) -> Result<u32, String> {
    match v.parse::<u32>() {
        Ok(n) if n <= 7 * 86_400 && (zero_ok || n > 0) => Ok(n),
        _ => Err(format!(
            "{key} must be a whole number of seconds from {} to 604800, not {v:?}",
            if zero_ok { 0 } else { 1 }
        )),
    }
}

fn boolean(key: &str, v: &OsStr) -> Result<bool, String> {
    match text(key, v)? {
        "true" | "yes" | "on" | "1" => Ok(true),
        "false" | "no" | "off" | "0" => Ok(false),
        v => Err(format!("{key} must be true or false, not {v:?}")),
    }
}

fn text<'a>(key: &str, v: &'a OsStr) -> Result<&'a str, String> {
    std::str::from_utf8(v.as_bytes())
        .map_err(|_| format!("{key} must be text, not {:?}", v.to_string_lossy()))
}

impl DestOptions {
    /// Sets one key from its text form; the error says what is accepted.
    pub fn set(&mut self, key: &str, value: &OsStr) -> Result<(), String> {
        match key {
            "rsync" => {
                if value.is_empty() {
                    return Err("rsync must name a program".into());
                }
                self.program = value.to_os_string();
            }
            "timeout" => self.timeout_s = seconds(key, text(key, value)?, false)?,
            "contimeout" => self.contimeout_s = seconds(key, text(key, value)?, false)?,
            "watchdog" => self.watchdog_s = seconds(key, text(key, value)?, true)?,
            "control-persist" => self.control_persist_s = seconds(key, text(key, value)?, true)?,
            "rsh" => {
                let words = crate::config::words::split_command(value)?;
                if words.is_empty() {
                    return Err("rsh must name a program".into());
                }
                self.rsh = words;
            }
            "port" => {
                let v = text(key, value)?;
                self.port = Some(
                    v.parse::<u16>()
                        .ok()
                        .filter(|&p| p > 0)
                        .ok_or_else(|| format!("port must be from 1 to 65535, not {v:?}"))?,
                );
            }
            "bwlimit" => {
                let v = text(key, value)?;
                let num = v.trim_end_matches(|c: char| c.is_ascii_alphabetic());
                let ok = !num.is_empty()
                    && v.len() - num.len() <= 3
                    && num.chars().all(|c| c.is_ascii_digit() || c == '.');
                if !ok {
                    return Err(format!(
                        "bwlimit must be a rate as rsync reads it (e.g. 500K, 10M, 1.5G), not {v:?}"
                    ));
                }
                self.bwlimit = if num.trim_matches(|c| c == '0' || c == '.').is_empty() {
                    None
                } else {
                    Some(v.to_string())
                };
            }
            "rsync-arg" => {
                check_rsync_arg(value)?;
                self.extra.push(value.to_os_string());
            }
            "partial-dir" => {
                let b = value.as_bytes();
                if b.is_empty() {
                    self.partial_dir = None;
                } else if b.contains(&b'/') || b == b"." || b == b".." || b[0] == b'-' {
                    return Err(format!(
                        "partial-dir must be one plain name (no '/', not '.' or '..'), \
                         so rsync keeps it out of the mirror, not {:?}",
                        value.to_string_lossy()
                    ));
                } else {
                    self.partial_dir = Some(value.to_os_string());
                }
            }
            "password-file" => {
                if value.is_empty() {
                    return Err("password-file must name a file".into());
                }
                self.password_file = Some(PathBuf::from(value));
            }
            "moves" => self.moves = boolean(key, value)?,
            "exact-mtimes" => self.exact_mtimes = boolean(key, value)?,
            other => {
                let keys: Vec<&str> = KEYS.iter().map(|(k, _)| *k).collect();
                return Err(format!(
                    "unknown destination option {other:?}; known: {}",
                    keys.join(", ")
                ));
            }
        }
        Ok(())
    }

    /// Refuses settings that mean nothing for `dest`'s kind, so a typo in
    /// a per-destination option is not silently ignored. `keys` are the
    /// keys set for this destination alone.
    pub fn check_for(&self, dest: &Destination, keys: &[String]) -> Result<(), String> {
        let remote_only = [
            "rsh",
            "contimeout",
            "port",
            "control-persist",
            "password-file",
        ];
        let shell_only = ["rsh", "control-persist"];
        let daemon_only = ["password-file"];
        let bad = |k: &str, what: &str| {
            Err(format!(
                "destination {}: {k} has no effect on {what}",
                dest.name
            ))
        };
        for k in keys {
            let k = k.as_str();
            match &dest.place {
                Place::Local { .. } if remote_only.contains(&k) => {
                    return bad(k, "a local destination")
                }
                Place::Shell { .. } if daemon_only.contains(&k) => {
                    return bad(k, "an ssh destination")
                }
                Place::Daemon { .. } if shell_only.contains(&k) => {
                    return bad(k, "an rsync daemon destination")
                }
                _ => {}
            }
        }
        if let Place::Shell { path, .. } = &dest.place {
            if path.starts_with(b"~") && self.extra.iter().any(|a| secludes_args(a)) {
                return Err(format!(
                    "destination {}: with --secluded-args (-s) rsync does not expand the ~ in \
                     {}; write the absolute path instead",
                    dest.name,
                    dest.target.to_string_lossy()
                ));
            }
        }
        if let (Place::Daemon { port: Some(p), .. }, Some(q)) = (&dest.place, self.port) {
            if keys.iter().any(|k| k == "port") && *p != q {
                return Err(format!(
                    "destination {}: its rsync:// URL says port {p}, port= says {q}",
                    dest.name
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn set(o: &mut DestOptions, k: &str, v: &str) -> Result<(), String> {
        o.set(k, OsStr::new(v))
    }

    #[test]
    fn every_key_sets_its_field() {
        let mut o = DestOptions::default();
        for (k, v) in [
            ("rsync", "/opt/rsync"),
            ("timeout", "5"),
            ("contimeout", "7"),
            ("watchdog", "0"),
            ("rsh", "ssh -i '/k ey'"),
            ("port", "2222"),
            ("bwlimit", "1.5M"),
            ("rsync-arg", "--checksum"),
            ("rsync-arg", "-z"),
            ("partial-dir", ".part"),
            ("control-persist", "0"),
            ("password-file", "/etc/pw"),
            ("moves", "false"),
            ("exact-mtimes", "no"),
        ] {
            set(&mut o, k, v).unwrap();
        }
        assert_eq!(o.program, "/opt/rsync");
        assert_eq!((o.timeout_s, o.contimeout_s, o.watchdog_s), (5, 7, 0));
        assert_eq!(o.rsh, ["ssh", "-i", "/k ey"]);
        assert_eq!(o.port, Some(2222));
        assert_eq!(o.bwlimit.as_deref(), Some("1.5M"));
        assert_eq!(o.extra, ["--checksum", "-z"]);
        assert_eq!(o.partial_dir.as_deref(), Some(OsStr::new(".part")));
        assert_eq!(o.control_persist_s, 0);
        assert_eq!(o.password_file.as_deref(), Some(Path::new("/etc/pw")));
        assert!(!o.moves && !o.exact_mtimes);
        assert_eq!(KEYS.len(), 13, "every key is tested above");
        set(&mut o, "partial-dir", "").unwrap();
        assert_eq!(o.partial_dir, None);
        set(&mut o, "bwlimit", "0").unwrap();
        assert_eq!(o.bwlimit, None);
    }

    #[test]
    fn bad_values_are_refused_with_a_reason() {
        let mut o = DestOptions::default();
        for (k, v, needle) in [
            ("timeout", "0", "from 1"),
            ("timeout", "soon", "whole number"),
            ("port", "70000", "65535"),
            ("bwlimit", "fast", "rate"),
            ("rsync-arg", "--ignore-errors", "delete"),
            ("rsync-arg", "--files-from=x", "file list"),
            ("rsync-arg", "-e", "rsh"),
            ("rsync-arg", "-essh", "rsh"),
            ("rsync-arg", "path", "path"),
            ("partial-dir", "a/b", "plain name"),
            ("rsh", "ssh 'open", "trailing"),
            ("nope", "1", "unknown"),
        ] {
            let e = set(&mut o, k, v).unwrap_err();
            assert!(e.contains(needle), "{k}={v}: {e}");
        }
        // Long options that merely start like a refused one pass.
        set(&mut o, "rsync-arg", "--exclude-if-present-x").unwrap();
        let e = set(&mut o, "rsync-arg", "--exclude=*.tmp").unwrap_err();
        assert!(e.contains("use --exclude"), "{e}");
        set(&mut o, "rsync-arg", "--delete-excluded").unwrap();
    }

    /// Every option that can make rsync exit 0 without delivering is
    /// refused in every spelling rsync reads: alone, with a value, and
    /// anywhere in a bundle of short options; the error names the option
    /// and says why.

    #[test]
    fn options_for_another_kind_of_destination_are_refused() {
        let o = DestOptions::default();
        let d = |s: &str| Destination::resolve(OsStr::new(s), Path::new("/")).unwrap();
        let keys = |k: &str| vec![k.to_string()];
        assert!(o.check_for(&d("/backup"), &keys("port")).is_err());
        assert!(o.check_for(&d("/backup"), &keys("bwlimit")).is_ok());
        assert!(o.check_for(&d("h::m"), &keys("rsh")).is_err());
        assert!(o.check_for(&d("h:/x"), &keys("password-file")).is_err());
        assert!(o.check_for(&d("h:/x"), &keys("port")).is_ok());
        let p = DestOptions {
            port: Some(1),
            ..DestOptions::default()
        };
        assert!(p.check_for(&d("rsync://h:2/m"), &keys("port")).is_err());
        for secluded in ["-s", "-avs", "--secluded-args", "--protect-args"] {
            let s = DestOptions {
                extra: vec![secluded.into()],
                ..DestOptions::default()
            };
            let e = s.check_for(&d("h:~/x"), &[]).unwrap_err();
            assert!(e.contains("does not expand the ~"), "{secluded}: {e}");
            assert!(s.check_for(&d("h:/x"), &[]).is_ok());
        }
        let other = DestOptions {
            extra: vec!["--numeric-ids".into(), "--exclude=s".into()],
            ..DestOptions::default()
        };
        assert!(other.check_for(&d("h:~/x"), &[]).is_ok());
    }
}
