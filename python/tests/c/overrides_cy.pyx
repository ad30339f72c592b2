# cython: freethreading_compatible=True
# Cython side of test_overrides.py: cdef classes to register typed slots on
# (foreign types whose `area` is a cpdef method in their own namespace).

cdef class Shape:
    cpdef double area(self):
        return 1.0


cdef class Square(Shape):
    cpdef double area(self):  # overrides the cpdef method: in its own namespace
        return 4.0


cdef class Plain(Shape):
    pass
