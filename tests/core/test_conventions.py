"""The Conventions model against the real torch modules: predicted shapes == actual shapes."""

from __future__ import annotations

import itertools
import pickle

import pytest
import torch
import torch.nn as nn
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.nn.utils.rnn import pack_padded_sequence

import shapeviz as sv
from shapeviz.core.model import Conventions

LAYER_CONFIGS = [
    (cls, layers, bi, bf, proj)
    for cls in (nn.RNN, nn.GRU, nn.LSTM)
    for layers, bi, bf in itertools.product((1, 2, 3), (False, True), (False, True))
    for proj in ((0, 3) if cls is nn.LSTM else (0,))
]


def _build(cls, emb, h, layers, bi, bf, proj):
    kw = dict(num_layers=layers, bidirectional=bi, batch_first=bf)
    if proj:
        kw["proj_size"] = proj
    return cls(emb, h, **kw)


def _zeros_state(c: Conventions, shapes: dict, dtype=torch.float32):
    hs = [torch.randn(*shapes[n]) for n in c.state_names]
    return tuple(hs) if c.is_lstm else hs[0]


def _results(c: Conventions, out):
    if c.cell:
        return dict(zip(c.result_names, out if isinstance(out, tuple) else (out,)))
    output, state = out
    states = state if isinstance(state, tuple) else (state,)
    return dict(zip(c.result_names, (output, *states)))


@pytest.mark.parametrize(("cls", "layers", "bi", "bf", "proj"), LAYER_CONFIGS)
def test_layer_shapes_match_torch(cls, layers, bi, bf, proj):
    m = _build(cls, 4, 6, layers, bi, bf, proj)
    c = sv.conventions(m)
    T, bs = 5, 3
    for batched in (True, False):
        shapes = c.shapes(T, bs, batched=batched)
        x = torch.randn(*shapes["input"])
        for hx in (None, _zeros_state(c, shapes)):
            got = _results(c, m(x, hx))
            for name in c.result_names:
                assert tuple(got[name].shape) == shapes[name], (name, batched)
            if hx is not None:  # torch took the predicted state; one more layers*D row it refuses
                first = shapes[c.state_names[0]]
                bad = torch.zeros(first[0] + 1, *first[1:])
                with pytest.raises(RuntimeError):
                    m(x, (bad, hx[1]) if c.is_lstm else bad)


@pytest.mark.parametrize("cls", [nn.RNNCell, nn.GRUCell, nn.LSTMCell])
@pytest.mark.parametrize("batched", [True, False])
def test_cell_shapes_match_torch(cls, batched):
    m = cls(4, 6)
    c = sv.conventions(m)
    shapes = c.shapes(bs=3, batched=batched)
    x = torch.randn(*shapes["input"])
    for hx in (None, _zeros_state(c, shapes)):
        got = _results(c, m(x, hx))
        for name in c.result_names:
            assert tuple(got[name].shape) == shapes[name]


@pytest.mark.parametrize(("cls", "layers", "bi", "bf", "proj"), LAYER_CONFIGS[::3])
def test_packed_shapes_match_torch(cls, layers, bi, bf, proj):
    m = _build(cls, 4, 6, layers, bi, bf, proj)
    c = sv.conventions(m)
    lengths = [5, 3, 2]
    shapes = c.shapes(lengths=lengths)
    padded = torch.randn(3, 5, 4) if bf else torch.randn(5, 3, 4)
    packed = pack_padded_sequence(padded, lengths, batch_first=bf)
    assert tuple(packed.data.shape) == shapes["input"]
    got = _results(c, m(packed, _zeros_state(c, shapes)))
    assert tuple(got["output"].data.shape) == shapes["output"]
    for name in c.result_names[1:]:
        assert tuple(got[name].shape) == shapes[name]


@settings(max_examples=60, deadline=None)
@given(
    fam=st.sampled_from(["RNN", "GRU", "LSTM"]),
    cell=st.booleans(),
    emb=st.integers(1, 7),
    h=st.integers(2, 7),
    layers=st.integers(1, 3),
    bi=st.booleans(),
    bf=st.booleans(),
    T=st.integers(1, 6),
    bs=st.integers(0, 5),
    data=st.data(),
)
def test_random_sizes_match_torch(fam, cell, emb, h, layers, bi, bf, T, bs, data):
    if cell:
        m = getattr(nn, fam + "Cell")(emb, h)
    else:
        proj = data.draw(st.integers(0, h - 1)) if fam == "LSTM" else 0
        m = _build(getattr(nn, fam), emb, h, layers, bi, bf, proj)
    c = sv.conventions(m)
    shapes = c.shapes(T, bs)
    got = _results(c, m(torch.randn(*shapes["input"]), _zeros_state(c, shapes)))
    for name in c.result_names:
        assert tuple(got[name].shape) == shapes[name]


