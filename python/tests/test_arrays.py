"""Duck-typed arrays (docs/spec.md §12): the array.v1 interface, its providers
(extensibletype.arrays.Array, numpy.ndarray, buffer-protocol types, a
pure-Python ctypes provider) and its consumers (sum, dot, axpy, a C
extension), checked against NumPy for every provider and provider pair."""

from __future__ import annotations

import array
import ctypes
import gc
import itertools
import sys
import sysconfig
import threading
from pathlib import Path

import pytest

import cbuild
import extensibletype as et
import extensibletype.arrays as xa

np = pytest.importorskip("numpy", reason="numpy is not installed for this interpreter")

sys.path.insert(0, str(cbuild.ROOT / "examples"))
import python_array_provider as pap  # noqa: E402

FREE_THREADED = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))

# Importing extensibletype.arrays registers array.v1 slots on bytearray,
# numpy.ndarray, ...; other test modules count the slots of bytearray
# subclasses. Keep the registrations to this module's tests.
xa._unregister_providers()


@pytest.fixture(autouse=True, scope="module")
def providers_registered():
    xa._register_providers()
    yield
    xa._unregister_providers()

DTYPES = ["float64", "float32", "int64"]


# ---------------------------------------------------------------------------
# test data: NumPy arrays in many layouts, and providers holding the same data


def values(shape, dtype, seed):
    rng = np.random.default_rng(seed)
    if dtype == "int64":
        return np.asarray(rng.integers(-1000, 1000, size=shape, dtype=np.int64))
    return np.asarray(rng.random(shape) + 0.5, dtype=dtype)


def layouts(dtype, seed=0):
    """name -> a NumPy array (possibly a view) in that layout."""
    base = values((6, 10), dtype, seed)
    return {
        "0d": values((), dtype, seed),
        "1d": values((37,), dtype, seed),
        "2d": base,
        "transposed": base.T,
        "steps": base[::2, 1::3],
        "negative": base[::-1, ::-2],
        "long_steps": values((700,), dtype, seed)[::3],  # a run long enough for the span loop
        "empty": values((0, 3), dtype, seed),
    }


def as_array(a):
    """extensibletype.arrays.Array holding a copy (C-contiguous)."""
    out = xa.Array(a.shape, a.dtype.name)
    np.asarray(out)[...] = a
    return out


def as_ctypes(a):
    return pap.CtypesArray(np.ascontiguousarray(a).ravel().tolist(), shape=a.shape, dtype=a.dtype.name)


def as_array_module(a):
    if a.ndim != 1:
        return None
    return array.array({"float64": "d", "float32": "f", "int64": "q"}[a.dtype.name], a.tolist())


PROVIDERS = {
    "numpy": lambda a: a,
    "Array": as_array,
    "memoryview": lambda a: memoryview(a) if a.ndim else None,
    "array.array": as_array_module,
    "ctypes": as_ctypes,
}


def to_numpy(obj, like):
    """The current contents of a provider object, as NumPy."""
    if isinstance(obj, pap.CtypesArray):
        return np.array(obj.tolist(), dtype=like.dtype).reshape(obj.shape)
    return np.asarray(obj).reshape(like.shape)


def check_close(got, want, dtype):
    if dtype == "int64":
        assert got == int(want)
        assert isinstance(got, int)
    else:
        assert isinstance(got, float)
        rel = 1e-12 if dtype == "float64" else 2e-5
        assert got == pytest.approx(float(want), rel=rel, abs=rel)


# ---------------------------------------------------------------------------
# the interface itself


def test_keys_and_ids():
    assert xa.KEY_ACQUIRE == "extensibletype.array.v1:acquire"
    assert xa.KEY_RELEASE == "extensibletype.array.v1:release"
    assert et.prehash(xa.KEY_ACQUIRE) == xa.ID_ACQUIRE == 0x90FBA73FDE02ADE2
    assert et.prehash(xa.KEY_RELEASE) == xa.ID_RELEASE == 0xB474ECA712320062


def test_view_layout_matches_ctypes_mirror():
    assert xa.VIEW_SIZE == ctypes.sizeof(pap.ArrayView) == 208
    for name, offset in xa.VIEW_LAYOUT.items():
        assert getattr(pap.ArrayView, name).offset == offset, name


