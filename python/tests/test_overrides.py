"""Python overrides win (docs/spec.md §9 "Typed methods"): a typed slot
`…:m#…` misses on `type(obj)` when a class before its provider in the MRO
has `m` in its own `__dict__`; from Python (`lookup`, `get_slots`) and from
C (`ExtType_Find`, `ExtType_FindInType`, the type cache) alike, on
extensible and foreign-registered types and their subclasses, and right
after a later assignment or deletion. Untyped keys are never masked.

Every check asks Python `lookup`, then C `ExtType_Find` twice (the second
answers from the type cache for non-metaclass types), `ExtType_FindInType`,
and a pthread with no thread state (which may miss, but never returns a
masked pointer)."""

import itertools
import time

import pytest

import cbuild
import extensibletype as et

_count = itertools.count()


def keys():
    """A fresh typed key (method `area`), its untyped sibling and a second
    typed key (method `volume`), unique per call (the registry is
    process-wide)."""
    n = next(_count)
    return (
        f"test.overrides{n}.Shape.v1:area#f64(O)",
        f"test.overrides{n}.Shape.v1:perimeter",
        f"test.overrides{n}.Shape.v1:volume#f64(O)",
    )


@pytest.fixture(scope="module")
def c():
    path = cbuild.build(
        "overrides",
        [cbuild.ROOT / "python" / "tests" / "c" / "overrides.c"],
        cflags=["-Wall", "-Wextra", "-Werror", "-pthread"],
        ldflags=["-pthread"],
    )
    return cbuild.load(path)


def found(c, obj, key):
    """What a lookup of `key` on type(obj) finds, asserting that Python and
    C agree (cache fill, then cache hit) and that a thread with no thread
    state never finds a pointer the others do not."""
    kid = et.prehash(key)
    py = et.lookup(obj, key)
    first, second = c.find(obj, kid), c.find(obj, kid)
    in_type = c.find_in_type(type(obj), kid)
    assert (py, first, second, in_type) == (py, py, py, py), key
    nostate = c.find_nostate(obj, kid)
    assert nostate in (None, py), (key, nostate, py)
    slots = et.get_slots(type(obj))
    assert slots.get(key) == py, (key, slots)
    return py


def nostate(c, obj, key, times=4):
    return c.find_nostate(obj, et.prehash(key), times)


# --- extensible (metaclass) classes -----------------------------------------


def test_subclass_method_masks_typed_not_untyped(c):
    K, U, V = keys()

    class Base(metaclass=et.ExtensibleType):
        __cslots__ = {K: 0x1000, U: 0x2000, V: 0x3000}

    class Sub(Base):
        def area(self):
            return 1.0

        def perimeter(self):  # untyped: never masked
            return 2.0

    assert found(c, Base(), K) == 0x1000
    assert found(c, Sub(), K) is None
    assert found(c, Sub(), U) == 0x2000
    assert found(c, Sub(), V) == 0x3000
    assert nostate(c, Sub(), K) is None
    assert nostate(c, Sub(), V) == 0x3000  # the published table answers GIL-free


def test_none_in_the_class_body_masks(c):
    K, U, _ = keys()

    class Base(metaclass=et.ExtensibleType):
        __cslots__ = {K: 0x1000, U: 0x2000}

    class Sub(Base):
        area = None

    assert found(c, Sub(), K) is None
    assert found(c, Sub(), U) == 0x2000


def test_later_assignment_and_deletion_on_the_subclass(c):
    K, U, _ = keys()

    class Base(metaclass=et.ExtensibleType):
        __cslots__ = {K: 0x1000, U: 0x2000}

    class Sub(Base):
        pass

    class Grand(Sub):
        pass

    for obj in (Sub(), Grand()):
        assert found(c, obj, K) == 0x1000
    Sub.area = lambda self: 3.0
    for obj in (Sub(), Grand()):
        assert found(c, obj, K) is None
        assert nostate(c, obj, K) is None
        assert found(c, obj, U) == 0x2000
    assert found(c, Base(), K) == 0x1000
    del Sub.area
    for obj in (Sub(), Grand()):
        assert found(c, obj, K) == 0x1000
    setattr(Sub, "area", None)
    assert found(c, Grand(), K) is None
    delattr(Sub, "area")
    assert found(c, Grand(), K) == 0x1000


