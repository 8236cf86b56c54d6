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
from torch import Tensor

from shapeviz.core.callfit import call_fits, call_rule
from shapeviz.core.declared import declaration_of
from shapeviz.core.dimensions import DECLARED, live_declared
from shapeviz.core.model import Conventions, conventions, module_weight
from shapeviz.runtime.switches import ENV_DATA, ENV_KEY, dynamo_compiling, env_disabled, is_compiling

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
        self.hot = _hot(self.conv, sh, decl, states, self.path, self.read, self.read(module.__dict__))


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


def _hot(conv: Conventions, sh: Any, decl0: dict[str, int] | None, states: tuple, path: tuple[str, ...],
         read: Callable[[dict], Any], key: Any) -> Callable[[Any, Any, Any], bool]:
    """True when a call repeats the one that fit (its input shape, declared sizes, the module's settings,
    dtypes, devices and state shapes); False sends it the long way (never an error). The plan is its module's:
    ``_plans`` drops it when the module dies, so a plan found by ``id`` belongs to the module given."""
    rule = call_rule(conv)
    arity, as_tuple = rule.arity, rule.as_tuple
    env, env_key, decl_now, tensor, dynamo = ENV_DATA, ENV_KEY, DECLARED.get, Tensor, dynamo_compiling
    sub, deeper, pname = (path[0] if len(path) > 1 else None), path[1:-1], path[-1]
    want_h, want_c = (states + ((), ()))[:2]

    def hot(m: Any, x: Any, s: Any) -> bool:
        if env_key in env or type(x) is not tensor or dynamo():
            return False
        d = m.__dict__
        try:
            if x.shape != sh or read(d) != key:
                return False
        except KeyError:  # a setting deleted since: the long way says what is wrong
            return False
        decl = decl_now()
        if decl is not decl0 and decl != decl0:
            return False
        if sub is None:
            w = d["_parameters"].get(pname)
        else:
            w = d["_modules"].get(sub)
            if deeper:
                for name in deeper:
                    if w is None:
                        return False
                    w = w._modules.get(name)
            if w is None:
                return False
            w = w._parameters.get(pname)
        dtype = x.dtype
        if w is None or dtype is not w.dtype:
            return False
        if x.is_cpu:
            if not w.is_cpu:
                return False
            if s is None:
                return True
            if not as_tuple:
                return type(s) is tensor and s.shape == want_h and s.dtype is dtype and s.is_cpu
            if type(s) is not tuple or len(s) != arity:
                return False
            if arity == 1:  # a 1-tuple state, as textbook code passes it
                h = s[0]
                return type(h) is tensor and h.shape == want_h and h.dtype is dtype and h.is_cpu
            if arity == 2:
                h, c = s
                return (type(h) is tensor and type(c) is tensor and h.shape == want_h and c.shape == want_c
                        and h.dtype is dtype and c.dtype is dtype and h.is_cpu and c.is_cpu)
            return all(type(t) is tensor and t.shape == want and t.dtype is dtype and t.is_cpu
                       for t, want in zip(s, states))
        device = x.device
        if device != w.device:
            return False
        if s is None:
            return True
        parts = (s,) if not as_tuple else s if type(s) is tuple and len(s) == arity else None
        return parts is not None and all(type(t) is tensor and t.shape == want and t.dtype is dtype
                                         and t.device == device for t, want in zip(parts, states))

    return hot


_plans: dict[int, _Plan] = {}  # id(module) -> its plan (dropped when the module dies)


def check_declared(module: nn.Module, x: Any, s: Any, path: str | None) -> None:
    """Check ``module(x, s)`` for a declared class: a repeat of the last call that fit is a few compares; any
    other is judged by :func:`fits`, and one that does not fit is diagnosed (a :class:`~shapeviz.ShapeError`)."""
    p = _plans.get(id(module))
    if p is not None and p.hot(module, x, s):
        return
    if env_disabled() or x is None:
        return
    if is_compiling():  # dynamo traces this call: checked at trace time, with the same rule
        from shapeviz.runtime.compiled import check_declared_compiling

        check_declared_compiling(module, x, s, path)
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
