//! The type cache: one probe answers "which table does a lookup on `tp`
//! use?" for every type the metaclass fast path does not cover (foreign
//! types, their subclasses, plain types, sub-metaclass classes, classes never
//! initialised), so that every lookup, hit or miss, costs about a hit on an
//! extensible class (docs/spec.md §11).
//!
//! A direct-mapped array of [`CacheEntry`] `{seq, tag, type, table, flat}`
//! (`flat`: the table's flat descriptor word, which new readers probe in
//! one level when the table is flat), indexed by a multiplicative hash of
//! the type's address. An entry answers for `tp`
//! only while `tp->tp_version_tag` still equals the entry's `tag` (never 0).
//! CPython guarantees (3.11+, checked in `Objects/typeobject.c`):
//! - a version tag is assigned from a counter that only grows and is never
//!   reused (when it runs out, types get no tag: 0);
//! - a type object is allocated zeroed, so a new type at a reused address
//!   starts with tag 0 and gets a fresh tag later: an entry filled for a dead
//!   type never matches a new one;
//! - `PyType_Modified` (attribute assignment, `__bases__` assignment, which
//!   first installs the new MRO) resets the tag of the type and of all its
//!   subclasses to 0, so an entry never outlives the MRO it was computed from.
//!
//! Our own changes are covered by a generation counter: every writer that
//! publishes a table ([`invalidate_all`], from `registry::apply`) and every
//! death of an extensible type (whose tables are freed) bumps it and clears
//! every entry under [`LOCK`]. A filler reads the generation *before* it reads
//! any table and inserts only if the generation is unchanged under `LOCK`, so
//! an entry computed from old tables is never inserted after the clear.
//!
//! Readers (`extensibletype_core::abi::Reader::cached_word`, and the same
//! code inline in `extensibletype.h`) take no lock, no GIL and no thread
//! state: each entry is a seqlock (`seq` odd while
//! a writer is inside; a reader retries by taking the slow path when `seq`
//! changed). Entries hold no pointer that a reader can follow after its type
//! died: the type pointer is only compared, and the table is the type's own
//! (an extensible type's: the cache is cleared when it dies), a foreign
//! registry table (never freed), the static empty table, or an interned
//! merged table (never freed).
//!
//! Python overrides (docs/spec.md §4.1): the table an entry names is masked
//! like every published table; an answer masked without an attached
//! thread state (conservatively: the namespaces cannot be read) is given
//! but never inserted.
//!
//! Several interpreters (CPython 3.12+): a mutable heap type's tag comes
//! from a counter of its interpreter, and fresh interpreters start from the
//! same values, so (address, tag) of a dead class can recur in another
//! interpreter. Once a second interpreter exists ([`note_interpreters`]), the
//! cache is cleared and keeps only types whose tags are process-wide
//! (static and immutable types: `crate::interpreters`); the others take the
//! slow path, which is always correct.
//!
//! Under the limited API the runtime cannot name `tp_version_tag`: [`init`]
//! proves a candidate offset on the running interpreter (see [`prove`]);
//! without proof the tag offset stays 0 and no entry is ever filled (every
//! such lookup takes the slow path, still correct).

