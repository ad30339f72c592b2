/*
 * extensibletype.h — C/C++ client of the extensibletype runtime (ABI v1).
 *
 * Any CPython type can carry an immutable perfect-hash table of
 * (64-bit id -> pointer) "slots". A provider registers C implementations
 * under keys such as "extensibletype.array.v1:acquire"; a consumer finds them
 * on any object's type with ExtType_Find(), in a few loads, without the GIL.
 *
 * Header-only: every function is `static inline` (the lookups forced inline
 * under GCC, Clang and MSVC) and goes through the API struct that the
 * runtime publishes in the capsule "extensibletype._C_API" (attribute
 * `_C_API` of the Python module `extensibletype`).
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
 * Compile every TU that shares the symbol against the same extensibletype.h:
 * the shared per-extension cache is internal and its layout may change
 * between releases (the ABI with the runtime does not).
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
 * not race with lookups from other threads (call it in module init). Called
 * before it, the functions that need the GIL fail with RuntimeError
 * (ExtType_SetSlots: -1, ExtType_FromSpec: NULL, ExtType_ArrayGetView: -1);
 * the GIL-free ones set no exception: ExtType_Find / ExtType_FindInType /
 * ExtType_GetAPI / ExtType_Metaclass return NULL, ExtType_Prehash 0.
 * A lookup from a thread without a thread state calls into CPython never;
 * once the interpreter exits (atexit), such a lookup that the inline fast
 * paths do not answer returns NULL.
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
 * Flat tables: a table whose entries start at offset 64 and whose (at most
 * 16) displacements are all 0 is single-level: entries[(id * k1) >> s].
 * The runtime builds one for every effective table of up to 24 slots.
 *
 * Type data: every type object whose metaclass is ExtensibleType (or a
 * subclass) holds an ExtType_TypeData {ExtType_Table *table (atomic);
 * void *state; ExtType_Table *own_table; uintptr_t flat (atomic);
 * uint64_t flat_k1 (atomic);} at the same byte offset from the start of
 * the type object: api->table_offset. A NULL table means "empty, or not
 * initialised yet" (the slow path api->find_slow decides). `state` is the
 * runtime's. `flat` (appended; at api->flat_offset) describes the same
 * table in one word: &entries[0] | (s - 4) for a flat table, the table
 * itself (low 6 bits 0) for any other, 0 for none; `flat_k1` is the flat
 * table's k1. ExtType_FindInType probes through it (ExtType__DescriptorFind):
 * two dependent loads fewer than the v1 formula for a flat table.
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
   (ExtType_LoadTable); `state` is private to the runtime. The runtime
   publishes a table with three stores: flat_k1 (relaxed), flat (release),
   table (release); once both are stored, `flat` and `table` name the same
   table (between the stores a reader of either sees a published table). */
