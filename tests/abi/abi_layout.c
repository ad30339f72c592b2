/*
 * ABI v1 layout, checked by the compiler: every struct of
 * include/extensibletype.h and include/extensibletype_array.h, field by
 * field, against the numbers of docs/spec.md (sections 2, 3, 8 and 12).
 * The Rust #[repr(C)] twins assert the same numbers with `const` blocks:
 * the table structs next to their definitions
 * (crates/extensibletype-core/src/table/mod.rs), ExtType_API,
 * ExtType_TypeData, ExtType_TypeCacheEntry and ExtType_SlotDef next to
 * theirs (crates/extensibletype-core/src/abi/mod.rs; the runtime's
 * bootstrap.rs checks that its CPython-typed instantiations have that layout), the array.v1
 * structs in crates/extensibletype-array-abi/src/lib.rs.
 *
 * Compiled as C11 and as C++17 by python/tests/test_header.py
 * (test_abi_layout_static_asserts); it has no main and emits no code.
 *
 * Appending a field to ExtType_API: one FIELD line (and its FN_TYPE line
 * for a function pointer) here, one line in the Rust const block, one row in
 * docs/spec.md section 8, and the new SIZE.
 */
#include <Python.h>
#include <stddef.h>
#include <stdint.h>
#include "extensibletype.h"
#include "extensibletype_array.h"

