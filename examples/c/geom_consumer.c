/*
 * geom_consumer: the C consumer pattern for typed methods (docs/c-api.md,
 * "Typed methods"): look the method up by its typed key's id; on a hit call
 * the C function, with or without the GIL as its flag says; on a miss call
 * the Python method of the same name.
 *
 *   area(obj) -> float            geom.Shape.v1:area#f64(O), else obj.area()
 *   scaled(obj, k) -> float       geom.Shape.v1:scaled#f64(O,f64)!e, else obj.scaled(k)
 *   describe(obj) -> object       geom.Shape.v1:describe#O+(O)!t, else obj.describe()
 *   total_area(objs: tuple) -> float
 *                                 the typed areas looked up and called with
 *                                 the GIL released; the misses afterwards,
 *                                 with the GIL, through obj.area()
 *   stats() -> (typed, fallback)  calls made each way so far (for tests)
 *
 * Build: cc -shared -fPIC -O2 $(python3-config --includes) \
 *          -I$(python -m extensibletype include) geom_consumer.c \
 *          -o geom_consumer$(python3-config --extension-suffix)
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdlib.h>
#include "geom.h"

/* Ids of the typed keys: ExtType_Prehash at import (or, at compile time,
   `python -m extensibletype header` or extensibletype.hpp's method_id). */
static uint64_t id_area, id_scaled, id_describe;
/* Test counters (updated with the GIL held; unsynchronized on free-threaded
   builds: for single-threaded tests). */
static Py_ssize_t typed_calls, fallback_calls;

static double area_of(PyObject *obj, int *failed)
{
    geom_area_fn f = (geom_area_fn)ExtType_Find(obj, id_area);
    PyObject *r;
    double a;
    if (f != NULL) {
        typed_calls++;
        return f(obj); /* no flag: could also be called without the GIL */
    }
    fallback_calls++;
    r = PyObject_CallMethod(obj, "area", NULL);
    if (r == NULL) {
        *failed = 1;
        return -1.0;
    }
    a = PyFloat_AsDouble(r);
    Py_DECREF(r);
    *failed = a == -1.0 && PyErr_Occurred();
    return a;
}

static PyObject *area(PyObject *module, PyObject *obj)
{
    int failed = 0;
    double a = area_of(obj, &failed);
    (void)module;
    return failed ? NULL : PyFloat_FromDouble(a);
}

static PyObject *scaled(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    geom_scaled_fn f;
    double k, out;
    (void)module;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "scaled(obj, k)");
        return NULL;
    }
    f = (geom_scaled_fn)ExtType_Find(args[0], id_scaled);
    if (f == NULL) {
        fallback_calls++;
        return PyObject_CallMethod(args[0], "scaled", "O", args[1]);
    }
    typed_calls++;
    k = PyFloat_AsDouble(args[1]);
    if (k == -1.0 && PyErr_Occurred()) {
        return NULL;
    }
    /* !e: with the GIL; -1 means an exception is set: pass it on. */
    if (f(args[0], k, &out) < 0) {
        return NULL;
    }
    return PyFloat_FromDouble(out);
}

static PyObject *describe(PyObject *module, PyObject *obj)
{
    geom_describe_fn f = (geom_describe_fn)ExtType_Find(obj, id_describe);
    (void)module;
    if (f == NULL) {
        fallback_calls++;
        return PyObject_CallMethod(obj, "describe", NULL);
    }
    typed_calls++;
    return f(obj); /* !t: with the GIL; a new reference, NULL with an exception set */
}

/* The typed lookups and calls without the GIL (the tuple holds the
   references); the objects that miss, afterwards with the GIL. */
static PyObject *total_area(PyObject *module, PyObject *objs)
{
    Py_ssize_t n, i, hits = 0;
    PyObject **items;
    char *missed;
    double total = 0.0;
    (void)module;
    if (!PyTuple_Check(objs)) {
        PyErr_SetString(PyExc_TypeError, "total_area(objs: tuple)");
        return NULL;
    }
    n = PyTuple_Size(objs); /* the functions, not the macros: limited API too */
    items = PyMem_Malloc((size_t)(n ? n : 1) * sizeof(PyObject *));
    missed = PyMem_Calloc((size_t)(n ? n : 1), 1);
    if (items == NULL || missed == NULL) {
        PyMem_Free(items);
        PyMem_Free(missed);
        return PyErr_NoMemory();
    }
    for (i = 0; i < n; i++) {
        items[i] = PyTuple_GetItem(objs, i);
    }
    Py_BEGIN_ALLOW_THREADS
    for (i = 0; i < n; i++) {
        geom_area_fn f = (geom_area_fn)ExtType_Find(items[i], id_area);
        if (f != NULL) {
            total += f(items[i]); /* no flag: fine without the GIL */
            hits++;
        } else {
            missed[i] = 1;
        }
    }
    Py_END_ALLOW_THREADS
    typed_calls += hits;
    for (i = 0; i < n; i++) {
        if (missed[i]) {
            int failed = 0;
            double a = area_of(items[i], &failed); /* a miss again: the Python method */
            if (failed) {
                PyMem_Free(items);
                PyMem_Free(missed);
                return NULL;
            }
            total += a;
        }
    }
    PyMem_Free(items);
    PyMem_Free(missed);
    return PyFloat_FromDouble(total);
}

static PyObject *stats(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
    return Py_BuildValue("(nn)", typed_calls, fallback_calls);
}

static PyMethodDef consumer_methods[] = {
    {"area", area, METH_O, "area(obj) -> float"},
    {"scaled", (PyCFunction)(void (*)(void))scaled, METH_FASTCALL, "scaled(obj, k) -> float"},
    {"describe", describe, METH_O, "describe(obj) -> object"},
    {"total_area", total_area, METH_O, "total_area(objs: tuple) -> float (typed calls without the GIL)"},
    {"stats", stats, METH_NOARGS, "stats() -> (typed calls, fallback calls)"},
    {NULL, NULL, 0, NULL},
};

static int consumer_exec(PyObject *module)
{
    (void)module;
    if (ExtType_Import() < 0) {
        return -1;
    }
    id_area = ExtType_Prehash(GEOM_KEY_AREA);
    id_scaled = ExtType_Prehash(GEOM_KEY_SCALED);
    id_describe = ExtType_Prehash(GEOM_KEY_DESCRIBE);
    return 0;
}

static PyModuleDef_Slot consumer_slots[] = {
    {Py_mod_exec, (void *)consumer_exec},
#ifdef Py_MOD_MULTIPLE_INTERPRETERS_NOT_SUPPORTED
    {Py_mod_multiple_interpreters, Py_MOD_MULTIPLE_INTERPRETERS_NOT_SUPPORTED},
#endif
#ifdef Py_MOD_GIL_NOT_USED /* (3.15 defines Py_mod_gil for a limited API < 3.13 too, not its values) */
    {Py_mod_gil, Py_MOD_GIL_NOT_USED},
#endif
    {0, NULL},
};

static PyModuleDef consumer_module = {
    PyModuleDef_HEAD_INIT, "geom_consumer", "A C consumer of typed methods (extensibletype example).",
    0, consumer_methods, consumer_slots, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit_geom_consumer(void)
{
    return PyModuleDef_Init(&consumer_module);
}