typedef struct ExtType_TypeData {
    ExtType_Table *table;
    void *state;
    ExtType_Table *own_table; /* runtime-private: this type's own slots */
    /* Appended (read through api->flat_offset, present iff the API struct
       has that field): the flat descriptor of `table` (see the top of this
       file) and the k1 of the flat table it names. A reader may pair a word
       with another publication's k1; ExtType__DescriptorFind checks k1
       against the table's own. */
    uintptr_t flat;
    uint64_t flat_k1;
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

/* One entry of the runtime's type cache (Rust:
   extensibletype::runtime::CacheEntry), 32 bytes. Written only by the
   runtime, under a seqlock: `seq` is odd while an entry changes. A filled
   entry answers for `tp` while tp->tp_version_tag == tag (tag != 0):
   CPython resets the tag on every change of the type or of a base (and a new
   type at a reused address starts at 0 and gets a fresh, never reused, tag);
   the runtime clears every entry whenever it publishes or frees a table. */
typedef struct ExtType_TypeCacheEntry {
    uint32_t seq;
    uint32_t tag;
    PyTypeObject *tp;           /* compared only, never dereferenced */
    const ExtType_Table *table; /* the table a lookup on `tp` probes */
    /* The flat descriptor word of `table` (as ExtType_TypeData.flat:
       &entries[0] | (s - 4) for a flat table, else `table` itself), written
       with it by runtimes whose API struct has flat_offset; 0 (formerly
       `reserved`) from older ones, whose readers use `table`. */
    uintptr_t flat;
} ExtType_TypeCacheEntry;

/* Multiplier of the type cache's index hash. */
#define EXTTYPE_TYPE_CACHE_HASH_MULT UINT64_C(0x9E3779B97F4A7C15)

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
    /* Kept for the ABI: runtimes up to 0.1 published a table here (type
       address -> effective table). Since the foreign registry became an
       index (docs/spec.md §5) *foreign_registry is always NULL, which every
       consumer reads as "ask the type cache / find_slow". */
    ExtType_Table **foreign_registry;
    /* ---- Appended fields: read each only when struct_size covers it
       (runtimes before it have a shorter struct; ExtType_Import() does). ---- */
    /* Byte offset of ob_type in every object of this interpreter, measured
       by the runtime at import on live objects (type objects among them);
       0 when it proved none. Lets consumers whose Py_TYPE() is an exported
       function (limited API 3.14+, abi3t) load the type pointer inline. */
    Py_ssize_t ob_type_offset;
    /* The type cache (appended after ob_type_offset). */
    /* 1 << type_cache_bits entries, indexed by
       ((uint64_t)tp * EXTTYPE_TYPE_CACHE_HASH_MULT) >> (64 - type_cache_bits);
       see ExtType__CachedWord for the reader protocol. */
    ExtType_TypeCacheEntry *type_cache;
    uint32_t type_cache_bits;
    /* Offset of tp_version_tag in type objects, proven by the runtime on the
       running interpreter; 0 = cache off (entries are never filled). */
    int32_t version_tag_offset;
    /* Offset of ExtType_TypeData.flat (then flat_k1) from the start of every
       type whose metaclass is `metaclass` or a subclass. Without this field,
       ExtType_Import() uses table_offset: the word there is the v1 table
       (64-byte aligned: low 6 bits 0), which the lookup probes as such. */
    Py_ssize_t flat_offset;
} ExtType_API;

/* The smallest API struct this header accepts: ABI v1 up to
   foreign_registry. Appended fields are optional. */
#define EXTTYPE__API_MIN_SIZE (offsetof(ExtType_API, foreign_registry) + sizeof(ExtType_Table **))
/* Whether `api` (struct_size already checked >= EXTTYPE__API_MIN_SIZE) has `field`. */
#define EXTTYPE__API_HAS(api, field) \
    ((size_t)(api)->struct_size >= offsetof(ExtType_API, field) + sizeof((api)->field))

/* ---------------------------------------------------------------------- */
/* Per-extension state (internal)                                         */
/* ---------------------------------------------------------------------- */

/* Filled by ExtType_Import(); the fast path reads metaclass and
   flat_offset from here (one cache line). */
typedef struct ExtType__Cache {
    PyTypeObject *metaclass;
    Py_ssize_t table_offset;
    /* Where a type cache entry's word is: offsetof flat when the runtime
       fills it (its API struct has flat_offset), else offsetof table. */
    Py_ssize_t type_cache_word_offset;
    const ExtType_API *api;
    Py_ssize_t ob_type_offset; /* api->ob_type_offset, or 0 */
    /* The type cache (api->type_cache, 64 - api->type_cache_bits,
       api->version_tag_offset). */
    const ExtType_TypeCacheEntry *type_cache;
    uint32_t type_cache_shift;
    int32_t version_tag_offset;
    /* api->flat_offset, or api->table_offset for a runtime without it. */
    Py_ssize_t flat_offset;
} ExtType__Cache;

