//! Moves are replayed on the destination (issue 14): renames of files and
//! directories within and across directories, into new directories, over
//! existing files and directories, swaps and chains in one window, a
//! rename then a write, a directory of 1,000 files, hostile names, a move
//! whose old path is missing on the destination (the fallback), and a kill
//! in the middle of a batch of moves. On a local destination and on an
//! ssh one (a loopback sshd, moves through its SFTP subsystem), each case
//! ends in an exact mirror, and the bytes rsync sent (its `--stats`, as the
//! daemon logs them) show that nothing moved was sent again.

use std::fs;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use crate::support::rsyncd::Rsyncd;
use crate::support::sshd::Sshd;
use crate::util::*;

const T: Duration = Duration::from_secs(40);
const MIB: usize = 1024 * 1024;

/// The bytes rsync sent in every run the daemon logged after the first
/// `from` bytes of its log (`... in 0.11s, 929 B sent`).
fn sent_since(log: &str, from: usize) -> u64 {
    log[from.min(log.len())..]
        .lines()
        .filter(|l| l.contains("] synced "))
        .filter_map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            let i = words.iter().position(|w| *w == "sent")?;
            let n: f64 = words.get(i.checked_sub(2)?)?.parse().ok()?;
            let unit = match words.get(i - 1)?.trim_end_matches(',') {
                "B" => 1.0,
                "kB" => 1e3,
                "MB" => 1e6,
                "GB" => 1e9,
                _ => return None,
            };
            Some((n * unit) as u64)
        })
        .sum()
}

/// A file of `len` bytes no compression or delta could guess.
fn random_file(p: &Path, len: usize, seed: u64) {
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut data = Vec::with_capacity(len);
    while data.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.extend_from_slice(&x.to_le_bytes());
    }
    data.truncate(len);
    fs::write(p, data).unwrap();
}

/// The destination and the extra flags of each kind.
enum Kind {
    Local,
    Ssh(Sshd),
    Daemon(Rsyncd),
}

impl Kind {
    fn dest(&self, dir: &Dir) -> String {
        match self {
            Kind::Local => dir.dst().display().to_string(),
            Kind::Ssh(s) => format!("{}@127.0.0.1:{}", s.user, dir.dst().display()),
            Kind::Daemon(d) => format!("rsync://127.0.0.1:{}/mod/", d.port),
        }
    }

    fn extra(&self) -> Vec<String> {
        match self {
            Kind::Local => vec![],
            Kind::Ssh(s) => vec!["-e".into(), format!("{} -p {}", s.rsh(), s.port)],
            Kind::Daemon(_) => vec![],
        }
    }
}

fn start(dir: &Dir, kind: &Kind, flags: &[&str]) -> Daemon {
    let mut src = dir.src().into_os_string();
    src.push("/./");
    let mut a: Vec<std::ffi::OsString> = vec![
        "run".into(),
        "-v".into(),
        "--state-dir".into(),
        dir.state().into(),
        "--delay".into(),
        "0.3".into(),
        "--backoff-max".into(),
        "1".into(),
    ];
    a.extend(kind.extra().into_iter().map(Into::into));
    a.extend(flags.iter().map(Into::into));
    a.push("--".into());
    a.push(src);
    a.push(kind.dest(dir).into());
    let log = dir.root.join(format!(
        "syncd-{}.log",
        fs::read_dir(&dir.root).unwrap().count()
    ));
    Daemon::start(&a, &log)
}

/// Runs `change` on the source and waits for the exact mirror and an empty
/// queue; returns the bytes rsync sent meanwhile.
fn step(d: &Daemon, dir: &Dir, what: &str, change: impl FnOnce(&Dir)) -> u64 {
    let mark = d.log().len();
    change(dir);
    dir.wait_mirror(T);
    wait_drained(&dir.state(), T);
    let sent = sent_since(&d.log(), mark);
    eprintln!("{what}: {sent} bytes sent");
    sent
}

fn big(dir: &Dir, rel: &str, seed: u64) {
    random_file(&dir.s(rel), 2 * MIB, seed);
}

/// One change to the source, named for the failure message.
type Change = Box<dyn FnOnce(&Dir)>;

