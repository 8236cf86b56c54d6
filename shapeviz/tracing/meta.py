"""The ``meta`` device mode of a dry run: tensors the forward makes or moves stay on ``meta``, and an
operation that needs tensor values stops the run with a :class:`~shapeviz.DryRunError`.

>>> import torch
>>> with MetaMode():
...     h0 = torch.zeros(1, 2, 8, device="cpu").to("cuda")  # a forward's `torch.zeros(...).to(device)`
>>> tuple(h0.shape), h0.device.type
((1, 2, 8), 'meta')

* factory calls (``torch.zeros``, ``ones``, ``empty``, ``full``, ``rand``, ``randn``, ``randint``,
  ``arange``, ``tensor`` …) are made on ``meta`` even when they name a device; so are ``*_like`` and
  ``Tensor.new_*`` calls that name one (without a device they follow their tensor, which is meta);
* ``.to(device)``, ``.cuda()`` and ``.cpu()`` keep (or put) the tensor on ``meta``; a dtype given to
  ``.to`` still applies;
* reading a value (``.item()``, ``.tolist()``, ``.numpy()``, ``bool(t)`` as in ``if t:``, ``int(t)``,
  ``float(t)``, indexing with a tensor) or an operation whose result's shape depends on values
  (``nonzero``, a boolean mask ``t[mask]``, ``masked_select``, ``unique`` …) raises
  :class:`~shapeviz.DryRunError` naming the user's line, before torch's bare meta error.
"""

from __future__ import annotations

import linecache
import sys
from typing import Any

import torch
from torch import Tensor
from torch.overrides import TorchFunctionMode

from shapeviz._errors import DryRunError
from shapeviz.core.frames import is_library

__all__ = ["META", "MetaMode", "user_line"]

META = torch.device("meta")

_FACTORIES = frozenset({
    torch.zeros, torch.ones, torch.empty, torch.full, torch.rand, torch.randn, torch.randint, torch.randperm,
    torch.arange, torch.range, torch.linspace, torch.logspace, torch.eye, torch.tensor, torch.as_tensor,
    torch.asarray, torch.scalar_tensor, torch.empty_strided, torch.tril_indices, torch.triu_indices,
})
_FOLLOWERS = frozenset({  # follow their tensor's device unless they name one
    torch.zeros_like, torch.ones_like, torch.empty_like, torch.full_like, torch.rand_like, torch.randn_like,
    torch.randint_like, Tensor.new_zeros, Tensor.new_ones, Tensor.new_empty, Tensor.new_full, Tensor.new_tensor,
})
_MOVES = frozenset({Tensor.to, Tensor.cuda, Tensor.cpu})

_READ = "reads a value of the tensor"
_VALUE_READS: dict[Any, tuple[str, str]] = {  # func -> (how the user wrote it, what it does)
    Tensor.item: ("Tensor.item()", _READ),
    Tensor.tolist: ("Tensor.tolist()", "reads the tensor's values"),
    Tensor.numpy: ("Tensor.numpy()", "reads the tensor's values"),
    Tensor.__bool__: ("bool(tensor) (an `if`/`while`/`and`/`or`/`not` on a tensor)", _READ),
    Tensor.__int__: ("int(tensor)", _READ),
    Tensor.__float__: ("float(tensor)", _READ),
    Tensor.__index__: ("a tensor used as a Python index or size", _READ),
    Tensor.__complex__: ("complex(tensor)", _READ),
}
_SHAPE = "makes a result whose shape depends on the tensor's values"
_VALUE_SHAPES: dict[Any, str] = {
    torch.nonzero: "torch.nonzero", Tensor.nonzero: "Tensor.nonzero()", torch.argwhere: "torch.argwhere",
    torch.masked_select: "torch.masked_select", Tensor.masked_select: "Tensor.masked_select()",
    torch.unique: "torch.unique", Tensor.unique: "Tensor.unique()",
    torch.unique_consecutive: "torch.unique_consecutive", torch.bincount: "torch.bincount",
    Tensor.bincount: "Tensor.bincount()",
}


def _on_meta(args: tuple) -> bool:
    return any(isinstance(a, Tensor) and a.device.type == "meta" for a in args)


def _bool_mask(index: Any) -> bool:
    items = index if isinstance(index, tuple) else (index,)
    return any(isinstance(i, Tensor) and i.dtype in (torch.bool, torch.uint8) for i in items)


def user_line() -> tuple[str, str, str]:
    """``("model.py:42", "in viterbi", "best = score.argmax().item()")``: the innermost frame of user code.

    >>> source, where, line = user_line()
    >>> where
    'in <module>'
    """
    f = sys._getframe(1)
    while f is not None and (is_library(f.f_code.co_filename) or f.f_code.co_filename.startswith("<frozen")):
        f = f.f_back  # type: ignore[assignment]
    if f is None:
        return "?", "", ""
    filename, lineno = f.f_code.co_filename, f.f_lineno
    return f"{filename}:{lineno}", f"in {f.f_code.co_name}", linecache.getline(filename, lineno).strip()


def _stop(operation: str, reason: str) -> DryRunError:
    source, where, line = user_line()
    return DryRunError(operation=operation, reason=reason, source=source, function=where, line=line)


def _move(func: Any, args: tuple, kwargs: dict[str, Any]) -> Any:
    t = args[0]
    dtype = None
    if func is Tensor.to:
        device, dtype, _, _ = torch._C._nn._parse_to(*args[1:], **kwargs)
        if device is None:
            return func(*args, **kwargs)  # a dtype change only
    out = t if t.device.type == "meta" else torch.empty_like(t, device=META)
    return out if dtype is None else out.to(dtype)


class MetaMode(TorchFunctionMode):
    """Keeps what the forward makes on ``meta`` and stops at the first read of a value (see the module)."""

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if func in _FACTORIES or (func in _FOLLOWERS and kwargs.get("device") is not None):
            kwargs = {**kwargs, "device": META}
        elif func in _MOVES and isinstance(args[0], Tensor):
            return _move(func, args, kwargs)
        elif func in _VALUE_READS and _on_meta(args):
            raise _stop(*_VALUE_READS[func])
        elif func in _VALUE_SHAPES and _on_meta(args):
            raise _stop(_VALUE_SHAPES[func], _SHAPE)
        elif func is Tensor.__getitem__ and _on_meta(args) and len(args) > 1 and _bool_mask(args[1]):
            raise _stop("indexing with a boolean mask (t[mask])", _SHAPE)
        return func(*args, **kwargs)
