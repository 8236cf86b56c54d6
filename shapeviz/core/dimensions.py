"""Named dimensions: declared sizes, safe parsing of dim specs, and formatting.

>>> with dims(bs=2, T=5):
...     declared()
{'bs': 2, 'T': 5}
>>> format_named(("T", "bs", "emb"), {"T": 5, "bs": 2, "emb": 10})
'(T=5, bs=2, emb=10)'
>>> expr_size("layers*D", {"layers": 2, "D": 2})
4
"""

from __future__ import annotations

import contextvars
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import lru_cache

from shapeviz._errors import SpecError, format_shape

__all__ = ["DECLARED", "Declared", "Declarer", "DimsBlock", "declared", "dims", "expr_size", "format_named",
           "format_shape", "is_simple_name", "live_declared", "on_top", "parse_names", "parse_sizes", "pop", "push",
           "stack_of", "undo"]

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


@lru_cache(maxsize=1024)
def is_simple_name(name: str) -> bool:
    """A plain dim name (letters, digits, ``_``), not an expression such as ``T*bs``, ``T|bs`` or ``sum(lengths)``.

    >>> is_simple_name("emb"), is_simple_name("layers*D"), is_simple_name("")
    (True, False, False)
    """
    return _NAME.match(name) is not None


DECLARED: contextvars.ContextVar[dict[str, int] | None] = contextvars.ContextVar(
    "shapeviz_declared", default=None
)
"""The declared sizes now (what :func:`declared` returns); the fast check reads it with one ``.get()``."""


def declared() -> dict[str, int] | None:
    """The sizes declared for the code running now (``sv.dims`` / ``watch(inputs=...)``), or None."""
    return live_declared() if DECLARED.get() is not None else None


