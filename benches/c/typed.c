/*
 * Typed-method call benchmark (extension module `_et_typed`, driven by
 * benches/c/typed.py; run `bash benches/c/typed.sh`).
 *
 * Every method answers "call method k of obj" for two signatures and sums
 * the results:
 *
 *   f64(O)        double m_k(PyObject *self)
 *   f64(O,f64)!e  int32_t e_k(PyObject *self, double x, double *out)
 *                 (may raise: 0, or -1 with an exception set)
 *
 * Ways to call, same objects, same access pattern, same loop:
 *
 *   direct      a pre-resolved function pointer (fns[t][k]): the floor
 *   vtable      Cython-style: obj->__pyx_vtab->m[k](obj), a vtable pointer
 *               in the instance (what a cdef method call compiles to)
 *   typed       ExtType_Find(obj, id of "bench.typed.v1:m<k>#f64(O)") and
 *               call the result (on a miss: the Python method, never taken)
 *   vectorcall  PyObject_VectorcallMethod(obj, "m<k>") and PyFloat_AsDouble:
 *               the Python-level method (a C method, METH_NOARGS / METH_O)
 *
 * Workloads: "mono" (one type, one method: a monomorphic call site) and
 * "mega" (8 types x 16 methods in a pre-generated random order of 4096
 * (type, method) pairs). The types are made with ExtType_FromSpec: each has
 * 32 typed slots and the 32 Python methods of the same names.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>
#include "extensibletype.h"
#include "bench_common.h" /* NOINLINE, LAUNDER, bench_now_ns, bench_name_list */

#define NTYPES 8
#define NMETH 16
#define ORDER_LEN 4096 /* power of two */

typedef double (*m_fn)(PyObject *self);                      /* f64(O) */
typedef int32_t (*e_fn)(PyObject *self, double x, double *out); /* f64(O,f64)!e */

/* The Cython-style vtable: one per type, pointed to by every instance. */
typedef struct {
    m_fn m[NMETH];
    e_fn e[NMETH];
} vtab;

typedef struct {
    PyObject_HEAD
    const vtab *vt; /* like Cython's __pyx_vtab */
    double value;
} BenchObj;

/* ---- 8 x 16 implementations of each signature ------------------------- */

#define IMPL(t, k)                                                                      \
    static NOINLINE double m_##t##_##k(PyObject *self)                                 \
    { return ((BenchObj *)self)->value + (double)((t) * NMETH + (k)); }                \
    static NOINLINE int32_t e_##t##_##k(PyObject *self, double x, double *out)         \
    {                                                                                   \
        if (x != x) {                                                                   \
            PyErr_SetString(PyExc_ValueError, "x is NaN");                              \
            return -1;                                                                  \
        }                                                                               \
        *out = ((BenchObj *)self)->value * x + (double)((t) * NMETH + (k));             \
        return 0;                                                                       \
    }
#define IMPL_T(t) IMPL(t, 0) IMPL(t, 1) IMPL(t, 2) IMPL(t, 3) IMPL(t, 4) IMPL(t, 5) IMPL(t, 6) \
    IMPL(t, 7) IMPL(t, 8) IMPL(t, 9) IMPL(t, 10) IMPL(t, 11) IMPL(t, 12) IMPL(t, 13) IMPL(t, 14) IMPL(t, 15)
IMPL_T(0) IMPL_T(1) IMPL_T(2) IMPL_T(3) IMPL_T(4) IMPL_T(5) IMPL_T(6) IMPL_T(7)
#define ROW(p, t) {p##_##t##_0, p##_##t##_1, p##_##t##_2, p##_##t##_3, p##_##t##_4, p##_##t##_5, \
    p##_##t##_6, p##_##t##_7, p##_##t##_8, p##_##t##_9, p##_##t##_10, p##_##t##_11, \
    p##_##t##_12, p##_##t##_13, p##_##t##_14, p##_##t##_15}
static const vtab vtabs[NTYPES] = {
    {ROW(m, 0), ROW(e, 0)}, {ROW(m, 1), ROW(e, 1)}, {ROW(m, 2), ROW(e, 2)}, {ROW(m, 3), ROW(e, 3)},
    {ROW(m, 4), ROW(e, 4)}, {ROW(m, 5), ROW(e, 5)}, {ROW(m, 6), ROW(e, 6)}, {ROW(m, 7), ROW(e, 7)},
};

