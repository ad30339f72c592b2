#!/usr/bin/env bash
# The documentation site and rustdoc: `bash scripts/docs.sh` (a step of
# scripts/test.sh).
#   1. mkdocs build --strict (mkdocs.yml): docs/*.md, README.md and
#      CHANGELOG.md (included), the guides per language, the Python API
#      rendered from the stubs by mkdocstrings (griffe, static: nothing is
#      imported), into target/site. A broken link or anchor between pages
#      fails it (external links are not checked: no network here).
#   2. cargo doc --workspace --no-deps with RUSTDOCFLAGS=-Dwarnings (into
#      target/doc).
# Tools go into their own venv, .venv/docs (installed once; DOCS_DEPS).
# Prints one line "docs: N passed, N failed".
set -uo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

# mkdocs 1.6 with Material; mkdocstrings' Python handler reads .pyi stubs.
DOCS_DEPS=(mkdocs==1.6.* mkdocs-material==9.* "mkdocstrings-python>=2,<3" "mkdocs-include-markdown-plugin>=7,<8")
venv="$ROOT/.venv/docs"
passed=0
failed=0

if [ ! -x "$venv/bin/mkdocs" ] || [ "$(cat "$venv/.deps" 2>/dev/null)" != "${DOCS_DEPS[*]}" ]; then
    log "pip install ${DOCS_DEPS[*]} (.venv/docs)"
    { [ -x "$venv/bin/python" ] || "$(command -v python3.11 || command -v python3)" -m venv "$venv"; } >&2 &&
        "$venv/bin/python" -m pip install -q "${DOCS_DEPS[@]}" >&2 &&
        echo "${DOCS_DEPS[*]}" >"$venv/.deps" ||
        { echo "docs: 0 passed, 1 failed (pip install into .venv/docs)"; exit 1; }
fi

step() {
    local name=$1 out
    shift
    if out=$("$@" 2>&1); then
        passed=$((passed + 1))
        log "$name: ok"
    else
        failed=$((failed + 1))
        log "$name failed:"
        printf '%s\n' "$out" | grep -v '^INFO' >&2
    fi
}

log "mkdocs build --strict -> target/site"
# Not -q: it hides the warnings that --strict counts.
step "mkdocs build --strict" env NO_MKDOCS_2_WARNING=1 "$venv/bin/mkdocs" build --strict --clean -f mkdocs.yml -d "$ROOT/target/site"
log "cargo doc --workspace --no-deps (RUSTDOCFLAGS=-Dwarnings)"
step "cargo doc" env RUSTDOCFLAGS="-Dwarnings" cargo doc --workspace --no-deps -q

echo "docs: ${passed} passed, ${failed} failed"
[ "$failed" -eq 0 ]
