//! Typed methods under every convention of `typed_methods!`, including
//! failures: what a caller sees when a method raises or panics (module
//! `pyo3_ext_more`; python/tests/test_pyo3_ext.py).

use pyo3::exceptions::{PyValueError, PyZeroDivisionError};
use pyo3::prelude::*;
use pyo3::types::PyString;

/// Frozen: every method panics, or fails, on request.
#[pyclass(frozen, module = "pyo3_ext_more")]
pub struct Faulty;

#[pymethods]
impl Faulty {
    #[new]
    fn new() -> Self {
        Faulty
    }

    fn area(&self) -> f64 {
        panic!("area panicked")
    }

    fn sides(&self, n: i64) -> i64 {
        if n < 0 {
            panic!("sides panicked");
        }
        n
    }

    fn scaled(&self, k: f64) -> PyResult<f64> {
        match k {
            0.0 => panic!("scaled panicked"),
            k if k < 0.0 => Err(PyZeroDivisionError::new_err("scaled failed")),
            k => Ok(k),
        }
    }

    fn describe(&self, _py: Python<'_>) -> Py<PyAny> {
        panic!("describe panicked")
    }
}

extensibletype::typed_methods!(Faulty {
    "tests.Faulty.v1:area" => fn area(&self) -> f64;
    "tests.Faulty.v1:sides" => fn sides(&self, n: i64) -> i64;
    "tests.Faulty.v1:scaled" => fn scaled(&self, k: f64) -> PyResult<f64>;
    "tests.Faulty.v1:describe" => fn describe(&self, _py: Python<'_>) -> Py<PyAny>;
});

/// Not frozen: only `!t` and `!e` methods (a flagless one would not compile).
#[pyclass(module = "pyo3_ext_more")]
pub struct Counter {
    n: i64,
}

#[pymethods]
impl Counter {
    #[new]
    fn new(n: i64) -> Self {
        Counter { n }
    }

    fn value(&self, _py: Python<'_>) -> i64 {
        self.n
    }

    fn above(&self, _py: Python<'_>, k: i64, strict: bool) -> bool {
        if strict {
            self.n > k
        } else {
            self.n >= k
        }
    }

    fn check(&self) -> PyResult<()> {
        match self.n {
            n if n < 0 => Err(PyValueError::new_err("negative counter")),
            _ => Ok(()),
        }
    }

    fn name(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        Ok(PyString::new(py, &format!("Counter({})", self.n)).into_any().unbind())
    }

    fn touch(&self, _py: Python<'_>) {}
}

extensibletype::typed_methods!(Counter {
    "tests.Counter.v1:value" => fn value(&self, _py: Python<'_>) -> i64;
    "tests.Counter.v1:above" => fn above(&self, _py: Python<'_>, k: i64, strict: bool) -> bool;
    "tests.Counter.v1:check" => fn check(&self) -> PyResult<()>;
    "tests.Counter.v1:name" => fn name(&self, py: Python<'_>) -> PyResult<Py<PyAny>>;
    "tests.Counter.v1:touch" => fn touch(&self, _py: Python<'_>);
});

/// A class whose typed key names a Python method it lacks (`missing`):
/// registration fails with AttributeError (`register_broken()`).
#[pyclass(frozen, module = "pyo3_ext_more")]
pub struct Broken;

impl Broken {
    fn missing(&self) -> f64 {
        0.0
    }
}

extensibletype::typed_methods!(Broken {
    "tests.Broken.v1:missing" => fn missing(&self) -> f64;
});

/// `register_broken()`: the AttributeError of a typed method that is not
/// also a Python method.
#[pyfunction]
fn register_broken(py: Python<'_>) -> PyResult<()> {
    Broken::register_typed_methods(py)
}

pub fn add(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Faulty>()?;
    Faulty::register_typed_methods(m.py())?;
    m.add_class::<Counter>()?;
    Counter::register_typed_methods(m.py())?;
    m.add_class::<Broken>()?;
    m.add_function(wrap_pyfunction!(register_broken, m)?)
}
