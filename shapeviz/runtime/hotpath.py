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

__all__ = ["declared_hot", "hot_path", "no_memo", "same_objects", "state_form"]


def same_objects(a: tuple | None, b: tuple | None) -> bool:
    """The same objects, one by one (what the hot path compares settings by)."""
    return a is not None and b is not None and len(a) == len(b) and all(x is y for x, y in zip(a, b))


def no_memo(m: torch.nn.Module, x: Any, hx: Any) -> bool:
    """The hot path of a plan no call has fit yet: every call goes the long way."""
    return False


_HOT = """
def make(sh, decl0, want_h, want_c, wants, key, getkey, wname, sub, walk, env, env_key, decl_now, tensor, dynamo):
    {unpack}
    def hot(m, x, hx):
        if env_key in env or type(x) is not tensor or dynamo():
            return False
        d = m.__dict__
        try:
            if x.shape != sh or {config} or {decl}:
                return False
            w = {weight}
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
# where the weight whose dtype and device are the module's sits: torch's own, one module down, or deeper
_WEIGHT = {"own": 'd["_parameters"][wname]', "sub": 'd["_modules"][sub]._parameters[wname]',
           "walk": 'walk(d["_modules"][sub])._parameters[wname]'}
# the state, by its form: one tensor, a 1-tuple, an LSTM's (h, c), a tuple of more; on the CPU, then elsewhere
_CPU = {
    "one": """\
                return (type(hx) is tensor and hx.shape == want_h and w.dtype is dtype and hx.dtype is dtype
                        and w.is_cpu and hx.is_cpu)""",
    "tuple1": """\
                if type(hx) is not tuple:
                    return False
                (h,) = hx
                return (type(h) is tensor and h.shape == want_h and w.dtype is dtype and h.dtype is dtype
                        and w.is_cpu and h.is_cpu)""",
    "two": """\
                if type(hx) is not tuple:
                    return False
                h, c = hx
                return (type(h) is tensor and type(c) is tensor and h.shape == want_h and c.shape == want_c
                        and w.dtype is dtype and h.dtype is dtype and c.dtype is dtype and w.is_cpu and h.is_cpu
                        and c.is_cpu)""",
    "many": """\
                if type(hx) is not tuple or len(hx) != len(wants) or w.dtype is not dtype or not w.is_cpu:
                    return False
                return all(type(t) is tensor and t.shape == want and t.dtype is dtype and t.is_cpu
                           for t, want in zip(hx, wants))""",
}
_OTHER = {
    "one": """\
            return type(hx) is tensor and hx.shape == want_h and hx.dtype is dtype and hx.device == device""",
    "tuple1": """\
            if type(hx) is not tuple:
                return False
            (h,) = hx
            return type(h) is tensor and h.shape == want_h and h.dtype is dtype and h.device == device""",
    "two": """\
            if type(hx) is not tuple:
                return False
            h, c = hx
            return (type(h) is tensor and type(c) is tensor and h.shape == want_h and c.shape == want_c
                    and h.dtype is dtype and c.dtype is dtype and h.device == device and c.device == device)""",
    "many": """\
            if type(hx) is not tuple or len(hx) != len(wants):
                return False
            return all(type(t) is tensor and t.shape == want and t.dtype is dtype and t.device == device
                       for t, want in zip(hx, wants))""",
}
Maker = Callable[..., Callable[[torch.nn.Module, Any, Any], bool]]
_MAKERS: dict[tuple[str, tuple[str, ...] | None, bool, str, str], Maker] = {}

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


def state_form(arity: int, as_tuple: bool) -> str:
    """How a state of ``arity`` tensors is passed: ``"one"`` tensor, a ``"tuple1"``, ``"two"`` (h, c), ``"many"``.

    >>> state_form(1, False), state_form(1, True), state_form(2, True), state_form(3, True)
    ('one', 'tuple1', 'two', 'many')
    """
    if not as_tuple:
        return "one"
    return {1: "tuple1", 2: "two"}.get(arity, "many")


def _maker(state: str, names: tuple[str, ...] | None, declared: bool, config: str, weight: str) -> Maker:
    """The factory of hot paths for one state form, one set of setting names (or a getter: ``config`` is
    ``"module"`` for one over the module, ``"dict"`` for one over its ``__dict__``), whether the memo holds
    declared sizes and where the weight sits, written out once (names are core's fixed setting names, checked to
    be identifiers; no user text: a declared layer's settings and weight path are bound values, never source):
    each setting the shape rule reads is compared by identity with the object the memo's call read (a new equal
    object sends one call the long way, which makes the hot path afresh), a plain ``d[name] is not k`` where
    ``getkey(d) != key`` would build a tuple."""
    made = _MAKERS.get((state, names, declared, config, weight))
    if made is not None:
        return made
    if names is None:
        unpack, test = "pass", "getkey(m) != key" if config == "module" else "getkey(d) != key"
    else:
        ks = [f"k{i}" for i in range(len(names))]
        unpack = f"{', '.join(ks)}, = key"
        test = " or ".join(f"d[{n!r}] is not {k}" for n, k in zip(names, ks) if n not in _NOT_SHAPE)
    decl = "((decl := decl_now()) is not decl0 and decl != decl0)" if declared else "decl_now() is not None"
    src = _HOT.format(unpack=unpack, config=test, decl=decl, weight=_WEIGHT[weight], cpu=_CPU[state],
                      other=_OTHER[state])
    namespace: dict[str, Any] = {}
    exec(compile(src, f"<shapeviz hot path: {state} state, {names or config}, weight {weight}>", "exec"), {},
         namespace)
    made = _MAKERS[(state, names, declared, config, weight)] = namespace["make"]
    return made


def declared_hot(sh: Any, decl0: dict[str, int] | None, wants: tuple, form: str, read: Callable[[dict], Any],
                 key: Any, path: tuple[str, ...]) -> Callable[[torch.nn.Module, Any, Any], bool]:
    """The hot path of a layer declared with ``sv.recurrent`` (:mod:`shapeviz.runtime.declared_check`): the same
    code as torch's layers', its settings read by ``read`` over the module's ``__dict__`` and its weight found
    along ``path`` (``("cell", "to_z", "weight")``), both bound as values.

    >>> import torch
    >>> hot = declared_hot(torch.Size([5, 2, 4]), None, ((2, 6),), "one", lambda d: d["n"], 6, ("w",))
    >>> m = torch.nn.Module(); m.n, m.w = 6, torch.nn.Parameter(torch.zeros(6, 4))
    >>> hot(m, torch.zeros(5, 2, 4), torch.zeros(2, 6)), hot(m, torch.zeros(5, 2, 4), torch.zeros(3, 6))
    (True, False)
    """
    deeper = path[1:-1]
    weight = "own" if len(path) == 1 else "walk" if deeper else "sub"

    def walk(mod: Any) -> Any:  # the modules between the first and the weight's own
        for name in deeper:
            mod = mod._modules[name]
        return mod

    make = _maker(form, None, decl0 is not None, "dict", weight)
    want_h, want_c = (wants + ((), ()))[:2]
    return make(sh, decl0, want_h, want_c, wants, key, read, path[-1], path[0], walk, ENV_DATA, ENV_KEY,
                DECLARED.get, Tensor, dynamo_compiling)


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
    make = _maker(state_form(p.arity, p.arity > 1), names, memo[1] is not None, "module", "own")
    return make(memo[0], memo[1], memo[2], memo[3], (memo[2], memo[3]), key if names is not None else p.key,
                p.getkey, p.wname, None, None, ENV_DATA, ENV_KEY, DECLARED.get, Tensor, dynamo_compiling)
