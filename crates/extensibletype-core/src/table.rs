//! Layer 2: the perfect-hash table — how a table is laid out, built and probed.
//! No Python here.
//!
//! # Layout (ABI v1, documented again in `include/extensibletype.h`)
//!
//! One immutable, 64-byte-aligned allocation:
//!
//! ```text
//! offset 0   RawTable header (32 bytes)
//!              u64 k1, u64 k2          odd multipliers
//!              u8 s, u8 t              64 - log2(size), 64 - log2(bins)
//!              u16 reserved (0)
//!              u32 count               live entries
//!              u32 size                S, a power of two, >= 2
//!              u32 entries_offset      byte offset of entries[] from offset 0
//! offset 32  u16 d[B]                  displacements, each < S
//! entries_offset (16-aligned)
//!            RawEntry entries[S]      {u64 id; void *ptr;}, empty = {0, NULL}
//! ```
//!
//! The header and the first 16 displacements share the first cache line.
//!
//! # Lookup (fixed for ABI v1)
//!
//! `i = ((id * k1) >> s) ^ d[(id * k2) >> t]`, then
//! `entries[i].id == id ? entries[i].ptr : NULL`. Both halves are
//! multiply-shift hashes that run in parallel; the code is straight-line up to
//! the final id compare, its only data-dependent branch (LLVM emits a jump
//! there, predicted on hit-heavy workloads; a forced `cmov` measured slower).
//!
//! # Construction
//!
//! Hash-and-displace (the CHD family): keys are split into `B` bins by the
//! second hash (a counting sort); bins are placed largest first, each given
//! the first displacement `d` that sends all its keys to free slots;
//! single-key bins take the next free slot directly (no search). Multipliers
//! come from a commutative mix of the ids, so the same ids in any order give
//! byte-identical tables. Two keys of one bin with the same slot hash can never
//! be separated, so on such a collision only `k1` is redrawn (the bins are
//! kept). The fallback ladder tries [`ATTEMPTS_PER_SHAPE`] pairs at `B = S`,
//! then `B = 2S`, then doubles `S`, up to `S = 2^16` (where `B` may reach `4S`).
//!
//! Time bound: the ladder first runs *bounded* (see `Bounds`): a bin
//! multiplier whose bins are twice as crowded as random ones is skipped, a
//! placement stops after `4n + 256` displacement probes, a bin multiplier
//! that stalls once is dropped, and after the first one the next few are
//! tried least crowded first. Structured ids (`k << s`, `k * c`, aligned
//! pointers: lattices under multiply-shift) used to stall placement with
//! whole rounds of multipliers, up to 200x a random build at n = 65,536; a
//! sweep of ~900 such families per size now stays within 2.7x the random
//! median at every n from 8 to 65,536. An unbounded second pass keeps the
//! never-fails guarantee.

use core::ffi::c_void;
use core::fmt;
use core::ptr::{self, NonNull};
use std::alloc::{self, Layout};

/// Largest number of entries a table can hold (displacements are `u16`).
pub const MAX_ENTRIES: usize = 1 << 16;

/// Multiplier pairs tried for each `(S, B)` shape before the ladder moves on.
pub const ATTEMPTS_PER_SHAPE: u32 = 32;

/// Size of [`RawTable`]: the displacements start right after it.
pub const HEADER_SIZE: usize = core::mem::size_of::<RawTable>();

/// Largest build that reuses the per-thread scratch of [`Table::build`].
const REUSED_SCRATCH_MAX: usize = 4096;

/// Alignment of the whole table allocation: one cache line.
pub const TABLE_ALIGN: usize = 64;

const LOG2_MAX_SIZE: u32 = 16;

/// Tables up to `2^SMALL_LOG2_SIZE` slots start with twice as many bins.
const SMALL_LOG2_SIZE: u32 = 5;

