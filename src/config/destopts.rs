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
        }
    }
}

/// rsync options that can make a successful exit mean "not delivered",
/// each with its names (long and short, as rsync 3.5.0 spells them) and
/// what it skips. syncd acknowledges a changeset when rsync exits 0, so
/// each would lose changes silently. Left alone after thought:
/// `--delete-excluded` (it deletes destination-only excluded files, but
/// skips nothing), `--copy-dest` and `--link-dest` (the destination still
/// gets every file, copied or hard-linked), `--max-delete` (exit 25,
/// dead-lettered), `--write-batch` (it updates the destination too),
/// `--fuzzy`, `--info` and `--debug`, and negations of attributes
/// (`--no-perms`, `--no-times`, ...: files still arrive, as asked).
const SKIPPING: &[(&[&str], &str)] = &[
    (&["dry-run", "n"], "it only reports what rsync would do"),
    (
        &["list-only"],
        "it lists the destination instead of copying",
    ),
    (
        &["only-write-batch"],
        "it writes a batch file instead of updating the destination",
    ),
    (
        &["read-batch"],
        "it applies a batch file instead of the source's current state",
    ),
    (
        &["existing", "ignore-non-existing"],
        "it skips every file that is new on the source",
    ),
    (
        &["ignore-existing"],
        "it skips every file that already exists on the destination",
    ),
    (
        &["update", "u"],
        "it skips files that are newer on the destination (a skewed clock, a restored file)",
    ),
    (&["max-size"], "it skips files larger than the limit"),
    (&["min-size"], "it skips files smaller than the limit"),
    (
        &["size-only"],
        "it skips files whose size did not change, so a same-size rewrite is never sent",
    ),
    (
        &["modify-window", "@"],
        "syncd passes --modify-window=-1 so that same-size rewrites within one second are \
         sent, and another window skips them",
    ),
    (
        &["append", "append-verify"],
        "it skips files that are as long or longer on the destination, so a rewritten file \
         that shrank is never sent",
    ),
    (
        &["compare-dest"],
        "it skips files found unchanged in DIR, so they never reach the destination",
    ),
    (
        &["ignore-missing-args"],
        "it overrides syncd's --delete-missing-args, so deletions are skipped",
    ),
    (
        &["prune-empty-dirs", "m"],
        "it skips empty directories, so a new empty directory never arrives",
    ),
    (
        &["one-file-system", "x"],
        "syncd watches across mount points, and rsync would skip what lies below one",
    ),
    (
        &["safe-links"],
        "it skips symlinks that point outside the tree",
    ),
    (
        &["no-recursive", "no-r"],
        "syncd relies on -r to send a new directory with its content",
    ),
    (
        &["no-relative", "no-R"],
        "syncd relies on -R; without it the listed paths land in the wrong place",
    ),
    (&["no-links", "no-l"], "it skips symlinks"),
    (
        &["no-devices", "no-specials", "no-D"],
        "it skips devices and special files",
    ),
    (
        &["cvs-exclude", "C"],
        "it excludes files (CVS's list) that syncd queues",
    ),
    (
        &["F"],
        "it reads .rsync-filter files, which exclude files that syncd queues",
    ),
    (
        &["remote-option", "M"],
        "it passes options to the remote rsync that syncd cannot check (--dry-run among them)",
    ),
    (
        &["help", "version", "V"],
        "rsync would print text instead of running",
    ),
];

/// Said after the reason of every option in [`SKIPPING`].
const NOT_DELIVERED: &str = "rsync would exit 0 without delivering every listed change, \
    and syncd would acknowledge changes that never reached the destination";

