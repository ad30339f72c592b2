//! The foreign registry's index (docs/spec.md §5): type address → a
//! [`Record`] of atomic pointers (that type's effective table, own-slots
//! table and MRO snapshot), read GIL-free and lock-free.
//!
//! An open-addressing hash set of record pointers, linear probing, keys
//! inserted and never removed. A record is allocated once per address and
//! never freed (an address registered again, by the same type or a new one
//! at a reused address, reuses it); unregistering stores NULL in its
//! pointers. The slot array is at most half full; past that a writer copies
//! the record pointers into an array twice as large and publishes it with a
//! release store. Old arrays are kept (a reader may be probing one): they
//! sum to less than the current one, so the index costs at most about
//! `2 * 2 * 8` bytes of slots plus one record per address ever registered.
//!
//! Writers are serialised by the caller (the registry mutex): every `&mut`
//! method runs under it. Readers ([`Index::find`]) take no lock: an acquire
//! load of the array, then acquire loads of its slots. A slot goes from NULL
//! to a record once and never changes again, and every record a reader can
//! reach is fully initialised (stored before its pointer is published), so a
//! reader either finds the record or misses an address that was not
//! registered before its lookup began.
//!
//! Pure Rust (no Python): unit-tested by `cargo test --workspace`.

use core::ptr;
use std::sync::atomic::{AtomicPtr, Ordering};

use crate::table::RawTable;

/// What the registry publishes for one type address. Each pointer is NULL
/// or points to data the registry never frees (interned per address).
#[derive(Debug)]
pub(crate) struct Record {
    /// The type address (immutable).
    key: usize,
    /// That type's effective table (NULL: not registered).
    pub effective: AtomicPtr<RawTable>,
    /// The table of the slots set on that type itself (NULL: none).
    pub own: AtomicPtr<RawTable>,
    /// `[len, addresses...]`: the MRO the effective table was merged along.
    pub mro: AtomicPtr<usize>,
}

/// One slot array: a power-of-two number of record pointers.
struct Slots {
    slots: Box<[AtomicPtr<Record>]>,
}

impl Slots {
    fn new(capacity: usize) -> Slots {
        Slots { slots: (0..capacity).map(|_| AtomicPtr::new(ptr::null_mut())).collect() }
    }

    /// The slot where probing for `key` starts (Fibonacci hashing: type
    /// addresses are 16-byte aligned, so the low bits carry nothing).
    #[inline]
    fn start(&self, key: usize) -> usize {
        let bits = self.slots.len().trailing_zeros();
        ((key as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - bits)) as usize
    }
}

/// The published index. `const`-constructible, for a `static`.
pub(crate) struct Index {
    published: AtomicPtr<Slots>,
}

/// The writer's side of an [`Index`]: owns every array and record (kept
/// until the process ends: GIL-free readers may hold any of them).
#[derive(Default)]
#[allow(clippy::vec_box)] // boxed: readers hold addresses that a Vec would move
pub(crate) struct Writer {
    /// Every array ever published, the current one last.
    arrays: Vec<Box<Slots>>,
    /// Every record (one per address ever inserted).
    records: Vec<Box<Record>>,
}

/// Smallest array (slots).
const MIN_CAPACITY: usize = 64;

impl Index {
    /// An empty index (nothing published).
    pub const fn new() -> Index {
        Index { published: AtomicPtr::new(ptr::null_mut()) }
    }

    /// The record of `key`, or NULL. GIL-free and lock-free.
    #[inline]
    pub fn find(&self, key: usize) -> Option<&Record> {
        let slots = self.published.load(Ordering::Acquire);
        if slots.is_null() {
            return None;
        }
        // SAFETY: published arrays are never freed (the writer keeps them),
        // and were fully initialised before their release store.
        let slots = unsafe { &*slots };
        let mask = slots.slots.len() - 1;
        let mut i = slots.start(key);
        // At most half full: some slot is NULL, so this ends.
        loop {
            let record = slots.slots[i].load(Ordering::Acquire);
            if record.is_null() {
                return None;
            }
            // SAFETY: records are never freed and were initialised before
            // their pointer was stored (release).
            let record = unsafe { &*record };
            if record.key == key {
                return Some(record);
            }
            i = (i + 1) & mask;
        }
    }

    /// The record of `key`, inserted (all pointers NULL) if absent. Writer
    /// side: the caller serialises writers and passes the one `Writer` of
    /// this index.
    pub fn get_or_insert<'w>(&self, writer: &'w mut Writer, key: usize) -> &'w Record {
        assert!(key != 0, "type addresses are never 0");
        if let Some(record) = self.find(key) {
            let record: *const Record = record;
            // SAFETY: records live as long as `writer` (never freed).
            return unsafe { &*record };
        }
        if (writer.records.len() + 1) * 2 > writer.arrays.last().map_or(0, |a| a.slots.len()) {
            self.grow(writer);
        }
        let record = Box::new(Record {
            key,
            effective: AtomicPtr::new(ptr::null_mut()),
            own: AtomicPtr::new(ptr::null_mut()),
            mro: AtomicPtr::new(ptr::null_mut()),
        });
        let raw: *const Record = &*record;
        let slots = writer.arrays.last().expect("grown above");
        Self::place(slots, raw.cast_mut());
        writer.records.push(record);
        // SAFETY: the box just pushed lives as long as `writer`.
        unsafe { &*raw }
    }

    /// Store `record` in the first free slot of its probe sequence (release:
    /// readers that see the pointer see the initialised record).
    fn place(slots: &Slots, record: *mut Record) {
        let mask = slots.slots.len() - 1;
        // SAFETY: `record` is a live record owned by the writer.
        let mut i = slots.start(unsafe { (*record).key });
        while !slots.slots[i].load(Ordering::Relaxed).is_null() {
            i = (i + 1) & mask;
        }
        slots.slots[i].store(record, Ordering::Release);
    }

    /// Publish an array twice as large holding every record; keep the old.
    fn grow(&self, writer: &mut Writer) {
        let capacity = writer.arrays.last().map_or(MIN_CAPACITY, |a| a.slots.len() * 2);
        let bigger = Box::new(Slots::new(capacity));
        for record in &writer.records {
            let raw: *const Record = &**record;
            Self::place(&bigger, raw.cast_mut());
        }
        self.published.store(ptr::addr_of!(*bigger).cast_mut(), Ordering::Release);
        writer.arrays.push(bigger);
    }
}

