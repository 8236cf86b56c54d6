"""The gallery's registry: every worked example as real code, in page order.

>>> ex = EXAMPLES["embed_rnn"]
>>> built = ex.build()
>>> tuple(built.inputs[0].shape), built.inputs_dims                  # tokens (bs, T)
((2, 5), 'bs T')

Each example is a build function (below) that makes the model and its inputs from fixed seeds,
using the classes of :mod:`shapeviz.gallery.models`. A page shows that code (read with
:mod:`inspect`) as one complete script; a "common mistake" page also has the wrong call, which
raises a real :class:`~shapeviz.ShapeError`, and the fix. ``SEED_SYSTEMS`` names the pages of the
seeds' systems (the gallery's first section and what ``shapeviz demo`` runs).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn

import shapeviz as sv
from shapeviz.gallery.models import (
    BatchFirstLoopRNN,
    BidirectionalLoopRNN,
    CellOverDataset,
    CharRNNScratch,
    EmbedRNN,
    ForgotTranspose,
    GRUEncoder,
    HelloCell,
    HelloEmbedding,
    HelloRNN,
    PackedLSTM,
    assert_close,
    fixed_seed,
    hello_data,
    rnn_step_loop,
    seeded,
)

__all__ = ["EXAMPLES", "SEED_SYSTEMS", "Built", "Example"]

@dataclass
class Built:
    """What an example's build function returns: the model, its inputs, the layer to explain.

    >>> b = Built(model=nn.GRU(8, 16), inputs=(torch.zeros(5, 3, 8),), inputs_dims="T bs emb")
    >>> b.layer_or_model() is b.model, tuple(b.inputs[0].shape)      # x (T, bs, emb)
    (True, (5, 3, 8))
    """

    model: Any  # what is traced: model(*inputs)
    inputs: tuple[Any, ...]
    inputs_dims: str | None = None  # names of the first input's dims
    layer: nn.Module | None = None  # the recurrent layer to explain (default: model)
    sizes: dict[str, int] = field(default_factory=dict)  # extra named sizes (vocab=28 ...)
    draw: str = "trace"  # "trace": unroll the trace; "layer": unroll `layer` with T and bs
    T: int | None = None  # for draw="layer" and explain
    bs: int | None = None
    checks: list[str] = field(default_factory=list)  # facts verified while building
    ops: bool = False  # trace torch ops too (hand-written loops: each step's matmuls)

    def layer_or_model(self) -> nn.Module:
        return self.layer if self.layer is not None else self.model


@dataclass(frozen=True)
class Example:
    """One gallery page: a name (its folder), a title, what it teaches, and its code.

    >>> ex = EXAMPLES["lstm_bidirectional"]
    >>> ex.title, tuple(ex.build().inputs[0].shape)                      # x (T, bs, emb)
    ('2-layer bidirectional LSTM', (5, 3, 10))
    """

    name: str
    title: str
    about: str
    build: Callable[[], Built]
    shows: tuple[Any, ...] = ()  # classes/functions of shapeviz.gallery.models whose source the page shows
    wrong: Callable[[], object] | None = None  # common-mistake pages: raises a ShapeError
    fix: Callable[[], object] | None = None  # ... and its fix, which runs clean

    @property
    def is_mistake(self) -> bool:
        return self.wrong is not None


EXAMPLES: dict[str, Example] = {}
"""The registry, in page order."""


def _example(name: str, title: str, about: str, *, shows: tuple[Any, ...] = (),
             wrong: Callable[[], object] | None = None,
             fix: Callable[[], object] | None = None) -> Callable[[Callable[[], Built]], Callable[[], Built]]:
    def register(fn: Callable[[], Built]) -> Callable[[], Built]:
        EXAMPLES[name] = Example(name, title, " ".join(about.split()), fn, shows, wrong, fix)
        return fn
    return register


# ====================================================================== the seeds' systems
def against_nn_rnn(model: nn.Module) -> Built:
    """Run a hand-written loop and ``model.ref`` (the nn.RNN whose weights it uses) on one input.

    >>> against_nn_rnn(BatchFirstLoopRNN(emb=4, hidden=6)).checks[0]          # output (bs, T, h)
    "output and nn.RNN's output are equal within 1e-6 (3, 5, 6)"
    """
    x = torch.randn(3, 5, 4, generator=seeded(1))  # (bs=3, T=5, emb=4)
    with torch.no_grad():
        out, h_n = model(x)  # the loop
        ref_out, ref_h = model.ref(x)  # nn.RNN(batch_first=True), same weights
    checks = [assert_close(out, ref_out, "output and nn.RNN's output"),
              assert_close(h_n, ref_h, "h_n and nn.RNN's h_n")]
    return Built(model, (x,), "bs T emb", layer=model.ref, draw="layer", T=5, bs=3, checks=checks, ops=True)


@_example("scratch_char_rnn", "From-scratch one-hot char-RNN",
          """The seeds' first system: tokens (bs, T) are one-hot encoded to (T, bs, vocab), a loop
          over T computes H = tanh(X @ W_xh + H @ W_hh + b_h) and one (bs, vocab) output per step,
          and torch.cat stacks them to (T*bs, vocab); the state stays (bs, h). The loop is an
          RNNCell(vocab, h) applied T times, so the diagram draws that cell unrolled; the build
          checks the loop against nn.RNN with the same weights.""",
          shows=(CharRNNScratch,))
def scratch_char_rnn() -> Built:
    model = CharRNNScratch(vocab=28, hidden=64)
    tokens = torch.randint(0, 28, (2, 5), generator=seeded(1))  # (bs=2, T=5)
    logits, H = model(tokens)  # (T*bs, vocab), (bs, h)
    ref = nn.RNN(28, 64)  # the same recurrence, written by PyTorch
    with torch.no_grad():
        ref.weight_ih_l0.copy_(model.W_xh.T)
        ref.weight_hh_l0.copy_(model.W_hh.T)
        ref.bias_ih_l0.copy_(model.b_h)
        ref.bias_hh_l0.zero_()
        x = nn.functional.one_hot(tokens.T, 28).float()  # (T, bs, vocab)
        out, h_n = ref(x)  # (T, bs, h), (1, bs, h)
        checks = [assert_close(H, h_n[0], "the loop's state H and nn.RNN's h_n[0]"),
                  assert_close(logits, (out @ model.W_hq + model.b_q).reshape(-1, 28),
                         "the loop's logits and nn.RNN's output @ W_hq + b_q")]
    return Built(model, (tokens,), "bs T", layer=nn.RNNCell(28, 64), sizes={"vocab": 28, "h": 64},
                 draw="layer", T=5, bs=2, checks=checks, ops=True)


@_example("embed_rnn", "Embedding + nn.RNN with state (1, bs, h)",
          """tokens (bs, T) go through nn.Embedding and a transpose to (T, bs, emb), because nn.RNN
          is seq-first; the state is (layers*D, bs, h) = (1, bs, h) even for one layer; the output
          (T, bs, h) is flattened to (T*bs, h) for the Linear head.""",
          shows=(EmbedRNN,))
def embed_rnn() -> Built:
    model = EmbedRNN(vocab=28, emb=20, hidden=32)
    tokens = torch.randint(0, 28, (2, 5), generator=seeded(1))  # (bs=2, T=5)
    return Built(model, (tokens,), "bs T", layer=model.rnn, sizes={"vocab": 28}, T=5, bs=2)


@_example("batch_first_loop", "Hand-written batch-first RNN loop",
          """The RNN recurrence written by hand for batch-first input x (bs, T, emb): step t reads
          x[:, t] (bs, emb), the outputs are stacked on dim 1 to (bs, T, h), and h_n gets the
          layers*D dim with unsqueeze(0). The build checks it equals nn.RNN(batch_first=True)
          with the same weights; the diagram draws that layer.""",
          shows=(rnn_step_loop, BatchFirstLoopRNN, against_nn_rnn))
def batch_first_loop() -> Built:
    return against_nn_rnn(BatchFirstLoopRNN(emb=4, hidden=6))


@_example("bidirectional_loop", "Hand-written bidirectional RNN loop",
          """The bidirectional version: the same loop runs over x and over x.flip(1) with the
          *_reverse weights; the backward outputs are flipped back and concatenated on the last
          dim to (bs, T, 2h), and h_n stacks the two final states to (D=2, bs, h). Checked equal
          to nn.RNN(batch_first=True, bidirectional=True).""",
          shows=(rnn_step_loop, BidirectionalLoopRNN, against_nn_rnn))
def bidirectional_loop() -> Built:
    return against_nn_rnn(BidirectionalLoopRNN(emb=4, hidden=6))


@_example("rnncell_dataset", "RNNCell loop over a (seq_len, bs, input) dataset",
          """An nn.RNNCell takes ONE time step: the loop feeds it x_t (bs, input) for each of
          seq_len steps and carries hidden (bs, h); no layers or directions dim. The trace records
          the cell's calls and the diagram unrolls them.""",
          shows=(CellOverDataset,))
