"""check_call's fast path and watched forwards, side by side with PyTorch's own checks.

>>> rows = run(quick=True)
>>> rows[0].compared_with
"torch's module.check_forward_args"
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterator

import torch
import torch.nn as nn
from jaxtyping import Float, jaxtyped

import shapeviz as sv
from bench.common import Rounds, Row, against_plain, alternating
from shapeviz.core.dimensions import DECLARED
from shapeviz.runtime import hotpath
from shapeviz.runtime.fastcheck import plan_for
from shapeviz.runtime.tensorguard import guard_of

_ENV_DATA = os.environ._data  # type: ignore[attr-defined]  # the mapping os.environ writes to
_ENV_KEY = os.environ.encodekey("SHAPEVIZ_DISABLE")  # type: ignore[attr-defined]
_dynamo = torch.compiler.is_dynamo_compiling


@contextlib.contextmanager
def _guards_off() -> Iterator[None]:
    """Hot paths made inside are made as on a torch whose TensorGuards is missing or unusable."""
    was = hotpath.guards_work
    hotpath.guards_work = lambda: False  # type: ignore[assignment]
    try:
        yield
    finally:
        hotpath.guards_work = was


def _lstm_args(m: nn.LSTM, T: int, bs: int) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    c = sv.conventions(m)
    s = c.shapes(T, bs)
    return torch.randn(*s["input"]), (torch.zeros(*s["h_0"]), torch.zeros(*s["c_0"]))


def _python_reads(m: nn.LSTM, x: torch.Tensor, hx: tuple[torch.Tensor, torch.Tensor], memo: tuple,
                  key: tuple) -> bool:
    """What an exact check must read on a repeat call, each read in Python in its cheapest exact form, in line
    with nothing else: no call layer, no branch for other kinds of call. The floor of a check that reads in
    Python (the hot path's fallback where torch's one-call guard misses or is missing), not of every check."""
    if _ENV_KEY in _ENV_DATA or type(x) is not torch.Tensor or _dynamo():
        return False
    d = m.__dict__
    _, k1, k2, k3, k4, k5, k6 = key  # the plan's key: mode first, which no shape reads
    if (x.shape != memo[0] or d["input_size"] is not k1 or d["hidden_size"] is not k2
            or d["num_layers"] is not k3 or d["bidirectional"] is not k4 or d["batch_first"] is not k5
            or d["proj_size"] is not k6 or DECLARED.get() is not memo[1]):
        return False
    w = d["_parameters"]["weight_ih_l0"]
    h, c = hx
    dtype = x.dtype
    return (dtype is w.dtype and x.is_cpu and w.is_cpu and h.shape == memo[2] and c.shape == memo[3]
            and h.dtype is dtype and c.dtype is dtype and h.is_cpu and c.is_cpu)


def _tensor_reads(x: torch.Tensor, w: torch.Tensor, h: torch.Tensor, c: torch.Tensor) -> None:
    """Only the 11 tensor reads of those: 3 shapes, 4 dtypes, 4 ``is_cpu``."""
    x.shape, x.dtype, x.is_cpu, w.dtype, w.is_cpu  # noqa: B018
    h.shape, h.dtype, h.is_cpu, c.shape, c.dtype, c.is_cpu  # noqa: B018


def run(quick: bool = False) -> list[Row]:
    """Rows: check_call vs check_forward_args / jaxtyping+beartype / a no-op hook; watched vs plain."""
    from beartype import beartype

    n, rounds = (2000, 5) if quick else (20000, 15)
    # a fine interleaving (bench.common.alternating): calls a turn, turns a round, rounds
    calls, turns, fine = (50, 2, 3) if quick else (100, 30, 31)
    rows: list[Row] = []
    torch.set_num_threads(1)
    # issue 15's row: a repeat call, which the per-module signature cache accepts after one compare
    bi = nn.LSTM(10, 20, 2, bidirectional=True)
    xb, hb = _lstm_args(bi, 5, 3)
    check_call = sv.check_call
    plan = plan_for(bi)
    check_call(bi, xb, hb)
    check = sv.checker(bi)
    check(xb, hb)
    # the same module's twin, its hot path made as on a torch without a usable TensorGuards: Python reads alone
    twin = nn.LSTM(10, 20, 2, bidirectional=True)
    with _guards_off():
        check_call(twin, xb, hb)
        check_call(twin, xb, hb)
    guard = guard_of(xb, bi.weight_ih_l0, *hb)
    t_cc, t_chk, t_hot, t_twin, t_py, t_reads, t_guard, t_cfa = alternating(
        [lambda: check_call(bi, xb, hb), lambda: check(xb, hb), functools.partial(plan.hot, bi, xb, hb),
         lambda: check_call(twin, xb, hb),
         functools.partial(_python_reads, bi, xb, hb, plan.memo, plan.getkey(bi.__dict__)),
         functools.partial(_tensor_reads, xb, bi.weight_ih_l0, *hb),
         functools.partial(guard, xb, bi.weight_ih_l0, *hb), lambda: bi.check_forward_args(xb, hb, None)],
        calls, turns, fine, warmup=5)
    rows.append(Rounds(t_cc, t_cfa).row("check_call, LSTM(10, 20, 2, bidirectional), (T=5, bs=3), repeat call",
                                        "torch's module.check_forward_args", "<= 0.5"))
    rows.append(Rounds(t_chk, t_cfa).row(
        "check = sv.checker(module); check(x, hx): the same check, its reads in line in a per-module function",
        "torch's module.check_forward_args", "<= 0.5"))
    rows.append(Rounds(t_hot, t_cfa).row(
        "  of which the plan's hot path alone (its constants bound once, no entry, no lookup, no memo read)",
        "torch's module.check_forward_args", "info"))
    rows.append(Rounds(t_guard, t_cfa).row(
        "  of which torch's one-call guard of (x, weight, h, c) alone (TensorGuards.check: types, sizes, dtypes, "
        "devices)", "torch's module.check_forward_args", "info"))
    rows.append(Rounds(t_twin, t_cfa).row(
        "check_call where torch's guard is not usable (a torch without TensorGuards): its reads in Python",
        "torch's module.check_forward_args", "info"))
    rows.append(Rounds(t_py, t_cfa).row(
        "  floor of a check reading in Python: only the reads an exact check cannot skip, in line, each in its "
        "cheapest exact form (SHAPEVIZ_DISABLE by 'in', is_dynamo_compiling, the 6 settings the shape rule reads "
        "by identity, declared sizes, weight; 3 shapes, 4 dtypes, 4 is_cpu)", "torch's module.check_forward_args",
        "info"))
    rows.append(Rounds(t_reads, t_cfa).row("  of which the 11 tensor reads alone (3 shapes, 4 dtypes, 4 is_cpu)",
                                           "torch's module.check_forward_args", "info"))
    m = nn.LSTM(10, 20, num_layers=2)
    x, hx = _lstm_args(m, 5, 3)

    @jaxtyped(typechecker=beartype)
    def typed(x: Float[torch.Tensor, "T bs emb"], h: Float[torch.Tensor, "LD bs h"],
              c: Float[torch.Tensor, "LD bs h"]) -> None:
        return None

    def plain(x: torch.Tensor, h: torch.Tensor, c: torch.Tensor) -> None:
        return None

    def noop_hook(module: nn.Module, args: tuple) -> None:
        return None

    t_sv, t_torch, t_typed, t_plain, t_noop = alternating(
        [lambda: check_call(m, x, hx), lambda: m.check_forward_args(x, hx, None), lambda: typed(x, *hx),
         lambda: plain(x, *hx), lambda: noop_hook(m, (x, hx))], calls, turns, fine, warmup=5)
    label = "check_call fast path, LSTM(10, 20, num_layers=2), (T=5, bs=3)"
    rows.append(Rounds(t_sv, t_torch).row(label, "torch's module.check_forward_args", "<= 0.5"))
    jax = tuple(a - b for a, b in zip(t_typed, t_plain))  # jaxtyping's overhead in each round
    rows.append(Rounds(t_sv, jax).row(label, "jaxtyped(typechecker=beartype), overhead", "< 1.0"))
    rows.append(Rounds(t_sv, t_noop).row(label, "a no-op Python hook call (floor)", "info"))
    # watched vs plain forwards
    for name, model, T, bs in (("small LSTM(10, 20), T=5, bs=3", nn.LSTM(10, 20), 5, 3),
                               ("realistic LSTM(256, 512, 2), T=35, bs=32", nn.LSTM(256, 512, 2), 35, 32)):
        x, hx = _lstm_args(model, T, bs)
        k = max(1, n // (4000 if T < 10 else 40000))
        call = functools.partial(model, x, hx)
        with torch.no_grad():  # watch() entered and left before every turn of both sides (bench_watch says why)
            t = against_plain(call, functools.partial(sv.watch, model), k, max(1, turns // 3) if T < 10 else 2,
                              rounds if T < 10 else max(3, rounds // 3), per_call=True)
        rows.append(t.row(f"watched forward, {name}", "plain forward", "~1.0"))
    return rows


if __name__ == "__main__":
    from bench.run import print_rows

    print_rows(run())
