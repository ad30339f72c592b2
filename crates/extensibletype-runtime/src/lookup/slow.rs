//! The slow path of a lookup (`ExtType_API.find_slow`): everything the
//! inline rungs (the reader: own table, type cache) do not answer, with one
//! decision tree for "which table answers a lookup on `tp`":
//!
//! 1. a table published for `tp` ([`published`]): an extensible type's
//!    (exact: masked by its publisher, docs/spec.md §4.1), or a registered
//!    foreign type's effective table while the MRO it was merged along is
//!    still `tp`'s (exact for untyped ids; for typed ids only when it holds
//!    none: its classes' namespaces change without any hook);
//! 2. otherwise the own slots of each class in the MRO, first definition
//!    wins — exactly the merge a published table would hold (docs/spec.md
//!    §4, §5) — then the Python-override mask (`crate::mask::filter`: exact
//!    with an attached thread state, conservative without).
//!
//! The type cache asks the tree for a whole table ([`effective_table`]: a
//! merge is interned, never freed) and caches it; when the cache is off or
//! busy, [`find_slow`] asks it for one id ([`Mro::find`]: no table built).

use core::ffi::c_void;
use core::ptr;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use pyo3_ffi::*;

use super::cache;
use crate::layout::{self, TypeData, TypeDataExt};
use crate::mask;
use crate::state;
use crate::table::{raw_lookup, RawTable};

/// GIL-free slow path of a lookup (`ExtType_API.find_slow`): through the
/// type cache (which fills `tp`'s entry) when it is on and not busy, else
/// the decision tree for `id` alone (module doc).
///
/// Any thread, with or without a thread state: it calls into CPython only
/// with an attached thread state of the calling thread, and a thread without
/// one answers NULL once interpreter exit began (`crate::threads`).
///
/// # Safety
/// `tp` must be NULL or a live type (the caller holds a reference to it or
/// to an instance).
pub(crate) unsafe extern "C" fn find_slow(tp: *mut PyTypeObject, id: u64) -> *const c_void {
    if tp.is_null() {
        return ptr::null();
    }
    let Some(_section) = crate::threads::Section::enter() else {
        return ptr::null(); // interpreter exit, no thread state
    };
    // SAFETY: `tp` is a live type (the contract); published tables are
    // immutable and live as long as their type (registry tables forever).
    unsafe {
        if let Some(table) = cache::table_for(tp, || effective_table(tp)) {
            return raw_lookup(table, id);
        }
        match published(tp) {
            Some(Published::Exact(table)) => return raw_lookup(table, id),
            Some(Published::Unmasked(table)) if !mask::is_typed(id) => return raw_lookup(table, id),
            _ => {}
        }
        Mro::of(tp).find(id)
    }
}

/// A table published for a type (rung 1 of the tree).
enum Published {
    /// Answers every id (an extensible type's: masked by its publisher).
    Exact(*const RawTable),
    /// Answers untyped ids; typed ids only if it holds none (a registered
    /// foreign type's effective table: not masked).
    Unmasked(*const RawTable),
}

/// The table published for `tp`, if one answers for its current MRO.
///
/// # Safety
/// `tp` must be a live, ready type.
unsafe fn published(tp: *mut PyTypeObject) -> Option<Published> {
    // SAFETY: `tp` is live (the contract): its metaclass and, when
    // extensible, its type data may be read; registry records live forever.
    unsafe {
        if layout::is_extensible(tp) {
            // NULL: initialised with an empty table, or a class whose mask
            // depends on a class no hook watches (published NULL), or never
            // initialised: merge.
            let table = TypeData::load(tp);
            return (!table.is_null()).then_some(Published::Exact(table));
        }
        let record = state::foreign_record(tp)?;
        let table = record.effective.load(Ordering::Acquire);
        (!table.is_null() && mro_unchanged(record, tp)).then_some(Published::Unmasked(table))
    }
}

/// The table a lookup on `tp` probes, computed from the published tables
/// (no GIL), and whether it may be cached: `None` when it would need a new
/// merged table and the cache is busy (the caller then answers per id).
///
/// # Safety
/// `tp` must be a live, ready type; a thread without an attached thread
/// state is inside a `threads::Section`.
unsafe fn effective_table(tp: *mut PyTypeObject) -> Option<(*const RawTable, bool)> {
    // SAFETY: forwarded (the contract).
    unsafe {
        match published(tp) {
            Some(Published::Exact(table)) => return Some((table, true)),
            Some(Published::Unmasked(table)) if !mask::has_typed(table) => return Some((table, true)),
            _ => {}
        }
        Mro::of(tp).table()
    }
}

