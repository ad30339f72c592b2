"""Compile C sources for the tests: extension modules and small programs.

Builds with the running interpreter's headers (``sysconfig``) and the repo's
``include/``; outputs are cached by a hash of everything that goes into them
under ``$CARGO_TARGET_DIR/c-ext`` (else ``<repo>/target/c-ext``), so reruns
are instant. Each output is written to a temporary name and renamed, so
concurrent runs never see half-written files.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Iterable, Optional, Sequence

ROOT = Path(__file__).resolve().parents[2]
INCLUDE = ROOT / "include"
EXAMPLES_C = ROOT / "examples" / "c"
EXAMPLES_CYTHON = ROOT / "examples" / "cython"
BENCHES_C = ROOT / "benches" / "c"
PY_INCLUDE = sysconfig.get_paths()["include"]
EXT_SUFFIX = sysconfig.get_config_var("EXT_SUFFIX")


class BuildError(RuntimeError):
    """A compiler failed; the message holds the command and its output."""


def build_root() -> Path:
    target = os.environ.get("CARGO_TARGET_DIR")
    base = Path(target) if target else ROOT / "target"
    return base / "c-ext"


def cc() -> list:
    return shlex.split(os.environ.get("CC", "cc"))


def cxx() -> list:
    return shlex.split(os.environ.get("CXX", "c++"))


def _digest(parts: Iterable[bytes]) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(len(part).to_bytes(8, "little"))
        h.update(part)
    return h.hexdigest()[:20]


def _headers(dirs: Iterable[Path]) -> list:
    """Contents of the headers in the given directories (the repo's ones;
    the interpreter's headers are keyed by its version and path instead)."""
    out = []
    for d in dirs:
        d = Path(d)
        if d.is_dir() and str(d) != PY_INCLUDE:
            for h in sorted([*d.glob("*.h"), *d.glob("*.hpp")]):
                out.append(str(h).encode() + b"\0" + h.read_bytes())
    return out


def _run(cmd: Sequence[str], cwd: Optional[Path] = None) -> None:
    proc = subprocess.run(list(cmd), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:
        raise BuildError(f"command failed ({proc.returncode}): {shlex.join(cmd)}\n{proc.stdout}")


def build(
    name: str,
    sources: Sequence[Path],
    *,
    kind: str = "extension",
    compiler: Optional[Sequence[str]] = None,
    include_dirs: Sequence[Path] = (),
    cflags: Sequence[str] = (),
    ldflags: Sequence[str] = (),
) -> Path:
    """Compile ``sources`` into an extension module ``name`` (``kind =
    "extension"``: ``name + EXT_SUFFIX``) or an executable (``kind =
    "program"``); return the output's path (cached)."""
    compiler = list(compiler or cc())
    sources = [Path(s) for s in sources]
    # The caller's directories first: a test may compile against another
    # copy of a header (tests/abi/frozen-abi1: the ABI v1 header as first
    # shipped).
    incs = [*map(Path, include_dirs), INCLUDE, EXAMPLES_C]
    if kind == "extension":
        flags = ["-shared", "-fPIC", "-O2"]
        out_name = name + EXT_SUFFIX
    elif kind == "program":
        flags = ["-O1"]
        out_name = name
    else:
        raise ValueError(kind)
    cmd_tail = [*flags, *cflags, f"-I{PY_INCLUDE}", *(f"-I{d}" for d in incs)]
    key = _digest(
        [
            name.encode(),
            kind.encode(),
            shlex.join(compiler + cmd_tail + list(ldflags)).encode(),
            sys.version.encode(),
            PY_INCLUDE.encode(),
            *(s.read_bytes() for s in sources),
            *_headers(incs),
        ]
    )
    out_dir = build_root() / f"{name}-{key}"
    out = out_dir / out_name
    if out.exists():
        return out
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / f".{out_name}.{os.getpid()}.tmp"
    _run([*compiler, *cmd_tail, *map(str, sources), "-o", str(tmp), *ldflags])
    os.replace(tmp, out)
    return out


def load(path: Path, name: Optional[str] = None):
    """Import the extension module at ``path`` (cached in ``sys.modules``)
    and put its directory on ``sys.path``."""
    name = name or path.name.split(".")[0]
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))
    existing = sys.modules.get(name)
    if existing is not None and getattr(existing, "__file__", None) == str(path):
        return existing
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


# Warnings are errors for the examples: they must stay clean.
STRICT = ["-Wall", "-Wextra", "-Werror"]


def example_extension(name: str, extra_sources: Sequence[Path] = (), **kw):
    """Build and import ``examples/c/<name>.c`` (or ``<name>.cpp``, as C++17)."""
    cpp = EXAMPLES_C / f"{name}.cpp"
    if cpp.exists():
        path = build(name, [cpp, *extra_sources], compiler=cxx(), cflags=STRICT + ["-std=c++17", "-pthread"], **kw)
    else:
        path = build(name, [EXAMPLES_C / f"{name}.c", *extra_sources], cflags=STRICT + ["-pthread"], **kw)
    return load(path)


def cython_extension(pyx: Path, name: Optional[str] = None, include_dirs: Sequence[Path] = ()):
    """Cythonize ``pyx`` (``python -m cython``), compile and import it.

    ``include_dirs`` are searched for ``.pxd`` files; ``sys.path`` (hence the
    installed ``extensibletype`` package and its ``.pxd``) is searched too.
    """
    pyx = Path(pyx)
    name = name or pyx.stem
    # Everything Cython reads: the .pyx, the package's .pxd, Cython's version.
    import Cython
    import extensibletype

    pxds = sorted(Path(extensibletype.__file__).parent.glob("*.pxd"))
    key = _digest(
        [pyx.read_bytes(), *(p.read_bytes() for p in pxds), Cython.__version__.encode(), sys.version.encode()]
        + [str(d).encode() for d in include_dirs]
    )
    c_dir = build_root() / f"cython-{name}-{key}"
    c_file = c_dir / f"{name}.c"
    if not c_file.exists():
        c_dir.mkdir(parents=True, exist_ok=True)
        tmp = c_dir / f".{name}.{os.getpid()}.c"
        cmd = [sys.executable, "-m", "cython", "-3", "--module-name", name, str(pyx), "-o", str(tmp)]
        for d in include_dirs:
            cmd += ["-I", str(d)]
        _run(cmd)
        os.replace(tmp, c_file)
    get_include = extensibletype.get_include()
    path = build(
        name,
        [c_file],
        include_dirs=[Path(get_include), *map(Path, include_dirs)],
        cflags=["-Wno-unused-function", "-Wno-unreachable-code"],
    )
    return load(path)


def bench_driver(name: str):
    """Import the C benchmark driver ``benches/c/<name>.py`` (its folder is on
    ``sys.path`` only while it is imported); its ``build()`` compiles and
    imports the benchmark extension."""
    folder = str(BENCHES_C)
    sys.path.insert(0, folder)
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(folder)


def run_bench_quick(name: str) -> subprocess.CompletedProcess:
    """Run ``python benches/c/<name>.py --quick`` with this interpreter, as a
    user would (output captured as text)."""
    return subprocess.run([sys.executable, str(BENCHES_C / f"{name}.py"), "--quick"], capture_output=True,
                          text=True, timeout=600)


def have_compiler() -> bool:
    return shutil.which(cc()[0]) is not None
