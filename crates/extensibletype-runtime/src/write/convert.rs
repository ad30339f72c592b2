//! Turning what users pass (Python keys and values, C `ExtType_SlotDef`s)
//! into validated [`Change`]s. Everything is checked here, before the
//! registry is touched, so that a failed call changes nothing.

use core::ffi::{c_void, CStr};
use core::ptr;
use std::sync::Arc;

use pyo3_ffi::*;

use crate::pyutil::{type_name, utf8, Owned};
use crate::signature::{parse_typed_key, Base, Flag, Signature, Type};
use super::state::{Change, Slot};
use crate::error::Invalid;
use crate::{PyErrSet, SlotDef};
use crate::key::prehash_bytes;
use crate::idhash::IdMap;
use crate::owner::OWNER;

/// Validated changes plus the references that keep their owners alive until
/// the registry has taken its own.
#[derive(Default)]
pub(crate) struct Changes {
    pub list: Vec<Change>,
    pub keep: Vec<Owned>,
}

/// `tp` as a type object, or a TypeError naming the function.
///
/// # Safety
/// The calling thread holds the GIL (an attached thread state); `tp` is NULL or
/// a live object.
pub(crate) unsafe fn type_arg(tp: *mut PyObject, func: &str) -> Result<*mut PyTypeObject, PyErrSet> {
    // SAFETY: GIL held; tp is a live object.
    unsafe {
        if tp.is_null() {
            return Err(PyErrSet::raise(PyExc_TypeError, &format!("{func}() argument 1 must be a type, not NULL")));
        }
        if PyType_Check(tp) == 0 {
            return Err(PyErrSet::raise(PyExc_TypeError, &format!("{func}() argument 1 must be a type, not {}", type_name(tp))));
        }
    }
    Ok(tp.cast())
}

/// [`type_arg`] for a writer: also refuses `object`, whose slots every type
/// would inherit (a lookup on any object at all would find them).
///
/// # Safety
/// GIL held; `tp` is NULL or a live object.
pub(crate) unsafe fn target_arg(tp: *mut PyObject, func: &str) -> Result<*mut PyTypeObject, PyErrSet> {
    // SAFETY: forwarded; PyBaseObject_Type is a static type.
    unsafe {
        let tp = type_arg(tp, func)?;
        if tp == ptr::addr_of_mut!(PyBaseObject_Type) {
            return Err(PyErrSet::raise(PyExc_ValueError, &format!(
                "{func}() cannot set slots on object: every type inherits them, so every object \
                 would provide them; set them on the types that implement them"
            )));
        }
        Ok(tp)
    }
}

/// `(id, name)` for a key given as `str`, UTF-8 `bytes` or `int`.
///
/// # Safety
/// The calling thread holds the GIL (an attached thread state); `key` is a live
/// object.
pub(crate) unsafe fn key_from_py(key: *mut PyObject) -> Result<(u64, Option<Arc<str>>), PyErrSet> {
    // SAFETY: key is a live object; the GIL is held.
    unsafe {
        if PyUnicode_Check(key) != 0 || PyBytes_Check(key) != 0 {
            // Borrowed from `key` only for the memo probe below.
            let name = text_of(key)?;
            return key_of_name(name).map(|(id, name)| (id, Some(name))).map_err(|e| e.raise());
        }
        if PyLong_Check(key) != 0 && PyBool_Check(key) == 0 {
            return u64_of(key, "slot id").map(|id| (id, None));
        }
        Err(PyErrSet::raise(PyExc_TypeError, &format!(
            "slot key must be str, bytes or int, not {}",
            type_name(key)
        )))
    }
}

/// The prehash of a key name, refusing the reserved id 0 and, for a typed
/// key (one with `#`), anything but a canonical typed key (docs/spec.md,
/// typed methods): ValueError naming the problem.
///
/// Returns the key string too, as the memo holds it.
///
/// Memoised: class statements repeat the same few keys, and a hash-map probe
/// is several times cheaper than md5; a key met before is shared (a
/// reference count), not copied, so converting a class statement's keys
/// allocates nothing once they are known. The memo is bounded (cleared
/// when full; the strings handed out stay valid).
pub(crate) fn key_of_name(name: &str) -> Result<(u64, Arc<str>), Invalid> {
    const MEMO_MAX: usize = 1 << 16;
    // Held only for a map probe (no Python code), so blocking here is safe.
    let cached = OWNER.key_ids.lock().ok().and_then(|m| {
        m.as_ref().and_then(|m| m.get_key_value(name).map(|(key, &id)| (id, Arc::clone(key))))
    });
    let (id, key) = match cached {
        Some(found) => found,
        None => {
            check_typed_key(name)?;
            let id = prehash_bytes(name.as_bytes());
            let key: Arc<str> = Arc::from(name);
            if let Ok(mut memo) = OWNER.key_ids.lock() {
                let memo = memo.get_or_insert_with(IdMap::default);
                if memo.len() >= MEMO_MAX {
                    memo.clear();
                }
                memo.insert(Arc::clone(&key), id);
            }
            (id, key)
        }
    };
    match id {
        0 => Err(Invalid(format!("key {name:?} hashes to the reserved id 0"))),
        id => Ok((id, key)),
    }
}

/// A key with `#` must be a canonical typed key; its signature, or `None`
/// for an untyped key.
pub(crate) fn check_typed_key(name: &str) -> Result<Option<Signature>, Invalid> {
    if !name.contains('#') {
        return Ok(None);
    }
    match parse_typed_key(name) {
        Ok(key) => Ok(Some(key.signature)),
        Err(e) => Err(Invalid(format!("slot key {name:?} is not a canonical typed key: {}", e.message()))),
    }
}

