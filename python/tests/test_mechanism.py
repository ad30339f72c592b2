"""The mechanism as a C consumer sees it, through include/extensibletype.h's
own inline code (python/tests/c/mechanism.c): the type-cache probe must
check tp_version_tag, a table a reader holds must outlive any number of
set_slots, and a cache fill racing a writer must never leave a stale
answer behind. Each test here fails when that part of the mechanism is
broken (docs/mutants.md lists the deliberate bugs each one catches)."""

import gc
import subprocess
import sys
import textwrap

import pytest

import cbuild
import extensibletype as et
from conftest import FREE_THREADED

KEY = "extensibletype.test.v1:mechanism"
ID = et.prehash(KEY)


def _build():
    path = cbuild.build(
        "mechanism",
        [cbuild.ROOT / "python" / "tests" / "c" / "mechanism.c"],
        include_dirs=[cbuild.INCLUDE],
        cflags=["-Wall", "-Wextra", "-Werror", "-pthread"],
        ldflags=["-pthread"],
    )
    return cbuild.load(path)


@pytest.fixture(scope="module")
def c():
    return _build()


def probe(c, obj):
    """ExtType_Find(obj, ID) from C (0 for NULL): twice, so that the second
    answer comes from the header's type-cache probe when the first filled it."""
    c.find(obj, ID)
    return c.find(obj, ID)


# --- the header's type-cache probe honours tp_version_tag ------------------


def test_header_probe_sees_bases_assignment(c):
    """`__bases__` assignment changes which table a plain class uses without
    any set_slots: only the type's version tag (reset by CPython) tells the
    header's cached entry that it is out of date."""

    class A:
        pass

    class B:
        pass

    et.set_slots(A, {KEY: 0x5100})
    et.set_slots(B, {KEY: 0x5200})

    class C(A):
        pass

    class D(C):
        pass

    c_obj, d_obj = C(), D()
    assert probe(c, c_obj) == 0x5100
    assert probe(c, d_obj) == 0x5100
    C.__bases__ = (B,)
    assert probe(c, c_obj) == 0x5200  # its own tag was reset
    assert probe(c, d_obj) == 0x5200  # and its subclass's
    C.__bases__ = (A,)
    assert probe(c, c_obj) == 0x5100
    assert probe(c, d_obj) == 0x5100


def test_header_probe_sees_bases_assignment_to_an_unregistered_base(c):
    class A:
        pass

    class Empty:
        pass

    et.set_slots(A, {KEY: 0x5300})

    class C(A):
        pass

    obj = C()
    assert probe(c, obj) == 0x5300
    C.__bases__ = (Empty,)
    assert probe(c, obj) == 0  # nothing registered along the new MRO
    C.__bases__ = (A,)
    assert probe(c, obj) == 0x5300


@pytest.mark.skipif(FREE_THREADED, reason="free-threaded 3.13 immortalises types once a thread has started (no address reuse)")
def test_header_probe_never_answers_for_a_dead_type_at_a_reused_address(c):
    """A class dies and a new one is allocated at its address: the header's
    cached entry for the old class (same address) must not answer for it."""

    class Base:
        pass

    class Other:
        pass

    et.set_slots(Base, {KEY: 0x5400})
    et.set_slots(Other, {KEY: 0x5500})
    seen = {}
    for i in range(20000):
        if i % 2 == 0:
            t = type("Dying", (Base,), {})
            seen[id(t)] = True
            assert probe(c, t()) == 0x5400
        else:
            t = type("Reborn", (Other,), {})
            # Not yet looked up: the first answer is the one that matters.
            got = c.find(t(), ID)
            assert got == 0x5500, f"round {i}: a class at a reused address got {got:#x}"
            if id(t) in seen:
                return  # an address was reused and answered correctly
        del t
        gc.collect(0)
    pytest.skip("no type address was reused in 20000 classes")


# --- tables a reader holds are retired, never freed ------------------------

