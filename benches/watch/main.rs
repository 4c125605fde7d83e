//! Watching large trees: syncd beside lsyncd on trees of 10,000, 100,000
//! and 1,000,000 directories, in one run.
//!
//! ```text
//! cargo bench --bench watch -- [--sizes 10k,100k,1m] [--daemon syncd|lsyncd]... [--work-dir DIR] [--keep]
//! ```
//!
//! Method. A tree is `t{i}/s{j}/l{k}` with i below TOPS, j below 100 and k
//! below 99, F files in every `s` and `l` directory, and 1,000 empty
//! directories `x/e{n}`: 1,002 + 10,001 × TOPS directories. "10k" is 1 top
//! with 10 files each (11,003 directories, 100,000 files), "100k" 10 tops
//! with 10 (101,012 directories, 1,000,000 files), "1m" 100 tops with 1
//! (1,001,102 directories, 1,000,000 files).
//! SOURCE and DEST hold the same tree (DEST is built by the same code, so
//! it is a mirror but for mtimes), and neither daemon syncs at start:
//! syncd runs with `--initial-sync none` on a new store, lsyncd with
//! `init = false`, so the start-up is the watch set-up alone. Both get a 1 s
//! delay and rsync to a local DEST; lsyncd runs `default.rsync` with
//! `inotifyMode = "CloseWrite"`, as packaged.
//!
//! For each size and daemon, one after the other, with the CPU time the
//! daemon itself used (user + system of all its threads, from
//! /proc/PID/stat; its rsync children are not counted):
//! - set-up: from the start until its CPU time has not grown for 3 s;
//!   the wall time is until its last CPU tick, the CPU what it used;
//! - memory: VmHWM (peak) and VmRSS and RssAnon (steady) then, and per
//!   watched directory: (VmRSS − the same daemon's VmRSS on an empty tree)
//!   / directories;
//! - the kernel's watch count (`inotify wd:` lines of its fdinfo);
//! - CPU per removed watch: `rm -rf` of the 1,000 empty directories `x/e*`
//!   (one child process, one directory after another: the same events on
//!   every tree), the daemon's CPU until it has been idle for 3 s and its
//!   rsync children are done (its delayed rsync run included), in
//!   [`ROUNDS`] rounds (the directories made again between them), / the
//!   directories removed: `/proc/PID/stat` counts 10 ms ticks;
//! - from 100k on: `rm -rf` of one top (10,001 directories), and `mv` of
//!   another (a directory with 10,000 subdirectories): the daemon's CPU
//!   the same way, or "over 15 min" when it is still busy after that.
//!
//! Needs root: it raises `fs.inotify.max_user_watches` to 3,000,000 and
//! `fs.inotify.max_queued_events` to 1,048,576 (so that a slow reader does
//! not overflow its queue during an `rm -rf` and turn the measure into a
//! rescan) and restores both at the end. SOURCE trees go to
//! /dev/shm/syncd-watch (tmpfs) by default, DEST trees to /tmp/syncd-watch-dst
//! (two trees of 1,000,000 directories and 1,000,000 files are more inodes
//! than a default /dev/shm has), and both are removed at the end. Results go to stdout and
//! `target/watch/results.md`. Without `--bench` (which `cargo bench`
//! passes) it does nothing.

use std::fmt::Write as _;
use std::fs;
use std::io::BufRead;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// One tree size.
#[derive(Debug, Clone, Copy)]
struct Size {
    name: &'static str,
    tops: usize,
    files: usize,
}

/// Rounds of 1,000 removals per tree and daemon.
const ROUNDS: usize = 6;

/// How long an operation may keep a daemon busy before it is given up on.
const BUSY_LIMIT: Duration = Duration::from_secs(900);

const SIZES: [Size; 3] = [
    Size {
        name: "10k",
        tops: 1,
        files: 10,
    },
    Size {
        name: "100k",
        tops: 10,
        files: 10,
    },
    Size {
        name: "1m",
        tops: 100,
        files: 1,
    },
];

