"""Where a call ran and what its operands are called: the line of your code, its variables' names.

>>> import sys, torch
>>> X = torch.zeros(2)
>>> FrameLabels(sys._getframe(), {}).name_of(X)
'X'
>>> arg_label("1.0", ("x", "state"))
'state[0]'
"""

from __future__ import annotations

import inspect
import linecache
import os
import sys
from collections.abc import Sequence
from types import FrameType
from typing import Any

import torch
import torch.nn as nn

from shapeviz.core.frames import is_library, is_torch, torch_dir

__all__ = ["FrameLabels", "arg_label", "attr_label", "forward_params", "label", "site_of", "tensor_attrs",
           "type_name", "user_frame"]

_PARAMS: dict[Any, tuple[str, ...]] = {}


def forward_params(obj: Any) -> tuple[str, ...]:
    """The names of a module's ``forward`` (or a callable's) positional parameters; cached per class."""
    key = type(obj) if isinstance(obj, nn.Module) else None
    hit = _PARAMS.get(key) if key is not None else None
    if hit is None:
        fn = obj.forward if isinstance(obj, nn.Module) else obj
        try:
            params = inspect.signature(fn).parameters.values()
            hit = tuple(p.name if p.kind is not p.VAR_POSITIONAL else f"*{p.name}" for p in params
                        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL))
        except (TypeError, ValueError):
            hit = ()
        if key is not None:
            _PARAMS[key] = hit
    return hit


def arg_label(key: str, arg_names: Sequence[str]) -> str:
    """``"1.0"`` with parameters ``("x", "state")`` -> ``"state[0]"``; kwargs keep their key (``("*",)``); a
    ``*rest`` parameter (:func:`forward_params`) takes every argument from its place on, by its index in it.

    >>> arg_label("1.0", ("x", "*rest")), arg_label("0", ("*args",)), arg_label("0:2", ("*args",))
    ('rest[0][0]', 'args[0]', '')
    """
    head, _, rest = key.partition(".")
    if arg_names == ("*",):
        name = head
    elif head.isdigit():
        i = int(head)
        var = next((k for k, n in enumerate(arg_names) if n.startswith("*")), None)
        if var is not None and i >= var:
            name = f"{arg_names[var][1:]}[{i - var}]"
        elif i < len(arg_names):
            name = arg_names[i]
        else:
            return ""
    else:  # a run of equal shapes ("0:2"), or no parameters known
        return ""
    rest = "".join(f"[{p}]" for p in rest.split(".") if p and p not in ("data", "batch_sizes"))
    return name + rest


def type_name(obj: Any) -> str:
    """The class name of a module or object, the ``__name__`` of a function."""
    if isinstance(obj, nn.Module):  # first: a module's attribute lookup of a missing name is slow
        return type(obj).__name__
    if isinstance(obj, type):
        return obj.__name__
    if callable(obj) and hasattr(obj, "__name__"):
        return str(obj.__name__)
    return type(obj).__name__


_WRAPPERS = tuple(os.path.join(torch_dir(), *f.split("/")) for f in (
    "overrides.py", "_tensor.py", "functional.py", "nn/functional.py", "utils/_device.py",
    "_jit_internal.py", "utils/_contextlib.py", "autograd/grad_mode.py", "_compile.py"))


_CODE_KINDS: dict[int, tuple[Any, int]] = {}
"""id(code object) -> (the code, _YOURS, _WRAPPER (shapeviz, torch's dispatch wrappers) or _TORCH). Keyed by id: a
code object's own hash is computed anew from its fields at each lookup (a hot path); the code kept in the value
keeps its id from being reused while it is cached."""
_YOURS, _WRAPPER, _TORCH = 0, 1, 2


def _code_kind(code: Any) -> int:
    fn = code.co_filename
    kind = _YOURS if not is_library(fn) else _TORCH if is_torch(fn) and not fn.startswith(_WRAPPERS) else _WRAPPER
    if len(_CODE_KINDS) >= 8192:
        _CODE_KINDS.clear()
    _CODE_KINDS[id(code)] = (code, kind)
    return kind


def user_frame(direct: bool = False) -> FrameType | None:
    """The innermost frame outside torch and shapeviz: the line of your code that ran the op.

    ``direct=True``: None when a torch function (not just a dispatch wrapper such as
    ``Tensor.__matmul__`` or ``F.embedding``) stands between your code and the op: an op that
    ``pack_padded_sequence`` runs for you is not one of yours."""
    f: FrameType | None = sys._getframe(2)
    kinds = _CODE_KINDS
    while f is not None:
        code = f.f_code
        hit = kinds.get(id(code))
        kind = hit[1] if hit is not None else _code_kind(code)
        if kind == _YOURS:
            return f
        if direct and kind == _TORCH:
            return None
        f = f.f_back
    return None


_SITES: dict[tuple[int, int], tuple[str, str]] = {}
"""(id(code object), offset of the instruction running) -> what :func:`site_of` gives: keyed by id, as
:data:`_CODE_KINDS` is, and by the instruction rather than the line (a frame's line is found by reading its code's
line table up to the instruction, at each ``f_lineno``)."""
_SITE_CODES: list[Any] = []  # the code objects of _SITES' keys: kept, so that their ids are not reused


