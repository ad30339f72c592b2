/*
 * extensibletype.h — C/C++ client of the extensibletype runtime (ABI v1).
 *
 * Any CPython type can carry an immutable perfect-hash table of
 * (64-bit id -> pointer) "slots". A provider registers C implementations
 * under keys such as "extensibletype.array.v1:acquire"; a consumer finds them
 * on any object's type with ExtType_Find(), in a few loads, without the GIL.
 *
 * Header-only: every function is `static inline` and goes through the API
 * struct that the runtime publishes in the capsule "extensibletype._C_API"
 * (attribute `_C_API` of the Python module `extensibletype`).
 *
 *   #include <Python.h>
 *   #include "extensibletype.h"   // -I$(python -c "import extensibletype as e; print(e.get_include())")
 *
 *   // once, with the GIL (module init):
 *   if (ExtType_Import() < 0) return NULL;
 *   // anywhere, no GIL needed, holding a strong reference to obj:
 *   scale_fn f = (scale_fn)ExtType_Find(obj, EXTTYPE_ID_DEMO_UNITS_V1__SCALE);
 *   if (f != NULL) y = f(obj, x);
 *
 * Compile-time ids: `python -m extensibletype header keys.txt -o ids.h`
 * turns key strings into `#define EXTTYPE_ID_... UINT64_C(0x...)` constants
 * (see docs/c-api.md for the naming scheme); at run time use
 * ExtType_Prehash().
 *
 * Several translation units (TUs)
 * -------------------------------
 * By default the API pointer and the cached metaclass/offset are `static`:
 * every TU that calls any ExtType_* function must call ExtType_Import() once
 * (it is cheap). For a multi-file extension, do as with NumPy's
 * PY_ARRAY_UNIQUE_SYMBOL: define EXTTYPE_API_UNIQUE_SYMBOL to a name unique to
 * your extension (e.g. `mymod_exttype_api`) before every include of this
 * header; in exactly one TU (the one that calls ExtType_Import()) leave
 * EXTTYPE_NO_IMPORT undefined, and define EXTTYPE_NO_IMPORT in all others.
 *
 * Threads
 * -------
 * ExtType_Find / ExtType_FindInType / ExtType_TableFind / ExtType_Prehash
 * need no GIL and no attached thread state (any thread, including threads
 * CPython never saw). The caller must hold a strong reference to the object
 * (or type) it asks about, so that the type cannot die during the lookup.
 * Everything else needs the GIL (an attached thread state on free-threaded
 * builds). ExtType_Import() must have returned 0 (in this TU, or in the
 * EXTTYPE_API_UNIQUE_SYMBOL TU) before any other function is called, and must
 * not race with lookups from other threads (call it in module init).
 *
 * ABI v1 layout (docs/spec.md sections 2, 3 and 8; sizes/offsets for 64-bit
 * platforms, checked by the compiler in tests/abi/abi_layout.c and against
 * the Rust #[repr(C)] definitions' const asserts)
 * ------------------------------------------------------------------------
 * Table: one immutable, 64-byte-aligned block, never modified once
 * published (replacement = new block, release store of the pointer):
 *
 *   offset 0   ExtType_Table header (32 bytes)
 *                uint64_t k1, k2        odd multipliers
 *                uint8_t  s, t          64 - log2(size), 64 - log2(bins)
 *                uint16_t reserved      0
 *                uint32_t count         live entries
 *                uint32_t size          S, a power of two >= 2
 *                uint32_t entries_offset  byte offset of entries[0]
 *   offset 32  uint16_t d[B]            displacements, each < S
 *   entries_offset
 *              ExtType_Entry entries[S] {uint64_t id; void *ptr;} (16 bytes),
 *                                       empty = {0, NULL}
 *
 *   Lookup (fixed for ABI v1, wrapping 64-bit multiplies):
 *     i = ((id * k1) >> s) ^ d[(id * k2) >> t];
 *     entries[i].id == id ? entries[i].ptr : NULL
 *
 * Type data: every type object whose metaclass is ExtensibleType (or a
 * subclass) holds an ExtType_TypeData {ExtType_Table *table (atomic);
 * void *state; ExtType_Table *own_table;} at the same byte offset from the
 * start of the type object:
 * api->table_offset. A NULL table means "empty, or not initialised yet"
 * (the slow path api->find_slow decides). `state` is the runtime's.
 *
 * Keys and ids: id = first 8 bytes of md5(key), little-endian. Id 0 is
 * reserved (never a slot; an empty entry's id).
 */
