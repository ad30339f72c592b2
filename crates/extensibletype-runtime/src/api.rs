//! The entry points behind the [`Api`] struct: what the capsule exports to C
//! and what the Python module calls. Each one holds the GIL, validates
//! everything before changing anything, and turns errors and panics into a
//! Python exception plus an error return.

use core::ffi::{c_char, c_int, c_void, CStr};
use core::ptr;

use pyo3_ffi::*;

use super::convert::{changes_from_defs, changes_from_mapping, key_from_py, Changes};
use super::pyutil::{type_name, Owned};
use super::metaclass::{self, publish};
use super::layout;
use super::registry::{self, Locked, Registry};
use super::{find_in_type, guard, Api, Error, SlotDef, ABI_VERSION};
use crate::table::Table;

/// The API struct of a runtime that owns `meta`; `ob_type_offset` as
/// measured by `layout::measure_ob_type_offset` (0: none proven).
pub(crate) fn new(meta: *mut PyTypeObject, table_offset: isize, ob_type_offset: isize) -> Api {
    Api {
        abi_version: ABI_VERSION,
        struct_size: core::mem::size_of::<Api>() as u32,
        metaclass: meta,
        table_offset,
        find_slow: metaclass::find_slow,
        prehash: prehash_c,
        set_slots: set_slots_c,
        from_spec: from_spec_c,
        py_set_slots,
        py_get_slots,
        py_table_info,
        py_lookup,
        bind_key: bind_key_c,
        foreign_registry: &super::state::FOREIGN,
        ob_type_offset,
        type_cache: super::cache::own_entries(),
        type_cache_bits: super::cache::CACHE_BITS,
        version_tag_offset: super::cache::tag_offset() as i32,
    }
}

/// Run a fallible entry point: errors become the Python exception + `err`.
fn entry<R: Copy>(err: R, f: impl FnOnce() -> Result<R, Error>) -> R {
    // SAFETY: every entry point is called with the GIL held.
    guard(err, || f().unwrap_or_else(|e| unsafe { e.raise(err) }))
}

/// `tp` as a type object, or a TypeError naming the function.
///
/// # Safety
/// The calling thread holds the GIL (an attached thread state); `tp` is NULL or
/// a live object.
unsafe fn as_type(tp: *mut PyObject, func: &str) -> Result<*mut PyTypeObject, Error> {
    // SAFETY: GIL held; tp is a live object.
    unsafe {
        if tp.is_null() {
            return Err(Error::Type(format!("{func}() argument 1 must be a type, not NULL")));
        }
        if PyType_Check(tp) == 0 {
            return Err(Error::Type(format!("{func}() argument 1 must be a type, not {}", type_name(tp))));
        }
    }
    Ok(tp.cast())
}

/// [`as_type`] for a writer: also refuses `object`, whose slots every type
/// would inherit (a lookup on any object at all would find them).
///
/// # Safety
/// GIL held; `tp` is NULL or a live object.
unsafe fn as_target(tp: *mut PyObject, func: &str) -> Result<*mut PyTypeObject, Error> {
    // SAFETY: forwarded; PyBaseObject_Type is a static type.
    unsafe {
        let tp = as_type(tp, func)?;
        if tp == ptr::addr_of_mut!(PyBaseObject_Type) {
            return Err(Error::value_error(format!(
                "{func}() cannot set slots on object: every type inherits them, so every object \
                 would provide them; set them on the types that implement them"
            )));
        }
        Ok(tp)
    }
}

/// `ExtType_API.prehash`: the prehash of `len` bytes at `key` (0 for NULL).
///
/// # Safety
/// `key` is NULL or points to `len` readable bytes. No GIL needed.
unsafe extern "C" fn prehash_c(key: *const c_char, len: usize) -> u64 {
    if key.is_null() {
        return 0;
    }
    // SAFETY: the caller passes `len` readable bytes.
    crate::prehash_bytes(unsafe { core::slice::from_raw_parts(key.cast::<u8>(), len) })
}

