"""``python -m extensibletype bench``: lookup latency and throughput on this machine.

The timing loops are compiled into the extension (``_core._bench_lookup``).
Every case starts from an object (``type(obj)`` is part of every lookup) and
is timed two ways: as a dependent chain (the next lookup's object depends on
this lookup's result: the latency an indirect call through the result waits
for) and as independent lookups (throughput: a loop over many objects). The
``ExtType_Find`` cases run ``extensibletype.h`` compiled into the extension
by the platform's C compiler, as a C consumer compiles it (the environment's
``lookup_code`` says which code ran). Each figure is the minimum over
``--reps`` runs of ``--iterations`` lookups, in ns per lookup, with its ratio
to a hit on a class made with the ``ExtensibleType`` metaclass.

The built-in cases register slots on ``bytearray`` (a foreign type) in this
process; run the command in its own process (as ``python -m`` does).

Exit codes: 0 success; 2 bad arguments (``--type``/``--key``/``--iterations``/
``--reps`` named in the message); 1 ``--plot`` without matplotlib installed
(nothing is measured).
"""

from __future__ import annotations

import ctypes
import importlib
import json
import platform
import sys
from typing import Dict, List, Optional, Sequence

from . import ExtensibleType, lookup, prehash, set_slots
from . import _core

KEY = "extensibletype.bench.v1:impl"
MISSING_KEY = "extensibletype.bench.v1:absent"
ADDRESS = 0x5EED0  # a fake implementation: looked up, never called
PY_NB_ADD = 7  # Py_nb_add in typeslots.h (stable ABI)


# Bounds of --iterations and --reps: beyond them a run would not finish in
# any useful time (the slowest case costs ~100 ns per lookup).
MAX_ITERATIONS = 10**9
MAX_REPS = 10_000


class BenchArgumentError(ValueError):
    """A bad ``--type``/``--key``; the message names the argument."""


def _capsule(address: int):
    """A PyCapsule with name NULL around ``address`` (for the getattr case)."""
    # A private prototype (not ctypes.pythonapi's shared function object,
    # whose argtypes other code in the process relies on).
    new = ctypes.PYFUNCTYPE(ctypes.py_object, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p)(
        ("PyCapsule_New", ctypes.pythonapi)
    )
    return new(address, None, None)


def resolve_type(spec: str) -> type:
    """``MOD:CLASS`` (CLASS may be dotted) -> the class, or BenchArgumentError."""
    module_name, sep, qualname = spec.partition(":")
    if not sep or not module_name or not qualname:
        raise BenchArgumentError(f"argument --type: expected MODULE:CLASS, got {spec!r}")
    try:
        obj = importlib.import_module(module_name)
    except Exception as e:  # any import failure is the user's argument
        raise BenchArgumentError(f"argument --type: cannot import module {module_name!r}: {e}") from None
    for part in qualname.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise BenchArgumentError(f"argument --type: module {module_name!r} has no attribute {qualname!r}") from None
    if not isinstance(obj, type):
        raise BenchArgumentError(f"argument --type: {spec!r} is not a class (got {type(obj).__name__})")
    return obj


def key_id(key: str) -> int:
    """The id of ``--key``, or BenchArgumentError."""
    if not key:
        raise BenchArgumentError("argument --key: must not be empty")
    if "\0" in key:
        raise BenchArgumentError("argument --key: must not contain NUL characters")
    try:
        return prehash(key)
    except (TypeError, ValueError, UnicodeError) as e:
        raise BenchArgumentError(f"argument --key: {e}") from None


