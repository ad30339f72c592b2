"""The runtime's type cache (docs/c-api.md, "The type cache"): every lookup
on a type the metaclass fast path does not cover is answered by one cached
entry, validated by the type's tp_version_tag. These tests change slots,
bases and classes after the cache was filled and require the new answer,
never a stale one (also from C threads with no thread state)."""

import gc
import os
import subprocess
import sys
import threading

import pytest

import cbuild
from conftest import FREE_THREADED, FRESH_ENV, IN_FRESH_INTERPRETER
import extensibletype as et
from extensibletype import _core

KEY = "extensibletype.test.v1:cache"
ID = et.prehash(KEY)


def find(obj):
    """The C consumer's path (ExtType_Find's Rust port), through the cache."""
    return et.lookup(obj, KEY)


def find_in_type(tp):
    return _core._bench_lookup("find_in_type", tp, ID, 0) or None


def twice(obj):
    """Look up twice: the first fills the cache, the second answers from it."""
    first, second = find(obj), find(obj)
    assert first == second
    return second


def test_miss_then_registered_plain_class():
    class P:
        pass

    class Q(P):
        pass

    assert twice(P()) is None and twice(Q()) is None
    et.set_slots(P, {KEY: 0x1100})
    assert twice(P()) == 0x1100
    assert twice(Q()) == 0x1100  # a cached miss on the subclass is gone


def test_set_slots_on_a_foreign_base_reaches_cached_subclasses():
    class A:
        pass

    et.set_slots(A, {KEY: 0x1200})

    class B(A):
        pass

    class C(B):
        pass

    assert twice(B()) == twice(C()) == 0x1200
    et.set_slots(A, {KEY: 0x1210})
    assert twice(B()) == twice(C()) == 0x1210
    et.set_slots(B, {KEY: 0x1220})
    assert twice(C()) == 0x1220 and twice(A()) == 0x1210
    et.set_slots(A, {KEY: None})
    et.set_slots(B, {KEY: None})
    assert twice(A()) is None and twice(B()) is None and twice(C()) is None


def test_set_slots_on_an_extensible_base_reaches_sub_metaclass_and_uninitialised_classes():
    class E(metaclass=et.ExtensibleType):
        __cslots__ = {KEY: 0x1300}

    class SubMeta(et.ExtensibleType):
        pass

    class S(E, metaclass=SubMeta):
        pass

    U = type.__new__(et.ExtensibleType, "U", (E,), {})  # never initialised
    assert twice(S()) == twice(U()) == 0x1300
    et.set_slots(E, {KEY: 0x1310})
    assert twice(S()) == twice(U()) == 0x1310
    et.set_slots(S, {KEY: 0x1320})
    assert twice(S()) == 0x1320
    et.set_slots(E, {KEY: None})
    assert twice(U()) is None and twice(S()) == 0x1320


def test_bases_assignment_on_foreign_classes():
    class A1:
        pass

    class A2:
        pass

    class A3:  # not registered
        pass

    et.set_slots(A1, {KEY: 0x1401})
    et.set_slots(A2, {KEY: 0x1402})

    class C(A1):
        pass

    class D(C):
        pass

    assert twice(C()) == twice(D()) == 0x1401
    C.__bases__ = (A2,)  # no set_slots: only the version tag says so
    assert twice(C()) == twice(D()) == 0x1402
    C.__bases__ = (A3,)
    assert twice(C()) is None and twice(D()) is None
    C.__bases__ = (A1,)
    assert twice(D()) == 0x1401


def test_multiple_foreign_bases_merge_first_definition_wins():
    other = "extensibletype.test.v1:cache-other"

    class L:
        pass

    class R:
        pass

    et.set_slots(L, {KEY: 0x1501})
    et.set_slots(R, {KEY: 0x1502, other: 0x1503})

    class M(L, R):
        pass

    assert twice(M()) == 0x1501
    assert et.lookup(M(), other) == et.lookup(M(), other) == 0x1503
    assert find_in_type(M) == 0x1501


def _churn_until_reuse(make, check, rounds=20000):
    """Create, cache and drop types until a new one lands at a dead one's
    address; `check(new)` must then hold. Returns how many reuses were seen."""
    seen = {}
    reuses = 0
    for i in range(rounds):
        tp = make(i)
        address = id(tp)
        if address in seen:
            check(tp, i, seen[address])
            reuses += 1
            if reuses >= 20:
                break
        seen[address] = i
        del tp
        gc.collect(0)  # classes are cyclic: they die at a collection
    return reuses


