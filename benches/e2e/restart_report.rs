//! The restart workload's report: one table of every measured start (and
//! the two full-rsync references), its notes, and issue 13's targets,
//! checked per scenario: restart to the exact mirror at most half of
//! lsyncd's on the same DEST (lsyncd's time to *its* sync's end when it
//! never became exact); bytes over ssh at most 1% of one full rsync's
//! through the same kind of proxy; nothing lost (an exact mirror).

use std::fmt::Write;

use crate::link::human;
use crate::restart::{Report, Row};

fn secs(x: Option<f64>) -> String {
    match x {
        None => "never".into(),
        Some(x) if x < 1.0 => format!("{x:.3} s"),
        Some(x) if x < 10.0 => format!("{x:.2} s"),
        Some(x) => format!("{x:.1} s"),
    }
}

fn opt(x: Option<f64>) -> String {
    x.map_or("–".into(), |v| secs(Some(v)))
}

/// Appends the section to `md`.
pub fn render(r: &Report, delay: f64, md: &mut String) {
    let _ = writeln!(md, "### restart\n");
    let _ = writeln!(
        md,
        "{}. Delay {delay} s; one start per row (took {:.0} min).\n",
        r.about, r.minutes
    );
    let _ = writeln!(
        md,
        "| | DEST | how | start to exact mirror | to the end of its last rsync run | restart scan (changed paths) | CPU: daemon + children | rsync runs | bytes over ssh (proxy, both ways) | rsync sent | exact |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|---|");
    for row in &r.rows {
        let scan = row
            .scan
            .map_or("–".into(), |(s, n)| format!("{} ({n})", secs(Some(s))));
        let cpu = match (row.cpu_own_s, row.cpu_children_s) {
            (Some(a), Some(b)) => format!("{a:.2} + {b:.2} s"),
            (None, Some(b)) => format!("– + {b:.2} s"),
            _ => "–".into(),
        };
        let proxy = row.bytes.proxy.map_or("–".into(), |c| {
            format!("{} ({} conn.)", human(c.total()), c.connections)
        });
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {scan} | {cpu} | {} | {proxy} | {} | {} |",
            row.who,
            row.dest,
            row.how,
            secs(row.mirror_s),
            opt(row.last_run_s),
            row.runs,
            row.bytes.rsync_sent.map_or("–".into(), human),
            if row.exact { "yes" } else { "**no**" }
        );
    }
    let mut notes: Vec<String> = r.notes.clone();
    for row in &r.rows {
        for n in &row.notes {
            notes.push(format!("{}, {}, {}: {n}", row.who, row.dest, row.how));
        }
    }
    if !notes.is_empty() {
        let _ = writeln!(md);
        for n in notes {
            let _ = writeln!(md, "- {n}");
        }
    }
    let _ = writeln!(md, "\n#### Restart targets (issue 13)\n");
    let _ = writeln!(
        md,
        "| syncd | DEST | start to mirror ≤ ½ lsyncd's | bytes over ssh ≤ 1% of a full rsync's | nothing lost |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|");
    let (mut pass, mut all) = (0, 0);
    let mut cell = |ok: bool, detail: String| {
        all += 1;
        if ok {
            pass += 1;
            format!("PASS {detail}")
        } else {
            format!("**MISS** {detail}")
        }
    };
    let find = |who: &str, dest: &str| -> Option<&Row> {
        r.rows
            .iter()
            .find(|x| x.who.starts_with(who) && x.dest == dest)
    };
    for row in r.rows.iter().filter(|x| x.who == "syncd") {
        let time = match (row.mirror_s, find("lsyncd", row.dest)) {
            (Some(t), Some(l)) => {
                let (lt, what) = match l.mirror_s {
                    Some(m) => (m, "its exact mirror"),
                    None => (
                        l.last_run_s.unwrap_or(f64::INFINITY),
                        "its sync's end; never exact",
                    ),
                };
                cell(
                    t <= 0.5 * lt,
                    format!("{} vs ½ × {} ({what})", secs(Some(t)), secs(Some(lt))),
                )
            }
            (None, _) => cell(false, "never exact".into()),
            _ => "–".into(),
        };
        let bytes = match (
            row.bytes.proxy,
            find("full", row.dest).and_then(|f| f.bytes.proxy),
        ) {
            (Some(a), Some(f)) => cell(
                a.total() as f64 <= 0.01 * f.total() as f64,
                format!(
                    "{} = {:.2}% of {}",
                    human(a.total()),
                    100.0 * a.total() as f64 / f.total().max(1) as f64,
                    human(f.total())
                ),
            ),
            _ => "–".into(),
        };
        let lost = cell(
            row.exact,
            if row.exact { "exact" } else { "not exact" }.into(),
        );
        let _ = writeln!(
            md,
            "| {} | {} | {time} | {bytes} | {lost} |",
            row.how, row.dest
        );
    }
    let _ = writeln!(md, "\nsyncd meets {pass} of {all} restart targets.\n");
}
