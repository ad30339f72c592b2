//! # extensibletype-runtime
//!
//! The CPython runtime — the `ExtensibleType` metaclass, the foreign
//! registry, and the C API struct — and its Rust API for other `pyo3` /
//! `pyo3-ffi` extensions (re-exported as `extensibletype::runtime`). Works
//! with any pyo3-ffi 0.28 – 0.30: the extension that links this crate picks
//! the version (re-exported here as [`pyo3_ffi`]).
//!
//! One runtime per process (SPEC §8): the first copy of this crate that calls
//! [`import`] creates the metaclass and publishes its [`Api`] struct in
//! `sys.modules["_extensibletype"]`; every later copy (another extension
//! linking this crate) finds it there and goes through that struct, exactly
//! like a C consumer of `extensibletype.h`.
//!
//! ```no_run
//! use core::ffi::c_void;
//! use extensibletype_core::id;
//! use extensibletype_runtime as runtime; // `extensibletype::runtime` in the facade
//! # unsafe fn demo(obj: *mut pyo3_ffi::PyObject) -> Result<(), ()> {
//! // Once, with the GIL (e.g. in your module's init):
//! runtime::import()?;
//! // Anywhere, without the GIL, holding a reference to `obj`:
//! let f = unsafe { runtime::find(obj, id!("mylib.shape.v1:area")) };
//! if !f.is_null() {
//!     let area: extern "C" fn(*mut pyo3_ffi::PyObject) -> f64 = unsafe { core::mem::transmute(f) };
//!     let _ = area(obj);
//! }
//! # Ok(()) }
//! ```

#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

use core::ffi::c_void;
use core::ptr;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::Mutex;

use pyo3_ffi::*;

/// The pyo3-ffi this runtime was built against (the one in your build).
pub use pyo3_ffi;

pub(crate) use extensibletype_core::{key, prehash_bytes, table, BuildError, MAX_ENTRIES};

mod api;
mod convert;
mod layout;
mod metaclass;
#[doc(hidden)]
pub mod pyutil;
mod registry;

pub use layout::TypeData;

use crate::table::{raw_lookup, RawTable};
use layout::TypeDataExt;

pub use extensibletype_core::abi::{SlotDef, ABI_VERSION, CAPSULE_NAME};

/// The C API struct in the capsule `extensibletype._C_API` (`ExtType_API` in
/// `include/extensibletype.h`; the layout is checked by a test), with
/// pyo3-ffi's pointer types: [`extensibletype_core::abi::Api`].
pub type Api = extensibletype_core::abi::Api<PyObject, PyTypeObject, PyType_Spec>;

static API: AtomicPtr<Api> = AtomicPtr::new(ptr::null_mut());
static INIT: Mutex<()> = Mutex::new(());

/// Errors inside the runtime, raised as Python exceptions at the boundary.
#[derive(Debug)]
pub(crate) enum Error {
    /// A Python exception is already set.
    Python,
    Type(String),
    Value(String),
    Import(String),
    Build(BuildError),
    /// Two different key strings with the same 64-bit id.
    Collision { id: u64, new: String, old: String },
}

impl Error {
    fn type_error(msg: String) -> Error {
        Error::Type(msg)
    }

    fn value_error(msg: String) -> Error {
        Error::Value(msg)
    }

    /// Set the Python exception and return `ret`. GIL held.
    unsafe fn raise<R>(self, ret: R) -> R {
        // SAFETY: GIL held by every caller.
        unsafe {
            let (kind, msg) = match self {
                Error::Python => return ret,
                Error::Type(m) => (PyExc_TypeError, m),
                Error::Value(m) => (PyExc_ValueError, m),
                Error::Import(m) => (PyExc_ImportError, m),
                Error::Build(e) => (PyExc_ValueError, e.to_string()),
                Error::Collision { id, new, old } => (
                    PyExc_ValueError,
                    format!("64-bit key collision: {new:?} and the registered key {old:?} both have id {id:#018x}"),
                ),
            };
            let msg = std::ffi::CString::new(msg.replace('\0', "\\0")).expect("NULs replaced");
            PyErr_SetString(kind, msg.as_ptr());
        }
        ret
    }
}

impl From<()> for Error {
    /// `Err(())` from a CPython call: the exception is already set.
    fn from((): ()) -> Error {
        Error::Python
    }
}

