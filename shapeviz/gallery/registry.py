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
    AttnSeq2Seq,
    BatchFirstLoopRNN,
    BeamSearchDecoder,
    BidirectionalLoopRNN,
    Captioner,
    CellOverDataset,
    CharRNNModel,
    CharRNNScratch,
    DotAttention,
    EmbedRNN,
    ForgotTranspose,
    GRUEncoder,
    HelloCell,
    HelloEmbedding,
    HelloRNN,
    PackedLSTM,
    Seq2SeqGRU,
    SkipGRU,
    StackedCells,
    Vocab,
    assert_close,
    fixed_seed,
    hello_data,
    predict_ch8,
    rnn_step_loop,
    seeded,
)

__all__ = ["DATA_FLOW", "EXAMPLES", "SEED_SYSTEMS", "Built", "Example"]

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
def against_nn_rnn(model: nn.Module, x: torch.Tensor) -> list[str]:
    """Run a hand-written loop and ``model.ref`` (the nn.RNN whose weights it uses) on ``x``; say they agree.

    >>> x = torch.randn(3, 5, 4, generator=seeded(1))                         # (bs=3, T=5, emb=4)
    >>> against_nn_rnn(BatchFirstLoopRNN(emb=4, hidden=6), x)[0]              # output (bs, T, h)
    "output and nn.RNN's output are equal within 1e-6 (3, 5, 6)"
    """
    with torch.no_grad():
        out, h_n = model(x)  # the loop
        ref_out, ref_h = model.ref(x)  # nn.RNN(batch_first=True), same weights
    return [assert_close(out, ref_out, "output and nn.RNN's output"),
            assert_close(h_n, ref_h, "h_n and nn.RNN's h_n")]


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
                 draw="trace", T=5, bs=2, checks=checks, ops=True)


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
    model = BatchFirstLoopRNN(emb=4, hidden=6)
    x = torch.randn(3, 5, 4, generator=seeded(1))  # (bs=3, T=5, emb=4)
    checks = against_nn_rnn(model, x)
    return Built(model, (x,), "bs T emb", layer=model.ref, draw="layer", T=5, bs=3, checks=checks, ops=True)


@_example("bidirectional_loop", "Hand-written bidirectional RNN loop",
          """The bidirectional version: the same loop runs over x and over x.flip(1) with the
          *_reverse weights; the backward outputs are flipped back and concatenated on the last
          dim to (bs, T, 2h), and h_n stacks the two final states to (D=2, bs, h). Checked equal
          to nn.RNN(batch_first=True, bidirectional=True).""",
          shows=(rnn_step_loop, BidirectionalLoopRNN, against_nn_rnn))
def bidirectional_loop() -> Built:
    model = BidirectionalLoopRNN(emb=4, hidden=6)
    x = torch.randn(3, 5, 4, generator=seeded(1))  # (bs=3, T=5, emb=4)
    checks = against_nn_rnn(model, x)
    return Built(model, (x,), "bs T emb", layer=model.ref, draw="layer", T=5, bs=3, checks=checks, ops=True)


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
          the score for the next letter. Seen from outside, the model's stacked scores only match
          its input's shape, so the trace marks their names as guesses (T?, bs?, emb?): with
          input 4 and hidden 4 the sizes coincide and the size alone cannot tell emb from h.""",
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
          data (sum(lengths)=10, emb) and batch_sizes (T,) = [3, 3, 2, 1, 1], never the padding.
          The diagram is drawn packed: step t runs only the first batch_sizes[t] sequences (its
          rows data[a:b] and state (bs=batch_sizes[t], h)), and each sequence's h_n leaves at its
          own last step (t=1, 2 and 4). pad_packed_sequence restores (T, bs, h), zeros after
          each sequence's end, so output[-1] is not h_n for the shorter ones.""",
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


