//! A generic `array.v1` provider over the buffer protocol, registered on
//! types we do not own (`bytearray`, `bytes`, `memoryview`, `array.array`;
//! `extensibletype.arrays.register_buffer_type(tp)` for others).
//!
//! acquire: `PyObject_GetBuffer(obj, PyBUF_RECORDS_RO [| PyBUF_WRITABLE])`
//! into a heap `Py_buffer` (`view.internal[0]`), the struct-module format
//! mapped to a DLPack type, shape/strides converted into the view's scratch
//! (or a heap block, `internal[1]`, above 8 dimensions). The exporter's own
//! export counting (bytearray refuses to resize while exported) pins the
//! memory. release: `PyBuffer_Release`.

#[cfg(feature = "python")]
use core::ffi::{c_int, CStr};
#[cfg(feature = "python")]
use core::ptr;

#[cfg(feature = "python")]
use pyo3_ffi::*;

use crate::abi::{self, DLDataType};
#[cfg(feature = "python")]
use crate::abi::ArrayView;
#[cfg(feature = "python")]
use crate::util::{self, guard, raise, PyErrSet};

/// DLPack type and byte-swapped flag of a struct-module format string
/// with `itemsize` (None: not a single numeric element).
pub(crate) fn parse_format(format: &[u8], itemsize: usize) -> Option<(DLDataType, bool)> {
    let (native, swapped, rest) = match format.first() {
        Some(b'@') => (true, false, &format[1..]),
        Some(b'=') => (false, false, &format[1..]),
        Some(b'<') => (false, cfg!(target_endian = "big"), &format[1..]),
        Some(b'>') | Some(b'!') => (false, cfg!(target_endian = "little"), &format[1..]),
        _ => (true, false, format),
    };
    // A repeat count of 1 is allowed ("1d").
    let rest = rest.strip_prefix(b"1").unwrap_or(rest);
    use core::mem::size_of;
    use std::ffi::{c_long, c_ulong};
    let (code, size) = match rest {
        b"?" => (abi::DL_BOOL, 1),
        b"b" => (abi::DL_INT, 1),
        b"B" | b"c" => (abi::DL_UINT, 1),
        b"h" => (abi::DL_INT, 2),
        b"H" => (abi::DL_UINT, 2),
        b"i" => (abi::DL_INT, 4),
        b"I" => (abi::DL_UINT, 4),
        b"l" => (abi::DL_INT, if native { size_of::<c_long>() } else { 4 }),
        b"L" => (abi::DL_UINT, if native { size_of::<c_ulong>() } else { 4 }),
        b"q" => (abi::DL_INT, 8),
        b"Q" => (abi::DL_UINT, 8),
        b"n" if native => (abi::DL_INT, size_of::<isize>()),
        b"N" if native => (abi::DL_UINT, size_of::<usize>()),
        b"e" => (abi::DL_FLOAT, 2),
        b"f" => (abi::DL_FLOAT, 4),
        b"d" => (abi::DL_FLOAT, 8),
        b"Zf" => (abi::DL_COMPLEX, 8),
        b"Zd" => (abi::DL_COMPLEX, 16),
        _ => return None,
    };
    if size != itemsize {
        return None;
    }
    Some((DLDataType::new(code, (8 * size) as u8), swapped && size > 1))
}

#[cfg(feature = "python")]
/// Element alignment used for the ALIGNED flag.
fn alignment(dtype: DLDataType) -> i64 {
    let n = dtype.itemsize() as i64;
    let n = if dtype.code == abi::DL_COMPLEX { n / 2 } else { n };
    n.clamp(1, 8)
}

#[cfg(feature = "python")]
/// The provider's heap state (`view.internal[0]`).
struct State {
    buf: Py_buffer,
}

#[cfg(feature = "python")]
/// `extensibletype.array.v1:acquire` through the buffer protocol.
pub(crate) unsafe extern "C" fn buf_acquire(obj: *mut PyObject, request: c_int, view: *mut ArrayView) -> c_int {
    guard(-1, || {
        // SAFETY: the interface's contract (GIL held, reference to obj).
        match unsafe { acquire_impl(obj, request, &mut *view) } {
            Ok(()) => 0,
            Err(PyErrSet) => -1,
        }
    })
}

