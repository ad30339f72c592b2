/*
 * C latency benchmark of ExtType_Find (extension module `_et_latency`,
 * driven by benches/c/latency.py; run `bash benches/c/run.sh`).
 *
 * Every method answers the same question — "the implementation of key k on
 * type(obj)" — and then calls it (mode "call") or only folds the pointer into
 * a checksum (mode "find"). Same objects' access pattern, same 128 distinct
 * target functions, same loop for all methods:
 *
 *   direct      a pre-resolved function pointer (fns[t][k]): the floor
 *   vtable      C++-style: a vtable pointer at a fixed offset of a static
 *               type object (Py_TYPE(obj)->vtable[k]); no check at all
 *   exttype     ExtType_Find(obj, id) on types made with ExtType_FromSpec
 *   exttype_v1  the same lookup as a consumer compiled against the header
 *               before the flat descriptor does it (ExtType_v1Find below:
 *               the `table` pointer and the two-level formula), on the
 *               same types: the descriptor's saving, in one run
 *   exttype_foreign  ExtType_Find on static types registered with
 *               ExtType_SetSlots (foreign registry: the slow path)
 *   sep200      SEP 200 (2012): a per-type {id, ptr} array, probe the
 *               expected position, then scan linearly
 *   getslot     PyType_GetSlot(Py_TYPE(obj), slot) (16 nb_* slots)
 *   dict        PyDict_GetItem(per-type dict, interned key) -> int address
 *   getattr     PyObject_GetAttr(obj, name) -> PyCapsule_GetPointer
 *
 * Workloads: "mono" (one type, one key) and "mega" (8 types x 16 keys, in a
 * pre-generated random order of 4096 (type, key) pairs).
 *
 * Under valgrind --tool=callgrind, run_once() brackets one benchmark with
 * CALLGRIND_ZERO_STATS / CALLGRIND_DUMP_STATS_AT(label), so each dump holds
 * exactly that loop's instructions (and simulated branch mispredictions with
 * --branch-sim=yes).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>
#include "extensibletype.h"
#include "bench_common.h" /* NOINLINE, LAUNDER, ZERO_DEPENDENCY, loops, timing */

#define NTYPES 8
#define NKEYS 16
#define ORDER_LEN 4096 /* power of two */

typedef double (*impl_fn)(PyObject *self, double x);

/* ---- 128 distinct implementations ------------------------------------- */

#define IMPL(t, k) \
    static NOINLINE double impl_##t##_##k(PyObject *self, double x) \
    { (void)self; return x * 0.5 + (double)((t) * NKEYS + (k)); }
#define IMPL_T(t) IMPL(t, 0) IMPL(t, 1) IMPL(t, 2) IMPL(t, 3) IMPL(t, 4) IMPL(t, 5) IMPL(t, 6) \
    IMPL(t, 7) IMPL(t, 8) IMPL(t, 9) IMPL(t, 10) IMPL(t, 11) IMPL(t, 12) IMPL(t, 13) IMPL(t, 14) IMPL(t, 15)
IMPL_T(0) IMPL_T(1) IMPL_T(2) IMPL_T(3) IMPL_T(4) IMPL_T(5) IMPL_T(6) IMPL_T(7)
#define ROW(t) {impl_##t##_0, impl_##t##_1, impl_##t##_2, impl_##t##_3, impl_##t##_4, impl_##t##_5, \
    impl_##t##_6, impl_##t##_7, impl_##t##_8, impl_##t##_9, impl_##t##_10, impl_##t##_11, \
    impl_##t##_12, impl_##t##_13, impl_##t##_14, impl_##t##_15}
static const impl_fn impls[NTYPES][NKEYS] = {ROW(0), ROW(1), ROW(2), ROW(3), ROW(4), ROW(5), ROW(6), ROW(7)};