#ifndef EXTENSIBLETYPE_H
#define EXTENSIBLETYPE_H

#include <Python.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#if defined(_MSC_VER) && !defined(__clang__)
#  include <intrin.h>
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ABI version of the table layout, the lookup formula and ExtType_API. */
#define EXTTYPE_ABI_VERSION 1
/* Name of the capsule holding the ExtType_API struct. */
#define EXTTYPE_CAPSULE_NAME "extensibletype._C_API"
/* Module and attribute ExtType_Import() reads the capsule from. */
#define EXTTYPE_MODULE_NAME "extensibletype"
#define EXTTYPE_CAPSULE_ATTR "_C_API"

/* ---------------------------------------------------------------------- */
/* ABI types                                                              */
/* ---------------------------------------------------------------------- */

/* The table header (Rust: extensibletype::RawTable). uint16_t d[B] follows
   at offset EXTTYPE_TABLE_HEADER_SIZE (see ExtType_TableDisplacements). */
typedef struct ExtType_Table {
    uint64_t k1;             /* odd multiplier of the slot hash (id * k1) >> s */
    uint64_t k2;             /* odd multiplier of the bin hash (id * k2) >> t */
    uint8_t s;               /* 64 - log2(size), in 1..63 */
    uint8_t t;               /* 64 - log2(bins), in 1..63 */
    uint16_t reserved;       /* 0 in ABI v1 */
    uint32_t count;          /* number of entries with a non-zero id */
    uint32_t size;           /* number of entry slots S (power of two, >= 2) */
    uint32_t entries_offset; /* byte offset of entries[0] from the header */
} ExtType_Table;

/* Offset of d[] from the start of the table. */
#define EXTTYPE_TABLE_HEADER_SIZE 32

/* One table slot (Rust: extensibletype::RawEntry); {0, NULL} when empty. */
typedef struct ExtType_Entry {
    uint64_t id;
    void *ptr;
} ExtType_Entry;

/* What the metaclass adds to every extensible type object, at
   api->table_offset (Rust: extensibletype::runtime::TypeData). `table` is
   written with release stores and must be read with an acquire load
   (ExtType_LoadTable); `state` is private to the runtime. */
typedef struct ExtType_TypeData {
    ExtType_Table *table;
    void *state;
    ExtType_Table *own_table; /* runtime-private: this type's own slots */
} ExtType_TypeData;

/* One slot to set (Rust: extensibletype::runtime::SlotDef).
   `key`: NUL-terminated UTF-8 key, or NULL to name the slot by `id`
   (when both are given, `id` must be 0 or equal ExtType_Prehash(key)).
   `ptr`: the implementation; NULL removes the slot. */
typedef struct ExtType_SlotDef {
    const char *key;
    uint64_t id;
    void *ptr;
} ExtType_SlotDef;

/* The API struct in the capsule (Rust: extensibletype::runtime::Api).
   Read-only, lives for the process. Prefer the ExtType_* wrappers below.
   Append-only (docs/spec.md sections 8 and 9): a field added after the ones
   below exists iff struct_size >= its offset + size; check before reading. */
