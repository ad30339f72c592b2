"""Cost of a class statement with 16 __cslots__ vs plain classes, same run.

    .venv/3.11/bin/python benches/class_statement.py   (after scripts/test.sh)

Prints µs per class statement (best of 7 repeats) and the ratios the project
targets (docs/benchmarks.md): ExtensibleType with 16 __cslots__ given as int
addresses <= 1.3x a plain class with 16 class attributes, <= 2.5x with ctypes
callbacks as values (the README's Python example: typed keys, whose
prototypes are checked); set_slots on a class with 100 subclasses <= 1 µs
per republished subclass.

    --callgrind NAME N   run only row NAME's function N times (after one
                         warm-up call), under `valgrind --tool=callgrind`:
                         (Ir at N - Ir at 0) / N is its instruction count;
                         see docs/benchmarks.md.
"""

import ctypes
import sys
import timeit

import extensibletype as et

SLOTS = {f"bench.iface.v1:member{i}": 0x1000 + 16 * i for i in range(16)}
ATTRS = {f"member{i}": 0x1000 + 16 * i for i in range(16)}
# Typed keys (docs/spec.md §4.1: Python overrides win): the mask's cost.
TYPED = {f"bench.iface.v1:member{i}#f64(O)": 0x1000 + 16 * i for i in range(16)}


# The README's Python example, 16 times: ctypes callbacks (made once, as a
# module would) under typed keys whose signature the prototype must match.
PROTO = ctypes.CFUNCTYPE(ctypes.c_double, ctypes.py_object, ctypes.c_double)
CALLBACKS = [PROTO(lambda self, x, i=i: x * i) for i in range(16)]
CTYPES_TYPED = {
    et.method_key(f"bench.iface.v1:member{i}", "f64(O,f64)"): CALLBACKS[i] for i in range(16)
}
CTYPES_UNTYPED = {f"bench.iface.v1:member{i}": CALLBACKS[i] for i in range(16)}


class UntypedBase(metaclass=et.ExtensibleType):
    __cslots__ = SLOTS


class TypedBase(metaclass=et.ExtensibleType):
    __cslots__ = TYPED


def plain():
    class C:
        locals().update(ATTRS)


def plain_meta():
    class C(metaclass=et.ExtensibleType):
        locals().update(ATTRS)


def with_cslots():
    class C(metaclass=et.ExtensibleType):
        __cslots__ = SLOTS


def with_typed_cslots():
    class C(metaclass=et.ExtensibleType):
        __cslots__ = TYPED


def with_ctypes_typed():
    class C(metaclass=et.ExtensibleType):
        __cslots__ = CTYPES_TYPED


def with_ctypes_untyped():
    class C(metaclass=et.ExtensibleType):
        __cslots__ = CTYPES_UNTYPED


class Root(metaclass=et.ExtensibleType):
    __cslots__ = SLOTS


SUBCLASSES = [type(Root)(f"Sub{i}", (Root,), {}) for i in range(100)]
FLIP = [{"bench.iface.v1:member0": 0x2000}, {"bench.iface.v1:member0": 0x1000}]


def set_slots_100():
    et.set_slots(Root, FLIP[0])
    et.set_slots(Root, FLIP[1])


def sub_untyped():
    class C(UntypedBase):
        def member0(self):
            pass


def sub_typed():
    class C(TypedBase):  # 16 namespace checks; member0's slot is masked
        def member0(self):
            pass


def best_us(fn, number=2000, repeat=7):
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number * 1e6


ROWS = {
    "plain": plain,
    "plain_meta": plain_meta,
    "cslots": with_cslots,
    "typed": with_typed_cslots,
    "ctypes_typed": with_ctypes_typed,
    "ctypes_untyped": with_ctypes_untyped,
    "sub_untyped": sub_untyped,
    "sub_typed": sub_typed,
    "set_slots_100": set_slots_100,
}

if __name__ == "__main__":
    if sys.argv[1:2] == ["--callgrind"]:
        fn = ROWS[sys.argv[2]]
        fn()
        for _ in range(int(sys.argv[3])):
            fn()
        sys.exit(0)
    base = best_us(plain)
    rows = [
        ("plain class, 16 attributes", base),
        ("ExtensibleType, 16 attributes, no slots", best_us(plain_meta)),
        ("ExtensibleType, 16 __cslots__", best_us(with_cslots)),
        ("ExtensibleType, 16 typed __cslots__", best_us(with_typed_cslots)),
        ("ExtensibleType, 16 ctypes callbacks, typed", best_us(with_ctypes_typed)),
        ("ExtensibleType, 16 ctypes callbacks", best_us(with_ctypes_untyped)),
        ("subclass of 16 untyped slots, 1 method", best_us(sub_untyped)),
        ("subclass of 16 typed slots, 1 override", best_us(sub_typed)),
    ]
    for name, us in rows:
        print(f"{name:44s} {us:8.2f} µs  {us / base:5.2f}x")
    # Two set_slots calls per repetition, each republishing Root and its 100
    # subclasses (per subclass, as issue figures count it).
    per_sub = best_us(set_slots_100, number=50) / 2 / 100
    print(f"{'set_slots on a class with 100 subclasses, per subclass':44s} {per_sub:8.2f} µs")
    targets = [
        ("16 __cslots__ (int addresses) <= 1.3x plain", rows[2][1] / base, 1.3, "x"),
        ("16 ctypes callbacks (typed keys) <= 2.5x plain", rows[4][1] / base, 2.5, "x"),
        ("set_slots per republished subclass <= 1 µs", per_sub, 1.0, " µs"),
    ]
    for what, got, limit, unit in targets:
        print(f"target: {what} -> {got:.2f}{unit} {'met' if got <= limit else 'MISSED'}")
