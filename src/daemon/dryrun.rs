//! `syncd run --dry-run`: the whole pipeline up to rsync, printed instead
//! of run.
//!
//! The watcher and the aggregator run as in the daemon, and every closed
//! window is optimized and classified against the live tree exactly as a
//! worker would; then, for every destination, the rsync command lines and
//! the entries they would be fed are printed to stdout. Nothing is touched:
//! no state directory, no lock, no store, no rsync, no destination. Queued
//! changesets of an existing store are not replayed, since reading the
//! store would mean taking its lock.

use std::io::Write;
use std::time::{Duration, Instant};

use crossbeam_channel::select;

use crate::aggregate::Aggregator;
use crate::changeset::{escape, Entry};
use crate::deliver::classify::classify;
use crate::config::RunConfig;
use crate::error::{Error, Result};
use crate::optimize::optimize;
use crate::deliver::rsync::{self, Run};
use crate::watch::{self, Change};

/// Runs the dry run until SIGTERM/SIGINT.
pub fn run(cfg: RunConfig, out: &mut dyn Write) -> Result<()> {
    let sig_rx = crate::daemon::signals()?;
    let (fs_tx, fs_rx) = crossbeam_channel::unbounded();
    let mut watch = watch::Watch::start(&cfg.source.root, fs_tx, cfg.exclude())?;
    let mut window = Aggregator::new(
        cfg.delay,
        cfg.window_cap,
        cfg.workers.full_threshold,
        cfg.hold,
    );
    let w = |out: &mut dyn Write, s: String| {
        writeln!(out, "{s}")
            .and_then(|_| out.flush())
            .map_err(|e| Error::io("cannot write to", "stdout", e))
    };
    w(
        out,
        format!(
            "dry run: watching {}; nothing will be written",
            cfg.source.root.display()
        ),
    )?;
    let mut n = 0u64;
    if cfg.initial_sync {
        n += 1;
        print(&cfg, out, n, &[Entry::full()])?;
    }
    loop {
        let timeout = window
            .deadline()
            .map(|d| d.saturating_duration_since(Instant::now()))
            .unwrap_or(Duration::from_secs(3600));
        select! {
            recv(fs_rx) -> m => {
                let Ok(raw) = m else { return Ok(()) };
                let now = Instant::now();
                for c in watch.interpret(raw) {
                    match c {
                        Change::Entry(e) => window.add(e, now),
                        Change::Rescan => {
                            window.add(Entry::full(), now);
                            watch.rebuild()?;
                        }
                        Change::Writing(p) => window.writing(&p, now),
                        Change::Closed(p) => window.closed(&p),
                        Change::RootLost(how) => {
                            return Err(Error::RootLost { path: cfg.source.root.clone(), how })
                        }
                        Change::Error(m) | Change::Limit(m) => log::error!("{m}"),
                    }
                }
            }
            recv(sig_rx) -> s => {
                if s != Ok(libc::SIGHUP) {
                    return Ok(());
                }
                window.add(Entry::full(), Instant::now());
            }
            default(timeout) => {}
        }
        let now = Instant::now();
        if window.due(now) {
            let cs = window.changeset(crate::store::now_ms(), now);
            window.clear(now);
            if !cs.entries.is_empty() {
                n += 1;
                print(&cfg, out, n, &cs.entries)?;
            }
        }
    }
}

/// Prints changeset `n` and, per destination, the runs it would start.
fn print(cfg: &RunConfig, out: &mut dyn Write, n: u64, entries: &[Entry]) -> Result<()> {
    let io = |e| Error::io("cannot write to", "stdout", e);
    let classified = match classify(&cfg.source, entries) {
        Ok(c) => {
            let mut c = optimize(c, cfg.workers.full_threshold);
            c.retain(|e| !crate::config::filter::entry_excluded(|p, d| cfg.filter.excluded(p, d), e));
            c
        }
        Err(_) => {
            writeln!(
                out,
                "changeset {n}: the source is not a directory; nothing would run"
            )
            .map_err(io)?;
            return Ok(());
        }
    };
    writeln!(out, "changeset {n}: {} entries", classified.len()).map_err(io)?;
    for e in &classified {
        writeln!(out, "  {:<5} {}", e.kind.name(), display(&e.path)).map_err(io)?;
    }
    let (main, attrs) = rsync::split(&classified);
    for d in &cfg.dests {
        for (run, list) in [(Run::Main, &main), (Run::Attrs, &attrs)] {
            if list.is_empty() {
                continue;
            }
            let full = run == Run::Main && list.iter().any(|e| e.is_full());
            let args = rsync::argv(run, &cfg.source, &d.dest, &d.rsync, full);
            let line: Vec<String> = std::iter::once(d.rsync.program.to_string_lossy().into_owned())
                .chain(args.iter().map(|a| shell_word(&a.to_string_lossy())))
                .collect();
            writeln!(
                out,
                "  [{}] would run: {}   (stdin: {} entries)",
                d.dest.name,
                line.join(" "),
                list.len()
            )
            .map_err(io)?;
        }
    }
    out.flush().map_err(io)
}

fn display(path: &[u8]) -> String {
    if path.is_empty() {
        "(the whole tree)".into()
    } else {
        escape(path)
    }
}

/// Quotes a word for display the way a shell would need it.
fn shell_word(w: &str) -> String {
    if !w.is_empty()
        && w.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_=./:@,+".contains(&b))
    {
        w.to_string()
    } else {
        format!("'{}'", w.replace('\'', "'\\''"))
    }
}