typedef struct ExtType_API {
    /* EXTTYPE_ABI_VERSION of the runtime that made this struct. */
    uint32_t abi_version;
    /* sizeof of the runtime's struct (>= sizeof(ExtType_API) for ABI v1). */
    uint32_t struct_size;
    /* The ExtensibleType metaclass (borrowed; lives for the process). */
    PyTypeObject *metaclass;
    /* Offset of ExtType_TypeData from the start of every type object whose
       metaclass is `metaclass` or a subclass of it. */
    Py_ssize_t table_offset;
    /* Slow path of a lookup (sub-metaclasses, types never initialised, the
       foreign registry). No GIL needed; caller holds a reference to tp. */
    void *(*find_slow)(PyTypeObject *tp, uint64_t id);
    /* prehash(key[0:len]); no GIL needed. 0 for key == NULL. */
    uint64_t (*prehash)(const char *key, size_t len);
    /* See ExtType_SetSlots. */
    int (*set_slots)(PyObject *type, const ExtType_SlotDef *defs, Py_ssize_t n);
    /* See ExtType_FromSpec. */
    PyObject *(*from_spec)(PyObject *module, PyType_Spec *spec, PyObject *bases,
                           const ExtType_SlotDef *defs, Py_ssize_t n);
    /* ---- Internal: serve the Python module of whichever copy of the runtime
       loaded first. Not part of the C API; present so that sizes match. ---- */
    int (*py_set_slots)(PyObject *type, PyObject *mapping);     /* internal */
    PyObject *(*py_get_slots)(PyObject *type);                  /* internal */
    PyObject *(*py_table_info)(PyObject *type);                 /* internal */
    PyObject *(*py_lookup)(PyObject *obj, PyObject *key);       /* internal */
    int (*bind_key)(const char *key, uint64_t id);              /* internal */
    /* ---- Public again. ---- */
    /* Where the foreign registry's table is published (type address ->
       that type's effective table): acquire-load *foreign_registry. A miss
       means "not registered itself" (find_slow walks the MRO). */
    ExtType_Table **foreign_registry;
} ExtType_API;

/* ---------------------------------------------------------------------- */
/* Per-extension state (internal)                                         */
/* ---------------------------------------------------------------------- */

/* Filled by ExtType_Import(); the fast path reads metaclass and
   table_offset from here (one cache line). */
typedef struct ExtType__Cache {
    PyTypeObject *metaclass;
    Py_ssize_t table_offset;
    ExtType_Table **foreign_registry;
    const ExtType_API *api;
} ExtType__Cache;

#if defined(EXTTYPE_API_UNIQUE_SYMBOL)
#  define EXTTYPE__CACHE EXTTYPE_API_UNIQUE_SYMBOL
#  if defined(EXTTYPE_NO_IMPORT)
extern ExtType__Cache EXTTYPE__CACHE;
#  else
ExtType__Cache EXTTYPE__CACHE = {NULL, 0, NULL, NULL};
#  endif
#else
#  define EXTTYPE__CACHE ExtType__cache
static ExtType__Cache ExtType__cache = {NULL, 0, NULL, NULL};
#endif

/* Acquire load of a pointer (C99, C11 and C++ alike). */
#if defined(__GNUC__) || defined(__clang__)
#  define EXTTYPE__LOAD_ACQUIRE(pp) __atomic_load_n((pp), __ATOMIC_ACQUIRE)
#  define EXTTYPE__LIKELY(x) __builtin_expect(!!(x), 1)
#elif defined(_MSC_VER)
#  if defined(_M_ARM64) || defined(_M_ARM64EC)
#    define EXTTYPE__LOAD_ACQUIRE(pp) \
         ((ExtType_Table *)(uintptr_t)__ldar64((unsigned __int64 volatile *)(pp)))
#  else /* x86/x64: plain loads have acquire semantics; stop the compiler */
static __forceinline ExtType_Table *ExtType__load_acquire_msvc(ExtType_Table *const volatile *pp)
{
    ExtType_Table *p = *pp;
    _ReadWriteBarrier();
    return p;
}
#    define EXTTYPE__LOAD_ACQUIRE(pp) ExtType__load_acquire_msvc(pp)
#  endif
#  define EXTTYPE__LIKELY(x) (x)
#else
#  error "extensibletype.h: no acquire load for this compiler (needs GCC/Clang builtins or MSVC)"
#endif

/* ---------------------------------------------------------------------- */
/* Lookup: no GIL needed                                                  */
/* ---------------------------------------------------------------------- */

/* The displacements d[] of a table. */
static inline const uint16_t *ExtType_TableDisplacements(const ExtType_Table *table)
{
    return (const uint16_t *)(const void *)(table + 1);
}

/* The entries[] of a table (table->size of them). */
static inline const ExtType_Entry *ExtType_TableEntries(const ExtType_Table *table)
{
    return (const ExtType_Entry *)(const void *)((const char *)table + table->entries_offset);
}

/* Probe one table: the pointer stored under `id`, or NULL. The ABI v1
   lookup, branch-free: the hit test is a mask (a conditional move), so a
   lookup has no data-dependent jump.
   No GIL; `table` must be live (a published table lives as long as its
   type). */
