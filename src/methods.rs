//! Typed methods of a PyO3 `#[pyclass]` (docs/spec.md, "Typed methods"):
//! [`typed_methods!`](crate::typed_methods) exports Rust methods as typed
//! slots with no hand-written `extern "C"` thunk, and this module holds what
//! its expansion uses ([`TypedSlot`], [`set_typed_slots`], [`catch`],
//! [`Fallback`]). Feature `python`.
//!
//! The expansion names `::pyo3` (your crate's PyO3, 0.28 – 0.30); this
//! crate itself depends only on pyo3-ffi.
//!
//! Consumers find a typed method with
//! [`runtime::find_typed`](crate::runtime::find_typed) and a
//! [`TypedId`](crate::runtime::TypedId), which returns the very
//! `extern "C" fn` type the id was derived from.

use core::ffi::{c_char, c_void};
use std::vec::Vec;

use crate::runtime::pyo3_ffi::{PyErr_Clear, PyErr_Format, PyExc_AttributeError, PyObject, Py_DECREF, PyObject_GetAttrString};
use crate::runtime::{method_id_with, Convention, PyErrSet, SlotDef, TypedFn};
use crate::signature::{render_const, signature_of_const};

/// The longest typed key a [`TypedSlot`] holds, in bytes, NUL included.
pub const MAX_KEY: usize = 512;

/// One exported method: its typed key `"<interface>:<method>#<signature>"`
/// (the signature derived from the thunk's `extern "C" fn` type at compile
/// time), the key's id and the thunk. Built in a `const` by
/// [`typed_methods!`](crate::typed_methods).
#[derive(Clone, Copy)]
pub struct TypedSlot {
    key: [u8; MAX_KEY],
    len: usize,
    id: u64,
    ptr: *const c_void,
}

impl TypedSlot {
    /// The slot of `ptr`, a function of type `F`, under the typed key
    /// `name#<signature of F under convention>`.
    ///
    /// # Panics
    /// (A compile error in a `const`.) When `name` is not
    /// `<interface>:<method>`, `F` does not fit `convention` (see
    /// [`method_id_with`]), or the key is longer than [`MAX_KEY`]` - 1`.
    pub const fn new<F: TypedFn>(name: &str, convention: Convention, ptr: *const c_void) -> TypedSlot {
        let id = method_id_with::<F>(name, convention);
        let (ret, n, flag) = signature_of_const(F::RET, F::ARGS, convention);
        let (args, _) = F::ARGS.split_at(n);
        let (sig, sig_len) = render_const(ret, args, flag);
        let mut key = [0u8; MAX_KEY];
        let mut len = 0;
        let parts: [&[u8]; 3] = [name.as_bytes(), b"#", sig.split_at(sig_len).0];
        let mut p = 0;
        while p < parts.len() {
            let mut i = 0;
            while i < parts[p].len() {
                if len + 1 >= MAX_KEY {
                    panic!("typed key longer than extensibletype::methods::MAX_KEY - 1 bytes");
                }
                key[len] = parts[p][i];
                len += 1;
                i += 1;
            }
            p += 1;
        }
        TypedSlot { key, len, id, ptr }
    }

    /// The typed key, e.g. `"geom.Shape.v1:area#f64(O)"`.
    pub fn key(&self) -> &str {
        // The name was a &str and the signature is ASCII.
        core::str::from_utf8(&self.key[..self.len]).unwrap_or("")
    }

    /// The method name (after `:`, before `#`): the Python method with the
    /// same meaning.
    pub fn method(&self) -> &str {
        crate::method_name_of(self.key()).unwrap_or("")
    }

    /// The key's id (`prehash(key)`).
    pub const fn id(&self) -> u64 {
        self.id
    }

    /// The thunk's address.
    pub const fn ptr(&self) -> *const c_void {
        self.ptr
    }
}

impl core::fmt::Debug for TypedSlot {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TypedSlot").field("key", &self.key()).field("id", &format_args!("{:#018x}", self.id)).finish()
    }
}

