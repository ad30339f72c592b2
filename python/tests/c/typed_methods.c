/*
 * Test harness of python/tests/test_bind.py: C providers of typed methods
 * (docs/spec.md §1.1), one per canonical signature, on a small
 * C type `Box` holding a double `value`. The tests register them with
 * set_slots on Python subclasses of Box and call them through
 * extensibletype.bind.
 *
 * - addresses() -> {signature: address} of the providers below.
 * - call_f64_c128(address, obj, z) / call_f64_c64(address, obj, z): call the
 *   function at `address` as `double (*)(PyObject *, double _Complex)` (float
 *   _Complex for c64) from C, so that a ctypes callback taking the struct
 *   {double re, im;} bind uses is checked against the C complex ABI (the
 *   other direction: bind calling box_cmul / box_cmul64).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <complex.h>
#include <stdbool.h>
#include <stdint.h>
#include "extensibletype.h"

typedef struct {
    PyObject_HEAD
    double value;
} Box;

/* 1 when the calling thread has an attached thread state (holds the GIL on
   GIL builds), 0 when the caller detached it. Not PyGILState_Check(): that
   says 1 always once a subinterpreter was created (3.11, 3.12). */
static int32_t attached(void)
{
#if PY_VERSION_HEX >= 0x030D0000
    return PyThreadState_GetUnchecked() != NULL;
#else
    return _PyThreadState_UncheckedGet() != NULL;
#endif
}

static double box_value(PyObject *self)
{
    return ((Box *)self)->value;
}

/* f64(O): no thread state needed. */
static double box_get(PyObject *self)
{
    return box_value(self);
}

/* v(O,f64) */
static void box_set(PyObject *self, double x)
{
    ((Box *)self)->value = x;
}

/* i64(O,*f64,i64): writes value, value + 1, ... into out[0..n), returns n. */
static int64_t box_fill(PyObject *self, double *out, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        out[i] = box_value(self) + (double)i;
    }
    return n;
}

/* O+(O)!t: a new tuple (self, value, attached()). */
static PyObject *box_info(PyObject *self)
{
    return Py_BuildValue("(Odi)", self, box_value(self), (int)attached());
}

/* f64(O,f64)!e: value / x; ZeroDivisionError for x == 0. */
static int32_t box_div(PyObject *self, double x, double *out)
{
    if (x == 0.0) {
        PyErr_Format(PyExc_ZeroDivisionError, "box_div: %R / 0", self);
        return -1;
    }
    *out = box_value(self) / x;
    return 0;
}

/* v(O)!e: ValueError when value < 0. */
static int32_t box_check(PyObject *self)
{
    if (box_value(self) < 0) {
        PyErr_SetString(PyExc_ValueError, "box_check: negative value");
        return -1;
    }
    return 0;
}

/* v(O)!e that fails without setting an exception (a broken provider). */
static int32_t box_broken(PyObject *self)
{
    (void)self;
    return -1;
}

/* b(O,p): is p the object itself? */
static bool box_is(PyObject *self, void *p)
{
    return p == (void *)self;
}

/* c128(O,c128): z * (value + 1i). */
static double _Complex box_cmul(PyObject *self, double _Complex z)
{
    return z * (box_value(self) + 1.0 * I);
}

/* c64(O,c64): z * (value + 1i), in float. */
static float _Complex box_cmul64(PyObject *self, float _Complex z)
{
    return z * ((float)box_value(self) + 1.0f * I);
}

/* i32(O): attached() (1 when called with the thread state attached). */
static int32_t box_gil(PyObject *self)
{
    (void)self;
    return attached();
}

/* u8(O,i8,u16,i32,u32,f32,u64): the sum of the arguments, modulo 256. */
static uint8_t box_mix(PyObject *self, int8_t a, uint16_t b, int32_t c, uint32_t d, float e, uint64_t f)
{
    (void)self;
    return (uint8_t)((int64_t)a + (int64_t)b + (int64_t)c + (int64_t)d + (int64_t)e + (int64_t)f);
}

/* p(O,p): its argument back. */
static void *box_echo(PyObject *self, void *p)
{
    (void)self;
    return p;
}

/* *f64(O,*f64): its argument + 1 element. */
static double *box_next(PyObject *self, double *p)
{
    (void)self;
    return p + 1;
}

/* O+(O,O)!e: (self, arg); TypeError when arg is None. */
static PyObject *box_pair(PyObject *self, PyObject *arg)
{
    if (arg == Py_None) {
        PyErr_SetString(PyExc_TypeError, "box_pair: None");
        return NULL;
    }
    return PyTuple_Pack(2, self, arg);
}

/* i64(O,i64)!e: arg * 2, OverflowError when arg < 0; through the out-pointer. */
static int32_t box_twice(PyObject *self, int64_t arg, int64_t *out)
{
    (void)self;
    if (arg < 0) {
        PyErr_SetString(PyExc_OverflowError, "box_twice: negative");
        return -1;
    }
    *out = 2 * arg;
    return 0;
}