static inline void *ExtType_TableFind(const ExtType_Table *table, uint64_t id)
{
    uint64_t slot = (id * table->k1) >> table->s;
    uint64_t bin = (id * table->k2) >> table->t;
    const ExtType_Entry *e = ExtType_TableEntries(table) + (slot ^ ExtType_TableDisplacements(table)[bin]);
    uintptr_t hit = (uintptr_t)0 - (uintptr_t)(e->id == id);
    return (void *)((uintptr_t)e->ptr & hit);
}

/* The current table of an extensible type (acquire load), NULL when empty or
   not initialised. `tp`'s metaclass must be ExtensibleType or a subclass. */
static inline const ExtType_Table *ExtType_LoadTable(PyTypeObject *tp, Py_ssize_t table_offset)
{
    ExtType_Table **slot = (ExtType_Table **)(void *)((char *)tp + table_offset);
    return EXTTYPE__LOAD_ACQUIRE(slot);
}

/* Find the implementation registered under `id` on type `tp` (its own
   slots, its bases' in MRO order, or the foreign registry): the pointer, or
   NULL when absent.
   Needs NO GIL and no thread state; the caller holds a strong reference to
   `tp` (or to an instance of it). Never sets an exception.
   ExtType_Import() must have succeeded; before that, returns NULL. */
static inline void *ExtType_FindInType(PyTypeObject *tp, uint64_t id)
{
    if (EXTTYPE__LIKELY(Py_TYPE((PyObject *)tp) == EXTTYPE__CACHE.metaclass)) {
        const ExtType_Table *table = ExtType_LoadTable(tp, EXTTYPE__CACHE.table_offset);
        if (EXTTYPE__LIKELY(table != NULL)) {
            return ExtType_TableFind(table, id);
        }
    }
    if (EXTTYPE__CACHE.api == NULL) {
        return NULL;
    }
    /* A type registered in the foreign registry (e.g. numpy.ndarray): probe
       the registry inline; anything else (subclasses of registered types,
       sub-metaclasses, empty or never-initialised types) takes the slow path. */
    {
        const ExtType_Table *registry = EXTTYPE__LOAD_ACQUIRE(EXTTYPE__CACHE.foreign_registry);
        if (registry != NULL) {
            const ExtType_Table *table =
                (const ExtType_Table *)ExtType_TableFind(registry, (uint64_t)(uintptr_t)tp);
            if (table != NULL) {
                return ExtType_TableFind(table, id);
            }
        }
    }
    return EXTTYPE__CACHE.api->find_slow(tp, id);
}

/* Find the implementation registered under `id` on type(obj), or NULL.
   Needs NO GIL and no thread state; the caller holds a strong reference to
   `obj` (a borrowed reference is fine if someone keeps obj alive for the
   duration). Never sets an exception. */
static inline void *ExtType_Find(PyObject *obj, uint64_t id)
{
    return ExtType_FindInType(Py_TYPE(obj), id);
}

/* ---------------------------------------------------------------------- */
/* Setup and registration                                                 */
/* ---------------------------------------------------------------------- */

/* Load the runtime: import `extensibletype`, read its `_C_API` capsule, check
   the ABI and cache the metaclass and table offset for the inline lookups.
   Needs the GIL. Returns 0, or -1 with an exception set (ImportError when the
   module is missing, the capsule is not an extensibletype API, or its ABI
   version / struct size does not match this header). Idempotent; call it in
   your module's init (in every TU, unless EXTTYPE_API_UNIQUE_SYMBOL). */
