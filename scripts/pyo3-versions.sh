#!/usr/bin/env bash
# Check the Rust crates against every supported pyo3-ffi (docs/spec.md §10: any of
# 0.28, 0.29, 0.30; pyo3-ffi's `links = "python"` allows one per build, so
# the crates depend on a range). The root Cargo.lock holds one version; each
# other one is checked in a copy of the tree moved there with
# `cargo update --precise` (scripts/lib.sh: tree_with_pyo3).
#
# Per version: `cargo check` of the facade with the runtime and arrays
# (benches included), of the extension module, and of its abi3 build,
# and of examples/pyo3_ext with PyO3 itself at that version (it expands
# `typed_methods!`, whose code names the user's `::pyo3`), against the
# interpreter in PYO3_PYTHON (default python3).
# Prints one line per version and "pyo3-ffi versions: N passed, N failed".
# Usage: bash scripts/pyo3-versions.sh [VERSION...]
set -uo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

versions=("$@")
[ ${#versions[@]} -gt 0 ] || versions=(0.28.3 0.29.3 0.30.1)
passed=0
failed=0
for v in "${versions[@]}"; do
    log "pyo3-ffi $v"
    out="$ROOT/target/trees/pyo3-$v.log"
    mkdir -p "$ROOT/target/trees"
    if tree=$(tree_with_pyo3 "$v" 2>"$out") &&
        (
            cd "$tree" &&
                export CARGO_TARGET_DIR="$ROOT/target/pyo3-$v" &&
                cargo check -q -p extensibletype --features arrays --all-targets &&
                cargo check -q -p extensibletype-module --features extension-module &&
                cargo check -q -p extensibletype-module --features abi3 &&
                cd examples/pyo3_ext &&
                cargo update -q -p pyo3 --precise "$v" &&
                cargo check -q
        ) >>"$out" 2>&1; then
        echo "pyo3-ffi $v: ok"
        passed=$((passed + 1))
    else
        echo "pyo3-ffi $v: FAILED (see $out)"
        tail -20 "$out" >&2
        failed=$((failed + 1))
    fi
done
echo "pyo3-ffi versions: ${passed} passed, ${failed} failed"
[ "$failed" -eq 0 ]