/// A value: `None` removes; otherwise an `int` address, a ctypes function
/// pointer / `c_void_p` / pointer instance, or a `PyCapsule`.
/// A numba `@cfunc` is accepted too (its `.address`; the object is kept
/// alive). Address 0 is refused: NULL means "absent" to consumers.
///
/// Under a typed key (`name` has `#`), a value whose signature is known (a
/// ctypes function pointer with `argtypes`, a numba cfunc) must have the C
/// signature the key spells, else ValueError naming both.
///
/// # Safety
/// The calling thread holds the GIL (an attached thread state); `value` is a
/// live object.
pub(crate) unsafe fn slot_from_py(
    value: *mut PyObject,
    keep: &mut Vec<Owned>,
    name: Option<&str>,
    memo: &mut Memo,
) -> Result<Option<Slot>, PyErrSet> {
    // SAFETY: value is live; the GIL is held.
    if value == unsafe { Py_None() } {
        return Ok(None);
    }
    // SAFETY: as above.
    let (address, owner) = unsafe { address_of(value, name, memo)? };
    if address == 0 {
        // SAFETY: GIL held.
        return Err(unsafe {
            PyErrSet::raise(
                PyExc_ValueError,
                "slot value is address 0 (NULL), which means 'absent' to consumers; \
                 use None to remove a slot",
            )
        });
    }
    if !owner.is_null() {
        // SAFETY: GIL held; `owner` is the live `value`.
        unsafe { Py_INCREF(owner) };
        keep.push(Owned(owner));
    }
    Ok(Some(Slot { ptr: address as *const c_void, owner }))
}

/// The address a (non-None) slot value stands for, and the object that
/// backs it (NULL for a plain int); checks a known signature against the
/// typed key `name`.
///
/// # Safety
/// The calling thread holds the GIL (an attached thread state); `value` is a
/// live object.
unsafe fn address_of(
    value: *mut PyObject,
    name: Option<&str>,
    memo: &mut Memo,
) -> Result<(u64, *mut PyObject), PyErrSet> {
    // SAFETY: value is live; the GIL is held.
    unsafe {
        let found = if PyLong_Check(value) != 0 && PyBool_Check(value) == 0 {
            (u64_of(value, "slot value (an address)")?, ptr::null_mut())
        } else if PyCapsule_CheckExact(value) != 0 {
            let name = PyCapsule_GetName(value);
            let p = PyCapsule_GetPointer(value, name);
            if p.is_null() {
                return Err(PyErrSet);
            }
            (p as u64, value)
        } else if memo.is_numba_cfunc(value) {
            (numba_address(value, name, memo)?, value)
        } else if let Some((address, funcptr)) = ctypes_address(value, memo)? {
            if let (Some(name), true) = (name, funcptr) {
                check_ctypes_prototype(value, name, memo)?;
            }
            (address, value)
        } else {
            return Err(PyErrSet::raise(PyExc_TypeError, &format!(
                "slot value must be an int address, a ctypes function pointer or c_void_p, \
                 a PyCapsule, a numba cfunc, or None to remove the slot; not {}",
                type_name(value)
            )));
        };
        Ok(found)
    }
}

/// A numba cfunc's `.address`, its signature checked against the typed key
/// `name`.
///
/// # Safety
/// The calling thread holds the GIL (an attached thread state); `value` is a
/// live numba cfunc.
unsafe fn numba_address(value: *mut PyObject, name: Option<&str>, memo: &mut Memo) -> Result<u64, PyErrSet> {
    // SAFETY: value is live; the GIL is held; `address` is owned.
    unsafe {
        let address = Owned::new(PyObject_GetAttrString(value, c"address".as_ptr()))?;
        if PyLong_Check(address.0) == 0 {
            return Err(PyErrSet::raise(PyExc_TypeError, "numba cfunc .address is not an int"));
        }
        let address = u64_of(address.0, "numba cfunc address")?;
        if let Some(name) = name {
            let (proto, what) = numba_prototype(value)?;
            check_prototype(name, &proto, memo, || what).map_err(|e| e.raise())?;
        }
        Ok(address)
    }
}

/// A ctypes function pointer with a known prototype must have the C
/// signature the typed key `name` spells.
///
/// # Safety
/// The calling thread holds the GIL (an attached thread state); `value` is a
/// live ctypes function pointer.
unsafe fn check_ctypes_prototype(value: *mut PyObject, name: &str, memo: &mut Memo) -> Result<(), PyErrSet> {
    // SAFETY: value is live; the GIL is held.
    let Some((i, argtypes, restype)) = (unsafe { ctypes_prototype(value, memo)? }) else { return Ok(()) };
    // SAFETY: argtypes and restype are held by `memo`; the GIL is held.
    let describe = || unsafe { ctypes_what(argtypes, restype) };
    let proto = memo.protos[i].2.take().expect("a memoised prototype");
    let checked = check_prototype(name, &proto, memo, describe);
    memo.protos[i].2 = Some(proto);
    // SAFETY: GIL held.
    checked.map_err(|e| unsafe { e.raise() })
}

