#!/usr/bin/env bash
# The main job (README): `bash scripts/demo.sh`.
#
# 1. Duck-typed arrays (examples/arrays_demo.py): registers the array.v1
#    providers (extensibletype.arrays.Array, numpy.ndarray, the buffer
#    protocol types, a ctypes class), runs sum/dot/axpy across provider
#    pairs, and prints the per-call cost of getting an array view from C
#    next to the buffer protocol, __array_struct__, __dlpack__ and
#    __array_interface__, all measured in the same run.
# 2. The tables underneath (examples/demo.rs): build and lookup costs for
#    8 ... 65,536 entries next to same-run baselines.
#
# Sets up .venv/3.11 with the package on first use (as the test suite does).
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"
vpy=$(prepare_venv 3.11 "$(command -v python3.11 || command -v python3)")
# NumPy's BLAS may use several threads for x @ y; our kernels use one.
OPENBLAS_NUM_THREADS=1 "$vpy" examples/arrays_demo.py
echo
cargo run --release -q --example demo