/// Register `slots` on the type `tp` (`runtime::set_slots`), after checking
/// that `tp` has a Python attribute named like each method (the fallback of
/// a consumer that misses): `AttributeError` naming it otherwise. Needs the
/// GIL; on error nothing is registered and a Python exception is set.
///
/// # Safety
/// [`runtime::import`](crate::runtime::import) succeeded; the caller holds
/// the GIL (an attached thread state); `tp` is a live type object; every
/// slot's function has its key's signature (true of those
/// [`typed_methods!`](crate::typed_methods) builds).
pub unsafe fn set_typed_slots(tp: *mut PyObject, slots: &[TypedSlot]) -> Result<(), PyErrSet> {
    for slot in slots {
        let mut name = [0u8; MAX_KEY];
        name[..slot.method().len()].copy_from_slice(slot.method().as_bytes());
        // SAFETY: GIL held, tp live (caller); name is NUL-terminated.
        let attr = unsafe { PyObject_GetAttrString(tp, name.as_ptr().cast::<c_char>()) };
        if attr.is_null() {
            // SAFETY: GIL held; the format's %R and %s get a live object and
            // NUL-terminated strings.
            unsafe {
                PyErr_Clear();
                PyErr_Format(
                    PyExc_AttributeError,
                    c"%R has no Python method '%s' (typed key '%s'): a typed method must also be a Python method of that name".as_ptr(),
                    tp,
                    name.as_ptr().cast::<c_char>(),
                    slot.key.as_ptr().cast::<c_char>(),
                );
            }
            return Err(PyErrSet);
        }
        // SAFETY: a new reference, GIL held.
        unsafe { Py_DECREF(attr) };
    }
    let defs: Vec<SlotDef> = slots.iter().map(|s| SlotDef { key: s.key.as_ptr().cast(), id: s.id, ptr: s.ptr }).collect();
    // SAFETY: forwarded; every key is NUL-terminated (TypedSlot keeps one).
    unsafe { crate::runtime::set_slots(tp, &defs) }
}

/// A caught panic: its message (`"panic from Rust code"` when the payload
/// is not a string).
#[derive(Debug)]
pub struct Panic(pub String);

/// Run `f`, catching a panic (no panic may cross the `extern "C"` boundary
/// of a thunk). The panic hook has already reported it (stderr by default).
pub fn catch<R>(f: impl FnOnce() -> R) -> Result<R, Panic> {
    // AssertUnwindSafe: after a panic the thunk only reports it and returns
    // a fallback; it does not look at state the closure may have left
    // half-updated.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|payload| {
        Panic(match payload.downcast::<String>() {
            Ok(s) => *s,
            Err(payload) => payload.downcast_ref::<&str>().map_or("panic from Rust code", |s| s).to_owned(),
        })
    })
}

/// What a thunk returns when the method panicked and the signature has no
/// way to raise (no flag, or `!t`): NaN for floats and complex numbers, 0
/// for integers, `false`, NULL for pointers.
pub trait Fallback {
    /// The value.
    const VALUE: Self;
}

macro_rules! fallback {
    ($($t:ty => $v:expr),* $(,)?) => {$(
        impl Fallback for $t {
            const VALUE: Self = $v;
        }
    )*};
}

fallback! {
    i8 => 0, i16 => 0, i32 => 0, i64 => 0, isize => 0,
    u8 => 0, u16 => 0, u32 => 0, u64 => 0, usize => 0,
    f32 => f32::NAN, f64 => f64::NAN, bool => false, () => (),
    crate::runtime::typed::C64 => crate::runtime::typed::C64 { re: f32::NAN, im: f32::NAN },
    crate::runtime::typed::C128 => crate::runtime::typed::C128 { re: f64::NAN, im: f64::NAN },
}

impl<T> Fallback for *mut T {
    const VALUE: Self = core::ptr::null_mut();
}

impl<T> Fallback for *const T {
    const VALUE: Self = core::ptr::null();
}

