"""The hot path of a check: a repeat of the last call that fit, accepted after plain reads made in line.

>>> import torch, torch.nn as nn
>>> from shapeviz.runtime.fastcheck import check_input, plan_for
>>> lstm = nn.LSTM(4, 6)
>>> check_input(lstm, torch.randn(5, 2, 4), None, None)  # (T=5, bs=2, emb=4): fits, the memo is set
True
>>> plan_for(lstm).hot(lstm, torch.randn(5, 2, 4), None), plan_for(lstm).hot(lstm, torch.randn(5, 2, 3), None)
(True, False)

:class:`~shapeviz.runtime.fastcheck.CallPlan` keeps the memo of the shape rule (the input shape, declared sizes
and the state shapes they give); this module writes, once per state arity and set of setting names, the code that
compares a call with that memo (:func:`hot_path`). False never means a mistake: it sends the call the long way.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from shapeviz.core.dimensions import DECLARED
from shapeviz.runtime.switches import ENV_DATA, ENV_KEY, dynamo_compiling

if TYPE_CHECKING:
    from shapeviz.runtime.fastcheck import CallPlan

__all__ = ["hot_path", "no_memo", "same_objects"]


def same_objects(a: tuple | None, b: tuple | None) -> bool:
    """The same objects, one by one (what the hot path compares settings by)."""
    return a is not None and b is not None and len(a) == len(b) and all(x is y for x, y in zip(a, b))


def no_memo(m: torch.nn.Module, x: Any, hx: Any) -> bool:
    """The hot path of a plan no call has fit yet: every call goes the long way."""
    return False


_HOT = """
def make(sh, decl0, want_h, want_c, key, getkey, wname, env, env_key, decl_now, tensor, dynamo):
    {unpack}
    def hot(m, x, hx):
        if env_key in env or type(x) is not tensor or dynamo():
            return False
        d = m.__dict__
        try:
            if x.shape != sh or {config} or {decl}:
                return False
            w = d["_parameters"][wname]
            dtype = x.dtype
            if x.is_cpu:
                if hx is None:
                    return w.dtype is dtype and w.is_cpu
{cpu}
            device = x.device
            if w.dtype is not dtype or device != w.device:
                return False
            if hx is None:
                return True
{other}
        except (KeyError, AttributeError, ValueError):  # a setting or the weight deleted since, a state of
            return False  # another arity: the long way says what is wrong
    return hot
"""
_ONE = """\
                return (type(hx) is tensor and hx.shape == want_h and w.dtype is dtype and hx.dtype is dtype
                        and w.is_cpu and hx.is_cpu)"""
_TWO = """\
                if type(hx) is not tuple:
                    return False
                h, c = hx
                return (type(h) is tensor and type(c) is tensor and h.shape == want_h and c.shape == want_c
                        and w.dtype is dtype and h.dtype is dtype and c.dtype is dtype and w.is_cpu and h.is_cpu
                        and c.is_cpu)"""
_ONE_OTHER = """\
            return type(hx) is tensor and hx.shape == want_h and hx.dtype is dtype and hx.device == device"""
_TWO_OTHER = """\
            if type(hx) is not tuple:
                return False
            h, c = hx
            return (type(h) is tensor and type(c) is tensor and h.shape == want_h and c.shape == want_c
                    and h.dtype is dtype and c.dtype is dtype and h.device == device and c.device == device)"""
_MAKERS: dict[tuple[int, tuple[str, ...] | None, bool], Callable[..., Callable[[torch.nn.Module, Any, Any], bool]]] = {}

# RNNBase.mode (``"LSTM"``, ``"RNN_TANH"`` …): in the plan's key, but no shape reads it (conventions() takes the
# family from the class), so the hot path does not compare it; a changed mode still makes a new plan
_NOT_SHAPE = frozenset({"mode"})


def _config_names(getkey: Any) -> tuple[str, ...] | None:
    """The setting names a plan's key reads from ``__dict__`` (core's ``itemgetter``), or None (an ``attrgetter``)."""
    try:
        fn, names = getkey.__reduce__()
    except (TypeError, ValueError):  # pragma: no cover - not an itemgetter
        return None
    if fn is not operator.itemgetter or not names or not all(isinstance(n, str) and n.isidentifier() for n in names):
        return None
    return names


def _maker(arity: int, names: tuple[str, ...] | None,
           declared: bool) -> Callable[..., Callable[[torch.nn.Module, Any, Any], bool]]:
    """The factory of hot paths for one state arity, one set of setting names and whether the memo holds declared
    sizes, written out once (names are core's fixed setting names, checked to be identifiers; no user text): each
    setting the shape rule reads is compared by identity with the object the memo's call read (a new equal object
    sends one call the long way, which makes the hot path afresh), a plain ``d[name] is not k`` where
    ``getkey(d) != key`` would build a tuple."""
    made = _MAKERS.get((arity, names, declared))
    if made is not None:
        return made
    if names is None:
        unpack, config = "pass", "getkey(m) != key"
    else:
        ks = [f"k{i}" for i in range(len(names))]
        unpack = f"{', '.join(ks)}, = key"
        config = " or ".join(f"d[{n!r}] is not {k}" for n, k in zip(names, ks) if n not in _NOT_SHAPE)
    decl = "((decl := decl_now()) is not decl0 and decl != decl0)" if declared else "decl_now() is not None"
    src = _HOT.format(unpack=unpack, config=config, decl=decl, cpu=_ONE if arity == 1 else _TWO,
                      other=_ONE_OTHER if arity == 1 else _TWO_OTHER)
    namespace: dict[str, Any] = {}
    exec(compile(src, f"<shapeviz hot path: {arity} state(s), {names}>", "exec"), {}, namespace)
    made = _MAKERS[(arity, names, declared)] = namespace["make"]
    return made


def hot_path(p: CallPlan, memo: tuple, key: tuple | None) -> Callable[[torch.nn.Module, Any, Any], bool]:
    """The hot path of :func:`check_input` for one plan and its memo, the constants bound in a closure: True when
    a call repeats the memo's (input shape and declared sizes) and its configuration, dtypes, devices and state
    shapes still agree; False sends it the long way (never an error).

    Each read is one a check of the call cannot skip: the kill switch (a ``dict`` membership test on the
    environment's own mapping), dynamo (``torch.compiler.is_dynamo_compiling``, a constant while dynamo traces,
    so none of the reads below becomes a guard), the input's shape, each setting, the declared sizes, the first
    weight's dtype and device, then each state's shape, dtype and device; a device is compared by ``is_cpu``
    where the input is on the CPU (a ``torch.device`` costs an allocation). The plan is its module's: ``_plans``
    drops an entry when its module dies (a weakref callback, run before the id can be reused), so an entry
    found by ``id`` belongs to the module given. Holds no module state: only ints, dtypes' and settings' values.
    """
    if key is None or memo[0] is None:
        return no_memo
    names = _config_names(p.getkey) if p.from_dict else None
    make = _maker(p.arity, names, memo[1] is not None)
    return make(memo[0], memo[1], memo[2], memo[3], key if names is not None else p.key, p.getkey, p.wname,
                ENV_DATA, ENV_KEY, DECLARED.get, Tensor, dynamo_compiling)
