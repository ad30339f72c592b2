/*
 * Stress harness of GIL-free lookups (python/tests/test_nostate_threads.py):
 * C pthreads that never had a thread state (no PyGILState_Ensure, ever) call
 * ExtType_FindInType on a set of watched types while Python writers change
 * slots, assign class attributes and create and drop classes.
 *
 * Every slot value the test registers encodes where it came from:
 *     value = (owner + 1) << 40 | (key + 1) << 32 | version      (version >= 1)
 * A watched record names a type, a key and the set of owners (a 64-bit mask:
 * the classes of the type's MRO that may carry that key). A reader that gets
 * a non-NULL pointer checks that it decodes to the record's key, to one of
 * its owners, and to a version the writer announced (announce() runs before
 * the set_slots that publishes it). Anything else is a wrong pointer: a value
 * registered on another type or under another key, or garbage. NULL is always
 * accepted (a slot may be removed at any time).
 *
 * Records can be replaced while readers run (class churn): a replaced record
 * and the reference to its type are released only once every reader has
 * moved past the epoch of the replacement (epoch-based reclamation), so a
 * reader never looks up a dead type.
 *
 * exit_test mode: start() and then let the interpreter exit (sys.exit) with
 * the readers still running; the process must exit cleanly.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include "extensibletype.h"

#define MAXREC 512
#define MAXT 16
#define MAXOWNER 64
#define MAXKEY 8

typedef struct {
    PyObject *tp;      /* strong reference, released with the record */
    uint64_t id;
    int key;
    uint64_t owners;   /* bit o: owner o may provide this key */
} record;

typedef struct retired {
    record *rec;
    unsigned long epoch;
    struct retired *next;
} retired;

static record *slots[MAXREC];
static int nslots;
static unsigned long maxver[MAXOWNER][MAXKEY];
static unsigned long global_epoch = 1;
static unsigned long active[MAXT]; /* a reader's announced epoch */
static retired *retired_list;
static int stop;
static pthread_t threads[MAXT];
static int nthreads;
static unsigned long lookups, hits, errors;
static uint64_t first_bad_got;
static int first_bad_slot = -1;

static void *reader(void *arg)
{
    int me = (int)(uintptr_t)arg;
    unsigned long n = 0, h = 0, bad = 0;
    unsigned seed = (unsigned)me * 2654435761u + 7u;
    while (!__atomic_load_n(&stop, __ATOMIC_ACQUIRE)) {
        int count = __atomic_load_n(&nslots, __ATOMIC_ACQUIRE), i;
        record *rec;
        uint64_t got;
        if (count == 0) {
            continue;
        }
        /* Announce before loading a record: a record replaced at epoch e is
           freed only after every reader announced e or later. */
        __atomic_store_n(&active[me], __atomic_load_n(&global_epoch, __ATOMIC_SEQ_CST), __ATOMIC_SEQ_CST);
        seed = seed * 1103515245u + 12345u;
        i = (int)((seed >> 8) % (unsigned)count);
        rec = __atomic_load_n(&slots[i], __ATOMIC_SEQ_CST);
        if (rec == NULL) {
            continue;
        }
        got = (uint64_t)(uintptr_t)ExtType_FindInType((PyTypeObject *)rec->tp, rec->id);
        n++;
        if (got != 0) {
            uint64_t owner = (got >> 40) - 1, key = ((got >> 32) & 0xff) - 1, version = got & 0xffffffffu;
            int ok = (got >> 48) == 0 && owner < MAXOWNER && key == (uint64_t)rec->key && version != 0 &&
                     ((rec->owners >> owner) & 1u) &&
                     version <= __atomic_load_n(&maxver[owner][key], __ATOMIC_ACQUIRE);
            h++;
            if (!ok) {
                bad++;
                if (__atomic_exchange_n(&first_bad_slot, i, __ATOMIC_ACQ_REL) == -1) {
                    __atomic_store_n(&first_bad_got, got, __ATOMIC_RELEASE);
                }
            }
        }
    }
    __atomic_store_n(&active[me], (unsigned long)-1, __ATOMIC_SEQ_CST);
    __atomic_fetch_add(&lookups, n, __ATOMIC_RELAXED);
    __atomic_fetch_add(&hits, h, __ATOMIC_RELAXED);
    __atomic_fetch_add(&errors, bad, __ATOMIC_RELAXED);
    return NULL;
}

