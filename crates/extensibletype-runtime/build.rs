//! Build script: expose the target interpreter's version and build flags as
//! cfgs (`Py_3_12`, `Py_GIL_DISABLED`, `Py_LIMITED_API`, ...), read from the
//! pyo3-ffi in this build, which pick the metaclass layout (docs/spec.md §3) and the
//! free-threading declarations.

fn main() {
    pyo3_build_config::use_pyo3_cfgs();
}
