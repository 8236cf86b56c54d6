"""Shared timing helpers for the benchmarks (never used by tests).

>>> r = Row("check_call (LSTM)", "module.check_forward_args", 1.0, 2.0, "<= 1.0")
>>> r.ratio
0.5
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Row:
    """One line of the benchmark table: shapeviz's time vs the alternative's, measured in one run."""

    what: str           # what shapeviz does, e.g. "check_call fast path, LSTM(10, 20)"
    compared_with: str  # the alternative, e.g. "torch check_forward_args"
    shapeviz: float     # seconds (or µs: the unit is `unit`)
    other: float
    target: str = ""    # e.g. "<= 1.0" (ratio shapeviz/other), "< 1 s"
    unit: str = "µs"

    @property
    def ratio(self) -> float:
        return self.shapeviz / self.other if self.other else float("inf")


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
