"""The gallery: a registry of worked examples and the builder that writes ``gallery/``.

>>> ex = EXAMPLES["embed_rnn"]
>>> built = ex.build()
>>> tuple(built.inputs[0].shape), built.inputs_dims                  # tokens (bs, T)
((2, 5), 'bs T')
>>> "(T=5, bs=2, emb=20)" in render_texts(ex)["README.md"]
True

Each example is real code: a build function (below) that makes the model and its inputs from
fixed seeds, plus the classes of :mod:`shapeviz.gallery.models` it uses. A page shows that code (read
with :mod:`inspect`), the unrolled diagram, the ``explain`` table of its recurrent layer and the
trace table of one forward pass; a "common mistake" page also shows the wrong call, the real
:class:`~shapeviz.ShapeError` caught while building, and the fix. Outputs are deterministic (no
timestamps, fixed seeds), so ``tests/test_gallery.py`` can tell when ``gallery/`` is stale.

Rebuild with ``shapeviz gallery`` (or :func:`build`).
"""

from __future__ import annotations

import inspect
import textwrap
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from shapeviz._errors import ShapeError
from shapeviz.core.dimensions import dims
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
    fixed_seed,
    hello_data,
    rnn_step_loop,
    seeded,
)
from shapeviz.render.text import explain
from shapeviz.render.unrolled import unroll
from shapeviz.runtime.watching import checking

__all__ = ["EXAMPLES", "Built", "Example", "build", "render_texts"]

DIAGRAM = "unrolled"
"""File stem of each page's diagram: ``unrolled.dot``, ``unrolled.svg``, ``unrolled.png``."""


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


def _close(a: torch.Tensor, b: torch.Tensor, what: str) -> str:
    if a.shape != b.shape or not torch.allclose(a, b, atol=1e-6):
        raise AssertionError(f"gallery: {what} differ")  # a broken example must not be published
    return f"{what} are equal within 1e-6 {tuple(a.shape)}"


# ====================================================================== the seeds' systems
def against_nn_rnn(model: BatchFirstLoopRNN | BidirectionalLoopRNN) -> Built:
    """Run a hand-written loop and ``model.ref`` (the nn.RNN whose weights it uses) on one input.

    >>> against_nn_rnn(BatchFirstLoopRNN(emb=4, hidden=6)).checks[0]          # output (bs, T, h)
    "output and nn.RNN's output are equal within 1e-6 (3, 5, 6)"
    """
    x = torch.randn(3, 5, 4, generator=seeded(1))  # (bs=3, T=5, emb=4)
    with torch.no_grad():
        out, h_n = model(x)  # the loop
        ref_out, ref_h = model.ref(x)  # nn.RNN(batch_first=True), same weights
    checks = [_close(out, ref_out, "output and nn.RNN's output"), _close(h_n, ref_h, "h_n and nn.RNN's h_n")]
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
        checks = [_close(H, h_n[0], "the loop's state H and nn.RNN's h_n[0]"),
                  _close(logits, (out @ model.W_hq + model.b_q).reshape(-1, 28),
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
          shows=(BidirectionalLoopRNN, against_nn_rnn))
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
          shows=(HelloRNN,))
def hello_rnn() -> Built:
    x, _ = hello_data()
    inputs = nn.functional.one_hot(x, 4).float().unsqueeze(1)  # (T=5, bs=1, 4)
    model = HelloRNN(input_size=4, hidden_size=4)
    return Built(model, (inputs,), "T bs emb", layer=model.rnn)


@_example("hello_embedding", "'hello' -> 'ohlol' with Embedding + RNN(batch_first=True) + Linear",
          """Third way: letter indices (bs, T) go through nn.Embedding to (bs, T, emb) - already
          batch-first, so no transpose - a 2-layer RNN(batch_first=True) and a Linear head to
          (bs*T, classes). h_0 is still (layers*D, bs, h): batch_first never applies to the state.""",
          shows=(HelloEmbedding,))
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
    with checking(inputs="bs T"):
        model(tokens)


def forgot_transpose_fixed() -> None:
    """The fix: EmbedRNN transposes the tokens first, embedding(tokens.T) -> (T, bs, emb)."""
    model = EmbedRNN(vocab=28, emb=20, hidden=32)
    tokens = torch.randint(0, 28, (2, 5), generator=seeded(1))  # (bs=2, T=5)
    with checking(inputs="bs T"):
        model(tokens)


@_example("mistake_embedding_not_transposed", "Common mistake: Embedding output not transposed",
          """nn.Embedding keeps the token layout, so tokens (bs, T) become (bs, T, emb); a
          seq-first nn.RNN then reads bs as T and T as bs. torch runs it without complaint when
          the sizes allow; shapeviz, told the input is "bs T", catches it.""",
          shows=(ForgotTranspose,), wrong=forgot_transpose, fix=forgot_transpose_fixed)
