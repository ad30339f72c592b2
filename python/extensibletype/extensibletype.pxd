# cython: language_level=3
"""Kept for code written before ``cimport extensibletype`` worked:
``from extensibletype.extensibletype cimport ExtType_Find`` still resolves.
The declarations live in ``extensibletype/__init__.pxd``."""

from extensibletype cimport *
