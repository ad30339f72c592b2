/*
 * array_consumer: a C extension that CONSUMES the array.v1 interface
 * (extensibletype_array.h) on any object whose type provides it:
 * extensibletype.arrays.Array, numpy.ndarray, bytearray, memoryview,
 * array.array (after `import extensibletype.arrays`), or your own type.
 * No NumPy headers, no isinstance checks: the provider is found through
 * the object's slot table (ExtType_Find) in a few loads.
 *
 *   >>> import extensibletype.arrays, array_consumer, numpy as np
 *   >>> array_consumer.sum(np.arange(10.0)[::-3])
 *   18.0
 *
 * Build: cc -shared -fPIC -O2 $(python3-config --includes) \
 *          -I$(python -m extensibletype include) array_consumer.c \
 *          -o array_consumer$(python3-config --extension-suffix)
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include "extensibletype_array.h"

/* Visit every element of an n-d strided view in C order: `body` runs with
   `p` pointing at the element. No Python calls inside (runs without the
   GIL). */
#define FOR_EACH_ELEMENT(view, p, body)                                          \
    do {                                                                         \
        int64_t idx_[64] = {0};                                                  \
        int32_t nd_ = (view)->ndim;                                              \
        char *p = (char *)(view)->data;                                          \
        int64_t n_ = ExtType_ArraySize(view);                                    \
        int64_t i_;                                                              \
        for (i_ = 0; i_ < n_; i_++) {                                            \
            int32_t k_;                                                          \
            body;                                                                \
            for (k_ = nd_ - 1; k_ >= 0; k_--) {                                  \
                p += (view)->strides[k_];                                        \
                if (++idx_[k_] < (view)->shape[k_]) {                            \
                    break;                                                       \
                }                                                                \
                p -= (view)->strides[k_] * (view)->shape[k_];                    \
                idx_[k_] = 0;                                                    \
            }                                                                    \
        }                                                                        \
    } while (0)

/* sum(x) -> float | int: the sum of all elements (float64, float32, int64). */
static PyObject *array_sum(PyObject *module, PyObject *obj)
{
    ExtType_ArrayView view;
    ExtType_ArrayReleaseFn release;
    double fsum = 0.0;
    int64_t isum = 0;
    int kind;
    (void)module;

    if (ExtType_ArrayGetView(obj, 0, &view, &release) < 0) {
        return NULL; /* TypeError naming the key, or the provider's error */
    }
    if (view.device.device_type != EXTTYPE_DL_CPU || (view.flags & EXTTYPE_ARRAY_BYTESWAPPED) || view.ndim > 64) {
        release(obj, &view);
        PyErr_SetString(PyExc_TypeError, "array_consumer.sum: host memory in native byte order only");
        return NULL;
    }
    if (ExtType_ArrayDTypeIs(&view, EXTTYPE_DL_FLOAT, 64)) {
        kind = 0;
    } else if (ExtType_ArrayDTypeIs(&view, EXTTYPE_DL_FLOAT, 32)) {
        kind = 1;
    } else if (ExtType_ArrayDTypeIs(&view, EXTTYPE_DL_INT, 64)) {
        kind = 2;
    } else {
        release(obj, &view);
        PyErr_SetString(PyExc_TypeError, "array_consumer.sum: float64, float32 or int64 only");
        return NULL;
    }

    /* The view stays valid without the GIL until release(). */
    Py_BEGIN_ALLOW_THREADS
    switch (kind) {
    case 0:
        FOR_EACH_ELEMENT(&view, p, { double v; memcpy(&v, p, sizeof v); fsum += v; });
        break;
    case 1:
        FOR_EACH_ELEMENT(&view, p, { float v; memcpy(&v, p, sizeof v); fsum += v; });
        break;
    default:
        FOR_EACH_ELEMENT(&view, p, { int64_t v; memcpy(&v, p, sizeof v); isum = (int64_t)((uint64_t)isum + (uint64_t)v); });
        break;
    }
    Py_END_ALLOW_THREADS

    release(obj, &view);
    return kind == 2 ? PyLong_FromLongLong(isum) : PyFloat_FromDouble(fsum);
}

