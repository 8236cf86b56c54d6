"""The compiled path judges a call as the eager one does: ``compiled.compiled_fault`` (what dynamo evaluates at
trace time) against the eager fast path and diagnosis, over random modules, calls, faults, declared sizes and
autocast. No dynamo here: with plain ints the traced rule is an ordinary function, so thousands of calls run in
a second (tests/test_compile.py covers the real torch.compile)."""

from __future__ import annotations

import contextlib
import random
from typing import Any

import torch
from test_fastpath import _modules, _random_call
from torch.nn.utils.rnn import PackedSequence

from shapeviz.core.dimensions import dims
from shapeviz.core.model import conventions
from shapeviz.runtime import compiled, fastcheck
from shapeviz.runtime.diagnosis import diagnose


def _eager(m: torch.nn.Module, x: Any, hx: Any, decl: dict[str, int] | None) -> tuple[bool, str | None]:
    """(does the fast rule reject it, the diagnosis's code or None)."""
    plan = fastcheck.CallPlan(m, conventions(m))
    rejected = not fastcheck.fast_ok(m, plan, x, hx, decl)
    err = diagnose(m, conventions(m), x, hx, decl, None) if rejected else None
    return rejected, None if err is None else err.code


def _compiled(m: torch.nn.Module, x: Any, hx: Any, decl: dict[str, int] | None) -> tuple[bool, str | None]:
    key = None if decl is None else tuple(decl.items())
    fault = compiled.compiled_fault(m, x, hx, key)
    if not fault:
        return False, None
    attrs = tuple((a, getattr(m, a)) for a in compiled._REPR_ATTRS if hasattr(m, a))
    cfg = compiled.config_of(m)
    text = compiled.failure_text(cfg, type(m), attrs, compiled._describe(x), compiled._describe(hx),
                                 compiled._describe(m.weight_ih if cfg[1] else m.weight_ih_l0), key, None)
    return True, text.split("[", 1)[1].split("]", 1)[0] if text else None


def test_compiled_and_eager_judge_every_random_call_alike() -> None:
    rng = random.Random(7)
    modules = _modules()
    compared = faults = 0
    for _ in range(3000):
        m = rng.choice(modules)
        x, hx = _random_call(rng, m)
        if isinstance(x, PackedSequence):
            continue  # not checked while compiling (README: torch.compile)
        decl = rng.choice([None, None, {"bs": 2}, {"bs": 3, "T": 2}, {"bs": 2, "T": 3}, {"T": 3}])
        amp = rng.random() < 0.15
        with contextlib.ExitStack() as stack:
            if decl is not None:
                stack.enter_context(dims(**decl))
            if amp:
                stack.enter_context(torch.autocast("cpu", dtype=torch.bfloat16))
            eager = _eager(m, x, hx, decl)
            traced = _compiled(m, x, hx, decl)
        assert traced == eager, (m, tuple(getattr(x, "shape", ())), hx if hx is None else type(hx), decl, amp)
        compared += 1
        faults += eager[1] is not None
    assert compared > 2500 and faults > 500  # both kinds were really compared


def test_the_hint_function_of_each_torch_release_is_picked_and_a_deprecated_one_last(monkeypatch) -> None:
    """torch 2.13 names it optimization_hint; 2.11 (run on a GPU machine's torch) has size_hint and a
    deprecated hint_int, whose warning dynamo cannot trace."""
    from types import SimpleNamespace

    def size_hint(a: Any) -> Any:
        return a

    def hint_int(a: Any) -> Any:
        return a

    hint_int.__deprecated__ = "used size_hint instead of hint_int"  # type: ignore[attr-defined]
    monkeypatch.setattr(compiled, "symbolic_shapes", SimpleNamespace(hint_int=hint_int, size_hint=size_hint))
    assert compiled._hint_function() is size_hint
    monkeypatch.setattr(compiled, "symbolic_shapes", SimpleNamespace(hint_int=hint_int))
    assert compiled._hint_function() is hint_int  # only a deprecated one: better than none
    monkeypatch.undo()
    assert compiled._hint_function().__name__ == ("optimization_hint" if hasattr(
        compiled.symbolic_shapes, "optimization_hint") else "size_hint")