impl Size {
    fn dirs(self) -> usize {
        1_002 + self.tops * 10_001
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Syncd,
    Lsyncd,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Syncd => "syncd",
            Kind::Lsyncd => "lsyncd",
        }
    }
}

struct Opts {
    sizes: Vec<Size>,
    kinds: Vec<Kind>,
    work: PathBuf,
    dst: PathBuf,
    keep: bool,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.iter().any(|a| a == "--bench") {
        println!("watch: run it with `cargo bench --bench watch`; nothing to do without --bench");
        return;
    }
    let run = parse(&args).and_then(|o| {
        let guard = Sysctls::raise()?;
        let r = bench(&o);
        drop(guard);
        if !o.keep {
            let _ = fs::remove_dir_all(&o.work);
            let _ = fs::remove_dir_all(&o.dst);
        }
        r
    });
    if let Err(e) = run {
        eprintln!("watch: error: {e:#}");
        std::process::exit(1);
    }
}

fn parse(args: &[String]) -> Result<Opts> {
    let mut o = Opts {
        sizes: SIZES.to_vec(),
        kinds: Vec::new(),
        work: PathBuf::from("/dev/shm/syncd-watch"),
        dst: PathBuf::from("/tmp/syncd-watch-dst"),
        keep: false,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--bench" => {}
            "--keep" => o.keep = true,
            "--sizes" => {
                let v = it.next().context("--sizes needs a value")?;
                o.sizes = v
                    .split(',')
                    .map(|n| {
                        SIZES
                            .iter()
                            .find(|s| s.name == n)
                            .copied()
                            .with_context(|| format!("no size {n:?} (10k, 100k, 1m)"))
                    })
                    .collect::<Result<_>>()?;
            }
            "--daemon" => match it.next().map(String::as_str) {
                Some("syncd") => o.kinds.push(Kind::Syncd),
                Some("lsyncd") => o.kinds.push(Kind::Lsyncd),
                other => bail!("--daemon syncd|lsyncd, not {other:?}"),
            },
            "--work-dir" => o.work = PathBuf::from(it.next().context("--work-dir needs a value")?),
            "--dst-dir" => o.dst = PathBuf::from(it.next().context("--dst-dir needs a value")?),
            other => bail!("unknown argument {other:?}"),
        }
    }
    if o.kinds.is_empty() {
        o.kinds = vec![Kind::Syncd, Kind::Lsyncd];
    }
    Ok(o)
}

/// The two sysctls the run raises, restored when dropped.
struct Sysctls(Vec<(&'static str, String)>);

impl Sysctls {
    fn raise() -> Result<Sysctls> {
        let mut saved = Vec::new();
        for (name, value) in [
            ("/proc/sys/fs/inotify/max_user_watches", "3000000"),
            ("/proc/sys/fs/inotify/max_queued_events", "1048576"),
        ] {
            let old = fs::read_to_string(name).with_context(|| format!("reading {name}"))?;
            fs::write(name, value).with_context(|| format!("writing {name} (run as root)"))?;
            saved.push((name, old.trim().to_string()));
        }
        Ok(Sysctls(saved))
    }
}

impl Drop for Sysctls {
    fn drop(&mut self) {
        for (name, old) in &self.0 {
            if let Err(e) = fs::write(name, old) {
                eprintln!("watch: cannot restore {name} to {old}: {e}");
            }
        }
    }
}

/// Creates what is missing of the tree of `size` at `root`.
fn make_tree(root: &Path, size: Size) -> Result<()> {
    let mkdir = |p: &Path| match fs::create_dir(p) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
            Err(e).with_context(|| format!("mkdir {}", p.display()))
        }
        _ => Ok(()),
    };
    let files = |d: &Path| -> Result<()> {
        for f in 0..size.files {
            let p = d.join(format!("f{f}"));
            match fs::OpenOptions::new().write(true).create_new(true).open(&p) {
                Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
                    return Err(e).with_context(|| format!("create {}", p.display()))
                }
                _ => {}
            }
        }
        Ok(())
    };
    fs::create_dir_all(root)?;
    mkdir(&root.join("x"))?;
    for n in 0..1000 {
        mkdir(&root.join(format!("x/e{n}")))?;
    }
    for i in 0..size.tops {
        let t = root.join(format!("t{i}"));
        mkdir(&t)?;
        for j in 0..100 {
            let s = t.join(format!("s{j}"));
            mkdir(&s)?;
            files(&s)?;
            for k in 0..99 {
                let l = s.join(format!("l{k}"));
                mkdir(&l)?;
                files(&l)?;
            }
        }
    }
    Ok(())
}

