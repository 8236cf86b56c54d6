"""How the dims of a trace get their names, decided after the forward pass (when every size is known).

>>> namer = Namer({"T": 5}, {"bs": {2}})  # declared sizes, sizes learned from modules
>>> namer.lookup(5), namer.lookup(10), namer.lookup(7)
('T', 'T*bs', None)
>>> guess("T"), is_guess("T?"), evidence(("T?", "bs", ""))
('T?', True, [None, 'bs', None])

Each :class:`~shapeviz.tracing.records.TensorInfo` is recorded with a :class:`How`: names given
exactly (a recurrent module's conventions, a declaration), the names of the same tensor seen
before, an op rule over the op's inputs (:mod:`shapeviz.tracing.oprules`), an input's names where
the shapes line up, or the size alone. The :class:`Resolver` applies them in order and keeps, per
dim, where its name came from (``TensorInfo.origins``).

A size match is not evidence: a dim named only because its size equals a known size is a
*guess*, written with a trailing ``?`` (``"T?"``, shown ``T?=5``) in every renderer and in JSON.
The one exception is a size you declared with ``sv.dims`` that no other name shares (your claim
that dims of that size are that name; origin ``"sv.dims (by size)"``). Size 1 is never named by size.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from shapeviz.core.dimensions import is_simple_name
from shapeviz.core.evidence import bases_of
from shapeviz.tracing.records import Tag, TensorInfo

__all__ = ["BY_SIZE", "DECLARED", "FLATTENED", "GUESS", "How", "Namer", "Names", "Naming", "OpView", "Resolver", "Rule",
           "declared_names", "evidence", "guess", "is_guess", "like", "like_origin", "name",
           "same_names", "unname_contradicted"]

Names = list[str | None]
"""The names of one tensor's dims, None where a dim has none (yet)."""

# By size alone, only a flattened time-and-batch dim (T*bs, reshape(-1, ·) of a sequence) is named
# as a product; other products (2*h = 12 = bs*emb) are too often coincidences to name.
FLATTENED = frozenset({"T", "bs"})

READINGS = frozenset({"T", "bs"})
"""The names a module's conventions give by reading the layout (which dim is time, which batch): the tensor's own
evidence for a dim wins over them (:meth:`How.filled`); a feature dim's name (``emb``, ``h``) is checked by torch.
"""

FIXED = frozenset({"bs", "T"})
_DECLARED_ONCE = FIXED | {"emb"}
"""Names a layer's reading gives that a declared size of another size contradicts: the model's batch and time,
and its input's features (a second stacked cell's input of 6 is not the declared emb=4: it is the first's h)."""
"""Names with one size in a forward, once declared: a declared batch is the batch, and a declared ``T`` is the
model's steps (a decoder's or a pyramid's other length is not ``T``; one step, ``T=1``, is a step of it)."""

_FEATURES = frozenset({"emb", "h", "proj"})
"""A recurrent layer's feature sizes: never a count of pieces."""

GUESS = "size (guess)"
"""The origin of a name found by size alone."""


def guess(name: str) -> str:
    """A name found by size alone, marked as a guess: ``"T"`` -> ``"T?"``."""
    return name if name.endswith("?") else name + "?"


def is_guess(name: str | None) -> bool:
    """Whether a recorded dim name is a guess (``"T?"``, ``"T|bs?"``)."""
    return bool(name) and str(name).endswith("?")


def evidence(names: Sequence[str] | None) -> Names:
    """The names with evidence of a record's names; None for unnamed and guessed dims."""
    return [n if n and not n.endswith("?") else None for n in names or ()]


