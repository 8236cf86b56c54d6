"""check_call agrees with torch: it raises ShapeError exactly when torch raises.

Randomised over modules (cells and layers, every config) and over calls: correct shapes and
shapes perturbed by ±1, swapped, dropped or extra dims, tuple vs tensor state, no state,
unbatched. The only calls where the verdicts may differ are listed in ``_torch_quirk``.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys

import pytest
import torch
import torch.nn as nn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import shapeviz as sv
from shapeviz._errors import CODES

N_CASES = int(os.environ.get("SHAPEVIZ_AGREEMENT_CASES", "2000"))
PERTURBATIONS = ("none", "plus1", "minus1", "swap", "drop", "extra", "state_type", "no_state",
                 "unbatched", "dtype")


def _module(rng: random.Random) -> nn.Module:
    fam = rng.choice(["RNN", "GRU", "LSTM"])
    emb, h = rng.randint(1, 5), rng.randint(2, 6)
    if rng.random() < 0.3:
        return getattr(nn, fam + "Cell")(emb, h)
    kw = dict(num_layers=rng.randint(1, 3), bidirectional=rng.random() < 0.5, batch_first=rng.random() < 0.5)
    if fam == "LSTM" and rng.random() < 0.3:
        kw["proj_size"] = rng.randint(1, h - 1)
    return getattr(nn, fam)(emb, h, **kw)


def _perturb(shape: list[int], rng: random.Random, how: str) -> list[int]:
    shape = list(shape)
    if not shape:
        return shape
    i = rng.randrange(len(shape))
    if how == "plus1":
        shape[i] += 1
    elif how == "minus1":
        shape[i] = max(0, shape[i] - 1)
    elif how == "swap" and len(shape) > 1:
        j = rng.randrange(len(shape))
        shape[i], shape[j] = shape[j], shape[i]
    elif how == "drop":
        del shape[i]
    elif how == "extra":
        shape.insert(rng.randrange(len(shape) + 1), rng.choice([1, 2, 3]))
    return shape


def make_call(seed: int):
    """A module and a call to it, correct or perturbed, reproducible from ``seed``."""
    rng = random.Random(seed)
    m = _module(rng)
    c = sv.conventions(m)
    how = rng.choice(PERTURBATIONS)
    T, bs = rng.randint(1, 4), rng.randint(1, 4)
    batched = how != "unbatched"
    shapes = {k: list(v) for k, v in c.shapes(T, bs, batched=batched).items()}
    target = rng.choice(["input", *c.state_names])
    if how in ("plus1", "minus1", "swap", "drop", "extra"):
        shapes[target] = _perturb(shapes[target], rng, how)
    x = torch.randn(*shapes["input"])
    if how == "dtype" and target == "input":
        x = x.double()
    states = [torch.randn(*shapes[n]) for n in c.state_names]
    if how == "dtype" and target != "input":
        i = c.state_names.index(target)
        states[i] = states[i].double()
    if how == "no_state":
        hx = None
    elif how == "state_type":
        hx = states[0] if c.is_lstm else (states[0],)
    else:
        hx = tuple(states) if c.is_lstm else states[0]
    return m, x, hx


def _run_torch(m, x, hx) -> BaseException | None:
    try:
        with torch.no_grad():
            m(x, hx)
    except Exception as e:
        return e
    return None


def _run_shapeviz(m, x, hx) -> sv.ShapeError | None:
    try:
        sv.check_call(m, x, hx)
    except sv.ShapeError as e:
        return e
    return None  # any other exception escapes and fails the test


def _torch_quirk(m, x, hx) -> bool:
    """A cell given an unbatched (emb,) input and a 2-D state. torch unsqueezes the state to 3-D
    and then broadcasts (RNNCell runs and returns an (h, h) 'state'), raises, or crashes the
    process (LSTMCell, a segfault in torch 2.13). shapeviz calls it what it is: hidden_ndim."""
    if not isinstance(m, nn.modules.rnn.RNNCellBase) or x.dim() != 1 or x.shape[0] != m.input_size:
        return False
    states = hx if isinstance(hx, (tuple, list)) else (hx,)
    return any(isinstance(h, torch.Tensor) and h.dim() == 2 for h in states)


@settings(max_examples=N_CASES, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1))
def test_agrees_with_torch(seed):
    m, x, hx = make_call(seed)
    s_err = _run_shapeviz(m, x, hx)
    if _torch_quirk(m, x, hx):  # never handed to torch: it can crash the process
        assert s_err is not None and s_err.code in ("hidden_ndim", "dtype", "state_type"), s_err
        return
    t_err = _run_torch(m, x, hx)
    if t_err is None:
        assert s_err is None, f"torch ran but shapeviz raised:\n{s_err}"
    else:
        assert s_err is not None, f"torch raised {type(t_err).__name__}: {t_err}\nbut shapeviz passed"
        assert s_err.code in CODES and "hint:" in str(s_err)


@pytest.mark.slow
@settings(max_examples=10_000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1))
def test_agrees_with_torch_slow(seed):
    test_agrees_with_torch.hypothesis.inner_test(seed)


def test_perturbations_are_covered():
    """The generator really produces every perturbation, both verdicts, and many codes."""
    codes, verdicts = set(), set()
    for seed in range(600):
        m, x, hx = make_call(seed)
        err = _run_shapeviz(m, x, hx)
        verdicts.add(err is None)
        if err is not None:
            codes.add(err.code)
    assert verdicts == {True, False}
    assert {"input_size", "input_ndim", "hidden_layers", "hidden_ndim", "hidden_size", "batch_mismatch",
            "state_type", "dtype"} <= codes, codes


def test_fast_path_reads_no_tensor_data():
    """Checks run on the meta device, where reading data is impossible."""
    with torch.device("meta"):
        m = nn.LSTM(8, 16, num_layers=2)
        x = torch.empty(5, 3, 8)
        state = (torch.empty(2, 3, 16), torch.empty(2, 3, 16))
    sv.check_call(m, x, state)
    with pytest.raises(sv.ShapeError, match="hidden_layers"):
        sv.check_call(m, x, (torch.empty(1, 3, 16, device="meta"), state[1]))


def test_kwargs_and_no_input():
    m = nn.GRU(4, 6)
    sv.check_call(m, input=torch.randn(5, 2, 4), hx=torch.zeros(1, 2, 6))
    with pytest.raises(sv.ShapeError, match="hidden_ndim"):
        sv.check_call(m, input=torch.randn(5, 2, 4), hx=torch.zeros(2, 6))
    with pytest.raises(TypeError, match="no input"):  # as torch's forward() refuses it: a TypeError
        sv.check_call(m)


_WRONG_CALL = """
import torch, torch.nn as nn, shapeviz as sv
try:
    sv.check_call(nn.GRU(4, 6), torch.randn(5, 2, 9))  # input_size is 4, the input has emb=9
