"""A function's annotations, compiled once: the parsed tree and its generated checkers.

>>> import torch
>>> from jaxtyping import Float
>>> from torch import Tensor
>>> sig = compile_signature(lambda x, h: h, {"x": Float[Tensor, "T bs emb"], "h": Float[Tensor, "bs h"]})
>>> sig.names, sig.slots["bs"]
(('x', 'h'), 1)
>>> env, pending = [None] * len(sig.slots), []
>>> sig.args_check((torch.zeros(5, 3, 10), torch.zeros(3, 20)), env, pending), env   # T, bs, emb, h
(True, [5, 3, 10, 20])

Non-array annotations (``n: int``, ``mode: Literal['tanh', 'relu']``) are checked as beartype
checks them (:mod:`~shapeviz.annotations.pytypes`); ``unchecked`` lists the hints beartype cannot
check, each with the reason.

The pieces, one job each: :mod:`~shapeviz.annotations.parser` (annotation -> tree),
:mod:`~shapeviz.annotations.codegen` (tree -> generated yes/no checker),
:mod:`~shapeviz.annotations.solver` (symbolic dims), :mod:`~shapeviz.annotations.explainer`
(the slow path: a rejected call -> :class:`~shapeviz.ShapeError`).
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from shapeviz._errors import SpecError
from shapeviz.annotations.codegen import NO_DEFAULT, ArgsChecker, Checker, has_probe, make_args_checker, make_checker
from shapeviz.annotations.parser import AnnotationNode, NodeKind, Slots, holds_array, parse_annotation

__all__ = ["Signature", "compile_signature"]

_EMPTY = inspect.Parameter.empty


@dataclass
class Signature:
    """A function's annotations compiled once: which parameters to check and how."""

    fn: Callable[..., Any]
    names: tuple[str, ...]  # parameter names, in order (*args and **kwargs included)
    nodes: tuple[AnnotationNode | None, ...]
    result: AnnotationNode | None
    slots: dict[str, int]
    sig: inspect.Signature
    defaults_tail: tuple[Any, ...]  # defaults of the trailing parameters
    simple: bool  # only positional-or-keyword parameters
    args_check: ArgsChecker | None = None
    result_check: Checker | None = None
    traced: tuple[ArgsChecker | None, Checker | None] | None = None  # the checks run under dynamo, where
    # they differ (hints only a beartype probe checks left out: dynamo cannot trace its random sampling)
    is_method: bool = False
    defaults: tuple[Any, ...] = ()  # each parameter's default (NO_DEFAULT: none)
    unchecked: tuple[str, ...] = ()  # hints left unchecked: where, and why

    def bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...] | None:
        """Argument values in parameter order, or None if the call does not bind."""
        n = len(self.names)
        if not kwargs and self.simple:
            k = len(args)
            if k == n:
                return args
            if n - len(self.defaults_tail) <= k < n:
                return args + self.defaults_tail[k - n:]
            return None
        try:
            ba = self.sig.bind(*args, **kwargs)
        except TypeError:
            return None
        ba.apply_defaults()
        return tuple(ba.arguments.get(name) for name in self.names)


def compile_signature(fn: Callable[..., Any], hints: dict[str, Any] | None = None) -> Signature:
    """Compile ``fn``'s annotations (``hints`` overrides ``typing.get_type_hints``)."""
    where_fn = getattr(fn, "__qualname__", repr(fn))
    if hints is None:
        try:
            hints = typing.get_type_hints(fn, include_extras=True)
        except NameError:
            raise  # a forward reference not defined yet: the caller may retry on the first call
        except Exception as e:
            raise SpecError(f"sv.check: cannot read the annotations of {where_fn}: {e}") from e
    sig = inspect.signature(fn)
    slots = Slots()
    names, nodes, defaults = [], [], []
    simple = True
    for p in sig.parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD, p.KEYWORD_ONLY, p.POSITIONAL_ONLY):
            simple = False
        tp = hints.get(p.name)
        where = f"{where_fn}, parameter `{p.name}`"
        if p.kind == p.VAR_KEYWORD and tp is not None and holds_array(tp):
            raise SpecError(f"{where}: sv.check does not check array annotations on **kwargs")
        node = parse_annotation(tp, slots, where) if tp is not None else None
        if p.kind == p.VAR_POSITIONAL and node is not None:
            node = AnnotationNode(NodeKind.VARTUPLE, children=(node,))
        elif p.kind == p.VAR_KEYWORD and node is not None:
            node = AnnotationNode(NodeKind.VARDICT, children=(node,))
        names.append(p.name)
        nodes.append(node)
        defaults.append(p.default if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) else NO_DEFAULT)
    result = None
    if "return" in hints and (inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn)):
        slots.unchecked.append(f"{where_fn}, return value: {hints['return']!r} (an async function returns a "
                               "coroutine or an async generator; what it yields or returns is not checked)")
    elif "return" in hints:
        result = parse_annotation(hints["return"], slots, f"{where_fn}, return value", is_return=True)
    tail: list[Any] = []
    for p in reversed(list(sig.parameters.values())):
        if p.default is _EMPTY:
            break
        tail.insert(0, p.default)
    out = Signature(fn, tuple(names), tuple(nodes), result, dict(slots.index), sig, tuple(tail),
                    simple, is_method=bool(names) and names[0] == "self", defaults=tuple(defaults),
                    unchecked=tuple(slots.unchecked))
    if any(n is not None for n in nodes):
        out.args_check = make_args_checker(nodes, defaults)
    out.result_check = make_checker(result) if result is not None else None
    if any(has_probe(n) for n in (*nodes, result)):
        out.traced = (make_args_checker(nodes, defaults, probes=False) if out.args_check is not None else None,
                      make_checker(result, probes=False) if result is not None else None)
    return out
