//! Table build and lookup benchmarks, with baselines measured in the same run.
//!
//! Run all: `cargo bench --bench table` (about 2.5 minutes on 2 vCPUs).
//! Subsets: `cargo bench --bench table -- build`, `-- lookup_tput`,
//! `-- 'lookup_lat_hit_n1024'`, or add `--quick` for a fast rough pass.
//! Results: `target/criterion/<group>/<method>/new/estimates.json`;
//! `docs/benchmarks.md` explains the groups and records one run.
//!
//! Groups
//! - `build_n{N}`: build a lookup structure from N (id, ptr) pairs; ids are
//!   `prehash` of distinct strings, computed outside the timed loop. Each
//!   iteration includes dropping the built structure.
//! - `lookup_tput_{hit,miss}_n{N}`: 4096 independent queries (pre-generated
//!   random order) per iteration; `Throughput::Elements(4096)`.
//! - `lookup_lat_{hit,miss}_n{N}`: the same 4096 queries as a dependent
//!   chain: the next query's index depends on the previous result, so the
//!   lookups serialize and the time is latency.

use core::ffi::c_void;
use std::collections::HashMap;
use std::hint::black_box;
use std::ptr;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use extensibletype::table::raw_lookup;
use extensibletype::{prehash, Builder, RawEntry, Table};
use ptr_hash::{hash::FastIntHash, DefaultPtrHash, PtrHashParams};
use rustc_hash::FxHashMap;

const BUILD_SIZES: [usize; 6] = [8, 64, 256, 1024, 4096, 65536];
const LOOKUP_SIZES: [usize; 2] = [64, 1024];
/// Queries per lookup iteration (a power of two: the latency chain masks).
const QUERIES: usize = 4096;
/// `phf_generator` is only benchmarked up to this size (see docs/benchmarks.md).
const PHF_MAX_N: usize = 4096;

// ---------------------------------------------------------------- inputs

/// A distinct, non-NULL fake pointer for entry `i` (never dereferenced).
fn fake_ptr(i: usize) -> *const c_void {
    ptr::without_provenance(0x1000 + 16 * i)
}

/// Ids of `n` distinct member keys.
fn member_ids(n: usize) -> Vec<u64> {
    (0..n)
        .map(|i| prehash(&format!("bench.module.v1:member_{i}")))
        .collect()
}

/// Ids of `count` keys that are not members (distinct strings).
fn miss_ids(count: usize, members: &[u64]) -> Vec<u64> {
    let ids: Vec<u64> = (0..count)
        .map(|i| prehash(&format!("bench.other.v1:absent_{i}")))
        .collect();
    assert!(ids.iter().all(|id| !members.contains(id)));
    ids
}

fn pairs(ids: &[u64]) -> Vec<(u64, *const c_void)> {
    ids.iter()
        .enumerate()
        .map(|(i, &id)| (id, fake_ptr(i)))
        .collect()
}

/// SplitMix64 sequence: a tiny deterministic RNG for query orders.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

// ---------------------------------------------------------------- probes

/// The hit path as a standalone function, kept for reading its assembly
/// (`objdump -d --no-show-raw-insn target/release/deps/table-* | grep -A20 "<bench_probe_raw>:"`).
#[inline(never)]
#[no_mangle]
pub fn bench_probe_raw(t: &Table, id: u64) -> *const c_void {
    // SAFETY: `t` is a live table.
    unsafe { raw_lookup(t.as_raw(), id) }
}

/// The same through the safe `Table::get`.
#[inline(never)]
#[no_mangle]
pub fn bench_probe_get(t: &Table, id: u64) -> Option<*const c_void> {
    t.get(id)
}

type RawProbe = fn(&Table, u64) -> *const c_void;
type GetProbe = fn(&Table, u64) -> Option<*const c_void>;

/// Keeps both probes in the bench binary (nothing else calls them).
#[used]
static KEEP_PROBES: (RawProbe, GetProbe) = (bench_probe_raw, bench_probe_get);

/// One lookup structure per method, all holding the same n entries.
struct Structures {
    table: Table,
    /// The floor: `floor[i]` for a known index `i` (one load per query).
    floor: Vec<*const c_void>,
    sip: HashMap<u64, *const c_void>,
    fx: FxHashMap<u64, *const c_void>,
    /// SEP 200 (2012) scheme: a flat `{id, ptr}` array scanned in order.
    linear: Vec<RawEntry>,
    ptrhash: DefaultPtrHash<FastIntHash, u64>,
    ptrhash_entries: Vec<RawEntry>,
    phf_key: u64,
    phf_disps: Vec<(u32, u32)>,
    phf_entries: Vec<RawEntry>,
}