def test_symbolic_names():
    c = sv.conventions(nn.LSTM(10, 20, num_layers=2, bidirectional=True, proj_size=5))
    assert c.symbolic == {"input": "T bs emb", "h_0": "layers*D bs proj", "c_0": "layers*D bs h",
                          "output": "T bs D*proj", "h_n": "layers*D bs proj", "c_n": "layers*D bs h"}
    assert sv.conventions(nn.GRU(3, 4, batch_first=True)).symbolic["output"] == "bs T D*h"
    assert sv.conventions(nn.RNNCell(3, 4)).symbolic == {"input": "bs emb", "h_0": "bs h", "h_1": "bs h"}
    torch_style = c.symbolic_style("torch")
    assert torch_style["h_0"] == "D*num_layers N H_out"
    assert torch_style["c_0"] == "D*num_layers N H_cell"
    assert torch_style["input"] == "L N H_in"
    with pytest.raises(sv.SpecError, match="'named', 'torch'"):
        c.symbolic_style("numpy")
    with pytest.warns(DeprecationWarning, match="style='named'"):
        assert c.symbolic_style("seeds") == c.symbolic_style("named") == c.symbolic
    with pytest.warns(DeprecationWarning):
        assert str(sv.explain(nn.GRU(4, 6), style="seeds")) == str(sv.explain(nn.GRU(4, 6)))


def test_subclasses_are_recognised_and_cache_follows_config():
    class MyLSTM(nn.LSTM):
        pass

    m = MyLSTM(4, 5, num_layers=2)
    c = sv.conventions(m)
    assert c.family == "LSTM" and c.label.startswith("MyLSTM(")
    m.batch_first = True  # conventions follow a changed configuration
    assert sv.conventions(m).symbolic["input"] == "bs T emb"
    with pytest.raises(sv.SpecError, match=r"nn\.RNN, nn\.LSTM"):
        sv.conventions(nn.Linear(3, 4))
    assert pickle.loads(pickle.dumps(c)) == c


def test_bidirectional_notes_hold_in_torch():
    """The explain notes: output[-1, :, :h] == h_n[-2], output[0, :, h:] == h_n[-1]."""
    for bf in (False, True):
        m = nn.GRU(4, 6, num_layers=2, bidirectional=True, batch_first=bf)
        x = torch.randn(3, 5, 4) if bf else torch.randn(5, 3, 4)
        out, h_n = m(x)
        last, first = (out[:, -1], out[:, 0]) if bf else (out[-1], out[0])
        torch.testing.assert_close(last[:, :6], h_n[-2])
        torch.testing.assert_close(first[:, 6:], h_n[-1])
        text = sv.explain(m)
        t_last, t_first = ("[:, -1, :6]", "[:, 0, 6:]") if bf else ("[-1, :, :6]", "[0, :, 6:]")
        assert f"output{t_last} equals h_n[-2]" in text
        assert f"output{t_first} equals h_n[-1]" in text
    m = nn.LSTM(4, 6, num_layers=2)
    out, (h_n, _) = m(torch.randn(5, 3, 4))
    torch.testing.assert_close(out[-1], h_n[-1])
    assert "output[-1, :] equals h_n[-1]" in sv.explain(m)
    # h_n.view(layers, D, bs, h) splits layers and directions
    m = nn.RNN(4, 6, num_layers=3, bidirectional=True)
    out, h_n = m(torch.randn(5, 3, 4))
    torch.testing.assert_close(h_n.view(3, 2, -1, 6)[-1, 0], out[-1, :, :6])  # the note's code, as it reads
    assert "h_n.view(3, 2, -1, 6)  # (layers=3, D=2, bs, h)" in sv.explain(m)


def test_explain_table_and_notes():
    text = sv.explain(nn.LSTM(10, 20, num_layers=2, bidirectional=True, proj_size=5), T=5, bs=3)
    assert "(layers*D=4, bs=3, proj=5)" in text
    assert "(layers*D=4, bs=3, h=20)" in text
    assert "(T=5, bs=3, D*proj=10)" in text
    assert "proj_size=5 changes h" in text
    assert "applies to input and output only" in text
    torch_text = sv.explain(nn.LSTM(10, 20, proj_size=5), T=5, bs=3, style="torch")
    assert "(L=5, N=3, H_in=10)" in torch_text and "H_cell=20" in torch_text
    cell_text = sv.explain(nn.LSTMCell(8, 16), bs=4)
    assert "ONE time step" in cell_text and "(bs=4, emb=8)" in cell_text
    with pytest.raises(sv.SpecError):
        sv.explain(nn.GRU(3, 4), T=-1)


def test_explain_takes_the_sizes_torch_takes() -> None:
    """torch refuses T=0 ("sequence length ... larger than 0"), not bs=0: so does explain (it printed T=0)."""
    gru = nn.GRU(3, 4)
    with pytest.raises(RuntimeError, match="larger than 0"):
        gru(torch.zeros(0, 2, 3))
    with pytest.raises(sv.SpecError, match="T must be a positive int"):
        sv.explain(gru, T=0)
    assert gru(torch.zeros(2, 0, 3))[0].shape == (2, 0, 4)
    assert "(T=2, bs=0, emb=3)" in sv.explain(gru, T=2, bs=0)
