"""The README's code, exactly as written: every fenced block is preceded by
``<!-- readme-test: KIND [NAME] -->`` (invisible when rendered), and this
file builds or runs each block's text byte for byte, then checks what it
does. A code block without a marker, or a marker this file does not know,
fails the suite: the README cannot show code the suite does not try."""

import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

import cbuild
import extensibletype as et

README = Path(__file__).resolve().parents[2] / "README.md"
KEY = "demo.Units.v1:scale#f64(O,f64)"

_BLOCK = re.compile(r"(?:<!-- readme-test: (?P<marker>[^>]*?) -->\n)?```(?P<lang>[A-Za-z0-9+]*)\n(?P<body>.*?)^```$",
                    re.S | re.M)
#: Languages that are not code to run (shell lines, key lists, output).
NOT_CODE = {"text", "toml", "console"}


def blocks():
    """[(marker or None, language, body)] of every fenced block, in order."""
    return [(m["marker"], m["lang"], m["body"]) for m in _BLOCK.finditer(README.read_text(encoding="utf-8"))]


def block(marker):
    found = [body for mark, _, body in blocks() if mark == marker]
    assert len(found) == 1, f"README has {len(found)} blocks marked {marker!r}"
    return found[0]


KNOWN = {"python", "python-numba", "c-module units", "cpp-module units_cpp", "cython-module units_cy"}


def test_every_code_block_is_tested():
    for marker, lang, body in blocks():
        if lang in NOT_CODE:
            continue
        assert marker is not None, f"README code block ({lang or 'no language'}) has no readme-test marker:\n{body[:200]}"
        assert marker in KNOWN or marker.startswith("rust "), f"unknown readme-test marker {marker!r}"


def test_rust_blocks_are_compiled_files():
    """`<!-- readme-test: rust PATH -->`: the block is a verbatim part of PATH,
    a crate the suite compiles (examples/pyo3_ext: test_pyo3_ext.py)."""
    marked = [(m, body) for m, lang, body in blocks() if lang == "rust"]
    assert marked, "README has no Rust block"
    root = README.parent
    for marker, body in marked:
        assert marker and marker.startswith("rust "), f"Rust block without a `rust PATH` marker:\n{body[:200]}"
        path = root / marker.split(" ", 1)[1]
        assert body in path.read_text(encoding="utf-8"), f"README's Rust block is not verbatim in {path}"


def test_python_block_runs_as_written():
    proc = subprocess.run([sys.executable, "-c", block("python")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["True", "None", "1500.0", "3.0"]


def test_numba_block_runs_as_written(tmp_path):
    """As a script (numba caches functions of files only), twice: the second
    run loads `total` from numba's cache."""
    import os

    if os.environ.get("EXTENSIBLETYPE_ASAN") == "1" or os.environ.get("EXTENSIBLETYPE_MEMCHECK") == "1":
        pytest.skip("numba's LLVM JIT under a sanitizer build: slow and not ours (as test_numba_call.py)")
    pytest.importorskip("numba", reason="numba is not installed for this interpreter")
    script = tmp_path / "readme_numba.py"
    script.write_text(block("python-numba"))
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    for _ in range(2):
        proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, env=env)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.splitlines() == ["8.0"]
    assert list((tmp_path / "cache").rglob("*.nbi")), "numba wrote no cache index"


def _check_units(mod):
    """A consumer module's scale(obj, x) on every kind of provider."""

    class Feet(_meters_py()):
        def scale(self, x):
            return x * 304.8

    assert mod.scale(_meters_py()(), 2.0) == 2000.0  # a Python provider's typed slot
    assert mod.scale(Feet(), 1.0) == 304.8  # masked: the Python method

    class NoSlots:
        def scale(self, x):
            return -x

    assert mod.scale(NoSlots(), 2.0) == -2.0  # no slot: the Python method
    with pytest.raises(AttributeError):
        mod.scale(object(), 1.0)


def _meters_py():
    import ctypes

    fn = ctypes.CFUNCTYPE(ctypes.c_double, ctypes.py_object, ctypes.c_double)
    if not hasattr(_meters_py, "cls"):

        class PyMeters(metaclass=et.ExtensibleType):
            __cslots__ = {KEY: fn(lambda self, x: x * 1000.0)}

            def scale(self, x):
                return x * 1000.0

        _meters_py.cls = PyMeters
    return _meters_py.cls


@pytest.fixture(scope="module")
def c_units(tmp_path_factory):
    if not cbuild.have_compiler():
        pytest.skip("no C compiler (cc)")
    src = tmp_path_factory.mktemp("readme") / "units.c"
    src.write_text(block("c-module units"))
    return cbuild.load(cbuild.build("units", [src], cflags=["-Wall", "-Wextra", "-Werror"]))


def test_c_block_builds_and_works(c_units):
    m = c_units.Meters()
    assert m.scale(1.5) == 1500.0
    assert c_units.scale(m, 1.5) == 1500.0  # the typed C function
    assert et.lookup(m, KEY) is not None
    assert et.bind(m, KEY)(2.0) == 2000.0

    class Feet(c_units.Meters):
        def scale(self, x):
            return x * 304.8

    assert et.lookup(Feet(), KEY) is None
    assert c_units.scale(Feet(), 1.0) == 304.8
    _check_units(c_units)


def test_cpp_block_builds_and_works(tmp_path, c_units):
    if not cbuild.have_compiler():
        pytest.skip("no C compiler")
    cxx = cbuild.cxx()
    src = tmp_path / "units_cpp.cpp"
    src.write_text(block("cpp-module units_cpp"))
    mod = cbuild.load(cbuild.build("units_cpp", [src], compiler=cxx,
                                   cflags=["-std=c++17", "-Wall", "-Wextra", "-Werror"]))
    assert mod.scale(c_units.Meters(), 0.5) == 500.0
    _check_units(mod)


def test_cython_block_builds_and_works(tmp_path, c_units):
    pytest.importorskip("Cython", reason="Cython is not installed for this interpreter")
    if not cbuild.have_compiler():
        pytest.skip("no C compiler")
    pyx = tmp_path / "units_cy.pyx"
    pyx.write_text(block("cython-module units_cy"))
    mod = cbuild.cython_extension(pyx)
    y = mod.Yards()
    assert y.scale(1.0) == pytest.approx(914.4)
    assert et.lookup(y, KEY) is not None
    assert et.bind(y, KEY)(2.0) == pytest.approx(1828.8)

    class Inches(mod.Yards):
        def scale(self, x):
            return x * 25.4

    assert mod.total([y, c_units.Meters(), Inches()], 1.0) == pytest.approx(914.4 + 1000.0 + 25.4)
    assert math.isclose(mod.total([], 1.0), 0.0)
