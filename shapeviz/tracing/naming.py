"""How the dims of a trace get their names, decided after the forward pass (when every size is known).

>>> namer = Namer({"T": 5}, {"bs": {2}})  # declared sizes, sizes learned from modules
>>> namer.lookup(5), namer.lookup(10), namer.lookup(7)
('T', 'T*bs', None)

Each :class:`~shapeviz.tracing.records.TensorInfo` is recorded with a :class:`How`: names given
exactly (a recurrent module's conventions), the names of the same tensor seen before, an op rule
over the op's inputs (:mod:`shapeviz.tracing.oprules`), an input's names where the shapes line up,
or the size alone. The :class:`Resolver` applies them in order; a dim left without a name is
named by size (:meth:`Namer.lookup`), or left unnamed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

from shapeviz.core.dimensions import is_simple_name
from shapeviz.tracing.records import Tag, TensorInfo

__all__ = ["BY_SIZE", "FLATTENED", "How", "Namer", "Names", "Naming", "OpView", "Resolver", "Rule", "like"]

Names = list[str | None]
"""The names of one tensor's dims, None where a dim has none (yet)."""

# By size alone, only a flattened time-and-batch dim (T*bs, reshape(-1, ·) of a sequence) is named
# as a product; other products (2*h = 12 = bs*emb) are too often coincidences to name.
FLATTENED = frozenset({"T", "bs"})


class Namer:
    """Size -> name lookups over the declared and learned sizes."""

    def __init__(self, declared_sizes: dict[str, int], learned: dict[str, set[int]]) -> None:
        self.declared = declared_sizes
        self.learned = learned
        self.order: dict[frozenset[str], tuple[str, str]] = {}
        self._simple: list[tuple[str, int]] | None = None

    def direct(self, size: int) -> list[str]:
        """Every name of this size: declared ones first."""
        out = [n for n, s in self.declared.items() if s == size]
        out += [n for n, ss in self.learned.items() if size in ss and n not in out and n not in self.declared]
        return out

    def simple(self) -> list[tuple[str, int]]:
        """(name, size) of the plain names (no products) larger than 1."""
        if self._simple is None:
            pairs = [(n, s) for n, s in self.declared.items()]
            pairs += [(n, s) for n, ss in self.learned.items() if n not in self.declared for s in sorted(ss)]
            self._simple = [(n, s) for n, s in pairs if s > 1 and is_simple_name(n)]
        return self._simple

    def lookup(self, size: int) -> str | None:
        """The name of a size: ``"T"``, ``"T|bs"`` where two share it, ``"T*bs"`` for their product."""
        names = self.direct(size)
        if names:
            return "|".join(names)
        if size <= 1:
            return None
        simple = [(n, s) for n, s in self.simple() if n in FLATTENED]
        found: list[str] = []
        for i, (a, sa) in enumerate(simple):
            for b, sb in simple[i:]:
                if a != b and sa * sb == size:
                    x, y = self.order.get(frozenset((a, b)), (a, b))
                    name = f"{x}*{y}"
                    if name not in found:
                        found.append(name)
        return "|".join(found) if found else None

    def count_name(self, n: int) -> str | None:
        """The one plain name of size ``n`` (how many tensors a ``cat`` joined), else None."""
        names = self.direct(n)
        return names[0] if len(names) == 1 and is_simple_name(names[0]) else None

    def saw(self, names: Sequence[str]) -> None:
        """Remember the order plain names appeared in, so a product reads ``T*bs`` as laid out."""
        simple = [n for n in names if is_simple_name(n)]
        for i, a in enumerate(simple):
            for b in simple[i + 1:]:
                if a != b:
                    self.order[frozenset((a, b))] = (a, b)


class OpView(NamedTuple):
    """What an op rule reads: the op's input records, the result's shape, the size lookups."""

    ins: list[TensorInfo]
    shape: tuple[int, ...]
    namer: Namer

    def names(self, i: int) -> Names:
        """A copy of input ``i``'s names (None for each unnamed dim)."""
        info = self.ins[i]
        return list(info.names) if info.names is not None else [None] * len(info.shape)


