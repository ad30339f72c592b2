//! The state the runtime shares between its writers (the registry, under
//! its mutex) and its GIL-free readers (layout, the type cache, the lookup
//! slow path): one type's slots and tables, and the process-wide tables the
//! registry publishes. Plain data: this module calls into no other module of
//! the runtime, so `layout` and `registry` both build on it without
//! depending on each other.

use core::ffi::c_void;
use core::ptr;
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicPtr, Ordering};

use pyo3_ffi::*;

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
    /// The key string, when the slot was named by key (for the interner).
    pub name: Option<String>,
    pub value: Option<Slot>,
}

/// The slots set on one type itself, by id.
pub(crate) type OwnSlots = BTreeMap<u64, Slot>;

/// Which table holds a type's own slots.
pub(crate) enum OwnTable {
    /// Its effective table (nothing inherited): no second table.
    SameAsEffective,
    /// A table of its own (None when it has no own slots).
    Separate(Option<Table>),
}

/// The slots and tables of one type (extensible or foreign-registered).
#[derive(Default)]
pub(crate) struct TypeState {
    /// Slots set on this type itself.
    pub own: OwnSlots,
    /// The published table of `own` (NULL when empty); points into `current`
    /// or `retired`, which live as long as the type.
    own_raw: *const RawTable,
    /// The published effective table (own slots, then bases in MRO order).
    current: Option<Table>,
    /// Tables published before `current`; freed with the type.
    retired: Vec<Table>,
    /// Strong references to every owner used by `current` or `retired`.
    owners: Vec<*mut PyObject>,
    owner_set: HashSet<usize>,
}

impl TypeState {
    /// The published table, or NULL when empty.
    pub fn current_raw(&self) -> *const RawTable {
        self.current.as_ref().map_or(ptr::null(), Table::as_raw)
    }

    /// The published own-slots table, or NULL when there are no own slots.
    pub fn own_raw(&self) -> *const RawTable {
        self.own_raw
    }

    /// The published effective table, if any.
    pub fn current(&self) -> Option<&Table> {
        self.current.as_ref()
    }

    /// Replace the current table (retiring the old one); record the owners.
    pub(crate) fn install(&mut self, table: Option<Table>, owners: &[*mut PyObject]) {
        for &owner in owners {
            if !owner.is_null() && self.owner_set.insert(owner as usize) {
                // SAFETY: the caller holds a strong reference (GIL or attached
                // thread state held); INCREF does not run Python code.
                unsafe { Py_INCREF(owner) };
                self.owners.push(owner);
            }
        }
        if let Some(old) = core::mem::replace(&mut self.current, table) {
            self.retired.push(old);
        }
    }

    /// Set the own slots and their table (after `install` of the effective
    /// table it may share); returns the table to publish.
    pub(crate) fn set_own(&mut self, own: OwnSlots, table: OwnTable) -> *const RawTable {
        self.own = own;
        self.own_raw = match table {
            OwnTable::SameAsEffective => self.current_raw(),
            OwnTable::Separate(None) => ptr::null(),
            OwnTable::Separate(Some(table)) => {
                let raw = table.as_raw();
                self.retired.push(table); // kept, like every published table
                raw
            }
        };
        self.own_raw
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

/// Foreign registry: type address → effective table of that type.
pub(crate) static FOREIGN: AtomicPtr<RawTable> = AtomicPtr::new(ptr::null_mut());
/// Foreign own slots: type address → table of the slots set on that type.
pub(crate) static FOREIGN_OWN: AtomicPtr<RawTable> = AtomicPtr::new(ptr::null_mut());
/// Foreign MROs: type address → `[len, addresses...]`, the MRO that type's
/// published effective table was merged along (the type cache compares it
/// with the current MRO: a registered plain class whose `__bases__` changed
/// is answered from its current MRO).
pub(crate) static FOREIGN_MRO: AtomicPtr<RawTable> = AtomicPtr::new(ptr::null_mut());
/// Sub-metaclasses of ExtensibleType: metaclass address → itself.
pub(crate) static METACLASSES: AtomicPtr<RawTable> = AtomicPtr::new(ptr::null_mut());

/// GIL-free: is `meta` a sub-metaclass seen by a writer?
#[inline]
pub(crate) fn is_registered_metaclass(meta: *mut PyTypeObject) -> bool {
    let table = METACLASSES.load(Ordering::Acquire);
    // SAFETY: published tables are never freed.
    !table.is_null() && unsafe { !raw_lookup(table, meta as u64).is_null() }
}