/* ExtType_FindInType as the ABI v1 header shipped it before the flat
   descriptor (tests/abi/frozen-abi1/extensibletype.h), built from the
   helpers this header still has: load `table`, probe it with the v1
   formula (a flat table is a v1 table too); else the type cache, else the
   slow path. */
static inline __attribute__((always_inline)) void *ExtType_v1Find(PyObject *obj, uint64_t id)
{
    PyTypeObject *tp = Py_TYPE(obj);
    const ExtType_Table *table;
    if (EXTTYPE__LIKELY(Py_TYPE((PyObject *)tp) == EXTTYPE__CACHE.metaclass)) {
        table = ExtType_LoadTable(tp, EXTTYPE__CACHE.table_offset);
        if (EXTTYPE__LIKELY(table != NULL)) {
            return ExtType_TableFind(table, id);
        }
    }
    table = ExtType__CachedTable(tp);
    if (EXTTYPE__LIKELY(table != NULL)) {
        return ExtType_TableFind(table, id);
    }
    return EXTTYPE__CACHE.api->find_slow(tp, id);
}

/* ---- Static types with a vtable, a SEP 200 table and a dict ----------- */

typedef struct {
    uint64_t id;
    void *ptr;
} sep_entry;

typedef struct {
    PyTypeObject tp;
    const impl_fn *vtable;         /* C++-style */
    sep_entry sep[NKEYS];          /* SEP 200-style, shuffled per type */
    PyObject *dict;                /* key str -> int address */
} BenchType;

static BenchType static_types[NTYPES];
static PyObject *static_objs[NTYPES];

/* ---- Extensible heap types (also carry nb_* slots and capsule attrs) -- */

static PyObject *ext_types[NTYPES];
static PyObject *ext_objs[NTYPES];

static uint64_t ids[NKEYS];
static PyObject *key_strs[NKEYS];  /* interned "bench.latency.v1:kN" */
static PyObject *attr_names[NKEYS]; /* interned "_bench_kN" */
static int sep_expected[NKEYS];     /* position of key k in type 0's SEP table */
static const int slot_ids[NKEYS] = {
    Py_nb_add, Py_nb_and, Py_nb_divmod, Py_nb_floor_divide, Py_nb_inplace_add, Py_nb_inplace_and,
    Py_nb_inplace_floor_divide, Py_nb_inplace_lshift, Py_nb_inplace_multiply, Py_nb_inplace_or,
    Py_nb_inplace_power, Py_nb_inplace_remainder, Py_nb_inplace_rshift, Py_nb_inplace_subtract,
    Py_nb_inplace_true_divide, Py_nb_inplace_xor,
};
static const char CAPSULE[] = "bench.latency.impl";

typedef struct {
    uint8_t t, k;
} pair;

static pair order_mono[ORDER_LEN];
static pair order_mega[ORDER_LEN];

static uint64_t rng_state = 0x9E3779B97F4A7C15u;
static uint64_t rng(void)
{
    return bench_xorshift64(&rng_state);
}

static const char *type_names[NTYPES] = {"bench.T0", "bench.T1", "bench.T2", "bench.T3",
                                         "bench.T4", "bench.T5", "bench.T6", "bench.T7"};
static const char *static_names[NTYPES] = {"bench.S0", "bench.S1", "bench.S2", "bench.S3",
                                           "bench.S4", "bench.S5", "bench.S6", "bench.S7"};
static char key_bufs[NKEYS][32];

/* Cases of the "every lookup path" table (see add_case_c). */
#define NCASES 24
static PyObject *case_objs[NCASES][NTYPES]; /* the same object NTYPES times */
static const uint64_t *case_ids[NCASES];    /* ids (hit) or miss_ids */
static char case_names[NCASES][48];
static int ncases;
static uint64_t miss_ids[NKEYS];
static int add_case_c(const char *name, PyObject *obj, int hit);

