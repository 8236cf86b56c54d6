"""Review of the tracing speed-ups: behaviour a user would notice, one test per bug found."""

from __future__ import annotations

import contextlib
import threading

import pytest
import torch
import torch.nn as nn

import shapeviz as sv


def _stack_len() -> int:
    return torch._C._len_torch_function_stack()


def _refuse(module: nn.Module, args: tuple) -> None:
    raise RuntimeError("refused by a pre hook")


class _CatchesChild(nn.Module):
    """A child whose (user) pre hook raises, caught by the forward; then more work."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.GRU(3, 4)
        self.lin = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, _ = self.rnn(x)
        with contextlib.suppress(RuntimeError):
            self.lin(y)
        return y.transpose(0, 1)


def test_a_call_whose_pre_hook_never_ran_leaves_the_open_calls_alone() -> None:
    # a pre hook registered before trace's raised: trace's pre hook never ran, but its always_call
    # post hook did, and closed the enclosing calls (the model) as if they had returned
    model = _CatchesChild()
    model.lin.register_forward_pre_hook(_refuse)
    t = sv.trace(model, torch.zeros(5, 2, 3), ops=True)
    root = t.calls[0]
    assert [o.shape for o in root.outputs] == [(2, 5, 4)]
    transpose = t.find(type="transpose")[0]
    assert transpose.parent == 0 and transpose.depth == 1

    class Raises(_CatchesChild):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y, _ = self.rnn(x)
            return self.lin(y)

    model = Raises()
    model.lin.register_forward_pre_hook(_refuse)
    with pytest.raises(RuntimeError, match="refused") as info:
        sv.trace(model, torch.zeros(5, 2, 3))
    assert info.value.shapeviz_trace.calls[0].error == "RuntimeError"  # the model raised: not "(no tensors)"
    assert _stack_len() == 0


class _Stateful(nn.Module):
    """A loop that keeps its state in ``self.h``: the attribute holds another tensor at each step."""

    def __init__(self) -> None:
        super().__init__()
        self.W = nn.Parameter(torch.ones(3, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.h = torch.zeros(x.shape[1], 3)
        first = self.h + 0
        h0 = [self.h]
        for t in range(x.shape[0]):
            self.h = torch.tanh(x[t] @ self.W + self.h)
        return torch.cat(h0 + [first], 0)


def test_a_label_is_the_attribute_as_it_is_now() -> None:
    t = sv.trace(_Stateful(), torch.zeros(4, 2, 3), ops=True)
    adds = [c for c in t.find(type="add") if c.inputs[0].label == ""]
    assert [c.inputs[1].label for c in adds] == ["self.h"] * 4  # self.h at each step, not only the first
    cat = t.find(type="cat")[0]
    # the first tensor of the list was self.h once; at this line self.h is another tensor
    assert all(i.label != "self.h" for i in cat.inputs)


def test_a_module_called_in_another_thread_leaves_its_mode_stack_alone() -> None:
    # the worker's call closes while the op mode is off for a torch leaf call of the tracing thread:
    # the mode was put back on the worker's stack (and trace crashed popping its own)
    in_leaf, worker_done = threading.Event(), threading.Event()
    seen: dict[str, int] = {}

    class Threaded(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b, self.rnn = nn.Linear(3, 3), nn.Linear(3, 3), nn.GRU(3, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out: dict[str, torch.Tensor] = {}

            def work() -> None:
                out["b"] = self.b(x)
                seen["worker"] = _stack_len()
                worker_done.set()

            th = threading.Thread(target=work)
            th.start()
            y, _ = self.rnn(x)
            z = self.a(y)
            th.join()
            return z.transpose(0, 1)

    def hold_b(module: nn.Module, args: tuple, out: torch.Tensor) -> None:
        in_leaf.wait(5)

    def hold_a(module: nn.Module, args: tuple, out: torch.Tensor) -> None:
        in_leaf.set()
        worker_done.wait(5)

    model = Threaded()
    model.b.register_forward_hook(hold_b)
    model.a.register_forward_hook(hold_a)
    t = sv.trace(model, torch.zeros(4, 2, 3), ops=True)
    assert seen == {"worker": 0}
    assert _stack_len() == 0
    assert t.find(type="transpose")  # the tracing thread's ops after the leaf call are recorded


class _SlowLeaf(nn.Module):
    """Stands for a torch module without children (the test marks it as library code): once running,
    it waits until another thread has opened a module call of its own."""

    def __init__(self, started: threading.Event, entered: threading.Event) -> None:
        super().__init__()
        self.started, self.entered = started, entered

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.started.set()
        assert self.entered.wait(5)
        return x + 0


class _Worker(nn.Module):
    def __init__(self, entered: threading.Event, release: threading.Event) -> None:
        super().__init__()
        self.entered, self.release = entered, release

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.entered.set()
        assert self.release.wait(5)
        return x


class _TwoThreads(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.started, entered, self.release = threading.Event(), threading.Event(), threading.Event()
        self.leaf = _SlowLeaf(self.started, entered)
        self.worker = _Worker(entered, self.release)

    def _in_thread(self, x: torch.Tensor) -> None:
        assert self.started.wait(5)  # the leaf call is running (quiet) before this call opens
        self.worker(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = threading.Thread(target=self._in_thread, args=(x,))
        t.start()
        y = self.leaf(x)  # quiet; the worker's call opens meanwhile
        self.release.set()
        t.join()
        return torch.tanh(y)  # the op mode must be back in this thread: recorded


def test_a_call_opened_in_another_thread_during_a_quiet_call_does_not_keep_the_mode_off(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("shapeviz.tracing.session._is_user_module", lambda m: not isinstance(m, _SlowLeaf))
    t = sv.trace(_TwoThreads(), torch.randn(2, 3), ops=True)
    assert [c.type for c in t.calls if c.kind == "op"].count("tanh") == 1
    assert torch._C._len_torch_function_stack() == 0


def test_an_in_place_reshape_is_recorded_with_the_tensor_as_it_was_given() -> None:
    """DeepAR's ``x[t].unsqueeze_(0)``: the record shows (bs, f) going in, not the (1, bs, f) it becomes."""

    class StepByStep(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm = nn.LSTM(3, 8)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = c = torch.zeros(1, x.size(1), 8)
            for t in range(x.size(0)):
                step = x[t].unsqueeze_(0)
                _, (h, c) = self.lstm(step, (h, c))
            y = x.clone().transpose_(0, 1)
            return h + y.sum()

    t = sv.trace(StepByStep(), torch.randn(5, 4, 3), ops=True, inputs_dims="T bs f")
    ups = [c for c in t.find() if c.type == "unsqueeze_"]
    assert ups and all(c.inputs[0].shape == (4, 3) and c.inputs[0].names == ("bs", "f") for c in ups)
    assert all(c.outputs[0].shape == (1, 4, 3) and c.outputs[0].names == ("", "bs", "f") for c in ups)
    (tr,) = [c for c in t.find() if c.type == "transpose_"]
    assert tr.inputs[0].shape == (5, 4, 3) and tr.outputs[0].shape == (4, 5, 3)
    assert tr.outputs[0].names == ("bs", "T", "f")