fn every_kind_of_move(make: impl FnOnce(&Dir) -> Kind) {
    let dir = Dir::new();
    let kind = make(&dir);
    for (i, name) in [
        "a/f1",
        "a/f2",
        "a/f3",
        "a/f4",
        "b/existing",
        "x",
        "y",
        "s1",
        "s2",
    ]
    .iter()
    .enumerate()
    {
        big(&dir, name, i as u64 + 1);
    }
    for i in 0..3 {
        big(&dir, &format!("d/inner/g{i}"), 100 + i);
    }
    for i in 0..1000 {
        random_file(&dir.s(format!("thousand/f{i}")), 4096, 1000 + i);
    }
    big(&dir, "n\nl", 7);
    random_file(&dir.s(b"\xff\xfe"), 2 * MIB, 8);
    fs::create_dir_all(dir.s("empty")).unwrap();
    let d = start(&dir, &kind, &[]);
    d.wait_log("watching", T);
    dir.wait_mirror(T);
    wait_drained(&dir.state(), T);
    // Anything under 64 KiB is metadata; each case moves 2 MiB or more.
    let small = 64 * 1024;
    let cases: Vec<(&str, Change)> = vec![
        (
            "a file renamed in its directory",
            Box::new(|d: &Dir| fs::rename(d.s("a/f1"), d.s("a/f1-renamed")).unwrap()),
        ),
        (
            "a file moved to another directory",
            Box::new(|d: &Dir| fs::rename(d.s("a/f2"), d.s("b/f2")).unwrap()),
        ),
        (
            "a file moved into a new directory",
            Box::new(|d: &Dir| {
                fs::create_dir(d.s("c")).unwrap();
                fs::rename(d.s("a/f3"), d.s("c/f3")).unwrap();
            }),
        ),
        (
            "a file renamed over another",
            Box::new(|d: &Dir| fs::rename(d.s("a/f4"), d.s("b/existing")).unwrap()),
        ),
        (
            "a directory renamed",
            Box::new(|d: &Dir| fs::rename(d.s("d"), d.s("d-renamed")).unwrap()),
        ),
        (
            "a directory renamed over an empty one",
            Box::new(|d: &Dir| fs::rename(d.s("d-renamed"), d.s("empty")).unwrap()),
        ),
        (
            "a swap through a temporary name",
            Box::new(|d: &Dir| {
                fs::rename(d.s("s1"), d.s("tmp")).unwrap();
                fs::rename(d.s("s2"), d.s("s1")).unwrap();
                fs::rename(d.s("tmp"), d.s("s2")).unwrap();
            }),
        ),
        (
            "a chain in one window",
            Box::new(|d: &Dir| {
                fs::rename(d.s("x"), d.s("x2")).unwrap();
                fs::rename(d.s("x2"), d.s("x3")).unwrap();
            }),
        ),
        (
            "a rename then a write",
            Box::new(|d: &Dir| {
                fs::rename(d.s("y"), d.s("y2")).unwrap();
                let mut f = fs::OpenOptions::new().append(true).open(d.s("y2")).unwrap();
                f.write_all(b"appended").unwrap();
            }),
        ),
        (
            "a directory of 1,000 files renamed",
            Box::new(|d: &Dir| fs::rename(d.s("thousand"), d.s("thousand-renamed")).unwrap()),
        ),
        (
            // `new` is not watched yet when the directories land in it, so
            // their moves have no second half: they are found by their
            // names (kept, as `mv a b new/` keeps them).
            "directories moved into a directory made just before",
            Box::new(|d: &Dir| {
                fs::create_dir(d.s("new")).unwrap();
                fs::rename(d.s("empty"), d.s("new/empty")).unwrap();
                fs::rename(d.s("thousand-renamed"), d.s("new/thousand-renamed")).unwrap();
            }),
        ),
        (
            "hostile names",
            Box::new(|d: &Dir| {
                fs::rename(d.s("n\nl"), d.s("-rf x")).unwrap();
                fs::rename(d.s(b"\xff\xfe"), d.s(b"new \xfe\nname")).unwrap();
            }),
        ),
    ];
    let local = matches!(kind, Kind::Local);
    for (what, change) in cases {
        let sent = step(&d, &dir, what, change);
        // A written file is copied whole to a local destination (rsync
        // sends deltas only over a link): once, not twice.
        let allowed = match (what, local) {
            ("a rename then a write", true) => 2 * MIB as u64 + small,
            _ => small,
        };
        assert!(
            sent < allowed,
            "{what}: {sent} bytes sent, the moved data again"
        );
    }
    assert!(
        d.log().contains("replayed "),
        "the moves were replayed: {}",
        d.log()
    );
    // The fallback: the old path is not on the destination.
    fs::remove_file(dir.dst().join("x3")).unwrap();
    let sent = step(&d, &dir, "a move whose old path is missing", |d| {
        fs::rename(d.s("x3"), d.s("x4")).unwrap()
    });
    assert!(sent >= 2 * MIB as u64, "the fallback transfers it: {sent}");
    assert!(d.log().contains("sent as transfers"), "{}", d.log());
    assert!(d.stop().success());
}

