"""The from-scratch layers equal PyTorch's: outputs and states within 1e-5 (float32)."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn as nn

import shapeviz as sv
from shapeviz import nn as svnn
from shapeviz.annotations.scratch_models import (
    ScratchGRU,
    ScratchLM,
    ScratchLSTM,
    ScratchRNN,
    gru_cell,
    lstm_cell,
    rnn_cell,
)

T, BS, EMB, H, PROJ = 4, 3, 5, 6, 2


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: intra-op threads only contend (seconds instead of milliseconds on 2 busy cores)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
TOL = 1e-5


def _max_diff(a: object, b: object) -> float:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.shape == b.shape, (getattr(a, "shape", a), getattr(b, "shape", b))
        return float((a - b).abs().max().detach())
    assert isinstance(a, tuple) and isinstance(b, tuple) and len(a) == len(b)
    return max(_max_diff(x, y) for x, y in zip(a, b))


def _inputs(batch_first: bool, layers: int, D: int, h_out: int, lstm: bool, seed: int):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((BS, T, EMB) if batch_first else (T, BS, EMB), generator=g)
    h0 = torch.randn(layers * D, BS, h_out, generator=g)
    if lstm:
        return x, (h0, torch.randn(layers * D, BS, H, generator=g))
    return x, h0


LAYER_GRID = list(itertools.product([1, 2, 3], [False, True], [False, True]))


@pytest.mark.parametrize("proj", [0, PROJ])
@pytest.mark.parametrize(("layers", "bidirectional", "batch_first"), LAYER_GRID)
def test_lstm_equals_torch(layers: int, bidirectional: bool, batch_first: bool, proj: int) -> None:
    torch.manual_seed(layers * 10 + bidirectional * 2 + batch_first + proj)
    ref = nn.LSTM(EMB, H, num_layers=layers, bidirectional=bidirectional, batch_first=batch_first, proj_size=proj)
    scratch = ScratchLSTM.from_torch(ref)
    x, hx = _inputs(batch_first, layers, 2 if bidirectional else 1, proj or H, True, seed=layers)
    assert _max_diff(scratch(x, hx), ref(x, hx)) < TOL
    assert _max_diff(scratch(x), ref(x)) < TOL  # zero initial state


@pytest.mark.parametrize("family", ["GRU", "RNN_TANH", "RNN_RELU"])
@pytest.mark.parametrize(("layers", "bidirectional", "batch_first"), LAYER_GRID)
def test_gru_and_rnn_equal_torch(family: str, layers: int, bidirectional: bool, batch_first: bool) -> None:
    torch.manual_seed(layers * 10 + bidirectional * 2 + batch_first)
    kw = dict(num_layers=layers, bidirectional=bidirectional, batch_first=batch_first)
    if family == "GRU":
        ref: nn.Module = nn.GRU(EMB, H, **kw)
        scratch: nn.Module = ScratchGRU.from_torch(ref)
    else:
        ref = nn.RNN(EMB, H, nonlinearity=family[4:].lower(), **kw)
        scratch = ScratchRNN.from_torch(ref)
    x, h0 = _inputs(batch_first, layers, 2 if bidirectional else 1, H, False, seed=layers)
    assert _max_diff(scratch(x, h0), ref(x, h0)) < TOL
    assert _max_diff(scratch(x), ref(x)) < TOL


def test_no_bias_and_drop_in_sources() -> None:
    ref = svnn.GRU(EMB, H, bias=False, num_layers=2)  # a shapeviz drop-in works as the source too
    scratch = ScratchGRU.from_torch(ref)
    assert not any("bias" in n for n, _ in scratch.named_parameters())
    x = torch.randn(T, BS, EMB)
    assert _max_diff(scratch(x), ref(x)) < TOL
    assert scratch.state_dict().keys() == ref.state_dict().keys()


def test_cells_equal_torch() -> None:
    torch.manual_seed(0)
    x, h, c = torch.randn(BS, EMB), torch.randn(BS, H), torch.randn(BS, H)
    for nonlinearity in ("tanh", "relu"):
        cell = nn.RNNCell(EMB, H, nonlinearity=nonlinearity)
        assert _max_diff(rnn_cell(x, h, *cell.parameters(), nonlinearity=nonlinearity), cell(x, h)) < TOL
    gcell = nn.GRUCell(EMB, H)
    assert _max_diff(gru_cell(x, h, *gcell.parameters()), gcell(x, h)) < TOL
    lcell = nn.LSTMCell(EMB, H)
    assert _max_diff(lstm_cell(x, h, c, *lcell.parameters()), lcell(x, (h, c))) < TOL


def test_cell_step_is_checked() -> None:
    cell = nn.RNNCell(EMB, H)
    with pytest.raises(sv.ShapeError, match=r"argument `h`[\s\S]*dim 0 \(bs\) is 4, but bs=3"):
        rnn_cell(torch.randn(3, EMB), torch.randn(4, H), *cell.parameters())


class D2LModel(nn.Module):
    """d2l's RNNModel: (bs, T) tokens -> one-hot/embedding (T, bs, ·) -> rnn -> (T*bs, vocab)."""

    def __init__(self, rnn: nn.Module, vocab: int, embedding: nn.Embedding | None = None) -> None:
        super().__init__()
        self.rnn, self.vocab, self.embedding = rnn, vocab, embedding
        D = 2 if rnn.bidirectional else 1
        self.linear = nn.Linear(D * (getattr(rnn, "proj_size", 0) or rnn.hidden_size), vocab)

    def forward(self, tokens: torch.Tensor, state: object = None) -> tuple[torch.Tensor, object]:
        X = tokens.T
        X = self.embedding(X) if self.embedding is not None else nn.functional.one_hot(X, self.vocab).float()
        Y, state = self.rnn(X, state)
        return self.linear(Y.reshape(-1, Y.shape[-1])), state


