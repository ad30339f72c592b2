"""The C API (include/extensibletype.h) from C extensions: the shapes example
(examples/c) driven against every kind of provider, ExtType_SetSlots,
ExtType_Import's error paths, and GIL-free lookups from POSIX threads while
Python threads replace the slots.

Extensions are compiled with cbuild (cached under target/c-ext).
"""

import ctypes
import subprocess
import sys
import sysconfig
import threading
import time

import pytest

import cbuild
import extensibletype as et

pytestmark = pytest.mark.skipif(not cbuild.have_compiler(), reason="no C compiler (cc)")

SCALE_KEY = "extensibletype.example.v1:scale"
VTABLE_KEY = "extensibletype.example.v1:vtable"

SCALE = ctypes.CFUNCTYPE(ctypes.c_double, ctypes.py_object, ctypes.c_double)
AREA = ctypes.CFUNCTYPE(ctypes.c_double, ctypes.py_object)


class VTable(ctypes.Structure):
    """``shapes_vtable`` of examples/c/shapes.h."""

    _fields_ = [("area", AREA), ("name", ctypes.c_char_p)]


def python_slots(scale, area, name):
    """Slot values for a Python provider: ctypes callbacks and a pointer to
    a VTable (the pointer object keeps the struct, and the struct its
    callback and name, alive; the runtime keeps the pointer object alive)."""
    vtable = VTable(AREA(area), name)
    return {SCALE_KEY: SCALE(scale), VTABLE_KEY: ctypes.pointer(vtable)}


@pytest.fixture(scope="module")
def provider():
    return cbuild.example_extension("shapes_provider")


@pytest.fixture(scope="module")
def consumer():
    return cbuild.example_extension("shapes_consumer")


# --- the C provider ----------------------------------------------------------


def test_c_provider(provider, consumer):
    circle, square = provider.Circle(2.0), provider.Square(3.0)
    assert type(provider.Circle) is et.ExtensibleType
    assert consumer.scale(circle, 10.0) == 20.0
    assert consumer.scale(square, 0.5) == 1.5
    assert consumer.area(circle) == pytest.approx(3.141592653589793 * 4)
    assert consumer.area(square) == 9.0
    assert (consumer.vtable_name(circle), consumer.vtable_name(square)) == ("circle", "square")
    addr = provider.addresses()
    assert et.get_slots(provider.Circle) == {SCALE_KEY: addr["scale"], VTABLE_KEY: addr["circle_vtable"]}
    assert et.get_slots(provider.Square) == {SCALE_KEY: addr["scale"], VTABLE_KEY: addr["square_vtable"]}
    for obj in (circle, square):
        for key in (SCALE_KEY, VTABLE_KEY):
            assert consumer.find(obj, key) == et.lookup(obj, key) is not None
            assert consumer.find_in_type(type(obj), key) == et.lookup(obj, key)


def test_python_subclass_of_c_provider(provider, consumer):
    class Big(provider.Circle):  # inherits the metaclass and the slots
        pass

    class Doubled(provider.Circle):
        __cslots__ = python_slots(lambda self, x: 2 * x * self.size, lambda self: -1.0, b"doubled")

    assert type(Big) is et.ExtensibleType
    assert consumer.scale(Big(3.0), 2.0) == 6.0
    assert consumer.vtable_name(Big(1.0)) == "circle"
    assert consumer.scale(Doubled(3.0), 2.0) == 12.0
    assert (consumer.area(Doubled(1.0)), consumer.vtable_name(Doubled(1.0))) == (-1.0, "doubled")
    assert consumer.scale(provider.Circle(3.0), 2.0) == 6.0  # the base is unchanged


# --- Python providers --------------------------------------------------------


def test_python_provider(consumer):
    class Meters(metaclass=et.ExtensibleType):
        __cslots__ = python_slots(lambda self, x: x * self.factor, lambda self: 42.0, b"meters")

        def __init__(self, factor):
            self.factor = factor

    m = Meters(1000.0)
    assert consumer.scale(m, 2.5) == 2500.0
    assert consumer.area(m) == 42.0
    assert consumer.vtable_name(m) == "meters"
    assert consumer.find(m, SCALE_KEY) == et.lookup(m, SCALE_KEY)


