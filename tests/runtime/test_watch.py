"""watch / checking / enable / disable: the seeds run clean, their classic mistakes are caught,
and no hook or patch outlives its scope (exceptions included)."""

from __future__ import annotations

import threading

import pytest
import torch
import torch.nn as nn
from conftest import count_global_state, run_in_threads

import shapeviz as sv
from shapeviz.gallery.models import (
    BatchFirstLoopRNN,
    BidirectionalLoopRNN,
    CellOverDataset,
    CharRNNScratch,
    EmbedRNN,
    ForgotTranspose,
    HelloCell,
    HelloEmbedding,
    HelloRNN,
)


def _hooks(model: nn.Module) -> int:
    return sum(len(m._forward_pre_hooks) + len(m._forward_hooks) for m in model.modules())


def test_seed_systems_run_clean_under_checking():
    with sv.checking():
        logits, state = EmbedRNN()(torch.randint(0, 28, (4, 7)))
        assert tuple(logits.shape) == (7 * 4, 28) and tuple(state.shape) == (1, 4, 32)
        logits, h = CharRNNScratch()(torch.randint(0, 28, (2, 5)))
        assert tuple(logits.shape) == (10, 28) and tuple(h.shape) == (2, 64)
        assert tuple(CellOverDataset()(torch.randn(3, 1, 4)).shape) == (1, 2)
        rnn3 = nn.RNN(4, 2, num_layers=3)
        out, h_n = rnn3(torch.randn(3, 1, 4), torch.zeros(3, 1, 2))
        assert tuple(out.shape) == (3, 1, 2) and tuple(h_n.shape) == (3, 1, 2)
        hello = torch.eye(4)[[1, 0, 2, 2, 3]].view(5, 1, 4)  # one-hot 'hello': (T=5, bs=1, 4)
        assert tuple(HelloCell()(hello).shape) == (5, 1, 4)
        assert tuple(HelloRNN()(hello).shape) == (5, 4)
        assert tuple(HelloEmbedding()(torch.tensor([[1, 0, 2, 2, 3]])).shape) == (5, 4)


def test_handwritten_batch_first_and_bidirectional_equal_nn_rnn():
    x = torch.randn(2, 3, 2)
    with sv.checking():
        for loop in (BatchFirstLoopRNN(2, 3), BidirectionalLoopRNN(2, 3)):
            out, h = loop(x)
            ref_out, ref_h = loop.ref(x)  # the nn.RNN whose weights the loop uses
            torch.testing.assert_close(out, ref_out)
            torch.testing.assert_close(h, ref_h)


def test_embedding_not_transposed_is_caught_with_inputs():
    model = ForgotTranspose()
    tokens = torch.randint(0, 28, (4, 7))  # (bs=4, T=7)
    model(tokens)  # torch runs it silently: a (bs, T, emb) tensor read as (T, bs, emb)
    with sv.watch(model, inputs="bs T"), pytest.raises(sv.ShapeError) as info:
        model(tokens)
    e = info.value
    assert e.code == "batch_first_swap"
    assert str(e).startswith("[batch_first_swap] rnn: RNN(20, 32): argument `input`")
    assert "hint: x = x.transpose(0, 1)" in str(e)
    assert _hooks(model) == 0
    with sv.checking(inputs="bs T"), pytest.raises(sv.ShapeError, match="batch_first_swap") as info:
        model(tokens)
    assert "rnn: RNN(20, 32)" in str(info.value)  # the path, found from the outermost model
    with sv.watch(model, inputs="bs T"):
        EmbedRNN()(tokens)  # the fixed model runs clean


def test_classic_mistakes_raise_the_right_code():
    with sv.checking():
        with pytest.raises(sv.ShapeError, match="hidden_ndim"):  # h_0 without the layers dim
            EmbedRNN()(torch.randint(0, 28, (4, 7)), torch.zeros(4, 32))
        with pytest.raises(sv.ShapeError, match="input_ndim"):  # a cell given the whole sequence
            nn.RNNCell(4, 2)(torch.randn(3, 1, 4), torch.zeros(1, 2))


