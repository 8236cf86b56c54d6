"""The price of ops=True: flow checks on the seeds' char-RNN training step, and trace(ops=True) against torch's
own profiler recording every op's shapes.

    python -m bench.bench_flow

>>> rows = run(quick=True)
>>> [r.compared_with for r in rows][:2]
['the same step, unwatched', 'torch.profiler.profile(record_shapes=True), the same forward']

The like-for-like anchor of ``trace(ops=True)`` (every op's shapes recorded) is
``torch.profiler.profile(activities=[CPU], record_shapes=True)`` around the same forward (its events are not read:
the cheaper side; a trace too names its records and groups repeated steps when it is first read). An info row reads
both once (``len(t.calls)``, ``len(prof.events())``). Both run with the collector on, as in a program (the other
rows of the suite time with it off): a trace's records are objects the collector walks, the profiler's are not.
Memory is what the Trace keeps (tracemalloc, after a collection), per recorded op, once read (an info row: before
its first read).
"""

from __future__ import annotations

import contextlib
import functools
import gc
import os
import statistics
import sys
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

import shapeviz as sv
from bench.bench_trace import _ScratchRNN
from bench.common import Rounds, Row, budget, interleaved, rounds_of, us
from shapeviz.gallery.models import CharRNNScratch
from shapeviz.tracing.session import UNREAD_RECORDS, trace


def run(quick: bool = False) -> list[Row]:
    """Rows: watch(ops=True) on a char-RNN step (forward + loss + backward), trace(ops=True) per op."""
    torch.manual_seed(0)
    rows: list[Row] = []
    rounds = 3 if quick else 9
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        # the seeds' d2l char-RNN (one-hot loop, torch.cat of the steps), vocab 28, h 256, T=35, bs=32
        model = CharRNNScratch(vocab=28, hidden=256)
        X = torch.randint(0, 28, (32, 35))
        Y = torch.randint(0, 28, (32, 35))

        def step() -> None:
            y_hat, _ = model(X)
            loss = F.cross_entropy(y_hat, Y.T.reshape(-1))
            loss.backward()

        def watched_step() -> None:
            y_hat, _ = model(X)
            loss = F.cross_entropy(y_hat, sv.name(Y, "bs T").T.reshape(-1))
            loss.backward()

        k = 2 if quick else 10
        t = interleaved(watched_step, step, k, rounds,
                        around_ours=functools.partial(sv.watch, model, inputs="bs T", ops=True))
        rows.append(t.row("char-RNN training step (forward + loss + backward) under watch(ops=True), "
                          "T=35, bs=32, h=256", "the same step, unwatched", "<= 3.0"))

        # trace(ops=True) against the profiler on the same loops: every op of every step recorded
        for T, bs, h in ((20, 4, 32), (200, 8, 64)):
            rows += _against_profiler(T, bs, h, 3 if quick else 15, quick)
        rows += _memory_row(2_000 if quick else 10_000)
    finally:
        torch.set_num_threads(threads)
    return rows


if __name__ == "__main__":
    from bench.run import print_rows

    print_rows(run())


class _Bare(TorchFunctionMode):
    """A torch-function mode that only calls each function: the price of the mechanism a trace records through."""

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        return func(*args, **(kwargs or {}))


def _with_gc(fn: Callable[[], object]) -> Callable[[], object]:
    """``fn`` run with the garbage collector on (the harness turns it off), as it is in a program."""
    def on() -> object:
        gc.enable()
        try:
            return fn()
        finally:
            gc.disable()
    return on


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """File descriptor 2 to /dev/null inside: the profiler's C++ side prints two lines at each start and stop."""
    sys.stderr.flush()
    saved = os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