/// The table header, as consumers read it (`ExtType_Table` in C).
///
/// Only valid as the start of a block produced by [`Table::build`]; the
/// displacements and entries follow it in the same allocation.
#[repr(C)]
#[derive(Debug)]
pub struct RawTable {
    /// Odd multiplier of the slot hash `(id * k1) >> s`.
    pub k1: u64,
    /// Odd multiplier of the bin hash `(id * k2) >> t`.
    pub k2: u64,
    /// `64 - log2(size)`, in `1..=63`.
    pub s: u8,
    /// `64 - log2(bins)`, in `1..=63`.
    pub t: u8,
    /// Always 0 in ABI v1.
    pub reserved: u16,
    /// Number of entries with a non-zero id.
    pub count: u32,
    /// Number of entry slots `S` (a power of two, `>= 2`).
    pub size: u32,
    /// Byte offset of `entries[0]` from the start of the header.
    pub entries_offset: u32,
    /// Start of `d[B]`; the array itself extends past the struct.
    pub d: [u16; 0],
}

/// One slot of a table: `{id, ptr}`, or `{0, NULL}` when empty.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawEntry {
    /// The slot's id, or 0 for an empty slot.
    pub id: u64,
    /// The implementation registered under `id`, or NULL for an empty slot.
    pub ptr: *const c_void,
}

// ABI v1 layout (docs/spec.md section 2), checked by the compiler; the same
// numbers as tests/abi/abi_layout.c asserts for `ExtType_Table`/`ExtType_Entry`.
#[cfg(target_pointer_width = "64")]
const _: () = {
    use core::mem::{align_of, offset_of, size_of};
    assert!(size_of::<RawTable>() == 32 && align_of::<RawTable>() == 8);
    assert!(offset_of!(RawTable, k1) == 0);
    assert!(offset_of!(RawTable, k2) == 8);
    assert!(offset_of!(RawTable, s) == 16);
    assert!(offset_of!(RawTable, t) == 17);
    assert!(offset_of!(RawTable, reserved) == 18);
    assert!(offset_of!(RawTable, count) == 20);
    assert!(offset_of!(RawTable, size) == 24);
    assert!(offset_of!(RawTable, entries_offset) == 28);
    assert!(offset_of!(RawTable, d) == 32); // EXTTYPE_TABLE_HEADER_SIZE
    assert!(size_of::<RawEntry>() == 16 && align_of::<RawEntry>() == 8);
    assert!(offset_of!(RawEntry, id) == 0);
    assert!(offset_of!(RawEntry, ptr) == 8);
};

/// Probe a table: the pointer stored under `id`, or NULL.
///
/// This is the whole ABI v1 lookup; `ExtType_FindInType` in the C header is
/// the same code.
///
/// # Safety
///
/// `table` must point to a live table built by [`Table::build`] (or a byte
/// copy of one).
#[inline(always)]
pub unsafe fn raw_lookup(table: *const RawTable, id: u64) -> *const c_void {
    // SAFETY: the caller guarantees a live table. All reads go through `table`
    // (whose provenance covers the whole allocation): the header fields, d[bin]
    // with bin < B because t = 64 - log2(B), and entries[slot ^ d] with
    // slot < S and d < S, so the index is < S (S is a power of two).
    unsafe {
        let slot = (id.wrapping_mul((*table).k1) >> (*table).s) as usize;
        let bin = (id.wrapping_mul((*table).k2) >> (*table).t) as usize;
        let base = table.cast::<u8>();
        let d = *base.add(HEADER_SIZE).cast::<u16>().add(bin) as usize;
        let entry = base
            .add((*table).entries_offset as usize)
            .cast::<RawEntry>()
            .add(slot ^ d);
        let (found, ptr) = ((*entry).id, (*entry).ptr);
        // Branch-free, like ExtType_TableFind: the hit test is a mask, so a
        // lookup has no data-dependent jump (and a miss stays a data
        // dependency of the caller, not a predicted branch).
        let hit = 0usize.wrapping_sub(usize::from(found == id));
        ptr.map_addr(|p| p & hit)
    }
}

