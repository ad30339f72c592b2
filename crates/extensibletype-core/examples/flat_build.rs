//! Build cost of the flat table (`table::flat`, issue 23 item 4 groundwork)
//! against today's `Table::build`, on the same id sets in the same run.
//!
//! `cargo run -p extensibletype-core --release --example flat_build` prints a
//! Markdown table: per n, random sets (SplitMix64 ids) and the realistic
//! key-string set; build time is, per set, the best of 7 interleaved
//! timings of build + drop, then the mean (and max) over sets.
//!
//! `... --example flat_build -- callgrind v1|smallest|e16|fast N` builds 100
//! random sets of N ids once inside `run` (for
//! `valgrind --tool=callgrind --toggle-collect='*flat_build::run*'`).

use core::ffi::c_void;
use std::hint::black_box;
use std::time::Instant;

use extensibletype_core::table::flat::{build_flat, FlatPolicy, FlatWork};
use extensibletype_core::{prehash, Table};

const NS: [usize; 9] = [1, 2, 4, 8, 16, 24, 32, 48, 64];
const SETS: u64 = 200;
const REPS: usize = 7;

fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn random_set(n: usize, set: u64) -> Vec<(u64, *const c_void)> {
    (0..n as u64).map(|k| (mix(k ^ set << 32 ^ (n as u64) << 56) | 1, (0x1000 + 16 * k) as *const c_void)).collect()
}

fn realistic_set(n: usize) -> Vec<(u64, *const c_void)> {
    let keys: Vec<String> = if n == 2 {
        vec!["extensibletype.array.v1:acquire".into(), "extensibletype.array.v1:release".into()]
    } else {
        (0..n).map(|i| format!("bench.tablev2.v1:member_{i}")).collect()
    };
    keys.iter().enumerate().map(|(i, k)| (prehash(k), (0x1000 + 16 * i) as *const c_void)).collect()
}

const POLICIES: [(&str, FlatPolicy); 3] = [
    ("smallest", FlatPolicy::SMALLEST),
    ("e16", FlatPolicy { max_expected: 16, attempts: 16, cap_attempts: 256 }),
    ("fast", FlatPolicy::FAST),
];

/// One build of `which` (0 = v1, 1.. = POLICIES), dropped; the flat table's
/// slots (0: no flat table) and work.
#[inline(never)]
fn build_once(which: usize, entries: &[(u64, *const c_void)], work: &mut FlatWork) -> usize {
    if which == 0 {
        let t = Table::build(black_box(entries)).expect("v1 builds");
        black_box(t.size())
    } else {
        let t = build_flat(black_box(entries), POLICIES[which - 1].1, work).expect("valid");
        black_box(t.map_or(0, |t| t.size()))
    }
}

#[inline(never)]
fn run(which: usize, sets: &[Vec<(u64, *const c_void)>]) -> usize {
    let mut work = FlatWork::default();
    sets.iter().map(|s| build_once(which, s, &mut work)).sum()
}

fn callgrind(mode: &str, n: usize) {
    let which = match mode {
        "v1" => 0,
        m => 1 + POLICIES.iter().position(|p| p.0 == m).expect("mode: v1|smallest|e16|fast"),
    };
    let sets: Vec<_> = (0..100).map(|s| random_set(n, s)).collect();
    // Warm the v1 builder's per-thread scratch outside the measured region.
    build_once(0, &sets[0], &mut FlatWork::default());
    println!("{}", run(which, &sets));
}

#[derive(Default)]
struct Row {
    us: Vec<f64>,
    slots: Vec<usize>,
    attempts: Vec<u64>,
    built: usize,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() == 4 && args[1] == "callgrind" {
        callgrind(&args[2], args[3].parse().expect("N"));
        return;
    }
    println!("| n | builder | flat within cap | median m | bytes/entry (mean) | mean attempts | max attempts | mean µs | max µs | × v1 | realistic: m, bytes/entry, µs |");
    println!("|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|---|");
    for n in NS {
        let mut rows: Vec<Row> = (0..=POLICIES.len()).map(|_| Row::default()).collect();
        for set in 0..SETS {
            let entries = random_set(n, set);
            let mut best = [f64::INFINITY; POLICIES.len() + 1];
            for _ in 0..REPS {
                for (which, b) in best.iter_mut().enumerate() {
                    let t0 = Instant::now();
                    build_once(which, &entries, &mut FlatWork::default());
                    *b = b.min(t0.elapsed().as_secs_f64() * 1e6);
                }
            }
            for (which, row) in rows.iter_mut().enumerate() {
                let mut work = FlatWork::default();
                let slots = if which == 0 { Table::build(&entries).unwrap().size() } else { build_once(which, &entries, &mut work) };
                row.us.push(best[which]);
                row.attempts.push(work.attempts);
                if slots > 0 {
                    row.built += 1;
                    row.slots.push(slots);
                }
            }
        }
        let real = realistic_set(n);
        let v1_mean = rows[0].us.iter().sum::<f64>() / rows[0].us.len() as f64;
        for (which, row) in rows.iter_mut().enumerate() {
            let name = if which == 0 { "v1 Table::build" } else { POLICIES[which - 1].0 };
            let (bytes, real_bytes, real_m) = if which == 0 {
                let t = Table::build(&real).unwrap();
                let mean: f64 = (0..SETS).map(|s| Table::build(&random_set(n, s)).unwrap().bytes() as f64).sum::<f64>() / SETS as f64;
                (mean / n as f64, t.bytes() as f64 / n as f64, t.size())
            } else {
                let mean = row.slots.iter().map(|&m| (64 + 16 * m) as f64).sum::<f64>() / row.slots.len().max(1) as f64;
                let t = build_flat(&real, POLICIES[which - 1].1, &mut FlatWork::default()).unwrap();
                (mean / n as f64, t.as_ref().map_or(f64::NAN, |t| t.bytes() as f64 / n as f64), t.map_or(0, |t| t.size()))
            };
            let mut real_us = f64::INFINITY;
            for _ in 0..REPS * 3 {
                let t0 = Instant::now();
                build_once(which, &real, &mut FlatWork::default());
                real_us = real_us.min(t0.elapsed().as_secs_f64() * 1e6);
            }
            let mut slots = row.slots.clone();
            slots.sort_unstable();
            let median = slots.get(slots.len() / 2).copied().unwrap_or(0);
            let mean_us = row.us.iter().sum::<f64>() / row.us.len() as f64;
            let max_us = row.us.iter().cloned().fold(0.0, f64::max);
            let ratio = mean_us / v1_mean;
            let attempts = if which == 0 { "–".to_string() } else { format!("{:.1}", row.attempts.iter().sum::<u64>() as f64 / SETS as f64) };
            let max_att = if which == 0 { "–".to_string() } else { row.attempts.iter().max().unwrap().to_string() };
            let built = if which == 0 { "–".to_string() } else { format!("{}/{}", row.built, SETS) };
            println!(
                "| {n} | {name} | {built} | {median} | {bytes:.1} | {attempts} | {max_att} | {mean_us:.3} | {max_us:.2} | {ratio:.2} | {real_m}, {real_bytes:.1}, {real_us:.3} |"
            );
        }
    }
}
