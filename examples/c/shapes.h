/*
 * The interface of the shapes example, shared by its providers and consumers
 * (C: shapes_provider.c / shapes_consumer.c; Cython: examples/cython).
 *
 * Two slots, named by key (ids in shapes_ids.h, generated from
 * shapes_keys.txt by `python -m extensibletype header`):
 *
 *   "extensibletype.example.v1:scale"  -> shapes_scale_fn
 *       double scale(PyObject *self, double x): x times the shape's size.
 *   "extensibletype.example.v1:vtable" -> const shapes_vtable *
 *       a static table of functions and data: {area, name}.
 *
 * Both are called with a strong reference to `self`; C providers' functions
 * touch no Python state and may run without the GIL. A Python (ctypes)
 * provider's functions take the GIL themselves.
 */
#ifndef SHAPES_H
#define SHAPES_H

#include <Python.h>
#include "extensibletype.h"
#include "shapes_ids.h"

#define SHAPES_KEY_SCALE EXTTYPE_KEY_EXTENSIBLETYPE_EXAMPLE_V1__SCALE
#define SHAPES_ID_SCALE EXTTYPE_ID_EXTENSIBLETYPE_EXAMPLE_V1__SCALE
#define SHAPES_KEY_VTABLE EXTTYPE_KEY_EXTENSIBLETYPE_EXAMPLE_V1__VTABLE
#define SHAPES_ID_VTABLE EXTTYPE_ID_EXTENSIBLETYPE_EXAMPLE_V1__VTABLE

typedef double (*shapes_scale_fn)(PyObject *self, double x);

typedef struct shapes_vtable {
    double (*area)(PyObject *self);
    const char *name;
} shapes_vtable;

#endif /* SHAPES_H */
