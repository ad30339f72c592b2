//! The state the runtime shares between its writers (the registry, under
//! its mutex) and its GIL-free readers (layout, the type cache, the lookup
//! slow path): one type's slots and tables, and the process-wide tables the
//! registry publishes (kept in `crate::owner::OWNER`). Plain data: this
//! module calls into no other module of the runtime, so `layout` and
//! `registry` both build on it without depending on each other.

use core::ffi::c_void;
use core::ptr;
use std::hash::{Hash, Hasher};
use std::sync::atomic::Ordering;

use pyo3_ffi::*;

pub(crate) use crate::foreign::Record;
use crate::owner::OWNER;
use crate::idhash::{IdHasher, IdMap};
use crate::table::{raw_lookup, RawTable, Table};

/// One registered implementation. `owner` (nullable) is the Python object
/// backing `ptr`; it is referenced by the `owners` of every type whose tables
/// use it, so this borrowed pointer stays valid as long as the slot does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Slot {
    pub ptr: *const c_void,
    pub owner: *mut PyObject,
}

/// One requested change: set `id` to `value`, or remove it (`None`).
pub(crate) struct Change {
    pub id: u64,
    /// The key string, when the slot was named by key (for the interner;
    /// shared with the key-id memo, `convert::key_of_name`).
    pub name: Option<std::sync::Arc<str>>,
    pub value: Option<Slot>,
}

/// The slots set on one type itself, sorted by id (distinct ids). A sorted
/// vector, not a `BTreeMap`: a class statement builds one per class (one
/// allocation and a small sort instead of a tree's nodes), and every reader
/// of it walks it in id order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct OwnSlots(Vec<(u64, Slot)>);

impl OwnSlots {
    /// No slots.
    pub const fn new() -> OwnSlots {
        OwnSlots(Vec::new())
    }

    /// How many slots.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// No slots at all?
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `(id, slot)` pairs in id order.
    pub fn iter(&self) -> impl Iterator<Item = (&u64, &Slot)> + '_ {
        self.0.iter().map(|(id, slot)| (id, slot))
    }

    /// Set (`Some`) or remove (`None`) each `(id, value)` of `changes`, in
    /// order (a later change of the same id wins): one sort of the changes
    /// and one merge, so a call with many changes on a type with many
    /// slots stays `O(n + m log m)`.
    pub fn update(&mut self, changes: impl Iterator<Item = (u64, Option<Slot>)>) {
        let mut changes: Vec<(u64, Option<Slot>)> = changes.collect();
        if changes.is_empty() {
            return;
        }
        changes.sort_by_key(|c| c.0); // stable: repeats stay in call order
        let old = core::mem::take(&mut self.0);
        let mut merged = Vec::with_capacity(old.len() + changes.len());
        let mut old = old.into_iter().peekable();
        let mut changes = changes.into_iter().peekable();
        while let Some((id, value)) = changes.next() {
            if changes.peek().is_some_and(|c| c.0 == id) {
                continue; // a later change of the same id wins
            }
            while let Some(&(o, _)) = old.peek() {
                if o >= id {
                    break;
                }
                merged.extend(old.next());
            }
            if old.peek().is_some_and(|&(o, _)| o == id) {
                old.next(); // replaced or removed
            }
            if let Some(slot) = value {
                merged.push((id, slot));
            }
        }
        merged.extend(old);
        self.0 = merged;
    }
}

impl FromIterator<(u64, Slot)> for OwnSlots {
    /// From pairs with distinct ids, in any order.
    fn from_iter<I: IntoIterator<Item = (u64, Slot)>>(pairs: I) -> OwnSlots {
        let mut v: Vec<(u64, Slot)> = pairs.into_iter().collect();
        v.sort_unstable_by_key(|e| e.0);
        debug_assert!(v.windows(2).all(|w| w[0].0 < w[1].0), "distinct ids");
        OwnSlots(v)
    }
}

impl<'a> IntoIterator for &'a OwnSlots {
    type Item = (&'a u64, &'a Slot);
    type IntoIter = core::iter::Map<core::slice::Iter<'a, (u64, Slot)>, fn(&'a (u64, Slot)) -> (&'a u64, &'a Slot)>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(id, slot)| (id, slot))
    }
}

