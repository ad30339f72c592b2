"""Typed methods called from numba ``@njit`` code (extensibletype.numba,
docs/numba.md): providers in C (examples/c/geom_provider.c), Cython
(examples/cython/geom_provider.pyx) and numba ``@cfunc`` (set_slots); Python
overrides mask in njit code as everywhere; ``!e`` exceptions propagate; ``!t``
needs the GIL; ``cache=True`` code loads in a fresh process (ids, not
addresses, in the cached code)."""

import ctypes
import json
import math
import os
import subprocess
import sys
import struct

import pytest

import cbuild
import extensibletype as et

numba = pytest.importorskip("numba")
import numpy as np  # noqa: E402  (numba's dependency)
from numba import cfunc, njit, types  # noqa: E402
from numba.core.errors import TypingError  # noqa: E402

import extensibletype.numba as etn  # noqa: E402

have_cc = pytest.mark.skipif(not cbuild.have_compiler(), reason="no C compiler (cc)")

AREA = "geom.Shape.v1:area#f64(O)"
SCALED = "geom.Shape.v1:scaled#f64(O,f64)!e"
DESCRIBE = "geom.Shape.v1:describe#O+(O)!t"


@njit
def find(a):
    return etn.find_method(a, AREA)


@njit
def has(a):
    return etn.has_method(a, AREA)


@njit
def area(a):
    return etn.call_method(a, AREA)


@njit
def scaled(a, k):
    return etn.call_method(a, SCALED, k)


@njit
def typed_total(addrs):
    """Sum of the typed areas; the indices that missed (the caller falls
    back to the Python method)."""
    s = 0.0
    missed = []
    for i in range(addrs.size):
        f = etn.find_method(addrs[i], AREA)
        if f != 0:
            s += etn.call_found(f, AREA, addrs[i])
        else:
            missed.append(i)
    return s, missed


def total_area(shapes):
    addrs = etn.addresses(shapes)  # valid while `shapes` is held
    s, missed = typed_total(addrs)
    return s + sum(shapes[i].area() for i in missed), len(missed)


@pytest.fixture(scope="module")
def cprov():
    if not cbuild.have_compiler():
        pytest.skip("no C compiler (cc)")
    return cbuild.example_extension("geom_provider")


@pytest.fixture(scope="module")
def cyprov():
    pytest.importorskip("Cython")
    if not cbuild.have_compiler():
        pytest.skip("no C compiler (cc)")
    return cbuild.cython_extension(cbuild.EXAMPLES_CYTHON / "geom_provider.pyx")




@cfunc(types.float64(types.voidptr))
def nb_area(obj):
    return 7.0


@cfunc(types.int32(types.voidptr, types.float64, types.CPointer(types.float64)))
def nb_scaled(obj, k, out):
    out[0] = 7.0 * k * k
    return 0


class NumbaShape(metaclass=et.ExtensibleType):
    """A Python class whose typed methods are numba cfuncs."""

    def area(self):
        return 7.0

    def scaled(self, k):
        return 7.0 * k * k


et.set_slots(NumbaShape, {AREA: nb_area, SCALED: nb_scaled})