def _against_profiler(T: int, bs: int, h: int, rounds: int, quick: bool) -> list[Row]:
    """trace(ops=True) and the profiler (record_shapes=True) on a from-scratch loop, with the plain forward."""
    from torch.profiler import ProfilerActivity, profile

    scratch = _ScratchRNN(16, h)
    xs, h0 = torch.randn(T, bs, 16), torch.zeros(bs, h)

    def plain() -> object:
        with torch.no_grad():
            return scratch(xs, h0)

    def profiled() -> object:
        with torch.no_grad(), profile(activities=[ProfilerActivity.CPU], record_shapes=True):
            return scratch(xs, h0)

    def bare() -> object:
        with torch.no_grad(), _Bare():
            return scratch(xs, h0)

    def traced_read() -> object:
        t = trace(scratch, xs, h0, ops=True)
        return len(t.calls)  # the first read: records named, repeated steps grouped

    def profiled_read() -> object:
        with torch.no_grad(), profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            scratch(xs, h0)
        return len(prof.events())  # its events read

    n_ops = len(trace(scratch, xs, h0, ops=True).find()) - 1
    k = max(1, (3 if quick else 240) // T)  # about 50 ms of each side a round
    with _quiet_stderr():
        t_t, t_p, t_f, t_b = rounds_of([_with_gc(lambda: trace(scratch, xs, h0, ops=True)), _with_gc(profiled),
                                        _with_gc(plain), _with_gc(bare)], k, rounds)
        off_t, off_p = rounds_of([lambda: trace(scratch, xs, h0, ops=True), profiled], k, rounds)
        r_t, r_p = rounds_of([_with_gc(traced_read), _with_gc(profiled_read)], k, rounds)
    what = f"sv.trace(ops=True), from-scratch loop T={T}, bs={bs}, h={h} ({n_ops} ops)"
    per_op = us(statistics.median(a - b for a, b in zip(t_t, t_f))) / n_ops
    per_op_prof = us(statistics.median(a - b for a, b in zip(t_p, t_f))) / n_ops
    return [Rounds(t_t, t_p).row(what, "torch.profiler.profile(record_shapes=True), the same forward", "<= 1.0"),
            Rounds(t_t, t_f).row(f"  the same, {per_op:.1f} µs added per recorded op", "plain forward (no_grad)",
                                 "info"),
            Rounds(t_p, t_f).row(f"  the profiler, {per_op_prof:.1f} µs added per op of your code",
                                 "plain forward (no_grad)", "info"),
            Rounds(t_b, t_f).row("  a bare TorchFunctionMode (the mechanism alone)", "plain forward (no_grad)", "info"),
            Rounds(off_t, off_p).row("  the same two with the collector off (as the suite's other rows time)",
                                     "the profiler, collector off", "info"),
            Rounds(r_t, r_p).row("  the trace read once (len(t.calls): its records named, repeated steps grouped)",
                                 "the profiler, its events read (len(prof.events()))", "info")]


def _memory(T: int) -> tuple[list[float], list[float], int]:
    """MB a Trace of a T-step loop keeps as sv.trace returns it and once read (3 runs, tracemalloc), its ops."""
    scratch = _ScratchRNN(16, 64)
    xs, h0 = torch.randn(T, 8, 16), torch.zeros(8, 64)
    kept: list[float] = []
    unread: list[float] = []
    n_ops = 0
    for _ in range(3):
        gc.collect()
        tracemalloc.start()
        try:
            t = trace(scratch, xs, h0, ops=True)
            gc.collect()
            unread.append(tracemalloc.get_traced_memory()[0] / 1e6)
            n_ops = len(t.calls) - 1  # the first read: named and grouped
            gc.collect()
            kept.append(tracemalloc.get_traced_memory()[0] / 1e6)
        finally:
            tracemalloc.stop()
        del t
    return unread, kept, n_ops


def _memory_row(T: int) -> list[Row]:
    """What the Trace of a T-step loop keeps, against 0.5 KB (512 bytes) per recorded op: as sv.trace returns it
    (past UNREAD_RECORDS records it is named and grouped at once) and once read; an unread trace under the
    limit as information."""
    unread, kept, n_ops = _memory(T)
    budget_mb = n_ops * 512 / 1e6
    small_T = (UNREAD_RECORDS - 1) // 4 - 1  # 4 ops a step: the longest loop whose trace stays unread
    small_unread, _, small_ops = _memory(small_T)
    small_mb = small_ops * 512 / 1e6
    return [budget(unread, budget_mb).row(f"memory a Trace keeps, from-scratch loop T={T:,} ({n_ops:,} ops; "
                                          f"{statistics.median(unread) * 1e6 / n_ops:.0f} bytes per op), as "
                                          "sv.trace returns it", f"0.5 KB per recorded op ({budget_mb:.1f} MB)",
                                          "<= 1.0", unit="MB"),
            budget(kept, budget_mb).row(f"  the same once read ({statistics.median(kept) * 1e6 / n_ops:.0f} bytes "
                                        "per op)", f"0.5 KB per recorded op ({budget_mb:.1f} MB)", "<= 1.0",
                                        unit="MB"),
            budget(small_unread, small_mb).row(
                f"  an unread trace under the {UNREAD_RECORDS:,}-record limit, T={small_T:,} ({small_ops:,} ops; "
                f"{statistics.median(small_unread) * 1e6 / small_ops:.0f} bytes per op, at most "
                f"{UNREAD_RECORDS * 1.5 / 1e3:.0f} MB)", f"0.5 KB per recorded op ({small_mb:.1f} MB)", "info",
                unit="MB")]