/// Changes from a Python mapping `{key: value | None}`.
///
/// # Safety
/// The calling thread holds the GIL (an attached thread state); `mapping` is a
/// live object.
pub(crate) unsafe fn changes_from_mapping(mapping: *mut PyObject, what: &str) -> Result<Changes, PyErrSet> {
    // SAFETY: mapping is live; the GIL is held.
    let is_dict = unsafe { PyDict_Check(mapping) } != 0;
    // SAFETY: as above.
    if !is_dict && unsafe { PyObject_HasAttrString(mapping, c"items".as_ptr()) } == 0 {
        // SAFETY: as above.
        return Err(unsafe {
            PyErrSet::raise(
                PyExc_TypeError,
                &format!("{what} must be a mapping of slot keys to values, not {}", type_name(mapping)),
            )
        });
    }
    let mut changes = Changes::default();
    if is_dict {
        // One allocation for the usual dict (a size past the limit is
        // refused below, before any item is converted).
        // SAFETY: mapping is a live dict; the GIL is held.
        let n = unsafe { PyDict_Size(mapping) }.clamp(0, crate::MAX_ENTRIES as isize);
        changes.list.reserve_exact(n as usize);
    }
    let mut memo = Memo::default();
    let mut add = |key: *mut PyObject, value: *mut PyObject| -> Result<(), PyErrSet> {
        // SAFETY: GIL held; `key` and `value` are held by the private copy
        // the walk below iterates.
        unsafe {
            let (id, name) = key_from_py(key)?;
            let value = slot_from_py(value, &mut changes.keep, name.as_deref(), &mut memo)?;
            changes.list.push(Change { id, name, value });
        }
        Ok(())
    };
    if is_dict {
        // SAFETY: as above.
        unsafe { for_each_dict_item(mapping, &mut add)? }
    } else {
        // SAFETY: as above.
        unsafe { for_each_item(mapping, what, &mut add)? }
    }
    // SAFETY: GIL held.
    check_distinct(&changes.list).map_err(|e| unsafe { e.raise() })?;
    Ok(changes)
}

/// At most [`crate::MAX_ENTRIES`] slots in one call (pure).
fn check_count(n: isize) -> Result<(), Invalid> {
    match n > crate::MAX_ENTRIES as isize {
        true => Err(crate::BuildError::TooMany { count: n as usize }.into()),
        false => Ok(()),
    }
}

/// `f(key, value)` for each item of the dict `mapping` (the common case:
/// class bodies, literals). Iterates a private copy (made under the dict's
/// lock on free-threaded builds): conversions may run Python code, which
/// cannot reach the copy, so its borrowed keys and values stay alive.
///
/// # Safety
/// The calling thread holds the GIL (an attached thread state); `mapping` is
/// a live dict.
unsafe fn for_each_dict_item(
    mapping: *mut PyObject,
    f: &mut impl FnMut(*mut PyObject, *mut PyObject) -> Result<(), PyErrSet>,
) -> Result<(), PyErrSet> {
    // SAFETY: the caller's contract; the copy is owned.
    unsafe {
        let copy = Owned::new(PyDict_Copy(mapping))?;
        check_count(PyDict_Size(copy.0)).map_err(|e| e.raise())?;
        let (mut pos, mut key, mut value): (Py_ssize_t, *mut PyObject, *mut PyObject) =
            (0, ptr::null_mut(), ptr::null_mut());
        while PyDict_Next(copy.0, &mut pos, &mut key, &mut value) != 0 {
            f(key, value)?;
        }
    }
    Ok(())
}

/// `f(key, value)` for each pair of `mapping.items()`. `items()` may return
/// the mapping's own list: a private copy is iterated, so that Python code
/// run by conversions cannot free what we borrow (tuples are immutable and
/// held by the copy).
///
/// # Safety
/// The calling thread holds the GIL (an attached thread state); `mapping` is
/// a live object with `items`.
unsafe fn for_each_item(
    mapping: *mut PyObject,
    what: &str,
    f: &mut impl FnMut(*mut PyObject, *mut PyObject) -> Result<(), PyErrSet>,
) -> Result<(), PyErrSet> {
    // SAFETY: the caller's contract; the lists are owned.
    unsafe {
        let items = Owned::new(PyMapping_Items(mapping))?;
        let items = Owned::new(PySequence_List(items.0))?;
        let n = PyList_Size(items.0);
        check_count(n).map_err(|e| e.raise())?;
        for i in 0..n {
            let item = PyList_GetItem(items.0, i);
            if PyTuple_Check(item) == 0 || PyTuple_Size(item) != 2 {
                return Err(PyErrSet::raise(PyExc_TypeError, &format!("{what}.items() must yield (key, value) pairs")));
            }
            f(PyTuple_GetItem(item, 0), PyTuple_GetItem(item, 1))?;
        }
    }
    Ok(())
}

/// Changes from C slot definitions (`key` NULL → `id`; `ptr` NULL → remove).
/// Pure validation (no Python): the caller raises the refusal.
///
/// # Safety
/// `defs` is NULL
/// (with `n` 0) or points to `n` readable `SlotDef`s whose `key`s are NULL or
/// NUL-terminated strings.
pub(crate) unsafe fn changes_from_defs(defs: *const SlotDef, n: isize) -> Result<Changes, Invalid> {
    if n < 0 || (n > 0 && defs.is_null()) {
        return Err(Invalid(format!("invalid slot definitions: defs={defs:p}, n={n}")));
    }
    check_count(n)?;
    let mut changes = Changes::default();
    // SAFETY: the caller passes n readable definitions.
    let defs = if n == 0 { &[][..] } else { unsafe { core::slice::from_raw_parts(defs, n as usize) } };
    for def in defs {
        let (id, name) = if def.key.is_null() {
            (def.id, None)
        } else {
            // SAFETY: key is a NUL-terminated string per the API contract.
            let name = unsafe { CStr::from_ptr(def.key) }
                .to_str()
                .map_err(|_| Invalid("slot key is not valid UTF-8".into()))?;
            let (id, name) = key_of_name(name)?;
            if def.id != 0 && def.id != id {
                return Err(Invalid(format!(
                    "slot {name:?} was given id {:#018x}, but its prehash is {id:#018x}",
                    def.id
                )));
            }
            (id, Some(name))
        };
        if id == 0 {
            return Err(Invalid("slot id 0 is reserved".into()));
        }
        let value = (!def.ptr.is_null()).then_some(Slot { ptr: def.ptr, owner: ptr::null_mut() });
        changes.list.push(Change { id, name, value });
    }
    check_distinct(&changes.list)?;
    Ok(changes)
}

