//! The Markdown report around the tables: the command that reproduces
//! it, the machine and software it ran on, the load before and after, then
//! each workload's table and the targets (see `report`, `moves`).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::report::{self, WorkloadResult};
use crate::{daemon, moves, Opts};

/// The report: machine, command, per-workload tables, targets.
pub fn render(
    opts: &Opts,
    work_dir: &Path,
    results: &[WorkloadResult],
    lsyncd: &str,
    load_before: &str,
    minutes: f64,
) -> String {
    use std::fmt::Write;
    let mut md = String::new();
    let _ = writeln!(md, "## End-to-end\n");
    let _ = writeln!(
        md,
        "Reproduce with:\n\n```sh\n{}\n```\n",
        command_line(opts)
    );
    let _ = writeln!(md, "Machine and software:\n");
    let _ = writeln!(md, "- CPU: {} × {}", nproc(), cpu_model());
    let _ = writeln!(
        md,
        "- memory (`free -g`):\n\n```\n{}```\n",
        shell("free -g")
    );
    let _ = writeln!(
        md,
        "- kernel {}; trees on {} ({}), the scale run's from 100,000 files on {} ({})",
        shell("uname -r").trim(),
        fs_of(work_dir),
        work_dir.display(),
        fs_of(&opts.disk_dir),
        opts.disk_dir.display()
    );
    let _ = writeln!(
        md,
        "- {}; lsyncd {}; syncd {} (release build)",
        daemon::version("rsync", "--version").unwrap_or_default(),
        lsyncd.trim_start_matches("Version: "),
        env!("CARGO_PKG_VERSION")
    );
    let _ = writeln!(
        md,
        "- load average (1, 5, 15 min) before: {load_before}; after: {}; took {minutes:.0} min\n",
        loadavg()
    );
    for w in results {
        report::workload_table(w, &mut md);
    }
    let _ = writeln!(md, "### Targets (syncd, on the medians of this run)\n");
    let (pass, all) = report::targets_table(results, &mut md);
    let _ = writeln!(md, "\nsyncd meets {pass} of {all} checked targets.\n");
    let mut moves = String::new();
    let (pass, all) = moves::targets_table(results, &mut moves);
    if all > 0 {
        let _ = writeln!(md, "### Move targets (issue 14; syncd, on the medians)\n");
        md.push_str(&moves);
        let _ = writeln!(md, "\nsyncd meets {pass} of {all} move targets.\n");
    }
    md
}

pub fn command_line(opts: &Opts) -> String {
    let mut c = String::from("cargo bench --bench e2e --");
    if opts.quick {
        c.push_str(" --quick");
    }
    if opts.runs != 3 {
        c.push_str(&format!(" --runs {}", opts.runs));
    }
    for w in &opts.workloads {
        c.push_str(&format!(" --workload {w}"));
    }
    for d in &opts.daemons {
        c.push_str(&format!(" --daemon {d}"));
    }
    if let Some(p) = &opts.syncd_alt {
        c.push_str(&format!(" --syncd-alt {}", p.display()));
    }
    if let Some(n) = opts.scale_files {
        c.push_str(&format!(" --scale-files {n}"));
    }
    if let Some(n) = opts.restart_files {
        c.push_str(&format!(" --restart-files {n}"));
    }
    if let Some(n) = opts.restart_changes {
        c.push_str(&format!(" --restart-changes {n}"));
    }
    if opts.delay != 1.0 {
        c.push_str(&format!(" --delay {}", opts.delay));
    }
    c
}

fn shell(cmd: &str) -> String {
    Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

fn nproc() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
            })
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(", "))
        .unwrap_or_default()
}

/// /dev/shm when it is a tmpfs (trees in memory: no disk noise, no
/// file system artefacts), else /tmp.
pub fn default_work_dir() -> PathBuf {
    if fs_of(Path::new("/dev/shm")) == "tmpfs" {
        PathBuf::from("/dev/shm/syncd-e2e")
    } else {
        PathBuf::from("/tmp/syncd-e2e")
    }
}

fn fs_of(p: &Path) -> String {
    let dir = p.ancestors().find(|a| a.exists()).unwrap_or(Path::new("/"));
    let out = shell(&format!("df -T '{}' | tail -1", dir.display()));
    out.split_whitespace().nth(1).unwrap_or("?").to_string()
}