/// Why [`Table::build`] refused a set of entries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BuildError {
    /// Entry number `index` has id 0, which is reserved.
    ZeroId {
        /// Position of the offending entry in the input.
        index: usize,
    },
    /// The same id appears more than once.
    DuplicateId {
        /// The repeated id.
        id: u64,
    },
    /// More than [`MAX_ENTRIES`] entries.
    TooMany {
        /// How many entries were given.
        count: usize,
    },
    /// A NULL pointer was given for `id`; to consumers NULL means "absent".
    NullPointer {
        /// The id whose pointer is NULL.
        id: u64,
    },
    /// Every shape and multiplier of the ladder failed. Never observed; kept
    /// so that an impossible case is an error rather than a panic.
    Exhausted {
        /// How many entries were given.
        count: usize,
    },
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            BuildError::ZeroId { index } => {
                write!(f, "id 0 is reserved and cannot name a slot (entry {index})")
            }
            BuildError::DuplicateId { id } => write!(f, "duplicate id {id:#018x}"),
            BuildError::TooMany { count } => write!(
                f,
                "too many entries: {count} (a table holds at most {MAX_ENTRIES})"
            ),
            BuildError::NullPointer { id } => write!(
                f,
                "NULL pointer for id {id:#018x} (NULL means 'absent' to consumers)"
            ),
            BuildError::Exhausted { count } => write!(
                f,
                "no perfect hash found for {count} entries (please report this id set)"
            ),
        }
    }
}

impl std::error::Error for BuildError {}

/// An immutable perfect-hash table from non-zero `u64` ids to non-NULL pointers.
///
/// ```
/// use core::ffi::c_void;
/// use extensibletype_core::{prehash, Table};
/// static ACQUIRE: u8 = 0;
/// let id = prehash("extensibletype.array.v1:acquire");
/// let ptr = &ACQUIRE as *const u8 as *const c_void;
/// let table = Table::build(&[(id, ptr)]).unwrap();
/// assert_eq!(table.get(id), Some(ptr));
/// assert_eq!(table.get(prehash("extensibletype.array.v1:release")), None);
/// assert_eq!(table.len(), 1);
/// ```
pub struct Table {
    raw: NonNull<RawTable>,
}

// SAFETY: a Table is immutable after construction; the pointers it stores are
// opaque values it never dereferences.
unsafe impl Send for Table {}
// SAFETY: as above: shared access only reads immutable memory.
unsafe impl Sync for Table {}

impl Table {
    /// Build a table from `(id, ptr)` pairs, in any order.
    ///
    /// Never fails for up to [`MAX_ENTRIES`] distinct non-zero ids with
    /// non-NULL pointers; the same set in any order gives the same bytes.
    pub fn build(entries: &[(u64, *const c_void)]) -> Result<Table, BuildError> {
        // Small builds (class statements) reuse a per-thread builder's
        // scratch; large ones use a fresh builder so no thread keeps megabytes.
        if entries.len() <= REUSED_SCRATCH_MAX {
            thread_local!(static SCRATCH: core::cell::RefCell<Builder> = core::cell::RefCell::default());
            let reused = SCRATCH.try_with(|cell| cell.try_borrow_mut().ok().map(|mut b| b.build(entries)));
            if let Ok(Some(result)) = reused {
                return result;
            }
        }
        Builder::new().build(entries)
    }

    /// The pointer stored under `id`, or `None`.
    #[inline]
    pub fn get(&self, id: u64) -> Option<*const c_void> {
        // SAFETY: self.raw is a live table we own.
        let ptr = unsafe { raw_lookup(self.raw.as_ptr(), id) };
        (!ptr.is_null()).then_some(ptr)
    }

    /// Number of entries.
    #[inline]
    pub fn len(&self) -> usize {
        self.header().count as usize
    }

    /// True when the table has no entries.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of entry slots `S`.
    pub fn size(&self) -> usize {
        self.header().size as usize
    }

    /// Number of displacement bins `B`.
    pub fn bins(&self) -> usize {
        1usize << (64 - u32::from(self.header().t))
    }

