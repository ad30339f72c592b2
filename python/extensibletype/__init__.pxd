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