use core::ffi::c_void;
use core::ptr;
use std::sync::atomic::{fence, AtomicBool, AtomicIsize, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use pyo3_ffi::*;

use crate::idhash::IdMap;
use crate::interpreters;
use crate::layout;
use crate::table::{RawEntry, RawTable, Table, HEADER_SIZE};
use extensibletype_core::abi::type_cache_index;

pub(crate) use super::tags::init;
use super::tags::assign_tag;

/// log2 of the number of entries.
pub const CACHE_BITS: u32 = 10;
/// Number of entries.
pub const CACHE_SIZE: usize = 1 << CACHE_BITS;
/// The index of `tp` is `(tp as u64 * HASH_MULT) >> (64 - CACHE_BITS)`.
pub const HASH_MULT: u64 = extensibletype_core::abi::TYPE_CACHE_HASH_MULT;

/// One cache entry (`ExtType_TypeCacheEntry` in the header), 32 bytes (two
/// per cache line: the array is 64-byte aligned).
pub type CacheEntry = extensibletype_core::abi::CacheEntry<PyTypeObject>;

#[allow(clippy::declare_interior_mutable_const)] // only used to initialise ENTRIES
const EMPTY_ENTRY: CacheEntry = CacheEntry {
    seq: AtomicU32::new(0),
    tag: AtomicU32::new(0),
    tp: AtomicPtr::new(ptr::null_mut()),
    table: AtomicPtr::new(ptr::null_mut()),
    flat: AtomicUsize::new(0),
};

#[repr(C, align(64))]
struct Entries([CacheEntry; CACHE_SIZE]);

/// This copy's cache (used when this copy owns the process's runtime).
static ENTRIES: Entries = Entries([EMPTY_ENTRY; CACHE_SIZE]);

/// Where the process's cache is (this copy's, or the first copy's, from its
/// API struct) and the proven offset of `tp_version_tag` (0: cache off).
struct View {
    entries: AtomicPtr<CacheEntry>,
    tag_offset: AtomicIsize,
}

static VIEW: View = View {
    // This copy's entries until set_view() says otherwise (never NULL).
    entries: AtomicPtr::new(ptr::addr_of!(ENTRIES.0).cast::<CacheEntry>().cast_mut()),
    tag_offset: AtomicIsize::new(0),
};

/// Bumped (under [`LOCK`]) by every change that can change an answer.
static GENERATION: AtomicU64 = AtomicU64::new(0);

/// Set (for good) once a second interpreter has existed: from then on only
/// types whose version tags are process-wide get entries (module doc).
static MANY_INTERPRETERS: AtomicBool = AtomicBool::new(false);

/// Look whether a second interpreter exists; the first time one does, stop
/// caching types whose tags are per interpreter and forget every entry
/// (before anything could look a class of that interpreter up: the runtime
/// calls this from every slow path and from module execution in each
/// interpreter). Needs no GIL.
pub(crate) fn note_interpreters() {
    if !MANY_INTERPRETERS.load(Ordering::Acquire) && interpreters::another_exists() {
        MANY_INTERPRETERS.store(true, Ordering::Release);
        // Fillers re-check the flag under LOCK after this bump.
        invalidate_all();
    }
}

/// Merged tables by content (sorted `(id, ptr)` pairs); never freed.
type Interned = IdMap<Vec<(u64, usize)>, Table>;

/// What [`LOCK`] protects besides the entries.
struct Writers {
    /// Merged tables, never freed.
    interned: Option<Interned>,
    /// Indices filled since the last clear (so a clear touches only those;
    /// past `CACHE_SIZE` pushes it scans every entry instead).
    filled: Vec<u16>,
}

/// Serialises cache writers.
static LOCK: Mutex<Writers> = Mutex::new(Writers { interned: None, filled: Vec::new() });

/// A table that misses every id, for types with no slots anywhere: a flat
/// table (16 zero bins before its two entries, docs/spec.md §2.4), so that
/// readers of a cache entry's `flat` word probe it in one level.
#[repr(C, align(64))]
struct EmptyTable {
    header: RawTable,
    d: [u16; 16],
    entries: [RawEntry; 2],
}

// SAFETY: immutable; its pointers are all NULL.
unsafe impl Sync for EmptyTable {}

static EMPTY: EmptyTable = EmptyTable {
    header: RawTable {
        k1: 1,
        k2: 1,
        s: 63,
        t: 63,
        reserved: 0,
        count: 0,
        size: 2,
        entries_offset: (HEADER_SIZE + 32) as u32,
        d: [],
    },
    d: [0; 16],
    entries: [RawEntry { id: 0, ptr: ptr::null() }, RawEntry { id: 0, ptr: ptr::null() }],
};

/// The empty table (misses every id).
pub(crate) fn empty_table() -> *const RawTable {
    ptr::addr_of!(EMPTY.header)
}

/// This copy's entries (published in the API struct).
pub(crate) fn own_entries() -> *const CacheEntry {
    ENTRIES.0.as_ptr()
}

/// The proven `tp_version_tag` offset of this process (0: cache off).
pub(crate) fn tag_offset() -> isize {
    VIEW.tag_offset.load(Ordering::Relaxed)
}

/// Use the cache at `entries` with tag offset `tag_offset` (this copy's, or
/// the first copy's from its API struct). Before any lookup.
pub(crate) fn set_view(entries: *const CacheEntry, tag_offset: isize) {
    VIEW.tag_offset.store(tag_offset, Ordering::Relaxed);
    VIEW.entries.store(entries.cast_mut(), Ordering::Release);
}

/// The entry of `tp` (the index every reader probes).
#[inline(always)]
fn index(tp: *mut PyTypeObject) -> usize {
    type_cache_index(tp as usize, 64 - CACHE_BITS)
}

/// Write one entry (LOCK held): `table` (NULL to clear) and its flat
/// descriptor word, under the seqlock.
///
/// # Safety
/// `table` is NULL or a live table that outlives the entry (module doc).
unsafe fn write(e: &CacheEntry, tp: *mut PyTypeObject, tag: u32, table: *const RawTable) {
    // SAFETY: the caller's contract.
    let (word, _) = unsafe { extensibletype_core::table::flat::descriptor(table) };
    let seq = e.seq.load(Ordering::Relaxed);
    e.seq.store(seq.wrapping_add(1), Ordering::Relaxed);
    fence(Ordering::Release);
    e.tp.store(tp, Ordering::Relaxed);
    e.tag.store(tag, Ordering::Relaxed);
    e.table.store(table.cast_mut(), Ordering::Relaxed);
    e.flat.store(word, Ordering::Relaxed);
    e.seq.store(seq.wrapping_add(2), Ordering::Release);
}

/// Forget every entry and bump the generation: after any table was
/// published or freed. Blocks on [`LOCK`] (held only briefly, by threads that
/// run no Python code under it). Needs no GIL.
pub(crate) fn invalidate_all() {
    let mut guard = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    GENERATION.fetch_add(1, Ordering::AcqRel);
    let entries = VIEW.entries.load(Ordering::Acquire);
    let clear = |i: usize| {
        // SAFETY: i < CACHE_SIZE; the entries live forever.
        let e = unsafe { &*entries.add(i) };
        if !e.tp.load(Ordering::Relaxed).is_null() {
            // SAFETY: a NULL table.
            unsafe { write(e, ptr::null_mut(), 0, ptr::null()) };
        }
    };
    // Only this copy fills its entries (another copy's runtime owns the
    // cache it views and clears it itself).
    if entries.cast_const() == own_entries() {
        if guard.filled.len() > CACHE_SIZE {
            (0..CACHE_SIZE).for_each(clear);
        } else {
            guard.filled.iter().for_each(|&i| clear(usize::from(i)));
        }
    }
    guard.filled.clear();
}

/// The entries of a live table.
///
/// # Safety
/// `table` must be a live table.
pub(crate) unsafe fn entries_of<'a>(table: *const RawTable) -> &'a [RawEntry] {
    // SAFETY: a table holds `size` entries at `entries_offset`.
    unsafe {
        let base = table.cast::<u8>().add((*table).entries_offset as usize).cast::<RawEntry>();
        core::slice::from_raw_parts(base, (*table).size as usize)
    }
}

/// The interned table holding exactly `content` (sorted `(id, ptr)`
/// pairs), built on first use and never freed; `None` when the cache is
/// busy (its lock is held) or the table cannot be built. No GIL needed.
pub(crate) fn intern(content: Vec<(u64, usize)>) -> Option<*const RawTable> {
    let mut guard = LOCK.try_lock().ok()?;
    let interned = guard.interned.get_or_insert_with(IdMap::default);
    if let Some(t) = interned.get(&content) {
        return Some(t.as_raw());
    }
    let entries: Vec<(u64, *const c_void)> = content.iter().map(|&(id, p)| (id, p as *const c_void)).collect();
    let table = Table::build_published(&entries).ok()?;
    let raw = table.as_raw();
    interned.insert(content, table);
    Some(raw)
}

/// `tp`'s version tag as the type cache reads it (CPython's
/// `tp_version_tag`), giving it one first when it has none and the calling
/// thread has an attached thread state; 0 when there is none or the cache
/// is off (no proven offset). No GIL needed.
///
/// # Safety
/// `tp` must be a live, ready type.
pub(crate) unsafe fn version_of(tp: *mut PyTypeObject) -> u32 {
    let off = tag_offset();
    if off == 0 {
        return 0;
    }
    // SAFETY: the caller's contract; `off` is the proven (non-zero) offset.
    unsafe {
        let tag = layout::version_tag(tp, off);
        if tag != 0 {
            return tag;
        }
        assign_tag(tp);
        layout::version_tag(tp, off)
    }
}

/// The slow path's answer for `tp` through the cache: the table a lookup on
/// `tp` probes, as `effective` computes it (`None`: busy), and the entry
/// filled when `tp` has a version tag and the answer is cacheable; `None`
/// when the cache is off or busy (the caller answers per id). No GIL needed;
/// with an attached thread state, a type without a version tag gets one
/// first.
///
/// # Safety
/// `tp` must be a live, ready type; `effective` reads only published tables
/// (it runs after the generation is read, see the module doc).
pub(crate) unsafe fn table_for(
    tp: *mut PyTypeObject,
    effective: impl FnOnce() -> Option<(*const RawTable, bool)>,
) -> Option<*const RawTable> {
    let off = tag_offset();
    if off == 0 {
        return None;
    }
    // SAFETY: `tp` is a live, ready type (the caller's contract) and `off`
    // the proven tag offset (non-zero here); the entries live forever.
    unsafe {
        note_interpreters();
        let mut tag = layout::version_tag(tp, off);
        // With several interpreters a per-interpreter tag is never cached, so
        // giving one is useless; and under the limited API the "does this
        // thread hold the GIL?" check is void then (CPython disables
        // PyGILState_Check when it creates a subinterpreter): give none.
        let many = MANY_INTERPRETERS.load(Ordering::Acquire);
        if tag == 0 && !(many && (cfg!(Py_LIMITED_API) || !interpreters::tag_is_process_wide(tp))) {
            assign_tag(tp);
            tag = layout::version_tag(tp, off);
        }
        // The generation before any table is read: see the module doc.
        let generation = GENERATION.load(Ordering::Acquire);
        let (table, cacheable) = effective()?;
        if tag != 0 && cacheable {
            if let Ok(mut guard) = LOCK.try_lock() {
                // With several interpreters, only process-wide tags (checked
                // before the tag is read again: see tag_is_process_wide).
                if GENERATION.load(Ordering::Relaxed) == generation
                    && (!MANY_INTERPRETERS.load(Ordering::Relaxed) || interpreters::tag_is_process_wide(tp))
                    && layout::version_tag(tp, off) == tag
                {
                    let entries = VIEW.entries.load(Ordering::Relaxed);
                    let i = index(tp);
                    write(&*entries.add(i), tp, tag, table);
                    if guard.filled.len() <= CACHE_SIZE {
                        guard.filled.push(i as u16);
                    }
                }
            }
        }
        Some(table)
    }
}
