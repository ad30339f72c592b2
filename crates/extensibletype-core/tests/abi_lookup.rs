//! The header's inline lookup as `abi::Reader` implements it (`import`,
//! `table_of`, `cached_table`, `find_in_type`), driven without Python: fake
//! type objects (a version tag and a `TypeData` at offsets the fake API
//! names, its table published with its flat descriptor as the runtime
//! does), a type cache, a foreign registry and a counting slow path.

use core::ffi::{c_char, c_int, c_void};
use core::ptr;
use core::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::cell::Cell;

use extensibletype_core::abi::{
    Api, CacheEntry, ImportError, OpaqueObject, OpaqueSpec, OpaqueType, Reader, SlotDef, TypeData,
    ABI_VERSION, TYPE_CACHE_HASH_MULT,
};
use extensibletype_core::table::flat::descriptor;
use extensibletype_core::{RawTable, Table};

/// A fake type object: an object header, a version tag, the metaclass's data.
#[repr(C)]
struct FakeType {
    header: [usize; 2],
    tag: AtomicU32,
    data: TypeData,
}

const TAG_OFFSET: i32 = core::mem::offset_of!(FakeType, tag) as i32;
const DATA_OFFSET: isize = core::mem::offset_of!(FakeType, data) as isize;

impl FakeType {
    fn new(tag: u32, table: *const RawTable) -> Box<FakeType> {
        // SAFETY: `table` is NULL or a live table (the callers' tables
        // outlive their fake types).
        let (word, k1) = unsafe { descriptor(table) };
        Box::new(FakeType {
            header: [0; 2],
            tag: AtomicU32::new(tag),
            data: TypeData {
                table: AtomicPtr::new(table.cast_mut()),
                state: AtomicPtr::new(ptr::null_mut()),
                own_table: AtomicPtr::new(ptr::null_mut()),
                flat: AtomicUsize::new(word),
                flat_k1: AtomicU64::new(k1),
            },
        })
    }

    fn tp(&self) -> *mut OpaqueType {
        (self as *const FakeType).cast_mut().cast()
    }
}

thread_local! {
    /// Calls of the slow path on this thread, and what it last was asked.
    static SLOW_CALLS: Cell<(usize, u64)> = const { Cell::new((0, 0)) };
}

/// What the fake slow path answers.
const SLOW_ANSWER: usize = 0x5107;

unsafe extern "C" fn find_slow(_tp: *mut OpaqueType, id: u64) -> *const c_void {
    SLOW_CALLS.with(|c| c.set((c.get().0 + 1, id)));
    SLOW_ANSWER as *const c_void
}

fn slow_calls() -> usize {
    SLOW_CALLS.with(|c| c.get().0)
}

unsafe extern "C" fn prehash(_key: *const c_char, _len: usize) -> u64 {
    unreachable!()
}
unsafe extern "C" fn set_slots(_tp: *mut OpaqueObject, _defs: *const SlotDef, _n: isize) -> c_int {
    unreachable!()
}
unsafe extern "C" fn from_spec(
    _m: *mut OpaqueObject,
    _s: *mut OpaqueSpec,
    _b: *mut OpaqueObject,
    _d: *const SlotDef,
    _n: isize,
) -> *mut OpaqueObject {
    unreachable!()
}
unsafe extern "C" fn py_set_slots(_tp: *mut OpaqueObject, _m: *mut OpaqueObject) -> c_int {
    unreachable!()
}
unsafe extern "C" fn py_one(_o: *mut OpaqueObject) -> *mut OpaqueObject {
    unreachable!()
}
unsafe extern "C" fn py_lookup(_o: *mut OpaqueObject, _k: *mut OpaqueObject) -> *mut OpaqueObject {
    unreachable!()
}
unsafe extern "C" fn bind_key(_k: *const c_char, _id: u64) -> c_int {
    unreachable!()
}

const BITS: u32 = 6;

/// A fake runtime: the metaclass, a cache of `1 << BITS` entries, a
/// registry slot.
struct Runtime {
    metaclass: Box<FakeType>,
    cache: Vec<CacheEntry>,
    registry: Box<AtomicPtr<RawTable>>,
}

