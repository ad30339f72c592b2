//! THE lock-free lookup, in Rust: what `include/extensibletype.h` does inline
//! (`ExtType_Import` fills a [`Reader`]; `ExtType_FindInType` is
//! [`Reader::find_in_type`]; `ExtType__CachedWord` is
//! [`Reader::cached_word`]), load for load and fence for fence. The
//! runtime's `find` / `find_in_type` / `table_of` and the array slot set's
//! `Provider::of` go through it; `python/tests/test_reader_golden.py`
//! compares it with the header's C on live objects.
//!
//! The ladder, for a type `tp` whose type (metaclass) is `meta`:
//! 1. `meta` is the runtime's metaclass: the flat descriptor published in
//!    `tp`'s [`TypeData`] (acquire load of the word; docs/spec.md §3): a
//!    flat table is probed in one level, any other table with the v1
//!    formula; a non-zero word answers every id;
//! 2. else, or when that table is NULL: the type cache entry of `tp`, read
//!    under its seqlock and accepted only while `tp`'s version tag equals
//!    the entry's; its word is the flat descriptor of the table to probe
//!    (one level for a flat table, as in rung 1, with `k1` from the table);
//! 3. else [`Api::find_slow`], which answers and fills the entry.
//!
//! Nothing here depends on Python: `T` is the pointee type of
//! `PyTypeObject *` (the runtime instantiates it with pyo3-ffi's).

use core::ffi::c_void;
use core::fmt;
use core::marker::PhantomData;
use core::ptr;
use core::sync::atomic::{fence, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use super::{Api, CacheEntry, OpaqueObject, OpaqueSpec, OpaqueType, TypeData, ABI_VERSION, TYPE_CACHE_HASH_MULT};
use crate::table::flat::{descriptor_lookup, descriptor_table, DESCRIPTOR_SHIFT_MASK};
use crate::table::{raw_lookup, RawTable};

/// The index of `tp` in a type cache of `1 << (64 - shift)` entries (the
/// header's `((uint64_t)tp * EXTTYPE_TYPE_CACHE_HASH_MULT) >> shift`); the
/// runtime fills the entry at this index, readers probe it.
#[inline(always)]
pub fn type_cache_index(tp: usize, shift: u32) -> usize {
    ((tp as u64).wrapping_mul(TYPE_CACHE_HASH_MULT) >> shift) as usize
}

/// The smallest API struct a reader accepts (the header's
/// `EXTTYPE__API_MIN_SIZE`): ABI v1 up to `foreign_registry`. Fields after
/// it were appended later; read each only when `struct_size` covers it.
pub const API_MIN_SIZE: usize = core::mem::offset_of!(Api, foreign_registry) + core::mem::size_of::<usize>();

/// Does an API struct of `struct_size` bytes hold the field that ends at
/// `end` (the header's `EXTTYPE__API_HAS`)?
const fn has_field(struct_size: u32, end: usize) -> bool {
    struct_size as usize >= end
}

/// Bytes from [`TypeData::flat`] to [`TypeData::flat_k1`].
const K1_AFTER_WORD: isize = (core::mem::offset_of!(TypeData, flat_k1) - core::mem::offset_of!(TypeData, flat)) as isize;

/// Two empty entries: the type cache of a runtime from before the cache
/// (every probe misses: their type is NULL). Offset 0 of a type object is
/// always readable, so the version tag read stays in bounds.
struct NoTypeCache([CacheEntry<OpaqueType>; 2]);

// SAFETY: never written; all pointers NULL.
unsafe impl Sync for NoTypeCache {}

#[allow(clippy::declare_interior_mutable_const)] // only initialises NO_TYPE_CACHE
const EMPTY_ENTRY: CacheEntry<OpaqueType> = CacheEntry {
    seq: AtomicU32::new(0),
    tag: AtomicU32::new(0),
    tp: AtomicPtr::new(ptr::null_mut()),
    table: AtomicPtr::new(ptr::null_mut()),
    flat: AtomicUsize::new(0),
};

static NO_TYPE_CACHE: NoTypeCache = NoTypeCache([EMPTY_ENTRY, EMPTY_ENTRY]);

/// Why [`Reader::import`] refused an API struct (the header's
/// `ExtType_Import` raises `ImportError` for the same cases).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImportError {
    /// Another ABI version, or a struct smaller than ABI v1's.
    Abi {
        /// The struct's `abi_version`.
        abi_version: u32,
        /// The struct's `struct_size`.
        struct_size: u32,
    },
    /// The struct has the type cache fields, with a NULL cache or
    /// `type_cache_bits` outside 1..=32.
    TypeCache,
}

