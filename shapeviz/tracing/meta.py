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
  :class:`~shapeviz.DryRunError` naming the user's line, before torch's bare meta error;
* packed sequences: torch needs a packed batch's ``lengths`` (and the sorting indices made from them)
  on the CPU, with values. The calls ``torch.nn.utils.rnn`` makes itself keep them there: a Python
  list of lengths, a CPU tensor of them, or a CPU integer tensor given to the dry run as an input
  (:class:`MetaMode` ``cpu_inputs``), or ``torch.tensor(lengths)`` of a list of ints in the forward
  (a meta tensor whose CPU twin ``torch.nn.utils.rnn`` gets). Lengths on ``meta`` (computed by the
  forward) stop the run with a :class:`~shapeviz.DryRunError` naming the line that packs.

>>> from torch.nn.utils.rnn import pack_padded_sequence
>>> with MetaMode():
...     packed = pack_padded_sequence(torch.zeros(2, 5, 8, device="meta"), [3, 5], batch_first=True,
...                                   enforce_sorted=False)
>>> tuple(packed.data.shape), packed.batch_sizes.tolist()
((8, 8), [2, 2, 2, 1, 1])
"""

from __future__ import annotations

import linecache
import os
import sys
from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.utils.rnn as _rnn_utils
from torch import Tensor
from torch.overrides import TorchFunctionMode

from shapeviz._errors import DryRunError
from shapeviz.core.frames import is_library
from shapeviz.core.model import Conventions

__all__ = ["META", "RNN_KERNELS", "MetaMode", "rnn_kernel_on_meta", "user_line"]

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
_CASTS = frozenset({Tensor.to, Tensor.int, Tensor.long, Tensor.short, Tensor.type})

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


_RNN_UTILS = _rnn_utils.__file__  # pack_padded_sequence & co.: their lengths and indices stay on the CPU
_PACK = frozenset({"_pack_padded_sequence"})
_FROM_DATA = frozenset({torch.tensor, torch.as_tensor, torch.asarray, torch.LongTensor, torch.IntTensor})


def _int_list(data: Any) -> bool:
    """A short Python list or tuple of ints (lengths written in your code), not a tensor."""
    return isinstance(data, (list, tuple)) and 0 < len(data) <= 1 << 16 and \
        all(isinstance(v, int) and not isinstance(v, bool) for v in data)
_PACK_REASON = ("needs the lengths' values on the CPU (torch requires a 1D CPU int64 tensor), but they are on "
                "`meta`; give the lengths as a Python list or a CPU tensor (an input of the dry run, or "
                "`lengths.cpu()` of one)")


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


_PASS_THROUGH = (os.path.dirname(os.path.dirname(os.path.abspath(__file__))), torch.overrides.__file__)


def _from_rnn_utils() -> bool:
    """Whether the op being dispatched was called by ``torch.nn.utils.rnn`` itself: the first frame
    above this mode that is neither shapeviz (another mode that passed the op on) nor torch's dispatch."""
    f = sys._getframe(2)
    while f is not None and f.f_code.co_filename.startswith(_PASS_THROUGH):
        f = f.f_back  # type: ignore[assignment]
    return f is not None and f.f_code.co_filename == _RNN_UTILS