/// `ExtType_API.set_slots` (`ExtType_SetSlots`): 0, or -1 with an exception set.
///
/// # Safety
/// Called through the [`Api`] struct, with the GIL held (an attached thread
/// state); `tp` is NULL or a live object; `defs` is NULL (with `n` 0) or points
/// to `n` readable `SlotDef`s whose `key`s are NULL or NUL-terminated.
unsafe extern "C" fn set_slots_c(tp: *mut PyObject, defs: *const SlotDef, n: isize) -> c_int {
    entry(-1, || {
        // SAFETY: GIL held; defs/n validated by changes_from_defs.
        unsafe {
            let tp = as_target(tp, "ExtType_SetSlots")?;
            let changes = changes_from_defs(defs, n)?;
            publish(tp, &changes, false).map(|()| 0)
        }
    })
}

/// `ExtType_API.from_spec` (`ExtType_FromSpec`): a new reference, or NULL with an exception set.
///
/// # Safety
/// Called through the [`Api`] struct, with the GIL held (an attached thread
/// state); `spec` is NULL or a valid `PyType_Spec` that outlives the type;
/// `module` and `bases` are NULL or live; `defs`/`n` as for `set_slots_c`.
unsafe extern "C" fn from_spec_c(
    module: *mut PyObject,
    spec: *mut PyType_Spec,
    bases: *mut PyObject,
    defs: *const SlotDef,
    n: isize,
) -> *mut PyObject {
    entry(ptr::null_mut(), || {
        // SAFETY: GIL held; spec/bases as for PyType_FromModuleAndSpec.
        unsafe {
            if spec.is_null() {
                return Err(Error::Value("ExtType_FromSpec: spec is NULL".into()));
            }
            let changes = changes_from_defs(defs, n)?;
            let cls = Owned::new(new_type(module, spec, bases)?)?;
            publish(cls.0.cast(), &changes, true)?;
            Ok(cls.into_ptr())
        }
    })
}

/// A new type from `spec` whose metaclass is ExtensibleType (new reference).
///
/// # Safety
/// The calling thread holds the GIL (an attached thread state); `spec` is a
/// valid `PyType_Spec` that outlives the type; `module` and `bases` are NULL or
/// live objects.
#[cfg(Py_3_12)]
unsafe fn new_type(module: *mut PyObject, spec: *mut PyType_Spec, bases: *mut PyObject) -> Result<*mut PyObject, Error> {
    // SAFETY: forwarded; the metaclass is live for the process.
    let cls = unsafe { PyType_FromMetaclass(super::metaclass(), module, spec, bases) };
    if cls.is_null() {
        Err(Error::Python)
    } else {
        Ok(cls)
    }
}

/// CPython 3.11 has no `PyType_FromMetaclass`: build the spec's type, then
/// call the metaclass to make a same-named subclass with `__slots__ = ()`.
///
/// # Safety
/// The calling thread holds the GIL (an attached thread state); `spec` is a
/// valid `PyType_Spec` that outlives the type; `module` and `bases` are NULL or
/// live objects.
#[cfg(not(Py_3_12))]
unsafe fn new_type(module: *mut PyObject, spec: *mut PyType_Spec, bases: *mut PyObject) -> Result<*mut PyObject, Error> {
    // SAFETY: the caller holds the GIL and passes a valid `spec` and NULL-or-live
    // `module`/`bases`; every object made here is owned by an `Owned` or returned.
    unsafe {
        // The base must accept the subclass made below, whatever the spec
        // says; the subclass then gets the spec's BASETYPE setting.
        let mut base_spec = *spec;
        base_spec.flags |= Py_TPFLAGS_BASETYPE as core::ffi::c_uint;
        let base = Owned::new(PyType_FromModuleAndSpec(module, &mut base_spec, bases))?;
        let ns = Owned::new(PyDict_New())?;
        let empty = Owned::new(PyTuple_New(0))?;
        if PyDict_SetItemString(ns.0, c"__slots__".as_ptr(), empty.0) < 0 {
            return Err(Error::Python);
        }
        for attr in [c"__module__", c"__qualname__", c"__doc__"] {
            let value = Owned::new(PyObject_GetAttrString(base.0, attr.as_ptr()))?;
            if PyDict_SetItemString(ns.0, attr.as_ptr(), value.0) < 0 {
                return Err(Error::Python);
            }
        }
        let name = Owned::new(PyObject_GetAttrString(base.0, c"__name__".as_ptr()))?;
        let cls = PyObject_CallFunction(super::metaclass().cast(), c"O(O)O".as_ptr(), name.0, base.0, ns.0);
        if cls.is_null() {
            return Err(Error::Python);
        }
        if (*spec).flags & (Py_TPFLAGS_BASETYPE as core::ffi::c_uint) == 0 {
            layout::clear_basetype(cls.cast());
        }
        Ok(cls)
    }
}

