"""The last step of a bidirectional or padded output read as a summary: the flow's warnings, held back until a
use decides (:mod:`shapeviz.tracing.flow`).

>>> import torch, torch.nn as nn, shapeviz as sv
>>> gru = nn.GRU(3, 4, bidirectional=True, batch_first=True)
>>> with sv.checking(ops=True):  # no warning: the step is cut to its forward half
...     out, h_n = gru(torch.zeros(2, 5, 3))  # out: (bs=2, T=5, D*h=8)
...     last = out[:, -1][:, :4]  # (bs, h): the forward direction's final state, h_n[-2]
>>> tuple(last.shape)
(2, 4)

``output[:, -1]`` of a bidirectional layer warns ``bidirectional_last`` unless its forward half alone is used
(``[..., :h]`` or ``narrow(-1, 0, h)``, at once or on the step read) or step 0 with its backward half is read
too (``cat((out[:, 0], out[:, -1]), -1)``: both ends, both final states); ``output[-1]`` of a padded batch warns
``padded_last``. A read inside a model's call (or of a positive index) is said when the call (or the block)
ends, unless a loop has read every step by then; ``output[-1]`` in your own code is said at the next op that
does not cut it.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

import torch

from shapeviz.tracing.flowchecks import site, warn
from shapeviz.tracing.indexing import forward_half, index_items, index_plan, op_order

__all__ = ["LastReads", "forward_cut", "moved", "narrow_plan", "one_index", "split_dirs"]

_BI_FIX = ("torch.cat((h_n[-2], h_n[-1]), dim=1)  # both directions' final states, or the backward half at step 0: "
           "output[0, :, h:] / output[:, 0, h:]")
_PAD_FIX = "h_n[-1]  # each sequence's real last step, or output[lengths - 1, torch.arange(bs)]"


def narrow_plan(args: tuple, kwargs: dict) -> tuple[int, int, int] | None:
    """``x.narrow(dim, start, length)``'s ``(dim, start, length)``, dim and start counted from the front.

    >>> import torch
    >>> narrow_plan((torch.zeros(2, 5, 8), -1, 0, 4), {})  # (bs, T, D*h=8): the forward half
    (2, 0, 4)
    """
    try:
        x = args[0]
        dim, start, length = (*args[1:4], *(kwargs[k] for k in ("dim", "start", "length")[len(args) - 1:]))
        dim = int(dim) % x.dim()
        return dim, int(start) % x.shape[dim], int(length)
    except (IndexError, KeyError, TypeError, ValueError, ZeroDivisionError, AttributeError):
        return None


def forward_cut(base: str, args: tuple, kwargs: dict, x: Any) -> bool:
    """Does ``x[index]`` / ``x.narrow(-1, start, n)`` (``base``) keep the forward half of the features of ``x``,
    a bidirectional output ``(…, D*h)``, alone?

    >>> import torch
    >>> x = torch.zeros(2, 5, 8)
    >>> forward_cut("getitem", (x, (Ellipsis, slice(None, 4))), {}, x), forward_cut("narrow", (x, -1, 4, 4), {}, x)
    (True, False)
    """
    if base == "getitem" and len(args) > 1:
        return forward_half(tuple(x.shape), args[1])
    plan = narrow_plan(args, kwargs) if base == "narrow" else None
    return plan is not None and plan[0] == x.dim() - 1 and plan[2] > 0 and plan[1] + plan[2] <= x.shape[-1] // 2


def _whole(item: Any, size: int) -> bool:
    return isinstance(item, slice) and item.indices(size) == (0, size, 1)


def _first_of(item: Any, size: int) -> bool:
    """Does the item keep index 0 alone (the forward direction of a ``D`` dim)?"""
    if isinstance(item, int):
        return item % size == 0
    return isinstance(item, slice) and list(range(*item.indices(size))) == [0]


def _read(shape: tuple[int, ...], index: Any, dirs: bool) -> tuple[bool, bool]:
    """``x[index]`` of a bidirectional output, its features ``(…, D*h)`` or split ``(…, D, h)`` (``dirs``):
    (is it the forward direction alone, does it keep the directions whole)?

    >>> _read((5, 3, 8), (-1, slice(None), slice(None, 4)), False), _read((5, 3, 2, 4), -1, True)
    ((True, False), (False, True))
    """
    items = index_items(len(shape), index)
    if items is None:
        return True, False  # no plan: no claim
    if dirs:
        return _first_of(items[-2], shape[-2]), _whole(items[-2], shape[-2])
    return forward_half(shape, index), _whole(items[-1], shape[-1])


def one_index(args: tuple, kwargs: dict) -> tuple[int, int] | None:
    """``x.index_select(dim, index)`` of one index held on the CPU (read without a device sync): ``(dim, i)``.

    >>> import torch
    >>> x = torch.zeros(2, 5, 8)
    >>> one_index((x, 1, torch.tensor([4])), {}), one_index((x, 1, torch.arange(5)), {})
    ((1, 4), None)
    """
    try:
        x, dim = args[0], args[1] if len(args) > 1 else kwargs["dim"]
        index = args[2] if len(args) > 2 else kwargs["index"]
        if index.numel() != 1 or index.device.type != "cpu":
            return None
        return int(dim) % x.dim(), int(index.reshape(())) % x.shape[int(dim)]
    except (IndexError, KeyError, TypeError, ValueError, ZeroDivisionError, AttributeError, RuntimeError):
        return None


def split_dirs(src: Any, x: Any, out: Any, facts_of: Callable[[Any], Any]) -> None:
    """A bidirectional output's features split into its directions, ``(…, D*h)`` -> ``(…, D, h)`` (``src``: the
    output's facts; ``facts_of``: the facts of ``out``, made where it has none)."""
    if src.what == "bi_output" and out.dim() == x.dim() + 1 and out.shape[:-2] == x.shape[:-1] and out.shape[-2] == 2:
        facts = facts_of(out)
        facts.what, facts.t_axis, facts.mate = "bi_dirs", src.t_axis, src.mate