/// Which table holds a type's own slots.
pub(crate) enum OwnTable {
    /// Its effective table (nothing inherited): no second table.
    SameAsEffective,
    /// A table of its own (`Prepared::Empty` when it has no own slots).
    Separate(Prepared),
}

/// A table to publish, found or built before anything is committed (so a
/// failed build changes nothing).
pub(crate) enum Prepared {
    /// No entries: publish NULL.
    Empty,
    /// The index of a table this type already published with the same
    /// content (interned: nothing is allocated). Only valid for the state
    /// that prepared it.
    Known(u32),
    /// A table with content this type never published.
    New(Table),
}

/// The content of a table as sorted `(id, ptr)` pairs.
pub(crate) type Content = [(u64, *const c_void)];

/// A hash of a table's content (sorted pairs), to find an interned table.
fn content_hash(content: &Content) -> u64 {
    let mut h = IdHasher::default();
    for &(id, p) in content {
        (id, p as usize).hash(&mut h);
    }
    h.finish()
}

/// Does `table` hold exactly `content` (sorted, distinct ids)?
fn same_content(table: &Table, content: &Content) -> bool {
    table.len() == content.len() && content.iter().all(|&(id, p)| table.get(id) == Some(p))
}

/// Every table one type (or one foreign address) published, once per
/// content: a type that returns to a content it had reuses that table.
/// Freed with the type (never, for a foreign address).
#[derive(Default)]
pub(crate) struct Interned {
    tables: Vec<Table>,
    /// Content hash → index into `tables` (the first table with that hash:
    /// a 64-bit collision only costs the later table its interning); built
    /// once there are more than [`LINEAR`] tables (most types have one or
    /// two: a scan is smaller).
    #[allow(clippy::box_collection)] // 8 bytes per type instead of 48
    by_content: Option<Box<IdMap<u64, u32>>>,
}

/// Up to this many tables, [`Interned`] finds a content by scanning.
const LINEAR: usize = 8;

impl Interned {
    /// The interned table with exactly `content`, if any.
    pub fn find(&self, content: &Content) -> Option<u32> {
        match &self.by_content {
            None => self.tables.iter().position(|t| same_content(t, content)).map(|i| i as u32),
            Some(map) => {
                let i = *map.get(&content_hash(content))?;
                same_content(&self.tables[i as usize], content).then_some(i)
            }
        }
    }

    /// Find or build (not yet intern) the table for `content` (sorted pairs):
    /// a flat table when it is small enough (`Table::build_published`).
    pub fn prepare(&self, content: &Content) -> Result<Prepared, crate::BuildError> {
        if content.is_empty() {
            return Ok(Prepared::Empty);
        }
        if let Some(i) = self.find(content) {
            return Ok(Prepared::Known(i));
        }
        Table::build_published(content).map(Prepared::New)
    }

    /// Intern a prepared table; its index (None for `Empty`).
    pub fn adopt(&mut self, prepared: Prepared) -> Option<u32> {
        match prepared {
            Prepared::Empty => None,
            Prepared::Known(i) => Some(i),
            Prepared::New(table) if self.tables.is_empty() => {
                // The first table (a new class): nothing to find it among.
                self.tables.reserve_exact(1);
                self.tables.push(table);
                Some(0)
            }
            Prepared::New(table) => {
                let mut content: Vec<(u64, *const c_void)> = table.iter().collect();
                content.sort_unstable_by_key(|e| e.0);
                if let Some(i) = self.find(&content) {
                    return Some(i); // built twice in one call
                }
                let i = self.tables.len() as u32;
                self.tables.push(table);
                if let Some(map) = &mut self.by_content {
                    map.entry(content_hash(&content)).or_insert(i);
                } else if self.tables.len() > LINEAR {
                    let mut map: IdMap<u64, u32> = IdMap::default();
                    for (j, t) in self.tables.iter().enumerate() {
                        let mut c: Vec<(u64, *const c_void)> = t.iter().collect();
                        c.sort_unstable_by_key(|e| e.0);
                        map.entry(content_hash(&c)).or_insert(j as u32);
                    }
                    self.by_content = Some(Box::new(map));
                }
                Some(i)
            }
        }
    }

