//! The single-level "flat" table `entries[(id * k1) >> s]`
//! (docs/spec.md §2.4, measured in docs/benchmarks.md, "A faster table"):
//! how one is built, recognised, described in one word and probed.
//!
//! A flat table is laid out as a valid ABI v1 table (16 bins, every
//! displacement 0, `entries_offset` = 64), so the v1 formula probes it
//! exactly and every consumer compiled against ABI v1 reads it unchanged.
//! Newer readers reach it through the type's *flat descriptor*
//! ([`descriptor`]): one word `&entries[0] | (s - 4)` plus `k1`, next to the
//! table pointer in the type data, which saves the header and `d[]` loads
//! ([`descriptor_lookup`]). The runtime builds one for every effective
//! table of up to [`FLAT_PREFERRED_MAX`] entries ([`Table::build_published`]).
//!
//! # Search
//!
//! For `m = 2^j` slots, a random odd `k1` is injective on `n` ids with
//! probability about `exp(-n(n - 1) / 2m)`; a failed attempt stops at its
//! first collision (a birthday run, about `sqrt(πm/2)` ids) and the
//! occupancy is a bitmap of at most four words on the stack (no allocation,
//! the cap keeps `m ≤ 256`). [`FlatPolicy::max_expected`] starts the search
//! at the smallest `m` whose expected attempt count is at most that number
//! (trading memory for build time); every size gets
//! [`FlatPolicy::attempts`] multipliers, the cap `m ≤ 4·2^⌈log2 n⌉`
//! [`FlatPolicy::cap_attempts`]; a set for which even the cap expects more
//! than four times that many attempts is refused at once (no search). A set
//! that finds none keeps its v1 table.
//!
//! Multipliers are a Weyl sequence from `splitmix64(splitmix64(seed ^ size)) | 1`,
//! the seed `n + Σ splitmix64(id)` (as in the v1 builder): the same set in any
//! order gives the same bytes.

use super::*;

/// Most ids a flat table takes (the cap then allows 256 slots).
pub const FLAT_MAX_ENTRIES: usize = 64;

/// Up to this many entries [`Table::build_published`] tries a flat table
/// first: every random set of up to 25 ids found one within the cap in the
/// builder's sweep (docs/benchmarks.md), at about 3x the v1 table's bytes
/// from 8 ids on ([`FlatPolicy::FAST`] starts large to build fast); larger
/// sets cost more memory and build time than the saved loads are worth.
pub const FLAT_PREFERRED_MAX: usize = 24;

/// Low bits of a descriptor word that hold `s - 4` (the entries are 64-byte
/// aligned, so a pointer to them has these bits clear).
pub const DESCRIPTOR_SHIFT_MASK: usize = 63;

/// Byte offset of `entries[0]` in a flat table: the 32-byte header and 16
/// zero displacements.
pub const FLAT_ENTRIES_OFFSET: usize = HEADER_SIZE + 2 * FLAT_BINS;

/// Bins of the v1 view of a flat table (all displacements 0).
const FLAT_BINS: usize = 16;

/// How the flat search spends its attempts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlatPolicy {
    /// Start at the smallest size whose expected number of attempts,
    /// `exp(n(n - 1) / 2m)`, is at most this (0: the smallest size `≥ n`).
    pub max_expected: u32,
    /// Multipliers tried per size below the cap.
    pub attempts: u32,
    /// Multipliers tried at the cap before giving up.
    pub cap_attempts: u32,
}

impl FlatPolicy {
    /// The prototype's search (`benches/c/tablev2.c`): smallest size first,
    /// 64 multipliers per size.
    pub const SMALLEST: FlatPolicy = FlatPolicy { max_expected: 0, attempts: 64, cap_attempts: 64 };
    /// Start where about 4 attempts are expected, 16 per size, 256 at the cap.
    pub const FAST: FlatPolicy = FlatPolicy { max_expected: 4, attempts: 16, cap_attempts: 256 };
}

/// The result of a successful search.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlatShape {
    /// The odd multiplier.
    pub k1: u64,
    /// `log2` of the slot count `m`.
    pub log_m: u32,
}

/// What a search cost, for tuning and the benchmarks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlatWork {
    /// Multipliers tried.
    pub attempts: u64,
    /// Ids hashed over all attempts.
    pub probes: u64,
}