/// A daemon under measure.
struct Daemon {
    kind: Kind,
    child: Child,
    started: Instant,
    log: PathBuf,
}

impl Daemon {
    fn start(kind: Kind, src: &Path, dst: &Path, work: &Path) -> Result<Daemon> {
        fs::create_dir_all(work)?;
        let log = work.join(format!("{}.log", kind.name()));
        let out = fs::File::create(&log)?;
        let mut cmd = match kind {
            Kind::Syncd => {
                let mut c = Command::new(env!("CARGO_BIN_EXE_syncd"));
                let mut s = src.as_os_str().to_os_string();
                s.push("/./");
                c.arg("run")
                    .arg("--state-dir")
                    .arg(work.join("state"))
                    .args(["--delay", "1", "--initial-sync", "none"])
                    .arg(s)
                    .arg(dst);
                c
            }
            Kind::Lsyncd => {
                let conf = work.join("lsyncd.conf.lua");
                fs::write(
                    &conf,
                    format!(
                        "settings {{\n    nodaemon = true,\n    inotifyMode = \"CloseWrite\",\n}}\n\
                         sync {{\n    default.rsync,\n    source = \"{}\",\n    target = \"{}\",\n    \
                         init = false,\n    delay = 1,\n}}\n",
                        src.display(),
                        dst.display()
                    ),
                )?;
                let mut c = Command::new("lsyncd");
                c.arg(conf);
                c
            }
        };
        // Its own process group: lsyncd's rsync children are ended with it.
        cmd.stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .process_group(0);
        // SAFETY: prctl only affects the child being started.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let started = Instant::now();
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", kind.name()))?;
        Ok(Daemon {
            kind,
            child,
            started,
            log,
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Own CPU seconds (user + system, all threads).
    fn cpu(&mut self) -> Result<f64> {
        if let Some(st) = self.child.try_wait()? {
            bail!(
                "{} exited ({st}); see {}",
                self.kind.name(),
                self.log.display()
            );
        }
        let stat = fs::read_to_string(format!("/proc/{}/stat", self.pid()))?;
        let rest = stat.rsplit_once(')').context("unreadable stat")?.1;
        let f: Vec<f64> = rest
            .split_whitespace()
            .skip(11)
            .take(2)
            .map(|x| x.parse().unwrap_or(0.0))
            .collect();
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        Ok((f[0] + f[1]) / hz)
    }

    /// Waits until the daemon's CPU time has not grown for `quiet` and it
    /// has no child process (its rsync runs) left; returns its CPU time
    /// then and when it last grew, or `None` after [`BUSY_LIMIT`].
    fn quiet(&mut self, quiet: Duration) -> Result<Option<(f64, Instant)>> {
        let mut last = (self.cpu()?, Instant::now());
        let limit = Instant::now() + BUSY_LIMIT;
        loop {
            std::thread::sleep(Duration::from_millis(20));
            let c = self.cpu()?;
            if c > last.0 {
                last = (c, Instant::now());
            } else if last.1.elapsed() >= quiet && !self.has_children() {
                return Ok(Some(last));
            }
            if Instant::now() > limit {
                return Ok(None);
            }
        }
    }

    /// Whether any thread of the daemon has a child process.
    fn has_children(&self) -> bool {
        let Ok(tasks) = fs::read_dir(format!("/proc/{}/task", self.pid())) else {
            return false;
        };
        tasks.flatten().any(|t| {
            fs::read_to_string(t.path().join("children")).is_ok_and(|c| !c.trim().is_empty())
        })
    }

    /// `VmHWM`, `VmRSS` and `RssAnon`, in bytes.
    fn memory(&self) -> Result<(u64, u64, u64)> {
        let status = fs::read_to_string(format!("/proc/{}/status", self.pid()))?;
        let field = |name: &str| -> u64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok())
                .map_or(0, |kib| kib * 1024)
        };
        Ok((field("VmHWM:"), field("VmRSS:"), field("RssAnon:")))
    }

    /// The kernel's watches of the daemon's inotify instances.
    fn watches(&self) -> usize {
        let mut n = 0;
        let Ok(fds) = fs::read_dir(format!("/proc/{}/fd", self.pid())) else {
            return 0;
        };
        for fd in fds.flatten() {
            if fs::read_link(fd.path()).is_ok_and(|l| l == Path::new("anon_inode:inotify")) {
                let info = format!(
                    "/proc/{}/fdinfo/{}",
                    self.pid(),
                    fd.file_name().to_string_lossy()
                );
                if let Ok(f) = fs::File::open(info) {
                    n += std::io::BufReader::new(f)
                        .lines()
                        .map_while(|l| l.ok())
                        .filter(|l| l.starts_with("inotify wd:"))
                        .count();
                }
            }
        }
        n
    }

    /// SIGTERM, then after 30 s SIGKILL to its process group (lsyncd
    /// waits for its rsync runs; those go too).
    fn stop(mut self) -> Result<()> {
        // SAFETY: kill on our own child, not yet reaped.
        unsafe { libc::kill(self.pid() as i32, libc::SIGTERM) };
        let t = Instant::now();
        while self.child.try_wait()?.is_none() {
            if t.elapsed() > Duration::from_secs(30) {
                // SAFETY: the process group our child leads.
                unsafe { libc::killpg(self.pid() as i32, libc::SIGKILL) };
                let _ = self.child.wait();
                eprintln!(
                    "watch: {} ignored SIGTERM for 30 s: killed",
                    self.kind.name()
                );
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // SAFETY: the process group our child leads.
            unsafe { libc::killpg(self.pid() as i32, libc::SIGKILL) };
            let _ = self.child.wait();
        }
    }
}

/// What one daemon did on one tree.
#[derive(Debug, Default, Clone)]
struct Row {
    size: &'static str,
    daemon: &'static str,
    dirs: usize,
    watches: usize,
    setup_wall: f64,
    setup_cpu: f64,
    hwm: u64,
    rss: u64,
    anon: u64,
    /// Over the empty-tree baseline, per directory.
    per_dir_rss: f64,
    per_dir_anon: f64,
    /// CPU per removed watch (s), with the watches then.
    per_removed: f64,
    removed: usize,
    /// `None`: not measured on this tree; `Some(None)`: still busy after
    /// [`BUSY_LIMIT`].
    rm_cpu: Option<Option<f64>>,
    mv_cpu: Option<Option<f64>>,
    mv_watches_kept: Option<bool>,
}

/// The daemon's CPU for `op` (run as a child process), until it is idle for
/// 3 s with no rsync run left; `None` when it is still busy after
/// [`BUSY_LIMIT`].
fn cpu_for(d: &mut Daemon, op: &mut Command) -> Result<Option<f64>> {
    let before = d.cpu()?;
    let st = op.status()?;
    if !st.success() {
        bail!("{op:?} failed: {st}");
    }
    Ok(d.quiet(Duration::from_secs(3))?
        .map(|(after, _)| after - before))
}

/// A figure of CPU seconds, or what stood in its way.
fn busy(c: Option<f64>) -> String {
    c.map_or_else(
        || format!("over {} min", BUSY_LIMIT.as_secs() / 60),
        |c| format!("{c:.2} s"),
    )
}

fn measure(
    kind: Kind,
    size: Size,
    src: &Path,
    dst: &Path,
    work: &Path,
    base: (u64, u64),
) -> Result<Row> {
    let mut d = Daemon::start(kind, src, dst, work)?;
    let (setup_cpu, last) = d
        .quiet(Duration::from_secs(3))?
        .context("the set-up took over 15 min")?;
    let mut row = Row {
        size: size.name,
        daemon: kind.name(),
        dirs: size.dirs(),
        watches: d.watches(),
        setup_wall: last.duration_since(d.started).as_secs_f64(),
        setup_cpu,
        ..Row::default()
    };
    (row.hwm, row.rss, row.anon) = d.memory()?;
    row.per_dir_rss = (row.rss as f64 - base.0 as f64) / row.dirs as f64;
    row.per_dir_anon = (row.anon as f64 - base.1 as f64) / row.dirs as f64;
    eprintln!(
        "watch: {} {}: set-up {:.2} s wall, {:.2} s CPU, {} watches, {:.1} MiB RSS",
        size.name,
        kind.name(),
        row.setup_wall,
        row.setup_cpu,
        row.watches,
        row.rss as f64 / 1048576.0
    );

    // 1,000 empty directories, removed one after another, made again
    // between the rounds.
    let leaves: Vec<PathBuf> = (0..1000).map(|n| src.join(format!("x/e{n}"))).collect();
    row.removed = row.watches;
    let mut total = 0.0;
    for round in 0..ROUNDS {
        if round > 0 {
            for l in &leaves {
                fs::create_dir(l)?;
            }
            d.quiet(Duration::from_secs(3))?
                .context("busy for 15 min after 1,000 mkdirs")?;
        }
        total += cpu_for(&mut d, Command::new("rm").arg("-rf").args(&leaves))?
            .context("busy for 15 min after removing 1,000 directories")?;
    }
    row.per_removed = total / (ROUNDS * leaves.len()) as f64;
    eprintln!(
        "watch: {} {}: {:.1} µs per removed watch",
        size.name,
        kind.name(),
        row.per_removed * 1e6
    );

    if size.tops >= 3 {
        row.rm_cpu = Some(cpu_for(
            &mut d,
            Command::new("rm").arg("-rf").arg(src.join("t0")),
        )?);
        let before = d.watches();
        row.mv_cpu = Some(cpu_for(
            &mut d,
            Command::new("mv")
                .arg(src.join("t1"))
                .arg(src.join("t1-moved")),
        )?);
        row.mv_watches_kept = Some(d.watches() == before);
        eprintln!(
            "watch: {} {}: rm -rf of 10,001 directories {} CPU, mv {} CPU",
            size.name,
            kind.name(),
            busy(row.rm_cpu.flatten()),
            busy(row.mv_cpu.flatten())
        );
    }
    d.stop()?;
    // Put the tree back for the next daemon.
    if src.join("t1-moved").exists() {
        fs::rename(src.join("t1-moved"), src.join("t1"))?;
    }
    make_tree(src, size)?;
    Ok(row)
}

/// A daemon's memory on an empty tree: (VmRSS, RssAnon).
fn baseline(kind: Kind, work: &Path) -> Result<(u64, u64)> {
    let src = work.join("empty/src");
    let dst = work.join("empty/dst");
    fs::create_dir_all(&src)?;
    fs::create_dir_all(&dst)?;
    let mut d = Daemon::start(
        kind,
        &src,
        &dst,
        &work.join(format!("empty/{}", kind.name())),
    )?;
    d.quiet(Duration::from_secs(3))?
        .context("busy for 15 min on an empty tree")?;
    let (_, rss, anon) = d.memory()?;
    d.stop()?;
    Ok((rss, anon))
}

fn bench(o: &Opts) -> Result<()> {
    if Command::new("lsyncd").arg("--version").output().is_err() && o.kinds.contains(&Kind::Lsyncd)
    {
        bail!("lsyncd is not installed (apt-get install -y lsyncd)");
    }
    let _ = fs::remove_dir_all(&o.work);
    fs::create_dir_all(&o.work)?;
    let started = Instant::now();
    let load_before = loadavg();
    let mut base = Vec::new();
    for &k in &o.kinds {
        base.push((k, baseline(k, &o.work)?));
    }
    let mut rows = Vec::new();
    for &size in &o.sizes {
        let src = o.work.join(format!("{}/src", size.name));
        let dst = o.dst.join(size.name);
        eprintln!("watch: building the {} tree", size.name);
        make_tree(&src, size)?;
        make_tree(&dst, size)?;
        for &k in &o.kinds {
            let b = base.iter().find(|(x, _)| *x == k).map(|(_, b)| *b);
            let work = o.work.join(format!("{}/{}", size.name, k.name()));
            let _ = fs::remove_dir_all(&work);
            rows.push(measure(k, size, &src, &dst, &work, b.unwrap_or((0, 0)))?);
        }
        let _ = fs::remove_dir_all(o.work.join(size.name));
        let _ = fs::remove_dir_all(&dst);
    }
    let md = render(o, &rows, &base, &load_before, started.elapsed());
    print!("{md}");
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/watch/results.md");
    fs::create_dir_all(out.parent().unwrap_or(Path::new(".")))?;
    fs::write(&out, &md)?;
    eprintln!("watch: report written to {}", out.display());
    Ok(())
}

fn mib(b: u64) -> String {
    format!("{:.1}", b as f64 / 1048576.0)
}

fn render(
    o: &Opts,
    rows: &[Row],
    base: &[(Kind, (u64, u64))],
    load_before: &str,
    took: Duration,
) -> String {
    let mut md = String::new();
    let mut cmd = String::from("cargo bench --bench watch --");
    if o.sizes.len() != SIZES.len() {
        let names: Vec<&str> = o.sizes.iter().map(|s| s.name).collect();
        let _ = write!(cmd, " --sizes {}", names.join(","));
    }
    let _ = writeln!(md, "Reproduce with (as root):\n\n```sh\n{cmd}\n```\n");
    let _ = writeln!(
        md,
                "Machine: {} × {}, kernel {}, SOURCE trees on {} ({}), DEST trees on {} ({}); {}; lsyncd {}; load average before {}, after {}; took {:.0} min.\n",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        cpu_model(),
        shell("uname -r").trim(),
        o.work.display(),
        fs_of(&o.work),
        o.dst.display(),
        fs_of(&o.dst),
        shell("rsync --version | head -n 1").trim(),
        shell("lsyncd --version | head -n 1").trim().trim_start_matches("Version: "),
        load_before,
        loadavg(),
        took.as_secs_f64() / 60.0
    );
    for (k, (rss, anon)) in base {
        let _ = writeln!(
            md,
            "- {} on an empty tree: VmRSS {} MiB, RssAnon {} MiB",
            k.name(),
            mib(*rss),
            mib(*anon)
        );
    }
    let _ = writeln!(
        md,
        "\n| tree | daemon | directories | watches | set-up wall | set-up CPU | peak RSS (VmHWM) | steady RSS (VmRSS / RssAnon) | RSS per directory over the empty tree (VmRSS / RssAnon) | CPU per removed watch | `rm -rf` of 10,001 directories | `mv` of a directory with 10,000 subdirectories |\n|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for r in rows {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {:.2} s | {:.2} s | {} MiB | {} / {} MiB | {:.0} / {:.0} B | {:.1} µs | {} | {} |",
            r.size,
            r.daemon,
            r.dirs,
            r.watches,
            r.setup_wall,
            r.setup_cpu,
            mib(r.hwm),
            mib(r.rss),
            mib(r.anon),
            r.per_dir_rss,
            r.per_dir_anon,
            r.per_removed * 1e6,
                        r.rm_cpu.map_or("-".into(), |c| format!("{} CPU", busy(c))),
            r.mv_cpu.map_or("-".into(), |c| format!(
                                "{} CPU{}",
                busy(c),
                match r.mv_watches_kept {
                                        Some(true) => ", same watch count",
                    Some(false) => ", watch count changed",
                    None => "",
                }
            )),
        );
    }
    let _ = writeln!(
        md,
        "\nCPU per removed watch (1,000 directories removed one after another):\n\n```"
    );
    let _ = writeln!(md, "{:>10}  {:>12}  {:>12}", "watches", "syncd", "lsyncd");
    for s in &o.sizes {
        let of = |d: &str| {
            rows.iter()
                .find(|r| r.size == s.name && r.daemon == d)
                .map_or("-".into(), |r| format!("{:.1} µs", r.per_removed * 1e6))
        };
        let w = rows
            .iter()
            .find(|r| r.size == s.name)
            .map_or(0, |r| r.removed);
        let _ = writeln!(md, "{w:>10}  {:>12}  {:>12}", of("syncd"), of("lsyncd"));
    }
    let _ = writeln!(md, "```\n");
    // The targets, on syncd's rows against lsyncd's.
    let _ = writeln!(md, "| target | result |\n|---|---|");
    let row = |size: &str, d: &str| rows.iter().find(|r| r.size == size && r.daemon == d);
    let mut check = |name: String, ok: bool, detail: String| {
        let _ = writeln!(
            md,
            "| {name} | {} ({detail}) |",
            if ok { "PASS" } else { "MISS" }
        );
    };
    for s in &o.sizes {
        if let (Some(a), Some(b)) = (row(s.name, "syncd"), row(s.name, "lsyncd")) {
            check(
                format!("{}: set-up wall and CPU at or below lsyncd's", s.name),
                a.setup_wall <= b.setup_wall && a.setup_cpu <= b.setup_cpu,
                format!(
                    "{:.2}/{:.2} s against {:.2}/{:.2} s",
                    a.setup_wall, a.setup_cpu, b.setup_wall, b.setup_cpu
                ),
            );
            check(
                format!("{}: RSS per directory at or below lsyncd's", s.name),
                a.per_dir_rss <= b.per_dir_rss,
                format!("{:.0} B against {:.0} B", a.per_dir_rss, b.per_dir_rss),
            );
        }
    }
    if let Some(a) = row("1m", "syncd") {
        if let Some(c) = a.rm_cpu {
            check(
                "`rm -rf` of 10,001 directories among 1,000,000 watches: at most 1 s of CPU".into(),
                c.is_some_and(|c| c <= 1.0),
                busy(c),
            );
        }
    }
    let per: Vec<f64> = rows
        .iter()
        .filter(|r| r.daemon == "syncd")
        .map(|r| r.per_removed)
        .collect();
    if per.len() >= 2 {
        let (lo, hi) = per
            .iter()
            .fold((f64::MAX, 0.0f64), |(l, h), &v| (l.min(v), h.max(v)));
        check(
            "CPU per removed watch flat within 2× from the smallest tree to the largest".into(),
            hi <= 2.0 * lo,
            format!("{:.1} to {:.1} µs", lo * 1e6, hi * 1e6),
        );
    }
    md
}

fn shell(cmd: &str) -> String {
    Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

fn cpu_model() -> String {
    fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
            })
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

/// The file system type of the nearest existing ancestor of `p`.
fn fs_of(p: &Path) -> String {
    let dir = p.ancestors().find(|a| a.exists()).unwrap_or(Path::new("/"));
    let out = shell(&format!("df -T '{}' | tail -1", dir.display()));
    out.split_whitespace().nth(1).unwrap_or("?").to_string()
}

fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(", "))
        .unwrap_or_default()
}