class Namer:
    """Size -> name lookups over the declared and learned sizes."""

    def __init__(self, declared_sizes: dict[str, int], learned: dict[str, set[int]],
                 declared_by_dims: dict[str, int] | None = None, counts: bool = False) -> None:
        self.counts = counts  # the ops=True flow's: as many pieces as T has steps are read as T (never shown)
        self.declared = declared_sizes
        self.learned = learned
        self.declared_by_dims = declared_by_dims or {}  # the sizes sv.dims declared (not inputs_dims)
        self._simple: list[tuple[str, int]] | None = None
        self._by_size: dict[int, tuple[str | None, str]] = {}  # by_size depends on the sizes alone

    def forget(self) -> None:
        """Drop what was looked up by size: a size changed (the flow's next batch)."""
        self._simple = None
        self._by_size.clear()

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
                    name = f"{a}*{b}"
                    if name not in found:
                        found.append(name)
        return "|".join(found) if found else None

    def by_size(self, size: int) -> tuple[str | None, str]:
        """The name of a dim known only by its size, and its origin: a plain name for a size you
        declared with ``sv.dims`` that no other name shares, else a guess (``"T?"``), else None.

        >>> Namer({"vocab": 28}, {"T": {5}}, {"vocab": 28}).by_size(28), Namer({}, {"T": {5}}).by_size(5)
        (('vocab', 'sv.dims (by size)'), ('T?', 'size (guess)'))
        """
        hit = self._by_size.get(size)
        if hit is None:
            hit = self._by_size[size] = self._by_size_uncached(size)
        return hit

    def _by_size_uncached(self, size: int) -> tuple[str | None, str]:
        if size <= 1:
            return None, ""
        name = self.lookup(size)
        if name is None or "*" in name:  # a size cannot tell T*bs from bs*T: no guess at all
            return None, ""
        if self.declared_by_dims.get(name) == size:
            return name, "sv.dims (by size)"
        return guess(name), GUESS

    def size_of(self, name: str) -> int | None:
        """The one size of a plain name (declared, or learned once), else None."""
        if name in self.declared:
            return self.declared[name]
        sizes = self.learned.get(name)
        return next(iter(sizes)) if sizes is not None and len(sizes) == 1 else None

    def widen(self, name: str, size: int) -> str:
        """A guess with every name its size matches: ``"T?"`` of a size ``T`` and ``bs`` share is ``"T|bs?"``
        (a guess from the position of a dim is still only a size match).

        >>> Namer({"T": 4, "bs": 4, "h": 8}, {}).widen("T?", 4), Namer({"T": 4}, {}).widen("T?", 4)
        ('T|bs?', 'T?')
        """
        names = self.direct(size)
        return guess("|".join(names)) if len(names) > 1 and name[:-1] in names else name

    def contradicted(self, names: Sequence[str | None], shape: Sequence[int]) -> set[int]:
        """The dims whose name the declared sizes contradict: a batch or time (:data:`FIXED`) of another size
        than the declared one (a merged ``bs*S`` or a beam's ``bs*k`` is not ``bs``; a decoder's 9 steps are not
        the declared T=5, one step is), and ``T`` and ``bs`` when both sit at each other's declared size (a layout
        read swapped: the layer's reading, not the tensor's dims).

        >>> namer = Namer({"bs": 4, "T": 5}, {})
        >>> namer.contradicted(["T", "bs", "emb"], (4, 5, 3)), namer.contradicted(["T", "bs"], (9, 4))
        ({0, 1}, {0})
        >>> namer.contradicted(["T", "bs"], (1, 4)), namer.contradicted(["bs*T", "T"], (20, 1))  # one step of T
        (set(), {1})
        >>> namer.contradicted(["bs", "T", "emb"], (20, 5, 3))  # a char LSTM over bs*T words of 5 chars
        {0, 1}
        >>> namer.contradicted(["bs*T", "T", "emb"], (20, 5, 3))  # the same, its batch named by provenance
        {1}
        >>> Namer({"emb": 4}, {}).contradicted(["bs", "emb"], (2, 6))  # a stacked cell's input: its h below
        {1}
        """
        declared = self.declared
        if not declared:
            return set()
        bad = {k for k, (n, s) in enumerate(zip(names, shape))
               if n in _DECLARED_ONCE and declared.get(n, s) != s and (n != "T" or s != 1 or _t_elsewhere(names, k))}
        t, b = declared.get("T"), declared.get("bs")
        if t is not None and b is not None and t != b and "T" in names and "bs" in names:
            kt, kb = names.index("T"), names.index("bs")
            if shape[kt] == b and shape[kb] == t:
                bad |= {kt, kb}
        merged_t = any(n and "*" in n and "T" in n.split("*") for n in names)  # T already merged into a dim
        if merged_t or any(names[k] == "bs" for k in bad):  # a layer over bs*T words (a char model's), or whose
            bad |= {k for k, n in enumerate(names) if n == "T"}  # batch is not the model's: its steps are not T
        return bad

    def count_name(self, n: int) -> str | None:
        """The one plain name of size ``n`` (how many tensors a ``cat`` joined), else None; a layer's feature
        sizes (``emb``, ``h``, ``proj``) count no tensors, so they leave it alone.

        >>> Namer({"T": 7, "h": 7, "bs": 3}, {}).count_name(7), Namer({"T": 3, "bs": 3}, {}).count_name(3)
        ('T', None)
        """
        names = [m for m in self.direct(n) if m not in _FEATURES]
        return names[0] if len(names) == 1 and is_simple_name(names[0]) else None


