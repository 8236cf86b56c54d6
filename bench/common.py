"""Shared timing helpers for the benchmarks (never used by tests).

>>> r = Row("check_call (LSTM)", "module.check_forward_args", 1.0, 2.0, "<= 1.0")
>>> r.ratio
0.5

Every in-process comparison goes through :func:`interleaved`: the calling thread's CPU time
(``time.thread_time``), rounds that alternate which side runs first, the garbage collector off while
timing. A row reports the median of the per-round ratios and their spread, the interquartile range
(:func:`spread`): on a loaded machine other processes steal wall time, not this thread's CPU time, and
a target is only called met when the whole spread is within it.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from types import ModuleType

BENCH_EXTRA = ("torchinfo", "torchview")
"""The modules of the ``bench`` extra: rows that need one are skipped without it."""
SKIPPED = "skipped: pip install -e .[bench]"
SCALE = {"µs": 1e6, "ms": 1e3, "s": 1.0}
"""Seconds to a row's unit (any other unit, e.g. MB, is stored as measured)."""


@dataclass
class Row:
    """One line of the benchmark table: shapeviz's time vs the alternative's, measured in one run.

    >>> Row("a", "b", 3.0, 2.0, "<= 1.6", spread=(1.4, 1.7)).spread
    (1.4, 1.7)
    """

    what: str           # what shapeviz does, e.g. "check_call fast path, LSTM(10, 20)"
    compared_with: str  # the alternative, e.g. "torch check_forward_args"
    shapeviz: float     # seconds (or µs: the unit is `unit`)
    other: float
    target: str = ""    # e.g. "<= 1.0" (ratio shapeviz/other), "< 1 s" (shapeviz's own time)
    unit: str = "µs"
    median_ratio: float | None = None  # the median of per-round ratios, where rounds were interleaved
    skipped: str = ""   # why the row was not measured (e.g. SKIPPED)
    spread: tuple[float, float] | None = None        # interquartile range of the per-round ratios
    value_spread: tuple[float, float] | None = None  # interquartile range of shapeviz's own values (unit)

    @property
    def ratio(self) -> float:
        if self.median_ratio is not None:
            return self.median_ratio
        return self.shapeviz / self.other if self.other else float("inf")


def spread(values: Sequence[float]) -> tuple[float, float]:
    """The interquartile range (first and third quartiles, inclusive method) of ``values``.

    >>> spread([1.0, 2.0, 3.0, 4.0, 5.0])
    (2.0, 4.0)
    >>> spread([0.9])
    (0.9, 0.9)
    """
    if len(values) < 2:
        return (values[0], values[0])
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return (q1, q3)


@dataclass(frozen=True)
class Rounds:
    """Per-round values of two sides measured side by side (seconds per call, or MB), round i of ``a``
    paired with round i of ``b``.

    >>> t = Rounds(a=(1.0, 4.0, 3.0), b=(2.0, 2.0, 1.0))  # per-round ratios 0.5, 2, 3
    >>> t.ratio, t.spread, t.rounds
    (2.0, (1.25, 2.5), 3)
    """

    a: tuple[float, ...]
    b: tuple[float, ...]

    @property
    def rounds(self) -> int:
        return len(self.a)

    @property
    def ratios(self) -> list[float]:
        return [x / y if y else float("inf") for x, y in zip(self.a, self.b)]

    @property
    def ratio(self) -> float:
        """The median of per-round ratios (not the ratio of medians)."""
        return statistics.median(self.ratios)

    @property
    def spread(self) -> tuple[float, float]:
        return spread(self.ratios)

    def row(self, what: str, compared_with: str, target: str, unit: str = "µs") -> Row:
        """A table row: medians of each side in ``unit``, the median ratio and its spread.

        >>> Rounds((1e-6, 3e-6), (2e-6, 2e-6)).row("a", "b", "<= 1").shapeviz
        2.0
        """
        k = SCALE.get(unit, 1.0)
        lo, hi = spread(self.a)
        return Row(what, compared_with, statistics.median(self.a) * k, statistics.median(self.b) * k, target, unit,
                   median_ratio=self.ratio, spread=self.spread, value_spread=(lo * k, hi * k))


