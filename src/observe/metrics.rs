//! Metrics in the Prometheus text format: served on an optional HTTP
//! listener (loopback by default) or written to a textfile for
//! node_exporter's textfile collector.
//!
//! The numbers are the ones `queue inspect` shows (from the store and the
//! workers' live state, rendered on the main loop so they are consistent
//! with each other) plus per-destination counters of rsync runs by outcome.
//! The listener thread never touches the store: each scrape asks the main
//! loop for the text over a channel, so a store being reopened after an
//! I/O error cannot be held open by a scrape. tiny_http serves HTTP.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};

use crate::error::{Error, Result};
use crate::observe::inspect::Report;
use crate::observe::status::Counters;

/// One destination as the metrics see it.
pub struct DestMetrics<'a> {
    pub report: &'a Report,
    pub counters: Counters,
}

fn label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Appends the count of directories below SOURCE that are not watched
/// (out of inotify watches, or not readable): synced whole and retried,
/// and worth an alert when it stays above zero.
pub fn unwatched(out: &mut String, count: u64) {
    let name = "syncd_unwatched_directories";
    let _ = writeln!(
        out,
        "# HELP {name} Directories below SOURCE that are not watched (synced whole, retried).\n\
         # TYPE {name} gauge\n{name} {count}"
    );
}

