"""Arrays without registration (docs/spec.md section 12.3): any DLPack exporter
type is adopted as an array.v1 provider on its first miss, from Python (the
kernels), C (ExtType_ArrayGetView) and Rust (with_view, test_pyo3_ext.py);
later lookups are ordinary registry hits. Also: abstract bases, refusals
remembered per type state, error messages, and deleters that run with no
exception set."""

from __future__ import annotations

import abc
import ctypes
import gc
import sys
import threading
from pathlib import Path

import pytest

import cbuild
import extensibletype as et
import extensibletype.arrays as xa

np = pytest.importorskip("numpy")

HERE = Path(__file__).resolve().parent
K = xa.KEY_ACQUIRE
ALL_KEYS = {xa.KEY_ACQUIRE: None, xa.KEY_RELEASE: None, xa._KEY_DLPACK_API: None}


@pytest.fixture(autouse=True)
def clean():
    """Each test starts and ends with no type adopted on a miss (the
    adapters on foreign types, NumPy's included, as test_dlpack.py)."""
    xa._impl._forget_adopted()
    xa._register_providers()
    yield
    xa._unregister_providers()
    gc.collect()


@pytest.fixture(scope="module")
def prod():
    if not cbuild.have_compiler():
        pytest.skip("no C compiler")
    path = cbuild.build("dlpack_producer", [HERE / "c" / "dlpack_producer.c"], cflags=cbuild.STRICT)
    m = cbuild.load(path)
    et.set_slots(m.Tensor, ALL_KEYS)  # another module may have registered it
    yield m
    et.set_slots(m.Tensor, ALL_KEYS)


@pytest.fixture(scope="module")
def consumer():
    if not cbuild.have_compiler():
        pytest.skip("no C compiler")
    return cbuild.example_extension("array_consumer")


def adopted():
    count, types = xa._impl._adopted()
    return count, types


class Wrap:
    """A DLPack exporter through __dlpack__ only (wraps a NumPy array)."""

    def __init__(self, a):
        self.a = a

    def __dlpack__(self, **kw):
        return self.a.__dlpack__(**kw)

    def __dlpack_device__(self):
        return (1, 0)


def fresh_wrap_type():
    """A new type each call: adoption is per type and process-wide."""
    return type("W", (Wrap,), {})


# ---- Python consumers ---------------------------------------------------------


def test_kernels_adopt_on_first_use_once():
    W = fresh_wrap_type()
    w = W(np.arange(5.0))
    assert et.lookup(w, K) is None  # lookups never adopt
    assert K not in et.get_slots(W)
    count0, _ = adopted()
    assert xa.sum(w) == 10.0
    assert et.lookup(w, K) is not None  # now an ordinary hit
    assert K in et.get_slots(W) and xa.KEY_RELEASE in et.get_slots(W)
    assert et.table_info(W)["kind"] == "foreign"
    count1, types = adopted()
    assert count1 == count0 + 1 and W in types
    x = np.arange(4.0)
    assert xa.dot(W(x), W(x)) == 14.0
    y = np.zeros(4)
    xa.axpy(2.0, W(x), y)
    assert list(y) == [0.0, 2.0, 4.0, 6.0]
    assert xa.view_info(W(x[::-2]))["strides"] == (-16,)
    assert adopted()[0] == count1  # once
    # subclasses inherit the adoption (no second one)
    S = type("S", (W,), {})
    assert xa.sum(S(x)) == 6.0 and adopted()[0] == count1


def test_register_up_front_still_works_and_is_not_counted():
    W = fresh_wrap_type()
    count0, _ = adopted()
    assert xa.register_dlpack_type(W) == "python"
    assert xa.sum(W(np.arange(3.0))) == 3.0
    assert adopted()[0] == count0
    et.set_slots(W, ALL_KEYS)


