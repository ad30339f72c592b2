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
//! multiply-shift hashes; on a hit the only data-dependent comparison is the
//! final id compare, which compiles to a conditional move.
//!
//! # Construction
//!
//! Hash-and-displace (the CHD family): keys are split into `B` bins by the
//! second hash; bins are placed largest first, each given the first
//! displacement `d` that sends all its keys to free slots; single-key bins take
//! the next free slot directly. Multiplier pairs come from a seed derived from
//! the sorted id set, so the same ids in any order give byte-identical tables.
//! The fallback ladder tries [`ATTEMPTS_PER_SHAPE`] pairs at `B = S`, then
//! `B = 2S`, then doubles `S`, up to `S = 2^16` (where `B` may reach `4S`).

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

/// Alignment of the whole table allocation: one cache line.
pub const TABLE_ALIGN: usize = 64;

const LOG2_MAX_SIZE: u32 = 16;

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
        if found == id {
            ptr
        } else {
            ptr::null()
        }
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
/// use extensibletype::{prehash, Table};
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
    slot_of: Vec<u32>,
    bin_of: Vec<u32>,
    bin_start: Vec<u32>,
    by_bin: Vec<u32>,
    fill: Vec<u32>,
    bins_by_size: Vec<u32>,
    size_count: Vec<u32>,
    taken: Vec<u64>,
    disp: Vec<u16>,
}

/// One candidate hash function pair and table shape.
#[derive(Clone, Copy)]
struct Shape {
    k1: u64,
    k2: u64,
    log_s: u32,
    log_b: u32,
}

impl Builder {
    /// An empty builder.
    pub fn new() -> Builder {
        Builder::default()
    }

    /// Build a table; see [`Table::build`].
    pub fn build(&mut self, entries: &[(u64, *const c_void)]) -> Result<Table, BuildError> {
        let n = entries.len();
        if n > MAX_ENTRIES {
            return Err(BuildError::TooMany { count: n });
        }
        self.validate_and_sort(entries)?;
        let seed = seed_of(&self.ids);
        let first_log_s = n.next_power_of_two().trailing_zeros().max(1);
        for log_s in first_log_s..=LOG2_MAX_SIZE {
            let widest_b = if log_s == LOG2_MAX_SIZE { log_s + 2 } else { log_s + 1 };
            for log_b in log_s..=widest_b {
                for attempt in 0..ATTEMPTS_PER_SHAPE {
                    let shape = Shape::derive(seed, log_s, log_b, attempt);
                    if self.place(shape) {
                        return Ok(self.emit(shape));
                    }
                }
            }
        }
        Err(BuildError::Exhausted { count: n })
    }