#define ADDR(sig, fn)                                                                    \
    do {                                                                                 \
        PyObject *a = PyLong_FromVoidPtr((void *)(fn));                                  \
        if (a == NULL || PyDict_SetItemString(d, (sig), a) < 0) {                        \
            Py_XDECREF(a);                                                               \
            Py_DECREF(d);                                                                \
            return NULL;                                                                 \
        }                                                                                \
        Py_DECREF(a);                                                                    \
    } while (0)

static PyObject *addresses(PyObject *self, PyObject *unused)
{
    PyObject *d = PyDict_New();
    (void)self;
    (void)unused;
    if (d == NULL) {
        return NULL;
    }
    ADDR("f64(O)", box_get);
    ADDR("v(O,f64)", box_set);
    ADDR("i64(O,*f64,i64)", box_fill);
    ADDR("O+(O)!t", box_info);
    ADDR("f64(O,f64)!e", box_div);
    ADDR("v(O)!e", box_check);
    ADDR("v(O)!e broken", box_broken);
    ADDR("b(O,p)", box_is);
    ADDR("c128(O,c128)", box_cmul);
    ADDR("c64(O,c64)", box_cmul64);
    ADDR("i32(O)", box_gil);
    ADDR("u8(O,i8,u16,i32,u32,f32,u64)", box_mix);
    ADDR("p(O,p)", box_echo);
    ADDR("*f64(O,*f64)", box_next);
    ADDR("O+(O,O)!e", box_pair);
    ADDR("i64(O,i64)!e", box_twice);
    return d;
}

/* call_f64_c128(address, obj, z): the function at `address` called from C as
   double (*)(PyObject *, double _Complex) (ctypes callbacks cannot return a
   struct, so the other direction is checked on arguments). */
static PyObject *call_f64_c128(PyObject *self, PyObject *args)
{
    PyObject *addr, *obj;
    Py_complex z;
    double (*fn)(PyObject *, double _Complex);
    (void)self;
    if (!PyArg_ParseTuple(args, "OOD", &addr, &obj, &z)) {
        return NULL;
    }
    fn = (double (*)(PyObject *, double _Complex))PyLong_AsVoidPtr(addr);
    if (fn == NULL) {
        return PyErr_Occurred() ? NULL : PyErr_Format(PyExc_ValueError, "NULL address");
    }
    return PyFloat_FromDouble(fn(obj, z.real + z.imag * I));
}

/* call_f64_c64(address, obj, z): the same with float _Complex. */
static PyObject *call_f64_c64(PyObject *self, PyObject *args)
{
    PyObject *addr, *obj;
    Py_complex z;
    double (*fn)(PyObject *, float _Complex);
    (void)self;
    if (!PyArg_ParseTuple(args, "OOD", &addr, &obj, &z)) {
        return NULL;
    }
    fn = (double (*)(PyObject *, float _Complex))PyLong_AsVoidPtr(addr);
    if (fn == NULL) {
        return PyErr_Occurred() ? NULL : PyErr_Format(PyExc_ValueError, "NULL address");
    }
    return PyFloat_FromDouble(fn(obj, (float)z.real + (float)z.imag * I));
}

static PyMemberDef box_members[] = {
    {"value", T_DOUBLE, offsetof(Box, value), 0, "the box's value"},
    {NULL, 0, 0, 0, NULL},
};

static int box_init(PyObject *self, PyObject *args, PyObject *kwds)
{
    double value = 0.0;
    static char *kwlist[] = {"value", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|d", kwlist, &value)) {
        return -1;
    }
    ((Box *)self)->value = value;
    return 0;
}

static PyType_Slot box_slots[] = {
    {Py_tp_init, (void *)box_init},
    {Py_tp_members, box_members},
    {Py_tp_doc, (void *)"Box(value=0.0): a double, the state of the typed test methods."},
    {0, NULL},
};

static PyType_Spec box_spec = {
    "typed_methods.Box", sizeof(Box), 0, Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE, box_slots,
};

static PyMethodDef methods[] = {
    {"addresses", addresses, METH_NOARGS, "addresses() -> {signature: address}"},
    {"call_f64_c128", call_f64_c128, METH_VARARGS, "call_f64_c128(address, obj, z) -> float"},
    {"call_f64_c64", call_f64_c64, METH_VARARGS, "call_f64_c64(address, obj, z) -> float"},
    {NULL, NULL, 0, NULL},
};

static int exec_module(PyObject *m)
{
    PyObject *box = PyType_FromSpec(&box_spec);
    if (box == NULL) {
        return -1;
    }
    if (PyModule_AddObject(m, "Box", box) < 0) {
        Py_DECREF(box);
        return -1;
    }
    return 0;
}

static PyModuleDef_Slot slots[] = {
    {Py_mod_exec, (void *)exec_module},
#ifdef Py_MOD_GIL_NOT_USED /* (3.15 defines Py_mod_gil for a limited API < 3.13 too, not its values) */
    {Py_mod_gil, Py_MOD_GIL_NOT_USED},
#endif
    {0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "typed_methods", "C providers of typed methods for test_bind.py.", 0, methods, slots,
    NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit_typed_methods(void)
{
    return PyModuleDef_Init(&module_def);
}