@pytest.fixture(scope="module")
def consumer():
    if not cbuild.have_compiler():
        pytest.skip("no C compiler (cc)")
    return cbuild.example_extension("array_consumer")


def test_header_layout_and_ids(consumer):
    assert consumer.layout() == {**xa.VIEW_LAYOUT, "__size__": xa.VIEW_SIZE}
    assert consumer.ids() == (xa.ID_ACQUIRE, xa.ID_RELEASE)
    header = (cbuild.INCLUDE / "extensibletype_array.h").read_text()
    assert f"UINT64_C({xa.ID_ACQUIRE:#018x})" in header
    assert f"UINT64_C({xa.ID_RELEASE:#018x})" in header


def test_header_shipped_with_package():
    assert (Path(et.get_include()) / "extensibletype_array.h").read_bytes() == (
        cbuild.INCLUDE / "extensibletype_array.h"
    ).read_bytes()


def test_header_compiles_pedantic():
    if not cbuild.have_compiler():
        pytest.skip("no C compiler (cc)")
    src = cbuild.build_root() / "array_header_check.c"
    src.parent.mkdir(parents=True, exist_ok=True)
    src.write_text(
        '#include "extensibletype_array.h"\n'
        "int check(PyObject *o) { ExtType_ArrayView v = EXTTYPE_ARRAY_VIEW_INIT; ExtType_ArrayReleaseFn r;\n"
        "  if (ExtType_ArrayGetView(o, EXTTYPE_ARRAY_REQ_WRITABLE, &v, &r) < 0) return -1;\n"
        "  ExtType_ArraySetContiguity(&v); r(o, &v); return (int)ExtType_ArraySize(&v) + ExtType_ArrayDTypeIs(&v, 2, 64); }\n"
    )
    for flags in (["-std=c99", "-pedantic"], ["-std=c11"]):
        cbuild.build("array_header_check", [src], cflags=["-c", *cbuild.STRICT, *flags], kind="program")


# ---------------------------------------------------------------------------
# providers


def test_registration():
    assert xa.NUMPY_ADAPTER == "direct", xa.NUMPY_FALLBACK_REASON
    addr = xa._impl._slot_addresses()
    assert et.lookup(np.zeros(1), xa.KEY_ACQUIRE) == addr["numpy"][0]
    assert et.lookup(np.zeros(1), xa.KEY_RELEASE) == addr["numpy"][1]
    for obj in (bytearray(), b"", memoryview(b""), array.array("d")):
        assert et.lookup(obj, xa.KEY_ACQUIRE) == addr["buffer"][0]
    assert type(xa.Array) is et.ExtensibleType
    assert set(et.get_slots(xa.Array)) >= {xa.KEY_ACQUIRE, xa.KEY_RELEASE}


@pytest.mark.parametrize("dtype", DTYPES)
def test_numpy_views_match_numpy(dtype):
    for name, a in layouts(dtype).items():
        info = xa.view_info(a)
        assert info["data"] == a.__array_interface__["data"][0], name
        assert info["shape"] == a.shape and info["strides"] == a.strides, name
        assert info["dtype"] == dtype and info["itemsize"] == a.itemsize
        assert info["device"] == (1, 0) and info["version"] == 1
        assert info["c_contiguous"] == a.flags.c_contiguous, name
        assert info["f_contiguous"] == a.flags.f_contiguous, name
        assert info["readonly"] is False and info["aligned"] is True


def test_numpy_flags_and_dtypes():
    ro = np.arange(4.0)
    ro.flags.writeable = False
    assert xa.view_info(ro)["readonly"] is True
    assert xa.view_info(np.zeros(3, ">f8"))["byteswapped"] is True
    assert xa.view_info(np.zeros(3, "<f8"))["byteswapped"] is False
    assert xa.view_info(np.zeros(3, np.uint8))["dtype"] == "uint8"
    assert xa.view_info(np.zeros(3, np.bool_))["dtype"] == "bool"
    assert xa.view_info(np.zeros(3, np.complex128))["dtype"] == "complex128"
    assert xa.view_info(np.zeros(3, np.float16))["dtype"] == "float16"
    unaligned = np.frombuffer(bytearray(8 * 4 + 1), dtype=np.float64, offset=1, count=4)
    assert xa.view_info(unaligned)["aligned"] is False
    for bad in (np.zeros(2, object), np.zeros(2, "U3"), np.zeros(2, "M8[s]"), np.zeros(2, np.longdouble)):
        with pytest.raises(TypeError, match="no DLPack equivalent"):
            xa.view_info(bad)


