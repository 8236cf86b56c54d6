"""shapeviz.annotations.modules drop-ins: torch's results and state dicts, picklable, and always checked."""

from __future__ import annotations

import io
import pickle

import pytest
import torch
import torch.nn as nn

import shapeviz as sv
from shapeviz import nn as svnn

LAYERS = [("RNN", dict(num_layers=2, bidirectional=True)), ("GRU", dict(batch_first=True)),
          ("LSTM", dict(num_layers=2, proj_size=3))]
CELLS = ["RNNCell", "GRUCell", "LSTMCell"]


def _same(a: object, b: object) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    return isinstance(a, tuple) and isinstance(b, tuple) and all(_same(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize(("name", "kw"), LAYERS)
def test_layers_match_torch_and_share_state_dicts(name: str, kw: dict) -> None:
    ours, theirs = getattr(svnn, name)(5, 7, **kw), getattr(nn, name)(5, 7, **kw)
    assert isinstance(ours, getattr(nn, name))
    theirs.load_state_dict(ours.state_dict())  # ours -> torch
    x = torch.randn(4, 2, 5)
    assert _same(ours(x), theirs(x))
    ours.load_state_dict(nn.Module.state_dict(getattr(nn, name)(5, 7, **kw)))  # torch -> ours
    assert ours.state_dict().keys() == theirs.state_dict().keys()


@pytest.mark.parametrize("name", CELLS)
def test_cells_match_torch(name: str) -> None:
    ours, theirs = getattr(svnn, name)(5, 7), getattr(nn, name)(5, 7)
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(3, 5)
    assert _same(ours(x), theirs(x))
    assert _same(ours(x[0]), theirs(x[0]))  # unbatched (emb,)


@pytest.mark.parametrize("name", [n for n, _ in LAYERS] + CELLS)
def test_picklable_and_savable(name: str) -> None:
    m = getattr(svnn, name)(5, 7)
    clone = pickle.loads(pickle.dumps(m))
    assert type(clone) is type(m) and _same(tuple(clone.state_dict().values()), tuple(m.state_dict().values()))
    buf = io.BytesIO()
    torch.save(m, buf)
    buf.seek(0)
    assert type(torch.load(buf, weights_only=False)) is type(m)


def test_layers_raise_shape_errors_with_codes() -> None:
    lstm = svnn.LSTM(10, 20, num_layers=2)
    with pytest.raises(sv.ShapeError, match=r"\[input_size\]") as info:
        lstm(torch.randn(5, 3, 8))
    assert info.value.argument == "input"
    with pytest.raises(sv.ShapeError, match=r"\[state_type\]"):
        lstm(torch.randn(5, 3, 10), torch.zeros(2, 3, 20))  # an LSTM needs (h_0, c_0)
    with pytest.raises(sv.ShapeError, match=r"\[hidden_ndim\]"):
        svnn.GRU(10, 20)(torch.randn(5, 3, 10), torch.zeros(3, 20))


def test_cells_raise_shape_errors() -> None:
    with pytest.raises(sv.ShapeError, match=r"\[input_ndim\]"):
        svnn.RNNCell(10, 20)(torch.randn(5, 3, 10))  # a whole sequence given to a cell
    with pytest.raises(sv.ShapeError, match=r"\[batch_mismatch\]"):
        svnn.LSTMCell(10, 20)(torch.randn(3, 10), (torch.zeros(4, 20), torch.zeros(4, 20)))


def test_packed_sequences_pass_through() -> None:
    gru = svnn.GRU(4, 6)
    packed = nn.utils.rnn.pack_padded_sequence(torch.randn(5, 3, 4), [5, 3, 2])
    out, h_n = gru(packed)
    assert isinstance(out, nn.utils.rnn.PackedSequence) and h_n.shape == (1, 3, 6)
