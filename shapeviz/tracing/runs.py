"""A trace's calls with repeated steps stored once: the body of a loop is kept for one step, with a count.

>>> import torch, torch.nn as nn
>>> from shapeviz.tracing.session import trace
>>> class Loop(nn.Module):
...     def __init__(self):
...         super().__init__()
...         self.cell = nn.GRUCell(4, 8)
...     def forward(self, x):
...         h = torch.zeros(x.shape[1], 8)
...         for x_t in x:
...             h = self.cell(x_t, h)
...         return h
>>> t = trace(Loop(), torch.zeros(100, 2, 4))
>>> len(t.calls), t.calls.runs()       # 101 calls; the cell's calls 2 to 100 are one step stored once
(101, [(2, 1, 99)])
>>> t.calls[57].index, t.calls[57].inputs[1].produced_by   # a step made on demand, with its own links
(57, 56)

:class:`Calls` is a read-only sequence of :class:`~shapeviz.tracing.records.Call`. A *run* stores the calls of one
step (``start`` to ``start + length - 1``) and how many steps there are (``count``, the first included). Step ``k``
is the stored step with ``k·length`` added to every call index in it (its own ``index``, ``parent``, each record's
``produced_by`` and the calls in ``flow`` and ``tokens``) that is at least ``start - length``: references into the
step before move along with the steps (``h`` of step ``k`` came from step ``k - 1``), references to calls before
that stay (the weights, the input sequence, the enclosing module call). Runs are found exactly: a step is only
stored as a repeat when every field of every call of it is what the run would make (:func:`compress`), so the
calls read back are equal to the ones recorded. Steps other than the stored one are made when they are read (a
new object each time: change the stored calls, not those).
"""

from __future__ import annotations

import bisect
import copy
from collections.abc import Iterable, Iterator, Sequence
from operator import attrgetter
from typing import overload

from shapeviz.tracing.records import Call, TensorInfo

__all__ = ["MAX_STEP", "Calls", "compress"]

MAX_STEP = 512
"""Most calls of one step of a run (a loop body longer than this is stored call by call)."""
_CANDIDATES = 8
"""Most step lengths tried at one position (the distances to the next calls that look the same)."""


class _Run:
    """The calls of one step and the number of steps (see the module)."""

    __slots__ = ("calls", "count", "start", "theta")

    def __init__(self, calls: tuple[Call, ...], count: int, start: int) -> None:
        self.calls = calls
        self.count = count
        self.start = start
        self.theta = start - len(calls)  # references at or after it move with the steps

    def call(self, k: int, j: int) -> Call:
        """Call ``j`` of step ``k``."""
        c = self.calls[j]
        return c if k == 0 else _shifted(c, k * len(self.calls), self.theta)


