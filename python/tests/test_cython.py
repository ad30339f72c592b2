"""The Cython surface: python/extensibletype/__init__.pxd (shipped in the
package, so that `cimport extensibletype` works) and the Cython consumer example (examples/cython/shapes_cy.pyx),
against the C provider and a Python provider."""

import math
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

import cbuild
import extensibletype as et

Cython = pytest.importorskip("Cython", reason="Cython is not installed for this interpreter")
pytestmark = pytest.mark.skipif(not cbuild.have_compiler(), reason="no C compiler (cc)")

from test_c_api import SCALE, SCALE_KEY, VTABLE_KEY, python_slots  # noqa: E402


@pytest.fixture(scope="module")
def cy():
    return cbuild.cython_extension(cbuild.EXAMPLES_CYTHON / "shapes_cy.pyx")


@pytest.fixture(scope="module")
def provider():
    return cbuild.example_extension("shapes_provider")


def test_pxd_ships_in_the_package():
    for name in ("__init__.pxd", "extensibletype.pxd"):
        assert Path(et.__file__).with_name(name).is_file()
    assert (Path(et.get_include()) / "extensibletype.h").is_file()


CIMPORT_STYLES = """
# cython: language_level=3, freethreading_compatible=True
from libc.stdint cimport uint64_t
from cpython.object cimport PyObject
cimport extensibletype
from extensibletype cimport ExtType_FindInType, ExtType_SlotDef
from extensibletype.extensibletype cimport ExtType_Find as old_find

extensibletype.ExtType_Import()

def find3(obj, bytes key):
    cdef uint64_t id = extensibletype.ExtType_Prehash(key)
    cdef void *a = extensibletype.ExtType_Find(<PyObject *>obj, id)
    cdef void *b
    cdef void *c
    with nogil:
        b = ExtType_FindInType(<extensibletype.PyTypeObject *>(<PyObject *>obj).ob_type, id)
        c = old_find(<PyObject *>obj, id)
    return [None if a is NULL else <size_t>a, None if b is NULL else <size_t>b, None if c is NULL else <size_t>c]

def set_one(cls, bytes key, size_t value):
    cdef ExtType_SlotDef d
    d.key = key
    d.id = 0
    d.ptr = <void *>value
    return extensibletype.ExtType_SetSlots(cls, &d, 1)
"""


def test_cimport_extensibletype(tmp_path):
    """`cimport extensibletype` (SPEC: like `cimport numpy`), `from
    extensibletype cimport ...` and the older `extensibletype.extensibletype`
    path all declare the same C API."""
    pyx = tmp_path / "cimport_styles.pyx"
    pyx.write_text(CIMPORT_STYLES)
    mod = cbuild.cython_extension(pyx)

    class Plain:
        pass

    key = b"test.cimport.v1:slot"
    assert mod.find3(Plain(), key) == [None, None, None]
    assert mod.set_one(Plain, key, 0x5000) == 0
    assert mod.find3(Plain(), key) == [0x5000] * 3
    assert et.lookup(Plain(), key.decode()) == 0x5000
    with pytest.raises(TypeError):
        mod.set_one(3, key, 1)


def test_cython_consumer_c_provider(cy, provider):
    circle, square = provider.Circle(2.0), provider.Square(3.0)
    assert cy.scale(circle, 10.0) == 20.0
    assert cy.area(square) == 9.0
    assert cy.area(circle) == pytest.approx(3.141592653589793 * 4)
    assert (cy.vtable_name(circle), cy.vtable_name(square)) == ("circle", "square")
    assert cy.find(circle, SCALE_KEY) == et.lookup(circle, SCALE_KEY)
    assert cy.total_scale(square, 2.0, 1000) == 6000.0  # GIL released


def test_cython_consumer_python_provider(cy):
    class Feet(metaclass=et.ExtensibleType):
        __cslots__ = python_slots(lambda self, x: x * 0.3048, lambda self: 7.0, b"feet")

    f = Feet()
    assert cy.scale(f, 10.0) == pytest.approx(3.048)
    assert cy.area(f) == 7.0
    assert cy.vtable_name(f) == "feet"
    assert cy.find(f, VTABLE_KEY) == et.lookup(f, VTABLE_KEY)


def test_cython_consumer_missing(cy):
    with pytest.raises(TypeError, match="'int' object does not implement extensibletype.example.v1:scale"):
        cy.scale(3, 1.0)
    with pytest.raises(TypeError, match="'list' object does not implement extensibletype.example.v1:vtable"):
        cy.area([])
    with pytest.raises(TypeError, match="does not implement extensibletype.example.v1:scale"):
        cy.total_scale(object(), 1.0, 3)
    assert cy.total_scale(object(), 1.0, 0) == 0.0
    assert cy.find(object(), SCALE_KEY) is None


@pytest.mark.skipif(not sysconfig.get_config_var("Py_GIL_DISABLED"), reason="not a free-threaded build")
def test_cython_module_keeps_the_gil_disabled(cy):
    assert sys._is_gil_enabled() is False  # freethreading_compatible=True


# --- typed methods: a Cython provider and a Cython consumer ------------------

GEOM = cbuild.EXAMPLES_CYTHON


@pytest.fixture(scope="module")
def geom(tmp_path_factory):
    """(provider, consumer): examples/cython/geom_provider.pyx and
    geom_consumer.pyx, the consumer's ids generated from geom_keys.txt by the
    header command, as its docstring says."""
    inc = tmp_path_factory.mktemp("geom_ids")
    subprocess.run(
        [sys.executable, "-m", "extensibletype", "header", str(GEOM / "geom_keys.txt"), "-o", str(inc / "geom_ids.h")],
        check=True,
    )
    provider = cbuild.cython_extension(GEOM / "geom_provider.pyx")
    consumer = cbuild.cython_extension(GEOM / "geom_consumer.pyx", include_dirs=[inc])
    return provider, consumer


def test_cython_provider_publishes_typed_methods(geom):
    provider, consumer = geom
    c, s = provider.Circle(2.0), provider.Square(3.0)
    assert consumer.found(c) == consumer.found(s) == (True, True)
    assert et.lookup(c, "geom.Shape.v1:area#f64(O)") is not None
    assert et.lookup(c, "geom.Shape.v1:area#f64(O,f64)") is None  # another signature: a miss
    assert consumer.total_area([c, s]) == pytest.approx(math.pi * 4 + 9.0)
    assert consumer.scaled(s, 2.0) == 36.0
    with pytest.raises(ValueError, match="scale factor must be >= 0, not -1.0"):
        consumer.scaled(c, -1.0)
    # The Python-level methods keep working.
    assert (c.area(), s.scaled(2.0)) == (pytest.approx(math.pi * 4), 36.0)


def test_cython_consumer_falls_back_to_python(geom):
    provider, consumer = geom

    class Plain:  # no typed slots at all: the Python methods
        def area(self):
            return 5.0

        def scaled(self, f):
            return 5.0 * f * f

    class Tiny(provider.Square):  # inherits the typed slots
        pass

    class Overriding(provider.Square):  # overrides `area`: its typed slot is masked
        def area(self):
            return 100.0

    t, o = Tiny(1.0), Overriding(1.0)
    assert consumer.found(Plain()) == (False, False)
    assert consumer.found(t) == (True, True)
    assert consumer.found(o) == (False, True)
    assert consumer.total_area([Plain(), t, o]) == 5.0 + 1.0 + 100.0
    assert consumer.scaled(Plain(), 2.0) == 20.0
    assert consumer.scaled(o, 3.0) == 9.0