def mistake_embedding_not_transposed() -> Built:
    model = EmbedRNN(vocab=28, emb=20, hidden=32)
    tokens = torch.randint(0, 28, (2, 5), generator=seeded(1))  # (bs=2, T=5)
    return Built(model, (tokens,), "bs T", layer=model.rnn, sizes={"vocab": 28}, T=5, bs=2)


def state_2d() -> None:
    """The wrong call: a (bs, h) state, as an RNNCell takes, given to nn.RNN."""
    rnn = nn.RNN(4, 8)
    x = torch.randn(5, 3, 4, generator=seeded(1))  # (T=5, bs=3, emb=4)
    h0 = torch.zeros(3, 8)  # (bs, h)
    with checking():
        rnn(x, h0)


def state_2d_fixed() -> None:
    """The fix: h0.unsqueeze(0) adds the layers*D dim -> (1, bs, h)."""
    rnn = nn.RNN(4, 8)
    x = torch.randn(5, 3, 4, generator=seeded(1))  # (T=5, bs=3, emb=4)
    h0 = torch.zeros(3, 8).unsqueeze(0)  # (layers*D=1, bs, h)
    with checking():
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
    with checking():
        gru(x, h0)


def bidirectional_state_fixed() -> None:
    """The fix: one slice per layer AND direction, (layers*D=4, bs, h)."""
    gru = nn.GRU(4, 8, num_layers=2, bidirectional=True)
    x = torch.randn(5, 3, 4, generator=seeded(1))  # (T=5, bs=3, emb=4)
    h0 = torch.zeros(2 * 2, 3, 8)  # (layers*D=4, bs, h)
    with checking():
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


# ====================================================================== builder
def _source(obj: Any) -> str:
    """The source of a function or class, without the registry's decorator."""
    lines = textwrap.dedent(inspect.getsource(obj)).rstrip().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(("def ", "class ")))
    return "\n".join(lines[start:])


def _fence(lang: str, text: str) -> str:
    return f"```{lang}\n{text.rstrip()}\n```"


def capture_error(ex: Example) -> ShapeError:
    """Run a mistake page's wrong call and return the ShapeError it raises.

    >>> err = capture_error(EXAMPLES["mistake_state_2d"])
    >>> err.code, err.actual                          # h0 (bs, h) where (layers*D, bs, h) belongs
    ('hidden_ndim', (3, 8))
    """
    if ex.wrong is None or ex.fix is None:
        raise ValueError(f"{ex.name} is not a common-mistake example")
    try:
        ex.wrong()
    except ShapeError as err:
        error = err
    else:
        raise AssertionError(f"gallery: {ex.name}: the wrong call raised no ShapeError")
    ex.fix()  # must run clean: a ShapeError here is a broken page
    return error


def _trace(ex: Example, built: Built) -> Any:
    from shapeviz.tracing.recorder import trace

    with dims(**built.sizes):
        return trace(built.model, *built.inputs, inputs_dims=built.inputs_dims, ops=built.ops)


def _call_text(built: Built) -> str:
    args = ", ".join(f"<{'x'.join(str(s) for s in t.shape)} tensor>" if isinstance(t, torch.Tensor)
                     else "..." for t in built.inputs)
    extra = f", inputs_dims={built.inputs_dims!r}" if built.inputs_dims else ""
    extra += ", ops=True" if built.ops else ""
    return f"sv.trace(model, {args}{extra})"