def test_import_does_not_import_numba():
    code = "import sys, extensibletype; assert 'numba' not in sys.modules and 'extensibletype.numba' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
    # Without numba: the package works, extensibletype.numba is an ImportError.
    code = (
        "import sys; sys.modules['numba'] = None\n"
        "import extensibletype as et\n"
        "assert et.bind(1.0, 'geom.Shape.v1:area#f64(O)') is None\n"
        "try:\n    import extensibletype.numba\nexcept ImportError as e:\n    print('ImportError', e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.startswith("ImportError") and "numba" in out.stdout


def test_reload_keeps_the_linked_data(cprov):
    import importlib

    c = cprov.Circle(2.0)
    before = area(etn.address(c))
    data = etn._DATA
    importlib.reload(etn)
    assert etn._DATA is data  # code linked before the reload still reads it
    assert area(etn.address(c)) == before


def test_api_symbols_v1_prefix_and_v2():
    """Code cached by earlier versions names the v1 symbol and reads six
    fields; v2 appends two. Both names resolve to the same data, whose
    first six fields keep v1's offsets."""
    import llvmlite.binding as llvm

    assert etn.API_SYMBOL == "extensibletype_numba_api_v2"
    here = ctypes.addressof(etn._DATA)
    assert llvm.address_of_symbol(etn.API_SYMBOL) == here
    assert llvm.address_of_symbol("extensibletype_numba_api_v1") == here
    v1 = ["metaclass", "table_offset", "ob_type_offset", "type_cache", "type_cache_shift", "version_tag_offset"]
    assert [f[0] for f in etn._NumbaAPI._fields_[:6]] == v1
    assert [getattr(etn._NumbaAPI, f).offset for f in v1] == [0, 8, 16, 24, 32, 40]
    assert [f[0] for f in etn._NumbaAPI._fields_[6:]] == ["flat_offset", "cache_word_offset"]


def test_c_provider(cprov):
    c = cprov.Circle(2.0)
    a = etn.address(c)
    assert find(a) == et.lookup(c, AREA) != 0
    assert has(a) is True
    assert area(a) == pytest.approx(math.pi * 4)
    assert scaled(a, 3.0) == pytest.approx(math.pi * 36)
    assert scaled(a, 3) == pytest.approx(math.pi * 36)  # int -> f64 as numba converts


def test_e_exception_propagates(cprov):
    c = cprov.Circle(2.0)
    with pytest.raises(ValueError, match="scaled: negative factor"):
        scaled(etn.address(c), -1.0)
    assert scaled(etn.address(c), 1.0) == pytest.approx(math.pi * 4)  # no stale error


def test_cython_provider(cyprov):
    c, s = cyprov.Circle(2.0), cyprov.Square(3.0)
    assert area(etn.address(c)) == pytest.approx(math.pi * 4)
    assert area(etn.address(s)) == 9.0
    assert scaled(etn.address(s), 2.0) == 36.0
    with pytest.raises(ValueError, match="scale factor must be >= 0, not -1.0"):
        scaled(etn.address(c), -1.0)


def test_numba_cfunc_provider():
    n = NumbaShape()
    assert find(etn.address(n)) == nb_area.address
    assert area(etn.address(n)) == 7.0
    assert scaled(etn.address(n), 2.0) == 28.0


def test_override_masks_in_njit(cprov):
    class Overriding(cprov.Circle):
        def area(self):
            return 100.0

    class Plain(cprov.Circle):
        pass

    class NumbaOverriding(NumbaShape):
        def area(self):
            return 1.0

    o, p, no = Overriding(1.0), Plain(1.0), NumbaOverriding()
    for x in (o, no):
        assert find(etn.address(x)) == 0 and not has(etn.address(x))
        with pytest.raises(LookupError, match="no typed method"):
            area(etn.address(x))
        assert scaled(etn.address(x), 1.0) > 0  # only `area` is overridden
    assert area(etn.address(p)) == pytest.approx(math.pi)
    # Assigning the override later takes effect for njit code too.
    Plain.area = lambda self: 5.0
    try:
        assert not has(etn.address(p))
    finally:
        del Plain.area
    assert has(etn.address(p))


def test_foreign_type_and_its_subclasses():
    """A type not made with the metaclass (the foreign registry): the
    runtime's type cache (read inline) or find_slow answers, masking
    included, also after the cache was filled."""

    class Foreign:
        def area(self):
            return 7.0

    class Sub(Foreign):
        pass

    class Masking(Foreign):
        def area(self):
            return 0.0

    et.set_slots(Foreign, {AREA: nb_area})
    f, s, m = Foreign(), Sub(), Masking()
    assert area(etn.address(f)) == area(etn.address(s)) == 7.0
    assert find(etn.address(m)) == 0 == (et.lookup(m, AREA) or 0)
    for _ in range(3):  # the type cache now names Sub's table
        assert find(etn.address(s)) == nb_area.address
    Sub.area = lambda self: 1.0  # a later override: the cache entry is stale
    assert find(etn.address(s)) == 0
    del Sub.area
    assert find(etn.address(s)) == nb_area.address
    et.set_slots(Foreign, {AREA: None})
    assert find(etn.address(f)) == find(etn.address(s)) == 0


@njit
def eight_misses(a):
    """Keys registered nowhere: each lands on some entry of the table (an
    occupied one for several of them), whose id must not match."""
    return (
        etn.find_method(a, "numba.miss.v1:m0#f64(O)") | etn.find_method(a, "numba.miss.v1:m1#f64(O)")
        | etn.find_method(a, "numba.miss.v1:m2#f64(O)") | etn.find_method(a, "numba.miss.v1:m3#f64(O)")
        | etn.find_method(a, "numba.miss.v1:m4#f64(O)") | etn.find_method(a, "numba.miss.v1:m5#f64(O)")
        | etn.find_method(a, "numba.miss.v1:m6#f64(O)") | etn.find_method(a, "numba.miss.v1:m7#f64(O)")
    )


@pytest.mark.parametrize("fillers", [0, 7, 23, 30, 120])
@pytest.mark.parametrize("kind", ["extensible", "foreign", "foreign subclass"])
def test_flat_and_two_level_tables(kind, fillers):
    """The inline probe reads the flat descriptor word (of the type data, or
    of the type cache entry): a flat table (up to 24 slots) in one level,
    a larger one with the v1 formula; every answer equals lookup()."""
    slots = {f"numba.filler.v1:f{i}": 0x1000 + 16 * i for i in range(fillers)}
    slots[AREA] = nb_area
    if kind == "extensible":

        class Owner(metaclass=et.ExtensibleType):
            pass

    else:

        class Owner:
            pass

    et.set_slots(Owner, slots)
    obj = Owner() if kind != "foreign subclass" else type("Sub", (Owner,), {})()
    info = et.table_info(type(obj) if kind == "extensible" else Owner)
    assert info["flat"] == (fillers + 1 <= 24), info
    try:
        for _ in range(3):  # the first may fill the type cache
            assert find(etn.address(obj)) == nb_area.address == (et.lookup(obj, AREA) or 0)
            assert eight_misses(etn.address(obj)) == 0
        et.set_slots(Owner, {AREA: None})
        assert find(etn.address(obj)) == 0 == (et.lookup(obj, AREA) or 0)
    finally:
        et.set_slots(Owner, {k: None for k in slots})


def test_miss_on_other_objects():
    class PyShape:
        def area(self):
            return 5.0

    for x in (PyShape(), 1.5, "s", None, object()):
        assert find(etn.address(x)) == 0
    assert find(0) == 0  # NULL: a miss, not a crash


def test_mixed_list(cprov, cyprov):
    class Overriding(cyprov.Square):
        def area(self):
            return 100.0

    class PyShape:
        def area(self):
            return 5.0

    shapes = [cprov.Circle(1.0), cyprov.Square(2.0), cyprov.Circle(1.0), NumbaShape(), Overriding(1.0), PyShape()]
    total, fallbacks = total_area(shapes)
    assert total == pytest.approx(2 * math.pi + 4.0 + 7.0 + 100.0 + 5.0)
    assert fallbacks == 2


# --- !t and the GIL; argument types ----------------------------------------------

TWICE = "demo.T.v1:twice#f64(O,f64)!t"
MIX = et.method_key("demo.T.v1:mix", "b(O,b,i8,u16,*f64,p)")
NOTHING = "demo.T.v1:nothing#v(O,*f64)"
VOID_E = "demo.T.v1:check#v(O,f64)!e"


@cfunc(types.float64(types.voidptr, types.float64))
def nb_twice(obj, x):
    return 2.0 * x


@cfunc(types.boolean(types.voidptr, types.boolean, types.int8, types.uint16, types.CPointer(types.float64), types.voidptr))
def nb_mix(obj, flag, small, medium, ptr, p):
    return flag and small == -3 and medium == 60000 and ptr[0] == 1.5


@cfunc(types.void(types.voidptr, types.CPointer(types.float64)))
def nb_nothing(obj, ptr):
    ptr[0] = 42.0


@cfunc(types.int32(types.voidptr, types.float64))
def nb_check(obj, x):
    return 0 if x >= 0 else -1  # -1 without an exception: numba's SystemError


class T(metaclass=et.ExtensibleType):
    pass


et.set_slots(T, {TWICE: nb_twice, MIX: nb_mix, NOTHING: nb_nothing, VOID_E: nb_check})


def test_t_flag_needs_the_gil():
    t = T()

    @njit
    def with_gil(a, x):
        return etn.call_method(a, TWICE, x)

    @njit(nogil=True)
    def without_gil(a, x):
        return etn.call_method(a, TWICE, x)

    assert with_gil(etn.address(t), 2.0) == 4.0
    with pytest.raises(RuntimeError, match="needs the GIL"):
        without_gil(etn.address(t), 2.0)


def test_parallel(cprov):
    shapes = [cprov.Circle(1.0) for _ in range(64)]
    addrs = etn.addresses(shapes)

    @njit(parallel=True)
    def par(addrs, k):
        s = 0.0
        for i in numba.prange(addrs.size):
            s += etn.call_method(addrs[i], AREA) * k
        return s

    @njit(parallel=True)
    def par_e(addrs):
        s = 0.0
        for i in numba.prange(addrs.size):
            s += etn.call_method(addrs[i], SCALED, 1.0)
        return s

    assert par(addrs, 1.0) == pytest.approx(64 * math.pi)  # flagless: in the worker threads
    try:
        par_e(addrs)
    except (RuntimeError, SystemError) as e:  # numba wraps it in SystemError
        cause = e if isinstance(e, RuntimeError) else e.__cause__
        assert "needs the GIL" in str(cause)
    # else: every chunk ran on the calling thread, which holds the GIL


def test_e_through_njit_callers_and_try(cprov):
    @njit
    def inner(a, k):
        return etn.call_method(a, SCALED, k)

    @njit
    def outer(a, k):
        return inner(a, k) + 1.0

    @njit
    def catching(a, k):
        try:
            return etn.call_method(a, SCALED, k)
        except Exception:
            return -5.0

    c = cprov.Circle(1.0)  # held: its address is valid
    a = etn.address(c)
    for f in (outer, catching):
        with pytest.raises(ValueError, match="scaled: negative factor"):
            f(a, -1.0)
    assert catching(a, 1.0) == pytest.approx(math.pi)


def test_flagless_under_nogil(cprov):
    c = cprov.Circle(1.0)

    @njit(nogil=True)
    def nogil_area(a):
        return etn.call_method(a, AREA)

    assert nogil_area(etn.address(c)) == pytest.approx(math.pi)


def test_argument_types():
    t = T()
    buf = np.array([1.5])

    @njit
    def mix(a, flag, small, medium, arr):
        return etn.call_method(a, MIX, flag, small, medium, arr.ctypes.data, 0)

    assert mix(etn.address(t), True, -3, 60000, buf) is True
    assert mix(etn.address(t), False, -3, 60000, buf) is False
    assert mix(etn.address(t), True, -2, 60000, buf) is False

    @njit
    def nothing(a, arr):
        return etn.call_method(a, NOTHING, arr.ctypes.data)

    out = np.zeros(1)
    assert nothing(etn.address(t), out) is None and out[0] == 42.0


def test_void_e_status_without_exception_is_an_error():
    @njit
    def check(a, x):
        etn.call_method(a, VOID_E, x)
        return 1

    t = T()
    assert check(etn.address(t), 1.0) == 1
    with pytest.raises(SystemError):
        check(etn.address(t), -1.0)


@pytest.mark.parametrize(
    "body, match",
    [
        ("etn.call_method(a, key)", "string literal"),
        ("etn.call_method(a, 'geom.Shape.v1:area#double(O)')", "extensibletype.numba"),
        ("etn.call_method(a, 'geom.Shape.v1:describe#O+(O)!t')", "O\\+ results"),
        ("etn.call_method(a, 'geom.Shape.v1:z#c64(O)')", "c64"),
        ("etn.call_method(a, 'geom.Shape.v1:scaled#f64(O,f64)!e')", "takes 1 argument"),
        ("etn.call_method(a, 'geom.Shape.v1:scaled#f64(O,f64)!e', 'x')", "argument 1 must be float64"),
        ("etn.find_method(1.5, 'geom.Shape.v1:area#f64(O)')", "must be an address"),
    ],
)
def test_typing_errors(body, match):
    ns = {"etn": etn}
    exec(f"def g(a, key):\n    return {body}\n", ns)
    with pytest.raises(TypingError, match=match):
        njit(ns["g"])(1, AREA)


# --- first-class functions (WrapperAddressProtocol) --------------------------------


def test_method_first_class(cprov):
    c = cprov.Circle(2.0)
    m = etn.method(c, AREA)
    assert m is not None and m.address == id(c)
    assert m() == pytest.approx(math.pi * 4)  # from Python: bind

    @njit
    def call(f, a):
        return f(a)

    assert call(m, m.address) == pytest.approx(math.pi * 4)
    assert call(etn.method(NumbaShape(), AREA), 0) == 7.0
    assert etn.method(PyShapeLike(), AREA) is None
    with pytest.raises(ValueError, match="call_method"):
        etn.method(c, SCALED)


class PyShapeLike:
    def area(self):
        return 1.0


# --- cache=True across processes -------------------------------------------------

KERNEL = '''
import numpy as np
from numba import njit
import extensibletype.numba as etn

AREA = "geom.Shape.v1:area#f64(O)"
SCALED = "geom.Shape.v1:scaled#f64(O,f64)!e"


@njit(cache=True)
def kernel(addrs, k):
    s = 0.0
    misses = 0
    for a in addrs:
        if etn.has_method(a, AREA):
            s += etn.call_method(a, SCALED, k)
        else:
            misses += 1
    return s, misses


@njit(cache=True)
def first_class(f, a):
    return f(a) * 2.0
'''

DRIVER = '''
import ctypes, importlib.util, json, os, sys
import extensibletype
AREA_KEY = "geom.Shape.v1:area#f64(O)"
junk = [bytearray(int(sys.argv[1]) * 4096)]  # shift the heap between runs
spec = importlib.util.spec_from_file_location("geom_provider", os.environ["GEOM_PROVIDER"])
geom = importlib.util.module_from_spec(spec)
spec.loader.exec_module(geom)
import extensibletype.numba as etn
import kern

class Overriding(geom.Circle):
    def area(self):
        return 0.0

from numba import cfunc, types

@cfunc(types.int32(types.voidptr, types.float64, types.CPointer(types.float64)))
def nb_scaled(obj, k, out):  # compiled in this process: a new address
    out[0] = 10.0 * k * k
    return 0

@cfunc(types.float64(types.voidptr))
def nb_area(obj):
    return 10.0

class NumbaShape(metaclass=extensibletype.ExtensibleType):
    def area(self):
        return 10.0

extensibletype.set_slots(NumbaShape, {AREA_KEY: nb_area, "geom.Shape.v1:scaled#f64(O,f64)!e": nb_scaled})
shapes = [geom.Circle(1.0), geom.Circle(2.0), Overriding(3.0), NumbaShape()]
s, misses = kern.kernel(etn.addresses(shapes), 2.0)
try:
    kern.kernel(etn.addresses(shapes[:1]), -1.0)
    raised = None
except ValueError as e:
    raised = str(e)
m = etn.method(shapes[3], AREA_KEY)
fc = kern.first_class(m, m.address)
print(json.dumps({
    "fc": fc, "fc_hits": sum(kern.first_class.stats.cache_hits.values()),
    "s": s, "misses": misses, "raised": raised,
    "hits": sum(kern.kernel.stats.cache_hits.values()),
    "misses_cache": sum(kern.kernel.stats.cache_misses.values()),
    "addresses": [etn._read_capi().find_slow, ctypes.addressof(etn._DATA), extensibletype.lookup(shapes[0], AREA_KEY), nb_scaled.address],
}))
'''


@have_cc
def test_cache_across_processes(tmp_path, cprov):
    (tmp_path / "kern.py").write_text(KERNEL)
    (tmp_path / "driver.py").write_text(DRIVER)
    cache = tmp_path / "cache"
    env = {
        **os.environ,
        "NUMBA_CACHE_DIR": str(cache),
        "GEOM_PROVIDER": cprov.__file__,
        "PYTHONPATH": str(tmp_path),
    }
    runs = []
    for i in range(2):
        out = subprocess.run(
            [sys.executable, str(tmp_path / "driver.py"), str(1 + 97 * i)],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert out.returncode == 0, out.stderr[-3000:]
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    want = math.pi * 4 * (1 + 4) + 40.0
    for r in runs:
        assert r["s"] == pytest.approx(want) and r["misses"] == 1
        assert r["raised"] == "scaled: negative factor"
    assert [r["fc"] for r in runs] == [20.0, 20.0] and [r["fc_hits"] for r in runs] == [0, 1]
    assert runs[0]["hits"] == 0 and runs[0]["misses_cache"] >= 1
    assert runs[1]["hits"] >= 1 and runs[1]["misses_cache"] == 0  # loaded from the cache
    index = list(cache.rglob("*.nbi"))
    assert index and list(cache.rglob("*.nbc"))
    # The cached object code names the symbols, never this process's addresses.
    blobs = b"".join(p.read_bytes() for p in cache.rglob("*.nbc"))
    assert etn.FIND_SYMBOL.encode() in blobs and etn.API_SYMBOL.encode() in blobs
    for address in runs[0]["addresses"]:  # runtime, its data, the providers' methods
        assert struct.pack("<Q", address) not in blobs


# --- every kind of signature, against a C provider (python/tests/c/typed_methods.c) ---

BOX = "tests.Box.v1"
BOX_KEYS = {
    "get": "f64(O)",
    "set": "v(O,f64)",
    "fill": "i64(O,*f64,i64)",
    "div": "f64(O,f64)!e",
    "check": "v(O)!e",
    "broken": "v(O)!e",
    "is_": "b(O,p)",
    "cmul": "c128(O,c128)",
    "gil": "i32(O)",
    "mix": "u8(O,i8,u16,i32,u32,f32,u64)",
    "echo": "p(O,p)",
    "next": "*f64(O,*f64)",
    "twice": "i64(O,i64)!e",
}


@pytest.fixture(scope="module")
def Box():
    if not cbuild.have_compiler():
        pytest.skip("no C compiler (cc)")
    tm = cbuild.load(cbuild.build("typed_methods", [cbuild.ROOT / "python" / "tests" / "c" / "typed_methods.c"], cflags=cbuild.STRICT))
    addr = tm.addresses()

    class Box(tm.Box, metaclass=et.ExtensibleType):
        pass

    slots = {f"{BOX}:{m}#{sig}": addr[sig] for m, sig in BOX_KEYS.items() if m != "broken"}
    slots[f"{BOX}:broken#v(O)!e"] = addr["v(O)!e broken"]
    et.set_slots(Box, slots)
    return Box


@njit
def box_ops(a, buf):
    etn.call_method(a, "tests.Box.v1:set#v(O,f64)", 2.5)
    got = etn.call_method(a, "tests.Box.v1:get#f64(O)")
    n = etn.call_method(a, "tests.Box.v1:fill#i64(O,*f64,i64)", buf.ctypes.data, buf.size)
    q = etn.call_method(a, "tests.Box.v1:div#f64(O,f64)!e", 2.0)
    etn.call_method(a, "tests.Box.v1:check#v(O)!e")
    same = etn.call_method(a, "tests.Box.v1:is_#b(O,p)", a)
    other = etn.call_method(a, "tests.Box.v1:is_#b(O,p)", a + 8)
    z = etn.call_method(a, "tests.Box.v1:cmul#c128(O,c128)", 1.0 + 2.0j)
    gil = etn.call_method(a, "tests.Box.v1:gil#i32(O)")
    mix = etn.call_method(a, "tests.Box.v1:mix#u8(O,i8,u16,i32,u32,f32,u64)", -1, 300, -40, 7, 2.5, 1000)
    echo = etn.call_method(a, "tests.Box.v1:echo#p(O,p)", 12345)
    nxt = etn.call_method(a, "tests.Box.v1:next#*f64(O,*f64)", buf.ctypes.data)[1]  # CPointer: buf[2]
    twice = etn.call_method(a, "tests.Box.v1:twice#i64(O,i64)!e", 21)
    return got, n, q, same, other, z, gil, mix, echo, nxt, twice


def test_every_kind_of_signature(Box):
    b = Box(0.0)
    buf = np.zeros(3)
    got, n, q, same, other, z, gil, mix, echo, nxt, twice = box_ops(etn.address(b), buf)
    assert (got, n, q, same, other) == (2.5, 3, 1.25, True, False)
    assert list(buf) == [2.5, 3.5, 4.5]
    assert z == (1.0 + 2.0j) * (2.5 + 1j)
    assert gil == 1  # njit called from Python holds the GIL
    assert mix == (-1 + 300 - 40 + 7 + 2 + 1000) % 256
    assert echo == 12345  # voidptr results come back as ints
    assert nxt == buf[2]
    assert twice == 42
    # The same calls through bind agree.
    assert et.bind(b, f"{BOX}:cmul#c128(O,c128)")(1.0 + 2.0j) == z
    assert et.bind(b, f"{BOX}:mix#u8(O,i8,u16,i32,u32,f32,u64)")(-1, 300, -40, 7, 2.5, 1000) == mix


def test_box_errors_and_nogil(Box):
    b = Box(-1.0)
    a = etn.address(b)

    @njit
    def div(a, x):
        return etn.call_method(a, "tests.Box.v1:div#f64(O,f64)!e", x)

    @njit
    def check(a):
        etn.call_method(a, "tests.Box.v1:check#v(O)!e")

    @njit
    def broken(a):
        etn.call_method(a, "tests.Box.v1:broken#v(O)!e")

    @njit
    def twice(a, x):
        return etn.call_method(a, "tests.Box.v1:twice#i64(O,i64)!e", x)

    @njit(nogil=True)
    def gil_nogil(a):
        return etn.call_method(a, "tests.Box.v1:gil#i32(O)")

    with pytest.raises(ZeroDivisionError, match="box_div"):
        div(a, 0.0)
    with pytest.raises(ValueError, match="box_check: negative value"):
        check(a)
    with pytest.raises(SystemError):
        broken(a)
    with pytest.raises(OverflowError, match="box_twice: negative"):
        twice(a, -1)
    assert gil_nogil(a) == 0  # nogil=True: a flagless method runs without the GIL