def rnncell_dataset() -> Built:
    model = CellOverDataset(input_size=4, hidden_size=2)
    dataset = torch.randn(3, 1, 4, generator=seeded(1))  # (seq_len=3, bs=1, input=4)
    return Built(model, (dataset,), "T bs emb", layer=model.cell)


@_example("rnn_3_layers", "3-layer nn.RNN",
          """num_layers=3 stacks three RNNs: layer 0 reads the input, layers 1 and 2 read the
          layer below. h_0 and h_n are (layers*D, bs, h) = (3, bs, h); output holds the top layer
          only.""")
def rnn_3_layers() -> Built:
    with fixed_seed(0):
        rnn = nn.RNN(input_size=4, hidden_size=2, num_layers=3)
    x = torch.randn(5, 1, 4, generator=seeded(1))  # (T=5, bs=1, emb=4)
    h0 = torch.zeros(3, 1, 2)  # (layers*D=3, bs=1, h=2)
    return Built(rnn, (x, h0), "T bs emb")


@_example("hello_rnncell", "'hello' -> 'ohlol' with an RNNCell",
          """The seeds' toy task, first way: 'hello' one-hot encoded to (T=5, bs=1, 4) over the
          letters e, h, l, o; an RNNCell(4, 4) is called once per letter and its (bs, h) state is
          the score for the next letter. With input 4 and hidden 4 the sizes coincide, so the
          trace marks those dims emb|h.""",
          shows=(hello_data, HelloCell))