    /// Total bytes of the allocation (header, displacements, entries).
    pub fn bytes(&self) -> usize {
        self.header().entries_offset as usize + self.size() * core::mem::size_of::<RawEntry>()
    }

    /// The whole table as bytes (for comparing layouts).
    pub fn as_bytes(&self) -> &[u8] {
        // SAFETY: the allocation is `self.bytes()` long, initialised (zeroed
        // then written) and immutable while `self` lives.
        unsafe { core::slice::from_raw_parts(self.raw.as_ptr().cast::<u8>(), self.bytes()) }
    }

    /// The entries, in slot order: `(id, ptr)` for every non-empty slot.
    pub fn iter(&self) -> impl Iterator<Item = (u64, *const c_void)> + '_ {
        self.entries().iter().filter(|e| e.id != 0).map(|e| (e.id, e.ptr))
    }

    /// Pointer to the header, for consumers that probe with [`raw_lookup`]
    /// (valid while `self` lives).
    #[inline]
    pub fn as_raw(&self) -> *const RawTable {
        self.raw.as_ptr()
    }

    /// Give up ownership; the table stays allocated until [`Table::from_raw`].
    pub fn into_raw(self) -> *const RawTable {
        let raw = self.raw.as_ptr();
        core::mem::forget(self);
        raw
    }

    /// Take back ownership of a table released by [`Table::into_raw`].
    ///
    /// # Safety
    ///
    /// `raw` must come from [`Table::into_raw`] and not have been taken back.
    pub unsafe fn from_raw(raw: *const RawTable) -> Table {
        Table {
            // SAFETY: into_raw never returns NULL.
            raw: unsafe { NonNull::new_unchecked(raw.cast_mut()) },
        }
    }

    fn header(&self) -> &RawTable {
        // SAFETY: the header is initialised and immutable while self lives.
        unsafe { self.raw.as_ref() }
    }

    fn entries(&self) -> &[RawEntry] {
        // SAFETY: entries_offset is 16-aligned inside a 64-aligned block that
        // holds `size` initialised entries after it.
        unsafe {
            let base = self.raw.as_ptr().cast::<u8>();
            let first = base.add(self.header().entries_offset as usize).cast::<RawEntry>();
            core::slice::from_raw_parts(first, self.size())
        }
    }
}

impl Drop for Table {
    fn drop(&mut self) {
        let layout = block_layout(self.bytes());
        // SAFETY: allocated in `Builder::emit` with this same layout.
        unsafe { alloc::dealloc(self.raw.as_ptr().cast(), layout) }
    }
}

impl fmt::Debug for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Table")
            .field("len", &self.len())
            .field("size", &self.size())
            .field("bins", &self.bins())
            .field("bytes", &self.bytes())
            .finish()
    }
}

fn block_layout(bytes: usize) -> Layout {
    // Sizes are bounded (< 4 MiB) and the alignment is a power of two.
    Layout::from_size_align(bytes, TABLE_ALIGN).expect("table layout")
}

/// Reusable scratch space for building tables; [`Table::build`] makes a
/// fresh one. Keep one around to build many tables without re-allocating.
#[derive(Default)]
pub struct Builder {
    ids: Vec<u64>,
    ptrs: Vec<*const c_void>,
    /// Per key: its bin under the current `k2`, its slot hash under `k1`.
    bin_of: Vec<u32>,
    slot_of: Vec<u32>,
    /// Keys grouped by bin: bin `b` holds `by_bin[bin_start[b]..bin_start[b + 1]]`.
    bin_start: Vec<u32>,
    by_bin: Vec<u32>,
    /// Non-empty bins, largest first (ties by bin index): the placement order.
    order: Vec<u32>,
    /// Where the single-key bins start in `order`.
    first_single: usize,
    /// Counting-sort scratch.
    cursor: Vec<u32>,
    taken: Vec<u64>,
    disp: Vec<u16>,
    /// Cost of the current build (see [`Builder::last_work`]).
    work: u64,
}

