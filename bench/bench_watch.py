"""Watched forwards side by side with plain ones, and the teardown of many checked modules.

Issue 24's targets: a watched forward costs what a plain one does (``watch()`` <= 1.00: shapeviz's check stands
in for torch's ``check_forward_args``), ``watch(inputs="bs T")`` <= 1.02 (no hook: the model's class declares
the names around its call), a cell stepped T times inside such a model included.

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
from collections.abc import Callable, Iterator

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


class CellLoop(nn.Module):
    """Embedding -> a GRUCell stepped over T -> Linear: the cell is checked T times in one call of the model."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(100, 32)
        self.cell = nn.GRUCell(32, 64)
        self.fc = nn.Linear(64, 100)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:  # tokens (bs, T)
        x = self.emb(tokens)
        h = x.new_zeros(tokens.shape[0], 64)
        for t in range(tokens.shape[1]):
            h = self.cell(x[:, t], h)
        return self.fc(h)


def run(quick: bool = False) -> list[Row]:
    """Rows: watched forwards vs plain ones (issue 24: watch() <= 1.00, watch(inputs=) <= 1.02); teardown of
    10,000 checked modules."""
    torch.set_num_threads(1)
    rows: list[Row] = []
    number, rounds = (10, 5) if quick else (40, 151)  # many short rounds: a pair of blocks ~10 ms apart
    bi = nn.LSTM(10, 20, 2, bidirectional=True)
    x = torch.randn(5, 3, 10)
    model = EmbedLSTM()
    tokens20, tokens8 = torch.randint(0, 100, (4, 20)), torch.randint(0, 100, (4, 8))  # (bs=4, T=20), (bs=4, T=8)
    loop = CellLoop()
    emb = "Embedding -> LSTM(32, 64) -> Linear"
    long, cells = max(2, number * 2 // 5), max(2, number // 5)  # calls a round: T=20 forwards, the cell loop
    cases: list[tuple[str, Callable[[], object], Around, str, int]] = [
        ("watched forward, LSTM(10, 20, 2, bidirectional), T=5, bs=3, watch()",
         functools.partial(bi, x), functools.partial(sv.watch, bi), "<= 1.00", number),
        (f"watched forward, {emb}, T=20, bs=4, watch()",
         functools.partial(model, tokens20), functools.partial(sv.watch, model), "<= 1.00", long),
        (f"watched forward, {emb}, T=20, bs=4, watch(inputs='bs T')",
         functools.partial(model, tokens20), functools.partial(sv.watch, model, inputs="bs T"), "<= 1.02", long),
        (f"watched forward, {emb}, T=8, bs=4, watch(inputs='bs T')",
         functools.partial(model, tokens8), functools.partial(sv.watch, model, inputs="bs T"), "<= 1.02", number),
        (f"watched forward, {emb}, T=8, bs=4, watch()",
         functools.partial(model, tokens8), functools.partial(sv.watch, model), "<= 1.00", number),
        (f"watched forward, {emb}, T=8, bs=4, two no-op hooks on the root alone (what inputs= cost through "
         "hooks before: torch's hook dispatch, nothing watched)",
         functools.partial(model, tokens8), functools.partial(_noop_hooks, model), "info", number),
        ("watched forward, Embedding -> GRUCell(32, 64) stepped T=20 times -> Linear, bs=4, watch()",
         functools.partial(loop, tokens20), functools.partial(sv.watch, loop), "info", cells),
        (f"A/A: the plain forward on both sides ({emb}, T=20, bs=4): this run's resolution, no shapeviz",
         functools.partial(model, tokens20), contextlib.nullcontext, "info", long),
    ]
    with torch.no_grad():
        for label, call, around, target, k in cases:
            t = interleaved(call, call, k, rounds, around_ours=around)
            rows.append(t.row(label, "plain forward", target))
        t = interleaved(functools.partial(loop, tokens20), functools.partial(loop, tokens20), cells, rounds,
                        around_ours=functools.partial(sv.watch, loop, inputs="bs T"),
                        around_other=functools.partial(sv.watch, loop))
        rows.append(t.row("  the same cell loop, watch(inputs='bs T') (the names declared once a call of the model, "
                          "the cell checked 20 times in it)", "the same with watch()", "<= 1.02"))
    n = 2000 if quick else 10000
    pairs = [(_teardown(n, True), _teardown(n, False)) for _ in range(1 if quick else 5)]
    rows.append(Rounds(tuple(p[0] for p in pairs), tuple(p[1] for p in pairs)).row(
        f"teardown of {n} checked GRUCells (drop + gc)", "the same, never checked", "O(1) each", "s"))
    return rows


def _noop(*_: object) -> None:
    return None


@contextlib.contextmanager
def _noop_hooks(model: nn.Module) -> Iterator[None]:
    """Two no-op hooks on the root (a forward pre-hook with kwargs, an always-called forward hook), as
    ``watch(inputs=)`` installed them before; removed on exit."""
    hooks = [model.register_forward_pre_hook(_noop, with_kwargs=True),
             model.register_forward_hook(_noop, always_call=True)]
    try:
        yield
    finally:
        for h in hooks:
            h.remove()


if __name__ == "__main__":
    from bench.run import print_rows

    print_rows(run())