class Calls(Sequence[Call]):
    """The calls of a trace, in order; repeated steps stored once (see the module).

    >>> from shapeviz.tracing.records import CallKind
    >>> calls = [Call(i, "cell", "GRUCell", CallKind.MODULE) for i in range(5)]
    >>> Calls(calls) == calls, Calls(calls).runs(), len(Calls(calls).items())
    (True, [(0, 1, 5)], 1)
    """

    __slots__ = ("_items", "_len", "_starts")

    def __init__(self, calls: Iterable[Call] = ()) -> None:
        self._set(compress(list(calls)))

    @classmethod
    def stored(cls, items: list[Call | tuple[tuple[Call, ...], int]]) -> Calls:
        """Calls from stored items: single calls, and (the calls of one step, count) for runs (as
        :meth:`items` gives them, and as a trace file stores them). Each run must start at the call index its
        place gives it."""
        out = cls.__new__(cls)
        built: list[Call | _Run] = []
        at = 0
        for item in items:
            if isinstance(item, tuple):
                run = _Run(tuple(item[0]), int(item[1]), at)
                built.append(run)
                at += len(run.calls) * run.count
            else:
                built.append(item)
                at += 1
        out._set(built)
        return out

    def _set(self, items: list[Call | _Run]) -> None:
        self._items = items
        starts = []
        at = 0
        for item in items:
            starts.append(at)
            at += len(item.calls) * item.count if type(item) is _Run else 1
        self._starts = starts
        self._len = at

    # ------------------------------------------------------------ the sequence
    def __len__(self) -> int:
        return self._len

    @overload
    def __getitem__(self, i: int) -> Call: ...

    @overload
    def __getitem__(self, i: slice) -> list[Call]: ...

    def __getitem__(self, i: int | slice) -> Call | list[Call]:
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(self._len))]
        if i < 0:
            i += self._len
        if not 0 <= i < self._len:
            raise IndexError("trace call index out of range")
        n = bisect.bisect_right(self._starts, i) - 1
        item = self._items[n]
        if type(item) is not _Run:
            return item  # type: ignore[return-value]
        k, j = divmod(i - self._starts[n], len(item.calls))
        return item.call(k, j)

    def __iter__(self) -> Iterator[Call]:
        for item in self._items:
            if type(item) is _Run:
                for k in range(item.count):
                    for j in range(len(item.calls)):
                        yield item.call(k, j)
            else:
                yield item  # type: ignore[misc]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, (Calls, list, tuple)):
            return NotImplemented
        if len(self) != len(other):
            return False
        if isinstance(other, Calls) and self.runs() == other.runs():  # the same layout: the stored calls tell
            return all(_same(a, b) for a, b in zip(self._items, other._items))
        return all(a == b for a, b in zip(self, other))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Calls({len(self)} calls, {len(self.runs())} runs of repeated steps)"

    # ------------------------------------------------------------ the runs
    def runs(self) -> list[tuple[int, int, int]]:
        """``(start, length, count)`` of each run of repeated steps: the calls from ``start`` on are ``count`` steps
        of ``length`` calls each."""
        return [(s, len(item.calls), item.count) for s, item in zip(self._starts, self._items) if type(item) is _Run]

    def items(self) -> list[Call | tuple[tuple[Call, ...], int]]:
        """What is stored: each single call, and (the calls of one step, count) for each run."""
        return [(item.calls, item.count) if type(item) is _Run else item for item in self._items]  # type: ignore


def _same(a: Call | _Run, b: Call | _Run) -> bool:
    if type(a) is _Run and type(b) is _Run:
        return a.count == b.count and a.calls == b.calls
    return a == b


# ---------------------------------------------------------------- steps made on demand
def _moves(v: int | None, theta: int) -> bool:
    return v is not None and v >= theta


def _shifted_info(i: TensorInfo, d: int, theta: int) -> TensorInfo:
    pb, flow, tokens = i.produced_by, i.flow, i.tokens
    if not (_moves(pb, theta) or any(c >= theta for c, _ in flow) or (tokens and any(c >= theta for c in tokens))):
        return i  # nothing in it moves: the stored record itself
    new = copy.copy(i)
    if pb is not None and pb >= theta:
        new.produced_by = pb + d
    if flow:
        new.flow = tuple((c + d if c >= theta else c, p) for c, p in flow)
    if tokens:
        new.tokens = tuple(c + d if c >= theta else c for c in tokens)
    return new


def _shifted(c: Call, d: int, theta: int) -> Call:
    """Call ``c`` of the stored step as it is ``d`` calls later."""
    if type(c) is Call:
        parent = c.parent
        return Call(c.index + d, c.path, c.type, c.kind, [_shifted_info(i, d, theta) for i in c.inputs],
                    [_shifted_info(o, d, theta) for o in c.outputs], c.conventions, c.depth,
                    parent + d if parent is not None and parent >= theta else parent, c.source, c.code, c.params,
                    c.error, c.site, c.flag)
    new = copy.copy(c)  # a subclass of Call: copied as it is, then moved
    new.index = c.index + d
    if _moves(c.parent, theta):
        new.parent = c.parent + d  # type: ignore[operator]
    new.inputs = [_shifted_info(i, d, theta) for i in c.inputs]
    new.outputs = [_shifted_info(o, d, theta) for o in c.outputs]
    return new


