/*
 * Prototype of a faster table format, measured against ABI v1 in one run
 * (extension module `_et_tablev2`, driven by benches/c/tablev2.py; run
 * `bash benches/c/tablev2.sh`). It is the evidence for docs/benchmarks.md,
 * "A faster table"; the design shipped (docs/spec.md §2.4 and §3), and
 * benches/c/latency.c measures the shipped lookup. This file is compiled
 * against the header as it was before (tests/abi/frozen-abi1): its fake
 * types carry only what that header reads.
 *
 * ABI v1's hit path is 6 serial loads: the object, its ob_type, the type
 * data's `table`, the table header (k1, k2, s, t), d[bin], the entry. The
 * prototype removes two of them:
 *
 *   flat table   a v1 table with B = 16 bins and d[] all 0: a VALID ABI v1
 *                table (a v1 consumer probes it with the v1 formula and gets
 *                the right answer), whose lookup is also, with no d[] load,
 *                entries[(id * k1) >> s]. Built when a multiplier k1 that
 *                is collision-free on the id set exists within a budget;
 *                otherwise the type has no flat table (v1 path).
 *   descriptor   16 bytes appended to the type data: {&entries[0] | s - 4,
 *                k1}. entries[] is 64-byte aligned, so s - 4 (44..59) rides
 *                in the pointer's low 6 bits: the index is always bounded
 *                by the block the pointer names, whatever k1 a racing reader saw.
 *                A reader that saw a k1 other than the block's own (a
 *                concurrent republish) notices it with one load from the
 *                block's header (parallel with the entry load) and
 *                probes the block with its own header. Lock-free, no
 *                seqlock, old consumers untouched. A type without a flat
 *                block (over the size cap) has its v1 table in the same
 *                word (low bits 0).
 *
 * (The first entries share no line with the header: 16 bytes more per
 * table than B = 2, entries at 48, which needs one more add per lookup.)
 *
 * Variants (all start from an object and go through the same loop):
 *   floor         no lookup: the loop's own chain (the order array and the
 *                 object load), subtracted to get a lookup's own latency
 *   vtable        obj -> type -> vtable pointer -> vtable[k] (no check)
 *   v1            the header's ExtType_Find on types whose type data holds
 *                 a table built by the runtime (copied from a real class)
 *   v1_flat       the header's ExtType_Find on the flat block (what an old
 *                 consumer runs on the proposed tables)
 *   hdr_flat      type data `table` -> header -> entry: the flat block
 *                 flagged in the header's reserved field (d[] load skipped)
 *   fields        v1's two-level table with k1, k2, s, t, entries_offset
 *                 copied next to the table pointer (d[] load kept)
 *   v2            the descriptor: {entries | s - 4, k1} -> entry, with the torn
 *                 read check (the proposal)
 *   v2_nocheck    the same without the check (lower bound, not safe)
 *   v1_real       the header's ExtType_Find on the real runtime classes
 *                 (harness check: must match v1)
 *
 * The fake type objects are zeroed blocks laid out like a type object: the
 * metaclass at ob_type, ExtType_TypeData at api->table_offset (then the
 * prototype's fields), allocated 16 bytes past a 64-byte boundary like a GC
 * object; the header's fast path cannot tell them from real types.
 *
 * Every variant is checked before it is timed: each (type, key) finds its
 * registered pointer, each miss id finds NULL (`verify`); `selfcheck` builds
 * flat tables for random id sets and checks old and new lookups on them,
 * including simulated torn descriptors; `stress` races lookups against a
 * thread that republishes the descriptor.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "extensibletype.h"
#include "bench_common.h" /* NOINLINE, LAUNDER, ZERO_DEPENDENCY, loops, timing */

#define UNLIKELY(x) __builtin_expect(!!(x), 0)

#define NTYPES 8
#define NKMAX 1024
#define ORDER_LEN 4096

/* ---- The prototype format --------------------------------------------- */

/* Flat block: an ABI v1 table with B = 16 bins (t = 60), d[] all 0, so that
   entries[] starts at 64, on a cache line of its own: the descriptor can
   point at entries[0] and keep s - 4 in its low bits. */
#define FLAT_ENTRIES_OFFSET 64
/* Value of the v1 header's `reserved` field marking a flat block (hdr_flat). */
#define FLAT_FLAG 1

/* Appended to ExtType_TypeData (at table_offset + 24). */
typedef struct {
    uintptr_t block_s; /* &entries[0] of a flat block (64-byte aligned) | (s - 4);
                          else the v1 table (low bits 0); 0 = none */
    uint64_t k1;       /* the block's k1 */
} V2Desc;

/* Variant "fields": v1's header copied next to the pointer. */
typedef struct {
    const ExtType_Table *table;
    uint64_t k1, k2;
    uint8_t s, t;
    uint32_t entries_offset;
} FieldsDesc;

static inline const void *type_data(PyTypeObject *tp)
{
    return (const char *)tp + EXTTYPE__CACHE.table_offset;
}

#define EXT(tp) (void *)((const char *)type_data(tp) + sizeof(ExtType_TypeData))

/* The proposal's lookup on one type: the descriptor's word gives the block
   and s - 4, so ((id * k1) >> (s - 4)) & ~15 is the entry's byte offset
   (no shift back by 4, no scaled index). A word whose low 6 bits are 0 is a
   type without a flat block: the word is then its v1 table (64-byte
   aligned), probed with its own header, so such types pay one predicted
   test and no extra load; 0 = no table (the v1 slow path). */
#define V2_FLAT_ENTRY(w, k1, id) \
    ((const ExtType_Entry *)((const char *)((w) & ~(uintptr_t)63) + ((((id) * (k1)) >> ((w) & 63)) & ~(uint64_t)15)))

