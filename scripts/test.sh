#!/usr/bin/env bash
# The whole test suite (README, .ci/run): scripts/suite.py runs its named steps; arguments and --list as there.
exec python3 "$(dirname "${BASH_SOURCE[0]}")/suite.py" "$@"
