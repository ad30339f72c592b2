#!/usr/bin/env bash
# The Python suite on CPython 3.14 and 3.15 in the Debian forky chroot
# (scripts/forky.sh): the `forky` steps of scripts/suite.py, each a
# version-specific build (`pip install .`, .venv/forky-<v>), the abi3 wheel
# (.venv/forky-<v>-abi3; the host's when built, else built there) and on 3.15
# the abi3t wheel (PEP 803, pyo3-ffi 0.30's abi3t-py315). Venvs and cargo
# target dirs carry a `forky-` prefix, so they never collide with the host's.
#   bash scripts/test-forky.sh                         # all five
#   bash scripts/test-forky.sh forky-3.15 forky-3.15-abi3t   # some
exec python3 "$(dirname "${BASH_SOURCE[0]}")/suite.py" "${@:-forky}"
