// shapes_cpp: the shapes consumer in C++17 (same interface as
// shapes_consumer.c): a typed wrapper over ExtType_Find and a GIL-free loop.
//
//   scale(obj, x) -> float, area(obj) -> float, vtable_name(obj) -> str,
//   total_area(objs: tuple) -> float   (lookups and calls without the GIL;
//                                       C providers only)
//
// Build: c++ -std=c++17 -shared -fPIC -O2 $(python3-config --includes)
//          -I$(python -m extensibletype include) shapes_cpp.cpp
//          -o shapes_cpp$(python3-config --extension-suffix)
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <vector>

#include "shapes.h"

namespace {

// The slot `id` of type(obj) as a `T` (a function or data pointer), or nullptr.
template <typename T>
T find(PyObject *obj, uint64_t id) noexcept
{
    return reinterpret_cast<T>(ExtType_Find(obj, id));
}

PyObject *missing(PyObject *obj, const char *key)
{
    PyErr_Format(PyExc_TypeError, "'%.200s' object does not implement %s", Py_TYPE(obj)->tp_name, key);
    return nullptr;
}

PyObject *scale(PyObject *, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "scale(obj, x)");
        return nullptr;
    }
    double x = PyFloat_AsDouble(args[1]);
    if (x == -1.0 && PyErr_Occurred()) {
        return nullptr;
    }
    auto f = find<shapes_scale_fn>(args[0], SHAPES_ID_SCALE);
    if (!f) {
        return missing(args[0], SHAPES_KEY_SCALE);
    }
    return PyFloat_FromDouble(f(args[0], x));
}

const shapes_vtable *vtable_of(PyObject *obj)
{
    auto vt = find<const shapes_vtable *>(obj, SHAPES_ID_VTABLE);
    if (!vt) {
        missing(obj, SHAPES_KEY_VTABLE);
    }
    return vt;
}

PyObject *area(PyObject *, PyObject *obj)
{
    const shapes_vtable *vt = vtable_of(obj);
    return vt ? PyFloat_FromDouble(vt->area(obj)) : nullptr;
}

PyObject *vtable_name(PyObject *, PyObject *obj)
{
    const shapes_vtable *vt = vtable_of(obj);
    return vt ? PyUnicode_FromString(vt->name) : nullptr;
}

// Sum of vtable->area over a tuple of shapes, looked up and called without
// the GIL (the tuple holds the references).
PyObject *total_area(PyObject *, PyObject *objs)
{
    if (!PyTuple_Check(objs)) {
        PyErr_SetString(PyExc_TypeError, "total_area(objs: tuple)");
        return nullptr;
    }
    std::vector<PyObject *> items(static_cast<size_t>(PyTuple_GET_SIZE(objs)));
    for (size_t i = 0; i < items.size(); i++) {
        items[i] = PyTuple_GET_ITEM(objs, static_cast<Py_ssize_t>(i));
    }
    double total = 0;
    PyObject *bad = nullptr;
    Py_BEGIN_ALLOW_THREADS
    for (PyObject *obj : items) {
        auto vt = find<const shapes_vtable *>(obj, SHAPES_ID_VTABLE);
        if (!vt) {
            bad = obj;
            break;
        }
        total += vt->area(obj);
    }
    Py_END_ALLOW_THREADS
    if (bad) {
        return missing(bad, SHAPES_KEY_VTABLE);
    }
    return PyFloat_FromDouble(total);
}

PyMethodDef methods[] = {
    {"scale", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)(void)>(scale)), METH_FASTCALL,
     "scale(obj, x) -> float"},
    {"area", area, METH_O, "area(obj) -> float"},
    {"vtable_name", vtable_name, METH_O, "vtable_name(obj) -> str"},
    {"total_area", total_area, METH_O, "total_area(objs: tuple) -> float, without the GIL"},
    {nullptr, nullptr, 0, nullptr},
};

int exec_module(PyObject *)
{
    return ExtType_Import();
}

PyModuleDef_Slot slots[] = {
    {Py_mod_exec, reinterpret_cast<void *>(exec_module)},
#ifdef Py_mod_multiple_interpreters
    {Py_mod_multiple_interpreters, Py_MOD_MULTIPLE_INTERPRETERS_NOT_SUPPORTED},
#endif
#ifdef Py_mod_gil
    {Py_mod_gil, Py_MOD_GIL_NOT_USED},
#endif
    {0, nullptr},
};

PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "shapes_cpp", "A C++ consumer of the shapes interface.",
    0, methods, slots, nullptr, nullptr, nullptr,
};

}  // namespace

PyMODINIT_FUNC PyInit_shapes_cpp(void)
{
    return PyModuleDef_Init(&module_def);
}
