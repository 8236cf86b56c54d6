"""One check a watched layer call, not two: where shapeviz's check verified a call, torch's
forward runs without its own ``check_forward_args``; everything else runs torch's forward as it is. Nothing
caught before is lost: every mistake still raises the ShapeError it raised, and every output is torch's. No
timing here: bench/bench_watch.py measures."""

from __future__ import annotations

import random
from typing import Any

import pytest
import torch
import torch.nn as nn
from torch.nn.utils.rnn import pack_padded_sequence

import shapeviz as sv
from shapeviz.runtime.patching import unchecked_forward


def _counting(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Replace torch's check_forward_args of RNNBase and LSTM by counting wrappers (before any watch)."""
    seen: list[str] = []
    for cls in (nn.modules.rnn.RNNBase, nn.LSTM):
        original = cls.__dict__["check_forward_args"]

        def counted(self: nn.Module, *args: Any, _original: Any = original) -> None:
            seen.append(type(self).__name__)
            return _original(self, *args)

        monkeypatch.setattr(cls, "check_forward_args", counted)
    return seen


def test_a_verified_call_runs_torchs_forward_without_its_own_check(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = _counting(monkeypatch)
    layers = [nn.LSTM(4, 6, 2, bidirectional=True), nn.GRU(4, 6, batch_first=True), nn.RNN(4, 6),
              nn.LSTM(4, 6, proj_size=3)]
    for m in layers:
        plain = [m(torch.ones(5, 3, 4)), m(torch.ones(5, 4))]  # batched and unbatched
        assert len(seen) == 2
        seen.clear()
        with sv.watch(m):
            watched = [m(torch.ones(5, 3, 4)), m(torch.ones(5, 4))]
        assert seen == [], (m, seen)  # shapeviz's check stood in for torch's: one check a call
        torch.testing.assert_close(watched, plain)
    m = nn.GRU(4, 6)
    with sv.watch(m):
        m(torch.ones(5, 3, 4), torch.zeros(1, 3, 6))
        assert seen == []
        monkeypatch.setenv("SHAPEVIZ_DISABLE", "1")  # shapeviz checks nothing: torch's own check runs
        m(torch.ones(5, 3, 4))
        assert seen == ["GRU"]
        monkeypatch.delenv("SHAPEVIZ_DISABLE")
        packed = pack_padded_sequence(torch.ones(5, 3, 4), torch.tensor([5, 4, 2]))
        m(packed)  # packed input: torch's forward as it is (its check included)
        assert seen == ["GRU", "GRU"]


def test_a_subclass_that_overrides_check_forward_args_keeps_it() -> None:
    calls: list[tuple[int, ...]] = []

    class Strict(nn.LSTM):
        def check_forward_args(self, input: torch.Tensor, hidden: Any, batch_sizes: Any) -> None:  # type: ignore[override]
            calls.append(tuple(input.shape))
            super().check_forward_args(input, hidden, batch_sizes)

    m = Strict(4, 6)
    with sv.watch(m):
        m(torch.ones(5, 3, 4))
    assert calls == [(5, 3, 4)]


def test_cells_run_torchs_own_forward() -> None:
    cells = [nn.GRUCell(4, 6), nn.LSTMCell(4, 6), nn.RNNCell(4, 6)]
    plain = [c(torch.ones(3, 4)) for c in cells]
    with sv.checking():
        for c in cells:
            assert type(c).forward.__wrapped__ is type(c).__dict__["forward"].__wrapped__  # torch's, wrapped
        torch.testing.assert_close([c(torch.ones(3, 4)) for c in cells], plain)


def test_unchecked_forward_is_torchs_forward_less_one_statement() -> None:
    for cls in (nn.RNN, nn.LSTM, nn.GRU):
        original = cls.__dict__["forward"]
        f = unchecked_forward(original)
        assert f is not None and f is unchecked_forward(original)  # built once
        assert "check_forward_args" in original.__code__.co_names and "check_forward_args" not in f.__code__.co_names
        assert f.__code__.co_filename == original.__code__.co_filename  # torch's file and lines in tracebacks
        assert f.__code__.co_firstlineno == original.__code__.co_firstlineno
        assert f.__code__.co_varnames == original.__code__.co_varnames and f.__defaults__ == original.__defaults__
        assert f.__globals__ is original.__globals__
    assert unchecked_forward(nn.GRUCell.forward) is None  # cells call no check_forward_args

    def forward(self: Any, input: Any, hx: Any = None) -> Any:
        return self.check_forward_args  # used, never called as a statement: cannot be left out exactly

    assert unchecked_forward(forward) is None


# ------------------------------------------------------------------------------------ differential
MODULES = [lambda: nn.LSTM(4, 6, 2, bidirectional=True), lambda: nn.LSTM(4, 6, proj_size=3, batch_first=True),
           lambda: nn.GRU(4, 6, batch_first=True), lambda: nn.GRU(4, 6, 2), lambda: nn.RNN(4, 6, 3),
           lambda: nn.RNN(4, 6, nonlinearity="relu", bidirectional=True)]


def _call(rng: random.Random, m: nn.Module) -> tuple[Any, Any]:
    """A call of ``m``: right, or with one of the mistakes torch raises on before or at its own check."""
    lstm = isinstance(m, nn.LSTM)
    D = 2 if m.bidirectional else 1
    hs = [m.proj_size or m.hidden_size, m.hidden_size] if lstm else [m.hidden_size]
    T, bs = rng.randint(1, 4), rng.randint(1, 4)
    kind = rng.choice(["ok", "ok", "ok", "unbatched", "emb", "ndim4", "hx2d", "one_tensor", "tuple", "batch",
                       "layers", "size", "dtype", "x_int", "state_dtype"])
    emb = 5 if kind == "emb" else 4
    shape = (bs, T, emb) if m.batch_first else (T, bs, emb)
    x = torch.randn(*shape)
    lead = (m.num_layers * D,)
    if kind == "unbatched":
        x = torch.randn(T, 4)
    elif kind == "ndim4":
        x = torch.randn(2, *shape)
    elif kind == "x_int":
        x = torch.randint(0, 3, shape)
    states = [torch.randn(*lead, *(() if kind == "unbatched" else (bs,)), h) for h in hs]
    if kind == "hx2d":
        states = [s[0] for s in states]
    elif kind == "batch":
        states = [torch.randn(*lead, bs + 1, h) for h in hs]
    elif kind == "layers":
        states = [torch.randn(lead[0] + 1, bs, h) for h in hs]
    elif kind == "size":
        states = [torch.randn(*lead, bs, h + 1) for h in hs]
    elif kind == "state_dtype":
        states = [s.double() for s in states]
    if rng.random() < 0.3 and kind in ("ok", "unbatched", "emb", "ndim4", "x_int"):
        return x, None
    if kind == "one_tensor" and lstm:
        return x, states[0]
    if kind == "tuple" and not lstm:
        return x, (states[0], states[0])
    if kind == "dtype":
        x = x.double()
    return x, tuple(states) if lstm else states[0]


def _outcome(fn: Any, *args: Any) -> tuple[str, Any]:
    try:
        return "ok", fn(*args)
    except sv.ShapeError as err:
        return "shape", err.code
    except Exception as err:  # torch's own error (or a crash torch makes of a wrong call)
        return "torch", type(err).__name__


@pytest.mark.parametrize("seed", range(3))
def test_watched_calls_raise_what_check_call_raises_and_return_torchs_outputs(seed: int) -> None:
    rng = random.Random(seed)
    seen: set[Any] = set()
    for _ in range(150):
        torch.manual_seed(rng.randrange(1000))
        m = rng.choice(MODULES)()
        x, hx = _call(rng, m)
        want = _outcome(sv.check_call, m, x, hx)
        plain = _outcome(m, x, hx)
        with sv.watch(m):
            watched = _outcome(m, x, hx)
            again = _outcome(m, x, hx)  # the repeat: the hot path's verdict
        assert watched[0] == again[0], (m, x.shape, watched, again)
        seen.add(watched[1] if watched[0] == "shape" else watched[0])
        if want[0] == "shape":
            assert watched == want == again, (m, x.shape, type(hx), want, watched)
        elif plain[0] == "ok":
            assert watched[0] == "ok", (m, x.shape, watched)
            torch.testing.assert_close(watched[1], plain[1])
            torch.testing.assert_close(again[1], plain[1])
        else:  # check_call found nothing wrong, torch raised: the watched call raises the same
            assert watched == plain, (m, x.shape, plain, watched)
    assert "ok" in seen and len(seen) >= 8, seen  # right calls and many kinds of mistake both occur
