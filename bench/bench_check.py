"""check_call's fast path and watched forwards, side by side with PyTorch's own checks.

>>> rows = run(quick=True)
>>> rows[0].compared_with
"torch's module.check_forward_args"
"""

from __future__ import annotations

import functools
import gc
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn as nn
from jaxtyping import Float, jaxtyped

import shapeviz as sv
from bench.common import Row, best_time, us
from shapeviz.core.dimensions import DECLARED
from shapeviz.runtime.fastcheck import CallPlan, env_disabled, is_compiling, plan_for


def _lstm_args(m: nn.LSTM, T: int, bs: int) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    c = sv.conventions(m)
    s = c.shapes(T, bs)
    return torch.randn(*s["input"]), (torch.zeros(*s["h_0"]), torch.zeros(*s["c_0"]))


def interleaved(ours: Callable[[], object], other: Callable[[], object], number: int,
                rounds: int = 15) -> tuple[float, float, float]:
    """Seconds per call of each side (medians) and the median of per-round ratios, rounds interleaved
    (the order alternates each round, so neither side always runs warm or after the other).

    >>> t_a, t_b, ratio = interleaved(lambda: None, lambda: None, 10, rounds=3)
    >>> ratio > 0
    True
    """
    ours()
    other()
    a: list[float] = []
    b: list[float] = []
    gc_was = gc.isenabled()
    gc.disable()
    try:
        for r in range(rounds):
            for fn, out in ((ours, a), (other, b)) if r % 2 == 0 else ((other, b), (ours, a)):
                t0 = time.perf_counter()
                for _ in range(number):
                    fn()
                out.append((time.perf_counter() - t0) / number)
    finally:
        if gc_was:
            gc.enable()
    return statistics.median(a), statistics.median(b), statistics.median(x / y for x, y in zip(a, b))


def _reads_floor(m: nn.LSTM, x: torch.Tensor, hx: tuple[torch.Tensor, torch.Tensor], plan: CallPlan) -> bool:
    """What check_call must read on a repeat call, compared in line with nothing else: no call layers, no
    memo, no branches for other kinds of call. Its time is the floor of an equally thorough check."""
    if env_disabled() or is_compiling() or plan.getkey(m.__dict__) != plan.key:
        return False
    decl = DECLARED.get()
    w = m._parameters["weight_ih_l0"]
    h, c = hx
    dtype, device = x.dtype, x.device
    return (x.shape == plan.memo[0] and decl is None and h.shape == plan.memo[2] and c.shape == plan.memo[3]
            and dtype is w.dtype and h.dtype is dtype and c.dtype is dtype and device == w.device
            and h.device == device and c.device == device)


def run(quick: bool = False) -> list[Row]:
    """Rows: check_call vs check_forward_args / jaxtyping+beartype / a no-op hook; watched vs plain."""
    from beartype import beartype

    n = 2000 if quick else 20000
    rows: list[Row] = []
    torch.set_num_threads(1)
    # issue 15's row: a repeat call, which the per-module signature cache accepts after one compare
    bi = nn.LSTM(10, 20, 2, bidirectional=True)
    xb, hb = _lstm_args(bi, 5, 3)
    check_call = sv.check_call
    t_a, t_b, ratio = interleaved(lambda: check_call(bi, xb, hb), lambda: bi.check_forward_args(xb, hb, None),
                                  n // 4)
    rows.append(Row("check_call, LSTM(10, 20, 2, bidirectional), (T=5, bs=3), repeat call",
                    "torch's module.check_forward_args", us(t_a), us(t_b), "<= 0.5", median_ratio=ratio))
    t_f, t_b, ratio = interleaved(functools.partial(_reads_floor, bi, xb, hb, plan_for(bi)),
                                  lambda: bi.check_forward_args(xb, hb, None), n // 4)
    rows.append(Row("  floor: only the reads an exact check cannot skip, in line (SHAPEVIZ_DISABLE, is_compiling, "
                    "7 config values, declared sizes, weight; 3 shapes, 4 dtypes, 4 devices)",
                    "torch's module.check_forward_args", us(t_f), us(t_b), "info", median_ratio=ratio))
    m = nn.LSTM(10, 20, num_layers=2)
    x, hx = _lstm_args(m, 5, 3)
    t_sv = best_time(lambda: check_call(m, x, hx), n)
    t_torch = best_time(lambda: m.check_forward_args(x, hx, None), n)

    @jaxtyped(typechecker=beartype)
    def typed(x: Float[torch.Tensor, "T bs emb"], h: Float[torch.Tensor, "LD bs h"],
              c: Float[torch.Tensor, "LD bs h"]) -> None:
        return None

    def plain(x: torch.Tensor, h: torch.Tensor, c: torch.Tensor) -> None:
        return None

    t_jax = best_time(lambda: typed(x, *hx), n) - best_time(lambda: plain(x, *hx), n)

    def noop_hook(module: nn.Module, args: tuple) -> None:
        return None

    t_noop = best_time(lambda: noop_hook(m, (x, hx)), n)
    label = "check_call fast path, LSTM(10, 20, num_layers=2), (T=5, bs=3)"
    rows.append(Row(label, "torch's module.check_forward_args", us(t_sv), us(t_torch), "<= 0.5"))
    rows.append(Row(label, "jaxtyped(typechecker=beartype), overhead", us(t_sv), us(t_jax), "< 1.0"))
    rows.append(Row(label, "a no-op Python hook call (floor)", us(t_sv), us(t_noop), "info"))
    # watched vs plain forwards
    for name, model, T, bs in (("small LSTM(10, 20), T=5, bs=3", nn.LSTM(10, 20), 5, 3),
                               ("realistic LSTM(256, 512, 2), T=35, bs=32", nn.LSTM(256, 512, 2), 35, 32)):
        x, hx = _lstm_args(model, T, bs)
        k = max(5, n // (20 if T < 10 else 2000))
        with torch.no_grad():
            t_plain = t_watch = float("inf")
            for _ in range(3):  # interleaved rounds: a load spike cannot favour one side
                t_plain = min(t_plain, best_time(lambda model=model, x=x, hx=hx: model(x, hx), k, repeat=3))
                with sv.watch(model):
                    t_watch = min(t_watch, best_time(lambda model=model, x=x, hx=hx: model(x, hx), k, repeat=3))
        rows.append(Row(f"watched forward, {name}", "plain forward", us(t_watch), us(t_plain), "~1.0"))
    return rows


if __name__ == "__main__":
    from bench.run import print_rows

    print_rows(run())
