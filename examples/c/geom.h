/*
 * The typed-method example (docs/c-api.md, "Typed methods: the consumer pattern"): the interface
 * geom.Shape.v1, three methods whose C signatures are part of their keys.
 * Provider: geom_provider.c; consumers: geom_consumer.c (C), geom_cpp.cpp
 * (C++, with extensibletype.hpp).
 *
 *   key                                     C type of the slot
 *   "geom.Shape.v1:area#f64(O)"             double (*)(PyObject *self)
 *       no flag: may be called without the GIL (or any thread state); never raises
 *   "geom.Shape.v1:scaled#f64(O,f64)!e"     int32_t (*)(PyObject *self, double k, double *out)
 *       !e: called with the GIL; 0, or -1 with an exception set
 *   "geom.Shape.v1:describe#O+(O)!t"        PyObject *(*)(PyObject *self)
 *       !t: called with the GIL; returns a new reference
 *
 * Every typed method is also a Python method of the same name and meaning
 * (obj.area(), obj.scaled(k), obj.describe()): what a consumer calls when
 * the lookup misses (a type without the slot, or a Python subclass that
 * overrides the method: its override masks the slot).
 */
#ifndef GEOM_H
#define GEOM_H

#include <Python.h>
#include <stdint.h>
#include "extensibletype.h"

#define GEOM_KEY_AREA "geom.Shape.v1:area#f64(O)"
#define GEOM_KEY_SCALED "geom.Shape.v1:scaled#f64(O,f64)!e"
#define GEOM_KEY_DESCRIBE "geom.Shape.v1:describe#O+(O)!t"

typedef double (*geom_area_fn)(PyObject *self);
typedef int32_t (*geom_scaled_fn)(PyObject *self, double k, double *out);
typedef PyObject *(*geom_describe_fn)(PyObject *self);

#endif /* GEOM_H */