/// `log2` of the largest flat table allowed for `n` ids: `4·2^⌈log2 n⌉`
/// slots, at least 2 (`n ≥ 1`).
pub fn cap_log_m(n: usize) -> u32 {
    n.max(1).next_power_of_two().trailing_zeros() + 2
}

/// `exp(n(n - 1) / 2m)`: about how many random multipliers it takes to
/// find one injective on `n` ids into `2^log_m` slots.
pub fn expected_attempts(n: usize, log_m: u32) -> f64 {
    ((n * n.saturating_sub(1)) as f64 / (2u64 << log_m) as f64).exp()
}

/// `log2` of the first size the search tries for `n` ids under `policy`.
pub fn start_log_m(n: usize, policy: FlatPolicy) -> u32 {
    let smallest = n.max(2).next_power_of_two().trailing_zeros();
    if policy.max_expected <= 1 {
        return smallest;
    }
    // exp(n(n-1)/2m) <= E  <=>  n(n-1) <= 2m ln E
    let mut log_m = smallest;
    while log_m < cap_log_m(n) && expected_attempts(n, log_m) > f64::from(policy.max_expected) {
        log_m += 1;
    }
    log_m
}

/// Is a flat table for `n` ids hopeless within the cap (n = 64: about 2,600
/// attempts expected at 256 slots, against a budget of 256)? Then the search
/// gives up at once rather than spend the whole budget.
fn hopeless(n: usize, policy: FlatPolicy) -> bool {
    expected_attempts(n, cap_log_m(n)) > 4.0 * f64::from(policy.cap_attempts.max(1))
}

/// Find a multiplier and size that send `ids` to distinct slots; `None` if
/// none is found within the cap (or `ids` has a duplicate, or more than
/// [`FLAT_MAX_ENTRIES`] ids). Ids are not checked for zero here.
pub fn find_shape(ids: &[u64], policy: FlatPolicy, work: &mut FlatWork) -> Option<FlatShape> {
    let n = ids.len();
    if n > FLAT_MAX_ENTRIES {
        return None;
    }
    let mut seed = n as u64;
    for &id in ids {
        seed = seed.wrapping_add(splitmix64(id));
    }
    let cap = cap_log_m(n);
    if hopeless(n, policy) {
        return None;
    }
    for log_m in start_log_m(n, policy)..=cap {
        let attempts = if log_m == cap { policy.cap_attempts } else { policy.attempts };
        // One mixed base per size, then a Weyl sequence: the next multiplier
        // costs an add, not two dependent SplitMix rounds after each
        // mispredicted collision exit.
        let mut k1 = flat_multiplier(seed, log_m, 0);
        for _ in 0..attempts {
            k1 = k1.wrapping_add(WEYL_STEP);
            work.attempts += 1;
            let collision = match log_m {
                0..=6 => first_collision::<1>(ids, k1, log_m),
                7 => first_collision::<2>(ids, k1, log_m),
                _ => first_collision::<4>(ids, k1, log_m),
            };
            match collision {
                None => {
                    work.probes += n as u64;
                    return Some(FlatShape { k1, log_m });
                }
                Some(at) => work.probes += at as u64 + 1,
            }
        }
    }
    None
}

/// The index of the first id whose slot under `k1` (of `2^log_m ≤ 64·W`)
/// an earlier id already took, or `None`: injective.
#[inline(always)]
fn first_collision<const W: usize>(ids: &[u64], k1: u64, log_m: u32) -> Option<usize> {
    let s = 64 - log_m;
    let mut seen = [0u64; W];
    for (i, &id) in ids.iter().enumerate() {
        let slot = (id.wrapping_mul(k1) >> s) as usize;
        let (word, bit) = (slot >> 6, 1u64 << (slot & 63));
        if seen[word] & bit != 0 {
            return Some(i);
        }
        seen[word] |= bit;
    }
    None
}

