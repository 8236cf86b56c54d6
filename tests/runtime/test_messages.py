"""One real mistake per stable code: the code, the argument, named expected/actual shapes, the hint."""

from __future__ import annotations

import pickle

import pytest
import torch
import torch.nn as nn
from torch.nn.utils.rnn import pack_padded_sequence

import shapeviz as sv
from shapeviz._errors import CODES


def _err(module, *args, **kwargs) -> sv.ShapeError:
    with pytest.raises(sv.ShapeError) as info:
        sv.check_call(module, *args, **kwargs)
    return info.value


def test_input_size():
    e = _err(nn.LSTM(10, 20), torch.randn(5, 3, 8))
    assert (e.code, e.argument, e.actual) == ("input_size", "input", (5, 3, 8))
    assert e.expected == "(T=5, bs=3, emb=10)"
    assert "hint: x = proj(x)  # nn.Linear(8, 10)" in str(e)
    # a (bs, emb, T) conv output: the hint permutes emb last
    e = _err(nn.GRU(10, 20, batch_first=True), torch.randn(4, 10, 7))
    assert "x = x.permute(0, 2, 1)" in str(e)


def test_input_ndim_cell_given_sequence():
    e = _err(nn.RNNCell(10, 20), torch.randn(5, 3, 10))
    assert (e.code, e.argument, e.actual) == ("input_ndim", "input", (5, 3, 10))
    assert e.expected == "(bs=3, emb=10)"
    assert "a cell takes one time step" in str(e)
    assert "hint: for x_t in x:" in str(e)
    e = _err(nn.RNN(10, 20), torch.randn(5, 3, 1, 10))
    assert e.code == "input_ndim" and "x.squeeze(2)" in str(e)
    assert "expected 3 dims (T, bs, emb) (or 2 dims unbatched), received a 4-dim tensor" in str(e)


def test_batch_first_swap_from_h0_evidence():
    """PyTorch blames h_0 here ('Expected hidden size (2, 5, 20), got [2, 3, 20]'); the input is wrong."""
    rnn, x, h0 = nn.RNN(10, 20, 2), torch.randn(3, 5, 10), torch.zeros(2, 3, 20)
    with pytest.raises(RuntimeError, match="hidden size"):
        rnn(x, h0)
    e = _err(rnn, x, h0)
    assert (e.code, e.argument) == ("batch_first_swap", "input")
    assert e.expected == "(T=5, bs=3, emb=10)"
    assert "hint: x = x.transpose(0, 1)  # (bs, T, emb) -> (T, bs, emb)" in str(e)
    assert "batch_first=True" in str(e)


def test_batch_first_swap_from_declared_dims_which_torch_runs_silently():
    rnn, x = nn.GRU(10, 20), torch.randn(4, 7, 10)  # (bs=4, T=7) into a seq-first layer
    rnn(x)  # torch computes garbage without a word
    sv.check_call(rnn, x)  # no evidence: shapeviz never guesses
    with sv.dims(bs=4, T=7):
        e = _err(rnn, x)
    assert e.code == "batch_first_swap" and "declared: bs=4, T=7" in str(e)
    with sv.dims(bs=4, T=7):
        sv.check_call(rnn, x.transpose(0, 1))
    bf = nn.GRU(10, 20, batch_first=True)
    with sv.dims(bs=4, T=7):
        e = _err(bf, torch.randn(7, 4, 10))
    assert "x = x.transpose(0, 1)  # (T, bs, emb) -> (bs, T, emb)" in str(e)


def test_hidden_layers_names_missing_factor():
    lstm = nn.LSTM(10, 20, num_layers=2, bidirectional=True)
    x = torch.randn(5, 3, 10)
    e = _err(lstm, x, (torch.zeros(2, 3, 20), torch.zeros(4, 3, 20)))
    assert (e.code, e.argument, e.actual) == ("hidden_layers", "h_0", (2, 3, 20))
    assert e.expected == "(layers*D=4, bs=3, h=20)"
    assert "missing the direction factor D=2" in str(e)
    assert "hint: h0 = torch.zeros(4, 3, 20)" in str(e)
    e = _err(nn.RNN(10, 20, num_layers=3), x, torch.zeros(1, 3, 20))
    assert "h0 = h0.repeat(3, 1, 1)" in str(e)


