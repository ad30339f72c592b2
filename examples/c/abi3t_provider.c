/*
 * abi3t_provider: the shapes interface (shapes.h) PROVIDED by an extension
 * built once for abi3t (PEP 803: CPython 3.15+, regular and free-threaded
 * builds alike). `PyObject` is opaque there: no PyObject_HEAD, no
 * PyModuleDef, no tp_* fields. Two ways to make an extensible type:
 *
 *   Circle: ExtType_FromSpec(module, &spec, ...) — a PyType_Spec whose
 *           basicsize is negative (PEP 697: "this many bytes of my own,
 *           after whatever the base needs"), slots given to the runtime.
 *   Square: PyType_FromSlots() with Py_tp_metaclass = ExtType_Metaclass()
 *           (PEP 820), then ExtType_SetSlots().
 *
 * The module is exported with PyModExport_<name> and a PySlot array.
 * Instance data is reached with PyObject_GetTypeData() (PEP 697); the slot
 * functions, which may run without the GIL, use an offset measured once at
 * module exec instead (it is the same for every instance of the class and
 * of its subclasses).
 *
 * Also compiles as C++17 (PySlot_PTR* initialisers: no designators).
 *
 * Build (CPython 3.15):
 *   cc -shared -fPIC -O2 -DPy_TARGET_ABI3T=0x030f0000 $(python3.15-config --includes) \
 *      -I$(python -m extensibletype include) -Iexamples/c abi3t_provider.c \
 *      -o abi3t_provider.abi3t.so
 */
#ifndef Py_TARGET_ABI3T
#  define Py_TARGET_ABI3T 0x030f0000
#endif
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include "shapes.h"

#ifndef ABI3T_PROVIDER_NAME /* the C++ build of the tests sets another name */
#  define ABI3T_PROVIDER_NAME abi3t_provider
#endif
/* PySlot_END is `{0}`, which g++ -Wextra flags (missing-field-initializers). */
#define ABI3T_SLOT_END {0, 0, {0}, {NULL}}
#define ABI3T__STR2(x) #x
#define ABI3T__STR(x) ABI3T__STR2(x)
#define ABI3T__CAT2(a, b) a##b
#define ABI3T__CAT(a, b) ABI3T__CAT2(a, b)

typedef struct {
    double size; /* radius of a Circle, side of a Square; immutable */
} ShapeData;

/* Byte offset of ShapeData from the start of a Circle / Square instance
   (measured in provider_exec, before any slot can be found). */
static Py_ssize_t circle_data_offset = -1;
static Py_ssize_t square_data_offset = -1;

static double data_size(PyObject *self, Py_ssize_t offset)
{
    return ((const ShapeData *)(const void *)((const char *)self + offset))->size;
}

/* ---- The implementations: plain C, callable without the GIL. ---------- */

static double circle_scale(PyObject *self, double x) { return x * data_size(self, circle_data_offset); }
static double square_scale(PyObject *self, double x) { return x * data_size(self, square_data_offset); }

static double circle_area(PyObject *self)
{
    double r = data_size(self, circle_data_offset);
    return 3.141592653589793 * r * r;
}

static double square_area(PyObject *self)
{
    double s = data_size(self, square_data_offset);
    return s * s;
}

static const shapes_vtable circle_vtable = {circle_area, "circle"};
static const shapes_vtable square_vtable = {square_area, "square"};

static const ExtType_SlotDef circle_slots[] = {
    {SHAPES_KEY_SCALE, 0, (void *)circle_scale},
    {SHAPES_KEY_VTABLE, 0, (void *)&circle_vtable},
};
static const ExtType_SlotDef square_slots[] = {
    {SHAPES_KEY_SCALE, 0, (void *)square_scale},
    {SHAPES_KEY_VTABLE, 0, (void *)&square_vtable},
};

/* ---- The Python side ----------------------------------------------- */

/* The two types (strong references, also held by the module). */
static PyObject *circle_type = NULL;
static PyObject *square_type = NULL;

