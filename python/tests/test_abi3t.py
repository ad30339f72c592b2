"""abi3t (PEP 803) extensions: examples/c/abi3t_provider.c and abi3t_consumer.c
compiled with -DPy_TARGET_ABI3T=0x030f0000 -Wall -Wextra -Werror, as C and as
C++17, loaded into CPython 3.15+ (scripts/test-forky.sh runs the suite there).

Checks that providers made both ways (ExtType_FromSpec; PyType_FromSlots with
Py_tp_metaclass) work with consumers of both languages, that the consumer
reads ob_type inline at the offset the runtime measured, and that an API
struct it cannot use gives a clear ImportError (subprocesses: the import is
per process)."""

from __future__ import annotations

import ctypes
import math
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

import cbuild
import extensibletype as et

pytestmark = [
    pytest.mark.skipif(sys.version_info < (3, 15), reason="abi3t (PEP 803) needs CPython 3.15+"),
    pytest.mark.skipif(not cbuild.have_compiler(), reason="no C compiler"),
]

ABI3T = ["-DPy_TARGET_ABI3T=0x030f0000"]
CPP = ["-x", "c++", "-std=c++17"]
LANGS = ("c", "cpp")


def _build(example, lang):
    name = example if lang == "c" else f"{example}_cpp"
    macro = "ABI3T_PROVIDER_NAME" if example == "abi3t_provider" else "ABI3T_CONSUMER_NAME"
    flags = cbuild.STRICT + ABI3T
    kw = {}
    if lang == "cpp":
        flags = flags + CPP + [f"-D{macro}={name}"]
        kw["compiler"] = cbuild.cxx()
    return cbuild.build(name, [cbuild.EXAMPLES_C / f"{example}.c"], cflags=flags, **kw)


@pytest.fixture(scope="module", params=LANGS)
def provider(request):
    return cbuild.load(_build("abi3t_provider", request.param))


@pytest.fixture(scope="module", params=LANGS)
def consumer(request):
    return cbuild.load(_build("abi3t_consumer", request.param))


def expected_ob_type_offset():
    ptr = ctypes.sizeof(ctypes.c_void_p)
    return ptr + 8 + ptr if sysconfig.get_config_var("Py_GIL_DISABLED") else ptr


def test_provider_types_are_extensible(provider):
    for name, kind in (("Circle", "circle"), ("Square", "square")):
        tp = getattr(provider, name)
        assert type(tp) is et.ExtensibleType, name
        slots = et.get_slots(tp)
        addrs = provider.addresses()
        assert slots["extensibletype.example.v1:scale"] == addrs[f"{kind}_scale"]
        assert slots["extensibletype.example.v1:vtable"] == addrs[f"{kind}_vtable"]
        obj = tp(2.5)
        assert obj.size == 2.5
        assert repr(obj) == f"{provider.__name__}.{name}(2.5)"


def test_consumer_finds_slots_on_both_kinds_of_provider(provider, consumer):
    c, s = provider.Circle(2.0), provider.Square(3.0)
    assert consumer.scale(c, 3.0) == 6.0
    assert consumer.scale(s, 0.5) == 1.5
    assert consumer.shape(c) == ("circle", pytest.approx(math.pi * 4))
    assert consumer.shape(s) == ("square", 9.0)
    assert consumer.find(c, "extensibletype.example.v1:vtable") == provider.addresses()["circle_vtable"]


def test_python_subclasses_inherit_the_slots(provider, consumer):
    class Big(provider.Square):
        pass

    class Bigger(Big):
        pass

    assert consumer.shape(Bigger(4.0)) == ("square", 16.0)
    et.set_slots(Big, {"extensibletype.example.v1:scale": 0x1234})  # override on Big (never called)
    assert consumer.find(Bigger(1.0), "extensibletype.example.v1:scale") == 0x1234
    assert consumer.scale(provider.Square(2.0), 2.0) == 4.0


def test_consumer_misses(consumer):
    for obj in (None, 1, 2.5, "s", object(), et.ExtensibleType("E", (), {})()):
        assert consumer.shape(obj) is None
        with pytest.raises(TypeError, match="does not provide"):
            consumer.scale(obj, 1.0)


