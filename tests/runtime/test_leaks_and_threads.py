"""Faults and state: nothing outlives its scope, nothing keeps a tensor alive, no cross-talk between threads."""

from __future__ import annotations

import gc
import threading
import weakref

import pytest
import torch
import torch.nn as nn
from conftest import count_global_state, run_in_threads

import shapeviz as sv
from shapeviz.tracing.session import trace


def _module_hooks(model: nn.Module) -> int:
    return sum(len(m._forward_pre_hooks) + len(m._forward_hooks) for m in model.modules())


class Boom(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.GRU(4, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.rnn(x)
        raise KeyError("user code fails after the RNN")


def test_raising_forward_inside_overlapping_watch_checking_trace_leaves_nothing():
    model = Boom()
    model.train()
    with pytest.raises(KeyError), sv.checking(inputs="T bs"), sv.watch(model, inputs="T bs"):
        trace(model, torch.randn(5, 3, 4))
    assert _module_hooks(model) == 0 and count_global_state() == 0 and model.training
    assert not sv.enabled()
    from shapeviz.core.dimensions import declared

    assert declared() is None  # no declared sizes leaked from inputs="T bs"


def test_nested_watch_of_the_same_model():
    model = nn.LSTM(4, 6)
    with sv.watch(model):
        with sv.watch(model) as inner:
            assert inner.active and _module_hooks(model) == 0
        assert not inner.active and count_global_state() == 7  # the outer handle and its six patched forwards
        with pytest.raises(sv.ShapeError):
            model(torch.randn(5, 3, 5))
    assert _module_hooks(model) == 0


def test_no_shapeviz_object_keeps_a_tensor_alive():
    model = nn.LSTM(4, 6)
    x = torch.randn(5, 3, 4)
    h = (torch.zeros(1, 3, 6), torch.zeros(2, 3, 6))  # wrong: hidden_layers on c_0
    refs = [weakref.ref(t) for t in (x, *h)]
    with sv.watch(model) as w:
        try:
            model(x, h)
        except sv.ShapeError as e:
            err = e
    err.__traceback__ = None  # Python's traceback frames hold the caller's locals; the error itself holds none
    del x, h
    gc.collect()
    assert all(r() is None for r in refs), "a tensor outlived the call"
    assert err.actual == (2, 3, 6)  # the error holds shapes and names only
    del w  # a live watch handle keeps its model, as it should
    model_ref = weakref.ref(model)
    sv.check_call(model, torch.randn(5, 3, 4))  # fills the fast-path cache
    del model
    gc.collect()
    assert model_ref() is None, "the fast-path cache kept the module alive"


def test_eight_threads_run_checked_models_concurrently():
    barrier = threading.Barrier(8)

    def work(i: int) -> None:
        model = nn.GRU(3 + i, 4 + i, num_layers=1 + i % 3, batch_first=bool(i % 2))
        layers, bs, T = 1 + i % 3, 2 + i, 3 + i
        x = torch.randn(bs, T, 3 + i) if i % 2 else torch.randn(T, bs, 3 + i)
        barrier.wait()
        with sv.watch(model):
            for _ in range(10):
                _, h_n = model(x, torch.zeros(layers, bs, 4 + i))
                assert tuple(h_n.shape) == (layers, bs, 4 + i)
                with pytest.raises(sv.ShapeError, match=f"hidden_layers.*GRU\\({3 + i}, {4 + i}"):
                    model(x, torch.zeros(layers + 1, bs, 4 + i))

    with sv.checking():
        run_in_threads(work)
