/*
 * shapes_provider: a C extension that PROVIDES the shapes interface
 * (shapes.h) on two types made with ExtType_FromSpec.
 *
 *   >>> import shapes_provider as p
 *   >>> c = p.Circle(2.0)      # type(p.Circle) is extensibletype.ExtensibleType
 *   >>> # any consumer (C, Cython, Rust, Python) now finds
 *   >>> # "extensibletype.example.v1:scale" and ":vtable" on c
 *
 * Build: cc -shared -fPIC -O2 $(python3-config --includes) \
 *          -I$(python -m extensibletype include) shapes_provider.c \
 *          -o shapes_provider$(python3-config --extension-suffix)
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include "shapes.h"

typedef struct {
    PyObject_HEAD
    double size; /* radius of a Circle, side of a Square; immutable */
} ShapeObject;

/* ---- The implementations. Plain C: callable without the GIL. ---------- */

static double shape_scale(PyObject *self, double x)
{
    return x * ((ShapeObject *)self)->size;
}

static double circle_area(PyObject *self)
{
    double r = ((ShapeObject *)self)->size;
    return 3.141592653589793 * r * r;
}

static double square_area(PyObject *self)
{
    double s = ((ShapeObject *)self)->size;
    return s * s;
}

static const shapes_vtable circle_vtable = {circle_area, "circle"};
static const shapes_vtable square_vtable = {square_area, "square"};

/* The slots each type exports. Keys are given as strings (so that the
   runtime can name them in get_slots()); ids could be given instead. */
static const ExtType_SlotDef circle_slots[] = {
    {SHAPES_KEY_SCALE, 0, (void *)shape_scale},
    {SHAPES_KEY_VTABLE, 0, (void *)&circle_vtable},
};
static const ExtType_SlotDef square_slots[] = {
    {SHAPES_KEY_SCALE, 0, (void *)shape_scale},
    {SHAPES_KEY_VTABLE, 0, (void *)&square_vtable},
};

/* ---- The Python side of the types ----------------------------------- */

static PyObject *shape_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"size", NULL};
    double size;
    ShapeObject *self;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "d", kwlist, &size)) {
        return NULL;
    }
    self = (ShapeObject *)type->tp_alloc(type, 0);
    if (self != NULL) {
        self->size = size;
    }
    return (PyObject *)self;
}

static PyObject *shape_get_size(PyObject *self, void *closure)
{
    (void)closure;
    return PyFloat_FromDouble(((ShapeObject *)self)->size);
}

static PyObject *shape_repr(PyObject *self)
{
    PyObject *size = PyFloat_FromDouble(((ShapeObject *)self)->size);
    PyObject *r;
    if (size == NULL) {
        return NULL;
    }
    r = PyUnicode_FromFormat("%s(%R)", Py_TYPE(self)->tp_name, size);
    Py_DECREF(size);
    return r;
}

static PyGetSetDef shape_getset[] = {
    {"size", shape_get_size, NULL, "radius (Circle) or side (Square)", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot shape_type_slots[] = {
    {Py_tp_new, (void *)shape_new},
    {Py_tp_getset, shape_getset},
    {Py_tp_repr, (void *)shape_repr},
    {Py_tp_doc, (void *)"A shape providing extensibletype.example.v1:{scale,vtable}."},
    {0, NULL},
};

static PyType_Spec circle_spec = {
    "shapes_provider.Circle", sizeof(ShapeObject), 0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE, shape_type_slots,
};
static PyType_Spec square_spec = {
    "shapes_provider.Square", sizeof(ShapeObject), 0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE, shape_type_slots,
};

/* addresses() -> dict: the registered pointers, for tests. */
static PyObject *addresses(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
    return Py_BuildValue("{s:N,s:N,s:N}",
                         "scale", PyLong_FromVoidPtr((void *)shape_scale),
                         "circle_vtable", PyLong_FromVoidPtr((void *)&circle_vtable),
                         "square_vtable", PyLong_FromVoidPtr((void *)&square_vtable));
}

static int add_type(PyObject *module, const char *name, PyType_Spec *spec,
                    const ExtType_SlotDef *defs, Py_ssize_t n)
{
    PyObject *type = ExtType_FromSpec(module, spec, NULL, defs, n); /* new ref */
    int rc;
    if (type == NULL) {
        return -1;
    }
    rc = PyModule_AddObjectRef(module, name, type);
    Py_DECREF(type);
    return rc;
}

static int provider_exec(PyObject *module)
{
    if (ExtType_Import() < 0) {
        return -1;
    }
    if (add_type(module, "Circle", &circle_spec, circle_slots, 2) < 0 ||
        add_type(module, "Square", &square_spec, square_slots, 2) < 0) {
        return -1;
    }
    return 0;
}

static PyMethodDef provider_methods[] = {
    {"addresses", addresses, METH_NOARGS, "The registered pointers, by name (for tests)."},
    {NULL, NULL, 0, NULL},
};

static PyModuleDef_Slot provider_slots[] = {
    {Py_mod_exec, (void *)provider_exec},
#ifdef Py_mod_multiple_interpreters
    /* The header caches the runtime's API in a process-wide static. */
    {Py_mod_multiple_interpreters, Py_MOD_MULTIPLE_INTERPRETERS_NOT_SUPPORTED},
#endif
#ifdef Py_mod_gil
    {Py_mod_gil, Py_MOD_GIL_NOT_USED},
#endif
    {0, NULL},
};

static PyModuleDef provider_module = {
    PyModuleDef_HEAD_INIT, "shapes_provider",
    "A C provider of the shapes interface (extensibletype example).",
    0, provider_methods, provider_slots, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit_shapes_provider(void)
{
    return PyModuleDef_Init(&provider_module);
}
