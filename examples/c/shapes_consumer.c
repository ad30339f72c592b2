/*
 * shapes_consumer: a C extension that CONSUMES the shapes interface
 * (shapes.h) on any object, whoever provides it (a C type made with
 * ExtType_FromSpec, a Python class with metaclass ExtensibleType and ctypes
 * callbacks, a type you do not own registered with set_slots, Cython, Rust).
 *
 *   scale(obj, x) -> float        the provider's scale(obj, x)
 *   area(obj) -> float            the provider's vtable->area(obj)
 *   vtable_name(obj) -> str       the provider's vtable->name
 *   find(obj, key) -> int | None  ExtType_Find (key: str or int id)
 *   find_in_type(tp, key)         ExtType_FindInType
 *   call_int(obj, key) -> int     call the slot as int (*)(void)
 *   prehash(key) -> int           ExtType_Prehash
 *   set_slots(tp, {key: address | None})   ExtType_SetSlots
 *   info() -> dict                what ExtType_Import cached
 *   stress(obj, key_id, nthreads, iterations, allowed) -> dict
 *       GIL released; nthreads POSIX threads (no Python thread state) call
 *       ExtType_Find(obj, key_id) `iterations` times each and classify every
 *       result: NULL, one of `allowed` (a tuple of int addresses), or bad.
 *
 * POSIX only (the stress test uses pthreads); GCC/Clang builtins for atomics.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <pthread.h>
#include <stdlib.h>
#include "shapes.h"

/* TypeError naming the missing key. */
static void *missing(PyObject *obj, const char *key)
{
    PyErr_Format(PyExc_TypeError, "'%.200s' object does not implement %s",
                 Py_TYPE(obj)->tp_name, key);
    return NULL;
}

static PyObject *scale(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    shapes_scale_fn f;
    double x;
    (void)module;
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "scale() takes 2 arguments (%zd given)", nargs);
        return NULL;
    }
    x = PyFloat_AsDouble(args[1]);
    if (x == -1.0 && PyErr_Occurred()) {
        return NULL;
    }
    /* The id is a compile-time constant: no hashing, no Python call. */
    f = (shapes_scale_fn)ExtType_Find(args[0], SHAPES_ID_SCALE);
    if (f == NULL) {
        return missing(args[0], SHAPES_KEY_SCALE);
    }
    x = f(args[0], x);
    if (PyErr_Occurred()) { /* a Python (ctypes) provider may have failed */
        return NULL;
    }
    return PyFloat_FromDouble(x);
}

static const shapes_vtable *vtable_of(PyObject *obj)
{
    const shapes_vtable *vt = (const shapes_vtable *)ExtType_Find(obj, SHAPES_ID_VTABLE);
    if (vt == NULL) {
        missing(obj, SHAPES_KEY_VTABLE);
    }
    return vt;
}

static PyObject *area(PyObject *module, PyObject *obj)
{
    const shapes_vtable *vt = vtable_of(obj);
    double a;
    (void)module;
    if (vt == NULL) {
        return NULL;
    }
    if (vt->area == NULL) {
        PyErr_Format(PyExc_TypeError, "'%.200s' object has a %s with no area",
                     Py_TYPE(obj)->tp_name, SHAPES_KEY_VTABLE);
        return NULL;
    }
    a = vt->area(obj);
    if (PyErr_Occurred()) {
        return NULL;
    }
    return PyFloat_FromDouble(a);
}

static PyObject *vtable_name(PyObject *module, PyObject *obj)
{
    const shapes_vtable *vt = vtable_of(obj);
    (void)module;
    if (vt == NULL) {
        return NULL;
    }
    if (vt->name == NULL) {
        Py_RETURN_NONE;
    }
    return PyUnicode_FromString(vt->name);
}

