"""Driver of benches/c/abi3t.c: lookups from the same consumer compiled for
the full C API and for abi3t, on CPython 3.15 (one process, one run).

    python benches/c/abi3t.py [--quick] [--reps N]

Prints a Markdown table of ns per operation (min over interleaved reps):
columns full API, abi3t (as shipped: ob_type read at the offset the runtime
measured), abi3t calling Py_TYPE() (what it cost before), and the ratio
abi3t / full API.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "python" / "tests"))

import cbuild  # noqa: E402

ABI3T = ["-DPy_TARGET_ABI3T=0x030f0000"]


def build(name, flags):
    import extensibletype

    incs = [Path(extensibletype.get_include())]
    try:
        import numpy

        incs.append(Path(numpy.get_include()))
        flags = flags + ["-DET_BENCH_NUMPY"]
    except ImportError:
        pass
    path = cbuild.build(name, [HERE / "abi3t.c"], include_dirs=incs,
                        cflags=cbuild.STRICT + [f"-DBENCH_NAME={name}"] + flags)
    return cbuild.load(path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--reps", type=int, default=30)
    args = ap.parse_args()
    if sys.version_info < (3, 15):
        sys.exit("abi3t needs CPython 3.15+ (run benches/c/abi3t.sh: it uses the forky chroot)")

    import extensibletype as et

    mods = {
        "full": build("_et_abi3t_bench_full", []),
        "abi3t": build("_et_abi3t_bench_abi3t", ABI3T),
        "pytype": build("_et_abi3t_bench_pytype", ABI3T),
    }
    mods["pytype"].use_py_type()
    assert mods["full"].info()[0] == 0 and mods["abi3t"].info()[0] == 1
    assert mods["abi3t"].info()[2] == 1 and mods["pytype"].info()[2] == 0

    key = "bench.abi3t.v1:hit"
    Ext = et.ExtensibleType("Ext", (), {})
    et.set_slots(Ext, {key: 0x1000, "bench.abi3t.v1:other": 0x2000})
    ext = Ext()
    hit, miss = et.prehash(key), et.prehash("bench.abi3t.v1:absent")
    rows = [
        ("hit, extensible class", "find", ext, hit),
        ("miss, extensible class", "find", ext, miss),
        ("miss, plain object (`object()`)", "find", object(), hit),
    ]
    numpy = mods["full"].info()[1]
    if numpy:
        import numpy as np

        import extensibletype.arrays  # noqa: F401  (registers the ndarray adapter)

        arr = np.zeros((3, 4))
        acquire = et.prehash("extensibletype.array.v1:acquire")
        rows[1:1] = [("hit, NumPy array", "find", arr, acquire)]
        rows += [
            ("`ExtType_ArrayGetView` + release, NumPy array", "view", arr, 0),
            ("NumPy accessors (check, data, ndim, shape, strides, dtype)", "numpy", arr, 0),
        ]
    # Short reps, many of them: on a shared VM the minimum of many short
    # loops is steadier than a few long ones.
    n_find = 100_000 if args.quick else 300_000
    best = {}
    for _ in range(args.reps):
        for label, kind, obj, ident in rows:
            n = n_find if kind == "find" else n_find // 10
            for col, mod in mods.items():
                t = mod.time(kind, obj, ident, n)
                best[label, col] = min(best.get((label, col), float("inf")), t)

    print(f"CPython {sys.version.split()[0]}, {args.reps} reps, min ns per operation\n")
    print("| operation | full API | abi3t | abi3t, `Py_TYPE()` calls | abi3t / full |")
    print("|---|---:|---:|---:|---:|")
    for label, kind, _, _ in rows:
        f, a, p = best[label, "full"], best[label, "abi3t"], best[label, "pytype"]
        print(f"| {label} | {f:.2f} | {a:.2f} | {p:.2f} | {a / f:.2f}× |")
    if numpy:
        v, nv = best[rows[-2][0], "abi3t"], best[rows[-1][0], "abi3t"]
        print(f"\narray.v1 view / NumPy accessors, both abi3t: {v / nv:.2f}×")


if __name__ == "__main__":
    main()