static int setup(void)
{
    int t, k;
    static int done = 0;
    if (done) {
        return 0;
    }
    for (k = 0; k < NKEYS; k++) {
        char name[32];
        snprintf(key_bufs[k], sizeof key_bufs[k], "bench.latency.v1:k%d", k);
        snprintf(name, sizeof name, "_bench_k%d", k);
        ids[k] = ExtType_Prehash(key_bufs[k]);
        key_strs[k] = PyUnicode_InternFromString(key_bufs[k]);
        attr_names[k] = PyUnicode_InternFromString(name);
        if (key_strs[k] == NULL || attr_names[k] == NULL) {
            return -1;
        }
    }
    for (t = 0; t < NTYPES; t++) {
        /* An extensible heap type: 16 ExtType slots, 16 nb_* slots, 16
           class attributes holding capsules. */
        PyType_Slot slots[NKEYS + 1];
        ExtType_SlotDef defs[NKEYS];
        PyType_Spec spec;
        BenchType *bt = &static_types[t];
        int perm[NKEYS];
        for (k = 0; k < NKEYS; k++) {
            slots[k].slot = slot_ids[k];
            slots[k].pfunc = (void *)impls[t][k];
            defs[k].key = key_bufs[k];
            defs[k].id = 0;
            defs[k].ptr = (void *)impls[t][k];
        }
        slots[NKEYS].slot = 0;
        slots[NKEYS].pfunc = NULL;
        spec.name = type_names[t];
        spec.basicsize = (int)sizeof(PyObject);
        spec.itemsize = 0;
        /* BASETYPE: on CPython 3.11, ExtType_FromSpec subclasses the spec's
           type (see docs/c-api.md). */
        spec.flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE;
        spec.slots = slots;
        ext_types[t] = ExtType_FromSpec(NULL, &spec, NULL, defs, NKEYS);
        if (ext_types[t] == NULL) {
            return -1;
        }
        for (k = 0; k < NKEYS; k++) {
            PyObject *cap = PyCapsule_New((void *)impls[t][k], CAPSULE, NULL);
            int rc = cap == NULL ? -1 : PyObject_SetAttr(ext_types[t], attr_names[k], cap);
            Py_XDECREF(cap);
            if (rc < 0) {
                return -1;
            }
        }
        ext_objs[t] = PyType_GenericNew((PyTypeObject *)ext_types[t], NULL, NULL);
        if (ext_objs[t] == NULL) {
            return -1;
        }

        /* A static type with a vtable, a SEP 200 table and a dict. */
        bt->tp = (PyTypeObject){PyVarObject_HEAD_INIT(NULL, 0) .tp_name = static_names[t]};
        bt->tp.tp_basicsize = (Py_ssize_t)sizeof(PyObject);
        bt->tp.tp_flags = Py_TPFLAGS_DEFAULT;
        bt->tp.tp_new = PyType_GenericNew;
        bt->vtable = impls[t];
        for (k = 0; k < NKEYS; k++) {
            perm[k] = k;
        }
        for (k = NKEYS - 1; t > 0 && k > 0; k--) { /* type 0 keeps key order */
            int j = (int)(rng() % (uint64_t)(k + 1)), tmp = perm[k];
            perm[k] = perm[j];
            perm[j] = tmp;
        }
        for (k = 0; k < NKEYS; k++) {
            bt->sep[k].id = ids[perm[k]];
            bt->sep[k].ptr = (void *)impls[t][perm[k]];
            if (t == 0) {
                sep_expected[perm[k]] = k;
            }
        }
        bt->dict = PyDict_New();
        if (bt->dict == NULL || PyType_Ready(&bt->tp) < 0) {
            return -1;
        }
        for (k = 0; k < NKEYS; k++) {
            PyObject *addr = PyLong_FromVoidPtr((void *)impls[t][k]);
            int rc = addr == NULL ? -1 : PyDict_SetItem(bt->dict, key_strs[k], addr);
            Py_XDECREF(addr);
            if (rc < 0) {
                return -1;
            }
        }
        /* ... and registered in the foreign registry. */
        if (ExtType_SetSlots((PyObject *)&bt->tp, defs, NKEYS) < 0) {
            return -1;
        }
        static_objs[t] = PyType_GenericNew(&bt->tp, NULL, NULL);
        if (static_objs[t] == NULL) {
            return -1;
        }
    }
    for (k = 0; k < ORDER_LEN; k++) {
        order_mono[k].t = 0;
        order_mono[k].k = 0;
        order_mega[k].t = (uint8_t)(rng() % NTYPES);
        order_mega[k].k = (uint8_t)(rng() % NKEYS);
    }
    for (k = 0; k < NKEYS; k++) {
        char miss_key[40];
        snprintf(miss_key, sizeof miss_key, "bench.latency.v1:absent%d", k);
        miss_ids[k] = ExtType_Prehash(miss_key);
    }
    if (add_case_c("extensible hit", ext_objs[0], 1) < 0 || add_case_c("extensible miss", ext_objs[0], 0) < 0 ||
        add_case_c("foreign (static, registered) hit", static_objs[0], 1) < 0 ||
        add_case_c("foreign (static, registered) miss", static_objs[0], 0) < 0) {
        return -1;
    }
    /* Check every method finds the same function before measuring. */
    for (t = 0; t < NTYPES; t++) {
        for (k = 0; k < NKEYS; k++) {
            if (ExtType_Find(ext_objs[t], ids[k]) != (void *)impls[t][k] ||
                ExtType_v1Find(ext_objs[t], ids[k]) != (void *)impls[t][k] ||
                ExtType_Find(static_objs[t], ids[k]) != (void *)impls[t][k] ||
                PyType_GetSlot((PyTypeObject *)ext_types[t], slot_ids[k]) != (void *)impls[t][k]) {
                PyErr_Format(PyExc_RuntimeError, "setup check failed for type %d key %d", t, k);
                return -1;
            }
        }
    }
    done = 1;
    return 0;
}

