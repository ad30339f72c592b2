"""The build recipes of docs/c-api.md ("Building a dependent"), as a user
runs them: `pip install` of examples/build with setuptools and with
meson-python, each generating its compile-time ids with the header command;
the installed extension then consumes a typed method."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import cbuild

RECIPE = Path(__file__).resolve().parents[2] / "examples" / "build"
KEY = "demo.Units.v1:scale#f64(O,f64)"

pytestmark = pytest.mark.skipif(not cbuild.have_compiler(), reason="no C compiler (cc)")


def install(project: Path, target: Path) -> Path:
    """`pip install` the project into `target` (the build requirements are
    this venv's: no network, no isolation)."""
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-build-isolation", "--no-deps", "--no-index",
         "--target", str(target), str(project)],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return target


CHECK = f"""
import ctypes, extensibletype as et, scale_consumer

fn = ctypes.CFUNCTYPE(ctypes.c_double, ctypes.py_object, ctypes.c_double)

class Meters(metaclass=et.ExtensibleType):
    __cslots__ = {{{KEY!r}: fn(lambda self, x: x * 1000.0)}}

    def scale(self, x):
        return x * 1000.0

class Feet(Meters):
    def scale(self, x):
        return x * 304.8

assert scale_consumer.scale(Meters(), 1.5) == 1500.0
assert scale_consumer.scale(Feet(), 1.0) == 304.8
print(scale_consumer.__file__)
"""


def check(site: Path):
    """The installed scale_consumer, imported in a fresh interpreter."""
    env = {**os.environ, "PYTHONPATH": str(site)}
    proc = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(str(site))


def copy_recipe(tmp_path, name):
    dst = tmp_path / name
    shutil.copytree(RECIPE, dst)
    return dst


def test_setuptools_recipe(tmp_path):
    pytest.importorskip("setuptools")
    check(install(copy_recipe(tmp_path, "setuptools"), tmp_path / "site"))


def test_meson_recipe(tmp_path):
    pytest.importorskip("mesonpy", reason="meson-python is not installed for this interpreter")
    if shutil.which("ninja", path=str(Path(sys.executable).parent)) is None and shutil.which("ninja") is None:
        pytest.skip("ninja is not installed")
    project = copy_recipe(tmp_path, "meson")
    (project / "pyproject.toml").unlink()
    (project / "pyproject.meson.toml").rename(project / "pyproject.toml")
    (project / "setup.py").unlink()
    check(install(project, tmp_path / "site"))


def test_docs_show_the_recipes_verbatim():
    """docs/c-api.md shows each recipe file exactly as tested here."""
    docs = (RECIPE.parents[1] / "docs" / "c-api.md").read_text(encoding="utf-8")
    for name in ("pyproject.toml", "setup.py", "pyproject.meson.toml", "meson.build"):
        assert "```\n" not in (RECIPE / name).read_text(encoding="utf-8")
        assert "\n" + (RECIPE / name).read_text(encoding="utf-8") + "```" in docs, name