#if defined(EXTTYPE_API_UNIQUE_SYMBOL)
#  define EXTTYPE__CACHE EXTTYPE_API_UNIQUE_SYMBOL
#  if defined(EXTTYPE_NO_IMPORT)
extern ExtType__Cache EXTTYPE__CACHE;
#  else
ExtType__Cache EXTTYPE__CACHE = {NULL, 0, 0, NULL, 0, NULL, 0, 0, 0};
#  endif
#else
#  define EXTTYPE__CACHE ExtType__cache
static ExtType__Cache ExtType__cache = {NULL, 0, 0, NULL, 0, NULL, 0, 0, 0};
#endif

/* Acquire load of a pointer (C99, C11 and C++ alike). */
#if defined(__GNUC__) || defined(__clang__)
#  define EXTTYPE__LOAD_ACQUIRE(pp) __atomic_load_n((pp), __ATOMIC_ACQUIRE)
#  define EXTTYPE__LIKELY(x) __builtin_expect(!!(x), 1)
#  define EXTTYPE__LOAD_RELAXED(p) __atomic_load_n((p), __ATOMIC_RELAXED)
#  define EXTTYPE__LOAD_RELAXED_U64(p) __atomic_load_n((p), __ATOMIC_RELAXED)
#  define EXTTYPE__LOAD_ACQUIRE_U32(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#  define EXTTYPE__FENCE_ACQUIRE() __atomic_thread_fence(__ATOMIC_ACQUIRE)
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
   /* Aligned word loads are single-copy atomic on MSVC targets; the fence
      below keeps the compiler from moving them across it. */
#  define EXTTYPE__LOAD_RELAXED(p) (*(p))
   /* One 64-bit load even on 32-bit x86 (a plain read could tear or be
      repeated; a torn flat_k1 would only cost a miss, never a wrong
      pointer, but the reader loads it once). */
#  define EXTTYPE__LOAD_RELAXED_U64(p) ((uint64_t)__iso_volatile_load64((const volatile __int64 *)(p)))
#  if defined(_M_ARM64) || defined(_M_ARM64EC)
#    define EXTTYPE__LOAD_ACQUIRE_U32(p) ((uint32_t)__ldar32((unsigned __int32 volatile *)(p)))
#    define EXTTYPE__FENCE_ACQUIRE() __dmb(_ARM64_BARRIER_ISHLD)
#  else
#    define EXTTYPE__LOAD_ACQUIRE_U32(p) ExtType__load_acquire_u32_msvc(p)
static __forceinline uint32_t ExtType__load_acquire_u32_msvc(const uint32_t *p)
{
    uint32_t v = *(const volatile uint32_t *)p;
    _ReadWriteBarrier();
    return v;
}
#    define EXTTYPE__FENCE_ACQUIRE() _ReadWriteBarrier()
#  endif
#else
#  error "extensibletype.h: no acquire load for this compiler (needs GCC/Clang builtins or MSVC)"
#endif

/* The lookup functions below are forced inline: with a few call sites
   gcc -O2 would otherwise emit ExtType_FindInType out of line (a call, and
   its prologue, on every lookup). Only the slow path (api->find_slow, an
   indirect call) stays out of line. */
#if defined(__GNUC__) || defined(__clang__)
#  define EXTTYPE__INLINE static inline __attribute__((always_inline))
#elif defined(_MSC_VER)
#  define EXTTYPE__INLINE static __forceinline
#else
#  define EXTTYPE__INLINE static inline
#endif

/* ---------------------------------------------------------------------- */
/* Lookup: no GIL needed                                                  */
/* ---------------------------------------------------------------------- */

/* type(o), borrowed. Where Py_TYPE() is an exported function (limited API
   3.14+, which abi3t implies) and the runtime measured ob_type's offset at
   import on this interpreter, a relaxed load at that offset (what Py_TYPE()
   itself does); otherwise Py_TYPE(). No GIL needed. */
