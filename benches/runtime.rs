//! Slot lookup through the CPython runtime, from Rust, against CPython's own
//! ways of finding a per-type implementation, all in one run.
//!
//! `bash benches/run-runtime.sh` (embeds the CPython 3.11 that pyo3-ffi
//! finds; sets the library path). Baselines:
//! - `PyType_GetSlot(tp, Py_tp_repr)` on the same heap type;
//! - `PyObject_GetAttr` of a class attribute (interned name), on the type and
//!   through an instance (how duck-typed consumers find a hook today);
//! - `Py_TYPE` + a field at a fixed offset (the floor for any per-type data).

use core::ffi::c_void;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use extensibletype::{prehash, runtime};
use extensibletype::runtime::pyo3_ffi::*;

/// Run Python source in a fresh namespace holding `ExtensibleType`; return
/// the namespace (new reference).
///
/// # Safety
/// The GIL is held (an attached thread state).
unsafe fn exec(src: &std::ffi::CStr) -> *mut PyObject {
    // SAFETY: the caller holds the GIL (the bench initialises Python and
    // keeps its thread attached); `src` is NUL-terminated.
    unsafe {
        let globals = PyDict_New();
        PyDict_SetItemString(globals, c"__builtins__".as_ptr(), PyEval_GetBuiltins());
        PyDict_SetItemString(globals, c"ExtensibleType".as_ptr(), runtime::metaclass().cast());
        let r = PyRun_String(src.as_ptr(), Py_file_input, globals, globals);
        if r.is_null() {
            PyErr_Print();
            panic!("python setup failed");
        }
        Py_DECREF(r);
        globals
    }
}

fn lookups(c: &mut Criterion) {
    // SAFETY: single-threaded embedding; the interpreter lives for the process.
    unsafe {
        Py_InitializeEx(0);
        runtime::import().expect("runtime import");
        let ns = exec(
            c"
class Provider(metaclass=ExtensibleType):
    __cslots__ = {f'bench.iface.v1:m{i}': 0x1000 + 16 * i for i in range(16)}
    attr = 1
    def __repr__(self):
        return 'p'
obj = Provider()
plain = object()
",
        );
        let obj = PyDict_GetItemString(ns, c"obj".as_ptr());
        let plain = PyDict_GetItemString(ns, c"plain".as_ptr());
        let tp = Py_TYPE(obj);
        let hit = prehash("bench.iface.v1:m7");
        let miss = prehash("bench.iface.v1:absent");
        assert_eq!(runtime::find(obj, hit) as usize, 0x1000 + 16 * 7);
        assert!(runtime::find(plain, hit).is_null());
        let name = PyUnicode_InternFromString(c"attr".as_ptr());

        let mut g = c.benchmark_group("runtime_lookup");
        g.throughput(Throughput::Elements(1));
        g.bench_function("extensibletype_find_hit", |b| {
            b.iter(|| runtime::find(black_box(obj), black_box(hit)))
        });
        g.bench_function("extensibletype_find_hit_not_inlined", |b| {
            b.iter(|| probe_find_for_asm(black_box(obj), black_box(hit)))
        });
        g.bench_function("extensibletype_find_miss_extensible", |b| {
            b.iter(|| runtime::find(black_box(obj), black_box(miss)))
        });
        g.bench_function("extensibletype_find_miss_plain_object", |b| {
            b.iter(|| runtime::find(black_box(plain), black_box(hit)))
        });
        g.bench_function("PyType_GetSlot", |b| {
            b.iter(|| PyType_GetSlot(black_box(tp), Py_tp_repr))
        });
        g.bench_function("PyObject_GetAttr_class_attr", |b| {
            b.iter(|| {
                let r = PyObject_GetAttr(black_box(tp).cast(), name);
                Py_DECREF(r);
                r
            })
        });
        g.bench_function("PyObject_GetAttr_class_attr_via_instance", |b| {
            b.iter(|| {
                let r = PyObject_GetAttr(black_box(obj), name);
                Py_DECREF(r);
                r
            })
        });
        g.bench_function("type_field_load_floor", |b| {
            b.iter(|| {
                let t = Py_TYPE(black_box(obj));
                *(t.cast::<u8>().add(64).cast::<*const c_void>())
            })
        });
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(std::time::Duration::from_millis(300))
        .measurement_time(std::time::Duration::from_secs(2));
    targets = lookups
}
criterion_main!(benches);

/// The lookup as a call (also to read its machine code with objdump).
///
/// # Safety
/// As `runtime::find`.
#[inline(never)]
#[no_mangle]
pub unsafe extern "C" fn probe_find_for_asm(obj: *mut PyObject, id: u64) -> *const c_void {
    // SAFETY: the caller's contract is `runtime::find`'s.
    unsafe { runtime::find(obj, id) }
}
