"""extensibletype.arrays' sum/dot/axpy against NumPy, float64, one run.

    python benches/kernels.py            # the table: 10^3 .. 10^7, contiguous and strided
    python benches/kernels.py --quick    # fewer repeats (a smoke run)
    python benches/kernels.py --sweep    # the thread-threshold sweep (needs a `hooks` build)
    python benches/kernels.py --stream   # dot's loops past the cache (needs a `hooks` build)

Both sides run with their default threads: NumPy's `x @ y` is OpenBLAS's
`ddot` (threaded by OpenBLAS), `x.sum()` and `y += a * x` are NumPy's
single-threaded ufunc loops; SciPy's BLAS `daxpy` replaces `y += a * x` as
the axpy reference when SciPy is installed. "strided" is `base[::2]` of a
buffer twice as long (every operand, y included). Each figure is the best
of `--repeats` samples, each sample a loop long enough to take ~0.5 ms;
NumPy and ours alternate sample by sample, so load from other processes
hits both alike. Before each sample the bench waits until the process's
other threads are idle (`settle`, at most 0.3 s): OpenBLAS's threads spin
for ~0.1 s after every threaded call (here: ~30 ms of CPU), so without the
wait the sample after NumPy's `x @ y` runs beside a thread burning a core
(on this 2-vCPU machine: our 10^7 strided `dot` 43 ms instead of 27 ms).
`--no-settle` measures that way. Ratios are ours / NumPy (< 1: ours is
faster).

`--sweep` times our kernels at n = 2^12 .. 2^21 (and 1.5 * 2^k) with one
thread and with the automatic count, the parallel threshold forced to 1
(`_set_par_min`), and prints, per operation, the smallest n where the
threaded time is lower and stays lower at >= 3/4 of the larger sizes: the
crossover that `par::PAR_MIN` is set from (docs/arrays.md, "Threads in the
kernels").

`--stream` times `dot` (float64, 10^5 .. 10^7, contiguous and strided)
in each of its loops against NumPy: the cached loop in its AVX-512 and
AVX2 versions and the streaming loop (prefetch, AVX2) forced for every
size (`_set_isa`, `_set_stream_min`), and the default choice; each ratio
against NumPy sampled in the same pairs, and NumPy's best and worst time
over those pairs. It is how `par::STREAM_MIN` was chosen, and the evidence
for the streaming loop's AVX2 version (the cached loop's AVX2 and AVX-512
columns) (docs/arrays.md, "Dot past the cache").
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import numpy as np

import extensibletype.arrays as xa

try:  # BLAS daxpy through SciPy, when installed
    from scipy.linalg.blas import daxpy as _daxpy
except ImportError:  # pragma: no cover - optional
    _daxpy = None


def calls_for(f, target=5e-4):
    """Calls per sample so that one sample takes about `target` seconds."""
    k = 1
    while True:
        t = time.perf_counter()
        for _ in range(k):
            f()
        dt = time.perf_counter() - t
        if dt >= target / 4 or k >= 1 << 16:
            return max(1, int(k * target / max(dt, 1e-9)))
        k *= 4


SETTLE = True


def settle(limit=0.3, quiet=5e-3):
    """Wait (at most `limit` s) until two `quiet`-second sleeps in a row cost
    the process under 2% of a CPU: no other thread of ours (OpenBLAS's
    spinning workers, our pool's bounded spin) is running."""
    if not SETTLE:
        return
    end = time.perf_counter() + limit
    calm = 0
    while calm < 2 and time.perf_counter() < end:
        c = time.process_time()
        time.sleep(quiet)
        calm = calm + 1 if time.process_time() - c < 0.02 * quiet else 0


def best_pair(fa, fb, repeats):
    """Best time per call (seconds) of fa and fb, sampled alternately."""
    ka, kb = calls_for(fa), calls_for(fb)
    ta = tb = float("inf")
    for _ in range(repeats):
        settle()
        t = time.perf_counter()
        for _ in range(ka):
            fa()
        ta = min(ta, (time.perf_counter() - t) / ka)
        settle()
        t = time.perf_counter()
        for _ in range(kb):
            fb()
        tb = min(tb, (time.perf_counter() - t) / kb)
    return ta, tb


def fmt_us(t):
    us = t * 1e6
    return f"{us:.2f}" if us < 10 else f"{us:.1f}" if us < 100 else f"{us:.0f}"


def header():
    load = os.getloadavg() if hasattr(os, "getloadavg") else ("?",) * 3
    gil = "free-threaded" if not getattr(sys, "_is_gil_enabled", lambda: True)() else "GIL"
    ref = "scipy daxpy" if _daxpy is not None else "y += a * x"
    print(
        f"CPython {platform.python_version()} ({gil}), NumPy {np.__version__}, kernels: {xa._impl._isa()}, "
        f"{os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), "
        f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}, "
        f"PAR_MIN={xa._impl.PAR_MIN}, "
        f"{'settled' if SETTLE else 'unsettled (--no-settle)'} samples, axpy reference: {ref}, "
        f"load average at start {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )


def table(repeats, exps):
    rng = np.random.default_rng(0)
    print(f"\nfloat64, best of {repeats}; us per call; ratio = ours / NumPy\n")
    print("| n | layout | op | NumPy | ours | ratio |")
    print("|--:|---|---|--:|--:|--:|")
    worst = {}
    for e in exps:
        n = 10**e
        for layout in ("contiguous", "strided"):
            if layout == "contiguous":
                x, y = rng.random(n), rng.random(n)
            else:
                x, y = rng.random(2 * n)[::2], rng.random(2 * n)[::2]
            # axpy's y (one for NumPy, one for ours: both are updated in place)
            yn, yo = (rng.random(n), rng.random(n)) if layout == "contiguous" else (
                rng.random(2 * n)[::2], rng.random(2 * n)[::2])

            if _daxpy is not None:

                def np_axpy(x=x, yn=yn):
                    _daxpy(x, yn, a=1e-3)  # in place for float64 (overwrite)

            else:

                def np_axpy(x=x, yn=yn):
                    yn += 1e-3 * x

            cases = [
                ("sum", lambda x=x: x.sum(), lambda x=x: xa.sum(x)),
                ("dot", lambda x=x, y=y: x @ y, lambda x=x, y=y: xa.dot(x, y)),
                ("axpy", np_axpy, lambda x=x, yo=yo: xa.axpy(1e-3, x, yo)),
            ]
            for op, fn, fo in cases:
                tn, to = best_pair(fn, fo, repeats)
                r = to / tn
                worst[op] = max(worst.get(op, 0), r)
                print(f"| 10^{e} | {layout} | {op} | {fmt_us(tn)} | {fmt_us(to)} | {r:.2f} |", flush=True)
    print("\nworst ratio per op: " + ", ".join(f"{k} {v:.2f}" for k, v in worst.items()))
    return worst


def sweep(repeats):
    impl = xa._impl
    if not hasattr(impl, "_set_par_min"):
        sys.exit("--sweep needs a build with feature `hooks` (scripts/lib.sh builds one)")
    threads = impl._set_threads(0)[0]
    print(f"\nsweep: contiguous float64, 1 thread vs {threads}, threshold forced to 1; "
          f"us per call, best of {repeats}\n")
    ns = sorted({int(m * 2**k) for k in range(12, 22) for m in (1, 1.5)})
    rng = np.random.default_rng(0)
    rows = {"sum": [], "dot": [], "axpy": []}
    print("| n | sum 1t | sum Nt | dot 1t | dot Nt | axpy 1t | axpy Nt |")
    print("|--:|--:|--:|--:|--:|--:|--:|")
    old = impl._set_par_min(1)
    try:
        for n in ns:
            x, y = rng.random(n), rng.random(n)
            fs = {
                "sum": lambda: xa.sum(x),
                "dot": lambda: xa.dot(x, y),
                "axpy": lambda: xa.axpy(1e-3, x, y),
            }
            cells = []
            for op, f in fs.items():

                def one(f=f):
                    impl._set_threads(1)
                    f()

                def many(f=f):
                    impl._set_threads(0)
                    f()

                t1, tn = best_pair(one, many, repeats)
                rows[op].append((n, t1, tn))
                cells += [fmt_us(t1), fmt_us(tn)]
            print(f"| {n} | " + " | ".join(cells) + " |", flush=True)
    finally:
        impl._set_par_min(old)
        impl._set_threads(0)
    print()
    for op, r in rows.items():
        # smallest n where threads are faster and stay faster at >= 3/4 of
        # the larger sizes (one noisy sample does not move it)
        cross = None
        for i in range(len(r)):
            rest = r[i:]
            wins = sum(tn < t1 for _, t1, tn in rest)
            if r[i][2] < r[i][1] and wins >= 0.75 * len(rest):
                cross = r[i][0]
                break
        gain = min(tn / t1 for _, t1, tn in r[-4:])
        print(f"crossover {op}: {cross if cross else 'none in this run'} "
              f"(best threaded/1-thread time ratio at the 4 largest n: {gain:.2f})")


def stream(repeats, passes, max_exp):
    impl = xa._impl
    if not hasattr(impl, "_set_stream_min"):
        sys.exit("--stream needs a build with feature `hooks` (scripts/lib.sh builds one)")
    never = 1 << 62
    variants = [("AVX-512 cached", "avx512", never), ("AVX2 cached", "avx2", never),
                ("AVX2 streaming", "avx2", 1), ("default", "best", 0)]
    variants = [v for v in variants if impl._set_isa(v[1])]
    impl._set_isa("best")
    print(f"\ndot, float64, ratio ours / NumPy, best of {repeats} per pair; {passes} pass(es)\n")
    print("| n | layout | NumPy us (min-max) | " + " | ".join(v[0] for v in variants) + " |")
    print("|--:|---|--:|" + "--:|" * len(variants))
    rng = np.random.default_rng(0)
    sizes = [(m, e) for e in (5, 6, 7) for m in ((1, 2, 4, 6) if e == 5 else (1,)) if e <= max_exp]
    for _ in range(passes):
        for m, e in sizes:
            n = m * 10**e
            for layout in ("contiguous", "strided"):
                if layout == "contiguous":
                    x, y = rng.random(n), rng.random(n)
                else:
                    x, y = rng.random(2 * n)[::2], rng.random(2 * n)[::2]
                cells, tns = [], []
                for _name, isa, threshold in variants:
                    impl._set_isa(isa)
                    old = impl._set_stream_min(threshold)
                    try:
                        tn, to = best_pair(lambda: x @ y, lambda: xa.dot(x, y), repeats)
                    finally:
                        impl._set_stream_min(old)
                        impl._set_isa("best")
                    tns.append(tn)
                    cells.append(f"{to / tn:.2f}")
                label = f"10^{e}" if m == 1 else f"{m}*10^{e}"
                print(f"| {label} | {layout} | {fmt_us(min(tns))}-{fmt_us(max(tns))} | " + " | ".join(cells) + " |",
                      flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="5 repeats instead of 15")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--sweep", action="store_true", help="the thread-threshold sweep instead of the table")
    ap.add_argument("--stream", action="store_true", help="dot's cached and streaming loops instead of the table")
    ap.add_argument("--passes", type=int, default=2, help="passes over the sizes for --stream (default 2)")
    ap.add_argument("--no-settle", action="store_true",
                    help="do not wait for other threads to go idle before each sample")
    ap.add_argument("--max-exp", type=int, default=7, help="largest n = 10^k in the table (default 7)")
    opts = ap.parse_args()
    repeats = opts.repeats or (5 if opts.quick else 15)
    global SETTLE
    SETTLE = not opts.no_settle
    header()
    if opts.sweep:
        sweep(repeats)
    elif opts.stream:
        stream(repeats, opts.passes, opts.max_exp)
    else:
        table(repeats, range(3, opts.max_exp + 1))


if __name__ == "__main__":
    main()
