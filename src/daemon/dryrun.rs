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

use super::intake::{signals, Intake};
use crate::changeset::{escape, Changeset, Entry};
use crate::config::{InitialSync, RunConfig};
use crate::deliver::classify::lstat;
use crate::deliver::plan::plan;
use crate::deliver::rsync::{self, Run};
use crate::error::{Error, Result};

/// Runs the dry run until SIGTERM/SIGINT.
pub fn run(cfg: RunConfig, out: &mut dyn Write) -> Result<()> {
    let sig_rx = signals()?;
    let (fs_tx, fs_rx) = crossbeam_channel::unbounded();
    let (mut intake, _) = Intake::start(&cfg, fs_tx, None, None)?;
    let w = |out: &mut dyn Write, s: String| {
        writeln!(out, "{s}")
            .and_then(|_| out.flush())
            .map_err(Error::Output)
    };
    w(
        out,
        format!(
            "dry run: watching {}; nothing will be written",
            cfg.source.root.display()
        ),
    )?;
    let mut n = 0u64;
    // No store is read: a start on a new store runs a full sync, shown
    // unless the start is told to run nothing.
    if cfg.initial_sync != InitialSync::None {
        n += 1;
        print(&cfg, out, n, &Changeset::new(0, vec![Entry::full()]))?;
    }
    loop {
        let timeout = intake
            .next_wake()
            .map(|d| d.saturating_duration_since(Instant::now()))
            .unwrap_or(Duration::from_secs(3600));
        select! {
            recv(fs_rx) -> m => {
                let Ok(raw) = m else { return Ok(()) };
                intake.absorb(raw, true)?;
            }
            recv(sig_rx) -> s => {
                if s != Ok(libc::SIGHUP) {
                    return Ok(());
                }
                intake.full_sync();
            }
            default(timeout) => {}
        }
        let now = Instant::now();
        intake.tick(now)?;
        if intake.window.due(now) {
            intake.settle(&fs_rx)?;
            let window = &mut intake.window;
            let cs = window.changeset(crate::store::now_ms(), now);
            window.clear(now);
            if !cs.is_empty() {
                n += 1;
                print(&cfg, out, n, &cs)?;
            }
        }
    }
}

/// Prints changeset `n` and, per destination, the runs it would start.
fn print(cfg: &RunConfig, out: &mut dyn Write, n: u64, cs: &Changeset) -> Result<()> {
    let io = Error::Output;
    let f = &cfg.filter;
    let planned = plan(
        cs.ops(),
        |p| lstat(&cfg.source, p),
        |p, d| f.excluded(p, d),
        cfg.workers.full_threshold,
    );
    let Ok(plan) = planned else {
        writeln!(
            out,
            "changeset {n}: the source is not a directory; nothing would run"
        )
        .map_err(io)?;
        return Ok(());
    };
    writeln!(
        out,
        "changeset {n}: {} moves, {} entries",
        plan.moves.len(),
        plan.entries.len()
    )
    .map_err(io)?;
    for m in &plan.moves {
        writeln!(out, "  move  {} -> {}", display(&m.from), display(&m.to)).map_err(io)?;
    }
    for e in &plan.entries {
        writeln!(out, "  {:<5} {}", e.kind.name(), display(&e.path)).map_err(io)?;
    }
    for d in &cfg.dests {
        for (run, list) in plan.runs() {
            let full = run == Run::Trees && plan.is_full();
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