/* ---- The Python-level methods: the same implementations, boxed -------- */

#define PYM(k)                                                                          \
    static PyObject *py_m##k(PyObject *self, PyObject *unused)                         \
    {                                                                                   \
        (void)unused;                                                                   \
        return PyFloat_FromDouble(((BenchObj *)self)->vt->m[k](self));                  \
    }                                                                                   \
    static PyObject *py_e##k(PyObject *self, PyObject *arg)                            \
    {                                                                                   \
        double x = PyFloat_AsDouble(arg), r;                                            \
        if ((x == -1.0 && PyErr_Occurred()) || ((BenchObj *)self)->vt->e[k](self, x, &r) < 0) { \
            return NULL;                                                                \
        }                                                                               \
        return PyFloat_FromDouble(r);                                                   \
    }
PYM(0) PYM(1) PYM(2) PYM(3) PYM(4) PYM(5) PYM(6) PYM(7) PYM(8) PYM(9) PYM(10) PYM(11) PYM(12) PYM(13)
PYM(14) PYM(15)
#define DEF(k) {"m" #k, py_m##k, METH_NOARGS, NULL}, {"e" #k, py_e##k, METH_O, NULL}
static PyMethodDef py_methods[] = {
    DEF(0), DEF(1), DEF(2), DEF(3), DEF(4), DEF(5), DEF(6), DEF(7), DEF(8), DEF(9), DEF(10), DEF(11),
    DEF(12), DEF(13), DEF(14), DEF(15), {NULL, NULL, 0, NULL},
};

/* ---- Setup --------------------------------------------------------------- */

static PyObject *types[NTYPES];
static PyObject *objs[NTYPES];
static uint64_t m_ids[NMETH], e_ids[NMETH];
static PyObject *m_names[NMETH], *e_names[NMETH];
static char m_keys[NMETH][48], e_keys[NMETH][48];
static const char *type_names[NTYPES] = {"bench.typed.T0", "bench.typed.T1", "bench.typed.T2", "bench.typed.T3",
                                         "bench.typed.T4", "bench.typed.T5", "bench.typed.T6", "bench.typed.T7"};

typedef struct {
    uint8_t t, k;
} pair;
static pair order_mono[ORDER_LEN], order_mega[ORDER_LEN];

static uint64_t rng_state = 0x9E3779B97F4A7C15u;
static uint64_t rng(void)
{
    return bench_xorshift64(&rng_state);
}

static int setup(void)
{
    static int done = 0;
    int t, k;
    if (done) {
        return 0;
    }
    for (k = 0; k < NMETH; k++) {
        char name[8];
        snprintf(m_keys[k], sizeof m_keys[k], "bench.typed.v1:m%d#f64(O)", k);
        snprintf(e_keys[k], sizeof e_keys[k], "bench.typed.v1:e%d#f64(O,f64)!e", k);
        m_ids[k] = ExtType_Prehash(m_keys[k]);
        e_ids[k] = ExtType_Prehash(e_keys[k]);
        snprintf(name, sizeof name, "m%d", k);
        m_names[k] = PyUnicode_InternFromString(name);
        snprintf(name, sizeof name, "e%d", k);
        e_names[k] = PyUnicode_InternFromString(name);
        if (m_names[k] == NULL || e_names[k] == NULL) {
            return -1;
        }
    }
    for (t = 0; t < NTYPES; t++) {
        ExtType_SlotDef defs[2 * NMETH];
        PyType_Slot slots[] = {{Py_tp_methods, py_methods}, {0, NULL}};
        PyType_Spec spec = {type_names[t], (int)sizeof(BenchObj), 0, Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE, slots};
        BenchObj *o;
        for (k = 0; k < NMETH; k++) {
            defs[k] = (ExtType_SlotDef){m_keys[k], 0, (void *)vtabs[t].m[k]};
            defs[NMETH + k] = (ExtType_SlotDef){e_keys[k], 0, (void *)vtabs[t].e[k]};
        }
        types[t] = ExtType_FromSpec(NULL, &spec, NULL, defs, 2 * NMETH);
        if (types[t] == NULL) {
            return -1;
        }
        o = (BenchObj *)PyType_GenericNew((PyTypeObject *)types[t], NULL, NULL);
        if (o == NULL) {
            return -1;
        }
        o->vt = &vtabs[t];
        o->value = 1.0 + t;
        objs[t] = (PyObject *)o;
    }
    for (k = 0; k < ORDER_LEN; k++) {
        order_mono[k] = (pair){0, 0};
        order_mega[k] = (pair){(uint8_t)(rng() % NTYPES), (uint8_t)(rng() % NMETH)};
    }
    /* Every way finds the same implementation before anything is timed. */
    for (t = 0; t < NTYPES; t++) {
        for (k = 0; k < NMETH; k++) {
            if (ExtType_Find(objs[t], m_ids[k]) != (void *)vtabs[t].m[k] ||
                ExtType_Find(objs[t], e_ids[k]) != (void *)vtabs[t].e[k]) {
                PyErr_Format(PyExc_RuntimeError, "setup check failed for type %d method %d", t, k);
                return -1;
            }
        }
    }
    done = 1;
    return 0;
}

