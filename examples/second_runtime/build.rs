//! Expose the target interpreter's build flags as cfgs (`Py_GIL_DISABLED`).

fn main() {
    pyo3_build_config::use_pyo3_cfgs();
}