class MetaMode(TorchFunctionMode):
    """Keeps what the forward makes on ``meta`` and stops at the first read of a value (see the module).

    ``cpu_inputs``: pairs (meta stand-in, CPU original) of the integer CPU tensors the dry run was given
    (a packed batch's lengths): where ``torch.nn.utils.rnn`` reads one, it gets the original.
    """

    def __init__(self, cpu_inputs: Iterable[tuple[Tensor, Tensor]] = ()) -> None:
        super().__init__()
        self.cpu_inputs = {id(m): (m, c) for m, c in cpu_inputs}

    def _originals(self, args: tuple) -> tuple:
        out = []
        for a in args:
            hit = self.cpu_inputs.get(id(a)) if isinstance(a, Tensor) else None
            out.append(hit[1] if hit is not None and hit[0] is a else a)
        return tuple(out)

    def _from_data(self, func: Any, args: tuple, kwargs: dict[str, Any]) -> Tensor:
        """``torch.tensor(lengths)`` of a list of ints: a meta tensor, with its CPU twin kept for
        ``torch.nn.utils.rnn`` (the values are in your code, not in a tensor)."""
        cpu = func(*args, **{**kwargs, "device": "cpu"})
        out = torch.empty_like(cpu, device=META)
        if cpu.dim() <= 1 and not cpu.is_floating_point():
            self.cpu_inputs[id(out)] = (out, cpu)
        return out

    def _rnn_utils_call(self, func: Any, args: tuple, kwargs: dict[str, Any]) -> Any:
        """A call by ``torch.nn.utils.rnn``: lengths and their indices stay where torch wants them."""
        args = self._originals(args)
        if getattr(func, "__name__", "") in _PACK and len(args) > 1 and isinstance(args[1], Tensor) \
                and args[1].device.type == "meta":
            raise _stop("pack_padded_sequence(input, lengths)", _PACK_REASON)
        device = kwargs.get("device")
        cpu = device is not None and torch.device(device).type == "cpu"
        if (func in _FACTORIES and not cpu) or (func in _FOLLOWERS and device is not None and not cpu):
            kwargs = {**kwargs, "device": META}
        elif func in _MOVES and isinstance(args[0], Tensor):
            t = args[0]
            if t.device.type == "cpu" and not t.is_floating_point():  # lengths, sorting indices: kept on the CPU
                dtype = torch._C._nn._parse_to(*args[1:], **kwargs)[1] if func is Tensor.to else None
                return t if dtype is None else t.to(dtype)
            return _move(func, args, kwargs)
        return func(*args, **kwargs)

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if _from_rnn_utils():
            return self._rnn_utils_call(func, args, kwargs)
        if func in _FROM_DATA and args and _int_list(args[0]):
            return self._from_data(func, args, kwargs)
        if func in _CASTS and args and id(args[0]) in self.cpu_inputs:
            return self._cast(func, args, kwargs)
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
        try:
            return func(*args, **kwargs)
        except RuntimeError as e:  # pad_packed_sequence's CPU lengths met a meta tensor: shapes only, on meta
            if "device meta" not in str(e) or not _on_meta(args):
                raise
            return func(*[_on_meta_too(a) for a in args], **{k: _on_meta_too(v) for k, v in kwargs.items()})

    def _cast(self, func: Any, args: tuple, kwargs: dict[str, Any]) -> Any:
        """``lengths.int()`` of a stand-in whose CPU original the dry run holds: the cast's CPU twin is kept too,
        for ``torch.nn.utils.rnn`` (a move to a device takes the usual path)."""
        if func is Tensor.to and torch._C._nn._parse_to(*args[1:], **kwargs)[0] is not None:
            return _move(func, args, kwargs)
        meta, cpu = self.cpu_inputs[id(args[0])]
        out = func(*args, **kwargs)
        if meta is args[0] and isinstance(out, Tensor) and out is not meta:
            self.cpu_inputs[id(out)] = (out, func(cpu, *args[1:], **kwargs))
        return out


def _on_meta_too(a: Any) -> Any:
    """A CPU tensor as a meta one of its shape and dtype (anything else as it is)."""
    return torch.empty_like(a, device=META) if isinstance(a, Tensor) and a.device.type == "cpu" else a


RNN_KERNELS = frozenset({torch._VF.lstm, torch._VF.gru, torch._VF.rnn_tanh, torch._VF.rnn_relu})  # type: ignore[attr-defined]
"""The kernels of ``nn.LSTM``, ``nn.GRU`` and ``nn.RNN`` (what their forward calls)."""


def rnn_kernel_on_meta(conv: Conventions, args: tuple) -> tuple[Tensor, ...] | None:
    """The results of a recurrent layer's kernel called with ``args`` on the ``meta`` device, shaped by its
    Conventions ``conv``; None where the kernel must run (not on meta, a cell, unbatched input).

    PyTorch runs meta recurrent kernels step by step (minutes for long sequences); the shapes are known
    without running them. The module's own argument checks have already run.

    >>> import torch.nn as nn
    >>> from shapeviz.core.model import conventions
    >>> x = torch.empty(7, 2, 4, device="meta")
    >>> [tuple(t.shape) for t in rnn_kernel_on_meta(conventions(nn.GRU(4, 8)), (x, torch.empty(1, 2, 8)))]
    [(7, 2, 8), (1, 2, 8)]
    """
    if conv.cell or not args or not isinstance(args[0], Tensor):
        return None
    x = args[0]
    if x.device.type != "meta":
        return None
    if isinstance(args[1], Tensor) and args[1].dim() == 1:  # packed: (data, batch_sizes, hx, …)
        bsz = args[1]
        if bsz.device.type == "meta":
            return None
        counts = bsz.tolist()
        lengths = [sum(1 for c in counts if c > i) for i in range(counts[0] if counts else 0)]
        shapes = conv.shapes(lengths=lengths)
    else:
        seq = conv.layout.seq_sizes(tuple(x.shape))
        if seq is None or not seq[2]:  # unbatched: run the kernel
            return None
        shapes = conv.shapes(T=int(seq[0] or 0), bs=int(seq[1] or 0))
    results = ("output",) + conv.result_names[1:]
    return tuple(torch.empty(shapes[r], dtype=x.dtype, device="meta") for r in results)  # type: ignore[misc, arg-type]
