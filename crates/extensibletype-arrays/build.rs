//! Build script: with feature `python`, expose the target interpreter's
//! version and build flags as cfgs (`Py_3_12`, `Py_GIL_DISABLED`, ...).

fn main() {
    #[cfg(feature = "python")]
    pyo3_build_config::use_pyo3_cfgs();
}
