"""The price of ops=True: flow checks on the seeds' char-RNN training step, and trace(ops=True) per op.

    python -m bench.bench_flow

>>> rows = run(quick=True)
>>> [r.compared_with for r in rows]
['the same step, unwatched', 'plain forward (no_grad)', 'plain forward (no_grad)', 'plain forward (no_grad)']
"""

from __future__ import annotations

import functools
import statistics
import sys
import weakref
from typing import Any

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

import shapeviz as sv
from bench.bench_trace import _ScratchRNN
from bench.common import Rounds, Row, interleaved, rounds_of, us
from shapeviz.gallery.models import CharRNNScratch
from shapeviz.tracing.oprules import has_tensor, op_name, op_params, op_rule
from shapeviz.tracing.session import trace
from shapeviz.tracing.sites import FrameLabels, site_of, user_frame


class _FloorRecorder(TorchFunctionMode):
    """The least any per-op recorder does in Python: the op's name and line, each operand's producer
    (by id, checked with a weak reference) or its shape/dtype/device, and the result's."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[tuple] = []
        self.seen: dict[int, tuple[weakref.ref, int]] = {}

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        out = func(*args, **(kwargs or {}))
        frame = sys._getframe(1)
        ins = []
        for a in args:
            if isinstance(a, torch.Tensor):
                hit = self.seen.get(id(a))
                ins.append(hit[1] if hit is not None and hit[0]() is a else (tuple(a.shape), a.dtype, a.device))
        if isinstance(out, torch.Tensor):
            self.seen[id(out)] = (weakref.ref(out), len(self.records))
            result: tuple | None = (tuple(out.shape), out.dtype, out.device)
        else:
            result = None
        self.records.append((getattr(func, "__name__", ""), frame.f_code, frame.f_lineno, ins, result))
        return out


class _LeanRecorder(TorchFunctionMode):
    """What a complete recorder must do while the forward runs, and no more: keep only your ops (op name
    filter, your frame), their source line, operand labels (your variables' names), params text and
    naming rule, producer links or snapshots, the result's snapshot. No records built, no names."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[tuple] = []
        self.seen: dict[int, tuple[weakref.ref, int]] = {}
        self.owners: dict[int, list[str]] = {}

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name = op_name(func)
        if name is None or not has_tensor(out):
            return out
        frame = user_frame(direct=True)
        if frame is None:
            return out
        labels = FrameLabels(frame, self.owners)
        ins = []
        for a in args:
            if isinstance(a, torch.Tensor):
                hit = self.seen.get(id(a))
                ins.append((hit[1] if hit is not None and hit[0]() is a else (tuple(a.shape), a.dtype, a.device),
                            labels.name_of(a)))
        result: tuple | None = None
        if isinstance(out, torch.Tensor):
            self.seen[id(out)] = (weakref.ref(out), len(self.records))
            result = (tuple(out.shape), out.dtype, out.device)
        self.records.append((name, site_of(frame), op_params(args, kwargs), ins, result, op_rule(name, args, kwargs)))
        return out


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

        # trace(ops=True) of a small from-scratch loop: every op of every step recorded
        scratch = _ScratchRNN(16, 32)
        xs, h0 = torch.randn(20, 4, 16), torch.zeros(4, 32)

        def plain() -> object:
            with torch.no_grad():
                return scratch(xs, h0)

        def floor() -> object:
            with torch.no_grad(), _FloorRecorder():
                return scratch(xs, h0)

        def lean() -> object:
            with torch.no_grad(), _LeanRecorder():
                return scratch(xs, h0)

        n_ops = len(trace(scratch, xs, h0, ops=True).find()) - 1
        k = 3 if quick else 20
        t_t, t_p, t_f, t_l = rounds_of([lambda: trace(scratch, xs, h0, ops=True), plain, floor, lean], k, rounds)
        per_op = us(statistics.median(a - b for a, b in zip(t_t, t_p))) / n_ops
        rows.append(Rounds(t_t, t_p).row(f"sv.trace(ops=True), small loop T=20, bs=4, h=32 ({n_ops} ops: "
                                         f"{per_op:.1f} µs added per recorded op)", "plain forward (no_grad)",
                                         "<= 4.0"))
        rows.append(Rounds(t_f, t_p).row(
            "  the floor: a torch-function mode that keeps only each op's name, line, shapes, dtypes, "
            "devices and producer links (no names, labels or records)", "plain forward (no_grad)", "info"))
        rows.append(Rounds(t_l, t_p).row(
            "  the forward-time work a complete recorder cannot skip (your ops only, their line, "
            "operand labels, params, naming rule, producer links; no records built, no names)",
            "plain forward (no_grad)", "info"))
    finally:
        torch.set_num_threads(threads)
    return rows


if __name__ == "__main__":
    from bench.run import print_rows

    print_rows(run())