static inline int ExtType_Import(void)
{
    PyObject *module, *capsule;
    const ExtType_API *api;

    module = PyImport_ImportModule(EXTTYPE_MODULE_NAME);
    if (module == NULL) {
        return -1;
    }
    capsule = PyObject_GetAttrString(module, EXTTYPE_CAPSULE_ATTR);
    Py_DECREF(module);
    if (capsule == NULL) {
        return -1;
    }
    if (!PyCapsule_IsValid(capsule, EXTTYPE_CAPSULE_NAME)) {
        PyErr_Format(PyExc_ImportError,
                     EXTTYPE_MODULE_NAME "." EXTTYPE_CAPSULE_ATTR " is not a capsule named \""
                     EXTTYPE_CAPSULE_NAME "\" (got %R)",
                     capsule);
        Py_DECREF(capsule);
        return -1;
    }
    api = (const ExtType_API *)PyCapsule_GetPointer(capsule, EXTTYPE_CAPSULE_NAME);
    Py_DECREF(capsule); /* the struct lives for the process */
    if (api == NULL) {
        return -1;
    }
    /* Only abi_version and struct_size are read before they are checked. */
    if (api->abi_version != EXTTYPE_ABI_VERSION || api->struct_size < (uint32_t)sizeof(ExtType_API)) {
        PyErr_Format(PyExc_ImportError,
                     "extensibletype: the runtime loaded in this process has ABI version %u "
                     "(API struct of %u bytes), but this extension was compiled against "
                     "extensibletype.h ABI version %d (API struct of %u bytes); "
                     "rebuild it against a matching extensibletype",
                     (unsigned)api->abi_version, (unsigned)api->struct_size,
                     EXTTYPE_ABI_VERSION, (unsigned)sizeof(ExtType_API));
        return -1;
    }
    EXTTYPE__CACHE.metaclass = api->metaclass;
    EXTTYPE__CACHE.table_offset = api->table_offset;
    EXTTYPE__CACHE.foreign_registry = api->foreign_registry;
    EXTTYPE__CACHE.api = api;
    return 0;
}

/* The API struct (borrowed, lives for the process), or NULL before
   ExtType_Import(). No GIL needed. */
static inline const ExtType_API *ExtType_GetAPI(void)
{
    return EXTTYPE__CACHE.api;
}

/* The ExtensibleType metaclass: a borrowed reference that lives for the
   process (NULL before ExtType_Import()). No GIL needed. */
static inline PyTypeObject *ExtType_Metaclass(void)
{
    return EXTTYPE__CACHE.metaclass;
}

/* The id of the first `len` bytes at `key` (md5, first 8 bytes, LE).
   No GIL needed; ExtType_Import() must have succeeded (else returns 0). */
static inline uint64_t ExtType_PrehashN(const char *key, size_t len)
{
    if (EXTTYPE__CACHE.api == NULL) {
        return 0;
    }
    return EXTTYPE__CACHE.api->prehash(key, len);
}

/* The id of the NUL-terminated UTF-8 `key`. No GIL needed; 0 for NULL or
   before ExtType_Import(). Prefer compile-time ids
   (`python -m extensibletype header`) in hot code. */
static inline uint64_t ExtType_Prehash(const char *key)
{
    return key == NULL ? 0 : ExtType_PrehashN(key, strlen(key));
}

/* Add, override (ptr != NULL) or remove (ptr == NULL) `n` slots of `type`.
   Any type: an extensible type gets a new table (republished for its
   subclasses); another type (e.g. bytearray) is registered in the foreign
   registry, which keeps it alive. Pointers are borrowed: whatever they point
   to must outlive the type (static functions/data, or keep it alive yourself).
   Needs the GIL. `type` is borrowed. Returns 0, or -1 with an exception set
   (TypeError: not a type; ValueError: id 0, key/id mismatch, 64-bit key
   collision, too many entries); on error nothing changed. */
static inline int ExtType_SetSlots(PyObject *type, const ExtType_SlotDef *defs, Py_ssize_t n)
{
    return EXTTYPE__CACHE.api->set_slots(type, defs, n);
}

/* Create a heap type from `spec` whose metaclass is ExtensibleType (like
   PyType_FromModuleAndSpec(module, spec, bases); `module` and `bases` are
   borrowed and may be NULL) and give it the `n` slots `defs` (pointers as in
   ExtType_SetSlots). On CPython 3.11 (no PyType_FromMetaclass) the result is
   a same-named subclass, with __slots__ = (), of a type built from spec
   (which keeps the spec's Py_TPFLAGS_BASETYPE setting). Needs the GIL. Returns a NEW reference, or NULL with an exception set. */
static inline PyObject *ExtType_FromSpec(PyObject *module, PyType_Spec *spec, PyObject *bases,
                                         const ExtType_SlotDef *defs, Py_ssize_t n)
{
    return EXTTYPE__CACHE.api->from_spec(module, spec, bases, defs, n);
}

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* EXTENSIBLETYPE_H */
