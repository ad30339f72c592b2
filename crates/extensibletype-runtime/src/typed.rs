//! Typed methods from Rust (docs/spec.md, "Typed methods"): the id of a
//! typed key derived, at compile time, from the `extern "C" fn` type of the
//! method, and a find that returns that very function type, so that a
//! consumer cannot call what it found with another signature.
//!
//! ```no_run
//! use extensibletype_runtime::pyo3_ffi::PyObject;
//! use extensibletype_runtime::typed::{find_typed, method_id, TypedId};
//!
//! type Area = unsafe extern "C" fn(*mut PyObject) -> f64;
//! const AREA: TypedId<Area> = TypedId::new("geom.Shape.v1:area");
//! // The same id as the key "geom.Shape.v1:area#f64(O)":
//! const _: () = assert!(AREA.id() == extensibletype_core::prehash_const("geom.Shape.v1:area#f64(O)"));
//! const _: () = assert!(method_id::<Area>("geom.Shape.v1:area") == AREA.id());
//!
//! unsafe fn area(obj: *mut PyObject) -> Option<f64> {
//!     // SAFETY: obj is a live object; runtime::import() succeeded.
//!     unsafe { find_typed(obj, AREA).map(|f| f(obj)) }
//! }
//! ```
//!
//! Calling with another signature does not compile:
//!
//! ```compile_fail
//! use extensibletype_runtime::pyo3_ffi::PyObject;
//! use extensibletype_runtime::typed::{find_typed, TypedId};
//! const AREA: TypedId<unsafe extern "C" fn(*mut PyObject) -> f64> = TypedId::new("geom.Shape.v1:area");
//! unsafe fn wrong(obj: *mut PyObject) -> Option<f32> {
//!     let f: Option<unsafe extern "C" fn(*mut PyObject) -> f32> = unsafe { find_typed(obj, AREA) };
//!     f.map(|f| unsafe { f(obj) })
//! }
//! ```
//!
//! nor does a signature the grammar refuses (here `O+` without a flag):
//!
//! ```compile_fail
//! use extensibletype_runtime::pyo3_ffi::PyObject;
//! use extensibletype_runtime::typed::method_id;
//! const NEW: u64 = method_id::<unsafe extern "C" fn(*mut PyObject) -> *mut PyObject>("geom.Shape.v1:new");
//! ```
//!
//! How Rust types map to signature codes ([`ArgType`], [`RetType`]):
//!
//! | Rust | code |
//! |---|---|
//! | `i8` … `i64`, `u8` … `u64`, `f32`, `f64` | `i8` … `f64` |
//! | `isize` / `usize` (and so `Py_ssize_t`), `c_long`, `c_int`, … | by their width on the target (`i64` on 64-bit) |
//! | `bool` | `b` |
//! | [`C64`], [`C128`] | `c64`, `c128` |
//! | `*mut c_void` / `*const c_void` | `p` |
//! | `*mut T` / `*const T` (T a scalar, `c_void` or a pointer) | `*` + T's code |
//! | `*mut PyObject` | `O` as an argument (the first is always one), `O+` as a return (needs a flag) |
//! | `()` return | `v` |
//!
//! Flags are not part of a Rust function type: [`Convention`] says which
//! one a function has ([`method_id_with`], [`TypedId::with`]):
//! `Plain` (none), `Thread` (`!t`), `Raises` (`!e`, returning `i32` for
//! `v` or `*mut PyObject` for `O+`) and `RaisesOut` (`!e` with a trailing
//! out-pointer: `fn(*mut PyObject, f64, *mut f64) -> i32` is `f64(O,f64)!e`).
//! An invalid combination does not compile (a const panic naming the rule).

use core::ffi::c_void;
use core::marker::PhantomData;

use pyo3_ffi::{PyObject, PyTypeObject};

pub use extensibletype_core::signature::{typed_id_of_c_function, Base, Convention, Flag, Scalar, Type};

/// A Rust type that is one signature code as an argument.
///
/// # Safety
/// `TYPE` is the code of a C type with the same size, alignment and calling
/// convention as `Self` on this target.
pub unsafe trait ArgType {
    /// The code.
    const TYPE: Type;
}

/// A Rust type that is one signature code as a return type.
///
/// # Safety
/// As [`ArgType`].
pub unsafe trait RetType {
    /// The code.
    const TYPE: Type;
}

