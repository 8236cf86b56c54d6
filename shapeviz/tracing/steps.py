"""Which dim an op takes one step of: the evidence that a loop iterates a named dim.

>>> import torch
>>> x = torch.zeros(5, 2, 4)
>>> step_dim(torch.Tensor.__getitem__, (x, (slice(None), 1)), {})  # x[:, 1]: one step of dim 1
1
>>> step_dim(torch.Tensor.unbind, (x,), {}), step_dim(torch.Tensor.split, (x, 1), {"dim": 2})
(0, 2)
>>> step_dim(torch.Tensor.__getitem__, (x, slice(0, 3)), {}) is None  # a range: not one step
True

A loop count is shown as a dim's name (``× T=9``) only when the loop reads one step of that dim:
it indexes it with an int (``x[t]``, ``x[:, t]``, ``x.select(1, t)``), unbinds it (``for x_t in x``)
or splits it into pieces of one (``x.split(1, dim=1)``). The recorder notes such pieces (both with
``ops=True`` and without) and :attr:`~shapeviz.tracing.records.TensorInfo.step` says, once the
names are resolved, which named dim of what size a tensor is one step of. That numbers agree is
never evidence: a greedy decoder of 9 steps over a source of length 9 reads no step of the source.
"""

from __future__ import annotations

from typing import Any

import torch

from shapeviz.tracing.indexing import index_plan

__all__ = ["STEP_FUNCS", "step_dim"]

STEP_FUNCS = frozenset({torch.Tensor.__getitem__, torch.Tensor.unbind, torch.unbind, torch.Tensor.select,
                        torch.select, torch.Tensor.split, torch.split})
"""The functions whose results can be one step of a dim (a set of function objects: a cheap lookup)."""


def _arg(args: tuple, kwargs: dict[str, Any], pos: int, key: str, default: Any) -> Any:
    return args[pos] if len(args) > pos else kwargs.get(key, default)


def step_dim(func: Any, args: tuple, kwargs: dict[str, Any]) -> int | None:
    """The dim of ``args[0]`` that ``func(*args, **kwargs)`` takes one step of (non-negative), or None."""
    if not args or not isinstance(args[0], torch.Tensor):
        return None
    ndim = args[0].dim()
    if ndim == 0:
        return None
    if func is torch.Tensor.__getitem__:
        if len(args) < 2:
            return None
        plan = index_plan(ndim, args[1])
        if plan is None or len(plan[1]) != 1:  # one int index: one step of one dim
            return None
        dim = plan[1][0][0]
    elif func in (torch.Tensor.unbind, torch.unbind):
        dim = _arg(args, kwargs, 1, "dim", 0)
    elif func in (torch.Tensor.select, torch.select):
        dim = _arg(args, kwargs, 1, "dim", None)
    elif func in (torch.Tensor.split, torch.split):
        size = _arg(args, kwargs, 1, "split_size_or_sections", kwargs.get("split_size"))
        if size != 1 or isinstance(size, bool):  # pieces of one step each
            return None
        dim = _arg(args, kwargs, 2, "dim", 0)
    else:
        return None
    if isinstance(dim, bool) or not isinstance(dim, int) or not -ndim <= dim < ndim:
        return None
    return dim % ndim
