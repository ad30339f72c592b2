//! The Rust API on bad input (embedding CPython; `cargo test --workspace`):
//! a NULL object, id 0 or an object that is not a type gets NULL from the
//! lookups and a Python exception (nothing changed) from the writers.

use core::ffi::c_void;
use core::ptr;

use extensibletype_runtime::pyo3_ffi::*;
use extensibletype_runtime::{self as runtime, SlotDef};

/// The pending exception is of `kind` (then cleared).
///
/// # Safety
/// GIL held; `kind` is an exception type.
unsafe fn take_error(kind: *mut PyObject) -> bool {
    // SAFETY: GIL held by the caller.
    unsafe {
        let matches = !PyErr_Occurred().is_null() && PyErr_ExceptionMatches(kind) != 0;
        PyErr_Clear();
        matches
    }
}

#[test]
fn bad_input_gets_null_or_an_error() {
    // SAFETY: one test, on one thread: it initialises the interpreter and
    // holds the GIL throughout.
    unsafe {
        Py_InitializeEx(0);
        runtime::import().expect("runtime::import");
    }
    let key = c"tests.bad_input.v1:f";
    let id = extensibletype_core::prehash("tests.bad_input.v1:f");

    // Lookups: NULL, id 0, a non-type: NULL, never a read of garbage.
    // SAFETY: GIL held (this thread initialised the interpreter); `five` is
    // a new reference, released at the end.
    let five = unsafe {
        assert!(runtime::find(ptr::null_mut(), id).is_null());
        assert!(runtime::find_in_type(ptr::null_mut(), id).is_null());
        let five = PyLong_FromLong(5);
        assert!(runtime::find(five, 0).is_null());
        assert!(runtime::find_in_type(five.cast(), id).is_null(), "an int is not a type");
        assert!(PyErr_Occurred().is_null(), "lookups never raise");
        five
    };

    // A slot on a foreign type, then the same bad inputs around it.
    let tp = ptr::addr_of_mut!(PyByteArray_Type);
    let defs = [SlotDef { key: key.as_ptr(), id: 0, ptr: 0x1234 as *const c_void }];
    // SAFETY: GIL held; bytearray is a static type; `instance` is a new
    // reference, released at the end.
    let instance = unsafe {
        runtime::set_slots(tp.cast(), &defs).expect("set_slots on bytearray");
        assert_eq!(runtime::find_in_type(tp, id) as usize, 0x1234);
        assert!(runtime::find_in_type(tp, 0).is_null(), "id 0 never matches an empty slot");
        let instance = PyByteArray_FromStringAndSize(ptr::null(), 0);
        assert_eq!(runtime::find(instance, id) as usize, 0x1234);
        instance
    };

    // Writers: NULL and non-types get TypeError, id 0 ValueError; the
    // published slot stays.
    // SAFETY: GIL held; `five` and bytearray are alive.
    unsafe {
        assert!(runtime::set_slots(ptr::null_mut(), &defs).is_err());
        assert!(take_error(PyExc_TypeError));
        assert!(runtime::set_slots(five, &defs).is_err());
        assert!(take_error(PyExc_TypeError));
        let zero = [SlotDef { key: ptr::null(), id: 0, ptr: ptr::dangling::<c_void>() }];
        assert!(runtime::set_slots(tp.cast(), &zero).is_err());
        assert!(take_error(PyExc_ValueError));
        assert_eq!(runtime::find_in_type(tp, id) as usize, 0x1234, "a failed set_slots changes nothing");
    }

    // type_from_spec with a NULL spec: Err(PyErrSet) and an exception.
    // SAFETY: GIL held; NULL spec, module and bases are what is tested.
    unsafe {
        assert_eq!(
            runtime::type_from_spec(ptr::null_mut(), ptr::null_mut(), ptr::null_mut(), &defs),
            Err(runtime::PyErrSet)
        );
        assert!(!PyErr_Occurred().is_null());
        PyErr_Clear();
    }

    // Remove the slot again.
    let remove = [SlotDef { key: key.as_ptr(), id: 0, ptr: ptr::null() }];
    // SAFETY: GIL held; `instance` and `five` are the new references made
    // above, released once.
    unsafe {
        runtime::set_slots(tp.cast(), &remove).expect("remove");
        assert!(runtime::find_in_type(tp, id).is_null());
        Py_DECREF(instance);
        Py_DECREF(five);
    }
}