def test_exchange_table_path_without_registration(prod):
    made, deleted = prod.made(), prod.deleted()
    t = prod.Tensor(6)
    assert et.lookup(t, K) is None
    assert xa.sum(t) == 15.0
    slots = et.get_slots(prod.Tensor)
    assert K in slots and xa._KEY_DLPACK_API in slots  # the C path, not __dlpack__
    assert xa.dot(t, t) == sum(i * i for i in range(6))
    gc.collect()
    assert prod.made() - made == prod.deleted() - deleted == 3
    et.set_slots(prod.Tensor, ALL_KEYS)


class _HideNewName(type):
    """A metaclass hiding the DLPack 1.3 name (an older producer)."""

    @property
    def __dlpack_c_exchange_api__(cls):
        raise AttributeError("__dlpack_c_exchange_api__")


@pytest.mark.parametrize("as_int", [False, True])
def test_older_exchange_attribute(prod, as_int):
    cap = prod.Tensor.__dlpack_c_exchange_api__
    getp = ctypes.PYFUNCTYPE(ctypes.c_void_p, ctypes.py_object, ctypes.c_char_p)(("PyCapsule_GetPointer", ctypes.pythonapi))
    value = getp(cap, b"dlpack_exchange_api") if as_int else cap
    Old = _HideNewName("Old", (prod.Tensor,), {"__c_dlpack_exchange_api__": value})
    with pytest.raises(AttributeError):
        Old.__dlpack_c_exchange_api__
    assert xa.sum(Old(4)) == 6.0
    assert xa._KEY_DLPACK_API in et.get_slots(Old)
    et.set_slots(Old, ALL_KEYS)
    Old2 = _HideNewName("Old2", (prod.Tensor,), {"__c_dlpack_exchange_api__": value})
    assert xa.register_dlpack_type(Old2) == "c"
    et.set_slots(Old2, ALL_KEYS)


def test_non_provider_message_names_dlpack():
    class Plain:
        pass

    for obj in (object(), Plain(), 3):
        with pytest.raises(TypeError) as e:
            xa.sum(obj)
        msg = str(e.value)
        assert K in msg and "not an array provider" in msg
        assert "__dlpack__" in msg and "__dlpack_c_exchange_api__" in msg
    with pytest.raises(TypeError, match="exposes no DLPack"):
        xa.to_dlpack(Plain())


def test_refusal_is_remembered_until_the_type_changes():
    class Plain:
        pass

    for _ in range(3):
        with pytest.raises(TypeError, match="exposes no DLPack"):
            xa.sum(Plain())
    Plain.__dlpack__ = lambda self, **kw: np.arange(3.0).__dlpack__(**kw)  # the type changes
    assert xa.sum(Plain()) == 3.0


def test_dlpack_that_raises_is_not_adopted():
    calls = []

    class Bad:
        def __dlpack__(self, **kw):
            calls.append(1)
            raise ValueError("no export today")

    with pytest.raises(ValueError) as e:
        xa.sum(Bad())
    cause = e.value.__cause__ or e.value  # the kernel prefixes "sum(): x: "
    assert "no export today" in str(e.value)
    assert any("not adopted" in n for n in getattr(cause, "__notes__", []))
    assert et.lookup(Bad(), K) is None and K not in et.get_slots(Bad)
    assert Bad not in adopted()[1]
    # remembered: no second call of __dlpack__, a TypeError naming why
    with pytest.raises(TypeError, match="failed on first use") as e:
        xa.sum(Bad())
    assert "no export today" in str(e.value)
    assert len(calls) == 1
    # the type changes: adoption is tried again
    Bad.__dlpack__ = lambda self, **kw: np.arange(4.0).__dlpack__(**kw)
    assert xa.sum(Bad()) == 6.0
    assert et.lookup(Bad(), K) is not None


def test_dlpack_returning_garbage_is_not_adopted():
    class Garbage:
        def __dlpack__(self, **kw):
            return 42

    with pytest.raises(TypeError, match="not a capsule"):
        xa.sum(Garbage())
    assert et.lookup(Garbage(), K) is None
    with pytest.raises(TypeError, match="failed on first use"):
        xa.sum(Garbage())


