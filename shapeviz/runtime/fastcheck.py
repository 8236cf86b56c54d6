"""The fast path: does a call fit its recurrent module? A handful of integer compares.

>>> import torch, torch.nn as nn
>>> rnn = nn.RNN(10, 20, num_layers=2)
>>> check_call(rnn, torch.randn(5, 3, 10), torch.zeros(2, 3, 20))  # (T=5, bs=3, emb=10): fine
>>> check_call(rnn, torch.randn(5, 3, 10), torch.zeros(3, 20))
Traceback (most recent call last):
...
shapeviz.ShapeError: [hidden_ndim] RNN(10, 20, num_layers=2): argument `h_0`
...

On failure (and only then) :mod:`shapeviz.runtime.diagnosis` works out which mistake it is and builds the
message. The fast path allocates nothing, formats nothing and never reads tensor data.
"""

from __future__ import annotations

import os
import weakref
from typing import Any

import torch
from torch import Tensor
from torch.nn.utils.rnn import PackedSequence

from shapeviz.core.dimensions import _declared
from shapeviz.core.model import Conventions, conventions, key_getter

# older torch (the range in pyproject starts at 2.1) lacks these two names
_autocast = getattr(torch._C, "_is_any_autocast_enabled", torch.is_autocast_enabled)
is_compiling = getattr(torch.compiler, "is_compiling", None) or torch._dynamo.is_compiling


def env_disabled() -> bool:
    """True when ``SHAPEVIZ_DISABLE`` is set to a true value (1, true, yes, on)."""
    return os.environ.get("SHAPEVIZ_DISABLE", "").strip().lower() in ("1", "true", "yes", "on")


class Spec:
    """Plain ints precomputed from a module's :class:`Conventions` for the fast path."""

    __slots__ = ("bf", "cell", "conv", "emb", "getkey", "hc", "hh", "key", "ld", "lstm", "ref", "wname")

    def __init__(self, module: torch.nn.Module, conv: Conventions) -> None:
        self.conv = conv
        self.cell = conv.cell
        self.getkey = key_getter(module)
        self.key = self.getkey(module.__dict__)
        self.ref = weakref.ref(module, _forget)
        self.lstm = conv.is_lstm
        self.bf = conv.batch_first
        self.emb = conv.input_size
        self.hh = conv.h_out  # last dim of h
        self.hc = conv.hidden_size  # last dim of c
        self.ld = conv.stacked
        self.wname = "weight_ih" if conv.cell else "weight_ih_l0"


# id(module) -> Spec; the Spec's weakref drops the entry when the module dies (cheaper than a
# WeakKeyDictionary lookup, which builds a weakref on every call)
_specs: dict[int, Spec] = {}


def _forget(ref: weakref.ref) -> None:
    for k, s in list(_specs.items()):
        if s.ref is ref:
            del _specs[k]


def spec_for(module: torch.nn.Module) -> Spec:
    """The cached fast-path :class:`Spec` of ``module`` (rebuilt if its configuration changed)."""
    s = _specs.get(id(module))
    if s is None or s.ref() is not module or s.getkey(module.__dict__) != s.key:
        s = Spec(module, conventions(module))
        _specs[id(module)] = s
    return s


def weight(module: torch.nn.Module, s: Spec) -> Tensor:
    """The first input weight: its dtype and device are the module's (works under functional_call)."""
    w = module._parameters.get(s.wname)
    return w if w is not None else getattr(module, s.wname)


def bind(args: tuple, kwargs: dict[str, Any]) -> tuple[Any, Any]:
    """``(input, hx)`` from a recurrent module's call arguments."""
    if args:
        x = args[0]
        hx = args[1] if len(args) > 1 else kwargs.get("hx")
    else:
        x = kwargs.get("input")
        hx = kwargs.get("hx")
    return x, hx


def _state_ok(t: Any, want: tuple[int, ...], dtype: torch.dtype | None, device: torch.device) -> bool:
    return (isinstance(t, Tensor) and t.shape == want and (dtype is None or t.dtype == dtype)
            and t.device == device)