def test_numpy_high_ndim_and_subclasses():
    a = values((2,) * 10, "float64", 3)[..., ::-1]  # more dims than the view's scratch holds
    assert xa.view_info(a)["shape"] == a.shape
    assert xa.sum(a) == pytest.approx(a.sum(), rel=1e-12)

    class Sub(np.ndarray):
        pass

    s = np.arange(6.0).view(Sub)
    assert xa.sum(s) == 15.0
    assert xa.sum(np.ma.masked_array([1.0, 2.0], mask=[0, 1])) == 3.0  # raw data, mask ignored


def test_numpy_view_pins_array():
    """An exported view holds a reference: ndarray.resize refuses."""
    a = np.zeros(10)
    before = sys.getrefcount(a)
    view, release = acquire_ctypes(a)
    assert sys.getrefcount(a) == before + 1
    with pytest.raises(ValueError):
        a.resize(20)
    release(a, ctypes.byref(view))
    assert sys.getrefcount(a) == before


def test_numpy_buffer_fallback():
    try:
        xa._impl._register_numpy(np.ndarray, "buffer")
        addr = xa._impl._slot_addresses()
        assert et.lookup(np.zeros(1), xa.KEY_ACQUIRE) == addr["buffer"][0]
        for dtype in DTYPES:
            for name, a in layouts(dtype).items():
                check_close(xa.sum(a), a.sum(), dtype)
                info = xa.view_info(a)
                assert info["shape"] == a.shape, name
                if a.size:  # strides of an empty array are arbitrary
                    assert info["strides"] == a.strides, name
                assert info["c_contiguous"] == a.flags.c_contiguous, name
    finally:
        xa._impl._register_numpy(np.ndarray, "direct")
    assert et.lookup(np.zeros(1), xa.KEY_ACQUIRE) == xa._impl._slot_addresses()["numpy"][0]


def test_numpy_layout_probe_rejects_other_types():
    with pytest.raises(TypeError):
        xa._impl._numpy_fields(bytearray, bytearray(8))
    with pytest.raises(TypeError):
        xa._impl._numpy_fields(np.ndarray, [1.0])
    with pytest.raises(TypeError):
        xa._impl._register_numpy(bytearray, "direct")


def test_buffer_adapter_formats():
    assert xa.view_info(bytearray(b"abc"))["dtype"] == "uint8"
    assert xa.view_info(b"abc")["readonly"] is True
    for code, dtype in [("d", "float64"), ("f", "float32"), ("q", "int64"), ("b", "int8"), ("H", "uint16"), ("i", "int32")]:
        assert xa.view_info(array.array(code, [1, 2]))["dtype"] == dtype
    assert xa.view_info(array.array("l", [1]))["dtype"] == f"int{8 * ctypes.sizeof(ctypes.c_long)}"
    mv = memoryview(np.zeros((4, 6)))[::2]
    assert xa.view_info(mv)["strides"] == (96, 8)
    assert xa.view_info(memoryview(np.zeros(3, ">i4")))["byteswapped"] is True
    with pytest.raises(TypeError, match="no DLPack equivalent"):
        xa.view_info(memoryview(np.zeros(2, [("a", "f8"), ("b", "i4")])))
    with pytest.raises(TypeError, match="no DLPack equivalent"):
        xa.view_info(memoryview(np.zeros(2, "S3")))


def test_buffer_adapter_pins_exporter():
    ba = bytearray(16)
    view, release = acquire_ctypes(ba)
    with pytest.raises(BufferError):
        ba.extend(b"x" * 100)
    release(ba, ctypes.byref(view))
    ba.extend(b"x")


def test_register_buffer_type():
    class MyBytes(bytes):  # a subclass is covered through the MRO anyway
        pass

    assert xa.view_info(MyBytes(b"ab"))["shape"] == (2,)
    import mmap

    xa.register_buffer_type(mmap.mmap)
    m = mmap.mmap(-1, 16)
    try:
        assert xa.view_info(m)["shape"] == (16,)
    finally:
        m.close()
    with pytest.raises(TypeError):
        xa.register_buffer_type(3)


# ---------------------------------------------------------------------------
# the Array type


