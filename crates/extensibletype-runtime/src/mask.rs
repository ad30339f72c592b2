//! Python overrides win (docs/spec.md §4.1): a typed slot `…:m#…` found on a
//! class of `type(obj).__mro__` misses when a class *before* that provider
//! has `m` in its own `__dict__`.
//!
//! The mask is applied where a table is computed, never by readers (the
//! table format and the header's inline lookup do not change):
//!
//! - publishing an extensible class ([`crate::write::registry`]) drops masked
//!   entries from its effective table, from [`Facts`] gathered (with the
//!   GIL, before the registry mutex) about the own namespaces of its MRO;
//!   assigning or deleting a typed method name on an extensible class
//!   republishes it and its subclasses (`metaclass::meta_setattro`). When a
//!   class whose assignments no hook sees (a plain, mutable class: a
//!   mixin) stands before the provider of a typed entry, the class's
//!   table is *not* published in its type data: its lookups take the type
//!   cache, whose entries CPython's version tags invalidate;
//! - the type cache and the slow path (`lookup/slow.rs`: one
//!   decision tree for a whole table and for one id) merge own tables along the MRO and mask with
//!   [`filter`]: the namespaces are read only with an attached thread
//!   state; without one every typed entry that a class before its provider
//!   could mask is dropped and the answer is not cached (a miss is allowed,
//!   a stale pointer never).
//!
//! Typed ids are known by name only: [`note_key`] records every key string
//! the registry learns (keys given as `str`/`bytes`/C `key`). A slot set by
//! raw integer id whose key string the process never saw is untyped here,
//! and never masked.

use core::ffi::c_void;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use pyo3_ffi::*;

use crate::key::typed_method_name;
use crate::idhash::{IdMap, IdSet};
use crate::layout;
use crate::pyutil::{Owned, PendingError};
use crate::table::RawTable;
use crate::PyErrSet;


/// Typed ids and their method names, for every reader (GIL-free too).
struct Typed {
    by_id: IdMap<u64, Arc<str>>,
    names: IdSet<Arc<str>>,
}

/// The typed keys known so far (the owner's, `crate::owner::Owner::typed`).
pub(crate) struct TypedKeys {
    typed: RwLock<Option<Typed>>,
    /// Set once any typed key is known (until then nothing is ever masked).
    any: AtomicBool,
    /// Bumped after every own-namespace change of an extensible class that
    /// can change a mask (see [`note_dict_change`]).
    dict_generation: AtomicU64,
}

impl TypedKeys {
    /// None known.
    pub(crate) const fn new() -> TypedKeys {
        TypedKeys { typed: RwLock::new(None), any: AtomicBool::new(false), dict_generation: AtomicU64::new(0) }
    }
}

use crate::owner::OWNER;

/// Record `key`'s id if it is a typed key. Runs no Python code (callers may
/// hold the registry mutex).
pub(crate) fn note_key(id: u64, key: &str) {
    let Some(method) = typed_method_name(key) else { return };
    let mut guard = OWNER.typed.typed.write().unwrap_or_else(|p| p.into_inner());
    let typed = guard.get_or_insert_with(|| Typed { by_id: IdMap::default(), names: IdSet::default() });
    let method: Arc<str> = typed.names.get(method).cloned().unwrap_or_else(|| method.into());
    typed.names.insert(method.clone());
    typed.by_id.entry(id).or_insert(method);
    OWNER.typed.any.store(true, Ordering::Release);
}

/// Is any typed key known? (Nothing can be masked before.) GIL-free.
#[inline]
pub(crate) fn any_typed() -> bool {
    OWNER.typed.any.load(Ordering::Acquire)
}

/// The method name of typed id `id`, if known. GIL-free.
pub(crate) fn method_of(id: u64) -> Option<Arc<str>> {
    if !any_typed() {
        return None;
    }
    let guard = OWNER.typed.typed.read().unwrap_or_else(|p| p.into_inner());
    guard.as_ref()?.by_id.get(&id).cloned()
}

/// Call `f(id, method)` for each known typed id among `ids` (one read
/// lock for all). GIL-free.
pub(crate) fn for_each_method(ids: impl IntoIterator<Item = u64>, mut f: impl FnMut(u64, &Arc<str>)) {
    if !any_typed() {
        return;
    }
    let guard = OWNER.typed.typed.read().unwrap_or_else(|p| p.into_inner());
    let Some(typed) = guard.as_ref() else { return };
    for id in ids {
        if let Some(name) = typed.by_id.get(&id) {
            f(id, name);
        }
    }
}

