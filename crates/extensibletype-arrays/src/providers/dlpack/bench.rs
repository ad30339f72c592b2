//! `_bench_dlpack_cost(obj, method, iterations)` (feature `hooks`): ns per
//! DLPack call from C, timed in a compiled loop (examples/arrays_demo.py).

#[allow(unused_imports)]
use super::*;
use std::hint::black_box;
use std::time::Instant;

/// What a consumer reads from a tensor (folded, so the loop keeps reads).
#[inline(always)]
pub(super) fn fold(t: &DLTensor) -> u64 {
    // SAFETY: a filled tensor with ndim >= 1 (the bench uses 1-d arrays).
    let (s0, st0) = unsafe { (*t.shape, if t.strides.is_null() { 1 } else { *t.strides }) };
    (t.data as u64 + t.byte_offset) ^ (t.ndim as u64).rotate_left(8) ^ (s0 as u64).rotate_left(16) ^ (st0 as u64).rotate_left(24)
        ^ t.dtype.code as u64
}

/// `_bench_dlpack_cost(obj, method, iterations) -> float` (ns per call).
pub(crate) unsafe extern "C" fn py_bench(_m: *mut PyObject, args: *mut *mut PyObject, nargs: Py_ssize_t) -> *mut PyObject {
    guard(ptr::null_mut(), || {
        // SAFETY: GIL held; fastcall arguments.
        ret(unsafe { bench_impl(args, nargs) })
    })
}

/// What `_bench_dlpack_cost` times (its `method` argument). Parsed once:
/// the loop dispatches on this small enum (as `_bench_view_cost` does), so
/// both benches carry the same overhead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Fill,
    FillLookup,
    Managed,
    Dunder,
}

impl Kind {
    /// The kind named `method`, or `None`.
    fn parse(method: &str) -> Option<Kind> {
        Some(match method {
            "fill" => Kind::Fill,
            "fill_lookup" => Kind::FillLookup,
            "managed" => Kind::Managed,
            "dunder" => Kind::Dunder,
            _ => return None,
        })
    }
}

/// See the body; called only from this module.
///
/// # Safety
/// The GIL is held and every pointer argument is live and valid for its type.
pub(super) unsafe fn bench_impl(args: *mut *mut PyObject, nargs: Py_ssize_t) -> Result<*mut PyObject, PyErrSet> {
    if nargs != 3 {
        return raise(util::type_error(), "_bench_dlpack_cost(obj, method, iterations)");
    }
    // SAFETY: args holds nargs (3, checked) live objects.
    let (obj, method, iters) = unsafe { (*args, *args.add(1), *args.add(2)) };
    // SAFETY: GIL held; iters is live.
    let n = unsafe { PyLong_AsLongLong(iters) };
    // SAFETY: GIL held.
    if n == -1 && unsafe { !PyErr_Occurred().is_null() } {
        return Err(PyErrSet);
    }
    let n = n.max(1) as u64;
    let method = util::str_of(method).unwrap_or_default();
    // SAFETY: obj is live.
    let tp = unsafe { Py_TYPE(obj) }.cast::<PyObject>();
    // SAFETY: GIL held; tp is live (obj's type).
    let Some(api) = (unsafe { exchange_api_of(tp) })? else {
        return raise(util::type_error(), "_bench_dlpack_cost(): the type has no __dlpack_c_exchange_api__");
    };
    // SAFETY: the exchange API table lives as long as the type (which obj keeps).
    let api = unsafe { &*api };
    // SAFETY: GIL held; the name is NUL-terminated.
    let attr = Owned::new(unsafe { PyUnicode_InternFromString(ATTR_EXCHANGE_API.as_ptr()) })?;
    let Some(kind) = Kind::parse(&method) else {
        return raise(util::value_error(), "method must be 'fill', 'fill_lookup', 'managed' or 'dunder'");
    };
    let one = |kind: Kind| -> Result<u64, PyErrSet> {
        match kind {
            // Table cached per type (as the spec allows): the fill alone.
            // SAFETY: GIL held; obj is live and of the type whose API this is.
            Kind::Fill => unsafe {
                let mut t = DLTensor::zeroed();
                if (api.dltensor_from_py_object_no_sync.expect("set"))(black_box(obj).cast(), &mut t) != 0 {
                    return Err(PyErrSet);
                }
                Ok(fold(&t))
            },
            // Type attribute + capsule pointer + fill on every call.
            // SAFETY: GIL held; obj is live; the capsule (kept by `cap`)
            // holds its type's exchange API.
            Kind::FillLookup => unsafe {
                let cap = Owned::new(PyObject_GetAttr(Py_TYPE(black_box(obj)).cast(), attr.0))?;
                let a = PyCapsule_GetPointer(cap.0, NAME_EXCHANGE_API.as_ptr()).cast::<DLPackExchangeAPI>();
                if a.is_null() {
                    return Err(PyErrSet);
                }
                let mut t = DLTensor::zeroed();
                if ((*a).dltensor_from_py_object_no_sync.expect("set"))(obj.cast(), &mut t) != 0 {
                    return Err(PyErrSet);
                }
                Ok(fold(&t))
            },
            // SAFETY: GIL held; obj is live; the tensor made is ours and
            // deleted once.
            Kind::Managed => unsafe {
                let mut mt = ptr::null_mut();
                if (api.managed_tensor_from_py_object_no_sync.expect("set"))(black_box(obj).cast(), &mut mt) != 0 {
                    return Err(PyErrSet);
                }
                let f = fold(&(*mt).dl_tensor);
                delete_versioned(mt);
                Ok(f)
            },
            // SAFETY: GIL held; obj is live; the capsule (kept by `cap`)
            // holds a versioned tensor.
            Kind::Dunder => unsafe {
                let cap = call_dunder(black_box(obj))?;
                let mt = PyCapsule_GetPointer(cap.0, NAME_VERSIONED.as_ptr()).cast::<DLManagedTensorVersioned>();
                if mt.is_null() {
                    return Err(PyErrSet);
                }
                Ok(fold(&(*mt).dl_tensor)) // the capsule's destructor deletes
            },
        }
    };
    let mut check = one(kind)?;
    let t0 = Instant::now();
    for _ in 0..n {
        check = check.wrapping_add(one(kind)?);
    }
    let ns = t0.elapsed().as_nanos() as f64 / n as f64;
    black_box(check);
    // SAFETY: GIL held.
    Ok(Owned::new(unsafe { PyFloat_FromDouble(ns) })?.into_ptr())
}

#[cfg(test)]
mod tests {
    use super::Kind;

    #[test]
    fn kinds() {
        assert_eq!(Kind::parse("fill"), Some(Kind::Fill));
        assert_eq!(Kind::parse("fill_lookup"), Some(Kind::FillLookup));
        assert_eq!(Kind::parse("managed"), Some(Kind::Managed));
        assert_eq!(Kind::parse("dunder"), Some(Kind::Dunder));
        assert_eq!(Kind::parse("Fill"), None);
        assert_eq!(Kind::parse(""), None);
    }
}
