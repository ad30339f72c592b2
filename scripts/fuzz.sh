#!/usr/bin/env bash
# Fuzz the Python API (python/tests/fuzz/): random and hostile arguments,
# each case in a worker subprocess (a crash or hang names its seed), results
# checked against a pure-Python model. CPython 3.11 (.venv/3.11).
#
#   bash scripts/fuzz.sh                    # the CI range (FUZZ_SEEDS=0:100000)
#   FUZZ_SEEDS=0:2000000 bash scripts/fuzz.sh   # longer
#   bash scripts/fuzz.sh --seeds 1234:1235      # one case (extra args go to fuzz_api.py)
#
# Last line: "fuzz: N passed, N failed". Exit status 1 on any failure.
set -uo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

vpy=$(prepare_venv 3.11 "$(command -v python3.11 || command -v python3)") || {
    echo "fuzz: 0 passed, 1 failed (could not prepare .venv/3.11)"
    exit 1
}
exec "$vpy" python/tests/fuzz/fuzz_api.py --seeds "${FUZZ_SEEDS:-0:100000}" "$@"
