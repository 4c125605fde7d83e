//! What an rsync (or ssh) exit status means for the changesets of a run.
//!
//! This module owns the exit-code policy, as one table ([`POLICY`]) that
//! the README's "Remote destinations and exit codes" table mirrors (a unit
//! test compares the two). Three outcomes exist: *success* acks the
//! changesets; *retry* keeps them queued and tries again with exponential
//! backoff, jitter and a cap, forever, because the cause (a network fault,
//! a full or read-only destination, a timeout) can go away by itself;
//! *fatal* means it will not (a usage error, a missing remote rsync, a
//! rejected host key), so the worker tries a few times and then moves the
//! changesets to the dead-letter tree, loudly. Nothing is ever dropped.
//!
//! It is finer than lsyncd's table in two ways. Code 23 ("partial transfer
//! due to error") is a retry, not a success: lsyncd's "23 = ok" lost 580 of
//! 600 files against a destination that was read-only for 30 s. And the
//! codes that mix transient and permanent causes (255 from ssh, 5 from a
//! daemon, 12) are refined by what rsync or ssh printed: a failed host key
//! check, a refused key or password, or an unknown module is fatal, while a
//! refused or dropped connection stays a retry.

/// What an exit status means for the changesets of the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Done: ack.
    Success,
    /// Transient: keep queued, back off, try again, forever.
    Retry,
    /// Will not fix itself: retry a few times, then dead letters, loudly.
    Fatal,
}

impl Class {
    /// The word the README's table uses.
    pub fn word(self) -> &'static str {
        match self {
            Class::Success => "success",
            Class::Retry => "retry",
            Class::Fatal => "fatal",
        }
    }
}

/// The policy, one row per exit code rsync documents (plus ssh's 255 and
/// the shell's 126/127). Codes not listed are fatal: syncd cannot tell
/// what they mean, so a human should look.
pub const POLICY: &[(i32, Class, &str)] = &[
    (0, Class::Success, "success"),
    (
        24,
        Class::Success,
        "partial transfer due to vanished source files",
    ),
    (3, Class::Retry, "errors selecting input/output files, dirs"),
    (5, Class::Retry, "error starting client-server protocol"),
    (6, Class::Retry, "daemon unable to append to log-file"),
    (10, Class::Retry, "error in socket I/O"),
    (11, Class::Retry, "error in file I/O"),
    (12, Class::Retry, "error in rsync protocol data stream"),
    (14, Class::Retry, "error in IPC code"),
    (20, Class::Retry, "received SIGUSR1 or SIGINT"),
    (21, Class::Retry, "some error returned by waitpid()"),
    (22, Class::Retry, "error allocating core memory buffers"),
    (23, Class::Retry, "partial transfer due to error"),
    (30, Class::Retry, "timeout in data send/receive"),
    (35, Class::Retry, "timeout waiting for daemon connection"),
    (255, Class::Retry, "ssh or connection failure"),
    (1, Class::Fatal, "syntax or usage error"),
    (2, Class::Fatal, "protocol incompatibility"),
    (4, Class::Fatal, "requested action not supported"),
    (13, Class::Fatal, "errors with program diagnostics"),
    (25, Class::Fatal, "the --max-delete limit stopped deletions"),
    (126, Class::Fatal, "remote command could not be run"),
    (127, Class::Fatal, "remote command not found"),
];

/// A line of rsync's or ssh's stderr that says a failure is permanent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hint {
    /// ssh rejected the host key (unknown or changed).
    HostKey,
    /// ssh or the daemon refused the credentials.
    Auth,
    /// The daemon has no such module.
    UnknownModule,
    /// ssh cannot parse its configuration or command line.
    SshConfig,
    /// The key's forced command, rsync's `rrsync`, refused the command
    /// line: it does not take a negative `--modify-window`.
    Rrsync,
}

impl Hint {
    fn what(self) -> &'static str {
        match self {
            Hint::HostKey => "the host key was rejected",
            Hint::Auth => "authentication was refused",
            Hint::UnknownModule => "the daemon has no such module",
            Hint::SshConfig => "ssh rejected its configuration",
            Hint::Rrsync => {
                "the server's forced command (rrsync) refused the rsync command: rrsync does \
                 not accept --modify-window=-1; set exact-mtimes=false for this destination \
                 (--dest-opt NAME:exact-mtimes=false)"
            }
        }
    }
}

/// The permanent cause a stderr line reports, if any.
pub fn hint(line: &str) -> Option<Hint> {
    if line.contains("Host key verification failed") {
        return Some(Hint::HostKey);
    }
    if line.contains("@ERROR: auth failed") || line.contains("Too many authentication failures") {
        return Some(Hint::Auth);
    }
    // ssh says "Permission denied (publickey,password)."; rsync's own
    // "Permission denied (13)" is a file-system error and stays a retry.
    if let Some(i) = line.find("Permission denied (") {
        let next = line[i + "Permission denied (".len()..].chars().next();
        if next.is_some_and(|c| c.is_ascii_alphabetic()) {
            return Some(Hint::Auth);
        }
    }
    if line.contains("@ERROR: Unknown module") {
        return Some(Hint::UnknownModule);
    }
    if line.contains("Bad configuration option") || line.contains("Bad owner or permissions") {
        return Some(Hint::SshConfig);
    }
    if line.contains("rrsync error: invalid rsync-command syntax or options") {
        return Some(Hint::Rrsync);
    }
    None
}

