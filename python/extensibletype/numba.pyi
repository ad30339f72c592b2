# Stub of extensibletype.numba (the module imports numba; this stub does not,
# so that type checkers need no numba stubs). The four njit-only functions
# are numba intrinsics: callable in @njit code only (docs/numba.md).
import abc
from typing import Any, Optional, Sequence

import numpy as np
import numpy.typing as npt

__all__ = [
    "address",
    "addresses",
    "call_found",
    "call_method",
    "find_method",
    "has_method",
    "method",
    "Method",
    "FIND_SYMBOL",
    "API_SYMBOL",
]

FIND_SYMBOL: str
API_SYMBOL: str

def address(obj: object) -> int: ...
def addresses(objs: Sequence[object]) -> npt.NDArray[np.intp]: ...

# In @njit code only; `key` a literal typed key, `obj`/`fn` addresses.
def find_method(obj: int, key: str) -> int: ...
def has_method(obj: int, key: str) -> bool: ...
def call_method(obj: int, key: str, *args: Any) -> Any: ...
def call_found(fn: int, key: str, obj: int, *args: Any) -> Any: ...

class Method(metaclass=abc.ABCMeta):  # a numba WrapperAddressProtocol
    obj: object
    key: str
    address: int
    def __init__(self, obj: object, key: str, fn: int) -> None: ...
    def __wrapper_address__(self) -> int: ...
    def signature(self) -> Any: ...
    def __call__(self, *args: Any) -> Any: ...

def method(obj: object, key: str) -> Optional[Method]: ...
