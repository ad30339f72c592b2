//! The DLPack 1.3 C ABI (`dlpack.h`), written from the specification:
//! the managed tensors, the capsule names, the flags, and the C exchange
//! table that DLPack 1.3 puts on a type as `__dlpack_c_exchange_api__`.
//!
//! [`DLDataType`] and [`DLDevice`] are shared with `array.v1` (same layout).
//! Sizes and offsets are checked at compile time (64-bit targets).

use core::ffi::{c_char, c_int, c_void, CStr};

use super::{DL_BFLOAT, DL_BOOL, DL_COMPLEX, DL_CPU, DL_FLOAT, DL_INT, DL_OPAQUE_HANDLE, DL_UINT};

/// DLPack's `DLDataType`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct DLDataType {
    /// One of the `DL_*` type codes.
    pub code: u8,
    /// Bits per lane.
    pub bits: u8,
    /// Lanes (1 for scalars).
    pub lanes: u16,
}

impl DLDataType {
    /// `float64`.
    pub const F64: DLDataType = DLDataType::new(DL_FLOAT, 64);
    /// `float32`.
    pub const F32: DLDataType = DLDataType::new(DL_FLOAT, 32);
    /// `int64`.
    pub const I64: DLDataType = DLDataType::new(DL_INT, 64);

    /// A one-lane type.
    pub const fn new(code: u8, bits: u8) -> DLDataType {
        DLDataType { code, bits, lanes: 1 }
    }

    /// Bytes per element (bits × lanes, rounded up).
    pub const fn itemsize(self) -> usize {
        (self.bits as usize * self.lanes as usize).div_ceil(8)
    }

    /// NumPy-style name (`"float64"`, `"int8"`, `"bool"`, ...).
    pub fn name(self) -> String {
        let base = match self.code {
            DL_INT => "int",
            DL_UINT => "uint",
            DL_FLOAT => "float",
            DL_BFLOAT => "bfloat",
            DL_COMPLEX => "complex",
            DL_BOOL => return if self.lanes == 1 { "bool".into() } else { format!("bool x{}", self.lanes) },
            DL_OPAQUE_HANDLE => "opaque",
            _ => return format!("dlpack(code={}, bits={}, lanes={})", self.code, self.bits, self.lanes),
        };
        if self.lanes == 1 {
            format!("{base}{}", self.bits)
        } else {
            format!("{base}{}x{}", self.bits, self.lanes)
        }
    }
}

/// DLPack's `DLDevice`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DLDevice {
    /// `DL_CPU` for host memory.
    pub device_type: i32,
    /// Device ordinal (0 for the host).
    pub device_id: i32,
}

impl DLDevice {
    /// Host memory.
    pub const CPU: DLDevice = DLDevice { device_type: DL_CPU, device_id: 0 };
}

/// `DLPACK_MAJOR_VERSION` of the ABI implemented here.
pub const MAJOR: u32 = 1;
/// `DLPACK_MINOR_VERSION` of the ABI implemented here.
pub const MINOR: u32 = 3;

/// `DLPACK_FLAG_BITMASK_READ_ONLY`: the consumer must not write.
pub const FLAG_READ_ONLY: u64 = 1 << 0;
/// `DLPACK_FLAG_BITMASK_IS_COPIED`: the producer made a copy for this export.
pub const FLAG_IS_COPIED: u64 = 1 << 1;
/// `DLPACK_FLAG_BITMASK_IS_SUBBYTE_TYPE_PADDED`.
pub const FLAG_IS_SUBBYTE_TYPE_PADDED: u64 = 1 << 2;

/// `kDLCPU`.
pub const KDL_CPU: i32 = 1;
/// `kDLCUDA`.
pub const KDL_CUDA: i32 = 2;
/// `kDLCUDAHost`.
pub const KDL_CUDA_HOST: i32 = 3;
/// `kDLROCM`.
pub const KDL_ROCM: i32 = 10;
/// `kDLROCMHost`.
pub const KDL_ROCM_HOST: i32 = 11;
/// `kDLCUDAManaged`.
pub const KDL_CUDA_MANAGED: i32 = 13;