/// Rung 2 of the tree: `tp`'s MRO and the own tables along it.
struct Mro {
    /// The classes of the MRO, `tp` first.
    classes: Vec<*mut PyTypeObject>,
    /// Each non-NULL own table with the index of its class in `classes`.
    owns: Vec<(*const RawTable, usize)>,
}

impl Mro {
    /// Walk `tp`'s current MRO.
    ///
    /// # Safety
    /// `tp` must be a live, ready type.
    unsafe fn of(tp: *mut PyTypeObject) -> Mro {
        let mut mro = Mro { classes: Vec::new(), owns: Vec::new() };
        // SAFETY: the classes of a live type's MRO are live; own tables
        // live as long as their class (registry tables forever).
        unsafe {
            layout::find_in_mro(tp, false, |t| {
                let own = layout::own_table_of(t);
                if !own.is_null() {
                    mro.owns.push((own, mro.classes.len()));
                }
                mro.classes.push(t);
                None::<()>
            });
        }
        mro
    }

    /// The answer for `id`: its first definition along the MRO, unless a
    /// Python override before its provider masks it.
    ///
    /// # Safety
    /// The classes are alive; a thread without an attached thread state is
    /// inside a `threads::Section`.
    unsafe fn find(&self, id: u64) -> *const c_void {
        for &(own, at) in &self.owns {
            // SAFETY: own tables are live (see `of`).
            let found = unsafe { raw_lookup(own, id) };
            if !found.is_null() {
                let mut entry = vec![(id, found, at)];
                // SAFETY: forwarded.
                unsafe { mask::filter(&self.classes, &mut entry) };
                return entry.first().map_or(ptr::null(), |e| e.1);
            }
        }
        ptr::null()
    }

    /// The merged, masked table (an own table or the empty table when that
    /// is the merge, else an interned one) and whether it is exact; `None`
    /// when a new merged table cannot be interned now (cache busy, or too
    /// many entries).
    ///
    /// # Safety
    /// As [`Mro::find`].
    unsafe fn table(&self) -> Option<(*const RawTable, bool)> {
        match self.owns.len() {
            0 => return Some((cache::empty_table(), true)),
            // SAFETY: own tables are live (see `of`).
            1 if self.owns[0].1 == 0 || unsafe { !mask::has_typed(self.owns[0].0) } => {
                return Some((self.owns[0].0, true))
            }
            _ => {}
        }
        let mut merged: BTreeMap<u64, (usize, usize)> = BTreeMap::new();
        for &(own, at) in &self.owns {
            // SAFETY: own tables are live (see `of`).
            for e in unsafe { cache::entries_of(own) } {
                if e.id != 0 {
                    merged.entry(e.id).or_insert((e.ptr as usize, at));
                }
            }
        }
        let mut provided: Vec<mask::Provided> =
            merged.into_iter().map(|(id, (p, at))| (id, p as *const c_void, at)).collect();
        // SAFETY: forwarded.
        let exact = unsafe { mask::filter(&self.classes, &mut provided) };
        if provided.is_empty() {
            return Some((cache::empty_table(), exact));
        }
        let key: Vec<(u64, usize)> = provided.iter().map(|&(id, p, _)| (id, p as usize)).collect();
        Some((cache::intern(key)?, exact))
    }
}

/// Is the MRO a registered foreign type's effective table was merged along
/// (`record`'s snapshot, loaded after its effective table) still its MRO?
/// (False when unknown: the caller merges afresh.)
///
/// # Safety
/// `tp` must be a live, ready type.
unsafe fn mro_unchanged(record: &state::Record, tp: *mut PyTypeObject) -> bool {
    // SAFETY: published snapshots are never freed; each is
    // `[len, addresses...]`.
    unsafe {
        let snapshot: *const usize = record.mro.load(Ordering::Acquire);
        if snapshot.is_null() {
            return false;
        }
        let len = *snapshot;
        let mut i = 0;
        let same = layout::find_in_mro(tp, false, |t| {
            i += 1;
            (i > len || *snapshot.add(i) != t as usize).then_some(())
        })
        .is_none();
        same && i == len
    }
}