/* describe(x) -> (ndim, shape, strides, dtype code, bits, flags). */
static PyObject *array_describe(PyObject *module, PyObject *obj)
{
    ExtType_ArrayView view;
    ExtType_ArrayReleaseFn release;
    PyObject *shape, *strides, *result = NULL;
    int32_t k;
    (void)module;

    if (ExtType_ArrayGetView(obj, 0, &view, &release) < 0) {
        return NULL;
    }
    shape = PyTuple_New(view.ndim);
    strides = PyTuple_New(view.ndim);
    if (shape != NULL && strides != NULL) {
        for (k = 0; k < view.ndim; k++) {
            PyTuple_SET_ITEM(shape, k, PyLong_FromLongLong(view.shape[k]));
            PyTuple_SET_ITEM(strides, k, PyLong_FromLongLong(view.strides[k]));
        }
        result = Py_BuildValue("(iOOiiI)", (int)view.ndim, shape, strides, (int)view.dtype.code,
                               (int)view.dtype.bits, (unsigned)view.flags);
    }
    Py_XDECREF(shape);
    Py_XDECREF(strides);
    release(obj, &view);
    return result;
}

/* layout() -> dict: sizeof/offsetof of ExtType_ArrayView (layout tests). */
static PyObject *array_layout(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
    return Py_BuildValue(
        "{s:n,s:n,s:n,s:n,s:n,s:n,s:n,s:n,s:n,s:n,s:n,s:n,s:n,s:n}",
        "__size__", (Py_ssize_t)sizeof(ExtType_ArrayView),
        "size", (Py_ssize_t)offsetof(ExtType_ArrayView, size),
        "version", (Py_ssize_t)offsetof(ExtType_ArrayView, version),
        "data", (Py_ssize_t)offsetof(ExtType_ArrayView, data),
        "shape", (Py_ssize_t)offsetof(ExtType_ArrayView, shape),
        "strides", (Py_ssize_t)offsetof(ExtType_ArrayView, strides),
        "ndim", (Py_ssize_t)offsetof(ExtType_ArrayView, ndim),
        "flags", (Py_ssize_t)offsetof(ExtType_ArrayView, flags),
        "dtype", (Py_ssize_t)offsetof(ExtType_ArrayView, dtype),
        "reserved", (Py_ssize_t)offsetof(ExtType_ArrayView, reserved),
        "device", (Py_ssize_t)offsetof(ExtType_ArrayView, device),
        "owner", (Py_ssize_t)offsetof(ExtType_ArrayView, owner),
        "internal", (Py_ssize_t)offsetof(ExtType_ArrayView, internal),
        "scratch", (Py_ssize_t)offsetof(ExtType_ArrayView, scratch));
}

/* ids() -> (acquire id, release id) as compiled in. */
static PyObject *array_ids(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
    return Py_BuildValue("(KK)", (unsigned long long)EXTTYPE_ARRAY_ID_ACQUIRE,
                         (unsigned long long)EXTTYPE_ARRAY_ID_RELEASE);
}

static PyMethodDef consumer_methods[] = {
    {"sum", array_sum, METH_O, "sum(x): sum of all elements of any array.v1 provider."},
    {"describe", array_describe, METH_O, "describe(x) -> (ndim, shape, strides, dtype code, bits, flags)."},
    {"layout", array_layout, METH_NOARGS, "Offsets of ExtType_ArrayView fields (for tests)."},
    {"ids", array_ids, METH_NOARGS, "The compiled-in key ids (for tests)."},
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
    PyModuleDef_HEAD_INIT, "array_consumer",
    "A C consumer of the array.v1 interface (extensibletype example).",
    0, consumer_methods, consumer_slots, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit_array_consumer(void)
{
    return PyModuleDef_Init(&consumer_module);
}