    /// The interned table at `index` (from `adopt`).
    pub fn get(&self, index: Option<u32>) -> Option<&Table> {
        index.map(|i| &self.tables[i as usize])
    }

    /// The pointer of the interned table at `index` (NULL for None).
    pub fn raw(&self, index: Option<u32>) -> *const RawTable {
        self.get(index).map_or(ptr::null(), Table::as_raw)
    }
}

/// The slots and tables of one type (extensible or foreign-registered).
#[derive(Default)]
pub(crate) struct TypeState {
    /// Slots set on this type itself.
    pub own: OwnSlots,
    /// The published table of `own` (None when empty), in `tables`.
    own_table: Option<u32>,
    /// The published effective table (own slots, then bases in MRO order),
    /// None when empty, in `tables`.
    current: Option<u32>,
    /// Every table this type published, by content (current, own and
    /// retired ones); kept while the type lives: GIL-free readers may hold
    /// any of them.
    tables: Interned,
    /// Strong references to every owner used by any of `tables`, sorted by
    /// address (no duplicates).
    owners: Vec<*mut PyObject>,
    /// An extensible type whose current table is *not* in its type data
    /// (a class no hook watches stands before the provider of a typed
    /// entry: readers take the version-tag-checked type cache). Writers only.
    pub indirect: bool,
}

impl TypeState {
    /// The published table, or NULL when empty.
    pub fn current_raw(&self) -> *const RawTable {
        self.tables.raw(self.current)
    }

    /// The published own-slots table, or NULL when there are no own slots.
    pub fn own_raw(&self) -> *const RawTable {
        self.tables.raw(self.own_table)
    }

    /// The published effective table, if any.
    pub fn current(&self) -> Option<&Table> {
        self.tables.get(self.current)
    }

    /// Find (interned) or build the table for `content` (sorted by id,
    /// distinct ids); nothing changes.
    pub fn prepare_content(&self, content: &Content) -> Result<Prepared, crate::BuildError> {
        self.tables.prepare(content)
    }

    /// Make `table` the current table (the old one stays interned); record
    /// the owners. Returns the table to publish (NULL when empty).
    pub(crate) fn install(&mut self, table: Prepared, owners: &[*mut PyObject]) -> *const RawTable {
        for &owner in owners {
            if owner.is_null() {
                continue;
            }
            if let Err(at) = self.owners.binary_search_by_key(&(owner as usize), |&o| o as usize) {
                // SAFETY: the caller holds a strong reference (GIL or attached
                // thread state held); INCREF does not run Python code.
                unsafe { Py_INCREF(owner) };
                self.owners.insert(at, owner);
            }
        }
        self.current = self.tables.adopt(table);
        self.current_raw()
    }

    /// Set the own slots and their table (after `install` of the effective
    /// table it may share); returns the table to publish.
    pub(crate) fn set_own(&mut self, own: OwnSlots, table: OwnTable) -> *const RawTable {
        self.own = own;
        self.own_table = match table {
            OwnTable::SameAsEffective => self.current,
            OwnTable::Separate(prepared) => self.tables.adopt(prepared),
        };
        self.own_raw()
    }

    /// Visit the owners for the cycle collector.
    pub fn traverse(&self, visit: visitproc, arg: *mut c_void) -> i32 {
        for &owner in &self.owners {
            // SAFETY: called from tp_traverse with owners we hold references to.
            let rc = unsafe { visit(owner, arg) };
            if rc != 0 {
                return rc;
            }
        }
        0
    }

    /// Unpublish nothing, free the tables, and hand back the owners for the
    /// caller to DECREF outside any lock.
    pub fn into_owners(self) -> Vec<*mut PyObject> {
        self.owners
    }
}

/// GIL-free: the registry record of a foreign type address, if it was ever
/// registered (its pointers are NULL when it is not registered now).
#[inline]
pub(crate) fn foreign_record(tp: *mut PyTypeObject) -> Option<&'static Record> {
    OWNER.foreign_index.find(tp as usize)
}


