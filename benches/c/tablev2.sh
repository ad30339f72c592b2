#!/usr/bin/env bash
# Table-format prototype against ABI v1 (see benches/c/tablev2.c): build
# statistics of a single-level table, and lookup latency, throughput and
# (with --callgrind) instructions of every variant, side by side in one run.
#
#   bash benches/c/tablev2.sh [--quick] [--reps N] [--callgrind]
#
# The interpreter is chosen as benches/c/run.sh chooses it ($PYTHON, else the
# suite's venvs, else python3; it must have extensibletype installed).
BENCH_DRIVER=tablev2.py exec bash "$(dirname "${BASH_SOURCE[0]}")/run.sh" "$@"
