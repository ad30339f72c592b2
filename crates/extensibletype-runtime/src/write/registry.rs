//! Who owns which slots, and how a change is published.
//!
//! Every writer (`set_slots`, a class statement, `ExtType_FromSpec`) ends in
//! [`apply`]: under one process-wide mutex it merges the new own slots, builds
//! the effective table of the target and of every affected subclass, and only
//! when all builds succeed publishes them with release stores. Old tables are
//! retired, not freed, until their type is deallocated (GIL-free readers are
//! outside CPython's QSBR); each type interns its tables by content, so a
//! change back to a content it had reuses that table. Foreign types are
//! published in the records of a lock-free index ([`crate::owner::Owner::foreign_index`]): a change
//! touches the records of the target and its subclasses only. Python objects
//! that back registered pointers are kept alive by every type whose tables
//! (current or retired) use them.
//!
//! Lock discipline: nothing under the mutex runs Python code (no DECREF, no
//! allocation of Python objects), so a finaliser can never re-enter a writer
//! while the mutex is held. Waiting for the mutex detaches the thread state, so
//! a writer never blocks the GIL or a stop-the-world pause.

use core::ffi::c_void;
use core::ptr;
use std::sync::atomic::Ordering;
use std::sync::{Mutex, MutexGuard};

use pyo3_ffi::*;

use crate::BuildError;
use crate::cpython::layout;
use super::state::{Change, OwnSlots, OwnTable, Prepared, Slot, TypeState};
use crate::owner::OWNER;
use crate::error::Invalid;
use crate::PyErrSet;
use crate::foreign;
use crate::idhash::IdMap;
use crate::table::{Table, MAX_ENTRIES};

/// One address of the foreign registry: the type registered there now (a
/// strong reference; NULL once its own slots were all removed) and
/// everything published for that address, kept for the process (GIL-free
/// readers may hold any of it) and interned by content, so returning to a
/// table or MRO published before allocates nothing.
#[derive(Default)]
struct ForeignType {
    tp: *mut PyTypeObject,
    state: TypeState,
    /// MRO snapshots published, each `[len, type addresses...]`.
    mros: Vec<Box<[usize]>>,
}

impl ForeignType {
    /// The snapshot of `mro` (interned).
    fn mro_snapshot(&mut self, mro: &[*mut PyTypeObject]) -> *const usize {
        let snapshot: Vec<usize> = core::iter::once(mro.len()).chain(mro.iter().map(|&t| t as usize)).collect();
        if let Some(known) = self.mros.iter().find(|m| ***m == *snapshot) {
            return known.as_ptr();
        }
        if self.mros.is_empty() {
            self.mros.reserve_exact(1);
        }
        self.mros.push(snapshot.into_boxed_slice());
        self.mros.last().map_or(ptr::null(), |m| m.as_ptr())
    }
}

/// Everything the mutex protects.
#[derive(Default)]
pub(crate) struct Registry {
    /// Key strings registered by name, by id (collision detection, get_slots).
    names: IdMap<u64, Box<str>>,
    /// Foreign types by address (every address ever registered).
    foreign: IdMap<usize, ForeignType>,
    /// The writer's side of [`crate::owner::Owner::foreign_index`].
    foreign_index: foreign::Writer,
    /// Python subclasses of ExtensibleType seen so far (strong references).
    metaclasses: Vec<*mut PyTypeObject>,
    metaclass_tables: Vec<Table>,
}

// SAFETY: the raw pointers are Python objects and tables only touched while
// the mutex is held by a thread with an attached thread state.
unsafe impl Send for Registry {}

