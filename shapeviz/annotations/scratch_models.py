"""Reference from-scratch RNN, LSTM and GRU: plain loops, annotated and checked with ``@check``.

>>> import torch
>>> lstm = torch.nn.LSTM(10, 20, num_layers=2, bidirectional=True)
>>> scratch = ScratchLSTM.from_torch(lstm)
>>> x = torch.randn(5, 3, 10)                                  # (T=5, bs=3, emb=10)
>>> out, (h_n, c_n) = scratch(x)
>>> out.shape, h_n.shape                                       # (T, bs, D*h), (layers*D, bs, h)
(torch.Size([5, 3, 40]), torch.Size([4, 3, 20]))
>>> bool((out - lstm(x)[0]).abs().max() < 1e-5)
True

Everything here is written for reading: one time step at a time, one layer at a time, one
direction at a time, with the shapes in the annotations. The parameters carry PyTorch's names
(``weight_ih_l0``, ``bias_hh_l1_reverse``, ``weight_hr_l0`` …), so ``from_torch`` is a plain
``load_state_dict`` and the results equal PyTorch's (no dropout between layers here).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from shapeviz._errors import SpecError
from shapeviz.annotations.aliases import (
    Hidden,
    HiddenProj,
    Logits,
    Output,
    OutputBatchFirst,
    OutputProj,
    Seq,
    SeqBatchFirst,
    Step,
    StepHidden,
    Tokens,
    check,
)
from shapeviz.core.model import Conventions, conventions

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = [
    "ScratchGRU",
    "ScratchLM",
    "ScratchLSTM",
    "ScratchRNN",
    "gru_cell",
    "lstm_cell",
    "rnn_cell",
]

# Weight and state shapes of one step (PyTorch's layouts: weights are (out, in)).
RNNWeightIH = Float[Tensor, "h emb"]
RNNWeightHH = Float[Tensor, "h h"]
RNNBias = Float[Tensor, "h"]
LSTMWeightIH = Float[Tensor, "4*h emb"]
LSTMWeightHH = Float[Tensor, "4*h hr"]
LSTMBias = Float[Tensor, "4*h"]
LSTMWeightHR = Float[Tensor, "hr h"]
LSTMStepH = Float[Tensor, "bs hr"]
"""An LSTM step's h: (bs, hr), ``hr`` = proj_size with projections, else h."""
GRUWeightIH = Float[Tensor, "3*h emb"]
GRUWeightHH = Float[Tensor, "3*h h"]
GRUBias = Float[Tensor, "3*h"]
OutputProjBatchFirst = Float[Tensor, "bs T D*proj"]


# ------------------------------------------------------------------ one time step


@check
def rnn_cell(
    x: Step,
    h: StepHidden,
    weight_ih: RNNWeightIH,
    weight_hh: RNNWeightHH,
    bias_ih: RNNBias | None = None,
    bias_hh: RNNBias | None = None,
    nonlinearity: str = "tanh",
) -> StepHidden:
    """One step of an Elman RNN: ``h' = tanh(x W_ih^T + b_ih + h W_hh^T + b_hh)``.

    >>> cell = torch.nn.RNNCell(10, 20)
    >>> rnn_cell(torch.randn(3, 10), torch.zeros(3, 20), *cell.parameters()).shape  # (bs, h)
    torch.Size([3, 20])
    """
    pre = F.linear(x, weight_ih, bias_ih) + F.linear(h, weight_hh, bias_hh)  # (bs, h)
    return torch.tanh(pre) if nonlinearity == "tanh" else torch.relu(pre)