/// A Rust type a signature pointer may point to (scalars, `c_void`,
/// pointers to those).
///
/// # Safety
/// `POINTER` is the code of a C pointer to a type with `Self`'s layout.
pub unsafe trait Pointee {
    /// The code of `*mut Self`.
    const POINTER: Type;
}

/// `c64`: a C `float _Complex` (real part first). Passed like C's complex
/// on the SysV x86-64 and AArch64 ABIs; check your target's ABI elsewhere.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct C64 {
    /// Real part.
    pub re: f32,
    /// Imaginary part.
    pub im: f32,
}

/// `c128`: a C `double _Complex` (real part first); ABI note as [`C64`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct C128 {
    /// Real part.
    pub re: f64,
    /// Imaginary part.
    pub im: f64,
}

macro_rules! scalar {
    ($($t:ty => $s:expr),* $(,)?) => {$(
        // SAFETY: the scalar code of the same width and kind.
        unsafe impl ArgType for $t {
            const TYPE: Type = Type::scalar($s);
        }
        // SAFETY: as above.
        unsafe impl RetType for $t {
            const TYPE: Type = Type::scalar($s);
        }
        // SAFETY: a pointer to the scalar.
        unsafe impl Pointee for $t {
            const POINTER: Type = Type::scalar($s).pointer();
        }
    )*};
}

scalar! {
    i8 => Scalar::I8, i16 => Scalar::I16, i32 => Scalar::I32, i64 => Scalar::I64,
    u8 => Scalar::U8, u16 => Scalar::U16, u32 => Scalar::U32, u64 => Scalar::U64,
    f32 => Scalar::F32, f64 => Scalar::F64, bool => Scalar::B,
    C64 => Scalar::C64, C128 => Scalar::C128,
}

#[cfg(target_pointer_width = "64")]
scalar! { isize => Scalar::I64, usize => Scalar::U64 }
#[cfg(target_pointer_width = "32")]
scalar! { isize => Scalar::I32, usize => Scalar::U32 }

// SAFETY: `*mut c_void` is `void *`, code p.
unsafe impl Pointee for c_void {
    const POINTER: Type = Type::of(Base::VoidPtr);
}

// SAFETY: a pointer to a pointer with T's code.
unsafe impl<T: Pointee> Pointee for *mut T {
    const POINTER: Type = T::POINTER.pointer();
}
// SAFETY: as above (constness does not change the ABI).
unsafe impl<T: Pointee> Pointee for *const T {
    const POINTER: Type = T::POINTER.pointer();
}
// SAFETY: a data pointer, code `*` + T's (or p).
unsafe impl<T: Pointee> ArgType for *mut T {
    const TYPE: Type = T::POINTER;
}
// SAFETY: as above.
unsafe impl<T: Pointee> ArgType for *const T {
    const TYPE: Type = T::POINTER;
}
// SAFETY: as above.
unsafe impl<T: Pointee> RetType for *mut T {
    const TYPE: Type = T::POINTER;
}
// SAFETY: as above.
unsafe impl<T: Pointee> RetType for *const T {
    const TYPE: Type = T::POINTER;
}
// SAFETY: `PyObject *` is O (borrowed) as an argument.
unsafe impl ArgType for *mut PyObject {
    const TYPE: Type = Type::of(Base::Object);
}
// SAFETY: a returned `PyObject *` is a new reference, O+.
unsafe impl RetType for *mut PyObject {
    const TYPE: Type = Type::of(Base::NewRef);
}
// SAFETY: `void`.
unsafe impl RetType for () {
    const TYPE: Type = Type::of(Base::Void);
}

/// An `extern "C" fn` type of a typed method: `(unsafe) extern "C" fn(*mut
/// PyObject, A1, …, An) -> R` with up to 12 further arguments of
/// [`ArgType`]s and an [`RetType`] return.
///
/// # Safety
/// `Self` is a function pointer whose C type is `RET(ARGS)`.
pub unsafe trait TypedFn: Copy + 'static {
    /// The C return type.
    const RET: Type;
    /// The C argument types (the first is `O`).
    const ARGS: &'static [Type];
}

