"""Every function of include/extensibletype.h and extensibletype_array.h
called before ExtType_Import() (docs/c-api.md): the ones that need the GIL
fail with RuntimeError (no NULL dereference), the GIL-free ones answer
NULL / 0 and set no exception (also from a pthread without a thread state).
The module (python/tests/c/no_import.c) is built as C and as C++."""

import subprocess
import sys
import textwrap

import pytest

import cbuild
import extensibletype as et

pytestmark = pytest.mark.skipif(not cbuild.have_compiler(), reason="no C compiler (cc)")

SOURCE = cbuild.ROOT / "python" / "tests" / "c" / "no_import.c"
STRICT = ["-Wall", "-Wextra", "-Werror", "-pthread"]


def build(name, cpp=False, extra=()):
    flags = [*STRICT, f"-DNO_IMPORT_NAME={name}", *extra]
    if cpp:
        return cbuild.build(name, [SOURCE], compiler=[*cbuild.cxx(), "-x", "c++"], cflags=[*flags, "-std=c++17"], ldflags=["-pthread"])
    return cbuild.build(name, [SOURCE], cflags=[*flags, "-std=c11"], ldflags=["-pthread"])


@pytest.fixture(scope="module", params=["c", "cpp"])
def mod(request):
    name = "no_import" if request.param == "c" else "no_import_cpp"
    return cbuild.load(build(name, cpp=request.param == "cpp"))


def assert_not_imported(outcome, function):
    assert outcome != -1000, f"{function} failed without setting an exception"
    result, error = outcome
    assert result is None
    assert isinstance(error, RuntimeError), error
    assert f"{function}() called before ExtType_Import()" in str(error)


def test_set_slots_before_import_raises(mod):
    class T:
        pass

    assert_not_imported(mod.set_slots(T), "ExtType_SetSlots")
    assert et.get_slots(T) == {}


def test_from_spec_before_import_raises(mod):
    assert_not_imported(mod.from_spec(), "ExtType_FromSpec")


def test_array_get_view_before_import_raises(mod):
    assert_not_imported(mod.array_get_view(bytearray(b"abc")), "ExtType_ArrayGetView")


@pytest.mark.parametrize("obj", [1, bytearray(), et.ExtensibleType("E", (), {"__cslots__": {"tests.no_import.v1:k": 5}})])
def test_gil_free_functions_before_import_answer_nothing(mod, obj):
    # find, find_in_type, prehash, prehash_n, get_api, metaclass, raised
    assert mod.gil_free(obj) == (0, 0, 0, 0, 0, 0, 0)


def test_find_from_a_pthread_before_import(mod):
    assert mod.find_in_pthread(bytearray()) == 0


def test_readme_provider_that_forgot_import_raises():
    """The README's C provider without its ExtType_Import(): importing it
    raises RuntimeError (in a subprocess: a crash must not take pytest down)."""
    path = build("readme_forgot_import", extra=["-DREADME_PROVIDER"])
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(path.parent)!r})
        try:
            import readme_forgot_import
        except RuntimeError as e:
            print("RuntimeError:", e)
        else:
            print("imported")
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
    assert "RuntimeError: extensibletype: ExtType_FromSpec() called before ExtType_Import()" in proc.stdout, proc.stdout
