"""DLPack exports and imports in a loop, for valgrind (scripts/dlpack-memcheck.sh):
every path of crates/extensibletype-arrays/src/providers/dlpack/, good and bad input. Prints the
producer's made/deleted counts; exits 1 if they differ. Not a pytest module."""

import gc
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402

import cbuild  # noqa: E402
import extensibletype.arrays as xa  # noqa: E402

m = cbuild.load(cbuild.build("dlpack_producer", [HERE / "c" / "dlpack_producer.c"], cflags=cbuild.STRICT))
xa.register_dlpack_type(m.Tensor)


class W:
    def __init__(self, t):
        self.t = t

    def __dlpack__(self, **kw):
        return self.t.__dlpack__(**kw)


xa.register_dlpack_type(W)
for i in range(int(sys.argv[1]) if len(sys.argv) > 1 else 200):
    a = xa.Array((3, 4)); a.__dlpack__(); a.__dlpack__(max_version=(1, 3)); np.from_dlpack(a); xa.to_dlpack(a, copy=True)
    xa.to_dlpack(np.arange(10.0)[::3], max_version=(1, 3)); xa.to_dlpack(bytearray(8))
    xa.sum(m.Tensor(5)); xa.sum(W(m.Tensor(5))); xa.sum(W(m.Tensor(5, legacy=1)))
    for bad in (W(m.Tensor(3, capsule_name="wrong")), W(m.Tensor(3, major=2)), m.Tensor(3, major=2), m.Tensor(3, device_type=2)):
        try: xa.sum(bad)
        except (ValueError, BufferError, TypeError):
            pass
    m.exercise(type(a).__dlpack_c_exchange_api__, a)
    # Without registration (adoption on a miss): a good type adopted once,
    # a failing one refused (its first export's tensor deleted), then
    # forgotten so the next round adopts and refuses again.
    U = type("U", (), {"__init__": W.__init__, "__dlpack__": W.__dlpack__})  # not a subclass of W
    UBad = type("UBad", (), {"__init__": W.__init__, "__dlpack__": W.__dlpack__})

    xa.sum(U(m.Tensor(4))); xa.sum(U(m.Tensor(4, legacy=1)))
    for _ in range(2):
        try: xa.sum(UBad(m.Tensor(3, major=2)))
        except (BufferError, TypeError):
            pass
    assert U in xa._impl._adopted()[1] and UBad not in xa._impl._adopted()[1]
    xa._impl._forget_adopted()
gc.collect()
print("made", m.made(), "deleted", m.deleted())
sys.exit(0 if m.made() == m.deleted() else 1)
