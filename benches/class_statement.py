"""Cost of a class statement with 16 __cslots__ vs plain classes, same run.

    .venv/3.11/bin/python benches/class_statement.py   (after scripts/test.sh)

Prints µs per class statement (best of 7 repeats) and the ratio the project
targets: ExtensibleType with 16 __cslots__ <= 2x a plain class with 16
class attributes.
"""

import timeit

import extensibletype as et

SLOTS = {f"bench.iface.v1:member{i}": 0x1000 + 16 * i for i in range(16)}
ATTRS = {f"member{i}": 0x1000 + 16 * i for i in range(16)}
# Typed keys (docs/spec.md §4.1: Python overrides win): the mask's cost.
TYPED = {f"bench.iface.v1:member{i}#f64(O)": 0x1000 + 16 * i for i in range(16)}


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


if __name__ == "__main__":
    base = best_us(plain)
    rows = [
        ("plain class, 16 attributes", base),
        ("ExtensibleType, 16 attributes, no slots", best_us(plain_meta)),
        ("ExtensibleType, 16 __cslots__", best_us(with_cslots)),
        ("ExtensibleType, 16 typed __cslots__", best_us(with_typed_cslots)),
        ("subclass of 16 untyped slots, 1 method", best_us(sub_untyped)),
        ("subclass of 16 typed slots, 1 override", best_us(sub_typed)),
    ]
    for name, us in rows:
        print(f"{name:42s} {us:8.2f} µs  {us / base:5.2f}x")
    ratio = rows[2][1] / base
    print(f"target: 16 __cslots__ <= 2x plain -> {ratio:.2f}x {'met' if ratio <= 2 else 'MISSED'}")