static inline void *v2_find_in_type(PyTypeObject *tp, uint64_t id)
{
    if (__builtin_expect(Py_TYPE((PyObject *)tp) == EXTTYPE__CACHE.metaclass, 1)) {
        const V2Desc *d = (const V2Desc *)EXT(tp);
        uintptr_t w = __atomic_load_n(&d->block_s, __ATOMIC_ACQUIRE);
        uint64_t k1 = __atomic_load_n(&d->k1, __ATOMIC_RELAXED);
        if (__builtin_expect((w & 63) != 0, 1)) {
            const ExtType_Table *block = (const ExtType_Table *)((w & ~(uintptr_t)63) - FLAT_ENTRIES_OFFSET);
            const ExtType_Entry *e = V2_FLAT_ENTRY(w, k1, id);
            uintptr_t hit = (uintptr_t)0 - (uintptr_t)(e->id == id);
            /* A k1 newer or older than the block (a republish raced us): the
               offset was in bounds (s came with the block) but maybe not this
               block's; probe it with its own header. One load from the line
               before entries[0], independent of the entry load. */
            if (UNLIKELY(block->k1 != k1)) {
                return ExtType_TableFind(block, id);
            }
            return (void *)((uintptr_t)e->ptr & hit);
        }
        if (__builtin_expect(w != 0, 1)) {
            return ExtType_TableFind((const ExtType_Table *)w, id);
        }
    }
    return ExtType_FindInType(tp, id);
}

/* The same without the torn-read check: the lower bound of the format. */
static inline void *v2_nocheck_find_in_type(PyTypeObject *tp, uint64_t id)
{
    if (__builtin_expect(Py_TYPE((PyObject *)tp) == EXTTYPE__CACHE.metaclass, 1)) {
        const V2Desc *d = (const V2Desc *)EXT(tp);
        uintptr_t w = __atomic_load_n(&d->block_s, __ATOMIC_ACQUIRE);
        uint64_t k1 = __atomic_load_n(&d->k1, __ATOMIC_RELAXED);
        if (__builtin_expect((w & 63) != 0, 1)) {
            const ExtType_Entry *e = V2_FLAT_ENTRY(w, k1, id);
            uintptr_t hit = (uintptr_t)0 - (uintptr_t)(e->id == id);
            return (void *)((uintptr_t)e->ptr & hit);
        }
        if (__builtin_expect(w != 0, 1)) {
            return ExtType_TableFind((const ExtType_Table *)w, id);
        }
    }
    return ExtType_FindInType(tp, id);
}

/* Single level, header in the block: the v1 `table` pointer, a flag in the
   header's reserved field, no d[] load for flagged blocks. */
static inline void *hdr_flat_find_in_type(PyTypeObject *tp, uint64_t id)
{
    if (__builtin_expect(Py_TYPE((PyObject *)tp) == EXTTYPE__CACHE.metaclass, 1)) {
        const ExtType_Table *table = ExtType_LoadTable(tp, EXTTYPE__CACHE.table_offset);
        if (__builtin_expect(table != NULL, 1)) {
            if (__builtin_expect(table->reserved == FLAT_FLAG, 1)) {
                const ExtType_Entry *e =
                    (const ExtType_Entry *)((const char *)table + FLAT_ENTRIES_OFFSET) + ((id * table->k1) >> table->s);
                uintptr_t hit = (uintptr_t)0 - (uintptr_t)(e->id == id);
                return (void *)((uintptr_t)e->ptr & hit);
            }
            return ExtType_TableFind(table, id);
        }
    }
    return ExtType_FindInType(tp, id);
}

/* v1's two-level lookup with the header's fields next to the pointer
   (measurement only: four fields cannot be published atomically). */
static inline void *fields_find_in_type(PyTypeObject *tp, uint64_t id)
{
    if (__builtin_expect(Py_TYPE((PyObject *)tp) == EXTTYPE__CACHE.metaclass, 1)) {
        const FieldsDesc *f = (const FieldsDesc *)EXT(tp);
        const char *table = (const char *)f->table;
        if (__builtin_expect(table != NULL, 1)) {
            uint64_t slot = (id * f->k1) >> f->s;
            uint64_t bin = (id * f->k2) >> f->t;
            const ExtType_Entry *e = (const ExtType_Entry *)(table + f->entries_offset) +
                                     (slot ^ ((const uint16_t *)(table + EXTTYPE_TABLE_HEADER_SIZE))[bin]);
            uintptr_t hit = (uintptr_t)0 - (uintptr_t)(e->id == id);
            return (void *)((uintptr_t)e->ptr & hit);
        }
    }
    return ExtType_FindInType(tp, id);
}

/* ---- Flat builder ------------------------------------------------------ */

static uint64_t splitmix64(uint64_t x)
{
    x += 0x9E3779B97F4A7C15u;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9u;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBu;
    return x ^ (x >> 31);
}

typedef struct {
    int log_m;      /* log2 of the number of slots */
    int attempts;   /* multipliers tried in all */
    uint64_t probes; /* keys hashed in all (the build's work) */
} FlatStats;

static uint32_t stamp_buf[1u << 16];
static uint32_t stamp_now;

/* A flat block for ids[0..n) -> ptrs (distinct non-zero ids, non-NULL
   pointers): the smallest m = 2^log_m >= max(n, 2) for which one of
   `attempts` multipliers is injective, trying m, 2m, ... up to 2^max_log_m.
   NULL when none is (the type keeps its v1 table only). Deterministic in
   the id set. The block is 64-byte aligned; free() it. */
