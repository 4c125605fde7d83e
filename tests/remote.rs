//! Remote destinations against a real sshd and a real rsync daemon on
//! loopback, with link faults injected by the test's TCP proxy: every
//! DEST form with the `/./` root; refused, blackholed, cut and frozen
//! links (changes stay queued, survive a restart, and arrive as an exact
//! mirror once the link is back, a cut large file resuming); one
//! destination down never delaying another; the watchdog ending a run a
//! half-frozen peer keeps alive; a rejected host key dead-lettered.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::support::procs;
use crate::support::proxy::{Mode, Proxy};
use crate::support::rsyncd::Rsyncd;
use crate::support::sshd::{self, Sshd};
use crate::util::*;

const T: Duration = Duration::from_secs(30);
const MIB: u64 = 1024 * 1024;

/// The worker's words for a failed attempt.
const QUEUED: &str = "stay queued";

/// `syncd run` with a short window, quick retries and short bounds (a
/// flag given in `extra` replaces the default), then SOURCE and the DESTs.
fn run_args(dir: &Dir, source: &Path, extra: &[String], dests: &[String]) -> Vec<OsString> {
    let mut a: Vec<OsString> = vec!["run".into(), "--state-dir".into(), dir.state().into()];
    for (flag, value) in [
        ("--delay", "0.2"),
        ("--backoff-max", "1"),
        ("--timeout", "3"),
        ("--contimeout", "2"),
        ("--watchdog", "5"),
    ] {
        if !extra.iter().any(|e| e == flag) {
            a.push(flag.into());
            a.push(value.into());
        }
    }
    a.extend(extra.iter().map(OsString::from));
    a.push("--".into());
    a.push(source.into());
    a.extend(dests.iter().map(OsString::from));
    a
}

fn start(dir: &Dir, source: &Path, extra: &[String], dests: &[String]) -> Daemon {
    let log = dir.root.join(format!(
        "syncd-{}.log",
        fs::read_dir(&dir.root).unwrap().count()
    ));
    Daemon::start(&run_args(dir, source, extra, dests), &log)
}

/// SOURCE as `ROOT/src/./`: DEST mirrors `src/` itself.
fn src_root(dir: &Dir) -> PathBuf {
    let mut s = dir.src().into_os_string();
    s.push("/./");
    s.into()
}

fn count(d: &Daemon, needle: &str) -> usize {
    d.log().matches(needle).count()
}

