"""Shared pytest setup. Run through scripts/test.sh (one venv per interpreter)."""

import gc
import os
import subprocess
import sys

import pytest

FREE_THREADED = getattr(sys, "_is_gil_enabled", lambda: True)() is False

# Set when a test module is re-run on its own by run_in_fresh_interpreter().
FRESH_ENV = "EXTENSIBLETYPE_FRESH_INTERPRETER"
IN_FRESH_INTERPRETER = os.environ.get(FRESH_ENV) == "1"


def run_in_fresh_interpreter(module_file):
    """Run one test module with pytest in a new interpreter; assert it passed."""
    here = os.path.dirname(os.path.abspath(module_file))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", os.path.basename(module_file)],
        cwd=here,
        env={**os.environ, FRESH_ENV: "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout, result.stdout[-2000:]


@pytest.fixture
def collect():
    """Run a full collection (twice: finalisers may free more)."""

    def run():
        gc.collect()
        gc.collect()

    return run


# scripts/asan.sh runs the suite with the extension built under
# AddressSanitizer, which keeps freed memory in quarantine, and
# scripts/memcheck.sh under valgrind: RSS-based checks read high there by
# design.
RSS_TESTS = {
    "test_many_classes_leave_memory_flat",
    "test_repeated_set_slots_on_dying_classes_leave_memory_flat",
}
# Tests that only skip their RSS bound there (the rest still runs).
RSS_UNRELIABLE = os.environ.get("EXTENSIBLETYPE_ASAN") == "1" or os.environ.get("EXTENSIBLETYPE_MEMCHECK") == "1"


# An exception that escapes a thread (a failed assert in a worker) fails the
# test it ran in, instead of only warning: pytest reports it as a
# PytestUnhandledThreadExceptionWarning, made an error here for every test.
FAIL_ON_THREAD_EXCEPTION = pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")


def pytest_collection_modifyitems(config, items):
    for item in items:
        item.add_marker(FAIL_ON_THREAD_EXCEPTION)
    if os.environ.get("EXTENSIBLETYPE_ASAN") == "1":
        reason = "RSS-flatness test: AddressSanitizer quarantines freed memory (scripts/asan.sh)"
    elif os.environ.get("EXTENSIBLETYPE_MEMCHECK") == "1":
        reason = "RSS-flatness test: valgrind's allocator changes RSS (scripts/memcheck.sh)"
    else:
        return
    skip = pytest.mark.skip(reason=reason)
    # Tests that need a dead type's address to be reused: AddressSanitizer
    # keeps freed memory in quarantine, so under it that never happens.
    reuse = {"test_dead_type_address_reuse_never_answers_stale", "test_dead_extensible_sub_metaclass_class_address_reuse",
             "test_reused_address_never_sees_an_unregistered_table"}
    skip_reuse = pytest.mark.skip(reason="address-reuse test: AddressSanitizer quarantines freed memory (scripts/asan.sh)")
    for item in items:
        if item.originalname in RSS_TESTS or item.name in RSS_TESTS:
            item.add_marker(skip)
        elif item.originalname in reuse and os.environ.get("EXTENSIBLETYPE_ASAN") == "1":
            item.add_marker(skip_reuse)
