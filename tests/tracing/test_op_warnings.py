"""A warning torch raises inside an op names the same line with shapeviz recording ops as without it.

Under ``trace(ops=True)`` and ``watch(ops=True)`` every torch call of the forward runs inside shapeviz's
function mode; a warning from inside it (torch's C++ ``TORCH_WARN``, or ``warnings.warn(stacklevel=...)`` in
torch's Python) must still name your line (or torch's module code, where torch's module ran the op), not
``shapeviz/tracing/flow.py``: the oracle is the same forward run with shapeviz off.
"""

from __future__ import annotations

import traceback
import warnings
from collections.abc import Callable

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import shapeviz as sv


class Warns(nn.Module):
    """A GRU whose surrounding code triggers torch warnings three ways."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.GRU(4, 8)
        self.soft = nn.Softmax()  # no dim: torch warns from inside the module's forward

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)
        p = F.softmax(out)  # no dim: warnings.warn(..., stacklevel) in torch's Python
        c = torch.tensor(out)  # a tensor copy-constructed: a C++ TORCH_WARN
        return self.soft(p) + c


def _sites(run: Callable[[], object]) -> list[tuple[str, int, str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run()
    return [(w.filename, w.lineno, str(w.message)[:40]) for w in caught
            if not issubclass(w.category, sv.ShapeWarning)]


def _trace(model: nn.Module, x: torch.Tensor) -> object:
    return sv.trace(model, x, ops=True)


def _watch(model: nn.Module, x: torch.Tensor) -> object:
    with sv.watch(model, ops=True):
        return model(x)


@pytest.mark.parametrize("how", [_trace, _watch], ids=["trace_ops", "watch_ops"])
def test_torch_warnings_inside_ops_name_the_line_they_name_without_shapeviz(
        how: Callable[[nn.Module, torch.Tensor], object]) -> None:
    model, x = Warns(), torch.randn(5, 3, 4)
    plain = _sites(lambda: model(x))
    assert [f == __file__ for f, _, _ in plain] == [True, True, False]
    ours = _sites(lambda: how(model, x))
    assert ours[:2] == plain[:2]  # F.softmax's and torch.tensor's: your lines, exactly
    # nn.Softmax warns 5 frames up, in torch's module code: the same file (the line differs by torch's own
    # hook path: with hooks on a module, torch runs its forward one frame deeper)
    assert ours[2][0] == plain[2][0] and ours[2][2] == plain[2][2]


def test_an_error_inside_an_op_propagates_and_its_traceback_shows_your_line_once() -> None:
    class Bad(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = nn.GRU(4, 8)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out, _ = self.rnn(x)
            return out @ torch.ones(3, 3)  # (T, bs, 8) @ (3, 3): torch raises

    with pytest.raises(RuntimeError, match="cannot be multiplied") as info, sv.watch(Bad(), ops=True) as _:
        Bad()(torch.randn(5, 3, 4))
    frames = [(f.filename, f.lineno) for f in traceback.extract_tb(info.tb)]
    line = Bad.forward.__code__.co_firstlineno + 2
    assert frames.count((__file__, line)) == 1  # the copies of the calling frames are left out
