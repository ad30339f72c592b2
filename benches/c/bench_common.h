/*
 * What the C benchmark extensions (latency.c, typed.c, tablev2.c) share: the
 * measurement primitives, so that every benchmark times its loops the same
 * way, and the module definition. Benchmark code only (GNU C: inline asm,
 * statement macros); include it after <Python.h> and "extensibletype.h".
 * Whatever makes Python objects (bench_name_list, BENCH_TIME_REPS) needs
 * the GIL (an attached thread state); new references are the caller's.
 *
 * The loop and timing macros expect the including file to define
 *   ORDER_LEN   the length of its access-order array (a power of two)
 *   pair        the order array's element: a struct with fields t (type
 *               index) and k (key index)
 */
#ifndef BENCH_COMMON_H
#define BENCH_COMMON_H

#include <stdint.h>
#include <time.h>

/* Under valgrind --tool=callgrind, BENCH_RUN_ONCE brackets one loop with
   CALLGRIND_ZERO_STATS / CALLGRIND_DUMP_STATS_AT(label), so each dump holds
   exactly that loop's instructions; without valgrind's header, no-ops. */
#if defined(__has_include)
#  if __has_include(<valgrind/callgrind.h>)
#    include <valgrind/callgrind.h>
#  endif
#endif
#ifndef CALLGRIND_ZERO_STATS
#  define CALLGRIND_ZERO_STATS
#  define CALLGRIND_DUMP_STATS_AT(s) ((void)(s))
#endif

#define NOINLINE __attribute__((noinline))
/* Make `x` opaque to the optimiser each iteration, so that no method's loads
   are hoisted out of the loop. */
#define LAUNDER(x) __asm__ volatile("" : "+r"(x))

/* dep = 0, but the optimiser cannot know it: the next lookup's address
   depends on this lookup's result (measures latency, not throughput). */
#if defined(__x86_64__)
#  define ZERO_DEPENDENCY(x) __asm__("andq $0, %0" : "+r"(x))
#elif defined(__aarch64__)
#  define ZERO_DEPENDENCY(x) __asm__("and %0, %0, xzr" : "+r"(x))
#else
#  define ZERO_DEPENDENCY(x) ((x) = 0)
#endif

/* The body of a throughput loop: n independent lookups in the order of
   `order` (wrapping at ORDER_LEN), each result added to `acc` (uintptr_t).
   LOOKUP is an expression of `obj` (objs[pr.t], laundered), `k` (pr.k) and
   `pr` giving a pointer. */
#define BENCH_FIND_LOOP(acc, order, objs, n, LOOKUP)   \
    do {                                                \
        size_t i;                                       \
        for (i = 0; i < (n); i++) {                     \
            pair pr = (order)[i & (ORDER_LEN - 1)];     \
            PyObject *obj = (objs)[pr.t];               \
            int k = pr.k;                               \
            (void)k;                                    \
            LAUNDER(obj);                               \
            (acc) += (uintptr_t)(void *)(LOOKUP);       \
        }                                               \
    } while (0)

/* The body of a latency loop: the same lookups as a dependent chain (the
   next order index adds this lookup's result, zeroed by ZERO_DEPENDENCY). */
#define BENCH_CHAIN_LOOP(acc, order, objs, n, LOOKUP)       \
    do {                                                     \
        uintptr_t dep = 0;                                   \
        size_t i;                                            \
        for (i = 0; i < (n); i++) {                          \
            pair pr = (order)[(i + dep) & (ORDER_LEN - 1)];  \
            PyObject *obj = (objs)[pr.t];                    \
            int k = pr.k;                                    \
            (void)k;                                         \
            LAUNDER(obj);                                    \
            dep = (uintptr_t)(void *)(LOOKUP);               \
            (acc) += dep;                                    \
            ZERO_DEPENDENCY(dep);                            \
        }                                                    \
    } while (0)

/* Monotonic clock in ns. */
static inline double bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* xorshift64: the benchmarks' deterministic pseudo-random orders. */
static inline uint64_t bench_xorshift64(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *state = x;
}

/* A new list of n str: the name at `first`, then the one every `stride`
   bytes after it (an array of names: sizeof(char *); the name field of a
   table of structs: the struct's size). NULL with an exception on error. */
static inline PyObject *bench_name_list(const char *const *first, size_t stride, int n)
{
    PyObject *out = PyList_New(n);
    int i;
    for (i = 0; out != NULL && i < n; i++) {
        PyObject *s = PyUnicode_FromString(*(const char *const *)((const char *)first + (size_t)i * stride));
        if (s == NULL) {
            Py_CLEAR(out);
            break;
        }
        PyList_SET_ITEM(out, i, s);
    }
    return out;
}

/* out = a new list of `reps` floats: ns per iteration of each of `reps`
   calls FN(args..., n), after one warm-up call FN(args..., ORDER_LEN). The
   results are added to `sink` (volatile) so that no call is dropped. `out`
   is NULL (exception set) when the list cannot be made. The minimum over
   reps is taken by the Python driver. */
#define BENCH_TIME_REPS(out, sink, n, reps, FN, ...)                                           \
    do {                                                                                        \
        Py_ssize_t r_;                                                                          \
        (out) = PyList_New(reps);                                                               \
        if ((out) != NULL) {                                                                    \
            (sink) += FN(__VA_ARGS__, ORDER_LEN); /* warm up */                                 \
            for (r_ = 0; r_ < (reps); r_++) {                                                   \
                double t0_ = bench_now_ns();                                                    \
                (sink) += FN(__VA_ARGS__, (size_t)(n));                                         \
                PyList_SET_ITEM((out), r_, PyFloat_FromDouble((bench_now_ns() - t0_) / (double)(n))); \
            }                                                                                   \
        }                                                                                       \
    } while (0)

/* result = FN(args..., n) alone between CALLGRIND_ZERO_STATS and a dump
   labelled `label`, after one warm-up call FN(args..., ORDER_LEN). */
#define BENCH_RUN_ONCE(result, label, n, FN, ...)      \
    do {                                               \
        FN(__VA_ARGS__, ORDER_LEN); /* warm up */      \
        CALLGRIND_ZERO_STATS;                          \
        (result) = FN(__VA_ARGS__, (size_t)(n));       \
        CALLGRIND_DUMP_STATS_AT(label);                \
    } while (0)

/* The module NAME (a C identifier: PyInit_NAME), multi-phase: its exec slot
   imports the runtime (ExtType_Import); no module state, no GIL needed. */
#ifdef Py_mod_gil
#  define BENCH_GIL_SLOT_ {Py_mod_gil, Py_MOD_GIL_NOT_USED},
#else
#  define BENCH_GIL_SLOT_
#endif
#define BENCH_MODULE(NAME, DOC, METHODS)                                                    \
    static int bench_module_exec(PyObject *module)                                          \
    {                                                                                       \
        (void)module;                                                                       \
        return ExtType_Import();                                                            \
    }                                                                                       \
    static PyModuleDef_Slot bench_module_slots[] = {                                        \
        {Py_mod_exec, (void *)bench_module_exec}, BENCH_GIL_SLOT_ {0, NULL},                \
    };                                                                                      \
    static PyModuleDef bench_module = {                                                     \
        PyModuleDef_HEAD_INIT, #NAME, DOC, 0, METHODS, bench_module_slots, NULL, NULL, NULL, \
    };                                                                                      \
    PyMODINIT_FUNC PyInit_##NAME(void)                                                      \
    {                                                                                       \
        return PyModuleDef_Init(&bench_module);                                             \
    }

#endif /* BENCH_COMMON_H */