#if defined(Py_LIMITED_API) && Py_LIMITED_API + 0 >= 0x030e0000
#  define EXTTYPE__TYPE_INLINE 1
EXTTYPE__INLINE PyTypeObject *ExtType__TypeOf(PyObject *o)
{
    Py_ssize_t off = EXTTYPE__CACHE.ob_type_offset;
    if (EXTTYPE__LIKELY(off != 0)) {
        return EXTTYPE__LOAD_RELAXED((PyTypeObject **)(void *)((char *)o + off));
    }
    return Py_TYPE(o);
}
#else
#  define EXTTYPE__TYPE_INLINE 0
#  define ExtType__TypeOf(o) Py_TYPE(o)
#endif

/* The displacements d[] of a table. */
EXTTYPE__INLINE const uint16_t *ExtType_TableDisplacements(const ExtType_Table *table)
{
    return (const uint16_t *)(const void *)(table + 1);
}

/* The entries[] of a table (table->size of them). */
EXTTYPE__INLINE const ExtType_Entry *ExtType_TableEntries(const ExtType_Table *table)
{
    return (const ExtType_Entry *)(const void *)((const char *)table + table->entries_offset);
}

/* Probe one table: the pointer stored under `id`, or NULL. The ABI v1
   lookup, branch-free: the hit test is a mask (a conditional move), so a
   lookup has no data-dependent jump.
   No GIL; `table` must be live (a published table lives as long as its
   type). */
EXTTYPE__INLINE void *ExtType_TableFind(const ExtType_Table *table, uint64_t id)
{
    uint64_t slot = (id * table->k1) >> table->s;
    uint64_t bin = (id * table->k2) >> table->t;
    const ExtType_Entry *e = ExtType_TableEntries(table) + (slot ^ ExtType_TableDisplacements(table)[bin]);
    uintptr_t hit = (uintptr_t)0 - (uintptr_t)(e->id == id);
    return (void *)((uintptr_t)e->ptr & hit);
}

/* The current table of an extensible type (acquire load), NULL when empty or
   not initialised. `tp`'s metaclass must be ExtensibleType or a subclass.
   (ExtType_FindInType reads the same table through its flat descriptor.) */
EXTTYPE__INLINE const ExtType_Table *ExtType_LoadTable(PyTypeObject *tp, Py_ssize_t table_offset)
{
    ExtType_Table **slot = (ExtType_Table **)(void *)((char *)tp + table_offset);
    return EXTTYPE__LOAD_ACQUIRE(slot);
}

/* Low bits of a descriptor word holding s - 4 (the entries are 64-byte
   aligned); 0 in a word that is a v1 table pointer. */
#define EXTTYPE__DESCRIPTOR_SHIFT_MASK ((uintptr_t)63)
/* Byte offset of entries[0] in a flat table (header and 16 zero bins). */
#define EXTTYPE__FLAT_ENTRIES_OFFSET 64

/* The descriptor word of an extensible type (acquire load): see
   ExtType_TypeData. `tp`'s metaclass must be ExtensibleType or a subclass.
   Against a runtime without flat descriptors, flat_offset is table_offset
   and this is the v1 table pointer. */
EXTTYPE__INLINE uintptr_t ExtType__LoadDescriptor(PyTypeObject *tp)
{
    ExtType_Table **slot = (ExtType_Table **)(void *)((char *)tp + EXTTYPE__CACHE.flat_offset);
    return (uintptr_t)EXTTYPE__LOAD_ACQUIRE(slot);
}

/* Probe a flat table through a descriptor word with non-zero low bits:
   entries[(id * k1) >> s], whose byte offset is ((id * k1) >> (s - 4)) & ~15
   (inside the table whatever k1 is: s travels in the word). `k1` may come
   from another publication than `word`; the table's own k1 (loaded beside
   the entry) decides, and on a mismatch the table is probed with its own
   header. Branch-free hit test. No GIL. */
