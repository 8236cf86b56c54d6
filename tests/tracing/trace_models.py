"""Test-only systems for the trace tests; the seeds' systems themselves come from the gallery.

The char-RNN, the Embedding + nn.RNN language model, the RNNCell loop, the packed LSTM and the
hand-written batch-first loop are :mod:`shapeviz.gallery.models` (one copy, also the demo's);
what stays here is what only the tests need: a broken variant of the gallery's char-RNN, and
systems the gallery has no example of.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import shapeviz as sv
from shapeviz.gallery.models import CharRNNScratch


class BrokenCharRNN(CharRNNScratch):
    """The gallery's char-RNN with the classic slip: the state multiplied by W_xh instead of W_hh."""

    def forward(self, tokens: torch.Tensor, H: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        inputs = F.one_hot(tokens.T, self.vocab).float()
        W_xh, b_h = self.W_xh, self.b_h
        for X in inputs:
            H = torch.tanh(X @ W_xh + H @ W_xh + b_h)  # bug: H (bs, h) @ W_xh (vocab, h)
        return H, H


class BiTagger(nn.Module):
    """A bidirectional batch_first GRU tagging each step: (bs, T, emb) -> (bs, T, tags)."""

    def __init__(self, emb: int = 6, hidden: int = 8, tags: int = 5) -> None:
        super().__init__()
        self.rnn = nn.GRU(emb, hidden, batch_first=True, bidirectional=True)
        self.head = nn.Linear(2 * hidden, tags)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, _ = self.rnn(x)  # (bs, T, 2h)
        return self.head(y)


class Seq2SeqEncoder(nn.Module):
    """An LSTM encoder: tokens (bs, T) -> embedding -> 2-layer LSTM; returns output, (h_n, c_n)."""

    def __init__(self, vocab: int = 30, emb: int = 16, hidden: int = 24, layers: int = 2) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab, emb)
        self.rnn = nn.LSTM(emb, hidden, num_layers=layers)

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        x = self.embedding(tokens).permute(1, 0, 2)  # (bs, T, emb) -> (T, bs, emb)
        return self.rnn(x)


class Seq2Seq(nn.Module):
    """Encoder LSTM -> its (h_n, c_n) start a decoder LSTM over the target tokens."""

    def __init__(self, vocab: int = 30, emb: int = 16, hidden: int = 24) -> None:
        super().__init__()
        self.encoder = Seq2SeqEncoder(vocab, emb, hidden)
        self.tgt_embedding = nn.Embedding(vocab, emb)
        self.decoder = nn.LSTM(emb, hidden, num_layers=2)
        self.out = nn.Linear(hidden, vocab)

    def forward(self, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        _, state = self.encoder(src)
        y, _ = self.decoder(self.tgt_embedding(tgt).permute(1, 0, 2), state)
        return self.out(y)  # (T_tgt, bs, vocab)


class Dropper(nn.Module):
    """Dropout then a GRU: tells whether the trace ran in eval mode (training restored after)."""

    def __init__(self) -> None:
        super().__init__()
        self.drop = nn.Dropout(0.5)
        self.rnn = nn.GRU(3, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, _ = self.rnn(self.drop(x))
        if x.shape[0] == 99:
            raise RuntimeError("T=99 is refused on purpose")
        return y


class PlainScratchModel:
    """Not an nn.Module: an object with __call__ holding an Embedding, a Linear and raw weights."""

    def __init__(self, vocab: int = 28, emb: int = 20, hidden: int = 64) -> None:
        g = torch.Generator().manual_seed(2)
        self.embedding = nn.Embedding(vocab, emb)
        self.W_xh = torch.randn(emb, hidden, generator=g) * 0.01
        self.W_hh = torch.randn(hidden, hidden, generator=g) * 0.01
        self.linear = nn.Linear(hidden, vocab)

    def __call__(self, tokens: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        X = self.embedding(tokens.T)  # (T, bs, emb)
        outputs = []
        for x_t in X:
            state = torch.tanh(x_t @ self.W_xh + state @ self.W_hh)  # (bs, h)
            outputs.append(state)
        return self.linear(torch.cat(outputs, dim=0)), state  # (T*bs, vocab), (bs, h)


def caught_and_silent(wrong: nn.Module, right: nn.Module, *args: torch.Tensor, match: str,
                      inputs: str = "bs T") -> None:
    """``wrong`` raises a ShapeError matching ``match`` under ``watch(inputs=..., ops=True)``; ``right`` (its
    fixed twin) runs silent under the same watch."""
    with sv.watch(wrong, inputs=inputs, ops=True), pytest.raises(sv.ShapeError, match=match):
        wrong(*args)
    with sv.watch(right, inputs=inputs, ops=True):
        right(*args)
