//! Latency of a changeset commit into the sled store (issue 7): one
//! transaction over every destination's queue, then `flush()`, exactly as
//! the committer does (`Store::commit`). Issue 7's target: a 1,000-path
//! commit under 5 ms at p99 on this machine.
//!
//! criterion reports means and confidence intervals; the target is a tail
//! latency, so this bench has its own loop: it times every commit and
//! prints percentiles. Each configuration (1 or 1,000 paths, into 1 or 3
//! destination queues) gets a fresh store under cargo's target tmpdir (the
//! real disk, as a state directory would be), a warm-up, then N timed
//! commits. After each one the worker's ack (`Store::ack`, which flushes
//! too) runs untimed, so the queue stays short as in a daemon that keeps
//! up, and its flush is not charged to the commit.
//!
//! Run: `cargo bench --bench commit` (`-- --quick` for a short run;
//! `cargo test --benches` passes `--test`, which runs a few commits only).

use std::ffi::OsStr;
use std::time::{Duration, Instant};

use syncd::changeset::{Changeset, Entry, Kind};
use syncd::store::record::encode_changeset;
use syncd::store::Store;

/// `paths` file entries with realistic names, in optimizer order.
fn changeset(paths: usize) -> Changeset {
    Changeset::new(
        1_700_000_000_000,
        (0..paths)
            .map(|i| {
                let p = format!("proj{}/src/module_{:02}/file_{i:05}.rs", i / 500, i % 40);
                Entry::new(Kind::File, p)
            })
            .collect(),
    )
}

/// The nearest-rank percentile of sorted samples.
fn pct(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1e3)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let test = args.iter().any(|a| a == "--test");
    let quick = args.iter().any(|a| a == "--quick");
    let tmp = tempfile::Builder::new()
        .prefix("syncd-bench-commit-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("a temporary directory under target/");
    println!(
        "{:<26} {:>7} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "commit+flush", "samples", "bytes", "p50 ms", "p90 ms", "p99 ms", "max ms", "mean ms"
    );
    for queues in [1usize, 3] {
        for paths in [1usize, 1000] {
            let dir = tmp.path().join(format!("q{queues}-p{paths}"));
            let store = Store::open(&dir).expect("open the store");
            let qs: Vec<_> = (0..queues)
                .map(|i| {
                    let target = format!("/backup/dest{i}/");
                    store.queue(OsStr::new(&target)).expect("open a queue")
                })
                .collect();
            let cs = changeset(paths);
            let (warmup, n) = match (test, quick, paths) {
                (true, _, _) => (1, 5),
                (_, true, _) => (20, 200),
                (_, _, 1) => (100, 5000),
                _ => (50, 2000),
            };
            let mut samples = Vec::with_capacity(n);
            for i in 0..warmup + n {
                let t = Instant::now();
                let seq = store.commit(&qs, &cs, i as u64).expect("commit");
                let took = t.elapsed();
                if i >= warmup {
                    samples.push(took);
                }
                for q in &qs {
                    store.ack(q, &[seq], cs.entries.len() as u64).expect("ack");
                }
            }
            samples.sort();
            let mean = samples.iter().sum::<Duration>() / samples.len() as u32;
            println!(
                "{:<26} {:>7} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
                format!("{paths} paths, {queues} queues"),
                n,
                encode_changeset(&cs).len(),
                ms(pct(&samples, 50.0)),
                ms(pct(&samples, 90.0)),
                ms(pct(&samples, 99.0)),
                ms(*samples.last().expect("at least one sample")),
                ms(mean),
            );
        }
    }
}
