"""What the C benchmark drivers of this folder (latency.py, typed.py,
tablev2.py) share: building and importing their extension for the running
interpreter, pinning the process before timing, and reading callgrind's
per-loop dumps.

The extension is compiled against the running interpreter's headers and the
installed `extensibletype` (its `get_include()`), with this folder on the
include path (bench_common.h), by python/tests/cbuild.py: cached under
$CARGO_TARGET_DIR/c-ext or target/c-ext, keyed by the sources and headers.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
_TESTS = str(HERE.parents[1] / "python" / "tests")
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)

import cbuild  # noqa: E402

CFLAGS = ["-Wall", "-Wextra", "-Werror", "-g"]
# The ABI v1 header as first shipped, before the flat descriptor (a frozen
# copy; python/tests/test_reader_golden.py compiles consumers against it).
FROZEN_ABI1 = HERE.parents[1] / "tests" / "abi" / "frozen-abi1"


def build(name, source, cflags=(), include=None):
    """Compile benches/c/`source` into the extension module `name` (warnings
    are errors) against the installed headers, or those in `include`, and
    import it."""
    import extensibletype

    path = cbuild.build(
        name,
        [HERE / source],
        include_dirs=[Path(include or extensibletype.get_include()), HERE],
        cflags=CFLAGS + list(cflags),
    )
    return cbuild.load(path)


def callgrind_dumps(script):
    """Run `script` (Python source) under callgrind (branch simulation on) with
    this interpreter; yield the client request that triggered each dump (its
    label: CALLGRIND_DUMP_STATS_AT in bench_common.h) and that dump's totals
    ({event: count}). Nothing (and a line on stderr) without valgrind."""
    if shutil.which("valgrind") is None:
        print("valgrind not found: skipping instruction counts", file=sys.stderr)
        return
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            "valgrind", "--tool=callgrind", "--branch-sim=yes", "--dump-instr=no",
            f"--callgrind-out-file={tmp}/cg.out", sys.executable, "-c", script,
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            print(proc.stderr[-3000:], file=sys.stderr)
            raise SystemExit("callgrind run failed")
        for f in glob.glob(f"{tmp}/cg.out*"):
            text = Path(f).read_text(errors="replace")
            m = re.search(r"^desc: Trigger: Client Request: (\S+)", text, re.M)
            if not m:
                continue
            events = re.search(r"^events: (.*)$", text, re.M).group(1).split()
            totals = re.search(r"^(?:summary|totals): (.*)$", text, re.M).group(1).split()
            yield m.group(1), dict(zip(events, map(int, totals)))


def pin_to_one_cpu():
    """Run on one CPU from now on (the last this process may use), when the
    OS allows it: fewer migrations, steadier minimums."""
    if hasattr(os, "sched_setaffinity"):
        try:
            os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[-1]})
        except OSError:
            pass
