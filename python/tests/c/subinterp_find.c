/*
 * Test helper of python/tests/test_subinterpreters.py: ExtType_Find and
 * ExtType_FindInType from C, importable in every legacy subinterpreter
 * (multi-phase init; its exec calls ExtType_Import() in each interpreter,
 * as docs/c-api.md asks of consumers).
 *
 *   find(obj, id: int) -> int | None        ExtType_Find(obj, id)
 *   find_in_type(tp, id: int) -> int | None ExtType_FindInType(tp, id)
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include "extensibletype.h"

static PyObject *answer(const void *p)
{
    if (p == NULL) {
        Py_RETURN_NONE;
    }
    return PyLong_FromUnsignedLongLong((unsigned long long)(uintptr_t)p);
}

static int id_of(PyObject *arg, uint64_t *id)
{
    unsigned long long v = PyLong_AsUnsignedLongLong(arg);
    if (v == (unsigned long long)-1 && PyErr_Occurred()) {
        return -1;
    }
    *id = (uint64_t)v;
    return 0;
}

static PyObject *find(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    uint64_t id;
    (void)self;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "find(obj, id)");
        return NULL;
    }
    if (id_of(args[1], &id) < 0) {
        return NULL;
    }
    return answer(ExtType_Find(args[0], id));
}

static PyObject *find_in_type(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    uint64_t id;
    (void)self;
    if (nargs != 2 || !PyType_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "find_in_type(tp: type, id)");
        return NULL;
    }
    if (id_of(args[1], &id) < 0) {
        return NULL;
    }
    return answer(ExtType_FindInType((PyTypeObject *)args[0], id));
}

static PyMethodDef methods[] = {
    {"find", (PyCFunction)(void (*)(void))find, METH_FASTCALL, NULL},
    {"find_in_type", (PyCFunction)(void (*)(void))find_in_type, METH_FASTCALL, NULL},
    {NULL, NULL, 0, NULL},
};

static int exec_module(PyObject *module)
{
    (void)module;
    return ExtType_Import();
}

static PyModuleDef_Slot slots[] = {
    {Py_mod_exec, (void *)exec_module},
#if PY_VERSION_HEX >= 0x030C0000
    {Py_mod_multiple_interpreters, Py_MOD_MULTIPLE_INTERPRETERS_SUPPORTED},
#endif
    {0, NULL},
};

static PyModuleDef def = {
    PyModuleDef_HEAD_INIT, "subinterp_find", NULL, 0, methods, slots, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit_subinterp_find(void)
{
    return PyModuleDef_Init(&def);
}
