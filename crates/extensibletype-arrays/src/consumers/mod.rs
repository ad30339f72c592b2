//! Consumers: code that reads array.v1 views (pure Rust, no Python needed).
//!
//! - [`nd`]: n-d iteration over one or more views (contiguous runs).
//! - [`kernels`]: the `sum`/`dot`/`axpy` loops (SIMD, run-time ISA choice).
//! - [`par`]: the thread pool splitting large inputs across cores.
//!
//! Their Python entry points are in `crate::python::consumers`.

#[cfg_attr(not(feature = "python"), allow(dead_code))]
pub(crate) mod kernels;
#[cfg_attr(not(feature = "python"), allow(dead_code))]
pub(crate) mod nd;
#[cfg_attr(not(feature = "python"), allow(dead_code))]
pub(crate) mod par;
