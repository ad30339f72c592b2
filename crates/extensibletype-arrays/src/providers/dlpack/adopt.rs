//! Arrays without registration (docs/spec.md §12.3): the one slow path every
//! array.v1 consumer takes when `type(obj)` has no acquire slot.
//!
//! [`crate::abi::Provider::of_or_raise`] (behind `with_view`, the kernels,
//! `to_dlpack`, and `extensibletype.arrays._adopt`, which the C header's
//! `ExtType_ArrayGetView` calls on a miss) asks [`adopt_on_miss`] once per
//! type: a type exposing DLPack (`__dlpack_c_exchange_api__`, the older
//! `__c_dlpack_exchange_api__`, or `__dlpack__`) gets the same slots
//! `register_dlpack_type` gives it (foreign registry or its own table), so
//! every later lookup is an ordinary hit; any other type gets a `TypeError`
//! naming the key and the DLPack names looked for.
//!
//! - **Provisional until the first export.** A type adopted on a miss gets
//!   a first-use acquire ([`dl_c_acquire_first`], [`dl_py_acquire_first`]).
//!   When the producer's export works (a refused request, such as a
//!   writable view of read-only memory, counts as working), the ordinary
//!   acquire replaces it; when it fails (its `__dlpack__` raises or returns
//!   garbage, a DLPack major version we do not speak) the slots are removed
//!   again, the producer's exception reaches the consumer with a note, and
//!   the type is remembered as refused. The object at hand is exported once:
//!   no trial export. A type registered up front, or a subclass of an
//!   abstract base passed to `register_dlpack_type`, is adopted for good.
//! - **Refusals are remembered per type state**: a small direct-mapped
//!   table (64 entries, so bounded) keyed by (type address, version tag,
//!   interpreter id). CPython gives a type a new tag whenever it or a base
//!   is modified and never reuses one within an interpreter, so an entry
//!   stops answering once the type changes (adoption is then retried) and
//!   never answers for another type at a reused address. Without a tag
//!   (none available) nothing is remembered: each miss probes again.
//! - **Threads and locks**: only callers holding an attached thread state
//!   get here (lookups without one, `ExtType_Find` / `runtime::find`, never
//!   adopt and just miss). Probing and publishing run Python code (attribute
//!   lookups, `set_slots`), so no lock of this module is held across them;
//!   its mutexes guard a few words each.

#[allow(unused_imports)]
use super::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::runtime::pyutil::PendingError;

/// How a type exports DLPack, as far as its attributes tell.
#[derive(Clone, Copy)]
pub(crate) enum Export {
    /// Through its exchange table (`managed_tensor_from_py_object_no_sync`).
    C(*const DLPackExchangeAPI),
    /// Through `obj.__dlpack__()`.
    Python,
}

/// Why a type cannot be adopted.
pub(crate) struct NotUsable {
    /// Neither attribute exists (as opposed to an unusable exchange table).
    pub(crate) no_dlpack: bool,
    /// The reason, for messages ("its type exposes no DLPack (...)").
    pub(crate) text: String,
}

/// The reason given for a type with no DLPack attribute at all.
const NO_DLPACK: &str =
    "its type exposes no DLPack (__dlpack__, __dlpack_c_exchange_api__ or the older __c_dlpack_exchange_api__)";

/// What `tp`'s attributes say. `Err` (an exception set) when an attribute
/// is of the wrong kind (a capsule of another name, ...).
///
/// # Safety
/// The GIL is held; `tp` is a live type.
pub(crate) unsafe fn probe(tp: *mut PyObject) -> Result<Result<Export, NotUsable>, PyErrSet> {
    // SAFETY: GIL held; tp is live; the table behind a capsule is static
    // for the producer's lifetime (the protocol).
    unsafe {
        let api = exchange_api_of(tp)?;
        let usable = api.filter(|&a| {
            let a = &*a;
            a.header.version.major == MAJOR && a.managed_tensor_from_py_object_no_sync.is_some()
        });
        if let Some(a) = usable {
            return Ok(Ok(Export::C(a)));
        }
        if PyObject_HasAttrString(tp, c"__dlpack__".as_ptr()) != 0 {
            return Ok(Ok(Export::Python));
        }
        Ok(Err(match api {
            None => NotUsable { no_dlpack: true, text: NO_DLPACK.into() },
            Some(a) => {
                let v = (*a).header.version;
                NotUsable {
                    no_dlpack: false,
                    text: format!(
                        "its type has a DLPack {}.{} exchange table this consumer cannot use (it speaks {MAJOR}.x) \
                         and no __dlpack__",
                        v.major, v.minor
                    ),
                }
            }
        }))
    }
}

