// Cargo.toml: pyo3 = "0.30" (0.28 and 0.29 work too) and, until it is on
// crates.io, extensibletype = { path = "...", features = ["python"] }
use extensibletype::typed::{find_typed, Convention, TypedId};
use pyo3::exceptions::PyValueError;
use pyo3::ffi::PyObject;
use pyo3::prelude::*;
use pyo3::types::PyString;

/// Provider: a frozen #[pyclass]; its Python methods are also typed slots.
#[pyclass(frozen, subclass, module = "pyo3_ext")]
pub struct Square {
    side: f64,
}

#[pymethods]
impl Square {
    #[new]
    fn new(side: f64) -> Self {
        Square { side }
    }

    fn area(&self) -> f64 {
        self.side * self.side
    }

    fn scaled(&self, k: f64) -> PyResult<f64> {
        if k < 0.0 {
            return Err(PyValueError::new_err("scaled: negative factor"));
        }
        Ok(self.area() * k * k)
    }

    fn describe(&self, py: Python<'_>) -> Py<PyAny> {
        PyString::new(py, &format!("Square({:?})", self.side)).into_any().unbind()
    }
}

// The signature of each key comes from the Rust types (no thunk to write):
extensibletype::typed_methods!(Square {
    "geom.Shape.v1:area" => fn area(&self) -> f64;                               // #f64(O)
    "geom.Shape.v1:scaled" => fn scaled(&self, k: f64) -> PyResult<f64>;         // #f64(O,f64)!e
    "geom.Shape.v1:describe" => fn describe(&self, py: Python<'_>) -> Py<PyAny>; // #O+(O)!t
});

// Consumer: typed ids from the C function types, at compile time.
type AreaFn = unsafe extern "C" fn(*mut PyObject) -> f64;
type ScaledFn = unsafe extern "C" fn(*mut PyObject, f64, *mut f64) -> i32;
const AREA: TypedId<AreaFn> = TypedId::new("geom.Shape.v1:area");
const SCALED: TypedId<ScaledFn> = TypedId::with("geom.Shape.v1:scaled", Convention::RaisesOut);

/// `area(obj)`: the typed method of any provider (C, Cython, Rust), else `obj.area()`.
#[pyfunction]
fn area(obj: &Bound<'_, PyAny>) -> PyResult<f64> {
    // SAFETY: the runtime is imported (module init), obj is alive, and
    // find_typed returns the function as the C type the key names.
    match unsafe { find_typed(obj.as_ptr(), AREA) } {
        // SAFETY: no flag: callable with or without the GIL; obj is borrowed.
        Some(f) => Ok(unsafe { f(obj.as_ptr()) }),
        None => obj.call_method0("area")?.extract(),
    }
}

/// `scaled(obj, k)`: `!e` returns 0, or -1 with the provider's exception set.
#[pyfunction]
fn scaled(obj: &Bound<'_, PyAny>, k: f64) -> PyResult<f64> {
    // SAFETY: as in area().
    let Some(f) = (unsafe { find_typed(obj.as_ptr(), SCALED) }) else {
        return obj.call_method1("scaled", (k,))?.extract();
    };
    let mut out = 0.0;
    // SAFETY: !e: called with the GIL (held here); out is writable.
    match unsafe { f(obj.as_ptr(), k, &mut out) } {
        0 => Ok(out),
        _ => Err(PyErr::fetch(obj.py())),
    }
}

#[pymodule]
fn pyo3_ext(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Square>()?;
    Square::register_typed_methods(m.py())?; // runtime::import() + set_slots, once
    m.add_function(wrap_pyfunction!(area, m)?)?;
    m.add_function(wrap_pyfunction!(scaled, m)?)
}
