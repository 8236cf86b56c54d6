"""Watched forwards side by side with plain ones, and the teardown of many checked modules.

Issue 24's targets: a watched forward costs what a plain one does (``watch()`` <= 1.00: shapeviz's check stands
in for torch's ``check_forward_args``), ``watch(inputs="bs T")`` <= 1.02 (no hook: the model's class declares
the names around its call), a cell stepped T times inside such a model included.

    python -m bench --only bench_watch

One torch thread; the calling thread's CPU time, gc off, in rounds of a fine interleaving
(:func:`bench.common.alternating`): the two sides take turns many times a round, a few calls a turn, and a row
reports the median of per-round ratios and their interquartile range. Every turn enters and leaves the same
``watch`` first, on both sides: the plain side runs torch's own forward with nothing of shapeviz installed, after
the same patching and unpatching of classes the watched side had (a class changed costs the next calls CPython's
re-specialization of its attribute reads; timed on one side only, that cost, paid once per ``watch``, would be
read as a per-call cost), and its untimed warm-up calls. The rows "Python side" replace torch's LSTM kernel by a
stub returning the same tensors, on both sides: what is left is the Python each forward runs, where one check
instead of two shows.

>>> rows = run(quick=True)
>>> rows[0].compared_with
'plain forward'
"""

from __future__ import annotations

import contextlib
import functools
import gc
import sys
import time
import types
from collections.abc import Callable, Iterator

import torch
import torch.nn as nn

import shapeviz as sv
from bench.common import Around, Rounds, Row, against_plain, alternating, toggled


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
    """Rows: watched forwards vs plain ones (issue 24: watch() <= 1.00, watch(inputs=) <= 1.02), the same with
    torch's LSTM kernel stubbed out (the Python side alone); teardown of 10,000 checked modules."""
    torch.set_num_threads(1)
    rows: list[Row] = []
    # calls a turn, turns a round, rounds: a forward of ~0.1-0.5 ms, each call timed alone (a round's value is
    # the median of its calls: bench.common.alternating's per_call)
    calls, turns, rounds = (1, 2, 3) if quick else (20, 10, 51)
    bi = nn.LSTM(10, 20, 2, bidirectional=True)
    x = torch.randn(5, 3, 10)
    model = EmbedLSTM()
    tokens20, tokens8 = torch.randint(0, 100, (4, 20)), torch.randint(0, 100, (4, 8))  # (bs=4, T=20), (bs=4, T=8)
    loop = CellLoop()
    emb = "Embedding -> LSTM(32, 64) -> Linear"
    cases: list[tuple[str, Callable[[], object], Around, str]] = [
        ("watched forward, LSTM(10, 20, 2, bidirectional), T=5, bs=3, watch()",
         functools.partial(bi, x), functools.partial(sv.watch, bi), "<= 1.00"),
        (f"watched forward, {emb}, T=20, bs=4, watch()",
         functools.partial(model, tokens20), functools.partial(sv.watch, model), "<= 1.00"),
        (f"watched forward, {emb}, T=20, bs=4, watch(inputs='bs T')",
         functools.partial(model, tokens20), functools.partial(sv.watch, model, inputs="bs T"), "<= 1.02"),
        (f"watched forward, {emb}, T=8, bs=4, watch(inputs='bs T')",
         functools.partial(model, tokens8), functools.partial(sv.watch, model, inputs="bs T"), "<= 1.02"),
        (f"watched forward, {emb}, T=8, bs=4, watch()",
         functools.partial(model, tokens8), functools.partial(sv.watch, model), "<= 1.00"),
        (f"watched forward, {emb}, T=8, bs=4, two no-op hooks on the root alone (what inputs= cost through "
         "hooks before: torch's hook dispatch, nothing watched)",
         functools.partial(model, tokens8), functools.partial(_noop_hooks, model), "info"),
        ("watched forward, Embedding -> GRUCell(32, 64) stepped T=20 times -> Linear, bs=4, watch()",
         functools.partial(loop, tokens20), functools.partial(sv.watch, loop), "info"),
    ]
    with torch.no_grad():
        for label, call, around, target in cases:
            rows.append(against_plain(call, around, calls, turns, rounds, per_call=True).row(label, "plain forward",
                                                                                             target))
        aa = functools.partial(model, tokens20)
        a, b = alternating([aa, aa], calls, turns, rounds, around=[toggled(sv.watch, model)] * 2, warmup=2,
                           per_call=True)
        rows.append(Rounds(a, b).row(f"A/A: the plain forward on both sides ({emb}, T=20, bs=4), each turn after "
                                     "watch() in and out: this run's resolution", "plain forward", "info"))
        cell = functools.partial(loop, tokens20)
        a, b = alternating([cell, cell], calls, turns, rounds, warmup=2, per_call=True,
                           around=[toggled(sv.watch, loop, inputs="bs T", then=True),
                                   toggled(sv.watch, loop, then=True)])
        rows.append(Rounds(a, b).row("  the same cell loop, watch(inputs='bs T') (the names declared once a call of "
                                     "the model, the cell checked 20 times in it)", "the same with watch()", "<= 1.02"))
        lazy = EmbedLSTM()
        call8 = functools.partial(lazy, tokens8)
        rows.append(against_plain(call8, functools.partial(_lazy_read, lazy), calls, turns, rounds, per_call=True).row(
            f"  issue 24's lazy design, prototyped: {emb}, T=8, bs=4, watch() and each check reading the root call's "
            "input from its frame (the read alone, nothing declared)", "plain forward", "info"))
        lazy_loop = CellLoop()
        cell = functools.partial(lazy_loop, tokens20)
        a, b = alternating([cell, cell], calls, turns, rounds, warmup=2, per_call=True,
                           around=[functools.partial(_lazy_read, lazy_loop), toggled(sv.watch, lazy_loop, then=True)])
        rows.append(Rounds(a, b).row("  the same prototype on the cell loop (the frame read in each of its 20 checks)",
                                     "the same with watch()", "info"))
        for label, call, around in (
                ("LSTM(10, 20, 2, bidirectional), T=5, bs=3, watch()", functools.partial(bi, x),
                 functools.partial(sv.watch, bi)),
                (f"{emb}, T=20, bs=4, watch()", functools.partial(model, tokens20), functools.partial(sv.watch, model)),
                (f"{emb}, T=20, bs=4, watch(inputs='bs T')", functools.partial(model, tokens20),
                 functools.partial(sv.watch, model, inputs="bs T"))):
            with _kernel_stubbed(call):
                t = against_plain(call, around, calls * 2, turns, rounds, per_call=True)
            rows.append(t.row(f"  Python side: {label}, torch's LSTM kernel stubbed on both sides", "plain forward",
                              "info"))
        rows.append(_stand_in(bi, x, 50 if quick else 100, turns, rounds))
    n = 2000 if quick else 10000
    pairs = [(_teardown(n, True), _teardown(n, False)) for _ in range(1 if quick else 5)]
    rows.append(Rounds(tuple(p[0] for p in pairs), tuple(p[1] for p in pairs)).row(
        f"teardown of {n} checked GRUCells (drop + gc)", "the same, never checked", "O(1) each", "s"))
    return rows


