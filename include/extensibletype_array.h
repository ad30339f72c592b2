/*
 * extensibletype_array.h — the duck-typed array interface "array.v1".
 *
 * Any type can export a strided n-d view of its memory to C, C++, Cython or
 * Rust code by registering two slots in its extensibletype table:
 *
 *   "extensibletype.array.v1:acquire"  -> ExtType_ArrayAcquireFn
 *   "extensibletype.array.v1:release"  -> ExtType_ArrayReleaseFn
 *
 * A consumer finds them on any object's type with ExtType_Find() (a few loads,
 * no attribute lookup), so one C function works on every provider:
 * extensibletype.arrays.Array, numpy.ndarray (adapter registered by
 * `import extensibletype.arrays`), bytearray / bytes / memoryview /
 * array.array (buffer-protocol adapter), or your own type.
 *
 *   #include "extensibletype_array.h"   // includes extensibletype.h
 *
 *   ExtType_ArrayView v;
 *   ExtType_ArrayReleaseFn release;
 *   if (ExtType_ArrayGetView(obj, 0, &v, &release) < 0) return NULL;
 *   ... use v.data, v.shape, v.strides, v.dtype (GIL may be released) ...
 *   release(obj, &v);
 *
 * Contract (version 1)
 * --------------------
 * int  acquire(PyObject *obj, int request, ExtType_ArrayView *view);
 * void release(PyObject *obj, ExtType_ArrayView *view);
 *
 * - Both are called with an attached thread state (the GIL on regular
 *   builds) and with a strong reference to `obj` that the consumer keeps
 *   until release() has returned. Neither is called with an exception set.
 * - Before acquire() the consumer sets view->size = sizeof(ExtType_ArrayView)
 *   (EXTTYPE_ARRAY_VIEW_INIT does it); the provider writes no byte past
 *   view->size and fails (ValueError) when size is smaller than the struct it
 *   fills. On success it sets view->version to EXTTYPE_ARRAY_VERSION (the
 *   layout it filled) and returns 0. Providers must not read `scratch`
 *   before writing it: consumers need not initialise it (ExtType_ArrayGetView
 *   zeroes the fields before it, not the 128 bytes of scratch).
 * - On failure acquire() returns -1 with an exception set and nothing to
 *   release. Exceptions: BufferError when the request flags cannot be met
 *   (EXTTYPE_ARRAY_REQ_WRITABLE on read-only memory, a contiguity the memory
 *   does not have: providers never copy) or when the object cannot export
 *   now; TypeError when the element type has no DLPack equivalent (object,
 *   string, structured dtypes); ValueError when view->size is too small.
 * - Every successful acquire() is matched by exactly one release() on the
 *   same object with the same view struct, found on the same type (look up
 *   both slots before acquiring: ExtType_ArrayGetView does). release() cannot
 *   fail; it may be called while an exception is set (error paths) and
 *   neither raises nor clears one.
 * - Between acquire() and release(): `data` (and every element reachable
 *   through shape/strides), `shape` and `strides` stay valid and unchanged,
 *   and may be used WITHOUT the GIL, from any thread. The provider must
 *   refuse (BufferError) any operation that would move, resize or free the
 *   memory while a view is exported, as bytearray does for buffers.
 *   Element VALUES are not frozen: other code may write them concurrently
 *   (as with the buffer protocol); synchronising writers is the program's
 *   business.
 * - shape/strides may point into the view struct itself (view->scratch):
 *   do not copy or move the struct between acquire and release.
 * - A view with EXTTYPE_ARRAY_READONLY must not be written through.
 *   EXTTYPE_ARRAY_REQ_WRITABLE asks for a writable view (else BufferError).
 * - Flags describe the memory exactly: C_CONTIGUOUS iff, for every axis k
 *   with shape[k] > 1, strides[k] == itemsize * prod(shape[k+1:]) (so an
 *   array with a zero extent, a 0-d array and size-1 axes with any stride
 *   are contiguous, as in NumPy); F_CONTIGUOUS likewise with prod(shape[:k]).
 *   ALIGNED iff data and every stride of an axis with shape > 1 are
 *   multiples of the element's alignment (min(itemsize, 8); for complex
 *   types half the itemsize). BYTESWAPPED: elements are stored in the
 *   non-native byte order.
 * - Strides are in BYTES and may be negative or zero; `data` already has
 *   any offset applied (it is the address of element [0, ..., 0]).
 *   ndim == 0 is a scalar (one element at data; shape/strides may be NULL).
 * - dtype is DLPack's DLDataType {code, bits, lanes}; device is DLPack's
 *   DLDevice {device_type, device_id}: {EXTTYPE_DL_CPU, 0} for host memory.
 *   Consumers must check both before touching data.
 *
 * Layout (64-bit platforms; docs/spec.md section 12; checked by the compiler
 * in tests/abi/abi_layout.c and by const asserts in
 * crates/extensibletype-array-abi/src/lib.rs):
 *
 *   offset  0  uint32_t size            in: sizeof(ExtType_ArrayView)
 *   offset  4  uint32_t version         out: EXTTYPE_ARRAY_VERSION
 *   offset  8  void *data
 *   offset 16  int64_t *shape           ndim extents
 *   offset 24  int64_t *strides         ndim byte strides
 *   offset 32  int32_t ndim
 *   offset 36  uint32_t flags           EXTTYPE_ARRAY_READONLY ...
 *   offset 40  ExtType_DLDataType dtype {uint8 code, uint8 bits, uint16 lanes}
 *   offset 44  uint32_t reserved        0
 *   offset 48  ExtType_DLDevice device  {int32 device_type, int32 device_id}
 *   offset 56  PyObject *owner          provider's
 *   offset 64  void *internal[2]        provider's
 *   offset 80  int64_t scratch[16]      provider's (e.g. shape/strides storage)
 *   size 208
 */
