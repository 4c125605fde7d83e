//! `syncd queue inspect`: every destination's backlog, as a table or JSON.
//!
//! This module builds one [`Report`] per destination from the store (and,
//! when the daemon answers, from its live worker state) and renders it. The
//! JSON shape is the contract of DESIGN.md and is kept stable: `name`,
//! `target`, `pending` (changesets), `pending_paths`, `oldest_pending_age_s`,
//! `dead`, `state`, `last_success_unix`, `last_error`, plus `entries` when
//! asked for. Paths in the table are escaped so a newline or a control byte
//! in a name cannot forge a line.

use std::io::Write;
use std::os::unix::ffi::OsStrExt;

use serde::Serialize;

use crate::changeset::escape;
use crate::error::Result;
use crate::store::{now_ms, Store};

/// One destination's backlog.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Report {
    pub name: String,
    pub target: String,
    pub pending: u64,
    pub pending_paths: u64,
    pub oldest_pending_age_s: Option<f64>,
    pub dead: u64,
    pub state: String,
    pub last_success_unix: Option<u64>,
    pub last_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entries: Option<Vec<PendingPath>>,
}

/// One of the oldest pending paths.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PendingPath {
    pub seq: u64,
    pub kind: String,
    /// The path, escaped (see `changeset::escape`).
    pub path: String,
}

/// The whole answer.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Inspection {
    pub destinations: Vec<Report>,
}

/// Builds the report of one destination from the store. `state` is the live
/// state word, or `"stopped"` when no daemon runs.
pub fn report(store: &Store, target: &[u8], state: &str, entries: usize) -> Result<Report> {
    let t = std::ffi::OsStr::from_bytes(target);
    let queue = store.queue(t)?;
    let dead = store.dead(t)?;
    let all = store.pending(&queue, usize::MAX)?;
    let now = now_ms();
    let mut paths = 0u64;
    let mut oldest: Option<u64> = None;
    let mut listed = Vec::new();
    for p in &all {
        match &p.changeset {
            Some(cs) => {
                paths += cs.entries.len() as u64;
                oldest = Some(oldest.map_or(cs.created_ms, |o: u64| o.min(cs.created_ms)));
                for e in &cs.entries {
                    if listed.len() < entries {
                        listed.push(PendingPath {
                            seq: p.seq,
                            kind: e.kind.name().into(),
                            path: escape(&e.path),
                        });
                    }
                }
            }
            None => {
                paths += 1;
                if listed.len() < entries {
                    listed.push(PendingPath {
                        seq: p.seq,
                        kind: "corrupt".into(),
                        path: "(whole tree)".into(),
                    });
                }
            }
        }
    }
    let st = store.status(target);
    let name = if st.name.is_empty() {
        String::from_utf8_lossy(target).into_owned()
    } else {
        st.name.clone()
    };
    Ok(Report {
        name,
        target: String::from_utf8_lossy(target).into_owned(),
        pending: all.len() as u64,
        pending_paths: paths,
        oldest_pending_age_s: oldest.map(|o| now.saturating_sub(o) as f64 / 1000.0),
        dead: dead.len() as u64,
        state: state.to_string(),
        last_success_unix: st.last_success_ms.map(|m| m / 1000),
        last_error: st.last_error,
        entries: (entries > 0).then_some(listed),
    })
}

/// Reports every destination in the store, filtered by `--dest`.
pub fn offline(store: &Store, dest: Option<&str>, entries: usize) -> Result<Inspection> {
    let mut v = Vec::new();
    for t in store.targets() {
        let r = report(store, &t, "stopped", entries)?;
        if matches(&r, dest) {
            v.push(r);
        }
    }
    Ok(Inspection { destinations: v })
}

/// Whether a report is the one `--dest` names (by name or target).
pub fn matches(r: &Report, dest: Option<&str>) -> bool {
    match dest {
        None => true,
        Some(d) => {
            r.name == d
                || r.target == d
                || r.target.trim_end_matches('/') == d.trim_end_matches('/')
        }
    }
}

/// Writes the inspection as a table.
pub fn write_table(out: &mut dyn Write, ins: &Inspection) -> std::io::Result<()> {
    if ins.destinations.is_empty() {
        return writeln!(out, "no destinations in this store");
    }
    writeln!(
        out,
        "{:<16} {:>8} {:>8} {:>8} {:>5}  {:<12} {:<20} {}",
        "DEST", "PENDING", "PATHS", "OLDEST", "DEAD", "STATE", "LAST SUCCESS", "LAST ERROR"
    )?;
    for r in &ins.destinations {
        writeln!(
            out,
            "{:<16} {:>8} {:>8} {:>8} {:>5}  {:<12} {:<20} {}",
            r.name,
            r.pending,
            r.pending_paths,
            r.oldest_pending_age_s
                .map(age)
                .unwrap_or_else(|| "-".into()),
            r.dead,
            r.state,
            r.last_success_unix
                .map(crate::logger::utc)
                .unwrap_or_else(|| "never".into()),
            r.last_error
                .as_deref()
                .map(one_line)
                .unwrap_or_else(|| "-".into()),
        )?;
        if let Some(es) = &r.entries {
            for e in es {
                writeln!(out, "    #{:<8} {:<6} {}", e.seq, e.kind, e.path)?;
            }
        }
    }
    Ok(())
}

/// An age as `42s`, `7m05s`, `3h12m`, `2d04h`.
pub fn age(s: f64) -> String {
    let s = s.max(0.0) as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86400, s % 86400 / 3600),
    }
}

fn one_line(s: &str) -> String {
    let t: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if t.chars().count() > 100 {
        t.chars().take(97).collect::<String>() + "..."
    } else {
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_are_short() {
        assert_eq!(age(5.2), "5s");
        assert_eq!(age(425.0), "7m05s");
        assert_eq!(age(3.0 * 3600.0 + 720.0), "3h12m");
        assert_eq!(age(2.0 * 86400.0 + 4.0 * 3600.0), "2d04h");
    }
}
