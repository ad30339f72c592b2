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

/// What the lookups run on: an extensible instance, a plain object, the
/// instance's type, a hit and a miss id, and an interned attribute name.
struct Fixture {
    obj: *mut PyObject,
    plain: *mut PyObject,
    tp: *mut PyTypeObject,
    hit: u64,
    miss: u64,
    name: *mut PyObject,
}

/// Start the interpreter, import the runtime and build the [`Fixture`]
/// (checking the hit and the miss once). The interpreter and the objects
/// live for the process.
fn setup() -> Fixture {
    // SAFETY: single-threaded embedding, called once before any other
    // Python call; the thread stays attached for the process.
    unsafe {
        Py_InitializeEx(0);
        runtime::import().expect("runtime import");
    }
    // SAFETY: the interpreter is initialised and this thread attached.
    let ns = unsafe {
        exec(
            c"
class Provider(metaclass=ExtensibleType):
    __cslots__ = {f'bench.iface.v1:m{i}': 0x1000 + 16 * i for i in range(16)}
    attr = 1
    def __repr__(self):
        return 'p'
obj = Provider()
plain = object()
",
        )
    };
    // SAFETY: `ns` is a live dict holding both names (set by the source above);
    // the borrowed objects live as long as `ns`, which is never released.
    let f = unsafe {
        let obj = PyDict_GetItemString(ns, c"obj".as_ptr());
        let plain = PyDict_GetItemString(ns, c"plain".as_ptr());
        let name = PyUnicode_InternFromString(c"attr".as_ptr());
        Fixture { obj, plain, tp: Py_TYPE(obj), hit: prehash("bench.iface.v1:m7"), miss: prehash("bench.iface.v1:absent"), name }
    };
    // SAFETY: the runtime is imported and both objects are live.
    unsafe {
        assert_eq!(runtime::find(f.obj, f.hit) as usize, 0x1000 + 16 * 7);
        assert!(runtime::find(f.plain, f.hit).is_null());
    }
    f
}

fn lookups(c: &mut Criterion) {
    let Fixture { obj, plain, tp, hit, miss, name } = setup();
    let mut g = c.benchmark_group("runtime_lookup");
    g.throughput(Throughput::Elements(1));
    // In every closure: the runtime is imported, the fixture's objects live
    // for the process, and this thread holds the GIL (`setup`).
    g.bench_function("extensibletype_find_hit", |b| {
        // SAFETY: as stated above the closures.
        b.iter(|| unsafe { runtime::find(black_box(obj), black_box(hit)) })
    });
    g.bench_function("extensibletype_find_hit_not_inlined", |b| {
        // SAFETY: as stated above the closures.
        b.iter(|| unsafe { probe_find_for_asm(black_box(obj), black_box(hit)) })
    });
    g.bench_function("extensibletype_find_miss_extensible", |b| {
        // SAFETY: as stated above the closures.
        b.iter(|| unsafe { runtime::find(black_box(obj), black_box(miss)) })
    });
    g.bench_function("extensibletype_find_miss_plain_object", |b| {
        // SAFETY: as stated above the closures.
        b.iter(|| unsafe { runtime::find(black_box(plain), black_box(hit)) })
    });
    g.bench_function("PyType_GetSlot", |b| {
        // SAFETY: as stated above the closures; `tp` is a heap type.
        b.iter(|| unsafe { PyType_GetSlot(black_box(tp), Py_tp_repr) })
    });
    g.bench_function("PyObject_GetAttr_class_attr", |b| {
        // SAFETY: as stated above the closures; `name` is a live str and
        // the class has the attribute (the new reference is released).
        b.iter(|| unsafe {
            let r = PyObject_GetAttr(black_box(tp).cast(), name);
            Py_DECREF(r);
            r
        })
    });
    g.bench_function("PyObject_GetAttr_class_attr_via_instance", |b| {
        // SAFETY: as for the class attribute above.
        b.iter(|| unsafe {
            let r = PyObject_GetAttr(black_box(obj), name);
            Py_DECREF(r);
            r
        })
    });
    g.bench_function("type_field_load_floor", |b| {
        // SAFETY: as stated above the closures; offset 64 lies inside every
        // type object (a heap type is far larger).
        b.iter(|| unsafe {
            let t = Py_TYPE(black_box(obj));
            *(t.cast::<u8>().add(64).cast::<*const c_void>())
        })
    });
    g.finish();
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