macro_rules! typed_fn {
    ($($a:ident),*) => {
        // SAFETY: the codes are those of the argument and return types.
        unsafe impl<R: RetType + 'static, $($a: ArgType + 'static),*> TypedFn for unsafe extern "C" fn(*mut PyObject $(, $a)*) -> R {
            const RET: Type = R::TYPE;
            const ARGS: &'static [Type] = &[Type::of(Base::Object) $(, $a::TYPE)*];
        }
        // SAFETY: as above.
        unsafe impl<R: RetType + 'static, $($a: ArgType + 'static),*> TypedFn for extern "C" fn(*mut PyObject $(, $a)*) -> R {
            const RET: Type = R::TYPE;
            const ARGS: &'static [Type] = &[Type::of(Base::Object) $(, $a::TYPE)*];
        }
    };
}

typed_fn!();
typed_fn!(A1);
typed_fn!(A1, A2);
typed_fn!(A1, A2, A3);
typed_fn!(A1, A2, A3, A4);
typed_fn!(A1, A2, A3, A4, A5);
typed_fn!(A1, A2, A3, A4, A5, A6);
typed_fn!(A1, A2, A3, A4, A5, A6, A7);
typed_fn!(A1, A2, A3, A4, A5, A6, A7, A8);
typed_fn!(A1, A2, A3, A4, A5, A6, A7, A8, A9);
typed_fn!(A1, A2, A3, A4, A5, A6, A7, A8, A9, A10);
typed_fn!(A1, A2, A3, A4, A5, A6, A7, A8, A9, A10, A11);
typed_fn!(A1, A2, A3, A4, A5, A6, A7, A8, A9, A10, A11, A12);

/// The id of the typed key `name#<signature of F>` with no flag:
/// `method_id::<unsafe extern "C" fn(*mut PyObject) -> f64>("geom.Shape.v1:area")`
/// is `prehash("geom.Shape.v1:area#f64(O)")`.
///
/// # Panics
/// (A compile error in a `const`.) When `name` is not `<interface>:<method>`
/// or `F` returns `*mut PyObject` (`O+` needs a flag: [`method_id_with`]).
pub const fn method_id<F: TypedFn>(name: &str) -> u64 {
    typed_id_of_c_function(name, F::RET, F::ARGS, Convention::Plain)
}

/// [`method_id`] under a [`Convention`] (the flag, and for `!e` where the
/// result goes).
///
/// # Panics
/// As [`method_id`], and when `F` does not fit `convention`.
pub const fn method_id_with<F: TypedFn>(name: &str, convention: Convention) -> u64 {
    typed_id_of_c_function(name, F::RET, F::ARGS, convention)
}

/// The id of a typed method together with the function type it was derived
/// from: [`find_typed`] returns exactly that type.
pub struct TypedId<F> {
    id: u64,
    _f: PhantomData<F>,
}

impl<F> Clone for TypedId<F> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<F> Copy for TypedId<F> {}

impl<F> core::fmt::Debug for TypedId<F> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "TypedId({:#018x})", self.id)
    }
}

impl<F: TypedFn> TypedId<F> {
    /// The flagless typed id of `name` ([`method_id`]).
    ///
    /// # Panics
    /// As [`method_id`] (use it in a `const`: then a compile error).
    pub const fn new(name: &str) -> Self {
        TypedId { id: method_id::<F>(name), _f: PhantomData }
    }

    /// The typed id of `name` under `convention` ([`method_id_with`]).
    ///
    /// # Panics
    /// As [`method_id_with`].
    pub const fn with(name: &str, convention: Convention) -> Self {
        TypedId { id: method_id_with::<F>(name, convention), _f: PhantomData }
    }

    /// An id obtained elsewhere (e.g. a generated header) for `F`.
    ///
    /// # Safety
    /// `id` is the prehash of a typed key whose signature is `F`'s C type.
    pub const unsafe fn from_raw(id: u64) -> Self {
        TypedId { id, _f: PhantomData }
    }

    /// The 64-bit id (what [`crate::find`] takes).
    pub const fn id(self) -> u64 {
        self.id
    }
}

/// The function registered for `id` on `tp`, as `F`; `None` when absent.
///
/// # Safety
/// As [`crate::find_in_type`]. The provider registered, under the typed
/// key, a function of that key's signature (registration checks ctypes and
/// numba values; raw addresses are trusted).
#[inline]
pub unsafe fn find_typed_in_type<F: TypedFn>(tp: *mut PyTypeObject, id: TypedId<F>) -> Option<F> {
    const { assert!(core::mem::size_of::<F>() == core::mem::size_of::<*const c_void>()) };
    // SAFETY: forwarded to the caller.
    let p = unsafe { crate::find_in_type(tp, id.id) };
    // SAFETY: F is a function pointer type of pointer size (checked above)
    // and `p` is non-NULL, the address of a function of F's C type (the
    // caller's contract: the id encodes that signature).
    (!p.is_null()).then(|| unsafe { core::mem::transmute_copy::<*const c_void, F>(&p) })
}

