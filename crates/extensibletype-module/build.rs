//! Build script: the target interpreter's cfgs (`Py_LIMITED_API` and
//! `Py_GIL_DISABLED` together mean abi3t: export `PyModExport__core`).

fn main() {
    pyo3_build_config::use_pyo3_cfgs();
}