# Run in a child interpreter: reading a freed table may crash, and a crash
# must fail this test, not the whole suite.
_HELD_TABLES = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {tests!r})
    import extensibletype as et
    import test_mechanism as tm

    c = tm._build()
    KEY, ID = tm.KEY, tm.ID
    OTHER = "extensibletype.test.v1:mechanism.other"

    class E(metaclass=et.ExtensibleType):
        __cslots__ = {{KEY: 0x6100, OTHER: 0x6101}}

    class P:
        pass

    et.set_slots(P, {{KEY: 0x6200, OTHER: 0x6201}})
    held = [(c.hold(E), 0x6100), (c.hold(P), 0x6200)]
    # Replace the tables many times, with tables of the same size (so the
    # allocator would hand a freed block straight back), from the type and
    # from fresh classes.
    for i in range(200):
        et.set_slots(E, {{KEY: 0x7000 + 16 * i}})
        et.set_slots(P, {{KEY: 0x8000 + 16 * i}})
        if i % 20 == 0:
            held.append((c.hold(E), 0x7000 + 16 * i))
            held.append((c.hold(P), 0x8000 + 16 * i))

        class F(metaclass=et.ExtensibleType):
            __cslots__ = {{KEY: 0x9000 + 16 * i, OTHER: 1}}

    bad = []
    for handle, want in held:
        same, got = c.check(handle, ID)
        if not same or got != want:
            bad.append((handle, same, hex(got), hex(want)))
    c.release_all()
    print("BAD" if bad else "OK", bad)
    """
)


def test_tables_held_by_a_reader_outlive_set_slots():
    """A GIL-free reader loads a type's table pointer, then a writer replaces
    the table (any number of times) while the type lives: the old table must
    stay allocated and unchanged, byte for byte, and still answer its old
    value. (A runtime that freed replaced tables fails here deterministically:
    the allocator writes its free-list links into a freed block.)"""
    import os

    code = _HELD_TABLES.format(tests=os.path.dirname(os.path.abspath(__file__)))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"exit {r.returncode}\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
    assert r.stdout.startswith("OK"), r.stdout[-2000:]


# --- a cache fill racing a writer leaves no stale entry --------------------


def test_cache_fill_racing_set_slots_leaves_no_stale_answer(c):
    """C readers without a thread state keep missing the type cache on a class
    whose answer needs a slow merge (two registered bases, one with a large
    table), while the test keeps changing the small base. A fill that read
    the tables before a change must not be inserted after it: every lookup
    that no change overlapped, and the final one, must see the settled
    value. (Timing-independent in the right runtime; the wrong one is caught
    with high probability, since each merge takes far longer than a write.)"""

    class Small:
        pass

    class Large:
        pass

    bulk = ["extensibletype.test.v1:mechanism.bulk.%d" % i for i in range(4000)]
    et.set_slots(Small, {KEY: 0x10})
    et.set_slots(Large, {key: 0x100 + 16 * i for i, key in enumerate(bulk)})

    class Merged(Small, Large):
        pass

    obj = Merged()
    getattr(Merged, "no_such_attribute", None)  # give it a version tag
    assert probe(c, obj) == 0x10

    stale_total = checked_total = 0
    last = 0x10
    for episode in range(40):
        c.start((obj,), (ID,), (last,), 2)
        try:
            c.wait(2)  # readers running
            for k in range(25):
                last = 0x1000 + 16 * (episode * 25 + k)
                c.begin_change(0)
                et.set_slots(Small, {KEY: last})
                c.end_change(0, last)
            c.wait(20_000)  # settled: readers now see only `last`
        finally:
            lookups, checked, stale, got, want = c.stop()
        final = c.find(obj, ID)
        assert stale == 0, f"episode {episode}: {stale} stale of {checked} checked lookups (got {got:#x}, want {want:#x})"
        assert final == last, f"episode {episode}: after the writes settled, C finds {final:#x}, not {last:#x}"
        stale_total += stale
        checked_total += checked
    assert checked_total > 0
    et.set_slots(Small, {KEY: None})
    et.set_slots(Large, dict.fromkeys(bulk))
