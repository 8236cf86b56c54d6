"""A trace never breaks the user's program.

A module copied during a traced forward (a lazily made EMA copy) carries nothing of shapeviz: no hooks,
no patched ``forward``; it saves and loads without shapeviz, runs its own weights, and a finished trace
never records again. A tensor shapeviz cannot describe (a nested tensor) is recorded as such.
"""

from __future__ import annotations

import copy
import io
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn as nn

import shapeviz as sv
from shapeviz import SpecError
from shapeviz.tracing import copies
from shapeviz.tracing.recorder import Tracer
from shapeviz.tracing.records import Trace


class _LazyEMA(nn.Module):
    """Makes an EMA copy of its layer the first time it runs (inside the traced forward)."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer
        self.ema: list[nn.Module] = []  # a list: the copy is not a submodule (not traced itself)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.ema:
            self.ema.append(copy.deepcopy(self.layer))
        out = self.layer(x)
        return out[0] if isinstance(out, tuple) else out


LAYERS = {
    "gru": (lambda: nn.GRU(4, 8), (5, 2, 4)),
    "lstm": (lambda: nn.LSTM(4, 8, num_layers=2), (5, 2, 4)),
    "cell": (lambda: nn.LSTMCell(4, 8), (2, 4)),
    "linear": (lambda: nn.Linear(4, 8), (2, 4)),
    "sequential": (lambda: nn.Sequential(nn.Linear(4, 4), nn.GRU(4, 8)), (5, 2, 4)),
}


def _no_shapeviz_state(m: nn.Module) -> None:
    for sub in m.modules():
        for hooks in (sub._forward_pre_hooks, sub._forward_hooks):
            assert not any(type(h).__module__.startswith("shapeviz") for h in hooks.values()), sub
        assert "forward" not in sub.__dict__, sub


@pytest.mark.parametrize("kind", list(LAYERS))
def test_a_copy_made_during_the_forward_carries_nothing_of_shapeviz(kind: str) -> None:
    make, shape = LAYERS[kind]
    model = _LazyEMA(make())
    x = torch.randn(*shape)
    t = sv.trace(model, x)
    ema = model.ema[0]
    _no_shapeviz_state(ema)
    buf = io.BytesIO()
    torch.save(ema, buf)  # AttributeError: Can't pickle local object 'trace.<locals>.post' before
    n = len(t.calls)
    for _ in range(3):
        ema(x)
    assert len(t.calls) == n  # 4 calls grew to 2,004 before
    assert copies.held() == 0


def test_the_copy_runs_its_own_weights() -> None:
    model = _LazyEMA(nn.GRU(4, 8))
    x = torch.randn(5, 2, 4)
    sv.trace(model, x)
    ema = model.ema[0]
    with torch.no_grad():
        for p in ema.parameters():
            p.zero_()
    assert torch.equal(ema(x)[0], torch.zeros(5, 2, 8))  # (a copied patch ran the original's weights)
    assert not torch.equal(model.layer(x)[0], torch.zeros(5, 2, 8))


def test_the_copy_loads_where_shapeviz_is_not_installed(tmp_path: Path) -> None:
    model = _LazyEMA(nn.Sequential(nn.Linear(4, 4), nn.LSTM(4, 8)))
    sv.trace(model, torch.randn(5, 2, 4))
    path = tmp_path / "ema.pt"
    torch.save(model.ema[0], path)
    code = textwrap.dedent(f"""
        import sys
        sys.modules["shapeviz"] = None  # import shapeviz raises ImportError
        import torch
        m = torch.load({str(path)!r}, weights_only=False)
        print(m(torch.zeros(5, 2, 4))[0].shape)
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.stdout.strip() == "torch.Size([5, 2, 8])", r.stderr[-2000:]


def test_a_finished_trace_never_records_again() -> None:
    rnn = nn.GRU(4, 8)
    tracer = Tracer(ops=False, declared_sizes={})
    tracer.enter("", rnn, (torch.zeros(5, 2, 4),), {}, user=False)
    tracer.exit(rnn, rnn(torch.zeros(5, 2, 4)))
    tracer.close()
    tracer.enter("", rnn, (torch.zeros(5, 2, 4),), {}, user=False)  # a hook that outlived its trace
    tracer.exit(rnn, rnn(torch.zeros(5, 2, 4)))
    assert len(tracer.calls) == 1


def test_classes_get_their_own_forward_back() -> None:
    before = {cls: cls.__dict__.get("forward") for cls in (nn.GRU, nn.LSTM, nn.LSTMCell)}

    class MyLSTM(nn.LSTM):  # a subclass without its own forward: gets none back either
        pass

    model = nn.Sequential(nn.GRU(4, 4), MyLSTM(4, 4))
    sv.trace(lambda x: model[1](model[0](x)[0]), torch.zeros(3, 2, 4))
    with pytest.raises(RuntimeError):
        sv.trace(model[0], torch.zeros(3, 2, 5))  # a forward that raises
    assert {cls: cls.__dict__.get("forward") for cls in before} == before
    assert "forward" not in MyLSTM.__dict__
    assert copies.held() == 0


def test_a_module_called_through_forward_is_still_recorded() -> None:
    class WeightDrop(nn.Module):
        def __init__(self, module: nn.Module) -> None:
            super().__init__()
            self.module = module

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.module.forward(x)[0]

    t = sv.trace(WeightDrop(nn.LSTM(4, 6)), torch.zeros(5, 2, 4))
    assert [(c.path, c.type) for c in t.calls] == [("", "WeightDrop"), ("module", "LSTM")]
    assert t.calls[1].outputs[0].format() == "(T=5, bs=2, D*h=6)"


# ---------------------------------------------------------------------- item 6: tensors not described
def _builds_a_nested_tensor(x: torch.Tensor) -> torch.Tensor:
    nt = torch.nested.nested_tensor([x, x[:2]])
    y = nt * 2
    return y.to_padded_tensor(0.0)


@pytest.mark.filterwarnings("ignore:The PyTorch API of nested tensors is in prototype stage")
@pytest.mark.parametrize("ops", [True, False])
def test_nested_tensors_are_recorded_as_such(ops: bool) -> None:
    model = nn.Linear(4, 4)
    t = sv.trace(lambda x: model(_builds_a_nested_tensor(x)), torch.zeros(3, 4), ops=ops)
    assert t.calls[-1].outputs[0].shape == (2, 3, 4)
    if ops:
        mul = t.find(type="mul")[0]
        assert mul.describe() == ("mul(nt (nested tensor: shape not described), 2) "
                                  "→ (nested tensor: shape not described)")
    assert Trace.from_json(t.to_json()) == t
    assert "shape not described" in t.table() or not ops


@pytest.mark.filterwarnings("ignore:The PyTorch API of nested tensors is in prototype stage")
def test_a_nested_model_input() -> None:
    lin = nn.Linear(4, 5)
    for layout in (torch.strided, torch.jagged):
        nt = torch.nested.nested_tensor([torch.zeros(3, 4), torch.zeros(2, 4)], layout=layout)
        t = sv.trace(lin, nt, ops=True)
        assert t.calls[0].inputs[0].opaque == "nested tensor"
    with pytest.raises(SpecError, match="the first input is a nested tensor"):
        sv.trace(lin, nt, inputs_dims="bs T emb")
