"""Typed use of the public Python API, checked by `mypy --strict
--warn-unused-ignores` in scripts/typecheck.sh against the installed
package's stubs. Each `# type: ignore[...]` line is a call the stubs must
refuse (an unused ignore is an error). Never imported by the test suite."""

import ctypes
from typing import Any

import extensibletype as et
import extensibletype.arrays as xa

SCALE = ctypes.CFUNCTYPE(ctypes.c_double, ctypes.py_object, ctypes.c_double)


class Meters(metaclass=et.ExtensibleType):
    __cslots__ = {"demo.units.v1:scale": 0x1000}


def ids() -> list[int]:
    out: list[int] = [et.prehash("a"), et.prehash(b"a"), et.ABI_VERSION]
    return out


def slots() -> None:
    scale = SCALE(lambda self, x: x * 1000.0)
    et.set_slots(bytearray, {"demo.units.v1:scale": scale})
    et.set_slots(Meters, {0x1234: 0x2000, 0x5678: None})
    et.set_slots(Meters, {b"demo.units.v1:raw": ctypes.c_void_p(0x3000)})
    found: int | None = et.lookup(Meters(), "demo.units.v1:scale")
    by_id: int | None = et.lookup(Meters(), 0x1234)
    current: dict[str | int, int] = et.get_slots(Meters)
    info = et.table_info(Meters)
    size: int | str = info["size"]
    include: str = et.get_include()
    print(found, by_id, current, size, include)
    et.prehash(3)  # type: ignore[arg-type]
    et.set_slots("not a type", {})  # type: ignore[arg-type]
    et.lookup(Meters(), 1.5)  # type: ignore[arg-type]


def typed_methods() -> None:
    area = et.bind(Meters(), "geom.Shape.v1:area#f64(O)")
    if area is not None:
        value: Any = area()
        print(value)
    et.bind(Meters(), 0x1234)  # type: ignore[arg-type]


def typed() -> None:
    key: str = et.method_key("demo.units.v1:scale", "f64(O,f64)")
    et.set_slots(Meters, {key: SCALE(lambda self, x: x)})
    et.method_key("demo.units.v1:scale", b"f64(O)")  # type: ignore[arg-type]
    et.method_key("demo.units.v1:scale")  # type: ignore[call-arg]


def arrays() -> None:
    a = xa.Array((2, 3), dtype="float32")
    b = xa.Array(6)
    shape: tuple[int, ...] = a.shape
    a.fill(1.5)
    a.resize((3, 2))
    total: float | int = xa.sum(a) + xa.dot(b, b)
    xa.axpy(2.0, b, b)
    info = xa.view_info(a, xa.REQ_C_CONTIGUOUS)
    xa.register_buffer_type(bytearray)
    key: str = xa.KEY_ACQUIRE
    adapter: str | None = xa.NUMPY_ADAPTER
    print(shape, total, info["ndim"], key, adapter, len(a), a[0], xa.VIEW_LAYOUT["data"])
    a.fill("x")  # type: ignore[arg-type]
    xa.Array()  # type: ignore[call-arg]
    xa.ID_ACQUIRE = 1  # type: ignore[misc]
