"""Typed, always-checked drop-ins for ``torch.nn``'s recurrent layers and cells.

>>> import torch
>>> from shapeviz import nn as svnn
>>> lstm = svnn.LSTM(10, 20, num_layers=2)
>>> output, (h_n, c_n) = lstm(torch.randn(5, 3, 10))        # (T=5, bs=3, emb=10)
>>> output.shape, h_n.shape                                  # (T, bs, D*h), (layers*D, bs, h)
(torch.Size([5, 3, 20]), torch.Size([2, 3, 20]))

Each class subclasses its ``torch.nn`` namesake: same parameters, same ``state_dict`` (load one
into the other either way), picklable, same results. The only difference: every call first goes
through :func:`shapeviz.runtime.fastcheck.check_call`, so a wrong shape raises :class:`~shapeviz.ShapeError`
in named dims with a fix instead of a bare ``RuntimeError``; and ``forward`` is annotated with
the :mod:`shapeviz.annotations.aliases` aliases, so editors show ``(T, bs, emb)`` rather than ``Tensor``.
"""

from __future__ import annotations

from typing import Any, overload

import torch
from jaxtyping import Float
from torch import Tensor
from torch.nn.utils.rnn import PackedSequence

from shapeviz.annotations.aliases import (
    Hidden,
    HiddenProj,
    Output,
    OutputBatchFirst,
    OutputProj,
    Seq,
    SeqBatchFirst,
    Step,
    StepHidden,
)
from shapeviz.runtime.fastcheck import check_call

__all__ = ["GRU", "LSTM", "RNN", "GRUCell", "LSTMCell", "RNNCell"]

Unbatched = Float[Tensor, "T emb"]
"""An unbatched sequence (T, emb); the layer then returns (T, D*h) and (layers*D, h)."""

UnbatchedStep = Float[Tensor, "emb"]
"""An unbatched cell input (emb,); the cell then returns (h,)."""

LayerInput = Seq | SeqBatchFirst | Unbatched
LayerOutput = Output | OutputBatchFirst | OutputProj


class _OneStateLayer(torch.nn.Module):
    """RNN and GRU: one state tensor; checked, then torch's own forward."""

    @overload
    def forward(self, input: LayerInput, hx: Hidden | None = None) -> tuple[LayerOutput, Hidden]: ...

    @overload
    def forward(self, input: PackedSequence, hx: Hidden | None = None) -> tuple[PackedSequence, Hidden]: ...

    def forward(self, input: Tensor | PackedSequence, hx: Any = None) -> Any:
        check_call(self, input, hx)
        return super().forward(input, hx)


class RNN(_OneStateLayer, torch.nn.RNN):
    """``torch.nn.RNN`` that checks every call against the conventions.

    >>> rnn = RNN(10, 20, num_layers=2, bidirectional=True)
    >>> out, h_n = rnn(torch.randn(5, 3, 10))    # (T=5, bs=3, emb=10)
    >>> out.shape, h_n.shape                     # (T, bs, D*h), (layers*D, bs, h)
    (torch.Size([5, 3, 40]), torch.Size([4, 3, 20]))
    """


class GRU(_OneStateLayer, torch.nn.GRU):
    """``torch.nn.GRU`` that checks every call against the conventions.

    >>> gru = GRU(8, 16, batch_first=True)
    >>> out, h_n = gru(torch.randn(3, 5, 8))     # (bs=3, T=5, emb=8)
    >>> out.shape, h_n.shape                     # (bs, T, D*h), (layers*D, bs, h)
    (torch.Size([3, 5, 16]), torch.Size([1, 3, 16]))
    """


class LSTM(torch.nn.LSTM):
    """``torch.nn.LSTM`` that checks every call against the conventions.

    >>> lstm = LSTM(10, 20, proj_size=5)
    >>> out, (h_n, c_n) = lstm(torch.randn(7, 2, 10))   # (T=7, bs=2, emb=10)
    >>> out.shape, h_n.shape, c_n.shape                 # (T, bs, D*proj), h: proj, c: h
    (torch.Size([7, 2, 5]), torch.Size([1, 2, 5]), torch.Size([1, 2, 20]))
    """

    @overload
    def forward(
        self, input: LayerInput, hx: tuple[Hidden | HiddenProj, Hidden] | None = None
    ) -> tuple[LayerOutput, tuple[Hidden | HiddenProj, Hidden]]: ...

    @overload
    def forward(
        self, input: PackedSequence, hx: tuple[Hidden | HiddenProj, Hidden] | None = None
    ) -> tuple[PackedSequence, tuple[Hidden | HiddenProj, Hidden]]: ...

    def forward(self, input: Tensor | PackedSequence, hx: Any = None) -> Any:
        check_call(self, input, hx)
        return super().forward(input, hx)


class _OneStateCell(torch.nn.Module):
    """RNNCell and GRUCell: checked, then torch's own forward."""

    def forward(self, input: Step | UnbatchedStep, hx: StepHidden | None = None) -> StepHidden:
        check_call(self, input, hx)
        return super().forward(input, hx)


class RNNCell(_OneStateCell, torch.nn.RNNCell):
    """``torch.nn.RNNCell`` that checks every call against the conventions.

    >>> cell = RNNCell(10, 20)
    >>> cell(torch.randn(3, 10), torch.zeros(3, 20)).shape   # (bs, emb), (bs, h) -> (bs, h)
    torch.Size([3, 20])
    """


class GRUCell(_OneStateCell, torch.nn.GRUCell):
    """``torch.nn.GRUCell`` that checks every call against the conventions.

    >>> GRUCell(8, 16)(torch.randn(4, 8)).shape   # (bs=4, emb=8) -> (bs, h)
    torch.Size([4, 16])
    """


class LSTMCell(torch.nn.LSTMCell):
    """``torch.nn.LSTMCell`` that checks every call against the conventions.

    >>> h, c = LSTMCell(8, 16)(torch.randn(4, 8))   # (bs=4, emb=8)
    >>> h.shape, c.shape                           # (bs, h) each
    (torch.Size([4, 16]), torch.Size([4, 16]))
    """

    def forward(
        self, input: Step | UnbatchedStep, hx: tuple[StepHidden, StepHidden] | None = None
    ) -> tuple[StepHidden, StepHidden]:
        check_call(self, input, hx)
        return super().forward(input, hx)