/// Capsule name of a legacy export (`DLManagedTensor`).
pub const NAME_LEGACY: &CStr = c"dltensor";
/// Capsule name of a versioned export (`DLManagedTensorVersioned`).
pub const NAME_VERSIONED: &CStr = c"dltensor_versioned";
/// A consumed legacy capsule.
pub const NAME_USED_LEGACY: &CStr = c"used_dltensor";
/// A consumed versioned capsule.
pub const NAME_USED_VERSIONED: &CStr = c"used_dltensor_versioned";
/// Capsule name of the exchange table (DLPack 1.3).
pub const NAME_EXCHANGE_API: &CStr = c"dlpack_exchange_api";
/// Attribute of the type holding that capsule.
pub const ATTR_EXCHANGE_API: &CStr = c"__dlpack_c_exchange_api__";
/// The attribute's name before DLPack 1.3 fixed it (PyTorch 2.9, PaddlePaddle
/// 3.2, TVM FFI 0.1.0–0.1.4): the same capsule, or the table's address as an
/// int.
pub const ATTR_EXCHANGE_API_OLD: &CStr = c"__c_dlpack_exchange_api__";

/// `DLPackVersion`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DLPackVersion {
    /// Incompatible ABI changes.
    pub major: u32,
    /// Compatible additions.
    pub minor: u32,
}

/// `DLTensor`: strides are in elements (never NULL when `ndim != 0` since
/// 1.2); data starts at `data + byte_offset`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct DLTensor {
    /// Base address (opaque handle on some devices).
    pub data: *mut c_void,
    /// Where the memory lives.
    pub device: DLDevice,
    /// Number of dimensions.
    pub ndim: i32,
    /// Element type.
    pub dtype: DLDataType,
    /// `ndim` extents (may be NULL when ndim is 0).
    pub shape: *mut i64,
    /// `ndim` strides in elements (may be NULL when ndim is 0).
    pub strides: *mut i64,
    /// Bytes from `data` to element `[0, ..., 0]`.
    pub byte_offset: u64,
}

impl DLTensor {
    /// An all-zero tensor (to be filled).
    pub const fn zeroed() -> DLTensor {
        DLTensor {
            data: core::ptr::null_mut(),
            device: DLDevice { device_type: 0, device_id: 0 },
            ndim: 0,
            dtype: DLDataType { code: 0, bits: 0, lanes: 0 },
            shape: core::ptr::null_mut(),
            strides: core::ptr::null_mut(),
            byte_offset: 0,
        }
    }
}

/// Deleter of a legacy managed tensor.
pub type LegacyDeleter = unsafe extern "C" fn(*mut DLManagedTensor);
/// Deleter of a versioned managed tensor.
pub type VersionedDeleter = unsafe extern "C" fn(*mut DLManagedTensorVersioned);

/// `DLManagedTensor` (legacy, no version or flags).
#[repr(C)]
#[derive(Debug)]
pub struct DLManagedTensor {
    /// The tensor.
    pub dl_tensor: DLTensor,
    /// Producer's context.
    pub manager_ctx: *mut c_void,
    /// Called once by the consumer (or the capsule destructor) to free.
    pub deleter: Option<LegacyDeleter>,
}

/// `DLManagedTensorVersioned`. The fields up to `flags` stay fixed across
/// ABI versions, so the deleter can always be called.
#[repr(C)]
#[derive(Debug)]
pub struct DLManagedTensorVersioned {
    /// The producer's DLPack version.
    pub version: DLPackVersion,
    /// Producer's context.
    pub manager_ctx: *mut c_void,
    /// Called once by the consumer (or the capsule destructor) to free.
    pub deleter: Option<VersionedDeleter>,
    /// `FLAG_*` bits.
    pub flags: u64,
    /// The tensor.
    pub dl_tensor: DLTensor,
}

/// `void (*SetError)(void *error_ctx, const char *kind, const char *message)`.
pub type SetErrorFn = unsafe extern "C" fn(error_ctx: *mut c_void, kind: *const c_char, message: *const c_char);
/// `DLPackManagedTensorAllocator`.
pub type ManagedTensorAllocator = unsafe extern "C" fn(
    prototype: *mut DLTensor,
    out: *mut *mut DLManagedTensorVersioned,
    error_ctx: *mut c_void,
    set_error: Option<SetErrorFn>,
) -> c_int;
/// `DLPackManagedTensorFromPyObjectNoSync`.
pub type ManagedTensorFromPyObject =
    unsafe extern "C" fn(py_object: *mut c_void, out: *mut *mut DLManagedTensorVersioned) -> c_int;
