/*
 * Lookup cost of the same consumer compiled for the full C API and for abi3t
 * (PEP 803), on CPython 3.15 (driver: benches/c/abi3t.py; run it with
 * `bash benches/c/abi3t.sh`).
 *
 * One source, compiled twice (BENCH_NAME differs; the abi3t build adds
 * -DPy_TARGET_ABI3T=0x030f0000). Both export the module with PyModExport
 * (3.15 accepts that for full-API modules too). With ET_BENCH_NUMPY, NumPy's
 * own C API is compiled in as a baseline: under abi3t its accessors
 * (PyArray_DATA, ...) are calls through NumPy's API table (NumPy 2.5).
 *
 * time(kind, obj, id, n) -> ns per iteration of:
 *   "find"     ExtType_Find(obj, id)
 *   "view"     ExtType_ArrayGetView(obj) + release (NumPy array: the
 *              registered adapter; data, shape, strides, dtype)
 *   "numpy"    PyArray_Check + PyArray_DATA / NDIM / DIMS / STRIDES / DESCR /
 *              TYPE / ITEMSIZE: the same information from NumPy's C API
 * An empty asm statement launders `obj` every iteration so that nothing is
 * hoisted out of the loop.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <time.h>
#include "extensibletype_array.h"

#ifdef ET_BENCH_NUMPY
#  define NPY_NO_DEPRECATED_API NPY_2_0_API_VERSION
#  define NPY_TARGET_VERSION NPY_2_5_API_VERSION /* abi3t needs NumPy 2.5's accessors */
#  include <numpy/arrayobject.h>
#endif

#ifndef BENCH_NAME
#  define BENCH_NAME _et_abi3t_bench
#endif
#define STR2(x) #x
#define STR(x) STR2(x)
#define CAT2(a, b) a##b
#define CAT(a, b) CAT2(a, b)

#if defined(__GNUC__) || defined(__clang__)
#  define LAUNDER(p) __asm__ volatile("" : "+r"(p))
#else
#  define LAUNDER(p) ((void)0)
#endif

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static volatile uintptr_t sink;

static PyObject *bench_time(PyObject *module, PyObject *args)
{
    const char *kind;
    PyObject *obj;
    unsigned long long id;
    Py_ssize_t n, i;
    uintptr_t acc = 0;
    double t0, t1;
    (void)module;
    if (!PyArg_ParseTuple(args, "sOKn", &kind, &obj, &id, &n)) {
        return NULL;
    }
    if (strcmp(kind, "find") == 0) {
        t0 = now_ns();
        for (i = 0; i < n; i++) {
            LAUNDER(obj);
            acc ^= (uintptr_t)ExtType_Find(obj, (uint64_t)id);
        }
        t1 = now_ns();
    } else if (strcmp(kind, "view") == 0) {
        t0 = now_ns();
        for (i = 0; i < n; i++) {
            ExtType_ArrayView view;
            ExtType_ArrayReleaseFn release;
            LAUNDER(obj);
            if (ExtType_ArrayGetView(obj, 0, &view, &release) < 0) {
                return NULL;
            }
            acc ^= (uintptr_t)view.data ^ (uintptr_t)view.ndim ^ (uintptr_t)view.shape ^ (uintptr_t)view.strides ^
                   (uintptr_t)view.dtype.code ^ (uintptr_t)view.dtype.bits;
            release(obj, &view);
        }
        t1 = now_ns();
    }
#ifdef ET_BENCH_NUMPY
    else if (strcmp(kind, "numpy") == 0) {
        t0 = now_ns();
        for (i = 0; i < n; i++) {
            PyArrayObject *a;
            LAUNDER(obj);
            if (!PyArray_Check(obj)) {
                PyErr_SetString(PyExc_TypeError, "not an ndarray");
                return NULL;
            }
            a = (PyArrayObject *)obj;
            acc ^= (uintptr_t)PyArray_DATA(a) ^ (uintptr_t)PyArray_NDIM(a) ^ (uintptr_t)PyArray_DIMS(a) ^
                   (uintptr_t)PyArray_STRIDES(a) ^ (uintptr_t)PyArray_DESCR(a) ^ (uintptr_t)PyArray_TYPE(a) ^
                   (uintptr_t)PyArray_ITEMSIZE(a);
        }
        t1 = now_ns();
    }
#endif
    else {
        PyErr_Format(PyExc_ValueError, "unknown kind %s", kind);
        return NULL;
    }
    sink = acc;
    return PyFloat_FromDouble((t1 - t0) / (double)(n > 0 ? n : 1));
}

/* info() -> (abi3t?, numpy?, inline ob_type read in use?) */
static PyObject *bench_info(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
#ifdef _Py_OPAQUE_PYOBJECT
    int abi3t = 1;
#else
    int abi3t = 0;
#endif
#ifdef ET_BENCH_NUMPY
    int numpy = 1;
#else
    int numpy = 0;
#endif
    return Py_BuildValue("(iii)", abi3t, numpy, EXTTYPE__TYPE_INLINE && EXTTYPE__CACHE.ob_type_offset != 0);
}

/* use_py_type() : (bench only) forget the measured ob_type offset, so that
   the header calls Py_TYPE() as it did before the offset was published. */
static PyObject *bench_use_py_type(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
    EXTTYPE__CACHE.ob_type_offset = 0;
    Py_RETURN_NONE;
}

static PyMethodDef bench_methods[] = {
    {"time", bench_time, METH_VARARGS, "time(kind, obj, id, n) -> ns per iteration."},
    {"info", bench_info, METH_NOARGS, "(abi3t, numpy, inline ob_type)."},
    {"use_py_type", bench_use_py_type, METH_NOARGS, "Forget the ob_type offset (call Py_TYPE())."},
    {NULL, NULL, 0, NULL},
};

static int bench_exec(PyObject *module)
{
    (void)module;
    if (ExtType_Import() < 0) {
        return -1;
    }
#ifdef ET_BENCH_NUMPY
    if (_import_array() < 0) {
        return -1;
    }
#endif
    return 0;
}

PyABIInfo_VAR(bench_abi_info);

static PySlot bench_slots[] = {
    PySlot_PTR_STATIC(Py_mod_name, STR(BENCH_NAME)),
    PySlot_PTR_STATIC(Py_mod_methods, bench_methods),
    PySlot_PTR(Py_mod_exec, bench_exec),
    PySlot_PTR(Py_mod_abi, &bench_abi_info),
    PySlot_PTR(Py_mod_multiple_interpreters, Py_MOD_MULTIPLE_INTERPRETERS_NOT_SUPPORTED),
    PySlot_PTR(Py_mod_gil, Py_MOD_GIL_NOT_USED),
    {0, 0, {0}, {NULL}},
};

PyMODEXPORT_FUNC CAT(PyModExport_, BENCH_NAME)(void)
{
    return bench_slots;
}
