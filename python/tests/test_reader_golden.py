"""One reader, two languages: the header's inline ExtType_Find (C, compiled
as a consumer compiles it: python/tests/c/subinterp_find.c) and the
runtime's Rust ``find`` (extensibletype-core's ``abi::Reader``, through the
private hook ``_core._bench_lookup("find", obj, id, 0)``) must return the
same pointer for the same object and id: metaclass classes and their
subclasses, sub-metaclass and never-initialised classes, foreign types
before and after a ``set_slots`` republish, types the type cache serves,
plain types (misses), ``extensibletype.arrays.Array``, NumPy arrays, and ids
registered on other types (misses), on flat and two-level tables. The C
side is compiled twice: against today's header (which probes flat tables
through the type's flat descriptor) and against a frozen copy of the ABI v1
header from before it (which reads only the `table` pointer, as every
consumer built then does). Behaviour, not text: each pair is
looked up C-first on some objects and Rust-first on others (the first
lookup of a type fills its cache entry, the second reads it), and the
expected pointers are checked too, so two readers broken alike still fail.
"""

from __future__ import annotations

import gc

import pytest

import cbuild
import extensibletype as et
import extensibletype.arrays as xa
from extensibletype import _core

pytestmark = pytest.mark.skipif(not cbuild.have_compiler(), reason="no C compiler (cc)")

KEY = "extensibletype.test.v1:golden_reader"
OTHER = "extensibletype.test.v1:golden_reader_elsewhere"
ID, OTHER_ID = et.prehash(KEY), et.prehash(OTHER)


@pytest.fixture(autouse=True, scope="module")
def providers_registered():
    """Array providers on NumPy and the buffer types (other test modules
    unregister them when collected), removed again afterwards."""
    xa._register_providers()
    yield
    xa._unregister_providers()


# The headers a consumer may have been compiled against: today's, and the
# ABI v1 header as it shipped before the flat descriptor (a frozen copy: its
# consumers read only the `table` pointer, and must keep finding every slot
# in flat tables and v1 tables alike).
HEADERS = {"header": cbuild.INCLUDE, "frozen-abi1-header": cbuild.ROOT / "tests" / "abi" / "frozen-abi1"}


@pytest.fixture(scope="module", params=sorted(HEADERS))
def cfind(request):
    """The C consumer: ExtType_Find / ExtType_FindInType from one header."""
    path = cbuild.build(
        "subinterp_find",
        [cbuild.ROOT / "python" / "tests" / "c" / "subinterp_find.c"],
        include_dirs=[HEADERS[request.param]],
        cflags=cbuild.STRICT,
    )
    return cbuild.load(path)


def rust_find(obj, ident):
    """The runtime's Rust ``find(obj, id)`` (0 = miss)."""
    return _core._bench_lookup("find", obj, ident, 0)


def c_find(cfind, obj, ident):
    return cfind.find(obj, ident) or 0


def both(cfind, obj, ident, c_first):
    """(C, Rust) answers, in the given order, then once more in the other
    order (so each reader also reads an entry the other one filled)."""
    if c_first:
        first = (c_find(cfind, obj, ident), rust_find(obj, ident))
    else:
        first = tuple(reversed((rust_find(obj, ident), c_find(cfind, obj, ident))))
    again = (c_find(cfind, obj, ident), rust_find(obj, ident))
    return first, again


