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

/* ---- Racing readers: pthreads with no thread state look watched objects
   up while the test assigns and deletes overriding attributes. A change of
   watched slot i runs between begin(i) and end(i, masked) (epoch odd
   meanwhile). A lookup that no change overlapped while the slot was
   settled masked must miss; anything else may hit or miss. ---- */

#define MAXW 16
#define MAXT 4

static PyObject *r_obj[MAXW];
static uint64_t r_id[MAXW];
static unsigned long r_epoch[MAXW];
static int r_masked[MAXW];
static int r_count, r_stop, r_threads;
static pthread_t r_thread[MAXT];
static unsigned long r_lookups, r_checked, r_bad;

static void *race_reader(void *arg)
{
    unsigned seed = (unsigned)(uintptr_t)arg * 2654435761u + 7;
    unsigned long n = 0, checked = 0, bad = 0;
    while (!__atomic_load_n(&r_stop, __ATOMIC_ACQUIRE)) {
        int i, count = __atomic_load_n(&r_count, __ATOMIC_ACQUIRE);
        unsigned long e1;
        int masked;
        void *got;
        if (count == 0) {
            continue;
        }
        seed = seed * 1103515245u + 12345u;
        i = (int)((seed >> 16) % (unsigned)count);
        e1 = __atomic_load_n(&r_epoch[i], __ATOMIC_ACQUIRE);
        masked = __atomic_load_n(&r_masked[i], __ATOMIC_ACQUIRE);
        got = ExtType_Find(r_obj[i], r_id[i]);
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        n++;
        if ((e1 & 1) == 0 && __atomic_load_n(&r_epoch[i], __ATOMIC_RELAXED) == e1 && masked) {
            checked++;
            if (got != NULL) {
                bad++;
            }
        }
    }
    __atomic_fetch_add(&r_lookups, n, __ATOMIC_RELAXED);
    __atomic_fetch_add(&r_checked, checked, __ATOMIC_RELAXED);
    __atomic_fetch_add(&r_bad, bad, __ATOMIC_RELAXED);
    return NULL;
}

/* race_watch(obj, id, masked) -> index (the test keeps obj alive). */
static PyObject *race_watch(PyObject *self, PyObject *args)
{
    PyObject *obj;
    unsigned long long id;
    int masked;
    (void)self;
    if (!PyArg_ParseTuple(args, "OKp", &obj, &id, &masked)) {
        return NULL;
    }
    if (r_count >= MAXW || r_threads) {
        PyErr_SetString(PyExc_RuntimeError, "race_watch: full, or readers running");
        return NULL;
    }
    r_obj[r_count] = obj;
    r_id[r_count] = (uint64_t)id;
    r_masked[r_count] = masked;
    r_epoch[r_count] = 0;
    __atomic_store_n(&r_count, r_count + 1, __ATOMIC_RELEASE);
    return PyLong_FromLong(r_count - 1);
}

static PyObject *race_begin(PyObject *self, PyObject *arg)
{
    long i = PyLong_AsLong(arg);
    (void)self;
    if (i < 0 || i >= r_count) {
        return PyErr_Occurred() ? NULL : (PyErr_SetString(PyExc_IndexError, "race_begin"), NULL);
    }
    __atomic_fetch_add(&r_epoch[i], 1, __ATOMIC_ACQ_REL);
    Py_RETURN_NONE;
}

static PyObject *race_end(PyObject *self, PyObject *args)
{
    int i, masked;
    (void)self;
    if (!PyArg_ParseTuple(args, "ip", &i, &masked) || i < 0 || i >= r_count) {
        return PyErr_Occurred() ? NULL : (PyErr_SetString(PyExc_IndexError, "race_end"), NULL);
    }
    __atomic_store_n(&r_masked[i], masked, __ATOMIC_RELEASE);
    __atomic_fetch_add(&r_epoch[i], 1, __ATOMIC_ACQ_REL);
    Py_RETURN_NONE;
}

static PyObject *race_start(PyObject *self, PyObject *arg)
{
    long n = PyLong_AsLong(arg), t;
    (void)self;
    if (n < 1 || n > MAXT || r_threads) {
        return PyErr_Occurred() ? NULL : (PyErr_SetString(PyExc_ValueError, "race_start"), NULL);
    }
    r_lookups = r_checked = r_bad = 0;
    __atomic_store_n(&r_stop, 0, __ATOMIC_RELEASE);
    for (t = 0; t < n; t++) {
        if (pthread_create(&r_thread[t], NULL, race_reader, (void *)(uintptr_t)t) != 0) {
            break;
        }
    }
    r_threads = (int)t;
    if (t != n) {
        PyErr_SetString(PyExc_OSError, "pthread_create failed");
        return NULL;
    }
    Py_RETURN_NONE;
}

/* race_stop() -> (lookups, checked, bad); forgets the watched objects. */
static PyObject *race_stop(PyObject *self, PyObject *unused)
{
    int t;
    (void)self;
    (void)unused;
    __atomic_store_n(&r_stop, 1, __ATOMIC_RELEASE);
    Py_BEGIN_ALLOW_THREADS
    for (t = 0; t < r_threads; t++) {
        pthread_join(r_thread[t], NULL);
    }
    Py_END_ALLOW_THREADS
    r_threads = 0;
    r_count = 0;
    return Py_BuildValue("(kkk)", r_lookups, r_checked, r_bad);
}

static PyMethodDef methods[] = {
    {"find", find, METH_VARARGS, NULL},
    {"find_in_type", find_in_type, METH_VARARGS, NULL},
    {"find_nostate", find_nostate, METH_VARARGS, NULL},
    {"make_heap_type", make_heap_type, METH_VARARGS, NULL},
    {"race_watch", race_watch, METH_VARARGS, NULL},
    {"race_begin", race_begin, METH_O, NULL},
    {"race_end", race_end, METH_VARARGS, NULL},
    {"race_start", race_start, METH_O, NULL},
    {"race_stop", race_stop, METH_NOARGS, NULL},
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
