#!/usr/bin/env bash
# Type stubs of the Python package, checked against the installed package
# (CPython 3.11 venv, .venv/3.11; mypy is installed there on first use):
#   1. mypy.stubtest: python/extensibletype/_core.pyi, arrays.pyi, _bind.pyi and numba.pyi
#      (numba is installed in that venv) match the
#      runtime modules (names, signatures, metaclasses); allowlist in
#      tests/typing/stubtest-allowlist.txt.
#   2. mypy --strict --warn-unused-ignores on tests/typing/usage.py, for
#      Python 3.11 and 3.13 (typed use of the API; each `type: ignore` line is
#      a call the stubs must refuse).
# Prints the tools' output on failure and one line "typecheck: N passed, N failed".
set -uo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

passed=0
failed=0
if ! vpy=$(prepare_venv 3.11 "$(command -v python3.11 || command -v python3)"); then
    echo "typecheck: 0 passed, 1 failed (venv)"
    exit 1
fi
if ! "$vpy" -c 'import mypy' 2>/dev/null; then
    echo "typecheck: 0 passed, 1 failed (mypy is not in .venv/3.11: scripts/lib.sh PY_DEPS_311 installs it)"
    exit 1
fi

check() {
    local name=$1 out
    shift
    # Run outside the repo so that `extensibletype` is the installed package.
    if out=$(mkdir -p "$ROOT/target/typecheck" && cd "$ROOT/target/typecheck" && "$@" 2>&1); then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
        log "$name failed:"
        printf '%s\n' "$out" >&2
    fi
}

check stubtest "$vpy" -m mypy.stubtest --allowlist "$ROOT/tests/typing/stubtest-allowlist.txt" \
    extensibletype._core extensibletype.arrays extensibletype._bind extensibletype.numba
for v in 3.11 3.13; do
    check "mypy --strict (python $v)" "$vpy" -m mypy --strict --warn-unused-ignores --no-error-summary \
        --cache-dir "$ROOT/target/mypy-cache" --python-version "$v" "$ROOT/tests/typing/usage.py"
done

echo "typecheck: ${passed} passed, ${failed} failed"
[ "$failed" -eq 0 ]
