//! The runtime's Python functions on `extensibletype._core` (`prehash`,
//! `set_slots`, `get_slots`, `lookup`, `table_info`, `_bind_key`, `method_key`,
//! `_parse_typed_key`): thin argument parsing over the runtime's [`Api`].

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

/// `obj` as UTF-8 text, or NULL with TypeError naming `what`.
///
/// # Safety
/// GIL held; `obj` is a live object. The text borrows `obj`.
unsafe fn str_arg<'a>(obj: *mut PyObject, func: &CStr, what: &CStr) -> Option<&'a str> {
    // SAFETY: GIL held; obj is live; the UTF-8 buffer lives as long as obj.
    unsafe {
        if PyUnicode_Check(obj) == 0 {
            PyErr_Format(PyExc_TypeError, c"%s() argument '%s' must be str, not %S".as_ptr(), func.as_ptr(), what.as_ptr(), Py_TYPE(obj));
            return None;
        }
        let mut len: Py_ssize_t = 0;
        let p = PyUnicode_AsUTF8AndSize(obj, &mut len);
        if p.is_null() {
            return None;
        }
        core::str::from_utf8(core::slice::from_raw_parts(p.cast::<u8>(), len as usize)).ok()
    }
}

/// Raise ValueError with `msg`; NULL.
///
/// # Safety
/// GIL held.
pub(crate) unsafe fn value_error(msg: &str) -> *mut PyObject {
    // SAFETY: GIL held; the message is a valid (length-given) UTF-8 buffer.
    unsafe {
        let text = PyUnicode_FromStringAndSize(msg.as_ptr().cast(), msg.len() as Py_ssize_t);
        if !text.is_null() {
            PyErr_SetObject(PyExc_ValueError, text);
            Py_DECREF(text);
        }
    }
    ptr::null_mut()
}

/// A new `str` from Rust text (NULL with an exception set on failure).
///
/// # Safety
/// GIL held.
unsafe fn new_str(s: &str) -> *mut PyObject {
    // SAFETY: GIL held; s is valid UTF-8 of the given length.
    unsafe { PyUnicode_FromStringAndSize(s.as_ptr().cast(), s.len() as Py_ssize_t) }
}

unsafe extern "C" fn method_key(_m: *mut PyObject, args: *mut *mut PyObject, nargs: Py_ssize_t) -> *mut PyObject {
    // SAFETY: GIL held; CPython passes nargs arguments.
    unsafe {
        if !nargs_ok(c"method_key", nargs, 2) {
            return ptr::null_mut();
        }
        let Some(name) = str_arg(*args, c"method_key", c"name") else { return ptr::null_mut() };
        let Some(sig) = str_arg(*args.add(1), c"method_key", c"signature") else { return ptr::null_mut() };
        match extensibletype_core::signature::method_key(name, sig) {
            Ok(key) => new_str(&key),
            Err(e) => value_error(e.message()),
        }
    }
}

/// A new tuple of new `str`s (NULL with an exception set).
///
/// # Safety
/// GIL held.
unsafe fn str_tuple(items: &[String]) -> *mut PyObject {
    // SAFETY: GIL held; every new reference is stolen by the tuple or released.
    unsafe {
        let t = PyTuple_New(items.len() as Py_ssize_t);
        if t.is_null() {
            return ptr::null_mut();
        }
        for (i, s) in items.iter().enumerate() {
            let item = new_str(s);
            if item.is_null() {
                Py_DECREF(t);
                return ptr::null_mut();
            }
            // Steals item; cannot fail for an index in range of a new tuple.
            PyTuple_SetItem(t, i as Py_ssize_t, item);
        }
        t
    }
}

/// A new tuple stealing `items` (NULL with an exception set if one of them
/// is NULL or the tuple cannot be made; the others are released then).
///
/// # Safety
/// GIL held; each item is NULL or a new reference.
unsafe fn tuple_stealing<const N: usize>(items: [*mut PyObject; N]) -> *mut PyObject {
    // SAFETY: GIL held; each item is NULL or a new reference (the caller's
    // contract), stolen by the tuple or released.
    unsafe {
        let out = if items.iter().any(|p| p.is_null()) { ptr::null_mut() } else { PyTuple_New(N as Py_ssize_t) };
        if out.is_null() {
            for item in items {
                if !item.is_null() {
                    Py_DECREF(item);
                }
            }
            return ptr::null_mut();
        }
        for (i, item) in items.into_iter().enumerate() {
            PyTuple_SetItem(out, i as Py_ssize_t, item);
        }
        out
    }
}

unsafe extern "C" fn parse_typed_key(_m: *mut PyObject, key: *mut PyObject) -> *mut PyObject {
    // SAFETY: GIL held; key is live (CPython's METH_O argument).
    let Some(text) = (unsafe { str_arg(key, c"_parse_typed_key", c"key") }) else { return ptr::null_mut() };
    let k = match extensibletype_core::signature::parse_typed_key(text) {
        Ok(k) => k,
        // SAFETY: GIL held.
        Err(e) => return unsafe { value_error(e.message()) },
    };
    let sig = &k.signature;
    let args: Vec<String> = sig.args.iter().map(|a| a.to_string()).collect();
    // SAFETY: GIL held; each item is a new reference or NULL.
    unsafe {
        let args = str_tuple(&args);
        tuple_stealing([new_str(k.interface), new_str(k.method), new_str(&sig.ret.to_string()), args, new_str(sig.flag.letter())])
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
            c"table_info($module, tp, /)\n--\n\nA dict: size, bins, count, bytes, kind and flat (a single-level table) of the\ntype's effective table."),
        py_method!(c"_bind_key", PyCFunctionFast, bind_key, METH_FASTCALL,
            c"_bind_key($module, key, id, /)\n--\n\nName an id allocated by another scheme (interner only; for tests and tools)."),
        py_method!(c"method_key", PyCFunctionFast, method_key, METH_FASTCALL,
            c"method_key($module, name, signature, /)\n--\n\nThe canonical typed key name#signature for a method name \
              '<interface>:<method>' and a signature such as 'f64(O)'; ValueError naming the problem otherwise."),
        py_method!(c"_parse_typed_key", PyCFunction, parse_typed_key, METH_O,
            c"_parse_typed_key($module, key, /)\n--\n\nSplit a canonical typed key into (interface, method, ret, args, flag): \
              codes as canonical strings ('f64', '*f64', 'O+'), args a tuple, flag '', 't' or 'e'. ValueError otherwise."),
        #[cfg(all(bind_registers, not(all(Py_LIMITED_API, Py_GIL_DISABLED))))]
        py_method!(c"bind", PyCFunctionFast, crate::bind::bind, METH_FASTCALL,
            c"bind($module, obj, key, /)\n--\n\nThe typed method key of type(obj) as a callable with obj bound first, \
              or None when the lookup misses; ValueError for a key that is not a canonical typed key. \
              Signatures passed in registers are called directly; others through extensibletype._bind (ctypes)."),
        crate::bench::method(),
        PyMethodDef::zeroed(),
    ]
}
