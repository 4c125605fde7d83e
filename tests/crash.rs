//! Crash safety: kill -9 at random moments, a full disk under the state
//! directory, a backlog of a thousand changesets, dead letters, and damaged
//! or newer stores. Nothing committed may be lost, and the mirror must end
//! exact every time.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::util::*;

const T: Duration = Duration::from_secs(40);

/// Parses "committed changeset N" and "acking changesets A..B" lines.
fn committed_and_acked(log: &str) -> (BTreeSet<u64>, Vec<(u64, u64)>) {
    let mut committed = BTreeSet::new();
    let mut acked = Vec::new();
    for line in log.lines() {
        if let Some(rest) = line.split("committed changeset ").nth(1) {
            if let Some(n) = rest.split(':').next().and_then(|n| n.parse().ok()) {
                committed.insert(n);
            }
        }
        if let Some(rest) = line.split("acking changesets ").nth(1) {
            let range = rest.split_whitespace().next().unwrap_or("");
            if let Some((a, b)) = range.split_once("..") {
                if let (Ok(a), Ok(b)) = (a.parse(), b.parse()) {
                    acked.push((a, b));
                }
            }
        }
    }
    (committed, acked)
}

/// The sequence numbers pending in the store, read offline.
fn pending_seqs(state: &Path) -> BTreeSet<u64> {
    let out = syncd(&[
        "queue".as_ref(),
        "inspect".as_ref(),
        "--json".as_ref(),
        "--entries".as_ref(),
        "100000000".as_ref(),
        "--state-dir".as_ref(),
        state.as_os_str(),
    ]);
    assert!(
        out.status.success(),
        "inspect after kill -9: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut seqs = BTreeSet::new();
    for d in v["destinations"].as_array().unwrap() {
        for e in d["entries"].as_array().unwrap() {
            seqs.insert(e["seq"].as_u64().unwrap());
        }
    }
    seqs
}

/// One random change to the source tree.
fn random_op(dir: &Dir, rng: &mut Rng) {
    let names: [&[u8]; 6] = [b"a", b"b c", b"-x", b"n\nl", b"\xff", b"#h"];
    let d = format!("d{}", rng.below(6));
    let mut name = rng.pick(&names).to_vec();
    name.extend_from_slice(rng.below(8).to_string().as_bytes());
    let mut rel = d.clone().into_bytes();
    rel.push(b'/');
    rel.extend_from_slice(&name);
    match rng.below(10) {
        0..=3 => dir.write(&rel, vec![b'x'; 1 + rng.below(4000) as usize]),
        4 => dir.write(&rel, vec![b'y'; (1 + rng.below(3)) as usize * 1_000_000]),
        5 => {
            let to = format!("d{}/moved{}", rng.below(6), rng.below(5));
            let _ = fs::create_dir_all(dir.s(format!("d{}", rng.below(6))));
            let _ = fs::rename(dir.s(&rel), dir.s(to));
        }
        6 => {
            let _ = fs::remove_file(dir.s(&rel));
        }
        7 => {
            let _ = fs::remove_dir_all(dir.s(&d));
        }
        8 => {
            let to = format!("r{}", rng.below(3));
            let _ = fs::remove_dir_all(dir.s(&to));
            let _ = fs::rename(dir.s(&d), dir.s(to));
        }
        _ => {
            for i in 0..rng.below(30) {
                dir.write(format!("{d}/new{}/sub/f{i}", rng.below(3)), "n");
            }
        }
    }
}

/// Which stage the daemon was in when it was killed, from its log and the
/// store: a changeset in the store whose commit was never logged was
/// killed inside the commit, after sled's flush and before the log line.
fn phase(log: &str, unlogged_commit: bool) -> &'static str {
    if unlogged_commit {
        return "during a commit (flushed, not yet logged)";
    }
    let last = log
        .lines()
        .rev()
        .find(|l| {
            l.contains("committed changeset")
                || l.contains("running rsync")
                || l.contains("acking")
                || l.contains("] acked")
        })
        .unwrap_or("");
    if last.contains("running rsync") {
        "during rsync"
    } else if last.contains("acking") {
        "during the ack"
    } else if last.contains("committed changeset") {
        "after a commit, before rsync"
    } else {
        "window open or idle"
    }
}