def site_of(frame: FrameType) -> tuple[str, str]:
    """``("model.py:14", "H = torch.tanh(X @ W + b)")`` of a frame's current line (cached per instruction)."""
    code = frame.f_code
    key = (id(code), frame.f_lasti)
    hit = _SITES.get(key)
    if hit is None:
        fn = code.co_filename
        hit = (f"{os.path.basename(fn)}:{frame.f_lineno}", linecache.getline(fn, frame.f_lineno).strip())
        if len(_SITES) < 8192:
            _SITES[key] = hit
            _SITE_CODES.append(code)
    return hit


class FrameLabels:
    """Variable names of the tensors a frame can see (its locals, then ``self``'s tensors), read
    only when a record asks for one.

    >>> import sys, torch
    >>> X = torch.zeros(2)
    >>> FrameLabels(sys._getframe(), {}).name_of(X)
    'X'
    """

    __slots__ = ("frame", "locals", "owner", "owners")

    def __init__(self, frame: FrameType, owners: dict[int, tuple[list[str], dict[int, str]]]) -> None:
        self.frame = frame
        self.locals: dict[str, Any] | None = None
        self.owner: Any = None
        self.owners = owners  # id(module) -> its tensor attributes (see _module_attrs), read once per trace

    def name_of(self, t: Any) -> str:
        """The variable ``t`` was read from (``"X"``, ``"self.W_xh"``), or ``""``: the first local that is
        ``t``, else the first of ``self``'s tensor attributes that holds it now."""
        loc = self.locals
        if loc is None:
            loc = self.locals = self.frame.f_locals
            self.owner = loc.get("self")
        for name, v in loc.items():
            if v is t:
                return name
        return self.attr_of(t)

    def attr_of(self, t: Any) -> str:
        """``"self.W_xh"``: the first of ``self``'s tensor attributes that holds ``t`` now, or ``""``."""
        if self.locals is None:
            self.locals = self.frame.f_locals
            self.owner = self.locals.get("self")
        return attr_label(self.owner, t, self.owners)


def attr_label(me: Any, t: Any, owners: dict[int, tuple[list[str], dict[int, str]]]) -> str:
    """``"self.W_xh"``: the first of ``me``'s tensor attributes (``me`` a frame's ``self``) that holds ``t`` now, or
    ``""``; ``owners`` caches a module's attributes for the trace (see :class:`FrameLabels`).

    >>> import torch.nn as nn
    >>> lin = nn.Linear(2, 3)
    >>> attr_label(lin, lin.weight, {}), attr_label(None, lin.weight, {})
    ('self.weight', '')
    """
    if me is None:
        return ""
    if not isinstance(me, nn.Module):
        for name, v in tensor_attrs(me):
            if v is t:
                return f"self.{name}"
        return ""
    known = owners.get(id(me))
    if known is None:
        known = owners[id(me)] = _module_attrs(me)
    plain, held = known
    d = me.__dict__
    for name in plain:  # tensors kept as plain attributes (self.h = ...): what each holds now
        if d.get(name) is t:
            return f"self.{name}"
    name = held.get(id(t))  # a parameter or buffer: by identity, checked to be held still
    if name is not None and name not in d and (me._parameters.get(name) is t or me._buffers.get(name) is t):
        return f"self.{name}"
    # one set during the forward (a buffer updated as self.buf = ..., a parameter replaced): looked for (a
    # parameter is never a plain Tensor; type() rather than isinstance: nn.Parameter's metaclass is slow)
    params = me._parameters.items() if type(t) is not torch.Tensor else ()
    for name, v in (*params, *me._buffers.items()):
        if v is t and name not in d:
            return f"self.{name}"
    return ""


def _module_attrs(me: nn.Module) -> tuple[list[str], dict[int, str]]:
    """A module's tensor attributes, read once per trace: the names of those kept in its ``__dict__``, and
    id -> name of its parameters and buffers (the first name of each)."""
    plain = [name for name, v in me.__dict__.items() if isinstance(v, torch.Tensor)]
    held: dict[int, str] = {}
    for name, v in (*me._parameters.items(), *me._buffers.items()):
        if isinstance(v, torch.Tensor) and name not in plain:
            held.setdefault(id(v), name)
    return plain, held


def tensor_attrs(me: Any) -> list[tuple[str, torch.Tensor]]:
    """(name, tensor) of an object's tensor attributes, a module's parameters and buffers included."""
    attrs = list(getattr(me, "__dict__", {}).items())
    if isinstance(me, nn.Module):
        attrs += list(me._parameters.items()) + list(me._buffers.items())
    return [(name, v) for name, v in attrs if isinstance(v, torch.Tensor)]


def label(t: Any) -> str:
    """The variable of your code that holds ``t`` (``"e"``), else ``"x"``."""
    frame = user_frame()
    found = [k for k, v in (frame.f_locals.items() if frame is not None else ()) if v is t]
    return found[0] if found else "x"