static ExtType_Table *flat_build(const uint64_t *ids, void *const *ptrs, int n, int attempts, int max_log_m,
                                 FlatStats *st)
{
    uint64_t seed = (uint64_t)n;
    int log_m, a, i;
    FlatStats local = {0, 0, 0};
    for (i = 0; i < n; i++) {
        seed += splitmix64(ids[i]);
    }
    log_m = 1;
    while ((1 << log_m) < n) {
        log_m++;
    }
    for (; log_m <= max_log_m; log_m++) {
        unsigned s = 64u - (unsigned)log_m;
        for (a = 0; a < attempts; a++) {
            uint64_t k1 = splitmix64(seed + (uint64_t)log_m * 0x10000u + (uint64_t)a) | 1u;
            int ok = 1;
            local.attempts++;
            if (++stamp_now == 0) {
                memset(stamp_buf, 0, sizeof stamp_buf);
                stamp_now = 1;
            }
            for (i = 0; i < n; i++) {
                uint64_t slot = (ids[i] * k1) >> s;
                local.probes++;
                if (stamp_buf[slot] == stamp_now) {
                    ok = 0;
                    break;
                }
                stamp_buf[slot] = stamp_now;
            }
            if (ok) {
                size_t m = (size_t)1 << log_m;
                size_t bytes = (FLAT_ENTRIES_OFFSET + 16 * m + 63) & ~(size_t)63;
                ExtType_Table *t = aligned_alloc(64, bytes);
                ExtType_Entry *ent;
                if (t == NULL) {
                    return NULL;
                }
                memset(t, 0, bytes);
                t->k1 = k1;
                t->k2 = 1;     /* any: every displacement is 0 */
                t->s = (uint8_t)s;
                t->t = 60;     /* B = 16 bins: entries_offset = 32 + 2 * 16 = 64 */
                t->reserved = 0;
                t->count = (uint32_t)n;
                t->size = (uint32_t)m;
                t->entries_offset = FLAT_ENTRIES_OFFSET;
                ent = (ExtType_Entry *)((char *)t + FLAT_ENTRIES_OFFSET);
                for (i = 0; i < n; i++) {
                    ExtType_Entry *e = ent + ((ids[i] * k1) >> s);
                    e->id = ids[i];
                    e->ptr = ptrs[i];
                }
                local.log_m = log_m;
                if (st) {
                    *st = local;
                }
                return t;
            }
        }
    }
    local.log_m = -1;
    if (st) {
        *st = local;
    }
    return NULL;
}

static size_t flat_bytes(int log_m)
{
    return FLAT_ENTRIES_OFFSET + ((size_t)16 << log_m);
}

/* Bytes of an ABI v1 table as the runtime lays it out. */
static size_t v1_bytes(const ExtType_Table *t)
{
    return (size_t)t->entries_offset + 16 * (size_t)t->size;
}

/* ---- The population ----------------------------------------------------- */

enum { V_FLOOR, V_VTABLE, V_V1, V_V1_FLAT, V_HDR_FLAT, V_FIELDS, V_V2, V_V2_NOCHECK, V_V1_REAL, NVARIANTS };
static const char *variant_names[NVARIANTS] = {"floor", "vtable", "v1", "v1_flat", "hdr_flat",
                                               "fields", "v2", "v2_nocheck", "v1_real"};

static int cur_n;                       /* keys per type */
static uint64_t hit_ids[NKMAX], miss_ids[NKMAX];
static char ptr_pool[NTYPES][NKMAX];    /* registered pointers: &ptr_pool[t][k] */
static void *vtables[NTYPES][NKMAX];
static PyObject *real_types[NTYPES], *real_objs[NTYPES];
static PyObject *real_keep;             /* list: every real type ever made */
static PyObject *objs[NVARIANTS][NTYPES];
static ExtType_Table *flat_tables[NTYPES];
static FlatStats flat_stats[NTYPES];
static int have_flat;                   /* every type got a flat block */

typedef struct {
    uint16_t t, k;
} pair;
static pair order[ORDER_LEN];

static uint64_t rng_state = 0x243F6A8885A308D3u;
static uint64_t rng(void)
{
    return bench_xorshift64(&rng_state);
}

/* One fake object and type: {refcnt, ob_type} and a zeroed type-sized
   block whose ob_type is the metaclass. Never freed (the benchmark's
   objects live for the process). */
static PyObject *fake_object(void **type_data_out)
{
    size_t tsize = (size_t)EXTTYPE__CACHE.table_offset + sizeof(ExtType_TypeData) + 64;
    char *mem = aligned_alloc(64, (16 + tsize + 63) & ~(size_t)63);
    PyObject *tp, *obj;
    if (mem == NULL) {
        return NULL;
    }
    memset(mem, 0, (16 + tsize + 63) & ~(size_t)63);
    tp = (PyObject *)(mem + 16); /* like a GC object: 16-byte header before it */
    Py_SET_REFCNT(tp, 1);
    Py_SET_TYPE(tp, EXTTYPE__CACHE.metaclass);
    obj = calloc(1, 64);
    if (obj == NULL) {
        return NULL;
    }
    Py_SET_REFCNT(obj, 1);
    Py_SET_TYPE(obj, (PyTypeObject *)tp);
    *type_data_out = (char *)tp + EXTTYPE__CACHE.table_offset;
    return obj;
}

static PyObject *make_real_type(int t, int n, const char *const *keys)
{
    PyType_Slot slots[1] = {{0, NULL}};
    PyType_Spec spec;
    ExtType_SlotDef *defs = PyMem_Calloc((size_t)n, sizeof *defs);
    PyObject *tp;
    int k;
    static const char *names[NTYPES] = {"tablev2.T0", "tablev2.T1", "tablev2.T2", "tablev2.T3",
                                        "tablev2.T4", "tablev2.T5", "tablev2.T6", "tablev2.T7"};
    if (defs == NULL) {
        return PyErr_NoMemory();
    }
    for (k = 0; k < n; k++) {
        defs[k].key = keys ? keys[k] : NULL;
        defs[k].id = hit_ids[k];
        defs[k].ptr = &ptr_pool[t][k];
    }
    spec.name = names[t];
    spec.basicsize = (int)sizeof(PyObject);
    spec.itemsize = 0;
    spec.flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE;
    spec.slots = slots;
    tp = ExtType_FromSpec(NULL, &spec, NULL, defs, n);
    PyMem_Free(defs);
    return tp;
}