/// Lets the window close on one change after a quiet spell, and kills the
/// daemon when its commit is due: the window opens with the change's event
/// and closes 100 ms later (`--delay 0.1`), and a commit with its flush
/// takes about a millisecond, so a kill spread over the 4 ms around that
/// moment lands before, inside or just after it.
fn kill_at_the_commit(d: &Daemon, dir: &Dir, rng: &mut Rng) {
    std::thread::sleep(Duration::from_millis(300));
    random_op(dir, rng);
    let t0 = Instant::now();
    let at = Duration::from_millis(99) + Duration::from_micros(rng.below(4000));
    while t0.elapsed() < at {
        std::hint::spin_loop();
    }
    d.signal(libc::SIGKILL);
}

/// Kills the daemon as soon as its log announces an ack, polling the log
/// file every 100 µs: the store is then in the middle of (or just past)
/// removing the acknowledged changesets.
fn kill_at_the_ack(d: &Daemon) {
    let before = d.log().matches("acking changesets").count();
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(3) {
        if d.log().matches("acking changesets").count() > before {
            break;
        }
        std::thread::sleep(Duration::from_micros(100));
    }
    d.signal(libc::SIGKILL);
}

/// Start, random changes, `kill -9` at a random moment, restart; `cycles`
/// times. After every kill the store must open and hold every changeset
/// whose commit was logged and whose ack was not; at the end the mirror
/// must be exact. `SYNCD_SOAK_CYCLES` runs a longer soak.
#[test]
fn crash_torture_kill_9_at_random_moments_loses_nothing() {
    let cycles: usize = std::env::var("SYNCD_SOAK_CYCLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let mut rng = Rng::from_env("crash torture");
    let dir = Dir::new();
    let mut phases: std::collections::BTreeMap<&str, usize> = Default::default();
    let started = Instant::now();
    for cycle in 0..cycles {
        let d = dir.start("0.1", &["-v"]);
        d.wait_log("watching", T);
        let busy = Duration::from_millis(rng.below(700));
        let t = Instant::now();
        while t.elapsed() < busy {
            random_op(&dir, &mut rng);
            std::thread::sleep(Duration::from_millis(rng.below(30)));
        }
        // Half the cycles kill at a random moment; the others aim at the
        // two stages that last a millisecond or less and so are rarely hit
        // at random: the commit that closes a window, and the ack.
        match cycle % 4 {
            2 => kill_at_the_commit(&d, &dir, &mut rng),
            3 => kill_at_the_ack(&d),
            _ => {
                std::thread::sleep(Duration::from_millis(rng.below(400)));
                d.signal(libc::SIGKILL);
            }
        }
        std::thread::sleep(Duration::from_millis(50));
        let log = d.log();
        drop(d);
        let (committed, acked) = committed_and_acked(&log);
        let pending = pending_seqs(&dir.state());
        // Sequence numbers only grow, so a pending one above every logged
        // commit of this cycle was committed and not yet logged.
        let unlogged = matches!((pending.last(), committed.last()), (Some(p), Some(c)) if p > c);
        *phases.entry(phase(&log, unlogged)).or_default() += 1;
        for seq in committed {
            if acked.iter().any(|&(a, b)| a <= seq && seq <= b) {
                continue;
            }
            assert!(
                pending.contains(&seq),
                "cycle {cycle}: changeset {seq} was committed, never acked, and is gone after kill -9; log:\n{log}"
            );
        }
    }
    let d = dir.start("0.1", &[]);
    d.wait_log("watching", T);
    dir.wait_mirror(T);
    assert!(d.stop().success());
    eprintln!(
        "crash torture: {cycles} cycles in {:.1}s; killed {:?}",
        started.elapsed().as_secs_f64(),
        phases
    );
}

/// Mounts a tmpfs for the duration of a test and unmounts it after. Its
/// root is mode 0700: a fresh tmpfs is 1777, and syncd refuses a control
/// socket in a directory other users can write.
struct Tmpfs<'a>(&'a Path);

