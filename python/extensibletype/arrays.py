"""Duck-typed arrays over extensibletype slots: the ``array.v1`` interface.

Any type can export a strided n-d view of its memory to compiled code by
registering two slots, ``"extensibletype.array.v1:acquire"`` and
``"extensibletype.array.v1:release"`` (C: ``include/extensibletype_array.h``;
Rust: ``extensibletype::arrays::abi``). Consumers find them on any object's
type through the slot table -- no ``isinstance`` checks, no attribute lookups.

Importing this module registers the providers that need registering:

- :class:`Array` -- a Rust n-d array (float64, float32, int64), also a
  buffer-protocol exporter; ``resize`` raises ``BufferError`` while a view is
  exported;
- ``numpy.ndarray`` (if NumPy is importable) -- an adapter that reads NumPy
  2.x's struct directly, after checking the struct layout against the
  installed NumPy on probe arrays; with NumPy < 2, or if that check fails, the
  buffer-protocol adapter instead (:data:`NUMPY_ADAPTER` says which); NumPy
  scalars (``numpy.generic``) through the buffer-protocol adapter;
- ``bytearray``, ``bytes``, ``memoryview``, ``array.array`` -- the generic
  buffer-protocol adapter (:func:`register_buffer_type` adds more types).

Consumers, generic over every provider and any strides:
:func:`sum`, :func:`dot`, :func:`axpy` (``y += a * x``), :func:`view_info`.

DLPack 1.3, both ways: :class:`Array` implements ``__dlpack__`` /
``__dlpack_device__`` and its type carries ``__dlpack_c_exchange_api__``;
:func:`to_dlpack` exports any array.v1 provider as a DLPack capsule.
Any DLPack exporter (a type with ``__dlpack_c_exchange_api__``, the older
``__c_dlpack_exchange_api__``, or ``__dlpack__``) is an array.v1 provider
without registration: its type is adopted on its first use by a consumer
(these functions, ``ExtType_ArrayGetView`` in C, ``with_view`` in Rust);
:func:`register_dlpack_type` adopts a type up front.

>>> import extensibletype.arrays as xa
>>> a = xa.Array((2, 3)); a.fill(1.5)
>>> import array; xa.sum(a), xa.sum(array.array("q", [1, 2]))
(9.0, 3)
"""


import array as _array_module

from . import _core

_impl = _core._arrays

Array = _impl.Array
sum = _impl.sum  # noqa: A001 - the interface's name
dot = _impl.dot
axpy = _impl.axpy
view_info = _impl.view_info
to_dlpack = _impl.to_dlpack
# The miss path of ExtType_ArrayGetView (include/extensibletype_array.h)
# calls this.
_adopt = _impl._adopt

# DLPack 1.3; the flags are DLPack's DLPACK_FLAG_BITMASK_READ_ONLY / _IS_COPIED.
DLPACK_VERSION = (_impl.DLPACK_MAJOR, _impl.DLPACK_MINOR)
DLPACK_FLAG_READ_ONLY = _impl.DLPACK_FLAG_READ_ONLY
DLPACK_FLAG_IS_COPIED = _impl.DLPACK_FLAG_IS_COPIED
#: Private slot key under which the C path keeps a type's exchange table.
_KEY_DLPACK_API = "extensibletype.arrays.dlpack:exchange_api"

KEY_ACQUIRE = _impl.KEY_ACQUIRE
KEY_RELEASE = _impl.KEY_RELEASE
ID_ACQUIRE = _impl.ID_ACQUIRE
ID_RELEASE = _impl.ID_RELEASE
VERSION = _impl.VERSION
READONLY = _impl.READONLY
C_CONTIGUOUS = _impl.C_CONTIGUOUS
F_CONTIGUOUS = _impl.F_CONTIGUOUS
ALIGNED = _impl.ALIGNED
BYTESWAPPED = _impl.BYTESWAPPED
REQ_WRITABLE = _impl.REQ_WRITABLE
REQ_C_CONTIGUOUS = _impl.REQ_C_CONTIGUOUS
REQ_ANY_CONTIGUOUS = _impl.REQ_ANY_CONTIGUOUS
VIEW_SIZE = _impl.VIEW_SIZE
VIEW_LAYOUT = dict(_impl.VIEW_LAYOUT)

#: How ``numpy.ndarray`` provides array.v1: ``"direct"`` (struct mirror,
#: verified), ``"buffer"`` (buffer-protocol fallback) or ``None`` (no NumPy).
NUMPY_ADAPTER: str | None = None
#: Why the direct adapter was not used (``None`` when it is).
NUMPY_FALLBACK_REASON: str | None = None

__all__ = [
    "Array",
    "axpy",
    "dot",
    "register_buffer_type",
    "register_dlpack_type",
    "to_dlpack",
    "sum",
    "view_info",
    "KEY_ACQUIRE",
    "KEY_RELEASE",
    "NUMPY_ADAPTER",
]

#: Types this module registered array.v1 slots on (foreign registry).
_REGISTERED: list = []


def register_buffer_type(tp: type) -> None:
    """Provide array.v1 on ``tp`` (a type implementing the buffer protocol)
    through the generic buffer-protocol adapter; subclasses inherit it."""
    _impl.register_buffer_type(tp)
    if tp not in _REGISTERED:
        _REGISTERED.append(tp)