class OpView(NamedTuple):
    """What an op rule reads: the op's input records, the result's shape, the size lookups."""

    ins: list[TensorInfo]
    shape: tuple[int, ...]
    namer: Namer

    def names(self, i: int) -> Names:
        """A copy of input ``i``'s names with evidence (None for each unnamed or guessed dim)."""
        info = self.ins[i]
        return evidence(info.names) if info.names is not None else [None] * len(info.shape)


Rule = Callable[[OpView], "Names | None"]
"""An op rule: the names of the op's result, or None when it cannot tell."""


class Naming(Tag):
    """Where a record's names come from."""

    EXACT = "exact"  # given: a recurrent module's conventions, a declaration (origin says which)
    ALIAS = "alias"  # the same tensor recorded before
    RULE = "rule"  # an op rule over the op's inputs
    LIKE = "like"  # an input whose dims line up with the result's
    SIZE = "size"  # the size alone
    LOOKS_LIKE = "looks like"  # a module we cannot see into whose result lines up with its input: guesses
    FILLED = "filled"  # its own how first; the dims that leaves without evidence named like another record


class How(NamedTuple):
    """How one record gets its names (see :class:`Naming`)."""

    kind: Naming
    names: tuple[str, ...] = ()  # EXACT; FILLED: the names of the dims its own how leaves unnamed
    source: TensorInfo | None = None  # ALIAS
    rule: Rule | None = None  # RULE
    inputs: Sequence[TensorInfo | How] = ()  # RULE, LIKE; FILLED: (its own how,)
    origin: str = ""  # EXACT, FILLED: "conventions of rnn"; RULE: "op transpose"; LIKE: "like the input of X"

    # the constructors (tuple.__new__: a hot path, one per recorded tensor)
    @classmethod
    def exact(cls, names: tuple[str, ...], origin: str) -> How:
        return tuple.__new__(cls, (Naming.EXACT, names, None, None, (), origin))

    @classmethod
    def alias(cls, source: TensorInfo) -> How:
        return tuple.__new__(cls, (Naming.ALIAS, (), source, None, (), ""))

    @classmethod
    def by_rule(cls, rule: Rule, inputs: Sequence[TensorInfo], origin: str) -> How:
        return tuple.__new__(cls, (Naming.RULE, (), None, rule, inputs, origin))

    @classmethod
    def like(cls, inputs: Sequence[TensorInfo], origin: str) -> How:
        return tuple.__new__(cls, (Naming.LIKE, (), None, None, inputs, origin))

    @classmethod
    def filled(cls, first: How | TensorInfo, names: tuple[str, ...], origin: str) -> How:
        """Named by ``names`` (a recurrent module's conventions for the same tensor) except where ``first`` (a how,
        or a record: like it) gives evidence and the conventions only read the layout (:data:`READINGS`): the
        tensor's own ``(bs, T)`` wins over the layer's reading of it as ``(T, bs)``, which the runtime checks
        report; a feature dim is named by the layer (``emb``, whose size torch checks)."""
        return tuple.__new__(cls, (Naming.FILLED, names, None, None, (first,), origin))


BY_SIZE = How(Naming.SIZE)


Final = tuple[tuple[str, ...], "tuple[str, ...] | None", bool]
"""A record's final names, their origins (None: no dim has a name) and whether a name is ambiguous."""


def same_names(info: TensorInfo, src: TensorInfo) -> None:
    """``info`` records the tensor ``src`` (resolved) records: its final names, or none where ``src`` was left
    unnamed (a flattened size is never guessed, not even at the tensor's next use)."""
    info.names, info.ambiguous = src.names, src.ambiguous
    info.origins = src.origins if src.origins is not None or src.names is None else ("",) * len(src.names)