/// The other rsync options `rsync-arg` refuses, with the reason: they would
/// break the strategy (syncd owns stdin, the file list and its own flags),
/// lose data, or belong to another setting. An option rsync does not know
/// is let through: rsync refuses it with exit 1, which dead-letters the
/// changeset loudly.
const REFUSED: &[(&[&str], &str)] = &[
    (
        &["filter", "f"],
        "an rsync filter does not protect listed paths and excludes files syncd queues; use \
         --exclude: syncd applies it to the queue too",
    ),
    (
        &["exclude"],
        "use --exclude (not --rsync-arg): syncd applies it to the queue too",
    ),
    (
        &["include"],
        "an rsync include does not reach syncd's own filter",
    ),
    (
        &["include-from", "exclude-from"],
        "syncd owns rsync's stdin",
    ),
    (
        &["files-from", "from0", "0", "no-from0"],
        "syncd writes the file list",
    ),
    (
        &["no-force"],
        "syncd relies on --force to replace a directory that became a file",
    ),
    (
        &["ignore-errors"],
        "it makes rsync delete destination files under unreadable source directories",
    ),
    (&["remove-source-files"], "it deletes the source"),
    (
        &["daemon", "config", "dparam", "detach", "no-detach"],
        "it starts rsync as a daemon; syncd runs rsync as a client",
    ),
    (&["server", "sender"], "syncd runs rsync as a client"),
    (&["rsh", "e"], "use --rsh or rsh="),
    (&["partial-dir"], "use --partial-dir or partial-dir="),
    (
        &["timeout", "no-timeout"],
        "use --timeout or timeout= (syncd always bounds a run)",
    ),
    (
        &["contimeout", "no-contimeout"],
        "use --contimeout or contimeout=",
    ),
    (&["port"], "use port="),
    (&["password-file"], "use password-file="),
    (&["bwlimit", "no-bwlimit"], "use --bwlimit or bwlimit="),
];

/// rsync's short options that take a value: in a bundle the rest of the
/// argument is the value (`-T/tmp`, `-avT/tmp`), else the next argument.
const SHORT_WITH_VALUE: &[u8] = b"efBTM@";

/// rsync's long options that take a value (rsync 3.5.0's `--help` and the
/// daemon-mode ones): `--name=VALUE`, or the next argument.
const LONG_WITH_VALUE: &[&str] = &[
    "info",
    "debug",
    "stderr",
    "backup-dir",
    "suffix",
    "chmod",
    "block-size",
    "rsh",
    "rsync-path",
    "max-delete",
    "max-size",
    "min-size",
    "max-alloc",
    "partial-dir",
    "usermap",
    "groupmap",
    "chown",
    "timeout",
    "contimeout",
    "modify-window",
    "temp-dir",
    "compare-dest",
    "copy-dest",
    "link-dest",
    "compress-choice",
    "zc",
    "compress-level",
    "zl",
    "compress-threads",
    "zt",
    "skip-compress",
    "checksum-choice",
    "cc",
    "filter",
    "exclude",
    "exclude-from",
    "include",
    "include-from",
    "files-from",
    "copy-as",
    "address",
    "port",
    "sockopts",
    "outbuf",
    "remote-option",
    "out-format",
    "log-format",
    "log-file",
    "log-file-format",
    "password-file",
    "early-input",
    "bwlimit",
    "stop-after",
    "stop-at",
    "write-batch",
    "only-write-batch",
    "read-batch",
    "protocol",
    "iconv",
    "checksum-seed",
    "confine-root",
    "config",
    "dparam",
];

/// One option as rsync's popt reads it from one argument.
#[derive(Debug, PartialEq, Eq)]
struct Opt {
    /// The name without dashes: `n`, `dry-run`, `no-r`.
    name: String,
    long: bool,
    /// Whether it takes a value that is not in this argument (rsync would
    /// take the next argument).
    value_missing: bool,
}

impl Opt {
    fn shown(&self) -> String {
        if self.long {
            format!("--{}", self.name)
        } else {
            format!("-{}", self.name)
        }
    }
}

