#!/usr/bin/env bash
# Typed-method call benchmark (see benches/c/typed.c): a typed call through
# ExtType_Find against a direct call, a Cython-style vtable call and a
# vectorcall of the Python method; and, from Python, bind(obj, key)(...)
# against the Python method.
#
#   bash benches/c/typed.sh [--quick] [--reps N]
#
# Uses $PYTHON if set, else the first of the venvs scripts/test.sh makes
# (.venv/3.12, .venv/3.13, .venv/3.11), else python3; that interpreter must
# have extensibletype installed.
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
exec "$PY" "$ROOT/benches/c/typed.py" "$@"