/* ---- The calls ------------------------------------------------------------ */

/* The Python method: what a consumer falls back to on a miss. -1 with an
   exception set on error (the loops stop there). */
static inline int call_m_py(PyObject *obj, int k, double *out)
{
    PyObject *r = PyObject_VectorcallMethod(m_names[k], &obj, 1 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    if (r == NULL) {
        return -1;
    }
    *out = PyFloat_AsDouble(r);
    Py_DECREF(r);
    return 0;
}

static inline int call_e_py(PyObject *obj, int k, double x, double *out)
{
    PyObject *args[2] = {obj, NULL};
    PyObject *r;
    args[1] = PyFloat_FromDouble(x);
    if (args[1] == NULL) {
        return -1;
    }
    r = PyObject_VectorcallMethod(e_names[k], args, 2 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    Py_DECREF(args[1]);
    if (r == NULL) {
        return -1;
    }
    *out = PyFloat_AsDouble(r);
    Py_DECREF(r);
    return 0;
}

/* The consumer pattern of docs/c-api.md: typed lookup, else the Python method. */
static inline int call_m_typed(PyObject *obj, int k, double *out)
{
    m_fn f = (m_fn)ExtType_Find(obj, m_ids[k]);
    if (f != NULL) {
        *out = f(obj);
        return 0;
    }
    return call_m_py(obj, k, out);
}

static inline int call_e_typed(PyObject *obj, int k, double x, double *out)
{
    e_fn f = (e_fn)ExtType_Find(obj, e_ids[k]);
    return f != NULL ? f(obj, x, out) : call_e_py(obj, k, x, out);
}

#define VT(obj) (((BenchObj *)(obj))->vt)

/* One loop per (way, signature); -1.0 when a call raised. */
#define BENCH(way, M_CALL, E_CALL)                                                      \
    static NOINLINE double bench_##way##_m(const pair *order, size_t n)                \
    {                                                                                   \
        double acc = 0, r = 0;                                                          \
        size_t i;                                                                       \
        for (i = 0; i < n; i++) {                                                       \
            pair pr = order[i & (ORDER_LEN - 1)];                                       \
            PyObject *obj = objs[pr.t];                                                 \
            int k = pr.k;                                                               \
            LAUNDER(obj);                                                               \
            if ((M_CALL) < 0) {                                                         \
                return -1.0;                                                            \
            }                                                                           \
            acc += r;                                                                   \
        }                                                                               \
        return acc;                                                                     \
    }                                                                                   \
    static NOINLINE double bench_##way##_e(const pair *order, size_t n)                \
    {                                                                                   \
        double acc = 0, r = 0;                                                          \
        size_t i;                                                                       \
        for (i = 0; i < n; i++) {                                                       \
            pair pr = order[i & (ORDER_LEN - 1)];                                       \
            PyObject *obj = objs[pr.t];                                                 \
            int k = pr.k;                                                               \
            LAUNDER(obj);                                                               \
            if ((E_CALL) < 0) {                                                         \
                return -1.0;                                                            \
            }                                                                           \
            acc += r;                                                                   \
        }                                                                               \
        return acc;                                                                     \
    }

BENCH(direct, (r = vtabs[pr.t].m[k](obj), 0), vtabs[pr.t].e[k](obj, 0.5, &r))
BENCH(vtable, (r = VT(obj)->m[k](obj), 0), VT(obj)->e[k](obj, 0.5, &r))
BENCH(typed, call_m_typed(obj, k, &r), call_e_typed(obj, k, 0.5, &r))
BENCH(vectorcall, call_m_py(obj, k, &r), call_e_py(obj, k, 0.5, &r))

typedef double (*bench_fn)(const pair *, size_t);
static const struct {
    const char *name;
    bench_fn m, e;
} ways[] = {
    {"direct", bench_direct_m, bench_direct_e},
    {"vtable", bench_vtable_m, bench_vtable_e},
    {"typed", bench_typed_m, bench_typed_e},
    {"vectorcall", bench_vectorcall_m, bench_vectorcall_e},
};
#define NWAYS ((int)(sizeof ways / sizeof ways[0]))

/* time(way, signature, workload, n, reps=1) -> [ns per call for each rep];
   signature "f64(O)" or "f64(O,f64)!e"; workload "mono" or "mega". All
   ways compute the same sum (checked). */
static PyObject *time_way(PyObject *self, PyObject *args)
{
    const char *way, *sig, *workload;
    Py_ssize_t n, reps = 1, r;
    int w, e;
    const pair *order;
    bench_fn fn;
    double want;
    PyObject *out;
    (void)self;
    if (!PyArg_ParseTuple(args, "sssn|n", &way, &sig, &workload, &n, &reps) || setup() < 0) {
        return NULL;
    }
    for (w = 0; w < NWAYS && strcmp(ways[w].name, way) != 0; w++) {
    }
    e = strcmp(sig, "f64(O,f64)!e") == 0;
    if (w == NWAYS || (!e && strcmp(sig, "f64(O)") != 0) || (strcmp(workload, "mono") && strcmp(workload, "mega")) ||
        n <= 0 || reps <= 0) {
        PyErr_Format(PyExc_ValueError, "bad arguments: %s %s %s", way, sig, workload);
        return NULL;
    }
    order = strcmp(workload, "mono") == 0 ? order_mono : order_mega;
    fn = e ? ways[w].e : ways[w].m;
    want = (e ? ways[0].e : ways[0].m)(order, ORDER_LEN);
    if (fn(order, ORDER_LEN) != want) { /* also the warm-up */
        if (!PyErr_Occurred()) {
            PyErr_Format(PyExc_RuntimeError, "%s computed another sum than a direct call", way);
        }
        return NULL;
    }
    out = PyList_New(reps);
    if (out == NULL) {
        return NULL;
    }
    for (r = 0; r < reps; r++) {
        double t0 = bench_now_ns(), s = fn(order, (size_t)n);
        double ns = (bench_now_ns() - t0) / (double)n;
        if (s < 0) {
            Py_DECREF(out);
            return NULL;
        }
        PyList_SET_ITEM(out, r, PyFloat_FromDouble(ns));
    }
    return out;
}

/* objects() -> the 8 bench objects (for the Python-side rows). */
static PyObject *objects(PyObject *self, PyObject *unused)
{
    PyObject *out;
    int t;
    (void)self;
    (void)unused;
    if (setup() < 0 || (out = PyList_New(NTYPES)) == NULL) {
        return NULL;
    }
    for (t = 0; t < NTYPES; t++) {
        PyList_SET_ITEM(out, t, Py_NewRef(objs[t]));
    }
    return out;
}

/* ways() -> the names of the ways, in table order. */
static PyObject *way_names(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    return bench_name_list(&ways[0].name, sizeof ways[0], NWAYS);
}

static PyMethodDef module_methods[] = {
    {"time", time_way, METH_VARARGS, "time(way, signature, workload, n, reps=1) -> [ns per call]"},
    {"objects", objects, METH_NOARGS, "objects() -> the bench objects"},
    {"ways", way_names, METH_NOARGS, "ways() -> the ways to call, in table order"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_et_typed", NULL, -1, module_methods,
                                    NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__et_typed(void)
{
    if (ExtType_Import() < 0) {
        return NULL;
    }
    return PyModule_Create(&module);
}
