"""Checked by mypy (tests/test_types.py), never run: the aliases and shapeviz.annotations.modules type-check.

The `# type: ignore[...]` lines are mistakes mypy must catch (mypy runs with
--warn-unused-ignores, so a mistake it stopped catching fails the test).
"""

from __future__ import annotations

from typing import Literal, assert_type

import torch
from torch import Tensor
from torch.nn.utils.rnn import PackedSequence

from shapeviz import nn as svnn
from shapeviz.annotations.aliases import Hidden, Logits, Output, Seq, Step, StepHidden, Tokens, check
from shapeviz.annotations.scratch_models import ScratchLSTM, rnn_cell


@check
def encode(x: Seq, h0: Hidden) -> tuple[Output, Hidden]:
    out, h_n = svnn.GRU(10, 20).forward(x, h0)
    return out, h_n


@check
def head(tokens: Tokens, logits: Logits) -> Logits:
    return logits


@check
def scaled(x: Step, scale: float, mode: Literal["a", "b"] = "a") -> Step:  # non-array parameters keep their types
    return x * scale


def use() -> None:
    x: Seq = torch.randn(5, 3, 10)
    out, h_n = encode(x, torch.zeros(1, 3, 20))
    assert_type(out, Tensor)
    assert_type(h_n, Tensor)

    lstm = svnn.LSTM(10, 20)
    y, (h, c) = lstm.forward(x)
    assert_type(y, Tensor)
    assert_type((h, c), tuple[Tensor, Tensor])
    packed, _ = lstm.forward(PackedSequence(torch.randn(4, 10), torch.tensor([2, 2])))
    assert_type(packed, PackedSequence)

    step: Step = torch.randn(3, 10)
    h1: StepHidden = svnn.RNNCell(10, 20).forward(step)
    hc = svnn.LSTMCell(10, 20).forward(step, (h1, h1))
    assert_type(hc, tuple[Tensor, Tensor])
    assert_type(rnn_cell(step, h1, torch.zeros(20, 10), torch.zeros(20, 20)), Tensor)
    assert_type(ScratchLSTM.from_torch(torch.nn.LSTM(10, 20)), ScratchLSTM)
    assert_type(head(torch.zeros(2, 5, dtype=torch.long), torch.zeros(10, 7)), Tensor)
    assert_type(scaled(step, 2, "b"), Tensor)

    svnn.LSTM(10, 20).forward("not a tensor")  # type: ignore[call-overload]
    svnn.RNNCell(10, 20).forward(step, (h1, h1))  # type: ignore[arg-type]
    encode(x)  # type: ignore[call-arg]
    scaled(step, "2")  # type: ignore[arg-type]
    scaled(step, 2.0, "c")  # type: ignore[arg-type]
    bad: Hidden = "h"  # type: ignore[assignment]
    assert_type(bad, Tensor)