# 3.13t immortalises type objects once any thread has started (gh-117783):
# there, dead types' addresses are only reused in a fresh interpreter.
in_fresh_on_free_threaded = pytest.mark.skipif(
    FREE_THREADED and not IN_FRESH_INTERPRETER,
    reason="free-threaded 3.13 immortalises types once a thread has started: "
    "run by test_address_reuse_in_a_fresh_interpreter",
)


@pytest.mark.skipif(not FREE_THREADED or IN_FRESH_INTERPRETER, reason="GIL builds run the address-reuse tests in-process")
def test_address_reuse_in_a_fresh_interpreter():
    here = os.path.dirname(os.path.abspath(__file__))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", os.path.basename(__file__),
         "-k", "address_reuse and not fresh_interpreter"],
        cwd=here, env={**os.environ, FRESH_ENV: "1"}, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "2 passed" in result.stdout, result.stdout[-2000:]


@in_fresh_on_free_threaded
def test_dead_type_address_reuse_never_answers_stale():
    """A cached subclass of a registered type dies; a new, unrelated type
    reuses its address: it must miss (and the reverse must hit)."""

    class Base:
        pass

    et.set_slots(Base, {KEY: 0x1600})

    def make(i):
        if i % 2 == 0:
            tp = type("Sub%d" % i, (Base,), {})
            assert twice(tp()) == 0x1600
        else:
            tp = type("Plain%d" % i, (), {})
            assert twice(tp()) is None
        return tp

    def check(tp, i, old):
        pass  # make() already asserted the right answer for the new type

    assert _churn_until_reuse(make, check) > 0, "no type address was ever reused"


@in_fresh_on_free_threaded
def test_dead_extensible_sub_metaclass_class_address_reuse():
    """Sub-metaclass classes are cached with their own (freed at death)
    tables: a new class at the same address answers its own value."""

    class SubMeta(et.ExtensibleType):
        pass

    def make(i):
        tp = SubMeta("X%d" % i, (), {"__cslots__": {KEY: 0x10000 + 16 * i}})
        assert twice(tp()) == 0x10000 + 16 * i
        return tp

    assert _churn_until_reuse(make, lambda *a: None) > 0, "no type address was ever reused"


def test_find_in_type_on_types_never_looked_up():
    """A type that never had an attribute looked up has no version tag yet:
    the slow path assigns one (with the GIL) or answers uncached."""
    tp = type.__new__(type, "Fresh", (), {})
    assert find_in_type(tp) is None
    et.set_slots(tp, {KEY: 0x1700})
    assert find_in_type(tp) == 0x1700


def test_version_tag_offset_is_proven():
    """The runtime found tp_version_tag (under the limited API by observing
    it): non-zero after a lookup, 0 after a modification, then a new value."""
    import ctypes

    off = _core._VERSION_TAG_OFFSET
    assert off > 0
    tag = lambda tp: ctypes.c_uint32.from_address(id(tp) + off).value  # noqa: E731

    class T:
        pass

    getattr(T, "no_such_attribute", None)
    first = tag(T)
    assert first != 0
    T.x = 1  # PyType_Modified
    assert tag(T) == 0
    getattr(T, "no_such_attribute", None)
    assert tag(T) not in (0, first)


@pytest.mark.parametrize("kind", ["plain", "sub-metaclass", "foreign subclass"])
def test_lookup_with_the_gil_assigns_a_missing_version_tag(kind):
    """A type whose tag was reset (or never set) gets one from the first
    lookup that holds the GIL, so the next lookups hit the cache (regression:
    the limited-API runtime only did this for metaclass `type`)."""
    import ctypes

    off = _core._VERSION_TAG_OFFSET
    tag = lambda tp: ctypes.c_uint32.from_address(id(tp) + off).value  # noqa: E731

    class SubMeta(et.ExtensibleType):
        pass

    class Base:
        pass

    et.set_slots(Base, {KEY: 0x1a00})
    tp = {
        "plain": lambda: type("P", (), {}),
        "sub-metaclass": lambda: SubMeta("S", (), {"__cslots__": {KEY: 0x1a01}}),
        "foreign subclass": lambda: type("F", (Base,), {}),
    }[kind]()
    obj = tp()
    tp.some_attribute = 1  # PyType_Modified: tag 0
    assert tag(tp) == 0
    want = {"plain": None, "sub-metaclass": 0x1a01, "foreign subclass": 0x1a00}[kind]
    assert find(obj) == want
    assert tag(tp) != 0
    assert find(obj) == want


