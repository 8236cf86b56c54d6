"""``sv.recurrent``: your own recurrent layers, checked like torch's while anything is watched or checked.

>>> import torch, torch.nn as nn, shapeviz as sv
>>> @sv.recurrent(input="T bs emb", state="bs h", sizes={"emb": "n_in", "h": "n_h"})
... class Tiny(nn.Module):
...     def __init__(self, n_in: int, n_h: int) -> None:
...         super().__init__()
...         self.n_in, self.n_h = n_in, n_h
...         self.W = nn.Linear(n_in + n_h, n_h)
...     def forward(self, x, h=None):  # x: (T, bs, emb), h: (bs, h)
...         h = torch.zeros(x.shape[1], self.n_h) if h is None else h
...         for x_t in x:
...             h = torch.tanh(self.W(torch.cat([x_t, h], -1)))
...         return h
>>> with sv.checking():
...     Tiny(3, 4)(torch.randn(5, 2, 3), torch.zeros(7, 4))  # a state for another batch
Traceback (most recent call last):
...
shapeviz.ShapeError: [batch_mismatch] Tiny(emb=3, h=4): argument `h_0`
...

While checks are on, the ``forward`` of every declared class is wrapped (and put back when they stop, on every
path): it reads the call's first argument as the input and its second as the state, as the declaration says,
and checks them against the module's :class:`~shapeviz.core.model.Conventions` before running.
"""

from __future__ import annotations

import functools
import inspect
import weakref
from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn as nn
from torch import Tensor

from shapeviz.core.declared import SizeSource, declaration_of, declare, declared_types
from shapeviz.core.dimensions import DECLARED, live_declared
from shapeviz.core.dtypes import castable
from shapeviz.core.evidence import cell_suspect, layer_suspect
from shapeviz.core.model import Conventions, conventions, module_weight

__all__ = ["check_declared", "fits", "recurrent", "sync"]


def recurrent(cls: type | None = None, *, input: str, state: str | tuple[str, ...] | list[str],
              output: str | None = None, cell: bool = False, sizes: Mapping[str, SizeSource]) -> Any:
    """Declare the shape conventions of your own recurrent layer (or cell); a class decorator with the same keywords.

    >>> import torch.nn as nn, shapeviz as sv
    >>> class RNNScratch(nn.Module):
    ...     def __init__(self, num_inputs: int, num_hiddens: int) -> None:
    ...         super().__init__()
    ...         self.num_inputs, self.num_hiddens = num_inputs, num_hiddens
    >>> _ = sv.recurrent(RNNScratch, input="T bs emb", state=("bs h",),
    ...                  sizes={"emb": "num_inputs", "h": "num_hiddens"})
    >>> sv.conventions(RNNScratch(28, 32)).shapes(T=5, bs=2)  # (T, bs, emb) and a 1-tuple state (bs, h)
    {'input': (5, 2, 28), 'h_0': (2, 32), 'h_n': (2, 32)}

    Then ``watch``/``checking`` check its calls, ``sv.explain`` prints its table, ``sv.trace`` names its rows.
    Returns the class (so it works as a decorator).
    """
    def apply(klass: type) -> type:
        if not (isinstance(klass, type) and issubclass(klass, nn.Module)):
            raise _spec(f"sv.recurrent takes an nn.Module subclass, got {klass!r}")
        declare(klass, input=input, state=state, output=output, cell=cell, sizes=sizes)
        _resync()
        return klass

    return apply if cls is None else apply(cls)


def _spec(msg: str) -> Exception:
    from shapeviz._errors import SpecError
    return SpecError(msg)


def _resync() -> None:
    """A class declared while checks are on is wrapped at once (and a redeclared one keeps its wrapper)."""
    from shapeviz.runtime import watching

    with watching._lock:
        watching._sync_patches()


# ------------------------------------------------------------------------------------------- the wrappers
_ORIGINAL: dict[type, tuple[bool, Any]] = {}  # class -> (forward was in its own __dict__, that forward)
_INSTALLED: dict[type, Any] = {}


def _reader(fn: Any) -> Callable[[tuple, dict], tuple[Any, Any]]:
    """How to read ``(input, state)`` from a call of ``fn(self, ...)``: its first two parameters, by place or name."""
    try:
        params = [p for p in inspect.signature(fn).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)][1:3]
    except (TypeError, ValueError):  # pragma: no cover - a forward without a signature
        params = []
    names = [p.name for p in params] + [None, None]
    first, second = names[0], names[1]

    def read(args: tuple, kwargs: dict) -> tuple[Any, Any]:
        x = args[0] if args else kwargs.get(first) if first else None
        s = args[1] if len(args) > 1 else kwargs.get(second) if second else None
        return x, s

    return read


def _wrap(original: Any, gate: Callable[[nn.Module, Any, Any], None]) -> Any:
    read = _reader(original)

    @functools.wraps(original)
    def forward(self: nn.Module, *args: Any, **kwargs: Any) -> Any:
        x, s = read(args, kwargs)
        gate(self, x, s)
        return original(self, *args, **kwargs)

    forward.__shapeviz__ = True  # type: ignore[attr-defined]
    return forward