def test_refused_request_still_adopts():
    """A read-only export asked for a writable view: the export worked."""
    W = fresh_wrap_type()
    ro = np.arange(3.0)
    ro.flags.writeable = False
    with pytest.raises(BufferError, match="read-only"):
        xa.axpy(1.0, np.zeros(3), W(ro))
    assert et.lookup(W(ro), K) is not None
    assert xa.sum(W(ro)) == 3.0


def test_major_version_2_table_without_dunder_is_refused(prod):
    class Table2:
        pass

    # a (fake) exchange table of major version 2
    buf = (ctypes.c_uint32 * 16)(2, 0)
    cap = ctypes.PYFUNCTYPE(ctypes.py_object, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p)(
        ("PyCapsule_New", ctypes.pythonapi)
    )(ctypes.addressof(buf), b"dlpack_exchange_api", None)
    Table2.__dlpack_c_exchange_api__ = cap
    with pytest.raises(TypeError, match="DLPack 2.0 exchange table"):
        xa.sum(Table2())
    assert et.lookup(Table2(), K) is None
    with pytest.raises(TypeError, match="cannot use"):
        xa.register_dlpack_type(Table2)


# ---- abstract bases (jax.Array-style) -----------------------------------------


def test_abstract_base_adopts_concrete_subclasses():
    class ArrayBase(abc.ABC):  # like jax.Array: no __dlpack__ of its own
        pass

    class Real(ArrayBase, Wrap):  # a real subclass that exists now
        pass

    class Impl:  # a virtual one, like jaxlib's ArrayImpl
        def __init__(self, a):
            self.a = a

        def __dlpack__(self, **kw):
            return self.a.__dlpack__(**kw)

    ArrayBase.register(Impl)
    assert xa.register_dlpack_type(ArrayBase) == "subclasses"
    assert K in et.get_slots(Real)  # adopted up front
    assert K not in et.get_slots(ArrayBase)
    assert xa.sum(Impl(np.arange(4.0))) == 6.0  # adopted when met
    assert K in et.get_slots(Impl)
    assert xa.sum(Real(np.arange(3.0))) == 3.0
    et.set_slots(Real, ALL_KEYS)

    class NotAbstract:
        pass

    with pytest.raises(TypeError, match="neither"):
        xa.register_dlpack_type(NotAbstract)


# ---- C and the thread-state rule --------------------------------------------------


def test_c_consumer_adopts(consumer, prod):
    W = fresh_wrap_type()
    assert consumer.sum(W(np.arange(5.0))) == 10.0
    assert et.lookup(W(np.arange(1.0)), K) is not None
    assert consumer.sum(prod.Tensor(4)) == 6.0  # the exchange-table path
    et.set_slots(prod.Tensor, ALL_KEYS)
    with pytest.raises(TypeError) as e:
        consumer.sum(object())
    assert "not an array provider" in str(e.value) and "__dlpack__" in str(e.value)

    class Bad:
        def __dlpack__(self, **kw):
            raise ValueError("nope")

    with pytest.raises(ValueError, match="nope") as e:
        consumer.sum(Bad())
    assert any("not adopted" in n for n in getattr(e.value, "__notes__", []))


def test_lookup_without_thread_state_just_misses():
    """find_slow called with the GIL released (ctypes releases it): the
    lookup answers NULL and adopts nothing."""
    W = fresh_wrap_type()
    get = ctypes.PYFUNCTYPE(ctypes.c_void_p, ctypes.py_object, ctypes.c_char_p)(("PyCapsule_GetPointer", ctypes.pythonapi))
    api = get(et._core._C_API if hasattr(et._core, "_C_API") else et._C_API, b"extensibletype._C_API")
    find_slow = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint64)(
        ctypes.c_void_p.from_address(api + 24).value
    )
    results = []
    t = threading.Thread(target=lambda: results.append(find_slow(id(W), xa.ID_ACQUIRE)))
    t.start()
    t.join()
    assert results == [None]
    assert et.lookup(W(np.arange(1.0)), K) is None and K not in et.get_slots(W)


# ---- deleters run with no exception set -----------------------------------------