# --- C readers with no thread state -----------------------------------------


@pytest.fixture(scope="module")
def readers():
    import extensibletype

    path = cbuild.build(
        "cache_readers",
        [cbuild.ROOT / "python" / "tests" / "c" / "cache_readers.c"],
        include_dirs=[cbuild.INCLUDE],
        cflags=["-Wall", "-Wextra", "-Werror", "-pthread"],
        ldflags=["-pthread"],
    )
    assert extensibletype
    return cbuild.load(path)


def test_c_readers_without_thread_state_see_every_change(readers):
    """Readers race slot changes on foreign and extensible bases,
    registrations and class churn; a lookup that no change overlapped must
    return exactly the settled value."""

    class Base:
        pass

    et.set_slots(Base, {KEY: 0x1800})

    class Sub(Base):
        pass

    class Other:
        pass

    et.set_slots(Other, {KEY: 0x1801})

    class E(metaclass=et.ExtensibleType):
        __cslots__ = {KEY: 0x1802}

    class SubMeta(et.ExtensibleType):
        pass

    class S(E, metaclass=SubMeta):
        pass

    U = type.__new__(et.ExtensibleType, "U", (E,), {})

    class Plain:
        pass

    objs = dict(sub=Sub(), s=S(), u=U(), plain=Plain(), base=Base(), fl=1.5)
    want = dict(sub=0x1800, s=0x1802, u=0x1802, plain=0, base=0x1800, fl=0)
    index = {name: readers.watch(obj, ID, want[name]) for name, obj in objs.items()}
    readers.start(4)
    try:
        for round_ in range(200):
            v = 0x20000 + 16 * round_

            def change(names, fn, new):
                for n in names:
                    readers.begin_change(index[n])
                fn()
                for n in names:
                    readers.end_change(index[n], new[n])

            # Every other round 30 filler slots come and go, so the tables
            # the cache entries name (and their flat words) switch between
            # flat and two-level while readers probe them.
            fill = {f"tests.cache.v1:fill{i}": (0x100 + 16 * i if round_ % 2 else None) for i in range(30)}
            change(["sub", "base"], lambda: et.set_slots(Base, {KEY: v, **fill}), dict(sub=v, base=v))
            # (No __bases__ assignment here: a reader with no thread state
            # that misses the cache walks tp_mro, which a concurrent
            # assignment frees; see docs/c-api.md, "Known limitations".
            # test_bases_assignment_on_foreign_classes covers it in order.)
            change(["s", "u"], lambda: et.set_slots(E, {KEY: v + 1, **fill}), dict(s=v + 1, u=v + 1))
            assert et.table_info(Base)["flat"] == et.table_info(E)["flat"] == (round_ % 2 == 0)
            change(["plain"], lambda: et.set_slots(Plain, {KEY: v + 2}), dict(plain=v + 2))
            change(["plain"], lambda: et.set_slots(Plain, {KEY: None}), dict(plain=0))
            # Churn: classes die and are reborn at reused addresses.
            for j in range(4):
                t = type("Churn%d" % j, (Base,), {})
                assert twice(t()) == v
                del t
    finally:
        lookups, checked, stale, bad = readers.stop()
    assert stale == 0, bad
    assert checked > 0 and lookups >= checked


@pytest.mark.skipif(sys.platform != "linux", reason="uses /proc")
def test_python_threads_and_c_readers_together(readers):
    """Python threads mutate while C readers run (on 3.13t: no GIL at all)."""

    class Base:
        pass

    et.set_slots(Base, {KEY: 0x1900})

    class Sub(Base):
        pass

    i = readers.watch(Sub(), ID, 0x1900)
    readers.start(2)
    errors = []

    def mutate(k):
        try:
            for r in range(100):
                type("T%d_%d" % (k, r), (Base,), {})
                assert find(Sub()) in (0x1900, 0x1901)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    try:
        threads = [threading.Thread(target=mutate, args=(k,)) for k in range(2)]
        for t in threads:
            t.start()
        for r in range(50):
            readers.begin_change(i)
            et.set_slots(Base, {KEY: 0x1901 if r % 2 else 0x1900})
            readers.end_change(i, 0x1901 if r % 2 else 0x1900)
        for t in threads:
            t.join()
    finally:
        _, checked, stale, bad = readers.stop()
    assert not errors, errors
    assert stale == 0, bad
