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
from collections.abc import Callable, Mapping
from typing import Any

import torch.nn as nn

from shapeviz._errors import ShapeError, SpecError
from shapeviz.core.declared import SizeSource, declare, declared_types
from shapeviz.core.model import RECURRENT_TYPES
from shapeviz.runtime import watching
from shapeviz.runtime.declared_check import check_declared

__all__ = ["declared_args", "gate", "recurrent", "sync"]


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
            raise SpecError(f"sv.recurrent takes an nn.Module subclass, got {klass!r}")
        torch_own = next((t for t in RECURRENT_TYPES if issubclass(klass, t)), None)
        if torch_own is not None:  # its calls reach torch's forward, checked by torch's conventions: ignored
            kind = "is" if klass is torch_own else "subclasses"
            raise SpecError(f"sv.recurrent({klass.__name__}): it {kind} torch's nn.{torch_own.__name__}, which "
                            "shapeviz already checks by torch's conventions (sv.explain prints them); sv.recurrent "
                            "declares your own layers, modules that are not torch's RNN, LSTM, GRU or their cells")
        declare(klass, input=input, state=state, output=output, cell=cell, sizes=sizes)
        _resync()
        return klass

    return apply if cls is None else apply(cls)


def _resync() -> None:
    """A class declared while checks are on is wrapped at once (and a redeclared one keeps its wrapper)."""
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


def declared_args(module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> tuple[Any, Any]:
    """``(input, state)`` of a call of a declared module, read as its ``forward``'s first two parameters.

    >>> import torch.nn as nn
    >>> class Tiny(nn.Module):
    ...     def forward(self, inputs, state=None): ...
    >>> declared_args(Tiny(), (1,), {"state": 2})
    (1, 2)
    """
    fn = type(module).forward
    fn = getattr(fn, "__wrapped__", fn) if getattr(fn, "__shapeviz__", False) else fn
    return _reader(fn)(args, kwargs)


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


def gate(module: nn.Module, x: Any, s: Any) -> None:
    """The check a wrapped declared ``forward`` makes before it runs: as for torch's classes, a watched module
    with its path, any other while ``checking()``/``enable()`` is on, and one made inside a watched model's code."""
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
