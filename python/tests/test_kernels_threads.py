"""sum/dot/axpy on several threads for large inputs: results independent of
the thread count (a fixed split), small inputs on the single-threaded path."""

from __future__ import annotations

import math

import pytest

import extensibletype.arrays as xa

np = pytest.importorskip("numpy")

PAR_MIN = xa._impl.PAR_MIN
xa._unregister_providers()


@pytest.fixture(autouse=True, scope="module")
def providers_registered():
    xa._register_providers()
    yield
    xa._unregister_providers()


@pytest.fixture(autouse=True)
def restore_threads():
    yield
    xa._impl._set_threads(0)


@pytest.mark.parametrize("n", [PAR_MIN - 1, PAR_MIN, 3 * PAR_MIN + 17])
@pytest.mark.parametrize("dtype", ["float64", "float32", "int64"])
def test_thread_count_does_not_change_results(n, dtype):
    rng = np.random.default_rng(n)
    if dtype == "int64":
        x, y = rng.integers(-1000, 1000, n), rng.integers(-1000, 1000, n)
    else:
        x, y = rng.random(n).astype(dtype), rng.random(n).astype(dtype)
    out = {}
    for t in (1, 2, 3):
        xa._impl._set_threads(t)
        yy = y.copy()
        xa.axpy(3 if dtype == "int64" else 1.5, x, yy)
        out[t] = (xa.sum(x), xa.dot(x, y), yy.tobytes())
    assert out[1] == out[2] == out[3]
    if dtype == "float64":
        assert math.isclose(out[1][0], math.fsum(x), rel_tol=1e-13)
        assert math.isclose(out[1][1], math.fsum(x * y), rel_tol=1e-13)
    if dtype == "int64":
        assert out[1][0] == int(x.sum()) and out[1][1] == int(x @ y)


def test_two_threads_on_large_inputs():
    x = np.ones(8 * 10**6)
    threads, _ = xa._impl._set_threads(2)
    assert threads == 2
    # a worker usually joins (not guaranteed on a loaded machine: then the
    # caller computes every part itself, with the same result)
    for _ in range(20):
        assert xa.sum(x) == 8 * 10**6


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs os.fork")
def test_forked_child_computes_alone():
    """A child forked after the pool started has no workers: it must not
    wait for them, and gets the same result."""
    import os

    x = np.arange(4 * PAR_MIN, dtype=np.float64)
    xa._impl._set_threads(2)
    want = xa.sum(x)  # starts the pool
    r, w = os.pipe()
    import warnings

    with warnings.catch_warnings():  # 3.12+: "multi-threaded, fork() may deadlock" (the point of the test)
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # child
        try:
            ok = xa.sum(x) == want and xa.dot(x, x) == xa.dot(x, x)
            os.write(w, b"1" if ok else b"0")
        finally:
            os._exit(0)
    os.close(w)
    got = os.read(r, 1)
    os.waitpid(pid, 0)
    assert got == b"1"


def _layouts(n, rng):
    """(name, x, ybase, view) float64 operands of n elements in several
    layouts; y is view(ybase), so view(ybase.copy()) is a fresh y of the
    same layout."""
    out = [("contiguous", rng.random(n), rng.random(n), lambda b: b)]
    for k in (2, 3):
        out.append((f"[::{k}]", rng.random(k * n)[::k], rng.random(k * n), lambda b, k=k: b[::k]))
    out.append(("[::-1]", rng.random(n)[::-1], rng.random(n), lambda b: b[::-1]))
    out.append(("mixed strides", rng.random(n), rng.random(2 * n), lambda b: b[::2]))
    if n % 2 == 0:  # 2-d, non-contiguous rows
        out.append(("2-d [:, ::2]", rng.random((2, n))[:, ::2], rng.random((2, n)), lambda b: b[:, ::2]))
    return out


def _check_against_numpy(x, ybase, view):
    """sum/dot/axpy equal NumPy within tolerance and equal across thread counts."""
    y = view(ybase)
    assert x.shape == y.shape
    want_sum, want_dot = float(x.sum()), float((x * y).sum())  # NumPy's pairwise sums
    want_axpy = y + 1.5 * x
    got = []
    for t in (1, 2):
        xa._impl._set_threads(t)
        yy = view(ybase.copy())
        xa.axpy(1.5, x, yy)
        s, d = xa.sum(x), xa.dot(x, y)
        assert math.isclose(s, want_sum, rel_tol=1e-12)
        assert math.isclose(d, want_dot, rel_tol=1e-12)
        np.testing.assert_allclose(yy, want_axpy, rtol=1e-15, atol=0)
        got.append((s, d, yy.tobytes()))
    assert got[0] == got[1]


@pytest.mark.parametrize("n", [PAR_MIN - 1, PAR_MIN, PAR_MIN + 1, PAR_MIN + 511])
def test_threshold_boundaries_against_numpy(n):
    """Just below / at / above the threshold, every layout: NumPy's results
    (within tolerance), the same bits on 1 and 2 threads."""
    for name, x, ybase, view in _layouts(n, np.random.default_rng(n)):
        _check_against_numpy(x, ybase, view)