/// One call names each slot once: the same id twice (by key and by id,
/// `"k"` and `b"k"`, or twice in C definitions) is a `ValueError` naming
/// it, before anything changes.
fn check_distinct(list: &[Change]) -> Result<(), Invalid> {
    // The one reported is the repeat met first in call order, with its
    // first use (what a scan with a set of seen ids reports). Up to
    // PAIRWISE_MAX changes (a class statement's usual few), every pair is
    // compared: no allocation, no sort. Beyond, sorted (id, index) pairs:
    // a repeated id is two neighbours, and the smallest later index of a
    // neighbour pair is the first repeat, its neighbour its only earlier use.
    const PAIRWISE_MAX: usize = 32;
    let repeat = if list.len() <= PAIRWISE_MAX {
        (1..list.len()).find_map(|i| list[..i].iter().position(|c| c.id == list[i].id).map(|first| (i, first)))
    } else {
        let mut order: Vec<(u64, usize)> = list.iter().enumerate().map(|(i, c)| (c.id, i)).collect();
        order.sort_unstable();
        order.windows(2).filter(|w| w[0].0 == w[1].0).map(|w| (w[1].1, w[0].1)).min()
    };
    let Some((i, first)) = repeat else { return Ok(()) };
    let change = &list[i];
    let describe = |c: &Change| match &c.name {
        Some(name) => format!("key {name:?}"),
        None => format!("id {:#018x}", c.id),
    };
    let (a, b) = (describe(&list[first]), describe(change));
    let what = if a == b { a } else { format!("{a} and {b}") };
    Err(Invalid(format!(
        "slot id {:#018x} is given twice in one call ({what}); give each slot once",
        change.id
    )))
}

/// A key given as `str` or `bytes`, as text (bytes must be UTF-8),
/// borrowed from `obj`.
///
/// # Safety
/// The calling thread holds the GIL (an attached thread state); `obj` is a live
/// `str` or `bytes` that outlives `'a` (a `str` keeps its UTF-8 form, and
/// `bytes` its buffer, for its whole life).
unsafe fn text_of<'a>(obj: *mut PyObject) -> Result<&'a str, PyErrSet> {
    // SAFETY: obj is a str or bytes; the GIL is held.
    unsafe {
        if PyUnicode_Check(obj) != 0 {
            let mut len: Py_ssize_t = 0;
            let p = PyUnicode_AsUTF8AndSize(obj, &mut len);
            if p.is_null() {
                return Err(PyErrSet);
            }
            let bytes = core::slice::from_raw_parts(p.cast::<u8>(), len as usize);
            // SAFETY: PyUnicode_AsUTF8AndSize returns valid UTF-8 (it fails
            // for a str that has none, e.g. one with lone surrogates).
            return Ok(core::str::from_utf8_unchecked(bytes));
        }
        let bytes = core::slice::from_raw_parts(PyBytes_AsString(obj).cast::<u8>(), PyBytes_Size(obj) as usize);
        core::str::from_utf8(bytes).map_err(|_| PyErrSet::raise(PyExc_ValueError, "slot key bytes are not valid UTF-8"))
    }
}

/// An int in `1..2**64` (`what` names it in errors).
///
/// # Safety
/// The calling thread holds the GIL (an attached thread state); `obj` is a live
/// `int`.
unsafe fn u64_of(obj: *mut PyObject, what: &str) -> Result<u64, PyErrSet> {
    // SAFETY: obj is an int; the GIL is held.
    unsafe {
        let v = PyLong_AsUnsignedLongLong(obj);
        if v == u64::MAX && !PyErr_Occurred().is_null() {
            PyErr_Clear();
            let repr = repr_of(obj);
            return Err(PyErrSet::raise(PyExc_ValueError, &format!("{what} {repr} is out of range (must be 1 .. 2**64-1)")));
        }
        if v == 0 && what == "slot id" {
            return Err(PyErrSet::raise(PyExc_ValueError, "slot id 0 is reserved"));
        }
        Ok(v)
    }
}

/// What one conversion call looks up once and reuses for each of its
/// values: a class statement converts 16 ctypes callbacks under keys of one
/// signature, and each lookup below is a Python attribute lookup. Nothing
/// outlives the call: ctypes' classes belong to the calling interpreter (an
/// object kept from one interpreter stops working when that interpreter
/// dies), so they are looked up in this interpreter's `sys.modules` once per
/// call (no import: without `ctypes` imported there is no ctypes value).
#[derive(Default)]
pub(crate) struct Memo {
    /// Value types seen, and whether each is numba's `CFunc`. The values
    /// (held by the caller's mapping) keep these types alive.
    numba: Vec<(*mut PyTypeObject, bool)>,
    /// This interpreter's ctypes classes, looked up at the first value that
    /// needs them (`Some(None)`: ctypes is not imported).
    ctypes: Option<Option<Ctypes>>,
    /// Prototypes of ctypes function pointers by their `argtypes` and
    /// `restype` objects (held here, so their identities stay unique).
    protos: Vec<(Owned, Owned, Option<Prototype>)>,
    /// The signature of each typed key checked, by its text after `#`
    /// (keys reach here validated: `key_of_name` checks them first).
    signatures: Vec<(Box<str>, Signature)>,
}