def budget(values: Sequence[float], limit: float) -> Rounds:
    """Values measured against a fixed budget (the same ``limit`` every round).

    >>> budget([0.5, 1.0], 2.0).ratio
    0.375
    """
    return Rounds(tuple(values), (limit,) * len(values))


Around = Callable[[], AbstractContextManager[object]]


@contextlib.contextmanager
def gc_off() -> Iterator[None]:
    """The garbage collector off inside, as it was after.

    >>> with gc_off():
    ...     gc.isenabled()
    False
    """
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def rounds_of(fns: Sequence[Callable[[], object]], number: int | Sequence[int], rounds: int,
              around: Sequence[Around | None] | None = None,
              clock: Callable[[], float] = time.thread_time) -> list[tuple[float, ...]]:
    """Seconds per call of each of ``fns`` in each of ``rounds`` interleaved rounds: each round times
    every function ``number`` calls in a row, in the given order on even rounds and the reverse on odd
    ones, by ``clock`` (the calling thread's CPU time unless told otherwise), gc off.

    ``around[i]`` (a context manager factory) is entered around function i's calls each round (e.g.
    ``lambda: sv.watch(model)``), with one untimed call first inside it; every function is called once
    before the first round.

    >>> a, b = rounds_of([lambda: None, lambda: None], 10, rounds=3)
    >>> len(a), len(b)
    (3, 3)
    """
    numbers = [number] * len(fns) if isinstance(number, int) else list(number)
    arounds = list(around) if around is not None else [None] * len(fns)
    times: list[list[float]] = [[] for _ in fns]
    for fn, ctx in zip(fns, arounds):
        with ctx() if ctx is not None else contextlib.nullcontext():
            fn()  # warm up
    order = list(range(len(fns)))
    with gc_off():
        for r in range(rounds):
            for i in order if r % 2 == 0 else order[::-1]:
                fn, n, ctx = fns[i], numbers[i], arounds[i]
                with ctx() if ctx is not None else contextlib.nullcontext():
                    if ctx is not None:
                        fn()  # what is set up on entry (a cache, a hook) is warm, as on every later call
                    t0 = clock()
                    for _ in range(n):
                        fn()
                    times[i].append((clock() - t0) / n)
    return [tuple(t) for t in times]


def interleaved(ours: Callable[[], object], other: Callable[[], object], number: int | Sequence[int],
                rounds: int = 15, around_ours: Around | None = None, around_other: Around | None = None,
                clock: Callable[[], float] = time.thread_time) -> Rounds:
    """Seconds per call of ``ours`` and ``other`` in interleaved rounds (see :func:`rounds_of`).

    >>> t = interleaved(lambda: sum(range(50)), lambda: None, 100, rounds=3)
    >>> t.rounds, t.ratio > 0
    (3, True)
    """
    a, b = rounds_of([ours, other], number, rounds, [around_ours, around_other], clock)
    return Rounds(a, b)