static void *lookup(int v, PyObject *obj, int k, uint64_t id)
{
    switch (v) {
    case V_FLOOR: return obj;
    case V_VTABLE: return (*(void *const *const *)EXT(Py_TYPE(obj)))[k];
    case V_V1: case V_V1_FLAT: case V_V1_REAL: return ExtType_Find(obj, id);
    case V_HDR_FLAT: return hdr_flat_find_in_type(Py_TYPE(obj), id);
    case V_FIELDS: return fields_find_in_type(Py_TYPE(obj), id);
    case V_V2: return v2_find_in_type(Py_TYPE(obj), id);
    default: return v2_nocheck_find_in_type(Py_TYPE(obj), id);
    }
}

/* Every variant: each registered (type, key) gives its pointer, each miss
   id NULL (vtable: hits only). */
static int verify(void)
{
    int v, t, k;
    for (v = V_VTABLE; v < NVARIANTS; v++) {
        for (t = 0; t < NTYPES; t++) {
            for (k = 0; k < cur_n; k++) {
                void *got = lookup(v, objs[v][t], k, hit_ids[k]);
                if (got != (void *)&ptr_pool[t][k]) {
                    PyErr_Format(PyExc_AssertionError, "%s: type %d key %d (id %llx) gave %p, registered %p",
                                 variant_names[v], t, k, (unsigned long long)hit_ids[k], got, (void *)&ptr_pool[t][k]);
                    return -1;
                }
                if (v != V_VTABLE && lookup(v, objs[v][t], k, miss_ids[k]) != NULL) {
                    PyErr_Format(PyExc_AssertionError, "%s: type %d miss id %llx did not give NULL",
                                 variant_names[v], t, (unsigned long long)miss_ids[k]);
                    return -1;
                }
            }
        }
    }
    return 0;
}

/* setup(ids, miss_ids, keys_or_None, attempts, max_log_m) -> dict: n types
   with these ids as keys (keys: the key strings, else registered by id).
   Builds real classes through the runtime (its v1 tables), flat blocks with
   the prototype builder, the fake types of every variant; verifies all. */
static PyObject *setup(PyObject *self, PyObject *args)
{
    PyObject *idl, *missl, *keyl;
    int attempts, max_log_m, n, t, k, v;
    const char *keys[NKMAX];
    size_t v1_total = 0, flat_total = 0;
    (void)self;
    if (!PyArg_ParseTuple(args, "O!O!Oii", &PyList_Type, &idl, &PyList_Type, &missl, &keyl, &attempts, &max_log_m)) {
        return NULL;
    }
    n = (int)PyList_GET_SIZE(idl);
    if (n < 1 || n > NKMAX || PyList_GET_SIZE(missl) != n || attempts < 1 || max_log_m < 1 || max_log_m > 16) {
        PyErr_SetString(PyExc_ValueError, "setup: 1 <= n <= 1024 ids, as many miss ids, attempts >= 1, max_log_m in 1..16");
        return NULL;
    }
    if (keyl != Py_None && (!PyList_Check(keyl) || PyList_GET_SIZE(keyl) != n)) {
        PyErr_SetString(PyExc_ValueError, "setup: keys must be None or a list of n str");
        return NULL;
    }
    for (k = 0; k < n; k++) {
        hit_ids[k] = PyLong_AsUnsignedLongLong(PyList_GET_ITEM(idl, k));
        miss_ids[k] = PyLong_AsUnsignedLongLong(PyList_GET_ITEM(missl, k));
        if (PyErr_Occurred()) {
            return NULL;
        }
        if (keyl != Py_None && (keys[k] = PyUnicode_AsUTF8(PyList_GET_ITEM(keyl, k))) == NULL) {
            return NULL;
        }
    }
    cur_n = n;
    if (real_keep == NULL && (real_keep = PyList_New(0)) == NULL) {
        return NULL;
    }
    have_flat = 1;
    for (t = 0; t < NTYPES; t++) {
        void *ptrs[NKMAX];
        /* Freed: the fake types are rewired below and nothing else holds them. */
        free(flat_tables[t]);
        real_types[t] = make_real_type(t, n, keyl != Py_None ? keys : NULL);
        if (real_types[t] == NULL || PyList_Append(real_keep, real_types[t]) < 0) {
            return NULL;
        }
        Py_DECREF(real_types[t]); /* real_keep holds it */
        real_objs[t] = PyType_GenericNew((PyTypeObject *)real_types[t], NULL, NULL);
        if (real_objs[t] == NULL || PyList_Append(real_keep, real_objs[t]) < 0) {
            return NULL;
        }
        Py_DECREF(real_objs[t]);
        v1_total += v1_bytes(ExtType_LoadTable((PyTypeObject *)real_types[t], EXTTYPE__CACHE.table_offset));
        for (k = 0; k < n; k++) {
            ptrs[k] = &ptr_pool[t][k];
            vtables[t][k] = &ptr_pool[t][k];
        }
        flat_tables[t] = flat_build(hit_ids, ptrs, n, attempts, max_log_m, &flat_stats[t]);
        if (flat_tables[t] == NULL) {
            have_flat = 0;
        } else {
            flat_total += flat_bytes(flat_stats[t].log_m);
        }
    }
    for (v = 0; v < NVARIANTS; v++) {
        for (t = 0; t < NTYPES; t++) {
            const ExtType_Table *rt = ExtType_LoadTable((PyTypeObject *)real_types[t], EXTTYPE__CACHE.table_offset);
            const ExtType_Table *flat = flat_tables[t];
            void *tdv;
            ExtType_TypeData *td;
            if (v == V_V1_REAL || v == V_FLOOR) {
                objs[v][t] = real_objs[t];
                continue;
            }
            /* The fake objects of earlier setups are leaked on purpose
               (a few hundred bytes each). */
            if ((objs[v][t] = fake_object(&tdv)) == NULL) {
                return PyErr_NoMemory();
            }
            td = tdv;
            switch (v) {
            case V_VTABLE:
                *(void ***)EXT(Py_TYPE(objs[v][t])) = vtables[t];
                break;
            case V_V1:
                td->table = (ExtType_Table *)rt;
                break;
            case V_V1_FLAT:
                td->table = (ExtType_Table *)(flat ? flat : rt);
                break;
            case V_HDR_FLAT:
                /* Its own copy of the flat block, flagged (reserved = 1). */
                if (flat) {
                    size_t bytes = (flat_bytes(flat_stats[t].log_m) + 63) & ~(size_t)63;
                    ExtType_Table *copy = aligned_alloc(64, bytes);
                    if (copy == NULL) {
                        return PyErr_NoMemory();
                    }
                    memcpy(copy, flat, bytes);
                    copy->reserved = FLAT_FLAG;
                    td->table = copy;
                } else {
                    td->table = (ExtType_Table *)rt;
                }
                break;
            case V_FIELDS: {
                FieldsDesc *f = EXT(Py_TYPE(objs[v][t]));
                td->table = (ExtType_Table *)rt;
                f->table = rt;
                f->k1 = rt->k1;
                f->k2 = rt->k2;
                f->s = rt->s;
                f->t = rt->t;
                f->entries_offset = rt->entries_offset;
                break;
            }
            default: { /* V_V2, V_V2_NOCHECK */
                V2Desc *d = EXT(Py_TYPE(objs[v][t]));
                td->table = (ExtType_Table *)(flat ? flat : rt);
                if (flat) {
                    d->k1 = flat->k1;
                    d->block_s = ((uintptr_t)flat + FLAT_ENTRIES_OFFSET) | (uintptr_t)(flat->s - 4);
                } else {
                    if (((uintptr_t)rt & 63) != 0) {
                        PyErr_SetString(PyExc_AssertionError, "a runtime table is not 64-byte aligned");
                        return NULL;
                    }
                    d->block_s = (uintptr_t)rt; /* low bits 0: "a v1 table" */
                }
                break;
            }
            }
        }
    }
    for (k = 0; k < ORDER_LEN; k++) {
        order[k].t = (uint16_t)(rng() % NTYPES);
        order[k].k = (uint16_t)(rng() % (uint64_t)n);
    }
    if (verify() < 0) {
        return NULL;
    }
    return Py_BuildValue("{s:i,s:i,s:i,s:d,s:d,s:i}", "n", n, "have_flat", have_flat, "flat_log_m",
                         have_flat ? flat_stats[0].log_m : -1, "v1_bytes_per_entry",
                         (double)v1_total / NTYPES / n, "flat_bytes_per_entry",
                         have_flat ? (double)flat_total / NTYPES / n : 0.0, "v1_size",
                         (int)ExtType_LoadTable((PyTypeObject *)real_types[0], EXTTYPE__CACHE.table_offset)->size);
}

