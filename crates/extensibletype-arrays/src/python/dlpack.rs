//! DLPack's Python names in the `_arrays` submodule: `to_dlpack`,
//! `register_dlpack_type`, `_adopt` (what the C header's
//! `ExtType_ArrayGetView` calls on a miss), `_adopted`, `_forget_adopted`,
//! `_bench_dlpack_cost` (feature `hooks`), the `DLPACK_*` constants and
//! `Array.__dlpack_c_exchange_api__`. The machinery is
//! `crate::providers::dlpack`; this file binds it, and installs its
//! adoption as the one
//! [`Provider::of_or_raise`](crate::abi::Provider::of_or_raise) runs on a miss.

use core::ptr;

use pyo3_ffi::*;

use crate::dlpack_abi;
use crate::providers::dlpack;
use crate::runtime::pyutil::py_method;
use crate::util::{self, Owned, PyErrSet};

/// Constants the tests read.
///
/// # Safety
/// The GIL is held and every pointer argument is live and valid for its type.
unsafe fn constants(m: *mut PyObject) -> Result<(), PyErrSet> {
    // SAFETY: GIL held.
    unsafe {
        for (name, v) in [
            (c"DLPACK_MAJOR", dlpack_abi::MAJOR as i64),
            (c"DLPACK_MINOR", dlpack_abi::MINOR as i64),
            (c"DLPACK_FLAG_READ_ONLY", dlpack_abi::FLAG_READ_ONLY as i64),
            (c"DLPACK_FLAG_IS_COPIED", dlpack_abi::FLAG_IS_COPIED as i64),
        ] {
            util::add(m, name, PyLong_FromLongLong(v))?;
        }
        util::add(m, c"_DLPACK_API_ADDRESS", PyLong_FromVoidPtr(ptr::addr_of!(dlpack::EXCHANGE_API).cast_mut().cast()))
    }
}

/// Add `to_dlpack`, `register_dlpack_type`, `_bench_dlpack_cost` and the
/// constants to the `_arrays` module, and the exchange table to `Array`;
/// make this slot set's adoption the one a miss runs in this binary.
pub(super) fn add_to_module(m: *mut PyObject) -> Result<(), PyErrSet> {
    crate::abi::set_adopt_on_miss(dlpack::adopt_on_miss);
    let methods: &'static mut [PyMethodDef] = Box::leak(Box::new([
        py_method!(c"to_dlpack", PyCFunctionFastWithKeywords, dlpack::py_to_dlpack, METH_FASTCALL | METH_KEYWORDS,
            c"to_dlpack(obj, *, stream=None, max_version=None, dl_device=None, copy=None)\n--\n\n\
              A DLPack capsule of any array.v1 provider (the __dlpack__ protocol: \"dltensor\" without max_version,\n\
              \"dltensor_versioned\" with it). The export holds a view (and so the provider's pin) until its deleter runs."),
        py_method!(c"register_dlpack_type", PyCFunction, dlpack::py_register_dlpack_type, METH_O,
            c"register_dlpack_type(tp) -> str\n--\n\n\
              Make a DLPack exporter type an array.v1 provider now: through its __dlpack_c_exchange_api__ table\n\
              (returns 'c') or its __dlpack__ method (returns 'python'); for an abstract base without DLPack,\n\
              its DLPack subclasses as they are met (returns 'subclasses')."),
        py_method!(c"_adopt", PyCFunction, dlpack::py_adopt, METH_O,
            c"_adopt(obj) -> True\n--\n\n\
              True once type(obj) provides array.v1 (already, or adopted now as a DLPack exporter); else the\n\
              consumer's TypeError. ExtType_ArrayGetView calls it on a miss."),
        py_method!(c"_adopted", PyCFunction, dlpack::py_adopted, METH_NOARGS,
            c"_adopted() -> (int, list)\n--\n\nAdoptions on a miss so far, and the types so adopted."),
        py_method!(c"_forget_adopted", PyCFunction, dlpack::py_forget_adopted, METH_NOARGS,
            c"_forget_adopted()\n--\n\nRemove the slots of the types adopted on a miss; forget bases and refusals."),
        #[cfg(feature = "hooks")]
        py_method!(c"_bench_dlpack_cost", PyCFunctionFast, dlpack::py_bench, METH_FASTCALL,
            c"_bench_dlpack_cost(obj, method, iterations) -> float\n--\n\nNanoseconds per DLPack call from C:\n\
              'fill', 'fill_lookup', 'managed' (export + deleter), 'dunder' (__dlpack__(max_version=(1, 3)))."),
        PyMethodDef::zeroed(),
    ]));
    // SAFETY: GIL held (module init); the table is leaked.
    unsafe {
        for def in methods.iter_mut() {
            if def.ml_name.is_null() {
                break;
            }
            let f = Owned::new(PyCFunction_NewEx(def, ptr::null_mut(), ptr::null_mut()))?;
            if PyModule_AddObjectRef(m, def.ml_name, f.0) < 0 {
                return Err(PyErrSet);
            }
        }
        constants(m)?;
        let tp = Owned::new(PyObject_GetAttrString(m, c"Array".as_ptr()))?;
        dlpack::install(tp.0)
    }
}
