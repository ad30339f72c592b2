//! The `extensibletype._core._arrays` submodule (`extensibletype.arrays`),
//! the array.v1 slot set's Python surface; [`register`] is the one call the
//! module crate (the composition root) makes.
//!
//! - [`consumers`]: `sum`, `dot`, `axpy`, `view_info`;
//! - [`providers`]: `register_buffer_type`, `_register_numpy`,
//!   `_numpy_fields`, `_slot_addresses`;
//! - [`dlpack`]: `to_dlpack`, `register_dlpack_type`, `_adopt`, the
//!   `DLPACK_*` constants (the machinery is `crate::providers::dlpack`);
//! - the `Array` type comes from `crate::providers` (`array::create_type`);
//! - [`hooks`]: test and benchmark hooks (`_set_isa`, `_isa`; with feature
//!   `hooks`: `_set_threads`, `_set_par_min`, `_set_stream_min`, `_bench_view_cost`,
//!   `_bench_dlpack_cost`).

use core::ffi::{c_int, CStr};

use pyo3_ffi::*;

use crate::abi;
use crate::consumers::par;
use crate::providers::array as array_type;
use crate::providers::numpy;
use crate::runtime;
use crate::runtime::pyutil::new_module;
use crate::util::{self, guard, raise, Owned, PyErrSet};

mod consumers;
mod dlpack;
mod hooks;
mod providers;

/// Check a fastcall argument count.
pub(crate) fn nargs_in(name: &str, nargs: Py_ssize_t, min: Py_ssize_t, max: Py_ssize_t) -> Result<(), PyErrSet> {
    if (min..=max).contains(&nargs) {
        return Ok(());
    }
    let want = if min == max { format!("exactly {min}") } else { format!("{min} to {max}") };
    raise(util::type_error(), &format!("{name}() takes {want} arguments ({nargs} given)"))
}

// ---- the module ----------------------------------------------------------------

/// Register the array.v1 slot set with the extension module `core`: create
/// the `_arrays` submodule (functions, constants, the `Array` type and its
/// DLPack names) and attach it to `core` as `_arrays`. The one call the
/// composition root (crates/extensibletype-module) makes for this slot set.
/// Returns 0, or -1 with an exception set. GIL held (module init; `core`
/// is a live module).
pub fn register(core: *mut PyObject) -> c_int {
    guard(-1, || match create(core) {
        Ok(()) => 0,
        Err(PyErrSet) => -1,
    })
}

fn create(core: *mut PyObject) -> Result<(), PyErrSet> {
    let mut methods = consumers::methods();
    methods.extend(providers::methods());
    methods.extend(hooks::methods());
    methods.push(PyMethodDef::zeroed());
    runtime::import()?;
    numpy::settle_header_size()?;
    let m = new_module(
        c"extensibletype.arrays",
        c"Duck-typed arrays over extensibletype slots (array.v1); see extensibletype.arrays.",
        methods,
    )?;
    // SAFETY: GIL held during module init; m is the new module.
    unsafe { add_constants(m.0)? };
    array_type::create_type(m.0)?;
    dlpack::add_to_module(m.0)?;
    // SAFETY: GIL held; m is live (util::add takes the new reference).
    util::add(core, c"_arrays", unsafe { Py_NewRef(m.0) })
}

/// The keys, ids, flags, thresholds and view layout (`VIEW_SIZE`,
/// `VIEW_LAYOUT`) of `_arrays`.
///
/// # Safety
/// GIL held; `m` is a live module.
unsafe fn add_constants(m: *mut PyObject) -> Result<(), PyErrSet> {
    // SAFETY: GIL held; util::add takes each new object (or NULL: raises).
    unsafe {
        let s = |v: &CStr| PyUnicode_FromString(v.as_ptr());
        util::add(m, c"KEY_ACQUIRE", s(abi::KEY_ACQUIRE))?;
        util::add(m, c"KEY_RELEASE", s(abi::KEY_RELEASE))?;
        util::add(m, c"ID_ACQUIRE", PyLong_FromUnsignedLongLong(abi::ID_ACQUIRE))?;
        util::add(m, c"ID_RELEASE", PyLong_FromUnsignedLongLong(abi::ID_RELEASE))?;
        util::add(m, c"VERSION", PyLong_FromLong(abi::VERSION as _))?;
        for (name, v) in [
            (c"READONLY", abi::READONLY as i64),
            (c"C_CONTIGUOUS", abi::C_CONTIGUOUS as i64),
            (c"F_CONTIGUOUS", abi::F_CONTIGUOUS as i64),
            (c"ALIGNED", abi::ALIGNED as i64),
            (c"BYTESWAPPED", abi::BYTESWAPPED as i64),
            (c"REQ_WRITABLE", abi::REQ_WRITABLE as i64),
            (c"REQ_C_CONTIGUOUS", abi::REQ_C_CONTIGUOUS as i64),
            (c"REQ_ANY_CONTIGUOUS", abi::REQ_ANY_CONTIGUOUS as i64),
            (c"NOGIL_MIN", consumers::NOGIL_MIN as i64),
            (c"PAR_MIN", par::PAR_MIN as i64),
            (c"STREAM_MIN", par::STREAM_MIN as i64),
            (c"NPY_ARRAY_BASICSIZE", numpy::npy_array_basicsize() as i64),
        ] {
            util::add(m, name, PyLong_FromLongLong(v))?;
        }
    }
    let (fields, size) = abi::layout();
    // SAFETY: GIL held; util::add takes the new int (or NULL: raises).
    util::add(m, c"VIEW_SIZE", unsafe { PyLong_FromSize_t(size) })?;
    // SAFETY: GIL held; the dict and its values are owned here.
    unsafe {
        let layout = Owned::new(PyDict_New())?;
        for (name, off) in fields {
            let v = Owned::new(PyLong_FromSize_t(*off))?;
            let k = std::ffi::CString::new(*name).expect("no NUL");
            if PyDict_SetItemString(layout.0, k.as_ptr(), v.0) < 0 {
                return Err(PyErrSet);
            }
        }
        util::add(m, c"VIEW_LAYOUT", layout.into_ptr())
    }
}