/// This interpreter's `ctypes._CFuncPtr`, `c_void_p`, `_Pointer`, and the
/// attribute names read from function pointers.
struct Ctypes {
    kinds: [Owned; 3],
    argtypes: Owned,
    restype: Owned,
}

impl Memo {
    /// Whether `value` is a numba `@cfunc` (`numba.*.CFunc`), found without
    /// importing numba; asked once per value type.
    ///
    /// # Safety
    /// The calling thread holds the GIL (an attached thread state); `value`
    /// is live and stays alive as long as this memo.
    unsafe fn is_numba_cfunc(&mut self, value: *mut PyObject) -> bool {
        // SAFETY: GIL held; value is live.
        let tp = unsafe { Py_TYPE(value) };
        if let Some(&(_, known)) = self.numba.iter().find(|(t, _)| *t == tp) {
            return known;
        }
        // SAFETY: as above.
        let known = unsafe { is_numba_cfunc(value) };
        self.numba.push((tp, known));
        known
    }

    /// This interpreter's ctypes classes (`None`: ctypes is not imported).
    ///
    /// # Safety
    /// The calling thread holds the GIL (an attached thread state).
    unsafe fn ctypes(&mut self) -> Result<Option<&Ctypes>, PyErrSet> {
        if self.ctypes.is_none() {
            // SAFETY: GIL held; every reference taken here is owned.
            let found = unsafe {
                let name = Owned::new(PyUnicode_FromString(c"ctypes".as_ptr()))?;
                let module = PyImport_GetModule(name.0);
                if module.is_null() {
                    if !PyErr_Occurred().is_null() {
                        return Err(PyErrSet);
                    }
                    None
                } else {
                    let module = Owned(module);
                    let kind = |k: &CStr| Owned::new(PyObject_GetAttrString(module.0, k.as_ptr()));
                    Some(Ctypes {
                        kinds: [kind(c"_CFuncPtr")?, kind(c"c_void_p")?, kind(c"_Pointer")?],
                        argtypes: Owned::new(PyUnicode_InternFromString(c"argtypes".as_ptr()))?,
                        restype: Owned::new(PyUnicode_InternFromString(c"restype".as_ptr()))?,
                    })
                }
            };
            self.ctypes = Some(found);
        }
        Ok(self.ctypes.as_ref().and_then(Option::as_ref))
    }
}

/// The address held by a ctypes function pointer, `c_void_p` or pointer
/// instance (what `ctypes.cast(value, c_void_p).value` gives), or `None` for
/// other objects; with it, whether it is a function pointer (whose
/// prototype a typed key checks).
///
/// The classes come from this interpreter's `ctypes` ([`Memo`]). The
/// address is the object's own buffer (ctypes pointer instances expose the
/// pointer's bytes), read without calling Python code.
///
/// # Safety
/// The calling thread holds the GIL (an attached thread state); `value` is a
/// live object.
unsafe fn ctypes_address(value: *mut PyObject, memo: &mut Memo) -> Result<Option<(u64, bool)>, PyErrSet> {
    // SAFETY: GIL held; every reference taken here is owned and released.
    unsafe {
        let Some(ctypes) = memo.ctypes()? else { return Ok(None) };
        let mut pointer_like = None;
        for (i, kind) in ctypes.kinds.iter().enumerate() {
            // A subclass instance is an instance (ctypes' metaclasses do not
            // override __instancecheck__); otherwise ask isinstance, which
            // also honours a `__class__` that claims the kind.
            let is = if PyType_IsSubtype(Py_TYPE(value), kind.0.cast()) != 0 {
                1
            } else {
                PyObject_IsInstance(value, kind.0)
            };
            match is {
                -1 => return Err(PyErrSet),
                0 => {}
                _ => {
                    pointer_like = Some(i == 0);
                    break;
                }
            }
        }
        let Some(funcptr) = pointer_like else { return Ok(None) };
        Ok(Some((pointer_bytes(value)?, funcptr)))
    }
}

/// The pointer a ctypes pointer-like instance holds: its buffer, exactly one
/// pointer wide.
///
/// # Safety
/// The calling thread holds the GIL (an attached thread state); `value` is a
/// live object.
unsafe fn pointer_bytes(value: *mut PyObject) -> Result<u64, PyErrSet> {
    let mut view = core::mem::MaybeUninit::<Py_buffer>::zeroed();
    // SAFETY: GIL held; `view` is released below whenever GetBuffer succeeded.
    if unsafe { PyObject_GetBuffer(value, view.as_mut_ptr(), PyBUF_SIMPLE) } < 0 {
        return Err(PyErrSet);
    }
    // SAFETY: PyObject_GetBuffer succeeded, so `view` is initialised.
    let view = unsafe { view.assume_init_mut() };
    let address = (view.len as usize == core::mem::size_of::<usize>() && !view.buf.is_null()).then(|| {
        // SAFETY: the buffer holds `len` = one pointer's bytes.
        unsafe { core::ptr::read_unaligned(view.buf.cast::<usize>()) as u64 }
    });
    // SAFETY: `view` came from a successful PyObject_GetBuffer.
    unsafe { PyBuffer_Release(view) };
    // SAFETY: GIL held (the caller's contract).
    address.ok_or_else(|| unsafe {
        PyErrSet::raise(PyExc_ValueError, "a ctypes pointer value whose buffer is not one pointer wide")
    })
}

