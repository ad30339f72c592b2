/*
 * The golden vectors from C (docs/spec.md sections 1 and 2), driven by
 * python/tests/test_golden.py: ExtType_PrehashN on the keys of ids.txt and
 * the header's inline lookup, ExtType_TableFind, on the exact bytes of
 * tables.txt. Module `golden_c`:
 *
 *   prehash(key: bytes) -> int
 *   table_find(table: bytes, id: int) -> int | None   (None when absent)
 *   header(table: bytes) -> (k1, k2, s, t, count, size, entries_offset)
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdlib.h>
#include <string.h>
#include "extensibletype.h"

/* A 64-byte-aligned copy of a bytes object (tables are published aligned);
   NULL with an exception set on error. Free with free(). */
static ExtType_Table *aligned_copy(PyObject *bytes)
{
    char *data;
    Py_ssize_t n;
    void *block;
    if (PyBytes_AsStringAndSize(bytes, &data, &n) < 0) {
        return NULL;
    }
    if (n < EXTTYPE_TABLE_HEADER_SIZE) {
        PyErr_SetString(PyExc_ValueError, "shorter than a table header");
        return NULL;
    }
    block = aligned_alloc(64, ((size_t)n + 63) / 64 * 64);
    if (block == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    memcpy(block, data, (size_t)n);
    return (ExtType_Table *)block;
}

static PyObject *golden_prehash(PyObject *self, PyObject *key)
{
    char *data;
    Py_ssize_t n;
    (void)self;
    if (PyBytes_AsStringAndSize(key, &data, &n) < 0) {
        return NULL;
    }
    return PyLong_FromUnsignedLongLong(ExtType_PrehashN(data, (size_t)n));
}

static PyObject *golden_table_find(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    ExtType_Table *table;
    unsigned long long id;
    void *found;
    (void)self;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "table_find(table, id)");
        return NULL;
    }
    id = PyLong_AsUnsignedLongLong(args[1]);
    if (id == (unsigned long long)-1 && PyErr_Occurred()) {
        return NULL;
    }
    table = aligned_copy(args[0]);
    if (table == NULL) {
        return NULL;
    }
    found = ExtType_TableFind(table, (uint64_t)id);
    free(table);
    if (found == NULL) {
        Py_RETURN_NONE;
    }
    return PyLong_FromVoidPtr(found);
}

static PyObject *golden_header(PyObject *self, PyObject *bytes)
{
    ExtType_Table *t = aligned_copy(bytes);
    PyObject *out;
    (void)self;
    if (t == NULL) {
        return NULL;
    }
    out = Py_BuildValue("(KKiiIII)", (unsigned long long)t->k1, (unsigned long long)t->k2, (int)t->s, (int)t->t,
                        (unsigned int)t->count, (unsigned int)t->size, (unsigned int)t->entries_offset);
    free(t);
    return out;
}

static PyMethodDef methods[] = {
    {"prehash", golden_prehash, METH_O, "ExtType_PrehashN(key, len(key))"},
    {"table_find", (PyCFunction)(void (*)(void))golden_table_find, METH_FASTCALL, "ExtType_TableFind on a copy"},
    {"header", golden_header, METH_O, "the ExtType_Table header fields"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "golden_c", NULL, -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit_golden_c(void)
{
    if (ExtType_Import() < 0) {
        return NULL;
    }
    return PyModule_Create(&module);
}
