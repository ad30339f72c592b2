#!/usr/bin/env bash
# The library crates are publishable: `cargo package` packs and verifies
# (builds from the packed sources alone) extensibletype-core,
# extensibletype-runtime, extensibletype-array-abi, extensibletype-arrays and
# extensibletype, in
# dependency order, each against the others' packed copies (what
# `cargo publish --dry-run` checks, without the upload). The module crate
# (the Python extension, built by maturin) is `publish = false`. Also checks
# that no packed crate carries the Python package, scripts or CI files.
#
#   bash scripts/crates.sh      -> last line "crates: N passed, M failed";
#                                  exit status 1 on any failure
set -uo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

mkdir -p "$ROOT/target"
# Cargo unpacks each crate it verifies into
# $CARGO_HOME/registry/src/-<hash of this checkout's path>/NAME-VERSION and
# never unpacks one again once that folder exists: a clone at a path used
# before would verify against an older copy of our own crates (same version
# number). Remove those copies first (only local registries' folders start
# with "-"), and verify in a target dir of its own, emptied first: cargo
# does not rebuild a registry crate whose version it has built before.
rm -rf -- "${CARGO_HOME:-$HOME/.cargo}"/registry/src/-*/extensibletype-*
export CARGO_TARGET_DIR="$ROOT/target/crates"
rm -rf -- "$CARGO_TARGET_DIR"
log="$ROOT/target/crates.log"
passed=0 failed=0
if cargo package --workspace --exclude extensibletype-module --allow-dirty >"$log" 2>&1; then
    passed=$((passed + 5))
else
    failed=$((failed + 1))
    tail -20 "$log" >&2
fi
# What crates.io would get from the root crate: no python/, scripts/, .ci/.
if listing=$(cargo package --list -p extensibletype --allow-dirty 2>>"$log"); then
    if grep -Eq '^(python|scripts|\.ci|examples/c|examples/cython)/' <<<"$listing"; then
        log "the extensibletype crate packs files it should not:"
        grep -E '^(python|scripts|\.ci)/' <<<"$listing" | head -5 >&2
        failed=$((failed + 1))
    else
        passed=$((passed + 1))
    fi
else
    failed=$((failed + 1))
fi
echo "crates: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