@check
def lstm_cell(
    x: Step,
    h: LSTMStepH,
    c: StepHidden,
    weight_ih: LSTMWeightIH,
    weight_hh: LSTMWeightHH,
    bias_ih: LSTMBias | None = None,
    bias_hh: LSTMBias | None = None,
    weight_hr: LSTMWeightHR | None = None,
) -> tuple[LSTMStepH, StepHidden]:
    """One LSTM step; ``hr`` is the size of ``h``: ``proj`` with ``weight_hr``, else ``h``.

    >>> cell = torch.nn.LSTMCell(10, 20)
    >>> h, c = lstm_cell(torch.randn(3, 10), torch.zeros(3, 20), torch.zeros(3, 20), *cell.parameters())
    >>> h.shape, c.shape                                  # (bs, hr), (bs, h)
    (torch.Size([3, 20]), torch.Size([3, 20]))
    """
    gates = F.linear(x, weight_ih, bias_ih) + F.linear(h, weight_hh, bias_hh)  # (bs, 4*h)
    i, f, g, o = gates.chunk(4, dim=1)  # each (bs, h), PyTorch's order
    c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    h_new = torch.sigmoid(o) * torch.tanh(c_new)  # (bs, h)
    if weight_hr is not None:
        h_new = F.linear(h_new, weight_hr)  # (bs, proj)
    return h_new, c_new


@check
def gru_cell(
    x: Step,
    h: StepHidden,
    weight_ih: GRUWeightIH,
    weight_hh: GRUWeightHH,
    bias_ih: GRUBias | None = None,
    bias_hh: GRUBias | None = None,
) -> StepHidden:
    """One GRU step (reset gate r, update gate z, candidate n, in PyTorch's order).

    >>> cell = torch.nn.GRUCell(10, 20)
    >>> gru_cell(torch.randn(3, 10), torch.zeros(3, 20), *cell.parameters()).shape  # (bs, h)
    torch.Size([3, 20])
    """
    xr, xz, xn = F.linear(x, weight_ih, bias_ih).chunk(3, dim=1)  # each (bs, h)
    hr, hz, hn = F.linear(h, weight_hh, bias_hh).chunk(3, dim=1)
    r = torch.sigmoid(xr + hr)
    z = torch.sigmoid(xz + hz)
    n = torch.tanh(xn + r * hn)
    return (1 - z) * n + z * h


# ------------------------------------------------------------------ whole layers

class _Weights(NamedTuple):
    """One layer-direction's parameters (PyTorch's names without the ``_l0``/``_reverse`` suffix)."""

    weight_ih: Tensor
    weight_hh: Tensor
    bias_ih: Tensor | None
    bias_hh: Tensor | None
    weight_hr: Tensor | None


_TORCH_TYPES: dict[str, type[nn.Module]] = {"RNN": nn.RNN, "GRU": nn.GRU, "LSTM": nn.LSTM}