/* ---- Every lookup path: ExtType_Find on one object per case ----------- */

/* "Cases" time ExtType_Find(obj, id) on one object each (a hit on an
   extensible class, misses, foreign types, their subclasses, sub-metaclass
   classes, never-initialised classes, builtins...), all through the same
   loop (case_find/case_chain), so their ratios compare lookup paths only.
   C adds the first four; latency.py adds the rest with add_case(). */

static int add_case_c(const char *name, PyObject *obj, int hit)
{
    int t, k;
    if (ncases == NCASES) {
        PyErr_SetString(PyExc_ValueError, "too many cases");
        return -1;
    }
    for (k = 0; k < NKEYS; k++) {
        void *want = hit ? (void *)impls[0][k] : NULL;
        if (ExtType_Find(obj, hit ? ids[k] : miss_ids[k]) != want) {
            PyErr_Format(PyExc_ValueError, "case %s: ExtType_Find(key %d) is not the expected %s", name, k,
                         hit ? "impls[0][k]" : "NULL");
            return -1;
        }
    }
    Py_INCREF(obj);
    for (t = 0; t < NTYPES; t++) {
        case_objs[ncases][t] = obj;
    }
    case_ids[ncases] = hit ? ids : miss_ids;
    snprintf(case_names[ncases], sizeof case_names[ncases], "%s", name);
    return ncases++;
}

static NOINLINE double case_find(PyObject *const *objs, const uint64_t *idv, const pair *order, size_t n)
{
    uintptr_t acc = 0;
    BENCH_FIND_LOOP(acc, order, objs, n, ExtType_Find(obj, idv[k]));
    return (double)(acc & 0xffff);
}

static NOINLINE double case_chain(PyObject *const *objs, const uint64_t *idv, const pair *order, size_t n)
{
    uintptr_t acc = 0;
    BENCH_CHAIN_LOOP(acc, order, objs, n, ExtType_Find(obj, idv[k]));
    return (double)(acc & 0xffff);
}