def test_consumer_reads_ob_type_inline(consumer):
    assert consumer.inline_type() == (1, expected_ob_type_offset())


@pytest.fixture
def providers_registered():
    """The array.v1 adapters on foreign types, for this test only (other
    modules count the slots of bytearray subclasses; see test_arrays.py)."""
    import extensibletype.arrays as xa

    xa._register_providers()
    yield
    xa._unregister_providers()


def test_array_v1_from_abi3t(consumer, providers_registered):
    import array

    buf = array.array("d", [1.0, 2.0, 3.5])
    assert consumer.array_sum(buf) == 6.5
    assert consumer.array_shape(buf) == ((3,), (8,))
    np = pytest.importorskip("numpy")
    a = np.arange(24.0).reshape(4, 6)[::2, ::-3]
    assert consumer.array_sum(a) == a.sum()
    assert consumer.array_shape(a) == (a.shape, a.strides)
    with pytest.raises(TypeError, match="not an array provider"):
        consumer.array_sum(object())


# --- API structs the consumer cannot use, or older/newer ones it can ------------

_SCRIPT = """
import ctypes, sys
sys.path.insert(0, {dir!r})
import extensibletype
name = b"extensibletype._C_API"
get = ctypes.pythonapi.PyCapsule_GetPointer
get.restype, get.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]
real = get(extensibletype._C_API, name)
real_size = ctypes.c_uint32.from_address(real + 4).value
abi, size, copy = {abi}, {size}, {copy}
size = real_size + {extra} if size is None else size   # None: the real size (+ extra)
copy = real_size if copy < 0 else copy
buf = ctypes.create_string_buffer(max(size, 8) + 64)
if copy:
    ctypes.memmove(buf, real, min(size, copy))   # a real struct, cut or padded with zeros
ctypes.c_uint32.from_buffer(buf, 0).value = abi
ctypes.c_uint32.from_buffer(buf, 4).value = size
new = ctypes.PYFUNCTYPE(ctypes.py_object, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p)(
    ("PyCapsule_New", ctypes.pythonapi))
cname = ctypes.create_string_buffer(name)
extensibletype._C_API = new(ctypes.addressof(buf), cname, None)
try:
    import {module} as m
except ImportError as e:
    print("ImportError:", e)
else:
    Ext = extensibletype.ExtensibleType("Ext", (), {{}})
    key = "tests.abi3t.v1:k"
    extensibletype.set_slots(Ext, {{key: 0x1230}})
    print("imported", m.inline_type(), m.find(Ext(), key), m.find(1, key))
"""


def _run(module, abi, size, copy=0, extra=0):
    path = _build(module.split("_cpp")[0], "cpp" if module.endswith("_cpp") else "c")
    code = _SCRIPT.format(dir=str(Path(path).parent), module=module, abi=abi, size=size, copy=copy, extra=extra)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout.strip()


@pytest.mark.parametrize("module", ["abi3t_consumer", "abi3t_consumer_cpp"])
def test_import_errors_for_unusable_api_structs(module):
    for abi, size, want in ((0, None, "ABI version 0"), (2, None, "ABI version 2"),
                            (1, 40, "40 bytes"), (1, 0, "0 bytes")):
        out = _run(module, abi, size, copy=-1)
        assert out.startswith("ImportError:"), (abi, size, out)
        assert want in out and "rebuild it against a matching extensibletype" in out, out


@pytest.mark.parametrize("module", ["abi3t_consumer", "abi3t_consumer_cpp"])
def test_older_and_newer_api_structs_import(module):
    ptr = ctypes.sizeof(ctypes.c_void_p)
    before = 13 * ptr  # ABI v1 up to foreign_registry: no ob_type_offset yet
    # An older runtime's struct ends before ob_type_offset: Py_TYPE() fallback.
    out = _run(module, 1, before, copy=before)
    assert out == f"imported (1, 0) {0x1230} 0", out
    # A newer runtime's longer struct: the fields this header knows are used.
    out = _run(module, 1, None, copy=-1, extra=32)
    assert out == f"imported (1, {expected_ob_type_offset()}) {0x1230} 0", out