def sync(wanted: bool, gate: Callable[[nn.Module, Any, Any], None]) -> None:
    """Wrap every declared class's ``forward`` while ``wanted``; put each back as soon as not (call with a lock)."""
    if wanted:
        for cls in declared_types():
            if cls in _ORIGINAL:
                continue
            own = "forward" in cls.__dict__
            original = cls.__dict__["forward"] if own else cls.forward
            _ORIGINAL[cls] = (own, original)
            cls.forward = _INSTALLED[cls] = _wrap(original, gate)  # type: ignore[attr-defined]
        return
    for cls, (own, original) in list(_ORIGINAL.items()):
        if cls.__dict__.get("forward") is _INSTALLED.get(cls):  # only ours: another library's stays
            if own:
                cls.forward = original  # type: ignore[attr-defined]
            else:
                del cls.forward  # type: ignore[attr-defined]
        del _ORIGINAL[cls]
        _INSTALLED.pop(cls, None)


# ------------------------------------------------------------------------------------------- the rule
def _state_parts(conv: Conventions, s: Any) -> tuple[Any, ...] | None:
    """The state's tensors in the order the conventions name them, or None when its structure is wrong."""
    lay = conv.layout
    if lay.state_arity == 1 and not lay.state_tuple:
        return (s,) if isinstance(s, Tensor) else None
    if isinstance(s, (tuple, list)) and len(s) == lay.state_arity:
        return tuple(s)
    return None


def fits(module: nn.Module, conv: Conventions, x: Any, s: Any, decl: dict[str, int] | None) -> bool:
    """True when ``module(x, s)`` fits the conventions: every dim of the input and of each state tensor is the
    size :meth:`Conventions.shapes` gives for the call's ``T`` and ``bs``, dtypes and devices agree, and no
    declared size could say the layout is swapped (the diagnosis then weighs the evidence).

    >>> import torch
    >>> gru = torch.nn.GRU(4, 6)
    >>> fits(gru, conventions(gru), torch.randn(5, 2, 4), torch.zeros(1, 2, 6), None)
    True
    """
    if not isinstance(x, Tensor):
        return False
    lay = conv.layout
    sh = tuple(x.shape)
    read = lay.seq_sizes(sh)
    if read is None:
        return False
    T, bs, batched = read
    if decl is not None and batched and bs is not None:
        if lay.cell and cell_suspect(decl, bs):
            return False
        if not lay.cell and T is not None and layer_suspect(decl, bs, T):
            return False
    if not lay.cell and T == 0:
        return False
    if not batched:  # torch-like declarations only (a declared layout has one form): the long way
        return False
    want = conv.shapes(T, bs)
    if sh != want["input"]:
        return False
    w = module_weight(module, lay)
    if w is not None and (x.device != w.device or (x.dtype != w.dtype and not castable(x.dtype, w.dtype, x.device))):
        return False
    if s is None:
        return True
    parts = _state_parts(conv, s)
    if parts is None:
        return False
    for name, t in zip(conv.state_names, parts, strict=True):
        if not isinstance(t, Tensor) or tuple(t.shape) != want[name] or t.device != x.device:
            return False
        if t.dtype != x.dtype and not castable(t.dtype, x.dtype, x.device):
            return False
    return True


_memo: dict[int, tuple] = {}  # id(module) -> (its weakref, (conv, input, state, declared sizes)) of the last fit


def _shapes_of(s: Any) -> Any:
    if isinstance(s, Tensor):
        return (s.shape, s.dtype, s.device)
    if isinstance(s, (tuple, list)):
        return (type(s), *(_shapes_of(t) for t in s))
    return s if s is None else type(s)


def check_declared(module: nn.Module, x: Any, s: Any, path: str | None) -> None:
    """Check ``module(x, s)`` for a declared class: a repeat of the last call that fit is a few compares; any other
    is judged by :func:`fits`, and one that does not fit is diagnosed (a :class:`~shapeviz.ShapeError`)."""
    from shapeviz.runtime.fastcheck import env_disabled, is_compiling

    if env_disabled() or is_compiling() or x is None:
        return
    conv = conventions(module)
    decl = DECLARED.get()
    key = (conv, _shapes_of(x), _shapes_of(s), decl)
    mid = id(module)
    memo = _memo.get(mid)
    if memo is not None and memo[0]() is module and memo[1][0] is conv and memo[1][1:] == key[1:]:
        return
    if fits(module, conv, x, s, decl):
        ref = memo[0] if memo is not None and memo[0]() is module else weakref.ref(
            module, lambda r, mid=mid: _memo.pop(mid, None) if _memo.get(mid, (None,))[0] is r else None)
        _memo[mid] = (ref, key)
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


def gate(module: nn.Module, x: Any, s: Any) -> None:
    """The check a wrapped declared ``forward`` makes before it runs: as for torch's classes, a watched module
    with its path, any other while ``checking()``/``enable()`` is on, and one made inside a watched model's code."""
    from shapeviz._errors import ShapeError
    from shapeviz.runtime import watching

    entry = watching._watched.get(id(module))
    if entry is not None and entry[0]() is module:
        check_declared(module, x, s, entry[1])
    elif watching._state["depth"] or watching._state["enabled"]:
        try:
            check_declared(module, x, s, None)
        except ShapeError as err:
            root = watching._thread_root()
            where = watching._path_in(root, module) if root is not None else None
            if where:
                err.add_context(path=where)
            raise
    elif watching._watched:
        where = watching._made_in_watched()
        if where is not None:
            check_declared(module, x, s, where)


def is_declared(module: object) -> bool:
    """True for a module whose class (or an ancestor) was declared with :func:`recurrent`."""
    return not isinstance(module, torch.nn.modules.rnn.RNNBase | torch.nn.modules.rnn.RNNCellBase) and (
        declaration_of(type(module)) is not None)
