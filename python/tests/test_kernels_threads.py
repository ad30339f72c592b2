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


def test_strided_and_2d_large_inputs_split_too():
    rng = np.random.default_rng(1)
    big = rng.random((700, 800))
    views = [big, big[:, ::2], big.T, big[::-1, 3:]]
    for v in views:
        res = []
        for t in (1, 2):
            xa._impl._set_threads(t)
            res.append((xa.sum(v), xa.dot(v, v)))
        assert res[0] == res[1]
        assert math.isclose(res[0][0], math.fsum(v.ravel()), rel_tol=1e-12)


def test_workers_take_part_on_large_inputs():
    x = np.ones(8 * 10**6)
    threads, before = xa._impl._set_threads(2)
    assert threads == 2
    for _ in range(20):
        assert xa.sum(x) == 8 * 10**6
    # a worker usually joins (not guaranteed on a loaded machine: then the
    # caller computes every part itself, with the same result)
    _, after = xa._impl._set_threads(2)
    assert after >= before


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