def test_hidden_ndim_forgot_unsqueeze():
    e = _err(nn.RNN(10, 20), torch.randn(5, 3, 10), torch.zeros(3, 20))
    assert (e.code, e.argument, e.actual) == ("hidden_ndim", "h_0", (3, 20))
    assert e.expected == "(layers*D=1, bs=3, h=20)"
    assert "hint: h0 = h0.unsqueeze(0)" in str(e)
    e = _err(nn.GRUCell(10, 20), torch.randn(3, 10), torch.zeros(1, 3, 20))
    assert e.code == "hidden_ndim" and "h0 = h0.squeeze(0)" in str(e)


def test_hidden_batch_first():
    gru = nn.GRU(10, 20, num_layers=2, batch_first=True)
    e = _err(gru, torch.randn(3, 5, 10), torch.zeros(3, 2, 20))
    assert (e.code, e.argument) == ("hidden_batch_first", "h_0")
    assert "batch_first never applies to h_0/c_0" in str(e)
    assert "hint: h0 = h0.transpose(0, 1).contiguous()" in str(e)


def test_hidden_size():
    e = _err(nn.GRU(10, 20), torch.randn(5, 3, 10), torch.zeros(1, 3, 16))
    assert (e.code, e.argument, e.expected) == ("hidden_size", "h_0", "(layers*D=1, bs=3, h=20)")
    assert "hint: h0 = torch.zeros(1, 3, 20)" in str(e)


def test_proj_size():
    lstm = nn.LSTM(10, 20, proj_size=5)
    e = _err(lstm, torch.randn(5, 3, 10), (torch.zeros(1, 3, 20), torch.zeros(1, 3, 20)))
    assert (e.code, e.argument, e.expected) == ("proj_size", "h_0", "(layers*D=1, bs=3, proj=5)")
    assert "h is (…, proj=5) but c is (…, h=20)" in str(e)
    e = _err(lstm, torch.randn(5, 3, 10), (torch.zeros(1, 3, 5), torch.zeros(1, 3, 5)))
    assert (e.code, e.argument) == ("proj_size", "c_0")


def test_batch_mismatch_last_smaller_batch():
    e = _err(nn.LSTM(10, 20), torch.randn(5, 20, 10), (torch.zeros(1, 32, 20), torch.zeros(1, 32, 20)))
    assert (e.code, e.argument, e.actual) == ("batch_mismatch", "h_0", (1, 32, 20))
    assert "hint: h0 = h0[:, :20]" in str(e) and "drop_last=True" in str(e)


def test_state_type_where_torch_misleads():
    lstm, gru, x = nn.LSTM(10, 20), nn.GRU(10, 20), torch.randn(5, 3, 10)
    with pytest.raises(IndexError):  # torch indexes hx[1] of the one tensor
        lstm(x, torch.zeros(1, 3, 20))
    e = _err(lstm, x, torch.zeros(1, 3, 20))
    assert (e.code, e.argument) == ("state_type", "h_0")
    assert "hint: lstm(x, (h0, c0))" in str(e)
    with pytest.raises(AttributeError):  # torch: 'tuple' object has no attribute 'dim'
        gru(x, (torch.zeros(1, 3, 20),))
    e = _err(gru, x, (torch.zeros(1, 3, 20),))
    assert e.code == "state_type" and "gru(x, h0)" in str(e)
    e = _err(nn.LSTMCell(10, 20), torch.randn(3, 10), torch.zeros(3, 20))
    assert e.code == "state_type" and "(h, c)" in str(e)


def test_dtype_tokens_not_embedded():
    e = _err(nn.RNN(28, 64), torch.randint(0, 28, (5, 3)))
    assert (e.code, e.argument) == ("dtype", "input")
    assert "token ids must be embedded or one-hot encoded" in str(e)
    assert "F.one_hot(tokens.T, num_classes=28).float()" in str(e)
    e = _err(nn.GRU(4, 6), torch.randn(5, 3, 4, dtype=torch.float64))
    assert e.code == "dtype" and "x = x.to(torch.float32)" in str(e)