#[test]
fn every_kind_of_move_is_replayed_on_a_local_destination() {
    every_kind_of_move(|_| Kind::Local);
}

#[test]
fn every_kind_of_move_is_replayed_over_ssh() {
    every_kind_of_move(|dir| Kind::Ssh(Sshd::start(&dir.root.join("sshd"))));
}

/// A key that may run rsync only (`rrsync`, as rsync ships it): rrsync
/// refuses syncd's `--modify-window=-1`, and the failure says to set
/// `exact-mtimes=false`; with it, the runs pass, the SFTP subsystem cannot
/// be opened, the first batch with moves says so once, and from then on
/// that destination's moves are transfers, with no failure and no retry
/// loop.
#[test]
fn a_key_restricted_to_rsync_sends_moves_as_transfers_and_says_so_once() {
    let dir = Dir::new();
    big(&dir, "a/f", 1);
    big(&dir, "b/g", 2);
    let sshd = Sshd::start(&dir.root.join("sshd"));
    sshd.restrict(r#"command="/usr/bin/rrsync /",restrict"#);
    let kind = Kind::Ssh(sshd);
    let d = start(&dir, &kind, &[]);
    d.wait_log("exact-mtimes=false", T);
    assert!(d.stop().success());
    let d = start(&dir, &kind, &["--dest-opt", "127.0.0.1:exact-mtimes=false"]);
    d.wait_log("watching", T);
    dir.wait_mirror(T);
    wait_drained(&dir.state(), T);
    let sent = step(&d, &dir, "a directory renamed", |d| {
        fs::rename(d.s("a"), d.s("a2")).unwrap()
    });
    assert!(sent >= 2 * MIB as u64, "sent as a transfer: {sent}");
    let sent = step(&d, &dir, "another directory renamed", |d| {
        fs::rename(d.s("b"), d.s("b2")).unwrap()
    });
    assert!(sent >= 2 * MIB as u64, "sent as a transfer: {sent}");
    let log = d.log();
    assert_eq!(
        log.matches("renames cannot be replayed on this destination")
            .count(),
        1,
        "{log}"
    );
    assert!(!log.contains("ERROR"), "{log}");
    assert!(d.stop().success());
}

/// A symlink of the source replaced by a directory, and a file moved into
/// it, in one window: on the destination the directory is still the
/// symlink when the moves are replayed, and a rename through it would land
/// in the symlink's target, where no event ever names it again.
fn a_move_under_a_symlink_turned_directory(make: impl FnOnce(&Dir) -> Kind) {
    let dir = Dir::new();
    dir.write("real/keep", "k");
    dir.write("x", "moved");
    std::os::unix::fs::symlink("real", dir.s("link")).unwrap();
    let kind = make(&dir);
    let d = start(&dir, &kind, &[]);
    d.wait_log("watching", T);
    dir.wait_mirror(T);
    wait_drained(&dir.state(), T);
    fs::remove_file(dir.s("link")).unwrap();
    fs::create_dir(dir.s("link")).unwrap();
    fs::rename(dir.s("x"), dir.s("link/x")).unwrap();
    dir.wait_mirror(T);
    wait_drained(&dir.state(), T);
    assert!(!dir.dst().join("real/x").exists());
    assert!(
        d.log().contains("is a symlink on the destination"),
        "{}",
        d.log()
    );
    assert!(d.stop().success());
}

#[test]
fn a_move_under_a_symlink_turned_directory_falls_back_locally() {
    a_move_under_a_symlink_turned_directory(|_| Kind::Local);
}

#[test]
fn a_move_under_a_symlink_turned_directory_falls_back_over_ssh() {
    a_move_under_a_symlink_turned_directory(|dir| Kind::Ssh(Sshd::start(&dir.root.join("sshd"))));
}

/// Sets the modification time of `p` to the nanosecond.
fn set_mtime(p: &Path, at: &str) {
    let st = std::process::Command::new("touch")
        .args(["-m", "-d", at])
        .arg(p)
        .status()
        .unwrap();
    assert!(st.success());
}

/// A batch whose data pass fails after its moves were replayed is retried;
/// the retry must not replay them again: a swap replayed twice puts each
/// file where the other belongs, and two files of the same size and mtime
/// (written within one tick of the kernel's clock) pass rsync's quick
/// check. The retry compares the moved paths by content instead.
#[test]
fn a_retried_batch_does_not_replay_its_swap_twice() {
    let dir = Dir::new();
    dir.write("a", "A".repeat(64));
    dir.write("b", "B".repeat(64));
    let at = "@1700000000.123456789";
    set_mtime(&dir.s("a"), at);
    set_mtime(&dir.s("b"), at);
    fs::create_dir_all(dir.s("blocked")).unwrap();
    let d = start(&dir, &Kind::Local, &[]);
    d.wait_log("watching", T);
    dir.wait_mirror(T);
    wait_drained(&dir.state(), T);
    let blocked = Immutable::new(&dir.dst().join("blocked"));
    let failures = d.log().matches("attempt 1 failed").count();
    fs::rename(dir.s("a"), dir.s("t")).unwrap();
    fs::rename(dir.s("b"), dir.s("a")).unwrap();
    fs::rename(dir.s("t"), dir.s("b")).unwrap();
    dir.write("blocked/new", "x");
    wait_until("the first attempt failed after its moves", T, || {
        d.log().matches("attempt 1 failed").count() > failures
    });
    drop(blocked);
    dir.wait_mirror(T);
    wait_drained(&dir.state(), T);
    assert_eq!(
        fs::read(dir.dst().join("a")).unwrap(),
        "B".repeat(64).as_bytes()
    );
    assert!(
        d.log().contains("may have been replayed before"),
        "{}",
        d.log()
    );
    assert!(d.stop().success());
}

/// Kills the daemon while it replays a batch of 2,000 renames, at a few
/// moments after their commit; the restart must end in an exact mirror.
#[test]
fn a_kill_in_the_middle_of_a_batch_of_moves_ends_in_an_exact_mirror() {
    let dir = Dir::new();
    for i in 0..2000 {
        dir.write(format!("m/f{i}"), format!("{i}"));
    }
    let kind = Kind::Local;
    for (round, wait_us) in [0u64, 2_000, 10_000, 40_000].into_iter().enumerate() {
        let d = start(&dir, &kind, &[]);
        d.wait_log("watching", T);
        dir.wait_mirror(T);
        wait_drained(&dir.state(), T);
        let before = d.log().matches("committed changeset").count();
        for i in 0..2000 {
            let (a, b) = match round % 2 {
                0 => (format!("m/f{i}"), format!("m/g{i}")),
                _ => (format!("m/g{i}"), format!("m/f{i}")),
            };
            fs::rename(dir.s(a), dir.s(b)).unwrap();
        }
        wait_until("the batch is committed", T, || {
            d.log().matches("committed changeset").count() > before
        });
        std::thread::sleep(Duration::from_micros(wait_us));
        d.kill9();
        let d = start(&dir, &kind, &[]);
        dir.wait_mirror(T);
        wait_drained(&dir.state(), T);
        assert!(d.stop().success());
    }
}

/// An rsync daemon cannot rename: a file renamed within its directory is
/// sent first with `--fuzzy`, as a delta of its old self; one moved to
/// another directory is sent whole. The mirror is exact either way.
#[test]
fn file_renames_to_a_daemon_are_sent_as_deltas_of_the_old_file() {
    let dir = Dir::new();
    big(&dir, "a/f", 1);
    big(&dir, "a/g", 2);
    let kind = Kind::Daemon(Rsyncd::start(&dir.root.join("rsyncd"), &dir.dst()));
    let d = start(&dir, &kind, &[]);
    d.wait_log("watching", T);
    dir.wait_mirror(T);
    wait_drained(&dir.state(), T);
    let sent = step(&d, &dir, "a file renamed in its directory", |d| {
        fs::rename(d.s("a/f"), d.s("a/f-renamed")).unwrap()
    });
    assert!(sent < (MIB / 4) as u64, "a delta of the old file: {sent}");
    let sent = step(&d, &dir, "a file moved to another directory", |d| {
        fs::create_dir(d.s("b")).unwrap();
        fs::rename(d.s("a/g"), d.s("b/g")).unwrap();
    });
    assert!(sent >= 2 * MIB as u64, "sent whole: {sent}");
    assert!(
        d.log().contains("an rsync daemon cannot rename"),
        "{}",
        d.log()
    );
    assert!(d.stop().success());
}
