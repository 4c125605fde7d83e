//! The command line and the file list of a run.
//!
//! No shell is involved: names travel NUL-separated on stdin, each
//! prefixed with `./` (without it rsync silently drops names that start
//! with `#` or `;`), and argv holds only flags, the base and the target.
//! `--modify-window=-1` makes same-size rewrites in the same second reach
//! the destination (rsync's quick check compares whole seconds).
//! `--partial-dir` (a single relative name, which rsync itself keeps out of
//! transfers and deletions) lets an interrupted large file resume instead
//! of starting over. Every run is bounded: `--timeout` always, and the
//! transport's own bounds ([`super::ssh`] for ssh, `--contimeout` for
//! daemons).

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;

use crate::changeset::{Entry, Kind};
use crate::config::location::{Destination, Place, Source};
use crate::config::DestOptions;

/// Which of the (at most three) runs of a changeset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Run {
    /// Files and gone paths, named by events or found changed by the
    /// restart scan: sent whatever rsync's quick check says
    /// (`--ignore-times`), since a file replaced by another of the same
    /// size and mtime (`cp -p`) is a change the quick check cannot see.
    Files,
    /// New or moved-in trees and full syncs: recursive, with deletions, and
    /// rsync's quick check, so unchanged files below cost a `stat`.
    Trees,
    /// The new names of moves that may have been replayed before (a retry
    /// of a batch, or the first attempt after a stop in the middle of
    /// one): recursive, with deletions, and `--ignore-times`, since a swap
    /// replayed twice leaves two files of the same size and mtime, each
    /// where the other belongs, which the quick check cannot see.
    Resend,
    /// Directories whose own attributes changed, and directory listings
    /// (`./dir/`: its direct children, deleting those gone): not recursive.
    Dirs,
    /// Before the others, for a destination that cannot rename (an rsync
    /// daemon): the new names of files renamed within their directory,
    /// with `--fuzzy`, so each is sent as a delta of its old self, which
    /// is still there (the files run deletes it after).
    Fuzzy,
}

/// The argv (without the program) of a run: the strategy's flags, the
/// totals on stdout (`--info=stats2`; with `progress`, also
/// `--info=progress2` and `--no-inc-recursive`, so that the total is the
/// whole tree's from the first line: see [`crate::deliver::rsync::progress`]), the bounds
/// (`--timeout` always; `-e` with ssh's bounds for remote-shell
/// destinations, `--contimeout` for daemons), the destination's options,
/// then `--`, the base and the target. The user's `rsync-arg`s come after
/// syncd's flags, so `--inc-recursive` there wins over progress.
pub fn argv(
    run: Run,
    source: &Source,
    dest: &Destination,
    opts: &DestOptions,
    progress: bool,
) -> Vec<OsString> {
    let mut a: Vec<OsString> = Vec::new();
    match run {
        Run::Files => a.push("--ignore-times".into()),
        Run::Trees => {
            a.push("-r".into());
            a.push("--delete".into());
        }
        Run::Resend => {
            a.push("-r".into());
            a.push("--delete".into());
            a.push("--ignore-times".into());
        }
        // Deletes only inside the directories listed with a trailing `/`.
        Run::Dirs => a.push("--delete".into()),
        Run::Fuzzy => a.push("--fuzzy".into()),
    }
    for f in [
        "-R",
        "--files-from=-",
        "--from0",
        "--delete-missing-args",
        "--force",
        "-HpltogD",
    ] {
        a.push(f.into());
    }
    if opts.exact_mtimes {
        a.push("--modify-window=-1".into());
    }
    if progress {
        a.push("--info=stats2,progress2".into());
        a.push("--no-inc-recursive".into());
    } else {
        a.push("--info=stats2".into());
    }
    a.extend(transport_args(dest, opts));
    if let Some(bw) = &opts.bwlimit {
        a.push(format!("--bwlimit={bw}").into());
    }
    if let Some(dir) = &opts.partial_dir {
        let mut o = OsString::from("--partial-dir=");
        o.push(dir);
        a.push(o);
    }
    a.extend(opts.extra.iter().cloned());
    let mut base = source.base.as_os_str().as_bytes().to_vec();
    if base.last() != Some(&b'/') {
        base.push(b'/');
    }
    a.push("--".into());
    a.push(OsStr::from_bytes(&base).to_os_string());
    a.push(dest.target.clone());
    a
}

/// The flags that bound a run and carry it to `dest`: `--timeout` always;
/// `-e` with ssh's bounds for remote-shell destinations; `--contimeout`,
/// the port and the password file for daemons. Any rsync that talks to
/// `dest` (a sync, a listing) takes the same.
pub fn transport_args(dest: &Destination, opts: &DestOptions) -> Vec<OsString> {
    let mut a: Vec<OsString> = vec![format!("--timeout={}", opts.timeout_s.max(1)).into()];
    match &dest.place {
        Place::Shell { .. } => {
            if let Some(words) = crate::deliver::rsync::ssh::rsh_words(dest, opts) {
                a.push("-e".into());
                a.push(crate::config::words::join_command(&words));
            }
        }
        Place::Daemon { port, .. } => {
            a.push(format!("--contimeout={}", opts.contimeout_s.max(1)).into());
            if let (None, Some(p)) = (port, opts.port) {
                a.push(format!("--port={p}").into());
            }
            if let Some(f) = &opts.password_file {
                let mut o = OsString::from("--password-file=");
                o.push(f);
                a.push(o);
            }
        }
        Place::Local { .. } => {}
    }
    a
}