/* ---- The lookups ------------------------------------------------------ */

static inline void *sep200_find(const BenchType *bt, uint64_t id, int expected)
{
    int i;
    if (bt->sep[expected].id == id) {
        return bt->sep[expected].ptr;
    }
    for (i = 0; i < NKEYS; i++) {
        if (bt->sep[i].id == id) {
            return bt->sep[i].ptr;
        }
    }
    return NULL;
}

static inline void *getattr_find(PyObject *obj, PyObject *name)
{
    PyObject *cap = PyObject_GetAttr(obj, name);
    void *p;
    if (cap == NULL) {
        PyErr_Clear();
        return NULL;
    }
    p = PyCapsule_GetPointer(cap, CAPSULE);
    Py_DECREF(cap);
    return p;
}

static inline void *dict_find(PyObject *obj, PyObject *key)
{
    PyObject *v = PyDict_GetItem(((BenchType *)Py_TYPE(obj))->dict, key); /* borrowed */
    return v == NULL ? NULL : PyLong_AsVoidPtr(v);
}

/* One benchmark loop per (method, mode). `objs` is the object population. */
#define BENCH(method, objs, LOOKUP)                                                    \
    static NOINLINE double bench_##method##_call(const pair *order, size_t n)         \
    {                                                                                  \
        double acc = 0;                                                                \
        size_t i;                                                                      \
        for (i = 0; i < n; i++) {                                                      \
            pair pr = order[i & (ORDER_LEN - 1)];                                      \
            PyObject *obj = objs[pr.t];                                                \
            int k = pr.k;                                                              \
            impl_fn f;                                                                 \
            LAUNDER(obj);                                                              \
            f = (impl_fn)(LOOKUP);                                                     \
            acc += f(obj, 1.0);                                                        \
        }                                                                              \
        return acc;                                                                    \
    }                                                                                  \
    static NOINLINE double bench_##method##_find(const pair *order, size_t n)         \
    {                                                                                  \
        uintptr_t acc = 0;                                                             \
        BENCH_FIND_LOOP(acc, order, objs, n, LOOKUP);                                  \
        return (double)(acc & 0xffff);                                                 \
    }                                                                                  \
    static NOINLINE double bench_##method##_chain(const pair *order, size_t n)        \
    {                                                                                  \
        uintptr_t acc = 0;                                                             \
        BENCH_CHAIN_LOOP(acc, order, objs, n, LOOKUP);                                 \
        return (double)(acc & 0xffff);                                                 \
    }

BENCH(direct, static_objs, (impls[pr.t][k]))
BENCH(vtable, static_objs, (((const BenchType *)Py_TYPE(obj))->vtable[k]))
BENCH(exttype, ext_objs, ExtType_Find(obj, ids[k]))
BENCH(exttype_v1, ext_objs, ExtType_v1Find(obj, ids[k]))
BENCH(exttype_foreign, static_objs, ExtType_Find(obj, ids[k]))
BENCH(sep200, static_objs, sep200_find((const BenchType *)Py_TYPE(obj), ids[k], sep_expected[k]))
BENCH(getslot, ext_objs, PyType_GetSlot(Py_TYPE(obj), slot_ids[k]))
BENCH(dict, static_objs, dict_find(obj, key_strs[k]))
BENCH(getattr, ext_objs, getattr_find(obj, attr_names[k]))

typedef double (*bench_fn)(const pair *, size_t);
static const struct {
    const char *name;
    bench_fn call, find, chain;
} methods[] = {
#define M(m) {#m, bench_##m##_call, bench_##m##_find, bench_##m##_chain}
    M(direct), M(vtable), M(exttype), M(exttype_v1), M(exttype_foreign), M(sep200), M(getslot), M(dict), M(getattr),
#undef M
};
#define NMETHODS ((int)(sizeof methods / sizeof methods[0]))

