# cython: language_level=3, freethreading_compatible=True
"""A Cython consumer of typed methods: sums ``geom.Shape.v1:area#f64(O)``
over any objects in a ``nogil`` loop, with ids fixed at compile time, and
calls ``geom.Shape.v1:scaled#f64(O,f64)!e`` (which may raise) with the GIL.

Works on every provider (Cython, C, Rust, a Python class with ctypes
values); an object whose type misses (no such slot, another signature, or a
Python subclass overriding the method) gets its Python method called
instead, so the answer is always the one Python would give.

Build:
    python -m extensibletype header geom_keys.txt -o geom_ids.h
    cython -3 geom_consumer.pyx
    cc -shared -fPIC -O2 $(python3-config --includes) -I$(python -m extensibletype include) -I. \\
       geom_consumer.c -o geom_consumer$(python3-config --extension-suffix)
"""

from cpython.object cimport PyObject
from libc.stdint cimport int32_t, uint64_t
from libc.stdlib cimport free, malloc

cimport extensibletype

cdef extern from "geom_ids.h":
    # Compile-time ids (generated from geom_keys.txt).
    uint64_t AREA_ID "EXTTYPE_ID_GEOM_SHAPE_V1__AREA__F64__O"
    uint64_t SCALED_ID "EXTTYPE_ID_GEOM_SHAPE_V1__SCALED__F64__O_F64__E"

# The C types the signatures stand for.
ctypedef double (*area_fn)(PyObject *self) noexcept nogil
ctypedef int32_t (*scaled_fn)(PyObject *self, double factor, double *out) except -1

extensibletype.ExtType_Import()


def total_area(shapes):
    """Sum of ``area()`` over ``shapes``: typed calls without the GIL, the
    Python method for the objects whose type misses."""
    cdef list objs = list(shapes)
    cdef Py_ssize_t n = len(objs), i
    cdef PyObject **ptrs = <PyObject **>malloc(max(n, 1) * sizeof(PyObject *))
    cdef char *missed = <char *>malloc(max(n, 1))
    cdef double total = 0
    cdef area_fn f
    if ptrs is NULL or missed is NULL:
        free(ptrs)
        free(missed)
        raise MemoryError()
    try:
        for i in range(n):
            ptrs[i] = <PyObject *>objs[i]  # `objs` keeps the references
        with nogil:
            for i in range(n):
                f = <area_fn>extensibletype.ExtType_Find(ptrs[i], AREA_ID)
                missed[i] = f is NULL
                if f is not NULL:
                    total += f(ptrs[i])
        for i in range(n):
            if missed[i]:
                total += objs[i].area()
        return total
    finally:
        free(ptrs)
        free(missed)


def scaled(obj, double factor):
    """``obj.scaled(factor)``: the typed method when the type has it (its
    exception propagates), else the Python method."""
    cdef scaled_fn f = <scaled_fn>extensibletype.ExtType_Find(<PyObject *>obj, SCALED_ID)
    cdef double out
    if f is NULL:
        return obj.scaled(factor)
    f(<PyObject *>obj, factor, &out)
    return out


def found(obj):
    """(area found?, scaled found?) on ``type(obj)``."""
    return (extensibletype.ExtType_Find(<PyObject *>obj, AREA_ID) is not NULL,
            extensibletype.ExtType_Find(<PyObject *>obj, SCALED_ID) is not NULL)
