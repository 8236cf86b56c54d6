"""Benchmark unroll(): build + render SVG, collapsed and expanded, vs torchview's draw_graph.

>>> rows = run()  # doctest: +SKIP
>>> rows[0].what  # doctest: +SKIP
'unroll+render svg, collapsed, LSTM(32, 64, num_layers=2, bidirectional=True), T=10'

Run with ``python -m bench.bench_unroll``. Times are wall seconds of one build (DOT text) plus
one render through the layout program found by shapeviz.render.backend (system dot first).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable

import torch
import torch.nn as nn

from bench.common import Row, optional, skipped_row
from shapeviz.render.backend import Backend, find_backend, run_dot
from shapeviz.render.unrolled import unroll
from shapeviz.tracing.session import trace


def _best(fn: Callable[[], object], repeat: int = 5) -> float:
    """Best wall time in seconds of ``repeat`` calls (after one warm-up call)."""
    fn()
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _torchview_time(model: nn.Module, T: int, bs: int) -> tuple[float, str]:
    """torchview draw_graph + SVG render of the same model and input; (seconds, note)."""
    from torchview import draw_graph

    x = torch.randn(T, bs, model.input_size)

    def go() -> None:
        g = draw_graph(model, input_data=x, expand_nested=True, depth=3)
        run_dot(g.visual_graph.source, "svg")

    try:
        return _best(go, repeat=3), ""
    except Exception as e:  # record why it cannot run instead of hiding it
        return float("nan"), f"torchview failed: {type(e).__name__}: {e}"


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
    """The benchmark rows (seconds)."""
    backend = find_backend()
    prog = backend.kind if backend else "none"
    rows: list[Row] = []
    model = nn.LSTM(32, 64, num_layers=2, bidirectional=True)
    for T in (10, 1000, 10**6):
        t = _best(lambda T=T: unroll(model, T=T, bs=8).pipe("svg"))
        rows.append(Row(f"unroll+render svg, collapsed, {model.__class__.__name__}(32, 64, num_layers=2, "
                        f"bidirectional=True), T={T}", f"target ({prog})", t, 1.0, "< 1 s", "s"))
    big = nn.LSTM(32, 64, num_layers=4, bidirectional=True)
    t_big = _best(lambda: unroll(big, T=16, bs=8, max_steps=16).pipe("svg"))
    rows.append(Row(f"unroll+render svg, expanded 4-layer bidirectional LSTM, T=16 ({prog})",
                    "target", t_big, 3.0, "< 3 s", "s"))
    pure = shutil.which("graphviz-pure")
    if backend is not None and backend.kind != "graphviz-pure" and pure:
        alt = Backend(pure, "graphviz-pure")
        t_pure = _best(lambda: run_dot(unroll(big, T=16, bs=8, max_steps=16).source, "svg", alt))
        rows.append(Row("unroll+render svg, expanded 4-layer bidirectional LSTM, T=16 (graphviz-pure)",
                        f"same with {prog}", t_pure, t_big, "< 3 s", "s"))
    stack = _Stack(100)
    tr = trace(stack, torch.zeros(5, 2, 8))
    t_many = _best(lambda: unroll(tr).pipe("svg"), repeat=3)
    rows.append(Row(f"unroll+render svg of a trace with 100 recurrent modules, GRU(8, 8) each, T=5 ({prog})",
                    "target", t_many, 0.3, "<= 0.3 s", "s"))
    t_build = _best(lambda: unroll(big, T=16, bs=8, max_steps=16).source, repeat=5)
    rows.append(Row("unroll build only (DOT text), same model, T=16", "render of the same",
                    t_build, t_big, "", "s"))
    view_label = ("torchview draw_graph+render svg (runs the model; draws nn.LSTM as one box, "
                  "5 nodes, vs ~230 here)")
    what = "unroll+render svg, 4-layer bidirectional LSTM, T=16 (expanded)"
    if optional("torchview") is None:
        rows.append(skipped_row(what, view_label, "ratio (lower is faster)"))
        return rows
    t_view, note = _torchview_time(big, T=16, bs=8)
    rows.append(Row(what, view_label + (f" [{note}]" if note else ""), t_big, t_view, "ratio (lower is faster)", "s"))
    return rows


def _print(rows: list[Row]) -> None:
    for r in rows:
        ratio = f"{r.ratio:.3f}" if r.other == r.other else "n/a"  # NaN check
        print(f"{r.what:<95} {r.shapeviz:9.4f} {r.unit}  vs {r.compared_with}: {r.other:.4f} "
              f"(ratio {ratio}) {r.target}")


if __name__ == "__main__":
    _print(run())