#ifndef EXTENSIBLETYPE_ARRAY_H
#define EXTENSIBLETYPE_ARRAY_H

#include "extensibletype.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Version of the view layout filled by providers of the v1 keys. */
#define EXTTYPE_ARRAY_VERSION 1

/* Keys and their ids (first 8 bytes of md5(key), little-endian). */
#define EXTTYPE_ARRAY_KEY_ACQUIRE "extensibletype.array.v1:acquire"
#define EXTTYPE_ARRAY_KEY_RELEASE "extensibletype.array.v1:release"
#define EXTTYPE_ARRAY_ID_ACQUIRE UINT64_C(0x90fba73fde02ade2)
#define EXTTYPE_ARRAY_ID_RELEASE UINT64_C(0xb474eca712320062)

/* DLPack DLDataTypeCode values (dlpack.h). */
#define EXTTYPE_DL_INT 0
#define EXTTYPE_DL_UINT 1
#define EXTTYPE_DL_FLOAT 2
#define EXTTYPE_DL_OPAQUE_HANDLE 3
#define EXTTYPE_DL_BFLOAT 4
#define EXTTYPE_DL_COMPLEX 5
#define EXTTYPE_DL_BOOL 6
/* DLPack DLDeviceType for host memory. */
#define EXTTYPE_DL_CPU 1

/* View flags (set by the provider). */
#define EXTTYPE_ARRAY_READONLY 0x1u
#define EXTTYPE_ARRAY_C_CONTIGUOUS 0x2u
#define EXTTYPE_ARRAY_F_CONTIGUOUS 0x4u
#define EXTTYPE_ARRAY_ALIGNED 0x8u
#define EXTTYPE_ARRAY_BYTESWAPPED 0x10u

/* Request flags (passed by the consumer to acquire). */
#define EXTTYPE_ARRAY_REQ_WRITABLE 0x1
#define EXTTYPE_ARRAY_REQ_C_CONTIGUOUS 0x2
#define EXTTYPE_ARRAY_REQ_ANY_CONTIGUOUS 0x4 /* C or Fortran order */

/* Number of int64_t in view->scratch. */
#define EXTTYPE_ARRAY_SCRATCH 16

/* DLPack's DLDataType: code (EXTTYPE_DL_*), bits per lane, lanes (1). */
typedef struct ExtType_DLDataType {
    uint8_t code;
    uint8_t bits;
    uint16_t lanes;
} ExtType_DLDataType;

/* DLPack's DLDevice. */
typedef struct ExtType_DLDevice {
    int32_t device_type;
    int32_t device_id;
} ExtType_DLDevice;

/* A view of an array (Rust: extensibletype::arrays::abi::ArrayView). */
typedef struct ExtType_ArrayView {
    uint32_t size;            /* in: sizeof(ExtType_ArrayView) */
    uint32_t version;         /* out: EXTTYPE_ARRAY_VERSION */
    void *data;               /* element [0, ..., 0] */
    int64_t *shape;           /* ndim extents (owned by the provider) */
    int64_t *strides;         /* ndim strides in bytes (owned by the provider) */
    int32_t ndim;
    uint32_t flags;           /* EXTTYPE_ARRAY_READONLY | ... */
    ExtType_DLDataType dtype;
    uint32_t reserved;        /* 0 */
    ExtType_DLDevice device;
    PyObject *owner;          /* provider's bookkeeping (e.g. a reference it holds) */
    void *internal[2];        /* provider's bookkeeping */
    int64_t scratch[EXTTYPE_ARRAY_SCRATCH]; /* provider's (shape/strides storage) */
} ExtType_ArrayView;

