//! DLPack decisions made in safe code before any pointer work. Export:
//! [`plan_export`] checks a view against a [`Request`] and says whether the
//! export shares the memory or copies it, which tensor (versioned or
//! legacy) and which flags; [`c_strides`] and [`element_strides`] lay out
//! the tensor's strides. Import: [`check_tensor`] says whether a producer's
//! tensor header can be viewed. No Python: unit-tested with plain views and
//! tensors.

use crate::abi::{self, ArrayView, DLDataType, DLDevice};
use crate::dlpack_abi::{DLTensor, FLAG_IS_COPIED, FLAG_READ_ONLY, KDL_CPU, MAJOR};

/// What `__dlpack__` / `to_dlpack` were asked for.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Request {
    /// `None`: legacy capsule; `Some`: the consumer's max version.
    pub max_version: Option<(u32, u32)>,
    /// Requested device (`None`: the array's own).
    pub dl_device: Option<DLDevice>,
    /// `Some(true)`: must copy; `Some(false)`: must not; `None`: if needed.
    pub copy: Option<bool>,
    /// The consumer passed a stream other than None.
    pub stream_given: bool,
}

/// How to export an acquired view ([`plan_export`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Plan {
    /// Hand out a `DLManagedTensorVersioned` (else a legacy `DLManagedTensor`).
    pub versioned: bool,
    /// Copy the elements in C order (`copy=True`, or strides that are not
    /// whole elements) instead of sharing the view's memory.
    pub copy: bool,
    /// Bytes per element (> 0).
    pub itemsize: i64,
    /// The tensor's DLPack flags (`FLAG_IS_COPIED` or `FLAG_READ_ONLY`).
    pub flags: u64,
}

/// Why a view cannot be exported as asked ([`plan_export`]); the caller
/// raises it with the exporter's type name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ExportError {
    /// A stream was given for a CPU array.
    StreamOnCpu,
    /// A stream was given for a device array: no synchronisation here.
    Stream {
        /// The array's DLPack device type.
        device_type: i32,
    },
    /// `dl_device` names another device than the array's.
    Device {
        /// The requested device.
        want: DLDevice,
        /// The array's device.
        have: DLDevice,
    },
    /// Non-native byte order.
    ByteSwapped,
    /// Elements that are not whole bytes (or zero-sized).
    NotWholeBytes(DLDataType),
    /// Strides that are not whole elements, with `copy=False`.
    CopyForbidden,
    /// A copy was needed of a non-CPU array.
    CopyNotCpu,
    /// A read-only array asked for as a legacy (writable) tensor.
    ReadOnlyLegacy,
}

impl ExportError {
    /// `ValueError` for a stream on a CPU array, else `BufferError`.
    pub(crate) fn is_value_error(self) -> bool {
        self == ExportError::StreamOnCpu
    }

    /// The message, `name` being the exporter's type name.
    pub(crate) fn message(self, name: &str) -> String {
        match self {
            ExportError::StreamOnCpu => "__dlpack__: stream must be None for CPU arrays".into(),
            ExportError::Stream { device_type } => {
                format!("{name}: cannot synchronise streams for DLPack device {device_type}")
            }
            ExportError::Device { want, have } => format!(
                "{name}: cannot export to DLPack device ({}, {}); the array is on ({}, {})",
                want.device_type, want.device_id, have.device_type, have.device_id
            ),
            ExportError::ByteSwapped => format!("{name}: DLPack has no non-native byte order"),
            ExportError::NotWholeBytes(dtype) => format!("{name}: dtype {} has no whole-byte elements", dtype.name()),
            ExportError::CopyForbidden => {
                format!("{name}: strides are not whole elements; DLPack needs a copy (copy=False)")
            }
            ExportError::CopyNotCpu => format!("{name}: copies are made of CPU arrays only"),
            ExportError::ReadOnlyLegacy => {
                format!("{name}: a read-only array cannot be exported as a legacy \"dltensor\" (pass max_version)")
            }
        }
    }
}