EXTTYPE__INLINE void *ExtType__DescriptorFind(uintptr_t word, uint64_t k1, uint64_t id)
{
    const char *entries = (const char *)(word & ~EXTTYPE__DESCRIPTOR_SHIFT_MASK);
    const ExtType_Table *table = (const ExtType_Table *)(const void *)(entries - EXTTYPE__FLAT_ENTRIES_OFFSET);
    const ExtType_Entry *e = (const ExtType_Entry *)(const void *)(
        entries + (size_t)(((id * k1) >> (word & EXTTYPE__DESCRIPTOR_SHIFT_MASK)) & ~(uint64_t)15));
    uintptr_t hit = (uintptr_t)0 - (uintptr_t)(e->id == id);
    if (table->k1 != k1) {
        return ExtType_TableFind(table, id); /* a torn pair: a republish raced us */
    }
    return (void *)((uintptr_t)e->ptr & hit);
}

/* The descriptor word of the table a lookup on `tp` probes according to
   the runtime's type cache (a flat table's &entries[0] | (s - 4), or the
   table itself, low bits 0), or 0 (ask api->find_slow, which fills the
   entry). One entry read under its seqlock, plus tp->tp_version_tag; no
   lock, no GIL. ExtType_Import() must have succeeded. */
EXTTYPE__INLINE uintptr_t ExtType__CachedWord(PyTypeObject *tp)
{
    const ExtType_TypeCacheEntry *e = EXTTYPE__CACHE.type_cache +
        (((uint64_t)(uintptr_t)tp * EXTTYPE_TYPE_CACHE_HASH_MULT) >> EXTTYPE__CACHE.type_cache_shift);
    uint32_t seq = EXTTYPE__LOAD_ACQUIRE_U32(&e->seq);
    PyTypeObject *etype = EXTTYPE__LOAD_RELAXED(&e->tp);
    uint32_t etag = EXTTYPE__LOAD_RELAXED(&e->tag);
    uintptr_t word = EXTTYPE__LOAD_RELAXED(
        (const uintptr_t *)(const void *)((const char *)e + EXTTYPE__CACHE.type_cache_word_offset));
    uint32_t tag;
    EXTTYPE__FENCE_ACQUIRE();
    tag = EXTTYPE__LOAD_RELAXED((const uint32_t *)(const void *)((const char *)tp + EXTTYPE__CACHE.version_tag_offset));
    /* One test for all four conditions (fewer instructions on the path of
       every foreign type): seq unchanged and even, tag and type equal. */
    if (((uintptr_t)((seq ^ EXTTYPE__LOAD_RELAXED(&e->seq)) | (seq & 1u) | (etag ^ tag)) |
         ((uintptr_t)etype ^ (uintptr_t)tp)) == 0) {
        return word;
    }
    return 0;
}

/* The v1 table a descriptor word names (a flat table's header, or the
   table itself), NULL for 0. */
EXTTYPE__INLINE const ExtType_Table *ExtType__DescriptorTable(uintptr_t word)
{
    if ((word & EXTTYPE__DESCRIPTOR_SHIFT_MASK) != 0) {
        return (const ExtType_Table *)(const void *)(
            (const char *)(word & ~EXTTYPE__DESCRIPTOR_SHIFT_MASK) - EXTTYPE__FLAT_ENTRIES_OFFSET);
    }
    return (const ExtType_Table *)word;
}

/* The table a lookup on `tp` probes according to the runtime's type cache
   (the table of ExtType__CachedWord), or NULL (ask api->find_slow). For
   consumers that probe several ids on one type. No GIL. */
EXTTYPE__INLINE const ExtType_Table *ExtType__CachedTable(PyTypeObject *tp)
{
    return ExtType__DescriptorTable(ExtType__CachedWord(tp));
}

/* Find the implementation registered under `id` on type `tp` (its own
   slots, its bases' in MRO order, or the foreign registry): the pointer, or
   NULL when absent.
   Needs NO GIL and no thread state; the caller holds a strong reference to
   `tp` (or to an instance of it). Never sets an exception.
   ExtType_Import() must have succeeded; before that, returns NULL. */
