"""The check of a call of a layer declared with ``sv.recurrent``: the one rule, and its memo as a per-module hot path.

>>> import torch, torch.nn as nn, shapeviz as sv
>>> class Scratch(nn.Module):
...     def __init__(self):
...         super().__init__()
...         self.n_in, self.n_h, self.cell = 4, 6, nn.RNNCell(4, 6)
...     def forward(self, x, h):
...         return x, h
>>> _ = sv.recurrent(Scratch, input="T bs emb", state="bs h", sizes={"emb": "n_in", "h": "n_h"})
>>> check_declared(Scratch(), torch.randn(5, 2, 4), torch.zeros(2, 6), None)  # (T=5, bs=2, emb=4): fits

A call fits by :func:`shapeviz.core.callfit.call_fits`, the rule every check reads, over the conventions the
declaration compiles to. A call that repeats the last one that fit (same input shape, declared sizes and
module settings) is accepted by a closure of plain compares.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from operator import itemgetter
from typing import Any

import torch.nn as nn

from shapeviz.core.callfit import call_fits, call_rule
from shapeviz.core.declared import declaration_of
from shapeviz.core.dimensions import DECLARED, live_declared
from shapeviz.core.model import Conventions, conventions, module_weight
from shapeviz.runtime.hotpath import declared_hot, state_form
from shapeviz.runtime.switches import env_disabled, is_compiling

__all__ = ["check_declared"]


def _weight_path(module: nn.Module, conv: Conventions) -> tuple[str, ...] | None:
    """Where the tensor standing for the module's dtype and device sits: ``("cell", "to_z", "weight")``."""
    w = module_weight(module, conv.layout)
    if w is None:
        return None
    return next((tuple(n.split(".")) for n, p in module.named_parameters() if p is w), None)


class _Plan:
    """One declared module's hot path (a closure over the last call that fit) and the conventions it was made for."""

    __slots__ = ("conv", "hot", "path", "read")

    def __init__(self, module: nn.Module, conv: Conventions) -> None:
        mid = id(module)
        self.conv = conv
        self.path = _weight_path(module, conv)
        self.read = _settings(module)
        self.hot: Callable[[Any, Any, Any], bool] = _never
        weakref.finalize(module, _forget, mid, self)

    def remember(self, module: nn.Module, sh: Any, decl: dict[str, int] | None, states: tuple) -> None:
        """Make the hot path for a call of input shape ``sh`` that fit, with state shapes ``states``."""
        if self.read is None or self.path is None:  # settings behind properties, or no weights: the long way
            return
        rule = call_rule(self.conv)
        self.hot = declared_hot(sh, decl, states, state_form(rule.arity, rule.as_tuple), self.read,
                                self.read(module.__dict__), self.path)


def _never(m: Any, x: Any, s: Any) -> bool:
    return False


def _forget(mid: int, plan: _Plan) -> None:
    if _plans.get(mid) is plan:
        del _plans[mid]


def _settings(module: nn.Module) -> Callable[[dict], Any] | None:
    """A cheap reader of the settings the sizes come from, over ``module.__dict__`` (plain instance attributes),
    or None (a size read through a property or a function: such calls are read afresh)."""
    d = declaration_of(type(module))
    names = list(dict.fromkeys(src for _, src in d.sizes)) if d is not None else []  # each attribute once
    if not names or not all(isinstance(n, str) and n in module.__dict__ and not hasattr(type(module), n)
                            for n in names):
        return None
    return itemgetter(*names)


_plans: dict[int, _Plan] = {}  # id(module) -> its plan (dropped when the module dies)


def check_declared(module: nn.Module, x: Any, s: Any, path: str | None) -> None:
    """Check ``module(x, s)`` for a declared class: a repeat of the last call that fit is a few compares; any
    other is judged by :func:`fits`, and one that does not fit is diagnosed (a :class:`~shapeviz.ShapeError`)."""
    p = _plans.get(id(module))
    if p is not None and p.hot(module, x, s):
        return
    if x is None:
        return
    if is_compiling():  # dynamo traces this call: checked at trace time, with the same rule (the kill switch
        from shapeviz.runtime.compiled import check_declared_compiling  # read there as a constant)

        check_declared_compiling(module, x, s, path)
        return
    if env_disabled():
        return
    conv = conventions(module)
    decl = DECLARED.get()
    wants = call_fits(call_rule(conv), x, s, module_weight(module, conv.layout), decl)  # the one rule
    if wants is not None:
        if p is None or p.conv is not conv:
            p = _plans[id(module)] = _Plan(module, conv)
        p.remember(module, x.shape, decl, wants)
        return
    if decl is not None:
        decl = live_declared()
    if conv.declaration is None:  # torch's conventions under another class name: torch's diagnosis
        from shapeviz.runtime.diagnosis import diagnose
        err = diagnose(module, conv, x, s, decl, path)
    else:
        from shapeviz.runtime.declared_diagnosis import diagnose_declared
        err = diagnose_declared(module, conv, x, s, decl, path)
    if err is not None:
        raise err
