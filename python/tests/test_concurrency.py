"""Concurrency (docs/spec.md §6): readers never see anything but a published value,
concurrent writers never lose an update. On GIL builds a tiny switch interval
makes threads interleave; on free-threaded builds (3.13t) they really race.
Each test is time-bounded (well under a second of racing)."""

import sys
import threading
import time

import pytest

import extensibletype as et

ET = et.ExtensibleType
FREE_THREADED = getattr(sys, "_is_gil_enabled", lambda: True)() is False
RACE_SECONDS = 0.6


@pytest.fixture(autouse=True)
def fast_switching():
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(old)


def run_threads(targets, seconds=None):
    """Start all targets together; stop them after `seconds` (if given);
    re-raise the first exception any of them raised."""
    stop = threading.Event()
    start = threading.Barrier(len(targets))
    errors = []

    def wrap(fn):
        def run():
            try:
                start.wait()
                fn(stop)
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)
                stop.set()

        return run

    threads = [threading.Thread(target=wrap(fn)) for fn in targets]
    for t in threads:
        t.start()
    if seconds is not None:
        stop.wait(seconds)
        stop.set()
    for t in threads:
        t.join(30)
        assert not t.is_alive(), "a thread did not finish"
    if errors:
        raise errors[0]


def test_lookup_while_slots_are_replaced():
    k1, k2 = "tests.concurrency.v1:replace.a", "tests.concurrency.v1:replace.b"
    values = [0x10000 * (i + 1) for i in range(16)]
    allowed = set(values) | {None}

    class Base(metaclass=ET):
        __cslots__ = {k1: values[0], k2: values[0]}

    class Sub(Base):
        pass

    class Foreign(bytearray):
        pass

    # Entries the tables hold besides k1/k2: a bytearray subclass inherits the
    # buffer adapter's array.v1 slots once extensibletype.arrays is imported
    # (by an earlier test, or not when this file runs alone).
    et.set_slots(Foreign, {k1: values[0], k2: values[0]})
    inherited = {tp: len(et.get_slots(tp).keys() - {k1, k2}) for tp in (Sub, Foreign)}
    objects = [Base(), Sub(), Foreign(), Base(), Sub()]
    reads = []
    writes = []

    def reader(stop):
        n = 0
        while not stop.is_set():
            for obj in objects:
                for k in (k1, k2):
                    found = et.lookup(obj, k)
                    assert found in allowed, f"lookup({type(obj).__name__}, {k}) gave {found!r}"
            n += 1
        reads.append(n)

    def snapshots(stop):
        # get_slots sees whole tables: both keys were always set together.
        while not stop.is_set():
            for tp in (Sub, Foreign):
                slots = et.get_slots(tp)
                assert slots.get(k1) == slots.get(k2), slots
                assert slots.get(k1) in allowed
                info = et.table_info(tp)
                assert info["count"] - inherited[tp] in (0, 2), (info, inherited[tp])

    def writer(stop):
        i = 0
        while not stop.is_set():
            v = None if i % 5 == 4 else values[i % len(values)]
            et.set_slots(Base, {k1: v, k2: v})
            et.set_slots(Foreign, {k1: v, k2: v})
            i += 1
        writes.append(i)

    run_threads([reader, reader, reader, snapshots, writer], RACE_SECONDS)
    assert sum(reads) > 10 and writes[0] > 10, (reads, writes)
    # After the race: everything agrees with the last write.
    last = et.lookup(Base(), k1)
    assert et.lookup(Sub(), k1) == last == et.lookup(Sub(), k2)