/* ---- Loops ------------------------------------------------------------- */

#define LOOPS(name, LOOKUP)                                                                    \
    static NOINLINE uintptr_t name##_find(PyObject *const *ob, const uint64_t *idv, size_t n)   \
    {                                                                                          \
        uintptr_t acc = 0;                                                                     \
        BENCH_FIND_LOOP(acc, order, ob, n, LOOKUP);                                            \
        return acc;                                                                            \
    }                                                                                          \
    static NOINLINE uintptr_t name##_chain(PyObject *const *ob, const uint64_t *idv, size_t n)  \
    {                                                                                          \
        uintptr_t acc = 0;                                                                     \
        BENCH_CHAIN_LOOP(acc, order, ob, n, LOOKUP);                                           \
        return acc;                                                                            \
    }

LOOPS(floor, ((void)idv, (void)k, (void *)obj))
LOOPS(vtable, ((void)idv, (*(void *const *const *)EXT(Py_TYPE(obj)))[k]))
LOOPS(v1, ExtType_Find(obj, idv[k]))
LOOPS(hdr_flat, hdr_flat_find_in_type(Py_TYPE(obj), idv[k]))
LOOPS(fields, fields_find_in_type(Py_TYPE(obj), idv[k]))
LOOPS(v2, v2_find_in_type(Py_TYPE(obj), idv[k]))
LOOPS(v2_nocheck, v2_nocheck_find_in_type(Py_TYPE(obj), idv[k]))

typedef uintptr_t (*loop_fn)(PyObject *const *, const uint64_t *, size_t);
static const loop_fn find_loops[NVARIANTS] = {floor_find, vtable_find, v1_find, v1_find, hdr_flat_find,
                                              fields_find, v2_find, v2_nocheck_find, v1_find};
static const loop_fn chain_loops[NVARIANTS] = {floor_chain, vtable_chain, v1_chain, v1_chain, hdr_flat_chain,
                                               fields_chain, v2_chain, v2_nocheck_chain, v1_chain};

static int parse_run(PyObject *args, int *v, const uint64_t **idv, loop_fn *fn, Py_ssize_t *n, Py_ssize_t *reps)
{
    const char *variant, *kind, *mode;
    *reps = 1;
    if (!PyArg_ParseTuple(args, "sssn|n", &variant, &kind, &mode, n, reps)) {
        return -1;
    }
    for (*v = 0; *v < NVARIANTS && strcmp(variant_names[*v], variant) != 0; (*v)++) {
    }
    if (*v == NVARIANTS || cur_n == 0 || (strcmp(kind, "hit") && strcmp(kind, "miss")) ||
        (strcmp(mode, "find") && strcmp(mode, "chain")) || *n <= 0 || *reps <= 0 ||
        (*v <= V_VTABLE && strcmp(kind, "miss") == 0)) {
        PyErr_Format(PyExc_ValueError, "bad arguments (or setup() not called): %s %s %s", variant, kind, mode);
        return -1;
    }
    *idv = strcmp(kind, "hit") == 0 ? hit_ids : miss_ids;
    *fn = strcmp(mode, "find") == 0 ? find_loops[*v] : chain_loops[*v];
    return 0;
}

