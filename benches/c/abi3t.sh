#!/usr/bin/env bash
# The abi3t lookup benchmark (benches/c/abi3t.c) on CPython 3.15, in the
# Debian forky chroot of scripts/forky.sh (venv .venv/forky-3.15 with the
# package and NumPy, made by scripts/test-forky.sh or here).
#   bash benches/c/abi3t.sh [--quick] [--reps N]
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
# shellcheck source=scripts/lib.sh
source scripts/lib.sh
EXTENSIBLETYPE_SOURCE_DIGEST=$(source_digest)
export EXTENSIBLETYPE_SOURCE_DIGEST
exec bash scripts/forky.sh run bash -c '
    source scripts/lib.sh
    vpy=$(prepare_venv forky-3.15 /usr/bin/python3.15)
    CARGO_TARGET_DIR="$ROOT/target/pyforky-3.15" exec "$vpy" benches/c/abi3t.py "$@"
' sh "$@"
