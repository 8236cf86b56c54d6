"""The op mode steps aside inside torch modules without children, and is back on every path."""

from __future__ import annotations

import contextlib

import pytest
import torch
import torch.nn as nn

import shapeviz as sv
from shapeviz.tracing import recorder


def _stack_len() -> int:
    return torch._C._len_torch_function_stack()


class _Counting(recorder.OpMode):
    """An OpMode that counts the ops it is shown."""

    seen = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        type(self).seen += 1
        return super().__torch_function__(func, types, args, kwargs)


class _Wrapper(nn.Module):
    """Your code around an LSTM: the op mode is on, and steps aside inside the LSTM."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.LSTM(10, 20)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rnn(x)[0].sum(0)


def test_no_op_of_a_torch_leaf_module_reaches_the_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("shapeviz.tracing.session.OpMode", _Counting)
    _Counting.seen = 0
    t = sv.trace(_Wrapper(), torch.randn(5, 3, 10))
    assert t.calls[1].outputs[0].names == ("T", "bs", "D*h")
    quiet = _Counting.seen
    monkeypatch.setattr("shapeviz.tracing.session.quiet_hooks_supported", lambda: False)
    _Counting.seen = 0
    sv.trace(_Wrapper(), torch.randn(5, 3, 10))
    assert 0 < quiet < _Counting.seen  # the LSTM's own ops (dim, size, zeros, the kernel ...) were not shown
    assert _stack_len() == 0


def test_a_model_of_torch_modules_alone_runs_without_the_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("shapeviz.tracing.session.OpMode", _Counting)
    _Counting.seen = 0
    model = nn.Sequential(nn.Embedding(30, 8), nn.GRU(8, 16, batch_first=True))
    t = sv.trace(model, torch.randint(0, 30, (2, 7)))
    assert _Counting.seen == 0  # none of your code runs in it: nothing to record ops of
    assert t.calls[2].outputs[0].names == ("bs", "T", "D*h")
    _Counting.seen = 0
    sv.trace(model, torch.randint(0, 30, (2, 7)), ops=True)  # ops=True: the mode is on
    assert _Counting.seen > 0


class _Raising(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise ValueError("no")


class _Caught(nn.Module):
    """Calls a Linear with a wrong input inside try/except, then runs ops of its own."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.mine = _Raising()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with contextlib.suppress(RuntimeError):
            self.fc(x.T)  # (4, 2) @ (4, 3).T fails inside the Linear
        with contextlib.suppress(ValueError):
            self.mine(x)  # a module of yours that raises
        return torch.tanh(x @ x.T)


def test_a_quiet_call_that_raises_inside_your_try_gives_the_mode_back() -> None:
    t = sv.trace(_Caught(), torch.randn(2, 4), ops=True)
    ops = [c.type for c in t.calls if c.kind == "op"]
    assert "tanh" in ops and "matmul" in ops  # recorded after the failed calls: the mode was back
    failed = {c.path: c.error for c in t.calls if c.kind == "module" and c.path}
    assert failed == {"fc": "RuntimeError", "mine": "ValueError"}  # each closed as a failed call
    assert t.find(type="tanh")[0].parent == 0  # the ops after them belong to the model's forward again
    assert _stack_len() == 0


def test_a_quiet_call_that_raises_leaves_the_stack_clean_and_the_note_names_it() -> None:
    model = nn.Sequential(nn.Linear(4, 3), nn.Linear(5, 2))
    with pytest.raises(RuntimeError) as info:
        sv.trace(model, torch.randn(2, 4))
    assert _stack_len() == 0
    note = "\n".join(getattr(info.value, "__notes__", []))
    assert "1 (Linear)" in note  # the failing call is listed
    assert info.value.shapeviz_trace.calls[-1].error  # and marked as failed


class _Interrupting(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise KeyboardInterrupt


def test_a_base_exception_inside_a_quiet_call_still_restores_the_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    # a torch-like leaf module (no children, not your code) that is interrupted: its always-called hook
    # does not run for a BaseException, trace() puts the mode back itself
    monkeypatch.setattr("shapeviz.tracing.session._is_user_module", lambda m: False)
    with pytest.raises(KeyboardInterrupt):
        sv.trace(_Interrupting(), torch.randn(2, 4))
    assert _stack_len() == 0
    t = sv.trace(nn.GRU(4, 8), torch.randn(3, 2, 4))  # and the next trace works as before
    assert t.calls[0].outputs[1].names == ("layers*D", "bs", "h")


def test_recurrent_layers_on_meta_keep_the_mode() -> None:
    with torch.device("meta"):
        rnn = nn.LSTM(8, 16, num_layers=2)
        x = torch.empty(4096, 2, 8)
    t = sv.trace(rnn, x)  # shaped from the conventions by the mode, not stepped through
    assert t.calls[0].outputs[0].shape == (4096, 2, 16)
    assert _stack_len() == 0
