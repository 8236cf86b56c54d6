"""A compiled forward with checking on vs the same compiled forward without shapeviz.

>>> rows = run(quick=True)  # doctest: +SKIP
>>> rows[0].compared_with  # doctest: +SKIP
'compiled forward, no shapeviz'

shapeviz checks while dynamo traces, so the compiled code holds no check; what is left to measure is
dynamo's guard evaluation and the call overhead. The calling thread's CPU time in interleaved rounds
(``bench.common.interleaved``), the median of per-round ratios and their interquartile range,
inference mode (torch 2.13's inductor cannot compile an LSTM with autograd on CPU), 1 torch thread
(the runner sets it).
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn as nn

import shapeviz as sv
from bench.common import Rounds, Row, alternating


class Tagger(nn.Module):
    """Embedding -> LSTM(32, 64) -> Linear, the issue's watched-forward model."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(100, 32)
        self.rnn = nn.LSTM(32, 64)
        self.fc = nn.Linear(64, 10)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(self.embed(ids))  # ids (T=8, bs=4) -> (T, bs, 64)
        return self.fc(out)


@contextmanager
def _enabled(on: bool) -> Iterator[None]:
    if on:
        sv.enable()
    try:
        yield
    finally:
        if on:
            sv.disable()


def _row(backend: str, how: str, rounds: int, k: int) -> Row:
    torch._dynamo.config.allow_rnn = True
    torch._dynamo.reset()
    plain = Tagger().eval()
    # the same parameter tensors on both sides: two copies' weights sit at different addresses, and the LSTM
    # kernel's speed on them differed by up to 5 % between runs, in either direction (0.98-1.05 for one row)
    checked = copy.deepcopy(plain, {id(p): p for p in plain.parameters()})
    ids = torch.randint(0, 100, (8, 4))
    handle = sv.watch(checked) if how == "watch()" else None
    glob = how == "enable()"  # global: on for the checked side's timing only, so the plain side is unchecked
    try:
        with torch.no_grad():
            c_plain = torch.compile(plain, backend=backend)
            c_checked = torch.compile(checked, backend=backend)
            expected = c_plain(ids)
            with _enabled(glob):
                torch.testing.assert_close(c_checked(ids), expected)  # correct results unchanged
            a, b = alternating([functools.partial(c_checked, ids), functools.partial(c_plain, ids)], k, 10, rounds,
                               around=[functools.partial(_enabled, glob), None], per_call=True)
            t = Rounds(a, b)
    finally:
        if handle is not None:
            handle.remove()
        sv.disable()
        torch._dynamo.reset()
    return t.row(f"compiled forward ({backend}), checking via {how}, Embedding->LSTM(32,64)->Linear, T=8, bs=4",
                 "compiled forward, no shapeviz", "<= 1.02")


def run(quick: bool = False) -> list[Row]:
    """Rows: compiled forwards (eager and inductor backends) with checking on vs off."""
    rounds, k = (3, 5) if quick else (31, 10)  # each call timed alone, a round's median (bench.common.alternating)
    rows = [_row("inductor", "watch()", rounds, k)]
    rows.append(_row("inductor", "enable()", rounds, k))
    rows.append(_row("eager", "watch()", rounds, k))
    return rows


if __name__ == "__main__":
    from bench.run import print_rows

    torch.set_num_threads(1)
    print_rows(run())
