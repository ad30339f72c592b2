//! Groundwork (issue 23 item 4), not wired into anything: a fast builder for
//! the single-level "flat" table `entries[(id * k1) >> s]` of
//! `docs/benchmarks.md` ("A faster table"), laid out as a valid ABI v1 table
//! (16 bins, every displacement 0, `entries_offset` = 64) so that the v1
//! formula probes it exactly.
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
    // Hopeless within the cap (n = 64: about 2,600 attempts expected at 256
    // slots): give up at once rather than spend the whole budget.
    if expected_attempts(n, cap) > 4.0 * f64::from(policy.cap_attempts.max(1)) {
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
    if expected_attempts(n, cap_log_m(n)) > 4.0 * f64::from(policy.cap_attempts.max(1)) {
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

/// SplitMix64's finaliser (as in the v1 builder).
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
