//! The runtime's Python functions on `extensibletype._core` (`prehash`,
//! `set_slots`, `get_slots`, `lookup`, `table_info`, `_bind_key`): thin
//! argument parsing over the runtime's [`Api`].

use core::ffi::{c_char, CStr};
use core::ptr;

use pyo3_ffi::*;

use extensibletype_runtime::pyutil::py_method;
use extensibletype_runtime::{self as runtime, Api};

/// `Ok(api)` or NULL with the exception set by import.
pub(crate) fn api() -> Option<&'static Api> {
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

/// The runtime's functions, then `_bench_lookup` (the array ends with
/// `PyMethodDef::zeroed()`).
pub(crate) fn methods() -> Vec<PyMethodDef> {
    vec![
        py_method!(c"prehash", PyCFunction, prehash, METH_O,
            c"prehash($module, key, /)\n--\n\nThe 64-bit id (int) of a key (str or bytes): the first 8 bytes of md5(key), little-endian."),
        py_method!(c"set_slots", PyCFunctionFast, set_slots, METH_FASTCALL,
            c"set_slots($module, tp, slots, /)\n--\n\nAdd or override slots of a type ({key: value}; None removes). \
              Extensible types get their own table; other types go to the foreign registry."),
        py_method!(c"get_slots", PyCFunction, get_slots, METH_O,
            c"get_slots($module, tp, /)\n--\n\nThe effective slots of a type: {key or id: address}."),
        py_method!(c"lookup", PyCFunctionFast, lookup, METH_FASTCALL,
            c"lookup($module, obj, key, /)\n--\n\nThe address (int) registered for key on type(obj), or None, via the same path C consumers use."),
        py_method!(c"table_info", PyCFunction, table_info, METH_O,
            c"table_info($module, tp, /)\n--\n\nA dict: size, bins, count, bytes and kind of the type's effective table."),
        py_method!(c"_bind_key", PyCFunctionFast, bind_key, METH_FASTCALL,
            c"_bind_key($module, key, id, /)\n--\n\nName an id allocated by another scheme (interner only; for tests and tools)."),
        crate::bench::method(),
        PyMethodDef::zeroed(),
    ]
}