static int parse(PyObject *args, int *m, const pair **order, int *mode_out, Py_ssize_t *n, Py_ssize_t *reps)
{
    const char *method, *workload, *mode;
    int i;
    *reps = 1;
    if (!PyArg_ParseTuple(args, "sssn|n", &method, &workload, &mode, n, reps)) {
        return -1;
    }
    for (i = 0; i < NMETHODS && strcmp(methods[i].name, method) != 0; i++) {
    }
    if (i == NMETHODS || (strcmp(workload, "mono") && strcmp(workload, "mega")) ||
        (strcmp(mode, "call") && strcmp(mode, "find") && strcmp(mode, "chain")) || *n <= 0 || *reps <= 0) {
        PyErr_Format(PyExc_ValueError, "bad arguments: %s %s %s", method, workload, mode);
        return -1;
    }
    *m = i;
    *order = strcmp(workload, "mono") == 0 ? order_mono : order_mega;
    *mode_out = strcmp(mode, "call") == 0 ? 0 : strcmp(mode, "find") == 0 ? 1 : 2;
    return setup();
}

static bench_fn pick(int m, int mode)
{
    return mode == 0 ? methods[m].call : mode == 1 ? methods[m].find : methods[m].chain;
}

static const char *mode_names[] = {"call", "find", "chain"};

/* time(method, workload, mode, n, reps) -> [ns per lookup for each rep] */
static PyObject *time_method(PyObject *self, PyObject *args)
{
    int m, mode;
    const pair *order;
    Py_ssize_t n, reps;
    PyObject *out;
    volatile double sink = 0;
    (void)self;
    if (parse(args, &m, &order, &mode, &n, &reps) < 0) {
        return NULL;
    }
    BENCH_TIME_REPS(out, sink, n, reps, pick(m, mode), order);
    (void)sink;
    return out;
}

/* run_once(method, workload, mode, n): one loop, bracketed for callgrind. */
static PyObject *run_once(PyObject *self, PyObject *args)
{
    int m, mode;
    const pair *order;
    Py_ssize_t n, reps;
    double r;
    char label[96];
    (void)self;
    if (parse(args, &m, &order, &mode, &n, &reps) < 0) {
        return NULL;
    }
    snprintf(label, sizeof label, "%s/%s/%s/%zd", methods[m].name,
             order == order_mono ? "mono" : "mega", mode_names[mode], n);
    BENCH_RUN_ONCE(r, label, n, pick(m, mode), order);
    return PyFloat_FromDouble(r);
}

/* add_case(name, obj, hit) -> index: ExtType_Find(obj, key k) must be
   impls[0][k] (hit) or NULL for the absent keys (miss). */
static PyObject *add_case(PyObject *self, PyObject *args)
{
    const char *name;
    PyObject *obj;
    int hit, i;
    (void)self;
    if (!PyArg_ParseTuple(args, "sOp", &name, &obj, &hit) || setup() < 0) {
        return NULL;
    }
    i = add_case_c(name, obj, hit);
    return i < 0 ? NULL : PyLong_FromLong(i);
}

static int parse_case(PyObject *args, int *c, const pair **order, int *chain, Py_ssize_t *n, Py_ssize_t *reps)
{
    const char *workload, *mode;
    *reps = 1;
    if (!PyArg_ParseTuple(args, "issn|n", c, &workload, &mode, n, reps) || setup() < 0) {
        return -1;
    }
    if (*c < 0 || *c >= ncases || (strcmp(workload, "mono") && strcmp(workload, "mega")) ||
        (strcmp(mode, "find") && strcmp(mode, "chain")) || *n <= 0 || *reps <= 0) {
        PyErr_SetString(PyExc_ValueError, "bad case arguments");
        return -1;
    }
    *order = strcmp(workload, "mono") == 0 ? order_mono : order_mega;
    *chain = strcmp(mode, "chain") == 0;
    return 0;
}

