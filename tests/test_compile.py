"""torch.compile with checking on: zero graph breaks, same results; what a wrong shape does there."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import shapeviz as sv


class Tagger(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.LSTM(8, 16, num_layers=2)
        self.fc = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)  # (T, bs, 16); h_n, c_n: (2, bs, 16)
        return self.fc(out)


@pytest.fixture(autouse=True)
def _dynamo():
    old = torch._dynamo.config.allow_rnn
    torch._dynamo.config.allow_rnn = True  # dynamo needs this for nn.LSTM, with or without shapeviz
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()
    torch._dynamo.config.allow_rnn = old


@pytest.mark.parametrize("backend", ["eager", "inductor"])
def test_checking_adds_no_graph_break(backend):
    model, x = Tagger(), torch.randn(5, 3, 8)
    expected = model(x)
    with sv.checking(), sv.watch(model):
        explanation = torch._dynamo.explain(model)(x)
        assert explanation.graph_break_count == 0, explanation.break_reasons
        assert explanation.graph_count == 1
        compiled = torch.compile(model, fullgraph=True, backend=backend)
        # torch 2.13's inductor cannot compile an LSTM with autograd on CPU (mkldnn_rnn_layer),
        # with or without shapeviz: compare in inference mode
        with torch.no_grad():
            torch.testing.assert_close(compiled(x), expected, rtol=1e-4, atol=1e-5)
        with pytest.raises(sv.ShapeError):  # eager calls are still checked
            model(torch.randn(5, 3, 9))


def test_wrong_shape_inside_compiled_code_gets_torchs_own_error():
    """Documented in the README: shapeviz does not check inside a compiled region."""
    model = Tagger()
    with sv.checking():
        compiled = torch.compile(model, backend="eager")
        compiled(torch.randn(5, 3, 8))
        with pytest.raises(RuntimeError, match="input_size") as info:
            compiled(torch.randn(5, 3, 9))
        assert not isinstance(info.value, sv.ShapeError)
