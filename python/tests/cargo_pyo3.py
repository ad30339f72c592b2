"""Build the Rust example extensions (examples/second_runtime,
examples/pyo3_ext) with cargo for the running interpreter.

Their Cargo.lock files hold the newest pyo3-ffi. Free-threaded CPython 3.13
needs pyo3-ffi 0.28 (0.29 and later refuse it), so there the crate is built
from a copy whose lockfile is moved with ``cargo update --precise`` -- the
same code, another lockfile (scripts/lib.sh does the same for the package).
"""

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

#: pyo3-ffi for free-threaded 3.13 (None: the lockfile's version).
PYO3_FFI_FT313 = "0.28.3"
FREE_THREADED_313 = sys.version_info[:2] == (3, 13) and bool(sysconfig.get_config_var("Py_GIL_DISABLED"))


def target_dir(name):
    """CARGO_TARGET_DIR (scripts/test.sh sets one per interpreter), else one per interpreter."""
    if os.environ.get("CARGO_TARGET_DIR"):
        return os.environ["CARGO_TARGET_DIR"]
    tag = sys.implementation.cache_tag + ("t" if sysconfig.get_config_var("Py_GIL_DISABLED") else "")
    return str(ROOT / "target" / name / tag)


def _locked(lock, name):
    m = re.search(r'name = "' + re.escape(name) + r'"\nversion = "([^"]+)"', lock.read_text())
    return m and m.group(1)


def manifest_for_this_python(manifest, version=None):
    """`manifest`, or a copy of its crate whose Cargo.lock holds pyo3-ffi `version`
    (default: 0.28 on free-threaded 3.13, else the lockfile's)."""
    manifest = Path(manifest)
    version = version or (PYO3_FFI_FT313 if FREE_THREADED_313 else None)
    lock = manifest.parent / "Cargo.lock"
    if version is None or _locked(lock, "pyo3-ffi") == version:
        return manifest
    dst = ROOT / "target" / "trees" / f"{manifest.parent.name}-pyo3-{version}"
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(manifest.parent, dst, ignore=shutil.ignore_patterns("target"))
    # Path dependencies point back into this repository.
    text = (dst / "Cargo.toml").read_text()
    text = re.sub(
        r'path = "([^"]+)"',
        lambda m: 'path = "%s"' % (manifest.parent / m.group(1)).resolve().as_posix(),
        text,
    )
    (dst / "Cargo.toml").write_text(text)
    old_config = _locked(dst / "Cargo.lock", "pyo3-build-config")
    for args in (["-p", "pyo3-ffi"], ["-p", f"pyo3-build-config@{old_config}"]):
        subprocess.run(["cargo", "update", "-q", *args, "--precise", version], cwd=dst, check=True)
    return dst / "Cargo.toml"


def build(manifest, crate, env=None, timeout=900):
    """`cargo build --release` of `manifest` for this interpreter: the path of the
    built library, or (None, stderr) on failure."""
    env = dict(os.environ, PYO3_PYTHON=sys.executable, CARGO_TERM_COLOR="never", **(env or {}))
    env.setdefault("CARGO_TARGET_DIR", target_dir(crate))
    env.pop("PYTHONHOME", None)
    env.pop("LD_PRELOAD", None)  # scripts/asan.sh preloads libasan; rustc must not inherit it
    proc = subprocess.run(
        ["cargo", "build", "--release", "--manifest-path", str(manifest), "--message-format=json-render-diagnostics"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        return None, proc.stderr[-4000:]
    library = None
    for line in proc.stdout.splitlines():
        msg = json.loads(line) if line.startswith("{") else {}
        if msg.get("reason") == "compiler-artifact" and msg["target"]["name"] == crate:
            library = next((f for f in msg["filenames"] if f.endswith((".so", ".dylib"))), library)
    return library, proc.stdout[-2000:]
