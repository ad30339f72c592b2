"""A pure-Python provider of the ``array.v1`` interface.

``CtypesArray`` keeps its elements in a ctypes array and registers its
``acquire``/``release`` implementations as ctypes callbacks in its class
body (``__cslots__``), so every consumer -- ``extensibletype.arrays.sum``,
``dot``, ``axpy``, the C example ``examples/c/array_consumer.c``, any C,
Cython or Rust code using ``extensibletype_array.h`` -- finds them on its
type like those of a compiled provider::

    >>> from python_array_provider import CtypesArray
    >>> import extensibletype.arrays as xa
    >>> a = CtypesArray([1.0, 2.0, 3.0, 4.0], shape=(2, 2))
    >>> xa.sum(a), xa.dot(a, a)
    (10.0, 30.0)
    >>> xa.axpy(2.0, a, a); a.tolist()
    [3.0, 6.0, 9.0, 12.0]

How it follows the contract (see ``include/extensibletype_array.h``):

- The memory (a ctypes array) never moves or changes size: ``resize`` is not
  offered, so no export counting is needed for safety; ``exports`` is kept
  anyway, for inspection.
- ``shape``/``strides`` point at ctypes arrays owned by the object (its
  shape is immutable), valid until release and beyond.
- The view is always writable, C-contiguous and aligned, so no request flag
  defined by version 1 can fail.
- Errors: a ctypes callback cannot leave a Python exception set for its
  caller (ctypes reports an exception escaping a callback as "unraisable"
  and makes up the return value), so ``acquire`` catches everything, prints
  the traceback, keeps the exception in ``obj.last_error`` and returns -1;
  consumers then raise ``SystemError`` ("acquire ... failed without setting
  an exception"). A provider that must fail with a proper exception belongs
  in C, Cython or Rust.
- A ctypes callback takes the GIL itself (it is called with it held, as the
  contract requires), and costs about a microsecond per call, against a few
  nanoseconds for a compiled provider.
"""

from __future__ import annotations

import ctypes
import sys
import traceback

import extensibletype as et

KEY_ACQUIRE = "extensibletype.array.v1:acquire"
KEY_RELEASE = "extensibletype.array.v1:release"

VERSION = 1
READONLY, C_CONTIGUOUS, F_CONTIGUOUS, ALIGNED, BYTESWAPPED = 0x1, 0x2, 0x4, 0x8, 0x10
REQ_ALL = 0x1 | 0x2 | 0x4
DL_INT, DL_FLOAT, DL_CPU = 0, 2, 1


class DLDataType(ctypes.Structure):
    """DLPack's DLDataType."""

    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class DLDevice(ctypes.Structure):
    """DLPack's DLDevice."""

    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class ArrayView(ctypes.Structure):
    """``ExtType_ArrayView`` (checked against the runtime's layout by the tests)."""

    _fields_ = [
        ("size", ctypes.c_uint32),
        ("version", ctypes.c_uint32),
        ("data", ctypes.c_void_p),
        ("shape", ctypes.POINTER(ctypes.c_int64)),
        ("strides", ctypes.POINTER(ctypes.c_int64)),
        ("ndim", ctypes.c_int32),
        ("flags", ctypes.c_uint32),
        ("dtype", DLDataType),
        ("reserved", ctypes.c_uint32),
        ("device", DLDevice),
        ("owner", ctypes.c_void_p),
        ("internal", ctypes.c_void_p * 2),
        ("scratch", ctypes.c_int64 * 16),
    ]


ACQUIRE = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.py_object, ctypes.c_int, ctypes.POINTER(ArrayView))
RELEASE = ctypes.CFUNCTYPE(None, ctypes.py_object, ctypes.POINTER(ArrayView))

# dtype name -> (ctypes element type, DLPack code, bits)
DTYPES = {
    "float64": (ctypes.c_double, DL_FLOAT, 64),
    "float32": (ctypes.c_float, DL_FLOAT, 32),
    "int64": (ctypes.c_int64, DL_INT, 64),
}


def _acquire(obj, request, view_ptr):
    try:
        view = view_ptr.contents
        if view.size < ctypes.sizeof(ArrayView):
            raise ValueError("array.v1 acquire: view struct too small")
        if request & ~REQ_ALL:
            raise BufferError(f"CtypesArray: unsupported request flags {request:#x}")
        ctype, code, bits = DTYPES[obj.dtype]
        view.version = VERSION
        view.data = ctypes.addressof(obj._buf)
        view.ndim = len(obj.shape)
        view.shape = obj._shape_c
        view.strides = obj._strides_c
        # Writable, C-contiguous (by construction), aligned; F-contiguous
        # too when at most one axis is longer than 1.
        flags = C_CONTIGUOUS | ALIGNED
        if sum(n > 1 for n in obj.shape) <= 1 or 0 in obj.shape:
            flags |= F_CONTIGUOUS
        view.flags = flags
        view.dtype = DLDataType(code, bits, 1)
        view.reserved = 0
        view.device = DLDevice(DL_CPU, 0)
        view.owner = None
        obj.exports += 1
        return 0
    except BaseException as exc:  # noqa: BLE001 - a callback must not raise
        traceback.print_exception(exc, file=sys.stderr)
        obj.last_error = exc
        return -1


def _release(obj, view_ptr):
    obj.exports -= 1


# Module-level references keep the callbacks alive (the runtime also keeps
# the objects registered in __cslots__ alive).
_ACQUIRE = ACQUIRE(_acquire)
_RELEASE = RELEASE(_release)


class CtypesArray(metaclass=et.ExtensibleType):
    """A C-contiguous n-d array in a ctypes buffer, providing array.v1 from Python."""

    __cslots__ = {KEY_ACQUIRE: _ACQUIRE, KEY_RELEASE: _RELEASE}

    def __init__(self, values, shape=None, dtype="float64"):
        if dtype not in DTYPES:
            raise TypeError(f"unsupported dtype {dtype!r} (supported: {', '.join(DTYPES)})")
        values = list(values)
        shape = (len(values),) if shape is None else tuple(int(n) for n in shape)
        size = 1
        for n in shape:
            size *= n
        if size != len(values):
            raise ValueError(f"{len(values)} values do not fill shape {shape}")
        ctype = DTYPES[dtype][0]
        self.dtype = dtype
        self.shape = shape
        self._buf = (ctype * max(size, 1))(*values)
        itemsize = ctypes.sizeof(ctype)
        strides, step = [], itemsize
        for n in reversed(shape):
            strides.append(step)
            step *= max(n, 1)
        self._shape_c = (ctypes.c_int64 * max(len(shape), 1))(*shape)
        self._strides_c = (ctypes.c_int64 * max(len(shape), 1))(*reversed(strides))
        self.exports = 0
        self.last_error = None

    def tolist(self):
        """The elements, flat, in C order."""
        size = 1
        for n in self.shape:
            size *= n
        return list(self._buf[:size])

    def __repr__(self):
        return f"CtypesArray(shape={self.shape}, dtype={self.dtype!r})"


if __name__ == "__main__":
    import extensibletype.arrays as xa

    a = CtypesArray([1.0, 2.0, 3.0, 4.0], shape=(2, 2))
    print(a, "sum", xa.sum(a), "dot", xa.dot(a, a))
    xa.axpy(2.0, a, a)
    print("after axpy(2, a, a):", a.tolist())
    print(xa.view_info(a))