/// Is `id` a known typed id? GIL-free.
pub(crate) fn is_typed(id: u64) -> bool {
    any_typed() && OWNER.typed.typed.read().unwrap_or_else(|p| p.into_inner()).as_ref().is_some_and(|t| t.by_id.contains_key(&id))
}

/// Is `name` the method name of some known typed key? GIL-free.
pub(crate) fn is_method_name(name: &str) -> bool {
    any_typed() && OWNER.typed.typed.read().unwrap_or_else(|p| p.into_inner()).as_ref().is_some_and(|t| t.names.contains(name))
}

/// Does `table` hold a typed id? GIL-free.
///
/// # Safety
/// `table` is a live table.
pub(crate) unsafe fn has_typed(table: *const RawTable) -> bool {
    if !any_typed() {
        return false;
    }
    let guard = OWNER.typed.typed.read().unwrap_or_else(|p| p.into_inner());
    let Some(typed) = guard.as_ref() else { return false };
    // SAFETY: forwarded.
    unsafe { crate::cache::entries_of(table) }.iter().any(|e| e.id != 0 && typed.by_id.contains_key(&e.id))
}

/// The current own-namespace generation (read before gathering [`Facts`]).
pub(crate) fn dict_generation() -> u64 {
    OWNER.typed.dict_generation.load(Ordering::Acquire)
}

/// An extensible class's own namespace changed under a typed method name:
/// facts gathered before are stale (the registry retries a publish that
/// gathered them). Call after the change, before republishing.
pub(crate) fn note_dict_change() {
    OWNER.typed.dict_generation.fetch_add(1, Ordering::AcqRel);
}

/// Does `tp`'s own namespace hold `name`? Needs an attached thread state;
/// any pending exception is kept (saved and restored); None when the
/// namespace could not be read (that error is cleared: not an error of the
/// caller, an unknown answer).
///
/// # Safety
/// `tp` is a live, ready type; the calling thread has an attached thread
/// state.
pub(crate) unsafe fn own_dict_has(tp: *mut PyTypeObject, name: &str) -> Option<bool> {
    // SAFETY: attached thread state (the caller's contract); every object
    // made here is released before returning.
    unsafe {
        let pending = PendingError::take();
        let answer = (|| {
            let dict = Owned::new(layout::own_dict(tp)).ok()?;
            let key = Owned::new(PyUnicode_FromStringAndSize(name.as_ptr().cast(), name.len() as isize)).ok()?;
            match PySequence_Contains(dict.0, key.0) {
                0 => Some(false),
                1 => Some(true),
                _ => None,
            }
        })();
        if answer.is_none() {
            PyErr_Clear();
        }
        pending.restore();
        answer
    }
}

/// What the own namespaces of some classes hold, gathered with the GIL
/// before the registry mutex is taken (nothing under it runs Python code):
/// `(class address, typed id) -> its method name is present`.
#[derive(Default)]
pub(crate) struct Facts {
    known: IdMap<(usize, u64), bool>,
    /// Method names of the typed ids asked about.
    names: IdMap<u64, Arc<str>>,
    /// [`dict_generation`] when gathering began.
    pub generation: u64,
}

/// Facts to gather: is the method name of typed id `id` in the own
/// namespace of `tp`? (Each name stored once.)
#[derive(Default)]
pub(crate) struct Wanted {
    pairs: Vec<(*mut PyTypeObject, u64)>,
    names: IdMap<u64, Arc<str>>,
}

impl Wanted {
    /// Ask about `name` (the method name of `id`) in `tp`'s namespace.
    pub fn add(&mut self, tp: *mut PyTypeObject, id: u64, name: &Arc<str>) {
        self.names.entry(id).or_insert_with(|| name.clone());
        self.pairs.push((tp, id));
    }

    /// Nothing asked?
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }
}

impl Facts {
    /// Start afresh (the generation moved: every fact may be stale).
    pub fn reset(&mut self) {
        self.known.clear();
        self.generation = dict_generation();
    }

    /// The method name of typed id `id`, if a fact about it was gathered.
    pub fn name_of(&self, id: u64) -> Option<&Arc<str>> {
        self.names.get(&id)
    }

    /// Is the method name of `id` in `tp`'s own namespace? None: not gathered.
    pub fn get(&self, tp: *mut PyTypeObject, id: u64) -> Option<bool> {
        self.known.get(&(tp as usize, id)).copied()
    }

