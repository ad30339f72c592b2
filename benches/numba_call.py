"""Typed method calls from numba @njit code (extensibletype.numba) against
calling the Python method.

    python benches/numba_call.py [--n N] [--reps R]

Needs numba, a C compiler and (for the Cython row) Cython, in the
interpreter that has extensibletype installed (.venv/3.11 of
scripts/test.sh). Sums `area()` over N objects of one provider and prints a
Markdown table, ns per object (min over R runs):

- njit `call_method` (lookup + typed call per object),
- njit `find_method` once + `call_found` per object (lookup hoisted),
- njit calling the Python method through `numba.objmode` per object,
- `@jit(forceobj=True)` loop calling the Python method (object mode),
- a plain Python loop, `sum(s.area() for s in shapes)`.

Providers: examples/c/geom_provider.c (`Circle`, a type made with the
metaclass: the inline probe), examples/cython/geom_provider.pyx (`Square`),
and a plain Python class whose slot is a numba `@cfunc` (registered with
set_slots: the foreign registry, answered by the runtime's find_slow).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python" / "tests"))

import cbuild  # noqa: E402
import numba  # noqa: E402
from numba import cfunc, njit, types  # noqa: E402

import extensibletype as et  # noqa: E402
import extensibletype.numba as etn  # noqa: E402

AREA = "geom.Shape.v1:area#f64(O)"


@njit
def typed(addrs):
    s = 0.0
    for a in addrs:
        s += etn.call_method(a, AREA)
    return s


@njit
def hoisted(addrs):
    s = 0.0
    f = etn.find_method(addrs[0], AREA)
    for a in addrs:
        s += etn.call_found(f, AREA, a)
    return s


_SHAPES: list = []  # what objmode_loop reads (njit cannot take the list)


def _py_area(i):
    return _SHAPES[i].area()


@njit
def objmode_loop(n):
    s = 0.0
    for i in range(n):
        with numba.objmode(x="float64"):
            x = _py_area(i)
        s += x
    return s


@numba.jit(forceobj=True)
def forceobj_loop(shapes):
    s = 0.0
    for x in shapes:
        s += x.area()
    return s


@cfunc(types.float64(types.voidptr))
def nb_area(obj):
    return 7.0


class NumbaShape:
    def area(self):
        return 7.0


def best(f, reps, n):
    out = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        f()
        out = min(out, time.perf_counter() - t)
    return out / n * 1e9


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--reps", type=int, default=7)
    a = ap.parse_args()
    et.set_slots(NumbaShape, {AREA: nb_area})
    providers = {"C `Circle`": cbuild.example_extension("geom_provider").Circle}
    try:
        import Cython  # noqa: F401

        providers["Cython `Square`"] = cbuild.cython_extension(cbuild.EXAMPLES_CYTHON / "geom_provider.pyx").Square
    except ImportError:
        pass
    providers["numba cfunc (foreign)"] = lambda _: NumbaShape()
    print(f"numba {numba.__version__}, Python {sys.version.split()[0]}, N = {a.n}, ns per object\n")
    print("| provider | njit `call_method` | njit hoisted `call_found` | njit + `objmode` | `forceobj` loop | Python loop |")
    print("|---|---|---|---|---|---|")
    for name, make in providers.items():
        shapes = [make(1.0) for _ in range(a.n)]
        addrs = etn.addresses(shapes)
        want = sum(s.area() for s in shapes)
        for f in (typed, hoisted):
            assert abs(f(addrs) - want) < 1e-6 * abs(want)
        _SHAPES[:] = shapes[: max(1, a.n // 10)]  # objmode is slow: fewer objects
        n_small = len(_SHAPES)
        objmode_loop(n_small)
        forceobj_loop(shapes)
        row = [
            best(lambda: typed(addrs), a.reps, a.n),
            best(lambda: hoisted(addrs), a.reps, a.n),
            best(lambda: objmode_loop(n_small), a.reps, n_small),
            best(lambda: forceobj_loop(shapes), a.reps, a.n),
            best(lambda: sum(s.area() for s in shapes), a.reps, a.n),
        ]
        print(f"| {name} | " + " | ".join(f"{x:.1f}" for x in row) + " |")


if __name__ == "__main__":
    main()
