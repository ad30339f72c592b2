//! `second_runtime`: an extension module with its own copy of the
//! extensibletype runtime (docs/spec.md §7, "one runtime per process").
//!
//! Its init calls [`runtime::import`], which reuses the runtime published in
//! `sys.modules["_extensibletype"]` by whoever initialised first (the
//! `extensibletype` package, or this module when imported before it).
//!
//! Python API (used by `python/tests/test_two_runtimes.py`):
//! - `metaclass()` — the `ExtensibleType` metaclass this copy sees;
//! - `set_slot(tp, key: str, address: int)` — via `runtime::set_slots`;
//! - `find(obj, key: str) -> int | None` — via `runtime::find` + `prehash`;
//! - `make_type(name: str) -> type` — via `runtime::type_from_spec`, with the
//!   slot [`ANSWER_KEY`] pointing at `extern "C" fn() -> c_int` returning 42.

use core::ffi::{c_int, c_void, CStr};
use core::ptr;
use std::ffi::CString;

use extensibletype::runtime::{self, SlotDef};
use pyo3_ffi::*;

/// The slot every `make_type` type carries.
const ANSWER_KEY: &CStr = c"second_runtime.v1:answer";

extern "C" fn answer() -> c_int {
    42
}

/// Check a fastcall argument count; TypeError otherwise.
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

/// A `str` argument as an owned C string (NULL + exception on error).
unsafe fn c_string(obj: *mut PyObject) -> Option<CString> {
    // SAFETY: GIL held; obj is live.
    unsafe {
        let mut len: Py_ssize_t = 0;
        let p = PyUnicode_AsUTF8AndSize(obj, &mut len);
        if p.is_null() {
            return None;
        }
        let bytes = core::slice::from_raw_parts(p.cast::<u8>(), len as usize);
        match CString::new(bytes) {
            Ok(s) => Some(s),
            Err(_) => {
                PyErr_SetString(PyExc_ValueError, c"key contains a NUL character".as_ptr());
                None
            }
        }
    }
}

unsafe extern "C" fn metaclass(_m: *mut PyObject, _unused: *mut PyObject) -> *mut PyObject {
    // SAFETY: GIL held; import() succeeded in module init.
    unsafe { Py_NewRef(runtime::metaclass().cast::<PyObject>()) }
}

unsafe extern "C" fn set_slot(_m: *mut PyObject, args: *mut *mut PyObject, nargs: Py_ssize_t) -> *mut PyObject {
    // SAFETY: GIL held; CPython passes nargs arguments.
    unsafe {
        if !nargs_ok(c"set_slot", nargs, 3) {
            return ptr::null_mut();
        }
        let (tp, key, address) = (*args, *args.add(1), *args.add(2));
        let Some(key) = c_string(key) else { return ptr::null_mut() };
        let address = PyLong_AsUnsignedLongLong(address);
        if !PyErr_Occurred().is_null() {
            return ptr::null_mut();
        }
        let def = SlotDef { key: key.as_ptr(), id: 0, ptr: address as usize as *const c_void };
        match runtime::set_slots(tp, &[def]) {
            Ok(()) => Py_NewRef(Py_None()),
            Err(runtime::PyErrSet) => ptr::null_mut(),
        }
    }
}

unsafe extern "C" fn find(_m: *mut PyObject, args: *mut *mut PyObject, nargs: Py_ssize_t) -> *mut PyObject {
    // SAFETY: as above; the caller's arguments keep `obj` alive.
    unsafe {
        if !nargs_ok(c"find", nargs, 2) {
            return ptr::null_mut();
        }
        let (obj, key) = (*args, *args.add(1));
        let Some(key) = c_string(key) else { return ptr::null_mut() };
        let id = extensibletype::prehash(key.to_str().expect("came from a str"));
        let found = runtime::find(obj, id);
        if found.is_null() {
            Py_NewRef(Py_None())
        } else {
            PyLong_FromUnsignedLongLong(found as usize as u64)
        }
    }
}