/* time(variant, "hit"|"miss", "find"|"chain", n, reps=1) -> [ns per lookup] */
static PyObject *time_variant(PyObject *self, PyObject *args)
{
    int v;
    const uint64_t *idv;
    loop_fn fn;
    Py_ssize_t n, reps;
    PyObject *out;
    volatile uintptr_t sink = 0;
    (void)self;
    if (parse_run(args, &v, &idv, &fn, &n, &reps) < 0) {
        return NULL;
    }
    BENCH_TIME_REPS(out, sink, n, reps, fn, objs[v], idv);
    (void)sink;
    return out;
}

/* run_once(variant, kind, mode, n): one loop between CALLGRIND_ZERO_STATS
   and a dump labelled "variant/n_keys/kind/mode/n". */
static PyObject *run_once(PyObject *self, PyObject *args)
{
    int v;
    const uint64_t *idv;
    loop_fn fn;
    Py_ssize_t n, reps;
    uintptr_t r;
    char label[128];
    (void)self;
    if (parse_run(args, &v, &idv, &fn, &n, &reps) < 0) {
        return NULL;
    }
    snprintf(label, sizeof label, "%s/%d/%s/%s/%zd", variant_names[v], cur_n, idv == hit_ids ? "hit" : "miss",
             fn == find_loops[v] ? "find" : "chain", n);
    BENCH_RUN_ONCE(r, label, n, fn, objs[v], idv);
    return PyLong_FromSize_t((size_t)r);
}

/* ---- Build statistics and the self-check ------------------------------- */

static int cmp_int(const void *a, const void *b)
{
    return (*(const int *)a > *(const int *)b) - (*(const int *)a < *(const int *)b);
}

/* build_stats(n, nsets, attempts, max_log_m, seed, ids=None) -> dict over
   `nsets` random id sets of n (or the one given set): how many got a flat
   block, the m they got, bytes per entry, attempts, probes and build ns. */
static PyObject *build_stats(PyObject *self, PyObject *args)
{
    int n, nsets, attempts, max_log_m, set, i, ok = 0;
    unsigned long long seed;
    PyObject *given = Py_None;
    uint64_t ids[NKMAX];
    void *ptrs[NKMAX];
    int *log_ms;
    double bytes_sum = 0, ns_sum = 0, att_sum = 0, probe_sum = 0;
    int att_max = 0, log_m_max = 0;
    (void)self;
    if (!PyArg_ParseTuple(args, "iiiiK|O", &n, &nsets, &attempts, &max_log_m, &seed, &given)) {
        return NULL;
    }
    if (n < 1 || n > NKMAX || nsets < 1 || attempts < 1 || max_log_m < 1 || max_log_m > 16 ||
        (given != Py_None && (!PyList_Check(given) || PyList_GET_SIZE(given) != n))) {
        PyErr_SetString(PyExc_ValueError, "build_stats: bad arguments");
        return NULL;
    }
    if (given != Py_None) {
        nsets = 1;
    }
    log_ms = PyMem_Calloc((size_t)nsets, sizeof(int));
    if (log_ms == NULL) {
        return PyErr_NoMemory();
    }
    rng_state = seed | 1u;
    for (i = 0; i < n; i++) {
        ptrs[i] = &ptr_pool[0][i % NKMAX];
    }
    for (set = 0; set < nsets; set++) {
        FlatStats st;
        ExtType_Table *t;
        double t0;
        for (i = 0; i < n; i++) {
            int j, dup;
            if (given != Py_None) {
                ids[i] = PyLong_AsUnsignedLongLong(PyList_GET_ITEM(given, i));
                if (PyErr_Occurred()) {
                    PyMem_Free(log_ms);
                    return NULL;
                }
                continue;
            }
            do { /* distinct, non-zero */
                ids[i] = rng();
                for (dup = 0, j = 0; j < i; j++) {
                    dup |= ids[j] == ids[i];
                }
            } while (ids[i] == 0 || dup);
        }
        t0 = bench_now_ns();
        t = flat_build(ids, ptrs, n, attempts, max_log_m, &st);
        ns_sum += bench_now_ns() - t0;
        log_ms[set] = st.log_m;
        att_sum += st.attempts;
        probe_sum += (double)st.probes;
        if (st.attempts > att_max) {
            att_max = st.attempts;
        }
        if (t != NULL) {
            /* The block must be a correct table for old and new readers. */
            for (i = 0; i < n; i++) {
                if (ExtType_TableFind(t, ids[i]) != ptrs[i]) {
                    free(t);
                    PyMem_Free(log_ms);
                    PyErr_Format(PyExc_AssertionError, "flat block misses id %llx", (unsigned long long)ids[i]);
                    return NULL;
                }
            }
            ok++;
            bytes_sum += (double)flat_bytes(st.log_m) / n;
            if (st.log_m > log_m_max) {
                log_m_max = st.log_m;
            }
            free(t);
        }
    }
    qsort(log_ms, (size_t)nsets, sizeof(int), cmp_int);
    {
        int median = log_ms[nsets / 2];
        PyObject *out = Py_BuildValue(
            "{s:i,s:i,s:i,s:d,s:i,s:d,s:i,s:d,s:d}", "n", n, "sets", nsets, "ok", ok, "bytes_per_entry",
            ok ? bytes_sum / ok : 0.0, "median_log_m", median, "mean_attempts", att_sum / nsets, "max_attempts",
            att_max, "mean_probes", probe_sum / nsets, "mean_build_ns", ns_sum / nsets);
        PyMem_Free(log_ms);
        if (out != NULL && log_m_max) {
            PyObject *mx = PyLong_FromLong(log_m_max);
            if (mx == NULL || PyDict_SetItemString(out, "max_log_m", mx) < 0) {
                Py_XDECREF(mx);
                Py_DECREF(out);
                return NULL;
            }
            Py_DECREF(mx);
        }
        return out;
    }
}

/* selfcheck(nsets, seed) -> number of lookups checked. For random id sets of
   every n in 1..64 and some larger ones: build a flat block; every id is
   found with its pointer and 64 random absent ids give NULL through the v1
   header (ExtType_TableFind), the proposal's lookup (fake type with the
   descriptor) and hdr_flat; then the descriptor is torn on purpose (the
   block of one set with the k1 of another, both ways) and every answer must
   still be exact. */
