//! Provider registration from Python: `register_buffer_type`,
//! `_register_numpy` (and its layout check `_numpy_fields`) and the
//! adapters' addresses for tests (`_slot_addresses`).

use core::ffi::{c_void, CStr};
use core::ptr;

use pyo3_ffi::*;

use super::nargs_in;
use crate::abi;
use crate::providers::{buffer, numpy};
use crate::runtime::pyutil::py_method;
use crate::runtime::{self, SlotDef};
use crate::util::{self, guard, raise, ret, Owned, PyErrSet};

// ---- registration --------------------------------------------------------------

fn slot_defs(acquire: abi::AcquireFn, release: abi::ReleaseFn) -> [SlotDef; 2] {
    [
        SlotDef { key: abi::KEY_ACQUIRE.as_ptr(), id: 0, ptr: acquire as *const c_void },
        SlotDef { key: abi::KEY_RELEASE.as_ptr(), id: 0, ptr: release as *const c_void },
    ]
}

/// `Ok` when `tp` is a type, else TypeError naming `func`.
///
/// # Safety
/// GIL held; `tp` is a live object (a borrowed argument of the caller).
unsafe fn require_type(tp: *mut PyObject, func: &str) -> Result<(), PyErrSet> {
    // SAFETY: GIL held; tp is a live argument.
    if unsafe { PyType_Check(tp) } == 0 {
        // SAFETY: as above.
        let name = unsafe { util::type_name(tp) };
        return raise(util::type_error(), &format!("{func}() argument must be a type, not {name}"));
    }
    Ok(())
}

unsafe extern "C" fn py_register_buffer_type(_m: *mut PyObject, tp: *mut PyObject) -> *mut PyObject {
    guard(ptr::null_mut(), || {
        // SAFETY: GIL held; runtime imported at module init.
        ret(unsafe {
            require_type(tp, "register_buffer_type")
                .and_then(|()| runtime::set_slots(tp, &slot_defs(buffer::buf_acquire, buffer::buf_release)))
                .map(|()| Py_NewRef(Py_None()))
        })
    })
}

/// `ndarray.__basicsize__` >= the mirror's, and the type is numpy's.
unsafe fn check_ndarray_type(tp: *mut PyObject) -> Result<(), PyErrSet> {
    // SAFETY: GIL held.
    unsafe {
        require_type(tp, "_register_numpy")?;
        let attr = |name: &CStr| Owned::new(PyObject_GetAttrString(tp, name.as_ptr()));
        let module = attr(c"__module__")?;
        let qualname = attr(c"__qualname__")?;
        if util::str_of(module.0).as_deref() != Some("numpy") || util::str_of(qualname.0).as_deref() != Some("ndarray")
        {
            return raise(util::type_error(), "expected numpy.ndarray");
        }
        let basicsize = attr(c"__basicsize__")?;
        let n = PyLong_AsSsize_t(basicsize.0);
        if n < 0 || (n as usize) < numpy::npy_array_basicsize() {
            return raise(
                util::type_error(),
                &format!(
                    "numpy.ndarray.__basicsize__ is {n}, smaller than NumPy 2's PyArrayObject_fields ({})",
                    numpy::npy_array_basicsize()
                ),
            );
        }
        Ok(())
    }
}

unsafe extern "C" fn py_numpy_fields(_m: *mut PyObject, args: *mut *mut PyObject, nargs: Py_ssize_t) -> *mut PyObject {
    guard(ptr::null_mut(), || {
        // SAFETY: GIL held; the type checks precede any raw read.
        unsafe {
            if nargs_in("_numpy_fields", nargs, 2, 2).is_err() {
                return ptr::null_mut();
            }
            let (tp, arr) = (*args, *args.add(1));
            if check_ndarray_type(tp).is_err() {
                return ptr::null_mut();
            }
            if PyObject_TypeCheck(arr, tp.cast()) == 0 {
                return ret(raise(util::type_error(), "_numpy_fields(): not an ndarray"));
            }
            numpy::fields(arr)
        }
    })
}

unsafe extern "C" fn py_register_numpy(
    _m: *mut PyObject,
    args: *mut *mut PyObject,
    nargs: Py_ssize_t,
) -> *mut PyObject {
    guard(ptr::null_mut(), || {
        // SAFETY: GIL held.
        ret(unsafe {
            nargs_in("_register_numpy", nargs, 2, 2).and_then(|()| {
                let (tp, mode) = (*args, *args.add(1));
                let defs = match util::str_of(mode).as_deref() {
                    Some("direct") => {
                        check_ndarray_type(tp)?;
                        slot_defs(numpy::np_acquire, numpy::np_release)
                    }
                    Some("buffer") => {
                        require_type(tp, "_register_numpy")?;
                        slot_defs(buffer::buf_acquire, buffer::buf_release)
                    }
                    _ => return raise(util::value_error(), "_register_numpy(): mode must be 'direct' or 'buffer'"),
                };
                {
                    runtime::set_slots(tp, &defs)?;
                    Ok(Py_NewRef(Py_None()))
                }
            })
        })
    })
}

unsafe extern "C" fn py_slot_addresses(_m: *mut PyObject, _unused: *mut PyObject) -> *mut PyObject {
    guard(ptr::null_mut(), || {
        // SAFETY: GIL held.
        unsafe {
            let pair = |a: abi::AcquireFn, r: abi::ReleaseFn| {
                crate::runtime::pyutil::new_tuple([
                    PyLong_FromVoidPtr(a as *mut c_void),
                    PyLong_FromVoidPtr(r as *mut c_void),
                ])
            };
            let Ok(d) = Owned::new(PyDict_New()) else { return ptr::null_mut() };
            for (k, v) in [
                (c"numpy", pair(numpy::np_acquire, numpy::np_release)),
                (c"buffer", pair(buffer::buf_acquire, buffer::buf_release)),
            ] {
                let Ok(v) = Owned::new(v) else { return ptr::null_mut() };
                if PyDict_SetItemString(d.0, k.as_ptr(), v.0) < 0 {
                    return ptr::null_mut();
                }
            }
            d.into_ptr()
        }
    })
}

/// The registration functions' method table entries.
pub(super) fn methods() -> Vec<PyMethodDef> {
    vec![
        py_method!(c"register_buffer_type", PyCFunction, py_register_buffer_type, METH_O,
            c"register_buffer_type(tp)\n--\n\nProvide array.v1 on a buffer-protocol type through the generic buffer adapter."),
        py_method!(c"_register_numpy", PyCFunctionFast, py_register_numpy, METH_FASTCALL,
            c"_register_numpy(ndarray, mode)\n--\n\nRegister the 'direct' (struct mirror) or 'buffer' adapter on numpy.ndarray."),
        py_method!(c"_numpy_fields", PyCFunctionFast, py_numpy_fields, METH_FASTCALL,
            c"_numpy_fields(ndarray, arr) -> tuple\n--\n\nWhat the NumPy struct mirror reads from arr (layout check)."),
        py_method!(c"_slot_addresses", PyCFunction, py_slot_addresses, METH_NOARGS,
            c"_slot_addresses() -> dict\n--\n\nAddresses of the adapters' acquire/release functions (tests)."),
    ]
}