@pytest.mark.parametrize(("kind", "embed", "bidirectional"),
                         [("RNN", False, False), ("GRU", True, False), ("LSTM", False, True), ("LSTM", True, False)])
def test_language_model_equals_d2l(kind: str, embed: bool, bidirectional: bool) -> None:
    torch.manual_seed(1)
    vocab, emb = 11, 7
    embedding = nn.Embedding(vocab, emb) if embed else None
    layer = getattr(nn, kind)(emb if embed else vocab, H, num_layers=2, bidirectional=bidirectional)
    ref = D2LModel(layer, vocab, embedding)
    lm = ScratchLM.from_torch(ref.rnn, ref.linear, ref.embedding)
    tokens = torch.randint(0, vocab, (BS, T))
    logits, state = lm(tokens)
    assert logits.shape == (T * BS, vocab)
    assert _max_diff((logits, state), ref(tokens)) < TOL
    logits2, _ = lm(tokens, state)  # carrying the state over, as in truncated BPTT
    assert _max_diff(logits2, ref(tokens, state)[0]) < TOL


def test_language_model_checks_tokens_and_logits() -> None:
    lm = ScratchLM(ScratchGRU(11, H), vocab_size=11)
    with pytest.raises(sv.ShapeError, match=r"argument `tokens`[\s\S]*not a Int dtype"):
        lm(torch.zeros(BS, T))  # float "tokens"
    with pytest.raises(sv.ShapeError, match=r"argument `state`"):
        lm(torch.zeros(BS, T, dtype=torch.long), torch.zeros(1, BS + 2, H))
    with pytest.raises(sv.SpecError, match="seq-first"):
        ScratchLM(ScratchGRU(11, H, batch_first=True), vocab_size=11)


def test_scratch_layer_checks_against_its_config() -> None:
    lstm = ScratchLSTM(EMB, H, num_layers=2, proj_size=PROJ)
    x = torch.randn(T, BS, EMB)
    bad_h = (torch.zeros(1, BS, PROJ), torch.zeros(1, BS, H))  # layers*D should be 2
    with pytest.raises(sv.ShapeError, match=r"argument `hx\[0\]`[\s\S]*module's config"):
        lstm(x, bad_h)
    with pytest.raises(sv.ShapeError, match=r"\[batch_first_swap\][\s\S]*argument `x`"):
        lstm(torch.randn(BS, T, EMB), (torch.zeros(2, BS, PROJ), torch.zeros(2, BS, H)))


def test_from_torch_rejects_the_wrong_family() -> None:
    with pytest.raises(sv.SpecError, match=r"takes an nn.LSTM, got GRU"):
        ScratchLSTM.from_torch(nn.GRU(3, 4))
