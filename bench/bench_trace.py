"""sv.trace side by side with a plain forward and with torchinfo.summary, measured in one run.

    python -m bench.bench_trace

>>> rows = run(quick=True)
>>> [r.compared_with for r in rows][:3]
['plain forward (eval, no_grad)', 'torchinfo.summary (same model, same inputs)', 'torchinfo.summary']
"""

from __future__ import annotations

import time

import torch
import torch.nn as nn

import shapeviz as sv
from bench.common import Rounds, Row, budget, interleaved, optional, rounds_of, skipped_row
from shapeviz.tracing.session import trace


class _ScratchRNN(nn.Module):
    """A from-scratch RNN loop, to price ops=True (every matmul of every step recorded)."""

    def __init__(self, emb: int, hidden: int) -> None:
        super().__init__()
        self.W_xh = nn.Parameter(torch.randn(emb, hidden) * 0.01)
        self.W_hh = nn.Parameter(torch.randn(hidden, hidden) * 0.01)

    def forward(self, x: torch.Tensor, H: torch.Tensor) -> torch.Tensor:
        for X in x:
            H = torch.tanh(X @ self.W_xh + H @ self.W_hh)
        return H


def run(quick: bool = False) -> list[Row]:
    """Rows: module-level trace overhead, trace vs torchinfo.summary, the big meta trace, ops=True.

    Without torchinfo (the ``bench`` extra) its rows say so instead of failing."""
    torchinfo = optional("torchinfo")
    torch.manual_seed(0)
    rows: list[Row] = []
    rounds = 3 if quick else 15
    model = nn.LSTM(256, 512, 2).eval()
    T, bs = 35, 32
    s = sv.conventions(model).shapes(T, bs)
    x, hx = torch.randn(*s["input"]), (torch.zeros(*s["h_0"]), torch.zeros(*s["c_0"]))
    label = "sv.trace, LSTM(256, 512, 2), T=35, bs=32, CPU (1 thread)"

    def plain() -> object:
        with torch.no_grad():
            return model(x, hx)

    def traced() -> object:
        return trace(model, x, hx)

    def summary() -> object:
        return torchinfo.summary(model, input_data=[x, hx], verbose=0) if torchinfo else None

    # one thread, the three in the same interleaved rounds, one call each, the calling thread's CPU time:
    # a shared, busy machine takes wall time from them, not CPU time
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        t_trace, t_plain, t_info = rounds_of([traced, plain, summary], 1, rounds)
    finally:
        torch.set_num_threads(threads)
    rows.append(Rounds(t_trace, t_plain).row(label, "plain forward (eval, no_grad)", "<= 1.10"))
    if torchinfo is None:
        rows.append(skipped_row(label, "torchinfo.summary (same model, same inputs)", "<= 1.0"))
    else:
        rows.append(Rounds(t_trace, t_info).row(label, "torchinfo.summary (same model, same inputs)", "<= 1.0"))

    # the fixed cost alone, where the forward itself is cheap
    small = nn.LSTM(10, 20).eval()
    xs_, hs_ = torch.randn(5, 3, 10), (torch.zeros(1, 3, 20), torch.zeros(1, 3, 20))
    n_small = 20 if quick else 100
    small_label = "sv.trace fixed cost, LSTM(10, 20), T=5, bs=3"
    if torchinfo is None:
        rows.append(skipped_row(small_label, "torchinfo.summary", "<= 1.0"))
    else:
        t = interleaved(lambda: trace(small, xs_, hs_),
                        lambda: torchinfo.summary(small, input_data=[xs_, hs_], verbose=0), n_small, rounds)
        rows.append(t.row(small_label, "torchinfo.summary", "<= 1.0"))

    # the big one on the meta device
    t0 = time.perf_counter()
    with torch.device("meta"):
        big = nn.LSTM(1024, 4096, num_layers=8, bidirectional=True)
        xb = torch.randn(4096, 64, 1024)
    t_build = time.perf_counter() - t0
    times = []
    for _ in range(1 if quick else 5):
        t0 = time.thread_time()
        trace(big, xb)
        times.append(time.thread_time() - t0)
    rows.append(budget(times, 2.0).row("sv.trace on meta, LSTM(1024, 4096, 8, bidirectional), T=4096, bs=64",
                                       "the 2 s budget", "< 1.0 (< 2 s)", unit="s"))
    rows.append(Row("  (building that model and input under torch.device('meta'), once, wall time)",
                    "the 2 s budget", t_build, 2.0, "info", unit="s"))

    # ops=True on a from-scratch loop
    scratch = _ScratchRNN(64, 128)
    xs, h0 = torch.randn(35, 32, 64), torch.zeros(32, 128)

    def scratch_plain() -> object:
        with torch.no_grad():
            return scratch(xs, h0)

    k = 2 if quick else 5
    t = interleaved(lambda: trace(scratch, xs, h0, ops=True), scratch_plain, k, rounds)
    rows.append(t.row("sv.trace(ops=True), from-scratch RNN loop, T=35, bs=32 (175 ops)",
                      "plain forward (no_grad)", "info"))
    return rows


if __name__ == "__main__":
    from bench.run import print_rows

    print_rows(run())
