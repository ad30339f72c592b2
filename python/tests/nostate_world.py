"""The world of python/tests/test_nostate_threads.py (shared with its
exit-test subprocesses, which do not import pytest): watched types, their
owners, and writer steps. Registered values encode (owner, key, version):
see python/tests/c/nostate_readers.c."""

import extensibletype as et

ET = et.ExtensibleType
KEYS = [f"tests.nostate.v1:k{i}" for i in range(3)]
IDS = [et.prehash(k) for k in KEYS]
FILLER = [f"tests.nostate.v1:filler{i}" for i in range(30)]


def value(owner, key, version):
    """The pointer value the readers decode."""
    return (owner + 1) << 40 | (key + 1) << 32 | version


class World:
    """The watched types, their owners and the writers' bookkeeping."""

    def __init__(self, h, rng):
        self.h = h
        self.rng = rng
        self.owner_of = {}  # class -> owner index
        self.classes = []  # owners (set_slots targets)
        self.version = {}  # (owner, key) -> last announced version
        self.plain = []  # classes for attribute assignment
        self.churn_owner = 32

    def own(self, cls, index, initial=True):
        self.owner_of[cls] = index
        self.classes.append(cls)
        if initial:
            self.set(cls, {k: True for k in range(len(KEYS))})

    def set(self, cls, keys):
        """set_slots(cls, ...) with fresh values (None where keys[k] is False)."""
        o = self.owner_of[cls]
        mapping = {}
        for k, present in keys.items():
            if present:
                v = self.version.get((o, k), 0) + 1
                self.version[(o, k)] = v
                self.h.announce(o, k, v)
                mapping[KEYS[k]] = value(o, k, v)
            else:
                mapping[KEYS[k]] = None
        et.set_slots(cls, mapping)

    def owners(self, tp):
        mask = 0
        for c in tp.__mro__:
            o = self.owner_of.get(c)
            if o is not None:
                mask |= 1 << o
        return mask

    def watch(self, tp):
        for k, id_ in enumerate(IDS):
            self.h.add(tp, id_, k, self.owners(tp))

    def build(self, n_plain=64):
        """Extensible classes, foreign-registered classes (plain and a
        bytearray subclass), their subclasses, a sub-metaclass class, plain
        classes and static types."""
        es = []
        for i in range(4):
            e = ET(f"E{i}", (), {})
            self.own(e, i)
            es.append(e)
        fs = []
        for i in range(4):
            f = type(f"F{i}", (), {})
            self.own(f, 4 + i)
            fs.append(f)
        ba = type("BA", (bytearray,), {})
        self.own(ba, 8)

        class SubMeta(ET):
            pass

        sm = SubMeta("SM", (), {})
        self.own(sm, 9)
        sf_own = type("SFOwn", (fs[1],), {})
        self.own(sf_own, 10)
        subs = [
            ET("SE0", (es[0],), {}),
            type("SF0", (fs[0],), {}),
            type("SF00", (type("SF0x", (fs[0],), {}),), {}),
            ET("Mixed", (es[1], fs[2]), {}),
            type("SBA", (ba,), {}),
            SubMeta("SSM", (sm,), {}),
            type("SSFOwn", (sf_own,), {}),
            ET("EOnForeign", (fs[3],), {}),
        ]
        self.bare = [type(f"P{i}", (), {}) for i in range(n_plain)]
        self.plain = list(self.bare)
        self.plain += [type(f"PS{i}", (p,), {}) for i, p in enumerate(self.plain[:8])]
        self.plain += subs[1:3] + [subs[4], subs[6]]
        statics = [int, bytearray, object, type, dict]
        for tp in self.classes + subs + self.plain + statics:
            self.watch(tp)

    def new_churn_class(self):
        """A fresh class: a subclass of a watched owner, possibly with its
        own slots (an owner index cycling through 32..63)."""
        rng = self.rng
        base = rng.choice(self.classes[:11])
        meta = type(base)
        cls = meta(f"C{rng.randrange(1 << 30)}", (base,), {})
        if rng.random() < 0.5:
            o = self.churn_owner
            self.churn_owner = 32 + (self.churn_owner - 31) % 32
            self.owner_of[cls] = o
            self.set(cls, {k: True for k in range(len(KEYS))})
        return cls

    def write(self, step):
        """One writer step: new slot values, a removal now and then, a
        class attribute assignment (resets the version tags of the class and
        its subclasses)."""
        rng = self.rng
        cls = rng.choice(self.classes)
        k = rng.randrange(len(KEYS))
        self.set(cls, {k: rng.random() > 0.1})
        p = rng.choice(self.plain)
        setattr(p, "attr", step)
        if step % 3 == 0:
            setattr(rng.choice(self.classes), "attr", step)
        if step % 4 == 0:
            # Filler slots nobody reads: 3 + 0..30 slots switch a class (and
            # its subclasses) between flat tables of other sizes and k1s and
            # two-level tables (over 24 slots), so readers meet every kind of
            # flat descriptor republish (docs/spec.md §3).
            n = rng.choice([0, 5, 21, 30])
            et.set_slots(rng.choice(self.classes), {key: (0x7000 + 16 * i if i < n else None)
                                                    for i, key in enumerate(FILLER)})