/* Initialiser: ExtType_ArrayView v = EXTTYPE_ARRAY_VIEW_INIT; */
#define EXTTYPE_ARRAY_VIEW_INIT {(uint32_t)sizeof(ExtType_ArrayView), 0, NULL, NULL, NULL, 0, 0, {0, 0, 0}, 0, {0, 0}, NULL, {NULL, NULL}, {0}}

typedef int (*ExtType_ArrayAcquireFn)(PyObject *obj, int request, ExtType_ArrayView *view);
typedef void (*ExtType_ArrayReleaseFn)(PyObject *obj, ExtType_ArrayView *view);

/* Bytes per element: bits * lanes rounded up to whole bytes. */
static inline int64_t ExtType_ArrayItemsize(const ExtType_ArrayView *view)
{
    return ((int64_t)view->dtype.bits * (int64_t)view->dtype.lanes + 7) / 8;
}

/* Number of elements (1 for ndim == 0). */
static inline int64_t ExtType_ArraySize(const ExtType_ArrayView *view)
{
    int64_t n = 1;
    int32_t k;
    for (k = 0; k < view->ndim; k++) {
        n *= view->shape[k];
    }
    return n;
}

/* Is the dtype {code, bits, 1 lane}? */
static inline int ExtType_ArrayDTypeIs(const ExtType_ArrayView *view, uint8_t code, uint8_t bits)
{
    return view->dtype.code == code && view->dtype.bits == bits && view->dtype.lanes == 1;
}

/* For providers: compute the C_CONTIGUOUS / F_CONTIGUOUS bits of
   view->flags from shape, strides and dtype (other bits are kept). */
static inline void ExtType_ArraySetContiguity(ExtType_ArrayView *view)
{
    int64_t itemsize = ExtType_ArrayItemsize(view), expect;
    int c = 1, f = 1;
    int32_t k;
    for (k = 0; k < view->ndim; k++) {
        if (view->shape[k] == 0) {
            view->flags |= EXTTYPE_ARRAY_C_CONTIGUOUS | EXTTYPE_ARRAY_F_CONTIGUOUS;
            return;
        }
    }
    expect = itemsize;
    for (k = view->ndim - 1; k >= 0; k--) {
        if (view->shape[k] != 1) {
            c &= view->strides[k] == expect;
            expect *= view->shape[k];
        }
    }
    expect = itemsize;
    for (k = 0; k < view->ndim; k++) {
        if (view->shape[k] != 1) {
            f &= view->strides[k] == expect;
            expect *= view->shape[k];
        }
    }
    view->flags &= ~(EXTTYPE_ARRAY_C_CONTIGUOUS | EXTTYPE_ARRAY_F_CONTIGUOUS);
    view->flags |= (c ? EXTTYPE_ARRAY_C_CONTIGUOUS : 0u) | (f ? EXTTYPE_ARRAY_F_CONTIGUOUS : 0u);
}

/* For consumers: find the provider of type(obj) and acquire a view.
   Needs the GIL and ExtType_Import(); `obj` is borrowed and must stay alive
   until `*release` has been called. Initialises *view (size) itself.
   Returns 0 and sets *release (call it exactly once: (*release)(obj, view)),
   or -1 with an exception set: TypeError naming the key (and the DLPack
   names looked for) when type(obj) has no acquire/release slot and cannot
   be adopted, RuntimeError when called before ExtType_Import(), else what
   the provider raised. Both slots are found with one table lookup when the
   type is on a fast path.
   Without registration (docs/spec.md section 12.3): on a miss, a type that
   exposes DLPack (__dlpack_c_exchange_api__, the older
   __c_dlpack_exchange_api__, or __dlpack__) is adopted as a provider by
   extensibletype.arrays (imported then if it was not), once; later lookups
   are ordinary hits. Only this function adopts: ExtType_Find and
   ExtType_FindInType never run Python code and just miss. */