impl fmt::Display for ImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ImportError::Abi { abi_version, struct_size } => write!(
                f,
                "extensibletype: the runtime has ABI version {abi_version} (API struct of {struct_size} bytes), \
                 but this reader needs ABI version {ABI_VERSION} (API struct of at least {API_MIN_SIZE} bytes)"
            ),
            ImportError::TypeCache => f.write_str("extensibletype: the runtime's API struct has no valid type cache"),
        }
    }
}

/// What a consumer's inline lookup reads, copied once from the runtime's
/// [`Api`] struct (the header's per-extension `ExtType__Cache`): the
/// metaclass and table offset of rung 1, the type cache of rung 2, the slow
/// path of rung 3. Immutable; the API struct it came from lives for the
/// process.
///
/// `O`, `T` and `S` are the pointee types of `PyObject *`, `PyTypeObject *`
/// and `PyType_Spec *`, as in [`Api`].
pub struct Reader<O = OpaqueObject, T = OpaqueType, S = OpaqueSpec> {
    metaclass: *mut T,
    /// [`Api::flat_offset`], or `table_offset` for a struct without it
    /// (the word there is the v1 table: low bits 0).
    flat_offset: isize,
    type_cache: *const CacheEntry<T>,
    /// Where an entry's word is: [`CacheEntry::flat`] when the runtime
    /// fills it (its struct has `flat_offset`), else [`CacheEntry::table`].
    cache_word_offset: usize,
    /// `64 - type_cache_bits`.
    type_cache_shift: u32,
    version_tag_offset: i32,
    find_slow: unsafe extern "C" fn(*mut T, u64) -> *const c_void,
    _api: PhantomData<*const Api<O, T, S>>,
}

impl<O, T, S> Clone for Reader<O, T, S> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<O, T, S> Copy for Reader<O, T, S> {}

impl<O, T, S> fmt::Debug for Reader<O, T, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reader")
            .field("metaclass", &self.metaclass)
            .field("flat_offset", &self.flat_offset)
            .field("type_cache", &self.type_cache)
            .field("cache_word_offset", &self.cache_word_offset)
            .field("type_cache_shift", &self.type_cache_shift)
            .field("version_tag_offset", &self.version_tag_offset)
            .finish_non_exhaustive()
    }
}

// SAFETY: immutable after construction; it only names process-lifetime
// data of the runtime (metaclass, cache, API struct), which readers on any
// thread may use without the GIL (docs/spec.md §7).
unsafe impl<O, T, S> Sync for Reader<O, T, S> {}
// SAFETY: as above.
unsafe impl<O, T, S> Send for Reader<O, T, S> {}

impl<O, T, S> Reader<O, T, S> {
    /// Check `api` and copy what the lookup reads, exactly as the header's
    /// `ExtType_Import` does: refuse another ABI version or a struct smaller
    /// than ABI v1's; read each appended field only when `struct_size`
    /// covers it; refuse a struct whose type cache fields are present but
    /// invalid; a struct from before the type cache gets two empty entries
    /// (every probe misses, [`find_slow`](Api::find_slow) answers); a struct
    /// from before the flat descriptor gets `table_offset` as its
    /// descriptor offset (the word there is a v1 table, probed as such).
    ///
    /// # Safety
    /// `api` must point to a published API struct of at least its own
    /// `struct_size` bytes that lives for the rest of the process (the
    /// runtime leaks it), and to at least its `abi_version` and
    /// `struct_size` fields before they are checked.
    pub unsafe fn import(api: *const Api<O, T, S>) -> Result<Self, ImportError> {
        // SAFETY: the first two fields are always readable (the contract);
        // every other field is read only once `struct_size` covers it.
        unsafe {
            let (abi_version, struct_size) = ((*api).abi_version, (*api).struct_size);
            if abi_version != ABI_VERSION || (struct_size as usize) < API_MIN_SIZE {
                return Err(ImportError::Abi { abi_version, struct_size });
            }
            let has_cache = has_field(
                struct_size,
                core::mem::offset_of!(Api, version_tag_offset) + core::mem::size_of::<i32>(),
            );
            let (type_cache, type_cache_shift, version_tag_offset) = if has_cache {
                let (cache, bits) = ((*api).type_cache, (*api).type_cache_bits);
                if cache.is_null() || !(1..=32).contains(&bits) {
                    return Err(ImportError::TypeCache);
                }
                (cache, 64 - bits, (*api).version_tag_offset)
            } else {
                (NO_TYPE_CACHE.0.as_ptr().cast::<CacheEntry<T>>(), 63, 0)
            };
            // A runtime with `flat_offset` also fills the cache entries'
            // `flat` word; an older one leaves it 0, and its `table` (low
            // bits 0) is read through the same code.
            let (flat_offset, cache_word_offset) =
                if has_field(struct_size, core::mem::offset_of!(Api, flat_offset) + core::mem::size_of::<isize>()) {
                    ((*api).flat_offset, core::mem::offset_of!(CacheEntry<T>, flat))
                } else {
                    ((*api).table_offset, core::mem::offset_of!(CacheEntry<T>, table))
                };
            Ok(Reader {
                metaclass: (*api).metaclass,
                flat_offset,
                type_cache,
                cache_word_offset,
                type_cache_shift,
                version_tag_offset,
                find_slow: (*api).find_slow,
                _api: PhantomData,
            })
        }
    }