/// `extensibletype.set_slots(tp, slots)`: 0, or -1 with an exception set.
///
/// # Safety
/// Called through the [`Api`] struct, with the GIL held (an attached thread
/// state); `tp` and `slots` are NULL or live objects.
unsafe extern "C" fn py_set_slots(tp: *mut PyObject, slots: *mut PyObject) -> c_int {
    entry(-1, || {
        // SAFETY: CPython calls this with the GIL held and live arguments
        // (`as_type` refuses NULL and non-types before any field is read).
        unsafe {
            let tp = as_target(tp, "set_slots")?;
            let changes: Changes = changes_from_mapping(slots, "slots")?;
            publish(tp, &changes, false).map(|()| 0)
        }
    })
}

/// What a type's effective slots are, as the registry sees them.
enum View<'a> {
    /// The published table (None = empty).
    Published(Option<&'a Table>),
    /// An extensible type never initialised: merged from bases on demand.
    Inherited(Vec<(u64, *const c_void)>),
}

/// `mro` is `tp`'s MRO, snapshotted before the registry was locked (under the
/// limited API reading it runs Python code).
///
/// # Safety
/// The calling thread holds the GIL (an attached thread state) and `reg` is the
/// locked registry; `tp` is a live type and every type in `mro` is alive (held
/// by `tp`).
unsafe fn view<'a>(reg: &'a mut Registry, tp: *mut PyTypeObject, mro: &[*mut PyTypeObject]) -> View<'a> {
    // SAFETY: GIL held and mutex held; tp is live.
    unsafe {
        if registry::is_extensible_metaclass(reg, Py_TYPE(tp.cast())) {
            return match super::layout::state_of(tp) {
                Some(state) => View::Published((*state).current()),
                None => View::Inherited(
                    registry::inherited_slots(reg, mro).into_iter().map(|(id, (s, _))| (id, s.ptr)).collect(),
                ),
            };
        }
        match registry::foreign_state(reg, tp) {
            Some(state) => View::Published(state.current()),
            // A plain subclass of registered types: what lookups see.
            None => View::Inherited(
                registry::inherited_slots(reg, mro).into_iter().map(|(id, (s, _))| (id, s.ptr)).collect(),
            ),
        }
    }
}

/// `extensibletype.get_slots(tp)`: a new dict, or NULL with an exception set.
///
/// What a lookup on `tp` finds: the own slots merged along the current MRO,
/// first definition wins, without the typed entries a Python override masks
/// (`crate::mask`; `table_info` describes the stored table instead).
///
/// # Safety
/// Called through the [`Api`] struct, with the GIL held (an attached thread
/// state); `tp` is NULL or a live object.
unsafe extern "C" fn py_get_slots(tp: *mut PyObject) -> *mut PyObject {
    entry(ptr::null_mut(), || {
        // SAFETY: GIL held; Python objects are made after the mutex is released.
        unsafe {
            let tp = as_type(tp, "get_slots")?;
            let mro = layout::mro(tp);
            let (mut provided, names): (Vec<super::mask::Provided>, crate::idhash::IdMap<u64, String>) = {
                let mut locked = Locked::get();
                let reg = locked.registry();
                let provided: Vec<_> =
                    registry::inherited_slots(reg, &mro).into_iter().map(|(id, (s, at))| (id, s.ptr, at)).collect();
                let names =
                    provided.iter().filter_map(|e| registry::name_of(reg, e.0).map(|n| (e.0, n.to_owned()))).collect();
                (provided, names)
            };
            // The GIL is held: the mask is exact.
            super::mask::filter(&mro, &mut provided);
            let dict = Owned::new(PyDict_New())?;
            for (id, p, _) in provided {
                let key = match names.get(&id) {
                    Some(name) => PyUnicode_FromStringAndSize(name.as_ptr().cast(), name.len() as isize),
                    None => PyLong_FromUnsignedLongLong(id),
                };
                let key = Owned::new(key)?;
                let value = Owned::new(PyLong_FromUnsignedLongLong(p as u64))?;
                if PyDict_SetItem(dict.0, key.0, value.0) < 0 {
                    return Err(Error::Python);
                }
            }
            Ok(dict.into_ptr())
        }
    })
}

