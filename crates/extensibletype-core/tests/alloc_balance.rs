//! Every table gives its memory back: a counting global allocator (per
//! thread, so the harness's parallel tests do not disturb each other)
//! checks that building and dropping tables leaves no block behind.
//! A `Table` whose `Drop` forgets to free fails here, under plain
//! `cargo test`, with no sanitizer.

use core::ffi::c_void;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use extensibletype_core::{Builder, Table};

struct Counting;

thread_local! {
    /// Blocks and bytes this thread allocated and has not freed yet.
    static LIVE: Cell<(isize, isize)> = const { Cell::new((0, 0)) };
    /// Live blocks with the table alignment (64): only tables use it here.
    static LIVE_ALIGNED_64: Cell<isize> = const { Cell::new(0) };
    /// Allocations (and reallocations) this thread made, ever.
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

fn note(layout: Layout, sign: isize) {
    // try_with: the counters may be gone while the thread is exiting.
    let _ = LIVE.try_with(|c| {
        let (blocks, bytes) = c.get();
        c.set((blocks + sign, bytes + sign * layout.size() as isize));
    });
    if sign > 0 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
    }
    if layout.align() == 64 {
        let _ = LIVE_ALIGNED_64.try_with(|c| c.set(c.get() + sign));
    }
}

// SAFETY: every call is forwarded to `System` with the same arguments; the
// counters are thread-local `Cell`s with const initialisers (no allocation,
// no destructor), so counting cannot recurse into the allocator.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded contract.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            note(layout, 1);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded contract.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            note(layout, 1);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note(layout, -1);
        // SAFETY: forwarded contract.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded contract.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            note(layout, -1);
            // SAFETY: `new_size` is a valid size for this alignment (the
            // caller's contract of realloc).
            note(
                unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) },
                1,
            );
        }
        p
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn live() -> (isize, isize) {
    LIVE.with(Cell::get)
}

fn live_tables() -> isize {
    LIVE_ALIGNED_64.with(Cell::get)
}

fn entries(n: usize, salt: u64) -> Vec<(u64, *const c_void)> {
    (1..=n as u64)
        .map(|k| {
            (
                k.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ salt | 1,
                (0x1000 + 16 * k) as *const c_void,
            )
        })
        .collect()
}

/// Sizes across the small (reused per-thread scratch) and large (fresh
/// builder) paths of `Table::build`.
const SIZES: [usize; 8] = [0, 1, 2, 17, 300, 4096, 4097, 20_000];

fn build_and_drop_all() {
    for (salt, &n) in SIZES.iter().enumerate() {
        let table = Table::build(&entries(n, salt as u64)).unwrap();
        assert_eq!(table.len(), n);
        drop(table);
    }
}

#[test]
fn a_table_is_one_block_returned_on_drop() {
    let before = live_tables();
    let table = Table::build(&entries(100, 7)).unwrap();
    assert_eq!(live_tables(), before + 1, "a table is one 64-aligned block");
    let other = Table::build(&entries(5000, 8)).unwrap();
    assert_eq!(live_tables(), before + 2);
    drop(table);
    assert_eq!(
        live_tables(),
        before + 1,
        "dropping a table frees its block"
    );
    drop(other);
    assert_eq!(live_tables(), before);
}

#[test]
fn building_and_dropping_tables_leaves_nothing_behind() {
    // The first round may grow the per-thread scratch of Table::build; every
    // later round must come back to exactly the same live memory.
    build_and_drop_all();
    let warm = live();
    for _ in 0..3 {
        build_and_drop_all();
        assert_eq!(
            live(),
            warm,
            "(blocks, bytes) live after building and dropping tables"
        );
    }
}

#[test]
fn a_builder_and_its_tables_leave_nothing_behind() {
    let start = live();
    {
        let mut builder = Builder::new();
        let tables: Vec<Table> = SIZES
            .iter()
            .map(|&n| builder.build(&entries(n, 3)).unwrap())
            .collect();
        assert!(live().0 > start.0);
        drop(tables);
    }
    assert_eq!(
        live(),
        start,
        "(blocks, bytes) live after dropping a builder and its tables"
    );
}

#[test]
fn into_raw_keeps_the_block_and_from_raw_frees_it() {
    let before = live_tables();
    let raw = Table::build(&entries(40, 1)).unwrap().into_raw();
    assert_eq!(
        live_tables(),
        before + 1,
        "into_raw gives up ownership without freeing"
    );
    // SAFETY: `raw` comes from into_raw and is taken back once.
    let table = unsafe { Table::from_raw(raw) };
    assert_eq!(table.len(), 40);
    drop(table);
    assert_eq!(live_tables(), before);
}

#[test]
fn failed_builds_leave_nothing_behind() {
    let mut dup = entries(50, 9);
    dup.push(dup[10]);
    let mut zero = entries(50, 9);
    zero[3].0 = 0;
    let start = live();
    let tables = live_tables();
    let mut builder = Builder::new();
    assert!(builder.build(&dup).is_err());
    assert!(builder.build(&zero).is_err());
    assert_eq!(live_tables(), tables, "a failed build allocates no table");
    drop(builder);
    assert_eq!(live(), start);
}

fn allocations() -> usize {
    ALLOCATIONS.with(Cell::get)
}

#[test]
fn a_repeated_small_build_allocates_only_its_table() {
    // Table::build reuses a per-thread builder for small sets: once warm,
    // a build makes exactly one allocation, the table (no scratch, no heap
    // buffer for a bin's slots).
    std::thread::spawn(|| {
        for n in [1usize, 3, 40, 1000, 4096] {
            let input = entries(n, 11);
            drop(Table::build(&input).unwrap());
            let before = allocations();
            let table = Table::build(&input).unwrap();
            assert_eq!(allocations() - before, 1, "n {n}: allocations of a warm build");
            drop(table);
        }
    })
    .join()
    .unwrap();
}

#[test]
fn a_large_build_keeps_no_scratch_in_the_thread() {
    // Large sets get a fresh builder, dropped with the build: a thread that
    // built one big table holds nothing afterwards.
    std::thread::spawn(|| {
        let start = live();
        let table = Table::build(&entries(20_000, 12)).unwrap();
        drop(table);
        assert_eq!(live(), start, "(blocks, bytes) a large build left behind in its thread");
    })
    .join()
    .unwrap();
}