class Resolver:
    """Gives each record its names, resolving what it depends on first.

    ``hows``: id(record) -> (record, how) of the records still to be named; each is taken out when it is
    named (a record not in it is named already). A how that is itself a record stands for ``How.alias`` of it
    (the recorder's hot path makes no How for the commonest case)."""

    def __init__(self, namer: Namer, hows: dict[int, tuple[TensorInfo, How | TensorInfo]]) -> None:
        self.namer = namer
        self.hows = hows
        self.finals: dict[tuple, Final] = {}
        # (rule, origin, shape, each input's (shape, names, repeat)) -> final: a rule that is a plain function (not a
        # closure over the op's arguments) names alike whatever has those
        self.ruled: dict[tuple, Final] = {}

    def resolve(self, info: TensorInfo) -> None:
        hows = self.hows
        entry = hows.pop(id(info), None)
        if entry is None:
            return
        how = entry[1]
        ruled: tuple | None = None
        if type(how) is not How:  # a record: named like it (the same tensor); How.alias in short
            if id(how) in hows:
                self.resolve(how)
            if how.shape == info.shape:  # the same tensor: its final names
                same_names(info, how)
                return
            how = BY_SIZE  # the alias gave nothing: named by its sizes, as the ALIAS case below ends
        names: Names | None = None
        origins: list[str] | None = None
        origin = how.origin
        kind = how.kind
        if kind is Naming.EXACT:
            names = list(how.names)
        elif kind is Naming.ALIAS:
            src = how.source
            assert src is not None
            if id(src) in hows:
                self.resolve(src)
            if src.shape == info.shape:  # the same tensor: its final names
                same_names(info, src)
                return
        elif kind is Naming.LOOKS_LIKE:
            for i in how.inputs:
                if id(i) in hows:
                    self.resolve(i)
            found = like(list(how.inputs), info.shape)
            if found is not None:
                names = [guess(n) if n else n for n in found]
                origins = [GUESS if n else "" for n in names]
        elif kind is Naming.RULE or kind is Naming.LIKE:
            ins = how.inputs
            for i in ins:
                if id(i) in hows:
                    self.resolve(i)
            if getattr(how.rule, "__closure__", None) is None:
                ruled = (how.rule, origin, info.shape, tuple([(i.shape, i.names, i.repeat) for i in ins]))
                done = self.ruled.get(ruled)
                if done is not None:
                    if done[1] is not None:
                        info.names, info.origins, info.ambiguous = done
                    return
            if how.rule is not None:
                try:
                    names = how.rule(OpView(ins, info.shape, self.namer))  # type: ignore[arg-type]
                except (IndexError, ValueError, TypeError, KeyError, ZeroDivisionError):
                    names = None
                if names is not None and len(names) != len(info.shape):
                    names = None
            if names is None:
                names, origin = like(ins, info.shape), like_origin(origin)
        elif kind is Naming.FILLED:
            self._fill(info, how)
            return
        elif info.names is not None:  # named before it was recorded (a declaration)
            return
        # the same names, origins and shape always end alike (the sizes are all known by now)
        key = (None if names is None else tuple(names), origin if origins is None else tuple(origins), info.shape)
        hit = self.finals.get(key)
        if hit is None:
            if names is None:
                names = [None] * len(info.shape)
            if origins is None:
                origins = [(GUESS if n.endswith("?") else origin) if n else "" for n in names]
            hit = self.finals[key] = self._by_sizes(names, origins, info.shape)
        if ruled is not None:
            self.ruled[ruled] = hit
        final, where, ambiguous = hit
        if where is not None:
            info.names = final
            info.origins = where
            info.ambiguous = ambiguous

    def _fill(self, info: TensorInfo, how: How) -> None:
        """Name ``info`` by ``how.inputs[0]``, then by ``how.names`` where :meth:`How.filled` says."""
        self.hows[id(info)] = (info, how.inputs[0])  # type: ignore[assignment]
        self.resolve(info)
        theirs = evidence(how.names)
        if len(theirs) != len(info.shape):
            return
        own = evidence(info.names) if info.names is not None else [None] * len(info.shape)
        if own == theirs or not any(theirs):
            return
        names: Names = []
        origins: list[str] = []
        for k, (n, m) in enumerate(zip(own, theirs)):
            mine = bool(n) and (not m or m in READINGS)
            names.append(n if mine else m)
            origins.append((info.origins or ())[k] if mine else how.origin if m else "")
        final, where, ambiguous = self._by_sizes(names, origins, info.shape)
        if where is not None:
            info.names, info.origins, info.ambiguous = final, where, ambiguous

    def _by_sizes(self, names: Names, origins: list[str], shape: tuple[int, ...]) -> Final:
        """The final names, their origins (None when no dim has a name) and whether one is ambiguous:
        a dim without a name (None) is named by its size, if at all; one whose name the declared sizes contradict
        (:meth:`Namer.contradicted`) is left unnamed; a guess lists every name its size matches."""
        final: list[str] = []
        where: list[str] = []
        namer = self.namer
        bad = namer.contradicted(names, shape)
        for k, (n, o, s) in enumerate(zip(names, origins, shape)):
            if k in bad:  # not that name, and no guess by its size either
                n = ""
            elif n is None:  # "" is a rule's "unnamed on purpose"
                n, o = namer.by_size(s)
            elif n.endswith("?"):
                n = namer.widen(n, s)
            final.append(n or "")
            where.append(o if n else "")
        if not any(final):
            return tuple(final), None, False
        return tuple(final), tuple(where), any("|" in n for n in final)


