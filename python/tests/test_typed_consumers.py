"""The typed-method examples (examples/c/geom.h): a C provider
(geom_provider.c) and the consumer pattern in C (geom_consumer.c) and C++
(geom_cpp.cpp, extensibletype.hpp): look up the typed key, call the C
function with or without the GIL as its flag says, and call the Python
method of the same name on a miss; and extensibletype.bind on the same
provider.
"""

import math

import pytest

import cbuild
import extensibletype as et

pytestmark = pytest.mark.skipif(not cbuild.have_compiler(), reason="no C compiler (cc)")

AREA = "geom.Shape.v1:area#f64(O)"
SCALED = "geom.Shape.v1:scaled#f64(O,f64)!e"
DESCRIBE = "geom.Shape.v1:describe#O+(O)!t"


@pytest.fixture(scope="module")
def provider():
    return cbuild.example_extension("geom_provider")


@pytest.fixture(scope="module", params=["geom_consumer", "geom_cpp"])
def consumer(request):
    return cbuild.example_extension(request.param)


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

    def describe(self):
        return f"PyShape({self.a})"


def test_provider_registers_typed_keys(provider):
    c = provider.Circle(2.0)
    assert set(et.get_slots(provider.Circle)) == {AREA, SCALED, DESCRIBE}
    assert (c.area(), c.scaled(2.0), c.describe()) == (math.pi * 4, math.pi * 16, "Circle(2.0)")


def test_typed_path(provider, consumer):
    c = provider.Circle(2.0)
    before = consumer.stats() if hasattr(consumer, "stats") else None
    assert consumer.area(c) == pytest.approx(math.pi * 4)
    assert consumer.scaled(c, 3) == pytest.approx(math.pi * 36)
    assert consumer.describe(c) == "Circle(2.0)"
    with pytest.raises(ValueError, match="scaled: negative factor"):
        consumer.scaled(c, -1.0)  # !e: the provider's exception
    with pytest.raises(TypeError):
        consumer.scaled(c, "x")
    if before is not None:
        typed, fallback = consumer.stats()
        assert (typed - before[0], fallback - before[1]) == (5, 0)  # counted at the lookup


def test_fallback_to_the_python_method(consumer):
    s = PyShape(5.0)
    before = consumer.stats() if hasattr(consumer, "stats") else None
    assert consumer.area(s) == 5.0
    assert consumer.scaled(s, 2.0) == 20.0
    assert consumer.describe(s) == "PyShape(5.0)"
    with pytest.raises(ValueError, match="PyShape.scaled"):
        consumer.scaled(s, -1.0)
    with pytest.raises(AttributeError):
        consumer.area(object())
    if before is not None:
        typed, fallback = consumer.stats()
        assert (typed - before[0], fallback - before[1]) == (0, 5)


def test_total_area_mixes_typed_and_fallback(provider, consumer):
    objs = (provider.Circle(1.0), PyShape(2.0), provider.Circle(2.0), PyShape(0.5))
    assert consumer.total_area(objs) == pytest.approx(math.pi * 5 + 2.5)
    assert consumer.total_area(()) == 0.0
    with pytest.raises(AttributeError):
        consumer.total_area((provider.Circle(1.0), 3))


def test_python_override_wins(provider, consumer):
    """A Python subclass overriding a method masks the typed slot (from
    extensibletype's runtime): the consumer calls the override."""

    class Mine(provider.Circle):
        def area(self):
            return -1.0

    m = Mine(1.0)
    if et.lookup(m, AREA) is not None:
        pytest.skip("Python overrides do not mask typed slots in this build")
    assert consumer.area(m) == -1.0
    assert consumer.total_area((m, provider.Circle(1.0))) == pytest.approx(math.pi - 1.0)
    assert consumer.scaled(m, 1.0) == pytest.approx(math.pi)  # not overridden: still typed


def test_cpp_ids_are_the_keys(provider):
    cpp = cbuild.example_extension("geom_cpp")
    assert cpp.ids() == {k: et.prehash(k) for k in (AREA, SCALED, DESCRIBE)}


def test_bind_on_the_provider(provider):
    c = provider.Circle(3.0)
    assert et.bind(c, AREA)() == pytest.approx(math.pi * 9)
    assert et.bind(c, SCALED)(2.0) == pytest.approx(math.pi * 36)
    with pytest.raises(ValueError, match="negative factor"):
        et.bind(c, SCALED)(-2.0)
    assert et.bind(c, DESCRIBE)() == "Circle(3.0)"
    assert et.bind(PyShape(1.0), AREA) is None
    assert et.bind(c, "geom.Shape.v1:area#f32(O)") is None


@pytest.mark.parametrize("std", ["-std=c++17", "-std=c++20"])
@pytest.mark.parametrize("limited", [False, True], ids=["full", "limited"])
def test_examples_compile_warning_free(tmp_path, std, limited):
    """geom_cpp.cpp as C++17 and C++20 (-Wpedantic), geom_consumer.c as C11,
    with the full and the limited API."""
    import subprocess
    import sysconfig

    if limited and sysconfig.get_config_var("Py_GIL_DISABLED"):
        pytest.skip("the limited API is not supported by free-threaded CPython 3.13")
    defs = ["-DPy_LIMITED_API=0x030c0000"] if limited else []
    incs = [f"-I{cbuild.PY_INCLUDE}", f"-I{cbuild.INCLUDE}", f"-I{cbuild.EXAMPLES_C}"]
    for compiler, flags, src in [
        (cbuild.cxx(), [std, "-Wpedantic"], cbuild.EXAMPLES_C / "geom_cpp.cpp"),
        (cbuild.cc(), ["-std=c11"], cbuild.EXAMPLES_C / "geom_consumer.c"),
    ]:
        cmd = [*compiler, *flags, *cbuild.STRICT, *defs, *incs, "-fsyntax-only", str(src)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stderr}"
