/*
 * Test harness of python/tests/test_mechanism.py: what a C consumer built
 * against include/extensibletype.h sees, through the header's own inline
 * code (the fast path, the type cache probe, the table probe).
 *
 * - find(obj, id): ExtType_Find from the calling thread.
 * - hold(type) / check(handle, id): keep the table pointer a lookup on
 *   `type` probes right now (its own table for a class of the metaclass,
 *   its foreign-registry table otherwise) with a byte copy of the table;
 *   later, check that the table is still there, byte for byte, and still
 *   answers `id` (a GIL-free reader may hold that pointer across any number
 *   of set_slots: old tables are retired, never freed, while the type lives).
 * - start/begin_change/end_change/wait/stop: C pthreads with no thread state
 *   call ExtType_Find in a loop on the watched objects; a lookup that no
 *   change overlapped (same even epoch before and after) must return the
 *   settled value, else it is counted as stale.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "extensibletype.h"

/* ---- find ---------------------------------------------------------------- */

static PyObject *find(PyObject *self, PyObject *args)
{
    PyObject *obj;
    unsigned long long id;
    (void)self;
    if (!PyArg_ParseTuple(args, "OK", &obj, &id)) {
        return NULL;
    }
    return PyLong_FromUnsignedLongLong((unsigned long long)(uintptr_t)ExtType_Find(obj, (uint64_t)id));
}

/* ---- held tables --------------------------------------------------------- */

#define MAXH 64

static const ExtType_Table *held[MAXH];
static unsigned char *held_copy[MAXH];
static size_t held_bytes[MAXH];
static int nheld;

static size_t table_bytes(const ExtType_Table *t)
{
    return (size_t)t->entries_offset + (size_t)t->size * sizeof(ExtType_Entry);
}

/* The table a lookup on `tp` probes now: its own (metaclass fast path) or,
   for any other type, the one the type cache holds for it once a lookup
   (with the GIL: the type gets a version tag) has filled its entry; NULL
   when neither has one. */
static const ExtType_Table *current_table(PyTypeObject *tp)
{
    const ExtType_API *api = ExtType_GetAPI();
    if (Py_TYPE((PyObject *)tp) == ExtType_Metaclass()) {
        return ExtType_LoadTable(tp, api->table_offset);
    }
    (void)ExtType_FindInType(tp, 1); /* fills the cache entry of tp */
    return ExtType__CachedTable(tp);
}

/* hold(type) -> handle */
static PyObject *hold(PyObject *self, PyObject *arg)
{
    const ExtType_Table *t;
    (void)self;
    if (!PyType_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "hold() takes a type");
        return NULL;
    }
    if (nheld == MAXH) {
        PyErr_SetString(PyExc_ValueError, "too many held tables");
        return NULL;
    }
    t = current_table((PyTypeObject *)arg);
    if (t == NULL) {
        PyErr_SetString(PyExc_LookupError, "the type has no published table");
        return NULL;
    }
    held_bytes[nheld] = table_bytes(t);
    held_copy[nheld] = (unsigned char *)malloc(held_bytes[nheld]);
    if (held_copy[nheld] == NULL) {
        return PyErr_NoMemory();
    }
    memcpy(held_copy[nheld], t, held_bytes[nheld]);
    held[nheld] = t;
    return PyLong_FromLong(nheld++);
}

/* check(handle, id) -> (unchanged, ptr found under id in the held table) */
static PyObject *check(PyObject *self, PyObject *args)
{
    int i, same;
    unsigned long long id;
    (void)self;
    if (!PyArg_ParseTuple(args, "iK", &i, &id)) {
        return NULL;
    }
    if (i < 0 || i >= nheld) {
        PyErr_SetString(PyExc_IndexError, "bad handle");
        return NULL;
    }
    /* Compare the header first: a freed block's first bytes are the
       allocator's (free-list links), and its size fields are then garbage. */
    same = memcmp(held[i], held_copy[i], sizeof(ExtType_Table)) == 0 &&
           memcmp(held[i], held_copy[i], held_bytes[i]) == 0;
    return Py_BuildValue("(NK)", PyBool_FromLong(same),
                         same ? (unsigned long long)(uintptr_t)ExtType_TableFind(held[i], (uint64_t)id) : 0ULL);
}

static PyObject *release_all(PyObject *self, PyObject *unused)
{
    int i;
    (void)self;
    (void)unused;
    for (i = 0; i < nheld; i++) {
        free(held_copy[i]);
        held_copy[i] = NULL;
        held[i] = NULL;
    }
    nheld = 0;
    Py_RETURN_NONE;
}

/* ---- readers without a thread state -------------------------------------- */

#define MAXW 8
#define MAXT 8

static PyObject *watched[MAXW];
static uint64_t ids[MAXW];
static uintptr_t expected[MAXW];
static unsigned long epoch[MAXW];
static int nwatched;
static int stop_flag;
static pthread_t threads[MAXT];
static int nthreads;
static unsigned long lookups, checked, stale;
static uintptr_t first_got, first_want;