#ifdef __cplusplus
#  include <type_traits>
#  define ABI_ASSERT(cond, msg) static_assert(cond, msg)
#  define ABI_ALIGNOF(T) alignof(T)
/* The member has exactly this type (function pointer signatures too). */
#  define FN_TYPE(T, f, ...) \
       ABI_ASSERT((std::is_same<decltype(T::f), __VA_ARGS__>::value), #T "." #f " has the type of docs/spec.md")
#else
#  define ABI_ASSERT(cond, msg) _Static_assert(cond, msg)
#  define ABI_ALIGNOF(T) _Alignof(T)
#  define FN_TYPE(T, f, ...) \
       ABI_ASSERT(_Generic(((T *)0)->f, __VA_ARGS__: 1, default: 0), #T "." #f " has the type of docs/spec.md")
#endif

#define SIZE(T, n) ABI_ASSERT(sizeof(T) == (n), "sizeof(" #T ") == " #n)
#define ALIGN(T, n) ABI_ASSERT(ABI_ALIGNOF(T) == (n), "alignof(" #T ") == " #n)
#define FIELD(T, f, n) ABI_ASSERT(offsetof(T, f) == (n), "offsetof(" #T ", " #f ") == " #n)

ABI_ASSERT(EXTTYPE_ABI_VERSION == 1, "ABI version 1");
ABI_ASSERT(EXTTYPE_ARRAY_VERSION == 1, "array.v1 view version 1");

#if UINTPTR_MAX == UINT64_MAX /* the numbers below are for 64-bit platforms */

/* ---- the table (docs/spec.md section 2) ---- */
SIZE(ExtType_Table, 32);
ALIGN(ExtType_Table, 8);
FIELD(ExtType_Table, k1, 0);
FIELD(ExtType_Table, k2, 8);
FIELD(ExtType_Table, s, 16);
FIELD(ExtType_Table, t, 17);
FIELD(ExtType_Table, reserved, 18);
FIELD(ExtType_Table, count, 20);
FIELD(ExtType_Table, size, 24);
FIELD(ExtType_Table, entries_offset, 28);
ABI_ASSERT(EXTTYPE_TABLE_HEADER_SIZE == 32, "d[] starts at 32");

SIZE(ExtType_Entry, 16);
ALIGN(ExtType_Entry, 8);
FIELD(ExtType_Entry, id, 0);
FIELD(ExtType_Entry, ptr, 8);

/* ---- type data (section 3) ---- */
SIZE(ExtType_TypeData, 40);
ALIGN(ExtType_TypeData, 8);
FIELD(ExtType_TypeData, table, 0);
FIELD(ExtType_TypeData, state, 8);     /* internal */
FIELD(ExtType_TypeData, own_table, 16); /* internal */
FIELD(ExtType_TypeData, flat, 24);      /* appended: the flat descriptor */
FIELD(ExtType_TypeData, flat_k1, 32);   /* appended */

/* ---- slot definitions (section 8) ---- */
SIZE(ExtType_SlotDef, 24);
ALIGN(ExtType_SlotDef, 8);
FIELD(ExtType_SlotDef, key, 0);
FIELD(ExtType_SlotDef, id, 8);
FIELD(ExtType_SlotDef, ptr, 16);

/* ---- the API struct (section 8): append-only, one line per field ---- */
SIZE(ExtType_API, 136);
ALIGN(ExtType_API, 8);
FIELD(ExtType_API, abi_version, 0);
FIELD(ExtType_API, struct_size, 4);
FIELD(ExtType_API, metaclass, 8);
FIELD(ExtType_API, table_offset, 16);
FIELD(ExtType_API, find_slow, 24);
FIELD(ExtType_API, prehash, 32);
FIELD(ExtType_API, set_slots, 40);
FIELD(ExtType_API, from_spec, 48);
FIELD(ExtType_API, py_set_slots, 56);  /* internal */
FIELD(ExtType_API, py_get_slots, 64);  /* internal */
FIELD(ExtType_API, py_table_info, 72); /* internal */
FIELD(ExtType_API, py_lookup, 80);     /* internal */
FIELD(ExtType_API, bind_key, 88);      /* internal */
FIELD(ExtType_API, foreign_registry, 96);
FIELD(ExtType_API, ob_type_offset, 104); /* appended */
/* Appended: the type cache (docs/c-api.md, "The type cache"). */
FIELD(ExtType_API, type_cache, 112);
FIELD(ExtType_API, type_cache_bits, 120);
FIELD(ExtType_API, version_tag_offset, 124);
/* Appended: the flat descriptor (docs/spec.md section 3). */
FIELD(ExtType_API, flat_offset, 128);

/* ---- the type cache entry ---- */
SIZE(ExtType_TypeCacheEntry, 32);
ALIGN(ExtType_TypeCacheEntry, 8);
FIELD(ExtType_TypeCacheEntry, seq, 0);
FIELD(ExtType_TypeCacheEntry, tag, 4);
FIELD(ExtType_TypeCacheEntry, tp, 8);
FIELD(ExtType_TypeCacheEntry, table, 16);
FIELD(ExtType_TypeCacheEntry, flat, 24);

#endif /* 64-bit */

/* Field types (any platform): the signatures of docs/spec.md section 8. */
FN_TYPE(ExtType_API, abi_version, uint32_t);
FN_TYPE(ExtType_API, struct_size, uint32_t);
FN_TYPE(ExtType_API, metaclass, PyTypeObject *);
FN_TYPE(ExtType_API, table_offset, Py_ssize_t);
FN_TYPE(ExtType_API, find_slow, void *(*)(PyTypeObject *, uint64_t));
FN_TYPE(ExtType_API, prehash, uint64_t (*)(const char *, size_t));
FN_TYPE(ExtType_API, set_slots, int (*)(PyObject *, const ExtType_SlotDef *, Py_ssize_t));
FN_TYPE(ExtType_API, from_spec,
        PyObject *(*)(PyObject *, PyType_Spec *, PyObject *, const ExtType_SlotDef *, Py_ssize_t));
FN_TYPE(ExtType_API, py_set_slots, int (*)(PyObject *, PyObject *));
FN_TYPE(ExtType_API, py_get_slots, PyObject *(*)(PyObject *));
FN_TYPE(ExtType_API, py_table_info, PyObject *(*)(PyObject *));
FN_TYPE(ExtType_API, py_lookup, PyObject *(*)(PyObject *, PyObject *));
FN_TYPE(ExtType_API, bind_key, int (*)(const char *, uint64_t));
FN_TYPE(ExtType_API, foreign_registry, ExtType_Table **);
FN_TYPE(ExtType_API, ob_type_offset, Py_ssize_t);
FN_TYPE(ExtType_API, type_cache, ExtType_TypeCacheEntry *);
FN_TYPE(ExtType_API, type_cache_bits, uint32_t);
FN_TYPE(ExtType_API, version_tag_offset, int32_t);
FN_TYPE(ExtType_API, flat_offset, Py_ssize_t);

#if UINTPTR_MAX == UINT64_MAX

/* ---- array.v1 (section 12) ---- */
SIZE(ExtType_DLDataType, 4);
ALIGN(ExtType_DLDataType, 2);
FIELD(ExtType_DLDataType, code, 0);
FIELD(ExtType_DLDataType, bits, 1);
FIELD(ExtType_DLDataType, lanes, 2);

SIZE(ExtType_DLDevice, 8);
ALIGN(ExtType_DLDevice, 4);
FIELD(ExtType_DLDevice, device_type, 0);
FIELD(ExtType_DLDevice, device_id, 4);

SIZE(ExtType_ArrayView, 208);
ALIGN(ExtType_ArrayView, 8);
FIELD(ExtType_ArrayView, size, 0);
FIELD(ExtType_ArrayView, version, 4);
FIELD(ExtType_ArrayView, data, 8);
FIELD(ExtType_ArrayView, shape, 16);
FIELD(ExtType_ArrayView, strides, 24);
FIELD(ExtType_ArrayView, ndim, 32);
FIELD(ExtType_ArrayView, flags, 36);
FIELD(ExtType_ArrayView, dtype, 40);
FIELD(ExtType_ArrayView, reserved, 44);
FIELD(ExtType_ArrayView, device, 48);
FIELD(ExtType_ArrayView, owner, 56);
FIELD(ExtType_ArrayView, internal, 64);
FIELD(ExtType_ArrayView, scratch, 80);
ABI_ASSERT(EXTTYPE_ARRAY_SCRATCH == 16, "scratch holds 16 int64_t");

#endif /* 64-bit */

FN_TYPE(ExtType_ArrayView, shape, int64_t *);
FN_TYPE(ExtType_ArrayView, strides, int64_t *);
FN_TYPE(ExtType_ArrayView, owner, PyObject *);
