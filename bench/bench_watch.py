"""Watched forwards side by side with plain ones, and the teardown of many checked modules.

    python -m bench --only bench_watch

One torch thread; the calling thread's CPU time in interleaved rounds (the order alternates), gc off;
medians of per-round ratios and their interquartile range.

>>> rows = run(quick=True)
>>> rows[0].compared_with
'plain forward'
"""

from __future__ import annotations

import contextlib
import functools
import gc
import time
from collections.abc import Iterator

import torch
import torch.nn as nn

import shapeviz as sv
from bench.common import Around, Rounds, Row, interleaved


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
    """CPU seconds (this thread's) to drop n GRUCells (each called once, checked or not) and collect them."""
    x = torch.randn(2, 4)
    mods = [nn.GRUCell(4, 3) for _ in range(n)]
    for m in mods:
        if checked:
            sv.check_call(m, x)
        m(x)
    gc.collect()
    t0 = time.thread_time()
    del mods[:]
    gc.collect()
    return time.thread_time() - t0


def run(quick: bool = False) -> list[Row]:
    """Rows: watch(inputs="bs T") and watch() vs plain forward; teardown of 10,000 checked modules."""
    torch.set_num_threads(1)
    rows: list[Row] = []
    model = EmbedLSTM()
    tokens = torch.randint(0, 100, (4, 8))  # bs=4, T=8
    number, rounds = (50, 5) if quick else (300, 21)
    what = "watched forward, Embedding -> LSTM(32, 64) -> Linear, T=8, bs=4"
    call = functools.partial(model, tokens)
    cases: list[tuple[str, Around, str]] = [
        (f"{what}, watch(inputs='bs T')", functools.partial(sv.watch, model, inputs="bs T"), "<= 1.03"),
        (f"{what}, watch()", functools.partial(sv.watch, model), "<= 1.03"),
        (f"{what}, two no-op hooks on the root alone (torch's hook dispatch, nothing watched)",
         functools.partial(_noop_hooks, model, False), "info"),
        (f"{what}, watch() plus two no-op hooks on the root (the floor of inputs= through hooks)",
         functools.partial(_noop_hooks, model, True), "info"),
    ]
    with torch.no_grad():
        for label, around, target in cases:
            t = interleaved(call, call, number, rounds, around_ours=around)
            rows.append(t.row(label, "plain forward", target))
    n = 2000 if quick else 10000
    pairs = [(_teardown(n, True), _teardown(n, False)) for _ in range(1 if quick else 5)]
    rows.append(Rounds(tuple(p[0] for p in pairs), tuple(p[1] for p in pairs)).row(
        f"teardown of {n} checked GRUCells (drop + gc)", "the same, never checked", "O(1) each", "s"))
    return rows


def _noop(*_: object) -> None:
    return None


@contextlib.contextmanager
def _noop_hooks(model: nn.Module, watched: bool) -> Iterator[None]:
    """Two no-op hooks on the root (a forward pre-hook with kwargs, an always-called forward hook), and
    watch(model) too when ``watched``; all removed on exit."""
    hooks = [model.register_forward_pre_hook(_noop, with_kwargs=True),
             model.register_forward_hook(_noop, always_call=True)]
    try:
        with sv.watch(model) if watched else contextlib.nullcontext():
            yield
    finally:
        for h in hooks:
            h.remove()


if __name__ == "__main__":
    from bench.run import print_rows

    print_rows(run())