pub(crate) use pyutil::guard;

/// Load (or create) the process's runtime. Needs the GIL; on failure returns
/// `Err(())` with a Python exception set (`ImportError` on an ABI mismatch).
///
/// Idempotent and cheap after the first call.
#[allow(clippy::result_unit_err)] // Err: a Python exception is set (CPython's convention)
pub fn import() -> Result<&'static Api, ()> {
    let api = API.load(Ordering::Acquire);
    if !api.is_null() {
        // SAFETY: published APIs are leaked, immutable and live forever.
        return Ok(unsafe { &*api });
    }
    // SAFETY: GIL held (the caller's contract).
    guard(Err(()), || unsafe { import_slow().map_err(|e| e.raise(())) })
}

unsafe fn import_slow() -> Result<&'static Api, Error> {
    let _init = registry::lock_detached(&INIT);
    // SAFETY: published APIs are leaked, immutable and live forever.
    if let Some(api) = unsafe { API.load(Ordering::Acquire).as_ref() } {
        return Ok(api);
    }
    // SAFETY: GIL held.
    unsafe {
        let shared = shared_module()?;
        let attr = c"api_v1";
        let existing = PyObject_GetAttrString(shared, attr.as_ptr());
        let api: &'static Api = if existing.is_null() {
            PyErr_Clear();
            let (meta, offset) = metaclass::create()?;
            let api: &'static Api = Box::leak(Box::new(api::new(meta, offset)));
            layout::set_fast_path(meta, offset, api.foreign_registry);
            let capsule = pyutil::Owned::new(PyCapsule_New(
                (api as *const Api).cast_mut().cast(),
                CAPSULE_NAME.as_ptr(),
                None,
            ))?;
            if PyObject_SetAttrString(shared, attr.as_ptr(), capsule.0) < 0
                || PyObject_SetAttrString(shared, c"ExtensibleType_v1".as_ptr(), meta.cast()) < 0
            {
                return Err(Error::Python);
            }
            api
        } else {
            let capsule = pyutil::Owned(existing);
            let api = PyCapsule_GetPointer(capsule.0, CAPSULE_NAME.as_ptr()).cast::<Api>();
            if api.is_null() {
                return Err(Error::Python);
            }
            check_abi(&*api)?;
            layout::set_fast_path((*api).metaclass, (*api).table_offset, (*api).foreign_registry);
            &*api
        };
        API.store((api as *const Api).cast_mut(), Ordering::Release);
        Ok(api)
    }
}

/// Refuse a runtime whose ABI differs from ours.
fn check_abi(api: &Api) -> Result<(), Error> {
    let need = core::mem::size_of::<Api>() as u32;
    if api.abi_version != ABI_VERSION || api.struct_size < need {
        return Err(Error::Import(format!(
            "extensibletype: the runtime loaded in this process has ABI version {} (API struct of {} bytes), \
             but this extension needs ABI version {ABI_VERSION} (at least {need} bytes)",
            api.abi_version, api.struct_size
        )));
    }
    Ok(())
}

/// `sys.modules["_extensibletype"]`, created empty if absent (borrowed).
unsafe fn shared_module() -> Result<*mut PyObject, Error> {
    // SAFETY: GIL held.
    unsafe {
        let modules = PyImport_GetModuleDict();
        let name = c"_extensibletype";
        let existing = PyDict_GetItemString(modules, name.as_ptr());
        if !existing.is_null() {
            return Ok(existing);
        }
        let module = pyutil::Owned::new(PyModule_New(name.as_ptr()))?;
        if PyDict_SetItemString(modules, name.as_ptr(), module.0) < 0 {
            return Err(Error::Python);
        }
        Ok(PyDict_GetItemString(modules, name.as_ptr()))
    }
}

/// The runtime's API struct; [`import`] must have succeeded.
#[inline]
fn api() -> &'static Api {
    // SAFETY: set once by import() and never changed; callers have imported.
    unsafe { API.load(Ordering::Acquire).as_ref().expect("extensibletype::runtime::import() not called") }
}

/// The `ExtensibleType` metaclass (borrowed). [`import`] must have succeeded.
pub fn metaclass() -> *mut PyTypeObject {
    api().metaclass
}