def cases(user_type: Optional[type] = None, user_key: Optional[str] = None) -> List[dict]:
    """The benchmark cases: {name, method, target, arg} (first = baseline)."""
    hit, miss = prehash(KEY), prehash(MISSING_KEY)

    class Extensible(metaclass=ExtensibleType):
        __cslots__ = {KEY: ADDRESS}

    class SubMeta(ExtensibleType):
        pass

    class SubMetaClass(metaclass=SubMeta):
        __cslots__ = {KEY: ADDRESS}

    set_slots(bytearray, {KEY: ADDRESS})

    class ByteArraySub(bytearray):
        pass

    class Plain:
        pass

    class WithCapsule:
        impl = _capsule(ADDRESS)

    out = [
        ("extensible class, hit", "find", Extensible(), hit),
        ("extensible class, miss", "find", Extensible(), miss),
        ("sub-metaclass class, hit", "find", SubMetaClass(), hit),
        ("foreign bytearray (registered), hit", "find", bytearray(), hit),
        ("foreign bytearray (registered), miss", "find", bytearray(), miss),
        ("subclass of bytearray, hit", "find", ByteArraySub(), hit),
        ("miss: object()", "find", object(), hit),
        ("miss: float", "find", 1.5, hit),
        ("miss: str", "find", "s", hit),
        ("miss: plain class instance", "find", Plain(), hit),
        ("PyType_GetSlot(float, nb_add)", "getslot", 1.5, PY_NB_ADD),
        ("PyObject_GetAttr + PyCapsule_GetPointer", "getattr", WithCapsule(), "impl"),
        ("fixed-offset vtable (baseline)", "vtable", None, 0),
    ]
    if user_type is not None:
        name = f"{user_type.__module__}:{user_type.__qualname__} {user_key!r}"
        instance = instance_of(user_type)
        if instance is not None:
            out.append((name, "find", instance, key_id(user_key)))
        else:
            out.append((name + " (from the type)", "find_in_type", user_type, key_id(user_key)))
    return [dict(name=n, method=m, target=t, arg=a) for n, m, t, a in out]


def instance_of(cls: type) -> Optional[object]:
    """An instance of exactly ``cls`` made without arguments (``cls.__new__``,
    then ``object.__new__``: no ``__init__`` runs), or None."""
    for new in (lambda: cls.__new__(cls), lambda: object.__new__(cls)):
        try:
            obj = new()
        except Exception:
            continue
        if type(obj) is cls:
            return obj
    return None


def found(case: dict) -> Optional[bool]:
    """Whether the case's lookup finds something (None: not a slot lookup)."""
    if case["method"] == "find":
        return lookup(case["target"], case["arg"]) is not None
    if case["method"] == "find_in_type":
        return _core._bench_lookup("find_in_type", case["target"], case["arg"], 0) != 0
    return None


MODES = (("latency", False), ("throughput", True))


def measure(
    case_list: Sequence[dict], iterations: int, reps: int, progress=None
) -> List[dict]:
    """Time each case as latency and throughput (reps interleaved, min
    kept); ratios to the first case."""
    best: Dict[tuple, float] = {}
    total = len(case_list) * reps * len(MODES)
    done = 0
    for _ in range(reps):
        for i, case in enumerate(case_list):
            for mode, throughput in MODES:
                if progress is not None:
                    progress(done, total, f"{case['name']} ({mode})")
                ns = _core._bench_lookup(case["method"], case["target"], case["arg"], iterations, throughput)
                best[i, mode] = min(best.get((i, mode), float("inf")), ns)
                done += 1

    def ratio(i: int, mode: str) -> Optional[float]:
        base = best[0, mode]
        return round(best[i, mode] / base, 3) if base > 0 else None

    return [
        dict(case=c["name"], method=c["method"], ns=round(best[i, "latency"], 3), ratio=ratio(i, "latency"),
             throughput_ns=round(best[i, "throughput"], 3), throughput_ratio=ratio(i, "throughput"),
             found=found(c))
        for i, c in enumerate(case_list)
    ]


def environment(iterations: int, reps: int) -> dict:
    from . import __file__ as pkg_file

    gil = getattr(sys, "_is_gil_enabled", lambda: True)()
    return dict(
        python=platform.python_version(),
        implementation=platform.python_implementation(),
        free_threaded=not gil,
        machine=platform.machine(),
        cpu=cpu_model(),
        platform=platform.platform(),
        package=pkg_file,
        lookup_code=_core._bench_lookup("path", None, 0, 0),
        iterations=iterations,
        reps=reps,
        unit="ns per lookup, min over reps: ns/ratio a dependent chain (latency), "
             "throughput_ns/throughput_ratio independent lookups",
        baseline="extensible class, hit",
    )


