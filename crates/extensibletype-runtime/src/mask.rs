//! Python overrides win (docs/spec.md §9): a typed slot `…:m#…` found on a
//! class of `type(obj).__mro__` misses when a class *before* that provider
//! has `m` in its own `__dict__`.
//!
//! The mask is applied where a table is computed, never by readers (the
//! table format and the header's inline lookup do not change):
//!
//! - publishing an extensible class ([`crate::registry`]) drops masked
//!   entries from its effective table, from [`Facts`] gathered (with the
//!   GIL, before the registry mutex) about the own namespaces of its MRO;
//!   assigning or deleting a typed method name on an extensible class
//!   republishes it and its subclasses (`metaclass::meta_setattro`). When a
//!   class whose assignments no hook sees (a plain, mutable class: a
//!   mixin) stands before the provider of a typed entry, the class's
//!   table is *not* published in its type data: its lookups take the type
//!   cache, whose entries CPython's version tags invalidate;
//! - the type cache and the slow path (`cache::effective_table`,
//!   `metaclass::find_slow`) merge own tables along the MRO and mask with
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
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::RwLock;

use pyo3_ffi::*;

use crate::key::typed_method_name;
use crate::layout;
use crate::pyutil::{Owned, PendingError};
use crate::table::RawTable;
use crate::Error;

/// Typed ids and their method names, for every reader (GIL-free too).
struct Typed {
    by_id: HashMap<u64, Box<str>>,
    names: HashSet<Box<str>>,
}

static TYPED: RwLock<Option<Typed>> = RwLock::new(None);
/// Set once any typed key is known (until then nothing is ever masked).
static ANY: AtomicBool = AtomicBool::new(false);
/// Bumped after every own-namespace change of an extensible class that can
/// change a mask (see [`note_dict_change`]).
static DICT_GENERATION: AtomicU64 = AtomicU64::new(0);

/// Record `key`'s id if it is a typed key. Runs no Python code (callers may
/// hold the registry mutex).
pub(crate) fn note_key(id: u64, key: &str) {
    let Some(method) = typed_method_name(key) else { return };
    let mut guard = TYPED.write().unwrap_or_else(|p| p.into_inner());
    let typed = guard.get_or_insert_with(|| Typed { by_id: HashMap::new(), names: HashSet::new() });
    typed.by_id.entry(id).or_insert_with(|| method.into());
    if !typed.names.contains(method) {
        typed.names.insert(method.into());
    }
    ANY.store(true, Ordering::Release);
}

/// Is any typed key known? (Nothing can be masked before.) GIL-free.
#[inline]
pub(crate) fn any_typed() -> bool {
    ANY.load(Ordering::Acquire)
}

/// The method name of typed id `id`, if known. GIL-free.
pub(crate) fn method_of(id: u64) -> Option<Box<str>> {
    if !any_typed() {
        return None;
    }
    let guard = TYPED.read().unwrap_or_else(|p| p.into_inner());
    guard.as_ref()?.by_id.get(&id).cloned()
}

/// Is `id` a known typed id? GIL-free.
pub(crate) fn is_typed(id: u64) -> bool {
    any_typed() && TYPED.read().unwrap_or_else(|p| p.into_inner()).as_ref().is_some_and(|t| t.by_id.contains_key(&id))
}

/// Is `name` the method name of some known typed key? GIL-free.
pub(crate) fn is_method_name(name: &str) -> bool {
    any_typed() && TYPED.read().unwrap_or_else(|p| p.into_inner()).as_ref().is_some_and(|t| t.names.contains(name))
}

/// Does `table` hold a typed id? GIL-free.
///
/// # Safety
/// `table` is a live table.
pub(crate) unsafe fn has_typed(table: *const RawTable) -> bool {
    if !any_typed() {
        return false;
    }
    let guard = TYPED.read().unwrap_or_else(|p| p.into_inner());
    let Some(typed) = guard.as_ref() else { return false };
    // SAFETY: forwarded.
    unsafe { crate::cache::entries_of(table) }.iter().any(|e| e.id != 0 && typed.by_id.contains_key(&e.id))
}