def render_texts(ex: Example) -> dict[str, str]:
    """The text files of one page: ``README.md`` and ``unrolled.dot`` (no dot program needed).

    >>> files = render_texts(EXAMPLES["gru"])
    >>> sorted(files), "(T=6, bs=3, emb=8)" in files["README.md"]
    (['README.md', 'unrolled.dot'], True)
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="LSTM with projections is not supported")
        return _render_texts(ex)


def _render_texts(ex: Example) -> dict[str, str]:
    built = ex.build()
    layer = built.layer_or_model()
    tr = _trace(ex, built)
    diagram = unroll(layer, T=built.T, bs=built.bs) if built.draw == "layer" else tr.unroll()
    rec = [c for c in tr.calls if c.conventions is not None]
    T, bs = built.T, built.bs
    if T is None and bs is None and rec:
        sizes = tr.sizes
        T = (sizes.get("T") or [None])[0]
        bs = (sizes.get("bs") or [None])[0]
    table = explain(layer, T=T, bs=bs)
    parts = [f"# {ex.title}", "", ex.about, "", f"![{ex.title}: unrolled diagram]({DIAGRAM}.svg)", ""]
    if ex.is_mistake:
        error = capture_error(ex)
        assert ex.wrong is not None and ex.fix is not None
        parts += ["## The mistake", "", _fence("python", "\n\n".join(
            [*(_source(s) for s in ex.shows), _source(ex.wrong)])), "",
            f"## What shapeviz says (`{error.code}`)", "", _fence("text", str(error)), "",
            "## The fix", "", _fence("python", _source(ex.fix)), ""]
    else:
        parts += ["## Code", "", _fence("python", "\n\n".join(
            [*(_source(s) for s in ex.shows), _source(ex.build)])), ""]
    if built.checks:
        parts += ["Checked while building this page:", ""] + [f"* {c}" for c in built.checks] + [""]
    size_args = "".join(f", {k}={v}" for k, v in (("T", T), ("bs", bs)) if v is not None)
    parts += [f"## Conventions: `sv.explain({layer!r}{size_args})`", "", _fence("text", table), "",
              f"## Trace: `{_call_text(built)}`", "", _fence("text", tr.table()), "",
              f"Diagram: [{DIAGRAM}.svg]({DIAGRAM}.svg), [{DIAGRAM}.png]({DIAGRAM}.png), "
              f"DOT source [{DIAGRAM}.dot]({DIAGRAM}.dot). Rebuild: `shapeviz gallery`.", ""]
    return {"README.md": "\n".join(parts), f"{DIAGRAM}.dot": diagram.source}


def index_text(examples: Iterable[Example] | None = None) -> str:
    """``gallery/README.md``: the index with a thumbnail per page.

    >>> index_text().splitlines()[0]
    '# shapeviz gallery'
    """
    items = list(EXAMPLES.values() if examples is None else examples)
    lines = ["# shapeviz gallery", "",
             "Every page shows the code, its unrolled diagram, the `sv.explain` table of its recurrent "
             "layer and the trace of one forward pass. The first pages are the systems of the notes "
             "this project grew from, written afresh; then LSTM and GRU; then three common mistakes "
             "with the real `ShapeError` shapeviz raises and the fix.", "",
             "Built by `shapeviz/gallery.py`; rebuild with `shapeviz gallery` (a test fails when these "
             "files are stale).", ""]
    sections = [("The seeds' systems", [e for e in items if not e.is_mistake and e.name in _SEEDS]),
                ("LSTM and GRU", [e for e in items if not e.is_mistake and e.name not in _SEEDS]),
                ("Common mistakes", [e for e in items if e.is_mistake])]
    for head, group in sections:
        if not group:
            continue
        lines += [f"## {head}", "", "| | | |", "|---|---|---|"]
        cells = [f'[<img src="{e.name}/{DIAGRAM}.png" width="260" alt="{e.title}"><br>{e.title}]({e.name}/README.md)'
                 for e in group]
        for i in range(0, len(cells), 3):
            row = cells[i:i + 3] + [""] * (3 - len(cells[i:i + 3]))
            lines.append("| " + " | ".join(row) + " |")
        lines.append("")
    return "\n".join(lines)


_SEEDS = frozenset({"scratch_char_rnn", "embed_rnn", "batch_first_loop", "bidirectional_loop",
                    "rnncell_dataset", "rnn_3_layers", "hello_rnncell", "hello_rnn", "hello_embedding"})


def build(outdir: str | Path = "gallery", *, images: bool = True, names: Iterable[str] | None = None,
          progress: Callable[[str], None] | None = None) -> list[Path]:
    """Write the gallery into ``outdir``; returns the files written.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     [p.name for p in build(d, images=False, names=["gru"])]
    ['README.md', 'unrolled.dot', 'README.md']

    ``images=False`` writes only the text files (README.md pages and DOT) and needs no dot program;
    with images, each page also gets ``unrolled.svg`` and ``unrolled.png``.
    """
    out = Path(outdir)
    wanted = list(EXAMPLES) if names is None else list(names)
    unknown = [n for n in wanted if n not in EXAMPLES]
    if unknown:
        from shapeviz._errors import SpecError
        raise SpecError(f"unknown gallery example(s) {', '.join(unknown)}; valid: {', '.join(EXAMPLES)}")
    written: list[Path] = []
    for i, name in enumerate(wanted, 1):
        ex = EXAMPLES[name]
        page = out / name
        page.mkdir(parents=True, exist_ok=True)
        texts = render_texts(ex)
        for fname, text in texts.items():
            path = page / fname
            path.write_text(text, encoding="utf-8")
            written.append(path)
        if images:
            from shapeviz.render.backend import Diagram

            diagram = Diagram(texts[f"{DIAGRAM}.dot"], name=name)
            for fmt in ("svg", "png"):
                written.append(diagram.render(page / f"{DIAGRAM}.{fmt}"))
        if progress is not None:
            progress(f"[{i}/{len(wanted)}] {name}: {ex.title}")
    index = out / "README.md"
    index.write_text(index_text(EXAMPLES[n] for n in wanted), encoding="utf-8")
    written.append(index)
    return written
