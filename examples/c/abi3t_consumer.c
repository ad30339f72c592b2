/*
 * abi3t_consumer: a C extension built once for abi3t (PEP 803: CPython
 * 3.15+, regular and free-threaded builds) that CONSUMES the shapes
 * interface (shapes.h) and the array.v1 interface (extensibletype_array.h)
 * on any object whose type provides them. Module exported with
 * PyModExport_<name> and a PySlot array (no PyModuleDef under abi3t).
 *
 * The lookups are the same source as for the full API; under abi3t
 * (where Py_TYPE() is an exported function) the header reads ob_type at the
 * offset the runtime measured at import, and calls Py_TYPE() when the
 * runtime published none. `inline_type()` tells which.
 *
 * Also compiles as C++17.
 *
 * Build (CPython 3.15):
 *   cc -shared -fPIC -O2 -DPy_TARGET_ABI3T=0x030f0000 $(python3.15-config --includes) \
 *      -I$(python -m extensibletype include) -Iexamples/c abi3t_consumer.c \
 *      -o abi3t_consumer.abi3t.so
 */
#ifndef Py_TARGET_ABI3T
#  define Py_TARGET_ABI3T 0x030f0000
#endif
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include "extensibletype_array.h"
#include "shapes.h"

#ifndef ABI3T_CONSUMER_NAME /* the C++ build of the tests sets another name */
#  define ABI3T_CONSUMER_NAME abi3t_consumer
#endif
/* PySlot_END is `{0}`, which g++ -Wextra flags (missing-field-initializers). */
#define ABI3T_SLOT_END {0, 0, {0}, {NULL}}
#define ABI3T__STR2(x) #x
#define ABI3T__STR(x) ABI3T__STR2(x)
#define ABI3T__CAT2(a, b) a##b
#define ABI3T__CAT(a, b) ABI3T__CAT2(a, b)

/* scale(obj, x) -> float: obj's "scale" slot applied to x (TypeError if absent). */
static PyObject *consumer_scale(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    shapes_scale_fn scale;
    void *p;
    double x;
    (void)module;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "scale(obj, x) takes 2 arguments");
        return NULL;
    }
    x = PyFloat_AsDouble(args[1]);
    if (x == -1.0 && PyErr_Occurred()) {
        return NULL;
    }
    p = ExtType_Find(args[0], SHAPES_ID_SCALE);
    if (p == NULL) {
        PyErr_Format(PyExc_TypeError, "%T object does not provide \"%s\"", args[0], SHAPES_KEY_SCALE);
        return NULL;
    }
    memcpy(&scale, &p, sizeof scale);
    return PyFloat_FromDouble(scale(args[0], x));
}

/* describe(obj) -> (vtable name, area) or None when obj has no vtable slot. */
static PyObject *consumer_shape(PyObject *module, PyObject *obj)
{
    const shapes_vtable *vt = (const shapes_vtable *)ExtType_Find(obj, SHAPES_ID_VTABLE);
    (void)module;
    if (vt == NULL) {
        Py_RETURN_NONE;
    }
    return Py_BuildValue("(sd)", vt->name, vt->area(obj));
}

/* find(obj, key) -> int: the pointer registered under key on type(obj), 0 if none. */
static PyObject *consumer_find(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    const char *key;
    (void)module;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "find(obj, key) takes 2 arguments");
        return NULL;
    }
    key = PyUnicode_AsUTF8AndSize(args[1], NULL);
    if (key == NULL) {
        return NULL;
    }
    return PyLong_FromVoidPtr(ExtType_Find(args[0], ExtType_Prehash(key)));
}