def cpu_model() -> str:
    """The CPU's model name where the OS says it (Linux), else platform.processor()."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def format_table(env: dict, results: Sequence[dict]) -> str:
    width = max(len(r["case"]) for r in results)
    lines = [
        f"extensibletype lookup latency: {env['implementation']} {env['python']}"
        f"{' (free-threaded)' if env['free_threaded'] else ''}, {env['machine']} ({env['cpu']}), "
        f"{env['iterations']} lookups x {env['reps']} reps (min); find rows: {env['lookup_code']}",
        "ns per lookup: latency = a dependent chain, thruput = independent lookups",
        "",
        f"{'case':<{width}}  {'latency':>9}  {'x ext hit':>9}  {'thruput':>9}  {'x ext hit':>9}  result",
        f"{'-' * width}  {'-' * 9}  {'-' * 9}  {'-' * 9}  {'-' * 9}  ------",
    ]

    def ratio(x: Optional[float]) -> str:
        return "-" if x is None else f"{x:.2f}"

    for r in results:
        result = {True: "hit", False: "miss", None: "-"}[r["found"]]
        lines.append(f"{r['case']:<{width}}  {r['ns']:>9.2f}  {ratio(r['ratio']):>9}  "
                     f"{r['throughput_ns']:>9.2f}  {ratio(r['throughput_ratio']):>9}  {result}")
    return "\n".join(lines)


def plot(results: Sequence[dict], path: str, env: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["case"] for r in results][::-1]
    colors = ["#4c72b0" if r["method"].startswith("find") else "#999999" for r in results][::-1]
    fig, axes = plt.subplots(1, 2, sharey=True, figsize=(13, 0.38 * len(names) + 1.4))
    for ax, key, ratio_key, title in (
        (axes[0], "ns", "ratio", "latency: dependent chain"),
        (axes[1], "throughput_ns", "throughput_ratio", "throughput: independent lookups"),
    ):
        values = [r[key] for r in results][::-1]
        bars = ax.barh(names, values, color=colors)
        for bar, r in zip(bars, list(results)[::-1]):
            label = f" {r[key]:.2f} ns" + ("" if r[ratio_key] is None else f" ({r[ratio_key]:.2f}x)")
            ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, label, va="center", fontsize=8)
        ax.set_xlabel(f"ns per lookup, {title} (lower is better)")
        ax.set_xlim(0, max(values) * 1.35)
    fig.suptitle(f"extensibletype lookup, Python {env['python']} {env['machine']} ({env['cpu']}); "
                 f"find rows: {env['lookup_code']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(args) -> int:
    """The ``bench`` command (args from the argparse sub-parser)."""
    if (args.type is None) != (args.key is None):
        missing = "--key" if args.key is None else "--type"
        given = "--type" if args.key is None else "--key"
        print(f"error: argument {missing}: required with {given}", file=sys.stderr)
        return 2
    try:
        user_type = resolve_type(args.type) if args.type is not None else None
        if args.key is not None:
            key_id(args.key)
    except BenchArgumentError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for name, value, most in (("--iterations", args.iterations, MAX_ITERATIONS), ("--reps", args.reps, MAX_REPS)):
        if not 1 <= value <= most:
            print(f"error: argument {name}: must be between 1 and {most}, got {value}", file=sys.stderr)
            return 2
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print("error: --plot needs matplotlib, which is not installed (pip install matplotlib); "
                  "nothing was measured", file=sys.stderr)
            return 1

    # Progress only to a terminal: a log file or a pipe gets the result alone.
    tty = sys.stderr.isatty()

    def progress(done: int, total: int, name: str) -> None:
        if tty:
            sys.stderr.write(f"\rbench: [{done + 1}/{total}] {name[:50]:<50}")
            sys.stderr.flush()

    env = environment(args.iterations, args.reps)
    results = measure(cases(user_type, args.key), args.iterations, args.reps, progress)
    if tty:
        sys.stderr.write("\r" + " " * 70 + "\r")
        sys.stderr.flush()
    if args.json:
        print(json.dumps(dict(environment=env, results=results)))
    else:
        print(format_table(env, results))
    if args.plot:
        plot(results, args.plot, env)
        if not args.json:
            print(f"\nplot written to {args.plot}")
    return 0


def add_parser(sub) -> None:
    """Register ``bench`` on an argparse sub-parsers object."""
    p = sub.add_parser(
        "bench",
        help="lookup latency and throughput on this machine (compiled loops, from the installed package)",
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument("--type", metavar="MOD:CLASS", help="also time a lookup on this class (needs --key)")
    p.add_argument("--key", metavar="KEY", help="the key to look up on --type")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.add_argument("--plot", metavar="FILE.png", help="also draw a bar chart (needs matplotlib)")
    p.add_argument("--iterations", type=int, default=100_000,
                   help=f"lookups per timed run, 1 to {MAX_ITERATIONS} (default %(default)s)")
    p.add_argument("--reps", type=int, default=15, help=f"timed runs per case, min kept, 1 to {MAX_REPS} (default %(default)s)")
    p.set_defaults(func=run)