def test_grandchild_override_masks_only_the_grandchild(c):
    K, _, _ = keys()

    class Base(metaclass=et.ExtensibleType):
        __cslots__ = {K: 0x1000}

    class Sub(Base):
        pass

    class Grand(Sub):
        def area(self):
            return 0.0

    assert found(c, Sub(), K) == 0x1000
    assert found(c, Grand(), K) is None
    del Grand.area
    assert found(c, Grand(), K) == 0x1000


def test_provider_itself_is_not_masked(c):
    K, _, _ = keys()

    class Base(metaclass=et.ExtensibleType):
        __cslots__ = {K: 0x1000}

        def area(self):  # the Python twin of the typed slot: the convention
            return 1.0

    class Sub(Base):
        pass

    assert found(c, Base(), K) == 0x1000
    assert found(c, Sub(), K) == 0x1000
    Base.area = None
    assert found(c, Base(), K) == 0x1000
    assert found(c, Sub(), K) == 0x1000


def test_subclass_providing_its_own_slot_is_not_masked_by_itself(c):
    K, _, _ = keys()

    class Base(metaclass=et.ExtensibleType):
        __cslots__ = {K: 0x1000}

    class Sub(Base):
        __cslots__ = {K: 0x1100}

        def area(self):
            return 1.0

    class Grand(Sub):
        pass

    assert found(c, Sub(), K) == 0x1100
    assert found(c, Grand(), K) == 0x1100
    Grand.area = None
    assert found(c, Grand(), K) is None


def test_mixin_before_the_provider(c):
    K, U, _ = keys()

    class Base(metaclass=et.ExtensibleType):
        __cslots__ = {K: 0x1000, U: 0x2000}

    class Mixin:
        pass

    class After:
        pass

    class M(Mixin, Base):
        pass

    class N(Base, After):
        pass

    class MSub(M):
        pass

    for obj in (M(), MSub(), N()):
        assert found(c, obj, K) == 0x1000
    Mixin.area = lambda self: 1.0  # no hook of ours runs here
    for obj in (M(), MSub()):
        assert found(c, obj, K) is None
        assert nostate(c, obj, K) is None
        assert found(c, obj, U) == 0x2000
    After.area = None  # after the provider: no effect
    assert found(c, N(), K) == 0x1000
    del Mixin.area
    for obj in (M(), MSub()):
        assert found(c, obj, K) == 0x1000
    # Defined in the mixin from the start.
    class Mixin2:
        area = None

    class M2(Mixin2, Base):
        pass

    assert found(c, M2(), K) is None
    assert found(c, M2(), U) == 0x2000


def test_set_slots_on_the_base_later_masks_existing_overrides(c):
    K, _, V = keys()

    class Base(metaclass=et.ExtensibleType):
        pass

    class Sub(Base):
        def area(self):
            return 1.0

    et.set_slots(Base, {K: 0x1000, V: 0x3000})
    assert found(c, Base(), K) == 0x1000
    assert found(c, Sub(), K) is None
    assert found(c, Sub(), V) == 0x3000
    et.set_slots(Base, {K: 0x1010})
    assert found(c, Sub(), K) is None
    assert found(c, Base(), K) == 0x1010


def test_sub_metaclass_and_uninitialised_classes(c):
    K, _, _ = keys()

    class Base(metaclass=et.ExtensibleType):
        __cslots__ = {K: 0x1000}

    class Meta(et.ExtensibleType):
        pass

    class S(Base, metaclass=Meta):
        pass

    U = type.__new__(et.ExtensibleType, "U", (Base,), {"area": None})
    assert found(c, S(), K) == 0x1000
    S.area = 1
    assert found(c, S(), K) is None
    assert found(c, U(), K) is None


def test_table_info_describes_the_stored_table(c):
    K, U, _ = keys()

    class Base(metaclass=et.ExtensibleType):
        __cslots__ = {K: 0x1000, U: 0x2000}

    class Sub(Base):
        area = None

    assert et.table_info(Sub)["count"] == 1  # published masked
    assert et.get_slots(Sub) == {U: 0x2000}


# --- foreign-registered types ------------------------------------------------


