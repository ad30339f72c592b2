# cython: language_level=3, freethreading_compatible=True
"""A Cython provider of typed methods: two ``cdef class``es publish
``geom.Shape.v1:area#f64(O)`` and ``geom.Shape.v1:scaled#f64(O,f64)!e``.

Each typed method is a ``cdef`` method whose C type is the signature's
(``self`` is the ``O``); the Python-level method of the same name calls it,
so Python users and consumers that miss see the same behaviour. One
``publish_methods`` call per class publishes them: no thunk per method.

Build (see docs/c-api.md, "Cython"):
    cython -3 geom_provider.pyx        # finds extensibletype/__init__.pxd on sys.path
    cc -shared -fPIC -O2 $(python3-config --includes) -I$(python -m extensibletype include) \\
       geom_provider.c -o geom_provider$(python3-config --extension-suffix)
"""

from libc.math cimport M_PI
from libc.stdint cimport int32_t

cimport extensibletype

extensibletype.ExtType_Import()  # raises ImportError on an ABI mismatch


cdef class Circle:
    cdef readonly double r

    def __init__(self, double r):
        self.r = r

    # geom.Shape.v1:area#f64(O): no flag, so it may run without the GIL.
    cdef double _area(self) noexcept nogil:
        return M_PI * self.r * self.r

    # geom.Shape.v1:scaled#f64(O,f64)!e: may raise; 0, or -1 with an
    # exception set; the result through the trailing out-pointer.
    cdef int32_t _scaled(self, double factor, double *out) except -1:
        if factor < 0:
            raise ValueError(f"scale factor must be >= 0, not {factor}")
        out[0] = M_PI * (self.r * factor) ** 2
        return 0

    def area(self):
        return self._area()

    def scaled(self, double factor):
        cdef double out
        self._scaled(factor, &out)
        return out


cdef class Square:
    cdef readonly double side

    def __init__(self, double side):
        self.side = side

    cdef double _area(self) noexcept nogil:
        return self.side * self.side

    cdef int32_t _scaled(self, double factor, double *out) except -1:
        if factor < 0:
            raise ValueError(f"scale factor must be >= 0, not {factor}")
        out[0] = (self.side * factor) ** 2
        return 0

    def area(self):
        return self._area()

    def scaled(self, double factor):
        cdef double out
        self._scaled(factor, &out)
        return out


# One declaration per class: typed key -> the cdef method's address.
extensibletype.publish_methods(Circle, {
    "geom.Shape.v1:area#f64(O)": <size_t><void *>Circle._area,
    "geom.Shape.v1:scaled#f64(O,f64)!e": <size_t><void *>Circle._scaled,
})
extensibletype.publish_methods(Square, {
    "geom.Shape.v1:area#f64(O)": <size_t><void *>Square._area,
    "geom.Shape.v1:scaled#f64(O,f64)!e": <size_t><void *>Square._scaled,
})
