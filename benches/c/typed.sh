#!/usr/bin/env bash
# Typed-method call benchmark (see benches/c/typed.c): a typed call through
# ExtType_Find against a direct call, a Cython-style vtable call and a
# vectorcall of the Python method; and, from Python, bind(obj, key)(...)
# against the Python method.
#
#   bash benches/c/typed.sh [--quick] [--reps N]
#
# The interpreter is chosen as benches/c/run.sh chooses it ($PYTHON, else the
# suite's venvs, else python3; it must have extensibletype installed).
BENCH_DRIVER=typed.py exec bash "$(dirname "${BASH_SOURCE[0]}")/run.sh" "$@"