/// The `--files-from` input of a run: `./path\0` per entry.
/// A listing ends in `/`, which makes rsync send the directory's direct
/// children (and, with `--delete`, delete those gone) without recursing.
pub fn list(source: &Source, entries: &[&Entry]) -> Vec<u8> {
    let mut v = Vec::new();
    for e in entries {
        v.extend_from_slice(&source.list_entry(&e.path));
        if e.kind == Kind::Listing {
            v.push(b'/');
        }
        v.push(0);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn argv_keeps_names_out_and_ends_options() {
        let s = Source {
            root: "/src/a".into(),
            base: "/src".into(),
            rel: b"a".to_vec(),
        };
        let d = Destination::resolve(OsStr::new("-weird"), Path::new("/dst")).unwrap();
        let a = argv(Run::Trees, &s, &d, &DestOptions::default(), false);
        let n = a.len();
        assert_eq!(
            &a[n - 3..],
            &[OsString::from("--"), "/src/".into(), "/dst/-weird/".into()]
        );
        assert!(a.contains(&"--modify-window=-1".into()));
        let coarse = DestOptions {
            exact_mtimes: false,
            ..DestOptions::default()
        };
        let to_rrsync = argv(Run::Trees, &s, &d, &coarse, false);
        assert!(!to_rrsync
            .iter()
            .any(|w| w.to_string_lossy().contains("modify-window")));
        assert!(a.contains(&"-r".into()));
        let dirs = argv(Run::Dirs, &s, &d, &DestOptions::default(), false);
        assert!(!dirs.contains(&"-r".into()) && dirs.contains(&"--delete".into()));
        assert!(!dirs.contains(&"--ignore-times".into()));
        let resend = argv(Run::Resend, &s, &d, &DestOptions::default(), false);
        for w in ["-r", "--delete", "--ignore-times"] {
            assert!(resend.contains(&w.into()), "{w}");
        }
        let files = argv(Run::Files, &s, &d, &DestOptions::default(), false);
        assert!(!files.contains(&"-r".into()) && !files.contains(&"--delete".into()));
        assert!(files.contains(&"--ignore-times".into()) && !a.contains(&"--ignore-times".into()));
        assert!(a.contains(&"--info=stats2".into()) && !a.contains(&"--no-inc-recursive".into()));
        let user = DestOptions {
            extra: vec!["--inc-recursive".into()],
            ..DestOptions::default()
        };
        let full = argv(Run::Trees, &s, &d, &user, true);
        let at = |w: &str| full.iter().position(|x| x == w).unwrap();
        assert!(full.contains(&"--info=stats2,progress2".into()));
        assert!(
            at("--no-inc-recursive") < at("--inc-recursive"),
            "the user's flag comes later and wins: {full:?}"
        );
    }

    #[test]
    fn each_transport_gets_its_bounds() {
        let s = Source {
            root: "/src".into(),
            base: "/src".into(),
            rel: vec![],
        };
        let opts = DestOptions {
            timeout_s: 7,
            contimeout_s: 4,
            port: Some(2222),
            bwlimit: Some("1M".into()),
            control_dir: Some("/state/ssh".into()),
            ..DestOptions::default()
        };
        let args = |d: &str| -> Vec<String> {
            let d = Destination::resolve(OsStr::new(d), Path::new("/")).unwrap();
            argv(Run::Trees, &s, &d, &opts, false)
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect()
        };
        let has = |a: &[String], x: &str| a.iter().any(|y| y == x);
        for d in ["/local", "h:/x", "h::m/p", "rsync://h:99/m/"] {
            let a = args(d);
            assert!(has(&a, "--timeout=7"), "{d}: {a:?}");
            assert!(has(&a, "--bwlimit=1M"), "{d}: {a:?}");
            assert!(has(&a, "--partial-dir=.syncd-partial"), "{d}: {a:?}");
        }
        let local = args("/local");
        assert!(!local
            .iter()
            .any(|x| x == "-e" || x.starts_with("--contimeout")));
        let ssh = args("u@h:/x");
        let i = ssh.iter().position(|x| x == "-e").unwrap();
        assert!(ssh[i + 1].starts_with("ssh -o BatchMode=yes -o ConnectTimeout=4"));
        assert!(ssh[i + 1].contains("-o ControlPath=/state/ssh/"));
        assert!(ssh[i + 1].ends_with("-p 2222"));
        assert!(!ssh.iter().any(|x| x.starts_with("--contimeout")));
        let daemon = args("h::m/p");
        assert!(has(&daemon, "--contimeout=4") && has(&daemon, "--port=2222"));
        assert!(!has(&daemon, "-e"));
        let url = args("rsync://h:99/m/");
        assert!(
            !url.iter().any(|x| x.starts_with("--port")),
            "the URL's port wins"
        );
    }

    #[test]
    fn list_is_nul_separated_with_dot_slash() {
        let s = Source {
            root: "/r".into(),
            base: "/r".into(),
            rel: vec![],
        };
        let es = [
            Entry::new(Kind::File, b"#c\nx".to_vec()),
            Entry::full(),
            Entry::new(Kind::Listing, b"d".to_vec()),
            Entry::new(Kind::Listing, b"".to_vec()),
        ];
        let refs: Vec<&Entry> = es.iter().collect();
        assert_eq!(list(&s, &refs), b"./#c\nx\0.\0./d/\0./\0");
    }
}
