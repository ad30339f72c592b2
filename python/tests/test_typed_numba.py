"""numba ``@cfunc`` objects as values of typed keys (docs/spec.md, typed
methods): accepted when their signature is the key's (``voidptr`` stands for
``O`` and ``p``, scalars by width), ValueError naming both otherwise; the
cfunc is kept alive while a table refers to it. numba is optional."""

import gc
import os
import sys
import weakref

import pytest

import extensibletype as et

if os.environ.get("EXTENSIBLETYPE_ASAN") == "1" or os.environ.get("EXTENSIBLETYPE_MEMCHECK") == "1":
    # numba's LLVM JIT under AddressSanitizer / valgrind is slow and not our
    # code; test_typed_keys.py's numba-like stand-in runs the same checks there.
    pytest.skip("numba under scripts/asan.sh / scripts/memcheck.sh", allow_module_level=True)

numba = pytest.importorskip("numba")
from numba import cfunc, types  # noqa: E402


def fresh():
    class C(metaclass=et.ExtensibleType):
        pass

    return C


@cfunc(types.float64(types.voidptr))
def area(obj):
    return 2.0


@cfunc(types.float64(types.voidptr, types.intp, types.boolean, types.CPointer(types.float64), types.int32))
def many(obj, n, flag, out, k):
    return 1.0


@cfunc(types.void(types.voidptr, types.complex128, types.voidptr))
def cplx(obj, z, p):
    pass


@cfunc(types.int32(types.voidptr, types.float64, types.CPointer(types.float64)))
def raising(obj, x, out):
    out[0] = x
    return 0


@pytest.mark.parametrize(
    "sig, fn",
    [
        ("f64(O)", area),
        ("f64(O,i64,b,*f64,i32)" if sys.maxsize > 2**32 else "f64(O,i32,b,*f64,i32)", many),
        ("v(O,c128,p)", cplx),
        ("f64(O,f64)!e", raising),
    ],
)
def test_cfunc_matches(sig, fn):
    tp = fresh()
    key = et.method_key("geom.Shape.v1:m", sig)
    et.set_slots(tp, {key: fn})
    assert et.lookup(tp(), key) == fn.address


@pytest.mark.parametrize(
    "sig, fn",
    [("f32(O)", area), ("f64(O,f64)", area), ("f64(O,i64,b,*f32,i32)", many), ("v(O,c64,p)", cplx), ("f64(O,f64)", raising)],
)
def test_cfunc_mismatch(sig, fn):
    tp = fresh()
    key = et.method_key("geom.Shape.v1:m", sig)
    with pytest.raises(ValueError, match=r"the key's signature is .*numba cfunc") as info:
        et.set_slots(tp, {"demo.keep.v1:x": 0x1000, key: fn})
    assert sig in str(info.value) and str(fn._sig) in str(info.value)
    assert et.get_slots(tp) == {}


def test_cfunc_untyped_key_and_lifetime():
    @cfunc(types.float64(types.voidptr))
    def local(obj):
        return 3.0

    tp = fresh()
    address = local.address
    ref = weakref.ref(local)
    et.set_slots(tp, {"geom.Shape.v1:area#f64(O)": local, "geom.Shape.v1:untyped": local})
    del local
    gc.collect()
    assert ref() is not None, "the table's cfunc was freed"
    assert et.lookup(tp(), "geom.Shape.v1:area#f64(O)") == address
    et.set_slots(tp, {"geom.Shape.v1:area#f64(O)": None, "geom.Shape.v1:untyped": None})