class _ScratchLayer(nn.Module):
    """Shared parameters and the time/layer/direction loop; subclasses fix the cell."""

    family = "RNN"

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, bidirectional: bool = False, proj_size: int = 0,
                 nonlinearity: str = "tanh") -> None:
        super().__init__()
        if nonlinearity not in ("tanh", "relu"):
            raise SpecError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bias = bias
        self.batch_first = batch_first
        self.bidirectional = bidirectional
        self.proj_size = proj_size
        self.nonlinearity = nonlinearity
        self.conv = Conventions(self.family, cell=False, input_size=input_size, hidden_size=hidden_size,
                                num_layers=num_layers, bidirectional=bidirectional, batch_first=batch_first,
                                proj_size=proj_size)
        D, h_out = self.conv.D, self.conv.h_out
        gates = self.conv.layout.gates * hidden_size
        bound = 1 / math.sqrt(hidden_size)
        for layer in range(num_layers):
            for suffix in ("", "_reverse")[:D]:
                sizes: dict[str, tuple[int, ...]] = {"weight_ih": (gates, input_size if layer == 0 else D * h_out),
                         "weight_hh": (gates, h_out)}
                if bias:
                    sizes.update(bias_ih=(gates,), bias_hh=(gates,))
                if proj_size:
                    sizes["weight_hr"] = (proj_size, hidden_size)
                for name, shape in sizes.items():
                    p = nn.Parameter(torch.empty(shape).uniform_(-bound, bound))
                    self.register_parameter(f"{name}_l{layer}{suffix}", p)

    @classmethod
    def from_torch(cls, module: nn.Module) -> Self:
        """The scratch twin of a ``torch.nn`` layer, with its weights.

        >>> ScratchGRU.from_torch(torch.nn.GRU(4, 8, batch_first=True)).batch_first
        True
        """
        want = _TORCH_TYPES[cls.family]
        if not isinstance(module, want):
            raise SpecError(f"{cls.__name__}.from_torch takes an nn.{want.__name__}, "
                            f"got {type(module).__name__}")
        c = conventions(module)
        twin = cls(c.input_size, c.hidden_size, c.num_layers, bias=bool(module.bias),
                   batch_first=c.batch_first, bidirectional=c.bidirectional, proj_size=c.proj_size,
                   nonlinearity=getattr(module, "nonlinearity", "tanh"))
        twin.load_state_dict(module.state_dict())
        return twin.to(next(module.parameters()).dtype)

    def _params(self, layer: int, direction: int) -> _Weights:
        suffix = f"_l{layer}" + ("_reverse" if direction else "")
        w_ih, w_hh, b_ih, b_hh, w_hr = (getattr(self, n + suffix, None) for n in
                                        ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr"))
        assert w_ih is not None and w_hh is not None
        return _Weights(w_ih, w_hh, b_ih, b_hh, w_hr)

    def _step(self, x: Tensor, state: tuple[Tensor, ...], params: _Weights,
              layer: int, direction: int) -> tuple[Tensor, ...]:
        raise NotImplementedError

    def _run(self, x: Tensor, states: Sequence[Tensor]) -> tuple[Tensor, list[Tensor]]:
        """The loop, seq-first: ``x`` (T, bs, emb), ``states`` each (layers*D, bs, ·)."""
        D = self.conv.D
        T = x.shape[0]
        inp = x
        finals: list[list[Tensor]] = [[] for _ in states]
        for layer in range(self.num_layers):
            outs = []
            for d in range(D):
                state = tuple(s[self.conv.state_index(layer, d)] for s in states)  # each (bs, ·)
                params = self._params(layer, d)
                ys: list[Tensor] = [x.new_empty(0)] * T
                for t in (range(T - 1, -1, -1) if d else range(T)):
                    state = self._step(inp[t], state, params, layer, d)
                    ys[t] = state[0]  # (bs, hr)
                outs.append(torch.stack(ys))  # (T, bs, hr)
                for f, s in zip(finals, state):
                    f.append(s)
            inp = torch.cat(outs, dim=2)  # (T, bs, D*hr): the next layer's input
        return inp, [torch.stack(f) for f in finals]  # (T, bs, D*hr), each (layers*D, bs, ·)

    def _zeros(self, x: Tensor, size: int) -> Tensor:
        return x.new_zeros(self.conv.stacked, x.shape[1], size)

    def forward(self, input: Tensor, hx: Any = None) -> Any:
        """Dispatch on the layout: :meth:`forward_batch_first` or :meth:`forward_seq_first`."""
        if self.batch_first:
            return self.forward_batch_first(input, hx)
        return self.forward_seq_first(input, hx)

    def forward_seq_first(self, x: Tensor, hx: Any = None) -> Any:
        raise NotImplementedError

    def forward_batch_first(self, x: Tensor, hx: Any = None) -> Any:
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}"


