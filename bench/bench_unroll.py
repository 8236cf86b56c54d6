"""Benchmark unroll(): build + render SVG, collapsed and expanded, vs torchview's draw_graph.

>>> rows = run()  # doctest: +SKIP
>>> rows[0].what  # doctest: +SKIP
'unroll+render svg, collapsed, LSTM(32, 64, num_layers=2, bidirectional=True), T=10'

Run with ``python -m bench.bench_unroll``. Times are wall seconds (the render runs in a subprocess) of
one build (DOT text) plus one render through the layout program found by shapeviz.render.backend (system
dot first); budget rows report the median and spread of 5 calls, comparisons interleave their rounds.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable

import torch
import torch.nn as nn

from bench.common import Rounds, Row, budget, interleaved, optional, skipped_row
from shapeviz.render.backend import Backend, find_backend, run_dot
from shapeviz.render.unrolled import unroll
from shapeviz.tracing.session import trace


def _times(fn: Callable[[], object], repeat: int = 5) -> list[float]:
    """Wall seconds of each of ``repeat`` calls (after one warm-up call): the render runs in a subprocess,
    which the calling thread's CPU time would leave out."""
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def _wall(ours: Callable[[], object], other: Callable[[], object], rounds: int = 5) -> Rounds:
    """Wall seconds of ``ours`` and ``other``, one call each in interleaved rounds."""
    return interleaved(ours, other, 1, rounds, clock=time.perf_counter)


def _torchview(model: nn.Module, T: int, bs: int) -> tuple[Callable[[], object] | None, str]:
    """torchview draw_graph + SVG render of the same model and input, as a function to time (None and
    why when it cannot run)."""
    from torchview import draw_graph

    x = torch.randn(T, bs, model.input_size)

    def go() -> None:
        g = draw_graph(model, input_data=x, expand_nested=True, depth=3)
        run_dot(g.visual_graph.source, "svg")

    try:
        go()
    except Exception as e:  # record why it cannot run instead of hiding it
        return None, f"torchview failed: {type(e).__name__}: {e}"
    return go, ""


class _Stack(nn.Module):
    """``n`` GRU(8, 8) layers applied one after another (a trace with ``n`` recurrent modules)."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.rnns = nn.ModuleList(nn.GRU(8, 8) for _ in range(n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for rnn in self.rnns:
            x, _ = rnn(x)
        return x


def run() -> list[Row]:
    """The benchmark rows (wall seconds: each value's median and spread over its calls)."""
    backend = find_backend()
    prog = backend.kind if backend else "none"
    rows: list[Row] = []
    model = nn.LSTM(32, 64, num_layers=2, bidirectional=True)
    for T in (10, 1000, 10**6):
        times = _times(lambda T=T: unroll(model, T=T, bs=8).pipe("svg"))
        rows.append(budget(times, 1.0).row(f"unroll+render svg, collapsed, {model.__class__.__name__}(32, 64, "
                                           f"num_layers=2, bidirectional=True), T={T}", f"target ({prog})",
                                           "< 1 s", "s"))
    big = nn.LSTM(32, 64, num_layers=4, bidirectional=True)

    def draw_big() -> object:
        return unroll(big, T=16, bs=8, max_steps=16).pipe("svg")

    rows.append(budget(_times(draw_big), 3.0).row(
        f"unroll+render svg, expanded 4-layer bidirectional LSTM, T=16 ({prog})", "target", "< 3 s", "s"))
    pure = shutil.which("graphviz-pure")
    if backend is not None and backend.kind != "graphviz-pure" and pure:
        alt = Backend(pure, "graphviz-pure")
        t = _wall(lambda: run_dot(unroll(big, T=16, bs=8, max_steps=16).source, "svg", alt), draw_big)
        rows.append(t.row("unroll+render svg, expanded 4-layer bidirectional LSTM, T=16 (graphviz-pure)",
                          f"same with {prog}", "< 3 s", "s"))
    stack = _Stack(100)
    tr = trace(stack, torch.zeros(5, 2, 8))
    rows.append(budget(_times(lambda: unroll(tr).pipe("svg"), repeat=5), 0.3).row(
        f"unroll+render svg of a trace with 100 recurrent modules, GRU(8, 8) each, T=5 ({prog})",
        "target", "<= 0.3 s", "s"))
    t = _wall(lambda: unroll(big, T=16, bs=8, max_steps=16).source, draw_big)
    rows.append(t.row("unroll build only (DOT text), same model, T=16", "render of the same", "", "s"))
    view_label = ("torchview draw_graph+render svg (runs the model; draws nn.LSTM as one box, "
                  "5 nodes, vs ~230 here)")
    what = "unroll+render svg, 4-layer bidirectional LSTM, T=16 (expanded)"
    if optional("torchview") is None:
        rows.append(skipped_row(what, view_label, "ratio (lower is faster)"))
        return rows
    view, note = _torchview(big, T=16, bs=8)
    if view is None:
        rows.append(skipped_row(what, view_label, "ratio (lower is faster)", reason=note))
        return rows
    rows.append(_wall(draw_big, view).row(what, view_label, "ratio (lower is faster)", "s"))
    return rows


def _print(rows: list[Row]) -> None:
    for r in rows:
        ratio = f"{r.ratio:.3f}" if r.other == r.other else "n/a"  # NaN check
        print(f"{r.what:<95} {r.shapeviz:9.4f} {r.unit}  vs {r.compared_with}: {r.other:.4f} "
              f"(ratio {ratio}) {r.target}")


if __name__ == "__main__":
    _print(run())
