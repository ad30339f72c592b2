"""A real PyO3 extension using extensibletype from Rust (examples/pyo3_ext),
one library with two modules:

- ``pyo3_ext`` (src/readme.rs, the README's Rust example verbatim): a frozen
  #[pyclass] whose methods are typed slots (``extensibletype::typed_methods!``,
  no hand-written thunk), and #[pyfunction]s that call any provider's typed
  method (``runtime::find_typed``) or the Python method on a miss;
- ``pyo3_ext_more``: ``sum`` over any array.v1 provider's view, and typed
  methods that raise or panic under each convention.

Built here with cargo: a build failure fails the test; it skips only when
cargo is missing or the interpreter is one PyO3 0.30 does not support
(free-threaded 3.13: PyO3 0.29+ refuse it).
"""

import importlib.util
import math
import re
import shutil
import sys
import sysconfig

import pytest

import cargo_pyo3
import cbuild
import extensibletype as et
import extensibletype.arrays as xa

EXAMPLE = cargo_pyo3.ROOT / "examples" / "pyo3_ext"
MANIFEST = EXAMPLE / "Cargo.toml"

AREA = "geom.Shape.v1:area#f64(O)"
SCALED = "geom.Shape.v1:scaled#f64(O,f64)!e"
DESCRIBE = "geom.Shape.v1:describe#O+(O)!t"


@pytest.fixture(autouse=True, scope="module")
def providers_registered():
    # As in test_arrays.py: the array.v1 adapters on foreign types
    # (bytearray, numpy.ndarray) only for this module's tests.
    xa._register_providers()
    yield
    xa._unregister_providers()


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    if shutil.which("cargo") is None:
        pytest.skip("cargo is not on PATH: cannot build examples/pyo3_ext")
    if cargo_pyo3.FREE_THREADED_313:
        pytest.skip("PyO3 0.30 does not support free-threaded CPython 3.13 (0.29+ need 3.14t)")
    library, log = cargo_pyo3.build(MANIFEST, "pyo3_ext")
    if library is None:
        pytest.fail(f"cargo build of examples/pyo3_ext failed:\n{log}")
    out = tmp_path_factory.mktemp("pyo3_ext") / ("pyo3_ext" + sysconfig.get_config_var("EXT_SUFFIX"))
    shutil.copy(library, out)
    return out


def _load(path, name):
    # One shared library, two modules: each has its PyInit_<name>.
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules[name] = module
    return module


@pytest.fixture(scope="module")
def ext(library):
    return _load(library, "pyo3_ext")


@pytest.fixture(scope="module")
def more(library):
    return _load(library, "pyo3_ext_more")


def test_readme_rust_block_is_the_example():
    """The README's Rust block is src/readme.rs exactly: what the suite builds."""
    readme = (cargo_pyo3.ROOT / "README.md").read_text()
    section = readme[readme.index("**Rust**") :]
    block = re.search(r"```rust\n(.*?)```", section, re.S).group(1)
    assert block == (EXAMPLE / "src" / "readme.rs").read_text()
    assert 'include!("readme.rs");' in (EXAMPLE / "src" / "lib.rs").read_text()


def test_pyclass_methods_are_typed_slots(ext):
    sq = ext.Square(3.0)
    assert set(et.get_slots(ext.Square)) == {AREA, SCALED, DESCRIBE}
    assert et.lookup(sq, AREA) is not None  # the lookup C consumers inline (ExtType_Find)
    assert et.lookup(sq, "geom.Shape.v1:area#f32(O)") is None  # another signature: a miss
    assert et.lookup(ext.Square, AREA) is None  # type(Square) is `type`: no slot
    # Through C, by bind (ctypes): flagless area runs with the GIL released.
    assert et.bind(sq, AREA)() == 9.0
    assert et.bind(sq, SCALED)(2.0) == 36.0
    assert et.bind(sq, DESCRIBE)() == "Square(3.0)"
    # The Python methods of the same names still work.
    assert (sq.area(), sq.scaled(2.0), sq.describe()) == (9.0, 36.0, "Square(3.0)")


def test_raising_method_raises_through_bind(ext):
    with pytest.raises(ValueError, match="scaled: negative factor"):
        et.bind(ext.Square(1.0), SCALED)(-1.0)
    with pytest.raises(ValueError, match="negative factor"):
        ext.scaled(ext.Square(1.0), -1.0)  # the Rust consumer, typed path


def test_python_override_masks_the_typed_slot(ext):
    class Big(ext.Square):
        def area(self):
            return 100.0

    b = Big(2.0)
    assert et.lookup(b, AREA) is None and et.bind(b, AREA) is None
    assert et.bind(b, SCALED)(1.0) == 4.0  # not overridden: inherited
    assert ext.area(b) == 100.0  # the consumer falls back to the override
    assert ext.area(ext.Square(2.0)) == 4.0
    assert ext.scaled(b, 3.0) == 36.0


class PyShape:
    """Only Python methods: every typed lookup misses."""

    def __init__(self, a):
        self.a = a

    def area(self):
        return self.a

    def scaled(self, k):
        if k < 0:
            raise ValueError("PyShape.scaled: negative factor")
        return self.a * k * k


def test_consumer_falls_back_to_python_methods(ext):
    s = PyShape(5.0)
    assert (ext.area(s), ext.scaled(s, 2.0)) == (5.0, 20.0)
    with pytest.raises(ValueError, match="PyShape.scaled"):
        ext.scaled(s, -1.0)
    for obj in (1, "x", object()):
        with pytest.raises(AttributeError):
            ext.area(obj)


