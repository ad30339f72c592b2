"""DLPack 1.3 both ways: Array / to_dlpack exports, register_dlpack_type
imports (C exchange table and __dlpack__ paths), bad input, deleter counts."""

from __future__ import annotations

import ctypes
import gc
import sys
from pathlib import Path

import pytest

import cbuild
import extensibletype as et
import extensibletype.arrays as xa

np = pytest.importorskip("numpy")

HERE = Path(__file__).resolve().parent
xa._unregister_providers()


@pytest.fixture(autouse=True, scope="module")
def providers_registered():
    xa._register_providers()
    yield
    xa._unregister_providers()


@pytest.fixture(scope="module")
def prod():
    if not cbuild.have_compiler():
        pytest.skip("no C compiler")
    path = cbuild.build("dlpack_producer", [HERE / "c" / "dlpack_producer.c"], cflags=cbuild.STRICT)
    m = cbuild.load(path)
    xa.register_dlpack_type(m.Tensor)
    yield m
    et.set_slots(m.Tensor, {xa.KEY_ACQUIRE: None, xa.KEY_RELEASE: None, xa._KEY_DLPACK_API: None})


# ---- ctypes mirror of the DLPack structs (layout check from Python) --------


class DLDevice(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class DLDataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class DLTensor(ctypes.Structure):
    _fields_ = [
        ("data", ctypes.c_void_p),
        ("device", DLDevice),
        ("ndim", ctypes.c_int32),
        ("dtype", DLDataType),
        ("shape", ctypes.POINTER(ctypes.c_int64)),
        ("strides", ctypes.POINTER(ctypes.c_int64)),
        ("byte_offset", ctypes.c_uint64),
    ]


class DLManagedTensorVersioned(ctypes.Structure):
    _fields_ = [
        ("major", ctypes.c_uint32),
        ("minor", ctypes.c_uint32),
        ("manager_ctx", ctypes.c_void_p),
        ("deleter", ctypes.c_void_p),
        ("flags", ctypes.c_uint64),
        ("dl_tensor", DLTensor),
    ]


class DLManagedTensor(ctypes.Structure):
    _fields_ = [("dl_tensor", DLTensor), ("manager_ctx", ctypes.c_void_p), ("deleter", ctypes.c_void_p)]


class ExchangeAPI(ctypes.Structure):
    _fields_ = [
        ("major", ctypes.c_uint32),
        ("minor", ctypes.c_uint32),
        ("prev_api", ctypes.c_void_p),
        ("managed_tensor_allocator", ctypes.c_void_p),
        ("managed_tensor_from_py_object_no_sync", ctypes.c_void_p),
        ("managed_tensor_to_py_object_no_sync", ctypes.c_void_p),
        ("dltensor_from_py_object_no_sync", ctypes.c_void_p),
        ("current_work_stream", ctypes.c_void_p),
    ]


# Private prototypes: ctypes.pythonapi.X objects are shared by all modules.
class _api:
    PyCapsule_GetPointer = ctypes.PYFUNCTYPE(ctypes.c_void_p, ctypes.py_object, ctypes.c_char_p)(
        ("PyCapsule_GetPointer", ctypes.pythonapi)
    )
    PyCapsule_GetName = ctypes.PYFUNCTYPE(ctypes.c_char_p, ctypes.py_object)(("PyCapsule_GetName", ctypes.pythonapi))


def cap_name(cap):
    return _api.PyCapsule_GetName(cap).decode()


def versioned(cap) -> DLManagedTensorVersioned:
    return DLManagedTensorVersioned.from_address(_api.PyCapsule_GetPointer(cap, b"dltensor_versioned"))


def legacy(cap) -> DLManagedTensor:
    return DLManagedTensor.from_address(_api.PyCapsule_GetPointer(cap, b"dltensor"))


# ---- export -------------------------------------------------------------------


def test_capsule_names_and_tensor_fields():
    a = xa.Array((2, 3))
    cap = a.__dlpack__()
    assert cap_name(cap) == "dltensor"
    t = legacy(cap).dl_tensor
    assert (t.ndim, t.shape[0], t.shape[1], t.strides[0], t.strides[1]) == (2, 2, 3, 3, 1)  # elements
    assert (t.dtype.code, t.dtype.bits, t.dtype.lanes, t.device.device_type) == (2, 64, 1, 1)
    assert t.data == xa.view_info(a)["data"] and t.byte_offset == 0
    cap = a.__dlpack__(max_version=(1, 3))
    m = versioned(cap)
    assert cap_name(cap) == "dltensor_versioned" and (m.major, m.minor) == xa.DLPACK_VERSION == (1, 3)
    assert m.flags == 0 and m.dl_tensor.strides[0] == 3
    assert a.__dlpack__(max_version=(1, 0)) is not None  # same major: our version
    assert cap_name(a.__dlpack__(max_version=(0, 9))) == "dltensor"  # older consumer: legacy
    assert a.__dlpack_device__() == (1, 0)
    del cap, m, t
    gc.collect()
    assert a._exports == 0


def test_zero_d_and_ndim_strides_never_null():
    z = xa.Array(())
    m = versioned(z.__dlpack__(max_version=(1, 3)))
    assert m.dl_tensor.ndim == 0
    for shape in [(4,), (2, 0, 3), (1, 1, 1, 1, 1, 1, 1, 1, 1, 2)]:
        cap = xa.Array(shape).__dlpack__(max_version=(1, 3))
        t = versioned(cap).dl_tensor
        assert t.ndim == len(shape) and bool(t.strides) and bool(t.shape)
        assert [t.shape[k] for k in range(t.ndim)] == list(shape)


def test_numpy_from_dlpack_shares_and_pins():
    a = xa.Array((3, 4), "float32")
    b = np.from_dlpack(a)
    assert b.dtype == np.float32 and b.shape == (3, 4) and b.strides == (16, 4)
    b[1, 2] = 5
    assert a[1, 2] == 5.0
    assert a._exports == 1
    with pytest.raises(BufferError):
        a.resize(2)
    del b
    gc.collect()
    assert a._exports == 0
    a.resize(2)


def test_copy_true_is_independent_and_flagged():
    a = xa.Array(5, "int64")
    a.fill(3)
    cap = a.__dlpack__(max_version=(1, 3), copy=True)
    m = versioned(cap)
    assert m.flags & xa.DLPACK_FLAG_IS_COPIED and not m.flags & xa.DLPACK_FLAG_READ_ONLY
    assert a._exports == 0  # a copy pins nothing
    a.resize(7)
    c = np.from_dlpack(xa.Array(4), copy=True)
    assert c.shape == (4,)
    b = np.from_dlpack(a, copy=True)
    b[0] = 9
    assert a[0] == 3
    assert versioned(a.__dlpack__(max_version=(1, 3), copy=False)).flags == 0


def test_to_dlpack_any_provider_readonly_and_strided():
    base = np.arange(24.0).reshape(4, 6)
    view = base[::2, ::-3]
    cap = xa.to_dlpack(view, max_version=(1, 3))
    t = versioned(cap).dl_tensor
    assert [t.strides[k] for k in range(2)] == [12, -3]
    back = np.from_dlpack(_Cap(cap))
    assert np.array_equal(back, view) and np.shares_memory(back, base)
    ro = np.arange(4.0)
    ro.flags.writeable = False
    m = versioned(xa.to_dlpack(ro, max_version=(1, 3)))
    assert m.flags & xa.DLPACK_FLAG_READ_ONLY
    with pytest.raises(BufferError, match="read-only"):
        xa.to_dlpack(ro)  # legacy capsules cannot say read-only
    assert versioned(xa.to_dlpack(ro, copy=True, max_version=(1, 3))).flags == xa.DLPACK_FLAG_IS_COPIED
    # bytes strides that are not whole elements: a copy, or BufferError for copy=False
    with pytest.raises(BufferError, match="copy=False"):
        _not_whole(copy=False)
    cap = _not_whole(copy=None, max_version=(1, 3))
    assert versioned(cap).flags == xa.DLPACK_FLAG_IS_COPIED
    assert [versioned(cap).dl_tensor.strides[0]] == [1]
    # a buffer provider (bytearray) exported as DLPack, memory shared
    ba = bytearray(b"\x01\x02\x03")
    arr = np.from_dlpack(_Cap(xa.to_dlpack(ba, max_version=(1, 3))))
    arr[0] = 7
    assert ba[0] == 7


class _Cap:
    """Hands a ready capsule to numpy.from_dlpack."""

    def __init__(self, cap):
        self.cap = cap

    def __dlpack__(self, **kw):
        return self.cap

    def __dlpack_device__(self):
        return (1, 0)


def _not_whole(**kw):
    """A view whose byte strides are not whole elements (a ctypes provider)."""
    buf = (ctypes.c_char * 64)()
    raw = np.frombuffer(buf, dtype=np.uint8)
    odd = np.lib.stride_tricks.as_strided(raw[:8].view(np.float64), shape=(3,), strides=(12,))
    return xa.to_dlpack(odd, **kw)


def test_export_bad_arguments():
    a = xa.Array(3)
    with pytest.raises(ValueError, match="stream"):
        a.__dlpack__(stream=1)
    a.__dlpack__(stream=None)
    with pytest.raises(BufferError, match="device"):
        a.__dlpack__(dl_device=(2, 0))
    a.__dlpack__(dl_device=(1, 0))
    with pytest.raises(TypeError):
        a.__dlpack__(max_version=3)
    with pytest.raises(TypeError):
        a.__dlpack__(dl_device="cpu")
    with pytest.raises(TypeError):
        a.__dlpack__(copy=1)
    with pytest.raises(TypeError):
        a.__dlpack__(bogus=1)
    with pytest.raises(TypeError):
        a.__dlpack__(1)
    with pytest.raises(TypeError, match="array.v1"):
        xa.to_dlpack(object())
    with pytest.raises(BufferError):
        xa.to_dlpack(np.zeros(3, ">f8"))  # non-native byte order
    gc.collect()
    assert a._exports == 0


def test_deleter_runs_once_consumed_or_not():
    a = xa.Array(3)
    before = sys.getrefcount(a)
    for _ in range(50):
        a.__dlpack__()
        a.__dlpack__(max_version=(1, 3))
        np.from_dlpack(a)
        xa.to_dlpack(a, copy=True)
    gc.collect()
    assert a._exports == 0 and sys.getrefcount(a) == before


def test_exchange_api_capsule_and_table(prod):
    cap = type(xa.Array(1)).__dlpack_c_exchange_api__
    assert "dlpack_exchange_api" in repr(cap)
    addr = _api.PyCapsule_GetPointer(cap, b"dlpack_exchange_api")
    assert addr == xa._impl._DLPACK_API_ADDRESS  # one static table
    assert type(xa.Array(2)).__dlpack_c_exchange_api__ is cap or _api.PyCapsule_GetPointer(
        type(xa.Array(2)).__dlpack_c_exchange_api__, b"dlpack_exchange_api") == addr
    api = ExchangeAPI.from_address(addr)
    assert (api.major, api.minor, api.prev_api) == (1, 3, None)
    assert all(getattr(api, f) for f, _ in ExchangeAPI._fields_[3:])
    # every entry exercised from C (the producer test module drives the table)
    a = xa.Array((5,))
    np.asarray(a)[...] = [1, 2, 3, 4, 5]
    ndim, shape0, code, stream_null, back, an, as1, bad_rc, err = prod.exercise(cap, a)
    assert (ndim, shape0, code, stream_null) == (1, 5, 2, 1)
    assert back is a  # to_py of our own zero-copy export: the Array itself
    assert (an, as1) == (2, 3)  # allocator: (2, 3) C-contiguous, strides in elements
    # allocator failure: SetError(kind, message) (regression: the kind's name
    # object was read after it was freed)
    assert bad_rc == -1 and err.startswith("TypeError: Array cannot hold dtype complex"), err
    gc.collect()
    assert a._exports == 0


def test_to_py_of_a_foreign_tensor_copies(prod):
    t = prod.Tensor(4)
    cap = type(xa.Array(1)).__dlpack_c_exchange_api__
    made, deleted = prod.made(), prod.deleted()
    # the producer's own table round trip first (its to_py)
    r = prod.exercise(type(t).__dlpack_c_exchange_api__, t)
    assert r[0] == 1 and r[1] == 4
    del r
    gc.collect()
    assert prod.made() - made == prod.deleted() - deleted
    del cap


# ---- import -------------------------------------------------------------------


def test_register_c_path_pins_until_release(prod):
    t = prod.Tensor(6)
    assert xa.register_dlpack_type(prod.Tensor) == "c"
    made, deleted = prod.made(), prod.deleted()
    info = xa.view_info(t)
    assert info["shape"] == (6,) and info["strides"] == (8,) and info["device"] == (1, 0)
    assert xa.sum(t) == 15.0 and xa.dot(t, t) == sum(i * i for i in range(6))
    y = np.zeros(6)
    xa.axpy(2.0, t, y)
    assert list(y) == [2.0 * i for i in range(6)]
    xa.axpy(1.0, y, t)  # writable view of the tensor
    assert t.get(1) == 3.0
    # view_info, sum, dot (two views), two axpy: six tensors, six deleted
    assert prod.made() - made == 6 and prod.deleted() - deleted == 6


def test_register_python_path_numpy_and_wrapper(prod):
    class NumpyDL:
        def __init__(self, a):
            self.a = a

        def __dlpack__(self, **kw):
            return self.a.__dlpack__(**kw)

        def __dlpack_device__(self):
            return self.a.__dlpack_device__()

    assert xa.register_dlpack_type(NumpyDL) == "python"
    base = np.arange(12.0).reshape(3, 4)
    w = NumpyDL(base[:, ::2])
    info = xa.view_info(w)
    assert info["strides"] == (32, 16) and info["shape"] == (3, 2)
    assert xa.sum(w) == base[:, ::2].sum()
    ro = base.copy()
    ro.flags.writeable = False
    assert xa.view_info(NumpyDL(ro))["readonly"]
    with pytest.raises(BufferError, match="read-only"):
        xa.axpy(1.0, w, NumpyDL(ro))

    class TensorDL:  # the C producer through __dlpack__ only
        def __init__(self, t):
            self.t = t

        def __dlpack__(self, **kw):
            return self.t.__dlpack__(**kw)

    xa.register_dlpack_type(TensorDL)
    made, deleted = prod.made(), prod.deleted()
    assert xa.sum(TensorDL(prod.Tensor(4))) == 6.0
    assert xa.sum(TensorDL(prod.Tensor(4, legacy=1))) == 6.0
    assert xa.view_info(TensorDL(prod.Tensor(2, readonly=1)))["readonly"]
    assert prod.made() - made == 3 == prod.deleted() - deleted
    for tp in (NumpyDL, TensorDL):
        et.set_slots(tp, {xa.KEY_ACQUIRE: None, xa.KEY_RELEASE: None})


def test_register_numpy_ndarray_itself():
    """np.ndarray through its own __dlpack__ (then the direct adapter back)."""
    try:
        assert xa.register_dlpack_type(np.ndarray) == "python"
        a = np.arange(10.0)[::-2]
        assert xa.view_info(a)["strides"] == (-16,)
        assert xa.sum(a) == a.sum()
    finally:
        xa._register_numpy()
    assert xa.NUMPY_ADAPTER in ("direct", "buffer")


def test_import_bad_input_errors_and_no_leaks(prod):
    class TensorDL:
        def __init__(self, t):
            self.t = t

        def __dlpack__(self, **kw):
            return self.t.__dlpack__(**kw)

    xa.register_dlpack_type(TensorDL)
    made, deleted = prod.made(), prod.deleted()
    with pytest.raises(ValueError, match="must be named"):
        xa.sum(TensorDL(prod.Tensor(3, capsule_name="wrong")))
    with pytest.raises(ValueError, match="already consumed"):
        xa.sum(TensorDL(prod.Tensor(3, capsule_name="used_dltensor_versioned")))
    with pytest.raises(BufferError, match="major version 2"):
        xa.sum(TensorDL(prod.Tensor(3, major=2)))
    with pytest.raises(BufferError, match="major version 2"):
        xa.sum(prod.Tensor(3, major=2))  # the C path too
    with pytest.raises(TypeError, match="host memory"):
        xa.sum(prod.Tensor(3, device_type=2))  # a (fake) CUDA tensor
    assert xa.view_info(prod.Tensor(3, device_type=2))["device"] == (2, 0)
    with pytest.raises(BufferError, match="read-only"):
        xa.axpy(1.0, np.zeros(3), prod.Tensor(3, readonly=1))
    gc.collect()
    assert prod.made() - made == prod.deleted() - deleted == 7

    class NotDL:
        pass

    with pytest.raises(TypeError, match="neither"):
        xa.register_dlpack_type(NotDL)
    with pytest.raises(TypeError):
        xa.register_dlpack_type(3)

    class WrongCap:
        __dlpack_c_exchange_api__ = xa.to_dlpack(xa.Array(1))

        def __dlpack__(self):
            raise AssertionError

    with pytest.raises(ValueError):
        xa.register_dlpack_type(WrongCap)
    et.set_slots(TensorDL, {xa.KEY_ACQUIRE: None, xa.KEY_RELEASE: None})


def test_deleters_run_with_no_exception_set_on_every_path(prod):
    """A deleter running Python code (the C producer calls on_delete) on the
    import path (an owning view refused: our BufferError is pending) and the
    export path (to_dlpack of a Tensor, capsule dropped while an exception
    is being handled): it runs with no exception set (else its call fails
    with SystemError); one it raises is reported as unraisable and ours
    reaches the consumer."""
    calls, unraisable = [], []

    def boom():
        calls.append("boom")
        raise KeyError("the deleter's own error")

    old_hook, sys.unraisablehook = sys.unraisablehook, unraisable.append
    try:
        t = prod.Tensor(3, readonly=1, on_delete=lambda: calls.append("ok"))
        with pytest.raises(BufferError, match="read-only"):  # import: owning path, refused
            xa.axpy(1.0, np.zeros(3), t)
        assert calls == ["ok"] and unraisable == []
        t = prod.Tensor(3, readonly=1, on_delete=boom)
        with pytest.raises(BufferError, match="read-only"):
            xa.axpy(1.0, np.zeros(3), t)
        assert calls[-1] == "boom" and [type(u.exc_value) for u in unraisable] == [KeyError]
        del unraisable[:], calls[:]
        t = prod.Tensor(3, on_delete=lambda: calls.append("ok"))
        cap = xa.to_dlpack(t, max_version=(1, 3))  # export: holds the producer's managed tensor
        try:
            raise LookupError("pending while the capsule dies")
        except LookupError:
            del cap  # destructor -> our deleter -> release -> the producer's deleter
        assert calls == ["ok"] and unraisable == []
    finally:
        sys.unraisablehook = old_hook
    gc.collect()


def test_producer_exception_reaches_the_consumer(prod):
    """The producer's own exception (its managed export, its __dlpack__)
    reaches the consumer: unchanged or chained, never a SystemError."""

    def chain(exc):
        out = []
        while exc is not None and exc not in out:
            out.append(exc)
            exc = exc.__cause__ or exc.__context__
        return out

    t = prod.Tensor(3, fail=ValueError)
    for call in (
        lambda: xa.sum(t),  # a read-only view
        lambda: xa.axpy(1.0, np.zeros(3), t),  # a writable view
        lambda: xa.to_dlpack(t),  # an export
    ):
        with pytest.raises(ValueError) as e:
            call()
        assert any("producer refuses (managed)" in str(x) for x in chain(e.value)), chain(e.value)
        assert not any(isinstance(x, SystemError) for x in chain(e.value))

    class Picky:  # rejects max_version, then fails on the retry too
        def __dlpack__(self, **kw):
            if kw:
                raise TypeError("no max_version here")
            raise ValueError("no data either")

    assert xa.register_dlpack_type(Picky) == "python"
    try:
        with pytest.raises(ValueError) as e:
            xa.sum(Picky())
        found = chain(e.value)
        assert any(str(x) == "no data either" for x in found)
        assert any(isinstance(x, TypeError) and str(x) == "no max_version here" for x in found)  # kept as context
    finally:
        et.set_slots(Picky, {xa.KEY_ACQUIRE: None, xa.KEY_RELEASE: None})


def test_array_round_trip_through_c_path_is_pinned(prod):
    """Our Array exported through the C producer's consumer side: a Tensor
    provider and the Array's own export pins."""
    a = xa.Array(4)
    cap = a.__dlpack__(max_version=(1, 3))
    assert a._exports == 1
    with pytest.raises(BufferError):
        a.resize(1)
    del cap
    assert a._exports == 0


def test_torch_when_importable():
    try:
        import torch  # noqa: F401
    except Exception as e:  # ImportError, or missing CUDA libraries at import
        pytest.skip(f"torch not importable ({type(e).__name__}): PyPI's torch wheel needs several CUDA library packages to import")
    import torch

    assert xa.register_dlpack_type(torch.Tensor) in ("c", "python")
    t = torch.arange(6, dtype=torch.float64)
    assert xa.sum(t) == 15.0
    back = torch.from_dlpack(xa.Array(3))
    assert back.shape == (3,)
    et.set_slots(torch.Tensor, {xa.KEY_ACQUIRE: None, xa.KEY_RELEASE: None, xa._KEY_DLPACK_API: None})


def test_exports_race_with_resize():
    """Threads export and drop capsules while one resizes: every resize
    either succeeds with no export alive or raises BufferError; at the end
    nothing is pinned (free-threaded builds: lock-free pins vs the CAS)."""
    import threading

    a = xa.Array(64)
    stop = threading.Event()
    errors = []

    def exporter():
        try:
            while not stop.is_set():
                cap = a.__dlpack__(max_version=(1, 3))
                t = versioned(cap).dl_tensor
                assert t.ndim == 1 and t.shape[0] in (64, 65)
                del cap, t
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=exporter) for _ in range(3)]
    for t in threads:
        t.start()
    ok = refused = 0
    for i in range(300):
        try:
            a.resize(64 + i % 2)
            ok += 1
        except BufferError:
            refused += 1
    stop.set()
    for t in threads:
        t.join()
    assert not errors
    gc.collect()
    assert a._exports == 0
    a.resize(3)