@pytest.mark.parametrize("kind", ["extensible", "foreign"])
def test_concurrent_set_slots_never_loses_an_update(kind):
    threads, per_thread = 8, 150
    prefix = f"tests.concurrency.v1:distinct.{kind}"
    if kind == "extensible":
        Target = ET("Target", (), {})
        Sub = ET("Sub", (Target,), {})
    else:
        Target = type("Target", (bytearray,), {})
        Sub = type("Sub", (Target,), {})
    inherited = et.table_info(Target)["count"]  # bytearray's array.v1 slots, if arrays is imported
    if kind == "foreign":
        et.set_slots(Sub, {f"{prefix}.sub": 1})  # a registered foreign subclass

    def worker(t):
        def run(stop):
            mine = [f"{prefix}.{t}.{j}" for j in range(per_thread)]
            obj = Target()
            for j, k in enumerate(mine):
                et.set_slots(Target, {k: 0x1000 * (t + 1) + j})
                # Read-your-writes, and none of this thread's earlier keys lost.
                for jj in (0, j // 2, j):
                    assert et.lookup(obj, mine[jj]) == 0x1000 * (t + 1) + jj, (t, jj)

        return run

    run_threads([worker(t) for t in range(threads)])
    expected = {f"{prefix}.{t}.{j}": 0x1000 * (t + 1) + j for t in range(threads) for j in range(per_thread)}
    slots = et.get_slots(Target)
    missing = expected.keys() - slots.keys()
    assert not missing, f"{len(missing)} updates lost, e.g. {sorted(missing)[:3]}"
    assert {k: slots[k] for k in expected} == expected
    sub_slots = et.get_slots(Sub)
    assert {k: sub_slots.get(k) for k in expected} == expected
    assert et.table_info(Target)["count"] == inherited + len(expected)


def test_concurrent_writers_on_a_hierarchy():
    """Writers on a base and on its subclass at once: the subclass ends up
    with its own slots and every base slot it does not override."""
    prefix = "tests.concurrency.v1:hierarchy"
    n = 200
    Base = ET("Base", (), {})
    Mid = ET("Mid", (Base,), {})
    Leaf = ET("Leaf", (Mid,), {})

    def on(tp, tag):
        def run(stop):
            for j in range(n):
                et.set_slots(tp, {f"{prefix}.{tag}.{j}": j + 1, f"{prefix}.shared": 0x100 if tp is Base else 0x200})

        return run

    run_threads([on(Base, "base"), on(Mid, "mid"), on(Base, "base2"), on(Mid, "mid2")])
    leaf = et.get_slots(Leaf)
    for tag in ("base", "mid", "base2", "mid2"):
        for j in range(n):
            assert leaf.get(f"{prefix}.{tag}.{j}") == j + 1, (tag, j)
    assert leaf[f"{prefix}.shared"] == 0x200  # Mid overrides Base
    assert et.get_slots(Base)[f"{prefix}.shared"] == 0x100


def test_subclasses_created_while_the_base_changes():
    """Subclasses created concurrently with set_slots on their base must see
    the base's slots as of the latest completed write: once set_slots returns,
    every subclass whose creation has finished sees the new value (none keeps
    a stale table). Checked after every write, on the subclasses created since
    the previous check."""
    k = "tests.concurrency.v1:creation.k"
    Base = ET("Base", (), {"__cslots__": {k: 1}})
    created = []
    stale = []

    def creator(stop):
        while not stop.is_set():
            created.append(ET("Sub", (Base,), {}))

    def writer(stop):
        v, checked = 1, 0
        deadline = time.monotonic() + RACE_SECONDS
        while time.monotonic() < deadline and not stop.is_set():
            v += 1
            et.set_slots(Base, {k: v})
            upto = len(created)
            for sub in created[checked:upto]:
                found = et.lookup(sub(), k)
                if found != v:
                    stale.append((found, v))
            checked = upto
        stop.set()

    run_threads([creator, creator, writer])
    assert len(created) > 10
    assert not stale, f"{len(stale)} of {len(created)} subclasses kept a stale slot, e.g. (found, expected) {stale[:3]}"
    last = et.lookup(Base(), k)
    assert all(et.lookup(sub(), k) == last for sub in created[-50:])


def test_classes_created_and_destroyed_while_looking_up():
    k = "tests.concurrency.v1:churn.k"
    Base = ET("Base", (), {"__cslots__": {k: 0x4000}})

    def churn(stop):
        import gc

        i = 0
        while not stop.is_set():
            cls = ET("Churn", (Base,), {"__cslots__": {k: 0x5000}})
            assert et.lookup(cls(), k) == 0x5000
            del cls
            i += 1
            if i % 200 == 0:
                gc.collect()

    def reader(stop):
        obj = ET("Stable", (Base,), {})()
        while not stop.is_set():
            assert et.lookup(obj, k) == 0x4000

    def base_writer(stop):
        while not stop.is_set():
            et.set_slots(Base, {"tests.concurrency.v1:churn.other": 1})
            et.set_slots(Base, {"tests.concurrency.v1:churn.other": None})

    run_threads([churn, churn, reader, base_writer], RACE_SECONDS)