/// `repr(obj)`, for messages (never fails: falls back to the type name).
///
/// # Safety
/// The calling thread holds the GIL (an attached thread state); `obj` is a live
/// object.
pub(crate) unsafe fn repr_of(obj: *mut PyObject) -> String {
    // SAFETY: the caller holds the GIL and `obj` is live; the repr is owned
    // here and released before returning.
    unsafe {
        let r = PyObject_Repr(obj);
        if r.is_null() {
            PyErr_Clear();
            return format!("<{}>", type_name(obj));
        }
        let r = Owned(r);
        match utf8(r.0) {
            Some(text) => text.to_owned(),
            None => format!("<{}>", type_name(obj)),
        }
    }
}

/// A C signature a value declares (a ctypes prototype, a numba cfunc), as
/// the C function sees it: codes of docs/spec.md's grammar (`O` for a
/// `PyObject *` either way, `v` for void), or `?<name>` for a type with no
/// code. How the value spells it, for messages, is made only for a message.
struct Prototype {
    ret: String,
    args: Vec<String>,
}

impl Prototype {
    fn render(&self) -> String {
        format!("{}({})", self.ret, self.args.join(","))
    }
}

/// The C function a signature stands for: `!e` returns `i32` and writes a
/// non-`v` result through a trailing out-pointer (`O+`: returned directly).
fn c_function(sig: &Signature) -> (String, Vec<String>) {
    let mut args: Vec<String> = sig.args.iter().map(Type::to_string).collect();
    let ret = match (sig.flag, sig.ret.base) {
        (Flag::Raises, Base::NewRef) => "O+".to_owned(),
        (Flag::Raises, Base::Void) => "i32".to_owned(),
        (Flag::Raises, _) => {
            args.push(sig.ret.pointer().to_string());
            "i32".to_owned()
        }
        _ => sig.ret.to_string(),
    };
    (ret, args)
}

/// ValueError naming both signatures unless `proto` is the C function of
/// typed key `name`'s signature. A `PyObject *` (`O`, `O+`) matches a
/// ctypes `py_object`; an `O` argument also matches a plain pointer
/// (`c_void_p`, numba's `voidptr`).
///
/// `what` says how the value spells its signature (called for a mismatch
/// only); `memo` keeps each signature parsed once per call.
fn check_prototype(name: &str, proto: &Prototype, memo: &mut Memo, what: impl FnOnce() -> String) -> Result<(), Invalid> {
    let Some((_, text)) = name.split_once('#') else { return Ok(()) };
    let sig = match memo.signatures.iter().find(|(t, _)| **t == *text) {
        Some((_, sig)) => sig,
        None => {
            let Some(sig) = check_typed_key(name)? else { return Ok(()) };
            memo.signatures.push((text.into(), sig));
            &memo.signatures.last().expect("just pushed").1
        }
    };
    let (ret, args) = c_function(sig);
    let ret_ok = ret == proto.ret || (ret == "O+" && proto.ret == "O");
    let args_ok = args.len() == proto.args.len()
        && args.iter().zip(&proto.args).all(|(want, got)| want == got || (want == "O" && got == "p"));
    if ret_ok && args_ok {
        return Ok(());
    }
    let c = format!("{ret}({})", args.join(","));
    let spelled = if c == sig.to_string() { String::new() } else { format!(" (the C function {c})") };
    Err(Invalid(format!(
        "slot {name:?}: the key's signature is {sig}{spelled}, but the value's is {} ({})",
        proto.render(),
        what()
    )))
}

/// Whether `value` is a numba `@cfunc` (`numba.*.CFunc`), found without
/// importing numba.
///
/// # Safety
/// The calling thread holds the GIL (an attached thread state); `value` is a
/// live object.
unsafe fn is_numba_cfunc(value: *mut PyObject) -> bool {
    // SAFETY: GIL held; value is live; references are owned and released.
    unsafe {
        let tp = Py_TYPE(value).cast::<PyObject>();
        let (Ok(module), Ok(name)) = (
            Owned::new(PyObject_GetAttrString(tp, c"__module__".as_ptr())),
            Owned::new(PyObject_GetAttrString(tp, c"__name__".as_ptr())),
        ) else {
            PyErr_Clear();
            return false;
        };
        matches!((utf8(module.0), utf8(name.0)), (Some(m), Some("CFunc")) if m.starts_with("numba."))
    }
}

/// The code of a numba type from its name (`float64`, `int64` for `intp`,
/// `bool`, `void*`, `float64*`, `none`); `?<name>` otherwise.
fn numba_code(name: &str) -> String {
    let base = name.trim_end_matches('*');
    let depth = name.len() - base.len();
    let star = |n: usize| "*".repeat(n);
    match base {
        "void" if depth >= 1 => format!("{}p", star(depth - 1)),
        "none" if depth == 0 => "v".into(),
        "bool" | "boolean" => format!("{}b", star(depth)),
        "complex64" => format!("{}c64", star(depth)),
        "complex128" => format!("{}c128", star(depth)),
        "float32" | "float64" | "int8" | "int16" | "int32" | "int64" | "uint8" | "uint16" | "uint32" | "uint64" => {
            let code = base.replace("float", "f").replace("uint", "u").replace("int", "i");
            format!("{}{code}", star(depth))
        }
        _ => format!("?{name}"),
    }
}

