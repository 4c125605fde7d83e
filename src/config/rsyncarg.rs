//! The checks of `rsync-arg`: syncd acknowledges a changeset when rsync
//! exits 0, so an extra rsync option that can make a successful exit mean
//! "not delivered" (a dry run, a size limit, `--existing`, ...) would lose
//! changes silently, and one that breaks how syncd drives rsync (the file
//! list, the deletions, the remote shell) would make every run wrong. Both
//! kinds are refused, with an error that names the option. An argument is
//! parsed as rsync's popt parses it: a bundle of short flags (`-vn`) is
//! each flag, and a value may be attached (`-e ssh`, `--bwlimit=1m`).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

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
pub fn secludes_args(a: &OsStr) -> bool {
    options_in(a.as_bytes())
        .iter()
        .any(|o| ["s", "secluded-args", "protect-args"].contains(&o.name.as_str()))
}

pub fn check_rsync_arg(value: &OsStr) -> Result<(), String> {
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
    use crate::config::destopts::DestOptions;

    fn set(o: &mut DestOptions, k: &str, v: &str) -> Result<(), String> {
        o.set(k, OsStr::new(v))
    }

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
}
