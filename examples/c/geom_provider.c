/*
 * geom_provider: a C extension that PROVIDES the typed methods of geom.h on
 * a type made with ExtType_FromSpec, and the Python methods of the same
 * names (what consumers call when the lookup misses).
 *
 *   >>> import extensibletype, geom_provider as p
 *   >>> c = p.Circle(2.0)
 *   >>> c.area(), c.scaled(3.0), c.describe()                     # Python methods
 *   >>> extensibletype.bind(c, "geom.Shape.v1:area#f64(O)")()      # the typed one
 *
 * Build: cc -shared -fPIC -O2 $(python3-config --includes) \
 *          -I$(python -m extensibletype include) geom_provider.c \
 *          -o geom_provider$(python3-config --extension-suffix)
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include "geom.h"

typedef struct {
    PyObject_HEAD
    double r; /* radius; immutable */
} CircleObject;

/* ---- The typed methods ------------------------------------------------ */

/* f64(O): plain C, no thread state needed, never raises. */
static double circle_area(PyObject *self)
{
    double r = ((CircleObject *)self)->r;
    return 3.141592653589793 * r * r;
}

/* f64(O,f64)!e: the area of the circle scaled by k; ValueError for k < 0. */
static int32_t circle_scaled(PyObject *self, double k, double *out)
{
    if (k < 0) {
        PyErr_SetString(PyExc_ValueError, "scaled: negative factor");
        return -1;
    }
    *out = circle_area(self) * k * k;
    return 0;
}

/* O+(O)!t: "Circle(r)", a new reference. */
static PyObject *circle_describe(PyObject *self)
{
    PyObject *r = PyFloat_FromDouble(((CircleObject *)self)->r), *s;
    if (r == NULL) {
        return NULL;
    }
    s = PyUnicode_FromFormat("Circle(%R)", r);
    Py_DECREF(r);
    return s;
}

/* The typed slots, by key (the runtime checks each key is canonical). */
static const ExtType_SlotDef circle_slots[] = {
    {GEOM_KEY_AREA, 0, (void *)circle_area},
    {GEOM_KEY_SCALED, 0, (void *)circle_scaled},
    {GEOM_KEY_DESCRIBE, 0, (void *)circle_describe},
};

/* ---- The Python methods of the same names ------------------------------ */

static PyObject *py_area(PyObject *self, PyObject *unused)
{
    (void)unused;
    return PyFloat_FromDouble(circle_area(self));
}

static PyObject *py_scaled(PyObject *self, PyObject *arg)
{
    double k = PyFloat_AsDouble(arg), out;
    if ((k == -1.0 && PyErr_Occurred()) || circle_scaled(self, k, &out) < 0) {
        return NULL;
    }
    return PyFloat_FromDouble(out);
}

static PyObject *py_describe(PyObject *self, PyObject *unused)
{
    (void)unused;
    return circle_describe(self);
}

static PyObject *circle_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"r", NULL};
    double r;
    CircleObject *self;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "d", kwlist, &r)) {
        return NULL;
    }
    self = (CircleObject *)type->tp_alloc(type, 0);
    if (self != NULL) {
        self->r = r;
    }
    return (PyObject *)self;
}

static PyObject *circle_get_r(PyObject *self, void *closure)
{
    (void)closure;
    return PyFloat_FromDouble(((CircleObject *)self)->r);
}

static PyMethodDef circle_methods[] = {
    {"area", py_area, METH_NOARGS, "area() -> float"},
    {"scaled", py_scaled, METH_O, "scaled(k) -> float: the area scaled by k (ValueError for k < 0)"},
    {"describe", py_describe, METH_NOARGS, "describe() -> str"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef circle_getset[] = {
    {"r", circle_get_r, NULL, "radius", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot circle_type_slots[] = {
    {Py_tp_new, (void *)circle_new},
    {Py_tp_methods, circle_methods},
    {Py_tp_getset, circle_getset},
    {Py_tp_doc, (void *)"Circle(r): provides geom.Shape.v1 (area, scaled, describe) as typed methods."},
    {0, NULL},
};

static PyType_Spec circle_spec = {
    "geom_provider.Circle", sizeof(CircleObject), 0, Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE, circle_type_slots,
};

static int provider_exec(PyObject *module)
{
    PyObject *type;
    int rc;
    if (ExtType_Import() < 0) {
        return -1;
    }
    type = ExtType_FromSpec(module, &circle_spec, NULL, circle_slots,
                            (Py_ssize_t)(sizeof(circle_slots) / sizeof(circle_slots[0])));
    if (type == NULL) {
        return -1;
    }
    rc = PyModule_AddObjectRef(module, "Circle", type);
    Py_DECREF(type);
    return rc;
}

static PyModuleDef_Slot provider_slots[] = {
    {Py_mod_exec, (void *)provider_exec},
#ifdef Py_MOD_MULTIPLE_INTERPRETERS_NOT_SUPPORTED
    /* The header caches the runtime's API in a process-wide static. */
    {Py_mod_multiple_interpreters, Py_MOD_MULTIPLE_INTERPRETERS_NOT_SUPPORTED},
#endif
#ifdef Py_MOD_GIL_NOT_USED /* (3.15 defines Py_mod_gil for a limited API < 3.13 too, not its values) */
    {Py_mod_gil, Py_MOD_GIL_NOT_USED},
#endif
    {0, NULL},
};

static PyModuleDef provider_module = {
    PyModuleDef_HEAD_INIT, "geom_provider", "A C provider of typed methods (extensibletype example).",
    0, NULL, provider_slots, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit_geom_provider(void)
{
    return PyModuleDef_Init(&provider_module);
}
