/* scale_consumer: a C extension that depends on extensibletype (the build
 * recipes of docs/c-api.md, "Building a dependent"). scale(obj, x) calls the
 * typed method demo.Units.v1:scale#f64(O,f64) of any object, else its
 * Python method `scale`. The id is fixed at compile time: scale_ids.h is
 * generated from keys.txt by the build. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include "extensibletype.h"
#include "scale_ids.h"

typedef double (*scale_fn)(PyObject *self, double x);

static PyObject *scale(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    double x;
    scale_fn f;
    (void)module;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "scale(obj, x) takes 2 arguments");
        return NULL;
    }
    x = PyFloat_AsDouble(args[1]);
    if (x == -1.0 && PyErr_Occurred()) {
        return NULL;
    }
    f = (scale_fn)ExtType_Find(args[0], EXTTYPE_ID_DEMO_UNITS_V1__SCALE__F64__O_F64);
    if (f == NULL) {
        return PyObject_CallMethod(args[0], "scale", "d", x);
    }
    return PyFloat_FromDouble(f(args[0], x));
}

static int scale_exec(PyObject *module)
{
    (void)module;
    return ExtType_Import();
}

static PyMethodDef functions[] = {
    {"scale", (PyCFunction)(void (*)(void))scale, METH_FASTCALL, "scale(obj, x)"},
    {NULL, NULL, 0, NULL},
};
static PyModuleDef_Slot slots[] = {
    {Py_mod_exec, (void *)scale_exec},
#ifdef Py_MOD_GIL_NOT_USED
    {Py_mod_gil, Py_MOD_GIL_NOT_USED},
#endif
    {0, NULL},
};
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "scale_consumer", NULL, 0, functions, slots, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit_scale_consumer(void) { return PyModuleDef_Init(&module); }