def test_device():
    e = _err(nn.GRU(4, 6), torch.randn(5, 3, 4, device="meta"))
    assert (e.code, e.argument) == ("device", "input")
    assert "x = x.to('cpu')" in str(e)


def test_unbatched_ambiguous():
    rnn = nn.RNN(10, 20)
    x = torch.randn(3, 10)  # one step of a batch (bs=3, emb) — torch reads it as (T=3, emb)
    rnn(x)
    for decl in ({"bs": 3}, {"bs": 3, "T": 7}, {"bs": 3, "T": 2}):  # declared sizes are no evidence: a sequence
        with sv.dims(**decl):  # cut to len_i (x[i, :3]) or joined (cat((ctx[i], q[i]))) may have any length
            sv.check_call(rnn, x)
    e = _err(rnn, x, torch.zeros(1, 3, 20))  # a batched h_0 is: torch refuses it beside a 2-D input
    assert (e.code, e.argument) == ("unbatched_ambiguous", "input")
    assert "hint: x = x.unsqueeze(0)" in str(e)


def test_a_bs_by_T_input_with_no_feature_dim_is_its_input_size_not_one_step() -> None:
    """A (bs, T) float input whose feature dim was forgotten: with bs and T declared it is neither one step of a
    batch (its last dim is T, not input_size: torch says input_size) nor a case for a Linear from T."""
    lstm = nn.LSTM(3, 16, batch_first=True)
    x = torch.randn(4, 20)  # (bs, T)
    with pytest.raises(RuntimeError, match="input_size"):
        lstm(x)
    with sv.dims(bs=4, T=20):
        e = _err(lstm, x)
    assert e.code == "input_size" and "(bs, T) by the declared sizes bs=4, T=20: it has no feature dim" in str(e)
    assert e.expected == "(bs=4, T=20, emb=3)" and e.hints[0].startswith("x = x.unsqueeze(-1)")
    assert not any("Linear(20" in h for h in e.hints)
    with sv.dims(bs=4, T=20):  # seq-first, one feature a step: the fix alone
        e = _err(nn.GRU(1, 5), torch.randn(20, 4))
    assert e.hints == ["x = x.unsqueeze(-1)  # (T, bs) -> (T, bs, emb=1): one feature a step"]
    with sv.dims(bs=4):  # bs alone: no evidence of (bs, T), the usual input_size hints
        e = _err(lstm, x)
    assert e.code == "input_size" and "no feature dim" not in str(e)


def test_packed():
    rnn = nn.GRU(4, 6)
    padded = torch.randn(3, 5, 4)  # (bs=3, T=5, emb) batch-first data
    wrong = pack_padded_sequence(padded, [3, 2, 2, 1, 1])  # packed as if seq-first: runs silently
    rnn(wrong)
    with sv.dims(bs=3, T=5):
        e = _err(rnn, wrong)
    assert e.code == "packed" and "batch_first=True" in str(e)
    right = pack_padded_sequence(padded, [5, 3, 2], batch_first=True)
    with sv.dims(bs=3, T=5):
        sv.check_call(rnn, right, torch.zeros(1, 3, 6))
    e = _err(rnn, right, torch.zeros(1, 2, 6))
    assert e.code == "batch_mismatch" and e.expected == "(layers*D=1, bs=3, h=6)"
    e = _err(nn.GRUCell(4, 6), right)
    assert e.code == "packed" and "a cell takes one time step" in str(e)


def test_every_code_has_a_test_here():
    import inspect
    import sys

    source = inspect.getsource(sys.modules[__name__])
    for code in CODES:
        if code != "annotation":  # @sv.check's code, tested with the decorator
            assert f'"{code}"' in source, code


def test_error_is_a_valueerror_and_pickles():
    e = _err(nn.GRU(4, 6), torch.randn(5, 3, 9))
    assert isinstance(e, ValueError)
    e2 = pickle.loads(pickle.dumps(e))
    assert (e2.code, str(e2)) == (e.code, str(e))
    with pytest.raises(ValueError, match="unknown ShapeError code"):
        sv.ShapeError(module="m", argument="a", expected="()", actual=(), code="nope")


