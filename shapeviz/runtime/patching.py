"""The patched ``forward`` of ``nn.RNN/LSTM/GRU`` and their cells: put on while anything is checked, taken off
where shapeviz's own wrapper is still the one in place.

>>> import torch, torch.nn as nn
>>> seen = []
>>> sync(True, lambda module, x, hx: seen.append(tuple(x.shape)))
>>> _ = nn.GRU(4, 6)(torch.randn(5, 2, 4)); sync(False, None)
>>> seen, nn.GRU.__dict__["forward"].__module__  # checked once, then torch's own forward is back
([(5, 2, 4)], 'torch.nn.modules.rnn')

If a library wraps a patched ``forward`` after shapeviz, taking shapeviz's out would drop the library's too:
it stays (:data:`LEFT`), inert until something is checked again, when it checks once more without being
wrapped a second time; if the library later unwraps itself, shapeviz patches afresh.
"""

from __future__ import annotations

import functools
import inspect
import types
from collections.abc import Callable
from typing import Any

import torch.nn as nn

from shapeviz.core.model import CELL_TYPES, LAYER_TYPES
from shapeviz.runtime.fastcheck import call_args

__all__ = ["INSTALLED", "LEFT", "ORIGINAL_FORWARDS", "make_forward", "sync"]

ORIGINAL_FORWARDS: dict[type, Any] = {}  # torch's forward of each patched class
INSTALLED: dict[type, Any] = {}  # the wrapper shapeviz put on each class, while it is patched
LEFT: dict[type, Any] = {}  # shapeviz's wrapper left under another library's (that one wrapped ours)


def make_forward(original: Any, check: Callable[[nn.Module, Any, Any], None]) -> Any:
    """A base class's ``forward`` that asks ``check(module, input, hx)`` first, then runs ``original``."""
    code = original.__code__
    if (code.co_varnames[:code.co_argcount] == ("self", "input", "hx") and original.__defaults__ == (None,)
            and not code.co_kwonlyargcount and not code.co_flags & (inspect.CO_VARARGS | inspect.CO_VARKEYWORDS)):
        def forward(self: nn.Module, input: Any, hx: Any = None) -> Any:
            check(self, input, hx)
            return original(self, input, hx)  # not (*args, **kwargs): that costs ~1.5 µs a call in a model
    else:  # pragma: no cover - a torch whose forward takes other arguments
        def forward(self: nn.Module, *args: Any, **kwargs: Any) -> Any:  # type: ignore[misc]
            check(self, *call_args(args, kwargs))
            return original(self, *args, **kwargs)

    # TorchScript compiles the original (inspect follows __wrapped__) and resolves its names through
    # this function's globals and closure: give it the original's globals so torch.jit.script works.
    wrapper = types.FunctionType(forward.__code__, original.__globals__, original.__name__, forward.__defaults__,
                                 forward.__closure__)
    functools.update_wrapper(wrapper, original)
    wrapper.__shapeviz__ = True  # type: ignore[attr-defined]
    return wrapper


def sync(wanted: bool, check: Callable[[nn.Module, Any, Any], None]) -> None:
    """Patch the six base classes' ``forward`` while ``wanted``; restore them as soon as not (call with a lock)."""
    if wanted and not ORIGINAL_FORWARDS:
        for cls in LAYER_TYPES + CELL_TYPES:
            if cls in LEFT and _inside(cls.__dict__["forward"], LEFT[cls]):
                continue  # still inside another library's wrapper: it checks again from now on
            LEFT.pop(cls, None)
            original = cls.__dict__["forward"]
            ORIGINAL_FORWARDS[cls] = original
            cls.forward = INSTALLED[cls] = make_forward(original, check)  # type: ignore[method-assign]
    elif not wanted and (ORIGINAL_FORWARDS or LEFT):
        for cls, original in ORIGINAL_FORWARDS.items():
            if cls.__dict__.get("forward") is INSTALLED.get(cls):
                cls.forward = original  # type: ignore[method-assign]
            else:  # wrapped again after us: taking ours out would drop theirs; ours stays, inert until
                LEFT[cls] = INSTALLED[cls]  # something is checked again (one dict lookup a call)
        ORIGINAL_FORWARDS.clear()
        INSTALLED.clear()
        for cls, ours in list(LEFT.items()):
            if cls.__dict__.get("forward") is ours:  # the other library has unwrapped itself since
                cls.forward = ours.__wrapped__  # type: ignore[method-assign]
                del LEFT[cls]


def _inside(fn: Any, ours: Any) -> bool:
    """Is ``ours`` in the chain of wrappers (``__wrapped__``) of ``fn``?"""
    for _ in range(32):
        if fn is ours:
            return True
        fn = getattr(fn, "__wrapped__", None)
        if fn is None:
            return False
    return False