/// Check `view` (acquired, not yet exported) against `req`; the first
/// failing check wins, in the order the errors are listed.
pub(crate) fn plan_export(view: &ArrayView, req: &Request) -> Result<Plan, ExportError> {
    let device = view.device;
    if req.stream_given {
        return Err(if device.device_type == KDL_CPU {
            ExportError::StreamOnCpu
        } else {
            ExportError::Stream { device_type: device.device_type }
        });
    }
    if let Some(want) = req.dl_device {
        if want != device {
            return Err(ExportError::Device { want, have: device });
        }
    }
    if view.flags & abi::BYTESWAPPED != 0 {
        return Err(ExportError::ByteSwapped);
    }
    let itemsize = view.itemsize() as i64;
    if itemsize == 0 || view.dtype.bits % 8 != 0 {
        return Err(ExportError::NotWholeBytes(view.dtype));
    }
    let whole = view.strides().iter().all(|s| s % itemsize == 0);
    let copy = match req.copy {
        Some(true) => true,
        Some(false) if !whole => return Err(ExportError::CopyForbidden),
        _ => !whole,
    };
    if copy && device.device_type != KDL_CPU {
        return Err(ExportError::CopyNotCpu);
    }
    let versioned = matches!(req.max_version, Some((major, _)) if major >= MAJOR);
    let read_only = view.flags & abi::READONLY != 0;
    if !versioned && !copy && read_only {
        return Err(ExportError::ReadOnlyLegacy);
    }
    let flags = if copy {
        FLAG_IS_COPIED
    } else if read_only {
        FLAG_READ_ONLY
    } else {
        0
    };
    Ok(Plan { versioned, copy, itemsize, flags })
}

/// C-order element strides of `shape` (extents below 1 count as 1).
pub(crate) fn c_strides(shape: &[i64]) -> Vec<i64> {
    let mut strides = vec![0i64; shape.len()];
    let mut s = 1i64;
    for k in (0..shape.len()).rev() {
        strides[k] = s;
        s *= shape[k].max(1);
    }
    strides
}

/// Byte strides as element strides (whole elements: [`plan_export`] checked).
pub(crate) fn element_strides(byte_strides: &[i64], itemsize: i64) -> impl Iterator<Item = i64> + '_ {
    byte_strides.iter().map(move |s| s / itemsize)
}

