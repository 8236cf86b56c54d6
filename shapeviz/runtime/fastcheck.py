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

from shapeviz.core.dimensions import DECLARED
from shapeviz.core.evidence import cell_swapped, layer_swapped, packed_swapped, unbatched_ambiguous
from shapeviz.core.model import Conventions, conventions, key_getter

# older torch (the range in pyproject starts at 2.1) lacks these two names
autocast_enabled = getattr(torch._C, "_is_any_autocast_enabled", torch.is_autocast_enabled)
"""True while any autocast region is active (then input and weight dtypes may differ)."""
is_compiling = getattr(torch.compiler, "is_compiling", None) or torch._dynamo.is_compiling


def env_disabled() -> bool:
    """True when ``SHAPEVIZ_DISABLE`` is set to a true value (1, true, yes, on)."""
    return os.environ.get("SHAPEVIZ_DISABLE", "").strip().lower() in ("1", "true", "yes", "on")


class CallPlan:
    """Plain ints read once from a module's :class:`~shapeviz.core.model.Layout` for the fast path."""

    __slots__ = ("arity", "bs_axis", "cell", "conv", "emb", "getkey", "hc", "hh", "key", "ld", "nd_batched",
                 "nd_unbatched", "ref", "t_axis", "unbatched_c", "unbatched_h", "wname")

    def __init__(self, module: torch.nn.Module, conv: Conventions) -> None:
        lay = conv.layout
        self.conv = conv
        self.cell = lay.cell
        self.getkey = key_getter(module)
        self.key = self.getkey(module.__dict__)
        self.ref = weakref.ref(module, _forget)
        self.t_axis = -1 if lay.t_axis is None else lay.t_axis
        self.bs_axis = lay.bs_axis
        self.nd_batched = lay.batched_ndim
        self.nd_unbatched = lay.unbatched_ndim
        self.arity = lay.state_arity
        self.emb = conv.input_size
        self.hh = lay.h_out  # last dim of h
        self.hc = lay.c_size  # last dim of c
        self.ld = conv.stacked
        lead = () if lay.cell else (self.ld,)
        self.unbatched_h = (*lead, lay.h_out)  # the state of an unbatched call: (layers*D, h) or (h,)
        self.unbatched_c = (*lead, lay.c_size)
        self.wname = "weight_ih" if lay.cell else "weight_ih_l0"


# id(module) -> CallPlan; the plan's weakref drops the entry when the module dies (cheaper than a
# WeakKeyDictionary lookup, which builds a weakref on every call)
_plans: dict[int, CallPlan] = {}


def _forget(ref: weakref.ref) -> None:
    for k, p in list(_plans.items()):
        if p.ref is ref:
            del _plans[k]


def plan_for(module: torch.nn.Module) -> CallPlan:
    """The cached :class:`CallPlan` of ``module`` (rebuilt if its configuration changed)."""
    p = _plans.get(id(module))
    if p is None or p.ref() is not module or p.getkey(module.__dict__) != p.key:
        p = CallPlan(module, conventions(module))
        _plans[id(module)] = p
    return p


def weight(module: torch.nn.Module, p: CallPlan) -> Tensor:
    """The first input weight: its dtype and device are the module's (works under functional_call)."""
    w = module._parameters.get(p.wname)
    return w if w is not None else getattr(module, p.wname)


def _state_ok(t: Any, want: tuple[int, ...], dtype: torch.dtype | None, device: torch.device) -> bool:
    return (isinstance(t, Tensor) and t.shape == want and (dtype is None or t.dtype == dtype)
            and t.device == device)


def fast_ok(module: torch.nn.Module, p: CallPlan, x: Any, hx: Any) -> bool:
    """True when the call fits; False hands over to :func:`shapeviz.runtime.diagnosis.diagnose`."""
    decl = DECLARED.get()
    if not isinstance(x, Tensor):
        if isinstance(x, PackedSequence) and not p.cell:
            return _packed_ok(module, p, x, hx, decl)
        return False  # non-tensors take the slow path
    sh = x.shape
    nd = len(sh)
    if nd == p.nd_batched:
        bs = sh[p.bs_axis]
        if p.cell:
            if decl is not None and cell_swapped(decl, bs):
                return False
            want_h: tuple[int, ...] = (bs, p.hc)
            want_c = want_h
        else:
            T = sh[p.t_axis]
            if T == 0 or (decl is not None and layer_swapped(decl, bs, T)):
                return False
            want_h, want_c = (p.ld, bs, p.hh), (p.ld, bs, p.hc)
    elif nd == p.nd_unbatched:
        if not p.cell and (sh[0] == 0 or (decl is not None and unbatched_ambiguous(decl, sh[0]))):
            return False  # an unbatched layer input is (T, emb)
        want_h, want_c = p.unbatched_h, p.unbatched_c
    else:
        return False
    if sh[-1] != p.emb:
        return False
    w = weight(module, p)
    dtype = x.dtype
    if dtype != w.dtype and not (not p.cell and autocast_enabled()):
        return False
    device = x.device
    if device != w.device:
        return False
    return _states_ok(p, hx, want_h, want_c, dtype, device)


def _states_ok(p: CallPlan, hx: Any, want_h: tuple[int, ...], want_c: tuple[int, ...], dtype: torch.dtype,
               device: torch.device) -> bool:
    if hx is None:
        return True
    if p.arity == 1:
        return _state_ok(hx, want_h, dtype, device)
    if not isinstance(hx, (tuple, list)) or len(hx) != p.arity:
        return False
    # torch's LSTMCell promotes c_0's dtype; everywhere else state dtype must match
    return _state_ok(hx[0], want_h, dtype, device) and _state_ok(
        hx[1], want_c, None if p.cell else dtype, device)


def _packed_ok(module: torch.nn.Module, p: CallPlan, x: PackedSequence, hx: Any, decl: dict | None) -> bool:
    data, batch_sizes = x.data, x.batch_sizes
    if not isinstance(data, Tensor) or data.dim() != 2 or data.shape[1] != p.emb:
        return False
    if batch_sizes.dim() != 1 or batch_sizes.numel() == 0 or batch_sizes.device.type != "cpu":
        return False
    bs = int(batch_sizes[0])  # a CPU tensor, as torch reads it: no device sync
    if decl is not None and packed_swapped(decl, bs, batch_sizes.numel()):
        return False
    w = weight(module, p)
    if (data.dtype != w.dtype and not autocast_enabled()) or data.device != w.device:
        return False
    return _states_ok(p, hx, (p.ld, bs, p.hh), (p.ld, bs, p.hc), data.dtype, data.device)


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
    if is_compiling():  # dynamo traces this call: checked at trace time (README: torch.compile)
        from shapeviz.runtime.compiled import check_traced

        return check_traced(module, args, kwargs, path)
    p = _plans.get(id(module))
    if p is None or p.ref() is not module or p.getkey(module.__dict__) != p.key:
        p = plan_for(module)
    if args:
        x = args[0]
        hx = args[1] if len(args) > 1 else kwargs.get("hx")
    else:
        x, hx = kwargs.get("input"), kwargs.get("hx")
    if x is None or fast_ok(module, p, x, hx):
        return
    from shapeviz.runtime.diagnosis import diagnose

    err = diagnose(module, p.conv, x, hx, DECLARED.get(), path)
    if err is not None:
        raise err


_ENV_DISABLED = env_disabled()
