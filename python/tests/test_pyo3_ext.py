"""A real PyO3 (0.30) extension using extensibletype from Rust
(examples/pyo3_ext): a #[pyclass] that provides a slot through
runtime::set_slots, a #[pyfunction] that finds and calls it on any object,
and one that sums any array.v1 provider's view.

Built here with cargo: a build failure fails the test; it skips only when
cargo is missing or the interpreter is one PyO3 0.30 does not support
(free-threaded 3.13: PyO3 0.29+ refuse it).
"""

import importlib.util
import shutil
import sys
import sysconfig
from pathlib import Path

import pytest

import cargo_pyo3
import extensibletype as et
import extensibletype.arrays as xa

MANIFEST = cargo_pyo3.ROOT / "examples" / "pyo3_ext" / "Cargo.toml"


@pytest.fixture(autouse=True, scope="module")
def providers_registered():
    # As in test_arrays.py: the array.v1 adapters on foreign types
    # (bytearray, numpy.ndarray) only for this module's tests.
    xa._register_providers()
    yield
    xa._unregister_providers()


@pytest.fixture(scope="module")
def ext(tmp_path_factory):
    if shutil.which("cargo") is None:
        pytest.skip("cargo is not on PATH: cannot build examples/pyo3_ext")
    if cargo_pyo3.FREE_THREADED_313:
        pytest.skip("PyO3 0.30 does not support free-threaded CPython 3.13 (0.29+ need 3.14t)")
    library, log = cargo_pyo3.build(MANIFEST, "pyo3_ext")
    if library is None:
        pytest.fail(f"cargo build of examples/pyo3_ext failed:\n{log}")
    out = tmp_path_factory.mktemp("pyo3_ext") / ("pyo3_ext" + sysconfig.get_config_var("EXT_SUFFIX"))
    shutil.copy(library, out)
    spec = importlib.util.spec_from_file_location("pyo3_ext", out)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules["pyo3_ext"] = module
    return module


def test_pyclass_provides_a_slot(ext):
    sq = ext.Square(3.0)
    assert ext.area(sq) == 9.0
    # The same slot, seen through the Python API and the C lookup path.
    assert et.lookup(sq, ext.KEY_AREA) is not None
    assert et.lookup(ext.Square, ext.KEY_AREA) is None  # type(Square) is `type`: no slot
    assert ext.KEY_AREA in {str(k) for k in et.get_slots(ext.Square)}


def test_find_on_any_object(ext):
    for obj in (1, "x", object(), ext, ext.Square):
        assert ext.area(obj) is None


def test_slot_set_from_python_is_found_from_rust(ext):
    # Another type gets the same slot (the Square implementation's address):
    # the Rust consumer finds it through the runtime like any other.
    address = et.lookup(ext.Square(1.0), ext.KEY_AREA)

    class Other(metaclass=et.ExtensibleType):
        __cslots__ = {ext.KEY_AREA: address}

    assert et.lookup(Other(), ext.KEY_AREA) == address


needs_array = pytest.mark.skipif(xa.Array is None, reason="no Array type in the abi3t build")


@needs_array
def test_sum_array_v1_views(ext):
    a = xa.Array((2, 3))
    a.fill(1.5)
    assert ext.sum(a) == 9.0
    assert ext.sum(xa.Array((0, 4))) == 0.0


def test_sum_numpy_strided(ext):
    np = pytest.importorskip("numpy")
    x = np.arange(12.0).reshape(3, 4)
    assert ext.sum(x) == 66.0
    assert ext.sum(x[:, ::2].T) == x[:, ::2].sum()
    assert ext.sum(x[::-1, 1]) == x[:, 1].sum()


def test_sum_bad_input(ext):
    with pytest.raises(TypeError, match="float64"):
        ext.sum(bytearray(b"abc"))  # uint8 view
    with pytest.raises(TypeError, match="array provider"):
        ext.sum(object())


def test_with_view_adopts_an_unregistered_dlpack_type(ext):
    """Rust's with_view takes the same slow path as the kernels (docs/spec.md
    section 12.3): a DLPack exporter type is adopted on its first miss."""
    np = pytest.importorskip("numpy")
    if not hasattr(xa._impl, "_adopt"):
        pytest.skip("this build has no DLPack layer (abi3t)")

    class Wrap:
        def __init__(self, a):
            self.a = a

        def __dlpack__(self, **kw):
            return self.a.__dlpack__(**kw)

    assert et.lookup(Wrap(None), xa.KEY_ACQUIRE) is None
    assert ext.sum(Wrap(np.arange(5.0))) == 10.0
    assert et.lookup(Wrap(None), xa.KEY_ACQUIRE) is not None
    with pytest.raises(TypeError, match="__dlpack__"):
        ext.sum(object())
    et.set_slots(Wrap, {xa.KEY_ACQUIRE: None, xa.KEY_RELEASE: None})