def _stand_in(lstm: nn.LSTM, x: torch.Tensor, calls: int, turns: int, rounds: int) -> Row:
    """What a watched layer's forward runs in place of torch's ``self.check_forward_args(...)`` (shapeviz's
    patched forward, its gate, the check, the class test) vs that call, each inside a forward whose body is
    otherwise empty: the whole difference between a watched and a plain forward, timed without the kernel's
    noise around it."""
    from shapeviz.runtime import patching, watching

    hx = (torch.zeros(4, x.shape[1], 20), torch.zeros(4, x.shape[1], 20))

    def plain(self: nn.LSTM, input: torch.Tensor, hx: object = None) -> None:
        self.check_forward_args(input, hx, None)  # as torch's forward calls it

    def unchecked(self: nn.LSTM, input: torch.Tensor, hx: object = None) -> None:
        return None

    watched = patching.make_forward(plain, watching._gate, (nn.LSTM.check_forward_args, unchecked))
    with sv.watch(lstm):
        a, b = alternating([functools.partial(watched, lstm, x, hx), functools.partial(plain, lstm, x, hx)], calls,
                           turns, rounds, warmup=5)
    return Rounds(a, b).row("  what a watched forward runs in place of torch's check (shapeviz's patched forward, its "
                            "gate, the check, the class test), LSTM(10, 20, 2, bidirectional), T=5, bs=3",
                            "torch's self.check_forward_args(input, hx, None) in torch's forward", "info")


@contextlib.contextmanager
def _kernel_stubbed(call: Callable[[], object]) -> Iterator[None]:
    """``torch._VF.lstm`` (the LSTM kernel torch's forward calls) replaced by one that returns what the real
    kernel returned for the first LSTM call ``call`` makes: torch's forward around it runs as ever."""
    vf = sys.modules["torch._VF"]
    seen: list[tuple[torch.Tensor, ...]] = []
    real = vf.lstm

    def recording(*args: object) -> tuple[torch.Tensor, ...]:
        out = real(*args)
        seen.append(out)
        return out

    vf.lstm = recording
    try:
        call()
    finally:
        del vf.lstm
    vf.lstm = lambda *args: seen[0]
    try:
        yield
    finally:
        del vf.lstm


@contextlib.contextmanager
def _lazy_read(model: nn.Module) -> Iterator[None]:
    """``watch(model)`` with issue 24's lazy design prototyped for its cost: every check of a layer of ``model``
    first reads the root call's first input from its ``nn.Module._wrapped_call_impl`` frame (``sys._getframe`` at
    the depth found by the first read's walk, ``f_locals``, its shape compared with the last one read, sizes made
    where it changed) instead of a declaration made per call. What it reads is not declared: the row times the
    read alone, the least that design adds to ``watch()``. Built by swapping the context-variable read the hot
    path binds when a module's plan is made, so the model's plans are made afresh inside and dropped after."""
    from shapeviz.core.dimensions import DECLARED
    from shapeviz.runtime import fastcheck, hotpath

    code = nn.Module._wrapped_call_impl.__code__
    get = DECLARED.get
    last: list = [None, None, 0]  # the shape read, the sizes it gives, the root frame's depth

    def read() -> object:
        f = sys._getframe(last[2]) if last[2] else None
        if f is None or f.f_code is not code:
            f, depth, walk = None, 1, sys._getframe(1)
            while walk is not None:  # the outermost module call: the root's
                if walk.f_code is code:
                    f, last[2] = walk, depth
                walk, depth = walk.f_back, depth + 1
        if f is not None:
            shape = f.f_locals["args"][0].shape
            if shape != last[0]:
                last[0], last[1] = shape, dict(zip(("bs", "T"), shape))
        return get()

    def fresh() -> None:
        for m in model.modules():
            fastcheck._plans.pop(id(m), None)

    fresh()
    hotpath.DECLARED = types.SimpleNamespace(get=read)  # type: ignore[assignment]
    try:
        with sv.watch(model):
            yield
    finally:
        hotpath.DECLARED = DECLARED  # type: ignore[assignment]
        fresh()


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
