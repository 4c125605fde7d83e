//! Results: medians and ranges per workload and daemon, rendered as
//! Markdown tables, and the targets checked on the medians of one
//! benchmark run (so every ratio compares figures taken on the same
//! machine, minutes apart).

use std::fmt::Write;

use serde::Serialize;

use crate::daemon::Kind;
use crate::measure::{DaemonRun, RefRun};

/// Everything measured for one workload.
#[derive(Debug, Clone, Serialize)]
pub struct WorkloadResult {
    pub name: String,
    pub about: String,
    pub delay: f64,
    pub backlog: bool,
    /// An outage workload (DEST unwritable, default backoff).
    pub outage: bool,
    pub syncd: Vec<DaemonRun>,
    pub lsyncd: Vec<DaemonRun>,
    /// lsyncd with `default.rsyncssh` (move workloads).
    pub lsyncd_ssh: Vec<DaemonRun>,
    /// syncd built from another commit (`--syncd-alt`).
    pub syncd_alt: Vec<DaemonRun>,
    /// DEST over ssh.
    pub remote: bool,
    /// The data the change moves (move workloads).
    pub moved_bytes: Option<u64>,
    pub reference: Vec<RefRun>,
    /// Runs that failed to complete, with why.
    pub errors: Vec<String>,
}

impl WorkloadResult {
    pub fn runs_of(&mut self, kind: Kind) -> &mut Vec<DaemonRun> {
        match kind {
            Kind::Syncd => &mut self.syncd,
            Kind::Lsyncd => &mut self.lsyncd,
            Kind::LsyncdSsh => &mut self.lsyncd_ssh,
            Kind::SyncdAlt => &mut self.syncd_alt,
        }
    }

    /// Every daemon's runs, in table order.
    pub fn all_runs(&self) -> [(Kind, &Vec<DaemonRun>); 4] {
        [
            (Kind::Syncd, &self.syncd),
            (Kind::SyncdAlt, &self.syncd_alt),
            (Kind::Lsyncd, &self.lsyncd),
            (Kind::LsyncdSsh, &self.lsyncd_ssh),
        ]
    }
}

/// The bytes column: the proxy's count over ssh, else rsync's.
fn sent(v: &[Option<u64>], remote: bool) -> String {
    let v: Vec<f64> = v.iter().flatten().map(|&b| b as f64).collect();
    if v.is_empty() {
        return "–".into();
    }
    let s = summary(&v, |x| crate::link::human(x as u64), "");
    if remote {
        format!("{s} (ssh)")
    } else {
        format!("{s} (rsync)")
    }
}

/// The median; an infinite value stands for "never".
pub fn median(v: &[f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let n = s.len();
    Some(if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    })
}

fn secs(x: f64) -> String {
    if x.is_infinite() {
        "never".into()
    } else if x.abs() < 1.0 {
        format!("{x:.3}")
    } else if x.abs() < 10.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.1}")
    }
}

fn mib(x: f64) -> String {
    format!("{x:.1}")
}

fn num(x: f64) -> String {
    if x.fract() == 0.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.1}")
    }
}

/// `median (min–max)`, or just the value for one run.
fn summary(v: &[f64], fmt: fn(f64) -> String, unit: &str) -> String {
    let Some(m) = median(v) else {
        return "–".into();
    };
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if v.len() == 1 || lo == hi {
        format!("{}{unit}", fmt(m))
    } else {
        format!("{}{unit} ({}–{})", fmt(m), fmt(lo), fmt(hi))
    }
}

fn mirror_times(runs: &[DaemonRun]) -> Vec<f64> {
    runs.iter()
        .map(|r| r.mirror_s.unwrap_or(f64::INFINITY))
        .collect()
}

fn col(runs: &[DaemonRun], f: fn(&DaemonRun) -> f64) -> Vec<f64> {
    runs.iter().map(f).collect()
}

