"""``@sv.check`` overhead per call, side by side with ``jaxtyped(typechecker=beartype)``.

>>> rows = run(quick=True)
>>> rows[0].compared_with
'jaxtyped(typechecker=beartype) overhead'

Overhead is the decorated function's time per call minus the undecorated one's, all three
measured in this run on the same annotated function and the same tensors, in the same interleaved rounds
(the calling thread's CPU time); target: at most 1/10 of jaxtyping's overhead. The mixed row adds
non-array parameters (a ``Literal``, a ``float``, a ``list[int]``), which both check with beartype's
rules: shapeviz inline for the literal and the class, through a beartype-checked probe for ``list[int]``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import torch
import torch.nn as nn
from beartype import beartype
from jaxtyping import Float, jaxtyped
from torch import Tensor

from bench.common import Rounds, Row, rounds_of
from shapeviz.annotations.aliases import Seq, Step, StepHidden, check

LBH = Float[Tensor, "L bs h"]  # jaxtyping cannot check layers*D on an argument: a plain name here
TBH = Float[Tensor, "T bs h"]


def step(x: Step, h: StepHidden) -> StepHidden:
    return h


def layer(x: Seq, h: LBH, c: LBH, out: TBH) -> tuple[TBH, tuple[LBH, LBH]]:
    return out, (h, c)


def mixed(x: Step, h: StepHidden, mode: Literal["tanh", "relu"], dropout: float, lengths: list[int]) -> StepHidden:
    return h


class Loop(nn.Module):
    """A hand-written layer whose checked method also reads the module's configuration."""

    def __init__(self) -> None:
        super().__init__()
        self.input_size, self.hidden_size = 10, 20

    def step(self, x: Step, h: StepHidden) -> StepHidden:
        return h


def _overheads(fn: Callable[..., Any], args: tuple[Any, ...], n: int, rounds: int,
               method_of: Any = None) -> Rounds:
    """Per-round (shapeviz, jaxtyping) overhead per call in seconds: decorated minus undecorated, the
    three timed in the same interleaved rounds."""
    ours, theirs = check(fn), jaxtyped(typechecker=beartype)(fn)
    if method_of is not None:
        fn, ours, theirs = (f.__get__(method_of) for f in (fn, ours, theirs))
    t_plain, t_ours, t_theirs = rounds_of([lambda: fn(*args), lambda: ours(*args), lambda: theirs(*args)],
                                          [n, n, max(200, n // 10)], rounds)
    return Rounds(tuple(o - p for o, p in zip(t_ours, t_plain)), tuple(t - p for t, p in zip(t_theirs, t_plain)))


def run(quick: bool = False) -> list[Row]:
    """Rows: @check overhead vs jaxtyping+beartype overhead on three array-only signatures and a mixed one."""
    n, rounds = (2000, 5) if quick else (5000, 15)
    x_step, h_step = torch.randn(3, 10), torch.zeros(3, 20)
    x, h, c, out = torch.randn(5, 3, 10), torch.zeros(2, 3, 20), torch.zeros(2, 3, 20), torch.zeros(5, 3, 20)
    cases = [
        ("step(x: Step, h: StepHidden) -> StepHidden", step, (x_step, h_step), None),
        ("layer(x, h, c, out) -> (out, (h, c)): 4 args, nested tuple return", layer, (x, h, c, out), None),
        ("method of an nn.Module: dims also bound from its config", Loop.step, (x_step, h_step), Loop()),
    ]
    rows = []
    for what, fn, args, owner in cases:
        rows.append(_overheads(fn, args, n, rounds, owner).row(
            f"@check overhead per call, {what}", "jaxtyped(typechecker=beartype) overhead", "<= 0.1"))
    rows.append(_overheads(mixed, (x_step, h_step, "tanh", 0.1, [5, 5, 4]), n, rounds).row(
        "@check overhead per call, mixed: step(x, h, mode: Literal[...], dropout: float, lengths: list[int])",
        "jaxtyped(typechecker=beartype) overhead", "<= 0.1"))
    return rows


if __name__ == "__main__":
    from bench.run import print_rows

    print_rows(run())
