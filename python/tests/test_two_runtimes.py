"""One metaclass per process (docs/spec.md §7): `examples/second_runtime` is an
extension module linking its own copy of the extensibletype runtime. Whichever
of it and `extensibletype` is imported first publishes the metaclass in
`sys.modules["_extensibletype"]`; the other reuses it, and slots set through
either copy are seen by both.

The module is built here with cargo (a deliverable: a build failure fails the
tests, it does not skip them). Each scenario runs in a fresh interpreter so
that the import order is under control.
"""

import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

import cargo_pyo3

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = ROOT / "examples" / "second_runtime" / "Cargo.toml"


@pytest.fixture(scope="module")
def module_dir(tmp_path_factory):
    """A directory holding the freshly built `second_runtime` extension."""
    if shutil.which("cargo") is None:
        pytest.fail("cargo is not on PATH: cannot build examples/second_runtime")
    # On free-threaded 3.13: a copy whose lockfile has pyo3-ffi 0.28.
    manifest = cargo_pyo3.manifest_for_this_python(MANIFEST)
    library, log = cargo_pyo3.build(manifest, "second_runtime")
    if library is None:
        pytest.fail(f"cargo build of examples/second_runtime failed:\n{log}")
    out = tmp_path_factory.mktemp("second_runtime")
    shutil.copy(library, out / ("second_runtime" + sysconfig.get_config_var("EXT_SUFFIX")))
    return out


def run(module_dir, code):
    """Run `code` in a fresh interpreter that can import second_runtime."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(module_dir), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run(
        [sys.executable, "-X", "faulthandler", "-W", "error::RuntimeWarning", "-c", textwrap.dedent(code)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, f"subprocess failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    assert "OK" in proc.stdout.splitlines(), proc.stdout
    return proc.stdout


# Checks shared by both import orders (run after both modules are imported).
COMMON = """
    import ctypes, sys
    et = extensibletype
    sr = second_runtime
    shared = sys.modules["_extensibletype"]

    # One metaclass, published once.
    assert sr.metaclass() is et.ExtensibleType, (sr.metaclass(), et.ExtensibleType)
    assert shared.ExtensibleType_v1 is et.ExtensibleType
    assert type(shared.api_v1).__name__ == "PyCapsule"

    # Slots set through extensibletype are seen by the second copy ...
    class A(metaclass=et.ExtensibleType):
        __cslots__ = {"tests.two.v1:a": 0x1000}
    class B(A):
        pass
    assert sr.find(B(), "tests.two.v1:a") == 0x1000
    assert sr.find(B(), "tests.two.v1:missing") is None
    et.set_slots(A, {"tests.two.v1:a": 0x1100})
    assert sr.find(B(), "tests.two.v1:a") == 0x1100

    # ... and slots set through the second copy by extensibletype.
    sr.set_slot(A, "tests.two.v1:b", 0x2000)
    assert et.lookup(B(), "tests.two.v1:b") == 0x2000
    assert et.get_slots(B) == {"tests.two.v1:a": 0x1100, "tests.two.v1:b": 0x2000}

    # Foreign types go to one registry.
    sr.set_slot(bytearray, "tests.two.v1:foreign", 0x3000)
    assert et.lookup(bytearray(), "tests.two.v1:foreign") == 0x3000
    et.set_slots(bytearray, {"tests.two.v1:foreign2": 0x3100})
    assert sr.find(bytearray(), "tests.two.v1:foreign2") == 0x3100
    assert sr.find(bytearray(), "tests.two.v1:foreign") == 0x3000

    # One interner: a collision is detected across the copies.
    et._core._bind_key("tests.two.v1:other", et.prehash("tests.two.v1:mine"))
    try:
        sr.set_slot(A, "tests.two.v1:mine", 1)
    except ValueError as e:
        assert "tests.two.v1:other" in str(e), e
    else:
        raise AssertionError("collision not detected through the second copy")

    # A type made by the second copy from a PyType_Spec.
    T = sr.make_type("Thing")
    assert type(T) is et.ExtensibleType
    assert T.__name__ == "Thing"
    address = et.lookup(T(), sr.ANSWER_KEY)
    assert address is not None
    assert ctypes.CFUNCTYPE(ctypes.c_int)(address)() == 42
    assert sr.find(T(), sr.ANSWER_KEY) == address
    assert et.get_slots(T) == {sr.ANSWER_KEY: address}
    assert et.table_info(T)["kind"] == "extensible"

    # Python subclasses of it inherit, and see later changes.
    class Sub(T):
        __cslots__ = {"tests.two.v1:sub": 0x4000}
    assert et.lookup(Sub(), sr.ANSWER_KEY) == address
    sr.set_slot(T, "tests.two.v1:late", 0x5000)
    assert et.lookup(Sub(), "tests.two.v1:late") == 0x5000
    assert sr.find(Sub(), "tests.two.v1:sub") == 0x4000

    # Free-threaded builds: neither module turned the GIL back on.
    assert getattr(sys, "_is_gil_enabled", lambda: True)() == GIL_AT_START

    print("OK")
"""

PRELUDE = """
    import sys
    GIL_AT_START = getattr(sys, "_is_gil_enabled", lambda: True)()