fn empty_entry() -> CacheEntry {
    CacheEntry {
        seq: AtomicU32::new(0),
        tag: AtomicU32::new(0),
        tp: AtomicPtr::new(ptr::null_mut()),
        table: AtomicPtr::new(ptr::null_mut()),
        flat: AtomicUsize::new(0),
    }
}

impl Runtime {
    fn new() -> Runtime {
        Runtime {
            metaclass: FakeType::new(1, ptr::null()),
            cache: (0..1 << BITS).map(|_| empty_entry()).collect(),
            registry: Box::new(AtomicPtr::new(ptr::null_mut())),
        }
    }

    fn api(&self) -> Api {
        Api {
            abi_version: ABI_VERSION,
            struct_size: core::mem::size_of::<Api>() as u32,
            metaclass: self.metaclass.tp(),
            table_offset: DATA_OFFSET,
            find_slow,
            prehash,
            set_slots,
            from_spec,
            py_set_slots,
            py_get_slots: py_one,
            py_table_info: py_one,
            py_lookup,
            bind_key,
            foreign_registry: &*self.registry,
            ob_type_offset: 0,
            type_cache: self.cache.as_ptr(),
            type_cache_bits: BITS,
            version_tag_offset: TAG_OFFSET,
            flat_offset: DATA_OFFSET + core::mem::offset_of!(TypeData, flat) as isize,
        }
    }

    fn entry(&self, tp: *mut OpaqueType) -> &CacheEntry {
        &self.cache[((tp as u64).wrapping_mul(TYPE_CACHE_HASH_MULT) >> (64 - BITS)) as usize]
    }

    /// Fill the entry of `tp` as the runtime does: `table` and its flat
    /// descriptor word.
    fn fill(&self, tp: &FakeType, tag: u32, table: &Table) {
        let e = self.entry(tp.tp());
        e.seq.store(2, Ordering::Relaxed);
        e.tag.store(tag, Ordering::Relaxed);
        e.tp.store(tp.tp().cast(), Ordering::Relaxed);
        e.table.store(table.as_raw().cast_mut(), Ordering::Relaxed);
        // SAFETY: a live table.
        e.flat.store(unsafe { descriptor(table.as_raw()) }.0, Ordering::Relaxed);
    }
}

const ID: u64 = 0x1234_5678_9abc_def1;

fn table(value: usize) -> Table {
    Table::build(&[(ID, value as *const c_void), (7, 0x70 as *const c_void)]).unwrap()
}

/// The reader of `api` (which must be valid).
fn reader(api: &Api) -> Reader {
    // SAFETY: `api` is a complete struct; the fake runtime outlives the reader.
    unsafe { Reader::import(api) }.expect("a valid fake API struct")
}

fn find(api: &Api, tp: &FakeType, meta: *mut OpaqueType, id: u64) -> usize {
    // SAFETY: the fake runtime outlives the call; tp is a live fake type.
    unsafe { reader(api).find_in_type(tp.tp(), meta, id) as usize }
}

#[test]
fn compatibility_needs_the_same_version_and_a_large_enough_struct() {
    let rt = Runtime::new();
    let mut api = rt.api();
    assert!(api.is_compatible());
    api.struct_size += 8; // a newer runtime with appended fields
    assert!(api.is_compatible());
    api.struct_size -= 9;
    assert!(!api.is_compatible(), "a smaller struct lacks fields");
    api.struct_size += 1;
    api.abi_version = ABI_VERSION + 1;
    assert!(!api.is_compatible(), "another ABI version");
    api.abi_version = ABI_VERSION - 1;
    assert!(!api.is_compatible());
}