@pytest.mark.skipif(not cbuild.have_compiler(), reason="no C compiler (cc)")
def test_consumer_calls_the_c_provider(ext):
    """The same keys provided by C (examples/c/geom_provider.c)."""
    c = cbuild.example_extension("geom_provider").Circle(2.0)
    assert ext.area(c) == pytest.approx(math.pi * 4)
    assert ext.scaled(c, 3.0) == pytest.approx(math.pi * 36)
    with pytest.raises(ValueError, match="scaled: negative factor"):
        ext.scaled(c, -1.0)


@pytest.mark.skipif(not cbuild.have_compiler(), reason="no C compiler (cc)")
def test_consumer_calls_the_cython_provider(ext):
    """And by Cython cdef classes (examples/cython/geom_provider.pyx)."""
    pytest.importorskip("Cython")
    provider = cbuild.cython_extension(cbuild.EXAMPLES_CYTHON / "geom_provider.pyx")
    c, s = provider.Circle(2.0), provider.Square(3.0)
    assert et.lookup(c, AREA) is not None
    assert (ext.area(c), ext.area(s)) == (pytest.approx(math.pi * 4), 9.0)
    assert ext.scaled(s, 2.0) == 36.0
    with pytest.raises(ValueError, match="scale factor must be >= 0"):
        ext.scaled(c, -1.0)


def test_flagless_panic_returns_the_fallback(more):
    f = more.Faulty()
    area = et.bind(f, "tests.Faulty.v1:area#f64(O)")
    assert math.isnan(area())  # no flag: cannot raise; NaN, and the panic hook printed it
    sides = et.bind(f, "tests.Faulty.v1:sides#i64(O,i64)")
    assert sides(3) == 3 and sides(-1) == 0


def test_raising_method_panic_raises(more):
    scaled = et.bind(more.Faulty(), "tests.Faulty.v1:scaled#f64(O,f64)!e")
    assert scaled(2.0) == 2.0
    with pytest.raises(ZeroDivisionError, match="scaled failed"):
        scaled(-1.0)
    with pytest.raises(BaseException, match="scaled panicked") as info:
        scaled(0.0)
    assert type(info.value).__name__ == "PanicException"


def test_thread_method_panic_is_unraisable(more, monkeypatch):
    seen = []
    monkeypatch.setattr(sys, "unraisablehook", seen.append)
    f = more.Faulty()
    assert et.bind(f, "tests.Faulty.v1:describe#O+(O)!t")() is None
    assert len(seen) == 1 and "describe panicked" in str(seen[0].exc_value)
    assert seen[0].object is f


def test_non_frozen_class_thread_and_raising_methods(more):
    c = more.Counter(5)
    assert set(et.get_slots(more.Counter)) == {
        "tests.Counter.v1:value#i64(O)!t",
        "tests.Counter.v1:above#b(O,i64,b)!t",
        "tests.Counter.v1:check#v(O)!e",
        "tests.Counter.v1:name#O+(O)!e",
        "tests.Counter.v1:touch#v(O)!t",
    }
    assert et.bind(c, "tests.Counter.v1:value#i64(O)!t")() == 5
    above = et.bind(c, "tests.Counter.v1:above#b(O,i64,b)!t")
    assert (above(5, True), above(5, False)) == (False, True)
    assert et.bind(c, "tests.Counter.v1:check#v(O)!e")() is None
    assert et.bind(c, "tests.Counter.v1:name#O+(O)!e")() == "Counter(5)"
    assert et.bind(c, "tests.Counter.v1:touch#v(O)!t")() is None
    with pytest.raises(ValueError, match="negative counter"):
        et.bind(more.Counter(-1), "tests.Counter.v1:check#v(O)!e")()


def test_typed_method_without_python_method_is_an_import_error(more):
    with pytest.raises(AttributeError, match="no Python method 'missing'.*tests.Broken.v1:missing#f64"):
        more.register_broken()
    assert et.get_slots(more.Broken) == {}


def test_sum_array_v1_views(more):
    a = xa.Array((2, 3))
    a.fill(1.5)
    assert more.sum(a) == 9.0
    assert more.sum(xa.Array((0, 4))) == 0.0


def test_sum_numpy_strided(more):
    np = pytest.importorskip("numpy")
    x = np.arange(12.0).reshape(3, 4)
    assert more.sum(x) == 66.0
    assert more.sum(x[:, ::2].T) == x[:, ::2].sum()
    assert more.sum(x[::-1, 1]) == x[:, 1].sum()


def test_sum_bad_input(more):
    with pytest.raises(TypeError, match="float64"):
        more.sum(bytearray(b"abc"))  # uint8 view
    with pytest.raises(TypeError, match="array provider"):
        more.sum(object())


def test_with_view_adopts_an_unregistered_dlpack_type(more):
    """Rust's with_view takes the same slow path as the kernels (docs/spec.md
    section 12.3): a DLPack exporter type is adopted on its first miss."""
    np = pytest.importorskip("numpy")

    class Wrap:
        def __init__(self, a):
            self.a = a

        def __dlpack__(self, **kw):
            return self.a.__dlpack__(**kw)

    assert et.lookup(Wrap(None), xa.KEY_ACQUIRE) is None
    assert more.sum(Wrap(np.arange(5.0))) == 10.0
    assert et.lookup(Wrap(None), xa.KEY_ACQUIRE) is not None
    with pytest.raises(TypeError, match="__dlpack__"):
        more.sum(object())
    et.set_slots(Wrap, {xa.KEY_ACQUIRE: None, xa.KEY_RELEASE: None})