# ====================================================================== decoders and real data flow
@_example("seq2seq_greedy", "seq2seq: GRU encoder -> decoder, greedy decoding",
          """The encoder runs once over the source (T_src=7, bs=3); its h_n (1, bs, h) becomes the
          decoder's h_0 (the grey edge). The decoder is then called once per output token, each call
          one step (T=1), so the diagram unrolls it over its 5 calls. In greedy decoding each call's
          input is the embedding of the previous call's argmax: the trace follows that tensor through
          Linear, argmax and Embedding, and the diagram draws it as a red dashed edge from one call's
          output to the next call's input. Only the first input (<sos>) comes from outside.""",
          shows=(Seq2SeqGRU,))
def seq2seq_greedy() -> Built:
    model = Seq2SeqGRU(vocab=20, emb=12, hidden=16)
    src = torch.randint(0, 20, (7, 3), generator=seeded(1))  # (T_src=7, bs=3)
    return Built(model.greedy, (src, 5), layer=model.decoder, T=1, bs=3)  # a bound method: 5 steps


@_example("seq2seq_teacher_forcing", "seq2seq: the same model with teacher forcing",
          """The same encoder -> decoder, trained with teacher forcing: call t of the decoder takes
          the target token trg[t] from the data, not its own previous output. The encoder -> decoder
          edge is the same as with greedy decoding; the red fed-back edges are gone, and every input
          says it does not come from a step's output. Compare the two pictures: the shapes are equal,
          the data flow is not.""",
          shows=(Seq2SeqGRU,))
def seq2seq_teacher_forcing() -> Built:
    model = Seq2SeqGRU(vocab=20, emb=12, hidden=16)
    src = torch.randint(0, 20, (7, 3), generator=seeded(1))  # (T_src=7, bs=3)
    trg = torch.randint(0, 20, (5, 3), generator=seeded(2))  # (T_trg=5, bs=3)
    return Built(model, (src, trg), layer=model.decoder, T=1, bs=3)


@_example("seq2seq_attention", "seq2seq with attention: the decoder looks at every encoder output",
          """At every decoder call, dot-product attention scores the decoder's state (bs, h) against
          the encoder's outputs (T_src, bs, h): the weights are (bs, T_src) - one distribution over
          the 7 source positions per sequence, the DotAttention rows of the trace - and the context
          (bs, h) is concatenated to the embedded token, so the decoder's input is (1, bs, emb + h).
          The decoder's input header lists what its input was computed from: the encoder's h_n (call
          0, through the attention query) and the encoder's output (every call); the red edges are
          the greedy feedback.""",
          shows=(DotAttention, Seq2SeqGRU, AttnSeq2Seq))
def seq2seq_attention() -> Built:
    model = AttnSeq2Seq(vocab=20, emb=12, hidden=16)
    src = torch.randint(0, 20, (7, 3), generator=seeded(1))  # (T_src=7, bs=3)
    return Built(model.greedy, (src, 5), layer=model.decoder, T=1, bs=3)


@_example("beam_search", "Beam search: k beams per sentence, batch bs*k",
          """A GRU encoder (T_src=7, bs=2) hands its h_n to a GRUCell decoder run with beam search: each
          sentence's state is repeated k=3 times, so the decoder's batch is bs*k = 6 (the cell's own bs).
          After each call topk picks the k best of the k*vocab continuations; integer division of their
          indices says which beam each extends, index_select reorders the beams' states, and the
          remainder is the word fed back. The trace follows the data through topk, //, % and
          index_select, so every call after the first is drawn fed back with a token (red dashed): the
          loop's 5 calls are decoding steps, not T.""",
          shows=(BeamSearchDecoder,))
def beam_search() -> Built:
    model = BeamSearchDecoder(vocab=13, emb=4, hidden=8, k=3, steps=5)
    src = torch.randint(0, 13, (7, 2), generator=seeded(1))  # (T_src=7, bs=2) token ids
    return Built(model, (src,), "T bs", layer=model.cell, T=5, bs=6)


@_example("captioning_sample", "Image captioning: sample() one word per call",
          """A captioning model's sample(): the image features (bs, feat) are projected to the first
          input (bs, 1, emb) of a batch_first LSTM; states starts as None (zeros). Each call runs
          one step; its argmax word is embedded and fed back as the next call's input (red dashed),
          and (h, c) flows from call to call. The method is traced as a bound method:
          sv.trace(model.sample, features) hooks the modules of its self.""",
          shows=(Captioner,))
