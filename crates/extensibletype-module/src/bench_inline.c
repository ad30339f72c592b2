/*
 * The ExtType_Find rows of `python -m extensibletype bench` (src/bench.rs):
 * include/extensibletype.h compiled into the extension by build.rs (the `cc`
 * crate, the platform's C compiler at -O2) as a C consumer compiles it, so
 * the timed loops run the header's inline path, not the Rust port.
 *
 * Each loop does `n` lookups of `id` on type(objs[i]) (the `type` loops: on
 * objs[i], a type) and returns the sum of the pointers found (so no lookup is
 * dead code); src/bench.rs times it. objs points at one object the caller
 * keeps alive. No GIL needed (the caller holds it anyway).
 *
 *   chain: dependent lookups, the next object's index is this result & 0
 *          (latency: what an indirect call through the result waits for).
 *   tput:  independent lookups (throughput: a loop over many objects).
 */
#include <Python.h>
#include <stdint.h>
#include "extensibletype.h"

#if defined(__GNUC__) || defined(__clang__)
/* The value of x, opaque to the optimiser each iteration (no lookup is
   hoisted out of the loop). */
#  define EXTTYPE_BENCH_LAUNDER(x) __asm__ volatile("" : "+r"(x))
#  if defined(__x86_64__)
#    define EXTTYPE_BENCH_ZERO(x) __asm__ volatile("andq $0, %0" : "+r"(x))
#  elif defined(__aarch64__)
#    define EXTTYPE_BENCH_ZERO(x) __asm__ volatile("and %0, %0, xzr" : "+r"(x))
#  else
#    define EXTTYPE_BENCH_ZERO(x) do { (x) = 0; EXTTYPE_BENCH_LAUNDER(x); } while (0)
#  endif
#else
/* MSVC: a volatile round trip (adds a store and a load to every row). */
#  define EXTTYPE_BENCH_LAUNDER(x) do { void *volatile launder_ = (void *)(x); (x) = launder_; } while (0)
#  define EXTTYPE_BENCH_ZERO(x) do { volatile uintptr_t zero_ = 0; (x) &= zero_; } while (0)
#endif

/* ExtType_Import() for this translation unit: 0, or -1 with an exception
   set. Needs the GIL. */
int extensibletype_bench_import(void)
{
    return ExtType_Import();
}

/* The loops, for lookups from an object (ExtType_Find) and from a type
   (ExtType_FindInType: `--type` classes the bench cannot instantiate). */
#define EXTTYPE_BENCH_LOOPS(suffix, FIND)                                             \
    /* n dependent lookups: the next object is objs[result & 0]. */                 \
    uintptr_t extensibletype_bench_chain_##suffix(PyObject *const *objs, uint64_t id, \
                                                  uint64_t n)                         \
    {                                                                                 \
        uintptr_t acc = 0, dep = 0;                                                   \
        uint64_t i;                                                                   \
        for (i = 0; i < n; i++) {                                                     \
            uintptr_t r = (uintptr_t)FIND(objs[dep], id);                             \
            acc += r;                                                                 \
            dep = r;                                                                  \
            EXTTYPE_BENCH_ZERO(dep);                                                  \
        }                                                                             \
        return acc;                                                                   \
    }                                                                                 \
    /* n independent lookups on objs[0]. */                                           \
    uintptr_t extensibletype_bench_tput_##suffix(PyObject *const *objs, uint64_t id,  \
                                                 uint64_t n)                          \
    {                                                                                 \
        uintptr_t acc = 0;                                                            \
        uint64_t i;                                                                   \
        for (i = 0; i < n; i++) {                                                     \
            PyObject *o = objs[0];                                                    \
            EXTTYPE_BENCH_LAUNDER(o);                                                 \
            acc += (uintptr_t)FIND(o, id);                                            \
        }                                                                             \
        return acc;                                                                   \
    }

#define EXTTYPE_BENCH_FIND_OBJ(o, id) ExtType_Find((o), (id))
#define EXTTYPE_BENCH_FIND_TYPE(o, id) ExtType_FindInType((PyTypeObject *)(void *)(o), (id))
EXTTYPE_BENCH_LOOPS(obj, EXTTYPE_BENCH_FIND_OBJ)
EXTTYPE_BENCH_LOOPS(type, EXTTYPE_BENCH_FIND_TYPE)