impl<'a> Tmpfs<'a> {
    fn mount(p: &'a Path, size: &str) -> Tmpfs<'a> {
        fs::create_dir_all(p).unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={size},mode=0700"))
            .arg("tmpfs")
            .arg(p)
            .status()
            .unwrap();
        assert!(st.success(), "mount tmpfs (needs root)");
        Tmpfs(p)
    }
}

impl Drop for Tmpfs<'_> {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.0).status();
    }
}

/// Fills the file system of `dir` to the last byte with a file it returns.
fn fill(dir: &Path) -> std::path::PathBuf {
    let filler = dir.join("filler");
    let _ = Command::new("dd")
        .arg("if=/dev/zero")
        .arg(format!("of={}", filler.display()))
        .args(["bs=64k", "count=100000"])
        .stderr(std::process::Stdio::null())
        .status();
    filler
}

fn make_changes_on_a_full_disk(dir: &Dir) {
    let long = "n".repeat(150);
    for i in 0..3000 {
        dir.write(format!("{long}{i}"), i.to_string());
    }
    // Events keep being collected while commits cannot be made.
    for i in 0..20 {
        dir.write(format!("during/{i}"), "still collected");
    }
    fs::remove_dir_all(dir.s("during")).ok();
    dir.write("during-kept", "yes");
}

#[test]
fn a_full_state_disk_keeps_changes_in_memory_and_recovers_by_itself() {
    let dir = Dir::new();
    let state = dir.state();
    let _fs = Tmpfs::mount(&state, "32m");
    let d = dir.start_synced("0.3", &[]);
    let filler = fill(&state);
    make_changes_on_a_full_disk(&dir);
    d.wait_log("are free on the file system", T);
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        !mirror_diff(&dir.src(), &dir.dst()).is_empty(),
        "nothing may sync before it is committed"
    );
    fs::remove_file(&filler).unwrap();
    d.wait_log("commits work again", T);
    dir.wait_mirror(T);
    wait_drained(&state, T);
    assert!(d.stop().success());
    assert_eq!(inspect(&state)["destinations"][0]["pending"], 0);
}

/// Without the free-space floor sled itself meets the full disk; its store
/// is then unusable in-process, and syncd restarts itself (same pid) once
/// there is space, reconciling with a full sync.
#[test]
fn a_store_that_met_a_full_disk_is_left_and_syncd_restarts_in_place() {
    let dir = Dir::new();
    let state = dir.state();
    let _fs = Tmpfs::mount(&state, "32m");
    let d = dir.start_synced("0.3", &["--state-min-free", "0"]);
    let pid = d.pid();
    let filler = fill(&state);
    make_changes_on_a_full_disk(&dir);
    d.wait_log("failed a write", T);
    fs::remove_file(&filler).unwrap();
    d.wait_log("restarting syncd in place", T);
    d.wait_log("the last stop was not clean", T);
    dir.wait_mirror(T);
    wait_drained(&state, T);
    assert_eq!(d.pid(), pid);
    assert!(d.stop().success());
    assert_eq!(inspect(&state)["destinations"][0]["pending"], 0);
}

