"""The gallery's pages on your own recurrent layers: declared once with ``sv.recurrent``, then checked, traced,
drawn and explained as torch's are.

>>> ex = EXAMPLES["own_scratch_rnn"]
>>> built = ex.build()
>>> tuple(built.inputs[0].shape), built.inputs_dims                   # tokens (bs, T)
((2, 5), 'bs T')
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

import shapeviz as sv
from shapeviz.gallery.models import assert_close, fixed_seed, seeded
from shapeviz.gallery.registry import EXAMPLES, Built, _example

__all__ = ["OWN_LAYERS", "GateLSTM", "MinGRU", "MinGRUCell", "RNNScratch", "ScratchLM"]


class RNNScratch(nn.Module):
    """The textbook from-scratch RNN layer: inputs (T, bs, emb) and a state passed as a 1-tuple ((bs, h),).

    >>> rnn = RNNScratch(num_inputs=28, num_hiddens=32)
    >>> outputs, (H,) = rnn(torch.zeros(5, 2, 28))                   # x (T=5, bs=2, emb=28)
    >>> len(outputs), tuple(outputs[0].shape), tuple(H.shape)         # T steps of (bs, h); H (bs, h)
    (5, (2, 32), (2, 32))
    """

    def __init__(self, num_inputs: int, num_hiddens: int, sigma: float = 0.01) -> None:
        super().__init__()
        self.num_inputs, self.num_hiddens = num_inputs, num_hiddens
        self.W_xh = nn.Parameter(torch.randn(num_inputs, num_hiddens) * sigma)
        self.W_hh = nn.Parameter(torch.randn(num_hiddens, num_hiddens) * sigma)
        self.b_h = nn.Parameter(torch.zeros(num_hiddens))

    def forward(self, inputs: Tensor, state: tuple[Tensor] | None = None) -> tuple[list[Tensor], tuple[Tensor]]:
        if state is None:
            state = (torch.zeros(inputs.shape[1], self.num_hiddens),)  # (bs, h)
        (H,) = state
        outputs = []
        for X in inputs:  # X: (bs, emb), one time step
            H = torch.tanh(X @ self.W_xh + H @ self.W_hh + self.b_h)
            outputs.append(H)
        return outputs, (H,)


class ScratchLM(nn.Module):
    """Tokens (bs, T) -> one-hot (T, bs, vocab) -> RNNScratch -> logits (T*bs, vocab).

    >>> lm = ScratchLM(vocab=28, num_hiddens=32)
    >>> tuple(lm(torch.zeros(2, 5, dtype=torch.long)).shape)        # (T*bs, vocab)
    (10, 28)
    """

    def __init__(self, vocab: int, num_hiddens: int) -> None:
        super().__init__()
        self.vocab = vocab
        self.rnn = RNNScratch(vocab, num_hiddens)
        self.out = nn.Linear(num_hiddens, vocab)

    def forward(self, tokens: Tensor, state: tuple[Tensor] | None = None) -> Tensor:
        X = F.one_hot(tokens.T, self.vocab).float()  # (bs, T) -> (T, bs, vocab)
        outputs, state = self.rnn(X, state)
        return self.out(torch.cat(outputs))  # (T*bs, vocab)


class GateLSTM(nn.Module):
    """One LSTM layer written gate by gate, with nn.LSTM's conventions: x (T, bs, emb), state ((1, bs, h), (1, bs, h)).

    >>> lstm = GateLSTM(input_size=4, hidden_size=6)
    >>> out, (h_n, c_n) = lstm(torch.zeros(5, 3, 4))                  # x (T=5, bs=3, emb=4)
    >>> tuple(out.shape), tuple(h_n.shape)                            # (T, bs, h), (layers*D=1, bs, h)
    ((5, 3, 6), (1, 3, 6))
    """

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, 1
        self.W_x = nn.Linear(input_size, 4 * hidden_size)  # the input, gate by gate: i, f, g, o
        self.W_h = nn.Linear(hidden_size, 4 * hidden_size)  # the state, gate by gate

    def forward(self, x: Tensor, state: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        if state is None:
            zeros = torch.zeros(1, x.shape[1], self.hidden_size)
            state = (zeros, zeros)
        h, c = state[0][0], state[1][0]  # (bs, h): one layer, one direction
        outputs = []
        for x_t in x:  # (bs, emb)
            i, f, g, o = (self.W_x(x_t) + self.W_h(h)).chunk(4, dim=-1)  # each (bs, h)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            outputs.append(h)
        return torch.stack(outputs), (h.unsqueeze(0), c.unsqueeze(0))

    @classmethod
    def like(cls, lstm: nn.LSTM) -> nn.Module:
        """The same weights as a one-layer ``nn.LSTM`` (torch stores the four gates stacked as i, f, g, o)."""
        ours = cls(lstm.input_size, lstm.hidden_size)
        with torch.no_grad():
            ours.W_x.weight.copy_(lstm.weight_ih_l0)
            ours.W_x.bias.copy_(lstm.bias_ih_l0)
            ours.W_h.weight.copy_(lstm.weight_hh_l0)
            ours.W_h.bias.copy_(lstm.bias_hh_l0)
        return ours


class MinGRUCell(nn.Module):
    """One step of a minimal GRU: h_t = (1 - z_t) * h_{t-1} + z_t * h~_t, with z and h~ from x_t alone.

    >>> cell = MinGRUCell(input_size=4, hidden_size=6)
    >>> tuple(cell(torch.zeros(3, 4), torch.zeros(3, 6)).shape)      # x_t (bs, emb), h (bs, h) -> (bs, h)
    (3, 6)
    """

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        self.to_z = nn.Linear(input_size, hidden_size)
        self.to_h = nn.Linear(input_size, hidden_size)

    def forward(self, x_t: Tensor, h: Tensor) -> Tensor:
        z = torch.sigmoid(self.to_z(x_t))
        return (1 - z) * h + z * self.to_h(x_t)


class MinGRU(nn.Module):
    """A minimal GRU layer, batch-first, computed for all steps at once (no loop over T): the gates do not
    read h, so h_t = a_t * h_{t-1} + b_t unrolls to a cumulative product and sum.

    >>> gru = MinGRU(MinGRUCell(input_size=4, hidden_size=6))
    >>> out, h_n = gru(torch.zeros(3, 5, 4), torch.zeros(3, 6))      # x (bs=3, T=5, emb=4), h_0 (bs, h)
    >>> tuple(out.shape), tuple(h_n.shape)                            # (bs, T, h), (bs, h)
    ((3, 5, 6), (3, 6))
    """

    def __init__(self, cell: MinGRUCell) -> None:
        super().__init__()
        self.cell = cell  # the same weights, used for all T steps at once
        self.input_size, self.hidden_size = cell.input_size, cell.hidden_size

    def forward(self, x: Tensor, h_0: Tensor) -> tuple[Tensor, Tensor]:
        z = torch.sigmoid(self.cell.to_z(x))  # (bs, T, h)
        a, b = 1 - z, z * self.cell.to_h(x)  # h_t = a_t * h_{t-1} + b_t
        A = torch.cumprod(a, dim=1)  # a_1 * ... * a_t
        out = A * (h_0.unsqueeze(1) + torch.cumsum(b / A, dim=1))  # (bs, T, h)
        return out, out[:, -1]


OWN_LAYERS: tuple[str, ...] = ("own_scratch_rnn", "own_gate_lstm", "own_min_gru")
"""The pages of the "Your own recurrent layers" section, in page order."""


@_example("own_scratch_rnn", "Your own layer: the from-scratch RNN, declared",
          """The textbook RNNScratch takes inputs (T, bs, emb) and its state as a 1-tuple ((bs, h),): not
          nn.RNN's conventions, so shapeviz cannot know them until they are declared. One line,
          sv.recurrent(RNNScratch, input="T bs emb", state=("bs h",), sizes=...), and every call is checked
          like nn.RNN's: fed the one-hot tokens without the transpose, (bs, T, vocab), with its state, it
          raises batch_first_swap (before, its loop silently ran over the batch). The build checks the loop
          equals nn.RNN with the same weights.""",
          shows=(RNNScratch, ScratchLM))
def own_scratch_rnn() -> Built:
    sv.recurrent(RNNScratch, input="T bs emb", state=("bs h",), sizes={"emb": "num_inputs", "h": "num_hiddens"})
    with fixed_seed(0):
        model = ScratchLM(vocab=28, num_hiddens=32)
    tokens = torch.randint(0, 28, (2, 5), generator=seeded(1))  # (bs=2, T=5)
    X = F.one_hot(tokens.T, 28).float()  # (T=5, bs=2, vocab=28)
    H0 = (torch.zeros(2, 32),)  # a 1-tuple: ((bs, h),)
    ref = nn.RNN(28, 32)  # the same recurrence, written by PyTorch
    with torch.no_grad():
        ref.weight_ih_l0.copy_(model.rnn.W_xh.T)
        ref.weight_hh_l0.copy_(model.rnn.W_hh.T)
        ref.bias_ih_l0.copy_(model.rnn.b_h)
        ref.bias_hh_l0.zero_()
        outputs, (H,) = model.rnn(X, H0)
        out, h_n = ref(X)  # (T, bs, h), (1, bs, h)
    checks = [assert_close(torch.stack(outputs), out, "RNNScratch's outputs and nn.RNN's output"),
              assert_close(H, h_n[0], "RNNScratch's H and nn.RNN's h_n[0]")]
    try:
        with sv.watch(model):
            model.rnn(X.transpose(0, 1), H0)  # the mistake: (bs, T, vocab) for (T, bs, vocab)
    except sv.ShapeError as e:
        checks.append(f"caught: {str(e).splitlines()[0]}")
    else:
        raise AssertionError("the swapped input was not caught")
    return Built(model, (tokens,), "bs T", layer=model.rnn, sizes={"vocab": 28}, T=5, bs=2, checks=checks)


@_example("own_gate_lstm", "Your own layer: an LSTM written gate by gate",
          """An LSTM layer written gate by gate (i, f, g, o from two Linear maps) with nn.LSTM's conventions:
          x (T, bs, emb), state ((layers*D, bs, h), (layers*D, bs, h)). Declared with those dims, it is
          checked, explained and drawn exactly as nn.LSTM is, under its own class name; the build checks it
          equals nn.LSTM(6, 8) with the same weights.""",
          shows=(GateLSTM,))
def own_gate_lstm() -> Built:
    sv.recurrent(GateLSTM, input="T bs emb", state=("layers*D bs h", "layers*D bs h"), output="T bs D*h",
                 sizes={"emb": "input_size", "h": "hidden_size", "layers": "num_layers", "D": lambda m: 1})
    with fixed_seed(0):
        ref = nn.LSTM(6, 8)
    model = GateLSTM.like(ref)
    x = torch.randn(5, 3, 6, generator=seeded(1))  # (T=5, bs=3, emb=6)
    with torch.no_grad():
        out, (h_n, c_n) = model(x)
        ref_out, (ref_h, ref_c) = ref(x)
    checks = [assert_close(out, ref_out, "GateLSTM's output and nn.LSTM's"),
              assert_close(h_n, ref_h, "GateLSTM's h_n and nn.LSTM's"),
              assert_close(c_n, ref_c, "GateLSTM's c_n and nn.LSTM's")]
    return Built(model, (x,), "T bs emb", T=5, bs=3, checks=checks)


class MinGRUBoth(nn.Module):
    """The minimal GRU twice on one input: all steps at once (MinGRU), then step by step (MinGRUCell in a loop).

    >>> both = MinGRUBoth(input_size=4, hidden_size=6)
    >>> parallel, steps = both(torch.zeros(3, 5, 4))                  # x (bs=3, T=5, emb=4)
    >>> tuple(parallel.shape), tuple(steps.shape)                     # (bs, T, h) both
    ((3, 5, 6), (3, 5, 6))
    """

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.cell = MinGRUCell(input_size, hidden_size)
        self.layer = MinGRU(self.cell)  # shares the cell's weights

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h_0 = torch.zeros(x.shape[0], self.cell.hidden_size)  # (bs, h)
        parallel, _ = self.layer(x, h_0)
        h, steps = h_0, []
        for t in range(x.shape[1]):
            h = self.cell(x[:, t], h)  # x[:, t]: (bs, emb)
            steps.append(h)
        return parallel, torch.stack(steps, dim=1)


@_example("own_min_gru", "Your own layer and cell: minGRU, parallel and step by step",
          """A minimal GRU (its gates read x only) declared twice: the batch-first layer MinGRU, which
          computes all T steps at once with a cumulative product, and its one-step MinGRUCell, run in a
          loop. The diagram draws both side by side: the layer as one call over T, the cell as T calls in
          one lane. The build checks the two forms agree.""",
          shows=(MinGRUCell, MinGRU, MinGRUBoth))
def own_min_gru() -> Built:
    sv.recurrent(MinGRU, input="bs T emb", state="bs h", output="bs T h",
                 sizes={"emb": "input_size", "h": "hidden_size"})
    sv.recurrent(MinGRUCell, input="bs emb", state="bs h", cell=True, sizes={"emb": "input_size", "h": "hidden_size"})
    with fixed_seed(0):
        model = MinGRUBoth(input_size=4, hidden_size=6)
    x = torch.randn(3, 5, 4, generator=seeded(1))  # (bs=3, T=5, emb=4)
    with torch.no_grad():
        parallel, steps = model(x)
    checks = [assert_close(parallel, steps, "the parallel and the step-by-step outputs")]
    return Built(model, (x,), "bs T emb", layer=model.layer, T=5, bs=3, checks=checks)


assert all(name in EXAMPLES for name in OWN_LAYERS)