"""


def test_extensibletype_first(module_dir):
    run(
        module_dir,
        PRELUDE
        + """
    import extensibletype
    assert "_extensibletype" in sys.modules
    metaclass_before = sys.modules["_extensibletype"].ExtensibleType_v1
    import second_runtime
    assert sys.modules["_extensibletype"].ExtensibleType_v1 is metaclass_before
    """
        + COMMON,
    )


def test_second_runtime_first(module_dir):
    run(
        module_dir,
        PRELUDE
        + """
    assert "extensibletype" not in sys.modules and "_extensibletype" not in sys.modules
    import second_runtime
    metaclass_before = sys.modules["_extensibletype"].ExtensibleType_v1
    assert second_runtime.metaclass() is metaclass_before
    # Classes made before the package is imported keep working afterwards.
    early = second_runtime.make_type("Early")
    import extensibletype
    assert extensibletype.ExtensibleType is metaclass_before
    assert extensibletype.lookup(early(), second_runtime.ANSWER_KEY) is not None
    """
        + COMMON,
    )


def test_second_runtime_alone(module_dir):
    """Without the package: the second copy is a complete runtime by itself."""
    run(
        module_dir,
        PRELUDE
        + """
    import second_runtime as sr
    M = sr.metaclass()
    assert M.__name__ == "ExtensibleType"
    T = sr.make_type("Alone")
    assert type(T) is M
    assert sr.find(T(), sr.ANSWER_KEY) is not None
    class C(T):
        pass
    sr.set_slot(T, "tests.two.v1:x", 0x10)
    assert sr.find(C(), "tests.two.v1:x") == 0x10
    assert "extensibletype" not in sys.modules
    print("OK")
    """,
    )


# An owner from an older release: its API struct is shorter (append-only,
# docs/spec.md §9). Simulated with the real runtime's struct cut to `size`
# bytes (its struct_size said so), published where an owner publishes it:
# the ballot box (the rendezvous of the first loaded copy, the package's)
# and sys.modules["_extensibletype"].api_v1.
OLDER_OWNER = """
    import ctypes
    import extensibletype
    from extensibletype import _core
    get = ctypes.PYFUNCTYPE(ctypes.c_void_p, ctypes.py_object, ctypes.c_char_p)(
        ("PyCapsule_GetPointer", ctypes.pythonapi))
    real = get(_core._C_API, b"extensibletype._C_API")
    old = (ctypes.c_uint64 * 32)()
    ctypes.memmove(old, real, SIZE)
    ctypes.c_uint32.from_address(ctypes.addressof(old) + 4).value = SIZE
    rendezvous = ctypes.addressof(ctypes.c_uint64.in_dll(ctypes.CDLL(_core.__file__), "extensibletype_rendezvous_v1"))
    state = ctypes.c_size_t.from_address(rendezvous + 16)
    assert state.value == real, (state.value, real)
    state.value = ctypes.addressof(old)
    new_capsule = ctypes.PYFUNCTYPE(ctypes.py_object, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p)(
        ("PyCapsule_New", ctypes.pythonapi))
    sys.modules["_extensibletype"].api_v1 = new_capsule(ctypes.addressof(old), b"extensibletype._C_API", None)
    import second_runtime
    et, sr = extensibletype, second_runtime
    # The copy published nothing of its own: the ballot box and the
    # capsule still name the older owner's struct.
    assert state.value == ctypes.addressof(old)
    assert get(sys.modules["_extensibletype"].api_v1, b"extensibletype._C_API") == ctypes.addressof(old)
    # Every kind of table, read through the copy's view of the short struct.
    class Flat(metaclass=et.ExtensibleType):
        __cslots__ = {"tests.old.v1:a": 0x1000}
    class TwoLevel(metaclass=et.ExtensibleType):
        __cslots__ = {f"tests.old.v1:k{i}": 0x2000 + 16 * i for i in range(40)}
    class Foreign:
        pass
    class ForeignSub(Foreign):
        pass
    et.set_slots(Foreign, {"tests.old.v1:f": 0x3000})
    assert et.table_info(Flat)["flat"] and not et.table_info(TwoLevel)["flat"]
    for _ in range(2):  # the second round may come from the type cache
        assert sr.find(Flat(), "tests.old.v1:a") == 0x1000
        assert all(sr.find(TwoLevel(), f"tests.old.v1:k{i}") == 0x2000 + 16 * i for i in range(40))
        assert sr.find(ForeignSub(), "tests.old.v1:f") == sr.find(Foreign(), "tests.old.v1:f") == 0x3000
        assert sr.find(Flat(), "tests.old.v1:k1") is None and sr.find(1.5, "tests.old.v1:f") is None
"""


@pytest.mark.parametrize("size", [104, 112, 124, 128, 136])
def test_second_copy_joins_an_older_owner(module_dir, size):
    """A copy built with today's crate joins a runtime whose API struct is
    as short as ABI v1's first (104 bytes: no ob_type offset, no type cache,
    no flat descriptor): it imports, publishes only the owner's struct, and
    finds every slot the owner's classes have."""
    run(module_dir, PRELUDE + f"\n    SIZE = {size}\n" + OLDER_OWNER + COMMON)