def hello_rnncell() -> Built:
    x, _ = hello_data()
    inputs = nn.functional.one_hot(x, 4).float().unsqueeze(1)  # (T=5, bs=1, 4)
    model = HelloCell(input_size=4, hidden_size=4)
    return Built(model, (inputs,), "T bs emb", layer=model.rnncell)


@_example("hello_rnn", "'hello' -> 'ohlol' with nn.RNN",
          """Second way: nn.RNN runs the whole sequence in one call; output (T, bs, h) is viewed as
          (T*bs, classes), one row of scores per letter, ready for CrossEntropyLoss against 'ohlol'
          (T,).""",
          shows=(hello_data, HelloRNN))
def hello_rnn() -> Built:
    x, _ = hello_data()
    inputs = nn.functional.one_hot(x, 4).float().unsqueeze(1)  # (T=5, bs=1, 4)
    model = HelloRNN(input_size=4, hidden_size=4)
    return Built(model, (inputs,), "T bs emb", layer=model.rnn)


@_example("hello_embedding", "'hello' -> 'ohlol' with Embedding + RNN(batch_first=True) + Linear",
          """Third way: letter indices (bs, T) go through nn.Embedding to (bs, T, emb) - already
          batch-first, so no transpose - a 2-layer RNN(batch_first=True) and a Linear head to
          (bs*T, classes). h_0 is still (layers*D, bs, h): batch_first never applies to the state.""",
          shows=(hello_data, HelloEmbedding))
def hello_embedding() -> Built:
    x, _ = hello_data()
    model = HelloEmbedding(classes=4, emb=10, hidden=8, num_layers=2)
    return Built(model, (x.unsqueeze(0),), "bs T", layer=model.rnn)  # (bs=1, T=5)


# ====================================================================== LSTM and GRU
@_example("lstm", "nn.LSTM: state is a pair (h, c)",
          """An LSTM carries two states: it takes (h_0, c_0) as one tuple and returns
          output, (h_n, c_n), each state (layers*D, bs, h).""")
def lstm() -> Built:
    with fixed_seed(0):
        layer = nn.LSTM(10, 20)
    x = torch.randn(5, 3, 10, generator=seeded(1))  # (T=5, bs=3, emb=10)
    h0, c0 = torch.zeros(1, 3, 20), torch.zeros(1, 3, 20)  # (layers*D=1, bs=3, h=20)
    return Built(layer, (x, (h0, c0)), "T bs emb")