def captioning_sample() -> Built:
    model = Captioner(feat=32, emb=12, hidden=16, vocab=20)
    features = torch.randn(3, 32, generator=seeded(1))  # (bs=3, feat=32) from an image encoder
    return Built(model.sample, (features, 6), layer=model.lstm, T=1, bs=3)


@_example("stacked_cells", "Two stacked LSTMCells over a float series",
          """The time-series example: a float series (bs, T) is split into T columns (bs, 1), and two
          LSTMCells run in one Python loop: lstm1 reads the value, lstm2 reads lstm1's h. The diagram
          draws each cell unrolled over its 8 calls (the middle ones collapsed) and an edge per step
          from lstm1's h_1 up into lstm2's input: the data flow the trace recorded, not a guess from
          equal sizes.""",
          shows=(StackedCells,))
def stacked_cells() -> Built:
    model = StackedCells(hidden=12)
    series = torch.randn(3, 8, generator=seeded(1))  # (bs=3, T=8) floats, no emb dim
    return Built(model, (series,), "bs T", layer=model.lstm1, T=8, bs=3)


@_example("skip_rnn", "Skip RNN (LSTNet): a GRU over every skip-th step, batch bs*skip",
          """Two GRUs read one series (bs=2, T=12, c=4). gru reads every step. gru_skip reads every
          skip-th step: view and permute turn (bs, T, c) into (T/skip=4, bs*skip=6, c), so that layer's
          own T is 4 and its own bs is 6 - each phase of the skip is a sequence of its own. Its h_n
          (1, bs*skip, h) is split back by view(bs, skip*h), which keeps the memory order: the skip phases
          side by side. The diagram names each layer's sizes from that layer's input and says where
          they differ.""",
          shows=(SkipGRU,))
def skip_rnn() -> Built:
    model = SkipGRU(c=4, hidden=6, skip=3)
    x = torch.randn(2, 12, 4, generator=seeded(1))  # (bs=2, T=12, c=4)
    return Built(model, (x,), "bs T emb", layer=model.gru_skip, T=4, bs=6)


@_example("seeds_predict", "The seeds' predict: warm-up, then one character at a time",
          """The seeds' note 004 predict_ch8 with the concise char-RNN: a state (1, bs=1, h) runs over
          the prefix 'time ' (warm-up: 4 calls, the outputs are thrown away as _), then 6 calls each
          predict one character, whose argmax becomes the next input. Every call is one step (T=1),
          so the RNN is unrolled over its 10 calls; the two loops call it from two lines, which the
          diagram tells apart as phases A and B (B shaded). The argmax goes through int() and back
          into torch.tensor, so the trace cannot see that feedback as a tensor: the diagram says
          so instead of drawing it.""",
          shows=(Vocab, CharRNNModel, predict_ch8))
def seeds_predict() -> Built:
    vocab = Vocab("time traveller")
    net = CharRNNModel(vocab=len(vocab), hidden=32)
    return Built(predict_ch8, ("time ", 6, net, vocab), layer=net.rnn, T=1, bs=1)


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


def scrambled_view() -> None:
    """The wrong call: e.view(T, bs, -1) relabels an Embedding's (bs, T, emb) output instead of moving it."""
    emb, rnn = nn.Embedding(28, 8), nn.RNN(8, 16)
    tokens = sv.name(torch.randint(0, 28, (4, 7), generator=seeded(1)), "bs T")  # (bs=4, T=7)
    with sv.checking(ops=True):
        e = emb(tokens)  # (bs, T, emb)
        rnn(e.view(7, 4, -1))  # (T, bs, emb)? no: the same memory read in another shape


def scrambled_view_fixed() -> None:
    """The fix: e.transpose(0, 1) moves the data, (bs, T, emb) -> (T, bs, emb)."""
    emb, rnn = nn.Embedding(28, 8), nn.RNN(8, 16)
    tokens = sv.name(torch.randint(0, 28, (4, 7), generator=seeded(1)), "bs T")  # (bs=4, T=7)
    with sv.checking(ops=True):
        e = emb(tokens)  # (bs, T, emb)
        rnn(e.transpose(0, 1))  # (T, bs, emb)