def register_dlpack_type(tp: type) -> str:
    """Make ``tp``, a DLPack exporter type, an array.v1 provider now;
    subclasses inherit it. (Without this call a DLPack exporter type is
    adopted on its first use by a consumer; registering up front skips the
    first-use check, so a type whose export fails stays a provider.)
    Returns the path taken:

    - ``"c"``: ``tp.__dlpack_c_exchange_api__`` is a DLPack 1.x exchange
      table (a PyCapsule named ``"dlpack_exchange_api"``); each view holds a
      tensor from ``managed_tensor_from_py_object_no_sync`` (so the memory
      stays pinned) until release, which calls its deleter;
    - ``"python"``: each view calls ``obj.__dlpack__(max_version=(1, 3))``
      (``obj.__dlpack__()`` if that raises TypeError) and consumes the capsule;
    - ``"subclasses"``: ``tp`` exposes no DLPack itself but is an abstract
      base (an ``abc.ABCMeta`` instance, like ``jax.Array``) or has
      subclasses: its current subclasses that expose DLPack are adopted now,
      later and ``register``-ed (virtual) ones when first met.

    The older ``__c_dlpack_exchange_api__`` (a capsule, or the table's
    address as an int) counts as the exchange table when the DLPack 1.3 name
    is absent.

    Views report the tensor's device; CPU consumers (:func:`sum`, ...)
    raise TypeError for other devices. TypeError when ``tp`` has neither;
    ValueError when the attribute is a capsule with another name."""
    mode = _impl.register_dlpack_type(tp)
    if tp not in _REGISTERED:
        _REGISTERED.append(tp)
    return mode


def _check_numpy_layout(np) -> str | None:
    """Compare what the Rust mirror of NumPy 2.x's ``PyArrayObject_fields``
    and ``PyArray_Descr`` reads with what NumPy reports, on probe arrays
    covering offsets, negative strides, 0-d, byte order and read-only
    flags. Returns None when everything matches, else the first mismatch."""
    major = int(np.__version__.split(".")[0])
    if major < 2:
        return f"NumPy {np.__version__} < 2 (the mirror follows NumPy 2.x's structs)"
    base = np.arange(60, dtype=np.float64).reshape(3, 4, 5)
    ro = np.arange(6, dtype=np.int16)
    ro.flags.writeable = False
    probes = [
        base,
        base[1:, ::-2, 3:0:-2],
        base.T,
        np.zeros((), dtype=np.float32),
        np.zeros(7, dtype=">i4"),
        np.zeros((2, 3), dtype=np.complex128, order="F"),
        ro,
        np.zeros(3, dtype=np.uint8),
        np.zeros(2, dtype=object),
    ]
    for arr in probes:
        try:
            data, nd, shape, strides, descr, kind, char, byteorder, num, elsize, flags = _impl._numpy_fields(
                np.ndarray, arr
            )
        except Exception as e:  # layout check refused the type
            return f"{type(e).__name__}: {e}"
        dt = arr.dtype
        expect_byteorder = dt.byteorder  # '=', '|', '<' or '>' as stored
        checks = {
            "data": (data, arr.__array_interface__["data"][0]),
            "nd": (nd, arr.ndim),
            "shape": (shape, arr.shape),
            "strides": (strides, arr.strides),
            "descr": (descr, id(dt)),
            "kind": (kind, dt.kind),
            "type": (char, dt.char),
            "byteorder": (byteorder, expect_byteorder),
            "type_num": (num, dt.num),
            "elsize": (elsize, dt.itemsize),
            "writeable": (bool(flags & 0x400), arr.flags.writeable),
            "c_contiguous": (bool(flags & 0x1), arr.flags.c_contiguous),
            "f_contiguous": (bool(flags & 0x2), arr.flags.f_contiguous),
            "aligned": (bool(flags & 0x100), arr.flags.aligned),
        }
        for name, (got, want) in checks.items():
            if got != want:
                return f"field {name}: the mirror read {got!r}, NumPy says {want!r} (dtype {dt}, shape {arr.shape})"
    return None


def _register_numpy() -> None:
    global NUMPY_ADAPTER, NUMPY_FALLBACK_REASON
    try:
        import numpy as np
    except ImportError:
        return
    reason = _check_numpy_layout(np)
    NUMPY_ADAPTER = "direct" if reason is None else "buffer"
    NUMPY_FALLBACK_REASON = reason
    _impl._register_numpy(np.ndarray, NUMPY_ADAPTER)
    if np.ndarray not in _REGISTERED:
        _REGISTERED.append(np.ndarray)
    # NumPy scalars (np.float64(1.0), ...) export 0-d read-only buffers.
    register_buffer_type(np.generic)


def _register_providers() -> None:
    """Register the adapters on the types we do not own (done at import)."""
    for tp in (bytearray, bytes, memoryview, _array_module.array):
        register_buffer_type(tp)
    _register_numpy()


def _unregister_providers() -> None:
    """Remove every array.v1 slot this module put on foreign types (so that
    a test suite can leave the foreign registry as it found it)."""
    while _REGISTERED:
        _core.set_slots(_REGISTERED.pop(), {KEY_ACQUIRE: None, KEY_RELEASE: None, _KEY_DLPACK_API: None})
    _impl._forget_adopted()  # types adopted on a miss, abstract bases, refusals


_register_providers()