@_example("gru", "nn.GRU",
          """A GRU has the RNN's shapes (one state tensor, no c) with three gates inside:
          weight_ih is (3*h, emb).""")
def gru() -> Built:
    with fixed_seed(0):
        layer = nn.GRU(8, 16)
    x = torch.randn(6, 3, 8, generator=seeded(1))  # (T=6, bs=3, emb=8)
    return Built(layer, (x,), "T bs emb")


@_example("lstm_bidirectional", "2-layer bidirectional LSTM",
          """num_layers=2 and bidirectional=True: every layer has a forward and a backward lane,
          layer 1 reads both lanes of layer 0 (D*h wide), output is (T, bs, 2h) and h_n/c_n are
          (layers*D=4, bs, h), indexed h_n[layer*D + direction].""")
def lstm_bidirectional() -> Built:
    with fixed_seed(0):
        layer = nn.LSTM(10, 20, num_layers=2, bidirectional=True)
    x = torch.randn(5, 3, 10, generator=seeded(1))  # (T=5, bs=3, emb=10)
    return Built(layer, (x,), "T bs emb")


@_example("lstm_proj", "LSTM with proj_size",
          """proj_size=5 projects h after every step: h_0, h_n and output use proj=5, but the cell
          state c keeps h=20.""")
def lstm_proj() -> Built:
    with fixed_seed(0):
        layer = nn.LSTM(10, 20, proj_size=5)
    x = torch.randn(5, 3, 10, generator=seeded(1))  # (T=5, bs=3, emb=10)
    return Built(layer, (x,), "T bs emb")


@_example("gru_batch_first", "batch_first GRU",
          """batch_first=True lays input and output out as (bs, T, ...); h_0 and h_n stay
          (layers*D, bs, h).""")
def gru_batch_first() -> Built:
    with fixed_seed(0):
        layer = nn.GRU(8, 16, batch_first=True)
    x = torch.randn(3, 6, 8, generator=seeded(1))  # (bs=3, T=6, emb=8)
    return Built(layer, (x,), "bs T emb")


@_example("packed_sequences", "Packed variable-length sequences",
          """Padded (T, bs, emb) sequences of lengths 5, 3 and 2 are packed: the LSTM sees
          data (sum(lengths)=10, emb) and batch_sizes (T,), never the padding; h_n is the state
          at each sequence's own last step; pad_packed_sequence restores (T, bs, h).""",
          shows=(PackedLSTM,))
def packed_sequences() -> Built:
    model = PackedLSTM(emb=4, hidden=6)
    padded = torch.randn(5, 3, 4, generator=seeded(1))  # (T=5, bs=3, emb=4), zero-padded below
    lengths = torch.tensor([5, 3, 2])  # (bs,)
    return Built(model, (padded, lengths), "T bs emb", layer=model.lstm)


@_example("seq2seq_gru_encoder", "seq2seq GRU encoder",
          """An encoder for a seq2seq model: a 2-layer bidirectional GRU over embedded source
          tokens (T, bs); the top layer's two final states h_n[-2] and h_n[-1] are concatenated
          (bs, 2h) and bridged to a decoder's h_0 (1, bs, h).""",
          shows=(GRUEncoder,))
def seq2seq_gru_encoder() -> Built:
    model = GRUEncoder(vocab=30, emb=12, hidden=16, num_layers=2)
    src = torch.randint(0, 30, (6, 3), generator=seeded(1))  # (T=6, bs=3)
    return Built(model, (src,), "T bs", layer=model.gru, sizes={"vocab": 30})


# ====================================================================== common mistakes
def forgot_transpose() -> None:
    """The wrong call: an Embedding's (bs, T, emb) output into a seq-first nn.RNN."""
    model = ForgotTranspose(vocab=28, emb=20, hidden=32)
    tokens = torch.randint(0, 28, (2, 5), generator=seeded(1))  # (bs=2, T=5)
    with sv.checking(inputs="bs T"):
        model(tokens)


def forgot_transpose_fixed() -> None:
    """The fix: EmbedRNN transposes the tokens first, embedding(tokens.T) -> (T, bs, emb)."""
    model = EmbedRNN(vocab=28, emb=20, hidden=32)
    tokens = torch.randint(0, 28, (2, 5), generator=seeded(1))  # (bs=2, T=5)
    with sv.checking(inputs="bs T"):
        model(tokens)


