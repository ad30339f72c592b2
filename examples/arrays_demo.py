"""Duck-typed arrays (array.v1): providers, kernels, and what a view costs.

Run with the venv python (after ``bash scripts/test.sh`` or
``bash scripts/demo.sh``), e.g.::

    .venv/3.11/bin/python examples/arrays_demo.py [--quick] [--blas-threads N]

1. Registers the providers (``import extensibletype.arrays``) and runs the
   generic kernels ``sum``, ``dot``, ``axpy`` on every provider and provider
   pair, checked against NumPy.
2. Measures, in one compiled loop per method (``_bench_view_cost``), the
   per-call cost of getting an array view from C: array.v1 through the slot
   table against the buffer protocol, ``__array_struct__``, ``__dlpack__``
   and ``__array_interface__``, on a NumPy array and on an ``Array``.
3. DLPack from C on the same ``Array``: the exchange table's non-owning
   fill (``dltensor_from_py_object_no_sync``), its managed export + deleter,
   and ``__dlpack__()`` through Python, next to array.v1.
4. Times the kernels against NumPy on 10^6 contiguous float64 and on
   ``x[::2]`` of 2·10^6 (best of several repeats).
5. With ``--lookup-json FILE`` (``scripts/demo.sh``): the slot lookup
   latency measured by ``python -m extensibletype bench --json``.

It ends with what the figures mean ("What this run shows").

NumPy's ``x @ y`` calls OpenBLAS, which by default runs one busy-waiting
thread per core; our kernels use the cores too from PAR_MIN = 2^20 elements (a small
pool), NumPy's ufunc loops (``x.sum()``, ``y += a * x``) are single-threaded.
The demo leaves NumPy's default BLAS threads (``--blas-threads N`` sets
``OPENBLAS_NUM_THREADS=N`` before NumPy loads). On machines where
``OPENBLAS_CORETYPE`` is forced (an old-OpenBLAS workaround), run the demo
with it unset to time a current NumPy at its best:
``env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python examples/arrays_demo.py``.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

ARGS = argparse.ArgumentParser(description=__doc__.split("\n")[0])
ARGS.add_argument("--quick", action="store_true", help="fewer repeats (a smoke run)")
ARGS.add_argument("--lookup-json", metavar="FILE", help="results of `python -m extensibletype bench --json` "
                  "(scripts/demo.sh) to show and summarise with the rest")
ARGS.add_argument("--blas-threads", type=int, default=0, help="OPENBLAS_NUM_THREADS for NumPy's dot (0: NumPy's default)")
OPTS = ARGS.parse_args()
if OPTS.blas_threads > 0:
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, str(OPTS.blas_threads))

import array  # noqa: E402

import numpy as np  # noqa: E402

import extensibletype.arrays as xa  # noqa: E402  (registers the providers)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from python_array_provider import CtypesArray  # noqa: E402


def table(headers, rows, align=None):
    """A GitHub-markdown table (also readable as plain text)."""
    cells = [[str(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    align = align or ["<"] + [">"] * (len(headers) - 1)

    def line(values):
        return "| " + " | ".join(f"{v:{a}{w}}" for v, a, w in zip(values, align, widths)) + " |"

    print(line(headers))
    print("|" + "|".join(("-" * (w + 1) + ":" if a == ">" else "-" * (w + 2)) for a, w in zip(align, widths)) + "|")
    for r in cells:
        print(line(r))
    print()


# ---------------------------------------------------------------------------
# 1. kernels across providers


def make(provider, a):
    """A provider object holding the values of NumPy array a (None if the
    provider cannot represent its layout)."""
    if provider == "numpy":
        return a
    if provider == "Array":
        out = xa.Array(a.shape, a.dtype.name)
        np.asarray(out)[...] = a
        return out
    if provider == "memoryview":
        return memoryview(a) if a.ndim else None
    if provider == "array.array":
        return array.array({"float64": "d", "float32": "f", "int64": "q"}[a.dtype.name], a.ravel().tolist()) if a.ndim == 1 else None
    if provider == "ctypes (Python)":
        return CtypesArray(np.ascontiguousarray(a).ravel().tolist(), shape=a.shape, dtype=a.dtype.name)
    raise ValueError(provider)


def contents(obj, like):
    if isinstance(obj, CtypesArray):
        return np.array(obj.tolist(), dtype=like.dtype).reshape(like.shape)
    return np.asarray(obj).reshape(like.shape)


PROVIDERS = ["numpy", "Array", "memoryview", "array.array", "ctypes (Python)"]


def layouts(dtype, seed):
    rng = np.random.default_rng(seed)
    base = rng.integers(-99, 99, (6, 8)).astype(dtype) if dtype == "int64" else (rng.random((6, 8)) + 0.5).astype(dtype)
    return {"1-d": base[2].copy(), "2-d": base, "transposed": base.T, "steps": base[::2, 1::3], "reversed": base[::-1, ::-2]}


def check_pair(px, py):
    """Run sum/dot/axpy for every dtype and layout both providers support;
    return (cases, failures)."""
    cases, fails = 0, []
    for dtype in ("float64", "float32", "int64"):
        xs, ys = layouts(dtype, 1), layouts(dtype, 2)
        for name in xs:
            a, b = xs[name], ys[name].copy() if py == "numpy" else ys[name]
            x, y = make(px, a), make(py, b)
            if x is None or y is None:
                continue
            if py == "memoryview":
                y = memoryview(ys[name].copy())
                b = np.asarray(y)
            cases += 1
            tol = dict(rtol=1e-5) if dtype == "float32" else dict(rtol=1e-12)
            ok = np.isclose(xa.sum(x), a.astype(np.float64).sum() if dtype != "int64" else a.sum(), **tol)
            ok &= np.isclose(xa.dot(x, y), (a.astype(np.float64) * b).sum() if dtype != "int64" else (a * b).sum(), **tol)
            alpha = 3 if dtype == "int64" else 1.5
            expect = contents(y, b) + np.asarray(alpha, dtype) * a
            xa.axpy(alpha, x, y)
            ok &= np.allclose(contents(y, b), expect, **tol)
            if not ok:
                fails.append(f"{dtype} {name}")
    return cases, fails


def section_kernels():
    print("## 1. Generic kernels on every provider (checked against NumPy)\n")
    rows = []
    sample = layouts("float64", 3)["steps"]
    for p in PROVIDERS:
        obj = make(p, sample) if p not in ("array.array",) else make(p, sample[0].copy())
        ref = sample if p != "array.array" else sample[0]
        layout = "(6, 8)[::2, 1::3]" if p not in ("Array", "ctypes (Python)", "array.array") else f"{ref.shape} copy"
        rows.append([p, type(obj).__name__, layout, f"{xa.sum(obj):.12g}", f"{ref.sum():.12g}", f"{xa.dot(obj, obj):.12g}", f"{(ref * ref).sum():.12g}"])
    table(["provider", "type", "x", "sum(x)", "NumPy x.sum()", "dot(x, x)", "NumPy (x*x).sum()"], rows,
          align=["<", "<", "<", ">", ">", ">", ">"])

    rows = []
    for px in PROVIDERS:
        row = [px]
        for py in PROVIDERS:
            cases, fails = check_pair(px, py)
            row.append(f"ok ({cases})" if not fails else f"FAIL {fails[0]}")
        rows.append(row)
    print("sum(x), dot(x, y), axpy(a, x, y) for x (rows) and y (columns) from different providers; float64,")
    print("float32, int64 x 1-d, 2-d, transposed, stepped and reversed layouts where the provider has them")
    print("(number of cases in parentheses):\n")
    table(["x \\ y"] + PROVIDERS, rows)


# ---------------------------------------------------------------------------
# 2. view cost


VIEW_METHODS = [
    ("slots", "array.v1: find acquire+release in the slot table, acquire, release"),
    ("slots_cached", "array.v1: acquire + release (provider looked up once per type)"),
    ("find", "array.v1: the two slot lookups alone"),
    ("buffer", "buffer protocol: PyObject_GetBuffer(RECORDS_RO) + PyBuffer_Release"),
    ("array_struct", "__array_struct__: attribute get + capsule pointer"),
    ("dlpack", "__dlpack__(): call + capsule (+ its deleter)"),
    ("array_interface", "__array_interface__: attribute get + dict parse"),
]


def view_cost(obj, method, rounds, iterations):
    try:
        return min(xa._impl._bench_view_cost(obj, method, iterations) for _ in range(rounds))
    except (AttributeError, TypeError, BufferError):
        return None


def section_view_cost(quick):
    rounds, iterations = (3, 200_000) if quick else (7, 1_000_000)
    objs = {"NumPy array": np.zeros(1000), "Array": xa.Array(1000)}
    print(f"## 2. Per-call cost of getting an array view from C (ns; best of {rounds} x {iterations:,} calls, compiled loop)\n")
    # __array_interface__ costs ~100x the others: 1/20 of the calls (it used
    # to be timed with all of them first, then again: 60% of the demo's time).
    slow = {"array_interface": max(iterations // 20, 1000)}
    results = {m: {k: view_cost(o, m, rounds, slow.get(m, iterations)) for k, o in objs.items()} for m, _ in VIEW_METHODS}
    rows = []
    for m, label in VIEW_METHODS:
        rows.append([label] + [("n/a" if v is None else f"{v:.1f}") for v in results[m].values()])
    for key, label in (("slots", "buffer protocol / array.v1 (find + acquire + release)"), ("slots_cached", "buffer protocol / array.v1 (acquire + release)")):
        rows.append([label] + [f"{results['buffer'][k] / results[key][k]:.1f}x" for k in objs])
    table(["method"] + list(objs), rows)
    return results


# ---------------------------------------------------------------------------
# 3. DLPack from C


DLPACK_METHODS = [
    ("v1", "array.v1: find acquire+release, acquire, release", lambda a, n: xa._impl._bench_view_cost(a, "slots", n)),
    ("v1_cached", "array.v1: acquire + release (provider cached per type)", lambda a, n: xa._impl._bench_view_cost(a, "slots_cached", n)),
    ("fill_lookup", "DLPack C: type attribute + capsule + dltensor_from_py_object_no_sync", lambda a, n: xa._impl._bench_dlpack_cost(a, "fill_lookup", n)),
    ("fill", "DLPack C: dltensor_from_py_object_no_sync (table cached per type)", lambda a, n: xa._impl._bench_dlpack_cost(a, "fill", n)),
    ("managed", "DLPack C: managed_tensor_from_py_object_no_sync + deleter", lambda a, n: xa._impl._bench_dlpack_cost(a, "managed", n)),
    ("dunder", "__dlpack__(max_version=(1, 3)) through Python + capsule + deleter", lambda a, n: xa._impl._bench_dlpack_cost(a, "dunder", n)),
    ("legacy", "__dlpack__() (legacy capsule) through Python + deleter", lambda a, n: xa._impl._bench_view_cost(a, "dlpack", n)),
]


def section_dlpack(quick):
    rounds, iterations = (3, 100_000) if quick else (7, 500_000)
    a = xa.Array(1000)
    print(f"## 3. DLPack vs array.v1 from C on the same Array (ns per call; best of {rounds} x {iterations:,})\n")
    res = {k: min(f(a, iterations) for _ in range(rounds)) for k, _, f in DLPACK_METHODS}
    table(["method", "ns"], [[label, f"{res[k]:.1f}"] for k, label, _ in DLPACK_METHODS])
    return res


# ---------------------------------------------------------------------------
# 4. kernel timings


def best_us(f, repeats):
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - t)
    return best * 1e6


def section_kernel_timings(quick):
    repeats = 5 if quick else 25
    rng = np.random.default_rng(0)
    x, y = rng.random(10**6), rng.random(10**6)
    X, Y = rng.random(2 * 10**6), rng.random(2 * 10**6)
    cases = {"contiguous 10^6": (x, y), "strided x[::2] of 2*10^6": (X[::2], Y[::2])}
    print(f"## 4. Kernels against NumPy, float64 (us, best of {repeats}; kernels: {xa._impl._isa()}, "
          f"{xa._impl._set_threads(0)[0]} thread(s) from {xa._impl.PAR_MIN:,} elements)\n")
    rows, ratios = [], {}
    for label, (a, b) in cases.items():
        yb = b.copy() if b.flags.c_contiguous else Y.copy()[::2]
        ya = xa.Array(a.shape)  # a y from another provider: mixed-provider axpy/dot
        np.asarray(ya)[...] = yb

        def np_axpy():
            yb.__iadd__(1.5 * a)  # y += a * x

        timings = [
            ("sum", "x.sum()", lambda: a.sum(), "sum(x)", lambda: xa.sum(a)),
            ("axpy", "y += 1.5 * x", np_axpy, "axpy(1.5, x, y)", lambda: xa.axpy(1.5, a, yb)),
            ("dot", "x @ y", lambda: a @ b, "dot(x, y)", lambda: xa.dot(a, b)),
        ]
        for name, np_label, np_f, xa_label, xa_f in timings:
            t_np, t_xa = best_us(np_f, repeats), best_us(xa_f, repeats)
            ratios[(label, name)] = t_xa / t_np
            rows.append([label, f"{np_label} vs {xa_label}", f"{t_np:.0f}", f"{t_xa:.0f}", f"{t_np / t_xa:.2f}x"])
        if label.startswith("contiguous"):
            t = best_us(lambda: xa.dot(a, ya), repeats)
            rows.append([label, "dot(NumPy x, Array y)", "", f"{t:.0f}", ""])
    table(["data", "operation (NumPy vs array.v1)", "NumPy us", "array.v1 us", "speed-up"], rows,
          align=["<", "<", ">", ">", ">"])
    return ratios


def main():
    info = xa.NUMPY_ADAPTER if xa.NUMPY_FALLBACK_REASON is None else f"{xa.NUMPY_ADAPTER} ({xa.NUMPY_FALLBACK_REASON})"
    print(f"# extensibletype array.v1 demo\n")
    print(f"CPython {platform.python_version()} ({'free-threaded' if not getattr(sys, '_is_gil_enabled', lambda: True)() else 'GIL'}), "
          f"NumPy {np.__version__} (ndarray adapter: {info}), kernels: {xa._impl._isa()}, "
          f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}, "
          f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', 'unset')}, {os.cpu_count()} CPUs\n")
    section_kernels()
    cost = section_view_cost(OPTS.quick)
    dl = section_dlpack(OPTS.quick)
    ratios = section_kernel_timings(OPTS.quick)

    lookups = section_lookup(OPTS.lookup_json) if OPTS.lookup_json else None
    takeaway(cost, dl, ratios, lookups)


# ---------------------------------------------------------------------------
# 5. slot lookups (python -m extensibletype bench --json, run by scripts/demo.sh)


def section_lookup(path):
    import json

    from extensibletype.bench import format_table

    data = json.loads(Path(path).read_text())
    print("## 5. Slot lookup latency from C (python -m extensibletype bench)\n")
    print("```text")
    print(format_table(data["environment"], data["results"]))
    print("```\n")
    return {r["case"]: r["ns"] for r in data["results"]}


# ---------------------------------------------------------------------------
# What the figures mean


def compare(a, b, name_a, name_b):
    """'A and B cost about the same (a vs b ns)' within 15%, else which is cheaper."""
    if max(a, b) <= 1.15 * min(a, b):
        return f"{name_a} and {name_b} cost about the same ({a:.1f} vs {b:.1f} ns)"
    cheap, dear = ((name_a, a), (name_b, b)) if a < b else ((name_b, b), (name_a, a))
    return f"{cheap[0]} is cheaper ({cheap[1]:.1f} ns vs {dear[1]:.1f} ns for {dear[0]})"


def takeaway(cost, dl, ratios, lookups):
    print("## What this run shows\n")
    points = []
    if lookups:
        slot = [ns for case, ns in lookups.items() if "hit" in case or "miss" in case]
        points.append(
            f"Finding a C implementation on any object's type costs {min(slot):.1f}-{max(slot):.1f} ns "
            f"(section 5): a hit or a miss, on a class made with the metaclass, a type registered from outside "
            f"(bytearray) or a type with no slots at all (float, object), so a consumer can probe every object it "
            f"gets. CPython's fixed slots (PyType_GetSlot, {lookups['PyType_GetSlot(float, nb_add)']:.1f} ns) "
            f"are cheaper but closed; the open alternative, an attribute plus a capsule, costs "
            f"{lookups['PyObject_GetAttr + PyCapsule_GetPointer']:.1f} ns and needs the GIL."
        )
    points.append(
        "One C interface, five kinds of array: NumPy arrays, extensibletype's Array, memoryview, array.array and a "
        "pure-Python ctypes class all went through the same compiled kernels, in every pair, and gave NumPy's "
        "results (section 1). The kernels were written once against array.v1, with no per-type code and no copies."
    )
    np_full, np_cached, np_buf = (cost[m]["NumPy array"] for m in ("slots", "slots_cached", "buffer"))
    ar_full, ar_buf = cost["slots"]["Array"], cost["buffer"]["Array"]
    ai = cost["array_interface"]["NumPy array"]
    points.append(
        f"Getting a view of a NumPy array from C: {np_full:.1f} ns through array.v1, slot lookup included "
        f"({np_cached:.1f} ns when the consumer keeps the provider per type), against {np_buf:.1f} ns for the "
        f"buffer protocol ({np_buf / np_full:.1f}x) and {ai:.0f} ns for __array_interface__ (section 2). "
        f"On extensibletype's own Array, {compare(ar_full, ar_buf, 'array.v1', 'the buffer protocol')}: "
        f"Array exports its buffer cheaply; the gain is on types whose buffer export does work, like NumPy's."
    )
    points.append(
        f"DLPack from C on the same Array (section 3): array.v1 takes {dl['v1']:.1f} ns against "
        f"{dl['fill_lookup']:.1f} ns for DLPack's C exchange table found through its type attribute; with both "
        f"looked up once per type, {compare(dl['v1_cached'], dl['fill'], 'array.v1', 'the DLPack fill')}. Calling "
        f"__dlpack__() through Python costs {dl['dunder']:.0f} ns, {dl['dunder'] / dl['v1']:.0f}x more: from C, "
        f"use a C-level path."
    )
    contiguous = {name: r for (label, name), r in ratios.items() if label.startswith("contiguous")}
    strided = {name: r for (label, name), r in ratios.items() if not label.startswith("contiguous")}
    fmt = lambda d: ", ".join(f"{n} {1 / r:.1f}x" for n, r in d.items())
    points.append(
        f"The generic kernels against NumPy on float64 (section 4; speed-up = NumPy's time / ours): "
        f"contiguous 10^6 {fmt(contiguous)}; strided {fmt(strided)}. Ours use {xa._impl._set_threads(0)[0]} "
        f"thread(s) from {xa._impl.PAR_MIN:,} elements, NumPy's ufuncs one. They show that code generic over "
        f"every provider need not be slow; NumPy's own operations are not the thing replaced."
    )
    for n, text in enumerate(points, 1):
        print(f"{n}. {text}\n")
    print("Figures vary by 10-20% between runs on a shared machine: compare the ratios within one run. More: "
          "docs/arrays.md (array.v1), docs/benchmarks.md, docs/c-api.md.")

if __name__ == "__main__":
    main()