    /// Copy the input sorted by id (so the result is order-independent) and
    /// reject id 0, NULL pointers and duplicates.
    fn validate_and_sort(&mut self, entries: &[(u64, *const c_void)]) -> Result<(), BuildError> {
        if let Some(index) = entries.iter().position(|&(id, _)| id == 0) {
            return Err(BuildError::ZeroId { index });
        }
        if let Some(&(id, _)) = entries.iter().find(|&&(_, ptr)| ptr.is_null()) {
            return Err(BuildError::NullPointer { id });
        }
        let mut sorted: Vec<(u64, *const c_void)> = entries.to_vec();
        sorted.sort_unstable_by_key(|&(id, _)| id);
        if let Some(pair) = sorted.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(BuildError::DuplicateId { id: pair[0].0 });
        }
        self.ids.clear();
        self.ptrs.clear();
        self.ids.extend(sorted.iter().map(|&(id, _)| id));
        self.ptrs.extend(sorted.iter().map(|&(_, ptr)| ptr));
        Ok(())
    }

    /// Try one shape: fill `self.disp` and return true on success.
    fn place(&mut self, shape: Shape) -> bool {
        let n = self.ids.len();
        let size = 1usize << shape.log_s;
        let bins = 1usize << shape.log_b;
        let (s, t) = (64 - shape.log_s, 64 - shape.log_b);

        // Hash every key; count keys per bin.
        self.slot_of.clear();
        self.bin_of.clear();
        self.bin_start.clear();
        self.bin_start.resize(bins + 1, 0);
        for &id in &self.ids {
            let slot = (id.wrapping_mul(shape.k1) >> s) as u32;
            let bin = (id.wrapping_mul(shape.k2) >> t) as u32;
            self.slot_of.push(slot);
            self.bin_of.push(bin);
            self.bin_start[bin as usize + 1] += 1;
        }

        // Counting sort of bins by size (largest first) and of keys by bin.
        self.size_count.clear();
        for b in 0..bins {
            let len = self.bin_start[b + 1] as usize;
            if len >= self.size_count.len() {
                self.size_count.resize(len + 1, 0);
            }
            self.size_count[len] += 1;
        }
        let mut next = 0u32;
        for count in self.size_count.iter_mut().rev() {
            let here = *count;
            *count = next;
            next += here;
        }
        self.bins_by_size.clear();
        self.bins_by_size.resize(bins, 0);
        for b in 0..bins {
            let len = self.bin_start[b + 1] as usize;
            let at = &mut self.size_count[len];
            self.bins_by_size[*at as usize] = b as u32;
            *at += 1;
        }
        for b in 0..bins {
            self.bin_start[b + 1] += self.bin_start[b];
        }
        self.by_bin.clear();
        self.by_bin.resize(n, 0);
        self.fill.clear();
        self.fill.extend_from_slice(&self.bin_start[..bins]);
        for (key, &bin) in self.bin_of.iter().enumerate() {
            let at = &mut self.fill[bin as usize];
            self.by_bin[*at as usize] = key as u32;
            *at += 1;
        }

        self.taken.clear();
        self.taken.resize(size.div_ceil(64), 0);
        self.disp.clear();
        self.disp.resize(bins, 0);

        // Bins with two or more keys: search a displacement.
        let mut order = 0;
        while order < bins {
            let b = self.bins_by_size[order] as usize;
            let keys = &self.by_bin[self.bin_start[b] as usize..self.bin_start[b + 1] as usize];
            if keys.len() < 2 {
                break;
            }
            order += 1;
            // The bin is unplaceable if two of its keys share a slot hash.
            for (i, &a) in keys.iter().enumerate() {
                let sa = self.slot_of[a as usize];
                if keys[i + 1..].iter().any(|&k| self.slot_of[k as usize] == sa) {
                    return false;
                }
            }
            let taken = &self.taken;
            let slot_of = &self.slot_of;
            let free = |slot: usize| taken[slot / 64] & (1u64 << (slot % 64)) == 0;
            let Some(d) = (0..size).find(|&d| keys.iter().all(|&k| free(slot_of[k as usize] as usize ^ d)))
            else {
                return false;
            };
            for &k in keys {
                let slot = self.slot_of[k as usize] as usize ^ d;
                self.taken[slot / 64] |= 1u64 << (slot % 64);
            }
            self.disp[b] = d as u16;
        }

        // Single-key bins: send each straight to the next free slot.
        let mut word = 0;
        while order < bins {
            let b = self.bins_by_size[order] as usize;
            let start = self.bin_start[b] as usize;
            if self.bin_start[b + 1] as usize == start {
                break; // the rest are empty bins (displacement 0)
            }
            order += 1;
            while self.taken[word] == u64::MAX {
                word += 1;
            }
            let bit = (!self.taken[word]).trailing_zeros() as usize;
            self.taken[word] |= 1u64 << bit;
            let slot = word * 64 + bit;
            let key = self.by_bin[start] as usize;
            self.disp[b] = (self.slot_of[key] as usize ^ slot) as u16;
        }
        true
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

/// A 64-bit digest of the sorted id set: the seed of the multiplier sequence.
fn seed_of(sorted_ids: &[u64]) -> u64 {
    sorted_ids
        .iter()
        .fold(sorted_ids.len() as u64, |h, &id| splitmix64(h ^ id))
}

/// SplitMix64's finaliser: a bijective mix of all 64 bits.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Shape {
    /// The `attempt`-th multiplier pair for this seed and shape.
    fn derive(seed: u64, log_s: u32, log_b: u32, attempt: u32) -> Shape {
        let base = splitmix64(seed ^ (u64::from(log_s) << 40 | u64::from(log_b) << 32 | u64::from(attempt)));
        Shape {
            k1: splitmix64(base) | 1,
            k2: splitmix64(base ^ 0x5851_f42d_4c95_7f2d) | 1,
            log_s,
            log_b,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_layout() {
        assert_eq!(HEADER_SIZE, 32);
        assert_eq!(core::mem::offset_of!(RawTable, k1), 0);
        assert_eq!(core::mem::offset_of!(RawTable, k2), 8);
        assert_eq!(core::mem::offset_of!(RawTable, s), 16);
        assert_eq!(core::mem::offset_of!(RawTable, t), 17);
        assert_eq!(core::mem::offset_of!(RawTable, count), 20);
        assert_eq!(core::mem::offset_of!(RawTable, size), 24);
        assert_eq!(core::mem::offset_of!(RawTable, entries_offset), 28);
        assert_eq!(core::mem::offset_of!(RawTable, d), 32);
        assert_eq!(core::mem::size_of::<RawEntry>(), 16);
    }

    #[test]
    fn empty_table_misses_everything() {
        let t = Table::build(&[]).unwrap();
        assert_eq!(t.len(), 0);
        assert_eq!((t.size(), t.bins()), (2, 2));
        for id in [0, 1, u64::MAX] {
            assert_eq!(t.get(id), None);
        }
    }
}
