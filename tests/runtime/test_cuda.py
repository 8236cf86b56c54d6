"""CUDA behaviour (marked `cuda`: skipped where no GPU is present)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
import torch
import torch.nn as nn

import shapeviz as sv
from shapeviz.render.backend import find_backend

pytestmark = pytest.mark.cuda


@contextlib.contextmanager
def no_sync() -> Iterator[None]:
    """Any device synchronisation inside raises (set up the model and tensors before: moving a module
    with .cuda() synchronises)."""
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode("default")


def test_checks_cause_no_synchronisation():
    model = nn.LSTM(16, 32, num_layers=2, bidirectional=True).cuda()
    x = torch.randn(7, 4, 16, device="cuda")
    state = (torch.zeros(4, 4, 32, device="cuda"), torch.zeros(4, 4, 32, device="cuda"))
    with no_sync():
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


def test_trace_of_a_cuda_model_keeps_no_gpu_memory():
    import gc

    from shapeviz.tracing.session import trace

    gc.collect()
    before = torch.cuda.memory_allocated()
    model = nn.LSTM(16, 32).cuda()
    x = torch.randn(7, 4, 16, device="cuda")
    with no_sync():
        t = trace(model, x)
    call = next(c for c in t.calls if c.type == "LSTM")
    assert call.outputs[0].shape == (7, 4, 32) and "cuda" in str(call.outputs[0].device)
    del x, model
    gc.collect()
    torch.cuda.synchronize()
    assert torch.cuda.memory_allocated() == before, "the trace still holds GPU tensors"
    assert t.calls  # the trace is alive while the memory is back


def test_diagram_from_a_cuda_module(tmp_path):
    d = sv.unroll(nn.GRU(8, 16, num_layers=2).cuda(), T=4, bs=3)
    assert "(bs=3, h=16)" in d.source
    if find_backend() is not None:
        d.render(tmp_path / "gru.svg")
        assert (tmp_path / "gru.svg").read_text().lstrip().startswith(("<?xml", "<svg"))


def test_checker_memo_and_long_way_on_cuda():
    model = nn.LSTM(16, 32, num_layers=2, batch_first=True).cuda()
    x = torch.randn(4, 7, 16, device="cuda")
    h = torch.zeros(2, 4, 32, device="cuda")
    h_cpu = torch.zeros(2, 4, 32)
    check = sv.checker(model)
    with no_sync():
        for _ in range(3):  # the first call goes the long way, the next ones hit the memo
            check(x, (h, h))
        with pytest.raises(sv.ShapeError, match=r"\[device\]"):
            check(x, (h_cpu, h))
        with pytest.raises(sv.ShapeError, match=r"\[batch_mismatch\]"):
            check(x, (h[:, :3], h[:, :3]))
        check(x, (h, h))  # a caught mistake leaves the memo usable


def test_watched_forward_on_cuda_matches_and_catches():
    torch.manual_seed(0)
    model = nn.GRU(8, 16, num_layers=2, bidirectional=True).cuda()
    x = torch.randn(5, 3, 8, device="cuda")
    h0 = torch.randn(4, 3, 16, device="cuda")
    plain = model(x, h0)
    with sv.watch(model, inputs="T bs"):
        watched = model(x, h0)
        with pytest.raises(sv.ShapeError, match=r"\[hidden_layers\]"):
            model(x, h0[:2])
        with pytest.raises(sv.ShapeError, match=r"\[device\]"):
            model(x, h0.cpu())
    assert torch.equal(plain[0], watched[0]) and torch.equal(plain[1], watched[1])


def test_packed_lstm_and_gru_on_cuda_are_checked():
    from torch.nn.utils.rnn import pack_padded_sequence

    x = torch.randn(6, 3, 8, device="cuda")
    packed = pack_padded_sequence(x, torch.tensor([6, 4, 2]))
    for model in (nn.LSTM(8, 16).cuda(), nn.GRU(8, 16).cuda()):
        with sv.watch(model):
            model(packed)
            state = torch.zeros(1, 2, 16, device="cuda")
            with pytest.raises(sv.ShapeError, match=r"\[batch_mismatch\]"):
                model(packed, (state, state) if isinstance(model, nn.LSTM) else state)


def test_compiled_watched_model_on_cuda_raises_the_shape_error():
    old = torch._dynamo.config.allow_rnn
    torch._dynamo.config.allow_rnn = True
    try:
        model = nn.LSTM(8, 16).cuda()
        x = torch.randn(5, 3, 8, device="cuda")
        with sv.watch(model):
            compiled = torch.compile(model, backend="eager")
            out, _ = compiled(x)
            assert out.shape == (5, 3, 16) and out.is_cuda
            with pytest.raises(sv.ShapeError, match=r"\[input_size\]"):
                compiled(torch.randn(5, 3, 9, device="cuda"))
    finally:
        torch._dynamo.config.allow_rnn = old
