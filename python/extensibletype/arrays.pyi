"""Type stubs for ``extensibletype.arrays``: the ``array.v1`` slot set
(docs/spec.md section 12) and its Python surface."""

import sys
from collections.abc import Sequence
from typing import Any, ClassVar, Final, Literal, SupportsIndex

from ._core import ExtensibleType

_Shape = SupportsIndex | Sequence[SupportsIndex]

class Array(metaclass=ExtensibleType):
    """A zero-filled, C-contiguous n-d array (float64, float32 or int64)
    owned by Rust, providing array.v1 and the buffer protocol."""

    def __new__(cls, shape: _Shape, dtype: str | type | object | None = "float64") -> Array: ...
    @property
    def shape(self) -> tuple[int, ...]: ...
    @property
    def strides(self) -> tuple[int, ...]: ...
    @property
    def ndim(self) -> int: ...
    @property
    def size(self) -> int: ...
    @property
    def nbytes(self) -> int: ...
    @property
    def itemsize(self) -> int: ...
    @property
    def dtype(self) -> str: ...
    @property
    def _exports(self) -> int: ...
    def fill(self, value: float, /) -> None: ...
    def tolist(self) -> Any: ...
    def resize(self, shape: _Shape, /) -> None: ...
    def __len__(self) -> int: ...
    def __getitem__(self, index: SupportsIndex | tuple[SupportsIndex, ...], /) -> Any: ...
    def __setitem__(self, index: SupportsIndex | tuple[SupportsIndex, ...], value: float, /) -> None: ...
    __dlpack_c_exchange_api__: ClassVar[Any]  # PyCapsule "dlpack_exchange_api" (DLPack 1.3)
    def __dlpack__(
        self,
        *,
        stream: int | Any | None = None,
        max_version: tuple[int, int] | None = None,
        dl_device: tuple[int, int] | None = None,
        copy: bool | None = None,
    ) -> Any: ...
    def __dlpack_device__(self) -> tuple[int, int]: ...
    if sys.version_info >= (3, 12):
        def __buffer__(self, flags: int, /) -> memoryview: ...
        def __release_buffer__(self, buffer: memoryview, /) -> None: ...

def sum(x: object, /) -> float | int: ...
def dot(x: object, y: object, /) -> float | int: ...
def axpy(a: float, x: object, y: object, /) -> None: ...
def view_info(obj: object, request: int = 0, /) -> dict[str, Any]: ...
def register_buffer_type(tp: type) -> None: ...
def register_dlpack_type(tp: type) -> Literal["c", "python", "subclasses"]: ...
def to_dlpack(
    obj: object,
    *,
    stream: int | Any | None = None,
    max_version: tuple[int, int] | None = None,
    dl_device: tuple[int, int] | None = None,
    copy: bool | None = None,
) -> Any: ...

DLPACK_VERSION: Final[tuple[int, int]]
DLPACK_FLAG_READ_ONLY: Final[int]
DLPACK_FLAG_IS_COPIED: Final[int]

KEY_ACQUIRE: Final[str]
KEY_RELEASE: Final[str]
ID_ACQUIRE: Final[int]
ID_RELEASE: Final[int]
VERSION: Final[int]
READONLY: Final[int]
C_CONTIGUOUS: Final[int]
F_CONTIGUOUS: Final[int]
ALIGNED: Final[int]
BYTESWAPPED: Final[int]
REQ_WRITABLE: Final[int]
REQ_C_CONTIGUOUS: Final[int]
REQ_ANY_CONTIGUOUS: Final[int]
VIEW_SIZE: Final[int]
VIEW_LAYOUT: Final[dict[str, int]]

NUMPY_ADAPTER: str | None
NUMPY_FALLBACK_REASON: str | None

__all__ = [
    "Array",
    "axpy",
    "dot",
    "register_buffer_type",
    "register_dlpack_type",
    "to_dlpack",
    "sum",
    "view_info",
    "KEY_ACQUIRE",
    "KEY_RELEASE",
    "NUMPY_ADAPTER",
]