    /// The same reader with another last rung: `find_slow` is called where
    /// the header calls `api->find_slow` (the runtime's Rust API puts its
    /// "is this a type?" check in front of the runtime's slow path this way).
    pub fn with_find_slow(self, find_slow: unsafe extern "C" fn(*mut T, u64) -> *const c_void) -> Self {
        Reader { find_slow, ..self }
    }

    /// The table a lookup on `tp` probes without the slow path (rungs 1 and
    /// 2): the table published in `tp`'s type data when `meta` is the
    /// metaclass and the table is not NULL, else the table `tp`'s type cache
    /// entry names. NULL means "ask [`find_slow`](Reader::find_slow)". For
    /// consumers that look up several ids on one type: probe each with
    /// [`raw_lookup`]. No GIL needed.
    ///
    /// # Safety
    /// `tp` must be a live type object (the caller holds a reference to it
    /// or to an instance) and `meta` its type (`Py_TYPE(tp)`). The table
    /// lives as long as `tp`.
    #[inline(always)]
    pub unsafe fn table_of(&self, tp: *mut T, meta: *mut T) -> *const RawTable {
        if meta == self.metaclass {
            // SAFETY: `tp`'s type is the metaclass, so `tp` carries TypeData
            // (the contract).
            let table = descriptor_table(unsafe { self.published_word(tp) });
            if !table.is_null() {
                return table;
            }
        }
        // SAFETY: forwarded (`tp` is a live type).
        unsafe { self.cached_table(tp) }
    }

    /// Find the implementation of `id` on `tp`, NULL when absent — the
    /// header's `ExtType_FindInType`: for a class of the metaclass, one
    /// probe through its flat descriptor (one level for a flat table, the
    /// v1 formula for any other); else the type cache's table and one
    /// probe; else [`find_slow`](Reader::find_slow). No GIL needed. Id 0
    /// never matches a slot (it may reach the slow path, which misses too).
    ///
    /// # Safety
    /// As [`table_of`](Reader::table_of), and as the slow path requires
    /// (the runtime's: none more).
    #[inline(always)]
    pub unsafe fn find_in_type(&self, tp: *mut T, meta: *mut T, id: u64) -> *const c_void {
        // SAFETY: forwarded; a published descriptor names a table that is
        // live while `tp` is; `flat_k1` follows the word in the type data.
        unsafe {
            if meta == self.metaclass {
                let word = self.published_word(tp);
                if word & DESCRIPTOR_SHIFT_MASK != 0 {
                    let k1 = (*tp.cast::<u8>().offset(self.flat_offset + K1_AFTER_WORD).cast::<AtomicU64>()).load(Ordering::Relaxed);
                    return descriptor_lookup(word, k1, id);
                }
                if word != 0 {
                    return raw_lookup(word as *const RawTable, id);
                }
            }
            let word = self.cached_word(tp);
            if word & DESCRIPTOR_SHIFT_MASK != 0 {
                // The word and the table it names are one snapshot (read
                // under the entry's seqlock), so the table's own k1 is the
                // pair's: descriptor_lookup's torn-pair test never fires.
                let k1 = (*descriptor_table(word)).k1;
                return descriptor_lookup(word, k1, id);
            }
            if word != 0 {
                return raw_lookup(word as *const RawTable, id);
            }
            self.find_slow(tp, id)
        }
    }