#[test]
fn a_class_of_the_metaclass_uses_its_own_table() {
    let rt = Runtime::new();
    let api = rt.api();
    let own = table(0xA0);
    let tp = FakeType::new(5, own.as_raw());
    let before = slow_calls();
    assert_eq!(find(&api, &tp, rt.metaclass.tp(), ID), 0xA0);
    assert_eq!(find(&api, &tp, rt.metaclass.tp(), 7), 0x70);
    assert_eq!(
        find(&api, &tp, rt.metaclass.tp(), 99),
        0,
        "a miss in the own table is final"
    );
    assert_eq!(
        slow_calls(),
        before,
        "no slow path when the own table answers"
    );
    // SAFETY: as find().
    let probed = unsafe { reader(&api).table_of(tp.tp(), rt.metaclass.tp()) };
    assert_eq!(probed, own.as_raw());
}

#[test]
fn another_metaclass_never_reads_type_data() {
    // The same bytes at table_offset are not a table unless the metaclass
    // is the runtime's: the lookup goes to the cache / registry / slow path.
    let rt = Runtime::new();
    let api = rt.api();
    let own = table(0xA0);
    let tp = FakeType::new(5, own.as_raw());
    let other_meta = FakeType::new(1, ptr::null());
    let before = slow_calls();
    assert_eq!(find(&api, &tp, other_meta.tp(), ID), SLOW_ANSWER);
    assert_eq!(slow_calls(), before + 1);
    assert_eq!(
        SLOW_CALLS.with(|c| c.get().1),
        ID,
        "the slow path gets the id"
    );
    // SAFETY: as find().
    assert!(unsafe { reader(&api).table_of(tp.tp(), other_meta.tp()) }.is_null());
}

#[test]
fn an_empty_class_of_the_metaclass_falls_back() {
    let rt = Runtime::new();
    let api = rt.api();
    let tp = FakeType::new(5, ptr::null());
    let before = slow_calls();
    assert_eq!(find(&api, &tp, rt.metaclass.tp(), ID), SLOW_ANSWER);
    assert_eq!(slow_calls(), before + 1);
    // ... to the cache first.
    let cached = table(0xC0);
    rt.fill(&tp, 5, &cached);
    assert_eq!(find(&api, &tp, rt.metaclass.tp(), ID), 0xC0);
    assert_eq!(slow_calls(), before + 1);
}

#[test]
fn the_cache_answers_only_for_its_type_and_tag() {
    let rt = Runtime::new();
    let api = reader(&rt.api());
    let meta = FakeType::new(1, ptr::null());
    let cached = table(0xC0);
    let tp = FakeType::new(9, ptr::null());
    rt.fill(&tp, 9, &cached);
    // SAFETY: the fake runtime and types are live (all probes below).
    unsafe {
        assert_eq!(api.cached_table(tp.tp()), cached.as_raw());
        assert_eq!(api.find_in_type(tp.tp(), meta.tp(), ID) as usize, 0xC0);
        // The type was modified: CPython reset (or changed) its tag.
        tp.tag.store(0, Ordering::Relaxed);
        assert!(api.cached_table(tp.tp()).is_null(), "tag 0 must miss");
        tp.tag.store(10, Ordering::Relaxed);
        assert!(api.cached_table(tp.tp()).is_null(), "another tag must miss");
        tp.tag.store(9, Ordering::Relaxed);
        assert_eq!(api.cached_table(tp.tp()), cached.as_raw());
        // A writer is inside the entry: odd seq.
        rt.entry(tp.tp()).seq.store(3, Ordering::Relaxed);
        assert!(api.cached_table(tp.tp()).is_null(), "odd seq must miss");
        rt.entry(tp.tp()).seq.store(4, Ordering::Relaxed);
        assert_eq!(api.cached_table(tp.tp()), cached.as_raw());
        // Another type in the same entry (same index, other address).
        let e = rt.entry(tp.tp());
        let other = FakeType::new(9, ptr::null());
        e.tp.store(other.tp(), Ordering::Relaxed);
        assert!(
            api.cached_table(tp.tp()).is_null(),
            "another type's entry must miss"
        );
    }
}

