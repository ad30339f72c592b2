//! # extensibletype-arrays
//!
//! Duck-typed arrays (array.v1) on top of the runtime; re-exported as
//! `extensibletype::arrays` (feature `arrays`).
//!
//! - [`abi`]: the `array.v1` interface (`include/extensibletype_array.h`):
//!   `acquire`/`release` slots filling an [`abi::ArrayView`], and the
//!   consumer helpers [`abi::Provider`] / [`abi::with_view`].
//! - Without feature `python`: the view layout and the pure parts (kernels,
//!   n-d iteration, buffer-format parsing), testable with no Python.
//! - With feature `python`, the `extensibletype._core._arrays` submodule
//!   (re-exported as `extensibletype.arrays`):
//!   - providers: the n-d `Array` type (`array_type`), a `numpy.ndarray`
//!     adapter reading NumPy 2.x's struct directly (`numpy`), and a
//!     buffer-protocol adapter for `bytearray`, `memoryview`, ... (`buffer`);
//!   - consumers: `sum`, `dot`, `axpy` over any provider (`kernels`, `nd`),
//!     plus `view_info` and the view-cost benchmark (`pyapi`).
//!
//! This layer uses the runtime (find, set_slots, type_from_spec) and
//! nothing uses it back.

#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

#[cfg(feature = "python")]
use extensibletype_core::table;
use extensibletype_core::id;
#[cfg(feature = "python")]
use extensibletype_runtime as runtime;

pub mod abi;

#[cfg(feature = "python")]
mod array_type;
#[cfg_attr(not(feature = "python"), allow(dead_code))]
mod buffer;
#[cfg_attr(not(feature = "python"), allow(dead_code))]
mod kernels;
#[cfg_attr(not(feature = "python"), allow(dead_code))]
mod nd;
#[cfg(feature = "python")]
mod numpy;
#[cfg(feature = "python")]
mod pyapi;
#[cfg(feature = "python")]
mod util;

#[cfg(feature = "python")]
pub use pyapi::add_submodule;