/// Export methods of a PyO3 `#[pyclass]` as typed slots (docs/spec.md,
/// "Typed methods"): one line per method, no hand-written `extern "C"`
/// thunk.
///
/// ```ignore
/// use pyo3::prelude::*;
///
/// #[pyclass(frozen, subclass)]
/// struct Square { side: f64 }
///
/// #[pymethods]
/// impl Square {
///     fn area(&self) -> f64 { self.side * self.side }
///     fn scaled(&self, k: f64) -> PyResult<f64> { Ok(k * k * self.area()) }
///     fn describe(&self, py: Python<'_>) -> Py<PyAny> { /* ... */ }
/// }
///
/// extensibletype::typed_methods!(Square {
///     "geom.Shape.v1:area" => fn area(&self) -> f64;                       // geom.Shape.v1:area#f64(O)
///     "geom.Shape.v1:scaled" => fn scaled(&self, k: f64) -> PyResult<f64>; // ...#f64(O,f64)!e
///     "geom.Shape.v1:describe" => fn describe(&self, py: Python<'_>) -> Py<PyAny>; // ...#O+(O)!t
/// });
///
/// // In the #[pymodule], once, after add_class:
/// // Square::register_typed_methods(m.py())?;
/// ```
///
/// (`examples/pyo3_ext/src/readme.rs` is a complete extension, built and
/// imported by the test suite.)
///
/// It adds to the type, in your crate:
/// - `Square::TYPED_SLOTS`, a `&'static` slice of [`TypedSlot`]s — each
///   key (with its signature), id and thunk, computed at compile time;
/// - `Square::register_typed_methods(py) -> PyResult<()>` — calls
///   `runtime::import()` and registers them on the type
///   ([`set_typed_slots`]; `AttributeError` if the class has no Python
///   attribute of a method's name). Call it once in your `#[pymodule]`.
///
/// **Signatures** come from the Rust types at compile time. Write the
/// method's parameters (after `&self`) and return type as in the method;
/// a `Python<'_>` *first* parameter, `PyResult<…>` and `Py<…>` are
/// recognised by those names, so write them so (not `pyo3::PyResult`):
///
/// | Rust method | typed signature | thunk's C type |
/// |---|---|---|
/// | `fn m(&self, a: A, …) -> R` | `R(O,A,…)` (no flag) | `R (*)(PyObject *, A, …)` |
/// | `fn m(&self, py: Python<'_>, a: A, …) -> R` | `R(O,A,…)!t` | as above |
/// | `fn m(&self, [py,] …) -> Py<T>` | `O+(O,…)!t` | `PyObject *(*)(PyObject *, …)` (new reference) |
/// | `fn m(&self, [py,] …) -> PyResult<R>` | `R(O,…)!e` | `int32_t (*)(PyObject *, …, R *out)`: 0, or -1 with the exception set |
/// | `fn m(&self, [py,] …) -> PyResult<()>` | `v(O,…)!e` | `int32_t (*)(PyObject *, …)` |
/// | `fn m(&self, [py,] …) -> PyResult<Py<T>>` | `O+(O,…)!e` | `PyObject *(*)(PyObject *, …)`: NULL with the exception set |
///
/// `A` and `R` are the types of [`runtime::typed`](crate::runtime::typed)
/// (`f64` → `f64`, `i64` → `i64`, `bool` → `b`, `*mut f64` → `*f64`, …;
/// no return is `v`). Only `&self` methods.
///
/// **No flag means no thread state**: such a method may be called from a
/// thread that holds no GIL, so its thunk must not touch the interpreter.
/// It reads `&self` through PyO3's `Py::get`, which exists only for
/// `#[pyclass(frozen)]` classes that are `Sync`: for any other class a
/// flagless method does not compile (give it a `py: Python<'_>` parameter:
/// then it is `!t`). The thunks of `!t` and `!e` methods borrow `self`
/// with `Bound::try_borrow` (any class) and check its type (`!e` raises a
/// `TypeError` for another type).
///
/// **Panics** never cross the C boundary (each thunk runs the method under
/// [`catch`]): a `!e` method raises `pyo3::panic::PanicException` with the
/// panic's message; a `!t` method reports it (and an error of the borrow)
/// to `sys.unraisablehook` and returns the [`Fallback`] (`None` for
/// `O+`); a flagless method returns the [`Fallback`] (NaN, 0, `false`,
/// NULL) — the panic hook has printed the message; it cannot raise.
///
/// A key naming a method `Square` lacks is a compile error (`no function or
/// associated item named …`); a key that is not `<interface>:<method>`, or a
/// type with no signature code, is a compile error too. A method may be
/// exported under several keys.
#[macro_export]
macro_rules! typed_methods {
    // One method at a time (`@munch`): classify the return type, then the
    // parameters (`@params`), then build its slot (`@slot`) in a block
    // holding its thunk; the result is `&[slot, ...]`.
    (@munch $T:ty [$($done:tt)*]) => { &[$($done)*] };
    (@munch $T:ty [$($done:tt)*] $key:literal => fn $m:ident $p:tt -> PyResult<()> ; $($rest:tt)*) => {
        $crate::typed_methods!(@params $p @slot raises_void [$T, $key, $m] [$($done)*] [$($rest)*])
    };
    (@munch $T:ty [$($done:tt)*] $key:literal => fn $m:ident $p:tt -> PyResult<Py<$X:ty>> ; $($rest:tt)*) => {
        $crate::typed_methods!(@params $p @slot raises_obj [$T, $key, $m] [$($done)*] [$($rest)*])
    };
    (@munch $T:ty [$($done:tt)*] $key:literal => fn $m:ident $p:tt -> PyResult<$R:ty> ; $($rest:tt)*) => {
        $crate::typed_methods!(@params $p @slot raises_out [$T, $key, $m, $R] [$($done)*] [$($rest)*])
    };
    (@munch $T:ty [$($done:tt)*] $key:literal => fn $m:ident $p:tt -> Py<$X:ty> ; $($rest:tt)*) => {
        $crate::typed_methods!(@params $p @slot thread_obj [$T, $key, $m] [$($done)*] [$($rest)*])
    };
    (@munch $T:ty [$($done:tt)*] $key:literal => fn $m:ident $p:tt -> $R:ty ; $($rest:tt)*) => {
        $crate::typed_methods!(@params $p @slot value [$T, $key, $m, $R] [$($done)*] [$($rest)*])
    };
    (@munch $T:ty [$($done:tt)*] $key:literal => fn $m:ident $p:tt ; $($rest:tt)*) => {
        $crate::typed_methods!(@params $p @slot value [$T, $key, $m, ()] [$($done)*] [$($rest)*])
    };

    // Parameters: `[py]` when the first after `&self` is `Python<'_>`.
    (@params (&self, $py:ident : Python<$lt:lifetime> $(, $a:ident : $at:ty)* $(,)?) $($k:tt)*) => {
        $crate::typed_methods!($($k)* [$py] [$($a : $at),*])
    };
    (@params (&self $(, $a:ident : $at:ty)* $(,)?) $($k:tt)*) => {
        $crate::typed_methods!($($k)* [] [$($a : $at),*])
    };

    // The call of the method in a thunk holding the GIL: a `PyResult` of
    // its result (`$ok`: wrap a plain result in `Ok`).
    (@call $T:ty, $m:ident, $py:ident, $obj:ident, [$($pyarg:ident)?], [$($a:ident),*], $($ok:ident)?) => {
        $crate::methods::catch(|| -> ::pyo3::PyResult<_> {
            // SAFETY: the caller passes a live object, borrowed for the call.
            let bound = unsafe { ::pyo3::Bound::from_borrowed_ptr($py, $obj) };
            let this = bound.cast::<$T>()?.try_borrow()?;
            $(let $pyarg = $py;)?
            $($ok)?(<$T>::$m(&this $(, $pyarg)? $(, $a)*))
        })
    };

    (@slot raises_void [$T:ty, $key:literal, $m:ident] [$($done:tt)*] [$($rest:tt)*] [$($py:ident)?] [$($a:ident : $at:ty),*]) => {
        $crate::typed_methods!(@munch $T [$($done)* {
            type F = unsafe extern "C" fn(*mut $crate::runtime::pyo3_ffi::PyObject $(, $at)*) -> i32;
            unsafe extern "C" fn thunk(obj: *mut $crate::runtime::pyo3_ffi::PyObject $(, $a: $at)*) -> i32 {
                // SAFETY: `!e`: the caller holds an attached thread state.
                let py = unsafe { ::pyo3::Python::assume_attached() };
                let r = $crate::typed_methods!(@call $T, $m, py, obj, [$($py)?], [$($a),*],);
                match __extensibletype_raised(py, r) { Some(()) => 0, None => -1 }
            }
            $crate::methods::TypedSlot::new::<F>($key, $crate::runtime::Convention::Raises, thunk as F as *const ::core::ffi::c_void)
        },] $($rest)*)
    };
    (@slot raises_obj [$T:ty, $key:literal, $m:ident] [$($done:tt)*] [$($rest:tt)*] [$($py:ident)?] [$($a:ident : $at:ty),*]) => {
        $crate::typed_methods!(@munch $T [$($done)* {
            type F = unsafe extern "C" fn(*mut $crate::runtime::pyo3_ffi::PyObject $(, $at)*) -> *mut $crate::runtime::pyo3_ffi::PyObject;
            unsafe extern "C" fn thunk(obj: *mut $crate::runtime::pyo3_ffi::PyObject $(, $a: $at)*) -> *mut $crate::runtime::pyo3_ffi::PyObject {
                // SAFETY: `!e`: the caller holds an attached thread state.
                let py = unsafe { ::pyo3::Python::assume_attached() };
                let r = $crate::typed_methods!(@call $T, $m, py, obj, [$($py)?], [$($a),*],);
                __extensibletype_raised(py, r).map_or(::core::ptr::null_mut(), |o| o.into_ptr())
            }
            $crate::methods::TypedSlot::new::<F>($key, $crate::runtime::Convention::Raises, thunk as F as *const ::core::ffi::c_void)
        },] $($rest)*)
    };
    (@slot raises_out [$T:ty, $key:literal, $m:ident, $R:ty] [$($done:tt)*] [$($rest:tt)*] [$($py:ident)?] [$($a:ident : $at:ty),*]) => {
        $crate::typed_methods!(@munch $T [$($done)* {
            type F = unsafe extern "C" fn(*mut $crate::runtime::pyo3_ffi::PyObject $(, $at)*, *mut $R) -> i32;
            unsafe extern "C" fn thunk(obj: *mut $crate::runtime::pyo3_ffi::PyObject $(, $a: $at)*, out: *mut $R) -> i32 {
                // SAFETY: `!e`: the caller holds an attached thread state.
                let py = unsafe { ::pyo3::Python::assume_attached() };
                let r = $crate::typed_methods!(@call $T, $m, py, obj, [$($py)?], [$($a),*],);
                match __extensibletype_raised(py, r) {
                    // SAFETY: `!e`: `out` points to a writable result.
                    Some(v) => { unsafe { out.write(v) }; 0 }
                    None => -1,
                }
            }
            $crate::methods::TypedSlot::new::<F>($key, $crate::runtime::Convention::RaisesOut, thunk as F as *const ::core::ffi::c_void)
        },] $($rest)*)
    };
    (@slot thread_obj [$T:ty, $key:literal, $m:ident] [$($done:tt)*] [$($rest:tt)*] [$($py:ident)?] [$($a:ident : $at:ty),*]) => {
        $crate::typed_methods!(@munch $T [$($done)* {
            type F = unsafe extern "C" fn(*mut $crate::runtime::pyo3_ffi::PyObject $(, $at)*) -> *mut $crate::runtime::pyo3_ffi::PyObject;
            unsafe extern "C" fn thunk(obj: *mut $crate::runtime::pyo3_ffi::PyObject $(, $a: $at)*) -> *mut $crate::runtime::pyo3_ffi::PyObject {
                // SAFETY: `!t`: the caller holds an attached thread state.
                let py = unsafe { ::pyo3::Python::assume_attached() };
                let r = $crate::typed_methods!(@call $T, $m, py, obj, [$($py)?], [$($a),*], Ok);
                __extensibletype_reported(py, obj, r).unwrap_or_else(|| py.None()).into_ptr()
            }
            $crate::methods::TypedSlot::new::<F>($key, $crate::runtime::Convention::Thread, thunk as F as *const ::core::ffi::c_void)
        },] $($rest)*)
    };
    // A plain value with `py`: `!t`.
    (@slot value [$T:ty, $key:literal, $m:ident, $R:ty] [$($done:tt)*] [$($rest:tt)*] [$py:ident] [$($a:ident : $at:ty),*]) => {
        $crate::typed_methods!(@munch $T [$($done)* {
            type F = unsafe extern "C" fn(*mut $crate::runtime::pyo3_ffi::PyObject $(, $at)*) -> $R;
            unsafe extern "C" fn thunk(obj: *mut $crate::runtime::pyo3_ffi::PyObject $(, $a: $at)*) -> $R {
                // SAFETY: `!t`: the caller holds an attached thread state.
                let py = unsafe { ::pyo3::Python::assume_attached() };
                let r = $crate::typed_methods!(@call $T, $m, py, obj, [$py], [$($a),*], Ok);
                __extensibletype_reported(py, obj, r).unwrap_or(<$R as $crate::methods::Fallback>::VALUE)
            }
            $crate::methods::TypedSlot::new::<F>($key, $crate::runtime::Convention::Thread, thunk as F as *const ::core::ffi::c_void)
        },] $($rest)*)
    };
    // A plain value without `py`: no flag, no thread state (frozen classes).
    (@slot value [$T:ty, $key:literal, $m:ident, $R:ty] [$($done:tt)*] [$($rest:tt)*] [] [$($a:ident : $at:ty),*]) => {
        $crate::typed_methods!(@munch $T [$($done)* {
            type F = unsafe extern "C" fn(*mut $crate::runtime::pyo3_ffi::PyObject $(, $at)*) -> $R;
            unsafe extern "C" fn thunk(obj: *mut $crate::runtime::pyo3_ffi::PyObject $(, $a: $at)*) -> $R {
                let Some(obj) = ::core::ptr::NonNull::new(obj) else {
                    return <$R as $crate::methods::Fallback>::VALUE;
                };
                // SAFETY: `Py<T>` has the layout of `NonNull<PyObject>`
                // (PyO3's documented FFI guarantee; `repr(transparent)`
                // in 0.28 too). This `&Py` is a view of the caller's
                // borrowed reference, never dropped or cloned (no
                // refcount change without a thread state); the slot is
                // registered on `$T` only, so `obj` is a `$T` (or a
                // subclass instance, same layout).
                let this = unsafe { &*(&obj as *const ::core::ptr::NonNull<$crate::runtime::pyo3_ffi::PyObject>).cast::<::pyo3::Py<$T>>() };
                // `Py::get` needs `#[pyclass(frozen)]` + `Sync`: reading
                // `&$T` then needs no thread state.
                $crate::methods::catch(|| <$T>::$m(this.get() $(, $a)*)).unwrap_or(<$R as $crate::methods::Fallback>::VALUE)
            }
            $crate::methods::TypedSlot::new::<F>($key, $crate::runtime::Convention::Plain, thunk as F as *const ::core::ffi::c_void)
        },] $($rest)*)
    };

    ($T:ty { $($methods:tt)* }) => {
        const _: () = {
            /// The value of a `!e` call, or `None` with its error (a panic:
            /// `PanicException`) raised.
            #[allow(dead_code)]
            fn __extensibletype_raised<R>(
                py: ::pyo3::Python<'_>,
                r: ::core::result::Result<::pyo3::PyResult<R>, $crate::methods::Panic>,
            ) -> ::core::option::Option<R> {
                let err = match r {
                    Ok(Ok(v)) => return Some(v),
                    Ok(Err(e)) => e,
                    Err(panic) => ::pyo3::panic::PanicException::new_err(panic.0),
                };
                err.restore(py);
                None
            }

            /// The value of a `!t` call, or `None` with its error reported
            /// to `sys.unraisablehook` (a `!t` function must not raise).
            #[allow(dead_code)]
            fn __extensibletype_reported<R>(
                py: ::pyo3::Python<'_>,
                obj: *mut $crate::runtime::pyo3_ffi::PyObject,
                r: ::core::result::Result<::pyo3::PyResult<R>, $crate::methods::Panic>,
            ) -> ::core::option::Option<R> {
                let err = match r {
                    Ok(Ok(v)) => return Some(v),
                    Ok(Err(e)) => e,
                    Err(panic) => ::pyo3::panic::PanicException::new_err(panic.0),
                };
                // SAFETY: the thunk's caller holds the GIL and a reference to obj.
                let obj = unsafe { ::pyo3::Bound::from_borrowed_ptr(py, obj) };
                err.write_unraisable(py, Some(&obj));
                None
            }

            impl $T {
                /// The typed slots exported by `extensibletype::typed_methods!`.
                #[allow(dead_code)]
                pub const TYPED_SLOTS: &'static [$crate::methods::TypedSlot] = $crate::typed_methods!(@munch $T [] $($methods)*);

                /// Register [`Self::TYPED_SLOTS`] on this class (once, in
                /// the `#[pymodule]`): `runtime::import()`, then
                /// `extensibletype::methods::set_typed_slots`.
                #[allow(dead_code)]
                pub fn register_typed_methods(py: ::pyo3::Python<'_>) -> ::pyo3::PyResult<()> {
                    $crate::runtime::import().map_err(|_| ::pyo3::PyErr::fetch(py))?;
                    let tp = py.get_type::<$T>();
                    // SAFETY: py: the GIL is held; the runtime is imported;
                    // tp is a live type; the slots come from this macro.
                    unsafe { $crate::methods::set_typed_slots(tp.as_ptr(), Self::TYPED_SLOTS) }.map_err(|_| ::pyo3::PyErr::fetch(py))
                }
            }
        };
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prehash;

    unsafe extern "C" fn area(_: *mut PyObject) -> f64 {
        1.0
    }

    unsafe extern "C" fn scaled(_: *mut PyObject, _: f64, _: *mut f64) -> i32 {
        0
    }

    type Area = unsafe extern "C" fn(*mut PyObject) -> f64;
    type Scaled = unsafe extern "C" fn(*mut PyObject, f64, *mut f64) -> i32;
    const SLOTS: &[TypedSlot] = &[
        TypedSlot::new::<Area>("geom.Shape.v1:area", Convention::Plain, area as Area as *const c_void),
        TypedSlot::new::<Scaled>("geom.Shape.v1:scaled", Convention::RaisesOut, scaled as Scaled as *const c_void),
    ];

    #[test]
    fn keys_from_function_types() {
        assert_eq!(SLOTS[0].key(), "geom.Shape.v1:area#f64(O)");
        assert_eq!(SLOTS[0].id(), prehash("geom.Shape.v1:area#f64(O)"));
        assert_eq!(SLOTS[0].method(), "area");
        assert_eq!(SLOTS[1].key(), "geom.Shape.v1:scaled#f64(O,f64)!e");
        assert_eq!(SLOTS[1].id(), prehash(SLOTS[1].key()));
        assert_eq!(SLOTS[1].key[SLOTS[1].len], 0, "NUL-terminated");
        assert_eq!(SLOTS[1].ptr(), scaled as Scaled as *const c_void);
    }

    #[test]
    fn keys_under_each_convention() {
        unsafe extern "C" fn new_ref(_: *mut PyObject, _: i64) -> *mut PyObject {
            core::ptr::null_mut()
        }
        unsafe extern "C" fn status(_: *mut PyObject) -> i32 {
            0
        }
        unsafe extern "C" fn flag(_: *mut PyObject, _: bool, _: *mut f64) -> bool {
            true
        }
        type NewRef = unsafe extern "C" fn(*mut PyObject, i64) -> *mut PyObject;
        type Status = unsafe extern "C" fn(*mut PyObject) -> i32;
        type Flag = unsafe extern "C" fn(*mut PyObject, bool, *mut f64) -> bool;
        const MORE: [TypedSlot; 5] = [
            TypedSlot::new::<NewRef>("g.S.v1:make", Convention::Thread, new_ref as NewRef as *const c_void),
            TypedSlot::new::<NewRef>("g.S.v1:make", Convention::Raises, new_ref as NewRef as *const c_void),
            TypedSlot::new::<Status>("g.S.v1:check", Convention::Raises, status as Status as *const c_void),
            TypedSlot::new::<Status>("g.S.v1:code", Convention::Thread, status as Status as *const c_void),
            TypedSlot::new::<Flag>("g.S.v1:flag", Convention::Plain, flag as Flag as *const c_void),
        ];
        let keys: Vec<&str> = MORE.iter().map(TypedSlot::key).collect();
        assert_eq!(
            keys,
            ["g.S.v1:make#O+(O,i64)!t", "g.S.v1:make#O+(O,i64)!e", "g.S.v1:check#v(O)!e", "g.S.v1:code#i32(O)!t", "g.S.v1:flag#b(O,b,*f64)"]
        );
        for slot in &MORE {
            assert_eq!(slot.id(), prehash(slot.key()), "{slot:?}");
        }
    }

    #[test]
    fn catch_keeps_the_message() {
        assert_eq!(catch(|| 3).unwrap(), 3);
        assert_eq!(catch(|| panic!("boom {}", 1)).unwrap_err().0, "boom 1");
        assert_eq!(catch(|| std::panic::panic_any(7)).unwrap_err().0, "panic from Rust code");
        assert!(<f64 as Fallback>::VALUE.is_nan());
        assert!(<*mut u8 as Fallback>::VALUE.is_null());
    }
}