/* A key given as str (hashed at run time) or int (an id). */
static int id_of(PyObject *key, uint64_t *id)
{
    if (PyUnicode_Check(key)) {
        Py_ssize_t len;
        const char *s = PyUnicode_AsUTF8AndSize(key, &len);
        if (s == NULL) {
            return -1;
        }
        *id = ExtType_PrehashN(s, (size_t)len);
        return 0;
    }
    *id = PyLong_AsUnsignedLongLong(key);
    return (*id == (uint64_t)-1 && PyErr_Occurred()) ? -1 : 0;
}

static PyObject *pointer_or_none(void *p)
{
    if (p == NULL) {
        Py_RETURN_NONE;
    }
    return PyLong_FromVoidPtr(p);
}

static PyObject *find(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    uint64_t id;
    (void)module;
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "find() takes 2 arguments (%zd given)", nargs);
        return NULL;
    }
    if (id_of(args[1], &id) < 0) {
        return NULL;
    }
    return pointer_or_none(ExtType_Find(args[0], id));
}

static PyObject *find_in_type(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    uint64_t id;
    (void)module;
    if (nargs != 2 || !PyType_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "find_in_type(tp: type, key)");
        return NULL;
    }
    if (id_of(args[1], &id) < 0) {
        return NULL;
    }
    return pointer_or_none(ExtType_FindInType((PyTypeObject *)args[0], id));
}

/* call_int(obj, key) -> int: call the slot `key` as int (*)(void) (for
   providers of other interfaces, e.g. the Rust example's
   "second_runtime.v1:answer"). */
static PyObject *call_int(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    uint64_t id;
    int (*f)(void);
    (void)module;
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "call_int() takes 2 arguments (%zd given)", nargs);
        return NULL;
    }
    if (id_of(args[1], &id) < 0) {
        return NULL;
    }
    f = (int (*)(void))ExtType_Find(args[0], id);
    if (f == NULL) {
        PyErr_Format(PyExc_TypeError, "'%.200s' object does not implement %R",
                     Py_TYPE(args[0])->tp_name, args[1]);
        return NULL;
    }
    return PyLong_FromLong(f());
}

static PyObject *prehash(PyObject *module, PyObject *key)
{
    const char *s = PyUnicode_AsUTF8(key);
    (void)module;
    if (s == NULL) {
        return NULL;
    }
    return PyLong_FromUnsignedLongLong(ExtType_Prehash(s));
}

/* set_slots(tp, {key (str) or id (int): address (int) or None}) */
static PyObject *set_slots(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *key, *value;
    Py_ssize_t pos = 0, i = 0, n;
    ExtType_SlotDef *defs;
    int rc;
    (void)module;
    if (nargs != 2 || !PyDict_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "set_slots(tp, {key: address | None})");
        return NULL;
    }
    n = PyDict_Size(args[1]);
    defs = (ExtType_SlotDef *)PyMem_Calloc((size_t)(n > 0 ? n : 1), sizeof(ExtType_SlotDef));
    if (defs == NULL) {
        return PyErr_NoMemory();
    }
    while (PyDict_Next(args[1], &pos, &key, &value)) { /* the dict keeps keys alive */
        if (PyUnicode_Check(key)) {
            defs[i].key = PyUnicode_AsUTF8(key);
            if (defs[i].key == NULL) {
                goto fail;
            }
        } else if (id_of(key, &defs[i].id) < 0) {
            goto fail;
        }
        if (value != Py_None) {
            defs[i].ptr = PyLong_AsVoidPtr(value);
            if (defs[i].ptr == NULL && PyErr_Occurred()) {
                goto fail;
            }
        }
        i++;
    }
    rc = ExtType_SetSlots(args[0], defs, n);
    PyMem_Free(defs);
    if (rc < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
fail:
    PyMem_Free(defs);
    return NULL;
}

