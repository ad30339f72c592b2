// geom_cpp: the typed-method consumer of geom_consumer.c in C++17, with
// extensibletype.hpp: ids computed at compile time from the C++ function
// types (the signature can never disagree with the type called), lookups with
// find_method, the Python method on a miss.
//
//   area(obj) -> float, scaled(obj, k) -> float, describe(obj) -> object,
//   total_area(objs: tuple) -> float (typed calls without the GIL),
//   ids() -> {key: id}  (the compile-time ids, for tests)
//
// Build: c++ -std=c++17 -shared -fPIC -O2 $(python3-config --includes)
//          -I$(python -m extensibletype include) geom_cpp.cpp
//          -o geom_cpp$(python3-config --extension-suffix)
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <vector>

#include "extensibletype.hpp"
#include "geom.h"  // the C interface: keys and C function types

namespace et = extensibletype;

namespace {

// The logical signatures; the flag says how each is called (and, for
// may_raise, the C type: std::int32_t(PyObject *, double, double *out)).
using AreaSig = double(PyObject *);
using ScaledSig = double(PyObject *, double);
using DescribeSig = PyObject *(PyObject *);

constexpr et::typed_method<AreaSig> area_m{"geom.Shape.v1:area"};
constexpr et::typed_method<ScaledSig, et::may_raise> scaled_m{"geom.Shape.v1:scaled"};
constexpr et::typed_method<DescribeSig, et::needs_thread> describe_m{"geom.Shape.v1:describe"};

// The keys of geom.h, spelled by the types above.
static_assert(area_m.id == et::prehash("geom.Shape.v1:area#f64(O)"));
static_assert(scaled_m.id == et::prehash("geom.Shape.v1:scaled#f64(O,f64)!e"));
static_assert(describe_m.id == et::prehash("geom.Shape.v1:describe#O+(O)!t"));
static_assert(et::method_id<AreaSig>("geom.Shape.v1:area") == area_m.id);
static_assert(area_m.id == et::prehash(GEOM_KEY_AREA) && scaled_m.id == et::prehash(GEOM_KEY_SCALED) &&
              describe_m.id == et::prehash(GEOM_KEY_DESCRIBE));
// ... and find_method returns the C header's function types.
static_assert(std::is_same_v<decltype(area_m)::function_type *, geom_area_fn>);
static_assert(std::is_same_v<decltype(scaled_m)::function_type *, geom_scaled_fn>);
static_assert(std::is_same_v<decltype(describe_m)::function_type *, geom_describe_fn>);

// The area through the typed method, else obj.area(); -1 with an exception
// set on failure (ok = false).
double area_of(PyObject *obj, bool &ok)
{
    ok = true;
    if (auto *f = et::find_method<AreaSig>(obj, area_m.id)) {
        return f(obj);
    }
    PyObject *r = PyObject_CallMethod(obj, "area", nullptr);
    if (!r) {
        ok = false;
        return -1.0;
    }
    double a = PyFloat_AsDouble(r);
    Py_DECREF(r);
    ok = !(a == -1.0 && PyErr_Occurred());
    return a;
}

PyObject *area(PyObject *, PyObject *obj)
{
    bool ok;
    double a = area_of(obj, ok);
    return ok ? PyFloat_FromDouble(a) : nullptr;
}

PyObject *scaled(PyObject *, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "scaled(obj, k)");
        return nullptr;
    }
    auto *f = scaled_m.find(args[0]);  // std::int32_t (*)(PyObject *, double, double *)
    if (!f) {
        return PyObject_CallMethod(args[0], "scaled", "O", args[1]);
    }
    double k = PyFloat_AsDouble(args[1]);
    if (k == -1.0 && PyErr_Occurred()) {
        return nullptr;
    }
    double out;
    if (f(args[0], k, &out) < 0) {  // may_raise: the exception is set
        return nullptr;
    }
    return PyFloat_FromDouble(out);
}

PyObject *describe(PyObject *, PyObject *obj)
{
    if (auto *f = describe_m.find(obj)) {
        return f(obj);  // needs_thread: we hold the GIL; a new reference
    }
    return PyObject_CallMethod(obj, "describe", nullptr);
}

PyObject *total_area(PyObject *, PyObject *objs)
{
    if (!PyTuple_Check(objs)) {
        PyErr_SetString(PyExc_TypeError, "total_area(objs: tuple)");
        return nullptr;
    }
    // PyTuple_GetItem (not the macro): the example builds with the limited API too.
    std::vector<PyObject *> items(static_cast<size_t>(PyTuple_Size(objs)));
    for (size_t i = 0; i < items.size(); i++) {
        items[i] = PyTuple_GetItem(objs, static_cast<Py_ssize_t>(i));
    }
    std::vector<PyObject *> missed;
    missed.reserve(items.size());  // no allocation (nor exception) without the GIL
    double total = 0;
    Py_BEGIN_ALLOW_THREADS
    for (PyObject *obj : items) {
        if (auto *f = area_m.find(obj)) {
            total += f(obj);  // no flag: fine without the GIL
        } else {
            missed.push_back(obj);
        }
    }
    Py_END_ALLOW_THREADS
    for (PyObject *obj : missed) {
        bool ok;
        double a = area_of(obj, ok);
        if (!ok) {
            return nullptr;
        }
        total += a;
    }
    return PyFloat_FromDouble(total);
}

PyObject *ids(PyObject *, PyObject *)
{
    return Py_BuildValue("{s:K,s:K,s:K}", "geom.Shape.v1:area#f64(O)", static_cast<unsigned long long>(area_m.id),
                         "geom.Shape.v1:scaled#f64(O,f64)!e", static_cast<unsigned long long>(scaled_m.id),
                         "geom.Shape.v1:describe#O+(O)!t", static_cast<unsigned long long>(describe_m.id));
}

PyMethodDef methods[] = {
    {"area", area, METH_O, "area(obj) -> float"},
    {"scaled", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)(void)>(scaled)), METH_FASTCALL,
     "scaled(obj, k) -> float"},
    {"describe", describe, METH_O, "describe(obj) -> object"},
    {"total_area", total_area, METH_O, "total_area(objs: tuple) -> float"},
    {"ids", ids, METH_NOARGS, "ids() -> {key: id}: the compile-time ids"},
    {nullptr, nullptr, 0, nullptr},
};

int exec_module(PyObject *)
{
    return ExtType_Import();
}

PyModuleDef_Slot slots[] = {
    {Py_mod_exec, reinterpret_cast<void *>(exec_module)},
#ifdef Py_MOD_MULTIPLE_INTERPRETERS_NOT_SUPPORTED
    {Py_mod_multiple_interpreters, Py_MOD_MULTIPLE_INTERPRETERS_NOT_SUPPORTED},
#endif
#ifdef Py_MOD_GIL_NOT_USED /* (3.15 defines Py_mod_gil for a limited API < 3.13 too, not its values) */
    {Py_mod_gil, Py_MOD_GIL_NOT_USED},
#endif
    {0, nullptr},
};

PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "geom_cpp", "A C++ consumer of typed methods (extensibletype example).",
    0, methods, slots, nullptr, nullptr, nullptr,
};

}  // namespace

PyMODINIT_FUNC PyInit_geom_cpp(void)
{
    return PyModuleDef_Init(&module_def);
}
