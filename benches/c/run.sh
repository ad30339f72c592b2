#!/usr/bin/env bash
# C latency benchmark of ExtType_Find against other ways of finding a C
# implementation on a Python object's type (see benches/c/latency.c).
#
#   bash benches/c/run.sh [--quick] [--callgrind] [--reps N]
#
# Uses $PYTHON if set, else the first of the venvs scripts/test.sh makes
# (.venv/3.12, .venv/3.13, .venv/3.11), else python3. The interpreter must
# have extensibletype installed (scripts/test.sh does; or `pip install .`).
# Builds the benchmark extension against that interpreter (cached under
# $CARGO_TARGET_DIR/c-ext or target/c-ext) and prints a Markdown table.
# --callgrind adds instructions and simulated branch mispredictions per
# lookup (valgrind --tool=callgrind --branch-sim=yes; takes ~1 minute).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PY=${PYTHON:-}
if [ -z "$PY" ]; then
    for tag in 3.12 3.13 3.11; do
        if [ -x "$ROOT/.venv/$tag/bin/python" ]; then PY="$ROOT/.venv/$tag/bin/python"; break; fi
    done
fi
PY=${PY:-python3}
if ! "$PY" -c 'import extensibletype' 2>/dev/null; then
    echo "error: $PY cannot import extensibletype; run scripts/test.sh or pip install . first" >&2
    exit 1
fi
# BENCH_DRIVER: another driver in this folder (benches/c/typed.sh uses it).
exec "$PY" "$ROOT/benches/c/${BENCH_DRIVER:-latency.py}" "$@"
