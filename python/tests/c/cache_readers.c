/*
 * Test harness of the type cache (python/tests/test_type_cache.py): C
 * pthreads that call ExtType_Find with no thread state and no GIL while the
 * test changes slots, bases and classes.
 *
 * The test holds a strong reference to every watched object. A change runs
 * between begin_change(i) and end_change(i, expected): the epoch of slot i
 * is odd during it. A reader that saw the same even epoch before and after a
 * lookup must have found exactly `expected` (a stale answer is an error);
 * any other result is counted as "racy" (allowed).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <pthread.h>
#include <stdint.h>
#include "extensibletype.h"

#define MAXW 16
#define MAXT 8

static PyObject *watched[MAXW];
static uint64_t ids[MAXW];
static uintptr_t expected[MAXW];
static unsigned long epoch[MAXW];
static int nwatched;
static int stop;
static pthread_t threads[MAXT];
static int nthreads;
static unsigned long lookups, stale, checked;
static uintptr_t stale_got[MAXW], stale_want[MAXW];

static void *reader(void *arg)
{
    unsigned long n = 0, bad = 0, ok = 0;
    unsigned seed = (unsigned)(uintptr_t)arg * 2654435761u + 1;
    (void)arg;
    while (!__atomic_load_n(&stop, __ATOMIC_ACQUIRE)) {
        int i, count = __atomic_load_n(&nwatched, __ATOMIC_ACQUIRE);
        if (count == 0) {
            continue;
        }
        seed = seed * 1103515245u + 12345u;
        i = (int)((seed >> 16) % (unsigned)count);
        {
            PyObject *obj = __atomic_load_n(&watched[i], __ATOMIC_ACQUIRE);
            unsigned long e1 = __atomic_load_n(&epoch[i], __ATOMIC_ACQUIRE);
            uintptr_t want = __atomic_load_n(&expected[i], __ATOMIC_ACQUIRE);
            uintptr_t got;
            if (obj == NULL) {
                continue;
            }
            got = (uintptr_t)ExtType_Find(obj, ids[i]);
            __atomic_thread_fence(__ATOMIC_ACQUIRE);
            if ((e1 & 1) == 0 && __atomic_load_n(&epoch[i], __ATOMIC_RELAXED) == e1) {
                ok++;
                if (got != want) {
                    bad++;
                    stale_got[i] = got;
                    stale_want[i] = want;
                }
            }
            n++;
        }
    }
    __atomic_fetch_add(&lookups, n, __ATOMIC_RELAXED);
    __atomic_fetch_add(&stale, bad, __ATOMIC_RELAXED);
    __atomic_fetch_add(&checked, ok, __ATOMIC_RELAXED);
    return NULL;
}

/* watch(obj, id, expected) -> index (obj kept alive until reset()). */
static PyObject *watch(PyObject *self, PyObject *args)
{
    PyObject *obj;
    unsigned long long id, want;
    int i;
    (void)self;
    if (!PyArg_ParseTuple(args, "OKK", &obj, &id, &want)) {
        return NULL;
    }
    if (nwatched == MAXW) {
        PyErr_SetString(PyExc_ValueError, "too many watched objects");
        return NULL;
    }
    i = nwatched;
    Py_INCREF(obj);
    ids[i] = id;
    __atomic_store_n(&expected[i], (uintptr_t)want, __ATOMIC_RELEASE);
    __atomic_store_n(&watched[i], obj, __ATOMIC_RELEASE);
    __atomic_store_n(&nwatched, i + 1, __ATOMIC_RELEASE);
    return PyLong_FromLong(i);
}

static PyObject *begin_change(PyObject *self, PyObject *arg)
{
    long i = PyLong_AsLong(arg);
    (void)self;
    if (i < 0 || i >= nwatched) {
        PyErr_SetString(PyExc_IndexError, "bad index");
        return NULL;
    }
    __atomic_fetch_add(&epoch[i], 1, __ATOMIC_ACQ_REL); /* odd: changing */
    Py_RETURN_NONE;
}

static PyObject *end_change(PyObject *self, PyObject *args)
{
    int i;
    unsigned long long want;
    (void)self;
    if (!PyArg_ParseTuple(args, "iK", &i, &want) || i < 0 || i >= nwatched) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_IndexError, "bad index");
        }
        return NULL;
    }
    __atomic_store_n(&expected[i], (uintptr_t)want, __ATOMIC_RELEASE);
    __atomic_fetch_add(&epoch[i], 1, __ATOMIC_ACQ_REL); /* even: settled */
    Py_RETURN_NONE;
}

/* start(nthreads): readers run with no thread state (never attached). */
static PyObject *start(PyObject *self, PyObject *arg)
{
    long n = PyLong_AsLong(arg), t;
    (void)self;
    if (n < 1 || n > MAXT || nthreads != 0) {
        PyErr_SetString(PyExc_ValueError, "bad thread count or already started");
        return NULL;
    }
    __atomic_store_n(&stop, 0, __ATOMIC_RELEASE);
    lookups = stale = checked = 0;
    for (t = 0; t < n; t++) {
        if (pthread_create(&threads[t], NULL, reader, (void *)(uintptr_t)(t + 1)) != 0) {
            PyErr_SetString(PyExc_OSError, "pthread_create failed");
            return NULL;
        }
        nthreads++;
    }
    Py_RETURN_NONE;
}

/* stop() -> (lookups, checked, stale, [(index, got, want)]); drops the
   watched objects. */
static PyObject *stop_readers(PyObject *self, PyObject *unused)
{
    int t, i;
    PyObject *bad;
    (void)self;
    (void)unused;
    __atomic_store_n(&stop, 1, __ATOMIC_RELEASE);
    Py_BEGIN_ALLOW_THREADS
    for (t = 0; t < nthreads; t++) {
        pthread_join(threads[t], NULL);
    }
    Py_END_ALLOW_THREADS
    nthreads = 0;
    bad = PyList_New(0);
    for (i = 0; bad != NULL && i < nwatched; i++) {
        if (stale_got[i] != stale_want[i]) {
            PyObject *row = Py_BuildValue("(iKK)", i, (unsigned long long)stale_got[i],
                                          (unsigned long long)stale_want[i]);
            if (row == NULL || PyList_Append(bad, row) < 0) {
                Py_XDECREF(row);
                Py_CLEAR(bad);
                break;
            }
            Py_DECREF(row);
        }
        stale_got[i] = stale_want[i] = 0;
    }
    for (i = 0; i < nwatched; i++) {
        Py_CLEAR(watched[i]);
        epoch[i] = 0;
    }
    nwatched = 0;
    if (bad == NULL) {
        return NULL;
    }
    return Py_BuildValue("(kkkN)", lookups, checked, stale, bad);
}

static PyMethodDef methods[] = {
    {"watch", watch, METH_VARARGS, NULL},
    {"begin_change", begin_change, METH_O, NULL},
    {"end_change", end_change, METH_VARARGS, NULL},
    {"start", start, METH_O, NULL},
    {"stop", stop_readers, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static int exec_module(PyObject *m)
{
    (void)m;
    return ExtType_Import();
}

static PyModuleDef_Slot slots[] = {
    {Py_mod_exec, (void *)exec_module},
#ifdef Py_mod_gil
    {Py_mod_gil, Py_MOD_GIL_NOT_USED},
#endif
    {0, NULL},
};

static PyModuleDef def = {PyModuleDef_HEAD_INIT, "cache_readers", NULL, 0, methods, slots, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit_cache_readers(void)
{
    return PyModuleDef_Init(&def);
}
