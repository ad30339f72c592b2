//! Creating types where CPython versions differ: the metaclass itself
//! (its type data: after `type`'s fields on 3.11, PEP 697 on 3.12+) and a
//! heap type whose metaclass is ours (`PyType_FromMetaclass` on 3.12+, a
//! same-named subclass on 3.11).

use core::ffi::c_int;
use core::ptr;

use pyo3_ffi::*;

use super::layout::{self, TypeData};
use crate::pyutil::{keep_forever, Owned};
use crate::PyErrSet;

/// The metaclass `extensibletype.ExtensibleType` (a subclass of `type` with
/// room for [`TypeData`] in every class) from its slot functions; returns it
/// (a new reference) and the offset of the type data in a class.
///
/// # Safety
/// The calling thread holds the GIL (an attached thread state); `slots` is a
/// `{0, NULL}`-terminated slot table that lives for the process; called once
/// per process, by the copy that creates the runtime.
pub(crate) unsafe fn new_metaclass(slots: &'static mut [PyType_Slot]) -> Result<(*mut PyTypeObject, isize), PyErrSet> {
    let data_size = core::mem::size_of::<TypeData>() as c_int;
    // SAFETY: GIL held; PyType_Type is a live static type.
    unsafe {
        let type_type = ptr::addr_of_mut!(PyType_Type);
        #[cfg(not(Py_3_12))]
        let (basicsize, offset) = {
            let offset = (layout::type_type_basicsize() + 15) & !15;
            (offset as c_int + data_size, offset)
        };
        #[cfg(Py_3_12)]
        let basicsize = -data_size;
        let spec: &'static mut PyType_Spec = keep_forever(Box::new(PyType_Spec {
            name: c"extensibletype.ExtensibleType".as_ptr(),
            basicsize,
            itemsize: 0,
            flags: (Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC) as _,
            slots: slots.as_mut_ptr(),
        }));
        let bases = Owned::new(PyTuple_Pack(1, type_type.cast::<PyObject>()))?;
        #[cfg(not(Py_3_12))]
        let meta = PyType_FromSpecWithBases(spec, bases.0);
        #[cfg(Py_3_12)]
        let meta = PyType_FromMetaclass(ptr::null_mut(), ptr::null_mut(), spec, bases.0);
        let meta = Owned::new(meta)?;
        #[cfg(Py_3_12)]
        let offset = measure_offset(meta.0.cast())?;
        Ok((meta.into_ptr().cast(), offset))
    }
}


/// PEP 697: where `PyObject_GetTypeData` puts our data in a created class.
/// Runs before the runtime is ready, so the probe's `tp_init` skips set-up.
///
/// # Safety
/// The calling thread holds the GIL (an attached thread state); `meta` is the
/// live, newly created metaclass.
#[cfg(Py_3_12)]
unsafe fn measure_offset(meta: *mut PyTypeObject) -> Result<isize, PyErrSet> {
    // SAFETY: GIL held; meta is a live metaclass.
    unsafe {
        let probe = Owned::new(PyObject_CallFunction(
            meta.cast(),
            c"s()N".as_ptr(),
            c"_ExtensibleTypeProbe".as_ptr(),
            PyDict_New(),
        ))?;
        let data = PyObject_GetTypeData(probe.0, meta);
        if data.is_null() {
            return Err(PyErrSet);
        }
        let offset = data.cast::<u8>().offset_from(probe.0.cast::<u8>());
        // The probe dies with `probe`; its dealloc must see the real offset.
        layout::set_fast_path(ptr::null_mut(), offset, ptr::null());
        Ok(offset)
    }
}

/// A new type from `spec` whose metaclass is ExtensibleType (new reference).
///
/// # Safety
/// The calling thread holds the GIL (an attached thread state); `spec` is a
/// valid `PyType_Spec` that outlives the type; `module` and `bases` are NULL or
/// live objects.
#[cfg(Py_3_12)]
pub(crate) unsafe fn new_type(module: *mut PyObject, spec: *mut PyType_Spec, bases: *mut PyObject) -> Result<*mut PyObject, PyErrSet> {
    // SAFETY: forwarded; the metaclass is live for the process.
    let cls = unsafe { PyType_FromMetaclass(crate::metaclass(), module, spec, bases) };
    if cls.is_null() {
        Err(PyErrSet)
    } else {
        Ok(cls)
    }
}

/// CPython 3.11 has no `PyType_FromMetaclass`: build the spec's type, then
/// call the metaclass to make a same-named subclass with `__slots__ = ()`.
///
/// # Safety
/// The calling thread holds the GIL (an attached thread state); `spec` is a
/// valid `PyType_Spec` that outlives the type; `module` and `bases` are NULL or
/// live objects.
#[cfg(not(Py_3_12))]
pub(crate) unsafe fn new_type(module: *mut PyObject, spec: *mut PyType_Spec, bases: *mut PyObject) -> Result<*mut PyObject, PyErrSet> {
    // SAFETY: the caller holds the GIL and passes a valid `spec` and NULL-or-live
    // `module`/`bases`; every object made here is owned by an `Owned` or returned.
    unsafe {
        // The base must accept the subclass made below, whatever the spec
        // says; the subclass then gets the spec's BASETYPE setting.
        let mut base_spec = *spec;
        base_spec.flags |= Py_TPFLAGS_BASETYPE as core::ffi::c_uint;
        let base = Owned::new(PyType_FromModuleAndSpec(module, &mut base_spec, bases))?;
        let ns = Owned::new(PyDict_New())?;
        let empty = Owned::new(PyTuple_New(0))?;
        if PyDict_SetItemString(ns.0, c"__slots__".as_ptr(), empty.0) < 0 {
            return Err(PyErrSet);
        }
        for attr in [c"__module__", c"__qualname__", c"__doc__"] {
            let value = Owned::new(PyObject_GetAttrString(base.0, attr.as_ptr()))?;
            if PyDict_SetItemString(ns.0, attr.as_ptr(), value.0) < 0 {
                return Err(PyErrSet);
            }
        }
        let name = Owned::new(PyObject_GetAttrString(base.0, c"__name__".as_ptr()))?;
        let cls = PyObject_CallFunction(crate::metaclass().cast(), c"O(O)O".as_ptr(), name.0, base.0, ns.0);
        if cls.is_null() {
            return Err(PyErrSet);
        }
        if (*spec).flags & (Py_TPFLAGS_BASETYPE as core::ffi::c_uint) == 0 {
            layout::clear_basetype(cls.cast());
        }
        Ok(cls)
    }
}