/// The per-workload table.
pub fn workload_table(w: &WorkloadResult, out: &mut String) {
    let _ = writeln!(out, "### {}\n", w.name);
    let _ = writeln!(
        out,
        "{}. Delay {} s; {} run(s).\n",
        w.about,
        w.delay,
        w.syncd.len().max(w.lsyncd.len()).max(w.reference.len())
    );
    let after = if w.backlog || w.outage {
        "time to mirror after DEST returns"
    } else {
        "time to mirror after the window"
    };
    let _ = writeln!(
        out,
        "| | {after} | bytes sent | change took | rsync runs | runs / window | daemon CPU | children CPU | peak RSS | start-up (CPU) | exact |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|---|");
    for (kind, runs) in w.all_runs() {
        if runs.is_empty() {
            continue;
        }
        let timeout = runs.iter().map(|r| r.timeout_s).fold(0.0, f64::max);
        let time = summary(&mirror_times(runs), secs, " s")
            .replace("never s", "never")
            .replace("never", &format!("never (timeout {timeout:.0} s)"));
        let per_window = if w.backlog || w.outage {
            "–".to_string()
        } else {
            summary(
                &col(runs, |r| r.runs as f64 / r.windows as f64),
                |x| format!("{x:.2}"),
                "",
            )
        };
        let mut count = summary(&col(runs, |r| r.runs as f64), num, "");
        if w.backlog || w.outage {
            let during = summary(&col(runs, |r| r.outage_runs as f64), num, "");
            count = format!("{count} (+ {during} during the outage)");
        }
        let rss = format!(
            "{} ({} anon)",
            summary(&col(runs, |r| r.peak_rss_mib), mib, " MiB"),
            summary(&col(runs, |r| r.anon_rss_mib), mib, "")
        );
        let _ = writeln!(
            out,
            "| {} | {time} | {} | {} | {count} | {per_window} | {} | {} | {rss} | {} ({}) | {}/{} |",
            kind.name(),
            sent(
                &runs
                    .iter()
                    .map(|r| {
                        // Over ssh the proxy's count; lsyncd rsyncssh is
                        // always over ssh.
                        r.bytes.shown()
                    })
                    .collect::<Vec<_>>(),
                w.remote || kind == Kind::LsyncdSsh
            ),
            summary(&col(runs, |r| r.change_s), secs, " s"),
            summary(&col(runs, |r| r.cpu_s), secs, " s"),
            summary(&col(runs, |r| r.children_cpu_s), secs, " s"),
            summary(&col(runs, |r| r.ready_s), secs, " s"),
            summary(&col(runs, |r| r.startup_cpu_s), secs, " s"),
            runs.iter().filter(|r| r.exact).count(),
            runs.len()
        );
    }
    if !w.reference.is_empty() {
        let r = &w.reference;
        let exact = r.iter().filter(|x| x.exact).count();
        let catchup: Vec<f64> = r.iter().map(|x| x.catchup_s).collect();
        let catchup_cpu: Vec<f64> = r.iter().map(|x| x.catchup_cpu_s).collect();
        let noop: Vec<f64> = r.iter().map(|x| x.noop_s).collect();
        let noop_cpu: Vec<f64> = r.iter().map(|x| x.noop_cpu_s).collect();
        let bytes: Vec<Option<u64>> = r.iter().map(|x| x.bytes.shown()).collect();
        let _ = writeln!(
            out,
            "| catch-up `rsync -a --delete` | {} | {} | – | 1 | – | – | {} | – | – | {exact}/{} |",
            summary(&catchup, secs, " s"),
            sent(&bytes, w.remote),
            summary(&catchup_cpu, secs, " s"),
            r.len()
        );
        let _ = writeln!(
            out,
            "| no-op `rsync -a --delete` | {} | – | – | 1 | – | – | {} | – | – | – |",
            summary(&noop, secs, " s"),
            summary(&noop_cpu, secs, " s"),
        );
    }
    let mut notes: Vec<String> = Vec::new();
    for (kind, runs) in w.all_runs() {
        if w.outage {
            for (i, r) in runs.iter().enumerate() {
                if let Some(o) = &r.outage {
                    let probes = o.probes.map_or(String::new(), |p| {
                        format!(", {p} probes (cheap checks of DEST; none a connection, as DEST is local)")
                    });
                    notes.push(format!(
                        "{} run {}: during the {} s outage: {} rsync runs{probes}, {} CPU \
                         (daemon and rsync)",
                        kind.name(),
                        i + 1,
                        secs(o.secs),
                        r.outage_runs,
                        o.cpu_s.map_or("?".into(), |c| format!("{} s", secs(c)))
                    ));
                }
            }
        }
        if (w.backlog || w.outage) && !runs.is_empty() {
            let drain: Vec<f64> = runs.iter().filter_map(|r| r.drain_s).collect();
            notes.push(format!(
                "{}: drain (first rsync run after DEST returned → exact mirror) {}",
                kind.name(),
                if drain.is_empty() {
                    "never".to_string()
                } else {
                    summary(&drain, secs, " s")
                }
            ));
        }
        for (i, r) in runs.iter().enumerate() {
            for n in &r.notes {
                notes.push(format!("{} run {}: {n}", kind.name(), i + 1));
            }
        }
    }
    for (i, r) in w.reference.iter().enumerate() {
        for n in &r.notes {
            notes.push(format!("reference run {}: {n}", i + 1));
        }
    }
    notes.extend(w.errors.iter().cloned());
    if !notes.is_empty() {
        let _ = writeln!(out);
        for n in notes {
            let _ = writeln!(out, "- {n}");
        }
    }
    let _ = writeln!(out);
}

