# cython: language_level=3
"""Cython declarations of the C API in ``extensibletype.h`` (ABI v1), found by
``cimport extensibletype`` as ``cimport numpy`` finds NumPy's::

    cimport extensibletype
    from cpython.object cimport PyObject

    # A compile-time id: `python -m extensibletype header keys.txt -o ids.h`
    # writes one macro per key; declare the one you use.
    cdef extern from "ids.h":
        unsigned long long MY_ID "EXTTYPE_ID_MY_KEY"

    extensibletype.ExtType_Import()            # module level: needs the GIL
    cdef void *f = extensibletype.ExtType_Find(<PyObject *>obj, MY_ID)  # nogil is fine

Compile the generated C with ``-I extensibletype.get_include()`` (setuptools:
``Extension(..., include_dirs=[extensibletype.get_include()])``). Ownership,
GIL and error rules are those documented in ``extensibletype.h``: the
``ExtType_Find*`` / ``ExtType_Table*`` / ``ExtType_Prehash*`` functions need
no GIL (the caller holds a reference to the object or type); the others need
the GIL and raise on error.
"""

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from cpython.object cimport PyObject, PyTypeObject
from cpython.mem cimport PyMem_Malloc, PyMem_Free


cdef extern from "Python.h":
    ctypedef struct PyType_Slot:
        int slot
        void *pfunc

    ctypedef struct PyType_Spec:
        const char *name
        int basicsize
        int itemsize
        unsigned int flags
        PyType_Slot *slots


cdef extern from "extensibletype.h" nogil:
    enum: EXTTYPE_ABI_VERSION
    enum: EXTTYPE_TABLE_HEADER_SIZE
    const char *EXTTYPE_CAPSULE_NAME

    ctypedef struct ExtType_Table:
        uint64_t k1
        uint64_t k2
        uint8_t s
        uint8_t t
        uint16_t reserved
        uint32_t count
        uint32_t size
        uint32_t entries_offset

    ctypedef struct ExtType_Entry:
        uint64_t id
        void *ptr

    ctypedef struct ExtType_SlotDef:
        const char *key   # NULL: use id
        uint64_t id
        void *ptr         # NULL: remove the slot

    ctypedef struct ExtType_API:
        uint32_t abi_version
        uint32_t struct_size
        PyTypeObject *metaclass
        Py_ssize_t table_offset
        void *(*find_slow)(PyTypeObject *tp, uint64_t id) noexcept
        uint64_t (*prehash)(const char *key, size_t len) noexcept

    # Lookups: no GIL needed; the caller holds a reference to obj / tp.
    void *ExtType_Find(PyObject *obj, uint64_t id) noexcept
    void *ExtType_FindInType(PyTypeObject *tp, uint64_t id) noexcept
    void *ExtType_TableFind(const ExtType_Table *table, uint64_t id) noexcept
    const ExtType_Table *ExtType_LoadTable(PyTypeObject *tp, Py_ssize_t table_offset) noexcept
    const uint16_t *ExtType_TableDisplacements(const ExtType_Table *table) noexcept
    const ExtType_Entry *ExtType_TableEntries(const ExtType_Table *table) noexcept

    # No GIL needed; valid after ExtType_Import().
    uint64_t ExtType_Prehash(const char *key) noexcept
    uint64_t ExtType_PrehashN(const char *key, size_t len) noexcept
    PyTypeObject *ExtType_Metaclass() noexcept   # borrowed
    const ExtType_API *ExtType_GetAPI() noexcept


cdef extern from "extensibletype.h":
    # These need the GIL and raise on error.
    int ExtType_Import() except -1
    int ExtType_SetSlots(object type, const ExtType_SlotDef *defs, Py_ssize_t n) except -1
    # module and bases may be NULL; returns a new reference.
    object ExtType_FromSpec(PyObject *module, PyType_Spec *spec, PyObject *bases,
                            const ExtType_SlotDef *defs, Py_ssize_t n)


cdef inline void *exttype_find(object obj, uint64_t id) noexcept:
    """ExtType_Find for a Python object (holds the reference for the call)."""
    return ExtType_Find(<PyObject *>obj, id)


cdef inline int publish_methods(type cls, dict methods) except -1:
    """Publish the typed methods of ``cls`` (a ``cdef class``) in one call:
    ``methods`` maps each typed key (``str``, e.g. ``"geom.Shape.v1:area#f64(O)"``)
    to the address of the ``cdef`` method implementing it, taken as
    ``<size_t><void *>Circle._area`` (no thunk: a ``cdef`` method's C
    function takes ``self`` first, as the ``O`` of a typed signature does).
    The C types must match the signatures (docs/spec.md, typed methods):
    ``f64(O)`` is ``cdef double _area(self) noexcept nogil``. Call it once at
    module level, after the class statement and ``ExtType_Import()``; the
    Python-level method of the same name (``def area(self)``) keeps working,
    and a Python subclass that overrides it masks the typed slot. Raises (and
    changes nothing) on a bad key, a duplicate or a signature mismatch."""
    cdef Py_ssize_t n = len(methods), i = 0
    cdef ExtType_SlotDef *defs = <ExtType_SlotDef *>PyMem_Malloc(max(n, 1) * sizeof(ExtType_SlotDef))
    if defs is NULL:
        raise MemoryError()
    keys = []  # the UTF-8 bytes stay alive until ExtType_SetSlots returns
    try:
        for key, address in methods.items():
            keys.append(key.encode() if isinstance(key, str) else bytes(key))
            defs[i].key = keys[i]
            defs[i].id = 0
            defs[i].ptr = <void *><size_t>address
            i += 1
        return ExtType_SetSlots(cls, defs, n)
    finally:
        PyMem_Free(defs)