static record *new_record(PyObject *tp, unsigned long long id, int key, unsigned long long owners)
{
    record *rec;
    if (!PyType_Check(tp)) {
        PyErr_SetString(PyExc_TypeError, "not a type");
        return NULL;
    }
    if (key < 0 || key >= MAXKEY) {
        PyErr_SetString(PyExc_ValueError, "bad key index");
        return NULL;
    }
    rec = (record *)malloc(sizeof *rec);
    if (rec == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    Py_INCREF(tp);
    rec->tp = tp;
    rec->id = (uint64_t)id;
    rec->key = key;
    rec->owners = (uint64_t)owners;
    return rec;
}

static void free_record(record *rec)
{
    Py_DECREF(rec->tp);
    free(rec);
}

/* add(type, id, key, owners) -> index */
static PyObject *add(PyObject *self, PyObject *args)
{
    PyObject *tp;
    unsigned long long id, owners;
    int key;
    record *rec;
    (void)self;
    if (!PyArg_ParseTuple(args, "OKiK", &tp, &id, &key, &owners)) {
        return NULL;
    }
    if (nslots == MAXREC) {
        PyErr_SetString(PyExc_ValueError, "too many records");
        return NULL;
    }
    rec = new_record(tp, id, key, owners);
    if (rec == NULL) {
        return NULL;
    }
    __atomic_store_n(&slots[nslots], rec, __ATOMIC_SEQ_CST);
    __atomic_store_n(&nslots, nslots + 1, __ATOMIC_RELEASE);
    return PyLong_FromLong(nslots - 1);
}

/* The smallest epoch a running reader announced (readers that stopped
   announce ULONG_MAX). */
static unsigned long min_active(void)
{
    unsigned long m = (unsigned long)-1;
    int t;
    for (t = 0; t < MAXT; t++) {
        unsigned long a = __atomic_load_n(&active[t], __ATOMIC_SEQ_CST);
        if (a < m) {
            m = a;
        }
    }
    return m;
}

/* Release the retired records no reader can still use. */
static void collect(void)
{
    retired **at = &retired_list;
    unsigned long m = min_active();
    while (*at != NULL) {
        retired *r = *at;
        if (r->epoch <= m) {
            *at = r->next;
            free_record(r->rec);
            free(r);
        } else {
            at = &r->next;
        }
    }
}

/* replace(index, type, id, key, owners): swap a record (the old one is
   released once no reader can hold it). */
static PyObject *replace(PyObject *self, PyObject *args)
{
    PyObject *tp;
    unsigned long long id, owners;
    int i, key;
    record *rec, *old;
    retired *r;
    (void)self;
    if (!PyArg_ParseTuple(args, "iOKiK", &i, &tp, &id, &key, &owners)) {
        return NULL;
    }
    if (i < 0 || i >= nslots) {
        PyErr_SetString(PyExc_IndexError, "bad index");
        return NULL;
    }
    r = (retired *)malloc(sizeof *r);
    rec = new_record(tp, id, key, owners);
    if (r == NULL || rec == NULL) {
        free(r);
        if (rec != NULL) {
            free_record(rec);
        }
        return PyErr_Occurred() ? NULL : PyErr_NoMemory();
    }
    old = __atomic_exchange_n(&slots[i], rec, __ATOMIC_SEQ_CST);
    r->rec = old;
    r->epoch = __atomic_add_fetch(&global_epoch, 1, __ATOMIC_SEQ_CST);
    r->next = retired_list;
    retired_list = r;
    collect();
    Py_RETURN_NONE;
}

/* announce(owner, key, version): the writer is about to publish `version`. */
static PyObject *announce(PyObject *self, PyObject *args)
{
    int owner, key;
    unsigned long version;
    (void)self;
    if (!PyArg_ParseTuple(args, "iik", &owner, &key, &version)) {
        return NULL;
    }
    if (owner < 0 || owner >= MAXOWNER || key < 0 || key >= MAXKEY) {
        PyErr_SetString(PyExc_ValueError, "bad owner or key");
        return NULL;
    }
    __atomic_store_n(&maxver[owner][key], version, __ATOMIC_RELEASE);
    Py_RETURN_NONE;
}

/* start(n): n readers with no thread state. */
static PyObject *start(PyObject *self, PyObject *arg)
{
    long n = PyLong_AsLong(arg), t;
    (void)self;
    if (n < 1 || n > MAXT || nthreads != 0) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_ValueError, "bad thread count or already started");
        }
        return NULL;
    }
    __atomic_store_n(&stop, 0, __ATOMIC_RELEASE);
    lookups = hits = errors = 0;
    first_bad_slot = -1;
    first_bad_got = 0;
    for (t = 0; t < MAXT; t++) {
        __atomic_store_n(&active[t], t < n ? __atomic_load_n(&global_epoch, __ATOMIC_SEQ_CST) : (unsigned long)-1,
                         __ATOMIC_SEQ_CST);
    }
    for (t = 0; t < n; t++) {
        if (pthread_create(&threads[t], NULL, reader, (void *)(uintptr_t)t) != 0) {
            PyErr_SetString(PyExc_OSError, "pthread_create failed");
            return NULL;
        }
        nthreads++;
    }
    Py_RETURN_NONE;
}

