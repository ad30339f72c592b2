#!/usr/bin/env bash
# Runtime lookup benchmark (criterion), embedding the CPython that pyo3-ffi
# selects (PYO3_PYTHON, default python3). Usage: bash benches/run-runtime.sh
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYO3_PYTHON:-$(command -v python3)}
libdir=$("$py" -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR"))')
export PYO3_PYTHON="$py" LD_LIBRARY_PATH="$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target/bench-runtime}
exec cargo bench --features python --bench runtime -- "$@"
