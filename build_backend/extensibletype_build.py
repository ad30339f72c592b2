"""The PEP 517 build backend: maturin's, plus the one interpreter that
needs another pyo3-ffi than the lock file's.

pyo3-ffi 0.29 and later refuse free-threaded CPython 3.13 ("PyO3 does not
support the free-threaded build of CPython versions below 3.14"), and the
root ``Cargo.lock`` holds 0.30 (needed for abi3t). One lock file cannot pick
a pyo3-ffi per interpreter, so on free-threaded 3.13 this backend builds
from a temporary copy of the source tree whose lock is moved to pyo3-ffi
``PYO3_FT313`` with ``cargo update --precise`` (what ``scripts/lib.sh``
``tree_with_pyo3`` does for the test suite). Everywhere else it is maturin,
unchanged. If the copy cannot be prepared (no network for the registry, no
cargo), the build stops first with one sentence saying what to run instead.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from typing import Any, Mapping, Optional

import maturin
from maturin import (  # noqa: F401 (the hooks this backend passes through)
    build_sdist,
    get_requires_for_build_editable,
    get_requires_for_build_sdist,
    get_requires_for_build_wheel,
    prepare_metadata_for_build_editable,
    prepare_metadata_for_build_wheel,
)

#: The pyo3-ffi release that builds for free-threaded CPython 3.13.
PYO3_FT313 = "0.28.3"

_INSTEAD = (
    "free-threaded CPython 3.13 needs pyo3-ffi {want} (0.29 and later refuse it) and this "
    "tree's Cargo.lock has {have}: run `cargo update -p pyo3-ffi --precise {want}` and "
    "`cargo update -p pyo3-build-config --precise {want}` in the source tree, then "
    "`pip install .` again ({why})"
)


def _free_threaded_313() -> bool:
    return sys.version_info[:2] == (3, 13) and bool(sysconfig.get_config_var("Py_GIL_DISABLED"))


def _locked(name: str, lock: str) -> Optional[str]:
    m = re.search(r'\[\[package\]\]\nname = "%s"\nversion = "([^"]+)"' % re.escape(name), lock)
    return m.group(1) if m else None


def _tree_for_ft313(src: str, work: str) -> str:
    """A copy of ``src`` locked to pyo3-ffi ``PYO3_FT313`` (or ``src`` when
    its lock already is); raises RuntimeError with the sentence above."""
    with open(os.path.join(src, "Cargo.lock"), encoding="utf-8") as f:
        have = _locked("pyo3-ffi", f.read()) or "no pyo3-ffi"
    if have == PYO3_FT313:
        return src
    dst = os.path.join(work, "src")
    shutil.copytree(
        src, dst, ignore=shutil.ignore_patterns(".git", "target", ".venv", "dist", "__pycache__", "*.so")
    )
    with open(os.path.join(dst, "Cargo.lock"), encoding="utf-8") as f:
        build_config = _locked("pyo3-build-config", f.read())
    steps = [["cargo", "update", "-q", "-p", "pyo3-ffi", "--precise", PYO3_FT313]]
    if build_config and build_config != PYO3_FT313:
        steps.append(["cargo", "update", "-q", "-p", f"pyo3-build-config@{build_config}", "--precise", PYO3_FT313])
    for cmd in steps:
        try:
            proc = subprocess.run(cmd, cwd=dst, capture_output=True, text=True)
        except OSError as e:
            raise RuntimeError(_INSTEAD.format(want=PYO3_FT313, have=have, why=f"could not run cargo: {e}")) from None
        if proc.returncode != 0:
            why = (proc.stderr.strip().splitlines() or ["cargo update failed"])[-1]
            raise RuntimeError(_INSTEAD.format(want=PYO3_FT313, have=have, why=why))
    return dst


def _build(hook, directory: str, *args: Any) -> str:
    if not _free_threaded_313():
        return hook(directory, *args)
    directory = os.path.abspath(directory)
    with tempfile.TemporaryDirectory(prefix="extensibletype-ft313-") as work:
        src = _tree_for_ft313(os.getcwd(), work)
        print(f"extensibletype: free-threaded 3.13: building with pyo3-ffi {PYO3_FT313}", file=sys.stderr)
        old = os.getcwd()
        os.chdir(src)
        try:
            return hook(directory, *args)
        finally:
            os.chdir(old)


def build_wheel(
    wheel_directory: str,
    config_settings: Optional[Mapping[str, Any]] = None,
    metadata_directory: Optional[str] = None,
) -> str:
    """maturin's ``build_wheel`` (from a pyo3-ffi 0.28 copy on 3.13t)."""
    return _build(maturin.build_wheel, wheel_directory, config_settings, metadata_directory)


def build_editable(
    wheel_directory: str,
    config_settings: Optional[Mapping[str, Any]] = None,
    metadata_directory: Optional[str] = None,
) -> str:
    """maturin's ``build_editable`` (from a pyo3-ffi 0.28 copy on 3.13t)."""
    return _build(maturin.build_editable, wheel_directory, config_settings, metadata_directory)
