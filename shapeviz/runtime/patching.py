"""The patched ``forward`` of ``nn.RNN/LSTM/GRU`` and their cells: put on while anything is checked, taken off
where shapeviz's own wrapper is still the one in place.

>>> import torch, torch.nn as nn
>>> seen = []
>>> sync(True, lambda module, x, hx: seen.append(tuple(x.shape)))
>>> _ = nn.GRU(4, 6)(torch.randn(5, 2, 4)); sync(False, None)
>>> seen, nn.GRU.__dict__["forward"].__module__  # checked once, then torch's own forward is back
([(5, 2, 4)], 'torch.nn.modules.rnn')

A layer's patched ``forward`` runs torch's own forward without its ``self.check_forward_args(...)`` statement when
shapeviz's check verified the call (:func:`unchecked_forward`): shapeviz's check subsumes torch's, so a watched
call makes one check, not two. Any call shapeviz did not verify (``SHAPEVIZ_DISABLE``, compiling, a
``PackedSequence``, a subclass that overrides ``check_forward_args``) runs torch's forward as it is; a cell calls no
such method, so its forward always runs as it is.

If a library wraps a patched ``forward`` after shapeviz, taking shapeviz's out would drop the library's too:
it stays (:data:`LEFT`), inert until something is checked again, when it checks once more without being
wrapped a second time; if the library later unwraps itself, shapeviz patches afresh.
"""

from __future__ import annotations

import ast
import functools
import inspect
import textwrap
import types
from collections.abc import Callable
from typing import Any

import torch.nn as nn

from shapeviz.core.model import CELL_TYPES, LAYER_TYPES
from shapeviz.runtime.fastcheck import call_args

__all__ = ["INSTALLED", "LEFT", "ORIGINAL_FORWARDS", "make_forward", "sync", "unchecked_forward"]

ORIGINAL_FORWARDS: dict[type, Any] = {}  # torch's forward of each patched class
INSTALLED: dict[type, Any] = {}  # the wrapper shapeviz put on each class, while it is patched
LEFT: dict[type, Any] = {}  # shapeviz's wrapper left under another library's (that one wrapped ours)


def make_forward(original: Any, check: Callable[[nn.Module, Any, Any], Any],
                 skip: tuple[Any, Any] | None = None) -> Any:
    """A base class's ``forward`` that asks ``check(module, input, hx)`` first, then runs ``original``.

    ``skip`` is ``(check_forward_args, unchecked)`` for a layer: where ``check`` returns True (shapeviz verified
    the call, everything torch's ``check_forward_args`` compares included) and the module's class keeps torch's
    ``check_forward_args``, the wrapper runs ``unchecked`` (:func:`unchecked_forward`: torch's forward without
    that one call) instead: one check a call, not two. Anything else runs torch's own forward.
    """
    code = original.__code__
    cfa, unchecked = skip if skip is not None else (None, None)
    if (code.co_varnames[:code.co_argcount] == ("self", "input", "hx") and original.__defaults__ == (None,)
            and not code.co_kwonlyargcount and not code.co_flags & (inspect.CO_VARARGS | inspect.CO_VARKEYWORDS)):
        if unchecked is not None:
            def forward(self: nn.Module, input: Any, hx: Any = None) -> Any:
                if check(self, input, hx) is True and type(self).check_forward_args is cfa:  # type: ignore[attr-defined]
                    return unchecked(self, input, hx)  # shapeviz's check stood in for torch's
                return original(self, input, hx)
        else:
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


class _Strip(ast.NodeTransformer):
    """Turns each statement ``self.check_forward_args(...)`` into ``pass``, counting them."""

    def __init__(self) -> None:
        self.removed = 0

    def visit_Expr(self, node: ast.Expr) -> ast.AST:
        call = node.value
        if (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
                and call.func.attr == "check_forward_args" and isinstance(call.func.value, ast.Name)
                and call.func.value.id == "self"):
            self.removed += 1
            return ast.copy_location(ast.Pass(), node)
        return node


_UNCHECKED: dict[Any, Any] = {}


def unchecked_forward(original: Any) -> Any:
    """torch's ``forward`` of a layer with its ``self.check_forward_args(...)`` statements left out, built once
    from torch's own source (in torch's module namespace, with torch's file and line numbers); None where that
    cannot be done exactly (no source, a closure, the name used any other way), and then torch's forward runs
    with its own check as before.

    >>> import torch.nn as nn
    >>> f = unchecked_forward(nn.GRU.forward)
    >>> "check_forward_args" in nn.GRU.forward.__code__.co_names, "check_forward_args" in f.__code__.co_names
    (True, False)
    """
    if original in _UNCHECKED:
        return _UNCHECKED[original]
    _UNCHECKED[original] = new = _strip(original)
    return new


def _strip(original: Any) -> Any:
    code = getattr(original, "__code__", None)
    if code is None or code.co_freevars or "check_forward_args" not in code.co_names:
        return None
    try:
        lines, first = inspect.getsourcelines(original)
        tree = ast.parse(textwrap.dedent("".join(lines)))
    except (OSError, TypeError, SyntaxError, IndentationError):
        return None
    fn = tree.body[0] if len(tree.body) == 1 else None
    if not isinstance(fn, ast.FunctionDef) or fn.name != original.__name__:
        return None
    fn.decorator_list = []
    strip = _Strip()
    strip.visit(fn)
    if not strip.removed or any(isinstance(n, ast.Attribute) and n.attr == "check_forward_args" for n in ast.walk(fn)):
        return None
    ast.increment_lineno(tree, first - 1)
    namespace: dict[str, Any] = {}
    exec(compile(tree, code.co_filename, "exec"), original.__globals__, namespace)  # torch's source, not user input
    new = namespace[fn.name]
    if (new.__code__.co_varnames != code.co_varnames
            or set(new.__code__.co_names) != set(code.co_names) - {"check_forward_args"}):
        return None  # pragma: no cover - the source on disk is not the code torch runs
    new.__defaults__, new.__kwdefaults__ = original.__defaults__, original.__kwdefaults__
    new.__qualname__, new.__module__, new.__doc__ = original.__qualname__, original.__module__, original.__doc__
    return new


def sync(wanted: bool, check: Callable[[nn.Module, Any, Any], Any]) -> None:
    """Patch the six base classes' ``forward`` while ``wanted``; restore them as soon as not (call with a lock)."""
    if wanted and not ORIGINAL_FORWARDS:
        for cls in LAYER_TYPES + CELL_TYPES:
            if cls in LEFT and _inside(cls.__dict__["forward"], LEFT[cls]):
                continue  # still inside another library's wrapper: it checks again from now on
            LEFT.pop(cls, None)
            original = cls.__dict__["forward"]
            ORIGINAL_FORWARDS[cls] = original
            skip = None
            if cls in LAYER_TYPES:
                unchecked = unchecked_forward(original)
                skip = None if unchecked is None else (getattr(cls, "check_forward_args", None), unchecked)
            cls.forward = INSTALLED[cls] = make_forward(original, check, skip)  # type: ignore[method-assign]
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
                cls.forward = ours.__wrapped__  # type: ignore[method-assign,union-attr]
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
