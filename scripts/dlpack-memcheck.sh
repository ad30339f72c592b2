#!/usr/bin/env bash
# valgrind memcheck over the DLPack paths (python/tests/dlpack_memcheck.py):
# fails on any invalid read/write, use of uninitialised memory or definite
# leak whose stack goes through the DLPack code (src/arrays/dlpack.rs,
# par.rs) or the test producer, and on unbalanced deleter counts. CPython's
# own and NumPy's start-up noise is ignored. Usage: dlpack-memcheck.sh VENV_PYTHON
# Prints "dlpack-memcheck: N passed, N failed".
set -u
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
vpy=${1:?venv python}
case $vpy in /*) ;; *) vpy="$PWD/$vpy" ;; esac
if ! command -v valgrind >/dev/null; then
    echo "dlpack-memcheck: valgrind not installed (skipped)"
    exit 0
fi
log=/tmp/extensibletype-dlpack-memcheck.log
(cd "$ROOT/python/tests" && CARGO_TARGET_DIR="$ROOT/target/py3.11" "$vpy" dlpack_memcheck.py 1 >/dev/null) # build the producer first
(cd "$ROOT/python/tests" && CARGO_TARGET_DIR="$ROOT/target/py3.11" PYTHONMALLOC=malloc \
    valgrind --leak-check=full --show-leak-kinds=definite "$vpy" dlpack_memcheck.py 100 >"$log" 2>&1)
rc=$?
bad=$("$vpy" - "$log" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
bad = 0
for block in re.split(r"==\d+== \n", text):
    head = block.split("\n", 1)[0]
    if any(k in head for k in ("Invalid", "uninitialised", "definitely lost")) and re.search(r"dlpack\.rs|par\.rs|dlpack_producer", block):
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
