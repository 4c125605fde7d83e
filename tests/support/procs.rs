//! The process tree below a server the test started, read from /proc.
//! Used to end a server's per-connection children (sshd leaves its
//! sessions running when the listener dies) and to find the remote rsync
//! processes a test wants to freeze. Only descendants of a child the test
//! holds are ever signalled.

use std::collections::HashMap;

/// (pid, ppid, comm) of every process.
fn table() -> Vec<(u32, u32, String)> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = stat[open + 1..close].to_string();
        let ppid = stat[close + 1..]
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        out.push((pid, ppid, comm));
    }
    out
}

/// Every descendant of `root` (not `root` itself), with its parent and
/// command name.
pub fn descendants(root: u32) -> Vec<(u32, u32, String)> {
    let t = table();
    let mut kids: HashMap<u32, Vec<&(u32, u32, String)>> = HashMap::new();
    for p in &t {
        kids.entry(p.1).or_default().push(p);
    }
    let mut out = Vec::new();
    let mut stack = vec![root];
    while let Some(p) = stack.pop() {
        for k in kids.get(&p).into_iter().flatten() {
            out.push((*k).clone());
            stack.push(k.0);
        }
    }
    out
}

/// The remote rsync *receivers* below `root`: rsync processes whose
/// parent is an rsync process other than `root` (the server-side rsync
/// forks its receiver from the generator).
pub fn receivers(root: u32) -> Vec<u32> {
    let d = descendants(root);
    let rsyncs: HashMap<u32, u32> = d
        .iter()
        .filter(|(_, _, c)| c == "rsync")
        .map(|(p, pp, _)| (*p, *pp))
        .collect();
    rsyncs
        .iter()
        .filter(|(_, pp)| **pp != root && rsyncs.contains_key(pp))
        .map(|(p, _)| *p)
        .collect()
}

/// Sends `sig` to a pid found below a server the test started.
pub fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) on a descendant of the test's own child.
    unsafe { libc::kill(pid as i32, sig) };
}

/// SIGKILLs every descendant of `root` (then the caller ends `root`).
pub fn kill_descendants(root: u32) {
    for (pid, _, _) in descendants(root) {
        signal(pid, libc::SIGKILL);
    }
}

/// The variable that marks every process a test server started: the
/// server gets it in its environment and passes it on (sshd through
/// `SetEnv`), so processes that outlive their parent, and are reparented
/// away from the server, are still found.
pub const MARK: &str = "SYNCD_TEST_SERVER";

/// SIGKILLs every process whose environment holds `MARK=value`.
pub fn kill_marked(value: &str) {
    let needle = format!("{MARK}={value}");
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return;
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        if env.split(|&b| b == 0).any(|v| v == needle.as_bytes()) {
            signal(pid, libc::SIGKILL);
        }
    }
}
