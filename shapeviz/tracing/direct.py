"""Recording a module's calls without touching the module: its class's ``forward`` wrapped while a trace runs.

>>> import torch, torch.nn as nn
>>> from shapeviz.tracing.session import trace
>>> class WeightDrop(nn.Module):
...     def __init__(self, module): super().__init__(); self.module = module
...     def forward(self, *args): return self.module.forward(*args)
>>> t = trace(WeightDrop(nn.GRU(4, 8)), torch.zeros(5, 2, 4))
>>> [(c.path, c.type) for c in t.calls]
[('', 'WeightDrop'), ('module', 'GRU')]

Used for the recurrent modules (and any module whose class has its own ``__getstate__``) instead of module
hooks, for two reasons. AWD-LSTM's ``WeightDrop`` calls ``self.module.forward(x)``: no module hook runs, so
hooks would miss the call. And ``nn.RNNBase`` has its own ``__getstate__``, so a copy of an ``nn.LSTM`` made
during the forward would carry hooks (:mod:`shapeviz.tracing.copies` leaves shapeviz's hooks out of
``nn.Module.__getstate__`` only). While a trace runs, the *class* of each such module has its ``forward``
wrapped; the wrapper looks the module up (by identity) among the traced ones and records the call, and
passes every other call straight on. Nothing is set on the module itself, so a copy of it made during the
forward (a lazily made EMA copy, ``copy.deepcopy``, ``torch.save``) carries nothing of shapeviz, runs its own
weights and is never recorded. The class gets its own ``forward`` back when the last trace using it ends, where
shapeviz's wrapper is still the one in place (one wrapped over it meanwhile stays, and ours under it
passes calls straight on).
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

import torch.nn as nn

from shapeviz.tracing.recorder import Tracer

__all__ = ["direct_calls"]

_lock = threading.Lock()
# id(module) -> (weak ref to it, the tracer recording it, its path, user code?, quiet?) (see Tracer.enter)
_traced: dict[int, tuple[weakref.ref, Tracer, str, bool, bool]] = {}
# class -> [users, whether the class had its own forward, that forward (or None), our wrapper]
_classes: dict[type, list[Any]] = {}


def _wrapper(original: Any) -> Any:
    def forward(self: nn.Module, *args: Any, **kwargs: Any) -> Any:
        entry = _traced.get(id(self))
        if entry is None or entry[0]() is not self:  # not traced (a copy, another model): straight on
            return original(self, *args, **kwargs)
        tracer = entry[1]
        if tracer.finished or (tracer.stack and tracer.stack[-1][1] == id(self)):  # recorded by its hooks
            return original(self, *args, **kwargs)
        tracer.enter(entry[2], self, args, kwargs, entry[3], entry[4])
        try:
            out = original(self, *args, **kwargs)
        except BaseException:
            tracer.exit(self, None, True)  # closed as a failed call
            raise
        tracer.exit(self, out)
        return out

    forward.__wrapped__ = original  # type: ignore[attr-defined]
    forward.__doc__ = getattr(original, "__doc__", None)
    return forward


class _Handle:
    """Undoes :func:`direct_calls` for one module (``remove()``, like a hook handle)."""

    def __init__(self, module: nn.Module, tracer: Tracer) -> None:
        self.key, self.cls, self.tracer = id(module), type(module), tracer

    def remove(self) -> None:
        with _lock:
            entry = _traced.get(self.key)
            if entry is not None and entry[1] is self.tracer:  # (a trace of it in another thread keeps its own)
                del _traced[self.key]
            state = _classes.get(self.cls)
            if state is None:
                return
            state[0] -= 1
            if state[0] > 0:
                return
            del _classes[self.cls]
            if self.cls.__dict__.get("forward") is not state[3]:
                return  # something wrapped forward over ours: it stays (ours passes calls straight on)
            if state[1]:
                self.cls.forward = state[2]  # type: ignore[attr-defined]
            else:
                delattr(self.cls, "forward")


def direct_calls(tracer: Tracer, path: str, module: nn.Module, user: bool = False, quiet: bool = False) -> _Handle:
    """Record every call of ``module`` (``module(x)`` or ``module.forward(x)``) into ``tracer`` until the handle's
    ``remove()``; ``user`` and ``quiet`` as :meth:`Tracer.enter` takes them. The module must not have a
    ``forward`` of its own (set on the instance): the class's is the one wrapped."""
    cls = type(module)
    with _lock:
        _traced[id(module)] = (weakref.ref(module), tracer, path, user, quiet)
        state = _classes.get(cls)
        if state is None:
            had = "forward" in cls.__dict__
            original = cls.__dict__["forward"] if had else cls.forward
            state = _classes[cls] = [0, had, original if had else None, _wrapper(original)]
            cls.forward = state[3]  # type: ignore[method-assign]
        state[0] += 1
    return _Handle(module, tracer)