@_example("mistake_scrambled_view", "Common mistake: view(T, bs, -1) instead of transpose",
          """view and reshape keep the data in memory order and only change the shape: on a
          (bs, T, emb) tensor, view(T, bs, -1) gives the right shape and scrambled rows, and the
          model trains on them without an error. With ops=True shapeviz follows the named dims
          through the ops and raises scrambled_view with the transpose that was meant.""",
          shows=(EmbedRNN,), wrong=scrambled_view, fix=scrambled_view_fixed)
def mistake_scrambled_view() -> Built:
    model = EmbedRNN(vocab=28, emb=20, hidden=32)
    tokens = torch.randint(0, 28, (2, 5), generator=seeded(1))  # (bs=2, T=5)
    return Built(model, (tokens,), "bs T", layer=model.rnn, sizes={"vocab": 28}, T=5, bs=2, ops=True)


def flatten_order() -> None:
    """The wrong loss: logits rows are T*bs (torch.cat of the steps), Y.reshape(-1) flattens bs*T."""
    import torch.nn.functional as F

    model = CharRNNScratch(vocab=28, hidden=32)
    X = torch.randint(0, 28, (2, 5), generator=seeded(1))  # (bs=2, T=5)
    Y = sv.name(torch.randint(0, 28, (2, 5), generator=seeded(2)), "bs T")  # the targets
    with sv.checking(inputs="bs T", ops=True):
        y_hat, _ = model(X)  # (T*bs, vocab)
        F.cross_entropy(y_hat, Y.reshape(-1))  # (bs*T,): every row scored against another step's target


def flatten_order_fixed() -> None:
    """The fix, as the seeds' d2l code writes it: Y.T.reshape(-1) flattens the targets T*bs too."""
    import torch.nn.functional as F

    model = CharRNNScratch(vocab=28, hidden=32)
    X = torch.randint(0, 28, (2, 5), generator=seeded(1))  # (bs=2, T=5)
    Y = sv.name(torch.randint(0, 28, (2, 5), generator=seeded(2)), "bs T")  # the targets
    with sv.checking(inputs="bs T", ops=True):
        y_hat, _ = model(X)  # (T*bs, vocab)
        F.cross_entropy(y_hat, Y.T.reshape(-1))  # (T*bs,)


@_example("mistake_flatten_order", "Common mistake: logits T*bs, targets bs*T",
          """A loop that concatenates its steps gives logits (T*bs, vocab), time-major; targets
          (bs, T) flattened with Y.reshape(-1) are batch-major. Shapes agree, the loss is
          computed, and every row is scored against another position's target. With ops=True
          shapeviz knows both orders and raises flatten_order with Y.T.reshape(-1).""",
          shows=(CharRNNScratch,), wrong=flatten_order, fix=flatten_order_fixed)
def mistake_flatten_order() -> Built:
    model = CharRNNScratch(vocab=28, hidden=32)
    X = torch.randint(0, 28, (2, 5), generator=seeded(1))  # (bs=2, T=5)
    return Built(model, (X,), "bs T", layer=nn.RNNCell(28, 32), sizes={"vocab": 28, "h": 32},
                 draw="layer", T=5, bs=2, ops=True)  # the loop is an RNNCell(vocab, h) applied T times


SEED_SYSTEMS: tuple[str, ...] = ("scratch_char_rnn", "embed_rnn", "batch_first_loop", "bidirectional_loop",
                                 "rnncell_dataset", "rnn_3_layers", "hello_rnncell", "hello_rnn", "hello_embedding")
"""The pages of the seeds' systems, in page order: the gallery's first section, and what the demo runs."""

DATA_FLOW: tuple[str, ...] = ("seq2seq_greedy", "seq2seq_teacher_forcing", "seq2seq_attention", "beam_search",
                              "captioning_sample", "stacked_cells", "skip_rnn", "seeds_predict")
"""The pages whose diagrams follow data between calls: decoders, stacked cells, the seeds' predict."""

from shapeviz.gallery import own_layers  # noqa: E402,F401  (registers the "Your own recurrent layers" pages)
