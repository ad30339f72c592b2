//! Build script: with the `python` feature, expose the interpreter's version
//! and build flags as cfgs (`Py_3_12`, `Py_GIL_DISABLED`, ...), which pick the
//! metaclass layout (SPEC §4) and free-threading declarations.

fn main() {
    #[cfg(feature = "python")]
    pyo3_build_config::use_pyo3_cfgs();
}