unsafe extern "C" fn make_type(module: *mut PyObject, name: *mut PyObject) -> *mut PyObject {
    // SAFETY: GIL held. The spec, its name and its (empty) slot array are
    // leaked: type objects may keep pointing at them (a test-only module).
    unsafe {
        let Some(name) = c_string(name) else { return ptr::null_mut() };
        let full = CString::new(format!("second_runtime.{}", name.to_str().expect("came from a str")))
            .expect("no NUL");
        let slots: &'static mut [PyType_Slot] =
            Box::leak(Box::new([PyType_Slot { slot: 0, pfunc: ptr::null_mut() }]));
        let spec: &'static mut PyType_Spec = Box::leak(Box::new(PyType_Spec {
            name: full.into_raw(),
            basicsize: 0,
            itemsize: 0,
            flags: (Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE) as _,
            slots: slots.as_mut_ptr(),
        }));
        let defs = [SlotDef { key: ANSWER_KEY.as_ptr(), id: 0, ptr: answer as *const c_void }];
        runtime::type_from_spec(module, spec, ptr::null_mut(), &defs).unwrap_or(ptr::null_mut())
    }
}

/// Module initialisation: attach to (or create) the process's runtime.
///
/// # Safety
/// Called by CPython's import machinery with the GIL held.
#[no_mangle]
pub unsafe extern "C" fn PyInit_second_runtime() -> *mut PyObject {
    let methods: &'static mut [PyMethodDef] = Box::leak(Box::new([
        PyMethodDef {
            ml_name: c"metaclass".as_ptr(),
            ml_meth: PyMethodDefPointer { PyCFunction: metaclass },
            ml_flags: METH_NOARGS,
            ml_doc: c"metaclass()\n--\n\nThe ExtensibleType metaclass this runtime copy uses.".as_ptr(),
        },
        PyMethodDef {
            ml_name: c"set_slot".as_ptr(),
            ml_meth: PyMethodDefPointer { PyCFunctionFast: set_slot },
            ml_flags: METH_FASTCALL,
            ml_doc: c"set_slot(tp, key, address)\n--\n\nruntime::set_slots with one named slot.".as_ptr(),
        },
        PyMethodDef {
            ml_name: c"find".as_ptr(),
            ml_meth: PyMethodDefPointer { PyCFunctionFast: find },
            ml_flags: METH_FASTCALL,
            ml_doc: c"find(obj, key) -> int | None\n--\n\nruntime::find(obj, prehash(key)).".as_ptr(),
        },
        PyMethodDef {
            ml_name: c"make_type".as_ptr(),
            ml_meth: PyMethodDefPointer { PyCFunction: make_type },
            ml_flags: METH_O,
            ml_doc: c"make_type(name) -> type\n--\n\nruntime::type_from_spec with the slot second_runtime.v1:answer."
                .as_ptr(),
        },
        PyMethodDef::zeroed(),
    ]));
    let def: &'static mut PyModuleDef = Box::leak(Box::new(PyModuleDef {
        m_base: PyModuleDef_HEAD_INIT,
        m_name: c"second_runtime".as_ptr(),
        m_doc: c"A second copy of the extensibletype runtime (tests docs/spec.md section 7).".as_ptr(),
        m_size: -1,
        m_methods: methods.as_mut_ptr(),
        m_slots: ptr::null_mut(),
        m_traverse: None,
        m_clear: None,
        m_free: None,
    }));
    // SAFETY: GIL held during module init.
    unsafe {
        if runtime::import().is_err() {
            return ptr::null_mut();
        }
        let module = PyModule_Create(def);
        if module.is_null() {
            return ptr::null_mut();
        }
        #[cfg(Py_GIL_DISABLED)]
        PyUnstable_Module_SetGIL(module, Py_MOD_GIL_NOT_USED);
        let key = PyUnicode_FromString(ANSWER_KEY.as_ptr());
        if key.is_null() || PyModule_AddObjectRef(module, c"ANSWER_KEY".as_ptr(), key) < 0 {
            Py_XDECREF(key);
            Py_DECREF(module);
            return ptr::null_mut();
        }
        Py_DECREF(key);
        module
    }
}
