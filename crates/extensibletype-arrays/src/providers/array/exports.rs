//! What `Array` exports: array.v1 views (acquire/release slots) and the
//! buffer protocol, both counted in `exports` (see the lifetime rule in
//! the parent module).

#[allow(unused_imports)]
use super::*;

pub(super) fn view_flags(a: &ArrayData) -> u32 {
    let (c, f) = abi::contiguity(a.shape(), a.strides(), a.dtype.itemsize() as i64);
    abi::ALIGNED | if c { abi::C_CONTIGUOUS } else { 0 } | if f { abi::F_CONTIGUOUS } else { 0 }
}


// ---- array.v1 provider -----------------------------------------------------

/// `extensibletype.array.v1:acquire` of Array.
///
/// The success path is a leaf (no stack frame, no unwinding guard: nothing
/// on it can panic); refusals go to [`acquire_refused`], out of line.
pub(super) unsafe extern "C" fn array_acquire(obj: *mut PyObject, request: c_int, view: *mut ArrayView) -> c_int {
    // SAFETY: the interface's contract: GIL held, obj a live Array (this
    // slot is registered on the Array type only), view writable for
    // view->size bytes.
    unsafe {
        if ((*view).size as usize) < core::mem::size_of::<ArrayView>() || request & !abi::REQ_ALL != 0 {
            return acquire_refused(request, view);
        }
        let a = data(obj);
        // Array memory is writable and C-contiguous: no v1 request can
        // fail (C satisfies ANY).
        a.pin(obj);
        let v = &mut *view;
        v.version = abi::VERSION;
        v.data = a.data.cast();
        v.ndim = a.ndim;
        v.shape = a.dims;
        // dims is NULL exactly when ndim is 0: NULL strides then, no branch.
        v.strides = a.dims.wrapping_add(a.ndim as usize);
        v.flags = a.flags;
        v.dtype = a.dtype.dl();
        v.reserved = 0;
        v.device = abi::DLDevice::CPU;
        v.owner = ptr::null_mut();
        0
    }
}

/// The refusals of [`array_acquire`] (a view struct too small, unknown
/// request flags): -1 with the exception set.
///
/// # Safety
/// The acquire's contract (GIL held, `view` readable for its size field).
#[cold]
#[inline(never)]
unsafe extern "C" fn acquire_refused(request: c_int, view: *mut ArrayView) -> c_int {
    guard(-1, || {
        // SAFETY: view is readable for its size field (the contract).
        if unsafe { (*view).size as usize } < core::mem::size_of::<ArrayView>() {
            return raise(util::value_error(), "array.v1 acquire: view struct too small (size field not set?)").unwrap_or(-1);
        }
        raise(util::buffer_error(), &format!("Array: unsupported array.v1 request flags {request:#x}")).unwrap_or(-1)
    })
}

/// `extensibletype.array.v1:release` of Array.
pub(super) unsafe extern "C" fn array_release(obj: *mut PyObject, _view: *mut ArrayView) {
    // SAFETY: paired with a successful acquire on this live Array.
    unsafe { data(obj).unpin() }
}

// ---- buffer protocol ---------------------------------------------------------

pub(super) unsafe extern "C" fn array_getbuffer(obj: *mut PyObject, view: *mut Py_buffer, flags: c_int) -> c_int {
    guard(-1, || {
        // SAFETY: CPython's bf_getbuffer contract (GIL held, view writable).
        unsafe {
            if view.is_null() {
                return raise(util::value_error(), "NULL view in getbuffer").unwrap_or(-1);
            }
            let a = data(obj);
            a.pin(obj);
            let v = &mut *view;
            v.buf = a.data.cast();
            v.obj = Py_NewRef(obj);
            v.len = a.nbytes() as Py_ssize_t;
            v.itemsize = a.dtype.itemsize() as Py_ssize_t;
            v.readonly = 0;
            v.ndim = a.ndim;
            v.format = if flags & PyBUF_FORMAT != 0 { a.dtype.format() } else { ptr::null_mut() };
            // Py_ssize_t is i64 on the 64-bit targets this builds for.
            v.shape = if flags & PyBUF_ND != 0 { a.dims.cast() } else { ptr::null_mut() };
            v.strides = if flags & PyBUF_STRIDES == PyBUF_STRIDES && !a.dims.is_null() {
                a.dims.add(a.ndim as usize).cast()
            } else {
                ptr::null_mut()
            };
            v.suboffsets = ptr::null_mut();
            v.internal = ptr::null_mut();
            0
        }
    })
}

pub(super) unsafe extern "C" fn array_releasebuffer(obj: *mut PyObject, _view: *mut Py_buffer) {
    // SAFETY: paired with array_getbuffer on this live Array.
    unsafe { data(obj).unpin() }
}

const _: () = assert!(core::mem::size_of::<Py_ssize_t>() == 8, "shape/strides are shared as Py_ssize_t");