# ---------------------------------------------------------------- finding runs
_LOOK = attrgetter("__class__", "type", "path", "source", "depth")
"""What a call looks like at a glance: calls that differ in it are never steps of one run."""
_CALL_FIELDS = attrgetter("kind", "conventions", "code", "params", "error", "site", "flag")
"""A call's fields besides those of :data:`_LOOK` (compared first) and its references."""
_INFO_FIELDS = attrgetter("__class__", "shape", "names", "role", "key", "label", "dtype", "device", "ambiguous",
                          "packed", "repeat", "batch_sizes", "origins", "step", "opaque")
"""Every field of a record but its references to calls (``produced_by``, ``flow``, ``tokens``)."""


def _content(c: Call) -> tuple[tuple, list[int | None]]:
    """Every field of a call and of its records but what :data:`_LOOK` reads, with the references to calls apart:
    (the fields, the references: the call's index and parent, then each record's ``produced_by`` and the calls in
    its ``flow`` and ``tokens``). The fields hold how many references each record has, so two calls with equal
    fields have references that pair up one to one."""
    fields: list = [_CALL_FIELDS(c), len(c.inputs)]
    refs: list[int | None] = [c.index, c.parent]
    for infos in (c.inputs, c.outputs):
        for i in infos:
            fields.append(_INFO_FIELDS(i))
            refs.append(i.produced_by)
            flow, tokens = i.flow, i.tokens
            if flow or tokens:
                fields.append((tuple([p for _, p in flow]), None if tokens is None else len(tokens)))
                refs += [f for f, _ in flow]
                if tokens:
                    refs += tokens
            else:
                fields.append(tokens)  # None and () differ
    return tuple(fields), refs


def compress(calls: list[Call]) -> list[Call | _Run]:
    """The calls as single calls and runs of repeated steps (see the module): at each position the step length
    that covers the most calls, among the distances to the next few calls that look the same."""
    n = len(calls)
    if n < 2:
        return list(calls)
    ids: dict[tuple, int] = {}
    sig = [ids.setdefault(look, len(ids)) for look in map(_LOOK, calls)]
    if len(ids) == n:
        return list(calls)  # no call looks like another: nothing repeats
    nxt = [0] * n  # the next position that looks the same (n: none)
    last: dict[int, int] = {}
    for p in range(n - 1, -1, -1):
        nxt[p] = last.get(sig[p], n)
        last[sig[p]] = p
    content: list[tuple | None] = [None] * n  # _content of each call, made when first compared
    out: list[Call | _Run] = []
    i = 0
    while i < n:
        best_len, best_count = 1, 1
        j, tried = nxt[i], 0
        while j < n and j - i <= MAX_STEP and tried < _CANDIDATES:
            length = j - i
            tried += 1
            count = _repeats(calls, sig, content, i, length)
            if count > 1 and length * count > best_len * best_count:
                best_len, best_count = length, count
            j = nxt[j]
        if best_count > 1:
            out.append(_Run(tuple(calls[i:i + best_len]), best_count, i))
            i += best_len * best_count
        else:
            out.append(calls[i])
            i += 1
    return out


def _repeats(calls: list[Call], sig: list[int], content: list[tuple | None], i: int, length: int) -> int:
    """How many steps of ``length`` calls from ``i`` on repeat the first exactly: equal fields (:func:`_content`),
    and each reference of a later call that of the call one step before, moved ``length`` calls on where it is at
    or after ``i - length`` (see the module)."""
    n = len(calls)
    block = sig[i:i + length]
    theta = i - length
    count = 1
    while True:
        a = i + count * length
        if a + length > n or sig[a:a + length] != block:
            return count
        for p in range(a, a + length):
            q = p - length
            later, earlier = content[p], content[q]
            if later is None:
                later = content[p] = _content(calls[p])
            if earlier is None:
                earlier = content[q] = _content(calls[q])
            if later[0] != earlier[0]:
                return count
            for x, y in zip(later[1], earlier[1]):
                if y is not None and y >= theta:
                    y += length
                if x != y:
                    return count
        count += 1


def expand(items: Sequence[Call | _Run]) -> list[Call]:
    """Every call of stored items, in order (tests and checks)."""
    out: list[Call] = []
    for item in items:
        if type(item) is _Run:
            out += [item.call(k, j) for k in range(item.count) for j in range(len(item.calls))]
        else:
            out.append(item)  # type: ignore[arg-type]
    return out
