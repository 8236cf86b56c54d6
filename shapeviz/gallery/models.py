"""Small recurrent models for the gallery and ``shapeviz demo``: the seeds' systems, written afresh.

>>> import torch
>>> logits, state = CharRNNScratch(vocab=28, hidden=64)(torch.zeros(2, 5, dtype=torch.long))
>>> tuple(logits.shape), tuple(state.shape)          # (T*bs, vocab), (bs, h)
((10, 28), (2, 64))

Every model takes its input the way the seeds' notes do and says the shapes in comments; the
gallery shows their source with :mod:`inspect`, so what you read there is what runs here.
Weights come from fixed seeds, so outputs are deterministic.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

__all__ = [
    "AttnSeq2Seq", "BatchFirstLoopRNN", "BeamSearchDecoder",
    "BidirectionalLoopRNN", "Captioner",
    "CellOverDataset", "CharRNNModel",
    "CharRNNScratch", "DotAttention",
    "EmbedRNN", "ForgotTranspose",
    "GRUEncoder", "HelloCell",
    "HelloEmbedding", "HelloRNN",
    "PackedLSTM", "Seq2SeqGRU",
    "SkipGRU", "StackedCells",
    "Vocab",
    "assert_close",
    "fixed_seed",
    "hello_data",
    "predict_ch8",
    "seeded",
]


@contextmanager
def fixed_seed(seed: int = 0) -> Iterator[None]:
    """Build layers with fixed weights without touching the caller's random state.

    >>> with fixed_seed(0):
    ...     a = nn.Linear(3, 2).weight.clone()
    >>> with fixed_seed(0):
    ...     bool((nn.Linear(3, 2).weight == a).all())     # weight (out=2, in=3) both times
    True
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def seeded(seed: int = 0) -> torch.Generator:
    """A generator with a fixed seed, so every example builds the same numbers.

    >>> torch.randn(2, 3, generator=seeded(0)).shape     # (bs, emb)
    torch.Size([2, 3])
    """
    return torch.Generator().manual_seed(seed)


def assert_close(a: Tensor, b: Tensor, what: str) -> str:
    """Check that two tensors have one shape and equal values (within 1e-6), and say so.

    >>> assert_close(torch.zeros(2, 3), torch.zeros(2, 3), "two zero states")   # (bs, h) both
    'two zero states are equal within 1e-6 (2, 3)'

    Raises ``AssertionError`` when they differ: a gallery page whose loop is not what torch
    computes must not be published.
    """
    if a.shape != b.shape or not torch.allclose(a, b, atol=1e-6):
        raise AssertionError(f"{what} differ")
    return f"{what} are equal within 1e-6 {tuple(a.shape)}"


class CharRNNScratch(nn.Module):
    """The from-scratch one-hot char-RNN: tokens (bs, T) -> logits (T*bs, vocab), state (bs, h).

    >>> logits, h = CharRNNScratch(vocab=4, hidden=8)(torch.zeros(1, 5, dtype=torch.long))
    >>> tuple(logits.shape), tuple(h.shape)
    ((5, 4), (1, 8))
    """

    def __init__(self, vocab: int = 28, hidden: int = 64) -> None:
        super().__init__()
        g = seeded(0)
        self.vocab = vocab
        self.W_xh = nn.Parameter(torch.randn(vocab, hidden, generator=g) * 0.01)   # (vocab, h)
        self.W_hh = nn.Parameter(torch.randn(hidden, hidden, generator=g) * 0.01)  # (h, h)
        self.b_h = nn.Parameter(torch.zeros(hidden))                                # (h,)
        self.W_hq = nn.Parameter(torch.randn(hidden, vocab, generator=g) * 0.01)   # (h, vocab)
        self.b_q = nn.Parameter(torch.zeros(vocab))                                 # (vocab,)

    def forward(self, tokens: Tensor, H: Tensor | None = None) -> tuple[Tensor, Tensor]:
        inputs = F.one_hot(tokens.T, self.vocab).float()  # (bs, T) -> (T, bs, vocab)
        if H is None:
            H = torch.zeros(tokens.shape[0], self.W_hh.shape[0])  # (bs, h)
        outputs = []
        for X in inputs:  # X: (bs, vocab), one time step
            H = torch.tanh(X @ self.W_xh + H @ self.W_hh + self.b_h)  # (bs, h)
            outputs.append(H @ self.W_hq + self.b_q)  # (bs, vocab)
        return torch.cat(outputs, dim=0), H  # (T*bs, vocab), (bs, h)


