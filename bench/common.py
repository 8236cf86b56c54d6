"""Shared timing helpers for the benchmarks (never used by tests).

>>> r = Row("check_call (LSTM)", "module.check_forward_args", 1.0, 2.0, "<= 1.0")
>>> r.ratio
0.5
"""

from __future__ import annotations

import gc
import importlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType

BENCH_EXTRA = ("torchinfo", "torchview")
"""The modules of the ``bench`` extra: rows that need one are skipped without it."""
SKIPPED = "skipped: pip install -e .[bench]"


@dataclass
class Row:
    """One line of the benchmark table: shapeviz's time vs the alternative's, measured in one run."""

    what: str           # what shapeviz does, e.g. "check_call fast path, LSTM(10, 20)"
    compared_with: str  # the alternative, e.g. "torch check_forward_args"
    shapeviz: float     # seconds (or µs: the unit is `unit`)
    other: float
    target: str = ""    # e.g. "<= 1.0" (ratio shapeviz/other), "< 1 s"
    unit: str = "µs"
    median_ratio: float | None = None  # the median of per-round ratios, where rounds were interleaved
    skipped: str = ""   # why the row was not measured (e.g. SKIPPED)

    @property
    def ratio(self) -> float:
        if self.median_ratio is not None:
            return self.median_ratio
        return self.shapeviz / self.other if self.other else float("inf")


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


def best_time(fn: Callable[[], object], number: int = 1000, repeat: int = 7) -> float:
    """Best mean seconds per call of ``fn`` over ``repeat`` rounds of ``number`` calls."""
    fn()  # warm up
    best = float("inf")
    gc_was = gc.isenabled()
    gc.disable()
    try:
        for _ in range(repeat):
            t0 = time.perf_counter()
            for _ in range(number):
                fn()
            best = min(best, (time.perf_counter() - t0) / number)
    finally:
        if gc_was:
            gc.enable()
    return best


def us(seconds: float) -> float:
    return seconds * 1e6