/* tp_new of both: parse `size`, allocate, store it in the defining class's
   data (`defining` is Circle or Square; `type` may be a subclass). */
static PyObject *shape_new(PyTypeObject *type, PyObject *args, PyObject *kwds, PyObject *defining)
{
    double size;
    PyObject *self;
    ShapeData *data;
    if (kwds != NULL && PyDict_Size(kwds) != 0) {
        PyErr_SetString(PyExc_TypeError, "shapes take no keyword arguments");
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "d", &size)) {
        return NULL;
    }
    self = ((allocfunc)PyType_GetSlot(type, Py_tp_alloc))(type, 0);
    if (self == NULL) {
        return NULL;
    }
    data = (ShapeData *)PyObject_GetTypeData(self, (PyTypeObject *)defining);
    if (data == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    data->size = size;
    return self;
}

static PyObject *circle_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    return shape_new(type, args, kwds, circle_type);
}

static PyObject *square_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    return shape_new(type, args, kwds, square_type);
}

static PyObject *circle_get_size(PyObject *self, void *closure)
{
    (void)closure;
    return PyFloat_FromDouble(data_size(self, circle_data_offset));
}

static PyObject *square_get_size(PyObject *self, void *closure)
{
    (void)closure;
    return PyFloat_FromDouble(data_size(self, square_data_offset));
}

static PyObject *shape_repr(PyObject *self, Py_ssize_t offset)
{
    PyObject *size = PyFloat_FromDouble(data_size(self, offset));
    PyObject *r;
    if (size == NULL) {
        return NULL;
    }
    r = PyUnicode_FromFormat("%T(%R)", self, size); /* %T: type(self)'s full name */
    Py_DECREF(size);
    return r;
}

static PyObject *circle_repr(PyObject *self) { return shape_repr(self, circle_data_offset); }
static PyObject *square_repr(PyObject *self) { return shape_repr(self, square_data_offset); }