/// Give `tp` the array.v1 slots of `export`: the ordinary acquire, or with
/// `first` the first-use acquire of a type adopted on a miss.
///
/// # Safety
/// The GIL is held; `tp` is a live type; no lock of this module is held.
pub(crate) unsafe fn publish(tp: *mut PyObject, export: Export, first: bool) -> Result<(), PyErrSet> {
    let acquire: AcquireFn = match (export, first) {
        (Export::C(api), false) => acquire_for(api),
        (Export::C(_), true) => dl_c_acquire_first,
        (Export::Python, false) => dl_py_acquire,
        (Export::Python, true) => dl_py_acquire_first,
    };
    let mut defs = vec![
        SlotDef { key: abi::KEY_ACQUIRE.as_ptr(), id: 0, ptr: acquire as *const c_void },
        SlotDef { key: abi::KEY_RELEASE.as_ptr(), id: 0, ptr: dl_release as *const c_void },
    ];
    if let Export::C(a) = export {
        defs.push(SlotDef { key: KEY_EXCHANGE_API.as_ptr(), id: 0, ptr: a.cast() });
    }
    // SAFETY: GIL held; the keys are NUL-terminated statics.
    unsafe { runtime::set_slots(tp, &defs) }?;
    if !first {
        // Adopted for good (up front, or settled): no first use pending.
        // SAFETY: GIL held (the caller's contract).
        drop(unsafe { PROVISIONAL.take(|t| t == tp as usize) });
    }
    Ok(())
}

use crate::abi::AcquireFn;

// ---- type lists (strong references, GIL-free bookkeeping) ----------------------

/// A list of types, each held by a strong reference taken by
/// [`TypeList::push`], with the id of the interpreter it belongs to: every
/// read below sees only the calling interpreter's entries (a type is never
/// compared with, handed to or released by another interpreter).
struct TypeList(Mutex<Vec<(usize, i64)>>);

/// The calling thread's interpreter id.
///
/// # Safety
/// An attached thread state.
unsafe fn interpreter() -> i64 {
    // SAFETY: the caller's contract.
    unsafe { PyInterpreterState_GetID(PyInterpreterState_Get()) }
}