except sv.ShapeError as err:
    print(err.code)
else:
    print("unchecked")
"""


@pytest.mark.parametrize(("env", "verdict"), [("1", "unchecked"), ("0", "input_size")])
def test_disabled_by_env(env: str, verdict: str) -> None:
    """SHAPEVIZ_DISABLE is read at import, so each setting runs in a fresh interpreter."""
    res = subprocess.run([sys.executable, "-c", _WRONG_CALL], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "SHAPEVIZ_DISABLE": env})
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == verdict


@pytest.mark.parametrize(("call", "said"), [
    (lambda g, x, h: sv.check_call(g, x, h0=h), "unexpected argument 'h0'"),
    (lambda g, x, h: sv.check_call(g), "no input"),
    (lambda g, x, h: sv.check_call(g, x, h, h), "3 arguments by place"),
    (lambda g, x, h: sv.check_call(g, x, input=x), "'input' given twice"),
    (lambda g, x, h: sv.checker(g)(x, h0=h), r"checker\(GRU\)\(\) got an unexpected keyword argument 'h0'"),
])
def test_a_call_torch_would_refuse_for_its_arguments_is_a_type_error_that_says_what_it_takes(call, said) -> None:
    """torch's ``forward(input, hx=None)`` refuses these calls (TypeError); check_call used to drop a misspelt
    ``h0=`` and check the call as one with no state, and a checker's error named a generated function."""
    g, x, h = nn.GRU(4, 6), torch.randn(5, 2, 4), torch.zeros(1, 2, 6)
    with pytest.raises(TypeError, match=said):
        call(g, x, h)
    sv.check_call(g, x, hx=h)
    sv.check_call(g, input=x, hx=h)


@pytest.mark.parametrize("module", [nn.GRU(4, 6), nn.LSTM(4, 6, batch_first=True), nn.GRUCell(4, 6)])
@pytest.mark.parametrize("how", ["place", "keyword", "with state"])
def test_no_input_is_the_input_ndim_error_torch_fails_on(module: nn.Module, how: str) -> None:
    """``check_call(rnn, None)`` was silent (accepted), though torch's forward fails on ``None.dim()``."""
    with pytest.raises(AttributeError):
        module(None)  # torch refuses it
    call = {"place": lambda: sv.check_call(module, None), "keyword": lambda: sv.check_call(module, input=None),
            "with state": lambda: sv.check_call(module, None, None)}[how]
    with pytest.raises(sv.ShapeError, match=r"got None \(no input\)") as caught:
        call()
    assert caught.value.code == "input_ndim"
    assert "# x" in caught.value.hints[0]
