//! `pyo3_ext`: a PyO3 extension that provides and consumes extensibletype
//! slots from Rust. One library, two extension modules (Python imports each
//! by its name from this file, as `python/tests/test_pyo3_ext.py` does):
//!
//! - `pyo3_ext` — `src/readme.rs`, the README's Rust example verbatim (a
//!   test checks): `Square`, a frozen `#[pyclass]` whose methods are
//!   exported as the typed slots of `geom.Shape.v1` by
//!   `extensibletype::typed_methods!`, and the consumers `area(obj)` and
//!   `scaled(obj, k)`, which call any provider's typed method
//!   (`runtime::find_typed`) and fall back to the Python method on a miss.
//! - `pyo3_ext_more` — what the README leaves out: `sum(obj)` over any
//!   array.v1 provider's view (`src/arrays.rs`), and typed methods that
//!   panic or fail under each convention, on a frozen and a non-frozen
//!   class (`src/faults.rs`).

include!("readme.rs");

mod arrays;
mod faults;

#[pymodule]
fn pyo3_ext_more(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // Load (or join) the process's extensibletype runtime.
    extensibletype::runtime::import().map_err(|_| PyErr::fetch(m.py()))?;
    m.add_function(wrap_pyfunction!(arrays::sum, m)?)?;
    faults::add(m)
}