def test_strided_and_2d_inputs_above_the_threshold_split():
    """As test_strided_and_2d_large_inputs_split_too, at a size above
    PAR_MIN whatever its value (the split is used, workers may join)."""
    rng = np.random.default_rng(2)
    rows = 2 * (PAR_MIN // 800 + 1)
    big = rng.random((rows, 800))
    for v in [big, big[:, ::2], big.T, big[::-1, 3:]]:
        assert v.size >= PAR_MIN
        res = []
        for t in (1, 2):
            xa._impl._set_threads(t)
            res.append((xa.sum(v), xa.dot(v, v)))
        assert res[0] == res[1]
        assert math.isclose(res[0][0], math.fsum(v.ravel()), rel_tol=1e-12)
        assert math.isclose(res[0][1], math.fsum((v * v).ravel()), rel_tol=1e-12)


@pytest.mark.parametrize("n", [1023, 1024, 1025, 1536, 4097])
def test_forced_low_threshold_halves(n):
    """A threshold below 2 parts' worth (the sweep's setting) cuts the input
    in two halves of whole grains: still NumPy's results, same bits on 1 and
    2 threads, and below the forced threshold the single-threaded loop."""
    old = xa._impl._set_par_min(1024)
    try:
        for name, x, ybase, view in _layouts(n, np.random.default_rng(n)):
            _check_against_numpy(x, ybase, view)
    finally:
        xa._impl._set_par_min(old)


@pytest.mark.parametrize("hook", ["_set_par_min", "_set_stream_min"])
def test_threshold_hook_round_trip(hook):
    f = getattr(xa._impl, hook)
    old = f(5000)
    try:
        assert f(old) == 5000
    finally:
        f(old)
    with pytest.raises(ValueError):
        f(-1)


def test_python_threads_call_kernels_at_once():
    """Several Python threads calling the threaded kernels simultaneously
    (the GIL is released, callers race for the one pool slot): every call
    returns the result computed alone."""
    import threading

    rng = np.random.default_rng(7)
    n = PAR_MIN + PAR_MIN // 2 + 5
    shared = rng.random(n)
    jobs = []
    for i in range(4):
        x = rng.random(2 * n)[::2] if i % 2 else rng.random(n)
        y = rng.random(n)
        jobs.append((x, y))
    xa._impl._set_threads(2)
    want = []
    for x, y in jobs:
        yy = y.copy()
        xa.axpy(0.5, x, yy)
        want.append((xa.sum(x), xa.dot(x, y), xa.dot(x, shared), yy.tobytes()))
    errors = []
    barrier = threading.Barrier(len(jobs))

    def run(i):
        x, y = jobs[i]
        try:
            barrier.wait()
            for _ in range(4):
                yy = y.copy()
                xa.axpy(0.5, x, yy)
                got = (xa.sum(x), xa.dot(x, y), xa.dot(x, shared), yy.tobytes())
                if got != want[i]:
                    errors.append((i, got[:3], want[i][:3]))
                    return
        except Exception as e:  # pragma: no cover - reported below
            errors.append((i, repr(e)))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


def test_kernels_bench_runs(tmp_path):
    """benches/kernels.py runs as one command (a smoke run at 10^3: no
    timing is checked, only that every row and the summary are printed)."""
    import pathlib
    import subprocess
    import sys

    bench = pathlib.Path(__file__).resolve().parents[2] / "benches" / "kernels.py"
    if not bench.exists():
        pytest.skip("benches/ not in this checkout")
    out = subprocess.run(
        [sys.executable, str(bench), "--repeats", "1", "--max-exp", "3"],
        capture_output=True, text=True, timeout=300, check=True,
    ).stdout
    rows = [line for line in out.splitlines() if line.startswith("| 10^3 |")]
    assert len(rows) == 6, out
    assert "worst ratio per op: sum" in out


def test_kernels_bench_stream_runs():
    """benches/kernels.py --stream (dot's loops) runs: a smoke run at 10^5,
    every variant's column printed for both layouts."""
    import pathlib
    import subprocess
    import sys

    bench = pathlib.Path(__file__).resolve().parents[2] / "benches" / "kernels.py"
    if not bench.exists():
        pytest.skip("benches/ not in this checkout")
    out = subprocess.run(
        [sys.executable, str(bench), "--stream", "--repeats", "1", "--passes", "1", "--max-exp", "5"],
        capture_output=True, text=True, timeout=300, check=True,
    ).stdout
    rows = [line for line in out.splitlines() if line.startswith("| 10^5 |")]
    assert len(rows) == 2, out
    assert "| AVX2 streaming | default |" in out
    assert all(len(r.split("|")) == len(rows[0].split("|")) for r in rows), out


@pytest.mark.parametrize("hook", ["_set_threads", "_set_par_min", "_set_stream_min"])
def test_count_hooks_refuse_bad_counts(hook):
    f = getattr(xa._impl, hook)
    with pytest.raises(ValueError, match=rf"{hook}\(\): n must be >= 0"):
        f(-1)
    with pytest.raises(TypeError):
        f("2")
    with pytest.raises(OverflowError):
        f(2**80)
