"""Checking a layer declared with ``sv.recurrent``, side by side with checking ``nn.LSTM``.

>>> rows = run(quick=True)
>>> rows[0].compared_with
'check of nn.LSTM(10, 20), the same call (check_input)'
"""

from __future__ import annotations

import torch
import torch.nn as nn

import shapeviz as sv
from bench.common import Row, interleaved
from shapeviz.core.declared import undeclare
from shapeviz.gallery.own_layers import GateLSTM, RNNScratch
from shapeviz.runtime.declared_check import check_declared
from shapeviz.runtime.fastcheck import check_input


def run(quick: bool = False) -> list[Row]:
    """Rows: the check of a repeat call of a declared layer vs the same check of nn.LSTM; the watched forward."""
    n, rounds = (2000, 5) if quick else (20000, 15)
    torch.set_num_threads(1)
    sv.recurrent(GateLSTM, input="T bs emb", state=("layers*D bs h", "layers*D bs h"), output="T bs D*h",
                 sizes={"emb": "input_size", "h": "hidden_size", "layers": "num_layers", "D": "num_layers"})
    sv.recurrent(RNNScratch, input="T bs emb", state=("bs h",), sizes={"emb": "num_inputs", "h": "num_hiddens"})
    try:
        lstm, ours, scratch = nn.LSTM(10, 20), GateLSTM(10, 20), RNNScratch(10, 20)
        x = torch.randn(5, 3, 10)  # (T=5, bs=3, emb=10)
        hc = (torch.zeros(1, 3, 20), torch.zeros(1, 3, 20))  # (layers*D=1, bs=3, h=20) each
        h1 = (torch.zeros(3, 20),)  # a 1-tuple ((bs, h),)
        other = "check of nn.LSTM(10, 20), the same call (check_input)"
        rows = [interleaved(lambda: check_declared(ours, x, hc, None), lambda: check_input(lstm, x, hc, None),
                            n, rounds).row("check of a declared gate-by-gate LSTM(10, 20) (torch's dims), "
                                           "(T=5, bs=3), repeat call", other, "<= 1.1"),
                interleaved(lambda: check_declared(scratch, x, h1, None), lambda: check_input(lstm, x, hc, None),
                            n, rounds).row("check of a declared from-scratch RNN(10, 20), state ((bs, h),), "
                                           "(T=5, bs=3), repeat call", other, "<= 1.1")]
        with torch.no_grad():
            t = interleaved(lambda: scratch(x, h1), lambda: scratch(x, h1), max(n // 20, 50), rounds,
                            around_ours=lambda: sv.watch(scratch))
        rows.append(t.row("watched from-scratch RNN(10, 20) forward, (T=5, bs=3)", "the same forward unwatched",
                          "info"))
        return rows
    finally:
        undeclare(GateLSTM)
        undeclare(RNNScratch)
