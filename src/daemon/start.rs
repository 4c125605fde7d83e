//! What a start does besides replaying the queue: nothing, the restart
//! scan, or a full sync, and why.
//!
//! A start costs the backlog plus a local look at what changed while
//! nobody watched ([`crate::watch::scan`]), committed as one changeset
//! before the workers start. The scan needs the store's watermark and
//! three things to be true of it: the store is not new or reset (it has
//! one), the clock is not behind it (a clock set back would hide changes
//! made "in the future"), and SOURCE's file system keeps a ctime the scan
//! can trust. When one is not, a full sync runs instead and the log says
//! which. The decision is a pure function of those facts.

use crate::changeset::{Changeset, Entry};
use crate::config::{InitialSync, RunConfig};
use crate::deliver::outbox::Outbox;
use crate::error::{Error, Result};
use crate::optimize::optimize;
use crate::store::now_ms;
use crate::watch::scan::{ctime_trust, Scanner, SLACK_MS};
use crate::watch::Notice;

use super::intake::Intake;

/// What the start runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// Nothing: the queue alone carries the backlog.
    Nothing,
    /// The restart scan, for changes made at or after `since_ms`.
    Scan { since_ms: u64 },
    /// A full sync of the whole tree, and why.
    Full { why: String },
}

/// The facts the decision rests on.
#[derive(Debug, Clone)]
pub struct Facts {
    pub mode: InitialSync,
    /// The store was created by this start, or moved aside by
    /// `--reset-queue`.
    pub fresh: bool,
    pub reset: bool,
    /// The last daemon on this store stopped cleanly.
    pub clean: bool,
    pub watermark: Option<u64>,
    pub now_ms: u64,
    /// Whether SOURCE's ctime can be trusted, and why not.
    pub trust: Result<(), String>,
}

/// Decides what the start runs.
pub fn decide(f: &Facts) -> Start {
    let full = |why: String| Start::Full { why };
    if f.reset {
        return full("the queue was reset".into());
    }
    match f.mode {
        InitialSync::Full => return full("--initial-sync full".into()),
        InitialSync::None if f.fresh || f.clean => return Start::Nothing,
        _ => {}
    }
    if f.fresh {
        return full("the store is new: nothing is known of the destinations".into());
    }
    let Some(wm) = f.watermark else {
        return full("the store has no watermark (it was written by an older syncd)".into());
    };
    if f.now_ms < wm {
        return full(format!(
            "the clock ({}) is behind the store's watermark ({}): changes made meanwhile \
             would have older times than changes already replicated",
            crate::observe::logger::utc_iso(f.now_ms / 1000),
            crate::observe::logger::utc_iso(wm / 1000)
        ));
    }
    if let Err(why) = &f.trust {
        return full(format!("the restart scan cannot trust SOURCE: {why}"));
    }
    Start::Scan {
        since_ms: wm.saturating_sub(SLACK_MS),
    }
}