def test_foreign_builtin_provider(consumer):
    """A type we do not own (bytearray) registered with set_slots."""
    before = et.get_slots(bytearray)
    et.set_slots(bytearray, python_slots(lambda self, x: len(self) * x, lambda self: 0.0, b"bytearray"))
    try:
        buf = bytearray(b"abcd")
        assert consumer.scale(buf, 0.5) == 2.0
        assert consumer.vtable_name(buf) == "bytearray"
        assert consumer.find(buf, SCALE_KEY) == et.lookup(buf, SCALE_KEY) is not None

        class Sub(bytearray):  # plain subclass: found through tp_base
            pass

        assert consumer.scale(Sub(b"xy"), 1.0) == 2.0
        with pytest.raises(TypeError, match="'bytes' object does not implement extensibletype.example.v1:scale"):
            consumer.scale(b"abcd", 1.0)
    finally:
        et.set_slots(bytearray, {SCALE_KEY: None, VTABLE_KEY: None})
    assert et.get_slots(bytearray) == before
    with pytest.raises(TypeError, match="does not implement"):
        consumer.scale(bytearray(b"a"), 1.0)


def test_missing_slots_raise_type_error(provider, consumer):
    with pytest.raises(TypeError, match=r"^'int' object does not implement extensibletype\.example\.v1:scale$"):
        consumer.scale(1, 2.0)
    with pytest.raises(TypeError, match=r"^'str' object does not implement extensibletype\.example\.v1:vtable$"):
        consumer.area("x")
    with pytest.raises(TypeError, match="vtable"):
        consumer.vtable_name(None)

    class OnlyScale(metaclass=et.ExtensibleType):
        __cslots__ = {SCALE_KEY: SCALE(lambda self, x: x)}

    assert consumer.scale(OnlyScale(), 3.0) == 3.0
    with pytest.raises(TypeError, match="'OnlyScale' object does not implement extensibletype.example.v1:vtable"):
        consumer.area(OnlyScale())


def test_python_callback_error_propagates(consumer):
    def boom(self, x):
        raise ZeroDivisionError("from the provider")

    class Bad(metaclass=et.ExtensibleType):
        __cslots__ = {SCALE_KEY: SCALE(boom)}

    # ctypes reports the error (unraisable) and returns an unspecified double
    # from a failing callback: the interface has no error channel.
    hook_calls = []
    old = sys.unraisablehook
    sys.unraisablehook = hook_calls.append
    try:
        assert isinstance(consumer.scale(Bad(), 1.0), float)
    finally:
        sys.unraisablehook = old
    assert hook_calls and isinstance(hook_calls[0].exc_value, ZeroDivisionError)


def test_cpp_consumer(provider):
    cpp = cbuild.example_extension("shapes_cpp")
    circle, square = provider.Circle(1.0), provider.Square(2.0)
    assert cpp.scale(square, 4.0) == 8.0
    assert (cpp.vtable_name(circle), cpp.area(square)) == ("circle", 4.0)
    assert cpp.total_area((square, square, circle)) == pytest.approx(8.0 + 3.141592653589793)

    class Feet(metaclass=et.ExtensibleType):
        __cslots__ = python_slots(lambda self, x: x * 0.3048, lambda self: 7.0, b"feet")

    assert cpp.scale(Feet(), 10.0) == pytest.approx(3.048)
    assert cpp.area(Feet()) == 7.0
    with pytest.raises(TypeError, match="'tuple' object does not implement extensibletype.example.v1:vtable"):
        cpp.total_area((square, ()))


# --- the rest of the C API ---------------------------------------------------


def test_import_cached_the_runtime(consumer):
    info = consumer.info()
    assert info["abi_version"] == et.ABI_VERSION == 1
    assert info["struct_size"] == info["sizeof_api"]
    assert info["table_offset"] == et.TABLE_OFFSET
    assert info["metaclass"] is et.ExtensibleType


@pytest.mark.parametrize(
    "key, expected",
    [
        ("", 0x04B2008FD98C1DD4),
        ("a", 0xA8B6F1C0B975C10C),
        ("extensibletype.array.v1:data", 0xB598A1668C53AFD9),
        ("numpy.ndarray.shape", 0x7780A86E9080477A),
        ("ключ:ü", None),
    ],
)
def test_prehash(consumer, key, expected):
    assert consumer.prehash(key) == et.prehash(key)
    if expected is not None:
        assert consumer.prehash(key) == expected


def test_find_by_raw_id_and_misses(consumer):
    class Raw(metaclass=et.ExtensibleType):
        __cslots__ = {0x1234_5678_9ABC_DEF1: 0x1000}

    assert consumer.find(Raw(), 0x1234_5678_9ABC_DEF1) == 0x1000
    assert consumer.find_in_type(Raw, 0x1234_5678_9ABC_DEF1) == 0x1000
    for missing in (1, 0, 2**64 - 1, 0x1234_5678_9ABC_DEF0):
        assert consumer.find(Raw(), missing) is None
    assert consumer.find(object(), 0x1234_5678_9ABC_DEF1) is None
    assert consumer.find(Raw, 0x1234_5678_9ABC_DEF1) is None  # type(Raw) is the metaclass
    assert consumer.find_in_type(et.ExtensibleType, 0x1234_5678_9ABC_DEF1) is None