/// The options in one argument, as popt reads them: `--name`,
/// `--name=value`, or a bundle of short options (`-avz`) in which one that
/// takes a value ends the bundle with the rest as its value (`-eNAME`).
fn options_in(b: &[u8]) -> Vec<Opt> {
    if let Some(long) = b.strip_prefix(b"--") {
        let (name, has_value) = match long.iter().position(|&c| c == b'=') {
            Some(i) => (&long[..i], true),
            None => (long, false),
        };
        let name = String::from_utf8_lossy(name).into_owned();
        let value_missing = !has_value && LONG_WITH_VALUE.contains(&name.as_str());
        return vec![Opt {
            name,
            long: true,
            value_missing,
        }];
    }
    let mut out = Vec::new();
    let bundle = b.strip_prefix(b"-").unwrap_or(b);
    for (i, &c) in bundle.iter().enumerate() {
        let takes = SHORT_WITH_VALUE.contains(&c);
        out.push(Opt {
            name: String::from_utf8_lossy(&[c]).into_owned(),
            long: false,
            value_missing: takes && i + 1 == bundle.len(),
        });
        if takes {
            break;
        }
    }
    out
}

/// Whether an rsync argument turns on `--secluded-args` (formerly
/// `--protect-args`, short `-s`, also inside a bundle such as `-avs`), with
/// which the remote shell never sees the path, so a leading `~` is taken
/// literally (checked with rsync 3.5.0).
fn secludes_args(a: &OsStr) -> bool {
    options_in(a.as_bytes())
        .iter()
        .any(|o| ["s", "secluded-args", "protect-args"].contains(&o.name.as_str()))
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
            "moves" => {
                self.moves = match text(key, value)? {
                    "true" | "yes" | "on" | "1" => true,
                    "false" | "no" | "off" | "0" => false,
                    v => return Err(format!("moves must be true or false, not {v:?}")),
                }
            }
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

fn check_rsync_arg(value: &OsStr) -> Result<(), String> {
    let b = value.as_bytes();
    let shown = value.to_string_lossy();
    if !b.starts_with(b"-") || b == b"-" {
        return Err(format!(
            "rsync-arg {shown:?} does not start with '-': rsync would read it as a path"
        ));
    }
    if b == b"--" {
        return Err(format!(
            "rsync-arg {shown:?} is refused: it ends rsync's options, and rsync would read \
             what follows as paths"
        ));
    }
    for opt in options_in(b) {
        let skipping = SKIPPING.iter().map(|(n, w)| (n, w, true));
        let refused = REFUSED.iter().map(|(n, w)| (n, w, false));
        let mut all = skipping.chain(refused);
        if let Some((names, why, skips)) = all.find(|(n, _, _)| n.contains(&opt.name.as_str())) {
            let also: Vec<String> = names
                .iter()
                .filter(|n| **n != opt.name)
                .map(|n| match n.len() {
                    1 => format!("-{n}"),
                    _ => format!("--{n}"),
                })
                .collect();
            let aka = match also.is_empty() {
                true => String::new(),
                false => format!(" ({})", also.join(", ")),
            };
            let tail = match skips {
                true => format!("; {NOT_DELIVERED}"),
                false => String::new(),
            };
            return Err(format!(
                "rsync-arg {shown:?} is refused: {}{aka}: {why}{tail}",
                opt.shown()
            ));
        }
        if opt.value_missing {
            let how = if opt.long {
                format!("{}=VALUE", opt.shown())
            } else {
                format!("{}VALUE", opt.shown())
            };
            return Err(format!(
                "rsync-arg {shown:?} is refused: {} takes a value, which must be in the same \
                 argument ({how}): each rsync-arg is checked on its own, and rsync would take \
                 the next argument as the value",
                opt.shown()
            ));
        }
    }
    Ok(())
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
        assert_eq!(KEYS.len(), 12, "every key is tested above");
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
    fn every_option_that_skips_changes_is_refused_in_every_spelling() {
        let mut o = DestOptions::default();
        for (names, _) in SKIPPING.iter().chain(REFUSED) {
            for name in names.iter() {
                let mut forms: Vec<String> = Vec::new();
                if name.len() == 1 {
                    let c = name;
                    forms.push(format!("-{c}"));
                    if !SHORT_WITH_VALUE.contains(&c.as_bytes()[0]) {
                        forms.extend([format!("-v{c}"), format!("-{c}v"), format!("-avz{c}H")]);
                    } else {
                        forms.extend([format!("-v{c}VALUE"), format!("-{c}1")]);
                    }
                } else {
                    forms.push(format!("--{name}"));
                    forms.push(format!("--{name}=1"));
                }
                for f in forms {
                    let e = set(&mut o, "rsync-arg", &f).unwrap_err();
                    let shown = match name.len() {
                        1 => format!("-{name}"),
                        _ => format!("--{name}"),
                    };
                    assert!(
                        e.contains(&format!("refused: {shown}")),
                        "{f}: names {shown}: {e}"
                    );
                }
            }
        }
        for (arg, needle) in [
            ("-vn", "-n (--dry-run): it only reports"),
            ("-nv", "exit 0 without delivering"),
            ("-avzu", "-u (--update)"),
            ("--list-only", "instead of copying"),
            ("--existing", "new on the source"),
            ("--ignore-existing", "already exists"),
            ("--max-size=1M", "larger"),
            ("--min-size=1", "smaller"),
            ("--size-only", "same-size rewrite"),
            ("--append", "shrank"),
            ("--compare-dest=/old", "DIR"),
            ("--ignore-missing-args", "deletions are skipped"),
            ("--only-write-batch=/b", "batch"),
            ("--read-batch=/b", "batch"),
            ("-C", "CVS"),
            ("-F", ".rsync-filter"),
            ("-0", "file list"),
            ("--no-r", "-r"),
            ("--no-R", "-R"),
            ("-M--dry-run", "remote rsync"),
            ("--config=/etc/rsyncd.conf", "daemon"),
            ("--dparam=a=b", "daemon"),
            ("--sender", "client"),
            ("--version", "print text"),
            ("-x", "mount points"),
            ("-m", "empty directory"),
            ("-@0", "--modify-window=-1"),
            ("--no-timeout", "bounds"),
            ("--", "ends rsync's options"),
            ("-", "as a path"),
            ("--chmod", "--chmod=VALUE"),
            ("-avT", "-TVALUE"),
        ] {
            let e = set(&mut o, "rsync-arg", arg).unwrap_err();
            assert!(e.contains(needle), "{arg}: {e}");
            assert!(
                e.contains(&format!("{arg:?}")),
                "{arg}: names the argument: {e}"
            );
        }
        // Harmless options pass, including values that hold a refused
        // letter (a value ends a bundle, as in popt).
        for ok in [
            "-avz",
            "-HAX",
            "-T/tmp/n",
            "-vT/tmp/u",
            "--temp-dir=/x",
            "--chmod=u+rwx",
            "--copy-dest=/prev",
            "--link-dest=/prev",
            "--delete-excluded",
            "--max-delete=100",
            "--write-batch=/b",
            "--fuzzy",
            "-y",
            "--info=progress2",
            "--debug=del2",
            "--no-perms",
            "--no-times",
            "--numeric-ids",
            "--checksum",
            "-c",
            "--inplace",
            "--delete-after",
            "--rsync-path=sudo rsync",
            "--iconv=utf8,latin1",
        ] {
            set(&mut o, "rsync-arg", ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
    }

    #[test]
    fn popt_splits_bundles_and_values() {
        let names = |a: &str| -> Vec<(String, bool)> {
            options_in(a.as_bytes())
                .into_iter()
                .map(|o| (o.name, o.value_missing))
                .collect()
        };
        let v = |v: &[(&str, bool)]| -> Vec<(String, bool)> {
            v.iter().map(|(n, m)| (n.to_string(), *m)).collect()
        };
        assert_eq!(
            names("-avn"),
            v(&[("a", false), ("v", false), ("n", false)])
        );
        assert_eq!(names("-essh -n"), v(&[("e", false)]));
        assert_eq!(names("-ve"), v(&[("v", false), ("e", true)]));
        assert_eq!(names("--max-size=1"), v(&[("max-size", false)]));
        assert_eq!(names("--max-size"), v(&[("max-size", true)]));
        assert_eq!(names("--dry-run"), v(&[("dry-run", false)]));
    }

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