def _t_elsewhere(names: Sequence[str | None], k: int) -> bool:
    """Does a dim other than ``k`` hold T, whole or in a product (``bs*T``)? Then a one-step ``T`` is not it."""
    return any(n and j != k and "T" in n.split("*") for j, n in enumerate(names))


def unname_contradicted(call: Any, namer: Namer) -> None:
    """Leave unnamed, in a call's records, each dim whose name the declared sizes contradict
    (:meth:`Namer.contradicted`): a recurrent module's conventions name its records when it is called, before every
    size is known, with the layer's reading of them (a merged ``bs*S`` read as ``bs``, a ``(bs, T)`` read as
    ``(T, bs)``), which is not what the tensor's dims are.

    >>> from shapeviz.tracing.records import Call
    >>> x = TensorInfo((4, 5, 3), ("T", "bs", "emb"), origins=("conventions of rnn",) * 3)
    >>> unname_contradicted(Call(0, "rnn", "GRU", "module", inputs=[x]), Namer({"bs": 4, "T": 5}, {}))
    >>> x.format(), x.origins
    ('(4, 5, emb=3)', ('', '', 'conventions of rnn'))
    """
    for info in (*call.inputs, *call.outputs):
        if info.names is None:
            continue
        bad = namer.contradicted(info.names, info.shape)
        if not bad:
            continue
        origins = info.origins or ("",) * len(info.names)
        info.names = tuple("" if k in bad else n for k, n in enumerate(info.names))
        info.origins = tuple("" if k in bad else o for k, o in enumerate(origins))
        info.ambiguous = any("|" in n for n in info.names)


def like_origin(origin: str) -> str:
    """The origin of names taken from an input by :func:`like` (where no op rule could tell).

    >>> like_origin("op add"), like_origin("")
    ('like the input of op add', 'like an input')
    """
    if origin.startswith("like"):
        return origin
    return f"like the input of {origin}" if origin else "like an input"


def like(ins: Sequence[TensorInfo], shape: tuple[int, ...]) -> Names | None:
    """Names from an input of an op no rule covers: an input of the same shape gives its names (the
    op kept every dim in place); dims that merely line up by size with an input's (a reduction, say,
    whose kept dims no rule knows) are only guesses.

    >>> x = TensorInfo((5, 2, 8), ("T", "bs", "h"))
    >>> like([x], (5, 2, 8)), like([x], (2, 8))
    (['T', 'bs', 'h'], ['bs?', 'h?'])
    """
    named = [i for i in ins if i.names is not None]
    for i in named:
        if i.shape == shape:
            return list(i.names or ())
    for i in named:
        n = len(shape)
        if 0 < n <= len(i.shape) and i.shape[len(i.shape) - n:] == shape:  # trailing dims line up
            return [guess(m) if m and s > 1 else None for m, s in zip((i.names or ())[len(i.shape) - n:], shape)]
    if named:  # a size of 1 lines up with anything: never a guess
        first = named[0]
        assert first.names is not None
        return [guess(first.names[k]) if k < len(first.shape) and first.shape[k] == s > 1 and first.names[k] else None
                for k, s in enumerate(shape)]
    return None


