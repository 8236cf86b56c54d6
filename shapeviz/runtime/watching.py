"""Turning checks on: per model (:func:`watch`) or everywhere (:func:`checking`, :func:`enable`).

>>> import torch, torch.nn as nn
>>> model = nn.Sequential(nn.Linear(4, 8), nn.GRU(8, 16))
>>> with watch(model):
...     out, h_n = model[1](torch.randn(5, 2, 8))  # (T=5, bs=2, emb=8) -> h_n (1, 2, 16)
>>> tuple(h_n.shape)
(1, 2, 16)

Hooks in, hooks out: every hook or patch installed here is removed on exit, on exceptions, and
by :func:`disable`. ``SHAPEVIZ_DISABLE=1`` makes all of these install nothing.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn as nn
from torch.utils.hooks import RemovableHandle

from shapeviz._errors import ShapeError
from shapeviz.core.dimensions import parse_names, pop, push
from shapeviz.core.model import CELL_TYPES, LAYER_TYPES, is_recurrent
from shapeviz.runtime.fastcheck import check_module_call, env_disabled

_live_handles: weakref.WeakSet[WatchHandle] = weakref.WeakSet()
_lock = threading.RLock()


def _sizes_from(names: tuple[str, ...], args: tuple, kwargs: dict[str, Any]) -> dict[str, int] | None:
    first = args[0] if args else next(iter(kwargs.values()), None)
    if not isinstance(first, torch.Tensor):
        return None
    shape = first.shape
    return {n: int(s) for n, s in zip(names, shape)}


class _InputNamer:
    """Declares the sizes named by ``inputs="bs T"`` for the duration of the outermost forward."""

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = names
        self.local = threading.local()

    def pre(self, module: nn.Module, args: tuple, kwargs: dict[str, Any] | None = None) -> None:
        stack = self.local.__dict__.setdefault("stack", [])
        key = None
        if not stack:
            sizes = _sizes_from(self.names, args, kwargs or {})
            if sizes:
                key = push(sizes)
        stack.append((module, key))

    def post(self, module: nn.Module, *_: Any) -> None:
        stack = self.local.__dict__.get("stack")
        if stack:
            _, key = stack.pop()
            if key is not None:
                pop(key)

    def root(self) -> nn.Module | None:
        stack = self.local.__dict__.get("stack")
        return stack[0][0] if stack else None

    def close(self) -> None:
        """Undo what :meth:`post` did not: torch skips ``always_call`` hooks when a forward raises a
        BaseException (``sys.exit``, Ctrl-C), which would leave the declared sizes behind."""
        stack = self.local.__dict__.pop("stack", None)
        for _, key in reversed(stack or ()):
            if key is not None:
                pop(key)


class WatchHandle:
    """What :func:`watch` returns: ``.remove()`` takes the hooks out; also a context manager."""

    def __init__(self, model: nn.Module, inputs: str | None) -> None:
        self.model = model
        self.handles: list[RemovableHandle] = []
        self.namer = namer = _InputNamer(parse_names(inputs, "watch(inputs=...)")) if inputs else None
        if env_disabled():
            return
        try:
            for path, mod in model.named_modules():
                if is_recurrent(mod):
                    self.handles.append(mod.register_forward_pre_hook(self._make_hook(path or "<model>"),
                                                                      with_kwargs=True))
            if namer is not None:
                self.handles.append(model.register_forward_pre_hook(namer.pre, with_kwargs=True))
                self.handles.append(model.register_forward_hook(namer.post, always_call=True))
        except BaseException:
            self.remove()
            raise
        with _lock:
            _live_handles.add(self)

    @staticmethod
    def _make_hook(path: str):  # type: ignore[no-untyped-def]
        def hook(module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> None:
            check_module_call(module, args, kwargs, path)
        return hook

    @property
    def active(self) -> bool:
        return bool(self.handles)

    def remove(self) -> None:
        """Remove every hook this handle installed (idempotent)."""
        while self.handles:
            self.handles.pop().remove()
        if self.namer is not None:
            self.namer.close()
        with _lock:
            _live_handles.discard(self)

    def __enter__(self) -> WatchHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def __repr__(self) -> str:
        return f"<shapeviz watch on {type(self.model).__name__}: {len(self.handles)} hooks>"


def watch(model: nn.Module, inputs: str | None = None) -> WatchHandle:
    """Check every call of every recurrent submodule of ``model``.

    ``inputs="bs T"`` names the dims of the model's first input, so a layout mistake further in
    (an ``Embedding`` output fed untransposed to a seq-first RNN) is caught.

    >>> import torch, torch.nn as nn
    >>> rnn = nn.RNN(10, 20, 2)
    >>> h = watch(rnn)
    >>> out, h_n = rnn(torch.randn(5, 3, 10))  # output (T=5, bs=3, D*h=20), h_n (2, 3, 20)
    >>> h.remove()
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"watch() takes an nn.Module, got {type(model).__name__}")
    return WatchHandle(model, inputs)