/* Internal: the effective table of `tp` when one of the lookup's fast paths
   has it (exact metaclass with a published table; any other type whose
   type-cache entry is filled: foreign types, NumPy's, their subclasses),
   else NULL (then ask ExtType_FindInType, which fills the entry). Lets
   ExtType_ArrayGetView probe one table for both of its slots. */
static inline const ExtType_Table *ExtType__ArrayFastTable(PyTypeObject *tp)
{
    if (ExtType__TypeOf((PyObject *)tp) == EXTTYPE__CACHE.metaclass) {
        return ExtType_LoadTable(tp, EXTTYPE__CACHE.table_offset);
    }
    if (EXTTYPE__CACHE.api == NULL) {
        return NULL;
    }
    return ExtType__CachedTable(tp);
}

/* Internal: the slow path of a miss. Asks extensibletype.arrays._adopt(obj)
   to adopt type(obj) if it exposes DLPack. 1: adopted (look up again);
   -1 with an exception set (the TypeError naming the key and DLPack, or
   what adoption raised); 0 with no exception: nothing in this process can
   adopt (extensibletype.arrays not importable, or a build without DLPack).
   Runs Python code: GIL held, no exception set. */
static inline int ExtType__ArrayAdopt(PyObject *obj)
{
    PyObject *mod, *adopt, *done;
    int ok;
    mod = PyImport_ImportModule("extensibletype.arrays");
    if (mod == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_ImportError)) {
            return -1;
        }
        PyErr_Clear();
        return 0;
    }
    adopt = PyObject_GetAttrString(mod, "_adopt");
    Py_DECREF(mod);
    if (adopt == NULL || adopt == Py_None) {
        Py_XDECREF(adopt);
        PyErr_Clear();
        return 0;
    }
    done = PyObject_CallFunctionObjArgs(adopt, obj, NULL);
    Py_DECREF(adopt);
    if (done == NULL) {
        return -1;
    }
    ok = PyObject_IsTrue(done);
    Py_DECREF(done);
    return ok < 0 ? -1 : ok;
}

static inline int ExtType_ArrayGetView(PyObject *obj, int request, ExtType_ArrayView *view,
                                       ExtType_ArrayReleaseFn *release)
{
    int adopted = 0;
    PyTypeObject *tp;
    const ExtType_Table *table;
    void *a, *r;
    ExtType_ArrayAcquireFn acquire;
    ExtType_ArrayReleaseFn rel;
    if (EXTTYPE__CACHE.api == NULL) {
        ExtType__NotImported("ExtType_ArrayGetView");
        return -1;
    }
    tp = ExtType__TypeOf(obj);
again:
    table = ExtType__ArrayFastTable(tp);
    a = table != NULL ? ExtType_TableFind(table, EXTTYPE_ARRAY_ID_ACQUIRE) : ExtType_FindInType(tp, EXTTYPE_ARRAY_ID_ACQUIRE);
    r = table != NULL ? ExtType_TableFind(table, EXTTYPE_ARRAY_ID_RELEASE) : ExtType_FindInType(tp, EXTTYPE_ARRAY_ID_RELEASE);
    if (a == NULL && !adopted) {
        adopted = ExtType__ArrayAdopt(obj);
        if (adopted < 0) {
            return -1;
        }
        if (adopted) {
            goto again;
        }
        adopted = 1; /* nothing can adopt: raise below */
    }
    /* Slots hold data pointers; POSIX (and every platform CPython runs on)
       gives function pointers the same representation. memcpy keeps ISO C
       pedantic mode quiet. */
    memcpy(&acquire, &a, sizeof acquire);
    memcpy(&rel, &r, sizeof rel);
    if (a == NULL || r == NULL) {
        PyErr_Format(PyExc_TypeError, "%R object does not provide \"%s\" (not an array provider)",
                     (PyObject *)tp, a == NULL ? EXTTYPE_ARRAY_KEY_ACQUIRE : EXTTYPE_ARRAY_KEY_RELEASE);
        return -1;
    }
    /* Everything but scratch (the provider's, written before it is read):
       zeroing its 128 bytes too cost about 1 ns per view. */
    memset(view, 0, offsetof(ExtType_ArrayView, scratch));
    view->size = (uint32_t)sizeof(*view);
    if (acquire(obj, request, view) != 0) {
        if (!PyErr_Occurred()) {
            PyErr_Format(PyExc_SystemError, "the array acquire of %R failed without setting an exception",
                         (PyObject *)Py_TYPE(obj));
        }
        return -1;
    }
    *release = rel;
    return 0;
}

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* EXTENSIBLETYPE_ARRAY_H */
