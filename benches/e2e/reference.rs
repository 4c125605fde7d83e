//! The rsync reference of every workload: the same pre-change trees and
//! change with no daemon, then one catch-up `rsync -a --delete --stats`
//! (what a cron job would run; over ssh, through a counting proxy, for the
//! ssh workloads), checked for an exact mirror, and the same command once
//! more (the no-op: what finding that nothing changed costs). Their CPU
//! comes from getrusage(RUSAGE_CHILDREN).

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, Result};

use crate::link::{stats_sent, Bytes, Link};
use crate::measure::{Dirs, Env, RefRun};
use crate::mirror::Mirror;
use crate::tree::now;
use crate::workloads::{Ctx, Workload};

/// The reference: catch-up rsync of the change, then a no-op rsync.
pub fn reference(w: &dyn Workload, env: &Env, root: &Path) -> Result<RefRun> {
    let d = Dirs::fresh(root, w.big())?;
    d.prepare(w)?;
    let delay = w.delay(env.delay);
    let cx = Ctx {
        src: &d.src,
        dst: &d.dst,
        delay,
        monitor: None,
        commits: None,
        cpu: None,
        probes: None,
    };
    let mut notes = w.change(&cx)?.notes;
    let link = Link::new(env.sshd.as_ref(), w.remote())?;
    let count0 = link.count();
    let (catchup_s, catchup_cpu_s, sent) = timed_rsync(env, &d, link.remote(), &mut notes)?;
    let bytes = Bytes {
        proxy: link.count().zip(count0).map(|(a, b)| a.since(b)),
        rsync_sent: Some(sent),
    };
    let diffs = Mirror::new(&d.src, &d.dst)
        .differences(5)
        .map_err(anyhow::Error::msg)?;
    if !diffs.is_empty() {
        notes.push(format!(
            "catch-up rsync left differences: {}",
            diffs.join("; ")
        ));
    }
    let (noop_s, noop_cpu_s, _) = timed_rsync(env, &d, link.remote(), &mut notes)?;
    d.done(env.keep, w.big());
    Ok(RefRun {
        catchup_s,
        catchup_cpu_s,
        noop_s,
        noop_cpu_s,
        exact: diffs.is_empty(),
        notes,
        bytes,
    })
}

/// `rsync -a --delete --stats SRC/ DST/` (DST over ssh with `remote`):
/// wall time, CPU, and the bytes rsync sent.
pub fn timed_rsync(
    env: &Env,
    d: &Dirs,
    remote: Option<&crate::ssh::Remote>,
    notes: &mut Vec<String>,
) -> Result<(f64, f64, u64)> {
    let mut src = d.src.clone().into_os_string();
    src.push("/");
    let mut dst = match remote {
        Some(r) => r.target(&d.dst).into(),
        None => d.dst.clone().into_os_string(),
    };
    dst.push("/");
    let mut cmd = Command::new(&env.real_rsync);
    cmd.args(["-a", "--delete", "--stats"]);
    if let Some(r) = remote {
        cmd.arg("-e").arg(r.rsh());
    }
    let cpu0 = children_cpu();
    let t0 = now();
    let out = cmd
        .arg(src)
        .arg(dst)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .context("running rsync")?;
    let wall = now() - t0;
    if !out.status.success() {
        notes.push(format!("rsync -a --delete exited with {}", out.status));
    }
    let sent = stats_sent(&String::from_utf8_lossy(&out.stdout));
    Ok((wall, children_cpu() - cpu0, sent))
}

/// user + system CPU of every child this process has waited for.
pub fn children_cpu() -> f64 {
    // SAFETY: getrusage fills the struct we own.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}
