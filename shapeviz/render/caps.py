"""The one cap on the size of a diagram: every unrolled diagram is refused above :data:`MAX_CELLS` cells.

>>> import torch.nn as nn
>>> from shapeviz.core.model import conventions
>>> check_size([Panel(conventions(nn.LSTM(4, 8, num_layers=2, bidirectional=True)), T=1000)], max_steps=6)
>>> column_count(1000, 6) * 2 * 2  # 7 drawn columns (3, the ellipsis, 3) x 2 layers x 2 directions
28

``sv.unroll``, ``Trace.unroll``, the CLI's ``draw`` and the gallery all build their graph through
:func:`shapeviz.render.unrolled.to_graph`, which calls :func:`check_size` first: a 10,000-layer GRU or a
``max_steps`` of a million is a clear :class:`~shapeviz.SpecError` that says what would fit, never a DOT of
tens of megabytes that dot lays out for minutes.
"""

from __future__ import annotations

from collections.abc import Sequence

from shapeviz._errors import SpecError
from shapeviz.render.panels import Panel

__all__ = ["MAX_CELLS", "check_size", "column_count"]


def column_count(T: int | None, max_steps: int) -> int:
    """How many time columns :func:`~shapeviz.render.unrolled.step_columns` draws, without building them.

    >>> column_count(1000, 6), column_count(7, 6), column_count(None, 6), column_count(10**12, 10**12)
    (7, 7, 4, 1000000000000)
    """
    if T is None:
        return 4
    k = max_steps // 2
    return T if T - 2 * k < 2 else 2 * k + 1


MAX_CELLS = 1500
"""The most recurrent cells a diagram lays out (drawn step columns × layers × directions, over its panels).
Measured with dot: 1400 cells (a 100-layer bidirectional LSTM, 7 columns) took 9 s, 2200 took 37 s, 4000
over 100 s; a 10,000-layer GRU would be a 22 MB DOT. Every diagram (``sv.unroll``, ``Trace.unroll``, the
CLI, the gallery) is refused above it before any DOT is built."""


def check_size(panels: Sequence[Panel], max_steps: int = 6, what: str = "unroll") -> None:
    """Raise :class:`~shapeviz.SpecError` when ``panels`` have more than :data:`MAX_CELLS` cells in all.

    >>> from shapeviz.core.model import Conventions
    >>> check_size([Panel(Conventions("GRU", cell=False, input_size=1, hidden_size=1, num_layers=1000), T=5)])
    Traceback (most recent call last):
    ...
    shapeviz.SpecError: unroll: 5 step columns x 1000 layers x 1 direction = 5,000 cells, more than the 1,500 \
shapeviz lays out; draw a layer with fewer layers or directions (or its first layers: nn.GRU(..., num_layers=300))
    """
    total, parts = 0, []
    for p in panels:
        layers, directions = (1, 1) if p.conv.cell else (p.conv.num_layers, p.conv.D)
        steps = column_count(p.T, max_steps)  # as draw_panel draws them
        total += steps * layers * directions
        parts.append((steps, layers, directions))
    if total <= MAX_CELLS:
        return
    steps, layers, directions = max(parts, key=lambda t: t[0] * t[1] * t[2])
    fits = MAX_CELLS // (layers * directions) - 1  # an odd step count adds the ellipsis column
    if len(parts) == 1 and fits >= 2 and panels[0].T is not None:  # (T unknown: always 4 columns)
        advice = f"draw at most max_steps={fits}"
    else:
        first = max(1, MAX_CELLS // (max(steps, 1) * directions * max(len(parts), 1)))
        advice = ("draw a layer with fewer layers or directions (or its first layers: "
                  f"nn.{panels[0].conv.family}(..., num_layers={first}))")
    lay = "layer" if layers == 1 else "layers"
    dirs = "direction" if directions == 1 else "directions"
    head = (f"{steps} step columns x {layers} {lay} x {directions} {dirs} = {total:,} cells" if len(parts) == 1
            else f"{len(parts)} panels with {total:,} cells in all (the largest: {steps} step columns x "
                 f"{layers} {lay} x {directions} {dirs})")
    raise SpecError(f"{what}: {head}, more than the {MAX_CELLS:,} shapeviz lays out; {advice}")
