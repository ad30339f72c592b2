/*
 * Every function of extensibletype.h and extensibletype_array.h called
 * before ExtType_Import() (python/tests/test_no_import.py): this module never
 * imports the runtime. Those that need the GIL must fail with an exception
 * set; the GIL-free ones must answer "nothing" without touching the
 * exception state (also from a thread that has no thread state).
 *
 * Compiled as C and as C++ (NO_IMPORT_NAME names the module). With
 * README_PROVIDER, the module is instead the README's C provider that forgot
 * ExtType_Import(): its init calls ExtType_FromSpec, so importing it must
 * raise, not crash.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include "extensibletype.h"
#include "extensibletype_array.h"

#ifndef NO_IMPORT_NAME
#  define NO_IMPORT_NAME no_import
#endif
#define NI_STR2(x) #x
#define NI_STR(x) NI_STR2(x)
#define NI_CAT2(a, b) a##b
#define NI_CAT(a, b) NI_CAT2(a, b)

static const ExtType_SlotDef defs[] = {{"tests.no_import.v1:k", 0, (void *)(uintptr_t)0x1234}};

static PyType_Slot meters_slots[] = {{0, NULL}};
static PyType_Spec meters_spec = {"no_import.Meters", 0, 0, Py_TPFLAGS_DEFAULT, meters_slots};

#ifndef README_PROVIDER

/* (result, exception type or None): the result of a GIL function and what it raised. */
static PyObject *outcome(PyObject *result)
{
    PyObject *type = NULL, *value = NULL, *tb = NULL, *out;
    if (result != NULL) {
        return Py_BuildValue("(NO)", result, Py_None);
    }
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    out = Py_BuildValue("(OO)", Py_None, value != NULL ? value : Py_None);
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);
    return out;
}

static PyObject *set_slots(PyObject *self, PyObject *type)
{
    int rc;
    (void)self;
    rc = ExtType_SetSlots(type, defs, 1);
    if (rc < 0 && !PyErr_Occurred()) {
        return PyLong_FromLong(-1000); /* failed without an exception */
    }
    return outcome(rc < 0 ? NULL : PyLong_FromLong(rc));
}

static PyObject *from_spec(PyObject *self, PyObject *unused)
{
    PyObject *tp;
    (void)self;
    (void)unused;
    tp = ExtType_FromSpec(NULL, &meters_spec, NULL, defs, 1);
    if (tp == NULL && !PyErr_Occurred()) {
        return PyLong_FromLong(-1000);
    }
    return outcome(tp);
}

static PyObject *array_get_view(PyObject *self, PyObject *obj)
{
    ExtType_ArrayView view;
    ExtType_ArrayReleaseFn release = NULL;
    int rc;
    (void)self;
    rc = ExtType_ArrayGetView(obj, 0, &view, &release);
    if (rc == 0) {
        release(obj, &view);
        return outcome(PyLong_FromLong(0));
    }
    if (!PyErr_Occurred()) {
        return PyLong_FromLong(-1000);
    }
    return outcome(NULL);
}

/* The GIL-free functions, with the GIL: (find, find_in_type, prehash,
   prehash_n, get_api, metaclass, exception set afterwards). */
static PyObject *gil_free(PyObject *self, PyObject *obj)
{
    void *f = ExtType_Find(obj, UINT64_C(0x1234));
    void *g = ExtType_FindInType(Py_TYPE(obj), UINT64_C(0x1234));
    uint64_t h = ExtType_Prehash("tests.no_import.v1:k");
    uint64_t hn = ExtType_PrehashN("tests.no_import.v1:k", 5);
    const void *api = (const void *)ExtType_GetAPI();
    PyTypeObject *meta = ExtType_Metaclass();
    int raised = PyErr_Occurred() != NULL;
    (void)self;
    PyErr_Clear();
    return Py_BuildValue("(KKKKKKi)", (unsigned long long)(uintptr_t)f, (unsigned long long)(uintptr_t)g,
                         (unsigned long long)h, (unsigned long long)hn, (unsigned long long)(uintptr_t)api,
                         (unsigned long long)(uintptr_t)meta, raised);
}

typedef struct {
    PyObject *obj;
    uintptr_t found;
} find_job;

static void *find_thread(void *arg)
{
    find_job *job = (find_job *)arg;
    job->found = (uintptr_t)ExtType_Find(job->obj, UINT64_C(0x1234)) |
                 (uintptr_t)ExtType_FindInType(Py_TYPE(job->obj), UINT64_C(0x1234)) |
                 (uintptr_t)ExtType_Prehash("x");
    return NULL;
}

/* ExtType_Find and friends from a pthread without a thread state. */
static PyObject *find_in_pthread(PyObject *self, PyObject *obj)
{
    pthread_t t;
    find_job job;
    int rc;
    (void)self;
    job.obj = obj;
    job.found = 1;
    Py_BEGIN_ALLOW_THREADS
    rc = pthread_create(&t, NULL, find_thread, &job);
    if (rc == 0) {
        pthread_join(t, NULL);
    }
    Py_END_ALLOW_THREADS
    if (rc != 0) {
        PyErr_SetString(PyExc_OSError, "pthread_create failed");
        return NULL;
    }
    return PyLong_FromUnsignedLongLong((unsigned long long)job.found);
}

static PyMethodDef methods[] = {
    {"set_slots", set_slots, METH_O, NULL},
    {"from_spec", from_spec, METH_NOARGS, NULL},
    {"array_get_view", array_get_view, METH_O, NULL},
    {"gil_free", gil_free, METH_O, NULL},
    {"find_in_pthread", find_in_pthread, METH_O, NULL},
    {NULL, NULL, 0, NULL},
};

static int exec_module(PyObject *m)
{
    (void)m;
    return 0; /* deliberately no ExtType_Import() */
}

#else /* README_PROVIDER */

static PyMethodDef methods[] = {{NULL, NULL, 0, NULL}};

/* The README's provider, minus the ExtType_Import() it should call first. */
static int exec_module(PyObject *m)
{
    PyObject *tp = ExtType_FromSpec(m, &meters_spec, NULL, defs, 1);
    if (tp == NULL) {
        return -1;
    }
    if (PyModule_AddObjectRef(m, "Meters", tp) < 0) {
        Py_DECREF(tp);
        return -1;
    }
    Py_DECREF(tp);
    return 0;
}

#endif

static PyModuleDef_Slot module_slots[] = {
    {Py_mod_exec, (void *)exec_module},
#ifdef Py_mod_gil
    {Py_mod_gil, Py_MOD_GIL_NOT_USED},
#endif
    {0, NULL},
};

static PyModuleDef def = {PyModuleDef_HEAD_INIT, NI_STR(NO_IMPORT_NAME), NULL, 0, methods, module_slots, NULL, NULL, NULL};

PyMODINIT_FUNC NI_CAT(PyInit_, NO_IMPORT_NAME)(void)
{
    return PyModuleDef_Init(&def);
}