static PyGetSetDef circle_getset[] = {
    {"size", circle_get_size, NULL, "radius", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};
static PyGetSetDef square_getset[] = {
    {"size", square_get_size, NULL, "side", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

/* Circle: a PyType_Spec for ExtType_FromSpec. Negative basicsize (PEP 697):
   sizeof(ShapeData) bytes of our own after the base's layout, which abi3t
   code cannot know. */
static PyType_Slot circle_type_slots[] = {
    {Py_tp_new, (void *)circle_new},
    {Py_tp_getset, circle_getset},
    {Py_tp_repr, (void *)circle_repr},
    {Py_tp_doc, (void *)"A circle providing extensibletype.example.v1:{scale,vtable} (ExtType_FromSpec)."},
    {0, NULL},
};
static PyType_Spec circle_spec = {
    ABI3T__STR(ABI3T_PROVIDER_NAME) ".Circle", -(int)sizeof(ShapeData), 0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE, circle_type_slots,
};

/* Square: PEP 820 slots for PyType_FromSlots, the metaclass among them.
   PySlot_PTR (flag PySlot_INTPTR: every value passed as a pointer) works
   in C and in C++ (no designated initialisers). The metaclass and module
   are only known at run time: filled in by make_square(). */
static PySlot square_type_slots[] = {
    PySlot_PTR_STATIC(Py_tp_name, ABI3T__STR(ABI3T_PROVIDER_NAME) ".Square"),
    PySlot_PTR(Py_tp_extra_basicsize, sizeof(ShapeData)),
    PySlot_PTR(Py_tp_flags, Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE),
    PySlot_PTR(Py_tp_new, square_new),
    PySlot_PTR_STATIC(Py_tp_getset, square_getset),
    PySlot_PTR(Py_tp_repr, square_repr),
    PySlot_PTR_STATIC(Py_tp_doc, "A square providing extensibletype.example.v1:{scale,vtable} (PyType_FromSlots)."),
    PySlot_PTR(Py_tp_metaclass, NULL), /* index 7: set below */
    PySlot_PTR(Py_tp_module, NULL),    /* index 8: set below */
    ABI3T_SLOT_END,
};

static PyObject *make_square(PyObject *module)
{
    PyObject *type;
    square_type_slots[7].sl_ptr = (void *)ExtType_Metaclass();
    square_type_slots[8].sl_ptr = (void *)module;
    type = PyType_FromSlots(square_type_slots); /* new reference */
    if (type == NULL) {
        return NULL;
    }
    if (ExtType_SetSlots(type, square_slots, 2) < 0) {
        Py_DECREF(type);
        return NULL;
    }
    return type;
}

/* Where `cls`'s data starts in its instances: create one and ask
   PyObject_GetTypeData (the offset is the same for every instance of cls
   and of its subclasses). */
static Py_ssize_t measure_data_offset(PyObject *cls)
{
    PyObject *obj = PyObject_CallFunction(cls, "d", 1.0);
    void *data;
    Py_ssize_t off;
    if (obj == NULL) {
        return -1;
    }
    data = PyObject_GetTypeData(obj, (PyTypeObject *)cls);
    off = data == NULL ? -1 : (Py_ssize_t)((char *)data - (char *)obj);
    Py_DECREF(obj);
    return off;
}

/* addresses() -> dict: the registered pointers, for tests. */
static PyObject *addresses(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
    return Py_BuildValue("{s:N,s:N,s:N,s:N}",
                         "circle_scale", PyLong_FromVoidPtr((void *)circle_scale),
                         "square_scale", PyLong_FromVoidPtr((void *)square_scale),
                         "circle_vtable", PyLong_FromVoidPtr((void *)&circle_vtable),
                         "square_vtable", PyLong_FromVoidPtr((void *)&square_vtable));
}

static int provider_exec(PyObject *module)
{
    if (ExtType_Import() < 0) {
        return -1;
    }
    if (circle_type == NULL) { /* once per process (see Py_mod_multiple_interpreters) */
        PyObject *circle = ExtType_FromSpec(module, &circle_spec, NULL, circle_slots, 2);
        PyObject *square;
        if (circle == NULL) {
            return -1;
        }
        square = make_square(module);
        if (square == NULL) {
            Py_DECREF(circle);
            return -1;
        }
        circle_type = circle;
        square_type = square;
        circle_data_offset = measure_data_offset(circle);
        square_data_offset = measure_data_offset(square);
        if (circle_data_offset < 0 || square_data_offset < 0) {
            return -1;
        }
    }
    if (PyModule_AddObjectRef(module, "Circle", circle_type) < 0 ||
        PyModule_AddObjectRef(module, "Square", square_type) < 0) {
        return -1;
    }
    return 0;
}

static PyMethodDef provider_methods[] = {
    {"addresses", addresses, METH_NOARGS, "The registered pointers, by name (for tests)."},
    {NULL, NULL, 0, NULL},
};

PyABIInfo_VAR(provider_abi_info);

static PySlot provider_module_slots[] = {
    PySlot_PTR_STATIC(Py_mod_name, ABI3T__STR(ABI3T_PROVIDER_NAME)),
    PySlot_PTR_STATIC(Py_mod_doc, "A C provider of the shapes interface, built for abi3t (extensibletype example)."),
    PySlot_PTR_STATIC(Py_mod_methods, provider_methods),
    PySlot_PTR(Py_mod_exec, provider_exec),
    PySlot_PTR(Py_mod_abi, &provider_abi_info),
    /* The header caches the runtime's API in a process-wide static. */
    PySlot_PTR(Py_mod_multiple_interpreters, Py_MOD_MULTIPLE_INTERPRETERS_NOT_SUPPORTED),
    PySlot_PTR(Py_mod_gil, Py_MOD_GIL_NOT_USED),
    ABI3T_SLOT_END,
};

PyMODEXPORT_FUNC ABI3T__CAT(PyModExport_, ABI3T_PROVIDER_NAME)(void)
{
    return provider_module_slots;
}
