"""What a recurrent call's record teaches: the sizes of the names its conventions gave.

>>> import torch.nn as nn
>>> from shapeviz.core.model import conventions
>>> c = conventions(nn.GRU(4, 8))
>>> learned_sizes((("T", "bs", "emb"), (5, 2, 4), id(c)), c)
(('T', 5), ('bs', 2), ('emb', 4))

The :class:`~shapeviz.tracing.recorder.Tracer` learns these once the forward is done, so later
records can be named by size (as guesses) and the trace's ``sizes`` lists them.
"""

from __future__ import annotations

import functools

from shapeviz.core.dimensions import is_simple_name
from shapeviz.core.model import Conventions

__all__ = ["learned_sizes"]


_LEARNED: dict[tuple, tuple[Conventions, tuple[tuple[str, int], ...]]] = {}


def learned_sizes(key: tuple, conv: Conventions) -> tuple[tuple[str, int], ...]:
    """The (name, size) pairs a recurrent call's record teaches: ``key`` is ``(names, shape, id(conv))``
    (plain names, ``sum(…)``, and products whose every factor is > 1) or ``("sizes", id(conv))`` (the
    module's emb, h, proj). Cached per key, checked to be the same Conventions.

    >>> import torch.nn as nn
    >>> from shapeviz.core.model import conventions
    >>> c = conventions(nn.LSTM(10, 20, num_layers=2, bidirectional=True))
    >>> learned_sizes((("layers*D", "bs", "h"), (4, 3, 20), id(c)), c)
    (('bs', 3), ('h', 20), ('layers*D', 4))
    """
    hit = _LEARNED.get(key)
    if hit is not None and hit[0] is conv:
        return hit[1]
    if key[0] == "sizes":
        pairs = tuple((n, int(s)) for n, s in conv.sizes.items() if n in ("emb", "h", "proj"))
    else:
        names, shape = key[0], key[1]
        simple, sums, products = _learn_plan(names)
        pairs = tuple((names[i], int(shape[i])) for i in simple) + tuple((names[i], int(shape[i])) for i in sums)
        if products:
            local = {**conv.sizes, **{names[i]: shape[i] for i in simple}}
            pairs += tuple((names[i], int(shape[i])) for i, factors in products
                           if all(local.get(f) is not None and local[f] > 1 for f in factors))
    if len(_LEARNED) >= 1024:
        _LEARNED.clear()
    _LEARNED[key] = (conv, pairs)
    return pairs


LearnPlan = tuple[tuple[int, ...], tuple[int, ...], tuple[tuple[int, tuple[str, ...]], ...]]
@functools.lru_cache(maxsize=256)
def _learn_plan(names: tuple[str, ...]) -> LearnPlan:
    """Which dims of a conventions' names tuple are plain names, ``sum(…)`` and products (with factors).

    >>> _learn_plan(("layers*D", "bs", "h"))
    ((1, 2), (), ((0, ('layers', 'D')),))
    """
    simple = tuple(i for i, n in enumerate(names) if is_simple_name(n))
    sums = tuple(i for i, n in enumerate(names) if n.startswith("sum("))
    products = tuple((i, tuple(n.split("*"))) for i, n in enumerate(names)
                     if not n.startswith("sum(") and "*" in n)
    return simple, sums, products
