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

from shapeviz.core.dimensions import DECLARED, live_declared
from shapeviz.core.evidence import cell_swapped, layer_swapped, packed_swapped, unbatched_ambiguous
from shapeviz.core.model import Conventions, conventions, key_getter

# older torch (the range in pyproject starts at 2.1) lacks these two names
autocast_enabled = getattr(torch._C, "_is_any_autocast_enabled", torch.is_autocast_enabled)
"""True while any autocast region is active (then input and weight dtypes may differ)."""
is_compiling = getattr(torch.compiler, "is_compiling", None) or torch._dynamo.is_compiling


_ENV_NAME = "SHAPEVIZ_DISABLE"
_ENV_TRUE = ("1", "true", "yes", "on")
try:  # the environment's own mapping, keyed as the platform stores it (bytes on POSIX)
    _ENV_KEY: Any = os.environ.encodekey(_ENV_NAME)  # type: ignore[attr-defined]
except AttributeError:  # pragma: no cover - os.environ replaced by a plain mapping
    _ENV_KEY = None


def env_disabled() -> bool:
    """True when ``SHAPEVIZ_DISABLE`` is set to a true value (1, true, yes, on); read on every call.

    The one reader of the variable: every entry point (check_call, each watched or checked call,
    watch(), checking(), enable(), each @check call) asks it. An exact read of ``os.environ``'s own
    mapping (``os.environ.get`` costs a KeyError when the variable is unset).

    >>> env_disabled()
    False
    """
    try:
        raw = os.environ._data.get(_ENV_KEY)  # type: ignore[attr-defined]
    except AttributeError:  # os.environ replaced by something else: read it the ordinary way
        raw = os.environ.get(_ENV_NAME)
    else:
        if raw is None:
            return False
        raw = os.environ.decodevalue(raw)  # type: ignore[attr-defined]
    return raw is not None and raw.strip().lower() in _ENV_TRUE


class CallPlan:
    """Plain ints read once from a module's :class:`~shapeviz.core.model.Layout` for the fast path."""

    __slots__ = ("arity", "bs_axis", "cell", "conv", "emb", "from_dict", "getkey", "hc", "hh", "key", "last", "ld",
                 "nd_batched", "nd_unbatched", "ref", "t_axis", "unbatched_c", "unbatched_h", "wname")

    def __init__(self, module: torch.nn.Module, conv: Conventions) -> None:
        lay = conv.layout
        self.conv = conv
        self.cell = lay.cell
        self.getkey, self.from_dict = key_getter(module)
        self.key = self.getkey(module.__dict__ if self.from_dict else module)
        self.last: tuple | None = None  # the signature of the last call the fast path accepted
        mid = id(module)
        self.ref = weakref.ref(module, lambda ref: _forget(mid, ref))
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


def _forget(mid: int, ref: weakref.ref) -> None:
    """Drop a dead module's plan: one dict lookup (teardown of N modules is O(N), not O(N²))."""
    p = _plans.get(mid)
    if p is not None and p.ref is ref:
        del _plans[mid]


def plan_for(module: torch.nn.Module) -> CallPlan:
    """The cached :class:`CallPlan` of ``module`` (rebuilt if its configuration changed)."""
    p = _plans.get(id(module))
    if p is None or p.ref() is not module or p.getkey(module.__dict__ if p.from_dict else module) != p.key:
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


def signature(x: Any, hx: Any, w: Tensor, decl: dict[str, int] | None) -> tuple | None:
    """Everything the fast path's verdict on a tensor call depends on, or None (not cached: packed inputs,
    non-tensor states, and dtypes that differ from the weights', where autocast decides).

    >>> import torch
    >>> w = torch.zeros(3)
    >>> signature(torch.zeros(2, 3), None, w, None)[:2]
    (torch.Size([2, 3]), torch.float32)
    """
    dtype = x.dtype
    if dtype is not w.dtype:
        return None
    if hx is None:
        return (x.shape, dtype, x.device, w.device, decl)
    if type(hx) is Tensor:
        return (x.shape, dtype, x.device, w.device, decl, hx.shape, hx.dtype, hx.device)
    if type(hx) is tuple and len(hx) == 2 and type(hx[0]) is Tensor and type(hx[1]) is Tensor:
        h, c = hx
        return (x.shape, dtype, x.device, w.device, decl, h.shape, h.dtype, h.device, c.shape, c.dtype, c.device)
    return None


def check_module_call(module: torch.nn.Module, args: tuple, kwargs: dict[str, Any], path: str | None) -> None:
    """:func:`check_call` with the module's path inside a model (used by watch/checking).

    A repeat of the last accepted call (same shapes, dtypes, devices, declared sizes and configuration)
    is accepted after one compare of its :func:`signature`: exact, never a missed mistake.
    """
    if env_disabled():
        return
    if is_compiling():  # dynamo traces this call: checked at trace time (README: torch.compile)
        from shapeviz.runtime.compiled import check_traced

        return check_traced(module, args, kwargs, path)
    p = _plans.get(id(module))
    if p is None or p.ref() is not module or p.getkey(module.__dict__ if p.from_dict else module) != p.key:
        p = plan_for(module)
    if args:
        x = args[0]
        hx = args[1] if len(args) > 1 else kwargs.get("hx")
    else:
        x, hx = kwargs.get("input"), kwargs.get("hx")
    if x is None:
        return
    decl = DECLARED.get()
    sig = signature(x, hx, weight(module, p), decl) if type(x) is Tensor else None
    if sig is not None and sig == p.last:
        return
    if fast_ok(module, p, x, hx):
        if sig is not None:
            p.last = sig
        return
    if decl is not None:  # a declaration left behind by an interrupted forward is dropped, never believed
        decl = live_declared()
    from shapeviz.runtime.diagnosis import diagnose

    err = diagnose(module, p.conv, x, hx, decl, path)
    if err is not None:
        raise err