/// Classifies an exit status. `code` is `None` when rsync was killed by a
/// signal (the watchdog, an OOM kill): a retry. `hint` is the first
/// permanent cause seen on stderr; it turns the mixed codes (5, 12, 255)
/// fatal.
pub fn classify(code: Option<i32>, hint: Option<Hint>) -> Class {
    let Some(code) = code else {
        return Class::Retry;
    };
    let class = POLICY
        .iter()
        .find(|(c, _, _)| *c == code)
        .map(|(_, class, _)| *class)
        .unwrap_or(Class::Fatal);
    match (class, hint) {
        (Class::Retry, Some(_)) if matches!(code, 5 | 12 | 255) => Class::Fatal,
        _ => class,
    }
}

/// rsync's words for an exit code (from its manual), for logs.
pub fn meaning(code: i32) -> &'static str {
    POLICY
        .iter()
        .find(|(c, _, _)| *c == code)
        .map(|(_, _, m)| *m)
        .unwrap_or("unknown exit code")
}

/// Why a hint made a run fatal, for the summary line.
pub fn hint_text(h: Hint) -> &'static str {
    h.what()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_the_table() {
        for c in [0, 24] {
            assert_eq!(classify(Some(c), None), Class::Success, "{c}");
        }
        for c in [3, 5, 6, 10, 11, 12, 14, 20, 21, 22, 23, 30, 35, 255] {
            assert_eq!(classify(Some(c), None), Class::Retry, "{c}");
        }
        for c in [1, 2, 4, 13, 25, 126, 127, 7, 19, 99, 137] {
            assert_eq!(classify(Some(c), None), Class::Fatal, "{c}");
        }
        assert_eq!(classify(None, None), Class::Retry);
    }

    #[test]
    fn stderr_refines_only_the_mixed_codes() {
        let key = hint("Host key verification failed.");
        assert_eq!(key, Some(Hint::HostKey));
        assert_eq!(classify(Some(255), key), Class::Fatal);
        let denied = hint("root@127.0.0.1: Permission denied (publickey).");
        assert_eq!(denied, Some(Hint::Auth));
        assert_eq!(classify(Some(255), denied), Class::Fatal);
        let rrsync = hint("/usr/bin/rrsync error: invalid rsync-command syntax or options");
        assert_eq!(rrsync, Some(Hint::Rrsync));
        assert_eq!(classify(Some(12), rrsync), Class::Fatal);
        assert!(hint_text(Hint::Rrsync).contains("exact-mtimes=false"));
        let module = hint("@ERROR: Unknown module 'nope'");
        assert_eq!(classify(Some(5), module), Class::Fatal);
        assert_eq!(
            classify(
                Some(5),
                hint("@ERROR: max connections (1) reached -- try again later")
            ),
            Class::Retry
        );
        // A file-system "Permission denied (13)" is no ssh refusal.
        let fs = hint("rsync: [receiver] mkstemp \"/d/.f.XXXX\" failed: Permission denied (13)");
        assert_eq!(fs, None);
        assert_eq!(classify(Some(23), Some(Hint::Auth)), Class::Retry);
        assert_eq!(
            classify(
                Some(255),
                hint("ssh: connect to host h port 22: Connection refused")
            ),
            Class::Retry
        );
    }

    /// The README's table (section "Remote destinations and exit codes")
    /// must say what the code does: every numbered row's class matches
    /// [`classify`], and every code of [`POLICY`] has a row.
    #[test]
    fn the_readme_table_matches_the_policy() {
        let readme = include_str!("../../../README.md");
        let start = readme
            .find("## Remote destinations and exit codes")
            .expect("README has the section");
        let section = &readme[start..];
        let section = &section[..section[3..].find("\n## ").map_or(section.len(), |i| i + 3)];
        let mut rows = std::collections::HashMap::new();
        for line in section.lines() {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            if cells.len() < 4 {
                continue;
            }
            for code in cells[1].split(',').map(str::trim) {
                if let Ok(c) = code.parse::<i32>() {
                    rows.insert(c, cells[2].to_string());
                }
            }
        }
        for (code, class, _) in POLICY {
            let row = rows
                .get(code)
                .unwrap_or_else(|| panic!("README's table has no row for {code}"));
            assert!(
                row.starts_with(class.word()),
                "README says {row:?} for {code}, the code says {}",
                class.word()
            );
        }
        for (code, row) in &rows {
            let class = classify(Some(*code), None);
            assert!(
                row.starts_with(class.word()),
                "README says {row:?} for {code}, the code says {}",
                class.word()
            );
        }
    }
}