/* array_sum(obj) -> float: sum of a float64 array.v1 view, any ndim and strides. */
static PyObject *consumer_array_sum(PyObject *module, PyObject *obj)
{
    ExtType_ArrayView view;
    ExtType_ArrayReleaseFn release;
    int64_t idx[64] = {0};
    int64_t i, n;
    double sum = 0.0;
    const char *p;
    (void)module;
    if (ExtType_ArrayGetView(obj, 0, &view, &release) < 0) {
        return NULL;
    }
    if (!ExtType_ArrayDTypeIs(&view, EXTTYPE_DL_FLOAT, 64) || view.device.device_type != EXTTYPE_DL_CPU ||
        (view.flags & EXTTYPE_ARRAY_BYTESWAPPED) || view.ndim > 64) {
        release(obj, &view);
        PyErr_SetString(PyExc_TypeError, "array_sum: native float64 host memory only");
        return NULL;
    }
    n = ExtType_ArraySize(&view);
    p = (const char *)view.data;
    Py_BEGIN_ALLOW_THREADS
    for (i = 0; i < n; i++) {
        int32_t k;
        double v;
        memcpy(&v, p, sizeof v);
        sum += v;
        for (k = view.ndim - 1; k >= 0; k--) {
            p += view.strides[k];
            if (++idx[k] < view.shape[k]) {
                break;
            }
            p -= view.strides[k] * view.shape[k];
            idx[k] = 0;
        }
    }
    Py_END_ALLOW_THREADS
    release(obj, &view);
    return PyFloat_FromDouble(sum);
}

/* array_shape(obj) -> (shape tuple, strides tuple) of obj's array.v1 view. */
static PyObject *consumer_array_shape(PyObject *module, PyObject *obj)
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
        int ok = 1;
        for (k = 0; k < view.ndim && ok; k++) {
            ok = PyTuple_SetItem(shape, k, PyLong_FromLongLong(view.shape[k])) == 0 &&
                 PyTuple_SetItem(strides, k, PyLong_FromLongLong(view.strides[k])) == 0;
        }
        if (ok) {
            result = PyTuple_Pack(2, shape, strides);
        }
    }
    Py_XDECREF(shape);
    Py_XDECREF(strides);
    release(obj, &view);
    return result;
}

/* inline_type() -> (compiled with the inline ob_type read, offset in use). */
static PyObject *consumer_inline_type(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
    return Py_BuildValue("(in)", EXTTYPE__TYPE_INLINE, EXTTYPE__CACHE.ob_type_offset);
}

static PyMethodDef consumer_methods[] = {
    {"scale", (PyCFunction)(void (*)(void))consumer_scale, METH_FASTCALL, "scale(obj, x) via the scale slot."},
    {"shape", consumer_shape, METH_O, "shape(obj) -> (name, area) via the vtable slot, or None."},
    {"find", (PyCFunction)(void (*)(void))consumer_find, METH_FASTCALL, "find(obj, key) -> pointer or 0."},
    {"array_sum", consumer_array_sum, METH_O, "array_sum(x): sum of a float64 array.v1 provider."},
    {"array_shape", consumer_array_shape, METH_O, "array_shape(x) -> (shape, strides)."},
    {"inline_type", consumer_inline_type, METH_NOARGS, "(inline ob_type read compiled in, offset in use)."},
    {NULL, NULL, 0, NULL},
};

static int consumer_exec(PyObject *module)
{
    (void)module;
    return ExtType_Import(); /* ImportError on an API struct it cannot use */
}

PyABIInfo_VAR(consumer_abi_info);

static PySlot consumer_module_slots[] = {
    PySlot_PTR_STATIC(Py_mod_name, ABI3T__STR(ABI3T_CONSUMER_NAME)),
    PySlot_PTR_STATIC(Py_mod_doc, "A C consumer of shapes and array.v1, built for abi3t (extensibletype example)."),
    PySlot_PTR_STATIC(Py_mod_methods, consumer_methods),
    PySlot_PTR(Py_mod_exec, consumer_exec),
    PySlot_PTR(Py_mod_abi, &consumer_abi_info),
    PySlot_PTR(Py_mod_multiple_interpreters, Py_MOD_MULTIPLE_INTERPRETERS_NOT_SUPPORTED),
    PySlot_PTR(Py_mod_gil, Py_MOD_GIL_NOT_USED),
    ABI3T_SLOT_END,
};

PyMODEXPORT_FUNC ABI3T__CAT(PyModExport_, ABI3T_CONSUMER_NAME)(void)
{
    return consumer_module_slots;
}
