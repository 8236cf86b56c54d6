"""Watched forwards side by side with plain ones, and the teardown of many checked modules.

    python -m bench --only bench_watch

One torch thread; interleaved rounds (the order alternates), medians of per-round ratios.

>>> rows = run(quick=True)
>>> rows[0].compared_with
'plain forward'
"""

from __future__ import annotations

import contextlib
import functools
import gc
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn as nn

import shapeviz as sv
from bench.common import Row, us


class EmbedLSTM(nn.Module):
    """issue 15's model: Embedding -> LSTM(32, 64) -> Linear, tokens (bs, T)."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(100, 32)
        self.rnn = nn.LSTM(32, 64)
        self.fc = nn.Linear(64, 100)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(self.emb(tokens).transpose(0, 1))
        return self.fc(out)


def _teardown(n: int, checked: bool) -> float:
    """Seconds to drop n GRUCells (each called once, checked or not) and collect them."""
    x = torch.randn(2, 4)
    mods = [nn.GRUCell(4, 3) for _ in range(n)]
    for m in mods:
        if checked:
            sv.check_call(m, x)
        m(x)
    gc.collect()
    t0 = time.perf_counter()
    del mods[:]
    gc.collect()
    return time.perf_counter() - t0


def run(quick: bool = False) -> list[Row]:
    """Rows: watch(inputs="bs T") and watch() vs plain forward; teardown of 10,000 checked modules."""
    torch.set_num_threads(1)
    rows: list[Row] = []
    model = EmbedLSTM()
    tokens = torch.randint(0, 100, (4, 8))  # bs=4, T=8
    number, rounds = (50, 5) if quick else (300, 21)
    what = "watched forward, Embedding -> LSTM(32, 64) -> Linear, T=8, bs=4"
    with torch.no_grad():
        for inputs in ("bs T", None):
            t_w, t_p, ratio = _watched_vs_plain(model, tokens, inputs, number, rounds)
            label = f"{what}, watch(inputs={inputs!r})" if inputs else f"{what}, watch()"
            rows.append(Row(label, "plain forward", us(t_w), us(t_p), "<= 1.03", median_ratio=ratio))
        t_h, t_p, ratio = _watched_vs_plain(model, tokens, "noop-hooks", number, rounds)
        rows.append(Row(f"{what}, two no-op hooks on the root alone (torch's hook dispatch, nothing watched)",
                        "plain forward", us(t_h), us(t_p), "info", median_ratio=ratio))
        t_h, t_p, ratio = _watched_vs_plain(model, tokens, "watch+noop-hooks", number, rounds)
        rows.append(Row(f"{what}, watch() plus two no-op hooks on the root (the floor of inputs= through hooks)",
                        "plain forward", us(t_h), us(t_p), "info", median_ratio=ratio))
    n = 2000 if quick else 10000
    pairs = [(_teardown(n, True), _teardown(n, False)) for _ in range(1 if quick else 3)]
    rows.append(Row(f"teardown of {n} checked GRUCells (drop + gc)", "the same, never checked",
                    statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs), "O(1) each",
                    unit="s", median_ratio=statistics.median(a / b for a, b in pairs)))
    return rows


def _noop(*_: object) -> None:
    return None


def _per_call(fn: Callable[[], object], number: int) -> float:
    t0 = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - t0) / number


def _watched_vs_plain(model: nn.Module, tokens: torch.Tensor, inputs: str | None, number: int,
                      rounds: int) -> tuple[float, float, float]:
    """Interleaved rounds (order alternating) of the watched forward and the plain one, gc off."""
    w: list[float] = []
    p: list[float] = []
    call = functools.partial(model, tokens)
    call()
    gc.disable()
    try:
        for r in range(rounds):
            for watched in (True, False) if r % 2 == 0 else (False, True):
                if watched and inputs in ("noop-hooks", "watch+noop-hooks"):
                    hooks = [model.register_forward_pre_hook(_noop, with_kwargs=True),
                             model.register_forward_hook(_noop, always_call=True)]
                    with sv.watch(model) if inputs == "watch+noop-hooks" else contextlib.nullcontext():
                        call()
                        w.append(_per_call(call, number))
                    for h in hooks:
                        h.remove()
                elif watched:
                    with sv.watch(model, inputs=inputs):
                        call()  # warm the check's cache, as every call after the first finds it
                        w.append(_per_call(call, number))
                else:
                    p.append(_per_call(call, number))
    finally:
        gc.enable()
    return statistics.median(w), statistics.median(p), statistics.median(a / b for a, b in zip(w, p))


if __name__ == "__main__":
    from bench.run import print_rows

    print_rows(run())