def world():
    """(name, object, {id: expected pointer or 0}) for every kind of type."""

    class E(metaclass=et.ExtensibleType):
        __cslots__ = {KEY: 0x5100}

    class ESub(E):
        pass

    class EOverride(E):
        __cslots__ = {KEY: 0x5110}

    class EEmpty(metaclass=et.ExtensibleType):
        pass

    class EMany(E):  # 40 slots: a two-level (v1) table, not a flat one
        __cslots__ = {f"{KEY}.many{i}": 0x5400 + 16 * i for i in range(39)}

    class SubMeta(et.ExtensibleType):
        pass

    class S(E, metaclass=SubMeta):
        pass

    U = type.__new__(et.ExtensibleType, "U", (E,), {})  # never initialised

    class Foreign:
        pass

    et.set_slots(Foreign, {KEY: 0x5200})

    class ForeignSub(Foreign):
        pass

    class Elsewhere:  # OTHER_ID lives here only
        pass

    et.set_slots(Elsewhere, {OTHER: 0x5300})

    class Plain:
        pass

    class Mixed(Plain, Foreign):
        pass

    objs = [
        ("extensible instance", E(), {ID: 0x5100}),
        ("extensible class (type(E) is the metaclass: foreign to itself)", E, {ID: 0}),
        ("extensible subclass", ESub(), {ID: 0x5100}),
        ("extensible override", EOverride(), {ID: 0x5110}),
        ("extensible, no slots", EEmpty(), {ID: 0}),
        ("extensible subclass with a two-level table", EMany(), {ID: 0x5100, et.prehash(f"{KEY}.many38"): 0x5400 + 16 * 38}),
        ("sub-metaclass class", S(), {ID: 0x5100}),
        ("never-initialised class", U(), {ID: 0x5100}),
        ("registered foreign type", Foreign(), {ID: 0x5200}),
        ("plain subclass of a registered type", ForeignSub(), {ID: 0x5200}),
        ("plain class, registered base later in the MRO", Mixed(), {ID: 0x5200}),
        ("plain instance (miss)", Plain(), {ID: 0}),
        ("object() (miss)", object(), {ID: 0}),
        ("int (miss)", 7, {ID: 0}),
        ("str (miss)", "s", {ID: 0}),
        ("arrays.Array", xa.Array((2, 3)), {ID: 0, xa.ID_ACQUIRE: None, xa.ID_RELEASE: None}),
        ("bytearray (a registered buffer provider)", bytearray(b"ab"), {ID: 0, xa.ID_ACQUIRE: None}),
    ]
    try:
        import numpy as np
    except ImportError:
        np = None
    if np is not None:
        objs.append(("numpy.ndarray", np.arange(3.0), {ID: 0, xa.ID_ACQUIRE: None, xa.ID_RELEASE: None}))
    # An id registered on another type must miss everywhere else.
    for _, _, want in objs:
        want.setdefault(OTHER_ID, 0)
    objs.append(("the type OTHER_ID is registered on", Elsewhere(), {OTHER_ID: 0x5300, ID: 0}))
    # Both table formats are on the extensible side.
    assert et.table_info(E)["flat"] and not et.table_info(EMany)["flat"]
    return objs, (E, Foreign, ForeignSub, Mixed)


def check(cfind, objs, round_):
    hits = 0
    for i, (name, obj, want) in enumerate(objs):
        for ident, expected in want.items():
            (c1, r1), (c2, r2) = both(cfind, obj, ident, c_first=(i + round_) % 2 == 0)
            assert c1 == r1 == c2 == r2, f"{name}, id {ident:#x}: C {c1:#x}/{c2:#x}, Rust {r1:#x}/{r2:#x}"
            if expected is None:
                assert c1 != 0, f"{name}, id {ident:#x}: expected a registered pointer"
            else:
                assert c1 == expected, f"{name}, id {ident:#x}: {c1:#x}, expected {expected:#x}"
            hits += c1 != 0
    return hits


def test_c_and_rust_readers_agree(cfind):
    objs, (E, Foreign, ForeignSub, Mixed) = world()
    assert check(cfind, objs, 0) >= 8
    # Republish: a set_slots on an extensible base and on a registered
    # foreign base changes what both readers see (tables and cache entries
    # alike), and a new id appears on the foreign side.
    et.set_slots(E, {KEY: 0x5101})
    et.set_slots(Foreign, {KEY: 0x5201, OTHER: 0x5202})
    for name, obj, want in objs:
        if want.get(ID) == 0x5100:
            want[ID] = 0x5101
        if want.get(ID) == 0x5200:
            want[ID] = 0x5201
            want[OTHER_ID] = 0x5202
    check(cfind, objs, 1)
    # Removal: the foreign type and its subclasses miss again.
    et.set_slots(Foreign, {KEY: None, OTHER: None})
    for name, obj, want in objs:
        if want.get(ID) == 0x5201:
            want[ID] = 0
            want[OTHER_ID] = 0
    check(cfind, objs, 2)
    del objs
    gc.collect()


def test_bases_assignment_only_the_version_tag_tells(cfind):
    # No set_slots, so no cache clear: a cache entry filled before must be
    # refused by both readers because the class's version tag changed.
    class A1:
        pass

    class A2:
        pass

    et.set_slots(A1, {KEY: 0x5401})
    et.set_slots(A2, {KEY: 0x5402})

    class C(A1):
        pass

    class D(C):
        pass

    objs = [("C", C(), {ID: 0x5401}), ("D", D(), {ID: 0x5401})]
    for round_ in range(2):
        check(cfind, objs, round_)
    C.__bases__ = (A2,)
    for _, _, want in objs:
        want[ID] = 0x5402
    for round_ in range(2):
        check(cfind, objs, round_)


def test_find_in_type_agrees_on_types(cfind):
    objs, _ = world()
    for name, obj, want in objs:
        tp = type(obj)
        for ident in want:
            c = cfind.find_in_type(tp, ident) or 0
            r = _core._bench_lookup("find_in_type", tp, ident, 0)
            assert c == r, f"{name}: find_in_type, id {ident:#x}: C {c:#x}, Rust {r:#x}"