/// The one table a lookup on `tp` probes inline: an extensible type's own
/// (effective) table, or a foreign-registered type's registry entry. NULL
/// means "ask the slow path" (empty or never-initialised types, subclasses
/// of registered types, sub-metaclasses) — [`find_in_type`] does that.
///
/// For consumers that look up several keys on one type: probe each with
/// [`raw_lookup`](crate::table::raw_lookup). No GIL needed.
///
/// # Safety
/// [`import`] must have succeeded and `tp` must be a live type object (the
/// caller holds a reference to it or to an instance); the table lives as long
/// as `tp`.
#[inline]
pub unsafe fn table_of(tp: *mut PyTypeObject) -> *const RawTable {
    // SAFETY: see the contract; tables are published with release stores and
    // never freed while their type lives (registry tables never).
    unsafe {
        if Py_TYPE(tp.cast()) == layout::metaclass() {
            return TypeData::load(tp);
        }
        let registry = layout::foreign_registry();
        if registry.is_null() {
            return ptr::null();
        }
        raw_lookup(registry, tp as u64).cast()
    }
}

/// Find the implementation of `id` on `tp`: NULL when absent — also for a
/// NULL `tp`, for id 0 (reserved, never registered) and for an object that
/// is not a type.
///
/// No GIL needed; the caller must hold a reference to `tp` (or an instance).
/// The fast path ([`table_of`], then one probe) is inline.
///
/// # Safety
/// [`import`] must have succeeded and `tp` must be NULL or a live object.
#[inline]
pub unsafe fn find_in_type(tp: *mut PyTypeObject, id: u64) -> *const c_void {
    if tp.is_null() || id == 0 {
        return ptr::null();
    }
    // SAFETY: forwarded; the slow path reads type fields, so a non-type
    // (whose metaclass check and registry probe both missed) stops here.
    unsafe {
        let table = table_of(tp);
        if !table.is_null() {
            return raw_lookup(table, id);
        }
        if PyType_Check(tp.cast()) == 0 {
            return ptr::null();
        }
        (api().find_slow)(tp, id)
    }
}

/// Find the implementation of `id` on `type(obj)`: NULL when absent (and
/// for a NULL `obj` or id 0).
///
/// # Safety
/// As [`find_in_type`]; `obj` must be NULL or a live object.
#[inline]
pub unsafe fn find(obj: *mut PyObject, id: u64) -> *const c_void {
    if obj.is_null() {
        return ptr::null();
    }
    // SAFETY: forwarded; a live object has a live type.
    unsafe { find_in_type(Py_TYPE(obj), id) }
}

/// Set slots on `tp` (any type: extensible types get their own table,
/// others go to the foreign registry). Needs the GIL. On error returns
/// `Err(())` with a Python exception set, and nothing changed.
///
/// # Safety
/// [`import`] must have succeeded; `tp` must be NULL (`TypeError`) or a
/// live object (a non-type gets `TypeError`); every `key` must be NULL or a
/// NUL-terminated string.
#[allow(clippy::result_unit_err)] // Err: a Python exception is set (CPython's convention)
pub unsafe fn set_slots(tp: *mut PyObject, defs: &[SlotDef]) -> Result<(), ()> {
    // SAFETY: forwarded.
    match unsafe { (api().set_slots)(tp, defs.as_ptr(), defs.len() as isize) } {
        0 => Ok(()),
        _ => Err(()),
    }
}

/// Create a heap type whose metaclass is `ExtensibleType` from `spec` (like
/// `PyType_FromModuleAndSpec`) and give it `defs`. Needs the GIL. Returns a
/// new reference, or NULL with an exception set.
///
/// On CPython 3.11 (no `PyType_FromMetaclass`) the result is a subclass
/// (with `__slots__ = ()`) of a type built from `spec`, under the same name.
///
/// A NULL `spec` gets `ValueError` (and NULL).
///
/// # Safety
/// As `PyType_FromModuleAndSpec` (GIL held; `spec` NULL or valid; `module`
/// and `bases` NULL or live); [`import`] must have succeeded; every `key`
/// must be NULL or a NUL-terminated string.
pub unsafe fn type_from_spec(
    module: *mut PyObject,
    spec: *mut PyType_Spec,
    bases: *mut PyObject,
    defs: &[SlotDef],
) -> *mut PyObject {
    // SAFETY: forwarded.
    unsafe { (api().from_spec)(module, spec, bases, defs.as_ptr(), defs.len() as isize) }
}