def test_array_basics():
    a = xa.Array((2, 3))
    assert (a.shape, a.ndim, a.size, a.dtype, a.itemsize, a.strides) == ((2, 3), 2, 6, "float64", 8, (24, 8))
    assert len(a) == 2 and a.nbytes == 48 and repr(a) == "Array(shape=(2, 3), dtype='float64')"
    assert a.tolist() == [[0.0] * 3] * 2
    a[1, 2] = 5
    a[-1, 0] = 1.5
    assert a[1, 2] == 5.0 and a[1, -3] == 1.5
    a.fill(2)
    assert xa.sum(a) == 12.0
    b = xa.Array(4, dtype="int64")
    b[0] = 7
    assert b[0] == 7 and isinstance(b[0], int) and b.tolist() == [7, 0, 0, 0]
    with pytest.raises(TypeError):
        b[1] = 1.5
    c = xa.Array([], "float32")
    assert c.shape == () and c.tolist() == 0.0
    c[()] = 2.5
    assert c[()] == 2.5
    with pytest.raises(TypeError):
        len(c)
    for bad in [(0, 0, 0), (2,), 5, slice(None)]:
        with pytest.raises(IndexError):
            a[bad]
    with pytest.raises(ValueError):
        xa.Array((-1,))
    with pytest.raises(TypeError, match="unsupported dtype"):
        xa.Array(3, "complex64")
    assert xa.Array(3, np.float32).dtype == "float32"
    assert xa.Array(shape=3, dtype=np.dtype("int64")).dtype == "int64"


def test_array_shares_memory_with_numpy():
    a = xa.Array((3, 4), "float32")
    n = np.asarray(a)
    assert n.dtype == np.float32 and n.shape == (3, 4) and n.flags.writeable
    n[2, 3] = 9
    assert a[2, 3] == 9.0
    assert xa.view_info(a)["data"] == n.__array_interface__["data"][0]
    assert memoryview(a).format == "f"


