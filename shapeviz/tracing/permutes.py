"""Reorderings tracked by the flow (:mod:`shapeviz.tracing.flow`): one permutation index applied along two
different dims, the batch of one tensor and the steps or layers of another, is a ``batch_mismatch``.

>>> import torch, torch.nn as nn, shapeviz as sv
>>> x = sv.name(torch.zeros(3, 5, 8), "bs T emb")
>>> with sv.checking(ops=True):
...     _, h = nn.GRU(8, 6, num_layers=2, batch_first=True)(x)  # h: (layers*D=2, bs=3, h=6)
...     order = torch.randperm(3)
...     xs, hs = x.index_select(0, order), h.index_select(1, order)  # both along bs: right
>>> tuple(xs.shape), tuple(hs.shape)
((3, 5, 8), (2, 3, 6))

A permutation is an index from ``torch.randperm``, ``sort``/``argsort`` (the sorting order of the lengths), or
one derived from such an index (``order.argsort()``, the order that undoes it). Its first use along a named dim
(the batch ``bs``, the steps ``T``, the layers ``layers*D``) says what it reorders; a later use along another of
these dims, one of them the batch, raises. An ``arange`` is no permutation: it may pick along any dim.
"""

from __future__ import annotations

import weakref
from typing import Any

import torch

from shapeviz._errors import ShapeError
from shapeviz.tracing.sites import label

__all__ = ["Permutations", "tensor_index_dim"]

_MADE = frozenset({"randperm", "argsort"})
"""Ops whose (integer) result is a permutation: ``sort`` gives one as its indices."""


def tensor_index_dim(index: Any) -> tuple[int, Any] | None:
    """``x[index]`` with one 1-D integer tensor in it, after full slices only: ``(its dim, the tensor)``.

    >>> tensor_index_dim((slice(None), torch.tensor([1, 0])))[0], tensor_index_dim(torch.tensor([2, 0]))[0]
    (1, 0)
    """
    items = index if isinstance(index, tuple) else (index,)
    for d, item in enumerate(items):
        if isinstance(item, torch.Tensor):
            ok = item.dim() == 1 and not item.dtype.is_floating_point and item.dtype != torch.bool
            return (d, item) if ok else None
        if item != slice(None):
            return None
    return None


def _structural(name: str | None) -> bool:
    return name in ("bs", "T", "layers*D", "layers", "D")


class Permutations:
    """The permutation indices of one flow (held weakly): what each was first used to reorder."""

    __slots__ = ("seen",)

    def __init__(self) -> None:
        self.seen: dict[int, tuple[weakref.ref, tuple | None]] = {}  # id -> (ref, (dim, op, names) | None)

    def _first(self, t: Any) -> tuple | bool | None:
        hit = self.seen.get(id(t))
        if hit is None or hit[0]() is not t:
            return False  # not a permutation this flow made
        return hit[1]

    def made(self, base: str, args: tuple, out: Any) -> None:
        """Note the permutation ``out`` of ``randperm``/``argsort``/``sort``; one derived from a permutation with
        a known use (its inverse, ``order.argsort()``) reorders the same dim."""
        idx = out[1] if base == "sort" and isinstance(out, tuple) and len(out) == 2 else out
        if not isinstance(idx, torch.Tensor) or idx.dim() != 1:
            return
        src = self._first(args[0]) if args and isinstance(args[0], torch.Tensor) else False
        self._note(idx, (*src[:4], True) if src else None)

    def _note(self, t: torch.Tensor, first: tuple | None) -> None:
        self.seen[id(t)] = (weakref.ref(t), first)

    def check(self, op: str, base: str, args: tuple, kwargs: dict, facts: Any) -> None:
        """``x.index_select(d, index)`` or ``x[..., index]`` with flow facts ``facts`` of ``x`` (see :meth:`used`)."""
        x = args[0]
        if base == "index_select":
            dim = args[1] if len(args) > 1 else kwargs.get("dim", 0)
            hit = (int(dim) % x.dim(), args[2] if len(args) > 2 else kwargs.get("index"))
        else:
            hit = tensor_index_dim(args[1]) if len(args) > 1 else None
        if hit is None or facts is None or hit[0] >= len(facts.names):
            return
        names = list(facts.names)
        if facts.what and facts.t_axis in (0, 1) and len(names) >= 2:  # a recurrent output: (T, bs, …), (bs, T, …)
            names[facts.t_axis] = names[facts.t_axis] or "T"
            names[1 - facts.t_axis] = names[1 - facts.t_axis] or "bs"
        self.used(hit[1], names[hit[0]], op, tuple(names), x)

    def used(self, index: Any, dim_name: str | None, op: str, names: tuple, x: Any = None) -> None:
        """``index`` applied along a dim named ``dim_name`` of ``x`` (``op``: how, ``names``: ``x``'s dims)."""
        first = self._first(index)
        if first is False or not _structural(dim_name):
            return
        if first is None:
            self._note(index, (dim_name, op, names, label(x), False))
            return
        before, before_op, before_names, before_var, derived = first
        if before == dim_name or "bs" not in (before, dim_name):
            return
        shown, then = _shown(names), _shown(before_names)
        hints = []
        if before in names:  # this tensor has the dim the index reorders
            k = names.index(before)
            hints.append(f"{label(x)}.index_select({k}, index)  # along {before}, dim {k} of {shown}")
        elif dim_name in before_names and not derived:  # the earlier use is the odd one: it had this dim
            k = before_names.index(dim_name)
            hints.append(f"{before_var}.index_select({k}, index)  # the earlier {before_op}: along {dim_name}, dim "
                         f"{k} of {then}, as here")
        raise ShapeError(module=f"op: {op}", argument="index", expected=f"an index along {before}",
                         actual=f"an index along {dim_name} of {shown}", code="batch_mismatch",
                         detail=f"this permutation reorders {before} ({'made from ' if derived else ''}the one "
                                f"{before_op} used along {before} of {then}), "
                                f"but here it reorders {dim_name}: {dim_name} is moved in {before}'s order (it runs "
                                "where the sizes allow, silently wrong)",
                         hints=hints or [f"apply the index along {before}, the dim it reorders"])


def _shown(names: tuple) -> str:
    return "(" + ", ".join(n or "·" for n in names) + ")"