impl TypeList {
    const fn new() -> TypeList {
        TypeList(Mutex::new(Vec::new()))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(usize, i64)>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Add `tp` (a new strong reference) unless it is there.
    ///
    /// # Safety
    /// The GIL is held; `tp` is live.
    unsafe fn push(&self, tp: *mut PyObject) {
        // SAFETY: GIL held.
        let here = unsafe { interpreter() };
        let mut list = self.lock();
        if !list.contains(&(tp as usize, here)) {
            // SAFETY: GIL held; tp is live; the reference is the list's.
            unsafe { Py_INCREF(tp) };
            list.push((tp as usize, here));
        }
    }

    /// Take the first type of this interpreter that `pick` accepts out of
    /// the list (its reference goes to the caller). `pick` must run no
    /// Python code.
    ///
    /// # Safety
    /// The GIL is held.
    unsafe fn take(&self, mut pick: impl FnMut(usize) -> bool) -> Option<Owned> {
        // SAFETY: GIL held.
        let here = unsafe { interpreter() };
        let mut list = self.lock();
        let i = list.iter().position(|&(t, i)| i == here && pick(t))?;
        Some(Owned(list.swap_remove(i).0 as *mut PyObject))
    }

    /// Take every type of this interpreter out (the references go to the caller).
    ///
    /// # Safety
    /// The GIL is held.
    unsafe fn drain(&self) -> Vec<Owned> {
        // SAFETY: GIL held.
        let here = unsafe { interpreter() };
        let mut list = self.lock();
        let mut out = Vec::new();
        list.retain(|&(t, i)| {
            if i == here {
                out.push(Owned(t as *mut PyObject));
            }
            i != here
        });
        out
    }

    /// New references to this interpreter's types.
    ///
    /// # Safety
    /// The GIL is held.
    unsafe fn snapshot(&self) -> Vec<Owned> {
        // SAFETY: GIL held.
        let here = unsafe { interpreter() };
        let list = self.lock();
        list.iter()
            .filter(|&&(_, i)| i == here)
            // SAFETY: GIL held; each listed type is alive (the list holds it).
            .map(|&(t, _)| unsafe { Owned(Py_NewRef(t as *mut PyObject)) })
            .collect()
    }
}

/// Types adopted on a miss (for `_adopted()` and for test clean-up).
static ADOPTED: TypeList = TypeList::new();
/// Adopted on a miss, first export not seen yet (first-use acquire published).
static PROVISIONAL: TypeList = TypeList::new();
/// Abstract bases passed to `register_dlpack_type`: their DLPack subclasses
/// (real or `ABC.register`ed) are adopted for good when met.
static BASES: TypeList = TypeList::new();
/// Adoptions on a miss so far (tests: "once per type").
static ADOPTIONS: AtomicUsize = AtomicUsize::new(0);

// ---- refusals, remembered per type state ---------------------------------------

/// Entries of the refusal table (direct-mapped).
const REFUSED_SLOTS: usize = 64;

/// (type address, version tag, interpreter id): one state of one type.
type StateKey = (usize, u32, i64);

/// A remembered refusal and its reason.
struct Refused {
    key: StateKey,
    reason: Box<str>,
}

static REFUSED: Mutex<Vec<Option<Refused>>> = Mutex::new(Vec::new());

fn refused_index(tp: usize) -> usize {
    ((tp as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - REFUSED_SLOTS.trailing_zeros())) as usize
}

/// The current state of `tp`, or None when it has no version tag.
///
/// # Safety
/// The GIL is held; `tp` is a live, ready type.
unsafe fn state_key(tp: *mut PyObject) -> Option<StateKey> {
    // SAFETY: GIL held (an attached thread state for both calls).
    unsafe {
        let tag = runtime::type_version(tp.cast());
        (tag != 0).then(|| (tp as usize, tag, interpreter()))
    }
}

fn refused_get(key: StateKey) -> Option<Box<str>> {
    let table = REFUSED.lock().unwrap_or_else(|p| p.into_inner());
    match table.get(refused_index(key.0)) {
        Some(Some(r)) if r.key == key => Some(r.reason.clone()),
        _ => None,
    }
}

fn refused_put(key: StateKey, reason: &str) {
    let mut table = REFUSED.lock().unwrap_or_else(|p| p.into_inner());
    if table.is_empty() {
        table.resize_with(REFUSED_SLOTS, || None);
    }
    // Bounded text: a producer's message may be long.
    let reason: String = reason.chars().take(400).collect();
    table[refused_index(key.0)] = Some(Refused { key, reason: reason.into() });
}

/// `TypeError: <class 'X'> object does not provide "...acquire" (not an array provider): {reason}`.
///
/// # Safety
/// The GIL is held; `tp` is live.
unsafe fn not_provider<T>(tp: *mut PyObject, reason: &str) -> Result<T, PyErrSet> {
    let reason = std::ffi::CString::new(reason.replace('\0', "\\0")).expect("NULs replaced");
    // SAFETY: GIL held; the format's arguments match (%R an object, %s C strings).
    unsafe {
        PyErr_Format(
            PyExc_TypeError,
            c"%R object does not provide \"%s\" (not an array provider): %s".as_ptr(),
            tp,
            abi::KEY_ACQUIRE.as_ptr(),
            reason.as_ptr(),
        );
    }
    Err(PyErrSet)
}

// ---- the slow path -------------------------------------------------------------

/// `type(obj)` has no acquire slot: adopt it when it exposes DLPack (then
/// `Ok`: look it up again), else raise `TypeError` naming the key and the
/// DLPack names (or the remembered reason it was refused).
///
/// # Safety
/// The GIL is held (an attached thread state); `obj` is live; no lock of
/// this module is held.
pub(crate) unsafe fn adopt_on_miss(obj: *mut PyObject) -> Result<(), PyErrSet> {
    // SAFETY: GIL held; obj (hence its type) is live.
    unsafe {
        let tp = Py_TYPE(obj).cast::<PyObject>();
        let key = state_key(tp);
        if let Some(reason) = key.and_then(refused_get) {
            return not_provider(tp, &reason);
        }
        let export = match probe(tp)? {
            Ok(export) => export,
            Err(why) => {
                if let Some(key) = key {
                    refused_put(key, &why.text);
                }
                return not_provider(tp, &why.text);
            }
        };
        let vouched = under_a_base(tp);
        publish(tp, export, !vouched)?;
        ADOPTIONS.fetch_add(1, Ordering::Relaxed);
        ADOPTED.push(tp);
        if !vouched {
            PROVISIONAL.push(tp);
        }
        Ok(())
    }
}

/// Is `tp` a subclass (real or registered with an ABC) of a base passed to
/// `register_dlpack_type`? Errors of `__subclasscheck__` count as no.
///
/// # Safety
/// The GIL is held; `tp` is live; no lock of this module is held.
unsafe fn under_a_base(tp: *mut PyObject) -> bool {
    // SAFETY: GIL held; the snapshot holds the bases.
    unsafe {
        BASES.snapshot().iter().any(|base| match PyObject_IsSubclass(tp, base.0) {
            1 => true,
            0 => false,
            _ => {
                PyErr_Clear();
                false
            }
        })
    }
}

/// `register_dlpack_type(base)` where `base` itself exposes no DLPack:
/// when it is an abstract base (an `abc.ABCMeta` instance) or has
/// subclasses, remember it (its DLPack subclasses are adopted for good when
/// met), adopt its current real subclasses that expose DLPack, and answer
/// `true`; otherwise `false`.
///
/// # Safety
/// The GIL is held; `base` is a live type.
pub(crate) unsafe fn add_base(base: *mut PyObject) -> Result<bool, PyErrSet> {
    // SAFETY: GIL held; every object made here is owned.
    let is_abc = unsafe {
        let abc = Owned::new(PyImport_ImportModule(c"abc".as_ptr()))?;
        let meta = Owned::new(PyObject_GetAttrString(abc.0, c"ABCMeta".as_ptr()))?;
        match PyObject_IsInstance(base, meta.0) {
            -1 => return Err(PyErrSet),
            r => r == 1,
        }
    };
    // SAFETY: GIL held; base is a live type (this function's contract).
    let mut stack = unsafe { subclasses_of(base)? };
    if !is_abc && stack.is_empty() {
        return Ok(false);
    }
    // SAFETY: GIL held; base is live.
    unsafe { BASES.push(base) };
    // Real subclasses that exist now (later ones, and virtual ones, are
    // adopted on their first miss); each walk level below its own.
    let mut seen = std::collections::HashSet::new();
    while let Some(sub) = stack.pop() {
        // SAFETY: GIL held; sub is owned.
        if unsafe { PyType_Check(sub.0) } == 0 || !seen.insert(sub.0 as usize) {
            continue;
        }
        // SAFETY: GIL held; sub is a live type.
        if let Ok(export) = unsafe { probe(sub.0)? } {
            // SAFETY: as above.
            unsafe { publish(sub.0, export, false)? };
        }
        // SAFETY: as above.
        stack.extend(unsafe { subclasses_of(sub.0)? });
    }
    Ok(true)
}

/// `type.__subclasses__(tp)`: the direct subclasses of `tp`, owned.
///
/// # Safety
/// The GIL is held; `tp` is a live type.
unsafe fn subclasses_of(tp: *mut PyObject) -> Result<Vec<Owned>, PyErrSet> {
    // SAFETY: GIL held; tp is a live type; the list and the items taken
    // from it are owned.
    unsafe {
        let list = Owned::new(PyObject_CallMethod(
            ptr::addr_of_mut!(PyType_Type).cast(),
            c"__subclasses__".as_ptr(),
            c"O".as_ptr(),
            tp,
        ))?;
        let n = PyList_Size(list.0);
        if n < 0 {
            return Err(PyErrSet);
        }
        Ok((0..n).map(|i| Owned(Py_NewRef(PyList_GetItem(list.0, i)))).collect())
    }
}

/// After the first-use acquire of a type adopted on a miss: keep it
/// (the export worked: the ordinary acquire replaces the first-use one) or
/// give it up (the producer failed: slots removed, refusal remembered, a
/// note added to the producer's exception). The pending exception, if
/// any, is kept (taken around the calls, put back).
///
/// # Safety
/// The GIL is held; `obj` is live; no lock of this module is held.
unsafe fn settle(obj: *mut PyObject, stage: Stage, export: Export) {
    if stage == Stage::Untried {
        return;
    }
    // SAFETY: GIL held; obj is live.
    let tp = unsafe { Py_TYPE(obj) };
    // SAFETY: GIL held; the listed types are alive (the list holds them);
    // PyType_IsSubtype reads MROs and runs no Python code.
    let taken = unsafe { PROVISIONAL.take(|t| t == tp as usize || PyType_IsSubtype(tp, t as *mut PyTypeObject) != 0) };
    let Some(target) = taken else {
        return; // settled meanwhile (another thread), or registered up front
    };
    // SAFETY: GIL held; the exception taken here is put back below.
    let pending = unsafe { (!PyErr_Occurred().is_null()).then(|| PendingError::take()) };
    if stage == Stage::Exported {
        // SAFETY: GIL held; target is a live type (owned); no exception is
        // set (taken above) until `pending` is put back.
        unsafe {
            if publish(target.0, export, false).is_err() {
                // The first-use acquire stays and keeps working.
                PyErr_WriteUnraisable(target.0);
            }
            if let Some(p) = pending {
                p.restore();
            }
        }
        return;
    }
    // SAFETY: GIL held; obj is live, target a live type (owned).
    unsafe { give_up(obj, &target, pending) }
}

/// The first-use export of `obj` failed: remove the slots of its adopted
/// type `target`, remember the refusal, put the producer's exception
/// (`pending`) back with a note.
///
/// # Safety
/// The GIL is held; `obj` is live, `target` a live type; no exception is
/// set (it is in `pending`).
unsafe fn give_up(obj: *mut PyObject, target: &Owned, pending: Option<PendingError>) {
    // SAFETY: GIL held; `pending` is a taken exception.
    let reason = pending.as_ref().map_or_else(|| "no exception".to_owned(), |p| unsafe { p.message() });
    let defs = [
        SlotDef { key: abi::KEY_ACQUIRE.as_ptr(), id: 0, ptr: ptr::null() },
        SlotDef { key: abi::KEY_RELEASE.as_ptr(), id: 0, ptr: ptr::null() },
        SlotDef { key: KEY_EXCHANGE_API.as_ptr(), id: 0, ptr: ptr::null() },
    ];
    // SAFETY: GIL held; target is a live type; obj is live; the list's
    // references taken here are owned.
    unsafe {
        if runtime::set_slots(target.0, &defs).is_err() {
            PyErr_WriteUnraisable(target.0);
        }
        if let Some(t) = ADOPTED.take(|t| t == target.0 as usize) {
            drop(t);
        }
        if let Some(key) = state_key(target.0) {
            refused_put(
                key,
                &format!(
                    "its DLPack export failed on first use ({reason}); adoption is retried when the type changes, \
                     and register_dlpack_type() adopts it regardless"
                ),
            );
        }
        if let Some(p) = pending {
            p.restore();
        }
        let name = util::type_name(obj);
        add_note(&format!(
            "extensibletype.arrays: {name} was not adopted as an array.v1 provider (its DLPack export failed); \
             adoption is retried when the type changes, register_dlpack_type() adopts it regardless"
        ));
    }
}

/// Add a note (PEP 678) to the pending exception, if any; best effort.
///
/// # Safety
/// The GIL is held.
unsafe fn add_note(note: &str) {
    let Ok(note) = std::ffi::CString::new(note.replace('\0', "\\0")) else { return };
    // SAFETY: GIL held; the fetched references are put back with PyErr_Restore.
    unsafe {
        let (mut t, mut v, mut tb) = (ptr::null_mut(), ptr::null_mut(), ptr::null_mut());
        #[allow(deprecated)]
        PyErr_Fetch(&mut t, &mut v, &mut tb);
        if t.is_null() {
            return;
        }
        #[allow(deprecated)]
        PyErr_NormalizeException(&mut t, &mut v, &mut tb);
        if !v.is_null() {
            if !tb.is_null() {
                PyException_SetTraceback(v, tb);
            }
            let r = PyObject_CallMethod(v, c"add_note".as_ptr(), c"s".as_ptr(), note.as_ptr());
            if r.is_null() {
                PyErr_Clear();
            } else {
                Py_DECREF(r);
            }
        }
        #[allow(deprecated)]
        PyErr_Restore(t, v, tb);
    }
}

/// First-use acquire through the exchange table of a type adopted on a miss.
pub(crate) unsafe extern "C" fn dl_c_acquire_first(obj: *mut PyObject, request: c_int, view: *mut ArrayView) -> c_int {
    guard(-1, || {
        // SAFETY: the array.v1 contract (GIL held, obj alive, view writable).
        unsafe {
            let mut stage = Stage::Untried;
            let r = c_acquire(obj, request, &mut *view, &mut stage);
            let api = runtime::find(obj, ID_EXCHANGE_API).cast::<DLPackExchangeAPI>();
            settle(obj, stage, Export::C(api));
            r.map_or(-1, |()| 0)
        }
    })
}

/// First-use acquire through `obj.__dlpack__()` of a type adopted on a miss.
pub(crate) unsafe extern "C" fn dl_py_acquire_first(obj: *mut PyObject, request: c_int, view: *mut ArrayView) -> c_int {
    guard(-1, || {
        // SAFETY: the array.v1 contract.
        unsafe {
            let mut stage = Stage::Untried;
            let r = py_acquire(obj, request, &mut *view, &mut stage);
            settle(obj, stage, Export::Python);
            r.map_or(-1, |()| 0)
        }
    })
}

// ---- Python names --------------------------------------------------------------

/// `_adopt(obj) -> True`: what `ExtType_ArrayGetView` calls on a miss:
/// `True` once `type(obj)` provides array.v1 (already, or adopted now),
/// else the consumer's `TypeError`.
pub(crate) unsafe extern "C" fn py_adopt(_m: *mut PyObject, obj: *mut PyObject) -> *mut PyObject {
    guard(ptr::null_mut(), || {
        // SAFETY: GIL held (METH_O); obj is live for the call.
        unsafe {
            match Provider::of_or_raise(obj) {
                Ok(_) => Py_NewRef(Py_True()),
                Err(_) => ptr::null_mut(),
            }
        }
    })
}

/// `_adopted() -> (count, [types])`: adoptions on a miss so far, and the
/// types adopted on a miss that are still adopted.
pub(crate) unsafe extern "C" fn py_adopted(_m: *mut PyObject, _unused: *mut PyObject) -> *mut PyObject {
    guard(ptr::null_mut(), || {
        // SAFETY: GIL held (METH_NOARGS).
        ret(unsafe {
            (|| {
                let types = ADOPTED.snapshot();
                let list = Owned::new(PyList_New(0))?;
                for t in &types {
                    if PyList_Append(list.0, t.0) < 0 {
                        return Err(PyErrSet);
                    }
                }
                let count = Owned::new(PyLong_FromSize_t(ADOPTIONS.load(Ordering::Relaxed)))?;
                Ok(Owned::new(PyTuple_Pack(2, count.0, list.0))?.into_ptr())
            })()
        })
    })
}

/// `_forget_adopted()`: remove the slots of every type adopted on a miss,
/// forget the abstract bases and the remembered refusals (test clean-up).
pub(crate) unsafe extern "C" fn py_forget_adopted(_m: *mut PyObject, _unused: *mut PyObject) -> *mut PyObject {
    guard(ptr::null_mut(), || {
        // SAFETY: GIL held (METH_NOARGS); the drained references are ours.
        unsafe {
            drop(PROVISIONAL.drain());
            drop(BASES.drain());
            REFUSED.lock().unwrap_or_else(|p| p.into_inner()).clear();
            let defs = [
                SlotDef { key: abi::KEY_ACQUIRE.as_ptr(), id: 0, ptr: ptr::null() },
                SlotDef { key: abi::KEY_RELEASE.as_ptr(), id: 0, ptr: ptr::null() },
                SlotDef { key: KEY_EXCHANGE_API.as_ptr(), id: 0, ptr: ptr::null() },
            ];
            for t in ADOPTED.drain() {
                if runtime::set_slots(t.0, &defs).is_err() {
                    return ptr::null_mut();
                }
            }
            Py_NewRef(Py_None())
        }
    })
}
