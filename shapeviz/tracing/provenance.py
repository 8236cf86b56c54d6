"""Data flow during a trace: which recurrent calls' results each tensor was computed from, and which
of them reached it through a token (an integer tensor computed from them).

>>> import torch
>>> p = Provenance()
>>> h = torch.zeros(2, 8)                     # the result of recurrent call 3
>>> p.mark(h, ((3, 0),), keep=False)
>>> tok = h.argmax(-1)                        # an integer tensor chosen from it: a token
>>> p.carry((h, -1), tok)
>>> emb = torch.zeros(2, 4)[tok]              # the token embedded: the next step's input
>>> p.carry((torch.zeros(5, 4), tok), emb)
>>> p.flow_of(emb), p.tokens_of(emb)
(((3, 0),), (3,))

The :class:`~shapeviz.tracing.recorder.Tracer` marks a recurrent call's results, carries the marks
through every op your code runs (recorded or not: ``x.data``, ``x[t] = y``, in-place ops merge) and
through non-recurrent module calls, and writes them into each record (``TensorInfo.flow`` and
``TensorInfo.tokens``). Sources passes through anything computed from an operand: ``topk``,
``index_select``, ``gather``, ``view``, ``repeat``/``expand``, integer division of indices. Only
tensors are followed: a value read out with ``.item()``/``int()`` ends the trail.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator, Sequence
from typing import Any

import torch

__all__ = ["Provenance", "Sources", "Tokens", "merge_sources", "merge_tokens", "tensors_in"]

Sources = tuple[tuple[int, int], ...]
"""(call index, output position) of the recurrent calls a tensor was computed from, latest first."""
Tokens = tuple[int, ...]
"""Indices of the recurrent calls whose results reached a tensor through an integer tensor, latest first."""
_MAX_FLOW = 4
_INTEGER = frozenset({torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8})
"""Dtypes of tokens and indices (not bool: a mask chooses no token)."""


_MAX_DEPTH = 4


def tensors_in(obj: Any, depth: int = 0) -> Iterator[torch.Tensor]:
    """Every tensor in nested tuples, lists and dicts (a PackedSequence's two), each one: ``cat`` of
    a list of step results carries the flow of all of them.

    >>> import torch
    >>> len(list(tensors_in(([torch.zeros(2), torch.zeros(2)], {"h": torch.zeros(1)}, 3))))
    3
    """
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (tuple, list)) and depth < _MAX_DEPTH:  # a PackedSequence is a tuple too
        for o in obj:
            yield from tensors_in(o, depth + 1)
    elif isinstance(obj, dict) and depth < _MAX_DEPTH:
        for o in obj.values():
            yield from tensors_in(o, depth + 1)


def merge_sources(flows: Sequence[Sources]) -> Sources:
    """One flow from several (an op's operands): latest call first, at most four entries.

    >>> merge_sources([((0, 1),), ((3, 0), (0, 1))])
    ((3, 0), (0, 1))
    """
    return tuple(sorted({f for flow in flows for f in flow}, reverse=True)[:_MAX_FLOW])


def merge_tokens(tokens: Sequence[Tokens]) -> Tokens:
    """One token set from several: latest call first, at most four.

    >>> merge_tokens([(2,), (5, 2)])
    (5, 2)
    """
    return tuple(sorted({c for ts in tokens for c in ts}, reverse=True)[:_MAX_FLOW])


class Provenance:
    """Weak maps from tensors to their flow and tokens (never keeps a tensor alive)."""

    def __init__(self) -> None:
        self.origins: dict[int, tuple[weakref.ref, Sources]] = {}
        self.token_of: dict[int, tuple[weakref.ref, Tokens]] = {}
        self.in_flow: dict[int, tuple[Sources, Tokens]] = {}  # an open non-recurrent call -> its inputs' marks

    def flow_of(self, t: Any) -> Sources:
        hit = self.origins.get(id(t))
        return hit[1] if hit is not None and hit[0]() is t else ()

    def tokens_of(self, t: Any) -> Tokens:
        if not self.token_of:
            return ()
        hit = self.token_of.get(id(t))
        return hit[1] if hit is not None and hit[0]() is t else ()

    def mark(self, t: Any, flow: Sources, *, keep: bool = True, tokens: Tokens = ()) -> None:
        """Record that ``t`` was computed from ``flow`` (``keep``: a tensor marked before stays), through a
        token from the calls ``tokens``."""
        if not flow or (keep and self.flow_of(t)):
            return
        try:
            ref = weakref.ref(t)
        except TypeError:  # not weak-referenceable: no flow kept
            return
        self.origins[id(t)] = (ref, flow)
        if tokens:
            self.token_of[id(t)] = (ref, tokens)
        elif self.token_of:
            self.token_of.pop(id(t), None)

    def carry(self, args: Any, out: Any) -> None:
        """An op's results are computed from its operands: they inherit the operands' flow. A result that
        is one of the operands (an in-place op, ``x[t] = y``) takes the flows of all of them."""
        operands = list(tensors_in(args))
        flow = merge_sources([self.flow_of(t) for t in operands])
        if flow:
            tokens = merge_tokens([self.tokens_of(t) for t in operands])
            self._to(out, flow, tokens, operands)

    def open_call(self, index: int, infos: Sequence[Any]) -> None:
        """A non-recurrent module call starts: its results will carry its inputs' marks."""
        self.in_flow[index] = (merge_sources([i.flow for i in infos]),
                               merge_tokens([getattr(i, "tokens", None) or () for i in infos]))

    def close_call(self, index: int, out: Any) -> None:
        flow, tokens = self.in_flow.pop(index, ((), ()))
        if flow:
            self._to(out, flow, tokens, ())

    def _to(self, out: Any, flow: Sources, tokens: Tokens, operands: Sequence[Any]) -> None:
        chosen = merge_tokens([tokens, tuple(c for c, _ in flow)])  # an integer result is a token of them all
        for t in tensors_in(out):
            tk = chosen if isinstance(t, torch.Tensor) and t.dtype in _INTEGER else tokens
            self.mark(t, flow, keep=not any(t is o for o in operands), tokens=tk)

    def clear_flows(self) -> None:
        self.origins.clear()
        self.token_of.clear()
        self.in_flow.clear()
