"""Lifetime (docs/spec.md §6): Python objects backing registered pointers live as long
as a table refers to them; tables (and those references) die with their
class; creating and destroying many classes does not leak."""

import ctypes
import gc
import os
import sys
import weakref

import pytest

import extensibletype as et

from conftest import FREE_THREADED, IN_FRESH_INTERPRETER

ET = et.ExtensibleType

# CPython 3.13t immortalises type objects once any thread has started
# (gh-117783), and other test modules start threads: there, this module runs
# in a fresh interpreter (test_lifetime_fresh.py) instead of in-process.
pytestmark = pytest.mark.skipif(
    FREE_THREADED and not IN_FRESH_INTERPRETER,
    reason="3.13t: run in a fresh interpreter by test_lifetime_fresh.py",
)
INT_CB = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int)


def collect():
    gc.collect()
    gc.collect()


class VoidP(ctypes.c_void_p):
    """A c_void_p that supports weak references (plain ctypes objects do not)."""


# A capsule whose destructor records that it ran: PyCapsule supports neither
# weak references nor (on free-threaded builds) meaningful refcounts.
_PyCapsule_New = ctypes.pythonapi.PyCapsule_New
_PyCapsule_New.restype = ctypes.py_object
_PyCapsule_New.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
_PyCapsule_GetPointer = ctypes.pythonapi.PyCapsule_GetPointer
_PyCapsule_GetPointer.restype = ctypes.c_void_p
_PyCapsule_GetPointer.argtypes = [ctypes.c_void_p]
_destroyed = []


@ctypes.CFUNCTYPE(None, ctypes.c_void_p)
def _capsule_destructor(capsule):
    # The capsule is being deallocated: record its pointer (no refcounting).
    _destroyed.append(_PyCapsule_GetPointer(capsule, None))


def tracked_capsule(address):
    return _PyCapsule_New(address, None, ctypes.cast(_capsule_destructor, ctypes.c_void_p))


def test_dropped_ctypes_callback_stays_callable():
    k = "tests.lifetime.v1:callback"

    def triple_plus_one(x):
        return 3 * x + 1

    alive = weakref.ref(triple_plus_one)
    cb = INT_CB(triple_plus_one)

    class C(metaclass=ET):
        __cslots__ = {k: cb}

    del cb, triple_plus_one
    collect()
    assert alive() is not None, "the callback's target was freed while registered"
    address = et.lookup(C(), k)
    assert address is not None
    assert INT_CB(address)(20) == 61

    del C
    collect()
    assert alive() is None, "the callback outlived the only class that used it"


def test_dropped_callback_set_with_set_slots_stays_callable():
    k = "tests.lifetime.v1:set_slots_callback"

    class C(metaclass=ET):
        pass

    def negate(x):
        return -x

    alive = weakref.ref(negate)
    et.set_slots(C, {k: INT_CB(negate)})
    del negate
    collect()
    assert alive() is not None
    assert INT_CB(et.lookup(C(), k))(5) == -5
    del C
    collect()
    assert alive() is None


def test_capsule_is_kept_alive_by_the_table():
    k = "tests.lifetime.v1:capsule"
    address = 0xCA95_0000 + (id(k) & 0xFFF0)
    cap = tracked_capsule(address)

    class C(metaclass=ET):
        __cslots__ = {k: cap}

    if not FREE_THREADED:  # biased refcounts make the number meaningless there
        assert sys.getrefcount(cap) >= 3  # ours, getrefcount's, the table's
    del cap
    collect()
    assert address not in _destroyed, "the capsule was freed while registered"
    assert et.lookup(C(), k) == address
    del C
    collect()
    assert address in _destroyed, "the capsule outlived the only class that used it"


def test_owner_dies_with_its_class():
    k = "tests.lifetime.v1:owner"
    owner = VoidP(0x7000)
    alive = weakref.ref(owner)

    class C(metaclass=ET):
        pass

    et.set_slots(C, {k: owner})
    del owner
    collect()
    assert alive() is not None
    class_alive = weakref.ref(C)
    del C
    collect()
    assert class_alive() is None
    assert alive() is None


