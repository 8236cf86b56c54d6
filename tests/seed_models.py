"""The seeds' systems, written afresh for the tests (shapes as in the notes, code our own)."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class EmbedRNN(nn.Module):
    """tokens (bs, T) -> Embedding -> transpose -> nn.RNN (state (1, bs, h)) -> Linear -> (T*bs, vocab)."""

    def __init__(self, vocab: int = 28, emb: int = 20, hidden: int = 32, transpose: bool = True) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab, emb)
        self.rnn = nn.RNN(emb, hidden)
        self.linear = nn.Linear(hidden, vocab)
        self.transpose = transpose

    def forward(self, tokens: torch.Tensor, state: torch.Tensor | None = None):
        x = self.embedding(tokens.T if self.transpose else tokens)  # (T, bs, emb)
        y, state = self.rnn(x, state)  # (T, bs, h), (1, bs, h)
        return self.linear(y.reshape(-1, y.shape[-1])), state  # (T*bs, vocab)


def scratch_params(vocab: int, hidden: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return [torch.randn(vocab, hidden, generator=g) * 0.01, torch.randn(hidden, hidden, generator=g) * 0.01,
            torch.zeros(hidden), torch.randn(hidden, vocab, generator=g) * 0.01, torch.zeros(vocab)]


def scratch_rnn(inputs: torch.Tensor, state: torch.Tensor, params: list[torch.Tensor]):
    """The from-scratch one-hot char-RNN loop: (T, bs, vocab) -> (T*bs, vocab) logits, (bs, h) state."""
    W_xh, W_hh, b_h, W_hq, b_q = params
    outs = []
    for X in inputs:  # X: (bs, vocab)
        state = torch.tanh(X @ W_xh + state @ W_hh + b_h)  # (bs, h)
        outs.append(state @ W_hq + b_q)  # (bs, vocab)
    return torch.cat(outs, dim=0), state


def one_hot_char_rnn(tokens: torch.Tensor, vocab: int = 28, hidden: int = 64):
    x = F.one_hot(tokens.T, vocab).float()  # (bs, T) -> (T, bs, vocab)
    state = torch.zeros(tokens.shape[0], hidden)
    return scratch_rnn(x, state, scratch_params(vocab, hidden))


def cell_loop(cell: nn.RNNCell, dataset: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
    """The RNNCell loop over a (seq_len, bs, input) dataset; hidden (bs, h)."""
    for x_t in dataset:
        hidden = cell(x_t, hidden)
    return hidden


def batch_first_rnn_loop(x, w_ih, w_hh, b_ih, b_hh, h_prev):
    """Hand-written batch-first RNN: x (bs, T, emb), h_prev (bs, h) -> (bs, T, h), (1, bs, h)."""
    outs = []
    for t in range(x.shape[1]):  # x: (bs, T, emb)
        h_prev = torch.tanh(x[:, t] @ w_ih.T + b_ih + h_prev @ w_hh.T + b_hh)
        outs.append(h_prev)
    return torch.stack(outs, dim=1), h_prev.unsqueeze(0)


def bidirectional_loop(x, rnn: nn.RNN, h0: torch.Tensor):
    """Hand-written bidirectional batch-first RNN from ``rnn``'s weights; h0 (2, bs, h)."""
    fw, _ = batch_first_rnn_loop(x, rnn.weight_ih_l0, rnn.weight_hh_l0, rnn.bias_ih_l0, rnn.bias_hh_l0, h0[0])
    bw, _ = batch_first_rnn_loop(x.flip(1), rnn.weight_ih_l0_reverse, rnn.weight_hh_l0_reverse,
                                 rnn.bias_ih_l0_reverse, rnn.bias_hh_l0_reverse, h0[1])
    bw = bw.flip(1)
    out = torch.cat([fw, bw], dim=-1)  # (bs, T, 2h)
    h_n = torch.stack([fw[:, -1], bw[:, 0]])  # (2, bs, h)
    return out, h_n


class HelloCell(nn.Module):
    """'hello' -> 'ohlol' with an RNNCell: one step (bs=1, input=4) at a time."""

    def __init__(self) -> None:
        super().__init__()
        self.cell = nn.RNNCell(4, 4)

    def forward(self, x_t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return self.cell(x_t, h)


class HelloEmbed(nn.Module):
    """'hello' -> 'ohlol' with Embedding + RNN(batch_first=True) + Linear: (bs, T) -> (bs*T, classes)."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(4, 10)
        self.rnn = nn.RNN(10, 8, num_layers=2, batch_first=True)
        self.fc = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h0 = torch.zeros(2, x.shape[0], 8)
        out, _ = self.rnn(self.emb(x), h0)  # (bs, T, h)
        return self.fc(out).view(-1, 4)
