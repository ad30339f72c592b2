# cython: language_level=3, freethreading_compatible=True
"""A Cython consumer of the shapes interface (examples/c/shapes.h).

Same behaviour as the C consumer (examples/c/shapes_consumer.c): find the
slots "extensibletype.example.v1:scale" and ":vtable" on any object and call
them; ``total_scale`` does its lookups and calls without the GIL.

Build (see docs/c-api.md):
    cython -3 shapes_cy.pyx            # finds extensibletype/__init__.pxd on sys.path
    cc -shared -fPIC -O2 $(python3-config --includes) \
       -I$(python -m extensibletype include) -I../c shapes_cy.c -o shapes_cy$(python3-config --extension-suffix)
"""

from libc.stdint cimport uint64_t
from cpython.object cimport PyObject

from extensibletype cimport ExtType_Find, ExtType_Import, ExtType_Prehash, exttype_find


cdef extern from "shapes.h" nogil:
    # Compile-time ids (shapes_ids.h, from `python -m extensibletype header`).
    uint64_t SHAPES_ID_SCALE
    uint64_t SHAPES_ID_VTABLE
    const char *SHAPES_KEY_SCALE
    const char *SHAPES_KEY_VTABLE

    ctypedef double (*shapes_scale_fn)(PyObject *self, double x) noexcept nogil

    ctypedef struct shapes_vtable:
        double (*area)(PyObject *self) noexcept nogil
        const char *name


ExtType_Import()  # raises ImportError on an ABI mismatch


cdef missing(obj, const char *key):
    return TypeError(f"'{type(obj).__name__}' object does not implement {key.decode()}")


def scale(obj, double x):
    """scale(obj, x) -> float: the extensibletype.example.v1:scale of obj."""
    cdef shapes_scale_fn f = <shapes_scale_fn>exttype_find(obj, SHAPES_ID_SCALE)
    if f is NULL:
        raise missing(obj, SHAPES_KEY_SCALE)
    return f(<PyObject *>obj, x)


cdef const shapes_vtable *vtable_of(obj) except NULL:
    cdef const shapes_vtable *vt = <const shapes_vtable *>exttype_find(obj, SHAPES_ID_VTABLE)
    if vt is NULL:
        raise missing(obj, SHAPES_KEY_VTABLE)
    return vt


def area(obj):
    """area(obj) -> float: vtable->area(obj)."""
    return vtable_of(obj).area(<PyObject *>obj)


def vtable_name(obj):
    """vtable_name(obj) -> str: vtable->name."""
    return vtable_of(obj).name.decode()


def find(obj, key):
    """find(obj, key: str) -> int | None: ExtType_Find with a run-time id."""
    cdef bytes k = key.encode()
    cdef void *p = exttype_find(obj, ExtType_Prehash(k))
    return None if p is NULL else <size_t>p


def total_scale(obj, double x, Py_ssize_t n):
    """Sum of n calls of scale(obj, x), each with its own lookup, GIL released
    (only valid for providers whose scale needs no GIL, e.g. the C one)."""
    cdef PyObject *o = <PyObject *>obj   # `obj` keeps it alive
    cdef double total = 0
    cdef Py_ssize_t i
    cdef shapes_scale_fn f = NULL
    with nogil:
        for i in range(n):
            f = <shapes_scale_fn>ExtType_Find(o, SHAPES_ID_SCALE)
            if f is NULL:
                break
            total += f(o, x)
    if n > 0 and f is NULL:
        raise missing(obj, SHAPES_KEY_SCALE)
    return total
