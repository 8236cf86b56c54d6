"""The one solver for symbolic dims (``layers*D``, ``T*bs``, ``n+1``) and variadic ``*name`` dims.

>>> env = [2, None]                        # slots: layers=2, D unknown
>>> terms = ((1, (0, 1)),)                 # layers*D
>>> solve(4, terms, env), env              # 4 = 2*D: D is solved
(1, [2, 2])
>>> resolve([(6, terms)], env, final=True)  # 6 != 2*2: the contradicting item
((6, ((1, (0, 1)),)), None)

Both the generated fast checker (:mod:`shapeviz.annotations.codegen`) and the explainer
(:mod:`shapeviz.annotations.explainer`) bind names in a per-call ``env`` list and queue symbolic
dims as ``(size, terms, ...)`` items; :func:`resolve` decides them in the same order for both,
so the explainer blames exactly what the fast path rejected.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from shapeviz.annotations.parser import Terms

__all__ = ["bind_variadic", "evaluate", "resolve", "solve"]


def _broadcast(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...] | None:
    n = max(len(a), len(b))
    a = (1,) * (n - len(a)) + tuple(a)
    b = (1,) * (n - len(b)) + tuple(b)
    out = []
    for x, y in zip(a, b):
        if x == y or y == 1:
            out.append(x)
        elif x == 1:
            out.append(y)
        else:
            return None
    return tuple(out)


def bind_variadic(env: list[Any], slot: int, bcast: bool, new: tuple[int, ...]) -> bool:
    """Bind or compare a variadic ``*name`` (jaxtyping's rules, ``*#name`` broadcasting).

    >>> env = [None]
    >>> bind_variadic(env, 0, False, (3, 4)), bind_variadic(env, 0, False, (3, 5))
    (True, False)
    """
    prev = env[slot]
    if prev is None:
        env[slot] = (bcast, new)
        return True
    prev_bcast, prev_shape = prev
    if prev_bcast:
        shape = _broadcast(new, prev_shape)
        if shape is None or (not bcast and shape != new):
            return False
        env[slot] = (bcast, shape)
        return True
    if bcast:
        shape = _broadcast(new, prev_shape)
        return shape is not None and shape == prev_shape
    return new == prev_shape


def evaluate(terms: Terms, env: list[Any]) -> int | None:
    """The size a symbolic dim stands for, or None while one of its names is unbound.

    >>> evaluate(((1, (0, 1)), (1, ())), [2, 3])   # layers*D+1 with layers=2, D=3
    7
    """
    total = 0
    for coef, slots in terms:
        p = coef
        for s in slots:
            if env[s] is None:
                return None
            p *= env[s]
        total += p
    return total


def solve(size: int, terms: Terms, env: list[Any]) -> int | None:
    """Check ``size`` against a symbolic dim: 1 fits, 0 contradicts, None not yet decidable.

    With exactly one unknown name (appearing once) it is solved and bound in ``env``.
    """
    total = 0
    unknown: tuple[int, int] | None = None
    for coef, slots in terms:
        p, missing = coef, -1
        for s in slots:
            b = env[s]
            if b is None:
                if missing >= 0:
                    return None
                missing = s
            else:
                p *= b
        if missing < 0:
            total += p
        elif unknown is None:
            unknown = (p, missing)
        else:
            return None
    if unknown is None:
        return 1 if total == size else 0
    p, slot = unknown
    if p == 0:
        return None
    q, r = divmod(size - total, p)
    if r or q < 0:
        return 0
    env[slot] = q
    return 1


def resolve(pending: list[Any], env: list[Any], final: bool,
            solved: Callable[[Any, list[int]], None] | None = None) -> tuple[Any, Any] | None:
    """Decide the queued ``(size, terms, ...)`` items that the bindings allow; None when all fit.

    Otherwise ``(item, None)``: ``item`` contradicts the sizes bound; or, with ``final``, ``(item,
    other)``: one undecidable dim given two different sizes. ``solved(item, slots)`` hears which
    slots an item bound. Decided items leave ``pending``.
    """
    progress = True
    while pending and progress:
        progress = False
        for item in list(pending):
            unknown = [s for _, slots in item[1] for s in slots if env[s] is None] if solved else []
            verdict = solve(item[0], item[1], env)
            if verdict is None:
                continue
            pending.remove(item)
            progress = True
            if verdict == 0:
                return item, None
            if solved is not None:
                solved(item, unknown)
    if final and pending:
        seen: dict[Any, Any] = {}
        for item in pending:
            prev = seen.setdefault(item[1], item)
            if prev[0] != item[0]:
                return item, prev
    return None