/// The registry, locked. Detaches the thread state while waiting.
pub(crate) struct Locked(MutexGuard<'static, Option<Registry>>);

/// Lock `mutex` without ever blocking while attached to the interpreter:
/// wait detached, then retry attached, so a thread waiting here never holds
/// up the GIL or a stop-the-world pause, and never holds the mutex while it
/// waits to re-attach. Needs an attached thread state.
pub(crate) fn lock_detached<T>(mutex: &'static Mutex<T>) -> MutexGuard<'static, T> {
    loop {
        match mutex.try_lock() {
            Ok(guard) => return guard,
            Err(std::sync::TryLockError::Poisoned(p)) => return p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => {
                // SAFETY: the caller has an attached thread state, restored
                // right after the mutex becomes free.
                unsafe {
                    let ts = PyEval_SaveThread();
                    drop(mutex.lock());
                    PyEval_RestoreThread(ts);
                }
            }
        }
    }
}

impl Locked {
    pub fn get() -> Locked {
        let mut locked = Locked(lock_detached(&OWNER.registry));
        locked.0.get_or_insert_with(Registry::default);
        locked
    }

    pub fn registry(&mut self) -> &mut Registry {
        self.0.as_mut().expect("initialised in Locked::get")
    }
}

/// Is `meta` ExtensibleType or a subclass of it? Registers new subclasses in
/// [`crate::owner::Owner::metaclasses`] so that GIL-free readers recognise them. Needs the GIL.
///
/// # Safety
/// The calling thread holds the GIL (an attached thread state); `reg` is the
/// locked registry; `meta` is a live type.
pub(crate) unsafe fn is_extensible_metaclass(reg: &mut Registry, meta: *mut PyTypeObject) -> bool {
    let base = layout::metaclass();
    if meta == base {
        return true;
    }
    if reg.metaclasses.contains(&meta) {
        return true;
    }
    // SAFETY: both are live type objects; PyType_IsSubtype reads tp_mro only.
    if unsafe { PyType_IsSubtype(meta, base) } == 0 {
        return false;
    }
    // SAFETY: GIL held; the registry keeps metaclasses alive for good.
    unsafe { Py_INCREF(meta.cast()) };
    reg.metaclasses.push(meta);
    let entries: Vec<(u64, *const c_void)> =
        reg.metaclasses.iter().map(|&m| (m as u64, m as *const c_void)).collect();
    let table = Table::build(&entries).expect("metaclass addresses are distinct and non-zero");
    OWNER.metaclasses.store(table.as_raw().cast_mut(), Ordering::Release);
    reg.metaclass_tables.push(table);
    true
}

/// A type together with its MRO, snapshotted (with the GIL) before locking.
pub(crate) struct Target {
    pub tp: *mut PyTypeObject,
    pub mro: Vec<*mut PyTypeObject>,
}

impl Target {
    /// Snapshot `tp`'s MRO. Borrowed pointers: `tp` holds its MRO tuple and
    /// the caller holds `tp`.
    ///
    /// # Safety
    /// The calling thread holds the GIL (an attached thread state); `tp` is a
    /// live, ready type that the caller keeps alive as long as the `Target`.
    pub unsafe fn new(tp: *mut PyTypeObject) -> Target {
        // SAFETY: tp is a live, ready type; tp_mro is a tuple once ready.
        let mro = unsafe { layout::mro(tp) };
        Target { tp, mro }
    }
}

/// The own slots of `tp` as the registry knows them (extensible or foreign).
///
/// # Safety
/// `tp` is a live type; `reg` is the locked registry.
unsafe fn own_of(reg: &Registry, tp: *mut PyTypeObject) -> Option<&OwnSlots> {
    // SAFETY: tp is a live type (in some live type's MRO).
    unsafe {
        if let Some(state) = layout::state_of(tp) {
            return Some(&(*state).own);
        }
    }
    registered(reg, tp).map(|f| &f.state.own)
}

/// The foreign type registered at `tp`'s address now, if any.
fn registered(reg: &Registry, tp: *mut PyTypeObject) -> Option<&ForeignType> {
    reg.foreign.get(&(tp as usize)).filter(|f| !f.tp.is_null())
}

/// Merge own slots along `mro`: first definition wins. `override_own`
/// replaces the own slots of one type (the one being changed). Each slot
/// comes with the index in `mro` of the class that provides it; sorted by
/// id (a vector: the publish path only walks it in order).
///
/// # Safety
/// Every type in `mro` is alive (held by the type the MRO belongs to); `reg` is
/// the locked registry.
unsafe fn effective(
    reg: &Registry,
    mro: &[*mut PyTypeObject],
    changed: *mut PyTypeObject,
    new_own: &OwnSlots,
) -> Vec<(u64, (Slot, usize))> {
    // Gathered in MRO order, then sorted by id (stably: the first class
    // defining an id comes first) and deduplicated: far cheaper than a
    // BTreeMap insert per pair.
    let mut all: Vec<(u64, (Slot, usize))> = Vec::new();
    let mut sources = 0;
    for (at, &tp) in mro.iter().enumerate() {
        let own = if tp == changed {
            Some(new_own)
        } else {
            // SAFETY: `tp` is in `mro`, whose types the caller keeps alive.
            unsafe { own_of(reg, tp) }
        };
        if let Some(own) = own.filter(|o| !o.is_empty()) {
            sources += 1;
            all.extend(own.iter().map(|(&id, &slot)| (id, (slot, at))));
        }
    }
    if sources > 1 {
        all.sort_by_key(|e| e.0);
        all.dedup_by_key(|e| e.0);
    }
    all
}

/// The method name of `id` if its key (registered, or `pending` in this
/// change) is a typed key.
fn typed_name<'a>(reg: &'a Registry, pending: &'a IdMap<u64, &str>, id: u64) -> Option<&'a str> {
    let key = reg.names.get(&id).map(|b| &**b).or_else(|| pending.get(&id).copied())?;
    crate::key::typed_method_name(key)
}

/// Python overrides win (`crate::mask`): drop from `merged` (along `mro`)
/// the typed entries a class before their provider overrides, per `facts`.
/// `typed_names` memoises each id's typed method name (or none) for the
/// publish.
/// Returns the masked slots and whether they may be published directly (no
/// class before the provider of a typed entry is a mutable class whose
/// assignments no hook of ours sees); pairs `facts` lacks go to `missing`.
///
/// # Safety
/// Every type in `mro` is alive; `reg` is the locked registry; GIL held.
unsafe fn masked(
    reg: &mut Registry,
    pending: &IdMap<u64, &str>,
    typed_names: &mut IdMap<u64, Option<std::sync::Arc<str>>>,
    mro: &[*mut PyTypeObject],
    merged: Vec<(u64, (Slot, usize))>,
    facts: &crate::mask::Facts,
    missing: &mut crate::mask::Wanted,
) -> (Vec<(u64, Slot)>, bool) {
    let mut direct = true;
    let mut unhooked: Vec<Option<bool>> = vec![None; mro.len()];
    let mut out = Vec::with_capacity(merged.len());
    for (id, (slot, provider)) in merged {
        let name = match provider {
            0 => None,
            _ => facts.name_of(id).cloned().or_else(|| {
                // Once per id and publish (a publish masks the same ids for
                // every subclass it rebuilds).
                typed_names
                    .entry(id)
                    .or_insert_with(|| typed_name(reg, pending, id).map(std::sync::Arc::<str>::from))
                    .clone()
            }),
        };
        let Some(name) = name else {
            out.push((id, slot));
            continue;
        };
        let mut hidden = false;
        for (j, &tp) in mro[..provider].iter().enumerate() {
            if direct {
                let unwatched = *unhooked[j].get_or_insert_with(|| {
                    // SAFETY: tp is alive (in `mro`); runs no Python code.
                    unsafe { !(is_extensible_metaclass(reg, Py_TYPE(tp.cast())) || layout::is_immutable(tp)) }
                });
                direct = !unwatched;
            }
            match facts.get(tp, id) {
                Some(true) => hidden = true,
                Some(false) => {}
                None => missing.add(tp, id, &name),
            }
        }
        if !hidden {
            out.push((id, slot));
        }
    }
    (out, direct) // in id order, as `merged`
}

/// The (class, method name) pairs a publish of `target` and `affected`
/// will most likely ask about (own tables as published now, plus
/// `changes`), to gather before the mutex; whatever this misses the
/// publish asks for in a second round.
///
/// # Safety
/// GIL held; the types of every MRO are alive.
unsafe fn guess_pairs(target: &Target, affected: &[Target], changes: &[Change]) -> crate::mask::Wanted {
    let mut out = crate::mask::Wanted::default();
    let typed_change =
        |c: &Change| c.name.as_deref().and_then(crate::key::typed_method_name).map(|m| (c.id, std::sync::Arc::<str>::from(m)));
    if !crate::mask::any_typed() && !changes.iter().any(|c| typed_change(c).is_some()) {
        return out;
    }
    let mut names: Vec<(u64, std::sync::Arc<str>)> = Vec::new();
    for t in core::iter::once(target).chain(affected) {
        for (p, &tp) in t.mro.iter().enumerate().skip(1) {
            names.clear();
            if tp == target.tp {
                names.extend(changes.iter().filter_map(typed_change));
            }
            // SAFETY: tp is alive; published own tables live as long as it.
            let own = unsafe { layout::own_table_of(tp) };
            if !own.is_null() {
                // SAFETY: a live table.
                let entries = unsafe { crate::cache::entries_of(own) };
                crate::mask::for_each_method(entries.iter().map(|e| e.id).filter(|&id| id != 0), |id, m| {
                    names.push((id, m.clone()))
                });
            }
            for &before in &t.mro[..p] {
                for (id, name) in &names {
                    out.add(before, *id, name);
                }
            }
        }
    }
    out
}

/// Does `tp` already publish exactly `merged`? (Then republishing would only
/// retire an identical table.)
fn unchanged(reg: &Registry, tp: *mut PyTypeObject, is_ext: bool, merged: &[(u64, Slot)], direct: bool) -> bool {
    let state = if is_ext {
        // SAFETY: tp is a live extensible type; the mutex is held.
        unsafe { layout::state_of(tp).map(|s| &*s) }
    } else {
        registered(reg, tp).map(|f| &f.state)
    };
    let Some(state) = state else { return false };
    if state.indirect == direct {
        return false;
    }
    match state.current() {
        None => merged.is_empty(),
        Some(table) => table.len() == merged.len() && merged.iter().all(|&(id, s)| table.get(id) == Some(s.ptr)),
    }
}

/// The state a table for `tp` is interned in (None: a type with no state
/// yet, whose tables are all new).
fn state_for(reg: &Registry, tp: *mut PyTypeObject, is_ext: bool) -> Option<&TypeState> {
    if is_ext {
        // SAFETY: tp is a live extensible type; the mutex is held, so no
        // writer changes its state.
        unsafe { layout::state_of(tp).map(|s| &*s) }
    } else {
        reg.foreign.get(&(tp as usize)).map(|f| &f.state)
    }
}

/// Find (interned) or build the table of `slots` (sorted by id, distinct)
/// for `tp`, and its owners.
fn prepare(state: Option<&TypeState>, slots: &[(u64, Slot)]) -> Result<(Prepared, Vec<*mut PyObject>), Invalid> {
    let content: Vec<(u64, *const c_void)> = slots.iter().map(|&(id, s)| (id, s.ptr)).collect();
    let prepared = match state {
        Some(state) => state.prepare_content(&content),
        None => TypeState::default().prepare_content(&content),
    }
    .map_err(|e| match e {
        // The effective table holds the type's own slots and every slot it
        // inherits: say so, since the own mapping alone may look small.
        BuildError::TooMany { count } => Invalid(format!(
            "{e}: the effective table counts the type's own slots and every slot it inherits from \
             its bases ({count} in all here)"
        )),
        e => Invalid::from(e),
    })?;
    let owners = slots.iter().map(|s| s.1.owner).filter(|o| !o.is_null()).collect();
    Ok((prepared, owners))
}

/// Apply `changes` to the own slots of `target` and republish the effective
/// tables of `target` and `affected` (its subclasses). All or nothing.
///
/// `reset_own` replaces the own slots instead of updating them (class
/// creation). Needs an attached thread state; runs no Python code under the
/// mutex. A foreign target left with no own slots is unregistered: the
/// registry's reference to it is dropped after the mutex is released (the
/// caller's reference keeps it alive until the caller lets go).
///
/// # Safety
/// The calling thread has an attached thread state; `target.tp`, every
/// `affected[i].tp` and the types of their MROs are alive (held by the caller);
/// the registry mutex is not held by this thread.
pub(crate) unsafe fn apply(
    target: &Target,
    affected: &[Target],
    changes: &[Change],
    reset_own: bool,
) -> Result<(), PyErrSet> {
    // What the own namespaces hold, for the masks (read with the GIL, before
    // the mutex: nothing under it runs Python code). A publish that finds a
    // fact missing, or facts made stale by an own-namespace change of an
    // extensible class meanwhile, gathers again and retries.
    let mut facts = crate::mask::Facts::default();
    facts.reset();
    // SAFETY: GIL held; the types of every MRO are alive (the caller's contract).
    unsafe { facts.gather(&guess_pairs(target, affected, changes))? };
    let released = loop {
        let outcome = {
            let mut locked = Locked::get();
            // SAFETY: forwarded (the caller's contract); the mutex is held.
            unsafe { apply_locked(locked.registry(), target, affected, changes, reset_own, &facts) }
        };
        // Refusals are raised once the mutex is released.
        // SAFETY: an attached thread state (the caller's contract).
        let outcome = outcome.map_err(|e| unsafe { e.raise() })?;
        match outcome {
            Outcome::Done(released) => break released,
            Outcome::Stale => {
                facts.reset();
                // SAFETY: as above.
                unsafe { facts.gather(&guess_pairs(target, affected, changes))? };
            }
            // SAFETY: as above.
            Outcome::Missing(wanted) => unsafe { facts.gather(&wanted)? },
        }
    };
    // Foreign types whose own slots were all removed: the registry's
    // reference goes (outside the mutex: a dealloc may run Python code).
    for tp in released {
        // SAFETY: an attached thread state (the caller's contract); the
        // registry held this strong reference.
        unsafe { Py_DECREF(tp.cast()) };
    }
    Ok(())
}

/// What [`apply_locked`] did.
enum Outcome {
    /// Published; the types the registry let go of.
    Done(Vec<*mut PyTypeObject>),
    /// Nothing changed: an own namespace changed since the facts were
    /// gathered.
    Stale,
    /// Nothing changed: these facts are needed first.
    Missing(crate::mask::Wanted),
}

/// [`apply`] under the mutex; returns the types the registry let go of.
///
/// # Safety
/// As [`apply`]; `reg` is the locked registry.
unsafe fn apply_locked(
    reg: &mut Registry,
    target: &Target,
    affected: &[Target],
    changes: &[Change],
    reset_own: bool,
    facts: &crate::mask::Facts,
) -> Result<Outcome, Invalid> {
    if crate::mask::dict_generation() != facts.generation {
        return Ok(Outcome::Stale);
    }
    // 1. Names: a different key string with a known id is a collision.
    // Only names not registered yet are gathered (a class statement
    // usually repeats known keys: then nothing is allocated or inserted).
    let mut new_names: IdMap<u64, &str> = IdMap::default();
    for change in changes {
        if let Some(name) = change.name.as_deref() {
            match reg.names.get(&change.id) {
                Some(old) if **old != *name => return Err(Invalid::collision(change.id, name, old)),
                Some(_) => {}
                None => match new_names.get(&change.id) {
                    Some(&old) if old != name => return Err(Invalid::collision(change.id, name, old)),
                    _ => {
                        new_names.insert(change.id, name);
                    }
                },
            }
        }
    }

    // 2. The new own slots of the target.
    let mut own = if reset_own {
        // Ids are distinct in one call (convert::check_distinct): built in bulk.
        changes.iter().filter_map(|c| c.value.map(|slot| (c.id, slot))).collect()
    } else {
        // SAFETY: target.tp is live.
        let mut own = unsafe { own_of(reg, target.tp) }.cloned().unwrap_or_default();
        own.update(changes.iter().map(|c| (c.id, c.value)));
        own
    };
    if own.len() > MAX_ENTRIES {
        return Err(crate::BuildError::TooMany { count: own.len() }.into());
    }

    // 3. Find (interned) or build every affected effective table, and the
    // target's own table, before publishing any. A foreign target left with
    // no own slots is unregistered instead (its subclasses are rebuilt).
    let mut built = Vec::with_capacity(1 + affected.len());
    let mut own_table = None;
    let mut unregister = false;
    let mut missing = crate::mask::Wanted::default();
    let mut typed_names = IdMap::default();
    for t in core::iter::once(target).chain(affected) {
        // SAFETY: t.tp is live (held by the caller), so is its metaclass.
        let is_ext = unsafe { is_extensible_metaclass(reg, Py_TYPE(t.tp.cast())) };
        let participates = is_ext || t.tp == target.tp || registered(reg, t.tp).is_some();
        if !participates {
            continue; // plain subclasses of foreign types find them via tp_base
        }
        if t.tp == target.tp && !is_ext && own.is_empty() {
            unregister = registered(reg, t.tp).is_some();
            continue; // nothing to publish: lookups walk the MRO
        }
        // SAFETY: every type in these MROs is alive (held by t.tp).
        let provided = unsafe { effective(reg, &t.mro, target.tp, &own) };
        // Extensible types publish masked tables; a foreign record keeps
        // the merge unmasked (readers mask it: no hook sees its namespaces).
        let (merged, direct) = if is_ext {
            // SAFETY: as above; GIL held, no Python code runs.
            unsafe { masked(reg, &new_names, &mut typed_names, &t.mro, provided, facts, &mut missing) }
        } else {
            (provided.into_iter().map(|(id, (slot, _))| (id, slot)).collect(), true)
        };
        if !missing.is_empty() {
            continue; // asked for below, before anything is built
        }
        if t.tp != target.tp && unchanged(reg, t.tp, is_ext, &merged, direct) {
            continue; // e.g. a subclass overriding every changed key: keep its table
        }
        let state = state_for(reg, t.tp, is_ext);
        if t.tp == target.tp {
            let same = merged.len() == own.len() && merged.iter().zip(&own).all(|(m, (&id, s))| m.0 == id && m.1 == *s);
            own_table = Some(if same {
                OwnTable::SameAsEffective
            } else {
                let own: Vec<(u64, Slot)> = own.iter().map(|(&id, &s)| (id, s)).collect();
                OwnTable::Separate(prepare(state, &own)?.0)
            });
        }
        let (table, owners) = prepare(state, &merged)?;
        built.push((t.tp, is_ext, table, owners, &t.mro, direct));
    }
    if !missing.is_empty() {
        return Ok(Outcome::Missing(missing));
    }

    // 4. Commit: names, own slots, tables.
    for (id, name) in new_names {
        reg.names.entry(id).or_insert_with(|| {
            crate::mask::note_key(id, name);
            name.into()
        });
    }
    let mut released = Vec::new();
    if unregister {
        released.extend(unregister_foreign(reg, target.tp));
    }
    for (tp, is_ext, table, owners, mro, direct) in built {
        let new_own = if tp == target.tp { own_table.take().map(|t| (core::mem::take(&mut own), t)) } else { None };
        if is_ext {
            // SAFETY: tp is extensible and live; we hold the mutex, the only
            // writer of type states.
            unsafe { layout::install(tp, table, &owners, new_own, direct) };
        } else {
            let entry = reg.foreign.entry(tp as usize).or_default();
            if entry.tp.is_null() {
                // SAFETY: GIL held; registered types are kept alive.
                unsafe { Py_INCREF(tp.cast()) };
                entry.tp = tp;
            }
            let effective = entry.state.install(table, &owners);
            let own_raw = new_own.map(|(slots, own_table)| entry.state.set_own(slots, own_table));
            let snapshot = entry.mro_snapshot(mro);
            let record = OWNER.foreign_index.get_or_insert(&mut reg.foreign_index, tp as usize);
            // The MRO and the own table before the effective table: a reader
            // that sees the new effective table sees its MRO.
            record.mro.store(snapshot.cast_mut(), Ordering::Release);
            if let Some(own_raw) = own_raw {
                record.own.store(own_raw.cast_mut(), Ordering::Release);
            }
            record.effective.store(effective.cast_mut(), Ordering::Release);
        }
    }
    // Every answer the type cache holds may have changed.
    crate::cache::invalidate_all();
    Ok(Outcome::Done(released))
}

/// Unpublish the foreign type at `tp`'s address (its own slots are all
/// gone): readers miss from now on. Its tables, MRO snapshots and owners
/// stay with the address (a GIL-free reader may still hold them; the same
/// contents registered there again reuse them). Returns the type, whose
/// reference the caller drops once the mutex is released.
fn unregister_foreign(reg: &mut Registry, tp: *mut PyTypeObject) -> Option<*mut PyTypeObject> {
    let entry = reg.foreign.get_mut(&(tp as usize)).filter(|f| !f.tp.is_null())?;
    if let Some(record) = OWNER.foreign_index.find(tp as usize) {
        record.effective.store(ptr::null_mut(), Ordering::Release);
        record.own.store(ptr::null_mut(), Ordering::Release);
        record.mro.store(ptr::null_mut(), Ordering::Release);
    }
    entry.state.install(Prepared::Empty, &[]);
    entry.state.set_own(OwnSlots::new(), OwnTable::Separate(Prepared::Empty));
    Some(core::mem::replace(&mut entry.tp, ptr::null_mut()))
}

/// What a type's table is, as the registry sees it ([`Locked::table_view`]).
pub(crate) enum TableView<'a> {
    /// The table published for the type (None = empty); `extensible` when
    /// its metaclass derives from ours.
    Published { extensible: bool, table: Option<&'a Table> },
    /// A type with no table of its own (an extensible type never
    /// initialised, a plain subclass of registered types): what lookups
    /// see, merged from its MRO without publishing anything.
    Inherited(Vec<(u64, *const c_void)>),
}

/// The registry's query API: what `get_slots` and `table_info` report
/// (`super::query`), without reaching into the registry's fields.
impl Locked {
    /// The slots a lookup along `mro` finds before the Python-override mask
    /// (id, pointer, index in `mro` of the provider), and the key strings
    /// registered for their ids. Releases the registry.
    ///
    /// # Safety
    /// Every type in `mro` is alive (held by the type it belongs to).
    pub(crate) unsafe fn slots_along(
        mut self,
        mro: &[*mut PyTypeObject],
    ) -> (Vec<crate::mask::Provided>, IdMap<u64, String>) {
        let reg = self.registry();
        // SAFETY: forwarded.
        let merged = unsafe { effective(reg, mro, ptr::null_mut(), &OwnSlots::new()) };
        let provided: Vec<_> = merged.into_iter().map(|(id, (s, at))| (id, s.ptr, at)).collect();
        let names = provided.iter().filter_map(|e| name_of(reg, e.0).map(|n| (e.0, n.to_owned()))).collect();
        (provided, names)
    }

    /// The table a lookup on `tp` probes, as the registry knows it; `mro`
    /// is `tp`'s MRO, snapshotted before the registry was locked (under the
    /// limited API reading it runs Python code).
    ///
    /// # Safety
    /// The calling thread holds the GIL (an attached thread state); `tp` is
    /// a live type and every type in `mro` is alive (held by `tp`).
    pub(crate) unsafe fn table_view(&mut self, tp: *mut PyTypeObject, mro: &[*mut PyTypeObject]) -> TableView<'_> {
        let reg = self.registry();
        // SAFETY: GIL held; `tp` and its metaclass are live.
        let extensible = unsafe { is_extensible_metaclass(reg, Py_TYPE(tp.cast())) };
        let published = if extensible {
            // SAFETY: `tp` is a live extensible type; the mutex is held.
            unsafe { layout::state_of(tp).map(|s| (*s).current()) }
        } else {
            registered(reg, tp).map(|f| f.state.current())
        };
        match published {
            Some(table) => TableView::Published { extensible, table },
            // SAFETY: every type in `mro` is alive.
            None => TableView::Inherited(
                unsafe { effective(reg, mro, ptr::null_mut(), &OwnSlots::new()) }
                    .into_iter()
                    .map(|(id, (s, _))| (id, s.ptr))
                    .collect(),
            ),
        }
    }
}

/// The key string registered for `id`, if any.
fn name_of(reg: &Registry, id: u64) -> Option<&str> {
    reg.names.get(&id).map(|b| &**b)
}

/// Bind `name` to `id` in the interner (ids allocated by other schemes).
pub(crate) fn bind_name(reg: &mut Registry, id: u64, name: &str) -> Result<(), Invalid> {
    match reg.names.get(&id) {
        Some(old) if &**old != name => Err(Invalid::collision(id, name, old)),
        Some(_) => Ok(()),
        None => {
            crate::mask::note_key(id, name);
            reg.names.insert(id, name.into());
            Ok(())
        }
    }
}