def test_foreign_python_class_and_subclasses(c):
    K, U, V = keys()
    P = type("P", (), {})
    et.set_slots(P, {K: 0x1000, U: 0x2000})

    class Q(P):
        pass

    class R(Q):
        pass

    for obj in (P(), Q(), R()):
        assert found(c, obj, K) == 0x1000
    Q.area = None
    assert found(c, P(), K) == 0x1000
    for obj in (Q(), R()):
        assert found(c, obj, K) is None
        assert nostate(c, obj, K) is None
        assert found(c, obj, U) == 0x2000
    del Q.area
    for obj in (Q(), R()):
        assert found(c, obj, K) == 0x1000
    # Q registered too: its record's table is not trusted for the mask.
    et.set_slots(Q, {V: 0x3000})
    R.area = lambda self: 0.0
    assert found(c, Q(), K) == 0x1000
    assert found(c, R(), K) is None
    assert found(c, R(), V) == 0x3000
    Q.area = 1
    assert found(c, Q(), K) is None
    assert found(c, Q(), V) == 0x3000
    del Q.area, R.area
    assert found(c, R(), K) == 0x1000
    P.area = 1  # the provider: no effect
    assert found(c, P(), K) == 0x1000
    assert found(c, R(), K) == 0x1000


def test_c_static_types(c):
    K, U, _ = keys()
    et.set_slots(c.StaticBase, {K: 0x1000, U: 0x2000})
    try:
        assert found(c, c.StaticBase(), K) == 0x1000
        assert found(c, c.StaticSub(), K) is None  # area in its tp_methods
        assert found(c, c.StaticSub(), U) == 0x2000
        assert found(c, c.StaticPlain(), K) == 0x1000

        class PySub(c.StaticPlain):
            pass

        assert found(c, PySub(), K) == 0x1000
        PySub.area = None
        assert found(c, PySub(), K) is None
        assert nostate(c, PySub(), K) is None
        del PySub.area
        assert found(c, PySub(), K) == 0x1000
    finally:
        et.set_slots(c.StaticBase, {K: None, U: None})


def test_c_heap_types(c):
    K, U, _ = keys()
    H = c.make_heap_type("H", False)
    HA = c.make_heap_type("HA", True)
    et.set_slots(H, {K: 0x1000, U: 0x2000})
    et.set_slots(HA, {K: 0x1100})

    class HS(H):
        def area(self):
            return 2.0

    class HS2(H):
        pass

    assert found(c, HA(), K) == 0x1100  # its own method: the provider
    assert found(c, HS(), K) is None
    assert found(c, HS(), U) == 0x2000
    assert found(c, HS2(), K) == 0x1000
    HS2.area = None
    assert found(c, HS2(), K) is None
    H.area = None  # the provider itself
    del HS2.area
    assert found(c, HS2(), K) == 0x1000


def test_foreign_base_of_an_extensible_class(c):
    K, _, _ = keys()
    P = type("P", (), {})
    et.set_slots(P, {K: 0x1000})

    class E(P, metaclass=et.ExtensibleType):
        pass

    class F(E):
        pass

    assert found(c, F(), K) == 0x1000
    E.area = None
    assert found(c, E(), K) is None
    assert found(c, F(), K) is None
    del E.area
    assert found(c, F(), K) == 0x1000


# --- what is never masked ----------------------------------------------------


def test_untyped_keys_are_never_masked(c):
    _, U, _ = keys()
    P = type("P", (), {})
    et.set_slots(P, {U: 0x2000})

    class Q(P):
        perimeter = None

    class Base(metaclass=et.ExtensibleType):
        __cslots__ = {U: 0x2000}

    class Sub(Base):
        def perimeter(self):
            return 0.0

    assert found(c, Q(), U) == 0x2000
    assert found(c, Sub(), U) == 0x2000


def test_raw_id_of_an_unknown_typed_key_is_not_masked(c):
    # A slot set by integer id: the runtime never saw its key string, so it
    # cannot know it is typed (docs/spec.md §9).
    key = f"test.overrides.raw{next(_count)}.v1:area#f64(O)"
    kid = et.prehash(key)

    class Base(metaclass=et.ExtensibleType):
        __cslots__ = {kid: 0x1000}

    class Sub(Base):
        def area(self):
            return 1.0

    assert et.lookup(Sub(), kid) == 0x1000
    assert c.find(Sub(), kid) == 0x1000


def test_many_nostate_lookups_never_return_a_masked_pointer(c):
    K, _, _ = keys()
    P = type("P", (), {})
    et.set_slots(P, {K: 0x1000})

    class Q(P):
        area = None

    class Base(metaclass=et.ExtensibleType):
        __cslots__ = {K: 0x1000}

    class Mixin:
        area = None

    class M(Mixin, Base):
        pass

    for obj in (Q(), M()):
        assert nostate(c, obj, K, times=2000) is None
        et.lookup(obj, K)  # with the GIL: fills the cache (masked answer)
        assert nostate(c, obj, K, times=2000) is None


# --- Cython cdef classes ------------------------------------------------------