class _SingleState(_ScratchLayer):
    """RNN and GRU: one state tensor h."""

    def _cell(self, x: Tensor, h: Tensor, params: _Weights) -> Tensor:
        raise NotImplementedError

    def _step(self, x: Tensor, state: tuple[Tensor, ...], params: _Weights,
              layer: int, direction: int) -> tuple[Tensor, ...]:
        return (self._cell(x, state[0], params),)

    @check
    def forward_seq_first(self, x: Seq, hx: Hidden | None = None) -> tuple[Output, Hidden]:
        """(T, bs, emb), (layers*D, bs, h) -> (T, bs, D*h), (layers*D, bs, h)."""
        out, (h_n,) = self._run(x, [hx if hx is not None else self._zeros(x, self.hidden_size)])
        return out, h_n

    @check
    def forward_batch_first(self, x: SeqBatchFirst, hx: Hidden | None = None) -> tuple[OutputBatchFirst, Hidden]:
        """(bs, T, emb), (layers*D, bs, h) -> (bs, T, D*h), (layers*D, bs, h): h stays seq-first."""
        out, h_n = self.forward_seq_first(x.transpose(0, 1), hx)
        return out.transpose(0, 1), h_n


class ScratchRNN(_SingleState):
    """A multi-layer, optionally bidirectional Elman RNN, equal to ``torch.nn.RNN``.

    >>> rnn = ScratchRNN(10, 20, num_layers=2, bidirectional=True, batch_first=True)
    >>> out, h_n = rnn(torch.randn(3, 5, 10))       # (bs=3, T=5, emb=10)
    >>> out.shape, h_n.shape                        # (bs, T, D*h), (layers*D, bs, h)
    (torch.Size([3, 5, 40]), torch.Size([4, 3, 20]))
    """

    family = "RNN"

    def _cell(self, x: Tensor, h: Tensor, params: _Weights) -> Tensor:
        w = params
        return rnn_cell(x, h, w.weight_ih, w.weight_hh, w.bias_ih, w.bias_hh, self.nonlinearity)


class ScratchGRU(_SingleState):
    """A multi-layer, optionally bidirectional GRU, equal to ``torch.nn.GRU``.

    >>> out, h_n = ScratchGRU(8, 16, num_layers=3)(torch.randn(5, 2, 8))   # (T=5, bs=2, emb=8)
    >>> out.shape, h_n.shape                        # (T, bs, D*h), (layers*D, bs, h)
    (torch.Size([5, 2, 16]), torch.Size([3, 2, 16]))
    """

    family = "GRU"

    def _cell(self, x: Tensor, h: Tensor, params: _Weights) -> Tensor:
        w = params
        return gru_cell(x, h, w.weight_ih, w.weight_hh, w.bias_ih, w.bias_hh)


LSTMState = tuple[Hidden | HiddenProj, Hidden]


class ScratchLSTM(_ScratchLayer):
    """A multi-layer, optionally bidirectional LSTM with optional ``proj_size``, equal to ``torch.nn.LSTM``.

    >>> lstm = ScratchLSTM(10, 20, proj_size=5, bidirectional=True)
    >>> out, (h_n, c_n) = lstm(torch.randn(7, 2, 10))    # (T=7, bs=2, emb=10)
    >>> out.shape, h_n.shape, c_n.shape                  # (T, bs, D*proj), (layers*D, bs, proj), c: h
    (torch.Size([7, 2, 10]), torch.Size([2, 2, 5]), torch.Size([2, 2, 20]))
    """

    family = "LSTM"

    def _step(self, x: Tensor, state: tuple[Tensor, ...], params: _Weights,
              layer: int, direction: int) -> tuple[Tensor, ...]:
        w = params
        return lstm_cell(x, state[0], state[1], w.weight_ih, w.weight_hh, w.bias_ih, w.bias_hh, w.weight_hr)

    @check
    def forward_seq_first(self, x: Seq, hx: LSTMState | None = None
                          ) -> tuple[Output | OutputProj, LSTMState]:
        """(T, bs, emb), ((layers*D, bs, proj or h), (layers*D, bs, h)) -> (T, bs, D*proj or D*h), state."""
        if hx is None:
            hx = (self._zeros(x, self.conv.h_out), self._zeros(x, self.hidden_size))
        out, (h_n, c_n) = self._run(x, hx)
        return out, (h_n, c_n)

    @check
    def forward_batch_first(self, x: SeqBatchFirst, hx: LSTMState | None = None
                            ) -> tuple[OutputBatchFirst | OutputProjBatchFirst, LSTMState]:
        """(bs, T, emb) -> (bs, T, D*proj or D*h); the state stays (layers*D, bs, ·)."""
        out, state = self.forward_seq_first(x.transpose(0, 1), hx)
        return out.transpose(0, 1), state