/// Build a flat table (a v1 table with 16 zero displacements), or
/// `Ok(None)` when no shape is found within the cap (the caller keeps its
/// v1 table). Same checks as [`Table::build`]: zero ids, NULL pointers,
/// duplicate ids are errors, except that a set refused without a search
/// (more than [`FLAT_MAX_ENTRIES`] ids, or hopeless within the cap) is not
/// scanned for duplicates: the v1 build that follows reports them.
pub fn build_flat(entries: &[(u64, *const c_void)], policy: FlatPolicy, work: &mut FlatWork) -> Result<Option<Table>, BuildError> {
    let n = entries.len();
    if n > FLAT_MAX_ENTRIES {
        return Ok(None);
    }
    let mut ids = [0u64; FLAT_MAX_ENTRIES];
    for (index, (&(id, ptr), slot)) in entries.iter().zip(&mut ids).enumerate() {
        if id == 0 {
            return Err(BuildError::ZeroId { index });
        }
        if ptr.is_null() {
            return Err(BuildError::NullPointer { id });
        }
        *slot = id;
    }
    let ids = &ids[..n];
    if hopeless(n, policy) {
        // Refused without a search (and without the O(n²) duplicate scan):
        // the v1 builder the caller falls back to reports duplicates.
        return Ok(None);
    }
    let Some(shape) = find_shape(ids, policy, work) else {
        // A duplicate never fits any multiplier: report it rather than fall back.
        for (i, &id) in ids.iter().enumerate() {
            if ids[..i].contains(&id) {
                return Err(BuildError::DuplicateId { id });
            }
        }
        return Ok(None);
    };
    Ok(Some(emit_flat(entries, shape)))
}

/// Write the flat table for a shape [`find_shape`] accepted on these ids.
fn emit_flat(entries: &[(u64, *const c_void)], shape: FlatShape) -> Table {
    let size = 1usize << shape.log_m;
    let bytes = FLAT_ENTRIES_OFFSET + size * core::mem::size_of::<RawEntry>();
    let layout = block_layout(bytes);
    // SAFETY: layout has a non-zero size.
    let block = unsafe { alloc::alloc_zeroed(layout) };
    let Some(raw) = NonNull::new(block.cast::<RawTable>()) else {
        alloc::handle_alloc_error(layout)
    };
    let s = 64 - shape.log_m;
    // SAFETY: `block` is a fresh zeroed allocation of `bytes` bytes aligned to
    // 64: the header fits at 0, the 16 zero displacements at HEADER_SIZE, and
    // `size` entries at FLAT_ENTRIES_OFFSET; `(id * k1) >> s < size`.
    unsafe {
        raw.as_ptr().write(RawTable {
            k1: shape.k1,
            k2: 1, // any: every displacement is 0
            s: s as u8,
            t: (64 - FLAT_BINS.trailing_zeros()) as u8,
            reserved: 0,
            count: entries.len() as u32,
            size: size as u32,
            entries_offset: FLAT_ENTRIES_OFFSET as u32,
            d: [],
        });
        let slots = block.add(FLAT_ENTRIES_OFFSET).cast::<RawEntry>();
        for &(id, ptr) in entries {
            slots.add((id.wrapping_mul(shape.k1) >> s) as usize).write(RawEntry { id, ptr });
        }
    }
    Table { raw }
}

/// Step between a size's multipliers (even, so every multiplier stays odd):
/// 2^64 / golden ratio, rounded to even.
const WEYL_STEP: u64 = 0x9e37_79b9_7f4a_7c16;

/// An odd multiplier, a pure function of the id-set seed, the size and the
/// attempt (a different stream from the v1 builder's: bit 63 of the position).
fn flat_multiplier(seed: u64, log_m: u32, attempt: u32) -> u64 {
    let position = 1u64 << 63 | u64::from(log_m) << 32 | u64::from(attempt);
    splitmix64(splitmix64(seed ^ position)) | 1
}


impl Table {
    /// The table the runtime publishes for `entries`: a flat table when
    /// there are at most [`FLAT_PREFERRED_MAX`] entries and the search finds
    /// one within its cap ([`FlatPolicy::FAST`]), else [`Table::build`]'s.
    /// Both are ABI v1 tables; only a flat one has a flat descriptor. Same
    /// errors as [`Table::build`].
    pub fn build_published(entries: &[(u64, *const c_void)]) -> Result<Table, BuildError> {
        if entries.len() <= FLAT_PREFERRED_MAX {
            if let Some(table) = build_flat(entries, FlatPolicy::FAST, &mut FlatWork::default())? {
                return Ok(table);
            }
        }
        Table::build(entries)
    }

    /// Is this a flat table (one level: every displacement 0 and the
    /// entries right after 16 bins), whatever built it?
    pub fn is_flat(&self) -> bool {
        // SAFETY: `self` owns a live table.
        unsafe { is_flat(self.as_raw()) }
    }
}

