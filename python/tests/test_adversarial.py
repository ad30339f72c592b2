"""Hostile but legal Python code against the runtime: classes that shadow
``__subclasses__``, mappings whose ``items()`` list changes under us,
metaclasses that create subclasses before ``__init__``, failures in the
middle of a write, and the exact MRO semantics of the slow lookup path.

Each test is a reviewer's reproduction of a real bug (two of them crashed the
interpreter); crash-prone ones run in a subprocess so a regression fails the
test instead of killing the run.
"""

import subprocess
import sys
import textwrap

import pytest

import extensibletype as et

ET = et.ExtensibleType


def run_isolated(code):
    """Run `code` in a fresh interpreter; return its stdout (asserting rc 0)."""
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"rc={result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def test_a_shadowed_subclasses_attribute_is_ignored():
    """set_slots asks type.__subclasses__ itself: a class attribute named
    __subclasses__ returning non-types once made the runtime read garbage."""
    out = run_isolated(
        """
        import extensibletype as et
        class FB(bytes):
            def __subclasses__(self):
                return []
        class C(metaclass=et.ExtensibleType):
            @staticmethod
            def __subclasses__():
                return [FB(b"A" * 4096)]
        class D(C):
            pass
        et.set_slots(C, {"tests.adv.v1:x": 1})
        print(et.lookup(D(), "tests.adv.v1:x"))
        """
    )
    assert out.split() == ["1"]


def test_an_instance_method_named_subclasses_does_not_break_set_slots():
    class C(metaclass=ET):
        def __subclasses__(self):
            return []

    et.set_slots(C, {"tests.adv.v1:m": 0x10})
    assert et.lookup(C(), "tests.adv.v1:m") == 0x10


def test_items_list_mutated_during_conversion():
    """A mapping whose items() returns its own list, emptied by Python code that
    runs while a value is converted: once a use-after-free."""
    out = run_isolated(
        """
        import extensibletype as et
        class Evil:
            @property
            def __class__(self):
                m.items_list.clear()
                return Evil
        class M:
            def __init__(self):
                self.items_list = [("tests.adv.v1:x", Evil())]
            def items(self):
                return self.items_list
        class C(metaclass=et.ExtensibleType):
            pass
        m = M()
        try:
            et.set_slots(C, m)
        except TypeError as e:
            print("TypeError")
        print(et.get_slots(C))
        """
    )
    assert out.split("\n")[:2] == ["TypeError", "{}"]


def test_dict_mutated_during_conversion_is_safe():
    class C(metaclass=ET):
        pass

    slots = {}

    class Evil:
        @property
        def __class__(self):
            slots.clear()
            return Evil

    slots["tests.adv.v1:y"] = Evil()
    with pytest.raises(TypeError):
        et.set_slots(C, slots)
    assert et.get_slots(C) == {}


def test_a_metaclass_subclasses_override_cannot_fail_a_write():
    """A sub-metaclass whose __subclasses__ raises on the second call once made
    set_slots raise after its change was already published (docs/spec.md §6). The
    runtime now calls type.__subclasses__ itself, and its repair pass never
    turns a published write into an error."""
    listings = []

    class M(ET):
        def __subclasses__(cls):
            listings.append(cls)
            if len(listings) == 2:
                raise RuntimeError("second listing fails")
            return type.__subclasses__(cls)

    class C(metaclass=M):
        pass

    class Sub(C):
        pass

    et.set_slots(C, {"tests.adv.v1:z": 0x1000})
    assert et.get_slots(C) == {"tests.adv.v1:z": 0x1000}
    assert et.lookup(Sub(), "tests.adv.v1:z") == 0x1000
    assert listings == []  # the override was never consulted


def test_subclass_created_before_the_base_init_inherits():
    """A metaclass __new__ that creates a subclass before the base's __init__
    ran: the base's first set-up must still reach that subclass."""

    class M(ET):
        def __new__(mcls, name, bases, ns):
            cls = super().__new__(mcls, name, bases, ns)
            if not name.endswith("Auto"):
                cls.Auto = mcls(name + "Auto", (cls,), {})
            return cls

    class C(metaclass=M):
        __cslots__ = {"tests.adv.v1:auto": 0x1000}

    assert et.lookup(C(), "tests.adv.v1:auto") == 0x1000
    assert et.lookup(C.Auto(), "tests.adv.v1:auto") == 0x1000
    assert et.get_slots(C.Auto) == {"tests.adv.v1:auto": 0x1000}


def test_never_initialised_type_follows_the_mro_in_a_diamond():
    """lookup and get_slots agree on a type made by type.__new__ alone: own
    slots of each class in MRO order, first definition wins (docs/spec.md §4)."""

    class X(metaclass=ET):
        __cslots__ = {"tests.adv.v1:k": 0x1}

    class A(X):
        pass

    class B(X):
        __cslots__ = {"tests.adv.v1:k": 0x2}

    T = ET.__new__(ET, "T", (A, B), {})
    assert [t.__name__ for t in T.__mro__] == ["T", "A", "B", "X", "object"]
    assert et.get_slots(T) == {"tests.adv.v1:k": 0x2}
    assert et.lookup(T(), "tests.adv.v1:k") == 0x2


def test_plain_subclass_sees_every_registered_foreign_base():
    """docs/spec.md §5: a plain class with two registered bases sees both."""

    class F:
        pass

    class H:
        pass

    class G(F, H):
        pass

    et.set_slots(F, {"tests.adv.v1:f": 0x10, "tests.adv.v1:both": 0x11})
    et.set_slots(H, {"tests.adv.v1:h": 0x20, "tests.adv.v1:both": 0x21})
    assert et.lookup(G(), "tests.adv.v1:f") == 0x10
    assert et.lookup(G(), "tests.adv.v1:h") == 0x20
    assert et.lookup(G(), "tests.adv.v1:both") == 0x11  # F comes first in G's MRO
    assert et.get_slots(G) == {"tests.adv.v1:f": 0x10, "tests.adv.v1:h": 0x20, "tests.adv.v1:both": 0x11}

    class E(G, metaclass=ET):
        pass

    assert et.get_slots(E) == et.get_slots(G)