static PyObject *selfcheck(PyObject *self, PyObject *args)
{
    int nsets, set, n, i, j;
    unsigned long long seed;
    long long checked = 0;
    static const int big[] = {96, 128, 200, 256};
    uint64_t ids[2][NKMAX], miss[64];
    void *ptrs[NKMAX];
    void *tdv;
    PyObject *obj;
    V2Desc *d;
    (void)self;
    if (!PyArg_ParseTuple(args, "iK", &nsets, &seed) || nsets < 1) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_ValueError, "selfcheck: nsets >= 1");
        }
        return NULL;
    }
    if ((obj = fake_object(&tdv)) == NULL) {
        return PyErr_NoMemory();
    }
    d = EXT(Py_TYPE(obj));
    rng_state = seed | 1u;
    for (i = 0; i < NKMAX; i++) {
        ptrs[i] = &ptr_pool[1][i];
    }
    for (j = 0; j < 64 + 4; j++) {
        n = j < 64 ? j + 1 : big[j - 64];
        for (set = 0; set < nsets; set++) {
            ExtType_Table *tb[2];
            int w, x;
            for (w = 0; w < 2; w++) {
                for (i = 0; i < n; i++) {
                    int q, dup;
                    do {
                        ids[w][i] = rng();
                        for (dup = 0, q = 0; q < i; q++) {
                            dup |= ids[w][q] == ids[w][i];
                        }
                    } while (ids[w][i] == 0 || dup);
                }
                tb[w] = flat_build(ids[w], ptrs, n, 64, 16, NULL);
                if (tb[w] == NULL) {
                    PyErr_Format(PyExc_AssertionError, "no flat block for a random set of %d ids", n);
                    return NULL;
                }
            }
            for (i = 0; i < 64; i++) {
                int q, present;
                do {
                    miss[i] = rng();
                    for (present = 0, q = 0; q < n; q++) {
                        present |= miss[i] == ids[0][q] || miss[i] == ids[1][q];
                    }
                } while (miss[i] == 0 || present);
            }
            /* w: the block published; x: the set whose k1 the reader saw. */
            for (w = 0; w < 2; w++) {
                for (x = 0; x < 2; x++) {
                    ExtType_TypeData *td = tdv;
                    td->table = tb[w];
                    d->block_s = ((uintptr_t)tb[w] + FLAT_ENTRIES_OFFSET) | (uintptr_t)(tb[w]->s - 4);
                    d->k1 = tb[x]->k1;
                    for (i = 0; i < n; i++) {
                        if (v2_find_in_type(Py_TYPE(obj), ids[w][i]) != ptrs[i] ||
                            (w == x && ExtType_TableFind(tb[w], ids[w][i]) != ptrs[i]) ||
                            (w == x && ExtType_Find(obj, ids[w][i]) != ptrs[i])) {
                            PyErr_Format(PyExc_AssertionError, "n=%d block %d k1 of %d: id %d not found", n, w, x, i);
                            return NULL;
                        }
                        checked += w == x ? 3 : 1;
                    }
                    for (i = 0; i < 64; i++) {
                        if (v2_find_in_type(Py_TYPE(obj), miss[i]) != NULL ||
                            (w == x && ExtType_TableFind(tb[w], miss[i]) != NULL)) {
                            PyErr_Format(PyExc_AssertionError, "n=%d: absent id %llx found", n,
                                         (unsigned long long)miss[i]);
                            return NULL;
                        }
                        checked += w == x ? 2 : 1;
                    }
                }
                /* hdr_flat on the flagged block. */
                tb[w]->reserved = FLAT_FLAG;
                ((ExtType_TypeData *)tdv)->table = tb[w];
                for (i = 0; i < n; i++) {
                    if (hdr_flat_find_in_type(Py_TYPE(obj), ids[w][i]) != ptrs[i] ||
                        ExtType_TableFind(tb[w], ids[w][i]) != ptrs[i]) { /* old readers ignore the flag */
                        PyErr_Format(PyExc_AssertionError, "hdr_flat n=%d: id %d not found", n, i);
                        return NULL;
                    }
                    checked += 2;
                }
                for (i = 0; i < 64; i++) {
                    if (hdr_flat_find_in_type(Py_TYPE(obj), miss[i]) != NULL) {
                        PyErr_Format(PyExc_AssertionError, "hdr_flat n=%d: absent id found", n);
                        return NULL;
                    }
                    checked++;
                }
            }
            ((ExtType_TypeData *)tdv)->table = NULL;
            d->block_s = 0;
            free(tb[0]);
            free(tb[1]);
        }
    }
    return PyLong_FromLongLong(checked);
}

/* ---- Publication race --------------------------------------------------- */

/* stress(rounds, seed) -> lookups checked. A writer thread republishes the
   descriptor of one fake type, alternating two flat blocks A and B, the way
   the plan publishes (k1 relaxed, then the word with release), while this
   thread looks up: an id in both sets must give A's or B's pointer (never
   NULL: no spurious miss), an id of one set its pointer or NULL, an absent
   id NULL. Also counts the rounds in which a sample of the descriptor was
   torn (word of one block, k1 of the other). */
#include <pthread.h>
#include <sched.h>

typedef struct {
    V2Desc *d;
    ExtType_Table *tb[2];
    int stop;
    long published;
} StressShared;

static void *stress_writer(void *arg)
{
    StressShared *sh = arg;
    long i = 0;
    while (!__atomic_load_n(&sh->stop, __ATOMIC_ACQUIRE)) {
        ExtType_Table *t = sh->tb[i & 1];
        __atomic_store_n(&sh->d->k1, t->k1, __ATOMIC_RELAXED);
        __atomic_store_n(&sh->d->block_s, ((uintptr_t)t + FLAT_ENTRIES_OFFSET) | (uintptr_t)(t->s - 4),
                         __ATOMIC_RELEASE);
        i++;
        __atomic_store_n(&sh->published, i, __ATOMIC_RELAXED);
    }
    return NULL;
}