/// `extensibletype.table_info(tp)`: a new dict, or NULL with an exception set.
///
/// # Safety
/// Called through the [`Api`] struct, with the GIL held (an attached thread
/// state); `tp` is NULL or a live object.
unsafe extern "C" fn py_table_info(tp: *mut PyObject) -> *mut PyObject {
    entry(ptr::null_mut(), || {
        // SAFETY: GIL held; Python objects are made after the mutex is released.
        unsafe {
            let tp = as_type(tp, "table_info")?;
            let mro = layout::mro(tp);
            let (kind, stats) = {
                let mut locked = Locked::get();
                let reg = locked.registry();
                let extensible = registry::is_extensible_metaclass(reg, Py_TYPE(tp.cast()));
                let stats = |t: &Table| [t.size(), t.bins(), t.len(), t.bytes()];
                match view(reg, tp, &mro) {
                    View::Published(table) => {
                        let kind = match (extensible, table.is_some()) {
                            (true, _) => c"extensible",
                            (false, true) => c"foreign",
                            (false, false) => c"none",
                        };
                        (kind, table.map_or([0; 4], stats))
                    }
                    View::Inherited(entries) if entries.is_empty() => (c"none", [0; 4]),
                    View::Inherited(entries) => {
                        let table = Table::build(&entries).map_err(Error::Build)?;
                        (c"inherited", stats(&table))
                    }
                }
            };
            let [size, bins, count, bytes] = stats;
            let dict = Owned::new(PyDict_New())?;
            let items: [(&CStr, *mut PyObject); 5] = [
                (c"size", PyLong_FromSize_t(size)),
                (c"bins", PyLong_FromSize_t(bins)),
                (c"count", PyLong_FromSize_t(count)),
                (c"bytes", PyLong_FromSize_t(bytes)),
                (c"kind", PyUnicode_FromString(kind.as_ptr())),
            ];
            for (name, value) in items {
                let value = Owned::new(value)?;
                if PyDict_SetItemString(dict.0, name.as_ptr(), value.0) < 0 {
                    return Err(Error::Python);
                }
            }
            Ok(dict.into_ptr())
        }
    })
}

/// `extensibletype.lookup(obj, key)`: the address as an int, None when absent, or NULL with an exception set.
///
/// # Safety
/// Called through the [`Api`] struct, with the GIL held (an attached thread
/// state); `obj` and `key` are live objects.
unsafe extern "C" fn py_lookup(obj: *mut PyObject, key: *mut PyObject) -> *mut PyObject {
    entry(ptr::null_mut(), || {
        // SAFETY: GIL held; obj is live for the call.
        unsafe {
            let (id, _) = key_from_py(key)?;
            let found = find_in_type(Py_TYPE(obj), id);
            if found.is_null() {
                Ok(Py_NewRef(Py_None()))
            } else {
                Ok(Owned::new(PyLong_FromUnsignedLongLong(found as u64))?.into_ptr())
            }
        }
    })
}

/// `ExtType_API.bind_key`: bind a key string to an id allocated elsewhere; 0, or -1 with an exception set.
///
/// # Safety
/// Called through the [`Api`] struct, with the GIL held (an attached thread
/// state); `key` is NULL or a NUL-terminated string.
unsafe extern "C" fn bind_key_c(key: *const c_char, id: u64) -> c_int {
    entry(-1, || {
        if key.is_null() || id == 0 {
            return Err(Error::Value("bind_key needs a key string and a non-zero id".into()));
        }
        // SAFETY: a NUL-terminated string per the contract.
        let name = unsafe { CStr::from_ptr(key) }
            .to_str()
            .map_err(|_| Error::Value("key is not valid UTF-8".into()))?;
        let mut locked = Locked::get();
        registry::bind_name(locked.registry(), id, name).map(|()| 0)
    })
}
