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

mod builder;
pub use builder::Builder;
pub mod flat;

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

/// SplitMix64's finaliser: a bijective mix of all 64 bits. Both builders
/// (two-level and flat) seed and draw their multipliers with it.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn block_layout(bytes: usize) -> Layout {
    // Sizes are bounded (< 4 MiB) and the alignment is a power of two.
    Layout::from_size_align(bytes, TABLE_ALIGN).expect("table layout")
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
