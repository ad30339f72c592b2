//! Typed methods from Rust (embedding CPython; `cargo test --workspace`):
//! a slot registered under a typed key is found as the very `extern "C" fn`
//! type its id was derived from; another signature is a miss; C slot
//! definitions with a non-canonical typed key are refused, nothing changed.

use core::ffi::c_void;
use core::ptr;

use extensibletype_runtime::pyo3_ffi::*;
use extensibletype_runtime::typed::{find_typed, find_typed_in_type, method_id, Convention, TypedId};
use extensibletype_runtime::{self as runtime, SlotDef};

type Area = unsafe extern "C" fn(*mut PyObject) -> f64;
type AreaF32 = unsafe extern "C" fn(*mut PyObject) -> f32;
type At = unsafe extern "C" fn(*mut PyObject, f64, *mut f64) -> i32;

const AREA: TypedId<Area> = TypedId::new("tests.typed.v1:area");
const AREA_F32: TypedId<AreaF32> = TypedId::new("tests.typed.v1:area");
const AT: TypedId<At> = TypedId::with("tests.typed.v1:at", Convention::RaisesOut);
const _: () = assert!(AREA.id() == method_id::<Area>("tests.typed.v1:area"));

unsafe extern "C" fn area(_obj: *mut PyObject) -> f64 {
    42.5
}

unsafe extern "C" fn at(_obj: *mut PyObject, x: f64, out: *mut f64) -> i32 {
    // SAFETY: the caller passes a writable out-pointer.
    unsafe { *out = 2.0 * x };
    0
}

#[test]
fn typed_find_returns_the_function_type() {
    // SAFETY: one test, on one thread: it initialises the interpreter and
    // holds the GIL throughout; every object used is alive.
    unsafe {
        Py_InitializeEx(0);
        runtime::import().expect("runtime::import");
        assert_eq!(AREA.id(), extensibletype_core::prehash("tests.typed.v1:area#f64(O)"));
        assert_eq!(AT.id(), extensibletype_core::prehash("tests.typed.v1:at#f64(O,f64)!e"));

        let tp = ptr::addr_of_mut!(PyByteArray_Type);
        let defs = [
            SlotDef { key: c"tests.typed.v1:area#f64(O)".as_ptr(), id: 0, ptr: area as *const c_void },
            SlotDef { key: c"tests.typed.v1:at#f64(O,f64)!e".as_ptr(), id: 0, ptr: at as *const c_void },
        ];
        runtime::set_slots(tp.cast(), &defs).expect("set_slots");
        let obj = PyByteArray_FromStringAndSize(ptr::null(), 0);
        let f = find_typed(obj, AREA).expect("area found");
        assert_eq!(f(obj), 42.5);
        assert!(find_typed(obj, AREA_F32).is_none(), "another signature is a miss");
        let g = find_typed_in_type(tp, AT).expect("at found");
        let mut out = 0.0;
        assert_eq!(g(obj, 3.0, &mut out), 0);
        assert_eq!(out, 6.0);
        assert!(find_typed::<Area>(ptr::null_mut(), AREA).is_none());

        // A non-canonical typed key in C slot definitions: ValueError, nothing registered.
        let bad = [
            SlotDef { key: c"tests.typed.v1:other#f64(O)".as_ptr(), id: 0, ptr: area as *const c_void },
            SlotDef { key: c"tests.typed.v1:area#double(O)".as_ptr(), id: 0, ptr: area as *const c_void },
        ];
        assert!(runtime::set_slots(tp.cast(), &bad).is_err());
        assert!(!PyErr_Occurred().is_null() && PyErr_ExceptionMatches(PyExc_ValueError) != 0);
        PyErr_Clear();
        let other: TypedId<Area> = TypedId::new("tests.typed.v1:other");
        assert!(find_typed(obj, other).is_none(), "a failed set_slots changes nothing");
        Py_DECREF(obj);
    }
}