/// The state disk fills up after rsync delivered, so the ack fails (issue
/// 16, item 10): the ack is retried with the exponential backoff of any
/// failure, rsync is not run again for what it delivered (it used to re-run
/// the batch, perhaps a full sync, every 5 s), and `status` says why.
#[test]
fn an_ack_refused_by_a_full_state_disk_backs_off_without_rerunning_rsync() {
    let dir = Dir::new();
    let state = dir.state();
    let _fs = Tmpfs::mount(&state, "32m");
    let count = dir.root.join("runs");
    let trigger = dir.root.join("fill-after-this-run");
    let filler = state.join("filler");
    // rsync as usual; then, once, the state disk filled before syncd acks.
    let wrapper = dir.root.join("rsync-then-fill");
    fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\n\
             echo \"$(date +%s%3N)\" >> '{count}'\n\
             rsync \"$@\"; rc=$?\n\
             if [ -e '{trigger}' ]; then rm -f '{trigger}'; \
             dd if=/dev/zero of='{filler}' bs=64k count=100000 2>/dev/null; fi\n\
             exit $rc\n",
            count = count.display(),
            trigger = trigger.display(),
            filler = filler.display(),
        ),
    )
    .unwrap();
    fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let mut args = dir.run_args("0.2");
    let i = args.iter().position(|a| a == "--backoff-max").unwrap();
    args[i + 1] = "8".into();
    let pos = args.len() - 2;
    args.insert(pos, "--rsync".into());
    args.insert(pos + 1, wrapper.clone().into());
    let d = Daemon::start(&args, &dir.root.join("syncd-ack.log"));
    d.wait_log("watching", T);
    dir.wait_mirror(T);
    d.wait_log("] synced", T);
    std::thread::sleep(Duration::from_millis(500));

    fs::write(&trigger, "").unwrap();
    dir.write("after", "delivered, then the disk filled");
    d.wait_log("cannot acknowledge", T);
    dir.wait_mirror(T);
    let runs = rsync_runs(&count).len();
    std::thread::sleep(Duration::from_secs(12));
    assert_eq!(
        rsync_runs(&count).len(),
        runs,
        "rsync ran again for a batch it had delivered; log:\n{}",
        d.log()
    );
    let out = syncd(&[
        "status".as_ref(),
        "--json".as_ref(),
        "--state-dir".as_ref(),
        state.as_os_str(),
    ]);
    let st: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let dest = &st["destinations"][0];
    let err = dest["last_error"].as_str().unwrap_or_default();
    assert!(err.contains("cannot acknowledge"), "{st}");
    assert!(err.contains("are free on the file system"), "{st}");
    assert_eq!(dest["state"], "backing_off", "{st}");
    // 12 s of 1, 2, 4, 8 s waits: a few attempts, counted up.
    let attempts = dest["attempts"].as_u64().unwrap();
    assert!((2..=6).contains(&attempts), "{st}");
    let acks = d.log().matches("retrying the acknowledgement").count();
    assert!((2..=6).contains(&acks), "{}", d.log());

    fs::remove_file(&filler).unwrap();
    wait_until("the ack once there is space", T, || {
        inspect(&state)["destinations"][0]["pending"] == 0
    });
    assert_eq!(rsync_runs(&count).len(), runs, "acked, not re-run");
    dir.wait_mirror(T);
    assert!(d.stop().success());
}

#[test]
fn a_backlog_of_a_thousand_changesets_drains_in_at_most_two_runs() {
    let dir = Dir::new();
    let wrapper = dir.root.join("rsync-counting");
    let count = dir.root.join("runs");
    rsync_wrapper(&wrapper, &count, &dir.root.join("never"));
    let w = wrapper.to_str().unwrap();
    let d = dir.start_synced("0", &["--rsync", w]);
    let guard = Immutable::new(&dir.dst());
    // Each write is its own window (delay 0) unless two writes meet in one
    // turn of the main loop; 1,200 of them make at least 1,000 windows.
    for i in 0..1200 {
        dir.write(format!("b{}/f{i}", i % 10), format!("{i}"));
        std::thread::sleep(Duration::from_millis(3));
    }
    std::thread::sleep(Duration::from_millis(500));
    assert!(d.stop().success());
    let pending = inspect(&dir.state())["destinations"][0]["pending"]
        .as_u64()
        .unwrap();
    assert!(
        pending >= 1000,
        "expected at least 1000 queued windows, found {pending}"
    );

    let d = dir.start("0", &["--rsync", w, "--no-initial-sync"]);
    d.wait_log("watching", T);
    std::thread::sleep(Duration::from_millis(1500));
    let restored = now_ms();
    drop(guard);
    dir.wait_mirror(T);
    d.wait_log("] synced", T);
    let runs_after = rsync_runs(&count)
        .into_iter()
        .filter(|&t| t >= restored)
        .count();
    let drained = now_ms() - restored;
    assert!(d.stop().success());
    assert_eq!(inspect(&dir.state())["destinations"][0]["pending"], 0);
    eprintln!("backlog: {pending} changesets drained in {runs_after} rsync runs, {drained} ms after the destination returned");
    assert!(
        runs_after <= 2,
        "{pending} changesets took {runs_after} rsync runs"
    );
}