impl Structures {
    fn new(ids: &[u64]) -> Structures {
        let input = pairs(ids);
        let entries: Vec<RawEntry> = input
            .iter()
            .map(|&(id, ptr)| RawEntry { id, ptr })
            .collect();
        let ptrhash = DefaultPtrHash::<FastIntHash, u64>::new(ids, PtrHashParams::default());
        let mut ptrhash_entries = vec![
            RawEntry {
                id: 0,
                ptr: ptr::null()
            };
            ptrhash.max_index()
        ];
        for e in &entries {
            ptrhash_entries[ptrhash.index(&e.id)] = *e;
        }
        let phf = phf_generator::generate_hash(ids);
        // phf's map[i] is the input index stored at slot i (as phf::Map lays it out).
        let phf_entries = phf.map.iter().map(|&k| entries[k]).collect();
        Structures {
            table: Table::build(&input).unwrap(),
            floor: input.iter().map(|&(_, p)| p).collect(),
            sip: input.iter().copied().collect(),
            fx: input.iter().copied().collect(),
            linear: entries,
            ptrhash,
            ptrhash_entries,
            phf_key: phf.key,
            phf_disps: phf.disps,
            phf_entries,
        }
    }

    fn check(&self, hits: &[u64], misses: &[u64]) {
        for (i, &id) in hits.iter().enumerate() {
            let want = fake_ptr(i);
            assert_eq!(self.table.get(id), Some(want));
            assert_eq!(self.floor[i], want);
            assert_eq!(self.sip.get(&id).copied(), Some(want));
            assert_eq!(self.fx.get(&id).copied(), Some(want));
            assert_eq!(lookup_linear(&self.linear, id), want);
            assert_eq!(
                lookup_ptrhash(&self.ptrhash, &self.ptrhash_entries, id),
                want
            );
            assert_eq!(self.lookup_phf(id), want);
        }
        for &id in misses {
            assert_eq!(self.table.get(id), None);
            assert!(!self.sip.contains_key(&id) && !self.fx.contains_key(&id));
            assert!(lookup_linear(&self.linear, id).is_null());
            assert!(lookup_ptrhash(&self.ptrhash, &self.ptrhash_entries, id).is_null());
            assert!(self.lookup_phf(id).is_null());
        }
    }

    #[inline(always)]
    fn lookup_phf(&self, id: u64) -> *const c_void {
        let hashes = phf_shared::hash(&id, &self.phf_key);
        let i = phf_shared::get_index(&hashes, &self.phf_disps, self.phf_entries.len());
        let e = &self.phf_entries[i as usize];
        if e.id == id {
            e.ptr
        } else {
            ptr::null()
        }
    }
}

#[inline(always)]
fn lookup_linear(entries: &[RawEntry], id: u64) -> *const c_void {
    entries
        .iter()
        .find(|e| e.id == id)
        .map_or(ptr::null(), |e| e.ptr)
}

#[inline(always)]
fn lookup_ptrhash(
    mphf: &DefaultPtrHash<FastIntHash, u64>,
    entries: &[RawEntry],
    id: u64,
) -> *const c_void {
    let e = &entries[mphf.index(&id)];
    if e.id == id {
        e.ptr
    } else {
        ptr::null()
    }
}

// ---------------------------------------------------------------- harness

fn configure<M: criterion::measurement::Measurement>(
    g: &mut BenchmarkGroup<'_, M>,
    samples: usize,
    measure_ms: u64,
) {
    g.warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_millis(measure_ms))
        .sample_size(samples);
}

/// Throughput: `QUERIES` independent lookups; the sum of the results keeps
/// every lookup alive without serializing them.
#[inline(always)]
fn batch<Q: Copy>(queries: &[Q], mut lookup: impl FnMut(Q) -> *const c_void) -> usize {
    let mut acc = 0usize;
    for &q in black_box(queries) {
        acc = acc.wrapping_add(lookup(q) as usize);
    }
    acc
}

/// Latency: the next query index is `(i + 1) ^ (result & salt)` with
/// `salt == 0` hidden from the compiler, so each lookup waits for the last.
#[inline(always)]
fn chain<Q: Copy>(queries: &[Q], salt: usize, mut lookup: impl FnMut(Q) -> *const c_void) -> usize {
    let queries = black_box(queries);
    let mask = queries.len() - 1;
    let mut i = 0usize;
    for _ in 0..queries.len() {
        let r = lookup(queries[i]) as usize;
        i = ((i + 1) ^ (r & salt)) & mask;
    }
    i
}

fn bench_build(c: &mut Criterion) {
    for n in BUILD_SIZES {
        let ids = member_ids(n);
        let input = pairs(&ids);
        let mut g = c.benchmark_group(format!("build_n{n}"));
        if n >= 65536 {
            configure(&mut g, 10, 3000);
        } else {
            configure(&mut g, 30, 1000);
        }
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function("ours_Table_build", |b| {
            b.iter(|| Table::build(black_box(&input)).unwrap())
        });
        let mut builder = Builder::new();
        g.bench_function("ours_Builder_reused", |b| {
            b.iter(|| builder.build(black_box(&input)).unwrap())
        });
        g.bench_function("hashmap_sip", |b| {
            b.iter(|| {
                let mut m = HashMap::<u64, usize>::with_capacity(n);
                for (i, &id) in black_box(&ids).iter().enumerate() {
                    m.insert(id, i);
                }
                m
            })
        });
        g.bench_function("hashmap_fx", |b| {
            b.iter(|| {
                let mut m =
                    FxHashMap::<u64, usize>::with_capacity_and_hasher(n, Default::default());
                for (i, &id) in black_box(&ids).iter().enumerate() {
                    m.insert(id, i);
                }
                m
            })
        });
        g.bench_function("ptr_hash", |b| {
            b.iter(|| {
                DefaultPtrHash::<FastIntHash, u64>::new(black_box(&ids), PtrHashParams::default())
            })
        });
        if n <= PHF_MAX_N {
            g.bench_function("phf_generator", |b| {
                b.iter(|| phf_generator::generate_hash(black_box(&ids)))
            });
        }
        g.finish();
    }
}

