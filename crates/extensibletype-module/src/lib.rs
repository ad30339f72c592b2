//! The `extensibletype._core` extension module (the cdylib maturin builds):
//! the one place where the layers are wired together — the runtime's Python
//! API (thin argument parsing over its [`Api`](runtime::Api)) and the arrays
//! layer's `_arrays` submodule. The Python package `extensibletype`
//! re-exports it.

#![deny(unsafe_op_in_unsafe_fn)]

use core::ffi::{c_char, c_int, CStr};
use core::ptr;

use pyo3_ffi::*;

mod bench;

use extensibletype_arrays as arrays;
#[cfg(not(all(Py_LIMITED_API, Py_GIL_DISABLED)))]
use extensibletype_runtime::pyutil::new_module;
use extensibletype_runtime::pyutil::{add, py_method};
use extensibletype_runtime::{self as runtime, Api};

/// `Ok(api)` or NULL with the exception set by import.
fn api() -> Option<&'static Api> {
    runtime::import().ok()
}

/// Check a fastcall argument count; TypeError naming the function otherwise.
unsafe fn nargs_ok(name: &CStr, nargs: Py_ssize_t, want: Py_ssize_t) -> bool {
    if nargs == want {
        return true;
    }
    // SAFETY: GIL held.
    unsafe {
        PyErr_Format(
            PyExc_TypeError,
            c"%s() takes exactly %zd arguments (%zd given)".as_ptr(),
            name.as_ptr(),
            want,
            nargs,
        );
    }
    false
}

unsafe extern "C" fn prehash(_m: *mut PyObject, key: *mut PyObject) -> *mut PyObject {
    // SAFETY: GIL held; key is a live object.
    unsafe {
        let bytes: &[u8] = if PyUnicode_Check(key) != 0 {
            let mut len: Py_ssize_t = 0;
            let p = PyUnicode_AsUTF8AndSize(key, &mut len);
            if p.is_null() {
                return ptr::null_mut();
            }
            core::slice::from_raw_parts(p.cast(), len as usize)
        } else if PyBytes_Check(key) != 0 {
            core::slice::from_raw_parts(PyBytes_AsString(key).cast(), PyBytes_Size(key) as usize)
        } else {
            PyErr_Format(PyExc_TypeError, c"prehash() argument must be str or bytes, not %S".as_ptr(), Py_TYPE(key));
            return ptr::null_mut();
        };
        PyLong_FromUnsignedLongLong(extensibletype_core::prehash_bytes(bytes))
    }
}

unsafe extern "C" fn set_slots(_m: *mut PyObject, args: *mut *mut PyObject, nargs: Py_ssize_t) -> *mut PyObject {
    // SAFETY: GIL held; CPython passes nargs arguments.
    unsafe {
        let Some(api) = api() else { return ptr::null_mut() };
        if !nargs_ok(c"set_slots", nargs, 2) || (api.py_set_slots)(*args, *args.add(1)) < 0 {
            return ptr::null_mut();
        }
        Py_NewRef(Py_None())
    }
}

unsafe extern "C" fn lookup(_m: *mut PyObject, args: *mut *mut PyObject, nargs: Py_ssize_t) -> *mut PyObject {
    // SAFETY: as above.
    unsafe {
        let Some(api) = api() else { return ptr::null_mut() };
        if !nargs_ok(c"lookup", nargs, 2) {
            return ptr::null_mut();
        }
        (api.py_lookup)(*args, *args.add(1))
    }
}

unsafe extern "C" fn get_slots(_m: *mut PyObject, tp: *mut PyObject) -> *mut PyObject {
    // SAFETY: GIL held.
    unsafe { api().map_or(ptr::null_mut(), |api| (api.py_get_slots)(tp)) }
}

unsafe extern "C" fn table_info(_m: *mut PyObject, tp: *mut PyObject) -> *mut PyObject {
    // SAFETY: GIL held.
    unsafe { api().map_or(ptr::null_mut(), |api| (api.py_table_info)(tp)) }
}

unsafe extern "C" fn bind_key(_m: *mut PyObject, args: *mut *mut PyObject, nargs: Py_ssize_t) -> *mut PyObject {
    // SAFETY: GIL held.
    unsafe {
        let Some(api) = api() else { return ptr::null_mut() };
        if !nargs_ok(c"_bind_key", nargs, 2) {
            return ptr::null_mut();
        }
        let mut len: Py_ssize_t = 0;
        let key = PyUnicode_AsUTF8AndSize(*args, &mut len);
        if key.is_null() {
            return ptr::null_mut();
        }
        let id = PyLong_AsUnsignedLongLong(*args.add(1));
        if !PyErr_Occurred().is_null() || (api.bind_key)(key as *const c_char, id) < 0 {
            return ptr::null_mut();
        }
        Py_NewRef(Py_None())
    }
}

