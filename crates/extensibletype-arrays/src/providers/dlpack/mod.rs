//! DLPack 1.3 both ways.
//!
//! **Out of array.v1**: [`export()`] turns any array.v1 provider into a
//! DLPack managed tensor (legacy `"dltensor"` or `"dltensor_versioned"`
//! capsule), holding one acquired view, and so the provider's pin on the
//! memory, until the deleter runs. `Array.__dlpack__`, `to_dlpack(obj)` and
//! the exchange table's `managed_tensor_from_py_object_no_sync` all use it.
//! `Array`'s type carries `__dlpack_c_exchange_api__` ([`EXCHANGE_API`]).
//!
//! **Into array.v1**: [`py_register_dlpack_type`] registers, on any type
//! with `__dlpack_c_exchange_api__` (the C path; also the older
//! `__c_dlpack_exchange_api__`) or `__dlpack__` (the Python path),
//! acquire/release slots that hold one managed tensor per view and call its
//! deleter on release (never a borrowed fill: `import.rs`, `c_acquire_with`).
//! Without registration, `adopt.rs` does the same on a
//! type's first array.v1 miss (docs/spec.md §12.3).
//!
//! Every deleter made here takes the GIL itself (it releases an array.v1
//! view and a reference) and does nothing once the interpreter is gone.
//!
//! Files: `export.rs` (array.v1 -> DLPack), `plan.rs` (the checks of an
//! export and an import, pure), `exchange.rs` (Array's
//! `DLPackExchangeAPI`), `import.rs` (DLPack -> array.v1), `adopt.rs`
//! (import without registration, on a miss), `bench.rs`
//! (`_bench_dlpack_cost`, feature `hooks`); this file holds the shared
//! keys and helpers and adds the Python names ([`add_to_module`]).

use core::ffi::{c_int, c_void, CStr};
use core::ptr;

use pyo3_ffi::*;

use crate::abi::{self, ArrayView, DLDataType, DLDevice, Provider};
use crate::dlpack_abi::*;
use crate::consumers::nd::Nd;
use crate::util::{self, guard, raise, ret, Owned, PyErrSet};
use crate::runtime::{self, SlotDef};
use crate::id;

mod adopt;
mod exchange;
mod export;
mod import;
pub(crate) mod plan;
#[cfg(feature = "hooks")]
mod bench;

pub(crate) use exchange::*;
pub(crate) use export::*;
pub(crate) use import::*;
pub(crate) use adopt::adopt_on_miss;

/// Private slot key: the exchange table of a type registered through the
/// C path (the acquire slot finds it in the same table as itself).
pub(crate) const KEY_EXCHANGE_API: &CStr = c"extensibletype.arrays.dlpack:exchange_api";
/// Id of [`KEY_EXCHANGE_API`].
const ID_EXCHANGE_API: u64 = id!("extensibletype.arrays.dlpack:exchange_api");

/// Inline element strides for exports up to this many dimensions.
const INLINE_DIMS: usize = 8;

/// Constants the tests read.
///
/// # Safety
/// The GIL is held and every pointer argument is live and valid for its type.
unsafe fn constants(m: *mut PyObject) -> Result<(), PyErrSet> {
    // SAFETY: GIL held.
    unsafe {
        for (name, v) in [
            (c"DLPACK_MAJOR", MAJOR as i64),
            (c"DLPACK_MINOR", MINOR as i64),
            (c"DLPACK_FLAG_READ_ONLY", FLAG_READ_ONLY as i64),
            (c"DLPACK_FLAG_IS_COPIED", FLAG_IS_COPIED as i64),
        ] {
            util::add(m, name, PyLong_FromLongLong(v))?;
        }
        util::add(m, c"_DLPACK_API_ADDRESS", PyLong_FromVoidPtr(ptr::addr_of!(EXCHANGE_API).cast_mut().cast()))
    }
}

/// Add `to_dlpack`, `register_dlpack_type`, `_bench_dlpack_cost` and the
/// constants to the `_arrays` module, and the exchange table to `Array`.
pub(crate) fn add_to_module(m: *mut PyObject) -> Result<(), PyErrSet> {
    let methods: &'static mut [PyMethodDef] = Box::leak(Box::new([
        crate::runtime::pyutil::py_method!(c"to_dlpack", PyCFunctionFastWithKeywords, py_to_dlpack, METH_FASTCALL | METH_KEYWORDS,
            c"to_dlpack(obj, *, stream=None, max_version=None, dl_device=None, copy=None)\n--\n\n\
              A DLPack capsule of any array.v1 provider (the __dlpack__ protocol: \"dltensor\" without max_version,\n\
              \"dltensor_versioned\" with it). The export holds a view (and so the provider's pin) until its deleter runs."),
        crate::runtime::pyutil::py_method!(c"register_dlpack_type", PyCFunction, py_register_dlpack_type, METH_O,
            c"register_dlpack_type(tp) -> str\n--\n\n\
              Make a DLPack exporter type an array.v1 provider now: through its __dlpack_c_exchange_api__ table\n\
              (returns 'c') or its __dlpack__ method (returns 'python'); for an abstract base without DLPack,\n\
              its DLPack subclasses as they are met (returns 'subclasses')."),
        crate::runtime::pyutil::py_method!(c"_adopt", PyCFunction, adopt::py_adopt, METH_O,
            c"_adopt(obj) -> True\n--\n\n\
              True once type(obj) provides array.v1 (already, or adopted now as a DLPack exporter); else the\n\
              consumer's TypeError. ExtType_ArrayGetView calls it on a miss."),
        crate::runtime::pyutil::py_method!(c"_adopted", PyCFunction, adopt::py_adopted, METH_NOARGS,
            c"_adopted() -> (int, list)\n--\n\nAdoptions on a miss so far, and the types so adopted."),
        crate::runtime::pyutil::py_method!(c"_forget_adopted", PyCFunction, adopt::py_forget_adopted, METH_NOARGS,
            c"_forget_adopted()\n--\n\nRemove the slots of the types adopted on a miss; forget bases and refusals."),
        #[cfg(feature = "hooks")]
        crate::runtime::pyutil::py_method!(c"_bench_dlpack_cost", PyCFunctionFast, bench::py_bench, METH_FASTCALL,
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
        install(tp.0)
    }
}
