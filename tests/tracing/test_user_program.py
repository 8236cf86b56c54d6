"""shapeviz never breaks the user's program: what it installs comes off without taking anyone else's with it,
copies carry nothing of it, and ``inputs=`` names what the caller passed."""

from __future__ import annotations

import copy
import functools
import io
import pickle
import subprocess
import sys

import pytest
import torch
import torch.nn as nn

import shapeviz as sv
from shapeviz.runtime import watching

TORCH_GRU_FORWARD = nn.GRU.__dict__["forward"]


def test_disable_keeps_a_library_wrapper_put_on_top_of_shapeviz() -> None:
    sv.enable()
    calls = []

    @functools.wraps(nn.GRU.forward)
    def library(self, *args, **kwargs):  # another library wraps GRU.forward while shapeviz is on
        calls.append(1)
        return wrapped(self, *args, **kwargs)

    wrapped = nn.GRU.forward
    nn.GRU.forward = library
    try:
        sv.disable()
        assert nn.GRU.__dict__["forward"] is library  # theirs stays
        nn.GRU(4, 5)(torch.randn(3, 2, 4))
        assert calls == [1]
        with pytest.raises(RuntimeError) as caught:  # shapeviz's layer underneath does nothing now
            nn.GRU(4, 5)(torch.randn(3, 2, 3))
        assert not isinstance(caught.value, sv.ShapeError)
        with sv.checking(), pytest.raises(sv.ShapeError, match=r"\[input_size\]"):
            nn.GRU(4, 5)(torch.randn(3, 2, 3))  # checked again, through the one wrapper left inside
        assert nn.GRU.__dict__["forward"] is library  # not wrapped a second time
    finally:
        nn.GRU.forward = TORCH_GRU_FORWARD  # the library unwraps itself (and ours with it)
    with sv.checking(), pytest.raises(sv.ShapeError, match=r"\[input_size\]"):
        nn.GRU(4, 5)(torch.randn(3, 2, 3))  # patched afresh: the old wrapper is gone from the chain
    assert nn.GRU.__dict__["forward"] is TORCH_GRU_FORWARD and not watching._LEFT


def test_a_copy_of_a_model_watched_with_inputs_carries_no_hook() -> None:
    model = nn.Sequential(nn.Embedding(20, 8), nn.GRU(8, 6))
    with sv.watch(model, inputs="T bs"):  # (named through its class's _call_impl since rootcall: no hook at all)
        twin = copy.deepcopy(model)
        assert not twin._forward_pre_hooks and not twin._forward_hooks
        assert not twin._forward_pre_hooks_with_kwargs and not twin._forward_hooks_always_called
        buf = io.BytesIO()
        torch.save(model, buf)
        assert b"shapeviz" not in buf.getvalue() and b"shapeviz" not in pickle.dumps(model)
        twin(torch.randint(0, 20, (7, 4)))  # a copy is not watched, and runs
    assert nn.Module.__dict__["__getstate__"].__module__ == "torch.nn.modules.module"


def test_a_saved_watched_model_loads_without_shapeviz(tmp_path) -> None:
    model = nn.Sequential(nn.GRU(4, 5))
    path = tmp_path / "model.pt"
    with sv.watch(model, inputs="T bs"):
        torch.save(model, path)
    code = ("import sys; sys.modules['shapeviz'] = None; import torch; "
            f"m = torch.load({str(path)!r}, weights_only=False); print(type(m).__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "Sequential"


def test_inputs_names_what_the_caller_passed_whatever_hooks_ran_first() -> None:
    class Tagger(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed, self.rnn = nn.Embedding(20, 8), nn.GRU(8, 6)

        def forward(self, tokens: torch.Tensor) -> torch.Tensor:  # tokens: (T, bs)
            return self.rnn(self.embed(tokens))[0]

    model = Tagger()
    model.register_forward_pre_hook(lambda m, args: (args[0].t(),))  # the user's own (bs, T) -> (T, bs)
    with sv.watch(model, inputs="bs T"):  # names the (bs, T) the caller passed
        model(torch.randint(0, 20, (4, 9)))  # correct: the hook transposes it


@pytest.mark.parametrize("make, x, axis", [(lambda: nn.LSTM(4, 3), torch.randn(0, 3, 4), 0),
                                           (lambda: nn.GRU(4, 3, batch_first=True), torch.randn(3, 0, 4), 1),
                                           (lambda: nn.RNN(4, 3), torch.randn(0, 4), 0)])
def test_an_empty_sequence_says_so(make, x, axis) -> None:
    module = make()
    with pytest.raises(RuntimeError, match="sequence length"):
        module(x)  # torch refuses it too
    with pytest.raises(sv.ShapeError, match=r"\[input_ndim\][\s\S]*an empty sequence") as caught:
        sv.check_call(module, x)
    assert "T >= 1" in caught.value.expected and "T=0" not in caught.value.expected
    assert f"x.shape[{axis}] > 0" in str(caught.value)


def _modes() -> list:
    return list(torch.overrides._get_current_function_mode_stack())


def test_a_checking_block_takes_off_its_own_flow_mode_in_any_order() -> None:
    m = nn.GRU(4, 5)
    with sv.checking(ops=True):
        handle = sv.watch(m, ops=True)  # its mode goes on after the block's
    handle.remove()
    sv.disable()
    assert _modes() == []  # before: the block's exit took the watch's mode, and its own stayed for ever


def test_a_device_context_around_watch_ops_is_left_as_torch_leaves_it() -> None:
    m = nn.GRU(4, 5)
    with torch.device("meta"):
        handle = sv.watch(m, ops=True)
        assert torch.zeros(2).device.type == "meta"
    assert torch.zeros(2).device.type == "cpu"  # before: still meta (the block popped shapeviz's mode)
    handle.remove()
    assert torch.zeros(2).device.type == "cpu" and _modes() == []


def test_flow_still_names_inside_a_device_context() -> None:
    from shapeviz.tracing.flow import known_names

    with sv.checking(inputs="bs T", ops=True), torch.device("cpu"):
        x = sv.name(torch.zeros(4, 7, 8), "bs T emb")
        assert known_names(x.transpose(0, 1)) == ("T", "bs", "emb")
    assert _modes() == []


def test_a_copy_of_a_watched_bare_layer_carries_no_hook() -> None:
    """nn.RNNBase has a __getstate__ of its own: copies of a watched nn.LSTM leave the hooks out too."""
    from shapeviz.tracing import copies

    own = [c for c in vars(nn).values() if isinstance(c, type) and issubclass(c, nn.Module)
           and "__getstate__" in c.__dict__]
    assert set(own) <= set(copies._CLASSES)  # every torch class with its own __getstate__ is covered
    lstm = nn.LSTM(4, 8)
    with sv.watch(lstm, inputs="T bs emb"):
        twin = copy.deepcopy(lstm)
        assert not twin._forward_pre_hooks and not twin._forward_hooks
        assert b"shapeviz" not in pickle.dumps(lstm)
    assert nn.RNNBase.__dict__["__getstate__"].__module__ == "torch.nn.modules.rnn"
