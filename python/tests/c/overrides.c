/*
 * C side of python/tests/test_overrides.py (Python overrides win,
 * docs/spec.md "Typed methods"): ExtType_Find / ExtType_FindInType with the
 * GIL held and from a pthread that never had a thread state, plus C types
 * to register foreign slots on:
 *
 * - StaticBase: a static type (immutable), no `area` method;
 * - StaticSub(StaticBase): a static type with an `area` method of its own;
 * - StaticPlain(StaticBase): a static type without one;
 * - make_heap_type(name, with_area): a mutable heap type from a spec.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <pthread.h>
#include <stdint.h>
#include "extensibletype.h"

static PyObject *as_result(void *found)
{
    if (found == NULL) {
        Py_RETURN_NONE;
    }
    return PyLong_FromUnsignedLongLong((unsigned long long)(uintptr_t)found);
}

/* find(obj, id) -> int | None: ExtType_Find with the GIL held. */
static PyObject *find(PyObject *self, PyObject *args)
{
    PyObject *obj;
    unsigned long long id;
    (void)self;
    if (!PyArg_ParseTuple(args, "OK", &obj, &id)) {
        return NULL;
    }
    return as_result(ExtType_Find(obj, (uint64_t)id));
}

/* find_in_type(tp, id) -> int | None: ExtType_FindInType with the GIL held. */
static PyObject *find_in_type(PyObject *self, PyObject *args)
{
    PyObject *tp;
    unsigned long long id;
    (void)self;
    if (!PyArg_ParseTuple(args, "O!K", &PyType_Type, &tp, &id)) {
        return NULL;
    }
    return as_result(ExtType_FindInType((PyTypeObject *)tp, (uint64_t)id));
}

struct job {
    PyObject *obj;
    uint64_t id;
    int times;
    void *found;
};

static void *lookup_thread(void *arg)
{
    struct job *job = (struct job *)arg;
    int i;
    for (i = 0; i < job->times; i++) {
        void *found = ExtType_Find(job->obj, job->id);
        if (found != NULL) {
            job->found = found; /* any hit is reported, not just the last */
        }
    }
    return NULL;
}

/* find_nostate(obj, id, times=2) -> int | None: `times` ExtType_Find calls
   on a new pthread with no thread state (the GIL released meanwhile); any
   hit among them is returned. */
static PyObject *find_nostate(PyObject *self, PyObject *args)
{
    struct job job = {NULL, 0, 2, NULL};
    unsigned long long id;
    pthread_t t;
    int rc;
    (void)self;
    if (!PyArg_ParseTuple(args, "OK|i", &job.obj, &id, &job.times)) {
        return NULL;
    }
    job.id = (uint64_t)id;
    Py_BEGIN_ALLOW_THREADS
    rc = pthread_create(&t, NULL, lookup_thread, &job);
    if (rc == 0) {
        pthread_join(t, NULL);
    }
    Py_END_ALLOW_THREADS
    if (rc != 0) {
        PyErr_SetString(PyExc_OSError, "pthread_create failed");
        return NULL;
    }
    return as_result(job.found);
}

static PyObject *area(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    return PyFloat_FromDouble(42.0);
}

static PyMethodDef area_methods[] = {
    {"area", area, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject StaticBase = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "overrides.StaticBase",
    .tp_basicsize = sizeof(PyObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_new = PyType_GenericNew,
};

static PyTypeObject StaticSub = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "overrides.StaticSub",
    .tp_basicsize = sizeof(PyObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_methods = area_methods,
    .tp_new = PyType_GenericNew,
};

static PyTypeObject StaticPlain = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "overrides.StaticPlain",
    .tp_basicsize = sizeof(PyObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_new = PyType_GenericNew,
};

/* make_heap_type(name, with_area) -> type: a mutable heap type (BASETYPE)
   from a spec, with an `area` method of its own when with_area. */
static PyObject *make_heap_type(PyObject *self, PyObject *args)
{
    const char *name;
    int with_area;
    static PyType_Slot with[] = {{Py_tp_methods, area_methods}, {0, NULL}};
    static PyType_Slot without[] = {{0, NULL}};
    PyType_Spec spec = {NULL, sizeof(PyObject), 0, Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE, NULL};
    PyObject *tp;
    char *qualified;
    (void)self;
    if (!PyArg_ParseTuple(args, "sp", &name, &with_area)) {
        return NULL;
    }
    /* The spec's name must outlive the type (3.11 keeps the pointer). */
    qualified = PyMem_RawMalloc(strlen(name) + sizeof("overrides."));
    if (qualified == NULL) {
        return PyErr_NoMemory();
    }
    strcpy(qualified, "overrides.");
    strcat(qualified, name);
    spec.name = qualified;
    spec.slots = with_area ? with : without;
    tp = PyType_FromSpec(&spec);
    if (tp == NULL) {
        PyMem_RawFree(qualified);
    }
    return tp;
}

static PyMethodDef methods[] = {
    {"find", find, METH_VARARGS, NULL},
    {"find_in_type", find_in_type, METH_VARARGS, NULL},
    {"find_nostate", find_nostate, METH_VARARGS, NULL},
    {"make_heap_type", make_heap_type, METH_VARARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static int exec_module(PyObject *module)
{
    if (ExtType_Import() < 0) {
        return -1;
    }
    StaticSub.tp_base = &StaticBase;
    StaticPlain.tp_base = &StaticBase;
    if (PyType_Ready(&StaticBase) < 0 || PyType_Ready(&StaticSub) < 0 || PyType_Ready(&StaticPlain) < 0) {
        return -1;
    }
    if (PyModule_AddObjectRef(module, "StaticBase", (PyObject *)&StaticBase) < 0 ||
        PyModule_AddObjectRef(module, "StaticSub", (PyObject *)&StaticSub) < 0 ||
        PyModule_AddObjectRef(module, "StaticPlain", (PyObject *)&StaticPlain) < 0) {
        return -1;
    }
    return 0;
}

static PyModuleDef_Slot module_slots[] = {
    {Py_mod_exec, exec_module},
    {0, NULL},
};

static PyModuleDef def = {PyModuleDef_HEAD_INIT, "overrides", NULL, 0, methods, module_slots, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit_overrides(void)
{
    return PyModuleDef_Init(&def);
}