static PyObject *info(PyObject *module, PyObject *unused)
{
    const ExtType_API *api = ExtType_GetAPI();
    (void)module;
    (void)unused;
    return Py_BuildValue("{s:I,s:I,s:n,s:n,s:O}",
                         "abi_version", (unsigned)api->abi_version,
                         "struct_size", (unsigned)api->struct_size,
                         "sizeof_api", (Py_ssize_t)sizeof(ExtType_API),
                         "table_offset", api->table_offset,
                         "metaclass", (PyObject *)ExtType_Metaclass());
}

/* ---- stress: GIL-free lookups from threads Python never saw ----------- */

typedef struct {
    PyObject *obj; /* borrowed: the caller holds it for the whole call */
    uint64_t id;
    long long iterations;
    const uintptr_t *allowed;
    Py_ssize_t nallowed;
    int nthreads;
    int *ready; /* start barrier */
    long long hits, misses, bad, changes;
    uintptr_t first_bad;
} stress_arg;

static void *stress_thread(void *p)
{
    stress_arg *a = (stress_arg *)p;
    uintptr_t last = 0;
    long long k;
    Py_ssize_t j;
    __atomic_add_fetch(a->ready, 1, __ATOMIC_ACQ_REL);
    while (__atomic_load_n(a->ready, __ATOMIC_ACQUIRE) < a->nthreads) {
        /* spin: start together */
    }
    for (k = 0; k < a->iterations; k++) {
        uintptr_t found = (uintptr_t)ExtType_Find(a->obj, a->id);
        if (found != last) {
            a->changes++;
            last = found;
        }
        if (found == 0) {
            a->misses++;
            continue;
        }
        for (j = 0; j < a->nallowed; j++) {
            if (a->allowed[j] == found) {
                break;
            }
        }
        if (j < a->nallowed) {
            a->hits++;
        } else {
            if (a->bad++ == 0) {
                a->first_bad = found;
            }
        }
    }
    return NULL;
}