/// The prototype of a numba cfunc, from its signature (`_sig`, else
/// `nopython_signatures[0]`: `args`, `return_type`).
///
/// # Safety
/// The calling thread holds the GIL (an attached thread state); `value` is a
/// live numba cfunc.
unsafe fn numba_prototype(value: *mut PyObject) -> Result<(Prototype, String), PyErrSet> {
    // SAFETY: GIL held; references are owned and released.
    unsafe {
        // `_sig` (numba 0.5x and later); else the first of `nopython_signatures`.
        let sig = match Owned::new(PyObject_GetAttrString(value, c"_sig".as_ptr())) {
            Ok(sig) => sig,
            Err(_) => {
                PyErr_Clear();
                let all = Owned::new(PyObject_GetAttrString(value, c"nopython_signatures".as_ptr()));
                match all.map(|all| PySequence_GetItem(all.0, 0)) {
                    Ok(first) if !first.is_null() => Owned(first),
                    _ => {
                        PyErr_Clear();
                        return Err(PyErrSet::raise(PyExc_TypeError, &format!(
                            "cannot read the signature of numba cfunc {} (no _sig or nopython_signatures)",
                            repr_of(value)
                        )));
                    }
                }
            }
        };
        let ret = Owned::new(PyObject_GetAttrString(sig.0, c"return_type".as_ptr()))?;
        let args = Owned::new(PyObject_GetAttrString(sig.0, c"args".as_ptr()))?;
        let args = Owned::new(PySequence_Tuple(args.0))?;
        let mut codes = Vec::new();
        for i in 0..PyTuple_Size(args.0) {
            codes.push(numba_code(&str_of(PyTuple_GetItem(args.0, i))?));
        }
        let ret_name = str_of(ret.0)?;
        let what = format!("numba cfunc {}", str_of(sig.0)?);
        Ok((Prototype { ret: numba_code(&ret_name), args: codes }, what))
    }
}

/// `str(obj)`.
///
/// # Safety
/// The calling thread holds the GIL (an attached thread state); `obj` is a
/// live object (or NULL with an exception set).
unsafe fn str_of(obj: *mut PyObject) -> Result<String, PyErrSet> {
    if obj.is_null() {
        return Err(PyErrSet);
    }
    // SAFETY: GIL held; obj is live; the result is owned and released.
    unsafe {
        let s = Owned::new(PyObject_Str(obj))?;
        utf8(s.0).map(str::to_owned).ok_or(PyErrSet)
    }
}

/// The prototype a ctypes function pointer declares (`argtypes` and
/// `restype`, the instance's or its type's), or `None` when it declares no
/// `argtypes` (a foreign function whose signature ctypes does not know).
/// Returns its index in `memo.protos` (computed once per call for each
/// pair of `argtypes` and `restype` objects) and the pair, borrowed from
/// the memo.
///
/// # Safety
/// The calling thread holds the GIL (an attached thread state); `value` is a
/// live ctypes function pointer and `memo.ctypes` this interpreter's classes.
unsafe fn ctypes_prototype(
    value: *mut PyObject,
    memo: &mut Memo,
) -> Result<Option<(usize, *mut PyObject, *mut PyObject)>, PyErrSet> {
    // SAFETY: GIL held; references are owned and released (or kept by the memo).
    unsafe {
        let Some(ctypes) = memo.ctypes()? else { return Ok(None) };
        let pointer = ctypes.kinds[2].0;
        let argtypes = Owned::new(PyObject_GetAttr(value, ctypes.argtypes.0))?;
        if argtypes.0 == Py_None() || PyTuple_Check(argtypes.0) == 0 {
            return Ok(None);
        }
        let restype = Owned::new(PyObject_GetAttr(value, ctypes.restype.0))?;
        if let Some(i) = memo.protos.iter().position(|(a, r, _)| a.0 == argtypes.0 && r.0 == restype.0) {
            return Ok(Some((i, argtypes.0, restype.0)));
        }
        let mut args = Vec::new();
        for i in 0..PyTuple_Size(argtypes.0) {
            args.push(ctypes_code(PyTuple_GetItem(argtypes.0, i), pointer, 0)?);
        }
        let ret = if restype.0 == Py_None() { "v".to_owned() } else { ctypes_code(restype.0, pointer, 0)? };
        let (a, r) = (argtypes.0, restype.0);
        memo.protos.push((argtypes, restype, Some(Prototype { ret, args })));
        Ok(Some((memo.protos.len() - 1, a, r)))
    }
}

/// How ctypes spells a prototype, for messages: `ctypes restype T,
/// argtypes (A, B)`.
///
/// # Safety
/// The calling thread holds the GIL (an attached thread state); `argtypes`
/// (a tuple) and `restype` are live.
unsafe fn ctypes_what(argtypes: *mut PyObject, restype: *mut PyObject) -> String {
    // SAFETY: GIL held; both are live (held by the memo).
    unsafe {
        let names: Vec<String> = (0..PyTuple_Size(argtypes)).map(|i| ctypes_name(PyTuple_GetItem(argtypes, i))).collect();
        format!(
            "ctypes restype {}, argtypes ({})",
            if restype == Py_None() { "None".to_owned() } else { ctypes_name(restype) },
            names.join(", ")
        )
    }
}

/// A ctypes type's `__name__` (for messages).
///
/// # Safety
/// The calling thread holds the GIL (an attached thread state); `t` is live.
unsafe fn ctypes_name(t: *mut PyObject) -> String {
    // SAFETY: GIL held; the attribute is owned and released.
    unsafe {
        match Owned::new(PyObject_GetAttrString(t, c"__name__".as_ptr())) {
            Ok(name) => utf8(name.0).map_or_else(|| repr_of(t), str::to_owned),
            Err(_) => {
                PyErr_Clear();
                repr_of(t)
            }
        }
    }
}

