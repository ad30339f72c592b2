"""On free-threaded 3.13, run test_lifetime.py in a fresh interpreter.

3.13t immortalises type objects once any thread has started (gh-117783), so
"an owner dies with its class" can only be observed before other test modules
start threads.
"""

import os

import pytest

from conftest import FREE_THREADED, run_in_fresh_interpreter


@pytest.mark.skipif(not FREE_THREADED, reason="GIL builds run test_lifetime.py in-process")
def test_lifetime_module_in_a_fresh_interpreter():
    run_in_fresh_interpreter(os.path.join(os.path.dirname(__file__), "test_lifetime.py"))