def _validate(sizes: Mapping[str, object], where: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for name, size in sizes.items():
        if not isinstance(name, str) or not is_simple_name(name):
            raise SpecError(f"{where}: {name!r} is not a valid dimension name "
                            "(use letters, digits and _, e.g. bs, T, emb)")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise SpecError(f"{where}: size of {name!r} must be a non-negative int, got {size!r}")
        out[name] = size
    return out


Entry = tuple[object, dict[str, int], "Callable[[], bool] | None"]
"""One declaration: its key (what :func:`pop` is given), its sizes, and whether its declaring call still runs."""


class Declared(dict[str, int]):
    """The sizes declared now (a ``dict``, what :data:`DECLARED` holds and checks compare), carrying the
    declarations they were merged from, so one context-variable update declares or undoes (the declarations'
    stack and their merge never disagree)."""

    __slots__ = ("stack",)

    def __init__(self, stack: tuple[Entry, ...]) -> None:
        super().__init__()
        for _, sizes, _live in stack:
            self.update(sizes)
        self.stack = stack

    def __reduce__(self) -> tuple:  # a copy or pickle is the sizes, a plain dict
        return dict, (dict(self),)


def _merge(stack: tuple[Entry, ...]) -> Declared | None:
    return Declared(stack) if stack else None


def stack_of(now: dict[str, int] | None) -> tuple[Entry, ...]:
    """The declarations the declared sizes ``now`` were merged from, outermost first (``()`` for none)."""
    return now.stack if isinstance(now, Declared) else ()


def on_top(below: dict[str, int] | None, sizes: dict[str, int], live: Callable[[], bool] | None
           ) -> tuple[Declared, object]:
    """The declared sizes ``sizes`` make on top of ``below``, and the new declaration's key (for :func:`pop`).

    >>> declared, key = on_top(None, {"bs": 2}, None)
    >>> on_top(declared, {"T": 5}, None)[0]
    {'bs': 2, 'T': 5}
    """
    key = object()
    return Declared((*stack_of(below), (key, sizes, live))), key


def undo(declared: dict[str, int], below: dict[str, int] | None, key: object) -> None:
    """Undo a declaration that set ``declared`` over ``below``: at once where nothing was declared on top of it
    since, else by its key (:func:`pop`, which keeps what came after)."""
    if DECLARED.get() is declared:
        DECLARED.set(below)
    else:
        pop(key)


def push(sizes: Mapping[str, int], live: Callable[[], bool] | None = None) -> object:
    """Declare ``sizes`` on top of the current ones; undo with :func:`pop` (in any order).

    ``live`` (optional) says whether the declaring call is still running: :func:`live_declared` drops
    a declaration whose ``live()`` is False (a forward stopped by ``sys.exit`` or Ctrl-C skips its undo).
    """
    declared, key = on_top(DECLARED.get(), dict(sizes), live)
    DECLARED.set(declared)
    return key


def pop(key: object) -> None:
    """Undo one :func:`push`. Out-of-order pops (hooks unwinding after an exception) are fine."""
    DECLARED.set(_merge(tuple(entry for entry in stack_of(DECLARED.get()) if entry[0] is not key)))


class Declarer:
    """Declares the sizes a shape gives to ``names``; a repeat (same shape, same declarations below) reuses
    the last declaration: no allocation per call and one context-variable update each way (what
    ``checking(inputs=...)`` does on every forward; one per thread).

    >>> d = Declarer(("bs", "T"))
    >>> key = d.push((2, 5), None)
    >>> declared()
    {'bs': 2, 'T': 5}
    >>> d.pop(key); declared() is None
    True
    """

    __slots__ = ("_below", "_key", "_live", "_merged", "_shape", "names")

    def __init__(self, names: Sequence[str]) -> None:
        self.names = tuple(names)
        self._shape: object = None
        self._below: dict[str, int] | None = None
        self._live: object = None
        self._merged: Declared | None = None
        self._key: object = None

    def push(self, shape: Sequence[int], live: Callable[[], bool] | None) -> object:
        """Like :func:`push` of ``dict(zip(names, shape))``; undo with :meth:`pop`."""
        below = DECLARED.get()
        if shape != self._shape or below is not self._below or live is not self._live:
            self._merged, self._key = on_top(below, dict(zip(self.names, map(int, shape))), live)
            self._shape, self._below, self._live = shape, below, live
        DECLARED.set(self._merged)
        return self._key

    def pop(self, key: object) -> None:
        """Undo :meth:`push` (the cheap way when nothing was declared on top of it since)."""
        if key is self._key and self._merged is not None:
            undo(self._merged, self._below, key)
        else:
            pop(key)


def live_declared() -> dict[str, int] | None:
    """The declared sizes, first dropping any whose declaring call is no longer running.

    The slow path asks this before it raises an error that rests on a declaration, so a declaration
    left behind by an interrupted forward never turns a valid call into a false alarm.

    >>> key = push({"bs": 2}, live=lambda: False)  # its call has ended without undoing it
    >>> live_declared() is None
    True
    """
    stack = stack_of(DECLARED.get())
    kept = tuple(entry for entry in stack if entry[2] is None or entry[2]())
    if len(kept) != len(stack):
        DECLARED.set(_merge(kept))
    return DECLARED.get()


@contextmanager
def dims(**sizes: int) -> Iterator[dict[str, int]]:
    """Declare dimension sizes by name for the code inside; checks use them as evidence.

    >>> with dims(bs=3, T=7) as d:
    ...     d
    {'bs': 3, 'T': 7}
    """
    alive = DimsBlock()  # a generator finished in another thread pops there: this thread then stops believing it
    key = push(_validate(sizes, "sv.dims"), live=alive)
    try:
        yield dict(DECLARED.get() or {})
    finally:
        alive.running = False
        pop(key)


class DimsBlock:
    """An ``sv.dims`` block's ``live``: True while the block runs (and what marks its declaration as yours)."""

    __slots__ = ("running",)

    def __init__(self) -> None:
        self.running = True

    def __call__(self) -> bool:
        return self.running


def parse_names(spec: str, where: str = "inputs") -> tuple[str, ...]:
    """Parse ``"bs T"`` (or ``"bs, T"``) into dimension names; never evaluates anything.

    >>> parse_names("bs T")
    ('bs', 'T')
    """
    if not isinstance(spec, str):
        raise SpecError(f"{where}: expected a string of dimension names such as 'bs T', got {spec!r}")
    names = tuple(p for p in re.split(r"[\s,]+", spec.strip()) if p)
    if not names:
        raise SpecError(f"{where}: no dimension names in {spec!r}; write e.g. 'bs T' or 'T bs emb'")
    for n in names:
        if not is_simple_name(n):
            raise SpecError(f"{where}: {n!r} in {spec!r} is not a dimension name; "
                            "valid names are identifiers such as bs, T, emb, vocab")
    if len(set(names)) != len(names):
        raise SpecError(f"{where}: a dimension name repeats in {spec!r}")
    return names


def parse_sizes(spec: str, where: str = "--input") -> dict[str, int]:
    """Parse ``"bs=2,T=5"`` into ``{"bs": 2, "T": 5}``; never evaluates anything.

    >>> parse_sizes("bs=2, T=5, vocab=28")
    {'bs': 2, 'T': 5, 'vocab': 28}
    """
    if not isinstance(spec, str) or not spec.strip():
        raise SpecError(f"{where}: expected sizes such as 'bs=2,T=5', got {spec!r}")
    out: dict[str, int] = {}
    for part in (p.strip() for p in spec.split(",")):
        name, eq, value = part.partition("=")
        name, value = name.strip(), value.strip()
        if eq and is_simple_name(name) and re.fullmatch(r"[0-9]{10,}", value):
            raise SpecError(f"{where}: {part!r} in {spec!r}: {name} is too large (sizes have at most 9 digits)")
        if not eq or not is_simple_name(name) or not re.fullmatch(r"[0-9]{1,9}", value):
            raise SpecError(f"{where}: {part!r} in {spec!r} is not NAME=SIZE; "
                            "write e.g. 'bs=2,T=5' or 'bs=2,T=5,vocab=28' (sizes are plain integers)")
        if name in out:
            raise SpecError(f"{where}: {name!r} is given twice in {spec!r}")
        out[name] = int(value)
    return out


def expr_size(expr: str, sizes: Mapping[str, int | None]) -> int | None:
    """Size of a dim expression such as ``"layers*D"``; None if a factor is unknown."""
    total = 1
    for factor in expr.split("*"):
        if factor.isdigit():
            total *= int(factor)
            continue
        value = sizes.get(factor)
        if value is None:
            return None
        total *= value
    return total


def format_named(exprs: Sequence[str], sizes: Mapping[str, int | None],
                 declared: Mapping[str, int] | None = None) -> str:
    """``("T", "bs")`` with ``{"T": 5}`` -> ``"(T=5, bs)"``; a dim whose size contradicts the size ``declared``
    for its name is a bare size (a layer's batch of ``bs*k`` rows is not the declared bs).

    >>> format_named(("T", "bs", "h"), {"T": 5, "bs": 8, "h": 4}, declared={"bs": 2})
    '(T=5, 8, h=4)'
    """
    parts = []
    for e in exprs:
        value = expr_size(e, sizes)
        if value is None:
            parts.append(e)
        else:
            parts.append(str(value) if declared is not None and declared.get(e, value) != value else f"{e}={value}")
    return format_shape(parts)
