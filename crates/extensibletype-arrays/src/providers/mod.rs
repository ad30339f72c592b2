//! Providers: types that hand out array.v1 views (acquire/release slots).
//!
//! - [`array`](mod@array): `extensibletype.arrays.Array`, the n-d array type owned by
//!   Rust (array.v1 + buffer protocol + DLPack export).
//! - [`numpy`]: the `numpy.ndarray` adapter (NumPy 2.x struct mirror).
//! - [`buffer`]: the buffer-protocol adapter (`bytearray`, `memoryview`, ...).
//! - [`dlpack`]: DLPack 1.3 export (any provider -> managed tensor) and
//!   import (any DLPack producer type -> array.v1).

// Not under abi3t (PEP 803): its instance struct embeds `PyObject`, which
// is opaque there (it would need PEP 697 instance data instead).
#[cfg(all(feature = "python", not(all(Py_LIMITED_API, Py_GIL_DISABLED))))]
pub(crate) mod array;
#[cfg_attr(not(feature = "python"), allow(dead_code))]
pub(crate) mod buffer;
// DLPack export rides on the Array type (not under abi3t, as array).
#[cfg(all(feature = "python", not(all(Py_LIMITED_API, Py_GIL_DISABLED))))]
pub(crate) mod dlpack;
#[cfg(feature = "python")]
pub(crate) mod numpy;