/// A table shape with its two multipliers.
#[derive(Clone, Copy)]
struct Shape {
    k1: u64,
    k2: u64,
    log_s: u32,
    log_b: u32,
}

/// What one placement attempt came to.
enum Placement {
    /// Every key has a slot.
    Done,
    /// Two keys of one bin share a slot hash: no displacement separates them.
    SlotCollision,
    /// Some bin found no free displacement (within the budget).
    Stuck,
}

/// Limits of the bounded first pass of the ladder, which keep structured id
/// sets (`k << s`, `k * c`, aligned pointers) within a few times the build
/// time of a random set. Multiply-shift maps an arithmetic progression onto a
/// lattice: some bin multipliers then crowd keys into a few large bins, or
/// give bins whose slot patterns repeat so that placement stalls, and no
/// slot multiplier helps. So a bin multiplier is skipped when its bins are
/// far more crowded than random ones, a placement is abandoned once its
/// displacement searches exceed a small multiple of `n` (a random set needs
/// about one probe per key), and a bin multiplier is dropped after one
/// stalled placement; after the first bin multiplier, the next few are tried
/// least crowded first. All three are counts, not times: builds stay
/// deterministic.
#[derive(Clone, Copy)]
struct Bounds {
    /// Displacements a placement may try in all.
    probes: u64,
    keys: u64,
}

impl Bounds {
    fn for_keys(n: usize) -> Bounds {
        let keys = n as u64;
        Bounds { probes: PROBES_PER_KEY * keys + PROBES_MIN, keys }
    }

    /// Largest accepted `Σ c·(c − 1)` over bin sizes: twice the expectation
    /// for random bins (`n·(n − 1) / B`), plus slack for small tables.
    fn max_crowding(self, log_b: u32) -> u64 {
        2 * ((self.keys * self.keys.saturating_sub(1)) >> log_b) + 16
    }
}

/// Displacements a bounded placement may try per key, and at least.
const PROBES_PER_KEY: u64 = 4;
const PROBES_MIN: u64 = 256;

/// Bin multipliers tried per `(S, B)` shape, and slot multipliers per bin
/// multiplier: [`ATTEMPTS_PER_SHAPE`] pairs in all.
const BIN_ATTEMPTS: u32 = 8;
/// Bin multipliers ranked by crowding before the bounded pass places any.
const RANKED_BIN_ATTEMPTS: usize = 4;
const SLOT_ATTEMPTS: u32 = ATTEMPTS_PER_SHAPE / BIN_ATTEMPTS;

impl Builder {
    /// An empty builder.
    pub fn new() -> Builder {
        Builder::default()
    }