#[test]
fn a_usage_error_moves_changesets_to_dead_letters_without_blocking_the_queue() {
    let dir = Dir::new();
    let wrapper = dir.root.join("rsync-wrapper");
    let flag = dir.root.join("fail");
    rsync_wrapper(&wrapper, &dir.root.join("runs"), &flag);
    let d = dir.start_synced("0.2", &["--rsync", wrapper.to_str().unwrap()]);
    fs::write(&flag, "").unwrap();
    dir.write("doomed", "1");
    d.wait_log("moved to dead letters", T);
    fs::remove_file(&flag).unwrap();
    dir.write("behind", "2");
    wait_until("the changeset behind the dead one synced", T, || {
        dir.dst().join("behind").exists()
    });
    assert!(!dir.dst().join("doomed").exists());
    assert!(d.stop().success());
    let ins = inspect(&dir.state());
    let dest = &ins["destinations"][0];
    assert_eq!(dest["dead"], 1, "{ins}");
    assert!(
        dest["last_error"]
            .as_str()
            .unwrap()
            .contains("exited with 1"),
        "{ins}"
    );
}

/// Runs a daemon until a few changes are queued for an unwritable
/// destination, then stops it cleanly: a store with pending changesets.
fn store_with_backlog(dir: &Dir) {
    dir.write("base", "0");
    let d = dir.start_synced("0.2", &[]);
    let guard = Immutable::new(&dir.dst());
    dir.write("queued-a", "a");
    dir.write("queued-b/c", "c");
    d.wait_log("stay queued", T);
    assert!(d.stop().success());
    drop(guard);
}

fn run_output(dir: &Dir, extra: &[&str]) -> std::process::Output {
    let mut a = dir.run_args("0.2");
    let pos = a.len() - 2;
    for (i, e) in extra.iter().enumerate() {
        a.insert(pos + i, e.into());
    }
    let a: Vec<&OsStr> = a.iter().map(|s| s.as_os_str()).collect();
    syncd(&a)
}

fn damaged_store_is_refused_then_reset(damage: impl FnOnce(&Path)) {
    let dir = Dir::new();
    store_with_backlog(&dir);
    damage(&dir.state().join("db").join("db"));
    let db = dir.state().join("db");
    for out in [
        run_output(&dir, &[]),
        syncd(&[
            "queue".as_ref(),
            "inspect".as_ref(),
            "--state-dir".as_ref(),
            dir.state().as_os_str(),
        ]),
    ] {
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(4), "{err}");
        assert!(
            err.contains(&db.display().to_string()),
            "names the store: {err}"
        );
        assert!(err.contains("--reset-queue"), "says how to recover: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    let d = dir.start("0.2", &["--reset-queue"]);
    d.wait_log("moved the store", T);
    dir.wait_mirror(T);
    assert!(d.stop().success());
    let aside: Vec<_> = fs::read_dir(dir.state())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("db.broken-"))
        .collect();
    assert_eq!(
        aside.len(),
        1,
        "the broken store is kept aside for inspection"
    );
}

#[test]
fn a_truncated_store_is_refused_and_reset_queue_recovers() {
    damaged_store_is_refused_then_reset(|db| {
        let f = fs::OpenOptions::new().write(true).open(db).unwrap();
        f.set_len(100).unwrap();
    });
}

#[test]
fn a_garbage_store_is_refused_and_reset_queue_recovers() {
    damaged_store_is_refused_then_reset(|db| {
        let mut rng = Rng::from_env("garbage store");
        let junk: Vec<u8> = (0..600_000).map(|_| rng.next() as u8).collect();
        fs::write(db, junk).unwrap();
    });
}

#[test]
fn an_unreadable_record_becomes_a_full_sync() {
    let dir = Dir::new();
    store_with_backlog(&dir);
    {
        let store = syncd::store::Store::open(&dir.state()).unwrap();
        let mut target = dir.dst().into_os_string();
        target.push("/");
        let q = store.queue(&target).unwrap();
        q.insert(999_999u64.to_be_bytes(), &b"\x07garbage"[..])
            .unwrap();
        store.flush().unwrap();
    }
    let d = dir.start("0.2", &["--no-initial-sync"]);
    d.wait_log("unreadable", T);
    dir.wait_mirror(T);
    d.wait_log("] synced", T);
    assert!(d.stop().success());
    assert_eq!(inspect(&dir.state())["destinations"][0]["pending"], 0);
}

