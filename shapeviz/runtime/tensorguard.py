"""One C-level call that says whether tensors still look like those of a call that fit: type, sizes, dtype, device.

>>> import torch
>>> x, h = torch.zeros(5, 3, 4), torch.zeros(1, 3, 6)  # (T=5, bs=3, emb=4) and h_0 (1, bs=3, h=6)
>>> same = guard_of(x, h)
>>> same(torch.ones(5, 3, 4), torch.ones(1, 3, 6)), same(torch.ones(5, 3, 4), torch.ones(1, 2, 6))
(True, False)
>>> same(torch.ones(5, 3, 4, dtype=torch.float64), h), same(x, h.to("meta"))
(False, False)

The hot path (:mod:`shapeviz.runtime.hotpath`) reads a repeat call's shapes, dtypes and devices one attribute at a
time: eleven reads for an LSTM's ``(x, weight, h, c)``, each a Python attribute lookup, a ``torch.Size`` built
per shape. torch's own guard of compiled code, ``TensorGuards`` (what dynamo checks a compiled frame's tensors
with), reads all of them in C in one call, and more: requires_grad, the dispatch keys (device type, and with
them the thread's autocast and inference-mode state) and each tensor's exact type. A guard is only ever a
shortcut: ``True`` proves the call matches the one it was made from, ``False`` proves nothing (the hot path
then reads in Python, as without it). Strides are left free (a transposed input of the same shape still hits).

``TensorGuards`` is torch's internal API. It is used only where it answers a self-test on first use exactly as
the Python reads would (a shape, dtype, device, type changed: False; the same: True); anywhere else (an older
or newer torch that lacks it or changed it) :data:`AVAILABLE` is False and the hot path reads in Python alone.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch

__all__ = ["guard_of", "guards_work"]

Guard = Callable[..., bool]


def _never(*tensors: Any) -> bool:
    """The guard of tensors torch's guard could not be made for (a sparse or nested tensor): no shortcut."""
    return False


def _make(tensors: tuple[torch.Tensor, ...]) -> Guard:
    from torch._C._dynamo.guards import TensorGuards  # type: ignore[import-not-found]

    return TensorGuards(*tensors, dynamic_dims_sizes=[list(t.shape) for t in tensors],  # sizes: exact
                        dynamic_dims_strides=[[None] * t.dim() for t in tensors]).check  # strides: free


@functools.cache
def guards_work() -> bool:
    """True when torch's ``TensorGuards`` exists here and answers as the Python reads would (asked once).

    >>> guards_work()
    True
    """
    try:
        x, h = torch.zeros(2, 3), torch.zeros(3)
        same = _make((x, h))
        expected = [True, True, False, False, False, False, False, False]
        got = [same(torch.ones(2, 3), torch.ones(3)), same(torch.ones(3, 2).t(), h),
               same(torch.zeros(2, 4), h), same(torch.zeros(2, 3, dtype=torch.float64), h), same(x, h.to("meta")),
               same(torch.nn.Parameter(x), h), same(x, torch.zeros(1, 3)), same(x, torch.zeros(3, requires_grad=True))]
        return got == expected
    except Exception:  # any failure of torch's internal API: no shortcut, never an error
        return False


def guard_of(*tensors: torch.Tensor) -> Guard:
    """``same = guard_of(x, w, h, c)``: ``same(x2, w2, h2, c2)`` is True when each tensor has the exact type, sizes,
    dtype, device, requires_grad and dispatch keys of the one given here (one C call; strides free). It keeps no
    tensor. Where torch's guard is not usable, ``same`` is always False (see :func:`guards_work`).

    >>> same = guard_of(torch.zeros(2, 3))
    >>> same(torch.ones(2, 3)), same(torch.ones(3, 2))
    (True, False)
    """
    if not guards_work():
        return _never
    try:
        return _make(tensors)
    except Exception:  # a tensor torch's guard does not take: no shortcut
        return _never