/// GIL-free: is `meta` a sub-metaclass seen by a writer?
#[inline]
pub(crate) fn is_registered_metaclass(meta: *mut PyTypeObject) -> bool {
    let table = OWNER.metaclasses.load(Ordering::Acquire);
    // SAFETY: published tables are never freed.
    !table.is_null() && unsafe { !raw_lookup(table, meta as u64).is_null() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn content(n: usize, salt: usize) -> Vec<(u64, *const c_void)> {
        (1..=n as u64).map(|id| (id, (0x1000 + 16 * (id as usize + salt)) as *const c_void)).collect()
    }

    /// Returning to a known content reuses its table, before and after the
    /// content index is built (past `LINEAR` tables); new contents are new.
    #[test]
    fn interned_by_content() {
        let mut interned = Interned::default();
        let mut first = Vec::new();
        for salt in 0..40 {
            let c = content(1 + salt % 3, salt);
            let prepared = interned.prepare(&c).expect("builds");
            assert!(matches!(prepared, Prepared::New(_)), "salt {salt}: a new content is built");
            first.push(interned.adopt(prepared).expect("not empty"));
            assert_eq!(interned.tables.len(), salt + 1);
        }
        for (salt, &index) in first.iter().enumerate() {
            let c = content(1 + salt % 3, salt);
            match interned.prepare(&c).expect("found") {
                Prepared::Known(i) => assert_eq!(i, index),
                _ => panic!("salt {salt}: a known content was not found"),
            }
            let table = interned.get(Some(index)).expect("interned");
            assert!(same_content(table, &c));
        }
        assert!(matches!(interned.prepare(&[]), Ok(Prepared::Empty)));
        assert!(interned.adopt(Prepared::Empty).is_none());
        assert_eq!(interned.tables.len(), 40, "nothing allocated for known contents");
    }

    fn slot(p: usize) -> Slot {
        Slot { ptr: p as *const c_void, owner: ptr::null_mut() }
    }

    /// Own slots stay sorted and distinct through builds and updates (a
    /// later change of an id wins, `None` removes), as a map would.
    #[test]
    fn own_slots_behave_as_a_map() {
        let mut own: OwnSlots = [(5, slot(50)), (1, slot(10)), (3, slot(30))].into_iter().collect();
        let ids = |o: &OwnSlots| o.iter().map(|(&id, s)| (id, s.ptr as usize)).collect::<Vec<_>>();
        assert_eq!(ids(&own), [(1, 10), (3, 30), (5, 50)]);
        own.update([(4, Some(slot(40))), (1, None), (5, Some(slot(51))), (9, None), (4, Some(slot(41)))].into_iter());
        assert_eq!(ids(&own), [(3, 30), (4, 41), (5, 51)]);
        own.update([(2, Some(slot(20))), (2, None)].into_iter());
        assert_eq!(ids(&own), [(3, 30), (4, 41), (5, 51)]);
        own.update(core::iter::empty());
        assert_eq!(own.len(), 3);
        own.update([(3, None), (4, None), (5, None)].into_iter());
        assert!(own.is_empty());
        let mut reference = std::collections::BTreeMap::new();
        let mut own = OwnSlots::new();
        for round in 0..50u64 {
            let changes: Vec<(u64, Option<Slot>)> = (0..round % 7)
                .map(|i| {
                    let id = (round * 31 + i * 17) % 23 + 1;
                    (id, ((round + i) % 3 != 0).then(|| slot((round * 100 + i) as usize + 1)))
                })
                .collect();
            for &(id, v) in &changes {
                match v {
                    Some(s) => reference.insert(id, s),
                    None => reference.remove(&id),
                };
            }
            own.update(changes.into_iter());
            let want: Vec<(u64, usize)> = reference.iter().map(|(&id, s)| (id, s.ptr as usize)).collect();
            assert_eq!(ids(&own), want, "round {round}");
        }
    }

    /// A table built twice in one call (found by `adopt`) is interned once.
    #[test]
    fn adopt_deduplicates() {
        let mut interned = Interned::default();
        let c = content(2, 7);
        let a = interned.prepare(&c).expect("builds");
        let b = interned.prepare(&c).expect("builds");
        let (ia, ib) = (interned.adopt(a), interned.adopt(b));
        assert_eq!(ia, ib);
        assert_eq!(interned.tables.len(), 1);
    }
}