/* time_case(index, workload, mode, n, reps=1) -> [ns per lookup]; mode:
   "find" (independent) or "chain" (dependent). */
static PyObject *time_case(PyObject *self, PyObject *args)
{
    int c, chain;
    const pair *order;
    Py_ssize_t n, reps;
    PyObject *out;
    volatile double sink = 0;
    double (*fn)(PyObject *const *, const uint64_t *, const pair *, size_t);
    (void)self;
    if (parse_case(args, &c, &order, &chain, &n, &reps) < 0) {
        return NULL;
    }
    fn = chain ? case_chain : case_find;
    BENCH_TIME_REPS(out, sink, n, reps, fn, case_objs[c], case_ids[c], order);
    (void)sink;
    return out;
}

/* run_case_once(index, workload, mode, n): one loop, bracketed for callgrind
   (label "case<index>/workload/mode/n"). */
static PyObject *run_case_once(PyObject *self, PyObject *args)
{
    int c, chain;
    const pair *order;
    Py_ssize_t n, reps;
    double r;
    char label[96];
    double (*fn)(PyObject *const *, const uint64_t *, const pair *, size_t);
    (void)self;
    if (parse_case(args, &c, &order, &chain, &n, &reps) < 0) {
        return NULL;
    }
    fn = chain ? case_chain : case_find;
    snprintf(label, sizeof label, "case%d/%s/%s/%zd", c, order == order_mono ? "mono" : "mega",
             chain ? "chain" : "find", n);
    BENCH_RUN_ONCE(r, label, n, fn, case_objs[c], case_ids[c], order);
    return PyFloat_FromDouble(r);
}

/* cases() -> [name]; slot_addresses() -> {key: address of impls[0][k]}. */
static PyObject *case_list(PyObject *self, PyObject *unused)
{
    PyObject *out;
    int i;
    (void)self;
    (void)unused;
    if (setup() < 0) {
        return NULL;
    }
    out = PyList_New(ncases);
    for (i = 0; out != NULL && i < ncases; i++) {
        PyList_SET_ITEM(out, i, PyUnicode_FromString(case_names[i]));
    }
    return out;
}

static PyObject *slot_addresses(PyObject *self, PyObject *unused)
{
    PyObject *out;
    int k;
    (void)self;
    (void)unused;
    if (setup() < 0 || (out = PyDict_New()) == NULL) {
        return NULL;
    }
    for (k = 0; k < NKEYS; k++) {
        PyObject *addr = PyLong_FromVoidPtr((void *)impls[0][k]);
        if (addr == NULL || PyDict_SetItemString(out, key_bufs[k], addr) < 0) {
            Py_XDECREF(addr);
            Py_DECREF(out);
            return NULL;
        }
        Py_DECREF(addr);
    }
    return out;
}

static PyObject *method_names(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    return bench_name_list(&methods[0].name, sizeof methods[0], NMETHODS);
}

static PyMethodDef latency_methods[] = {
    {"time", time_method, METH_VARARGS, "time(method, workload, mode, n, reps=1) -> [ns per lookup]"},
    {"run_once", run_once, METH_VARARGS, "run_once(method, workload, mode, n): one loop (callgrind)"},
    {"methods", method_names, METH_NOARGS, "The method names."},
    {"add_case", add_case, METH_VARARGS, "add_case(name, obj, hit) -> index"},
    {"time_case", time_case, METH_VARARGS, "time_case(index, workload, mode, n, reps=1) -> [ns per lookup]"},
    {"run_case_once", run_case_once, METH_VARARGS, "run_case_once(index, workload, mode, n) (callgrind)"},
    {"cases", case_list, METH_NOARGS, "The case names."},
    {"slot_addresses", slot_addresses, METH_NOARGS, "{key: address} of type 0's implementations."},
    {NULL, NULL, 0, NULL},
};

BENCH_MODULE(_et_latency, "C latency benchmark of ExtType_Find.", latency_methods)
