"""Shared pytest setup. Run through scripts/test.sh (one venv per interpreter)."""

import gc
import sys

import pytest

FREE_THREADED = getattr(sys, "_is_gil_enabled", lambda: True)() is False


@pytest.fixture
def collect():
    """Run a full collection (twice: finalisers may free more)."""

    def run():
        gc.collect()
        gc.collect()

    return run