    /// Gather `wanted` (skipping known facts).
    ///
    /// # Safety
    /// The calling thread has an attached thread state; every type in
    /// `wanted` is alive (held by the caller).
    pub unsafe fn gather(&mut self, wanted: &Wanted) -> Result<(), PyErrSet> {
        // One str per name; the namespace of the last class asked about.
        let mut strs: Vec<(u64, Owned)> = Vec::new();
        let mut dict: Option<(usize, Owned)> = None;
        self.known.reserve(wanted.pairs.len());
        for &(tp, id) in &wanted.pairs {
            let key = (tp as usize, id);
            if self.known.contains_key(&key) {
                continue;
            }
            let Some(name) = wanted.names.get(&id) else { continue };
            self.names.entry(id).or_insert_with(|| name.clone());
            // SAFETY: forwarded; errors are raised (the publish fails).
            let present = unsafe {
                if dict.as_ref().is_none_or(|d| d.0 != key.0) {
                    dict = Some((key.0, Owned::new(layout::own_dict(tp))?));
                }
                // Few names per publish: a linear scan beats hashing.
                let at = match strs.iter().position(|s| s.0 == id) {
                    Some(at) => at,
                    None => {
                        let s = Owned::new(PyUnicode_FromStringAndSize(name.as_ptr().cast(), name.len() as isize))?;
                        strs.push((id, s));
                        strs.len() - 1
                    }
                };
                match PySequence_Contains(dict.as_ref().map_or(core::ptr::null_mut(), |d| d.1 .0), strs[at].1 .0) {
                    0 => false,
                    1 => true,
                    _ => return Err(PyErrSet),
                }
            };
            self.known.insert(key, present);
        }
        Ok(())
    }
}

/// One merged entry: id, pointer, index in the MRO of its provider.
pub(crate) type Provided = (u64, *const c_void, usize);

/// Drop the entries of `entries` (merged along `mro`) that a Python
/// override masks. Returns whether the answer is exact: false when some
/// entry was dropped only because the namespaces could not be read (no
/// attached thread state, or a read failed) — such an answer may be given
/// but never cached. GIL-free callable.
///
/// # Safety
/// Every type in `mro` is alive; a thread without an attached thread state
/// is inside a `threads::Section`.
pub(crate) unsafe fn filter(mro: &[*mut PyTypeObject], entries: &mut Vec<Provided>) -> bool {
    if !any_typed() || entries.iter().all(|e| e.2 == 0) {
        return true;
    }
    let attached = crate::threads::attached();
    let mut exact = true;
    let mut memo: IdMap<(usize, u64), bool> = IdMap::default();
    entries.retain(|&(id, _, provider)| {
        if provider == 0 {
            return true;
        }
        let Some(name) = method_of(id) else { return true };
        if !attached {
            exact = false;
            return false;
        }
        for &tp in &mro[..provider.min(mro.len())] {
            let key = (tp as usize, id);
            let present = match memo.get(&key) {
                Some(&p) => Some(p),
                // SAFETY: attached thread state; tp is alive (in `mro`).
                None => unsafe { own_dict_has(tp, &name) },
            };
            match present {
                Some(p) => {
                    memo.insert(key, p);
                    if p {
                        return false;
                    }
                }
                None => {
                    exact = false;
                    return false;
                }
            }
        }
        true
    });
    exact
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Typed keys are recognised by name, untyped ones never; a method name
    /// shared by several signatures is one name.
    #[test]
    fn typed_keys_by_id_and_name() {
        let (a, b, u) = ("test.mask.v1:area#f64(O)", "test.mask.v1:area#f64(O,f64)", "test.mask.v1:perimeter");
        let (ia, ib, iu) = (crate::prehash_bytes(a.as_bytes()), crate::prehash_bytes(b.as_bytes()), 0x55);
        note_key(ia, a);
        note_key(ib, b);
        note_key(iu, u);
        assert!(any_typed());
        assert_eq!(method_of(ia).as_deref(), Some("area"));
        assert_eq!(method_of(ib).as_deref(), Some("area"));
        assert!(is_typed(ia) && is_typed(ib) && !is_typed(iu));
        assert!(is_method_name("area") && !is_method_name("perimeter"));
        let mut seen = Vec::new();
        for_each_method([ia, iu, ib], |id, m| seen.push((id, m.to_string())));
        assert_eq!(seen, vec![(ia, "area".to_string()), (ib, "area".to_string())]);
    }

    /// The hasher spreads nearby addresses and distinguishes short strings.
    #[test]
    fn fx_hasher_spreads() {
        use core::hash::BuildHasher;
        let build = crate::idhash::IdBuild::default();
        let hashes: std::collections::HashSet<u64> = (0..1000usize).map(|i| build.hash_one(0x7f00_0000_0000usize + 16 * i)).collect();
        assert_eq!(hashes.len(), 1000);
        assert_ne!(build.hash_one("area"), build.hash_one("aera"));
    }
}
