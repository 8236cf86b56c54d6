"""CUDA behaviour (marked `cuda`: skipped where no GPU is present)."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import shapeviz as sv
from shapeviz.render.backend import find_backend

pytestmark = pytest.mark.cuda


@pytest.fixture
def sync_errors():
    torch.cuda.set_sync_debug_mode("error")  # any device synchronisation raises
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode("default")


def test_checks_cause_no_synchronisation(sync_errors):
    model = nn.LSTM(16, 32, num_layers=2, bidirectional=True).cuda()
    x = torch.randn(7, 4, 16, device="cuda")
    state = (torch.zeros(4, 4, 32, device="cuda"), torch.zeros(4, 4, 32, device="cuda"))
    sv.check_call(model, x, state)
    with sv.watch(model, inputs="T bs"):
        model(x, state)
    with pytest.raises(sv.ShapeError, match="hidden_layers"):
        sv.check_call(model, x, (state[0][:2], state[1]))  # the slow path too reads no data


def test_device_mismatch_is_caught():
    model = nn.GRU(8, 16).cuda()
    with pytest.raises(sv.ShapeError, match=r"\[device\]") as info:
        sv.check_call(model, torch.randn(5, 3, 8))
    assert "x = x.to('cuda:0')" in str(info.value)


def test_trace_of_a_cuda_model_keeps_no_gpu_memory(sync_errors):
    from shapeviz.tracing.session import trace

    model = nn.LSTM(16, 32).cuda()
    x = torch.randn(7, 4, 16, device="cuda")
    t = trace(model, x)
    call = next(c for c in t.calls if c.type == "LSTM")
    assert call.outputs[0].shape == (7, 4, 32) and "cuda" in str(call.outputs[0].device)
    del x
    torch.cuda.synchronize()


def test_diagram_from_a_cuda_module(tmp_path):
    d = sv.unroll(nn.GRU(8, 16, num_layers=2).cuda(), T=4, bs=3)
    assert "(bs=3, h=16)" in d.source
    if find_backend() is not None:
        d.render(tmp_path / "gru.svg")
        assert (tmp_path / "gru.svg").read_text().lstrip().startswith(("<?xml", "<svg"))
