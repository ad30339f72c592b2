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
//! keys and helpers. Their Python names are bound in `crate::python::dlpack`.

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
pub(crate) use adopt::{adopt_on_miss, py_adopt, py_adopted, py_forget_adopted};
#[cfg(feature = "hooks")]
pub(crate) use bench::py_bench;

/// Private slot key: the exchange table of a type registered through the
/// C path (the acquire slot finds it in the same table as itself).
pub(crate) const KEY_EXCHANGE_API: &CStr = c"extensibletype.arrays.dlpack:exchange_api";
/// Id of [`KEY_EXCHANGE_API`].
const ID_EXCHANGE_API: u64 = id!("extensibletype.arrays.dlpack:exchange_api");

/// Inline element strides for exports up to this many dimensions.
const INLINE_DIMS: usize = 8;