def test_c_set_slots(consumer):
    key = "tests.c_api.v1:set_slots"

    class Target(metaclass=et.ExtensibleType):
        pass

    class Child(Target):
        pass

    consumer.set_slots(Target, {key: 0x2000, 0x77: 0x3000})
    assert et.get_slots(Target) == {key: 0x2000, 0x77: 0x3000}
    assert consumer.find(Child(), key) == 0x2000  # republished for subclasses
    consumer.set_slots(Target, {key: None})
    assert consumer.find(Child(), key) is None
    assert et.get_slots(Target) == {0x77: 0x3000}

    class Foreign:  # no metaclass: the foreign registry
        pass

    consumer.set_slots(Foreign, {key: 0x4000})
    assert consumer.find(Foreign(), key) == 0x4000 == et.lookup(Foreign(), key)
    assert et.table_info(Foreign)["kind"] == "foreign"


def test_c_set_slots_errors_change_nothing(consumer):
    key = "tests.c_api.v1:errors"

    class Target(metaclass=et.ExtensibleType):
        __cslots__ = {key: 0x5000}

    before = et.get_slots(Target)
    with pytest.raises(ValueError, match="reserved"):
        consumer.set_slots(Target, {key: 0x6000, 0: 0x1})
    with pytest.raises(TypeError, match="must be a type"):
        consumer.set_slots(Target(), {key: 0x6000})
    # The same slot twice (by key and by id) in one ExtType_SetSlots call.
    with pytest.raises(ValueError, match="twice"):
        consumer.set_slots(Target, {key: 0x6000, et.prehash(key): 0x7000})

    class Foreign:
        pass

    with pytest.raises(ValueError, match=f"{et.prehash(key):#018x}"):
        consumer.set_slots(Foreign, {key: 0x6000, et.prehash(key): 0x7000})
    assert et.get_slots(Foreign) == {}
    assert et.get_slots(Target) == before
    assert consumer.find(Target(), key) == 0x5000


# --- ExtType_Import error paths (subprocesses: the import is per process) -----

_FAKE_API = """
import ctypes, sys
sys.path.insert(0, {dir!r})
import extensibletype

class FakeApi(ctypes.Structure):
    _fields_ = [("abi_version", ctypes.c_uint32), ("struct_size", ctypes.c_uint32),
                ("pointers", ctypes.c_void_p * 11)]

fake = FakeApi({abi}, {size})
new = ctypes.PYFUNCTYPE(ctypes.py_object, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p)(
    ("PyCapsule_New", ctypes.pythonapi))
name = ctypes.create_string_buffer(b"extensibletype._C_API")
extensibletype._C_API = {value}
try:
    import shapes_consumer
except ImportError as e:
    print("ImportError:", e)
else:
    print("imported")
"""


def _run_fake(consumer, abi, size, value="new(ctypes.addressof(fake), name, None)"):
    from pathlib import Path

    code = _FAKE_API.format(dir=str(Path(consumer.__file__).parent), abi=abi, size=size, value=value)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_import_refuses_other_abi_version(consumer):
    out = _run_fake(consumer, abi=99, size=96)
    assert out.startswith("ImportError:"), out
    assert "ABI version 99" in out and "ABI version 1" in out


def test_import_refuses_short_struct(consumer):
    out = _run_fake(consumer, abi=1, size=40)
    assert out.startswith("ImportError:"), out
    assert "40 bytes" in out


def test_import_refuses_non_capsule(consumer):
    out = _run_fake(consumer, abi=1, size=96, value="object()")
    assert out.startswith("ImportError:") and "is not a capsule named" in out, out
    out = _run_fake(consumer, abi=1, size=96, value="new(ctypes.addressof(fake), b'other.name', None)")
    assert out.startswith("ImportError:") and "is not a capsule named" in out, out


def test_import_accepts_real_runtime(consumer):
    out = _run_fake(consumer, abi=1, size=96, value="extensibletype._C_API")
    assert out == "imported"


@pytest.mark.skipif(not sysconfig.get_config_var("Py_GIL_DISABLED"), reason="not a free-threaded build")
def test_extensions_keep_the_gil_disabled(provider, consumer):
    assert sys._is_gil_enabled() is False