def test_flow_codes_scrambled_view_and_flatten_order():  # ops=True (more in tests/test_flow.py)
    import torch.nn.functional as F

    e = sv.name(torch.randn(4, 7, 8), "bs T emb")
    with sv.checking(ops=True), pytest.raises(sv.ShapeError) as info:
        e.view(7, 4, -1)
    assert info.value.code == "scrambled_view" and info.value.hints[0].startswith("e.transpose(0, 1)")
    out = sv.name(torch.randn(7, 4, 28), "T bs vocab")
    Y = sv.name(torch.zeros(4, 7, dtype=torch.long), "bs T")
    with sv.checking(ops=True), pytest.raises(sv.ShapeError) as info:
        F.cross_entropy(out.reshape(-1, 28), Y.reshape(-1))  # (T*bs, vocab) vs (bs*T,)
    assert info.value.code == "flatten_order" and info.value.hints[0].startswith("Y.T.reshape(-1)")


@pytest.mark.parametrize("layer", [nn.GRUCell(4, 6), nn.GRU(4, 6)])
def test_a_batch_other_than_the_declared_bs_is_not_called_bs(layer: nn.Module) -> None:
    """A stack loop's step of 3 rows while bs=6 is declared: the message says the input's batch is 3, the
    declared bs stays 6, and the expected state prints 3 bare."""
    x = torch.randn(3, 4) if isinstance(layer, nn.GRUCell) else torch.randn(5, 3, 4)
    h = torch.zeros(6, 6) if isinstance(layer, nn.GRUCell) else torch.zeros(1, 6, 6)
    with sv.dims(bs=6), pytest.raises(sv.ShapeError) as err:
        sv.check_call(layer, x, h)
    text = str(err.value)
    assert err.value.code == "batch_mismatch" and "but the input's batch is 3" in text and "bs=3" not in text, text


@pytest.mark.parametrize("cell", [False, True])
def test_a_nested_tensor_input_is_a_clear_error_not_a_crash(cell: bool) -> None:
    """A nested tensor has no shape to read (torch: "doesn't support sizes"); torch's layers cannot take it. Every
    way in says so with a hint, also after a call that left a memo (the hot path reads no size of it)."""
    import warnings

    m = nn.GRUCell(4, 6) if cell else nn.LSTM(4, 6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch: nested tensors are a prototype
        nx = torch.nested.nested_tensor([torch.randn(5, 4), torch.randn(3, 4)])
    sv.check_call(m, torch.randn(3, 4) if cell else torch.randn(5, 3, 4))
    for call in (lambda: sv.check_call(m, nx), lambda: sv.checker(m)(nx)):
        with pytest.raises(sv.ShapeError) as info:
            call()
        assert info.value.code == "input_ndim" and "a nested tensor" in str(info.value)
        assert "to_padded_tensor" in str(info.value)
    with sv.checking(), pytest.raises(sv.ShapeError, match="input_ndim"):
        m(nx)


@pytest.mark.parametrize(("module", "x", "h"), [
    (nn.GRU(3, 2, num_layers=2), torch.randn(4, 2, 3), torch.zeros(2, 4, 2)),  # layers*D == bs
    (nn.RNN(1, 3, num_layers=2), torch.randn(2, 4, 1), torch.zeros(4, 2, 3)),  # layers*D == T
])
def test_watch_and_check_call_say_the_same_of_a_state_laid_out_batch_first(module: nn.Module, x: torch.Tensor,
                                                                            h: torch.Tensor) -> None:
    """A layer's own (x, h_0) is one batch and its state, not two inputs laid out both ways: under watch the
    state was read as a second batch and the call diagnosed batch_mismatch / hidden_batch_first, where
    check_call (and the README's rule: an h_0 whose batch is the input's other axis) says batch_first_swap."""
    with pytest.raises(RuntimeError):
        module(x, h)  # torch refuses it
    with pytest.raises(sv.ShapeError) as direct:
        sv.check_call(module, x, h)
    with sv.watch(module), pytest.raises(sv.ShapeError) as watched:
        module(x, h)
    assert direct.value.code == watched.value.code == "batch_first_swap"
