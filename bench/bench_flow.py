"""The price of ops=True: flow checks on the seeds' char-RNN training step, and trace(ops=True) per op.

    python -m bench.bench_flow

>>> rows = run(quick=True)
>>> [r.compared_with for r in rows]
['the same step, unwatched', 'plain forward (no_grad)']
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

import shapeviz as sv
from bench.bench_trace import _ScratchRNN
from bench.common import Row, best_time, us
from shapeviz.gallery.models import CharRNNScratch
from shapeviz.tracing.session import trace


def run(quick: bool = False) -> list[Row]:
    """Rows: watch(ops=True) on a char-RNN step (forward + loss + backward), trace(ops=True) per op."""
    torch.manual_seed(0)
    rows: list[Row] = []
    repeat = 3 if quick else 7
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
        ratios = []
        t_plain = t_watch = float("inf")
        for _ in range(repeat):  # interleaved rounds: a busy machine slows both alike
            tp = best_time(step, k, 1)
            with sv.watch(model, inputs="bs T", ops=True):
                tw = best_time(watched_step, k, 1)
            t_plain, t_watch = min(t_plain, tp), min(t_watch, tw)
            ratios.append(tw / tp)
        ratios.sort()
        rows.append(Row("char-RNN training step (forward + loss + backward) under watch(ops=True), "
                        "T=35, bs=32, h=256", "the same step, unwatched", us(t_watch), us(t_plain), "<= 3.0",
                        median_ratio=ratios[len(ratios) // 2]))

        # trace(ops=True) of a small from-scratch loop: every op of every step recorded
        scratch = _ScratchRNN(16, 32)
        xs, h0 = torch.randn(20, 4, 16), torch.zeros(4, 32)

        def plain() -> object:
            with torch.no_grad():
                return scratch(xs, h0)

        n_ops = len(trace(scratch, xs, h0, ops=True).find()) - 1
        k = 3 if quick else 20
        t_p = best_time(plain, k, repeat)
        t_t = best_time(lambda: trace(scratch, xs, h0, ops=True), k, repeat)
        rows.append(Row(f"sv.trace(ops=True), small loop T=20, bs=4, h=32 ({n_ops} ops: "
                        f"{us(t_t) / n_ops:.1f} µs per recorded op)", "plain forward (no_grad)",
                        us(t_t), us(t_p), "<= 4.0"))
    finally:
        torch.set_num_threads(threads)
    return rows


if __name__ == "__main__":
    from bench.run import print_rows

    print_rows(run())