def test_array_resize_refused_while_exported():
    a = xa.Array(4)
    a[3] = 1.0
    n = np.asarray(a)  # a buffer export
    assert a._exports == 1
    with pytest.raises(BufferError, match="exported"):
        a.resize(8)
    del n
    gc.collect()
    assert a._exports == 0
    view, release = acquire_ctypes(a)  # an array.v1 export
    assert a._exports == 1
    with pytest.raises(BufferError):
        a.resize((2, 2))
    release(a, ctypes.byref(view))
    assert a._exports == 0
    a.resize((2, 3))
    assert a.shape == (2, 3) and a.tolist() == [[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]
    a.resize(2)
    assert a.tolist() == [0.0, 0.0]


def test_array_subclass_keeps_slots():
    class Sub(xa.Array):
        pass

    s = Sub(3)
    s.fill(1.0)
    assert type(Sub) is et.ExtensibleType
    assert xa.sum(s) == 3.0


# ---------------------------------------------------------------------------
# kernels against NumPy, every provider and provider pair


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("provider", list(PROVIDERS))
def test_sum(provider, dtype):
    for name, a in layouts(dtype).items():
        obj = PROVIDERS[provider](a)
        if obj is None:
            continue
        check_close(xa.sum(obj), a.sum(dtype=np.float64 if dtype != "int64" else None), dtype)


def pairs():
    return list(itertools.product(PROVIDERS, PROVIDERS))


@pytest.mark.parametrize("px,py", pairs())
def test_dot_and_axpy_across_providers(px, py):
    for dtype in DTYPES:
        xs, ys = layouts(dtype, 1), layouts(dtype, 2)
        for name in xs:
            a, b = xs[name], ys[name]
            x, y = PROVIDERS[px](a), PROVIDERS[py](b.copy() if py == "numpy" else b)
            if x is None or y is None:
                continue
            want = (a.astype(np.float64) * b.astype(np.float64)).sum() if dtype != "int64" else (a * b).sum()
            check_close(xa.dot(x, y), want, dtype)
            if py == "memoryview":
                y = memoryview(b.copy())  # a fresh writable copy
            alpha = 3 if dtype == "int64" else 1.25
            before = to_numpy(y, b).copy()
            xa.axpy(alpha, x, y)
            expect = before + np.asarray(alpha, dtype=dtype) * a
            got = to_numpy(y, b)
            if dtype == "int64":
                assert np.array_equal(got, expect), (name, px, py)
            else:
                np.testing.assert_allclose(got, expect, rtol=1e-6 if dtype == "float32" else 1e-14)


@pytest.mark.parametrize("isa", ["base", "avx2", "avx512"])
def test_every_instruction_set(isa):
    if not xa._impl._set_isa(isa):
        pytest.skip(f"this CPU lacks {isa}")
    try:
        assert xa._impl._isa() == isa
        for dtype in DTYPES:
            for name, a in layouts(dtype, 5).items():
                b = layouts(dtype, 6)[name]
                check_close(xa.sum(a), a.sum(dtype=np.float64 if dtype != "int64" else None), dtype)
                want = (a.astype(np.float64) * b).sum() if dtype != "int64" else (a * b).sum()
                check_close(xa.dot(a, b), want, dtype)
                y = b.copy()
                xa.axpy(2, a, y)
                np.testing.assert_allclose(y, b + 2 * a, rtol=1e-6)
    finally:
        xa._impl._set_isa("best")


def _dot_layouts(dtype, rng):
    """Operand pairs reaching every loop of dot: contiguous (lanes), strides
    of 2-4 elements (the span trick), 5 and negative (element by element),
    and 2-d operands of several runs longer than a lane block (512): rows
    of a wider array, a transposed operand, a broadcast row."""
    n = 5017
    if dtype == "int64":
        a, b = rng.integers(-1000, 1000, 60 * 700), rng.integers(-1000, 1000, 60 * 700)
    else:
        a, b = rng.random(60 * 700).astype(dtype), rng.random(60 * 700).astype(dtype)
    rows = a.reshape(60, 700)[:, :600]  # runs of 600 that do not merge
    yield "contiguous", a[:n], b[:n]
    for k in (2, 3, 4, 5):
        yield f"[::{k}]", a[::k][:n], b[::k][:n]
    yield "[::-1]", a[n - 1 :: -1], b[:n]
    yield "2-d rows", rows, b[: 60 * 600].reshape(60, 600)
    yield "2-d transposed", rows, b[: 600 * 60].reshape(600, 60).T
    yield "broadcast row", rows, np.broadcast_to(b[:600], (60, 600))


def _bits(v):
    return v if isinstance(v, int) else float(v).hex()


def test_dot_streaming_loop_same_bits():
    """dot's streaming loop (software prefetch; its AVX2 version at both
    avx2 and avx512) adds the same products in the same order as the
    cached loop: with it forced on (`_set_stream_min(1)`) and off, the same
    bits at every level, for every dtype and every loop; the fused levels
    agree with each other."""
    rng = np.random.default_rng(12)
    for dtype in ("float64", "float32", "int64"):
        for name, x, y in _dot_layouts(dtype, rng):
            got = {}
            for isa in ("base", "avx2", "avx512"):
                if not xa._impl._set_isa(isa):
                    continue
                try:
                    for streaming, threshold in ((True, 1), (False, 1 << 62)):
                        old = xa._impl._set_stream_min(threshold)
                        try:
                            got[isa, streaming] = _bits(xa.dot(x, y))
                        finally:
                            xa._impl._set_stream_min(old)
                finally:
                    xa._impl._set_isa("best")
                assert got[isa, True] == got[isa, False], (dtype, name, isa)
            want = int((x * y).sum()) if dtype == "int64" else (x.astype(np.float64) * y).sum()
            check_close(xa.dot(x, y), want, dtype)
            if ("avx512", True) in got:
                assert got["avx512", False] == got["avx2", False], (dtype, name)


def test_dot_past_the_cache_every_instruction_set():
    """16 MiB operands take the streaming loop at the default threshold:
    right at every level for every dtype, contiguous and strided, and the
    same bits as the cached loop forced for the same input."""
    rng = np.random.default_rng(11)
    for dtype in ("float64", "float32", "int64"):
        n = (16 << 20) // np.dtype(dtype).itemsize
        if dtype == "int64":
            a, b = rng.integers(-1000, 1000, n), rng.integers(-1000, 1000, n)
        else:
            a, b = rng.random(n).astype(dtype), rng.random(n).astype(dtype)
        for step in (1, 2, 5):
            x, y = a[::step], b[::step]
            want = int((x * y).sum()) if dtype == "int64" else (x.astype(np.float64) * y).sum()
            for isa in ("base", "avx2", "avx512"):
                if not xa._impl._set_isa(isa):
                    continue
                old = xa._impl._set_stream_min(1 << 62)
                try:
                    cached = xa.dot(x, y)
                    xa._impl._set_stream_min(old)
                    got = xa.dot(x, y)
                finally:
                    xa._impl._set_stream_min(old)
                    xa._impl._set_isa("best")
                check_close(got, want, dtype)
                assert _bits(got) == _bits(cached), (dtype, step, isa)


def test_large_and_accuracy():
    rng = np.random.default_rng(7)
    x = rng.random(300_001)
    assert xa.sum(x) == pytest.approx(x.sum(), rel=1e-14)
    assert xa.sum(x[::2]) == pytest.approx(x[::2].sum(), rel=1e-14)
    assert xa.sum(x[::-3]) == pytest.approx(x[::-3].sum(), rel=1e-14)
    # pairwise: summing 10**6 copies of 0.1 stays as accurate as NumPy's
    ones = np.full(10**6, 0.1)
    assert abs(xa.sum(ones) - 1e5) <= max(2 * abs(ones.sum() - 1e5), 1e-9)
    f = np.full(10**6, 0.1, dtype=np.float32)
    assert abs(xa.sum(f) - 1e5) / 1e5 < 1e-5
    i = np.arange(10**6, dtype=np.int64) * (2**40)
    assert xa.sum(i) == int(i.sum())  # wraps like NumPy
    y = rng.random(300_001)
    assert xa.dot(x, y) == pytest.approx(x @ y, rel=1e-13)
    assert xa.dot(x[1::2], y[::2][:-1]) == pytest.approx(x[1::2] @ y[::2][:-1], rel=1e-13)


def test_axpy_overlap_and_alias():
    base = np.arange(10.0)
    expect = base.copy()
    expect[1:] += 2.0 * base[:-1].copy()
    got = base.copy()
    xa.axpy(2.0, got[:-1], got[1:])
    assert np.array_equal(got, expect)
    got = base.copy()
    want = base.copy()
    want[::-1] += 0.5 * base
    xa.axpy(0.5, got, got[::-1])
    assert np.array_equal(got, want)
    x = np.arange(5.0)
    xa.axpy(1.0, x, x)  # alias: y += y
    assert x.tolist() == [0.0, 2.0, 4.0, 6.0, 8.0]


# ---------------------------------------------------------------------------
# errors


def test_errors():
    with pytest.raises(TypeError, match=r"extensibletype\.array\.v1:acquire"):
        xa.sum([1.0, 2.0])
    with pytest.raises(TypeError, match=r"dot\(\): y: .*extensibletype\.array\.v1:acquire"):
        xa.dot(np.zeros(2), object())
    with pytest.raises(ValueError, match="shape mismatch"):
        xa.dot(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="shape mismatch"):
        xa.axpy(1.0, np.zeros((2, 3)), np.zeros((3, 2)))
    with pytest.raises(TypeError, match="dtype mismatch: x is float64, y is float32"):
        xa.dot(np.zeros(3), np.zeros(3, np.float32))
    with pytest.raises(TypeError, match="dtype mismatch"):
        xa.axpy(1.0, xa.Array(3, "int64"), np.zeros(3))
    with pytest.raises(TypeError, match="uint8; supported"):
        xa.sum(bytearray(b"ab"))
    with pytest.raises(TypeError, match="byte order"):
        xa.sum(np.zeros(3, ">f8"))
    with pytest.raises(TypeError, match="a must be an integer"):
        xa.axpy(1.5, np.zeros(3, np.int64), np.zeros(3, np.int64))
    with pytest.raises(TypeError, match=r"axpy\(\): a"):
        xa.axpy("x", np.zeros(3), np.zeros(3))
    with pytest.raises(TypeError):
        xa.dot(np.zeros(3))


@pytest.mark.parametrize(
    "make_y",
    [
        lambda: np.frombuffer(bytes(24), dtype=np.float64),
        lambda: memoryview(bytes(24)).cast("d"),
        lambda: np.broadcast_to(np.zeros(1), (3,)),
    ],
    ids=["readonly-numpy", "readonly-memoryview", "broadcast"],
)
def test_axpy_readonly_y(make_y):
    y = make_y()
    with pytest.raises(BufferError, match=r"axpy\(\): y: .*(read-only|not writable)"):
        xa.axpy(1.0, np.ones(3), y)


def test_request_flags():
    a = np.zeros((4, 4))
    assert xa.view_info(a, xa.REQ_C_CONTIGUOUS)["c_contiguous"]
    with pytest.raises(BufferError, match="not C-contiguous"):
        xa.view_info(a.T, xa.REQ_C_CONTIGUOUS)
    assert xa.view_info(a.T, xa.REQ_ANY_CONTIGUOUS)["f_contiguous"]
    with pytest.raises(BufferError, match="not contiguous"):
        xa.view_info(a[:, ::2], xa.REQ_ANY_CONTIGUOUS)
    for obj in (a, xa.Array(2), bytearray(2)):
        with pytest.raises(BufferError, match="unsupported"):
            xa.view_info(obj, 0x100)
    with pytest.raises(BufferError):
        xa.view_info(b"ab", xa.REQ_WRITABLE)
    assert xa.view_info(xa.Array((2, 2)), xa.REQ_WRITABLE | xa.REQ_C_CONTIGUOUS)["c_contiguous"]


def test_ctypes_provider_failure_is_systemerror(capsys):
    bad = pap.CtypesArray([1.0])
    bad.dtype = "complex"  # the callback fails (KeyError) and returns -1
    with pytest.raises(SystemError, match="without setting an exception"):
        xa.sum(bad)
    assert isinstance(bad.last_error, KeyError)
    assert "KeyError" in capsys.readouterr().err


# ---------------------------------------------------------------------------
# the C consumer


@pytest.mark.parametrize("provider", list(PROVIDERS))
def test_c_consumer(consumer, provider):
    for dtype in DTYPES:
        for name, a in layouts(dtype, 9).items():
            obj = PROVIDERS[provider](a)
            if obj is None:
                continue
            check_close(consumer.sum(obj), a.sum(dtype=np.float64 if dtype != "int64" else None), dtype)
    nd, shape, strides, code, bits, flags = consumer.describe(np.zeros((3, 4))[:, ::-2])
    assert (nd, shape, strides, code, bits) == (2, (3, 2), (32, -16), 2, 64)
    with pytest.raises(TypeError, match=r"extensibletype\.array\.v1:acquire"):
        consumer.sum(3.0)


def test_python_example_doctest():
    import doctest

    assert doctest.testmod(pap).failed == 0
    assert doctest.testmod(xa).failed == 0


# ---------------------------------------------------------------------------
# threads


def test_threads_share_views():
    """Kernels run without the GIL (free-threaded: truly in parallel) while
    other threads read, export and try to resize the same Array."""
    shared = xa.Array(50_000)
    shared.fill(1.0)
    errors = []

    def reader():
        for _ in range(30):
            assert xa.sum(shared) == 50_000.0
            assert xa.dot(shared, shared) == 50_000.0

    def resizer():
        for _ in range(200):
            try:
                shared.resize(50_000)
            except BufferError:
                pass

    def writer():
        y = np.zeros(50_000)
        for _ in range(30):
            xa.axpy(1.0, shared, y)
        assert y[0] == 30.0

    def reporting(fn):
        # A failed assert (or any exception) in a thread is re-raised below,
        # not only printed by threading.excepthook.
        def run():
            try:
                fn()
            except BaseException as e:  # noqa: BLE001 - re-raised below
                errors.append(e)

        return run

    threads = [threading.Thread(target=reporting(f)) for f in (reader, reader, resizer, writer)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    assert shared._exports == 0
    assert xa.sum(shared) == 50_000.0


# ---------------------------------------------------------------------------
# helpers


def acquire_ctypes(obj, request=0):
    """Acquire a view of obj from Python through its slots (ctypes): the
    view stays exported until the returned release is called."""
    # PYFUNCTYPE: called with the GIL held (as the contract requires), and a
    # Python exception set by the callee is raised.
    acq = ctypes.PYFUNCTYPE(ctypes.c_int, ctypes.py_object, ctypes.c_int, ctypes.POINTER(pap.ArrayView))(
        et.lookup(obj, xa.KEY_ACQUIRE)
    )
    rel = ctypes.PYFUNCTYPE(None, ctypes.py_object, ctypes.POINTER(pap.ArrayView))(et.lookup(obj, xa.KEY_RELEASE))
    view = pap.ArrayView()
    view.size = ctypes.sizeof(view)
    assert acq(obj, request, ctypes.byref(view)) == 0
    return view, rel