    /// Build a table; see [`Table::build`].
    ///
    /// No sorting: every placement decision depends only on the id set (bins
    /// are visited by size, then index), and the seed is a commutative mix
    /// of the ids, so the input order cannot change a byte of the result.
    pub fn build(&mut self, entries: &[(u64, *const c_void)]) -> Result<Table, BuildError> {
        let n = entries.len();
        if n > MAX_ENTRIES {
            return Err(BuildError::TooMany { count: n });
        }
        self.ids.clear();
        self.ptrs.clear();
        self.work = 0;
        let mut seed = n as u64;
        for (index, &(id, ptr)) in entries.iter().enumerate() {
            if id == 0 {
                return Err(BuildError::ZeroId { index });
            }
            if ptr.is_null() {
                return Err(BuildError::NullPointer { id });
            }
            seed = seed.wrapping_add(splitmix64(id));
            self.ids.push(id);
            self.ptrs.push(ptr);
        }
        let first_log_s = n.next_power_of_two().trailing_zeros().max(1);
        // Pass 1 is bounded (see `Bounds`); pass 2, the plain ladder, is a
        // safety net that no tested id set has reached.
        for bounds in [Some(Bounds::for_keys(n)), None] {
            for log_s in first_log_s..=LOG2_MAX_SIZE {
                // Small tables start at B = 2S: half the in-bin slot collisions
                // (fewer retries) for a few bytes of displacements.
                let narrowest_b = if log_s <= SMALL_LOG2_SIZE { log_s + 1 } else { log_s };
                let widest_b = if log_s == LOG2_MAX_SIZE { log_s + 2 } else { log_s + 1 };
                for log_b in narrowest_b..=widest_b {
                    // Bounded: if the first bin multiplier fails, the least
                    // crowded of the next few go first (for ids on a lattice
                    // some are near-perfect). Random sets rarely get there.
                    let mut order: [u32; BIN_ATTEMPTS as usize] = core::array::from_fn(|i| i as u32);
                    for next in 0..order.len() {
                        if next == 1 && bounds.is_some() {
                            let mut ranked = [(0u64, 0u32); RANKED_BIN_ATTEMPTS];
                            for (r, &a) in ranked.iter_mut().zip(&order[1..]) {
                                *r = (self.crowding(multiplier(seed, log_s, log_b, a, u32::MAX), log_b), a);
                            }
                            ranked.sort_unstable();
                            for (o, r) in order[1..].iter_mut().zip(ranked) {
                                *o = r.1;
                            }
                        }
                        let bin_attempt = order[next];
                        let k2 = multiplier(seed, log_s, log_b, bin_attempt, u32::MAX);
                        let crowding = self.sort_into_bins(k2, log_b);
                        if bounds.is_some_and(|b| crowding > b.max_crowding(log_b)) {
                            continue; // far more crowded than random bins: skip placing
                        }
                        for slot_attempt in 0..SLOT_ATTEMPTS {
                            let k1 = multiplier(seed, log_s, log_b, bin_attempt, slot_attempt);
                            let shape = Shape { k1, k2, log_s, log_b };
                            match self.place(shape, bounds.map_or(u64::MAX, |b| b.probes))? {
                                Placement::Done => return Ok(self.emit(shape)),
                                Placement::SlotCollision => {}
                                Placement::Stuck => {
                                    // Structured ids defeat some bin multipliers
                                    // whatever k1 is: move on at once.
                                    if bounds.is_some() {
                                        break;
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        Err(BuildError::Exhausted { count: n })
    }

    /// A machine-independent measure of what the last [`Builder::build`]
    /// cost: keys hashed plus bins visited plus displacements tried, over
    /// every attempt of the ladder. For tests and tuning (a random set of
    /// `n` ids costs about `4n`); deterministic like the table itself.
    pub fn last_work(&self) -> u64 {
        self.work
    }

    /// `Σ c·(c − 1)` over the bin sizes `c` under `k2`, counted only.
    fn crowding(&mut self, k2: u64, log_b: u32) -> u64 {
        self.work += self.ids.len() as u64;
        let t = 64 - log_b;
        self.cursor.clear();
        self.cursor.resize(1usize << log_b, 0);
        let mut crowding = 0;
        for &id in &self.ids {
            let count = &mut self.cursor[(id.wrapping_mul(k2) >> t) as usize];
            crowding += 2 * u64::from(*count);
            *count += 1;
        }
        crowding
    }

    /// Group keys by bin `(id * k2) >> (64 - log_b)` and order the non-empty
    /// bins largest first (counting sorts, O(n + B)). Returns the crowding
    /// `Σ c·(c − 1)` over bin sizes `c` (twice the number of key pairs
    /// sharing a bin).
    fn sort_into_bins(&mut self, k2: u64, log_b: u32) -> u64 {
        let bins = 1usize << log_b;
        let t = 64 - log_b;
        self.work += (self.ids.len() + bins) as u64;
        self.bin_of.clear();
        self.bin_of.extend(self.ids.iter().map(|&id| (id.wrapping_mul(k2) >> t) as u32));

        // bin_start[b + 1] = keys in bin b; then prefix sums.
        self.bin_start.clear();
        self.bin_start.resize(bins + 1, 0);
        let mut largest = 0;
        for &b in &self.bin_of {
            let count = &mut self.bin_start[b as usize + 1];
            *count += 1;
            largest = largest.max(*count);
        }
        // Non-empty bins by size, largest first; within a size, by index.
        self.cursor.clear();
        self.cursor.resize(largest as usize + 1, 0);
        for &count in &self.bin_start[1..] {
            self.cursor[count as usize] += 1;
        }
        let crowding: u64 = self.cursor.iter().enumerate().map(|(c, &bins)| (c as u64) * (c as u64).saturating_sub(1) * u64::from(bins)).sum();
        let mut at = 0;
        for size in (1..=largest as usize).rev() {
            let here = self.cursor[size];
            self.cursor[size] = at;
            at += here;
        }
        self.first_single = if largest == 0 { 0 } else { self.cursor[1] as usize };
        self.order.clear();
        self.order.resize(at as usize, 0);
        for (b, &count) in self.bin_start[1..].iter().enumerate() {
            if count > 0 {
                let slot = &mut self.cursor[count as usize];
                self.order[*slot as usize] = b as u32;
                *slot += 1;
            }
        }
        // Prefix sums with the running total in a register (no store-to-load chain).
        let mut running = 0;
        for start in &mut self.bin_start[1..] {
            running += *start;
            *start = running;
        }
        // Keys grouped by bin.
        self.cursor.clear();
        self.cursor.extend_from_slice(&self.bin_start[..bins]);
        self.by_bin.clear();
        self.by_bin.resize(self.ids.len(), 0);
        for (key, &b) in self.bin_of.iter().enumerate() {
            let slot = &mut self.cursor[b as usize];
            self.by_bin[*slot as usize] = key as u32;
            *slot += 1;
        }
        crowding
    }

    /// Try slot multiplier `shape.k1` on the current bins: fill `self.disp`,
    /// giving up once the displacement searches have tried more than
    /// `budget` displacements in all. `Err`: a duplicate id (two keys that
    /// collide in bin and slot under every multiplier).
    fn place(&mut self, shape: Shape, budget: u64) -> Result<Placement, BuildError> {
        let mut spent: u64 = 0;
        let result = self.place_counted(shape, budget, &mut spent);
        self.work += self.ids.len() as u64 + spent;
        result
    }

    fn place_counted(&mut self, shape: Shape, budget: u64, spent: &mut u64) -> Result<Placement, BuildError> {
        let size = 1usize << shape.log_s;
        let s = 64 - shape.log_s;
        self.slot_of.clear();
        self.slot_of.extend(self.ids.iter().map(|&id| (id.wrapping_mul(shape.k1) >> s) as u32));
        self.taken.clear();
        self.taken.resize(size.div_ceil(64), 0);
        self.disp.clear();
        self.disp.resize(1usize << shape.log_b, 0);

        // Bins with two or more keys: the first displacement that sends all
        // of them to free slots.
        let mut slots = [0usize; 16];
        let mut spill = Vec::new();
        for &b in &self.order[..self.first_single] {
            let b = b as usize;
            let keys = &self.by_bin[self.bin_start[b] as usize..self.bin_start[b + 1] as usize];
            let slots: &mut [usize] = if keys.len() <= slots.len() {
                &mut slots[..keys.len()]
            } else {
                spill.resize(keys.len(), 0);
                &mut spill[..]
            };
            for (slot, &k) in slots.iter_mut().zip(keys) {
                *slot = self.slot_of[k as usize] as usize;
            }
            // Two keys with one slot hash can never be separated by `^ d`.
            for i in 1..slots.len() {
                if let Some(j) = slots[..i].iter().position(|&other| other == slots[i]) {
                    let (a, c) = (self.ids[keys[i] as usize], self.ids[keys[j] as usize]);
                    if a == c {
                        return Err(BuildError::DuplicateId { id: a });
                    }
                    return Ok(Placement::SlotCollision);
                }
            }
            let taken = &self.taken;
            let free = |slot: usize| taken[slot >> 6] & (1u64 << (slot & 63)) == 0;
            let limit = size.min(usize::try_from(budget - *spent).unwrap_or(usize::MAX));
            let Some(d) = (0..limit).find(|&d| slots.iter().all(|&slot| free(slot ^ d))) else {
                *spent += limit as u64;
                return Ok(Placement::Stuck);
            };
            *spent += d as u64 + 1;
            for &slot in slots.iter() {
                self.taken[(slot ^ d) >> 6] |= 1u64 << ((slot ^ d) & 63);
            }
            self.disp[b] = d as u16;
        }

        // Single-key bins: straight to the next free slot, no search.
        let mut word = 0;
        for &b in &self.order[self.first_single..] {
            let b = b as usize;
            while self.taken[word] == u64::MAX {
                word += 1;
            }
            let bit = (!self.taken[word]).trailing_zeros() as usize;
            self.taken[word] |= 1u64 << bit;
            let key = self.by_bin[self.bin_start[b] as usize] as usize;
            self.disp[b] = (self.slot_of[key] as usize ^ (word * 64 + bit)) as u16;
        }
        Ok(Placement::Done)
    }

    /// Write the table for a shape that [`Builder::place`] accepted.
    fn emit(&self, shape: Shape) -> Table {
        let size = 1usize << shape.log_s;
        let bins = 1usize << shape.log_b;
        let entry_size = core::mem::size_of::<RawEntry>();
        let entries_offset = (HEADER_SIZE + 2 * bins).next_multiple_of(entry_size);
        let bytes = entries_offset + size * entry_size;
        let layout = block_layout(bytes);
        // SAFETY: layout has a non-zero size.
        let block = unsafe { alloc::alloc_zeroed(layout) };
        let Some(raw) = NonNull::new(block.cast::<RawTable>()) else {
            alloc::handle_alloc_error(layout)
        };
        // SAFETY: `block` is a fresh zeroed allocation of `bytes` bytes aligned
        // to 64: the header fits at 0, d[bins] at HEADER_SIZE, and `size`
        // entries at the 16-aligned `entries_offset`; no index below leaves
        // those ranges (disp < size, slot ^ disp < size).
        unsafe {
            raw.as_ptr().write(RawTable {
                k1: shape.k1,
                k2: shape.k2,
                s: (64 - shape.log_s) as u8,
                t: (64 - shape.log_b) as u8,
                reserved: 0,
                count: self.ids.len() as u32,
                size: size as u32,
                entries_offset: entries_offset as u32,
                d: [],
            });
            let d = block.add(HEADER_SIZE).cast::<u16>();
            ptr::copy_nonoverlapping(self.disp.as_ptr(), d, bins);
            let entries = block.add(entries_offset).cast::<RawEntry>();
            for (key, (&id, &ptr)) in self.ids.iter().zip(&self.ptrs).enumerate() {
                let slot = self.slot_of[key] as usize ^ self.disp[self.bin_of[key] as usize] as usize;
                entries.add(slot).write(RawEntry { id, ptr });
            }
        }
        Table { raw }
    }
}

/// SplitMix64's finaliser: a bijective mix of all 64 bits.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// An odd multiplier, a pure function of the id-set seed and the ladder
/// position (`slot_attempt == u32::MAX` names the bin multiplier).
fn multiplier(seed: u64, log_s: u32, log_b: u32, bin_attempt: u32, slot_attempt: u32) -> u64 {
    let position = u64::from(log_s) << 56 | u64::from(log_b) << 48 | u64::from(bin_attempt) << 32 | u64::from(slot_attempt);
    splitmix64(splitmix64(seed ^ position)) | 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_table_misses_everything() {
        let t = Table::build(&[]).unwrap();
        assert_eq!(t.len(), 0);
        assert_eq!((t.size(), t.bins()), (2, 4)); // small tables start at B = 2S
        for id in [0, 1, u64::MAX] {
            assert_eq!(t.get(id), None);
        }
    }
}