#[test]
fn import_refuses_a_cache_without_entries_or_with_bad_bits() {
    // Like ExtType_Import: type cache fields present but invalid = refused.
    let rt = Runtime::new();
    let mut api = rt.api();
    api.type_cache = ptr::null();
    // SAFETY: complete structs that outlive the calls (every import below).
    unsafe {
        assert_eq!(Reader::import(&api).err(), Some(ImportError::TypeCache));
        let mut api = rt.api();
        api.type_cache_bits = 0;
        assert_eq!(Reader::import(&api).err(), Some(ImportError::TypeCache));
        api.type_cache_bits = 33;
        assert_eq!(Reader::import(&api).err(), Some(ImportError::TypeCache));
        api.type_cache_bits = 32;
        assert!(Reader::import(&api).is_ok());
    }
}

#[test]
fn import_refuses_another_abi_or_a_short_struct() {
    let rt = Runtime::new();
    // SAFETY: complete structs that outlive the calls.
    unsafe {
        let mut api = rt.api();
        api.abi_version = ABI_VERSION + 1;
        assert_eq!(
            Reader::import(&api).err(),
            Some(ImportError::Abi { abi_version: ABI_VERSION + 1, struct_size: api.struct_size })
        );
        let mut api = rt.api();
        api.struct_size = core::mem::offset_of!(Api, foreign_registry) as u32 + 7;
        assert!(matches!(Reader::import(&api), Err(ImportError::Abi { .. })));
        assert!(Reader::import(&api).unwrap_err().to_string().contains("ABI version"));
    }
}

#[test]
fn a_struct_from_before_the_type_cache_reads_no_cache() {
    // Its cache fields are past struct_size: never read (here they hold
    // garbage); every probe misses and the slow path answers.
    let rt = Runtime::new();
    let cached = table(0xC0);
    let tp = FakeType::new(9, ptr::null());
    rt.fill(&tp, 9, &cached);
    let mut api = rt.api();
    api.struct_size = core::mem::offset_of!(Api, type_cache) as u32;
    api.type_cache = ptr::dangling::<CacheEntry>();
    api.type_cache_bits = 99;
    let meta = FakeType::new(1, ptr::null());
    let before = slow_calls();
    // SAFETY: the struct outlives the reader; tp is a live fake type.
    unsafe {
        let r = Reader::import(&api).expect("an ABI v1 struct without the cache fields");
        assert!(r.cached_table(tp.tp()).is_null());
        assert_eq!(r.find_in_type(tp.tp(), meta.tp(), ID) as usize, SLOW_ANSWER);
    }
    assert_eq!(slow_calls(), before + 1);
}

/// A flat table on `ID`, 7 and `n - 2` more ids (which depend on `salt`),
/// pointers `base + 16 * i`.
fn flat_table(base: usize, n: u64, salt: u64) -> Table {
    let entries: Vec<(u64, *const c_void)> = [ID, 7]
        .into_iter()
        .chain((1..n - 1).map(|i| (i + salt).wrapping_mul(0x9E37_79B9_7F4A_7C15)))
        .enumerate()
        .map(|(i, id)| (id, (base + 16 * i) as *const c_void))
        .collect();
    let table = Table::build_published(&entries).unwrap();
    assert!(table.is_flat(), "{n} ids get a flat table");
    table
}

#[test]
fn a_flat_table_is_probed_through_its_descriptor_alone() {
    let rt = Runtime::new();
    let api = rt.api();
    for n in [2, 5, 16, 24] {
        let flat = flat_table(0xF000, n, 0);
        let tp = FakeType::new(5, flat.as_raw());
        // The descriptor alone answers: the v1 pointer is never loaded.
        tp.data.table.store(ptr::null_mut(), Ordering::Relaxed);
        let before = slow_calls();
        assert_eq!(find(&api, &tp, rt.metaclass.tp(), ID), 0xF000);
        assert_eq!(find(&api, &tp, rt.metaclass.tp(), 7), 0xF010);
        for (id, want) in flat.iter() {
            assert_eq!(find(&api, &tp, rt.metaclass.tp(), id), want as usize, "n={n} id={id:#x}");
        }
        for absent in [0, 1, 99, ID ^ 1, u64::MAX] {
            assert_eq!(find(&api, &tp, rt.metaclass.tp(), absent), 0, "n={n}: {absent:#x} is absent");
        }
        assert_eq!(slow_calls(), before, "a flat table answers every id");
        // SAFETY: as find().
        let probed = unsafe { reader(&api).table_of(tp.tp(), rt.metaclass.tp()) };
        assert_eq!(probed, flat.as_raw(), "table_of gives the flat table's v1 header");
    }
}