@pytest.fixture(scope="module")
def cy():
    pytest.importorskip("Cython", reason="Cython is not installed for this interpreter")
    return cbuild.cython_extension(cbuild.ROOT / "python" / "tests" / "c" / "overrides_cy.pyx")


def test_cython_cdef_classes(c, cy):
    K, U, _ = keys()
    et.set_slots(cy.Shape, {K: 0x1000, U: 0x2000})
    try:
        assert found(c, cy.Shape(), K) == 0x1000  # the provider's own cpdef area
        assert found(c, cy.Square(), K) is None  # a cdef subclass overriding area
        assert found(c, cy.Square(), U) == 0x2000
        assert found(c, cy.Plain(), K) == 0x1000

        class PyShape(cy.Plain):
            def area(self):
                return 3.0

        class PyPlain(cy.Plain):
            pass

        assert found(c, PyShape(), K) is None
        assert found(c, PyPlain(), K) == 0x1000
        PyPlain.area = None
        assert found(c, PyPlain(), K) is None
        assert nostate(c, PyPlain(), K) is None
    finally:
        et.set_slots(cy.Shape, {K: None, U: None})


# --- racing readers without a thread state -------------------------------------


def test_racing_nostate_readers_never_see_a_settled_mask_broken(c):
    """Pthreads with no thread state look up while the test assigns and
    deletes overrides on an extensible subclass, a mixin, a foreign
    subclass and a grandchild: once an assignment returned (and before the
    next change began), a masked slot never hits."""
    K, _, _ = keys()

    class Base(metaclass=et.ExtensibleType):
        __cslots__ = {K: 0x1000}

    class Sub(Base):
        pass

    class Mixin:
        pass

    class M(Mixin, Base):
        pass

    P = type("P", (), {})
    et.set_slots(P, {K: 0x1000})

    class Q(P):
        pass

    class R(Q):
        pass

    kid = et.prehash(K)
    # (class whose attribute changes, objects watched under it)
    plan = [(Sub, [Sub()]), (Mixin, [M()]), (Q, [Q(), R()])]
    index = [[c.race_watch(obj, kid, False) for obj in objs] for _, objs in plan]
    c.race_start(2)
    deadline = time.monotonic() + 0.5  # readers need a moment to start
    try:
        for round_ in itertools.count():
            if round_ >= 300 and time.monotonic() > deadline:
                break
            for (cls, objs), idx in zip(plan, index):
                mask = round_ % 2 == 0
                for i in idx:
                    c.race_begin(i)
                if mask:
                    setattr(cls, "area", None if round_ % 4 == 0 else (lambda self: 1.0))
                else:
                    delattr(cls, "area")
                for obj in objs:  # with the GIL: fills the cache sometimes
                    assert (et.lookup(obj, K) is None) == mask
                for i in idx:
                    c.race_end(i, mask)
    finally:
        lookups, checked, bad = c.race_stop()
    assert bad == 0, (lookups, checked, bad)
    assert checked > 0, (lookups, checked)


def test_registered_foreign_mixin_before_an_extensible_provider(c):
    K, _, V = keys()

    class Base(metaclass=et.ExtensibleType):
        __cslots__ = {K: 0x1000}

    F = type("F", (), {})
    et.set_slots(F, {V: 0x3000})  # registered, and no hook sees F.area = ...

    class E(F, Base):
        pass

    class G(E):
        pass

    for obj in (E(), G()):
        assert found(c, obj, K) == 0x1000
        assert found(c, obj, V) == 0x3000
    F.area = None
    for obj in (E(), G()):
        assert found(c, obj, K) is None
        assert nostate(c, obj, K) is None
        assert found(c, obj, V) == 0x3000
    del F.area
    assert found(c, G(), K) == 0x1000
    G.area = 1  # an extensible class: the hook republishes
    assert found(c, G(), K) is None
    assert found(c, E(), K) == 0x1000


def test_bases_assignment_brings_an_override_in_and_out(c):
    K, _, _ = keys()

    class Base(metaclass=et.ExtensibleType):
        __cslots__ = {K: 0x1000}

    class Mixin:
        area = None

    class Other:
        pass

    class E(Other, Base):
        pass

    assert found(c, E(), K) == 0x1000
    E.__bases__ = (Mixin, Base)
    assert found(c, E(), K) is None
    del Mixin.area
    assert found(c, E(), K) == 0x1000
    Mixin.area = 1
    E.__bases__ = (Other, Base)
    assert found(c, E(), K) == 0x1000
    assert nostate(c, E(), K) == 0x1000  # direct again: the type data answers