# ------------------------------------------------------------------ the d2l-style language model

Layer = ScratchRNN | ScratchGRU | ScratchLSTM


class ScratchLM(nn.Module):
    """The d2l-style language model: tokens -> one-hot/embedding -> recurrent loop -> logits.

    >>> lm = ScratchLM(ScratchGRU(28, 32), vocab_size=28)
    >>> logits, h = lm(torch.randint(0, 28, (2, 5)))      # tokens (bs=2, T=5)
    >>> logits.shape, h.shape                             # (T*bs, vocab), (layers*D, bs, h)
    (torch.Size([10, 28]), torch.Size([1, 2, 32]))

    Without an embedding the tokens are one-hot encoded, so the layer's ``input_size`` must be
    ``vocab_size``; the logits stack the steps: row ``t*bs + b`` is step ``t`` of sequence ``b``.
    """

    def __init__(self, rnn: Layer, vocab_size: int, embedding: nn.Embedding | None = None) -> None:
        super().__init__()
        if rnn.batch_first:
            raise SpecError("ScratchLM loops over time seq-first, like d2l's RNNModel; "
                            "give it a layer with batch_first=False")
        self.rnn = rnn
        self.vocab_size = vocab_size
        self.embedding = embedding
        conv = rnn.conv if isinstance(rnn, _ScratchLayer) else conventions(rnn)
        out_size = conv.shapes()["output"][-1]  # D*h (or D*proj)
        assert out_size is not None
        self.linear = nn.Linear(out_size, vocab_size)

    @classmethod
    def from_torch(cls, rnn: nn.Module, linear: nn.Linear, embedding: nn.Embedding | None = None) -> ScratchLM:
        """The scratch twin of a d2l ``RNNModel`` made of ``rnn`` (+ ``embedding``) + ``linear``.

        >>> rnn, lin = torch.nn.RNN(28, 32), torch.nn.Linear(32, 28)
        >>> ScratchLM.from_torch(rnn, lin).linear.weight.shape   # (vocab, D*h)
        torch.Size([28, 32])
        """
        scratch: type[ScratchLSTM | ScratchGRU | ScratchRNN] = (
            ScratchLSTM if isinstance(rnn, nn.LSTM) else ScratchGRU if isinstance(rnn, nn.GRU) else ScratchRNN)
        lm = cls(scratch.from_torch(rnn), linear.out_features, embedding)
        lm.linear.load_state_dict(linear.state_dict())
        return lm.to(linear.weight.dtype)

    def embed(self, tokens: Tensor) -> Tensor:
        """(bs, T) token ids -> (T, bs, emb): transpose first, then one-hot or look up."""
        X = tokens.T  # (T, bs)
        if self.embedding is not None:
            return self.embedding(X)
        return F.one_hot(X, self.vocab_size).to(self.linear.weight.dtype)  # (T, bs, vocab)

    @check
    def forward(self, tokens: Tokens, state: Hidden | LSTMState | None = None
                ) -> tuple[Logits, Hidden | LSTMState]:
        """(bs, T) -> logits (T*bs, vocab) and the final state."""
        rnn: Any = self.rnn
        Y, state = rnn.forward_seq_first(self.embed(tokens), state)  # (T, bs, D*h)
        return self.linear(Y.reshape(-1, Y.shape[-1])), state  # (T*bs, vocab)