static void *reader(void *arg)
{
    unsigned long n = 0, ok = 0, bad = 0;
    unsigned seed = (unsigned)(uintptr_t)arg * 2654435761u + 1;
    while (!__atomic_load_n(&stop_flag, __ATOMIC_ACQUIRE)) {
        int i;
        unsigned long e1;
        uintptr_t want, got;
        seed = seed * 1103515245u + 12345u;
        i = (int)((seed >> 16) % (unsigned)nwatched);
        e1 = __atomic_load_n(&epoch[i], __ATOMIC_ACQUIRE);
        want = __atomic_load_n(&expected[i], __ATOMIC_ACQUIRE);
        got = (uintptr_t)ExtType_Find(watched[i], ids[i]);
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        if ((e1 & 1) == 0 && __atomic_load_n(&epoch[i], __ATOMIC_RELAXED) == e1) {
            ok++;
            if (got != want) {
                if (bad++ == 0) {
                    uintptr_t none = 0;
                    if (__atomic_compare_exchange_n(&first_want, &none, want, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
                        __atomic_store_n(&first_got, got, __ATOMIC_RELAXED);
                    }
                }
            }
        }
        n++;
        if ((n & 255) == 0) {
            /* Publish progress for wait() (and let other threads in). */
            __atomic_fetch_add(&lookups, 256, __ATOMIC_RELEASE);
        }
    }
    __atomic_fetch_add(&lookups, n & 255, __ATOMIC_RELAXED);
    __atomic_fetch_add(&checked, ok, __ATOMIC_RELAXED);
    __atomic_fetch_add(&stale, bad, __ATOMIC_RELAXED);
    return NULL;
}

/* start(objects, ids, expected, nthreads): the test keeps the objects alive
   until stop(). */
static PyObject *start(PyObject *self, PyObject *args)
{
    PyObject *objs, *idl, *wants;
    int n, i, t;
    (void)self;
    if (!PyArg_ParseTuple(args, "O!O!O!i", &PyTuple_Type, &objs, &PyTuple_Type, &idl, &PyTuple_Type, &wants, &n)) {
        return NULL;
    }
    if (nthreads != 0 || n < 1 || n > MAXT || PyTuple_GET_SIZE(objs) < 1 || PyTuple_GET_SIZE(objs) > MAXW ||
        PyTuple_GET_SIZE(idl) != PyTuple_GET_SIZE(objs) || PyTuple_GET_SIZE(wants) != PyTuple_GET_SIZE(objs)) {
        PyErr_SetString(PyExc_ValueError, "bad arguments or already started");
        return NULL;
    }
    nwatched = (int)PyTuple_GET_SIZE(objs);
    for (i = 0; i < nwatched; i++) {
        ids[i] = (uint64_t)PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(idl, i));
        expected[i] = (uintptr_t)PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(wants, i));
        if (PyErr_Occurred()) {
            return NULL;
        }
        watched[i] = Py_NewRef(PyTuple_GET_ITEM(objs, i));
        epoch[i] = 0;
    }
    lookups = checked = stale = 0;
    first_got = first_want = 0;
    __atomic_store_n(&stop_flag, 0, __ATOMIC_RELEASE);
    for (t = 0; t < n; t++) {
        if (pthread_create(&threads[t], NULL, reader, (void *)(uintptr_t)(t + 1)) != 0) {
            PyErr_SetString(PyExc_OSError, "pthread_create failed");
            return NULL;
        }
        nthreads++;
    }
    Py_RETURN_NONE;
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
    if (!PyArg_ParseTuple(args, "iK", &i, &want)) {
        return NULL;
    }
    if (i < 0 || i >= nwatched) {
        PyErr_SetString(PyExc_IndexError, "bad index");
        return NULL;
    }
    __atomic_store_n(&expected[i], (uintptr_t)want, __ATOMIC_RELEASE);
    __atomic_fetch_add(&epoch[i], 1, __ATOMIC_ACQ_REL); /* even: settled */
    Py_RETURN_NONE;
}

/* wait(n): block (GIL released) until the readers did n more lookups. */
static PyObject *wait_lookups(PyObject *self, PyObject *arg)
{
    unsigned long n = PyLong_AsUnsignedLong(arg), target;
    (void)self;
    if (PyErr_Occurred()) {
        return NULL;
    }
    target = __atomic_load_n(&lookups, __ATOMIC_ACQUIRE) + n;
    Py_BEGIN_ALLOW_THREADS
    while (__atomic_load_n(&lookups, __ATOMIC_ACQUIRE) < target) {
        sched_yield();
    }
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

/* stop() -> (lookups, checked, stale, first_got, first_want) */
static PyObject *stop_readers(PyObject *self, PyObject *unused)
{
    int t, i;
    (void)self;
    (void)unused;
    __atomic_store_n(&stop_flag, 1, __ATOMIC_RELEASE);
    Py_BEGIN_ALLOW_THREADS
    for (t = 0; t < nthreads; t++) {
        pthread_join(threads[t], NULL);
    }
    Py_END_ALLOW_THREADS
    nthreads = 0;
    for (i = 0; i < nwatched; i++) {
        Py_CLEAR(watched[i]);
    }
    nwatched = 0;
    return Py_BuildValue("(kkkKK)", lookups, checked, stale, (unsigned long long)first_got,
                         (unsigned long long)first_want);
}

static PyMethodDef methods[] = {
    {"find", find, METH_VARARGS, NULL},
    {"hold", hold, METH_O, NULL},
    {"check", check, METH_VARARGS, NULL},
    {"release_all", release_all, METH_NOARGS, NULL},
    {"start", start, METH_VARARGS, NULL},
    {"begin_change", begin_change, METH_O, NULL},
    {"end_change", end_change, METH_VARARGS, NULL},
    {"wait", wait_lookups, METH_O, NULL},
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

static PyModuleDef def = {PyModuleDef_HEAD_INIT, "mechanism", NULL, 0, methods, slots, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit_mechanism(void)
{
    return PyModuleDef_Init(&def);
}