#[test]
fn a_torn_descriptor_is_caught_by_the_tables_own_k1() {
    // A reader can pair one publication's word with another's k1; the
    // answer must be the word's table's, never a neighbour slot of it.
    let rt = Runtime::new();
    let api = rt.api();
    let a = flat_table(0xA000, 8, 0);
    let b = flat_table(0xB000, 8, 100);
    // SAFETY: both tables are live.
    let ((wa, ka), (wb, kb)) = unsafe { (descriptor(a.as_raw()), descriptor(b.as_raw())) };
    assert_ne!(ka, kb, "other ids: another k1");
    let tp = FakeType::new(5, a.as_raw());
    for (word, k1, table) in [(wa, kb, &a), (wb, ka, &b), (wa, 0, &a), (wb, 12345, &b)] {
        tp.data.flat.store(word, Ordering::Relaxed);
        tp.data.flat_k1.store(k1, Ordering::Relaxed);
        for (id, want) in table.iter() {
            assert_eq!(find(&api, &tp, rt.metaclass.tp(), id), want as usize);
        }
        assert_eq!(find(&api, &tp, rt.metaclass.tp(), 99), 0);
    }
}

#[test]
fn a_struct_from_before_the_flat_descriptor_reads_the_table_pointer() {
    // Its flat_offset is past struct_size: the reader probes the v1 table
    // pointer at table_offset (64-byte aligned: low bits 0), flat or not,
    // and never reads the descriptor (here garbage).
    let rt = Runtime::new();
    let mut api = rt.api();
    api.struct_size = core::mem::offset_of!(Api, flat_offset) as u32;
    api.flat_offset = -4096;
    let flat = flat_table(0xD000, 6, 0);
    let two_level = table(0xE0);
    for t in [&flat, &two_level] {
        let tp = FakeType::new(5, t.as_raw());
        tp.data.flat.store(0x5 | 0x1000, Ordering::Relaxed);
        tp.data.flat_k1.store(3, Ordering::Relaxed);
        let before = slow_calls();
        for (id, want) in t.iter() {
            assert_eq!(find(&api, &tp, rt.metaclass.tp(), id), want as usize);
        }
        assert_eq!(find(&api, &tp, rt.metaclass.tp(), 99), 0);
        assert_eq!(slow_calls(), before);
    }
}

#[test]
fn a_cache_entry_names_a_flat_table_through_its_word() {
    // The runtime fills an entry's `flat` with the table's descriptor: a
    // flat table is probed in one level (k1 from the table), any other with
    // the v1 formula; every id answers, every other id misses, and neither
    // reaches the slow path.
    let rt = Runtime::new();
    let api = rt.api();
    let meta = FakeType::new(1, ptr::null());
    for (n, t) in [(2, flat_table(0xA000, 2, 1)), (6, flat_table(0xB000, 6, 2)), (2, table(0xC0))] {
        let tp = FakeType::new(9, ptr::null());
        rt.fill(&tp, 9, &t);
        // SAFETY: a live table.
        let (word, _) = unsafe { descriptor(t.as_raw()) };
        assert_eq!(rt.entry(tp.tp()).flat.load(Ordering::Relaxed) & 63 != 0, t.is_flat());
        // SAFETY: the fake runtime and type are live.
        assert_eq!(unsafe { reader(&api).cached_word(tp.tp()) }, word);
        // SAFETY: as above.
        assert_eq!(unsafe { reader(&api).cached_table(tp.tp()) }, t.as_raw());
        let before = slow_calls();
        assert_eq!(t.iter().count(), n as usize);
        for (id, want) in t.iter() {
            assert_eq!(find(&api, &tp, meta.tp(), id), want as usize);
        }
        for id in [99, ID ^ 1, u64::MAX] {
            assert_eq!(find(&api, &tp, meta.tp(), id), 0);
        }
        assert_eq!(slow_calls(), before);
        rt.entry(tp.tp()).tp.store(ptr::null_mut(), Ordering::Relaxed);
    }
}