/// Renders the metrics text.
pub fn render(dests: &[DestMetrics<'_>], started_unix: u64) -> String {
    let mut o = String::new();
    let mut family = |name: &str, kind: &str, help: &str, rows: Vec<(String, f64)>| {
        let _ = writeln!(o, "# HELP syncd_{name} {help}");
        let _ = writeln!(o, "# TYPE syncd_{name} {kind}");
        for (labels, v) in rows {
            if labels.is_empty() {
                let _ = writeln!(o, "syncd_{name} {v}");
            } else {
                let _ = writeln!(o, "syncd_{name}{{{labels}}} {v}");
            }
        }
    };
    let per = |f: &dyn Fn(&DestMetrics<'_>) -> f64| -> Vec<(String, f64)> {
        dests
            .iter()
            .map(|d| (format!("dest=\"{}\"", label(&d.report.name)), f(d)))
            .collect()
    };
    family(
        "pending_changesets",
        "gauge",
        "Changesets queued for the destination.",
        per(&|d| d.report.pending as f64),
    );
    family(
        "pending_paths",
        "gauge",
        "Paths in the queued changesets.",
        per(&|d| d.report.pending_paths as f64),
    );
    family(
        "oldest_pending_age_seconds",
        "gauge",
        "Age of the oldest queued changeset (0 when none).",
        per(&|d| d.report.oldest_pending_age_s.unwrap_or(0.0)),
    );
    family(
        "dead_changesets",
        "gauge",
        "Changesets in the dead-letter tree.",
        per(&|d| d.report.dead as f64),
    );
    family(
        "last_success_timestamp_seconds",
        "gauge",
        "Unix time of the last successful rsync run (0: never).",
        per(&|d| d.report.last_success_unix.unwrap_or(0) as f64),
    );
    let secs = |ms: Option<u64>| ms.map_or(0.0, |m| m as f64 / 1000.0);
    family(
        "delivered_watermark_timestamp_seconds",
        "gauge",
        "Every change made in SOURCE before this Unix time is on the destination (0: not known).",
        per(&|d| secs(d.report.delivered_unix_ms)),
    );
    family(
        "last_checkpoint_timestamp_seconds",
        "gauge",
        "The Unix time of the last completed checkpoint (0: none).",
        per(&|d| secs(d.report.last_checkpoint.map(|c| c.at_unix_ms))),
    );
    family(
        "last_checkpoint_completed_timestamp_seconds",
        "gauge",
        "When the last checkpoint completed, Unix time (0: none).",
        per(&|d| secs(d.report.last_checkpoint.map(|c| c.completed_unix_ms))),
    );
    family(
        "checkpoint_pending",
        "gauge",
        "1 while a checkpoint is waiting for delivery.",
        per(&|d| d.report.checkpoint_pending_unix_ms.map_or(0.0, |_| 1.0)),
    );
    let mut runs = Vec::new();
    for d in dests {
        let n = label(&d.report.name);
        runs.push((
            format!("dest=\"{n}\",result=\"success\""),
            d.counters.runs_success as f64,
        ));
        runs.push((
            format!("dest=\"{n}\",result=\"retry\""),
            d.counters.runs_retry as f64,
        ));
        runs.push((
            format!("dest=\"{n}\",result=\"fatal\""),
            d.counters.runs_fatal as f64,
        ));
    }
    family(
        "rsync_runs_total",
        "counter",
        "rsync runs by outcome class (see the README's exit-code table).",
        runs,
    );
    family(
        "bytes_sent_total",
        "counter",
        "Bytes rsync sent (its --stats total).",
        per(&|d| d.counters.bytes_sent as f64),
    );
    family(
        "destination_probes_total",
        "counter",
        "Cheap checks (a TCP connect, or access(2) on a local directory) of a backing-off destination.",
        per(&|d| d.counters.probes as f64),
    );
    let states = dests
        .iter()
        .map(|d| {
            (
                format!(
                    "dest=\"{}\",state=\"{}\"",
                    label(&d.report.name),
                    label(&d.report.state)
                ),
                1.0,
            )
        })
        .collect();
    family(
        "destination_state",
        "gauge",
        "The destination's state (in_sync, syncing, backing_off, stopped).",
        states,
    );
    family(
        "start_time_seconds",
        "gauge",
        "Unix time the daemon started.",
        vec![(String::new(), started_unix as f64)],
    );
    o
}

/// A scrape waiting for the main loop's answer.
pub type Scrape = Sender<String>;

/// The HTTP listener; dropping it stops the thread.
pub struct Listener {
    server: std::sync::Arc<tiny_http::Server>,
    thread: Option<std::thread::JoinHandle<()>>,
    pub addr: SocketAddr,
}

impl Listener {
    /// Listens on `addr`; each `GET /metrics` sends a [`Scrape`] to `tx`.
    pub fn start(addr: SocketAddr, tx: Sender<Scrape>) -> Result<Listener> {
        let server = tiny_http::Server::http(addr)
            .map_err(|e| Error::Usage(format!("cannot listen for metrics on {addr}: {e}")))?;
        let addr = server.server_addr().to_ip().unwrap_or(addr);
        let server = std::sync::Arc::new(server);
        let s = server.clone();
        let thread = std::thread::Builder::new()
            .name("metrics".into())
            .spawn(move || serve(&s, &tx))
            .map_err(|e| Error::os("cannot start the metrics thread", e))?;
        log::info!("serving metrics on http://{addr}/metrics");
        Ok(Listener {
            server,
            thread: Some(thread),
            addr,
        })
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(server: &tiny_http::Server, tx: &Sender<Scrape>) {
    for req in server.incoming_requests() {
        let path = req.url().split('?').next().unwrap_or("");
        if path != "/metrics" {
            let _ = req
                .respond(tiny_http::Response::from_string("see /metrics\n").with_status_code(404));
            continue;
        }
        let (reply_tx, reply_rx) = crossbeam_channel::bounded(1);
        let body = if tx.send(reply_tx).is_ok() {
            reply_rx.recv_timeout(Duration::from_secs(10)).ok()
        } else {
            None
        };
        let resp = match body {
            Some(b) => tiny_http::Response::from_string(b).with_header(
                tiny_http::Header::from_bytes(
                    &b"Content-Type"[..],
                    &b"text/plain; version=0.0.4"[..],
                )
                .expect("a static header is valid"),
            ),
            None => {
                tiny_http::Response::from_string("syncd is busy; try again\n").with_status_code(503)
            }
        };
        let _ = req.respond(resp);
    }
}

/// Writes the metrics text to `path` atomically (a temporary file renamed
/// over it), as node_exporter's textfile collector expects.
pub fn write_textfile(path: &Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("prom.tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

/// The channel pair the main loop listens on for scrapes.
pub fn channel() -> (Sender<Scrape>, Receiver<Scrape>) {
    crossbeam_channel::unbounded()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::inspect::CheckpointDone;

    fn report(name: &str) -> Report {
        Report {
            name: name.into(),
            target: "/t/".into(),
            pending: 3,
            pending_paths: 7,
            oldest_pending_age_s: Some(1.5),
            dead: 1,
            state: "backing_off".into(),
            last_success_unix: Some(100),
            last_error: None,
            delivered_unix_ms: Some(5_000),
            checkpoint_pending_unix_ms: None,
            last_checkpoint: Some(CheckpointDone {
                at_unix_ms: 4_000,
                completed_unix_ms: 4_500,
            }),
            entries: None,
        }
    }

    #[test]
    fn text_format_has_help_type_and_escaped_labels() {
        let r = report("we\"ird\\name");
        let c = Counters {
            runs_success: 4,
            runs_retry: 2,
            runs_fatal: 0,
            bytes_sent: 99,
            probes: 3,
        };
        let t = render(
            &[DestMetrics {
                report: &r,
                counters: c,
            }],
            5,
        );
        assert!(t.contains("# TYPE syncd_pending_changesets gauge"), "{t}");
        let mut u = String::new();
        unwatched(&mut u, 3);
        assert!(
            u.contains("# TYPE syncd_unwatched_directories gauge\n"),
            "{u}"
        );
        assert!(u.ends_with("\nsyncd_unwatched_directories 3\n"), "{u}");
        assert!(
            t.contains("syncd_pending_changesets{dest=\"we\\\"ird\\\\name\"} 3"),
            "{t}"
        );
        assert!(
            t.contains("syncd_rsync_runs_total{dest=\"we\\\"ird\\\\name\",result=\"retry\"} 2"),
            "{t}"
        );
        assert!(
            t.contains("syncd_bytes_sent_total{dest=\"we\\\"ird\\\\name\"} 99"),
            "{t}"
        );
        assert!(t.contains("syncd_start_time_seconds 5"), "{t}");
        assert!(
            t.contains("syncd_delivered_watermark_timestamp_seconds{dest=\"we\\\"ird\\\\name\"} 5"),
            "{t}"
        );
        assert!(
            t.contains("syncd_last_checkpoint_completed_timestamp_seconds{"),
            "{t}"
        );
        assert!(
            t.contains("syncd_oldest_pending_age_seconds{dest=\"we\\\"ird\\\\name\"} 1.5"),
            "{t}"
        );
    }
}