/// The signature code of a simple ctypes type from its `_type_` letter
/// (`"i"` → `i32` on this platform), None for a letter without one. Pure.
fn simple_code(letter: Option<&str>) -> Option<String> {
    use core::ffi::{c_int, c_long, c_short};
    use core::mem::size_of;
    let int = |signed: bool, bytes: usize| format!("{}{}", if signed { 'i' } else { 'u' }, bytes * 8);
    Some(match letter? {
        "b" => int(true, 1),
        "B" => int(false, 1),
        "h" => int(true, size_of::<c_short>()),
        "H" => int(false, size_of::<c_short>()),
        "i" => int(true, size_of::<c_int>()),
        "I" => int(false, size_of::<c_int>()),
        "l" => int(true, size_of::<c_long>()),
        "L" => int(false, size_of::<c_long>()),
        "q" => int(true, 8),
        "Q" => int(false, 8),
        "f" => "f32".into(),
        "d" => "f64".into(),
        "F" => "c64".into(),
        "D" => "c128".into(),
        "?" => "b".into(),
        "P" => "p".into(),
        "O" => "O".into(),
        _ => return None,
    })
}

/// The code of a ctypes type: simple types by their `_type_` letter and the
/// width it has on this target (`c_long` is `i64` on LP64), `POINTER(T)` as
/// `*` + T's code, `py_object` as `O`; `?<name>` for anything else.
///
/// # Safety
/// The calling thread holds the GIL (an attached thread state); `t` is live
/// and `pointer` is `ctypes._Pointer`.
unsafe fn ctypes_code(t: *mut PyObject, pointer: *mut PyObject, depth: usize) -> Result<String, PyErrSet> {
    // SAFETY: GIL held; references are owned and released.
    unsafe {
        let unknown = || format!("?{}", ctypes_name(t));
        if depth > 16 || PyType_Check(t) == 0 {
            return Ok(unknown());
        }
        let Ok(kind) = Owned::new(PyObject_GetAttrString(t, c"_type_".as_ptr())) else {
            PyErr_Clear();
            return Ok(unknown());
        };
        if PyUnicode_Check(kind.0) != 0 {
            return Ok(simple_code(utf8(kind.0)).unwrap_or_else(unknown));
        }
        match PyObject_IsSubclass(t, pointer) {
            -1 => Err(PyErrSet),
            0 => Ok(unknown()),
            _ => {
                let inner = ctypes_code(kind.0, pointer, depth + 1)?;
                let pointee_ok = !inner.starts_with('?') && inner != "O";
                Ok(if pointee_ok { format!("*{inner}") } else { unknown() })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(id: u64, name: Option<&str>) -> Change {
        Change { id, name: name.map(Arc::from), value: None }
    }

    /// The pure checks refuse with the messages the Python tests expect.
    #[test]
    fn validation_without_python() {
        assert_eq!(check_count(crate::MAX_ENTRIES as isize), Ok(()));
        let too_many = check_count(crate::MAX_ENTRIES as isize + 1).expect_err("over the limit");
        assert_eq!(too_many, Invalid::from(crate::BuildError::TooMany { count: crate::MAX_ENTRIES + 1 }));
        assert_eq!(check_distinct(&[change(1, Some("a")), change(2, None)]), Ok(()));
        let twice = check_distinct(&[change(7, Some("k")), change(2, None), change(7, None)]).expect_err("twice");
        assert!(twice.0.starts_with("slot id 0x0000000000000007 is given twice in one call (key \"k\" and id "), "{}", twice.0);
        assert_eq!(check_typed_key("plain:key"), Ok(None));
        assert!(check_typed_key("lib.v1:m#f64(O)").expect("canonical").is_some());
        let bad = check_typed_key("lib.v1:m#nonsense").expect_err("not canonical");
        assert!(bad.0.contains("is not a canonical typed key"), "{}", bad.0);
        let (id, key) = key_of_name("lib.v1:m").expect("a key");
        assert_eq!((id, &*key), (prehash_bytes(b"lib.v1:m"), "lib.v1:m"));
        let (again, shared) = key_of_name("lib.v1:m").expect("memoised");
        assert_eq!(again, id);
        assert!(Arc::ptr_eq(&key, &shared), "a known key is shared, not copied");
    }

    /// Short lists (compared pairwise) and long ones (sorted) report the
    /// same repeat: the first in call order, with its first use.
    #[test]
    fn distinct_short_and_long() {
        for n in [3usize, 20, 32, 33, 100] {
            // ids 1..=n, then repeats of ids n-1 (at n+1) and 2 (at n+2, n+3).
            let mut list: Vec<Change> = (1..=n as u64).map(|id| change(id, None)).collect();
            assert_eq!(check_distinct(&list), Ok(()), "n = {n}");
            list.push(change(n as u64 + 50, None));
            list.push(change(n as u64 - 1, Some("late")));
            list.push(change(2, None));
            list.push(change(2, None));
            let e = check_distinct(&list).expect_err("repeats");
            let want = format!("slot id {:#018x} is given twice in one call (id {:#018x} and key \"late\")", n - 1, n - 1);
            assert!(e.0.starts_with(&want), "n = {n}: {}", e.0);
        }
    }

    /// Simple ctypes letters map to this platform's C types; others are unknown.
    #[test]
    fn ctypes_letters() {
        assert_eq!(simple_code(Some("i")).as_deref(), Some("i32"));
        assert_eq!(simple_code(Some("Q")).as_deref(), Some("u64"));
        assert_eq!(simple_code(Some("d")).as_deref(), Some("f64"));
        assert_eq!(simple_code(Some("z")), None);
        assert_eq!(simple_code(None), None);
    }
}