#[cfg(feature = "python")]
/// See [`buf_acquire`].
///
/// # Safety
/// GIL held; `obj` live; `v` the consumer's view.
unsafe fn acquire_impl(obj: *mut PyObject, request: c_int, v: &mut ArrayView) -> Result<(), PyErrSet> {
    if (v.size as usize) < core::mem::size_of::<ArrayView>() {
        return raise(util::value_error(), "array.v1 acquire: view struct too small (size field not set?)");
    }
    if request & !abi::REQ_ALL != 0 {
        return raise(util::buffer_error(), &format!("unsupported array.v1 request flags {request:#x}"));
    }
    let mut state = Box::new(State { buf: Py_buffer::new() });
    let mut flags = PyBUF_RECORDS_RO;
    if request & abi::REQ_WRITABLE != 0 {
        flags |= PyBUF_WRITABLE;
    }
    // SAFETY: GIL held, obj live; the buffer is released by `guard` below
    // or, once handed out in internal[0], by buf_release.
    if unsafe { PyObject_GetBuffer(obj, &mut state.buf, flags) } < 0 {
        return Err(PyErrSet);
    }
    // From here on, every error path releases the buffer.
    struct Guard(Option<Box<State>>);
    impl Drop for Guard {
        fn drop(&mut self) {
            if let Some(mut s) = self.0.take() {
                // SAFETY: obtained by PyObject_GetBuffer above; GIL held.
                unsafe { PyBuffer_Release(&mut s.buf) }
            }
        }
    }
    let mut guard = Guard(Some(state));
    let b = &guard.0.as_ref().expect("set above").buf;
    // The type's name for error messages, made only on an error.
    // SAFETY: GIL held; obj live.
    let name = || unsafe { util::type_name(obj) };
    if !b.suboffsets.is_null() {
        return raise(util::buffer_error(), &format!("{}: indirect (suboffsets) buffers are not supported", name()));
    }
    // SAFETY: a filled buffer's format is NULL or a C string it owns.
    let format: &[u8] = if b.format.is_null() { b"B" } else { unsafe { CStr::from_ptr(b.format) }.to_bytes() };
    let Some((dtype, swapped)) = parse_format(format, b.itemsize as usize) else {
        return raise(
            util::type_error(),
            &format!(
                "{}: buffer format {:?} (itemsize {}) has no DLPack equivalent",
                name(),
                String::from_utf8_lossy(format),
                b.itemsize
            ),
        );
    };
    // SAFETY: a filled buffer without suboffsets (checked above).
    let dims = unsafe { buffer_dims(b) };
    let n = dims.len() / 2;
    v.version = abi::VERSION;
    v.data = b.buf;
    v.ndim = n as i32;
    v.dtype = dtype;
    v.reserved = 0;
    v.device = abi::DLDevice::CPU;
    v.owner = ptr::null_mut();
    if n <= abi::SCRATCH / 2 {
        let (shape, strides) = dims.split_at(n);
        // SAFETY: the consumer's view stays put until release (array.v1);
        // n <= SCRATCH / 2.
        unsafe { v.store_dims_in_scratch(shape.iter().copied(), strides.iter().copied()) };
        v.internal[1] = ptr::null_mut();
    } else {
        // Freed by free_dims (a boxed slice of 2 * ndim values).
        let block = Box::into_raw(dims.into_boxed_slice()).cast::<i64>();
        v.shape = block;
        v.strides = block.wrapping_add(n);
        v.internal[1] = block.cast();
    }
    let align = alignment(dtype);
    let aligned = (b.buf as usize as i64) % align == 0
        && v.shape().iter().zip(v.strides()).all(|(&len, &st)| len <= 1 || st % align == 0);
    v.flags = if b.readonly != 0 { abi::READONLY } else { 0 }
        | if aligned { abi::ALIGNED } else { 0 }
        | if swapped { abi::BYTESWAPPED } else { 0 };
    v.set_contiguity();
    if let Err(why) = abi::check_request(request, v.flags) {
        // SAFETY: the dims block (if any) was stored above, in this view.
        unsafe { free_dims(v) };
        return raise(util::buffer_error(), &format!("{}: {why}", name()));
    }
    v.internal[0] = Box::into_raw(guard.0.take().expect("set above")).cast();
    Ok(())
}

#[cfg(feature = "python")]
/// A buffer's shape then its byte strides (`2 * ndim` values; C-contiguous
/// strides when the buffer has none).
///
/// # Safety
/// `b` is a filled buffer: `shape` NULL (only for ndim 0 with RECORDS
/// requests) or `ndim` values, `strides` NULL (C-contiguous) or `ndim` values.
unsafe fn buffer_dims(b: &Py_buffer) -> Vec<i64> {
    let n = b.ndim.max(0) as usize;
    let mut dims = vec![0i64; 2 * n];
    let mut s = b.itemsize as i64;
    for k in (0..n).rev() {
        // SAFETY: k < ndim, the caller's contract.
        dims[k] = if b.shape.is_null() { 1 } else { unsafe { *b.shape.add(k) as i64 } };
        // SAFETY: as above.
        dims[n + k] = if b.strides.is_null() { s } else { unsafe { *b.strides.add(k) as i64 } };
        s *= dims[k];
    }
    dims
}

#[cfg(feature = "python")]
/// Free the dims block of a view made by [`acquire_impl`] (if on the heap).
///
/// # Safety
/// `v.internal[1]` is NULL or the block `acquire_impl` stored for this `ndim`.
unsafe fn free_dims(v: &mut ArrayView) {
    let block = v.internal[1].cast::<i64>();
    if !block.is_null() {
        // SAFETY: made in acquire_impl as a boxed slice of 2*ndim values.
        drop(unsafe { Box::from_raw(ptr::slice_from_raw_parts_mut(block, 2 * v.ndim as usize)) });
        v.internal[1] = ptr::null_mut();
    }
}

#[cfg(feature = "python")]
/// `extensibletype.array.v1:release` through the buffer protocol.
pub(crate) unsafe extern "C" fn buf_release(_obj: *mut PyObject, view: *mut ArrayView) {
    // SAFETY: paired with a successful buf_acquire: internal[0] is its State.
    unsafe {
        let v = &mut *view;
        free_dims(v);
        let state = v.internal[0].cast::<State>();
        if !state.is_null() {
            let mut state = Box::from_raw(state);
            PyBuffer_Release(&mut state.buf);
            v.internal[0] = ptr::null_mut();
        }
    }
}