def fast_ok(module: torch.nn.Module, s: Spec, x: Any, hx: Any) -> bool:
    """True when the call fits; False hands over to :func:`shapeviz.runtime.diagnosis.diagnose`."""
    decl = _declared.get()
    if not isinstance(x, Tensor):
        if isinstance(x, PackedSequence) and not s.cell:
            return _packed_ok(module, s, x, hx, decl)
        return False  # non-tensors take the slow path
    sh = x.shape
    nd = len(sh)
    if s.cell:
        if nd == 2:
            bs = sh[0]
            if decl is not None and cell_swapped(decl, bs):
                return False
            want_h: tuple[int, ...] = (bs, s.hc)
        elif nd == 1:
            want_h = (s.hc,)
        else:
            return False
        want_c = want_h
    else:
        if nd == 3:
            if s.bf:
                bs, T = sh[0], sh[1]
            else:
                T, bs = sh[0], sh[1]
            if decl is not None and layer_swapped(decl, bs, T):
                return False
            want_h, want_c = (s.ld, bs, s.hh), (s.ld, bs, s.hc)
        elif nd == 2:
            T = sh[0]
            if decl is not None and unbatched_ambiguous(decl, T):
                return False
            want_h, want_c = (s.ld, s.hh), (s.ld, s.hc)
        else:
            return False
        if T == 0:
            return False
    if sh[-1] != s.emb:
        return False
    w = weight(module, s)
    dtype = x.dtype
    if dtype != w.dtype and not (not s.cell and _autocast()):
        return False
    device = x.device
    if device != w.device:
        return False
    return _states_ok(s, hx, want_h, want_c, dtype, device)


def _states_ok(s: Spec, hx: Any, want_h: tuple[int, ...], want_c: tuple[int, ...], dtype: torch.dtype,
               device: torch.device) -> bool:
    if hx is None:
        return True
    if s.lstm:
        if not isinstance(hx, (tuple, list)) or len(hx) != 2:
            return False
        # torch's LSTMCell promotes c_0's dtype; everywhere else state dtype must match
        return _state_ok(hx[0], want_h, dtype, device) and _state_ok(
            hx[1], want_c, None if s.cell else dtype, device)
    return _state_ok(hx, want_h, dtype, device)


def _packed_ok(module: torch.nn.Module, s: Spec, x: PackedSequence, hx: Any, decl: dict | None) -> bool:
    data, batch_sizes = x.data, x.batch_sizes
    if not isinstance(data, Tensor) or data.dim() != 2 or data.shape[1] != s.emb:
        return False
    if batch_sizes.dim() != 1 or batch_sizes.numel() == 0 or batch_sizes.device.type != "cpu":
        return False
    bs = int(batch_sizes[0])  # a CPU tensor, as torch reads it: no device sync
    if decl is not None and packed_swapped(decl, bs, batch_sizes.numel()):
        return False
    w = weight(module, s)
    if (data.dtype != w.dtype and not _autocast()) or data.device != w.device:
        return False
    return _states_ok(s, hx, (s.ld, bs, s.hh), (s.ld, bs, s.hc), data.dtype, data.device)


def packed_swapped(decl: dict[str, int], bs: int, steps: int) -> bool:
    """Declared sizes show a batch-first padded tensor was packed without ``batch_first=True``."""
    dbs, dT = decl.get("bs"), decl.get("T")
    return dbs is not None and dT is not None and dbs != dT and bs == dT and steps == dbs


def layer_swapped(decl: dict[str, int], bs: int, T: int) -> bool:
    dbs = decl.get("bs")
    if dbs is not None:
        return bs != dbs and dbs == T
    dT = decl.get("T")
    return dT is not None and dT != T and bs == dT


def unbatched_ambiguous(decl: dict[str, int], first: int) -> bool:
    dbs = decl.get("bs")
    return dbs is not None and first == dbs and decl.get("T", -1) != first


def cell_swapped(decl: dict[str, int], first: int) -> bool:
    dbs, dT = decl.get("bs"), decl.get("T")
    return dbs is not None and dT is not None and first != dbs and first == dT


def check_call(module: torch.nn.Module, *args: Any, **kwargs: Any) -> None:
    """Check a call ``module(*args, **kwargs)`` against the module's conventions.

    Raises :class:`~shapeviz.ShapeError` with a stable code and a hint; returns None when fine.

    >>> import torch, torch.nn as nn
    >>> check_call(nn.LSTMCell(8, 16), torch.randn(4, 8))  # (bs=4, emb=8) -> fine
    """
    check_module_call(module, args, kwargs, None)


def check_module_call(module: torch.nn.Module, args: tuple, kwargs: dict[str, Any], path: str | None) -> None:
    """:func:`check_call` with the module's path inside a model (used by watch/checking)."""
    if _ENV_DISABLED:
        return
    if is_compiling():
        return  # inside torch.compile: no check, no graph break, no op in the graph (README: torch.compile)
    s = _specs.get(id(module))
    if s is None or s.ref() is not module or s.getkey(module.__dict__) != s.key:
        s = spec_for(module)
    if args:
        x = args[0]
        hx = args[1] if len(args) > 1 else kwargs.get("hx")
    else:
        x, hx = kwargs.get("input"), kwargs.get("hx")
    if x is None or fast_ok(module, s, x, hx):
        return
    from shapeviz.runtime.diagnosis import diagnose

    err = diagnose(module, s.conv, x, hx, _declared.get(), path)
    if err is not None:
        raise err


_ENV_DISABLED = env_disabled()
