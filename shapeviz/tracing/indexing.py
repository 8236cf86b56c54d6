"""What an index picks: for ``x[index]``, which of ``x``'s dims each result dim is, the steps it picks, and the
name a slice keeps (``x[:, 1:]`` of ``T`` is ``T-1``).

>>> index_plan(3, (slice(None), -1))  # output[:, -1]: dims 0 and 2 kept, step -1 of dim 1 picked
([0, 2], [(1, -1)])
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["forward_half", "index_items", "index_plan", "op_order", "shortened"]


def index_plan(ndim: int, index: Any) -> tuple[list[int | None], list[tuple[int, int]]] | None:
    """For ``x[index]`` of an ``ndim``-dim x: which source dim each result dim is (None: a new dim),
    and the ``(dim, i)`` picked by integer indices; None for tensor/bool indices.

    >>> index_plan(3, (slice(None), -1))  # output[:, -1]
    ([0, 2], [(1, -1)])
    >>> index_plan(3, -1)  # h_n[-1]
    ([1, 2], [(0, -1)])
    """
    items = index if isinstance(index, tuple) else (index,)
    if any(not (isinstance(i, (int, slice)) or i is None or i is Ellipsis) or isinstance(i, bool) for i in items):
        return None
    used = sum(1 for i in items if isinstance(i, (int, slice)))
    if used > ndim or sum(i is Ellipsis for i in items) > 1:
        return None
    src: list[int | None] = []
    picks: list[tuple[int, int]] = []
    d = 0
    for i in items:
        if i is Ellipsis:
            src += list(range(d, d + ndim - used))
            d += ndim - used
        elif i is None:
            src.append(None)
        elif isinstance(i, slice):
            src.append(d)
            d += 1
        else:
            picks.append((d, i))
            d += 1
    src += list(range(d, ndim))
    return src, picks


def index_items(ndim: int, index: Any) -> list[Any] | None:
    """``x[index]``'s item for each of ``x``'s dims (a full slice where it is not indexed), else None.

    >>> index_items(3, (Ellipsis, 0, slice(None, 4))), index_items(3, -1)
    ([slice(None, None, None), 0, slice(None, 4, None)], [-1, slice(None, None, None), slice(None, None, None)])
    """
    items = [i for i in (index if isinstance(index, tuple) else (index,)) if i is not None]
    if any(isinstance(i, bool) or not (isinstance(i, (int, slice)) or i is Ellipsis) for i in items) or \
            items.count(Ellipsis) > 1 or len(items) - items.count(Ellipsis) > ndim:
        return None
    if Ellipsis in items:
        k = items.index(Ellipsis)
        items[k:k + 1] = [slice(None)] * (ndim - len(items) + 1)
    return items + [slice(None)] * (ndim - len(items))


def forward_half(shape: tuple[int, ...], index: Any) -> bool:
    """Does ``x[index]`` of a bidirectional output keep features of the forward direction only (the first
    half of its last dim, ``D*h``)? ``output[-1, :, :h]`` is the forward direction's final state, ``h_n[-2]``.

    >>> forward_half((5, 3, 8), (-1, slice(None), slice(None, 4))), forward_half((5, 3, 8), -1)  # (T, bs, D*h=8)
    (True, False)
    """
    items = index if isinstance(index, tuple) else (index,)
    if Ellipsis in items:
        last = items[-1]
    elif sum(isinstance(i, (int, slice)) for i in items) == len(shape):
        last = [i for i in items if isinstance(i, (int, slice))][-1]
    else:
        return False  # the feature dim is taken whole
    half = shape[-1] // 2
    if isinstance(last, slice):
        picked = range(*last.indices(shape[-1]))
        return len(picked) > 0 and max(picked) < half
    return isinstance(last, int) and not isinstance(last, bool) and last % shape[-1] < half


def shortened(name: str | None, item: Any, size: int, kept: int) -> str | None:
    """The name of ``kept`` of a dim's ``size`` entries (named ``name``) that slice ``item`` keeps: ``"T-1"`` for
    ``x[:, 1:]`` and ``x[:, :-1]`` (a language model's shifted inputs and targets: T-1 steps whatever T), else
    None (``x[:, :3]`` is 3 steps whatever T, not T-4: no name).

    >>> shortened("T", slice(1, None), 7, 6), shortened("T-1", slice(None, -2), 6, 4), shortened("T", slice(3), 7, 3)
    ('T-1', 'T-3', None)
    """
    m = _SHORTENED.match(name or "")
    if m is None or not isinstance(item, slice) or item.step not in (None, 1):
        return None
    start, stop = item.start or 0, item.stop or 0
    if start < 0 or stop > 0 or kept < 1 or size - kept != start - stop:  # bounds relative to the start and end
        return None
    return f"{m.group(1)}-{size - kept + int(m.group(2) or 0)}"


_SHORTENED = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?:-([0-9]+))?\Z")


def op_order(base: str, args: tuple, kwargs: dict, ndim: int) -> list[int] | None:
    """The source dim of each result dim of a transpose or permute (result dim ``k`` is ``x``'s ``order[k]``).

    >>> op_order("transpose", (None, 0, 1), {}, 3), op_order("permute", (None, 2, 0, 1), {}, 3)
    ([1, 0, 2], [2, 0, 1])
    """
    try:
        if base == "permute":
            dims = args[1:] if len(args) > 1 else kwargs.get("dims", ())
            if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
                dims = dims[0]
            order = [int(d) % ndim for d in dims]
            return order if sorted(order) == list(range(ndim)) else None
        a = int(args[1] if len(args) > 1 else kwargs["dim0"]) % ndim
        b = int(args[2] if len(args) > 2 else kwargs["dim1"]) % ndim
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return None
    order = list(range(ndim))
    order[a], order[b] = order[b], order[a]
    return order