/// One target's outcome.
enum Verdict {
    Pass(String),
    Miss(String),
    NotApplicable,
}

impl Verdict {
    fn check(ok: bool, detail: String) -> Verdict {
        if ok {
            Verdict::Pass(detail)
        } else {
            Verdict::Miss(detail)
        }
    }

    fn cell(&self) -> String {
        match self {
            Verdict::Pass(d) => format!("PASS {d}"),
            Verdict::Miss(d) => format!("**MISS** {d}"),
            Verdict::NotApplicable => "–".into(),
        }
    }
}

const TARGETS: [&str; 11] = [
    "exact mirror",
    "time ≤ 1.5× catch-up",
    "time ≤ lsyncd",
    "≤ 2 runs / window",
    "runs < lsyncd",
    "peak RSS ≤ lsyncd",
    "CPU ≤ lsyncd",
    "start-up CPU ≤ lsyncd",
    "backlog ≤ 2 runs",
    "backlog drain ≤ 1.5× catch-up",
    "outage: run ≤ 3 s after DEST returns",
];

/// The resolution of /proc CPU times (USER_HZ = 100).
const TICK: f64 = 0.01;

fn verdicts(w: &WorkloadResult) -> Vec<Verdict> {
    use Verdict::NotApplicable as NA;
    let s = &w.syncd;
    if s.is_empty() {
        return TARGETS.iter().map(|_| NA).collect();
    }
    let l = &w.lsyncd;
    let med = |runs: &[DaemonRun], f: fn(&DaemonRun) -> f64| median(&col(runs, f));
    let catchup = median(&w.reference.iter().map(|r| r.catchup_s).collect::<Vec<_>>());
    let s_time = median(&mirror_times(s)).unwrap_or(f64::INFINITY);
    let l_time = median(&mirror_times(l));
    let versus = |f: fn(&DaemonRun) -> f64, strict: bool, fmt: fn(f64) -> String| match (
        med(s, f),
        med(l, f),
    ) {
        (Some(a), Some(b)) => {
            // CPU times come in 10 ms clock ticks: closer than that is a tie.
            let ok = if strict { a < b } else { a <= b + TICK };
            let op = if ok {
                if strict {
                    "<"
                } else {
                    "≤"
                }
            } else {
                ">"
            };
            let op = match (ok, a == b, a > b) {
                (false, true, _) => "=",
                (true, false, true) => "≈",
                _ => op,
            };
            Verdict::check(ok, format!("{} {op} {}", fmt(a), fmt(b)))
        }
        _ => NA,
    };
    let exact = s.iter().filter(|r| r.exact).count();
    let exact_v = Verdict::check(exact == s.len(), format!("{exact}/{}", s.len()));
    if w.outage {
        // Time from the return to the start of the run that made the
        // mirror (the mirror time less that run's own length): 3 s at most.
        let noticed: Vec<f64> = s
            .iter()
            .map(|r| match (r.mirror_s, r.drain_s) {
                (Some(m), Some(d)) => m - d,
                _ => f64::INFINITY,
            })
            .collect();
        let n = median(&noticed).unwrap_or(f64::INFINITY);
        let mut v: Vec<Verdict> = TARGETS.iter().map(|_| NA).collect();
        v[0] = exact_v;
        v[TARGETS.len() - 1] = Verdict::check(n <= 3.0, format!("{} s", secs(n)));
        return v;
    }
    vec![
        exact_v,
        match catchup {
            Some(c) => Verdict::check(
                s_time <= 1.5 * c,
                format!("{} vs 1.5 × {}", secs(s_time), secs(c)),
            ),
            None => NA,
        },
        match l_time {
            Some(lt) => Verdict::check(s_time <= lt, format!("{} vs {}", secs(s_time), secs(lt))),
            None => NA,
        },
        if w.backlog {
            NA
        } else {
            let per = med(s, |r| r.runs as f64 / r.windows as f64).unwrap_or(f64::INFINITY);
            Verdict::check(per <= 2.0, format!("{per:.2}"))
        },
        // The backlog compares every run the same changes cost, outage
        // included: lsyncd, which counts rsync's exit 23 as success, has
        // nothing left to run once DEST returns.
        if w.backlog {
            versus(|r| (r.runs + r.outage_runs) as f64, true, num)
        } else {
            versus(|r| r.runs as f64, true, num)
        },
        versus(|r| r.peak_rss_mib, false, |x| format!("{x:.1} MiB")),
        versus(|r| r.cpu_s, false, |x| format!("{} s", secs(x))),
        versus(|r| r.startup_cpu_s, false, |x| format!("{} s", secs(x))),
        if w.backlog {
            let runs = med(s, |r| r.runs as f64).unwrap_or(f64::INFINITY);
            Verdict::check(runs <= 2.0, num(runs))
        } else {
            NA
        },
        match (w.backlog, catchup) {
            (true, Some(c)) => {
                let drain: Vec<f64> = s
                    .iter()
                    .map(|r| r.drain_s.unwrap_or(f64::INFINITY))
                    .collect();
                let d = median(&drain).unwrap_or(f64::INFINITY);
                Verdict::check(d <= 1.5 * c, format!("{} vs 1.5 × {}", secs(d), secs(c)))
            }
            _ => NA,
        },
        NA,
    ]
}

/// The targets table: one row per workload, PASS/MISS per target, on the
/// medians; returns (passed, checked).
pub fn targets_table(results: &[WorkloadResult], out: &mut String) -> (usize, usize) {
    let _ = writeln!(out, "| workload | {} |", TARGETS.join(" | "));
    let _ = writeln!(out, "|---{}|", "|---".repeat(TARGETS.len()));
    let (mut pass, mut all) = (0, 0);
    for w in results {
        let v = verdicts(w);
        for x in &v {
            match x {
                Verdict::Pass(_) => {
                    pass += 1;
                    all += 1
                }
                Verdict::Miss(_) => all += 1,
                Verdict::NotApplicable => {}
            }
        }
        let cells: Vec<String> = v.iter().map(Verdict::cell).collect();
        let _ = writeln!(out, "| {} | {} |", w.name, cells.join(" | "));
    }
    (pass, all)
}
