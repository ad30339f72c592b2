"""Subinterpreters (docs/spec.md §7 and §11): the process-wide type cache never
gives one interpreter's class another interpreter's answer, even though
CPython 3.12+ assigns heap-type version tags per interpreter and fresh
interpreters reuse the same values; one metaclass per process whatever the
interpreter that imports first; isolated interpreters (own GIL) are refused
with an ImportError that says why.

Every scenario runs in a fresh process (the cache and the runtime are
process-wide, so the order of events must be under control). Legacy
subinterpreters come from ``_xxsubinterpreters`` (3.11, 3.12) or
``_interpreters`` (3.13+); an interpreter without either skips with a reason.
"""

import os
import subprocess
import sys
import sysconfig
import textwrap

import pytest

import cbuild

# A free-threaded build (the refusal below is the build's, whatever the GIL's state).
FREE_THREADED = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))

pytestmark = pytest.mark.skipif(not cbuild.have_compiler(), reason="no C compiler")

HERE = os.path.dirname(os.path.abspath(__file__))


def _have_subinterpreters():
    for name in ("_interpreters", "_xxsubinterpreters"):
        try:
            __import__(name)
            return True
        except ImportError:
            pass
    return False


needs_subinterpreters = pytest.mark.skipif(
    not _have_subinterpreters(), reason="this interpreter has neither _interpreters nor _xxsubinterpreters"
)

# Put in front of every scenario: legacy subinterpreters on 3.11 - 3.15.
HELPERS = """
import gc, os, sys
sys.path[:0] = [C_DIR]
if sys.version_info >= (3, 13):
    import _interpreters as _interp
    def new_legacy():
        return _interp.create("legacy")
    def new_isolated():
        return _interp.create("isolated")
    def run(i, code):
        err = _interp.run_string(i, code)
        if err is not None:
            raise RuntimeError("in subinterpreter %s: %s" % (i, err.formatted))
else:
    import _xxsubinterpreters as _interp
    def new_legacy():
        return _interp.create(isolated=False)
    def new_isolated():
        return _interp.create(isolated=True)
    def run(i, code):
        _interp.run_string(i, code)
def destroy(i):
    _interp.destroy(i)
"""


@pytest.fixture(scope="module")
def c_dir():
    """Directory holding the C helper (ExtType_Find from C)."""
    import extensibletype

    path = cbuild.build(
        "subinterp_find",
        [os.path.join(HERE, "c", "subinterp_find.c")],
        include_dirs=[cbuild.INCLUDE],
        cflags=cbuild.STRICT,
    )
    assert extensibletype
    return str(path.parent)