def test_watch_names_the_path_and_checks_kwargs():
    class Seq2Seq(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = nn.Module()
            self.encoder.rnn = nn.LSTM(8, 16, num_layers=2)

        def forward(self, x, h):
            return self.encoder.rnn(x, hx=h)

    model = Seq2Seq()
    x = torch.randn(5, 3, 8)
    with sv.watch(model) as handle:
        assert handle.active and handle.watched and _hooks(model) == 0  # no per-module hook
        model(x, (torch.zeros(2, 3, 16), torch.zeros(2, 3, 16)))
        with pytest.raises(sv.ShapeError) as info:
            model(x, (torch.zeros(1, 3, 16), torch.zeros(2, 3, 16)))
    assert str(info.value).startswith("[hidden_layers] encoder.rnn: LSTM(8, 16, num_layers=2): argument `h_0`")
    assert _hooks(model) == 0
    with sv.checking(), pytest.raises(sv.ShapeError, match="hidden_layers"):  # kwargs in global mode too
        model(x, (torch.zeros(1, 3, 16), torch.zeros(2, 3, 16)))


def test_hooks_removed_on_every_path():
    model = nn.Sequential(nn.Linear(4, 9), nn.GRU(4, 6))  # Linear gives emb=9: input_size
    handle = sv.watch(model, inputs="T bs")
    assert _hooks(model) == 0  # no hook: the root's class names its input (runtime/rootcall.py), the GRU is checked
    assert "_call_impl" in type(model).__dict__  # through the patched base forward
    handle.remove()
    handle.remove()  # idempotent
    assert _hooks(model) == 0
    with pytest.raises(sv.ShapeError), sv.watch(model, inputs="T bs"):
        model(torch.randn(5, 3, 4))
    assert _hooks(model) == 0
    with pytest.raises(KeyError), sv.checking(inputs="bs T"):
        raise KeyError("user code fails")
    assert count_global_state() == 0 and not sv.enabled()
    with sv.checking():
        with sv.checking(inputs="T bs"):  # nested
            assert sv.enabled()
        assert sv.enabled()
    assert not sv.enabled() and count_global_state() == 0


def test_enable_disable_and_disable_removes_watches():
    model = nn.GRU(4, 6)
    sv.enable()
    sv.enable()
    assert sv.enabled()
    with pytest.raises(sv.ShapeError):
        model(torch.randn(5, 3, 9))
    w = sv.watch(model)
    with sv.checking():
        pass
    assert sv.enabled()  # leaving a block does not end enable()
    sv.disable()
    assert not sv.enabled() and not w.active and count_global_state() == 0
    assert nn.GRU.forward is nn.GRU.__dict__["forward"] and not hasattr(nn.GRU.forward, "__shapeviz__")


def test_env_disable_installs_nothing(monkeypatch):
    monkeypatch.setenv("SHAPEVIZ_DISABLE", "1")
    model = nn.GRU(4, 6)
    with sv.watch(model) as w:
        assert not w.active and _hooks(model) == 0
    with sv.checking():
        assert not sv.enabled()
        # torch's own error, not a ShapeError: shapeviz checked nothing
        with pytest.raises(RuntimeError, match=r"must be equal to input_size"):
            model(torch.randn(5, 3, 9))
    sv.enable()
    assert not sv.enabled()


def test_bad_inputs_spec_is_a_clear_error():
    with pytest.raises(sv.SpecError, match="not a dimension name"):
        sv.watch(nn.GRU(4, 6), inputs="bs T+1")
    with pytest.raises(sv.SpecError, match="no dimension names"):
        with sv.checking(inputs="  "):
            pass
    with pytest.raises(sv.SpecError, match="non-negative int"):
        with sv.dims(bs=-1):
            pass
    with pytest.raises(TypeError, match=r"nn\.Module"):
        sv.watch("model")  # type: ignore[arg-type]


def test_threads_do_not_share_declared_sizes():
    barrier = threading.Barrier(8)

    def work(i: int) -> None:
        bs, T = 3 + i, 40 + 7 * i  # T is no multiple of bs: a swapped batch T cannot be a merge bs*k
        rnn = nn.GRU(4, 5)
        barrier.wait()
        with sv.dims(bs=bs, T=T):
            for _ in range(20):
                sv.check_call(rnn, torch.randn(T, bs, 4))  # correct for this thread's sizes
                with pytest.raises(sv.ShapeError, match=f"declared: bs={bs}, T={T}"):
                    sv.check_call(rnn, torch.randn(bs, T, 4))

    run_in_threads(work)


@pytest.mark.parametrize("stop", [SystemExit(2), KeyboardInterrupt()])
@pytest.mark.parametrize("how", ["checking", "watch"])
def test_inputs_sizes_do_not_outlive_a_forward_stopped_by_a_base_exception(how: str, stop: BaseException) -> None:
    from shapeviz.core.dimensions import declared

    class Stops(nn.Module):  # torch skips always_call forward hooks for a BaseException
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            assert declared() == {"bs": 2, "T": 5}
            raise stop

    model = Stops()
    block = sv.checking(inputs="bs T") if how == "checking" else sv.watch(model, inputs="bs T")
    with pytest.raises(type(stop)), block:
        model(torch.zeros(2, 5))
    assert declared() is None