EXTTYPE__INLINE void *ExtType_FindInType(PyTypeObject *tp, uint64_t id)
{
    if (EXTTYPE__LIKELY(ExtType__TypeOf((PyObject *)tp) == EXTTYPE__CACHE.metaclass)) {
        /* One word describes the table (ExtType_TypeData): a flat table is
           probed in one level, any other with the v1 formula. */
        uintptr_t word = ExtType__LoadDescriptor(tp);
        if (EXTTYPE__LIKELY((word & EXTTYPE__DESCRIPTOR_SHIFT_MASK) != 0)) {
            const uint64_t *k1 = (const uint64_t *)(const void *)(
                (const char *)tp + EXTTYPE__CACHE.flat_offset +
                (offsetof(ExtType_TypeData, flat_k1) - offsetof(ExtType_TypeData, flat)));
            return ExtType__DescriptorFind(word, EXTTYPE__LOAD_RELAXED_U64(k1), id);
        }
        if (word != 0) {
            return ExtType_TableFind((const ExtType_Table *)word, id);
        }
    }
    if (EXTTYPE__CACHE.api == NULL) {
        return NULL;
    }
    /* Any other type (foreign, registered or not, their subclasses,
       sub-metaclasses, empty or never-initialised classes): the runtime's
       type cache names the table to probe; on a cache miss, the slow path
       answers and fills the entry. */
    {
        uintptr_t word = ExtType__CachedWord(tp);
        if (EXTTYPE__LIKELY((word & EXTTYPE__DESCRIPTOR_SHIFT_MASK) != 0)) {
            /* word and its table are one snapshot (read under the entry's
               seqlock): the table's own k1 is the pair's. */
            return ExtType__DescriptorFind(word, ExtType__DescriptorTable(word)->k1, id);
        }
        if (word != 0) {
            return ExtType_TableFind((const ExtType_Table *)word, id);
        }
    }
    return EXTTYPE__CACHE.api->find_slow(tp, id);
}

/* Find the implementation registered under `id` on type(obj), or NULL.
   Needs NO GIL and no thread state; the caller holds a strong reference to
   `obj` (a borrowed reference is fine if someone keeps obj alive for the
   duration). Never sets an exception. */