def flag_scramble(call: Any, namer: Namer) -> None:
    """Set ``call.flag`` for a recorded view/reshape that relabels named dims without moving data: a
    cut where no split can, the directions joined with part of h, or (sizes that divide) a time axis
    made of bs that a recurrent layer then reads as T.

    >>> from shapeviz.tracing.records import Call
    >>> x = TensorInfo((4, 7, 8), ("bs", "T", "emb"), label="e")
    >>> c = Call(0, "", "view", "op", inputs=[x], outputs=[TensorInfo((7, 4, 8))], params="7, 4, -1")
    >>> flag_scramble(c, Namer({"T": 7, "bs": 4}, {}))
    >>> c.flag
    'scrambled_view: view(7, 4, -1) of e (bs, T, emb) relabels bs, T without moving data'
    """
    from shapeviz.tracing.dimparts import mixes_directions, read_as_time, view_names, whole_dims
    from shapeviz.tracing.oprules import RESHAPES

    if call.kind != "op" or call.type.strip("_") not in RESHAPES or not call.inputs or not call.outputs:
        return
    src, out = call.inputs[0], call.outputs[0]
    if src.names is None or src.repeat != 1:
        return
    pieces, scrambled = view_names(src.shape, evidence(src.names), out.shape, namer.size_of, pieces=True)
    if not scrambled:
        scrambled = mixes_directions(pieces)
    whole = whole_dims(src.shape, out.shape)  # a merge of whole dims (bs*nW windows) relabels nothing
    read = [p for p, n, w in zip(pieces, evidence(out.names), whole) if read_as_time(p, n) and not w]
    if not scrambled and read:  # dims that divide: the view made a time axis of bs (or heads), and a layer read it
        scrambled = [b for b in ("bs", "T") if any(b in bases_of(p) for p in read)]
    if scrambled:
        shown = ", ".join(n or "·" for n in evidence(src.names))
        what = f"{call.type}({call.params})" + (f" of {src.label}" if src.label else "")
        call.flag = f"scrambled_view: {what} ({shown}) relabels {', '.join(scrambled)} without moving data"
        out.names, out.origins, out.ambiguous = None, None, False  # what a later layer reads it as is no evidence


# ---------------------------------------------------------------- sv.name: names you give a tensor
_DECLARED: dict[int, tuple[weakref.ref, tuple[str, ...]]] = {}
DECLARED = _DECLARED
"""id(tensor) -> (weak reference, names) of the tensors named with ``sv.name`` (read-only outside this module)."""
_LOCK = threading.Lock()


def name(tensor: Any, dims: str) -> Any:
    """Name the dims of a tensor made outside the model (``sv.name``); returns the tensor itself.

    >>> import torch
    >>> Y = name(torch.zeros(2, 5, dtype=torch.long), "bs T")  # sv.name(...)
    >>> tuple(Y.shape), declared_names(Y)
    ((2, 5), ('bs', 'T'))

    Traces (``sv.trace``) and flow checks (``ops=True``) then treat those names as a declaration.
    Only a weak reference is kept: the tensor is freed as usual, and its entry with it.
    """
    import torch

    from shapeviz._errors import SpecError
    from shapeviz.core.dimensions import parse_names

    if not isinstance(tensor, torch.Tensor):
        raise SpecError(f"sv.name: expected a torch.Tensor, got {type(tensor).__name__}")
    names = parse_names(dims, "sv.name")
    if len(names) != tensor.dim():
        raise SpecError(f"sv.name({dims!r}): {len(names)} names for a tensor of {tensor.dim()} dims "
                        f"{tuple(tensor.shape)}")
    key = id(tensor)

    def forget(_: Any, _key: int = key) -> None:
        with _LOCK:
            hit = _DECLARED.get(_key)
            if hit is not None and hit[0]() is None:
                del _DECLARED[_key]

    with _LOCK:
        _DECLARED[key] = (weakref.ref(tensor, forget), names)
    return tensor


def declared_names(tensor: Any) -> tuple[str, ...] | None:
    """The names ``sv.name`` gave this very tensor (its shape unchanged), else None."""
    hit = _DECLARED.get(id(tensor))
    if hit is None or hit[0]() is not tensor or len(hit[1]) != tensor.dim():
        return None
    return hit[1]
