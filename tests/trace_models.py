"""Small recurrent systems in the spirit of the seeds, written afresh for the trace tests.

Line numbers matter to the golden tables (ops record their source line): after editing this
file, regenerate with ``SHAPEVIZ_REGEN_GOLDEN=1 pytest tests/test_trace.py``.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class CharRNN(nn.Module):
    """From-scratch one-hot char-RNN: tokens (bs, T) -> logits (T*bs, vocab), state (bs, h)."""

    def __init__(self, vocab: int = 28, hidden: int = 512) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(1)
        self.vocab = vocab
        self.W_xh = nn.Parameter(torch.randn(vocab, hidden, generator=g) * 0.01)
        self.W_hh = nn.Parameter(torch.randn(hidden, hidden, generator=g) * 0.01)
        self.b_h = nn.Parameter(torch.zeros(hidden))
        self.W_hq = nn.Parameter(torch.randn(hidden, vocab, generator=g) * 0.01)
        self.b_q = nn.Parameter(torch.zeros(vocab))

    def forward(self, tokens: torch.Tensor, H: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        inputs = F.one_hot(tokens.T, self.vocab).float()  # (T, bs, vocab)
        W_xh, W_hh, b_h, W_hq, b_q = self.W_xh, self.W_hh, self.b_h, self.W_hq, self.b_q
        outputs = []
        for X in inputs:  # X: (bs, vocab)
            H = torch.tanh(X @ W_xh + H @ W_hh + b_h)  # (bs, h)
            outputs.append(H @ W_hq + b_q)  # (bs, vocab)
        return torch.cat(outputs, dim=0), H


class BrokenCharRNN(CharRNN):
    """The same loop with the classic slip: the state multiplied by W_xh instead of W_hh."""

    def forward(self, tokens: torch.Tensor, H: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        inputs = F.one_hot(tokens.T, self.vocab).float()
        W_xh, b_h = self.W_xh, self.b_h
        for X in inputs:
            H = torch.tanh(X @ W_xh + H @ W_xh + b_h)  # bug: H (bs, h) @ W_xh (vocab, h)
        return H, H


class EmbedRNNLM(nn.Module):
    """Embedding + nn.RNN + Linear + reshape: tokens (bs, T) -> (T*bs, vocab)."""

    def __init__(self, vocab: int = 28, emb: int = 20, hidden: int = 512) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab, emb)
        self.rnn = nn.RNN(emb, hidden)
        self.linear = nn.Linear(hidden, vocab)

    def forward(self, tokens: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.embedding(tokens.T)  # (T, bs, emb)
        y, state = self.rnn(x, state)  # (T, bs, h), (1, bs, h)
        logits = self.linear(y)  # (T, bs, vocab)
        return logits.reshape(-1, logits.shape[-1]), state  # (T*bs, vocab)


class CellLoop(nn.Module):
    """An RNNCell stepped over a (seq_len, bs, input) dataset; returns every hidden state stacked."""

    def __init__(self, input_size: int = 4, hidden_size: int = 2) -> None:
        super().__init__()
        self.cell = nn.RNNCell(input_size, hidden_size)

    def forward(self, dataset: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        hiddens = []
        for x_t in dataset:  # (bs, input)
            hidden = self.cell(x_t, hidden)  # (bs, h)
            hiddens.append(hidden)
        return torch.stack(hiddens)  # (seq_len, bs, h)


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


class PackedLSTM(nn.Module):
    """Pack padded (T, bs, emb) by lengths -> LSTM -> unpack."""

    def __init__(self, emb: int = 5, hidden: int = 7) -> None:
        super().__init__()
        self.rnn = nn.LSTM(emb, hidden)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths, enforce_sorted=False)
        out, _ = self.rnn(packed)  # PackedSequence, (h_n, c_n)
        padded, _ = nn.utils.rnn.pad_packed_sequence(out)
        return padded


class BatchFirstLoop(nn.Module):
    """Hand-written batch_first RNN on nn.RNN's weights: x (bs, T, emb) -> (bs, T, h)."""

    def __init__(self, emb: int = 3, hidden: int = 4) -> None:
        super().__init__()
        self.rnn = nn.RNN(emb, hidden, batch_first=True)

    def forward(self, x: torch.Tensor, h_prev: torch.Tensor) -> torch.Tensor:
        w_ih, w_hh = self.rnn.weight_ih_l0, self.rnn.weight_hh_l0
        b = self.rnn.bias_ih_l0 + self.rnn.bias_hh_l0
        outs = []
        for t in range(x.shape[1]):
            h_prev = torch.tanh(x[:, t, :] @ w_ih.T + h_prev @ w_hh.T + b)  # (bs, h)
            outs.append(h_prev)
        return torch.stack(outs, dim=1)  # (bs, T, h)


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