    /// The last rung: the runtime's GIL-free slow path (sub-metaclasses,
    /// uninitialised classes, foreign types, types not cached yet), which
    /// fills the type cache entry of `tp`.
    ///
    /// # Safety
    /// As [`table_of`](Reader::table_of) (`meta` aside).
    #[inline(always)]
    pub unsafe fn find_slow(&self, tp: *mut T, id: u64) -> *const c_void {
        // SAFETY: forwarded to the runtime's slow path, whose contract is
        // "a live type the caller holds a reference to".
        unsafe { (self.find_slow)(tp, id) }
    }

    /// The table the type cache names for `tp`, or NULL (a miss: ask
    /// [`find_slow`](Reader::find_slow), which fills the entry): the table
    /// of [`cached_word`](Reader::cached_word). No lock, no GIL.
    ///
    /// # Safety
    /// `tp` must be a live type object.
    #[inline(always)]
    pub unsafe fn cached_table(&self, tp: *mut T) -> *const RawTable {
        // SAFETY: forwarded.
        descriptor_table(unsafe { self.cached_word(tp) })
    }

    /// The descriptor word of the table the type cache names for `tp` (a
    /// flat table's `&entries[0] | (s - 4)`, or the table itself, low bits
    /// 0), or 0 (a miss) — the header's `ExtType__CachedWord`: one entry
    /// read under its seqlock (acquire load of `seq`; relaxed loads of
    /// type, tag and word; an acquire fence; `seq` again and `tp`'s version
    /// tag, relaxed), accepted only when `seq` is even and unchanged, the
    /// tags are equal and the type is `tp`. The word is the entry's `flat`,
    /// or its `table` from a runtime that does not fill `flat`. No lock, no
    /// GIL.
    ///
    /// # Safety
    /// `tp` must be a live type object.
    #[inline(always)]
    pub unsafe fn cached_word(&self, tp: *mut T) -> usize {
        let index = type_cache_index(tp as usize, self.type_cache_shift);
        // SAFETY: the cache has 1 << (64 - shift) entries (checked by
        // `import`) and lives for the process; `cache_word_offset` is the
        // offset of `flat` or `table`, both pointer-sized and aligned.
        let (e, word) = unsafe {
            let e = &*self.type_cache.add(index);
            (e, &*(e as *const CacheEntry<T>).cast::<u8>().add(self.cache_word_offset).cast::<AtomicUsize>())
        };
        let seq = e.seq.load(Ordering::Acquire);
        let etp = e.tp.load(Ordering::Relaxed);
        let etag = e.tag.load(Ordering::Relaxed);
        let word = word.load(Ordering::Relaxed);
        fence(Ordering::Acquire);
        // SAFETY: `version_tag_offset` is 0 (the readable object header) or
        // an offset the runtime proved to lie inside every type object; `tp`
        // is live (the contract).
        let tag = unsafe { (*tp.cast::<u8>().offset(self.version_tag_offset as isize).cast::<AtomicU32>()).load(Ordering::Relaxed) };
        // One test for all four conditions, like the header: seq unchanged
        // and even, tag and type equal.
        if (((seq ^ e.seq.load(Ordering::Relaxed)) | (seq & 1) | (etag ^ tag)) as usize | ((etp as usize) ^ (tp as usize))) == 0 {
            word
        } else {
            0
        }
    }

    /// The descriptor word published in the type data of `tp` (acquire
    /// load; the header's `ExtType__LoadDescriptor`), 0 when empty or not
    /// initialised.
    ///
    /// # Safety
    /// `tp` must be a live type whose type is the metaclass (or a subclass).
    #[inline(always)]
    unsafe fn published_word(&self, tp: *mut T) -> usize {
        // SAFETY: such a type object holds TypeData, whose descriptor word
        // (or, from an older runtime, table pointer) is at `flat_offset`.
        unsafe { (*tp.cast::<u8>().offset(self.flat_offset).cast::<AtomicUsize>()).load(Ordering::Acquire) }
    }
}