/// Starts the intake (the watch, and with [`Start::Scan`] the scan in the
/// same walk) and commits what the start runs. Returns the intake and the
/// watermark the store holds afterwards.
pub fn begin(
    cfg: &RunConfig,
    outbox: &Outbox,
    fs_tx: crossbeam_channel::Sender<Notice>,
    clean: bool,
) -> Result<(Intake, u64)> {
    let store = outbox.store();
    let facts = Facts {
        mode: cfg.initial_sync,
        fresh: store.is_fresh(),
        reset: cfg.reset_queue,
        clean,
        watermark: store.watermark()?,
        now_ms: now_ms(),
        trust: ctime_trust(&cfg.source.root),
    };
    let start = decide(&facts);
    if !clean {
        log::warn!(
            "the last stop was not clean (a crash, kill -9, or a restart in place): the queue \
             holds every committed change, and {}",
            match &start {
                Start::Scan { .. } => "the restart scan finds the rest",
                _ => "a full sync covers the rest",
            }
        );
    }
    let since = facts.watermark.unwrap_or(0);
    // Every change after this moment has an event or is seen by the walk.
    let walk_ms = now_ms();
    let began = std::time::Instant::now();
    let scanner = match start {
        Start::Scan { since_ms } => Some(Scanner::new(since_ms)),
        _ => None,
    };
    let (intake, scanned) = Intake::start(cfg, fs_tx, scanner, store.watch_count())?;
    // The next start weighs its watch budget with this count.
    if let Err(e) = store.set_watch_count(intake.watch.added() as u64) {
        log::warn!("{e}");
    }
    let cs = match (&start, scanned) {
        (Start::Nothing, _) => return Ok((intake, since)),
        (Start::Full { why }, _) => {
            log::info!("queueing a full sync ({why})");
            Changeset::new(now_ms(), vec![Entry::full()])
        }
        (Start::Scan { since_ms }, Some(scanner)) => {
            let (found, stats) = scanner.finish();
            let entries = optimize(found, cfg.workers.full_threshold);
            log::info!(
                "restart scan: {} changed paths since {} among {} directories and {} other \
                 entries, in {:.2}s",
                entries.len(),
                crate::observe::logger::utc_iso(since_ms / 1000),
                stats.dirs,
                stats.others,
                began.elapsed().as_secs_f64()
            );
            Changeset::new(now_ms(), entries)
        }
        (Start::Scan { .. }, None) => {
            return Err(Error::Watch("the restart scan did not run".into()))
        }
    };
    let cs = Changeset {
        since_ms: since,
        ..cs
    };
    if cs.is_empty() {
        store.set_watermark(walk_ms)?;
    } else {
        outbox.commit_now(&cs, walk_ms, "cannot commit what the start found into")?;
    }
    Ok((intake, walk_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> Facts {
        Facts {
            mode: InitialSync::Scan,
            fresh: false,
            reset: false,
            clean: true,
            watermark: Some(100_000),
            now_ms: 200_000,
            trust: Ok(()),
        }
    }

    fn why(s: Start) -> String {
        match s {
            Start::Full { why } => why,
            other => panic!("expected a full sync, got {other:?}"),
        }
    }

    #[test]
    fn a_trusted_watermark_gives_a_scan_from_just_before_it() {
        assert_eq!(
            decide(&facts()),
            Start::Scan {
                since_ms: 100_000 - SLACK_MS
            }
        );
        let crashed = Facts {
            clean: false,
            ..facts()
        };
        assert!(matches!(decide(&crashed), Start::Scan { .. }));
    }

    #[test]
    fn every_fallback_names_its_reason() {
        let cases = [
            (
                Facts {
                    fresh: true,
                    ..facts()
                },
                "new",
            ),
            (
                Facts {
                    reset: true,
                    ..facts()
                },
                "reset",
            ),
            (
                Facts {
                    watermark: None,
                    ..facts()
                },
                "no watermark",
            ),
            (
                Facts {
                    now_ms: 50_000,
                    ..facts()
                },
                "behind",
            ),
            (
                Facts {
                    trust: Err("it is on nfs".into()),
                    ..facts()
                },
                "nfs",
            ),
            (
                Facts {
                    mode: InitialSync::Full,
                    ..facts()
                },
                "--initial-sync full",
            ),
        ];
        for (f, needle) in cases {
            let w = why(decide(&f));
            assert!(w.contains(needle), "{needle}: {w}");
        }
    }

    #[test]
    fn none_skips_everything_after_a_clean_stop_only() {
        let none = Facts {
            mode: InitialSync::None,
            ..facts()
        };
        assert_eq!(decide(&none), Start::Nothing);
        let new = Facts {
            fresh: true,
            ..none.clone()
        };
        assert_eq!(decide(&new), Start::Nothing);
        let reset = Facts {
            fresh: true,
            reset: true,
            ..none.clone()
        };
        assert!(matches!(decide(&reset), Start::Full { .. }));
        let crashed = Facts {
            clean: false,
            ..none
        };
        assert!(matches!(decide(&crashed), Start::Scan { .. }));
    }
}