impl Writer {
    /// Addresses ever inserted.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Bytes held by the index (arrays and records), for tests and docs.
    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        let arrays: usize = self.arrays.iter().map(|a| a.slots.len() * core::mem::size_of::<AtomicPtr<Record>>()).sum();
        arrays + self.records.len() * core::mem::size_of::<Record>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// A small deterministic generator (no dependency needed).
    struct XorShift(u64);
    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    #[test]
    fn empty_index_misses() {
        let index = Index::new();
        assert!(index.find(0x1000).is_none());
    }

    #[test]
    fn insert_find_and_reuse() {
        let index = Index::new();
        let mut writer = Writer::default();
        let a: *const Record = index.get_or_insert(&mut writer, 0x1000);
        let b: *const Record = index.get_or_insert(&mut writer, 0x2000);
        assert_ne!(a, b);
        assert_eq!(index.find(0x1000).map(|r| r as *const Record), Some(a));
        assert_eq!(index.find(0x2000).map(|r| r as *const Record), Some(b));
        assert!(index.find(0x3000).is_none());
        // The same address again: the same record, nothing new.
        assert_eq!(index.get_or_insert(&mut writer, 0x1000) as *const Record, a);
        assert_eq!(writer.len(), 2);
    }

    /// Random addresses (aligned like type objects, clustered like a heap)
    /// against a HashMap model, through several doublings; memory stays
    /// linear (at most 2 arrays' worth of slots, <= 4 slots per record).
    #[test]
    fn model_check_through_growth() {
        for seed in 1..=8u64 {
            let index = Index::new();
            let mut writer = Writer::default();
            let mut model: HashMap<usize, *const Record> = HashMap::new();
            let mut rng = XorShift(seed.wrapping_mul(0x2545_F491_4F6C_DD1D));
            let base = 0x7f00_0000_0000usize;
            for step in 0..20_000 {
                let key = base + ((rng.next() % 50_000) as usize) * 16 + 16;
                let record: *const Record = index.get_or_insert(&mut writer, key);
                let before = *model.entry(key).or_insert(record);
                assert_eq!(before, record, "seed {seed} step {step}: a second record for {key:#x}");
                if step % 97 == 0 {
                    for (&k, &r) in &model {
                        assert_eq!(index.find(k).map(|x| x as *const Record), Some(r));
                    }
                    let absent = base + 50_001 * 16 + (step as usize) * 16;
                    assert!(index.find(absent).is_none());
                }
            }
            assert_eq!(writer.len(), model.len());
            let slots_per_record =
                (writer.bytes() - writer.len() * core::mem::size_of::<Record>()) / 8 / writer.len().max(1);
            assert!(slots_per_record <= 8, "seed {seed}: {slots_per_record} slots per record");
        }
    }

    /// Readers on other threads see every record inserted before they
    /// started, and only whole records, while a writer grows the index.
    #[test]
    fn concurrent_readers_during_growth() {
        use std::sync::atomic::{AtomicBool, AtomicUsize};
        use std::sync::Arc;
        let index: &'static Index = Box::leak(Box::new(Index::new()));
        let mut writer = Writer::default();
        let key = |i: usize| 0x5500_0000usize + i * 16;
        for i in 0..100 {
            index.get_or_insert(&mut writer, key(i)).effective.store(key(i) as *mut RawTable, Ordering::Release);
        }
        let done = Arc::new(AtomicBool::new(false));
        let inserted = Arc::new(AtomicUsize::new(100));
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let (done, inserted) = (done.clone(), inserted.clone());
                std::thread::spawn(move || {
                    let mut rounds = 0u32;
                    while !done.load(Ordering::Acquire) || rounds == 0 {
                        let n = inserted.load(Ordering::Acquire);
                        for i in (0..n).step_by(7) {
                            let r = index.find(key(i)).expect("inserted before the read began");
                            assert_eq!(r.key, key(i));
                            assert_eq!(r.effective.load(Ordering::Acquire) as usize, key(i));
                        }
                        rounds += 1;
                    }
                })
            })
            .collect();
        for i in 100..30_000 {
            index.get_or_insert(&mut writer, key(i)).effective.store(key(i) as *mut RawTable, Ordering::Release);
            inserted.store(i + 1, Ordering::Release);
        }
        done.store(true, Ordering::Release);
        for r in readers {
            r.join().expect("reader thread");
        }
        // Leak the writer with the leaked index (records outlive readers).
        core::mem::forget(writer);
    }
}