/// The module's functions (the array ends with `PyMethodDef::zeroed()`).
fn methods() -> Vec<PyMethodDef> {
    vec![
        py_method!(c"prehash", PyCFunction, prehash, METH_O,
            c"prehash(key: str | bytes) -> int\n--\n\nThe 64-bit id of a key: the first 8 bytes of md5(key), little-endian."),
        py_method!(c"set_slots", PyCFunctionFast, set_slots, METH_FASTCALL,
            c"set_slots(tp, slots)\n--\n\nAdd or override slots of a type ({key: value}; None removes). \
              Extensible types get their own table; other types go to the foreign registry."),
        py_method!(c"get_slots", PyCFunction, get_slots, METH_O,
            c"get_slots(tp) -> dict\n--\n\nThe effective slots of a type: {key or id: address}."),
        py_method!(c"lookup", PyCFunctionFast, lookup, METH_FASTCALL,
            c"lookup(obj, key) -> int | None\n--\n\nThe address registered for key on type(obj), via the same path C consumers use."),
        py_method!(c"table_info", PyCFunction, table_info, METH_O,
            c"table_info(tp) -> dict\n--\n\nSize, bins, count, bytes and kind of the type's effective table."),
        py_method!(c"_bind_key", PyCFunctionFast, bind_key, METH_FASTCALL,
            c"_bind_key(key, id)\n--\n\nName an id allocated by another scheme (interner only; for tests and tools)."),
        bench::method(),
        PyMethodDef::zeroed(),
    ]
}

const NAME: &CStr = c"extensibletype._core";
const DOC: &CStr = c"The extensibletype runtime (see the extensibletype package).";

/// Add the runtime's objects and the `_arrays` submodule to `module`.
/// 0, or -1 with an exception set.
///
/// # Safety
/// GIL held (module initialisation); `module` is a live module.
unsafe fn populate(module: *mut PyObject, api: &'static Api) -> c_int {
    // SAFETY: GIL held; module is live; `add` consumes each new reference.
    unsafe {
        let capsule = PyCapsule_New((api as *const Api).cast_mut().cast(), runtime::CAPSULE_NAME.as_ptr(), None);
        let ok = add(module, c"ExtensibleType", Py_NewRef(api.metaclass.cast())).is_ok()
            && add(module, c"_C_API", capsule).is_ok()
            && add(module, c"ABI_VERSION", PyLong_FromLong(runtime::ABI_VERSION as _)).is_ok()
            && add(module, c"TABLE_OFFSET", PyLong_FromSsize_t(api.table_offset)).is_ok()
            && add(module, c"_VERSION_TAG_OFFSET", PyLong_FromLong(api.version_tag_offset as _)).is_ok()
            && arrays::add_submodule(module) == 0;
        if ok {
            0
        } else {
            -1
        }
    }
}

/// Module initialisation: load or create the process's runtime, then export
/// the Python API.
///
/// # Safety
/// Called by CPython's import machinery with the GIL held.
#[cfg(not(all(Py_LIMITED_API, Py_GIL_DISABLED)))]
#[no_mangle]
pub unsafe extern "C" fn PyInit__core() -> *mut PyObject {
    // SAFETY: GIL held during module init.
    unsafe {
        let Some(api) = api() else { return ptr::null_mut() };
        let Ok(module) = new_module(NAME, DOC, methods()) else {
            return ptr::null_mut();
        };
        let module = module.into_ptr();
        if populate(module, api) < 0 {
            Py_DECREF(module);
            return ptr::null_mut();
        }
        module
    }
}

/// abi3t (PEP 803, CPython 3.15+): no `PyModuleDef`, so the module is
/// exported as PEP 793 slots — name, doc, methods, an exec function doing
/// what `PyInit__core` does, and `Py_mod_gil` (the runtime is thread-safe:
/// one binary for 3.15 and 3.15t). The slot array is made once and lives for
/// the process, like a `PyModuleDef`.
#[cfg(all(Py_LIMITED_API, Py_GIL_DISABLED))]
mod abi3t {
    use super::*;
    use std::sync::OnceLock;

    struct Slots(*mut PySlot);
    // SAFETY: the array is immutable after creation and lives for the process.
    unsafe impl Send for Slots {}
    // SAFETY: as above.
    unsafe impl Sync for Slots {}

    /// `Py_mod_exec`: load or create the runtime, then fill the module.
    ///
    /// # Safety
    /// Called by CPython's import machinery with the GIL held.
    unsafe extern "C" fn exec(module: *mut PyObject) -> c_int {
        // SAFETY: GIL held (module execution); module is live.
        unsafe { api().map_or(-1, |api| populate(module, api)) }
    }

    /// The module's export hook (PEP 793).
    ///
    /// # Safety
    /// Called by CPython's import machinery (3.15+).
    #[no_mangle]
    pub unsafe extern "C" fn PyModExport__core() -> *mut PySlot {
        static SLOTS: OnceLock<Slots> = OnceLock::new();
        SLOTS
            .get_or_init(|| {
                let methods = methods().leak().as_mut_ptr();
                let abi: &'static mut PyABIInfo = Box::leak(Box::new(_PyABIInfo_DEFAULT));
                let exec_fn: unsafe extern "C" fn(*mut PyObject) -> c_int = exec;
                let slots = vec![
                    PySlot_STATIC_DATA(Py_mod_abi, (abi as *mut PyABIInfo).cast()),
                    PySlot_STATIC_DATA(Py_mod_name, NAME.as_ptr().cast_mut().cast()),
                    PySlot_STATIC_DATA(Py_mod_doc, DOC.as_ptr().cast_mut().cast()),
                    PySlot_STATIC_DATA(Py_mod_methods, methods.cast()),
                    // SAFETY: a non-NULL function of the Py_mod_exec signature.
                    unsafe { PySlot_FUNC(Py_mod_exec, exec_fn as *mut core::ffi::c_void) },
                    PySlot_DATA(Py_mod_gil, Py_MOD_GIL_NOT_USED),
                    PySlot_END(),
                ];
                Slots(slots.leak().as_mut_ptr())
            })
            .0
    }
}