def moved(src: Any, base: str, args: tuple, kwargs: dict, x: Any, out: Any, facts_of: Callable[[Any], Any]) -> None:
    """A recurrent output transposed (``out.transpose(0, 1)``), or a bidirectional one cut to its forward half at
    every step (``out[..., :h]``, ``out.chunk(2, -1)[0]``): its facts follow, so a read of its last step is judged
    (and its forward half is ``h_n[-2]``) as on the output itself."""
    if base in ("transpose", "swapaxes", "swapdims", "permute") and out.dim() == x.dim():
        order = op_order(base, args, kwargs, x.dim())
        what, t_axis = src.what, order.index(src.t_axis) if order is not None and src.t_axis >= 0 else -1
    elif src.what == "bi_output" and out.dim() == x.dim() and out.shape[:-1] == x.shape[:-1] and \
            out.shape[-1] <= x.shape[-1] // 2 and forward_cut(base, args, kwargs, x):
        what, t_axis = "bi_fwd", src.t_axis
    else:
        return
    if t_axis >= 0:
        facts = facts_of(out)
        facts.what, facts.t_axis, facts.mate = what, t_axis, src.mate


class LastReads:
    """The held-back last-step warnings of one flow: ``pending`` maps a recurrent output's facts (by id) to the
    warning its last-step read would say; ``eager`` holds the keys said at the next op that does not cut them."""

    __slots__ = ("armed", "eager", "pending", "whole")

    def __init__(self) -> None:
        self.pending: dict[int, tuple] = {}  # id(facts) -> (facts, code, what, fix, site): a warning said later
        self.eager: set[int] = set()
        self.whole: set[int] = set()  # keys held for a last step read with its features whole (out[:, 0] drops)
        self.armed: dict[int, tuple] = {}  # id(piece) -> (weak ref, pending entry): a backward piece, said if used

    def flush(self, eager_only: bool = False) -> None:
        """Say the warnings held back (all, or only the ``eager`` ones)."""
        keys = list(self.eager) if eager_only else list(self.pending)
        self.eager = set()
        for key in keys:
            held = self.pending.pop(key, None)
            if held is not None:
                warn(*held[1:])
        self.whole &= self.pending.keys()

    def picked(self, src: Any, x: Any, dim: int, i: int, forward: bool, whole_features: bool, in_model: bool,
               how: str = "") -> int:
        """Step ``i`` of dim ``dim`` read from ``x``, an output with facts ``src`` (``forward``: its forward
        half alone; ``whole_features``: its feature dim kept whole): returns the key of the warning the read
        holds (0: none), which the step's forward-half cut drops (:meth:`cut`); ``how``: the op that read it, where
        it is no index."""
        size = x.shape[dim]
        if dim == src.t_axis and i % size == size - 1 and (src.what == "bi_fwd" or (
                forward and src.what in ("bi_output", "bi_dirs"))):
            self.forward_final(src)  # the forward direction's final state: h_n[-2]
        if dim != src.t_axis or size <= 1 or src.what == "bi_fwd":  # all of a one-step output is both ends
            return 0
        src.taken.add(i % size)
        if len(src.taken) == size:  # every step read: a loop over the steps, no summary
            self.pending.pop(id(src), None)
            self.eager.discard(id(src))
            return 0
        bi = src.what in ("bi_output", "bi_dirs")
        if bi and i % size == 0 and not forward:  # out[:, 0] keeps the backward final state: both ends are read
            src.back0 = True
            if id(src) in self.whole:  # the last step read whole: both ends
                self.pending.pop(id(src), None)
                self.eager.discard(id(src))
        if i % size != size - 1 or (bi and src.back0 and whole_features):
            return 0
        pick = f"output.{how}({dim}, …), the last step," if how else "output[-1]" if dim == 0 else "output[:, -1]"
        if bi and not forward:
            said = ("bidirectional_last", f"{pick} of a bidirectional layer: its backward half has seen only the "
                    "last step", _BI_FIX)
        elif src.what == "padded":
            said = ("padded_last", f"{pick} of a padded batch is padding for every sequence shorter than the "
                    "longest", _PAD_FIX)
        else:
            return 0
        cuttable = said[0] == "bidirectional_last" and whole_features
        if not in_model and i < 0 and not cuttable:  # output[-1] in your own code: said at once
            warn(*said)
            return 0
        self.pending.setdefault(id(src), (src, *said, site()))
        if cuttable:
            self.whole.add(id(src))
        if not in_model and i < 0:  # output[:, -1] in your own code: said at the next op that does not cut it
            self.eager.add(id(src))
        return id(src) if cuttable else 0

    def index(self, src: Any, x: Any, index: Any, in_model: bool) -> int:
        """``x[index]`` of a recurrent output with facts ``src`` (see :meth:`picked`)."""
        plan = index_plan(x.dim(), index)
        if plan is None:
            return 0
        held = 0
        for dim, i in plan[1]:
            if src.what == "bi_h_n" and dim == 0:
                n = x.shape[0]
                src.taken.add(i % n)
                if i % n == n - 2:  # the forward half read too (h_n[-1] + h_n[-2]): both directions, no warning
                    self.pending.pop(id(src), None)
                elif i == -1 and (n - 2) not in src.taken and -2 not in src.taken:  # said when the call or block
                    # ends (-2: read as the output's forward half of the last step); h_n[1] / h_n[3], counted from
                    # the front, picks the backward direction by its index: on purpose (Bahdanau's s_0 = tanh(W h←_1))
                    self.pending.setdefault(id(src), (src, "bidirectional_h_n", "h_n[-1] of a bidirectional layer "
                                                      "is the last layer's backward direction only; the whole final "
                                                      "state is both directions", "torch.cat((h_n[-2], h_n[-1]), "
                                                      "dim=1)  # (bs, 2*h): forward and backward", site()))
            else:
                held = self.picked(src, x, dim, i, *_read(tuple(x.shape), index, src.what == "bi_dirs"),
                                   in_model) or held
        return held

    def cut(self, held: tuple[int, bool], base: str, x: Any, args: tuple, kwargs: dict, out: Any
            ) -> tuple[int, bool] | None:
        """A step read whole (holding warning ``held``: its key, and whether its directions are split ``(…, D, h)``)
        cut to its forward half: the read was right. Split into its directions (``view(bs, 2, h)``), the step still
        holds it: returns the hold of ``out``."""
        key, dirs = held
        if base == "getitem" and len(args) > 1:
            right = _read(tuple(x.shape), args[1], dirs)[0]
        elif base == "narrow":
            right = narrow_plan(args, kwargs) == (x.dim() - 2, 0, 1) if dirs else forward_cut(base, args, kwargs, x)
        else:  # a view or unflatten: (…, D*h) -> (…, 2, h)
            split = isinstance(out, torch.Tensor) and not dirs and out.dim() == x.dim() + 1 and \
                tuple(out.shape[:-2]) == tuple(x.shape[:-1]) and out.shape[-2] == 2
            return (key, True) if split else None
        if right:
            entry = self.pending.pop(key, None)
            self.eager.discard(key)
            if entry is not None:
                self.forward_final(entry[0])
        return None

    def forward_final(self, src: Any) -> None:
        """The forward half of a bidirectional output's last step was read: its ``h_n[-2]``, so an ``h_n[-1]``
        beside it is both directions' final states (no ``bidirectional_h_n``)."""
        mate = src.mate
        if mate is not None:
            mate.taken.add(-2)
            if self.pending.get(id(mate), (None, ""))[1] == "bidirectional_h_n":
                del self.pending[id(mate)]

    def pieces(self, held: tuple[int, bool], args: tuple, kwargs: dict, out: Any) -> None:
        """A step read whole split along its features (``chunk(2, -1)``, ``split(h, -1)``): the forward pieces are
        right; the warning is said only if a piece with backward features is used (:meth:`used`)."""
        key, dirs = held
        x, entry = args[0], self.pending.get(key)
        dim = args[2] if len(args) > 2 else kwargs.get("dim", 0)
        if entry is None or dirs or not isinstance(dim, int) or dim % x.dim() != x.dim() - 1:
            return
        start, half = 0, x.shape[-1] // 2
        backward = []
        for piece in out:
            if not isinstance(piece, torch.Tensor):
                return
            if start + piece.shape[-1] > half:
                backward.append(piece)
            start += piece.shape[-1]
        self.pending.pop(key, None)
        self.eager.discard(key)
        for piece in backward:
            self.armed[id(piece)] = (weakref.ref(piece), entry)

    def used(self, args: tuple) -> None:
        """An op given a backward piece of a step read whole: its warning is said now."""
        for a in (*args, *(args[0] if args and isinstance(args[0], (list, tuple)) else ())):
            hit = self.armed.get(id(a)) if isinstance(a, torch.Tensor) else None
            if hit is not None and hit[0]() is a:
                self.armed = {k: v for k, v in self.armed.items() if v[1] is not hit[1] and v[0]() is not None}
                warn(*hit[1][1:])
                return