/// The current own-namespace generation (read before gathering [`Facts`]).
pub(crate) fn dict_generation() -> u64 {
    DICT_GENERATION.load(Ordering::Acquire)
}

/// An extensible class's own namespace changed under a typed method name:
/// facts gathered before are stale (the registry retries a publish that
/// gathered them). Call after the change, before republishing.
pub(crate) fn note_dict_change() {
    DICT_GENERATION.fetch_add(1, Ordering::AcqRel);
}

/// Does `tp`'s own namespace hold `name`? Needs an attached thread state;
/// any pending exception is kept (saved and restored); Err(()) when the
/// namespace could not be read (the error is cleared).
///
/// # Safety
/// `tp` is a live, ready type; the calling thread has an attached thread
/// state.
pub(crate) unsafe fn own_dict_has(tp: *mut PyTypeObject, name: &str) -> Result<bool, ()> {
    // SAFETY: attached thread state (the caller's contract); every object
    // made here is released before returning.
    unsafe {
        let pending = PendingError::take();
        let answer = (|| {
            let dict = Owned::new(layout::own_dict(tp)).map_err(|_| ())?;
            let key = Owned::new(PyUnicode_FromStringAndSize(name.as_ptr().cast(), name.len() as isize)).map_err(|_| ())?;
            match PySequence_Contains(dict.0, key.0) {
                0 => Ok(false),
                1 => Ok(true),
                _ => Err(()),
            }
        })();
        if answer.is_err() {
            PyErr_Clear();
        }
        pending.restore();
        answer
    }
}

/// What the own namespaces of some classes hold, gathered with the GIL
/// before the registry mutex is taken (nothing under it runs Python code):
/// `(class address, method name) -> present`.
#[derive(Default)]
pub(crate) struct Facts {
    known: HashMap<(usize, Box<str>), bool>,
    /// [`dict_generation`] when gathering began.
    pub generation: u64,
}

impl Facts {
    /// Start afresh (the generation moved: every fact may be stale).
    pub fn reset(&mut self) {
        self.known.clear();
        self.generation = dict_generation();
    }

    /// Is `name` in `tp`'s own namespace? None: not gathered.
    pub fn get(&self, tp: *mut PyTypeObject, name: &str) -> Option<bool> {
        // A borrowed-key lookup would need a custom Borrow; these maps are small.
        self.known.get(&(tp as usize, Box::from(name))).copied()
    }

    /// Gather `pairs` (skipping known ones).
    ///
    /// # Safety
    /// The calling thread has an attached thread state; every type in
    /// `pairs` is alive (held by the caller).
    pub unsafe fn gather(&mut self, pairs: impl IntoIterator<Item = (*mut PyTypeObject, Box<str>)>) -> Result<(), Error> {
        for (tp, name) in pairs {
            let key = (tp as usize, name);
            if self.known.contains_key(&key) {
                continue;
            }
            // SAFETY: forwarded; errors are raised (the publish fails).
            let present = unsafe {
                let dict = Owned::new(layout::own_dict(tp))?;
                let k = Owned::new(PyUnicode_FromStringAndSize(key.1.as_ptr().cast(), key.1.len() as isize))?;
                match PySequence_Contains(dict.0, k.0) {
                    0 => false,
                    1 => true,
                    _ => return Err(Error::Python),
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
    let mut memo: HashMap<(usize, Box<str>), bool> = HashMap::new();
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
            let key = (tp as usize, name.clone());
            let present = match memo.get(&key) {
                Some(&p) => Ok(p),
                // SAFETY: attached thread state; tp is alive (in `mro`).
                None => unsafe { own_dict_has(tp, &name) },
            };
            match present {
                Ok(p) => {
                    memo.insert(key, p);
                    if p {
                        return false;
                    }
                }
                Err(()) => {
                    exact = false;
                    return false;
                }
            }
        }
        true
    });
    exact
}