/// Structured id sets (multiply-shift maps arithmetic progressions onto a
/// lattice) next to a random set of the same size: the time bound of docs/spec.md §2.
/// Short runs: compare the ratios within one run.
fn bench_build_structured(c: &mut Criterion) {
    type Family = (&'static str, fn(u64) -> u64);
    let families: [(usize, &[Family]); 3] = [
        (1024, &[("k_shl47_plus7", |k| (k << 47) + 7), ("sequential", |k| k)]),
        (8192, &[("k_shl18", |k| k << 18)]),
        (
            65536,
            &[
                ("k_shl38", |k| k << 38),
                ("k_shl5", |k| k << 5),
                ("k_mul_golden", |k| k.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
            ],
        ),
    ];
    for (n, families) in families {
        let mut g = c.benchmark_group(format!("build_structured_n{n}"));
        if n >= 65536 {
            configure(&mut g, 10, 1500);
        } else {
            configure(&mut g, 20, 500);
        }
        g.throughput(Throughput::Elements(n as u64));
        let random = pairs(&member_ids(n));
        let mut builder = Builder::new();
        g.bench_function("random", |b| b.iter(|| builder.build(black_box(&random)).unwrap()));
        for &(name, f) in families {
            let input = pairs(&(1..=n as u64).map(f).collect::<Vec<_>>());
            g.bench_function(name, |b| b.iter(|| builder.build(black_box(&input)).unwrap()));
        }
        g.finish();
    }
}

fn bench_lookup(c: &mut Criterion) {
    let salt = black_box(0usize);
    for n in LOOKUP_SIZES {
        let ids = member_ids(n);
        let misses = miss_ids(QUERIES, &ids);
        let s = Structures::new(&ids);
        s.check(&ids, &misses[..64]);
        eprintln!(
            "n={n}: table size={} bins={} bytes={} ({:.1} bytes/entry)",
            s.table.size(),
            s.table.bins(),
            s.table.bytes(),
            s.table.bytes() as f64 / n as f64
        );

        let mut rng = Rng(0x5eed ^ n as u64);
        // Hit queries: random members, as indices (for the floor) and as ids.
        let hit_idx: Vec<usize> = (0..QUERIES).map(|_| rng.below(n)).collect();
        let hit_ids: Vec<u64> = hit_idx.iter().map(|&i| ids[i]).collect();

        for (kind, queries) in [("hit", &hit_ids), ("miss", &misses)] {
            for mode in ["tput", "lat"] {
                let mut g = c.benchmark_group(format!("lookup_{mode}_{kind}_n{n}"));
                let samples = if n >= 1024 { 20 } else { 30 };
                configure(&mut g, samples, 800);
                g.throughput(Throughput::Elements(QUERIES as u64));
                macro_rules! method {
                    ($name:expr, $q:expr, $f:expr) => {
                        g.bench_function($name, |b| {
                            if mode == "tput" {
                                b.iter(|| batch($q, $f))
                            } else {
                                b.iter(|| chain($q, salt, $f))
                            }
                        });
                    };
                }
                if kind == "hit" {
                    let floor = &s.floor;
                    method!("array_load_floor", &hit_idx, |i: usize| floor[i]);
                }
                let raw = s.table.as_raw();
                // SAFETY: `s.table` outlives the benchmark.
                method!("ours_raw_lookup", queries, |id: u64| unsafe {
                    raw_lookup(raw, id)
                });
                method!("ours_Table_get", queries, |id: u64| s
                    .table
                    .get(id)
                    .unwrap_or(ptr::null()));
                method!("hashmap_sip", queries, |id: u64| s
                    .sip
                    .get(&id)
                    .copied()
                    .unwrap_or(ptr::null()));
                method!("hashmap_fx", queries, |id: u64| s
                    .fx
                    .get(&id)
                    .copied()
                    .unwrap_or(ptr::null()));
                method!("linear_scan", queries, |id: u64| lookup_linear(
                    &s.linear, id
                ));
                method!("ptr_hash", queries, |id: u64| lookup_ptrhash(
                    &s.ptrhash,
                    &s.ptrhash_entries,
                    id
                ));
                method!("phf", queries, |id: u64| s.lookup_phf(id));
                g.finish();
            }
        }
    }
}

criterion_group!(benches, bench_build, bench_build_structured, bench_lookup);
criterion_main!(benches);
