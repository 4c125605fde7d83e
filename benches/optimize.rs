//! Micro-benchmarks of the optimizer and the aggregation window (issues 6
//! and 7): `optimize` on 10k, 100k and 1M raw entries of a realistic mix,
//! to show it stays O(n log n), and the `Aggregator` absorbing a flood of
//! events on a working set of hot files.
//!
//! The mix, in event order (not sorted): writes to files spread over many
//! directories two levels deep, rewrites of a few hot files, deletions,
//! new directories (each followed by a few writes inside them, which the
//! optimizer must prune), attribute changes on directories and writes deep
//! in the tree. Paths are deterministic (a fixed-seed xorshift), so every
//! run measures the same input.
//!
//! Run: `cargo bench --bench optimize` (BENCHMARKS.md has the figures and
//! the instruction counts of `SYNCD_OPTIMIZE_ONCE`, see `main`).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, BatchSize, BenchmarkId, Criterion, Throughput};
use syncd::aggregate::Aggregator;
use syncd::changeset::{Entry, Kind};
use syncd::optimize::optimize;

/// A tiny deterministic PRNG (xorshift64), so the workload needs no crate.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// `n` raw entries of the realistic mix described above, over about `n/2`
/// distinct files in `n/200` directories.
fn workload(n: usize) -> Vec<Entry> {
    let mut r = Rng(0x9e37_79b9_7f4a_7c15);
    let dirs = (n as u64 / 200).max(4);
    let files = 100u64;
    let mut v = Vec::with_capacity(n + 8);
    let file = |r: &mut Rng| {
        let d = r.below(dirs);
        format!("proj{}/mod{}/file_{:03}.rs", d / 16, d % 16, r.below(files))
    };
    while v.len() < n {
        match r.below(100) {
            0..=59 => v.push(Entry::new(Kind::File, file(&mut r))),
            60..=69 => {
                let hot = format!("hot/log{}.txt", r.below(100));
                v.push(Entry::new(Kind::File, hot));
            }
            70..=79 => v.push(Entry::new(Kind::Gone, file(&mut r))),
            80..=84 => {
                let d = format!("proj{}/new{}", r.below(dirs / 16 + 1), r.below(1 << 20));
                v.push(Entry::new(Kind::Tree, d.clone()));
                for i in 0..r.below(6) {
                    v.push(Entry::new(Kind::File, format!("{d}/sub/f{i}")));
                }
            }
            85..=89 => {
                let d = r.below(dirs);
                let p = format!("proj{}/mod{}", d / 16, d % 16);
                v.push(Entry::new(Kind::Attrs, p));
            }
            _ => {
                let d = r.below(dirs);
                let p = format!("deep/{}/a/b/c/d/e/f{}", d, r.below(files));
                v.push(Entry::new(Kind::File, p));
            }
        }
    }
    v.truncate(n);
    v
}

/// The fastest of `runs` timings of `f` on fresh clones of `input`: on a
/// shared machine the minimum is the figure least disturbed by others.
fn fastest(input: &[Entry], runs: usize, mut f: impl FnMut(Vec<Entry>)) -> Duration {
    (0..runs)
        .map(|_| {
            let v = input.to_vec();
            let t = Instant::now();
            f(v);
            t.elapsed()
        })
        .min()
        .unwrap_or_default()
}

/// Prints the scaling check: the fastest of five runs at each size, per
/// entry and per `entry * log2(n)` (flat for O(n log n)), next to a plain
/// byte-order sort of the same entries as a reference.
fn scaling(sizes: &[usize]) {
    eprintln!(
        "scaling (fastest of 5):      n    optimize   ns/entry  ns/(entry*log2 n)   byte sort"
    );
    for &n in sizes {
        let input = workload(n);
        let opt = fastest(&input, 5, |v| {
            black_box(optimize(v, usize::MAX));
        });
        let sort = fastest(&input, 5, |mut v| {
            v.sort_unstable_by(|a, b| a.path.cmp(&b.path));
            black_box(v);
        });
        let per = opt.as_secs_f64() * 1e9 / n as f64;
        eprintln!(
            "scaling (fastest of 5): {n:>8} {:>9.2} ms {per:>9.0} {:>18.1} {:>9.2} ms",
            opt.as_secs_f64() * 1e3,
            per / (n as f64).log2(),
            sort.as_secs_f64() * 1e3
        );
    }
}

fn bench_optimize(c: &mut Criterion) {
    let sizes = [10_000usize, 100_000, 1_000_000];
    // `cargo test --benches` passes --test: only check that benches run.
    if !std::env::args().any(|a| a == "--test") {
        scaling(&sizes);
    }
    let mut g = c.benchmark_group("optimize");
    for n in sizes {
        let input = workload(n);
        let kept = optimize(input.clone(), usize::MAX).len();
        eprintln!("optimize/{n}: {n} raw entries -> {kept} kept");
        g.throughput(Throughput::Elements(n as u64));
        if n >= 1_000_000 {
            g.sample_size(10).measurement_time(Duration::from_secs(15));
        } else {
            g.sample_size(20).measurement_time(Duration::from_secs(5));
        }
        // The full-sync threshold is off, so the whole output is built.
        g.bench_with_input(BenchmarkId::from_parameter(n), &input, |b, input| {
            b.iter_batched(
                || input.clone(),
                |v| black_box(optimize(v, usize::MAX)),
                BatchSize::LargeInput,
            )
        });
    }
    g.finish();
}

/// One million events on 10,000 distinct files through the window, which
/// compacts itself as it grows: the cost per event of the main loop's
/// aggregation, and its memory stays proportional to the distinct paths.
fn bench_aggregator(c: &mut Criterion) {
    let mut r = Rng(42);
    let events: Vec<Entry> = (0..1_000_000)
        .map(|_| {
            let f = r.below(10_000);
            Entry::new(Kind::File, format!("d{}/f{}", f / 100, f % 100))
        })
        .collect();
    let mut g = c.benchmark_group("aggregator");
    g.throughput(Throughput::Elements(events.len() as u64));
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    g.bench_function("1M events, 10k paths", |b| {
        b.iter_batched(
            || events.clone(),
            |events| {
                let now = Instant::now();
                let (delay, hold) = (Duration::from_secs(60), Duration::from_secs(60));
                let mut a = Aggregator::new(delay, usize::MAX, usize::MAX, hold);
                for e in events {
                    a.add(e, now);
                }
                black_box(a.changeset(0, now))
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group!(benches, bench_optimize, bench_aggregator);

/// `criterion_main!`, plus a mode for counting instructions: with
/// `SYNCD_OPTIMIZE_ONCE=N`, optimize one workload of N entries once and
/// exit, e.g. under `valgrind --tool=callgrind
/// --toggle-collect='*optimize::optimize*'`, whose counts do not depend on
/// what else the machine is doing.
fn main() {
    if let Some(n) = std::env::var("SYNCD_OPTIMIZE_ONCE")
        .ok()
        .and_then(|n| n.parse::<usize>().ok())
    {
        let kept = optimize(workload(n), usize::MAX).len();
        println!("optimized {n} entries -> {kept}");
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