static PyObject *stress(PyObject *self, PyObject *args)
{
    enum { NC = 8, NX = 8 }; /* ids common to A and B; ids of A only, of B only */
    long rounds, r, checked = 0, torn_seen = 0, torn = 0;
    unsigned long long seed;
    uint64_t common[NC], only[2][NX], absent[NX];
    uint64_t ids[2][NC + NX];
    void *ptrs[2][NC + NX];
    StressShared sh;
    pthread_t th;
    void *tdv;
    PyObject *obj;
    int i, w, err = 0;
    char msg[160] = "";
    (void)self;
    if (!PyArg_ParseTuple(args, "lK", &rounds, &seed) || rounds < 1) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_ValueError, "stress: rounds >= 1");
        }
        return NULL;
    }
    rng_state = seed | 1u;
    for (i = 0; i < NC; i++) common[i] = rng() | 1u;
    for (i = 0; i < NX; i++) {
        only[0][i] = rng() | 1u;
        only[1][i] = rng() | 1u;
        absent[i] = rng() | 1u;
    }
    for (w = 0; w < 2; w++) {
        for (i = 0; i < NC; i++) {
            ids[w][i] = common[i];
            ptrs[w][i] = &ptr_pool[2 + w][i];
        }
        for (i = 0; i < NX; i++) {
            ids[w][NC + i] = only[w][i];
            ptrs[w][NC + i] = &ptr_pool[2 + w][NC + i];
        }
        sh.tb[w] = flat_build(ids[w], ptrs[w], NC + NX, 64, 16, NULL);
        if (sh.tb[w] == NULL) {
            return PyErr_NoMemory();
        }
    }
    if ((obj = fake_object(&tdv)) == NULL) {
        return PyErr_NoMemory();
    }
    sh.d = EXT(Py_TYPE(obj));
    ((ExtType_TypeData *)tdv)->table = sh.tb[0];
    sh.d->k1 = sh.tb[0]->k1;
    sh.d->block_s = ((uintptr_t)sh.tb[0] + FLAT_ENTRIES_OFFSET) | (uintptr_t)(sh.tb[0]->s - 4);
    sh.stop = 0;
    sh.published = 0;
    Py_BEGIN_ALLOW_THREADS
    if (pthread_create(&th, NULL, stress_writer, &sh) != 0) {
        err = 1;
    } else {
        /* Start once the writer runs (a loaded machine may not run it soon). */
        while (__atomic_load_n(&sh.published, __ATOMIC_RELAXED) == 0) {
            sched_yield();
        }
        for (r = 0; r < rounds && !err; r++) {
            /* How often a reader sees a torn pair (the case the check is for). */
            uintptr_t sw = __atomic_load_n(&sh.d->block_s, __ATOMIC_ACQUIRE);
            uint64_t sk = __atomic_load_n(&sh.d->k1, __ATOMIC_RELAXED);
            torn += ((const ExtType_Table *)((sw & ~(uintptr_t)63) - FLAT_ENTRIES_OFFSET))->k1 != sk;
            for (i = 0; i < NC && !err; i++) {
                void *p = v2_find_in_type(Py_TYPE(obj), common[i]);
                if (p != ptrs[0][i] && p != ptrs[1][i]) {
                    snprintf(msg, sizeof msg, "common id %d gave %p", i, p);
                    err = 2;
                }
                torn_seen += p == ptrs[1][i];
            }
            for (w = 0; w < 2 && !err; w++) {
                for (i = 0; i < NX && !err; i++) {
                    void *p = v2_find_in_type(Py_TYPE(obj), only[w][i]);
                    if (p != NULL && p != ptrs[w][NC + i]) {
                        snprintf(msg, sizeof msg, "id %d of set %d gave %p", i, w, p);
                        err = 2;
                    }
                }
            }
            for (i = 0; i < NX && !err; i++) {
                if (v2_find_in_type(Py_TYPE(obj), absent[i]) != NULL) {
                    snprintf(msg, sizeof msg, "absent id %d found", i);
                    err = 2;
                }
            }
            checked += NC + 2 * NX + NX;
        }
        __atomic_store_n(&sh.stop, 1, __ATOMIC_RELEASE);
        pthread_join(th, NULL);
    }
    Py_END_ALLOW_THREADS
    /* The fake object and the blocks are leaked on purpose: a benchmark
       process, and the writer is joined. */
    if (err == 1) {
        return PyErr_Format(PyExc_OSError, "stress: pthread_create failed");
    }
    if (err) {
        return PyErr_Format(PyExc_AssertionError, "stress: %s", msg);
    }
    return Py_BuildValue("{s:l,s:l,s:l,s:l}", "checked", checked, "published", sh.published, "saw_b", torn_seen,
                         "torn", torn);
}

static PyObject *variants(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    return bench_name_list(variant_names, sizeof variant_names[0], NVARIANTS);
}

static PyMethodDef tablev2_methods[] = {
    {"setup", setup, METH_VARARGS, "setup(ids, miss_ids, keys|None, attempts, max_log_m) -> info"},
    {"time", time_variant, METH_VARARGS, "time(variant, kind, mode, n, reps=1) -> [ns per lookup]"},
    {"run_once", run_once, METH_VARARGS, "run_once(variant, kind, mode, n): one loop (callgrind)"},
    {"build_stats", build_stats, METH_VARARGS, "build_stats(n, nsets, attempts, max_log_m, seed, ids=None)"},
    {"selfcheck", selfcheck, METH_VARARGS, "selfcheck(nsets, seed) -> lookups checked"},
    {"stress", stress, METH_VARARGS, "stress(rounds, seed) -> {checked, published, saw_b, torn}"},
    {"variants", variants, METH_NOARGS, "The variant names."},
    {NULL, NULL, 0, NULL},
};

BENCH_MODULE(_et_tablev2, "Prototype of a faster table format (benchmark).", tablev2_methods)