def alternating(fns: Sequence[Callable[[], object]], calls: int, alternations: int, rounds: int,
                around: Sequence[Around | None] | None = None, warmup: int = 1,
                clock: Callable[[], float] = time.thread_time, per_call: bool = False) -> list[tuple[float, ...]]:
    """Seconds per call of each of ``fns`` in each of ``rounds`` rounds, each round a fine interleaving: the
    functions take turns ``alternations`` times (the order reversed every other turn), ``calls`` timed calls
    a turn, and a round's value is its total time over its total calls. Every turn of every function starts
    with ``warmup`` untimed calls (inside ``around[i]`` where given: a context manager factory entered around
    each turn), so each side comes back to warm caches alike (a class patched or restored on entry or exit
    costs the next calls CPython's re-specialization of the attribute reads it invalidated); gc off.

    Where :func:`rounds_of` times one block per side a round, this cancels load that drifts within a round and
    averages many blocks, so the per-round ratios, and with them the interquartile range a target is judged
    by, narrow down to differences of a fraction of a percent.

    With ``per_call`` (for calls of tens of µs and more: a forward), each call is timed alone and a round's
    value is the median of its calls' times: an interrupt or a page fault lands in a few calls of one side and
    moves a median little, where it moves a mean by its whole length (a forward's CPU time has a tail of calls
    40% slower than its median; the means of blocks of 20 calls then spread by ±2.5%, their medians by ±0.5%).
    The two clock reads a call add (~0.4 µs each) are the same on both sides.

    >>> a, b = alternating([lambda: None, lambda: None], calls=5, alternations=4, rounds=3)
    >>> len(a), len(b)
    (3, 3)
    """
    arounds = list(around) if around is not None else [None] * len(fns)
    order = list(range(len(fns)))
    times: list[list[float]] = [[] for _ in fns]
    with gc_off():
        for _ in range(rounds):
            spent = [0.0] * len(fns)
            each: list[list[float]] = [[] for _ in fns]
            for turn in range(alternations):
                for i in order if turn % 2 == 0 else order[::-1]:
                    fn, ctx = fns[i], arounds[i]
                    with ctx() if ctx is not None else contextlib.nullcontext():
                        for _ in range(warmup):  # untimed: what the turn's entry set up is warm on every side
                            fn()
                        if per_call:
                            for _ in range(calls):
                                t0 = clock()
                                fn()
                                each[i].append(clock() - t0)
                            continue
                        t0 = clock()
                        for _ in range(calls):
                            fn()
                        spent[i] += clock() - t0
            for i, s in enumerate(spent):
                times[i].append(statistics.median(each[i]) if per_call else s / (calls * alternations))
    return [tuple(t) for t in times]


def toggled(make: Callable[..., AbstractContextManager[object]], *args: object, then: bool = False,
            **kwargs: object) -> Around:
    """A turn's context for :func:`alternating`: ``make(*args, **kwargs)`` entered and left at once, then (with
    ``then``) entered again for the turn; without ``then`` the turn runs with nothing of it in place. Given to
    both sides of a comparison, each side's turn follows the same entering and leaving (of ``watch``, say, which
    patches classes and so costs the next calls CPython's re-specialization of their attribute reads).

    >>> with toggled(gc_off)():
    ...     gc.isenabled()
    True
    """

    @contextlib.contextmanager
    def turn() -> Iterator[None]:
        with make(*args, **kwargs):
            pass
        if not then:
            yield
            return
        with make(*args, **kwargs):
            yield

    return turn


def against_plain(call: Callable[[], object], around: Around, calls: int, turns: int, rounds: int,
                  warmup: int = 2, per_call: bool = False) -> Rounds:
    """``call`` inside ``around()`` (e.g. ``lambda: sv.watch(model)``) vs ``call`` with nothing of it in place,
    finely interleaved (:func:`alternating`); each turn of each side first enters and leaves ``around()``
    (:func:`toggled`), so the plain side pays what the entering and leaving cost the next calls, as the other.

    >>> t = against_plain(lambda: None, gc_off, calls=2, turns=2, rounds=3)
    >>> t.rounds
    3
    """
    a, b = alternating([call, call], calls, turns, rounds, around=[toggled(around, then=True), toggled(around)],
                       warmup=warmup, per_call=per_call)
    return Rounds(a, b)


def optional(name: str) -> ModuleType | None:
    """The module ``name`` of the bench extra, or None when it is not installed.

    >>> optional("no_such_module_here") is None
    True
    """
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def skipped_row(what: str, compared_with: str, target: str = "", reason: str = SKIPPED) -> Row:
    """A row that could not be measured here, saying why.

    >>> skipped_row("sv.trace", "torchinfo.summary").skipped
    'skipped: pip install -e .[bench]'
    """
    return Row(what, compared_with, float("nan"), float("nan"), target, skipped=reason)


def us(seconds: float) -> float:
    """Seconds in µs.

    >>> us(2e-6)
    2.0
    """
    return seconds * 1e6
