//! Providers: types that hand out array.v1 views (acquire/release slots).
//!
//! - [`array`](mod@array): `extensibletype.arrays.Array`, the n-d array type owned by
//!   Rust (array.v1 + buffer protocol + DLPack export).
//! - [`numpy`]: the `numpy.ndarray` adapter (NumPy 2.x struct mirror).
//! - [`buffer`]: the buffer-protocol adapter (`bytearray`, `memoryview`, ...).
//! - [`dlpack`]: DLPack 1.3 export (any provider -> managed tensor) and
//!   import (any DLPack producer type -> array.v1).

#[cfg(feature = "python")]
pub(crate) mod array;
#[cfg_attr(not(feature = "python"), allow(dead_code))]
pub(crate) mod buffer;
#[cfg(feature = "python")]
pub(crate) mod dlpack;
/// Without Python only DLPack's pure part builds: the export plan, tested
/// by `cargo test` with no Python.
#[cfg(not(feature = "python"))]
#[allow(dead_code)]
pub(crate) mod dlpack {
    pub(crate) mod plan;
}
#[cfg(feature = "python")]
pub(crate) mod numpy;
