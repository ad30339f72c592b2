//! Layer 5: duck-typed arrays (issue 5) on top of the runtime.
//!
//! - [`abi`]: the `array.v1` interface (`include/extensibletype_array.h`):
//!   `acquire`/`release` slots filling an [`abi::ArrayView`], and the
//!   consumer helpers [`abi::Provider`] / [`abi::with_view`].
//! - With the `module` feature, the `extensibletype._core._arrays` submodule
//!   (re-exported as `extensibletype.arrays`):
//!   - providers: the n-d `Array` type (`array_type`), a `numpy.ndarray`
//!     adapter reading NumPy 2.x's struct directly (`numpy`), and a
//!     buffer-protocol adapter for `bytearray`, `memoryview`, ... (`buffer`);
//!   - consumers: `sum`, `dot`, `axpy` over any provider (`kernels`, `nd`),
//!     plus `view_info` and the view-cost benchmark (`pyapi`).
//!
//! This layer uses `crate::runtime` (find, set_slots, type_from_spec) and
//! nothing uses it back.

pub mod abi;

#[cfg(feature = "module")]
mod array_type;
#[cfg(feature = "module")]
mod buffer;
#[cfg(feature = "module")]
mod dlpack;
#[cfg(feature = "module")]
pub mod dlpack_abi;
#[cfg(feature = "module")]
mod kernels;
#[cfg(feature = "module")]
mod nd;
#[cfg(feature = "module")]
mod numpy;
#[cfg(feature = "module")]
mod par;
#[cfg(feature = "module")]
mod pyapi;
#[cfg(feature = "module")]
mod util;

#[cfg(feature = "module")]
pub(crate) use pyapi::add_submodule;
