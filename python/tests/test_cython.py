"""The Cython surface: python/extensibletype/extensibletype.pxd (shipped in
the package) and the Cython consumer example (examples/cython/shapes_cy.pyx),
against the C provider and a Python provider."""

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
    pxd = Path(et.__file__).with_name("extensibletype.pxd")
    assert pxd.is_file()
    assert (Path(et.get_include()) / "extensibletype.h").is_file()


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