# ------------------------------------------------------------------------------- global checking
_ORIGINAL_FORWARDS: dict[type, Any] = {}
_state = {"depth": 0, "enabled": False}
_namer_handles: list[tuple[_InputNamer, list[RemovableHandle]]] = []
_root_tracker = threading.local()


def _make_forward(cls: type, original: Any) -> Any:
    def forward(self: nn.Module, *args: Any, **kwargs: Any) -> Any:
        path = None
        if not _namer_handles:
            check_module_call(self, args, kwargs, None)
        else:
            try:
                check_module_call(self, args, kwargs, None)
            except ShapeError as err:
                root = _namer_handles[-1][0].root()
                path = _path_in(root, self) if root is not None else None
                if path:
                    err.add_context(path=path)
                raise
        return original(self, *args, **kwargs)

    forward.__wrapped__ = original  # type: ignore[attr-defined]
    forward.__shapeviz__ = True  # type: ignore[attr-defined]
    forward.__doc__ = original.__doc__
    return forward


def _path_in(root: nn.Module, target: nn.Module) -> str | None:
    for path, mod in root.named_modules():
        if mod is target:
            return path or "<model>"
    return None


def _install() -> None:
    for cls in LAYER_TYPES + CELL_TYPES:
        original = cls.__dict__["forward"]
        _ORIGINAL_FORWARDS[cls] = original
        cls.forward = _make_forward(cls, original)  # type: ignore[method-assign]


def _uninstall() -> None:
    for cls, original in _ORIGINAL_FORWARDS.items():
        cls.forward = original  # type: ignore[method-assign]
    _ORIGINAL_FORWARDS.clear()


def _begin(inputs: str | None) -> tuple[_InputNamer, list[RemovableHandle]] | None:
    names = parse_names(inputs, "checking(inputs=...)") if inputs is not None else None
    with _lock:
        if _state["depth"] == 0 and not _ORIGINAL_FORWARDS:
            _install()
        _state["depth"] += 1
        if names is None:
            return None
        namer = _InputNamer(names)
        handles = [nn.modules.module.register_module_forward_pre_hook(namer.pre),
                   nn.modules.module.register_module_forward_hook(namer.post, always_call=True)]
        entry = (namer, handles)
        _namer_handles.append(entry)
        return entry


def _end(entry: tuple[_InputNamer, list[RemovableHandle]] | None) -> None:
    with _lock:
        if entry is not None:
            for h in entry[1]:
                h.remove()
            entry[0].close()
            if entry in _namer_handles:
                _namer_handles.remove(entry)
        _state["depth"] = max(0, _state["depth"] - 1)
        if _state["depth"] == 0 and not _state["enabled"]:
            _uninstall()


@contextmanager
def checking(inputs: str | None = None) -> Iterator[None]:
    """Check every call of every recurrent module, in any model, inside the block.

    >>> import torch, torch.nn as nn
    >>> cell = nn.GRUCell(8, 16)
    >>> with checking():
    ...     h = cell(torch.randn(4, 8))  # (bs=4, emb=8) -> (bs=4, h=16)
    >>> tuple(h.shape)
    (4, 16)
    """
    if env_disabled():
        yield
        return
    entry = _begin(inputs)
    try:
        yield
    finally:
        _end(entry)


def enable(inputs: str | None = None) -> None:
    """Turn on checking of every recurrent module call until :func:`disable`.

    >>> enable(); enabled()
    True
    >>> disable(); enabled()
    False
    """
    if env_disabled():
        return
    with _lock:
        if _state["enabled"]:
            return
        _state["enabled"] = True
        _state["enable_entry"] = _begin(inputs)  # type: ignore[assignment]


def disable() -> None:
    """Turn every shapeviz check off: global checking, open ``checking()`` blocks and all watches."""
    with _lock:
        _state["enabled"] = False
        _state["depth"] = 0
        _state.pop("enable_entry", None)
        for namer, handles in _namer_handles:
            for h in handles:
                h.remove()
            namer.close()
        _namer_handles.clear()
        _uninstall()
        for handle in list(_live_handles):
            handle.remove()


def enabled() -> bool:
    """True while global checking is on (``enable()`` or inside ``checking()``)."""
    return bool(_ORIGINAL_FORWARDS)