def test_replaced_owner_lives_until_the_class_dies():
    """A replaced slot's owner may still be used by a GIL-free reader holding
    the old (retired) table, so it lives as long as the class (docs/spec.md §6)."""
    k = "tests.lifetime.v1:replaced"
    first, second = VoidP(0x7100), VoidP(0x7200)
    alive_first, alive_second = weakref.ref(first), weakref.ref(second)

    class C(metaclass=ET):
        __cslots__ = {k: first}

    et.set_slots(C, {k: second})
    et.set_slots(C, {k: None})
    del first, second
    collect()
    assert alive_first() is not None and alive_second() is not None
    assert et.lookup(C(), k) is None
    del C
    collect()
    assert alive_first() is None and alive_second() is None


def test_inherited_owner_lives_while_a_subclass_uses_it():
    k = "tests.lifetime.v1:inherited"
    owner = VoidP(0x7300)
    alive = weakref.ref(owner)

    class Base(metaclass=ET):
        __cslots__ = {k: owner}

    class Sub(Base):
        pass

    del owner
    et.set_slots(Base, {k: 0x7400})  # Base no longer uses it; Sub's old table did
    collect()
    assert alive() is not None
    assert et.lookup(Sub(), k) == 0x7400
    del Base, Sub
    collect()
    assert alive() is None


def test_classes_die():
    k = "tests.lifetime.v1:dies"
    owner = VoidP(0x7500)
    refs = []
    for i in range(100):
        cls = ET(f"C{i}", (), {"__cslots__": {k: owner}})
        sub = ET(f"S{i}", (cls,), {})
        refs += [weakref.ref(cls), weakref.ref(sub)]
    del cls, sub
    collect()
    assert sum(r() is not None for r in refs) == 0


def _rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc (Linux)")
def test_many_classes_leave_memory_flat():
    """100,000 classes with 4 slots each (one a shared ctypes callback),
    created and destroyed in batches, grow RSS by less than 4 MiB after a
    10,000-class warm-up; every class really dies."""
    shared = INT_CB(lambda x: x)
    keys = [f"tests.lifetime.v1:flat.{i}" for i in range(4)]
    cslots = {keys[0]: shared, keys[1]: 0x1000, keys[2]: 0x2000, keys[3]: 0x3000}
    batch = 1000

    def churn(n):
        for start in range(0, n, batch):
            refs = []
            for i in range(batch):
                cls = ET("Churn", (), {"__cslots__": cslots})
                refs.append(weakref.ref(cls))
            del cls
            gc.collect()
            survivors = sum(r() is not None for r in refs)
            assert survivors == 0, f"{survivors} of {batch} classes survived"

    churn(10_000)
    collect()
    before = _rss_bytes()
    churn(100_000)
    collect()
    growth = _rss_bytes() - before
    # Measured: < 0.1 MiB on 3.11-3.13t. A leak of 42 bytes per class fails.
    assert growth < 4 * 2**20, f"RSS grew by {growth / 2**20:.1f} MiB over 100,000 classes"
    # The shared callback is still fine (it is ours, and was in every table).
    assert INT_CB(ctypes.cast(shared, ctypes.c_void_p).value)(7) == 7


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc (Linux)")
def test_repeated_set_slots_on_dying_classes_leave_memory_flat():
    """Retired tables are freed with their class."""
    keys = [f"tests.lifetime.v1:retired.{i}" for i in range(8)]

    def churn(n):
        for _ in range(0, n, 100):
            refs = []
            for _ in range(100):
                cls = ET("Churn", (), {})
                for v in range(1, 11):
                    et.set_slots(cls, {k: 0x1000 * v for k in keys})
                refs.append(weakref.ref(cls))
            del cls
            gc.collect()
            assert all(r() is None for r in refs)

    churn(1_000)
    collect()
    before = _rss_bytes()
    churn(10_000)
    collect()
    growth = _rss_bytes() - before
    assert growth < 4 * 2**20, f"RSS grew by {growth / 2**20:.1f} MiB over 100,000 retired tables"
