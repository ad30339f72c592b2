//! The `extensibletype._core` extension module (the cdylib maturin builds):
//! the one place where the layers are wired together — the runtime's Python
//! API (thin argument parsing over its [`Api`]) and the arrays
//! layer's `_arrays` submodule. The Python package `extensibletype`
//! re-exports it.
//!
//! The composition root: the runtime never names a use; each slot set
//! registers itself here with one call from `populate` (array.v1:
//! `extensibletype_arrays::register`). Files: `functions.rs` (the runtime's
//! Python functions), `bench.rs` (`_bench_lookup`, product: `python -m
//! extensibletype bench`), this file (multi-phase module init, run once per
//! interpreter, for the full API and abi3t). Feature `hooks` forwards to the slot sets' test/bench hooks.

#![deny(unsafe_op_in_unsafe_fn)]

use core::ffi::{c_int, CStr};
use core::ptr;
use std::sync::atomic::{AtomicPtr, Ordering};
#[cfg(not(all(Py_LIMITED_API, Py_GIL_DISABLED)))]
use std::sync::OnceLock;

use pyo3_ffi::*;

mod bench;
#[cfg(all(bind_registers, not(all(Py_LIMITED_API, Py_GIL_DISABLED))))]
mod bind;
mod functions;

use extensibletype_arrays as arrays;
use extensibletype_runtime::pyutil::add;
#[cfg(not(all(Py_LIMITED_API, Py_GIL_DISABLED)))]
use extensibletype_runtime::pyutil::keep_forever;
use extensibletype_runtime::{self as runtime, Api};
use functions::{api, methods};

const NAME: &CStr = c"extensibletype._core";
const DOC: &CStr = c"The extensibletype runtime (see the extensibletype package).";

/// The `_arrays` submodule of the first module instance: later instances
/// (one per interpreter, multi-phase init) share it, like the metaclass and
/// the `Array` type it holds (process-wide, docs/spec.md §7).
static ARRAYS: AtomicPtr<PyObject> = AtomicPtr::new(ptr::null_mut());

/// Add the runtime's objects and the `_arrays` submodule to `module`.
/// 0, or -1 with an exception set.
///
/// # Safety
/// GIL held (module execution); `module` is a live module.
unsafe fn populate(module: *mut PyObject, api: &'static Api) -> c_int {
    // SAFETY: GIL held; module is live; `add` consumes each new reference.
    unsafe {
        let capsule = PyCapsule_New(runtime::published(api).cast_mut().cast(), runtime::CAPSULE_NAME.as_ptr(), None);
        let ok = add(module, c"ExtensibleType", Py_NewRef(api.metaclass.cast())).is_ok()
            && add(module, c"_C_API", capsule).is_ok()
            && add(module, c"ABI_VERSION", PyLong_FromLong(runtime::ABI_VERSION as _)).is_ok()
            && add(module, c"TABLE_OFFSET", PyLong_FromSsize_t(api.table_offset)).is_ok()
            && add(module, c"_VERSION_TAG_OFFSET", PyLong_FromLong(api.version_tag_offset as _)).is_ok();
        if !ok {
            return -1;
        }
        // The slot sets: one `register` call each (docs/spec.md, "Adding a
        // slot set"), in the first instance; later ones share its submodule.
        let shared = ARRAYS.load(Ordering::Acquire);
        if !shared.is_null() {
            return if add(module, c"_arrays", Py_NewRef(shared)).is_ok() { 0 } else { -1 };
        }
        if arrays::register(module) < 0 {
            return -1;
        }
        let made = PyObject_GetAttrString(module, c"_arrays".as_ptr());
        if made.is_null() {
            return -1;
        }
        ARRAYS.store(made, Ordering::Release); // kept for the process
        0
    }
}

/// `Py_mod_exec`, in every interpreter that imports the module: load (or
/// create) the process's runtime, then fill the module. Isolated
/// interpreters with their own GIL never get here: the module declares
/// `Py_MOD_MULTIPLE_INTERPRETERS_SUPPORTED`, not per-interpreter-GIL support
/// (docs/spec.md §7), and the package turns CPython's refusal into an
/// `ImportError` that says why.
///
/// # Safety
/// Called by CPython's import machinery with the GIL held.
unsafe extern "C" fn exec(module: *mut PyObject) -> c_int {
    // SAFETY: GIL held (module execution); module is live.
    unsafe { api().map_or(-1, |api| populate(module, api)) }
}

/// Multi-phase initialisation (PEP 489): the definition, with its slots,
/// made once and kept for the process.
///
/// # Safety
/// Called by CPython's import machinery with the GIL held.
#[cfg(not(all(Py_LIMITED_API, Py_GIL_DISABLED)))]
#[no_mangle]
pub unsafe extern "C" fn PyInit__core() -> *mut PyObject {
    struct Def(*mut PyModuleDef);
    // SAFETY: the definition is immutable after creation (CPython writes
    // only its m_base under the GIL) and lives for the process.
    unsafe impl Send for Def {}
    // SAFETY: as above.
    unsafe impl Sync for Def {}
    static DEF: OnceLock<Def> = OnceLock::new();
    let def = DEF
        .get_or_init(|| {
            let exec_fn: unsafe extern "C" fn(*mut PyObject) -> c_int = exec;
            let slots = vec![
                PyModuleDef_Slot { slot: Py_mod_exec, value: exec_fn as *mut core::ffi::c_void },
                #[cfg(Py_3_12)]
                PyModuleDef_Slot { slot: Py_mod_multiple_interpreters, value: Py_MOD_MULTIPLE_INTERPRETERS_SUPPORTED },
                #[cfg(Py_3_13)]
                PyModuleDef_Slot { slot: Py_mod_gil, value: Py_MOD_GIL_NOT_USED },
                PyModuleDef_Slot { slot: 0, value: ptr::null_mut() },
            ];
            Def(keep_forever(Box::new(PyModuleDef {
                m_base: PyModuleDef_HEAD_INIT,
                m_name: NAME.as_ptr(),
                m_doc: DOC.as_ptr(),
                m_size: 0,
                m_methods: methods().leak().as_mut_ptr(),
                m_slots: slots.leak().as_mut_ptr(),
                m_traverse: None,
                m_clear: None,
                m_free: None,
            })))
        })
        .0;
    // SAFETY: GIL held; `def` lives for the process.
    unsafe { PyModuleDef_Init(def) }
}

/// abi3t (PEP 803, CPython 3.15+): no `PyModuleDef`, so the module is
/// exported as PEP 793 slots — name, doc, methods, the same exec function
/// as `PyInit__core`'s definition, `Py_mod_multiple_interpreters` and
/// `Py_mod_gil` (the runtime is thread-safe: one binary for 3.15 and 3.15t). The slot array is made once and lives for
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
                    PySlot_DATA(Py_mod_multiple_interpreters, Py_MOD_MULTIPLE_INTERPRETERS_SUPPORTED),
                    PySlot_DATA(Py_mod_gil, Py_MOD_GIL_NOT_USED),
                    PySlot_END(),
                ];
                Slots(slots.leak().as_mut_ptr())
            })
            .0
    }
}