# --- GIL-free lookups while writers replace the slots ------------------------


def _stress(consumer, tp, obj, key, values, seconds=0.5, nthreads=2):
    """Run consumer.stress on `obj` while a Python thread keeps replacing
    `key` on `tp` with one of `values` or removing it."""
    ident = et.prehash(key)
    stop = threading.Event()
    writes = [0]
    # Published before the readers start (the writer's first write, i = 0,
    # removes the key: a loaded machine may run one stress call in the whole
    # window right after it).
    et.set_slots(tp, {key: values[0]})

    failed = []

    def writer():
        i = 1
        try:
            while not stop.is_set():
                choice = values[i % len(values)] if i % 7 else None  # sometimes removed
                other = {"tests.c_api.v1:noise.%d" % (i % 3): 0x10 + i % 5}  # resize the table too
                et.set_slots(tp, {key: choice, **other})
                i += 1
        except BaseException as e:  # noqa: BLE001 - re-raised below
            failed.append(e)
        writes[0] = i

    t = threading.Thread(target=writer)
    t.start()
    try:
        # Size each call to ~0.1 s; repeat until `seconds` have passed.
        totals = dict(hits=0, misses=0, bad=0, changes=0)
        deadline = time.monotonic() + seconds
        first_bad = 0
        while time.monotonic() < deadline:
            r = consumer.stress(obj, ident, nthreads, 200_000, tuple(values))
            for k in totals:
                totals[k] += r[k]
            first_bad = first_bad or r["first_bad"]
    finally:
        stop.set()
        t.join()
    if failed:
        raise failed[0]
    assert totals["bad"] == 0, f"a lookup returned {first_bad:#x}, not one of the published pointers"
    assert writes[0] > 10
    assert totals["hits"] > 0
    return totals


def test_stress_extensible_type(consumer):
    class Hot(metaclass=et.ExtensibleType):
        pass

    class HotChild(Hot):  # republished on every write to Hot
        pass

    values = (0x1110, 0x2220, 0x3330)
    totals = _stress(consumer, Hot, HotChild(), "tests.c_api.v1:stress", values)
    assert totals["misses"] > 0  # removals were seen
    assert totals["changes"] > 1  # the readers saw the writer's publications


def test_stress_foreign_type(consumer):
    class Plain:  # foreign registry: registry table -> per-type table
        pass

    values = (0x4440, 0x5550)
    totals = _stress(consumer, Plain, Plain(), "tests.c_api.v1:stress.foreign", values)
    assert totals["changes"] > 1


def test_stress_argument_errors(consumer):
    with pytest.raises(ValueError):
        consumer.stress(object(), 1, 0, 10, ())
    with pytest.raises(TypeError):
        consumer.stress(object(), 1, 1, 10, [])
    r = consumer.stress(object(), 1, 3, 1000, ())
    assert r["misses"] == 3000 and r["bad"] == 0


# --- a Rust provider ----------------------------------------------------------
# examples/second_runtime links its own copy of the runtime (the Rust API);
# its `module_dir` fixture builds it with cargo (see test_two_runtimes.py).

from test_two_runtimes import module_dir  # noqa: E402,F401  (fixture)


@pytest.fixture(scope="module")
def second_runtime(module_dir):  # noqa: F811
    import sysconfig as _sc

    return cbuild.load(module_dir / ("second_runtime" + _sc.get_config_var("EXT_SUFFIX")))


def test_rust_provider(second_runtime, provider, consumer):
    key = "second_runtime.v1:answer"
    RustMade = second_runtime.make_type("RustMade")  # runtime::type_from_spec, Rust fn answer() -> 42
    obj = RustMade()
    assert type(RustMade) is et.ExtensibleType
    assert consumer.call_int(obj, key) == 42
    assert consumer.find(obj, key) == second_runtime.find(obj, key) == et.lookup(obj, key)

    # A slot registered through the Rust API (runtime::set_slots), called from C.
    negate = SCALE(lambda self, x: -x * self.size)

    class Sub(provider.Circle):
        pass

    second_runtime.set_slot(Sub, SCALE_KEY, ctypes.cast(negate, ctypes.c_void_p).value)
    try:
        assert consumer.scale(Sub(2.0), 3.0) == -6.0
        assert consumer.scale(provider.Circle(2.0), 3.0) == 6.0
    finally:
        et.set_slots(Sub, {SCALE_KEY: None})  # the raw address does not keep `negate` alive
    assert consumer.scale(Sub(2.0), 3.0) == 6.0  # inherited again