Rule = Callable[[OpView], "Names | None"]
"""An op rule: the names of the op's result, or None when it cannot tell."""


class Naming(Tag):
    """Where a record's names come from."""

    EXACT = "exact"  # given: a recurrent module's conventions, a declaration
    ALIAS = "alias"  # the same tensor recorded before
    RULE = "rule"  # an op rule over the op's inputs
    LIKE = "like"  # an input whose dims line up with the result's
    SIZE = "size"  # the size alone


class How(NamedTuple):
    """How one record gets its names (see :class:`Naming`)."""

    kind: Naming
    names: tuple[str, ...] = ()  # EXACT
    source: TensorInfo | None = None  # ALIAS
    rule: Rule | None = None  # RULE
    inputs: Sequence[TensorInfo] = ()  # RULE, LIKE

    # the constructors (tuple.__new__: a hot path, one per recorded tensor)
    @classmethod
    def exact(cls, names: tuple[str, ...]) -> How:
        return tuple.__new__(cls, (Naming.EXACT, names, None, None, ()))

    @classmethod
    def alias(cls, source: TensorInfo) -> How:
        return tuple.__new__(cls, (Naming.ALIAS, (), source, None, ()))

    @classmethod
    def by_rule(cls, rule: Rule, inputs: Sequence[TensorInfo]) -> How:
        return tuple.__new__(cls, (Naming.RULE, (), None, rule, inputs))

    @classmethod
    def like(cls, inputs: Sequence[TensorInfo]) -> How:
        return tuple.__new__(cls, (Naming.LIKE, (), None, None, inputs))


BY_SIZE = How(Naming.SIZE)


class Resolver:
    """Gives each record its names, resolving what it depends on first."""

    def __init__(self, namer: Namer, hows: dict[int, tuple[TensorInfo, How]]) -> None:
        self.namer = namer
        self.hows = hows
        self.done: set[int] = set()

    def resolve(self, info: TensorInfo) -> None:
        if id(info) in self.done:
            return
        self.done.add(id(info))
        how = self.hows.get(id(info), (info, BY_SIZE))[1]
        names: Names | None = None
        kind = how.kind
        if kind is Naming.EXACT:
            names = list(how.names)
        elif kind is Naming.ALIAS:
            src = how.source
            assert src is not None
            self.resolve(src)
            if src.shape == info.shape and src.names is not None:
                names = list(src.names)
        elif kind is Naming.RULE or kind is Naming.LIKE:
            ins = list(how.inputs)
            for i in ins:
                self.resolve(i)
            if how.rule is not None:
                try:
                    names = how.rule(OpView(ins, info.shape, self.namer))
                except (IndexError, ValueError, TypeError, KeyError):
                    names = None
                if names is not None and len(names) != len(info.shape):
                    names = None
            if names is None:
                names = like(ins, info.shape)
        if names is None:
            names = [None] * len(info.shape)
        final = [n if n else self.namer.lookup(s) for n, s in zip(names, info.shape)]
        if any(final):
            info.names = tuple(n or "" for n in final)
            info.ambiguous = any("|" in n for n in info.names)
            self.namer.saw(info.names)


def like(ins: Sequence[TensorInfo], shape: tuple[int, ...]) -> Names | None:
    """Names from an input: one of the same shape, else one whose leading or trailing dims match.

    >>> like([TensorInfo((5, 2, 8), ("T", "bs", "h"))], (2, 8))
    ['bs', 'h']
    """
    named = [i for i in ins if i.names is not None]
    for i in named:
        if i.shape == shape:
            return list(i.names or ())
    for i in named:
        n = len(shape)
        if 0 < n <= len(i.shape) and i.shape[len(i.shape) - n:] == shape:  # x[t]: trailing dims
            return list((i.names or ())[len(i.shape) - n:])
    if named:
        first = named[0]
        assert first.names is not None
        return [first.names[k] if k < len(first.shape) and first.shape[k] == s else None
                for k, s in enumerate(shape)]
    return None