@_example("mistake_embedding_not_transposed", "Common mistake: Embedding output not transposed",
          """nn.Embedding keeps the token layout, so tokens (bs, T) become (bs, T, emb); a
          seq-first nn.RNN then reads bs as T and T as bs. torch runs it without complaint when
          the sizes allow; shapeviz, told the input is "bs T", catches it.""",
          shows=(EmbedRNN, ForgotTranspose), wrong=forgot_transpose, fix=forgot_transpose_fixed)
def mistake_embedding_not_transposed() -> Built:
    model = EmbedRNN(vocab=28, emb=20, hidden=32)
    tokens = torch.randint(0, 28, (2, 5), generator=seeded(1))  # (bs=2, T=5)
    return Built(model, (tokens,), "bs T", layer=model.rnn, sizes={"vocab": 28}, T=5, bs=2)


def state_2d() -> None:
    """The wrong call: a (bs, h) state, as an RNNCell takes, given to nn.RNN."""
    rnn = nn.RNN(4, 8)
    x = torch.randn(5, 3, 4, generator=seeded(1))  # (T=5, bs=3, emb=4)
    h0 = torch.zeros(3, 8)  # (bs, h)
    with sv.checking():
        rnn(x, h0)


def state_2d_fixed() -> None:
    """The fix: h0.unsqueeze(0) adds the layers*D dim -> (1, bs, h)."""
    rnn = nn.RNN(4, 8)
    x = torch.randn(5, 3, 4, generator=seeded(1))  # (T=5, bs=3, emb=4)
    h0 = torch.zeros(3, 8).unsqueeze(0)  # (layers*D=1, bs, h)
    with sv.checking():
        rnn(x, h0)


@_example("mistake_state_2d", "Common mistake: a 2-D state for nn.RNN",
          """A cell's state is (bs, h), a layer's is (layers*D, bs, h) even with one layer and one
          direction. Passing the cell-style (bs, h) state to nn.RNN is caught as hidden_ndim.""",
          wrong=state_2d, fix=state_2d_fixed)
def mistake_state_2d() -> Built:
    with fixed_seed(0):
        rnn = nn.RNN(4, 8)
    x = torch.randn(5, 3, 4, generator=seeded(1))  # (T=5, bs=3, emb=4)
    return Built(rnn, (x, torch.zeros(1, 3, 8)), "T bs emb")


def bidirectional_state() -> None:
    """The wrong call: h_0 sized for the layers but not the directions of a bidirectional GRU."""
    gru = nn.GRU(4, 8, num_layers=2, bidirectional=True)
    x = torch.randn(5, 3, 4, generator=seeded(1))  # (T=5, bs=3, emb=4)
    h0 = torch.zeros(2, 3, 8)  # (layers=2, bs, h): forgot D=2
    with sv.checking():
        gru(x, h0)


def bidirectional_state_fixed() -> None:
    """The fix: one slice per layer AND direction, (layers*D=4, bs, h)."""
    gru = nn.GRU(4, 8, num_layers=2, bidirectional=True)
    x = torch.randn(5, 3, 4, generator=seeded(1))  # (T=5, bs=3, emb=4)
    h0 = torch.zeros(2 * 2, 3, 8)  # (layers*D=4, bs, h)
    with sv.checking():
        gru(x, h0)


@_example("mistake_bidirectional_state", "Common mistake: h_0 without the direction factor",
          """A bidirectional layer keeps a state per layer and per direction: h_0 is
          (layers*D, bs, h) with D=2. Sizing it (num_layers, bs, h) is caught as hidden_layers,
          and the message says which factor is missing.""",
          wrong=bidirectional_state, fix=bidirectional_state_fixed)
def mistake_bidirectional_state() -> Built:
    with fixed_seed(0):
        gru = nn.GRU(4, 8, num_layers=2, bidirectional=True)
    x = torch.randn(5, 3, 4, generator=seeded(1))  # (T=5, bs=3, emb=4)
    return Built(gru, (x, torch.zeros(4, 3, 8)), "T bs emb")


SEED_SYSTEMS: tuple[str, ...] = ("scratch_char_rnn", "embed_rnn", "batch_first_loop", "bidirectional_loop",
                                 "rnncell_dataset", "rnn_3_layers", "hello_rnncell", "hello_rnn", "hello_embedding")
"""The pages of the seeds' systems, in page order: the gallery's first section, and what the demo runs."""
