"""extensibletype.bind from Python against the Python method of the same
name (issue: `bind(obj, key)()` at most 1.5x the Python method). One run;
the best of 5 repeats of 200,000 calls each.

    .venv/3.11/bin/python benches/bind.py

Uses the typed-method example provider (examples/c/geom_provider.c, built
with python/tests/cbuild.py), whose Circle has both the typed slots and the
Python methods (C methods, METH_NOARGS / METH_O), and a Python subclass
whose `area` is a Python function (masking the typed slot where Python
overrides mask; then bind misses and the row says so).
"""

import sys
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python" / "tests"))

import cbuild  # noqa: E402
import extensibletype as et  # noqa: E402

AREA = "geom.Shape.v1:area#f64(O)"
SCALED = "geom.Shape.v1:scaled#f64(O,f64)!e"
N = 200_000


def best(stmt, env):
    return min(timeit.repeat(stmt, globals=env, number=N, repeat=5)) / N * 1e9


def main():
    p = cbuild.example_extension("geom_provider")
    c = p.Circle(2.0)
    bind = et.bind
    env = dict(c=c, bind=bind, AREA=AREA, SCALED=SCALED, area=bind(c, AREA), scaled=bind(c, SCALED))

    class PyCircle:
        def area(self):
            return 12.566370614359172

    env["py"] = PyCircle()
    rows = [
        ("c.area()  (C method)", "c.area()"),
        ("py.area()  (Python function)", "py.area()"),
        ("bind(c, AREA)()", "bind(c, AREA)()"),
        ("area()  (bound once)", "area()"),
        ("bind(c, AREA)  (no call)", "bind(c, AREA)"),
        ("c.scaled(2.0)", "c.scaled(2.0)"),
        ("bind(c, SCALED)(2.0)", "bind(c, SCALED)(2.0)"),
        ("scaled(2.0)  (bound once)", "scaled(2.0)"),
    ]
    ns = {name: best(stmt, env) for name, stmt in rows}
    for name, _ in rows:
        print(f"{name:32s} {ns[name]:8.1f} ns")
    print(f"bind(c, AREA)() / c.area():          {ns['bind(c, AREA)()'] / ns['c.area()  (C method)']:.1f}x")
    print(f"bind(c, AREA)() / py.area():         {ns['bind(c, AREA)()'] / ns['py.area()  (Python function)']:.1f}x")
    print(f"bind(c, SCALED)(2.0) / c.scaled(2.0): {ns['bind(c, SCALED)(2.0)'] / ns['c.scaled(2.0)']:.1f}x")


if __name__ == "__main__":
    main()