/* stop() -> (lookups, hits, errors, first_bad_index, first_bad_value): joins
   the readers and releases every record. */
static PyObject *stop_readers(PyObject *self, PyObject *unused)
{
    int t, i;
    (void)self;
    (void)unused;
    __atomic_store_n(&stop, 1, __ATOMIC_RELEASE);
    Py_BEGIN_ALLOW_THREADS
    for (t = 0; t < nthreads; t++) {
        pthread_join(threads[t], NULL);
    }
    Py_END_ALLOW_THREADS
    nthreads = 0;
    collect();
    for (i = 0; i < nslots; i++) {
        record *rec = __atomic_exchange_n(&slots[i], NULL, __ATOMIC_SEQ_CST);
        if (rec != NULL) {
            free_record(rec);
        }
    }
    nslots = 0;
    memset(maxver, 0, sizeof maxver);
    return Py_BuildValue("(kkkiK)", lookups, hits, errors, first_bad_slot, (unsigned long long)first_bad_got);
}

/* lookup(type, id) -> int: ExtType_FindInType from the calling (Python)
   thread, for the test's own checks. */
static PyObject *lookup(PyObject *self, PyObject *args)
{
    PyObject *tp;
    unsigned long long id;
    (void)self;
    if (!PyArg_ParseTuple(args, "O!K", &PyType_Type, &tp, &id)) {
        return NULL;
    }
    return PyLong_FromUnsignedLongLong((unsigned long long)(uintptr_t)ExtType_FindInType((PyTypeObject *)tp, id));
}

typedef struct {
    PyTypeObject *tp;
    uint64_t id;
    void *found;
} one_lookup;

static void *one_lookup_thread(void *arg)
{
    one_lookup *job = (one_lookup *)arg;
    job->found = ExtType_FindInType(job->tp, job->id);
    return NULL;
}

/* lookup_from_pthread(type, id, release_gil) -> int: one ExtType_FindInType
   on a new pthread (no thread state). With release_gil false the calling
   thread keeps the GIL (and its thread state attached) while it waits: the
   pthread must still not act as if it held the GIL. */
static PyObject *lookup_from_pthread(PyObject *self, PyObject *args)
{
    PyObject *tp;
    unsigned long long id;
    int release, rc;
    pthread_t t;
    one_lookup job;
    (void)self;
    if (!PyArg_ParseTuple(args, "O!Kp", &PyType_Type, &tp, &id, &release)) {
        return NULL;
    }
    job.tp = (PyTypeObject *)tp;
    job.id = (uint64_t)id;
    job.found = NULL;
    if (release) {
        Py_BEGIN_ALLOW_THREADS
        rc = pthread_create(&t, NULL, one_lookup_thread, &job);
        if (rc == 0) {
            pthread_join(t, NULL);
        }
        Py_END_ALLOW_THREADS
    } else {
        rc = pthread_create(&t, NULL, one_lookup_thread, &job);
        if (rc == 0) {
            pthread_join(t, NULL);
        }
    }
    if (rc != 0) {
        PyErr_SetString(PyExc_OSError, "pthread_create failed");
        return NULL;
    }
    return PyLong_FromUnsignedLongLong((unsigned long long)(uintptr_t)job.found);
}

static PyMethodDef methods[] = {
    {"lookup_from_pthread", lookup_from_pthread, METH_VARARGS, NULL},
    {"add", add, METH_VARARGS, NULL},
    {"replace", replace, METH_VARARGS, NULL},
    {"announce", announce, METH_VARARGS, NULL},
    {"start", start, METH_O, NULL},
    {"stop", stop_readers, METH_NOARGS, NULL},
    {"lookup", lookup, METH_VARARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static int exec_module(PyObject *m)
{
    (void)m;
    return ExtType_Import();
}

static PyModuleDef_Slot module_slots[] = {
    {Py_mod_exec, (void *)exec_module},
#ifdef Py_mod_gil
    {Py_mod_gil, Py_MOD_GIL_NOT_USED},
#endif
    {0, NULL},
};

static PyModuleDef def = {PyModuleDef_HEAD_INIT, "nostate_readers", NULL, 0, methods, module_slots, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit_nostate_readers(void)
{
    return PyModuleDef_Init(&def);
}
