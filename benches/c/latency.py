"""Driver of the C latency benchmark (benches/c/latency.c).

    python benches/c/latency.py [--quick] [--callgrind] [--reps N]

Builds `_et_latency` against the running interpreter and the installed
`extensibletype` (with python/tests/cbuild.py; cached under target/c-ext),
times every method on both workloads and prints a Markdown table of ns per
lookup (min over reps, interleaved; pinned to one CPU when possible):
find + indirect call (with ratios to the direct call and to the vtable),
find only (independent lookups: throughput) and dependent lookups (the next
lookup's address depends on this one's result: latency, which is what an
indirect call waits for when its target is mispredicted).

--callgrind re-runs each loop under `valgrind --tool=callgrind
--branch-sim=yes` and adds instructions and simulated mispredictions
(conditional + indirect) per lookup. Valgrind's branch predictor is a
simulation, not the CPU's; hardware counters (perf) are used when available.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path

import _cext

HERE = Path(__file__).resolve().parent

WORKLOADS = ("mono", "mega")
MODES = ("call", "find", "chain")
LABELS = {
    "direct": "direct call (pre-resolved pointer)",
    "vtable": "fixed-offset vtable on the type",
    "exttype": "**`ExtType_Find`** (metaclass fast path)",
    "exttype_v1": "`ExtType_Find` as built before the flat descriptor",
    "exttype_foreign": "`ExtType_Find`, foreign-registered type",
    "sep200": "SEP 200 scan, expected position",
    "getslot": "`PyType_GetSlot`",
    "dict": "`PyDict_GetItem` on a per-type dict",
    "getattr": "`PyObject_GetAttr` + `PyCapsule_GetPointer`",
}


def build():
    return _cext.build("_et_latency", "latency.c")


def timings(mod, n, reps):
    """{(method, workload, mode): min ns per lookup}, reps interleaved."""
    best = {}
    for _ in range(reps):
        for method in mod.methods():
            for workload in WORKLOADS:
                for mode in MODES:
                    # Slow methods: fewer iterations, same ~time per rep.
                    k = n // 8 if method in ("getattr", "dict", "getslot") else n
                    t = mod.time(method, workload, mode, k, 1)[0]
                    key = (method, workload, mode)
                    best[key] = min(best.get(key, float("inf")), t)
    return best


def callgrind(mod_path, methods, n):
    """{(method, workload, mode): {event: per lookup}} from callgrind dumps."""
    script = (
        "import sys; sys.path.insert(0, %r); import _et_latency as m\n"
        "for meth in %r:\n"
        "    for w in %r:\n"
        "        for mode in %r:\n"
        "            m.run_once(meth, w, mode, %d)\n"
    ) % (str(mod_path.parent), list(methods), list(WORKLOADS), list(MODES), n)
    out = {}
    for trigger, vals in _cext.callgrind_dumps(script):
        method, workload, mode, count = trigger.split("/")
        out[(method, workload, mode)] = {e: v / int(count) for e, v in vals.items()}
    return out


def add_cases(mod):
    """Python-made objects for the "every lookup path" table (the C module
    adds: extensible hit/miss, static foreign type hit/miss)."""
    import extensibletype as et

    slots = mod.slot_addresses()

    class Ext(metaclass=et.ExtensibleType):
        __cslots__ = slots

    class SubMeta(et.ExtensibleType):
        pass

    class SubMetaClass(metaclass=SubMeta):
        __cslots__ = slots

    # A class made by type.__new__ alone: never initialised, inherits Ext's.
    Uninit = type.__new__(et.ExtensibleType, "Uninit", (Ext,), {})
    et.set_slots(bytearray, slots)

    class ByteArraySub(bytearray):
        pass

    class Plain:
        pass

    keep = [Ext, SubMeta, SubMetaClass, Uninit, ByteArraySub, Plain]
    for name, obj, hit in [
        ("extensible (Python class) hit", Ext(), True),
        ("sub-metaclass class hit", SubMetaClass(), True),
        ("sub-metaclass class miss", SubMetaClass(), False),
        ("never-initialised class hit", Uninit(), True),
        ("foreign bytearray hit", bytearray(), True),
        ("foreign bytearray miss", bytearray(), False),
        ("subclass of bytearray hit", ByteArraySub(), True),
        ("subclass of bytearray miss", ByteArraySub(), False),
        ("miss: object()", object(), False),
        ("miss: float", 1.5, False),
        ("miss: str", "s", False),
        ("miss: plain class instance", Plain(), False),
    ]:
        mod.add_case(name, obj, hit)
    return keep


def case_timings(mod, n, reps):
    """{(case index, workload, mode): min ns per lookup}, reps interleaved."""
    best = {}
    for _ in range(reps):
        for c in range(len(mod.cases())):
            for workload in WORKLOADS:
                for mode in ("find", "chain"):
                    t = mod.time_case(c, workload, mode, n, 1)[0]
                    best[(c, workload, mode)] = min(best.get((c, workload, mode), float("inf")), t)
    return best


def case_callgrind(mod_path, ncases, n):
    """{case index: {event: per lookup}} of the mono chain loop (callgrind)."""
    if shutil.which("valgrind") is None:
        return {}
    script = (
        "import sys; sys.path.insert(0, %r); sys.path.insert(0, %r); import _et_latency as m, latency\n"
        "keep = latency.add_cases(m)\n"
        "for c in range(%d):\n"
        "    m.run_case_once(c, 'mono', 'chain', %d)\n"
    ) % (str(mod_path.parent), str(HERE), ncases, n)
    out = {}
    for trigger, vals in _cext.callgrind_dumps(script):
        m = re.fullmatch(r"case(\d+)/(\S+)", trigger)
        if not m:
            continue
        count = int(m.group(2).split("/")[-1])
        out[int(m.group(1))] = {e: v / count for e, v in vals.items()}
    return out


def paths_table(names, best, cg):
    """Markdown: every lookup path, dependent-chain ns and ratio to the
    extensible hit (case 0), mono and mega (16 keys); callgrind deltas."""
    hdr = "| `ExtType_Find` on | mono chain ns | × ext hit | mega chain ns | × ext hit | mega find-only ns |"
    sep = "|---|---:|---:|---:|---:|---:|"
    if cg:
        hdr += " Ir/lookup (mono) | Δ mispredicts/lookup vs ext hit |"
        sep += "---:|---:|"
    lines = [hdr, sep]
    base = {w: best[(0, w, "chain")] for w in WORKLOADS}
    miss = lambda e: e.get("Bcm", 0) + e.get("Bim", 0)  # noqa: E731
    for c, name in enumerate(names):
        mono, mega = best[(c, "mono", "chain")], best[(c, "mega", "chain")]
        row = [name, f"{mono:.2f}", f"{mono / base['mono']:.2f}", f"{mega:.2f}", f"{mega / base['mega']:.2f}",
               f"{best[(c, 'mega', 'find')]:.2f}"]
        if cg:
            e = cg.get(c)
            row.append(f"{e['Ir']:.1f}" if e else "–")
            row.append(f"{round(miss(e) - miss(cg.get(0, {})), 4) + 0.0:+.4f}" if e and 0 in cg else "–")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def perf_available():
    if shutil.which("perf") is None:
        return False
    proc = subprocess.run(["perf", "stat", "-x,", "-e", "instructions,branch-misses", "true"],
                          capture_output=True, text=True)
    return proc.returncode == 0 and "<not supported>" not in proc.stderr


def table(best, cg):
    """Markdown: find+call per workload (ratios to direct and to the vtable),
    mega find-only throughput, dependent-lookup latency, callgrind counts."""
    hdr = ("| method | mono ns | × direct | mega ns | × direct | × vtable "
           "| mega find-only ns | mega latency ns |")
    sep = "|---|---:|---:|---:|---:|---:|---:|---:|"
    if cg:
        hdr += " Δ instr/lookup | Δ mispredicts/lookup |"
        sep += "---:|---:|"
    lines = [hdr, sep]
    direct = {w: best[("direct", w, "call")] for w in WORKLOADS}
    vtable = best[("vtable", "mega", "call")]
    for method in LABELS:
        if (method, "mono", "call") not in best:
            continue
        mono, mega = best[(method, "mono", "call")], best[(method, "mega", "call")]
        row = [LABELS[method], f"{mono:.2f}", f"{mono / direct['mono']:.2f}",
               f"{mega:.2f}", f"{mega / direct['mega']:.2f}", f"{mega / vtable:.2f}",
               f"{best[(method, 'mega', 'find')]:.2f}", f"{best[(method, 'mega', 'chain')]:.2f}"]
        if cg:
            c = cg.get((method, "mega", "call"), {})
            base = cg.get(("direct", "mega", "call"), {})
            miss = lambda e: e.get("Bcm", 0) + e.get("Bim", 0)  # noqa: E731
            row.append(f"{round(c['Ir'] - base.get('Ir', 0)) + 0:d}" if "Ir" in c else "–")
            row.append(f"{round(miss(c) - miss(base), 3) + 0.0:+.3f}" if c else "–")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer iterations (smoke test)")
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--callgrind", action="store_true", help="add callgrind instruction/branch counts")
    args = ap.parse_args(argv)

    mod = build()
    _cext.pin_to_one_cpu()
    n = 1 << (16 if args.quick else 21)
    reps = 2 if args.quick else args.reps
    import extensibletype

    print(f"# extensibletype C latency: Python {platform.python_version()} "
          f"({'free-threaded' if getattr(sys, '_is_gil_enabled', lambda: True)() is False else 'GIL'}), "
          f"{platform.machine()}, {os.cpu_count()} CPUs, {n} lookups x {reps} reps (min), "
          f"extensibletype {extensibletype.__file__}")
    keep = add_cases(mod)  # noqa: F841 (the objects stay alive)
    best = timings(mod, n, reps)
    names = mod.cases()
    # Short loops, many reps: the minimum is robust on a shared machine.
    case_best = case_timings(mod, max(n >> 6, 1 << 12), reps * 8)
    cg = callgrind(Path(mod.__file__), list(LABELS), 1 << 14 if args.quick else 1 << 16) if args.callgrind else {}
    case_cg = case_callgrind(Path(mod.__file__), len(names), 1 << 14 if args.quick else 1 << 16) if args.callgrind else {}
    print()
    print(table(best, cg))
    print()
    print("Every lookup path (the same loop for every row; ratios to the first row):")
    print()
    print(paths_table(names, case_best, case_cg))
    print()
    if cg:
        print("instr/lookup and Δ mispredicts/lookup: mega find+call, minus the direct loop's "
              "(callgrind; mispredicts = simulated conditional + indirect).")
        print("Raw callgrind counts per loop iteration:")
        for method in LABELS:
            for w in WORKLOADS:
                for mode in MODES:
                    c = cg.get((method, w, mode))
                    if c:
                        print(f"  {method:16s} {w} {mode}: Ir {c.get('Ir', 0):7.1f}  Bc {c.get('Bc', 0):5.2f}  "
                              f"Bcm {c.get('Bcm', 0):6.3f}  Bi {c.get('Bi', 0):5.2f}  Bim {c.get('Bim', 0):6.3f}")
    print("perf hardware counters:", "available" if perf_available() else "not supported on this machine")
    return 0


if __name__ == "__main__":
    sys.exit(main())
