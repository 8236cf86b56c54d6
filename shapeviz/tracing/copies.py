"""Copies carry nothing of shapeviz: a watched model deep-copies, pickles and ``torch.save``-s without its hooks.

>>> import copy, torch.nn as nn
>>> class Noop(ShapevizHook):
...     def __call__(self, *args): return None
>>> model = nn.Linear(2, 3)
>>> handle = model.register_forward_pre_hook(Noop())
>>> hold()
>>> len(model._forward_pre_hooks), len(copy.deepcopy(model)._forward_pre_hooks)
(1, 0)
>>> release(); handle.remove()

``copy.deepcopy``, ``pickle`` and ``torch.save`` all read a module's state through ``__getstate__``
(``nn.Module``'s, or ``nn.RNNBase``'s own). While shapeviz has hooks on some module (:func:`hold` /
:func:`release`), those methods are wrapped so the state they return leaves out every hook that is a
:class:`ShapevizHook`, with its entries in torch's companion dicts (``with_kwargs``, ``always_called``). The
module itself keeps its hooks; the copy has none, and loads where shapeviz is not installed. The wrappers
come off when the last holder releases them, unless something else wrapped ``__getstate__`` on top of one
meanwhile (then it stays in place and passes the state through untouched until shapeviz holds it again).
"""

from __future__ import annotations

import threading
from typing import Any

import torch.nn as nn

__all__ = ["ShapevizHook", "held", "hold", "release"]

_HOOK_DICTS = (("_forward_pre_hooks", ("_forward_pre_hooks_with_kwargs",)),
               ("_forward_hooks", ("_forward_hooks_with_kwargs", "_forward_hooks_always_called")))


class ShapevizHook:
    """Base of the hooks shapeviz puts on modules: a copy of the module leaves them out."""

    __slots__ = ()


_lock = threading.Lock()
_state: dict[str, Any] = {"users": 0}
_CLASSES = (nn.Module, nn.RNNBase)
"""The torch classes that define their own ``__getstate__`` (a test keeps this list true)."""
_wrapped: dict[type, tuple[Any, Any]] = {}  # class -> (torch's __getstate__, shapeviz's wrapper)


def _strip(state: dict[str, Any]) -> dict[str, Any]:
    for name, companions in _HOOK_DICTS:
        hooks = state.get(name)
        if not hooks:
            continue
        ours = [k for k, h in hooks.items() if isinstance(h, ShapevizHook)]
        if not ours:
            continue
        state[name] = type(hooks)((k, h) for k, h in hooks.items() if k not in ours)
        for comp in companions:
            d = state.get(comp)
            if d:
                state[comp] = type(d)((k, v) for k, v in d.items() if k not in ours)
    return state


def _make_wrapper(original: Any) -> Any:
    def __getstate__(self: nn.Module) -> Any:
        state = original(self)
        if _state["users"] and isinstance(state, dict):
            return _strip(state)
        return state

    __getstate__.__wrapped__ = original  # type: ignore[attr-defined]
    return __getstate__


def hold() -> None:
    """shapeviz puts hooks on modules from now on: copies leave them out (pair with :func:`release`)."""
    with _lock:
        _state["users"] += 1
        if _state["users"] == 1:
            for cls in _CLASSES:
                if cls not in _wrapped:  # (one left under another's wrapper still works)
                    original = cls.__dict__["__getstate__"]
                    _wrapped[cls] = (original, _make_wrapper(original))
                    cls.__getstate__ = _wrapped[cls][1]  # type: ignore[method-assign]


def release() -> None:
    """One holder fewer; with none left, torch's own ``__getstate__`` is back where shapeviz's wrapper is still
    the one in place (one wrapped over it by someone else stays, and passes the state through)."""
    with _lock:
        _state["users"] = max(0, _state["users"] - 1)
        if _state["users"] == 0:
            for cls, (original, wrapper) in list(_wrapped.items()):
                if cls.__dict__.get("__getstate__") is wrapper:
                    cls.__getstate__ = original  # type: ignore[method-assign]
                    del _wrapped[cls]


def held() -> int:
    """How many holders there are now (leak checks in tests)."""
    return int(_state["users"])