static PyObject *stress(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *obj, *allowed_tuple, *result = NULL;
    uint64_t id;
    long nthreads;
    long long iterations, hits = 0, misses = 0, bad = 0, changes = 0;
    uintptr_t *allowed = NULL, first_bad = 0;
    stress_arg *targs = NULL;
    pthread_t *threads = NULL;
    Py_ssize_t i, nallowed;
    int ready = 0, started = 0, err = 0;
    (void)module;

    if (nargs != 5 || !PyTuple_Check(args[4])) {
        PyErr_SetString(PyExc_TypeError, "stress(obj, key_id, nthreads, iterations, allowed: tuple)");
        return NULL;
    }
    obj = args[0];
    allowed_tuple = args[4];
    if (id_of(args[1], &id) < 0) {
        return NULL;
    }
    nthreads = PyLong_AsLong(args[2]);
    iterations = PyLong_AsLongLong(args[3]);
    if (PyErr_Occurred()) {
        return NULL;
    }
    if (nthreads < 1 || nthreads > 256 || iterations < 0) {
        PyErr_SetString(PyExc_ValueError, "stress: need 1 <= nthreads <= 256 and iterations >= 0");
        return NULL;
    }
    nallowed = PyTuple_GET_SIZE(allowed_tuple);
    allowed = (uintptr_t *)PyMem_Calloc((size_t)(nallowed > 0 ? nallowed : 1), sizeof(uintptr_t));
    targs = (stress_arg *)PyMem_Calloc((size_t)nthreads, sizeof(stress_arg));
    threads = (pthread_t *)PyMem_Calloc((size_t)nthreads, sizeof(pthread_t));
    if (allowed == NULL || targs == NULL || threads == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (i = 0; i < nallowed; i++) {
        allowed[i] = (uintptr_t)PyLong_AsVoidPtr(PyTuple_GET_ITEM(allowed_tuple, i));
        if (PyErr_Occurred()) {
            goto done;
        }
    }
    for (i = 0; i < nthreads; i++) {
        stress_arg *a = &targs[i];
        a->obj = obj;
        a->id = id;
        a->iterations = iterations;
        a->allowed = allowed;
        a->nallowed = nallowed;
        a->nthreads = (int)nthreads;
        a->ready = &ready;
    }

    Py_BEGIN_ALLOW_THREADS
    for (i = 0; i < nthreads; i++) {
        if (pthread_create(&threads[i], NULL, stress_thread, &targs[i]) != 0) {
            err = 1;
            /* let the started threads through the barrier */
            __atomic_store_n(&ready, (int)nthreads, __ATOMIC_RELEASE);
            break;
        }
        started++;
    }
    for (i = 0; i < started; i++) {
        pthread_join(threads[i], NULL);
    }
    Py_END_ALLOW_THREADS

    if (err) {
        PyErr_SetString(PyExc_RuntimeError, "stress: pthread_create failed");
        goto done;
    }
    for (i = 0; i < nthreads; i++) {
        hits += targs[i].hits;
        misses += targs[i].misses;
        changes += targs[i].changes;
        if (targs[i].bad && !bad) {
            first_bad = targs[i].first_bad;
        }
        bad += targs[i].bad;
    }
    result = Py_BuildValue("{s:L,s:L,s:L,s:L,s:N}", "hits", hits, "misses", misses,
                           "bad", bad, "changes", changes,
                           "first_bad", PyLong_FromVoidPtr((void *)first_bad));
done:
    PyMem_Free(allowed);
    PyMem_Free(targs);
    PyMem_Free(threads);
    return result;
}

static PyMethodDef consumer_methods[] = {
    {"scale", (PyCFunction)(void (*)(void))scale, METH_FASTCALL,
     "scale(obj, x) -> float: the extensibletype.example.v1:scale of obj."},
    {"area", area, METH_O, "area(obj) -> float: vtable->area(obj)."},
    {"vtable_name", vtable_name, METH_O, "vtable_name(obj) -> str: vtable->name."},
    {"find", (PyCFunction)(void (*)(void))find, METH_FASTCALL,
     "find(obj, key: str | int) -> int | None: ExtType_Find."},
    {"find_in_type", (PyCFunction)(void (*)(void))find_in_type, METH_FASTCALL,
     "find_in_type(tp, key: str | int) -> int | None: ExtType_FindInType."},
    {"call_int", (PyCFunction)(void (*)(void))call_int, METH_FASTCALL,
     "call_int(obj, key: str | int) -> int: call the slot as int (*)(void)."},
    {"prehash", prehash, METH_O, "prehash(key: str) -> int: ExtType_Prehash."},
    {"set_slots", (PyCFunction)(void (*)(void))set_slots, METH_FASTCALL,
     "set_slots(tp, {key | id: address | None}): ExtType_SetSlots."},
    {"info", info, METH_NOARGS, "info() -> dict: what ExtType_Import cached."},
    {"stress", (PyCFunction)(void (*)(void))stress, METH_FASTCALL,
     "stress(obj, key_id, nthreads, iterations, allowed) -> dict: GIL-free lookups."},
    {NULL, NULL, 0, NULL},
};

static int consumer_exec(PyObject *module)
{
    (void)module;
    return ExtType_Import();
}

static PyModuleDef_Slot consumer_slots[] = {
    {Py_mod_exec, (void *)consumer_exec},
#ifdef Py_mod_multiple_interpreters
    {Py_mod_multiple_interpreters, Py_MOD_MULTIPLE_INTERPRETERS_NOT_SUPPORTED},
#endif
#ifdef Py_mod_gil
    {Py_mod_gil, Py_MOD_GIL_NOT_USED},
#endif
    {0, NULL},
};

static PyModuleDef consumer_module = {
    PyModuleDef_HEAD_INIT, "shapes_consumer",
    "A C consumer of the shapes interface (extensibletype example).",
    0, consumer_methods, consumer_slots, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit_shapes_consumer(void)
{
    return PyModuleDef_Init(&consumer_module);
}