/// Can a producer's tensor be viewed through array.v1? Its `ndim` as a
/// count, or the `BufferError` message. Reads the header only (no pointer
/// is followed).
pub(crate) fn check_tensor(t: &DLTensor) -> Result<usize, String> {
    if t.ndim < 0 || t.ndim as usize > crate::consumers::nd::MAX {
        return Err(format!("DLPack tensor with {} dimensions", t.ndim));
    }
    if t.dtype.bits % 8 != 0 || t.dtype.lanes == 0 {
        return Err(format!("DLPack dtype {} is not whole bytes", t.dtype.name()));
    }
    let n = t.ndim as usize;
    if n > 0 && t.shape.is_null() {
        return Err("DLPack tensor with ndim > 0 and no shape".into());
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A CPU f64 view over no memory (the plan reads only the layout).
    fn view(shape: &mut [i64], strides: &mut [i64], flags: u32) -> ArrayView {
        let mut v = ArrayView::new();
        v.shape = shape.as_mut_ptr();
        v.strides = strides.as_mut_ptr();
        v.ndim = shape.len() as i32;
        v.dtype = DLDataType::F64;
        v.device = DLDevice::CPU;
        v.flags = flags;
        v
    }

    const LEGACY: Request = Request { max_version: None, dl_device: None, copy: None, stream_given: false };
    const V1: Request = Request { max_version: Some((1, 0)), ..LEGACY };

    #[test]
    fn shares_whole_element_strides_and_copies_the_rest() {
        let (mut shape, mut strides) = ([3i64, 4], [32i64, 8]);
        let v = view(&mut shape, &mut strides, 0);
        assert_eq!(plan_export(&v, &LEGACY), Ok(Plan { versioned: false, copy: false, itemsize: 8, flags: 0 }));
        assert_eq!(plan_export(&v, &V1), Ok(Plan { versioned: true, copy: false, itemsize: 8, flags: 0 }));
        let copied = Plan { versioned: true, copy: true, itemsize: 8, flags: FLAG_IS_COPIED };
        assert_eq!(plan_export(&v, &Request { copy: Some(true), ..V1 }), Ok(copied));
        // A byte stride of 12 is no whole number of f64s: copied unless forbidden.
        let (mut shape, mut strides) = ([3i64], [12i64]);
        let v = view(&mut shape, &mut strides, 0);
        assert_eq!(plan_export(&v, &V1), Ok(copied));
        assert_eq!(plan_export(&v, &Request { copy: Some(false), ..V1 }), Err(ExportError::CopyForbidden));
    }

    #[test]
    fn versions_and_read_only() {
        let (mut shape, mut strides) = ([2i64], [8i64]);
        let v = view(&mut shape, &mut strides, abi::READONLY);
        assert_eq!(plan_export(&v, &LEGACY), Err(ExportError::ReadOnlyLegacy));
        // Version 0.x is legacy too; a copy is writable, so legacy is fine.
        assert_eq!(plan_export(&v, &Request { max_version: Some((0, 8)), ..LEGACY }), Err(ExportError::ReadOnlyLegacy));
        let copy = plan_export(&v, &Request { copy: Some(true), ..LEGACY }).expect("a copy");
        assert_eq!((copy.versioned, copy.flags), (false, FLAG_IS_COPIED));
        let shared = plan_export(&v, &Request { max_version: Some((2, 0)), ..LEGACY }).expect("versioned");
        assert_eq!((shared.versioned, shared.copy, shared.flags), (true, false, FLAG_READ_ONLY));
    }

    #[test]
    fn refusals_in_order_with_their_messages() {
        let (mut shape, mut strides) = ([2i64], [12i64]);
        let mut v = view(&mut shape, &mut strides, abi::BYTESWAPPED | abi::READONLY);
        let gpu = DLDevice { device_type: 2, device_id: 1 };
        let err = |v: &ArrayView, r: Request| plan_export(v, &r).expect_err("refused");
        assert_eq!(err(&v, Request { stream_given: true, ..LEGACY }), ExportError::StreamOnCpu);
        assert_eq!(err(&v, Request { dl_device: Some(gpu), ..LEGACY }), ExportError::Device { want: gpu, have: DLDevice::CPU });
        assert_eq!(err(&v, Request { dl_device: Some(DLDevice::CPU), ..LEGACY }), ExportError::ByteSwapped);
        v.flags = abi::READONLY;
        v.dtype = DLDataType::new(abi::DL_BOOL, 1);
        assert_eq!(err(&v, LEGACY), ExportError::NotWholeBytes(v.dtype));
        v.dtype = DLDataType::F64;
        assert_eq!(err(&v, Request { copy: Some(false), ..LEGACY }), ExportError::CopyForbidden);
        v.device = gpu;
        assert_eq!(err(&v, Request { stream_given: true, ..LEGACY }), ExportError::Stream { device_type: 2 });
        assert_eq!(err(&v, LEGACY), ExportError::CopyNotCpu);
        strides[0] = 8;
        let v = view(&mut shape, &mut strides, abi::READONLY);
        assert_eq!(err(&v, LEGACY), ExportError::ReadOnlyLegacy);

        assert!(ExportError::StreamOnCpu.is_value_error());
        assert!(!ExportError::CopyNotCpu.is_value_error());
        assert_eq!(ExportError::StreamOnCpu.message("A"), "__dlpack__: stream must be None for CPU arrays");
        assert_eq!(
            ExportError::Device { want: gpu, have: DLDevice::CPU }.message("Array"),
            "Array: cannot export to DLPack device (2, 1); the array is on (1, 0)"
        );
        assert_eq!(ExportError::Stream { device_type: 2 }.message("T"), "T: cannot synchronise streams for DLPack device 2");
        assert_eq!(
            ExportError::ReadOnlyLegacy.message("T"),
            "T: a read-only array cannot be exported as a legacy \"dltensor\" (pass max_version)"
        );
    }

    #[test]
    fn tensors_that_import_and_those_that_do_not() {
        let mut shape = [2i64, 3];
        let mut t = DLTensor::zeroed();
        t.dtype = DLDataType::F32;
        assert_eq!(check_tensor(&t), Ok(0), "0-d, no shape needed");
        t.ndim = 2;
        assert_eq!(check_tensor(&t), Err("DLPack tensor with ndim > 0 and no shape".into()));
        t.shape = shape.as_mut_ptr();
        assert_eq!(check_tensor(&t), Ok(2));
        t.ndim = -1;
        assert_eq!(check_tensor(&t), Err("DLPack tensor with -1 dimensions".into()));
        t.ndim = crate::consumers::nd::MAX as i32 + 1;
        assert!(check_tensor(&t).is_err_and(|m| m.ends_with(" dimensions")));
        t.ndim = 2;
        t.dtype = DLDataType::new(abi::DL_BOOL, 1);
        assert!(check_tensor(&t).is_err_and(|m| m.ends_with("is not whole bytes")));
        t.dtype = DLDataType { lanes: 0, ..DLDataType::F64 };
        assert!(check_tensor(&t).is_err_and(|m| m.ends_with("is not whole bytes")));
    }

    #[test]
    fn strides_of_the_tensor() {
        assert_eq!(c_strides(&[2, 3, 4]), [12, 4, 1]);
        assert_eq!(c_strides(&[2, 0, 4]), [4, 4, 1], "an empty axis counts as 1");
        assert!(c_strides(&[]).is_empty());
        assert_eq!(element_strides(&[32, -8, 0], 8).collect::<Vec<_>>(), [4, -1, 0]);
    }
}