def scenario(code, c_dir, extra_path=(), timeout=300):
    """Run HELPERS + `code` in a fresh interpreter; return its stdout."""
    src = f"C_DIR = {c_dir!r}\n" + HELPERS + textwrap.dedent(code)
    env = dict(os.environ)
    # Subinterpreters start from PYTHONPATH too.
    env["PYTHONPATH"] = os.pathsep.join([*extra_path, c_dir, HERE, env.get("PYTHONPATH", "")])
    proc = subprocess.run(
        [sys.executable, "-X", "faulthandler", "-c", src],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, f"scenario failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


# One task in an interpreter: make a class, use it, look a slot up from
# Python and from C, write "<who> <python answer> <C answer>", let it die.
TASK_SETUP = """
import gc, sys
import extensibletype as et
import subinterp_find as cf
KEY = "tests.subinterp.v1:slot"
ID = et.prehash(KEY)
OUT = open(OUT_PATH, "a")
def report(who, obj):
    OUT.write("%s %s %s %s\\n" % (who, et.lookup(obj, KEY), cf.find(obj, ID), cf.find_in_type(type(obj), ID)))
    OUT.flush()
"""
BUF_TASK = """
class Buf(bytearray):
    pass
b = Buf(b"x")
b.append(1)
report("buf", b)
del b, Buf
gc.collect()
"""
PLAIN_TASK = """
class Plain:
    def method(self):
        return 1
p = Plain()
p.method()
report("plain", p)
del p, Plain
gc.collect()
"""


def tally(out_path):
    """(tasks, wrong answers) from the report lines."""
    want = {"buf": str(0x1234), "plain": "None"}
    tasks = wrong = 0
    with open(out_path) as f:
        for line in f:
            who, *answers = line.split()
            tasks += 1
            wrong += any(a != want[who] for a in answers)
    return tasks, wrong


@needs_subinterpreters
def test_pool_taking_turns_never_answers_for_another_interpreters_class(c_dir, tmp_path):
    """Two long-lived legacy subinterpreters take turns: one subclasses a
    foreign-registered type, the other makes a plain class. Each class dies
    after its task, so the next one (in the other interpreter) often gets its
    address and, tags being per interpreter, its version tag."""
    out = tmp_path / "answers.txt"
    scenario(
        f"""
        OUT_PATH = {str(out)!r}
        import extensibletype as et
        et.set_slots(bytearray, {{"tests.subinterp.v1:slot": 0x1234}})
        a, b = new_legacy(), new_legacy()
        for i in (a, b):
            run(i, "OUT_PATH = %r\\n" % OUT_PATH + {TASK_SETUP!r})
        for _ in range(200):
            run(a, {BUF_TASK!r})
            run(b, {PLAIN_TASK!r})
        destroy(a)
        destroy(b)
        """,
        c_dir,
    )
    tasks, wrong = tally(out)
    assert tasks == 400
    assert wrong == 0, f"{wrong}/{tasks} tasks got another interpreter's answer"


@needs_subinterpreters
def test_dying_interpreters_and_reused_tags(c_dir, tmp_path):
    """Interpreters that die and fresh ones that start their tag counter
    again: the main interpreter first fills the cache for classes that die,
    then each short-lived interpreter makes one class and dies."""
    out = tmp_path / "answers.txt"
    scenario(
        f"""
        OUT_PATH = {str(out)!r}
        exec({TASK_SETUP!r})
        et.set_slots(bytearray, {{KEY: 0x1234}})
        # The main interpreter fills entries for classes that die.
        for _ in range(50):
            exec({BUF_TASK!r})
        for n in range(60):
            i = new_legacy()
            run(i, "OUT_PATH = %r\\n" % OUT_PATH + {TASK_SETUP!r})
            run(i, {PLAIN_TASK!r} if n % 2 else {BUF_TASK!r})
            # A plain class registered in the interpreter and left there:
            # the registry keeps it past the interpreter's death.
            run(i, "class Kept:\\n    pass\\n"
                   "et.set_slots(Kept, {{'tests.subinterp.v1:kept': 0x7777}})\\n"
                   "assert cf.find(Kept(), et.prehash('tests.subinterp.v1:kept')) == 0x7777\\n")
            destroy(i)
            exec({PLAIN_TASK!r})
        """,
        c_dir,
    )
    tasks, wrong = tally(out)
    assert tasks == 50 + 120
    assert wrong == 0, f"{wrong}/{tasks} tasks got another interpreter's answer"


@needs_subinterpreters
def test_ctypes_values_after_the_first_converting_interpreter_died(c_dir):
    """ctypes values convert in any interpreter, also after the first one that
    converted one died (nothing of an interpreter's ctypes is kept)."""
    scenario(
        """
        i = new_legacy()
        run(i, "import ctypes, extensibletype as et\\n"
               "class K:\\n    pass\\n"
               "et.set_slots(K, {'tests.subinterp.v1:c': ctypes.CFUNCTYPE(ctypes.c_int)(lambda: 7)})\\n")
        destroy(i)
        import ctypes, extensibletype as et
        class K2:
            pass
        f = ctypes.CFUNCTYPE(ctypes.c_int)(lambda: 7)
        et.set_slots(K2, {"tests.subinterp.v1:c": f})
        assert et.lookup(K2(), "tests.subinterp.v1:c") == ctypes.cast(f, ctypes.c_void_p).value
        """,
        c_dir,
    )


# `cached(tp)`: is there a live type-cache entry for `tp` (read with ctypes
# from the API struct, docs/spec.md §8 and §11)?
CACHE_PROBE = """
import ctypes
from extensibletype import _core
def cached(tp):
    get = ctypes.pythonapi.PyCapsule_GetPointer
    get.restype, get.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]
    api = get(_core._C_API, b"extensibletype._C_API")
    entries = ctypes.c_void_p.from_address(api + 112).value
    bits = ctypes.c_uint32.from_address(api + 120).value
    off = ctypes.c_int32.from_address(api + 124).value
    index = ((id(tp) * 0x9E3779B97F4A7C15) % 2**64) >> (64 - bits)
    e = entries + 32 * index
    tag = ctypes.c_uint32.from_address(id(tp) + off).value
    return (ctypes.c_void_p.from_address(e + 8).value == id(tp)
            and ctypes.c_uint32.from_address(e + 4).value == tag != 0)
"""


@needs_subinterpreters
def test_cache_still_serves_process_wide_tags_with_subinterpreters(c_dir):
    """Types whose version tags are process-wide (static and immutable
    types) stay cached once several interpreters exist; plain classes (tags
    per interpreter on 3.12+) are answered by the slow path, correctly."""
    out = scenario(
        CACHE_PROBE
        + textwrap.dedent(
            """
        import extensibletype as et
        KEY = "tests.subinterp.v1:slot"
        et.set_slots(bytearray, {KEY: 0x1234})
        class Before:
            pass
        assert et.lookup(Before(), KEY) is None
        assert cached(Before), "a plain class is cached while one interpreter exists"
        i = new_legacy()
        run(i, "import extensibletype")
        class Plain:
            pass
        for _ in range(3):
            assert et.lookup(bytearray(), KEY) == 0x1234
            assert et.lookup(Plain(), KEY) is None
            assert et.lookup(Before(), KEY) is None
        assert cached(bytearray)
        per_interpreter_tags = sys.version_info >= (3, 12)
        assert cached(Plain) != per_interpreter_tags, cached(Plain)
        assert cached(Before) != per_interpreter_tags, cached(Before)
        destroy(i)
        print("OK")
        """
        ),
        c_dir,
    )
    assert "OK" in out


# --- one metaclass per process, whatever imports first where -----------------

from test_two_runtimes import module_dir  # noqa: E402,F401  (fixture: builds examples/second_runtime)

# After both runtimes are imported in the running interpreter: one metaclass,
# classes of both copies mix, lookups from Python, Rust and C agree.
MIXED_CHECKS = """
import extensibletype as et, second_runtime as sr, subinterp_find as cf, sys
assert sr.metaclass() is et.ExtensibleType, (sr.metaclass(), et.ExtensibleType)
assert sys.modules["_extensibletype"].ExtensibleType_v1 is et.ExtensibleType
T = sr.make_type("Thing")
assert type(T) is et.ExtensibleType
class E(metaclass=et.ExtensibleType):
    __cslots__ = {"tests.subinterp.v1:e": 0xE0}
class Mixed(E, T):
    pass
m = Mixed()
answer = et.lookup(m, sr.ANSWER_KEY)
assert answer is not None
assert sr.find(m, sr.ANSWER_KEY) == answer
assert cf.find(m, et.prehash(sr.ANSWER_KEY)) == answer
assert et.lookup(m, "tests.subinterp.v1:e") == 0xE0
assert sr.find(m, "tests.subinterp.v1:e") == 0xE0
assert cf.find(m, et.prehash("tests.subinterp.v1:e")) == 0xE0
assert cf.find_in_type(Mixed, et.prehash("tests.subinterp.v1:e")) == 0xE0
"""


@needs_subinterpreters
@pytest.mark.skipif(
    FREE_THREADED,
    reason="free-threaded 3.13 refuses the single-phase second_runtime module in a legacy "
    "subinterpreter ('does not support loading in subinterpreters')",
)
def test_second_runtime_first_in_a_subinterpreter(c_dir, module_dir, tmp_path):
    """The second copy creates the runtime in a legacy subinterpreter; the
    package imported later in the main interpreter (and in another
    subinterpreter) uses that metaclass; it outlives the subinterpreter."""
    out = scenario(
        f"""
        checks = {MIXED_CHECKS!r}
        first = new_legacy()
        run(first, "import sys\\n"
                   "assert 'extensibletype' not in sys.modules\\n"
                   "import second_runtime as sr\\n"
                   "T0 = sr.make_type('Early')\\n"
                   "assert sr.find(T0(), sr.ANSWER_KEY) is not None\\n")
        # (3.13+ runs a single-phase init first met in a subinterpreter in the
        # main interpreter: there the runtime was created in main.)
        assert "extensibletype" not in sys.modules
        import extensibletype as et
        run(first, "import extensibletype as et\\n"
                   "assert type(T0) is et.ExtensibleType\\n"
                   "assert et.lookup(T0(), sr.ANSWER_KEY) is not None\\n" + checks)
        exec(checks)
        other = new_legacy()
        run(other, checks)
        destroy(first)
        destroy(other)
        # The metaclass made in the dead interpreter still serves.
        exec(checks)
        print("OK")
        """,
        c_dir,
        extra_path=[str(module_dir)],
    )
    assert "OK" in out


def test_second_runtime_after_sys_modules_surgery(c_dir, module_dir):
    """`del sys.modules["_extensibletype"]` does not make a second metaclass:
    the copies meet process-wide; the entry is republished."""
    out = scenario(
        f"""
        import sys
        import extensibletype as et
        meta = et.ExtensibleType
        del sys.modules["_extensibletype"]
        import second_runtime as sr
        assert sr.metaclass() is meta
        assert sys.modules["_extensibletype"].ExtensibleType_v1 is meta
        exec({MIXED_CHECKS!r})
        print("OK")
        """,
        c_dir,
        extra_path=[str(module_dir)],
    )
    assert "OK" in out


def test_second_runtime_first_then_sys_modules_surgery(c_dir, module_dir):
    """The other order: the second copy first, the entry deleted, then the
    package."""
    out = scenario(
        f"""
        import sys
        import second_runtime as sr
        meta = sr.metaclass()
        del sys.modules["_extensibletype"]
        import extensibletype as et
        assert et.ExtensibleType is meta
        exec({MIXED_CHECKS!r})
        print("OK")
        """,
        c_dir,
        extra_path=[str(module_dir)],
    )
    assert "OK" in out


# --- isolated interpreters (own GIL) are refused, with the reason -------------

REFUSAL_WORDS = ("own GIL", "legacy subinterpreters", "threads")


# Run in an isolated interpreter: both imports refused, the package's saying why.
ISOLATED_IMPORT = """
try:
    import extensibletype
except ImportError as e:
    msg = str(e)
else:
    raise AssertionError("imported in an isolated interpreter")
for word in REFUSAL_WORDS:
    assert word in msg, msg
try:
    import subinterp_find  # a C consumer: its ExtType_Import() is refused too
except ImportError:
    pass
else:
    raise AssertionError("C consumer imported in an isolated interpreter")
"""


@needs_subinterpreters
@pytest.mark.skipif(sys.version_info < (3, 12), reason="interpreters with their own GIL exist since CPython 3.12")
def test_isolated_interpreter_import_is_an_import_error_that_says_why(c_dir):
    out = scenario(
        f"""
        import extensibletype  # the main interpreter has it: the refusal is per interpreter
        i = new_isolated()
        run(i, "REFUSAL_WORDS = %r\\n" % ({REFUSAL_WORDS!r},) + {ISOLATED_IMPORT!r})
        destroy(i)
        # Legacy subinterpreters still work after the refusal.
        j = new_legacy()
        run(j, "import extensibletype")
        destroy(j)
        print("OK")
        """,
        c_dir,
    )
    assert "OK" in out


@pytest.mark.skipif(sys.version_info < (3, 14), reason="concurrent.interpreters is new in CPython 3.14")
def test_concurrent_interpreters_and_pool_executor_refuse_with_the_reason(c_dir):
    out = scenario(
        """
        from concurrent import interpreters
        from concurrent.futures import InterpreterPoolExecutor
        interp = interpreters.create()
        try:
            interp.exec("import extensibletype")
        except interpreters.ExecutionFailed as e:
            msg = str(e)
        else:
            raise AssertionError("imported in concurrent.interpreters")
        assert "own GIL" in msg, msg
        interp.close()
        def task():
            import extensibletype
            return extensibletype.ABI_VERSION
        with InterpreterPoolExecutor(max_workers=2) as pool:
            try:
                pool.submit(task).result()
            except Exception as e:
                msg = repr(e) + str(getattr(e, "__cause__", ""))
            else:
                raise AssertionError("imported in InterpreterPoolExecutor")
        assert "own GIL" in msg, msg
        print("OK")
        """,
        c_dir,
    )
    assert "OK" in out