EXTTYPE__INLINE void *ExtType_Find(PyObject *obj, uint64_t id)
{
    return ExtType_FindInType(ExtType__TypeOf(obj), id);
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
    /* Only abi_version and struct_size are read before they are checked;
       appended fields only when struct_size covers them. */
    if (api->abi_version != EXTTYPE_ABI_VERSION || api->struct_size < (uint32_t)EXTTYPE__API_MIN_SIZE) {
        PyErr_Format(PyExc_ImportError,
                     "extensibletype: the runtime loaded in this process has ABI version %u "
                     "(API struct of %u bytes), but this extension was compiled against "
                     "extensibletype.h ABI version %d (API struct of at least %u bytes); "
                     "rebuild it against a matching extensibletype",
                     (unsigned)api->abi_version, (unsigned)api->struct_size,
                     EXTTYPE_ABI_VERSION, (unsigned)EXTTYPE__API_MIN_SIZE);
        return -1;
    }
    if (EXTTYPE__API_HAS(api, version_tag_offset) &&
        (api->type_cache == NULL || api->type_cache_bits < 1 || api->type_cache_bits > 32)) {
        PyErr_SetString(PyExc_ImportError, "extensibletype: the runtime's API struct has no valid type cache");
        return -1;
    }
    /* Everything checked: fill the cache (api last: it says "imported"). */
    EXTTYPE__CACHE.ob_type_offset = EXTTYPE__API_HAS(api, ob_type_offset) ? api->ob_type_offset : 0;
    EXTTYPE__CACHE.metaclass = api->metaclass;
    EXTTYPE__CACHE.table_offset = api->table_offset;
    EXTTYPE__CACHE.flat_offset = EXTTYPE__API_HAS(api, flat_offset) ? api->flat_offset : api->table_offset;
    EXTTYPE__CACHE.type_cache_word_offset = EXTTYPE__API_HAS(api, flat_offset)
        ? (Py_ssize_t)offsetof(ExtType_TypeCacheEntry, flat) : (Py_ssize_t)offsetof(ExtType_TypeCacheEntry, table);
    if (EXTTYPE__API_HAS(api, version_tag_offset)) {
        EXTTYPE__CACHE.type_cache = api->type_cache;
        EXTTYPE__CACHE.type_cache_shift = 64u - api->type_cache_bits;
        EXTTYPE__CACHE.version_tag_offset = api->version_tag_offset;
    } else {
        /* A runtime from before the type cache: probe two empty entries
           (their type is NULL, so every probe misses and find_slow answers;
           offset 0 of a type object is always readable). */
        static const ExtType_TypeCacheEntry no_type_cache[2] = {{0u, 0u, NULL, NULL, 0u}, {0u, 0u, NULL, NULL, 0u}};
        EXTTYPE__CACHE.type_cache = no_type_cache;
        EXTTYPE__CACHE.type_cache_shift = 63u;
        EXTTYPE__CACHE.version_tag_offset = 0;
    }
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

/* Internal: the error of a function that needs the runtime, called before
   ExtType_Import() succeeded (in this TU, or in the EXTTYPE_API_UNIQUE_SYMBOL
   TU). Needs the GIL (only functions that need it call this). */
static inline void ExtType__NotImported(const char *function)
{
    PyErr_Format(PyExc_RuntimeError,
                 "extensibletype: %s() called before ExtType_Import(); call ExtType_Import() "
                 "once, with the GIL, before any other ExtType_* function (e.g. in your module's init)",
                 function);
}

/* Add, override (ptr != NULL) or remove (ptr == NULL) `n` slots of `type`.
   Any type: an extensible type gets a new table (republished for its
   subclasses); another type (e.g. bytearray) is registered in the foreign
   registry, which keeps it alive. Pointers are borrowed: whatever they point
   to must outlive the type (static functions/data, or keep it alive yourself).
   Needs the GIL. `type` is borrowed. Returns 0, or -1 with an exception set
   (TypeError: not a type; ValueError: id 0, key/id mismatch, 64-bit key
   collision, too many entries; RuntimeError: called before ExtType_Import());
   on error nothing changed. */
static inline int ExtType_SetSlots(PyObject *type, const ExtType_SlotDef *defs, Py_ssize_t n)
{
    if (EXTTYPE__CACHE.api == NULL) {
        ExtType__NotImported("ExtType_SetSlots");
        return -1;
    }
    return EXTTYPE__CACHE.api->set_slots(type, defs, n);
}

/* Create a heap type from `spec` whose metaclass is ExtensibleType (like
   PyType_FromModuleAndSpec(module, spec, bases); `module` and `bases` are
   borrowed and may be NULL) and give it the `n` slots `defs` (pointers as in
   ExtType_SetSlots). On CPython 3.11 (no PyType_FromMetaclass) the result is
   a same-named subclass, with __slots__ = (), of a type built from spec
   (which keeps the spec's Py_TPFLAGS_BASETYPE setting). Needs the GIL.
   Returns a NEW reference, or NULL with an exception set (RuntimeError when
   called before ExtType_Import()). */
static inline PyObject *ExtType_FromSpec(PyObject *module, PyType_Spec *spec, PyObject *bases,
                                         const ExtType_SlotDef *defs, Py_ssize_t n)
{
    if (EXTTYPE__CACHE.api == NULL) {
        ExtType__NotImported("ExtType_FromSpec");
        return NULL;
    }
    return EXTTYPE__CACHE.api->from_spec(module, spec, bases, defs, n);
}

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* EXTENSIBLETYPE_H */