class EmbedRNN(nn.Module):
    """Embedding + nn.RNN with its state (1, bs, h) + Linear: tokens (bs, T) -> (T*bs, vocab).

    >>> logits, state = EmbedRNN()(torch.zeros(2, 5, dtype=torch.long))
    >>> tuple(logits.shape), tuple(state.shape)
    ((10, 28), (1, 2, 32))
    """

    def __init__(self, vocab: int = 28, emb: int = 20, hidden: int = 32) -> None:
        super().__init__()
        with fixed_seed(0):
            self.embedding = nn.Embedding(vocab, emb)
            self.rnn = nn.RNN(emb, hidden)
            self.linear = nn.Linear(hidden, vocab)

    def forward(self, tokens: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
        x = self.embedding(tokens.T)  # (bs, T) -> (T, bs, emb): nn.RNN is seq-first
        y, state = self.rnn(x, state)  # (T, bs, h), (1, bs, h)
        return self.linear(y.reshape(-1, y.shape[-1])), state  # (T*bs, vocab), (1, bs, h)


def rnn_step_loop(x: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor, b_hh: Tensor,
                  h: Tensor) -> tuple[Tensor, Tensor]:
    """One direction of a batch-first RNN by hand: x (bs, T, emb), h (bs, h) -> (bs, T, h), (bs, h).

    >>> out, h = rnn_step_loop(torch.zeros(2, 3, 4), torch.zeros(5, 4), torch.zeros(5, 5),
    ...                        torch.zeros(5), torch.zeros(5), torch.zeros(2, 5))
    >>> tuple(out.shape), tuple(h.shape)
    ((2, 3, 5), (2, 5))
    """
    outs = []
    for t in range(x.shape[1]):  # x[:, t]: (bs, emb)
        h = torch.tanh(x[:, t] @ w_ih.T + b_ih + h @ w_hh.T + b_hh)  # (bs, h)
        outs.append(h)
    return torch.stack(outs, dim=1), h  # (bs, T, h), (bs, h)


class BatchFirstLoopRNN(nn.Module):
    """The hand-written batch-first RNN loop, with the weights of ``self.ref`` (an nn.RNN).

    >>> m = BatchFirstLoopRNN(2, 3)
    >>> out, h_n = m(torch.zeros(2, 3, 2))                       # x (bs=2, T=3, emb=2)
    >>> tuple(out.shape), tuple(h_n.shape)                        # (bs, T, h), (1, bs, h)
    ((2, 3, 3), (1, 2, 3))
    """

    def __init__(self, emb: int = 2, hidden: int = 3) -> None:
        super().__init__()
        with fixed_seed(0):
            self.ref = nn.RNN(emb, hidden, batch_first=True)  # holds the weights; compare with it

    def forward(self, x: Tensor, h0: Tensor | None = None) -> tuple[Tensor, Tensor]:
        r = self.ref
        if h0 is None:
            h0 = torch.zeros(1, x.shape[0], r.hidden_size)  # (1, bs, h)
        out, h = rnn_step_loop(x, r.weight_ih_l0, r.weight_hh_l0, r.bias_ih_l0, r.bias_hh_l0, h0[0])
        return out, h.unsqueeze(0)  # (bs, T, h), (1, bs, h)


class ForgotTranspose(EmbedRNN):
    """EmbedRNN with the classic mistake: the Embedding's (bs, T, emb) goes into a seq-first nn.RNN.

    >>> import shapeviz as sv
    >>> try:
    ...     with sv.checking(inputs="bs T"):                 # tokens (bs=2, T=5)
    ...         ForgotTranspose()(torch.zeros(2, 5, dtype=torch.long))
    ... except sv.ShapeError as err:
    ...     err.code, err.actual                             # (bs, T, emb) where (T, bs, emb) belongs
    ('batch_first_swap', (2, 5, 20))
    """

    def forward(self, tokens: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
        x = self.embedding(tokens)  # (bs, T, emb)   <- the mistake: tokens.T was forgotten
        y, state = self.rnn(x, state)  # nn.RNN reads dim 0 as T and dim 1 as bs
        return self.linear(y.reshape(-1, y.shape[-1])), state


class BidirectionalLoopRNN(nn.Module):
    """Its bidirectional version: forward lane, reversed lane, outputs concatenated.

    >>> out, h_n = BidirectionalLoopRNN(2, 3)(torch.zeros(2, 3, 2))   # x (bs=2, T=3, emb=2)
    >>> tuple(out.shape), tuple(h_n.shape)                              # (bs, T, 2h), (2, bs, h)
    ((2, 3, 6), (2, 2, 3))
    """

    def __init__(self, emb: int = 2, hidden: int = 3) -> None:
        super().__init__()
        with fixed_seed(0):
            self.ref = nn.RNN(emb, hidden, batch_first=True, bidirectional=True)

    def forward(self, x: Tensor, h0: Tensor | None = None) -> tuple[Tensor, Tensor]:
        r = self.ref
        if h0 is None:
            h0 = torch.zeros(2, x.shape[0], r.hidden_size)  # (D=2, bs, h)
        fw, h_fw = rnn_step_loop(x, r.weight_ih_l0, r.weight_hh_l0, r.bias_ih_l0, r.bias_hh_l0, h0[0])
        bw, h_bw = rnn_step_loop(x.flip(1), r.weight_ih_l0_reverse, r.weight_hh_l0_reverse,
                                 r.bias_ih_l0_reverse, r.bias_hh_l0_reverse, h0[1])
        out = torch.cat([fw, bw.flip(1)], dim=-1)  # (bs, T, 2h): backward lane re-reversed
        return out, torch.stack([h_fw, h_bw])  # (bs, T, 2h), (2, bs, h)


class CellOverDataset(nn.Module):
    """An RNNCell looped over a (seq_len, bs, input) dataset; hidden (bs, h).

    >>> tuple(CellOverDataset()(torch.zeros(3, 1, 4)).shape)   # (bs, h)
    (1, 2)
    """

    def __init__(self, input_size: int = 4, hidden_size: int = 2) -> None:
        super().__init__()
        with fixed_seed(0):
            self.cell = nn.RNNCell(input_size=input_size, hidden_size=hidden_size)

    def forward(self, dataset: Tensor) -> Tensor:
        hidden = torch.zeros(dataset.shape[1], self.cell.hidden_size)  # (bs, h)
        for x_t in dataset:  # x_t: (bs, input)
            hidden = self.cell(x_t, hidden)  # (bs, h)
        return hidden


def hello_data() -> tuple[Tensor, Tensor]:
    """'hello' as indices and 'ohlol' as targets over the vocabulary e, h, l, o.

    >>> x, y = hello_data(); x.tolist(), y.tolist()        # (T,), (T,)
    ([1, 0, 2, 2, 3], [3, 1, 2, 3, 2])
    """
    idx = {c: i for i, c in enumerate("ehlo")}
    return torch.tensor([idx[c] for c in "hello"]), torch.tensor([idx[c] for c in "ohlol"])


class HelloCell(nn.Module):
    """'hello' -> 'ohlol' with an RNNCell: one-hot (T, bs=1, 4) in, one (bs, 4) score per step.

    >>> tuple(HelloCell()(torch.zeros(5, 1, 4)).shape)   # (T, bs, classes)
    (5, 1, 4)
    """

    def __init__(self, input_size: int = 4, hidden_size: int = 4) -> None:
        super().__init__()
        with fixed_seed(0):
            self.rnncell = nn.RNNCell(input_size=input_size, hidden_size=hidden_size)

    def forward(self, inputs: Tensor) -> Tensor:
        hidden = torch.zeros(inputs.shape[1], self.rnncell.hidden_size)  # (bs, h)
        scores = []
        for x_t in inputs:  # (bs, 4): one letter of 'hello'
            hidden = self.rnncell(x_t, hidden)  # (bs, h): the hidden state is the score
            scores.append(hidden)
        return torch.stack(scores)  # (T, bs, classes)


class HelloRNN(nn.Module):
    """'hello' -> 'ohlol' with nn.RNN: one-hot (T, bs=1, 4) -> scores (T*bs, 4).

    >>> tuple(HelloRNN()(torch.zeros(5, 1, 4)).shape)   # (T*bs, classes)
    (5, 4)
    """

    def __init__(self, input_size: int = 4, hidden_size: int = 4, num_layers: int = 1) -> None:
        super().__init__()
        self.num_layers = num_layers
        with fixed_seed(0):
            self.rnn = nn.RNN(input_size=input_size, hidden_size=hidden_size, num_layers=num_layers)

    def forward(self, inputs: Tensor) -> Tensor:
        h0 = torch.zeros(self.num_layers, inputs.shape[1], self.rnn.hidden_size)  # (layers, bs, h)
        out, _ = self.rnn(inputs, h0)  # (T, bs, h)
        return out.view(-1, self.rnn.hidden_size)  # (T*bs, classes): one row per letter


class HelloEmbedding(nn.Module):
    """'hello' -> 'ohlol' with Embedding + RNN(batch_first=True) + Linear: (bs, T) -> (bs*T, 4).

    >>> tuple(HelloEmbedding()(torch.zeros(1, 5, dtype=torch.long)).shape)   # (bs*T, classes)
    (5, 4)
    """

    def __init__(self, classes: int = 4, emb: int = 10, hidden: int = 8, num_layers: int = 2) -> None:
        super().__init__()
        with fixed_seed(0):
            self.emb = nn.Embedding(classes, emb)
            self.rnn = nn.RNN(emb, hidden, num_layers=num_layers, batch_first=True)
            self.fc = nn.Linear(hidden, classes)

    def forward(self, x: Tensor) -> Tensor:
        h0 = torch.zeros(self.rnn.num_layers, x.shape[0], self.rnn.hidden_size)  # (layers, bs, h)
        x = self.emb(x)  # (bs, T) -> (bs, T, emb): batch_first, no transpose needed
        x, _ = self.rnn(x, h0)  # (bs, T, h)
        x = self.fc(x)  # (bs, T, classes)
        return x.view(-1, self.fc.out_features)  # (bs*T, classes)


class PackedLSTM(nn.Module):
    """Variable-length sequences: pad (T, bs, emb) + lengths -> pack -> LSTM -> unpack.

    >>> out = PackedLSTM(4, 6)(torch.zeros(5, 3, 4), torch.tensor([5, 3, 2]))
    >>> tuple(out.shape)                                  # (T, bs, h)
    (5, 3, 6)
    """

    def __init__(self, emb: int = 4, hidden: int = 6) -> None:
        super().__init__()
        with fixed_seed(0):
            self.lstm = nn.LSTM(emb, hidden)

    def forward(self, padded: Tensor, lengths: Tensor) -> Tensor:
        packed: PackedSequence = pack_padded_sequence(padded, lengths, enforce_sorted=False)
        out, _ = self.lstm(packed)  # out.data: (sum(lengths), h); (h_n, c_n): (1, bs, h) each
        unpacked, _ = pad_packed_sequence(out, total_length=padded.shape[0])  # (T, bs, h)
        return unpacked


class GRUEncoder(nn.Module):
    """A seq2seq GRU encoder: tokens (T, bs) -> outputs (T, bs, 2h), context (bs, h) for a decoder.

    >>> out, ctx = GRUEncoder()(torch.zeros(7, 3, dtype=torch.long))
    >>> tuple(out.shape), tuple(ctx.shape)
    ((7, 3, 32), (1, 3, 16))
    """

    def __init__(self, vocab: int = 30, emb: int = 12, hidden: int = 16, num_layers: int = 2) -> None:
        super().__init__()
        with fixed_seed(0):
            self.embedding = nn.Embedding(vocab, emb)
            self.gru = nn.GRU(emb, hidden, num_layers=num_layers, bidirectional=True)
            self.bridge = nn.Linear(2 * hidden, hidden)

    def forward(self, src: Tensor) -> tuple[Tensor, Tensor]:
        x = self.embedding(src)  # (T, bs, emb)
        outputs, h_n = self.gru(x)  # (T, bs, 2h), (layers*2, bs, h)
        top = torch.cat([h_n[-2], h_n[-1]], dim=-1)  # top layer, both directions: (bs, 2h)
        context = torch.tanh(self.bridge(top)).unsqueeze(0)  # (1, bs, h): a decoder's h_0
        return outputs, context


class Seq2SeqGRU(nn.Module):
    """A GRU encoder -> GRU decoder: the encoder's h_n is the decoder's h_0, then one token per call.

    >>> m = Seq2SeqGRU()
    >>> src, trg = torch.zeros(7, 3, dtype=torch.long), torch.zeros(5, 3, dtype=torch.long)
    >>> tuple(m.greedy(src, steps=5).shape), tuple(m(src, trg).shape)    # (steps, bs, vocab) both
    ((5, 3, 20), (5, 3, 20))
    """

    def __init__(self, vocab: int = 20, emb: int = 12, hidden: int = 16) -> None:
        super().__init__()
        with fixed_seed(0):
            self.src_emb, self.trg_emb = nn.Embedding(vocab, emb), nn.Embedding(vocab, emb)
            self.encoder = nn.GRU(emb, hidden)
            self.decoder = nn.GRU(emb, hidden)
            self.out = nn.Linear(hidden, vocab)

    def step(self, token: Tensor, hidden: Tensor) -> tuple[Tensor, Tensor]:
        """One decoder call: token (bs,) and hidden (1, bs, h) -> logits (bs, vocab), hidden."""
        out, hidden = self.decoder(self.trg_emb(token).unsqueeze(0), hidden)  # (1, bs, emb) -> (1, bs, h)
        return self.out(out.squeeze(0)), hidden  # (bs, vocab)

    def greedy(self, src: Tensor, steps: int) -> Tensor:
        """Greedy decoding: each step's input is the previous step's argmax."""
        _, hidden = self.encoder(self.src_emb(src))  # src (T_src, bs) -> h_n (1, bs, h)
        token = torch.zeros(src.shape[1], dtype=torch.long)  # <sos> = 0, (bs,)
        logits = []
        for _ in range(steps):
            step_logits, hidden = self.step(token, hidden)
            token = step_logits.argmax(-1)  # (bs,): fed back
            logits.append(step_logits)
        return torch.stack(logits)  # (steps, bs, vocab)

    def forward(self, src: Tensor, trg: Tensor) -> Tensor:
        """Teacher forcing: each step's input is the target token trg[t], from the data."""
        _, hidden = self.encoder(self.src_emb(src))  # (1, bs, h)
        logits = []
        for t in range(trg.shape[0]):  # trg (T_trg, bs)
            step_logits, hidden = self.step(trg[t], hidden)
            logits.append(step_logits)
        return torch.stack(logits)  # (T_trg, bs, vocab)


class DotAttention(nn.Module):
    """Dot-product attention: query (bs, h), keys (T_src, bs, h) -> weights (bs, T_src), context (bs, h).

    >>> w, ctx = DotAttention()(torch.zeros(3, 16), torch.zeros(7, 3, 16))
    >>> tuple(w.shape), tuple(ctx.shape)
    ((3, 7), (3, 16))
    """

    def forward(self, query: Tensor, keys: Tensor) -> tuple[Tensor, Tensor]:
        scores = (keys * query).sum(-1).T  # (T_src, bs) -> (bs, T_src)
        weights = scores.softmax(dim=1)  # (bs, T_src)
        context = (weights.T.unsqueeze(-1) * keys).sum(0)  # (bs, h)
        return weights, context


class AttnSeq2Seq(Seq2SeqGRU):
    """Seq2SeqGRU whose decoder input is cat(embedded token, attention context) at every step.

    >>> logits, attention = AttnSeq2Seq().greedy(torch.zeros(7, 3, dtype=torch.long), steps=4)
    >>> tuple(logits.shape), tuple(attention.shape)      # (steps, bs, vocab), (steps, bs, T_src)
    ((4, 3, 20), (4, 3, 7))
    """

    def __init__(self, vocab: int = 20, emb: int = 12, hidden: int = 16) -> None:
        super().__init__(vocab, emb, hidden)
        with fixed_seed(1):
            self.attention = DotAttention()
            self.decoder = nn.GRU(emb + hidden, hidden)

    def greedy(self, src: Tensor, steps: int) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        enc_out, hidden = self.encoder(self.src_emb(src))  # (T_src, bs, h), (1, bs, h)
        token = torch.zeros(src.shape[1], dtype=torch.long)  # <sos>, (bs,)
        logits, attention = [], []
        for _ in range(steps):
            weights, context = self.attention(hidden[-1], enc_out)  # (bs, T_src), (bs, h)
            x = torch.cat([self.trg_emb(token), context], dim=-1)  # (bs, emb + h)
            out, hidden = self.decoder(x.unsqueeze(0), hidden)  # (1, bs, emb + h) -> (1, bs, h)
            step_logits = self.out(out.squeeze(0))  # (bs, vocab)
            token = step_logits.argmax(-1)  # fed back
            logits.append(step_logits)
            attention.append(weights)
        return torch.stack(logits), torch.stack(attention)  # (steps, bs, vocab), (steps, bs, T_src)


class Captioner(nn.Module):
    """Image captioning: image features start an LSTM, then it samples one word per call.

    >>> tuple(Captioner().sample(torch.zeros(3, 32), max_len=6).shape)   # (bs, max_len) word ids
    (3, 6)
    """

    def __init__(self, feat: int = 32, emb: int = 12, hidden: int = 16, vocab: int = 20) -> None:
        super().__init__()
        with fixed_seed(0):
            self.project = nn.Linear(feat, emb)
            self.embed = nn.Embedding(vocab, emb)
            self.lstm = nn.LSTM(emb, hidden, batch_first=True)
            self.linear = nn.Linear(hidden, vocab)

    def sample(self, features: Tensor, max_len: int = 6) -> Tensor:
        inputs = self.project(features).unsqueeze(1)  # (bs, feat) -> (bs, 1, emb)
        states = None
        words = []
        for _ in range(max_len):
            hiddens, states = self.lstm(inputs, states)  # (bs, 1, h)
            predicted = self.linear(hiddens.squeeze(1)).argmax(1)  # (bs, vocab) -> (bs,)
            words.append(predicted)
            inputs = self.embed(predicted).unsqueeze(1)  # (bs, 1, emb): fed back
        return torch.stack(words, 1)  # (bs, max_len)


class StackedCells(nn.Module):
    """Two stacked LSTMCells over a float series (bs, T): lstm1's h is lstm2's input at every step.

    >>> tuple(StackedCells()(torch.zeros(3, 8)).shape)                  # (bs, T)
    (3, 8)
    """

    def __init__(self, hidden: int = 12) -> None:
        super().__init__()
        self.hidden = hidden
        with fixed_seed(0):
            self.lstm1 = nn.LSTMCell(1, hidden)
            self.lstm2 = nn.LSTMCell(hidden, hidden)
            self.linear = nn.Linear(hidden, 1)

    def forward(self, series: Tensor) -> Tensor:
        bs = series.shape[0]
        h1, c1, h2, c2 = (torch.zeros(bs, self.hidden) for _ in range(4))  # (bs, h) each
        outputs = []
        for x_t in series.split(1, dim=1):  # (bs, 1): one float per sequence
            h1, c1 = self.lstm1(x_t, (h1, c1))
            h2, c2 = self.lstm2(h1, (h2, c2))  # lstm1's h is lstm2's input
            outputs.append(self.linear(h2))  # (bs, 1)
        return torch.cat(outputs, dim=1)  # (bs, T)


class Vocab:
    """Characters <-> ids, as the seeds' ``vocab[token]`` and ``vocab.idx_to_token``.

    >>> v = Vocab("ab"); v["b"], v.idx_to_token[0]
    (1, 'a')
    """

    def __init__(self, chars: str) -> None:
        self.idx_to_token = sorted(set(chars))
        self.ids = {c: i for i, c in enumerate(self.idx_to_token)}

    def __getitem__(self, token: str) -> int:
        return self.ids[token]

    def __len__(self) -> int:
        return len(self.idx_to_token)


class CharRNNModel(nn.Module):
    """The seeds' concise char-RNN: tokens (bs, T) -> one-hot (T, bs, vocab) -> nn.RNN -> (T*bs, vocab).

    >>> y, state = CharRNNModel(vocab=10)(torch.zeros(1, 1, dtype=torch.long), torch.zeros(1, 1, 32))
    >>> tuple(y.shape), tuple(state.shape)               # (T*bs, vocab), (layers, bs, h)
    ((1, 10), (1, 1, 32))
    """

    def __init__(self, vocab: int = 10, hidden: int = 32) -> None:
        super().__init__()
        self.vocab, self.hidden = vocab, hidden
        with fixed_seed(0):
            self.rnn = nn.RNN(vocab, hidden)
            self.linear = nn.Linear(hidden, vocab)

    def forward(self, inputs: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        X = F.one_hot(inputs.T.long(), self.vocab).float()  # (T, bs, vocab)
        Y, state = self.rnn(X, state)  # (T, bs, h), (1, bs, h)
        return self.linear(Y.reshape(-1, Y.shape[-1])), state  # (T*bs, vocab)

    def begin_state(self, batch_size: int) -> Tensor:
        return torch.zeros(1, batch_size, self.hidden)  # (layers, bs, h)


def predict_ch8(prefix: str, num_preds: int, net: CharRNNModel, vocab: Vocab) -> str:
    """The seeds' ``predict_ch8`` (note 004): warm up on the prefix, then predict one character per call.

    >>> len(predict_ch8("time ", 3, CharRNNModel(vocab=len(Vocab("time "))), Vocab("time ")))
    8
    """
    state = net.begin_state(batch_size=1)  # (layers=1, bs=1, h)
    outputs = [vocab[prefix[0]]]
    get_input = lambda: torch.tensor([outputs[-1]]).reshape((1, 1))  # noqa: E731  (bs=1, T=1), as in the note
    for y in prefix[1:]:  # warm-up: the state runs over the prefix, the output is not used
        _, state = net(get_input(), state)
        outputs.append(vocab[y])
    for _ in range(num_preds):  # prediction: the argmax is the next input
        y, state = net(get_input(), state)
        outputs.append(int(y.argmax(dim=1).reshape(1)))
    return "".join([vocab.idx_to_token[i] for i in outputs])


class BeamSearchDecoder(nn.Module):
    """A GRU encoder, then a GRUCell decoder run with beam search: k beams per sentence, so the
    decoder's batch is bs*k; after each step topk picks the k best of k*vocab continuations, and the
    beams' states are reordered with index_select."""

    def __init__(self, vocab: int = 13, emb: int = 4, hidden: int = 8, k: int = 3, steps: int = 5) -> None:
        super().__init__()
        self.vocab, self.k, self.steps = vocab, k, steps
        with fixed_seed(0):
            self.embed = nn.Embedding(vocab, emb)
            self.encoder = nn.GRU(emb, hidden)
            self.cell = nn.GRUCell(emb, hidden)
            self.out = nn.Linear(hidden, vocab)

    def forward(self, src: Tensor) -> Tensor:
        bs, k, V = src.shape[1], self.k, self.vocab  # src (T, bs) token ids
        _, h_n = self.encoder(self.embed(src))  # h_n (1, bs, h)
        h = h_n[-1].repeat_interleave(k, dim=0)  # (bs*k, h): each sentence's state, k times
        token = torch.zeros(bs * k, dtype=torch.long)  # <sos> = 0, (bs*k,)
        score = torch.zeros(bs, k)
        score[:, 1:] = -1e9  # at the start the k beams are one: keep the first
        history = [token.view(bs, k)]
        offset = (torch.arange(bs) * k).unsqueeze(1)  # (bs, 1): where each sentence's beams start
        for _ in range(self.steps):
            h = self.cell(self.embed(token), h)  # (bs*k, emb) -> (bs*k, h)
            logp = self.out(h).log_softmax(-1).view(bs, k * V)  # (bs, k*vocab)
            score, best = (score.repeat_interleave(V, dim=1) + logp).topk(k, dim=1)  # (bs, k)
            beam = best // V + offset  # which row of (bs*k) each best continuation extends
            token = (best % V).view(-1)  # (bs*k,): the word it adds, fed back
            h = h.index_select(0, beam.view(-1))  # the beams' states, reordered
            history = [t.view(-1).index_select(0, beam.view(-1)).view(bs, k) for t in history]
            history.append(token.view(bs, k))
        return torch.stack(history, dim=2)  # (bs, k, steps + 1)


class SkipGRU(nn.Module):
    """The LSTNet skip RNN: one GRU over every step, and one over every skip-th step, whose batch is
    bs*skip: (bs, T, c) -> (T/skip, bs*skip, c) by view and permute, and its h_n (1, bs*skip, h) is
    split back to (bs, skip*h) by a view that keeps the order."""

    def __init__(self, c: int = 4, hidden: int = 6, skip: int = 3) -> None:
        super().__init__()
        self.skip, self.hidden = skip, hidden
        with fixed_seed(0):
            self.gru = nn.GRU(c, hidden)
            self.gru_skip = nn.GRU(c, hidden)

    def forward(self, x: Tensor) -> Tensor:
        bs, T, c = x.shape  # (bs, T, c)
        _, r = self.gru(x.permute(1, 0, 2).contiguous())  # (T, bs, c) -> h_n (1, bs, h)
        p = T // self.skip
        s = x[:, -p * self.skip:].contiguous().view(bs, p, self.skip, c)  # (bs, T/skip, skip, c)
        s = s.permute(1, 0, 2, 3).contiguous().view(p, bs * self.skip, c)  # (T/skip, bs*skip, c)
        _, s = self.gru_skip(s)  # h_n (1, bs*skip, h)
        s = s.view(bs, self.skip * self.hidden)  # (bs, skip*h): the skip phases side by side
        return torch.cat([r.squeeze(0), s], 1)  # (bs, h + skip*h)
