//! The main job: build perfect-hash tables of several sizes and report what
//! they cost, next to baselines measured in the same run.
//!
//! `cargo run --release --example demo`
//!
//! Timing here is a quick look (best of several rounds on a shared machine);
//! the reference figures come from `cargo bench` (see docs/benchmarks.md).

use core::ffi::c_void;
use std::collections::HashMap;
use std::hint::black_box;
use std::time::Instant;

use extensibletype::{prehash, Builder, Table};

const QUERIES: usize = 1 << 16;

/// Nanoseconds per item of the fastest of `rounds` runs of `f`.
fn best_ns(rounds: usize, items: usize, mut f: impl FnMut() -> u64) -> f64 {
    (0..rounds)
        .map(|_| {
            let start = Instant::now();
            black_box(f());
            start.elapsed().as_nanos() as f64 / items as f64
        })
        .fold(f64::INFINITY, f64::min)
}

/// xorshift64: a reproducible query order.
fn shuffled_indices(n: usize, count: usize) -> Vec<usize> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..count)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % n as u64) as usize
        })
        .collect()
}

fn main() {
    println!("extensibletype demo: perfect-hash slot tables (ABI v1)\n");
    let key = "extensibletype.array.v1:acquire";
    println!("prehash({key:?}) = {:#018x}\n", prehash(key));

    println!(
        "{:>6} | {:>9} {:>9} {:>10} | {:>10} {:>10} {:>12} {:>10} | {:>6} {:>6} {:>8}",
        "n", "build µs", "reused µs", "HashMap µs", "hit ns", "miss ns", "HashMap ns", "array ns", "S", "B", "B/entry"
    );
    for n in [8usize, 64, 256, 1024, 4096, 65_536] {
        let ids: Vec<u64> = (0..n).map(|i| prehash(&format!("demo.iface.v1:member{i}"))).collect();
        let entries: Vec<(u64, *const c_void)> =
            ids.iter().enumerate().map(|(i, &id)| (id, (0x1000 + 16 * i) as *const c_void)).collect();
        let rounds = if n >= 65_536 { 5 } else { 50 };

        let build = best_ns(rounds, 1, || Table::build(&entries).unwrap().len() as u64) / 1000.0;
        let mut builder = Builder::new();
        let reused = best_ns(rounds, 1, || builder.build(&entries).unwrap().len() as u64) / 1000.0;
        let map_build = best_ns(rounds, 1, || {
            let m: HashMap<u64, *const c_void> = entries.iter().copied().collect();
            m.len() as u64
        }) / 1000.0;

        let table = Table::build(&entries).unwrap();
        let map: HashMap<u64, *const c_void> = entries.iter().copied().collect();
        let array: Vec<*const c_void> = entries.iter().map(|e| e.1).collect();
        let order = shuffled_indices(n, QUERIES);
        let hits: Vec<u64> = order.iter().map(|&i| ids[i]).collect();
        let misses: Vec<u64> = (0..QUERIES).map(|i| prehash(&format!("absent{i}"))).collect();

        let sum = |f: &dyn Fn(usize) -> *const c_void| -> u64 { (0..QUERIES).map(|q| f(q) as u64).fold(0, u64::wrapping_add) };
        let hit = best_ns(20, QUERIES, || sum(&|q| table.get(hits[q]).unwrap_or(core::ptr::null())));
        let miss = best_ns(20, QUERIES, || sum(&|q| table.get(misses[q]).unwrap_or(core::ptr::null())));
        let map_hit = best_ns(20, QUERIES, || sum(&|q| map.get(&hits[q]).copied().unwrap_or(core::ptr::null())));
        let arr = best_ns(20, QUERIES, || sum(&|q| array[order[q]]));

        println!(
            "{n:>6} | {build:>9.2} {reused:>9.2} {map_build:>10.2} | {hit:>10.2} {miss:>10.2} {map_hit:>12.2} {arr:>10.2} | {:>6} {:>6} {:>8.1}",
            table.size(),
            table.bins(),
            table.bytes() as f64 / n as f64
        );
    }
    println!("\nhit/miss/HashMap/array: ns per independent query (best of 20 rounds of {QUERIES});");
    println!("HashMap uses the default SipHash hasher. Criterion figures with more baselines: cargo bench --bench table");
}