#[test]
fn a_store_from_a_newer_syncd_is_refused_naming_both_versions() {
    let dir = Dir::new();
    store_with_backlog(&dir);
    {
        let db = sled::open(dir.state().join("db")).unwrap();
        let meta = db.open_tree(migrations::META_TREE).unwrap();
        meta.insert(
            migrations::VERSION_KEY,
            &(migrations::CURRENT + 1).to_be_bytes(),
        )
        .unwrap();
        db.flush().unwrap();
    }
    let out = run_output(&dir, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(
        err.contains(&format!("version {}", migrations::CURRENT + 1)),
        "{err}"
    );
    assert!(
        err.contains(&format!("up to {}", migrations::CURRENT)),
        "{err}"
    );
    assert!(
        !err.contains("--reset-queue"),
        "a newer store is not damaged: {err}"
    );
}

/// The fixture under `migrations/fixtures/v1` was written by schema
/// version 1 (see `write_fixture` below). Every later syncd must open it and
/// find its backlog; this test is what makes a format change keep old
/// stores readable.
#[test]
fn the_v1_fixture_store_still_opens_with_its_backlog() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/fixtures/v1");
    if std::env::var_os("SYNCD_WRITE_FIXTURE").is_some() {
        write_fixture(&fixture);
    }
    let dir = Dir::new();
    let state = dir.state();
    copy_tree(&fixture, &state);
    let ins = inspect(&state);
    let dest = &ins["destinations"][0];
    assert_eq!(dest["target"], "/fixture/dst/", "{ins}");
    assert_eq!(dest["pending"], 2, "{ins}");
    assert_eq!(dest["pending_paths"], 3, "{ins}");
    assert_eq!(dest["dead"], 1, "{ins}");
    let store = syncd::store::Store::open(&state).unwrap();
    let q = store.queue(OsStr::new("/fixture/dst/")).unwrap();
    let p = store.pending(&q, 100).unwrap();
    let paths: Vec<Vec<u8>> = p
        .iter()
        .flat_map(|p| {
            p.changeset
                .as_ref()
                .unwrap()
                .entries
                .iter()
                .map(|e| e.path.clone())
        })
        .collect();
    assert_eq!(
        paths,
        vec![b"a".to_vec(), b"dir/\xff\nname".to_vec(), Vec::new()]
    );
}

fn write_fixture(to: &Path) {
    use syncd::changeset::{Changeset, Entry, Kind};
    let _ = fs::remove_dir_all(to);
    fs::create_dir_all(to).unwrap();
    let store = syncd::store::Store::open(to).unwrap();
    let t = OsStr::new("/fixture/dst/");
    let q = store.queue(t).unwrap();
    let cs = |entries| Changeset::new(1_795_000_000_000, entries);
    store
        .commit(
            std::slice::from_ref(&q),
            &cs(vec![
                Entry::new(Kind::File, b"a".to_vec()),
                Entry::new(Kind::Gone, b"dir/\xff\nname".to_vec()),
            ]),
            1,
        )
        .unwrap();
    store
        .commit(std::slice::from_ref(&q), &cs(vec![Entry::full()]), 1)
        .unwrap();
    let dead_seq = store
        .commit(
            std::slice::from_ref(&q),
            &cs(vec![Entry::new(Kind::Attrs, b"d".to_vec())]),
            1,
        )
        .unwrap();
    let letter = syncd::store::record::DeadLetter {
        changeset: cs(vec![Entry::new(Kind::Attrs, b"d".to_vec())]),
        error: "rsync exited with 1".into(),
        attempts: 3,
        dead_since_ms: 1_795_000_000_000,
    };
    store
        .bury(&q, &store.dead(t).unwrap(), &[(dead_seq, letter)])
        .unwrap();
    store.mark_clean().unwrap();
}

fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            copy_tree(&p, &to.join(e.file_name()));
        } else {
            fs::copy(&p, to.join(e.file_name())).unwrap();
        }
    }
}