class _DLTensor(ctypes.Structure):
    _fields_ = [
        ("data", ctypes.c_void_p),
        ("device_type", ctypes.c_int32),
        ("device_id", ctypes.c_int32),
        ("ndim", ctypes.c_int32),
        ("code", ctypes.c_uint8),
        ("bits", ctypes.c_uint8),
        ("lanes", ctypes.c_uint16),
        ("shape", ctypes.POINTER(ctypes.c_int64)),
        ("strides", ctypes.POINTER(ctypes.c_int64)),
        ("byte_offset", ctypes.c_uint64),
    ]


class _Versioned(ctypes.Structure):
    _fields_ = [
        ("major", ctypes.c_uint32),
        ("minor", ctypes.c_uint32),
        ("manager_ctx", ctypes.c_void_p),
        ("deleter", ctypes.c_void_p),
        ("flags", ctypes.c_uint64),
        ("dl_tensor", _DLTensor),
    ]


_DELETER = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
_capsule_new = ctypes.PYFUNCTYPE(ctypes.py_object, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p)(
    ("PyCapsule_New", ctypes.pythonapi)
)


class PyDeleterProducer:
    """A read-only float64 tensor whose deleter is a Python function."""

    deleted = 0

    def __init__(self, n):
        self.data = (ctypes.c_double * n)(*range(n))
        self.shape = (ctypes.c_int64 * 1)(n)
        self.strides = (ctypes.c_int64 * 1)(1)

        def deleter(_addr):
            # Python code: with an exception set this would fail
            # ("SystemError: ... returned a result with an exception set").
            type(self).deleted += int("1")

        self._deleter = _DELETER(deleter)
        t = _DLTensor(ctypes.addressof(self.data), 1, 0, 1, 2, 64, 1, self.shape, self.strides, 0)
        self.mt = _Versioned(1, 3, None, ctypes.cast(self._deleter, ctypes.c_void_p).value, 1, t)  # READ_ONLY

    def __dlpack__(self, **kw):
        return _capsule_new(ctypes.addressof(self.mt), b"dltensor_versioned", None)


def test_deleter_in_python_keeps_our_exception(consumer):
    P = type("P", (PyDeleterProducer,), {"deleted": 0})
    assert xa.register_dlpack_type(P) == "python"
    p = P(3)
    assert xa.sum(p) == 3.0 and P.deleted == 1
    unraisable = []
    old_hook, sys.unraisablehook = sys.unraisablehook, unraisable.append
    try:
        with pytest.raises(BufferError, match="read-only"):  # writable view of a READ_ONLY tensor
            xa.axpy(1.0, np.zeros(3), p)
    finally:
        sys.unraisablehook = old_hook
    assert P.deleted == 2 and unraisable == []
    et.set_slots(P, ALL_KEYS)


def test_non_cpu_device_and_bad_major_tensor(prod):
    """A (fake) CUDA tensor: the export worked, the type is adopted, CPU
    kernels refuse it. A versioned tensor of major version 2 from the first
    export: not adopted."""
    Dev = type("Dev", (), {"__init__": lambda self, t: setattr(self, "t", t), "__dlpack__": lambda self, **kw: self.t.__dlpack__(**kw)})
    with pytest.raises(TypeError, match="host memory"):
        xa.sum(Dev(prod.Tensor(3, device_type=2)))
    assert et.lookup(Dev(None), K) is not None
    assert xa.view_info(Dev(prod.Tensor(3, device_type=2)))["device"] == (2, 0)
    Maj = type("Maj", (), {"__init__": lambda self, t: setattr(self, "t", t), "__dlpack__": lambda self, **kw: self.t.__dlpack__(**kw)})
    made, deleted = prod.made(), prod.deleted()
    with pytest.raises(BufferError, match="major version 2"):
        xa.sum(Maj(prod.Tensor(3, major=2)))
    assert et.lookup(Maj(None), K) is None
    with pytest.raises(TypeError, match="failed on first use"):
        xa.sum(Maj(prod.Tensor(3)))
    gc.collect()
    assert prod.made() - made == prod.deleted() - deleted == 1