/// Is the live table `table` flat: entries at [`FLAT_ENTRIES_OFFSET`] (so at
/// most 16 bins) and every displacement 0? Then the v1 formula is
/// `entries[(id * k1) >> s]` for every id. Decided from the bytes, so a v1
/// build that happens to have this shape counts too.
///
/// # Safety
/// `table` must point to a live ABI v1 table.
pub unsafe fn is_flat(table: *const RawTable) -> bool {
    // SAFETY: a live table has its header and `1 << (64 - t)` displacements;
    // entries at offset 64 leave room for at most 16 of them, so the bins
    // read are inside the block.
    unsafe {
        let h = &*table;
        if h.entries_offset as usize != FLAT_ENTRIES_OFFSET || !(5..=63).contains(&h.s) || h.t < 60 {
            return false;
        }
        let bins = 1usize << (64 - u32::from(h.t));
        let d = table.cast::<u8>().add(HEADER_SIZE).cast::<u16>();
        (0..bins).all(|i| *d.add(i) == 0)
    }
}

/// The flat descriptor a type publishes next to its table (`TypeData::flat`
/// and `TypeData::flat_k1`, docs/spec.md §3): for a flat table,
/// `(&entries[0] | (s - 4), k1)`; for any other table, `(table, 0)` (the
/// table's 64-byte alignment keeps the low bits 0, which readers take as
/// "probe this v1 table"); `(0, 0)` for NULL.
///
/// # Safety
/// `table` must be NULL or point to a live ABI v1 table (64-byte aligned,
/// as every table is).
pub unsafe fn descriptor(table: *const RawTable) -> (usize, u64) {
    if table.is_null() {
        return (0, 0);
    }
    debug_assert_eq!(table as usize & DESCRIPTOR_SHIFT_MASK, 0, "tables are 64-byte aligned");
    // SAFETY: the caller's contract: a live table.
    unsafe {
        if is_flat(table) {
            let entries = table as usize + FLAT_ENTRIES_OFFSET;
            (entries | usize::from((*table).s - 4), (*table).k1)
        } else {
            (table as usize, 0)
        }
    }
}

/// The v1 table a descriptor word names (the flat table's header, or the
/// table itself), NULL for 0.
#[inline(always)]
pub fn descriptor_table(word: usize) -> *const RawTable {
    if word & DESCRIPTOR_SHIFT_MASK != 0 {
        ((word & !DESCRIPTOR_SHIFT_MASK) - FLAT_ENTRIES_OFFSET) as *const RawTable
    } else {
        word as *const RawTable
    }
}

/// Probe through a descriptor word whose low bits are not 0 (a flat table):
/// `entries[(id * k1) >> s]`, two dependent loads fewer than
/// [`raw_lookup`]. `k1` may come from another publication than `word` (the
/// two are separate stores): the table's own `k1` is loaded beside the
/// entry and, when they differ, the table is probed with its own header
/// instead. The offset is inside the table whatever `k1` is, because `s`
/// travels in `word`. Branch-free hit test, like [`raw_lookup`].
///
/// # Safety
/// `word` must be a descriptor of a live flat table ([`descriptor`]), with
/// its low bits not 0.
#[inline(always)]
pub unsafe fn descriptor_lookup(word: usize, k1: u64, id: u64) -> *const c_void {
    let entries = (word & !DESCRIPTOR_SHIFT_MASK) as *const u8;
    let shift = (word & DESCRIPTOR_SHIFT_MASK) as u32;
    // ((id * k1) >> s) * 16 is the entry's byte offset; with s - 4 in the
    // word that is one shift and a mask, below 16 << (64 - s) = 16 * size.
    let offset = ((id.wrapping_mul(k1) >> shift) as usize) & !(core::mem::size_of::<RawEntry>() - 1);
    // SAFETY: the caller's contract: `entries` is the entries array of a
    // live flat table whose header starts FLAT_ENTRIES_OFFSET bytes before
    // it and whose size is 1 << (64 - s); the offset is below 16 * size.
    unsafe {
        let table = entries.sub(FLAT_ENTRIES_OFFSET).cast::<RawTable>();
        if (*table).k1 != k1 {
            return raw_lookup(table, id); // a torn pair: the table's own header decides
        }
        let entry = entries.add(offset).cast::<RawEntry>();
        let (found, ptr) = ((*entry).id, (*entry).ptr);
        let hit = 0usize.wrapping_sub(usize::from(found == id));
        ptr.map_addr(|p| p & hit)
    }
}