/// The function registered for `id` on `type(obj)`, as `F`; `None` when
/// absent.
///
/// # Safety
/// As [`crate::find`] and [`find_typed_in_type`].
#[inline]
pub unsafe fn find_typed<F: TypedFn>(obj: *mut PyObject, id: TypedId<F>) -> Option<F> {
    if obj.is_null() {
        return None;
    }
    // SAFETY: obj is live (caller), so its type is.
    unsafe { find_typed_in_type(pyo3_ffi::Py_TYPE(obj), id) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use extensibletype_core::prehash;

    type Area = unsafe extern "C" fn(*mut PyObject) -> f64;
    const AREA: u64 = method_id::<Area>("geom.Shape.v1:area");
    const _: () = assert!(AREA == extensibletype_core::prehash_const("geom.Shape.v1:area#f64(O)"));

    #[test]
    fn ids_from_function_types() {
        assert_eq!(AREA, prehash("geom.Shape.v1:area#f64(O)"));
        assert_eq!(method_id::<extern "C" fn(*mut PyObject, f64)>("geom.Shape.v1:scale"), prehash("geom.Shape.v1:scale#v(O,f64)"));
        assert_eq!(
            method_id::<unsafe extern "C" fn(*mut PyObject, *mut f64, isize) -> i64>("geom.Shape.v1:sum"),
            prehash(&format!("geom.Shape.v1:sum#i64(O,*f64,{})", if cfg!(target_pointer_width = "64") { "i64" } else { "i32" }))
        );
        assert_eq!(
            method_id::<unsafe extern "C" fn(*mut PyObject, *mut c_void) -> bool>("geom.Shape.v1:has"),
            prehash("geom.Shape.v1:has#b(O,p)")
        );
        assert_eq!(method_id::<unsafe extern "C" fn(*mut PyObject, C128) -> C128>("g.S.v1:rot"), prehash("g.S.v1:rot#c128(O,c128)"));
        assert_eq!(
            method_id::<unsafe extern "C" fn(*mut PyObject, *const *mut c_void, *mut *mut u8) -> *mut f32>("g.S.v1:p"),
            prehash("g.S.v1:p#*f32(O,*p,**u8)")
        );
        assert_eq!(
            method_id_with::<unsafe extern "C" fn(*mut PyObject) -> *mut PyObject>("g.S.v1:copy", Convention::Thread),
            prehash("g.S.v1:copy#O+(O)!t")
        );
        assert_eq!(
            method_id_with::<unsafe extern "C" fn(*mut PyObject, f64, *mut f64) -> i32>("g.S.v1:at", Convention::RaisesOut),
            prehash("g.S.v1:at#f64(O,f64)!e")
        );
        assert_eq!(
            method_id_with::<unsafe extern "C" fn(*mut PyObject) -> i32>("g.S.v1:check", Convention::Raises),
            prehash("g.S.v1:check#v(O)!e")
        );
        assert_eq!(
            method_id_with::<unsafe extern "C" fn(*mut PyObject, *mut PyObject, i64) -> *mut PyObject>("g.S.v1:make", Convention::Raises),
            prehash("g.S.v1:make#O+(O,O,i64)!e")
        );
        assert_eq!(
            method_id::<unsafe extern "C" fn(*mut PyObject, core::ffi::c_long, core::ffi::c_int) -> core::ffi::c_double>("g.S.v1:w"),
            prehash(&format!("g.S.v1:w#f64(O,i{},i32)", 8 * core::mem::size_of::<core::ffi::c_long>()))
        );
    }

    #[test]
    fn bad_conventions_panic() {
        type New = unsafe extern "C" fn(*mut PyObject) -> *mut PyObject;
        assert!(std::panic::catch_unwind(|| method_id::<New>("g.S.v1:new")).is_err());
        assert!(std::panic::catch_unwind(|| method_id::<Area>("no colon")).is_err());
        assert!(std::panic::catch_unwind(|| method_id_with::<Area>("g.S.v1:a", Convention::Raises)).is_err());
        assert!(std::panic::catch_unwind(|| method_id_with::<Area>("g.S.v1:a", Convention::RaisesOut)).is_err());
    }
}
