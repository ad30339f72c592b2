#!/usr/bin/env bash
# valgrind memcheck over the DLPack paths (python/tests/dlpack_memcheck.py):
# fails on any invalid read/write, use of uninitialised memory or definite
# leak whose stack goes through the DLPack code (crates/extensibletype-arrays/src/providers/dlpack/,
# consumers/par.rs) or the test producer, and on unbalanced deleter counts. CPython's
# own and NumPy's start-up noise is ignored. Usage: dlpack-memcheck.sh [VENV_PYTHON]
# (default: the suite's 3.11 venv; installs valgrind with apt-get if missing).
# Prints "dlpack-memcheck: N passed, N failed"; exit status 1 on failure.
set -u
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [ $# -ge 1 ]; then
    vpy=$1
else # the suite's 3.11 venv (scripts/test.sh calls it so)
    # shellcheck source=scripts/lib.sh
    source "$ROOT/scripts/lib.sh"
    vpy=$(prepare_venv 3.11 "$(command -v python3.11 || command -v python3)") ||
        { echo "dlpack-memcheck: 0 passed, 1 failed (3.11 venv)"; exit 1; }
fi
case $vpy in /*) ;; *) vpy="$PWD/$vpy" ;; esac
if ! command -v valgrind >/dev/null; then
    echo "[extensibletype] dlpack-memcheck: installing valgrind" >&2
    if [ "$(id -u)" = 0 ]; then apt-get install -y -q valgrind >&2 || { apt-get update -q >&2 && apt-get install -y -q valgrind >&2; }; fi
fi
command -v valgrind >/dev/null || { echo "dlpack-memcheck: 0 passed, 1 failed (valgrind not available)"; exit 1; }
mkdir -p "$ROOT/target"
log="$ROOT/target/dlpack-memcheck.log"
# build the producer first
(cd "$ROOT/python/tests" && CARGO_TARGET_DIR="$ROOT/target/py3.11" "$vpy" dlpack_memcheck.py 1 >/dev/null) ||
    { echo "dlpack-memcheck: 0 passed, 1 failed (dlpack_memcheck.py fails without valgrind)"; exit 1; }
(cd "$ROOT/python/tests" && CARGO_TARGET_DIR="$ROOT/target/py3.11" PYTHONMALLOC=malloc \
    valgrind --leak-check=full --show-leak-kinds=definite "$vpy" dlpack_memcheck.py 100 >"$log" 2>&1)
rc=$?
bad=$("$vpy" - "$log" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
bad = 0
for block in re.split(r"==\d+== \n", text):
    head = block.split("\n", 1)[0]
    if any(k in head for k in ("Invalid", "uninitialised", "definitely lost")) and re.search(r"dlpack/|dlpack\.rs|par\.rs|dlpack_producer", block):
        bad += 1
        print(block[:2000], file=sys.stderr)
print(bad)
PY
)
if [ "$rc" = 0 ] && [ "$bad" = 0 ]; then
    echo "dlpack-memcheck: 1 passed, 0 failed"
else
    echo "dlpack-memcheck: 0 passed, 1 failed (exit $rc, $bad report(s) in our code; log: $log)"
    exit 1
fi