/// `DLPackManagedTensorToPyObjectNoSync` (steals `tensor`).
pub type ManagedTensorToPyObject =
    unsafe extern "C" fn(tensor: *mut DLManagedTensorVersioned, out_py_object: *mut *mut c_void) -> c_int;
/// `DLPackDLTensorFromPyObjectNoSync` (non-owning fill).
pub type DLTensorFromPyObject = unsafe extern "C" fn(py_object: *mut c_void, out: *mut DLTensor) -> c_int;
/// `DLPackCurrentWorkStream`.
pub type CurrentWorkStream =
    unsafe extern "C" fn(device_type: i32, device_id: i32, out_current_stream: *mut *mut c_void) -> c_int;

/// `DLPackExchangeAPIHeader`.
#[repr(C)]
#[derive(Debug)]
pub struct DLPackExchangeAPIHeader {
    /// The table's version (a consumer checks `major` first).
    pub version: DLPackVersion,
    /// An older table in a chain, or NULL.
    pub prev_api: *mut DLPackExchangeAPIHeader,
}

/// `DLPackExchangeAPI`: static, lives as long as the process.
#[repr(C)]
#[derive(Debug)]
pub struct DLPackExchangeAPI {
    /// Version and chain.
    pub header: DLPackExchangeAPIHeader,
    /// Not NULL.
    pub managed_tensor_allocator: Option<ManagedTensorAllocator>,
    /// Not NULL.
    pub managed_tensor_from_py_object_no_sync: Option<ManagedTensorFromPyObject>,
    /// Not NULL.
    pub managed_tensor_to_py_object_no_sync: Option<ManagedTensorToPyObject>,
    /// May be NULL.
    pub dltensor_from_py_object_no_sync: Option<DLTensorFromPyObject>,
    /// Not NULL.
    pub current_work_stream: Option<CurrentWorkStream>,
}

// SAFETY: the table is immutable after construction (function pointers and
// a NULL or static prev_api); sharing it between threads is what the
// protocol does.
unsafe impl Sync for DLPackExchangeAPI {}

const _: () = {
    use core::mem::{offset_of, size_of};
    assert!(size_of::<DLPackVersion>() == 8);
    assert!(size_of::<DLDevice>() == 8);
    assert!(size_of::<DLDataType>() == 4);
    assert!(size_of::<DLTensor>() == 48);
    assert!(offset_of!(DLTensor, device) == 8);
    assert!(offset_of!(DLTensor, ndim) == 16);
    assert!(offset_of!(DLTensor, dtype) == 20);
    assert!(offset_of!(DLTensor, shape) == 24);
    assert!(offset_of!(DLTensor, strides) == 32);
    assert!(offset_of!(DLTensor, byte_offset) == 40);
    assert!(size_of::<DLManagedTensor>() == 64);
    assert!(offset_of!(DLManagedTensor, manager_ctx) == 48);
    assert!(offset_of!(DLManagedTensor, deleter) == 56);
    assert!(size_of::<DLManagedTensorVersioned>() == 80);
    assert!(offset_of!(DLManagedTensorVersioned, manager_ctx) == 8);
    assert!(offset_of!(DLManagedTensorVersioned, deleter) == 16);
    assert!(offset_of!(DLManagedTensorVersioned, flags) == 24);
    assert!(offset_of!(DLManagedTensorVersioned, dl_tensor) == 32);
    assert!(size_of::<DLPackExchangeAPIHeader>() == 16);
    assert!(size_of::<DLPackExchangeAPI>() == 56);
    assert!(offset_of!(DLPackExchangeAPI, managed_tensor_allocator) == 16);
    assert!(offset_of!(DLPackExchangeAPI, managed_tensor_from_py_object_no_sync) == 24);
    assert!(offset_of!(DLPackExchangeAPI, managed_tensor_to_py_object_no_sync) == 32);
    assert!(offset_of!(DLPackExchangeAPI, dltensor_from_py_object_no_sync) == 40);
    assert!(offset_of!(DLPackExchangeAPI, current_work_stream) == 48);
};