#[test]
fn a_struct_from_before_the_flat_descriptor_reads_the_entry_table() {
    // A runtime without flat_offset leaves the entries' `flat` 0 (their
    // former `reserved`): the reader probes `table` (here the word is
    // garbage that would point elsewhere if read).
    let rt = Runtime::new();
    let mut api = rt.api();
    api.struct_size = core::mem::offset_of!(Api, flat_offset) as u32;
    let meta = FakeType::new(1, ptr::null());
    for t in [flat_table(0xD000, 6, 3), table(0xE0)] {
        let tp = FakeType::new(9, ptr::null());
        rt.fill(&tp, 9, &t);
        rt.entry(tp.tp()).flat.store(0x1000 | 5, Ordering::Relaxed);
        let before = slow_calls();
        for (id, want) in t.iter() {
            assert_eq!(find(&api, &tp, meta.tp(), id), want as usize);
        }
        assert_eq!(find(&api, &tp, meta.tp(), 99), 0);
        assert_eq!(slow_calls(), before);
        rt.entry(tp.tp()).tp.store(ptr::null_mut(), Ordering::Relaxed);
    }
}

#[test]
fn the_foreign_registry_is_not_read() {
    // Since the registry became an index, `*foreign_registry` is NULL; the
    // header reads neither it nor a table published there, and neither does
    // the reader: the cache, then the slow path.
    let rt = Runtime::new();
    let meta = FakeType::new(1, ptr::null());
    let tp = FakeType::new(9, ptr::null());
    let effective = table(0xF0);
    let registry = Table::build(&[(tp.tp() as u64, effective.as_raw().cast())]).unwrap();
    rt.registry.store(registry.as_raw().cast_mut(), Ordering::Release);
    let api = rt.api();
    let before = slow_calls();
    assert_eq!(find(&api, &tp, meta.tp(), ID), SLOW_ANSWER);
    assert_eq!(slow_calls(), before + 1);
    let cached = table(0xC0);
    rt.fill(&tp, 9, &cached);
    assert_eq!(find(&api, &tp, meta.tp(), ID), 0xC0);
    assert_eq!(find(&api, &tp, meta.tp(), 99), 0, "a miss in the cached table is final");
    assert_eq!(slow_calls(), before + 1);
}

#[test]
fn id_zero_never_matches_an_empty_entry() {
    let rt = Runtime::new();
    let api = rt.api();
    let tp = FakeType::new(9, table(0xA0).into_raw());
    let before = slow_calls();
    assert_eq!(find(&api, &tp, rt.metaclass.tp(), 0), 0);
    assert_eq!(slow_calls(), before, "an own table answers id 0 itself (a miss)");
    // SAFETY: the table came from into_raw above and is taken back once.
    drop(unsafe { Table::from_raw(tp.data.table.load(Ordering::Relaxed)) });
}

#[test]
fn the_slow_rung_can_be_replaced() {
    unsafe extern "C" fn other(_tp: *mut OpaqueType, _id: u64) -> *const c_void {
        0x07e as *const c_void
    }
    let rt = Runtime::new();
    let api = rt.api();
    let tp = FakeType::new(9, ptr::null());
    let meta = FakeType::new(1, ptr::null());
    let before = slow_calls();
    // SAFETY: the fake runtime outlives the reader; tp is a live fake type.
    let got = unsafe { reader(&api).with_find_slow(other).find_in_type(tp.tp(), meta.tp(), ID) };
    assert_eq!(got as usize, 0x07e);
    assert_eq!(slow_calls(), before, "the API's slow path is not called");
}

#[test]
fn the_index_is_the_header_formula() {
    for tp in [0usize, 0x10, 0x7f12_3456_7890, usize::MAX] {
        let want = ((tp as u64).wrapping_mul(TYPE_CACHE_HASH_MULT) >> (64 - BITS)) as usize;
        assert_eq!(extensibletype_core::abi::type_cache_index(tp, 64 - BITS), want);
    }
}