fn wait_count(d: &Daemon, needle: &str, n: usize, within: Duration) {
    let t = Instant::now();
    while count(d, needle) < n {
        assert!(
            t.elapsed() < within,
            "{needle:?} not logged {n} times within {within:?}; log:\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits for an exact mirror and for the run that made it to be
/// acknowledged (`synced` is the count of "] synced" before the change),
/// so the next fault meets an idle destination.
fn settle(d: &Daemon, dir: &Dir, synced: usize) {
    dir.wait_mirror(T);
    wait_count(d, "] synced", synced + 1, T);
}

/// Writes `len` pseudo-random (incompressible) bytes to `rel` under src,
/// through a rename so rsync never sees a half-written file.
fn write_big(dir: &Dir, rel: &str, len: u64, seed: u64) {
    let mut x = seed | 1;
    let mut data = Vec::with_capacity(len as usize);
    while (data.len() as u64) < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.extend_from_slice(&x.to_le_bytes());
    }
    data.truncate(len as usize);
    let tmp = dir.root.join(format!("{rel}.tmp"));
    fs::write(&tmp, &data).unwrap();
    fs::rename(&tmp, dir.s(rel)).unwrap();
}

/// A destination's entry in `queue inspect --json`, by name or target (a
/// destination that never finished a run is listed under its target).
fn inspected(dir: &Dir, name: &str) -> serde_json::Value {
    let ins = inspect(&dir.state());
    ins["destinations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == name || d["target"] == name)
        .unwrap_or_else(|| panic!("no destination {name} in {ins}"))
        .clone()
}

#[test]
fn every_dest_form_with_the_virtual_root() {
    let dir = Dir::new();
    let sshd = Sshd::start(&dir.root.join("sshd"));
    let modules = dir.root.join("modules");
    let rsyncd = Rsyncd::start(&dir.root.join("rsyncd"), &modules);
    dir.write("top", "1");
    dir.write("-dash/ new\nline", "2");
    // SOURCE ROOT/./src: `src` itself is recreated under every DEST.
    let source = dir.root.join(".").join("src");
    let r = dir.root.display();
    let dests = [
        format!("{}@127.0.0.1:{r}/ssh-user", sshd.user),
        format!("127.0.0.1:{r}/ssh-host"),
        "127.0.0.1::mod/plain".to_string(),
        format!("rsync://127.0.0.1:{}/mod/url", rsyncd.port),
        format!("{r}/local"),
    ];
    let landed = [
        dir.root.join("ssh-user/src"),
        dir.root.join("ssh-host/src"),
        modules.join("plain/src"),
        modules.join("url/src"),
        dir.root.join("local/src"),
    ];
    let extra = [
        "-e".to_string(),
        format!("{} -p {}", sshd.rsh(), sshd.port),
        "--dest-opt".into(),
        format!("127.0.0.1-mod:port={}", rsyncd.port),
    ];
    let d = start(&dir, &source, &extra, &dests);
    for l in &landed {
        wait_mirror(&dir.src(), l, T);
    }
    dir.write("new dir/f", "3");
    fs::rename(dir.s("top"), dir.s("renamed")).unwrap();
    fs::remove_dir_all(dir.s("-dash")).unwrap();
    std::os::unix::fs::symlink("renamed", dir.s("link")).unwrap();
    for l in &landed {
        wait_mirror(&dir.src(), l, T);
    }
    // Every form got there; `stop` may cut the last acknowledgement short
    // (the mirror can be complete before rsync exits), which only leaves
    // that changeset queued for the next start.
    assert!(d.stop().success());
}

/// The server a fault test talks to, behind the proxy.
enum Server {
    Ssh(Sshd),
    Daemon(Rsyncd),
}

impl Server {
    fn pid(&self) -> u32 {
        match self {
            Server::Ssh(s) => s.pid(),
            Server::Daemon(d) => d.pid(),
        }
    }
}

/// Refuse, blackhole, cut a 50 MiB transfer (with a clean restart during
/// that outage), then freeze a transfer: after each, DST becomes an exact
/// mirror once the link is back.
fn survives_every_fault(ssh: bool) {
    let dir = Dir::new();
    dir.write("a", "1");
    dir.write("sub/b", "2");
    // -v: the log says when a changeset is committed.
    let (server, dest, name, mut extra) = if ssh {
        let s = Sshd::start(&dir.root.join("sshd"));
        let dest = format!("127.0.0.1:{}", dir.dst().display());
        let extra = vec!["-v".to_string(), "-e".into(), s.rsh()];
        (Server::Ssh(s), dest, "127.0.0.1", extra)
    } else {
        let s = Rsyncd::start(&dir.root.join("rsyncd"), &dir.dst());
        let extra = vec!["-v".to_string()];
        (Server::Daemon(s), String::new(), "127.0.0.1-mod", extra)
    };
    let proxy = Proxy::start(match &server {
        Server::Ssh(s) => s.port,
        Server::Daemon(d) => d.port,
    });
    let dest = if ssh {
        extra.push("--dest-opt".into());
        extra.push(format!("{name}:port={}", proxy.port()));
        dest
    } else {
        format!("rsync://127.0.0.1:{}/mod/", proxy.port())
    };
    let source = src_root(&dir);
    let d = start(&dir, &source, &extra, std::slice::from_ref(&dest));
    d.wait_log("] synced", T);
    dir.wait_mirror(T);

    // Healthy: three syncs, each its own run.
    for i in 0..3 {
        let synced = count(&d, "] synced");
        dir.write(format!("healthy/{i}"), "h");
        settle(&d, &dir, synced);
    }
    if ssh {
        assert_eq!(proxy.accepted(), 1, "one ssh connection carried every run");
    }

    // Refused, then blackholed: the changes wait, then arrive.
    for (mode, tag) in [(Mode::Refuse, "refused"), (Mode::Blackhole, "blackholed")] {
        let before = count(&d, QUEUED);
        proxy.set(mode);
        for i in 0..20 {
            dir.write(format!("{tag}/f{i}"), tag);
        }
        fs::remove_file(dir.s("healthy/0")).ok();
        wait_count(&d, QUEUED, before + 1, T);
        assert!(!mirror_diff(&dir.src(), &dir.dst()).is_empty());
        // Asked while the daemon runs: the backlog and why it waits.
        let live = inspected(&dir, name);
        assert!(live["pending"].as_u64().unwrap() >= 1, "{live}");
        assert!(live["last_error"].is_string(), "{live}");
        let synced = count(&d, "] synced");
        proxy.set(Mode::Pass);
        settle(&d, &dir, synced);
    }
    if !ssh {
        assert!(
            d.log().contains("exited with 35"),
            "a blackholed daemon is bounded by --contimeout"
        );
    }

    // Cut mid-transfer of a 50 MiB file; the link stays down.
    let before = count(&d, QUEUED);
    proxy.fault_after(20 * MIB, Mode::Refuse);
    write_big(&dir, "big", 50 * MIB, 1);
    wait_until("the cut", T, || proxy.cuts() == 1);
    wait_count(&d, QUEUED, before + 1, T);
    let part = dir.dst().join(".syncd-partial/big");
    wait_until("the partial file", T, || {
        fs::metadata(&part).is_ok_and(|m| m.len() > 0)
    });
    let kept = fs::metadata(&part).unwrap().len();
    assert!(kept < 50 * MIB, "{kept}");
    // More changes during the outage, committed (not just seen), then a
    // clean restart.
    let commits = count(&d, "committed changeset");
    dir.write("during-outage/x", "x");
    fs::remove_dir_all(dir.s("refused")).unwrap();
    wait_count(&d, "committed changeset", commits + 1, T);
    assert!(d.stop().success());
    let queued = inspected(&dir, name);
    assert!(queued["pending"].as_u64().unwrap() >= 1, "{queued}");
    assert!(queued["pending_paths"].as_u64().unwrap() >= 3, "{queued}");
    assert!(queued["last_error"].as_str().is_some(), "{queued}");
    let mut extra2 = extra.clone();
    extra2.push("--no-initial-sync".into());
    let d = start(&dir, &source, &extra2, std::slice::from_ref(&dest));
    d.wait_log("watching", T);
    let up = proxy.up_bytes();
    proxy.set(Mode::Pass);
    dir.wait_mirror(Duration::from_secs(60));
    wait_count(&d, "] synced", 1, T);
    let sent = proxy.up_bytes() - up;
    eprintln!("cut at 20 MiB upstream: {kept} bytes kept for resume, {sent} bytes sent after it");
    assert!(
        sent < 50 * MIB - kept / 2,
        "the cut file resumed from its {kept} bytes: {sent} bytes went up"
    );
    assert!(
        !d.log().contains("queueing a full sync"),
        "the queue carried it"
    );

    // Frozen mid-transfer: open connections stall, new ones get no byte.
    let before = count(&d, QUEUED);
    proxy.fault_after(2 * MIB, Mode::Freeze);
    write_big(&dir, "frozen", 20 * MIB, 2);
    dir.write("frozen-small", "s");
    wait_until("the freeze", T, || proxy.cuts() == 2);
    wait_count(&d, QUEUED, before + 1, T);
    // The server side of a frozen run does not give up by itself: its
    // keep-alives still fit into the socket buffer, which rsync counts as
    // I/O. A real frozen link ends when TCP gives up; here the frozen
    // connections are reset, the server side saves its partial file and
    // exits, then the link comes back.
    proxy.set(Mode::Refuse);
    wait_until("the remote rsync to exit", T, || {
        procs::receivers(server.pid()).is_empty()
    });
    let synced = count(&d, "] synced");
    proxy.set(Mode::Pass);
    settle(&d, &dir, synced);
    assert!(d.stop().success());
    let end = inspected(&dir, name);
    assert_eq!(
        (end["pending"].as_u64(), end["dead"].as_u64()),
        (Some(0), Some(0)),
        "{end}"
    );
}

#[test]
fn ssh_destination_survives_refuse_blackhole_cut_and_freeze() {
    survives_every_fault(true);
}

#[test]
fn daemon_destination_survives_refuse_blackhole_cut_and_freeze() {
    survives_every_fault(false);
}

#[test]
fn a_destination_down_for_the_whole_run_never_delays_another() {
    let dir = Dir::new();
    let sshd = Sshd::start(&dir.root.join("sshd"));
    let down = dir.root.join("down");
    let rsyncd = Rsyncd::start(&dir.root.join("rsyncd"), &down);
    let proxy = Proxy::start(rsyncd.port);
    proxy.set(Mode::Blackhole);
    dir.write("first", "1");
    let dests = [
        format!("127.0.0.1:{}", dir.dst().display()),
        format!("rsync://127.0.0.1:{}/mod/", proxy.port()),
    ];
    // Each attempt at the blackholed daemon hangs for 20 s.
    let extra = [
        "-e".to_string(),
        sshd.rsh(),
        "--dest-opt".into(),
        format!("127.0.0.1:port={}", sshd.port),
        "--dest-opt".into(),
        "127.0.0.1-mod:contimeout=20".into(),
        "--dest-opt".into(),
        "127.0.0.1-mod:timeout=30".into(),
    ];
    let d = start(&dir, &src_root(&dir), &extra, &dests);
    dir.wait_mirror(T);
    let mut worst = Duration::ZERO;
    for round in 0..3 {
        for i in 0..10 {
            dir.write(format!("round{round}/f{i}"), "x");
        }
        let t = Instant::now();
        dir.wait_mirror(Duration::from_secs(8));
        worst = worst.max(t.elapsed());
        // The ack follows rsync's exit.
        wait_count(&d, "[127.0.0.1] synced", round + 2, T);
    }
    eprintln!("healthy destination's worst latency with the other down: {worst:?}");
    assert!(
        fs::read_dir(&down).unwrap().next().is_none(),
        "the blackholed daemon got nothing"
    );
    let live = inspected(&dir, "127.0.0.1-mod");
    assert!(live["pending"].as_u64().unwrap() >= 4, "{live}");
    assert!(d.stop().success());
    assert_eq!(inspected(&dir, "127.0.0.1")["pending"], 0);
    let down_q = inspected(&dir, &dests[1]);
    assert!(down_q["pending"].as_u64().unwrap() >= 4, "{down_q}");
    assert_eq!(down_q["dead"], 0, "{down_q}");
}

#[test]
fn the_watchdog_ends_a_run_a_half_frozen_peer_keeps_alive() {
    let dir = Dir::new();
    let sshd = Sshd::start(&dir.root.join("sshd"));
    let dest = format!("127.0.0.1:{}", dir.dst().display());
    let extra = [
        "-e".to_string(),
        sshd.rsh(),
        "--port".into(),
        sshd.port.to_string(),
        "--timeout".into(),
        "60".into(),
        "--watchdog".into(),
        "3".into(),
        "--bwlimit".into(),
        "2M".into(),
    ];
    let d = start(&dir, &src_root(&dir), &extra, &[dest]);
    d.wait_log("] synced", T);
    write_big(&dir, "big", 10 * MIB, 3);
    // Stop only the remote receiver: its generator keeps the link alive.
    let mut stopped = Vec::new();
    wait_until("the remote receiver", T, || {
        stopped = procs::receivers(sshd.pid());
        !stopped.is_empty()
    });
    for &p in &stopped {
        procs::signal(p, libc::SIGSTOP);
    }
    d.wait_log("no progress", T);
    assert!(
        !d.log().contains("exited with 30"),
        "--timeout did not end it; the watchdog did"
    );
    // The peer wakes up, sees its client gone, and keeps the partial file.
    for &p in &stopped {
        procs::signal(p, libc::SIGCONT);
    }
    wait_until("the old receiver to exit", T, || {
        stopped
            .iter()
            .all(|p| !Path::new(&format!("/proc/{p}")).exists())
    });
    dir.wait_mirror(Duration::from_secs(60));
    assert!(d.stop().success());
}

#[test]
fn a_rejected_host_key_is_a_loud_dead_letter_not_a_silent_drop() {
    let dir = Dir::new();
    let sshd = Sshd::start(&dir.root.join("sshd"));
    dir.write("f", "1");
    // known_hosts names another key for the server.
    let other = dir.root.join("other_key");
    let st = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&other)
        .status()
        .unwrap();
    assert!(st.success());
    let key = fs::read_to_string(other.with_extension("pub")).unwrap();
    let wrong = dir.root.join("wrong_known_hosts");
    let k: Vec<&str> = key.split_whitespace().take(2).collect();
    fs::write(&wrong, format!("{} {}\n", sshd::ALIAS, k.join(" "))).unwrap();
    let rsh = sshd.rsh().replace(
        &sshd.dir.join("known_hosts").display().to_string(),
        &wrong.display().to_string(),
    );
    let dest = format!("127.0.0.1:{}", dir.dst().display());
    let extra = [
        "-e".to_string(),
        rsh,
        "--port".into(),
        sshd.port.to_string(),
    ];
    let d = start(&dir, &src_root(&dir), &extra, &[dest]);
    d.wait_log("moved to dead letters", T);
    assert!(d.stop().success());
    let q = inspected(&dir, "127.0.0.1");
    assert!(q["dead"].as_u64().unwrap() >= 1, "{q}");
    assert!(
        q["last_error"]
            .as_str()
            .unwrap()
            .contains("host key was rejected"),
        "{q}"
    );
    assert!(
        fs::read_dir(dir.dst()).unwrap().next().is_none(),
        "nothing reached an unverified host"
    );
}

/// `RSYNC_RSH` sets the default remote shell, as it does for rsync (issue
/// 16, item 8): here it alone carries the key, the known hosts and the
/// port of the test's sshd, and syncd replicates through it.
#[test]
fn rsync_rsh_alone_reaches_an_ssh_destination() {
    let dir = Dir::new();
    let sshd = Sshd::start(&dir.root.join("sshd"));
    dir.write("a", "1");
    dir.write("sub/b", "2");
    let dest = format!("127.0.0.1:{}", dir.dst().display());
    let args = run_args(&dir, &src_root(&dir), &["-v".into()], &[dest]);
    let log = dir.root.join("syncd-rsync-rsh.log");
    let f = fs::File::create(&log).unwrap();
    let child = std::process::Command::new(bin())
        .args(&args)
        .env("RSYNC_RSH", format!("{} -p {}", sshd.rsh(), sshd.port))
        .stdin(std::process::Stdio::null())
        .stdout(f.try_clone().unwrap())
        .stderr(f)
        .spawn()
        .unwrap();
    let d = Daemon {
        child: Some(child),
        log,
    };
    dir.wait_mirror(T);
    dir.write("sub/c", "3");
    fs::remove_file(dir.s("a")).unwrap();
    dir.wait_mirror(T);
    assert!(d.stop().success());
}
